"""Anchors against a loop reference written from MMDetection 2's definition, and hand values."""

import math

import numpy as np
import pytest

from acne_jax.ops import anchors as anchor_ops


def anchors_reference(feature_size, stride, scales, ratios, center_offset=0.0):
  """Loops in the documented order: row, column, ratio, scale."""
  out = []
  for i in range(feature_size[0]):
    for j in range(feature_size[1]):
      for r in ratios:
        for s in scales:
          w = stride * s / math.sqrt(r)
          h = stride * s * math.sqrt(r)
          cx = j * stride + center_offset * stride
          cy = i * stride + center_offset * stride
          out.append([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
  return np.array(out).reshape(-1, 4)


@pytest.mark.parametrize("feature_size,stride,scales,ratios,offset", [
    ((3, 5), 4, (8.0,), (0.5, 1.0, 2.0), 0.0),
    ((2, 2), 16, (4.0, 8.0, 16.0), (0.5, 1.0), 0.5),
    ((1, 7), 32, (2.0 ** 0, 2.0 ** (1 / 3), 2.0 ** (2 / 3)), (1.0,), 0.0),
])
def test_anchor_grid_matches_reference(feature_size, stride, scales, ratios, offset):
  got = anchor_ops.anchor_grid(feature_size, stride, scales=scales, ratios=ratios, center_offset=offset, dtype=np.float64)
  np.testing.assert_allclose(got, anchors_reference(feature_size, stride, scales, ratios, offset), atol=1e-9)


def test_sadh_anchors_hand_values_and_counts():
  levels = anchor_ops.multilevel_anchors((1024, 1024))
  assert [a.shape[0] for a in levels] == [256 * 256 * 3, 128 * 128 * 3, 64 * 64 * 3, 32 * 32 * 3]
  assert all(a.dtype == np.float32 for a in levels)
  # P2, location (0, 0): scale 8 x stride 4 = 32-px square; ratio 0.5 (h/w) gives w = 32 / sqrt(0.5).
  w, h = 32 / math.sqrt(0.5), 32 * math.sqrt(0.5)
  np.testing.assert_allclose(levels[0][:3], [[-w / 2, -h / 2, w / 2, h / 2], [-16, -16, 16, 16], [-h / 2, -w / 2, h / 2, w / 2]], rtol=1e-6)
  # P5, second location in the first row is shifted by one stride in x.
  np.testing.assert_allclose(levels[3][4], [32 - 128, -128, 32 + 128, 128])
  # sqrt(area) of every base anchor is scale * stride.
  for level, stride in zip(levels, (4, 8, 16, 32)):
    areas = (level[:3, 2] - level[:3, 0]) * (level[:3, 3] - level[:3, 1])
    np.testing.assert_allclose(np.sqrt(areas), 8 * stride, rtol=1e-6)


def test_feature_sizes_round_up_and_base_sizes_checked():
  assert anchor_ops.feature_sizes((1000, 600), (4, 32)) == [(250, 150), (32, 19)]
  with pytest.raises(ValueError, match="base_sizes"):
    anchor_ops.multilevel_anchors((64, 64), strides=(4, 8), base_sizes=(4,))
  with pytest.raises(ValueError, match="base_size"):
    anchor_ops.base_anchors(0.0)


@pytest.mark.parametrize("image_size", [(800, 1344), (608, 800), (128, 160), (96, 224)])
def test_torchvision_anchor_generator(image_size, tv):
  """round_base + strides_from_sizes reproduce torchvision's AnchorGenerator (sizes 32-512 on
  P2-P6, ratios 0.5/1/2), including its image // feature grid step on levels whose map was rounded up."""
  import torch
  from torchvision.models.detection.anchor_utils import AnchorGenerator
  from torchvision.models.detection.image_list import ImageList

  strides = (4, 8, 16, 32, 64)
  sizes = anchor_ops.feature_sizes(image_size, strides)
  generator = AnchorGenerator(sizes=((32,), (64,), (128,), (256,), (512,)), aspect_ratios=((0.5, 1.0, 2.0),) * 5)
  features = [torch.zeros(1, 1, h, w) for h, w in sizes]
  theirs = generator(ImageList(torch.zeros(1, 3, *image_size), [image_size]), features)[0].numpy()
  ours = np.concatenate(anchor_ops.multilevel_anchors(image_size, strides, (8.0,), (0.5, 1.0, 2.0), round_base=True,
                                                   strides_from_sizes=True))
  np.testing.assert_array_equal(ours, theirs)
