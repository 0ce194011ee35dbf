"""CPM R-CNN: grid head layers, the cascade's stage inputs, the scoring modules and the whole head.

References: PyTorch's ``conv_transpose2d`` for the grouped transposed convolution, NumPy float64
versions of the stage filter, the fused score and both ISM losses written from the paper and
``reference_notes.md`` (2.3-2.5, Traps 10-11), and pinned losses and detections for the wiring.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from acne_jax.models import cascade, scoring
from acne_jax.models.detector import TwoStageDetector
from acne_jax.models.grid_head import GridHead, GroupedConvTranspose, grid_loss
from acne_jax.ops import boxes as box_ops
from acne_jax.ops.roi_align import map_rois_to_levels
from acne_jax.testing import tiny
from tests.models.test_detector import _fixed_batch, small_spec

# A CPM head small enough for CPU tests: 4 channels per point, two convs, light scoring modules.
SMALL_CPM = {"point_channels": 4, "gn_groups": 18, "num_convs": 2, "ism_fc_dim": 32, "rsm_num_samples": 32, "max_grid_rois": 16}


def cpm_spec(**cpm):
  return small_spec(roi_head={"type": "cpm", "box": {"score_threshold": 0.03, "nms_iou": 0.3}, "cpm": {**SMALL_CPM, **cpm}})


@pytest.mark.parametrize("groups,in_channels,out_channels", [(9, 18, 18), (9, 18, 9), (1, 3, 5)])
def test_grouped_transposed_conv_equals_pytorch(groups, in_channels, out_channels):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 5, 6, in_channels)).astype(np.float32)
  module = GroupedConvTranspose(out_channels, kernel_size=4, stride=2, padding=1, groups=groups)
  variables = module.init(jax.random.key(0), x)
  got = np.asarray(module.apply(variables, x))
  # Our HWIO kernel is PyTorch's [in, out / groups, k, k] weight flipped in space, per group.
  kernel = np.asarray(variables["params"]["kernel"], np.float64)  # [k, k, in / groups, out]
  k = kernel.shape[0]
  out_per_group = out_channels // groups
  weight = kernel[::-1, ::-1].transpose(2, 3, 0, 1)  # [in / groups, out, k, k]
  weight = np.concatenate([weight[:, g * out_per_group:(g + 1) * out_per_group] for g in range(groups)], axis=0)
  expected = torch.nn.functional.conv_transpose2d(
      torch.from_numpy(x.astype(np.float64)).permute(0, 3, 1, 2), torch.from_numpy(np.ascontiguousarray(weight)),
      torch.from_numpy(np.asarray(variables["params"]["bias"], np.float64)), stride=2, padding=1, groups=groups)
  np.testing.assert_allclose(got, expected.permute(0, 2, 3, 1).numpy(), rtol=1e-5, atol=1e-5)
  assert got.shape == (2, 10, 12, out_channels) and k == 4


def test_grid_head_shapes_and_fusion():
  x = jnp.asarray(np.random.default_rng(1).normal(size=(3, 14, 14, 16)), jnp.float32)
  head = GridHead(point_channels=4, num_convs=3, gn_groups=18)
  variables = head.init(jax.random.key(0), x)
  heatmaps, features = head.apply(variables, x)
  assert set(heatmaps) == {"unfused"} and heatmaps["unfused"].shape == (3, 28, 28, 9) and features.shape == (3, 7, 7, 36)
  # Pet's as-run initialisation (the default): PyTorch's, biases within 1 / sqrt(fan_in) (fan_in 4 * 4 * 1 for deconv2).
  bias = np.asarray(variables["params"]["decoder"]["deconv2"]["bias"])
  assert np.all(np.abs(bias) <= 0.25) and np.std(bias) > 0.01
  # Grid R-CNN's initialisation: every heatmap starts at the 1 % prior, whatever the input.
  mmdet_head = GridHead(point_channels=4, num_convs=3, gn_groups=18, weight_init="grid_rcnn")
  mmdet_vars = mmdet_head.init(jax.random.key(0), x)
  np.testing.assert_allclose(mmdet_vars["params"]["decoder"]["deconv2"]["bias"], -np.log(99.0), rtol=1e-6)
  np.testing.assert_allclose(jax.nn.sigmoid(mmdet_head.apply(mmdet_vars, x)[0]["unfused"]), 0.01, atol=2e-4)
  with pytest.raises(ValueError, match="weight_init"):
    GridHead(weight_init="kaiming").init(jax.random.key(0), x)
  fused_head = GridHead(point_channels=4, num_convs=3, gn_groups=18, fusion=True)
  fused_vars = fused_head.init(jax.random.key(0), x)
  # Each of the 24 directed neighbour pairs of a 3 x 3 grid has a transition per order.
  transitions = [k for k in fused_vars["params"] if k.endswith("_depthwise")]
  assert len(transitions) == 2 * 24
  heatmaps, _ = fused_head.apply(fused_vars, x)
  assert set(heatmaps) == {"unfused", "fused"} and heatmaps["fused"].shape == (3, 28, 28, 9)
  assert float(jnp.max(jnp.abs(heatmaps["fused"] - heatmaps["unfused"]))) > 1e-4
  # With every transition zeroed, fusion is the identity: both heatmaps agree.
  zeroed = jax.tree_util.tree_map_with_path(
      lambda path, v: jnp.zeros_like(v) if any("order" in str(getattr(p, "key", "")) for p in path) else v, fused_vars)
  heatmaps, _ = fused_head.apply(zeroed, x)
  np.testing.assert_allclose(heatmaps["fused"], heatmaps["unfused"], atol=1e-6)


def test_grid_loss_is_the_mean_bce_over_valid_rois():
  rng = np.random.default_rng(2)
  logits = rng.normal(size=(3, 4, 4, 9)).astype(np.float32)
  targets = (rng.uniform(size=logits.shape) < 0.2).astype(np.float32)
  valid = np.array([True, False, True])
  bce = np.maximum(logits, 0) - logits * targets + np.log1p(np.exp(-np.abs(logits)))
  assert float(grid_loss(logits, targets, valid)) == pytest.approx(bce[valid].mean(), rel=1e-5)


# ----------------------------------------------------------------------------------------
# The cascade's training inputs between stages.


def _np_next_stage(decoded, inputs, valid, gts, gt_valid, threshold, slots):
  """Reference: drop inputs that equal a ground truth, append the ground truth, keep IoU >= threshold."""

  def iou(a, b):
    iw = max(min(a[2], b[2]) - max(a[0], b[0]), 0)
    ih = max(min(a[3], b[3]) - max(a[1], b[1]), 0)
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union

  real_gts = [g for g, v in zip(gts, gt_valid) if v]
  candidates = [d for d, x, v in zip(decoded, inputs, valid) if v and not any(np.array_equal(x, g) for g in real_gts)]
  candidates += real_gts
  kept = [c for c in candidates if max(iou(c, g) for g in real_gts) >= threshold]
  return np.array(kept[:slots], np.float64).reshape(-1, 4)


def test_next_stage_keeps_refined_boxes_above_the_stage_iou_and_appends_ground_truth():
  gts = np.array([[10, 10, 30, 30], [50, 50, 80, 70], [0, 0, 0, 0]], np.float32)
  gt_valid = np.array([True, True, False])
  inputs = np.array([[10, 10, 30, 30],    # a ground-truth copy: dropped, the exact box comes back appended
                     [12, 11, 31, 32],    # refined to IoU 0.82 with the first: kept at 0.7
                     [48, 52, 80, 75],    # refined to IoU 0.66 with the second: dropped at 0.7
                     [0, 0, 5, 5]], np.float32)  # padding
  decoded = np.array([[9, 9, 31, 31], [11, 10, 31, 31], [49, 53, 80, 76], [0, 0, 5, 5]], np.float32)
  valid = np.array([True, True, True, False])
  boxes, keep = cascade.next_stage_rois(decoded[None], inputs[None], valid[None], gts[None], gt_valid[None], 0.7, slots=6)
  expected = _np_next_stage(decoded, inputs, valid, gts, gt_valid, 0.7, 6)
  assert keep.shape == (1, 6) and int(keep.sum()) == len(expected) == 3
  np.testing.assert_array_equal(np.asarray(boxes)[0][np.asarray(keep)[0]], expected)
  # At 0.6 the third survives too, still before the appended ground truth.
  boxes, keep = cascade.next_stage_rois(decoded[None], inputs[None], valid[None], gts[None], gt_valid[None], 0.6, slots=6)
  np.testing.assert_array_equal(np.asarray(boxes)[0][np.asarray(keep)[0]], _np_next_stage(decoded, inputs, valid, gts, gt_valid, 0.6, 6))
  # Fewer slots than kept boxes (cpm.later_stage_rois): the refined boxes stay, the ground truth is cut.
  boxes, keep = cascade.next_stage_rois(decoded[None], inputs[None], valid[None], gts[None], gt_valid[None], 0.6, slots=2)
  assert bool(np.all(keep)) and keep.shape == (1, 2)
  np.testing.assert_array_equal(np.asarray(boxes)[0], decoded[1:3])


def test_next_stage_on_random_batches_matches_the_reference():
  rng = np.random.default_rng(3)
  for _ in range(5):
    gts = np.concatenate([rng.uniform(0, 100, (2, 6, 2)), rng.uniform(0, 100, (2, 6, 2)) + 110], -1).astype(np.float32)
    gt_valid = rng.uniform(size=(2, 6)) < 0.7
    gt_valid[:, 0] = True
    inputs = (gts[:, rng.integers(0, 6, 10)] + rng.normal(0, 8, (2, 10, 4))).astype(np.float32)
    inputs[:, :2] = gts[:, :2]  # some ground-truth copies (kept only when that row is valid)
    decoded = (inputs + rng.normal(0, 4, inputs.shape)).astype(np.float32)
    valid = rng.uniform(size=(2, 10)) < 0.8
    boxes, keep = cascade.next_stage_rois(decoded, inputs, valid, gts, gt_valid, 0.6, slots=16)
    for b in range(2):
      expected = _np_next_stage(decoded[b], inputs[b], valid[b], gts[b], gt_valid[b], 0.6, 16)
      np.testing.assert_array_equal(np.asarray(boxes)[b][np.asarray(keep)[b]], expected)


def test_plus_one_convention_in_level_mapping_and_iou():
  rois = jnp.asarray([[0.0, 0.0, 111.0, 111.0]])
  assert int(map_rois_to_levels(rois, 2, 5)[0]) == 2  # side 111 < 112
  assert int(map_rois_to_levels(rois, 2, 5, plus_one=True)[0]) == 3  # side 112
  a, b = jnp.asarray([[0.0, 0.0, 9.0, 9.0]]), jnp.asarray([[5.0, 0.0, 14.0, 9.0]])
  # Legacy: 10 x 10 boxes overlapping 5 x 10 -> 50 / 150; modern 9 x 9 overlapping 4 x 9 -> 36 / 126.
  assert float(box_ops.box_iou(box_ops.plus_one(a), box_ops.plus_one(b))[0, 0]) == pytest.approx(50 / 150)
  assert float(box_ops.box_iou(a, b)[0, 0]) == pytest.approx(36 / 126)
  max_iou, _ = cascade.match_to_ground_truth(a[None], b[None], jnp.asarray([[True]]), plus_one=True)
  assert float(max_iou[0, 0]) == pytest.approx(50 / 150)


# ----------------------------------------------------------------------------------------
# Scoring.


def test_fused_score_formula():
  cls, ism, rsm = jnp.asarray([0.9, 0.5]), jnp.asarray([0.8, 0.3]), jnp.asarray([0.6, 0.9])
  np.testing.assert_allclose(scoring.fused_score(cls, ism, rsm, 0.8), [(0.9 * 0.8) ** 0.8 * 0.6 ** 0.2, (0.5 * 0.3) ** 0.8 * 0.9 ** 0.2],
                             rtol=1e-6)
  np.testing.assert_allclose(scoring.fused_score(cls, ism, None), [0.72, 0.15], rtol=1e-6)
  np.testing.assert_allclose(scoring.fused_score(cls, None, rsm, 0.8), [0.9 ** 0.8 * 0.6 ** 0.2, 0.5 ** 0.8 * 0.9 ** 0.2], rtol=1e-6)


def _np_pet_l2_loss(x, t):
  """Pet's l2_loss line by line in NumPy (integer-array indexing of a 2-D array gathers rows)."""
  pos = np.argwhere(t > 0.0)  # [K, 2] (row, column) pairs
  if len(pos) == 0:
    return 0.0
  return float((0.5 * np.abs(x[pos] - t[pos]) ** 2 / len(pos)).sum())


