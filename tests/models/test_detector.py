"""The detector assembled from its per-component spec: shapes, options that must act, pinned losses."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from acne_jax.models import specs
from acne_jax.models.detector import TwoStageDetector, spec_from_config
from acne_jax.models.fpn import FPN
from acne_jax.models.resnet import ResNet, resnet_out_channels
from acne_jax.models.rpn_loss import branch_target_function
from acne_jax.testing import tiny


@pytest.mark.parametrize("depth", [18, 34, 50, 101])
@pytest.mark.parametrize("norm", ["frozen_bn", "bn", "gn"])
def test_resnet_levels_strides_and_channels(depth, norm):
  model = ResNet(depth=depth, width=16, norm=norm)
  images = jax.ShapeDtypeStruct((2, 100, 132, 3), jnp.float32)
  variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), images)
  out = jax.eval_shape(lambda v, x: model.apply(v, x), variables, images)
  expected = resnet_out_channels(depth, 16)
  for level, (stride, channels) in enumerate(zip((4, 8, 16, 32), expected)):
    assert out[f"C{level + 2}"].shape == (2, -(-100 // stride), -(-132 // stride), channels)
  # frozen BN keeps its statistics outside the parameters; trainable BN has both.
  assert ("batch_stats" in variables) == (norm in ("frozen_bn", "bn"))


@pytest.mark.parametrize("extra_level", ["none", "max_pool", "conv"])
def test_fpn_extra_level(extra_level):
  features = {f"C{i}": jnp.asarray(np.random.default_rng(i).normal(size=(1, 64 // 2 ** (i - 2), 48 // 2 ** (i - 2), 8 * i)), jnp.float32)
              for i in range(2, 6)}
  fpn = FPN(channels=32, extra_level=extra_level)
  out, variables = fpn.init_with_output(jax.random.key(0), features)
  shapes = {k: v.shape for k, v in out.items()}
  expected = {"P2": (1, 64, 48, 32), "P3": (1, 32, 24, 32), "P4": (1, 16, 12, 32), "P5": (1, 8, 6, 32)}
  if extra_level != "none":
    expected["P6"] = (1, 4, 3, 32)
  assert shapes == expected
  assert ("extra_P6" in variables["params"]) == (extra_level == "conv")
  if extra_level == "max_pool":  # a 1x1 max-pool of stride 2 picks every other cell
    np.testing.assert_array_equal(out["P6"], out["P5"][:, ::2, ::2])


def small_spec(**sections):
  """A small detector; ``sections`` replace fields per section, e.g. ``rpn={"head": "rpn"}``."""
  spec = spec_from_config({
      "backbone": {"depth": 18, "width": 16, "norm": "gn"},
      "neck": {"channels": 32},
      "rpn": {"gn_groups": 8, "train_nms_pre": 100, "train_max_proposals": 50, "test_nms_pre": 100, "test_max_proposals": 40},
      "roi_head": {"box": {"fc_dim": 64, "num_samples": 32, "max_detections": 30}, "mask": {"channels": 16, "num_convs": 2}},
  })
  for name, fields in sections.items():
    part = getattr(spec, name)
    nested = {k: dataclasses.replace(getattr(part, k), **v) for k, v in fields.items() if isinstance(v, dict)}
    flat = {k: v for k, v in fields.items() if not isinstance(v, dict)}
    spec = dataclasses.replace(spec, **{name: dataclasses.replace(part, **flat, **nested)})
  return spec


def _mask_inputs(batch, boxes):
  masks = jax.ShapeDtypeStruct((batch, boxes, 56, 56), jnp.uint8)
  frames = jax.ShapeDtypeStruct((batch, boxes, 3), jnp.float32)
  return masks, frames


@pytest.mark.parametrize("rpn_head,roi_head", [("sadh", "box"), ("rpn", "box"), ("sadh", "mask")])
def test_detector_losses_and_predictions_shapes(rpn_head, roi_head):
  spec = small_spec(rpn={"head": rpn_head, "with_nwd": rpn_head == "sadh"}, roi_head={"type": roi_head})
  images = jax.ShapeDtypeStruct((2, 128, 96, 3), jnp.float32)
  boxes = jax.ShapeDtypeStruct((2, 7, 4), jnp.float32)
  labels = jax.ShapeDtypeStruct((2, 7), jnp.int32)
  valid = jax.ShapeDtypeStruct((2, 7), jnp.bool_)
  masks, frames = _mask_inputs(2, 7) if roi_head == "mask" else (None, None)
  model = TwoStageDetector(spec, train=True)
  key = jax.random.key(0)
  variables = jax.eval_shape(lambda x, b, l, v, m, f: model.init(key, x, b, l, v, key, m, f, method="losses"),
                             images, boxes, labels, valid, masks, frames)
  losses = jax.eval_shape(lambda p, x, b, l, v, m, f: model.apply(p, x, b, l, v, key, m, f, method="losses"),
                          variables, images, boxes, labels, valid, masks, frames)
  expected = {"rpn_cls", "rpn_bbox", "rcnn_cls", "rcnn_bbox"} | ({"rpn_nwd"} if rpn_head == "sadh" else set())
  expected |= {"rcnn_mask"} if roi_head == "mask" else set()
  assert set(losses) == expected and all(v.shape == () for v in losses.values())
  pred = jax.eval_shape(lambda p, x: TwoStageDetector(spec).apply(p, x, method="predict"), variables, images)
  assert pred.detections.boxes.shape == (2, 30, 4) and pred.detections.classes.shape == (2, 30)
  assert pred.detections.scores.shape == (2, 30) and pred.detections.valid.shape == (2, 30)
  assert pred.proposals.boxes.shape == (2, 40, 4)
  assert (pred.masks is None) == (roi_head == "box")
  if roi_head == "mask":
    assert pred.masks.shape == (2, 30, 28, 28)
  assert ("rpn_nwd" in variables["params"]["rpn"]) == (rpn_head == "sadh")


def test_spec_validation_names_the_section_and_key():
  with pytest.raises(ValueError, match=r"model.rpn.head must be one of"):
    spec_from_config({"rpn": {"head": "fcos"}})
  with pytest.raises(ValueError, match=r"model.neck.channels \(48\).*model.rpn.gn_groups \(32\)"):
    spec_from_config({"neck": {"channels": 48}})
  with pytest.raises(ValueError, match=r"'model.backbone.dept' \(did you mean 'model.backbone.depth'\?\)"):
    spec_from_config({"backbone": {"dept": 18}})
  with pytest.raises(ValueError, match=r"extra_level"):
    spec_from_config({"rpn": {"anchor_strides": [4, 8, 16, 32, 64]}})
  with pytest.raises(ValueError, match=r"model.roi_head.type"):
    spec_from_config({"roi_head": {"type": "cascade"}})
  spec = spec_from_config({"rpn": {"anchor_scales": [4.0]}, "backbone": {"depth": 18}, "neck": {"extra_level": "max_pool"}})
  assert spec.rpn.anchor_scales == (4.0,) and spec.backbone.depth == 18 and spec.neck.extra_level == "max_pool"
  assert spec_from_config(specs.default_model_config()) == specs.DetectorSpec()


def test_every_config_has_the_whole_model_section():
  from configs import faster_rcnn, sadh

  for module in (sadh, faster_rcnn):
    for data in ("synthetic", "acne_scu", "acne04", "deep_lesion"):
      config = module.get_config(data)
      assert set(config.model) == {"backbone", "neck", "rpn", "roi_head", "compute_dtype"}
      assert config.model.compute_dtype == "float32"
      assert config.model.to_dict().keys() == specs.default_model_config().keys()
      spec_from_config(config.model)  # builds


# ----------------------------------------------------------------------------------------
# SADH paper Table 4 options: each must change what is computed.


def test_branch_targets_match_their_definitions():
  predicted = jnp.asarray([[0.0, 0.0, 10.0, 10.0], [2.0, 3.0, 12.0, 9.0]])
  target = jnp.asarray([[5.0, 0.0, 15.0, 10.0], [2.0, 3.0, 12.0, 9.0]])
  # Box 0: intersection 50, union 150 -> IoU 1/3; enclosing box 15 x 10 = 150 -> GIoU 1/3;
  # centres 5 apart, enclosing diagonal^2 = 325 -> DIoU 1/3 - 25/325. Box 1 is exact.
  iou = np.array([1 / 3, 1.0])
  np.testing.assert_allclose(branch_target_function("iou")(predicted, target), iou, rtol=1e-6)
  np.testing.assert_allclose(branch_target_function("giou")(predicted, target), (iou + 1) / 2, rtol=1e-6)
  np.testing.assert_allclose(branch_target_function("diou")(predicted, target), ([1 / 3 - 25 / 325, 1.0] + np.ones(2)) / 2, rtol=1e-6)
  # NWD with C = 32: centres 5 apart, equal sizes -> exp(-5 / 32).
  np.testing.assert_allclose(branch_target_function("nwd", 32.0)(predicted, target), [np.exp(-5 / 32), 1.0], rtol=1e-6)


def _fixed_batch():
  rng = np.random.default_rng(0)
  images = rng.normal(size=(2, 64, 64, 3)).astype(np.float32)
  boxes = np.array([[[8, 8, 24, 20], [30, 34, 50, 58], [0, 0, 0, 0]], [[10, 40, 22, 52], [40, 10, 56, 30], [5, 5, 15, 15]]], np.float32)
  labels = np.array([[1, 3, 0], [0, 2, 4]], np.int32)
  valid = np.array([[True, True, False], [True, True, True]])
  return jnp.asarray(images), jnp.asarray(boxes), jnp.asarray(labels), jnp.asarray(valid)


def _losses(spec, with_masks=False):
  images, boxes, labels, valid = _fixed_batch()
  extra = {}
  if with_masks:
    from acne_jax.ops.mask_targets import rasterize_box_masks

    masks, frames = [], []
    for image_boxes in np.asarray(boxes):  # an ellipse-like octagon inside each box
      polygons = [np.array([[x1 + (x2 - x1) * u, y1 + (y2 - y1) * v] for u, v in
                            ((0.3, 0.05), (0.7, 0.05), (0.95, 0.3), (0.95, 0.7), (0.7, 0.95), (0.3, 0.95), (0.05, 0.7), (0.05, 0.3))])
                  for x1, y1, x2, y2 in image_boxes]
      m, f = rasterize_box_masks(polygons, np.maximum(image_boxes, [0, 0, 1, 1]), 56)
      masks.append(m)
      frames.append(f)
    extra = {"gt_masks": jnp.asarray(np.stack(masks)), "gt_mask_frames": jnp.asarray(np.stack(frames))}
  key = jax.random.key(0)
  model = TwoStageDetector(spec, train=True)
  # Parameters drawn with NumPy by shape (initialising eagerly would cost a minute): fan-in
  # scaled kernels, small random biases, GroupNorm scales near one. Every loss then depends on
  # every layer (the real initialisation starts the heads near-constant).
  abstract = jax.eval_shape(lambda: model.init(key, images, boxes, labels, valid, key, method="losses", **extra))
  variables = {"params": tiny.draw_parameters(abstract["params"], np.random.default_rng(7), spread=0.05)}
  out = jax.jit(lambda v: model.apply(v, images, boxes, labels, valid, jax.random.key(1), method="losses", **extra))(variables)
  return {k: float(v) for k, v in out.items()}


# The losses of one fixed batch through the small detector with fixed (drawn) parameters,
# as computed when the wiring was last checked: the ops are each tested against references,
# these numbers catch a change in how the components are connected. float32 on CPU.
PINNED_BOX = {"rpn_cls": 0.70212245, "rpn_bbox": 0.14522031, "rpn_nwd": 0.01204281, "rcnn_cls": 2.48002100, "rcnn_bbox": 0.31961864}
PINNED_MASK = {"rpn_cls": 0.62318528, "rpn_bbox": 0.12967853, "rpn_nwd": 0.01865936, "rcnn_cls": 2.47125125, "rcnn_bbox": 0.31961864,
               "rcnn_mask": 0.76089305}


def test_pinned_losses_of_the_box_and_mask_models():
  box = _losses(small_spec())
  mask = _losses(small_spec(roi_head={"type": "mask"}), with_masks=True)
  assert set(box) == set(PINNED_BOX) and set(mask) == set(PINNED_MASK)
  for name, value in PINNED_BOX.items():
    assert box[name] == pytest.approx(value, rel=2e-4), (name, box)
  for name, value in PINNED_MASK.items():
    assert mask[name] == pytest.approx(value, rel=2e-4), (name, mask)


def test_bfloat16_computes_in_bf16_and_keeps_parameters_and_losses_float32():
  """model.compute_dtype="bfloat16": every convolution and matmul of the losses takes bf16
  operands, while the parameters' gradients and every loss stay float32, and the losses of the
  pinned batch stay near the float32 ones (bf16 keeps ~3 significant digits)."""
  spec = dataclasses.replace(small_spec(), compute_dtype="bfloat16")
  images, boxes, labels, valid = _fixed_batch()
  key = jax.random.key(0)
  model = TwoStageDetector(spec, train=True)
  abstract = jax.eval_shape(lambda: model.init(key, images, boxes, labels, valid, key, method="losses"))
  params = tiny.draw_parameters(abstract["params"], np.random.default_rng(7), spread=0.05)

  def total(p):
    out = model.apply({"params": p}, images, boxes, labels, valid, jax.random.key(1), method="losses")
    return sum(out.values()), out

  jaxpr = jax.make_jaxpr(jax.grad(total, has_aux=True))(params)
  heavy = [e for e in _equations(jaxpr.jaxpr) if e.primitive.name in ("conv_general_dilated", "dot_general")]
  operand_dtypes = {str(v.aval.dtype) for e in heavy for v in e.invars[:2]}
  assert heavy and operand_dtypes == {"bfloat16"}, operand_dtypes
  grads, _ = jax.eval_shape(jax.grad(total, has_aux=True), params)
  assert {str(g.dtype) for g in jax.tree_util.tree_leaves(grads)} == {"float32"}
  losses = jax.jit(lambda p: total(p)[1])(params)
  assert {str(v.dtype) for v in losses.values()} == {"float32"}
  for name, value in PINNED_BOX.items():
    assert float(losses[name]) == pytest.approx(value, rel=0.03), (name, value, float(losses[name]))
  with pytest.raises(ValueError, match="model.compute_dtype"):
    dataclasses.replace(spec, compute_dtype="float16")


def _equations(jaxpr):
  """Every equation of ``jaxpr`` and of the jaxprs nested in it (scan, while, pjit bodies)."""
  for equation in jaxpr.eqns:
    yield equation
    for param in equation.params.values():
      for inner in (param if isinstance(param, (list, tuple)) else [param]):
        if hasattr(inner, "jaxpr"):  # ClosedJaxpr
          yield from _equations(inner.jaxpr)
        elif hasattr(inner, "eqns"):  # Jaxpr
          yield from _equations(inner)


def _rpn_branch_loss(**options):
  """rpn_losses of fixed random predictions over 3 x 3 anchors at 4 px stride, one image."""
  from acne_jax.models.rpn import LevelPredictions
  from acne_jax.models.rpn_loss import rpn_losses
  from acne_jax.ops import anchors as anchor_ops

  anchors = [jnp.asarray(a) for a in anchor_ops.multilevel_anchors((16, 16), (4,), (4.0,), (0.5, 1.0, 2.0))]
  n = anchors[0].shape[0]
  rng = np.random.default_rng(3)
  predictions = [LevelPredictions(jnp.asarray(rng.normal(size=(1, n)), jnp.float32), jnp.asarray(rng.normal(0, 0.3, (1, n, 4)), jnp.float32),
                                  jnp.asarray(rng.normal(size=(1, n)), jnp.float32))]
  gt = jnp.asarray([[[2.0, 3.0, 14.0, 12.0], [0.0, 0.0, 0.0, 0.0]]])
  return rpn_losses(jax.random.key(0), predictions, anchors, gt, jnp.asarray([[True, False]]), **options)


def test_nwd_branch_options_change_the_branch_loss():
  base = _rpn_branch_loss()
  values = {"nwd/sbce": float(base["rpn_nwd"])}
  for option in ({"branch_target": "iou"}, {"branch_target": "giou"}, {"branch_target": "diou"}, {"branch_loss": "l1"}):
    out = _rpn_branch_loss(**option)
    values[str(option)] = float(out["rpn_nwd"])
    assert float(out["rpn_cls"]) == float(base["rpn_cls"]) and float(out["rpn_bbox"]) == float(base["rpn_bbox"])
  assert len({round(v, 6) for v in values.values()}) == len(values), values  # five different losses
  # L1 against SBCE: for the same |y - p| in [0, 1), -log(1 - d) >= d, so SBCE is the larger.
  assert values["nwd/sbce"] > values[str({"branch_loss": "l1"})] > 0


def test_detector_passes_the_rpn_options_to_the_losses(monkeypatch):
  """The spec's Table 4 options reach rpn_losses (traced with eval_shape: nothing compiles)."""
  from acne_jax.models import detector

  seen = []
  original = detector.rpn_losses

  def spy(*args):
    seen.append(args)
    return original(*args)

  monkeypatch.setattr(detector, "rpn_losses", spy)
  spec = small_spec(rpn={"nwd_target": "diou", "nwd_loss": "l1", "nwd_constant": 12.0, "nwd_loss_weight": 0.5, "pos_iou": 0.6})
  images = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
  boxes = jax.ShapeDtypeStruct((1, 3, 4), jnp.float32)
  labels = jax.ShapeDtypeStruct((1, 3), jnp.int32)
  valid = jax.ShapeDtypeStruct((1, 3), jnp.bool_)
  key = jax.random.key(0)
  model = TwoStageDetector(spec, train=True)
  variables = jax.eval_shape(lambda x, b, l, v: model.init(key, x, b, l, v, key, method="losses"), images, boxes, labels, valid)
  jax.eval_shape(lambda p, x, b, l, v: model.apply(p, x, b, l, v, key, method="losses"), variables, images, boxes, labels, valid)
  assert seen and seen[-1][5:] == (0.6, 0.3, 0.3, 256, 0.5, 12.0, 0.5, "diou", "l1")


