"""RPN/SADH heads, rectified scores, proposal generation and RPN losses against NumPy references."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from acne_jax.models import proposals as proposal_lib
from acne_jax.models import rpn
from acne_jax.models.rpn_loss import rpn_losses
from acne_jax.ops import anchors as anchor_ops


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def test_sadh_head_structure_and_shapes():
  """1x1 cls tower, 3x3 reg tower, GroupNorm on both, NWD logits read from the reg tower."""
  head = rpn.SADHHead(num_anchors=3, channels=64, gn_groups=32)
  levels = [jnp.ones((2, 8, 8, 64)), jnp.ones((2, 4, 4, 64))]
  params = head.init(jax.random.key(0), levels)["params"]
  assert params["cls_tower_conv"]["kernel"].shape == (1, 1, 64, 64)
  assert params["reg_tower_conv"]["kernel"].shape == (3, 3, 64, 64)
  assert set(params["cls_tower_gn"]) == {"scale", "bias"} and set(params["reg_tower_gn"]) == {"scale", "bias"}
  assert params["rpn_cls"]["kernel"].shape == (1, 1, 64, 3)
  assert params["rpn_reg"]["kernel"].shape == (1, 1, 64, 12)
  assert params["rpn_nwd"]["kernel"].shape == (1, 1, 64, 3)
  out = head.apply({"params": params}, levels)
  assert [o.cls_logits.shape for o in out] == [(2, 192), (2, 48)]
  assert [o.deltas.shape for o in out] == [(2, 192, 4), (2, 48, 4)]
  assert [o.nwd_logits.shape for o in out] == [(2, 192), (2, 48)]
  # Init as the reference: N(0, 0.01) weights, zero biases.
  assert abs(float(jnp.std(params["reg_tower_conv"]["kernel"])) - 0.01) < 0.002
  assert float(jnp.abs(params["rpn_nwd"]["bias"]).max()) == 0.0


def test_sadh_cls_score_depends_on_its_location_only_and_nwd_reads_the_reg_tower():
  head = rpn.SADHHead(num_anchors=3, channels=32, gn_groups=8)
  x = jax.random.normal(jax.random.key(1), (1, 6, 6, 32))
  params = head.init(jax.random.key(0), [x])["params"]
  base = head.apply({"params": params}, [x])[0]
  # Perturb one location's input: with per-channel GroupNorm statistics over the map, every cls
  # score moves a little, so compare the change at the neighbour with the change at the centre.
  # A 1x1 cls tower changes the neighbour's logits only through the norm statistics; the 3x3
  # reg tower changes them directly.
  bumped = x.at[0, 3, 3].add(5.0)
  out = head.apply({"params": params}, [bumped])[0]
  cls_change = np.abs(np.asarray(out.cls_logits - base.cls_logits)).reshape(6, 6, 3).sum(-1)
  reg_change = np.abs(np.asarray(out.deltas - base.deltas)).reshape(6, 6, 12).sum(-1)
  assert cls_change[3, 4] < 0.2 * cls_change[3, 3]
  assert reg_change[3, 4] > 0.3 * reg_change[3, 3]
  # The NWD logits read the 3x3 reg tower (paper Fig. 3b), so they move at the neighbour too;
  # read from the 1x1 cls tower they would not.
  nwd_change = np.abs(np.asarray(out.nwd_logits - base.nwd_logits)).reshape(6, 6, 3).sum(-1)
  assert nwd_change[3, 4] > 0.3 * nwd_change[3, 3]


@pytest.mark.parametrize("weight", [0.0, 0.5, 1.0, 1.5])
def test_rectified_objectness_is_paper_eq5(weight):
  rng = np.random.default_rng(0)
  cls, nwd = rng.normal(0, 4, 100), rng.normal(0, 4, 100)
  expected = np.sqrt(_sigmoid(cls) ** (2 - weight) * _sigmoid(nwd) ** weight)
  got = rpn.rectified_objectness(jnp.asarray(cls, jnp.float32), jnp.asarray(nwd, jnp.float32), weight)
  np.testing.assert_allclose(np.asarray(got), expected, rtol=2e-5)
  np.testing.assert_allclose(np.asarray(rpn.rectified_objectness(jnp.asarray(cls, jnp.float32), None)), _sigmoid(cls), rtol=1e-6)


def proposals_reference(cls, deltas, nwd, anchors, image_size, nms_pre, max_per_image, iou, min_size, weight):
  """The reference order of operations in float64 NumPy, one image (plain loops)."""
  boxes, scores, levels = [], [], []
  h, w = image_size
  for level, (c, d, n, a) in enumerate(zip(cls, deltas, nwd, anchors)):
    score = np.sqrt(_sigmoid(c) ** (2 - weight) * _sigmoid(n) ** weight)
    order = np.argsort(-score, kind="stable")[:nms_pre]
    for i in order:
      aw, ah = a[i, 2] - a[i, 0], a[i, 3] - a[i, 1]
      ax, ay = a[i, 0] + aw / 2, a[i, 1] + ah / 2
      dw, dh = np.clip(d[i, 2:], -math.log(1000 / 16), math.log(1000 / 16))
      cx, cy, bw, bh = ax + d[i, 0] * aw, ay + d[i, 1] * ah, aw * math.exp(dw), ah * math.exp(dh)
      box = np.clip([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 0, [w, h, w, h])
      if box[2] - box[0] > min_size and box[3] - box[1] > min_size:
        boxes.append(box)
        scores.append(score[i])
        levels.append(level)
  order = np.argsort(-np.asarray(scores), kind="stable")
  kept = []
  for i in order:
    ok = True
    for j in kept:
      if levels[j] != levels[i]:
        continue
      b1, b2 = boxes[i], boxes[j]
      iw = max(min(b1[2], b2[2]) - max(b1[0], b2[0]), 0)
      ih = max(min(b1[3], b2[3]) - max(b1[1], b2[1]), 0)
      inter = iw * ih
      union = (b1[2] - b1[0]) * (b1[3] - b1[1]) + (b2[2] - b2[0]) * (b2[3] - b2[1]) - inter
      if union > 0 and inter / union > iou:
        ok = False
        break
    if ok:
      kept.append(i)
  kept = kept[:max_per_image]
  return np.asarray([boxes[i] for i in kept]).reshape(-1, 4), np.asarray([scores[i] for i in kept])


@pytest.mark.parametrize("seed", range(4))
def test_generate_proposals_matches_reference_order_of_operations(seed):
  rng = np.random.default_rng(seed)
  image_size = (64, 64)
  anchors = anchor_ops.multilevel_anchors(image_size, strides=(8, 16), scales=(4.0,), dtype=np.float64)
  cls = [rng.normal(0, 2, (1, len(a))) for a in anchors]
  deltas = [rng.normal(0, 0.3, (1, len(a), 4)) for a in anchors]
  nwd = [rng.normal(0, 2, (1, len(a))) for a in anchors]
  predictions = [rpn.LevelPredictions(jnp.asarray(c, jnp.float32), jnp.asarray(d, jnp.float32), jnp.asarray(n, jnp.float32))
                 for c, d, n in zip(cls, deltas, nwd)]
  settings = dict(nms_pre=40, max_per_image=30, nms_iou=0.5, min_size=6.0, nwd_weight=1.0)
  got = proposal_lib.generate_proposals(predictions, [jnp.asarray(a, jnp.float32) for a in anchors], image_size, **settings)
  ref_boxes, ref_scores = proposals_reference(
      [c[0] for c in cls], [d[0] for d in deltas], [n[0] for n in nwd], anchors, image_size,
      settings["nms_pre"], settings["max_per_image"], settings["nms_iou"], settings["min_size"], 1.0)
  count = int(got.valid[0].sum())
  assert count == len(ref_boxes)
  assert bool(jnp.all(got.valid[0, :count]))
  np.testing.assert_allclose(np.asarray(got.boxes[0, :count]), ref_boxes, atol=1e-4)
  np.testing.assert_allclose(np.asarray(got.scores[0, :count]), ref_scores, rtol=1e-5)


def test_rpn_losses_match_numpy_when_every_candidate_is_sampled():
  """With few anchors and num_samples >= all candidates, sampling is deterministic."""

  anchors = [np.array([[0, 0, 16, 16], [8, 8, 24, 24], [16, 16, 32, 32], [0, 16, 16, 32], [4, 4, 12, 12]], np.float32)]
  gt = np.array([[[1, 1, 15, 17], [0, 0, 0, 0]]], np.float32)
  gt_valid = np.array([[True, False]])
  rng = np.random.default_rng(0)
  cls = rng.normal(0, 1, (1, 5)).astype(np.float32)
  deltas = rng.normal(0, 0.2, (1, 5, 4)).astype(np.float32)
  nwd = rng.normal(0, 1, (1, 5)).astype(np.float32)
  preds = [rpn.LevelPredictions(jnp.asarray(cls), jnp.asarray(deltas), jnp.asarray(nwd))]
  out = rpn_losses(jax.random.key(0), preds, [jnp.asarray(a) for a in anchors], jnp.asarray(gt), jnp.asarray(gt_valid),
                   num_samples=16, positive_fraction=0.5)
  # Hand assignment: IoU with gt [1,1,15,17] (area 224): anchor 0 -> 196/(256+224-196) = 0.69 (positive);
  # anchor 4 -> 64/224 = 0.29 (< 0.3 negative); anchor 1 -> 7*9=63/(256+224-63)=0.15 negative;
  # anchors 2, 3 -> 0 and 1*... negative. So 1 positive (anchor 0), 4 negatives.
  a = anchors[0].astype(np.float64)
  g = gt[0, 0].astype(np.float64)
  pos = np.array([True, False, False, False, False])
  labels = pos.astype(np.float64)
  x = cls[0].astype(np.float64)
  bce = np.maximum(x, 0) - x * labels + np.log1p(np.exp(-np.abs(x)))
  avg = 1 + 4
  np.testing.assert_allclose(float(out["rpn_cls"]), bce.sum() / avg, rtol=1e-5)
  aw, ah = a[0, 2] - a[0, 0], a[0, 3] - a[0, 1]
  ax, ay = a[0, 0] + aw / 2, a[0, 1] + ah / 2
  gw, gh = g[2] - g[0], g[3] - g[1]
  gx, gy = g[0] + gw / 2, g[1] + gh / 2
  target = np.array([(gx - ax) / aw, (gy - ay) / ah, math.log(gw / aw), math.log(gh / ah)])
  np.testing.assert_allclose(float(out["rpn_bbox"]), np.abs(deltas[0, 0] - target).sum() / avg, rtol=1e-5)
  d = deltas[0, 0].astype(np.float64)
  pred_box = [ax + d[0] * aw - aw * math.exp(d[2]) / 2, ay + d[1] * ah - ah * math.exp(d[3]) / 2,
              ax + d[0] * aw + aw * math.exp(d[2]) / 2, ay + d[1] * ah + ah * math.exp(d[3]) / 2]
  vec = lambda b: np.array([(b[0] + b[2]) / 2, (b[1] + b[3]) / 2, (b[2] - b[0]) / 2, (b[3] - b[1]) / 2])
  y = math.exp(-np.linalg.norm(vec(pred_box) - vec(g)) / 32.0)
  p = _sigmoid(nwd[0, 0])
  np.testing.assert_allclose(float(out["rpn_nwd"]), -math.log(1 - abs(y - p)) / avg, rtol=1e-4)


def test_nwd_loss_reaches_the_regressor():
  """The NWD target is not detached (as the reference): its loss has a gradient w.r.t. the deltas."""
  anchors = [jnp.array([[0, 0, 16, 16], [16, 16, 32, 32]], jnp.float32)]
  gt = jnp.array([[[1, 1, 15, 17]]], jnp.float32)

  def nwd_loss(deltas):
    preds = [rpn.LevelPredictions(jnp.zeros((1, 2)), deltas, jnp.zeros((1, 2)))]
    return rpn_losses(jax.random.key(0), preds, anchors, gt, jnp.array([[True]]), num_samples=4)["rpn_nwd"]

  grad = jax.grad(nwd_loss)(jnp.full((1, 2, 4), 0.1))
  assert float(jnp.abs(grad[0, 0]).sum()) > 1e-4  # the positive anchor
  assert float(jnp.abs(grad[0, 1]).sum()) == 0.0  # the negative one gets no NWD loss