def test_ism_losses_default_and_reference():
  rng = np.random.default_rng(4)
  logits = rng.normal(size=(7, 2)).astype(np.float32)
  iou = np.array([0.75, 1.0, 0.9, 0.71, 0.8, 0.95, 0.7], np.float32)
  valid = np.array([False, True, True, False, True, True, True])
  t = np.stack([1 - iou, iou], 1).astype(np.float64)
  p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
  entries = (t > 0) & valid[:, None]
  expected = 0.5 * ((p - t) ** 2)[entries].sum() / entries.sum()
  assert float(scoring.ism_loss(logits, iou, valid)) == pytest.approx(expected, rel=1e-5)
  # The reference concatenates only the valid rows; a ground-truth copy (IoU 1) has one entry.
  assert float(scoring.ism_loss(logits, iou, valid, reference=True)) == pytest.approx(
      _np_pet_l2_loss(logits[valid].astype(np.float64), t[valid]), rel=1e-5)
  np.testing.assert_allclose(scoring.iou_score(logits), p[:, 1], rtol=1e-5)
  np.testing.assert_array_equal(scoring.iou_score(logits, reference=True), logits[:, 1])


# ----------------------------------------------------------------------------------------
# The whole head in the detector.


def _model_and_variables(spec):
  images, boxes, labels, valid = _fixed_batch()
  key = jax.random.key(0)
  model = TwoStageDetector(spec, train=True)
  abstract = jax.eval_shape(lambda: model.init(key, images, boxes, labels, valid, key, method="losses"))
  return model, {"params": tiny.draw_parameters(abstract["params"], np.random.default_rng(7), spread=0.05)}