def test_nwd_branch_on_the_vanilla_rpn_head():
  spec = small_spec(rpn={"head": "rpn", "with_nwd": True})
  images = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
  variables = jax.eval_shape(lambda x: TwoStageDetector(spec).init(jax.random.key(0), x, method="predict"), images)
  assert set(variables["params"]["rpn"]) == {"rpn_conv", "rpn_cls", "rpn_reg", "rpn_nwd"}
  boxes = jax.ShapeDtypeStruct((1, 3, 4), jnp.float32)
  labels = jax.ShapeDtypeStruct((1, 3), jnp.int32)
  valid = jax.ShapeDtypeStruct((1, 3), jnp.bool_)
  key = jax.random.key(0)
  losses = jax.eval_shape(lambda p, x, b, l, v: TwoStageDetector(spec, train=True).apply(p, x, b, l, v, key, method="losses"),
                          variables, images, boxes, labels, valid)
  assert "rpn_nwd" in losses


@pytest.mark.parametrize("kernel", [1, 3])
def test_sadh_classification_tower_kernel(kernel):
  spec = small_spec(rpn={"cls_kernel": kernel})
  images = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
  variables = jax.eval_shape(lambda x: TwoStageDetector(spec).init(jax.random.key(0), x, method="predict"), images)
  assert variables["params"]["rpn"]["cls_tower_conv"]["kernel"].shape == (kernel, kernel, 32, 32)
