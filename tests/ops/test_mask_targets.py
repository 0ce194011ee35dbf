"""Mask targets from per-box bitmaps against RoIAlign of the full-image mask, worked in float64."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from acne_jax.ops import mask_targets as mt


def roi_align_reference(image: np.ndarray, box, out: int = 28) -> np.ndarray:
  """torchvision ``roi_align(aligned=True, sampling_ratio=0)`` of one single-channel map, float64,
  written from its definition (a sample's bilinear read, averaged over an adaptive grid)."""
  height, width = image.shape
  x1, y1, x2, y2 = (float(v) - 0.5 for v in box)
  roi_w, roi_h = x2 - x1, y2 - y1
  bin_w, bin_h = roi_w / out, roi_h / out
  grid_w, grid_h = max(math.ceil(roi_w / out), 1), max(math.ceil(roi_h / out), 1)

  def read(y, x):
    if y < -1.0 or y > height or x < -1.0 or x > width:
      return 0.0
    y, x = max(y, 0.0), max(x, 0.0)
    y0, x0 = int(math.floor(y)), int(math.floor(x))
    if y0 >= height - 1:
      y0 = y1_ = height - 1
      y = float(y0)
    else:
      y1_ = y0 + 1
    if x0 >= width - 1:
      x0 = x1_ = width - 1
      x = float(x0)
    else:
      x1_ = x0 + 1
    ly, lx = y - y0, x - x0
    return ((1 - ly) * (1 - lx) * image[y0, x0] + (1 - ly) * lx * image[y0, x1_] + ly * (1 - lx) * image[y1_, x0]
            + ly * lx * image[y1_, x1_])

  result = np.zeros((out, out))
  for ph in range(out):
    for pw in range(out):
      total = 0.0
      for iy in range(grid_h):
        y = y1 + ph * bin_h + (iy + 0.5) * bin_h / grid_h
        for ix in range(grid_w):
          x = x1 + pw * bin_w + (ix + 0.5) * bin_w / grid_w
          total += read(y, x)
      result[ph, pw] = total / (grid_h * grid_w)
  return result


def _lesion(cx, cy, radius, seed=0):
  rng = np.random.default_rng(seed)
  angles = np.sort(rng.uniform(0, 2 * np.pi, 14))
  radii = radius * rng.uniform(0.6, 1.0, len(angles))
  return np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], axis=1)


def _box(polygon):
  return np.array([polygon[:, 0].min(), polygon[:, 1].min(), polygon[:, 0].max(), polygon[:, 1].max()])


def test_targets_equal_roi_align_of_the_full_image_mask():
  height, width = 100, 120
  polygons = [_lesion(40.3, 50.7, 14.0, 0), _lesion(80.2, 30.1, 9.0, 1), _lesion(60.0, 70.0, 25.0, 2)]  # 28-50 px across
  boxes = np.stack([_box(p) for p in polygons])
  masks, frames = mt.rasterize_box_masks(polygons, boxes, 56)
  assert np.all(frames[:, 2] == 1)  # every lesion fits a 56 px bitmap: the exact case
  rois, matched = [], []
  for g, box in enumerate(boxes):
    w, h = box[2] - box[0], box[3] - box[1]
    rois += [box, box + [3.3, -2.7, 3.3, -2.7], [box[0] - 0.2 * w, box[1] - 0.1 * h, box[2] + 0.3 * w, box[3] + 0.15 * h]]
    matched += [g, g, g]
  got = np.asarray(mt.mask_target_values(jnp.asarray(masks), jnp.asarray(frames), jnp.asarray(np.array(rois), jnp.float32),
                                         jnp.asarray(matched, jnp.int32)))
  for r, (roi, g) in enumerate(zip(rois, matched)):
    full = mt.rasterize_full(polygons[g], height, width).astype(np.float64)
    expected = roi_align_reference(full, roi)
    np.testing.assert_allclose(got[r], expected, atol=1e-4, err_msg=f"roi {r}")
    assert 0.05 < expected.mean() < 0.95  # the RoI sees the lesion and its surroundings
  binary = np.asarray(mt.mask_targets(jnp.asarray(masks), jnp.asarray(frames), jnp.asarray(np.array(rois), jnp.float32),
                                      jnp.asarray(matched, jnp.int32)))
  np.testing.assert_array_equal(binary, (got >= 0.5).astype(np.float32))


def test_large_lesions_are_downsampled_and_stay_close():
  polygon = _lesion(90.0, 80.0, 60.0, 3)  # about 100 px across: scale 2 at M = 56
  box = _box(polygon)
  masks, frames = mt.rasterize_box_masks([polygon], box[None], 56)
  assert frames[0, 2] == 2 and frames[0, 0] == math.floor(box[0]) - 1
  got = np.asarray(mt.mask_targets(jnp.asarray(masks), jnp.asarray(frames), jnp.asarray(box[None], jnp.float32), jnp.asarray([0])))
  expected = roi_align_reference(mt.rasterize_full(polygon, 200, 200).astype(np.float64), box) >= 0.5
  assert np.mean(got[0] == expected) > 0.98


def test_bitmap_frame_and_bad_polygons():
  polygon = np.array([[10.2, 20.5], [30.7, 21.0], [25.0, 40.3]])
  masks, frames = mt.rasterize_box_masks([polygon], _box(polygon)[None], 56)
  np.testing.assert_array_equal(frames, [[9, 19, 1]])
  full = mt.rasterize_full(polygon, 80, 80)
  np.testing.assert_array_equal(masks[0] // 255, full[19:19 + 56, 9:9 + 56])  # the full mask's pixels, a zero row/column first
  assert masks[0, 0].sum() == 0 and masks[0, :, 0].sum() == 0
  with pytest.raises(ValueError, match="polygon 0 has 2 vertices"):
    mt.rasterize_box_masks([polygon[:2]], _box(polygon)[None], 56)