# The losses and the best detections of one fixed batch through the small CPM detector with
# fixed (drawn) parameters, as computed when the wiring was last checked (float32, CPU).
PINNED_LOSSES = {"rpn_cls": 0.77855575, "rpn_bbox": 0.10504355, "rpn_nwd": 0.01925571, "rcnn_cls": 2.51522303,
                 "grid_stage1": 11.05314922, "grid_stage2": 5.10712385, "grid_stage3": 2.65578127, "ism": 0.18344350,
                 "rsm": 3.78938437}
PINNED_DETECTIONS = {"scores": [[0.25948235, 0.20048222, 0.19787420], [0.22967485, 0.19697644, 0.17997874]],
                     "boxes": [[42.62458038, 33.00516510, 55.03367615, 50.59313965], [25.51593971, 24.96255493, 28.25107002, 48.77463913]]}


def test_cpm_losses_and_detections_are_pinned_and_shapes_static_under_jit():
  spec = cpm_spec()
  model, variables = _model_and_variables(spec)
  images, boxes, labels, valid = _fixed_batch()
  traces = []

  def losses(v, b, l, m):
    traces.append(1)
    return model.apply(v, images, b, l, m, jax.random.key(1), method="losses")

  step = jax.jit(losses)
  got = {k: float(v) for k, v in step(variables, boxes, labels, valid).items()}
  assert set(got) == set(PINNED_LOSSES)
  for name, value in PINNED_LOSSES.items():
    assert got[name] == pytest.approx(value, rel=2e-4), (name, got)
  # Other ground truth (another count of valid boxes, other sizes): same shapes, no retrace.
  other = step(variables, boxes * 0.9 + 3, labels, jnp.asarray(np.array([[True, False, False], [True, True, False]])))
  assert len(traces) == 1 and all(np.isfinite(float(v)) for v in other.values())

  predict = TwoStageDetector(spec, train=False)
  detections = jax.jit(lambda v: predict.apply(v, images, method="predict"))(variables).detections
  assert detections.boxes.shape == (2, 30, 4) and detections.scores.shape == (2, 30)
  # Fused scores descend, valid detections first, boxes inside the 64 x 64 image.
  scores = np.asarray(detections.scores)
  assert np.all(np.diff(scores, axis=1) <= 1e-7) and np.all(detections.boxes >= 0) and np.all(detections.boxes <= 64)
  np.testing.assert_allclose(scores[:, :3], PINNED_DETECTIONS["scores"], rtol=2e-4)
  np.testing.assert_allclose(np.asarray(detections.boxes[0, :2]), PINNED_DETECTIONS["boxes"], rtol=2e-4, atol=1e-3)

  grid = dataclasses.replace(spec, roi_head=dataclasses.replace(spec.roi_head, cpm=dataclasses.replace(
      spec.roi_head.cpm, mapping_ratios=(1.0,), stage_ious=(0.5,), stage_loss_weights=(1.0,), ism=False, rsm=False)))
  one_stage = jax.eval_shape(lambda v: TwoStageDetector(grid, train=True).apply(
      v, images, boxes, labels, valid, jax.random.key(1), method="losses"), _model_and_variables(grid)[1])
  assert set(one_stage) == {"rpn_cls", "rpn_bbox", "rpn_nwd", "rcnn_cls", "grid_stage1"}


