"""YOLOv4 (``models/yolo.py``): shapes of every head layout, the model's loss against a float64 NumPy
re-computation from its raw head outputs and targets (and pinned), and the prediction structure
the two-stage detector returns. Training steps: ``test_yolo_train.py``."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from acne_jax.models import yolo
from acne_jax.models.bbox_head import Detections
from acne_jax.models.detector import Prediction
from acne_jax.models.proposals import Proposals
from acne_jax.ops import yolo_targets
from acne_jax.testing import tiny
from acne_jax.testing import yolo_reference

# Anchors for a 64 px input, sorted by area; 12 of them for the 4-level model.
ANCHORS_9 = ((6, 8), (10, 12), (14, 10), (16, 24), (24, 18), (30, 30), (40, 36), (50, 60), (60, 50))
ANCHORS_12 = ((3, 4), (5, 5), (4, 7)) + ANCHORS_9
IMAGE = 64
NUM_CLASSES = 3


def tiny_spec(**changes):
  return dataclasses.replace(
      yolo.YoloSpec(num_classes=NUM_CLASSES, width=2, stage_blocks=(1, 1, 1, 1, 1), anchors=ANCHORS_9, max_detections=20,
                    pre_nms_top_k=300, max_proposals=50), **changes)


def ground_truth():
  boxes = np.asarray([[[10, 10, 30, 40], [5, 5, 15, 12], [40, 30, 62, 60], [0, 0, 0, 0]],
                      [[20, 20, 60, 50], [33, 2, 41, 9], [0, 0, 0, 0], [1, 1, 2, 2]]], np.float32)
  labels = np.asarray([[0, 2, 1, 0], [1, 0, 0, 2]], np.int32)
  valid = np.asarray([[True, True, True, False], [True, True, False, False]])
  return jnp.asarray(boxes), jnp.asarray(labels), jnp.asarray(valid)


def images(batch=2, seed=0):
  return jnp.asarray(np.random.default_rng(seed).normal(size=(batch, IMAGE, IMAGE, 3)), jnp.float32)


def run_unoptimised(fn, *args):
  """``jax.jit(fn)(*args)`` compiled at XLA backend optimisation level 0: one call of a tiny model,
  where the optimisation passes would take most of the test's time."""
  return jax.jit(fn).lower(*args).compile(compiler_options={"xla_backend_optimization_level": 0})(*args)


def drawn_variables(model, x, gt, seed=0, spread=0.1):
  """Parameters drawn with NumPy by shape (no initialiser compile; stable across JAX versions)."""
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), x, *gt))
  return tiny.draw_parameters(shapes, np.random.default_rng(seed), spread)


def reference_from_raw(spec, outputs, gt):
  """The float64 NumPy loss (``acne_jax.testing.yolo_reference``) of raw outputs, on this op's targets."""
  grids = [tuple(o.shape[1:3]) for o in outputs]
  level_targets = jax.jit(lambda *g: yolo_targets.yolo_targets(*g, spec.level_anchors, spec.head_strides, grids, (IMAGE, IMAGE),
                                                               NUM_CLASSES, spec.iou_threshold, spec.neighbor_cells))(*gt)
  return yolo_reference.yolo_loss(outputs, level_targets, spec.level_anchors, spec.head_strides, spec.level_scale_x_y, gt[0],
                                  gt[2], spec.ignore_threshold, spec.box_loss_weight, spec.obj_loss_weight,
                                  spec.cls_loss_weight, spec.box_size_weight)


