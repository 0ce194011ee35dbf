"""Shapes through the backbone, FPN and the whole detector (jax.eval_shape: nothing is compiled)."""

import dataclasses

import jax
import jax.numpy as jnp
import pytest

from acne_jax.models.detector import DetectorSpec, TwoStageDetector, spec_from_config
from acne_jax.models.fpn import FPN
from acne_jax.models.resnet import ResNet, resnet_out_channels


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


def test_fpn_p2_to_p6():
  features = {f"C{i}": jnp.zeros((1, 64 // 2 ** (i - 2), 48 // 2 ** (i - 2), 8 * i)) for i in range(2, 6)}
  out = jax.eval_shape(lambda f: FPN(channels=32, add_p6=True).init_with_output(jax.random.key(0), f)[0], features)
  assert {k: v.shape for k, v in out.items()} == {
      "P2": (1, 64, 48, 32), "P3": (1, 32, 24, 32), "P4": (1, 16, 12, 32), "P5": (1, 8, 6, 32), "P6": (1, 4, 3, 32)}


@pytest.mark.parametrize("rpn_head", ["sadh", "rpn"])
def test_detector_losses_and_predictions_shapes(rpn_head):
  spec = DetectorSpec(num_classes=10, depth=18, width=16, norm="gn", fpn_channels=32, gn_groups=8, fc_dim=64,
                      rpn_head=rpn_head, with_nwd=rpn_head == "sadh", train_nms_pre=100, train_max_proposals=50,
                      test_nms_pre=100, test_max_proposals=40, rcnn_num_samples=32, max_detections=30)
  images = jax.ShapeDtypeStruct((2, 128, 96, 3), jnp.float32)
  boxes = jax.ShapeDtypeStruct((2, 7, 4), jnp.float32)
  labels = jax.ShapeDtypeStruct((2, 7), jnp.int32)
  valid = jax.ShapeDtypeStruct((2, 7), jnp.bool_)
  model = TwoStageDetector(spec, train=True)
  key = jax.random.key(0)
  variables = jax.eval_shape(lambda x, b, l, v: model.init(key, x, b, l, v, key, method="losses"), images, boxes, labels, valid)
  losses = jax.eval_shape(lambda p, x, b, l, v: model.apply(p, x, b, l, v, key, method="losses"), variables, images, boxes, labels, valid)
  expected = {"rpn_cls", "rpn_bbox", "rcnn_cls", "rcnn_bbox"} | ({"rpn_nwd"} if rpn_head == "sadh" else set())
  assert set(losses) == expected and all(v.shape == () for v in losses.values())
  pred = jax.eval_shape(lambda p, x: TwoStageDetector(spec).apply(p, x, method="predict"), variables, images)
  assert pred.detections.boxes.shape == (2, 30, 4) and pred.detections.classes.shape == (2, 30)
  assert pred.detections.scores.shape == (2, 30) and pred.detections.valid.shape == (2, 30)
  assert pred.proposals.boxes.shape == (2, 40, 4)
  assert ("rpn_nwd" in variables["params"]["rpn"]) == (rpn_head == "sadh")


def test_spec_validation_names_the_key():
  with pytest.raises(ValueError, match="model.rpn_head"):
    DetectorSpec(rpn_head="fcos")
  with pytest.raises(ValueError, match="model.fpn_channels"):
    DetectorSpec(fpn_channels=48, gn_groups=32)
  spec = spec_from_config({"anchor_scales": [4.0], "depth": 18})
  assert spec.anchor_scales == (4.0,) and dataclasses.replace(spec, depth=50).depth == 50