def test_the_cpm_and_grid_configs_build():
  from configs import cpm_rcnn, grid_rcnn
  from acne_jax.models.specs import spec_from_config

  for data in ("synthetic", "acne_scu", "acne04", "deep_lesion"):
    cpm = spec_from_config(cpm_rcnn.get_config(data).model)
    assert cpm.roi_head.type == "cpm" and cpm.rpn.head == "sadh" and cpm.rpn.with_nwd
    assert cpm.roi_head.cpm.num_stages == 3 and cpm.roi_head.cpm.ism and cpm.roi_head.cpm.rsm
    assert (cpm.roi_head.box.score_threshold, cpm.roi_head.box.nms_iou) == (0.03, 0.3)
    grid = spec_from_config(grid_rcnn.get_config(data).model)
    assert grid.roi_head.cpm.num_stages == 1 and not grid.roi_head.cpm.ism and not grid.roi_head.cpm.rsm
  thin = spec_from_config(cpm_rcnn.get_config().model).roi_head.cpm
  # Thinner on the embedded data, but all eight convs: their receptive field reaches the edges (decisions.md).
  assert (thin.point_channels, thin.num_convs, thin.max_grid_rois, thin.later_stage_rois) == (4, 8, 16, 24)
  paper = spec_from_config(cpm_rcnn.get_config("acne_scu").model).roi_head.cpm
  assert (paper.point_channels * paper.grid_size ** 2, paper.num_convs, paper.gn_groups, paper.roi_size) == (576, 8, 36, 14)
  assert (paper.mapping_ratios, paper.stage_ious, paper.stage_loss_weights, paper.max_grid_rois) == (
      (1.0, 0.5, 0.25), (0.5, 0.6, 0.7), (1.0, 0.5, 0.25), 96)
  assert (paper.later_stage_rois, paper.weight_init) == (0, "torch_default")
  with pytest.raises(ValueError, match="one entry per stage"):
    spec_from_config({"roi_head": {"cpm": {"mapping_ratios": [1.0, 0.5]}}})