# ---------------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("strides,anchors", [((8, 16, 32), ANCHORS_9), ((4, 16, 32), ANCHORS_9), ((4, 8, 16, 32), ANCHORS_12)])
def test_forward_shapes_per_level(strides, anchors):
  spec = tiny_spec(head_strides=strides, anchors=anchors)
  model = yolo.YOLOv4(spec, train=True)
  x = jax.ShapeDtypeStruct((2, 128, 96, 3), jnp.float32)
  gt = tuple(jax.ShapeDtypeStruct(s, d) for s, d in (((2, 5, 4), jnp.float32), ((2, 5), jnp.int32), ((2, 5), jnp.bool_)))
  variables = jax.eval_shape(lambda x, *g: model.init(jax.random.key(0), x, *g), x, *gt)
  outs = jax.eval_shape(lambda v, x: model.apply(v, x, method="raw_outputs", mutable=["batch_stats"])[0], variables, x)
  assert [o.shape for o in outs] == [(2, 128 // s, 96 // s, 3, 5 + NUM_CLASSES) for s in strides]
  assert sorted(variables["params"]) == sorted(["backbone", "spp", "neck"] + [f"head_s{s}" for s in strides])
  assert spec.level_channels == tuple(32 // 2 ** (len(strides) - 1 - i) for i in range(len(strides)))
  assert spec.level_anchors[0] == anchors[:3] and spec.level_anchors[-1] == anchors[-3:]
  if strides == (4, 16, 32):  # the seed's variant: the bottom-up path leaves stride 4 with a 3x3/4 convolution
    assert variables["params"]["neck"]["downsample_s16"]["conv"]["kernel"].shape == (3, 3, 8, 16)


def test_full_size_yolov4_layout():
  """The default spec is yolov4.cfg: 64-channel stage 1 to 1024-channel C5, 128/256/512 PANet."""
  spec = yolo.YoloSpec()
  assert spec.level_channels == (128, 256, 512)
  assert spec.level_scale_x_y == (1.2, 1.1, 1.05)
  assert spec.level_anchors == [((12, 16), (19, 36), (40, 28)), ((36, 75), (76, 55), (72, 146)),
                                ((142, 110), (192, 243), (459, 401))]
  x = jax.ShapeDtypeStruct((1, 416, 416, 3), jnp.float32)
  model = yolo.CSPDarknet53()
  variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), x)
  out = jax.eval_shape(lambda v, x: model.apply(v, x), variables, x)
  assert {k: v.shape for k, v in out.items()} == {"C2": (1, 104, 104, 128), "C3": (1, 52, 52, 256), "C4": (1, 26, 26, 512),
                                                   "C5": (1, 13, 13, 1024)}
  count = sum(np.prod(p.shape) for p in jax.tree_util.tree_leaves(variables["params"]))
  assert count == 26_617_184  # CSPDarknet53's convolutions and batch-norm scales and biases
  # The whole 80-class YOLOv4 has darknet's / the PyTorch ports' 64,363,101 trainable parameters
  # and 66,304 batch-norm statistics (their published model summaries): the layout is yolov4.cfg's.
  model = yolo.YOLOv4(spec)
  variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, method="raw_outputs"), x)
  assert sum(np.prod(p.shape) for p in jax.tree_util.tree_leaves(variables["params"])) == 64_363_101
  assert sum(np.prod(p.shape) for p in jax.tree_util.tree_leaves(variables["batch_stats"])) == 66_304
  assert yolo.YoloSpec(head_strides=(4, 8, 16, 32), anchors=ANCHORS_12).level_scale_x_y == (1.2, 1.2, 1.1, 1.05)


def test_spec_validation_and_config():
  with pytest.raises(ValueError, match="cannot be split evenly over 4 levels"):
    yolo.YoloSpec(head_strides=(4, 8, 16, 32))
  with pytest.raises(ValueError, match="head_strides must be increasing"):
    yolo.YoloSpec(head_strides=(8, 16))
  with pytest.raises(ValueError, match="scale_x_y needs one entry per level"):
    yolo.YoloSpec(scale_x_y=(1.2, 1.1))
  spec = yolo.spec_from_config({"num_classes": 8, "anchors": [[15, 15]] * 9, "head_strides": [4, 16, 32]})
  assert spec.anchors == ((15.0, 15.0),) * 9 and spec.head_strides == (4, 16, 32) and hash(spec)
  with pytest.raises(ValueError, match="'model.num_clases' \\(did you mean 'model.num_classes'"):
    yolo.spec_from_config({"num_clases": 8})
  assert yolo.spec_from_config(yolo.default_model_config()) == yolo.YoloSpec()
  with pytest.raises(ValueError, match="multiples of 32"):
    model = yolo.YOLOv4(tiny_spec())
    jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 48, 64, 3)), *ground_truth()))


# The model's loss on the fixed input below, computed once (float32, CPU) and pinned: a change in
# the architecture, the parameter layout, the assignment or the loss moves it.
PINNED = {"yolo_box": 0.5193233, "yolo_obj": 175.01137, "yolo_cls": 23.666138}


def test_model_loss_is_the_reference_loss_of_its_raw_outputs_and_pinned():
  spec = tiny_spec()
  model = yolo.YOLOv4(spec, train=False)
  x, gt = images(), ground_truth()
  variables = drawn_variables(model, x, gt)
  key = jax.random.key(0)
  (total, metrics), outputs, losses = run_unoptimised(
      lambda v: (model.apply(v, x, *gt), model.apply(v, x, method="raw_outputs"), model.apply(v, x, *gt, key, method="losses")),
      variables)
  box, obj, cls, positives = reference_from_raw(spec, [np.asarray(o) for o in outputs], gt)
  np.testing.assert_allclose([metrics["yolo_box"], metrics["yolo_obj"], metrics["yolo_cls"]], [box, obj, cls], rtol=1e-5)
  assert float(metrics["num_positives"]) == positives
  assert float(total) == pytest.approx(box + obj + cls, rel=1e-5)
  assert sorted(losses) == ["yolo_box", "yolo_cls", "yolo_obj"]
  for name, value in PINNED.items():
    assert float(losses[name]) == pytest.approx(value, rel=1e-5), name


def test_predict_returns_the_two_stage_prediction_structure():
  spec = tiny_spec()
  model = yolo.YOLOv4(spec, train=False)
  x, gt = images(), ground_truth()
  variables = drawn_variables(model, x, gt)
  prediction, outputs = run_unoptimised(lambda v: (model.apply(v, x, method="predict"), model.apply(v, x, method="raw_outputs")),
                                        variables)
  assert isinstance(prediction, Prediction) and prediction.masks is None
  d, p = prediction.detections, prediction.proposals
  assert isinstance(d, Detections) and isinstance(p, Proposals)
  assert d.boxes.shape == (2, 20, 4) and d.scores.shape == d.classes.shape == d.valid.shape == (2, 20)
  assert d.classes.dtype == jnp.int32 and d.valid.dtype == jnp.bool_
  assert p.boxes.shape == (2, 50, 4) and p.scores.shape == p.valid.shape == (2, 50)
  d, p = jax.tree_util.tree_map(np.asarray, (d, p))
  for b in range(2):
    n = d.valid[b].sum()
    assert n > 0 and d.valid[b, :n].all() and not d.valid[b, n:].any()  # a prefix
    assert (np.diff(d.scores[b, :n]) <= 0).all() and (d.scores[b, :n] > spec.score_threshold).all()
    assert ((d.boxes[b, :n] >= 0) & (d.boxes[b, :n] <= IMAGE)).all()
    assert ((d.classes[b, :n] >= 0) & (d.classes[b, :n] < NUM_CLASSES)).all()
  # Scores are objectness x class probability of some prediction: the best equals the best product.
  flat = np.concatenate([np.asarray(o).reshape(2, -1, 5 + NUM_CLASSES) for o in outputs], axis=1)
  best = (yolo_reference.sigmoid(flat[..., 4:5]) * yolo_reference.sigmoid(flat[..., 5:])).reshape(2, -1).max(axis=1)
  np.testing.assert_allclose(d.scores[:, 0], best, rtol=1e-5)
