"""Mask R-CNN mask targets from per-box ground-truth bitmaps, without full-image masks.

MMDetection cuts an RoI's ``m x m`` mask target from the full-image binary mask of its matched
ground truth: RoIAlign (``aligned=True``, adaptive sampling) of that mask over the RoI, then
``>= 0.5``. Storing a full-image mask per box is not an option here (512 boxes of a 1024 x 1024
crop are 512 MB), so each ground-truth mask is kept as an ``M x M`` bitmap (``M = 56`` by
default) over its own box, with its **frame** ``(x0, y0, scale)``: bitmap cell ``(i, j)`` is
the image region ``[x0 + j s, x0 + (j + 1) s] x [y0 + i s, y0 + (i + 1) s]``.

- :func:`rasterize_box_masks` (NumPy, in the input pipeline) makes the bitmaps from polygons:
  ``x0 = floor(box x1) - 1``, ``y0 = floor(box y1) - 1`` (one cell of zeros before the box, so
  samples just outside it interpolate with zeros as they would in the full image), and
  ``scale = max(1, ceil((extent + 2) / M))`` for the box's integer extent. With ``scale = 1``
  (lesions up to ``M - 2`` pixels, most acne lesions at ``M = 56``) the bitmap **is** the
  full-image mask's pixels over that window, so the targets below equal MMDetection's exactly;
  larger lesions are area-averaged ``scale x scale`` blocks, a close approximation.
- :func:`mask_target_values` (jnp, inside jit) RoIAligns each RoI from its matched bitmap, and
  :func:`mask_targets` binarises at 0.5.

Known difference: at the image border the full-image RoIAlign clamps samples within half a
pixel outside the image to the edge pixel, while the bitmap's zero margin interpolates them
towards zero; it changes only targets of RoIs reaching past the image edge.
"""

from __future__ import annotations

import math
from typing import Sequence, Tuple

import cv2
import jax.numpy as jnp
import numpy as np

from acne_jax.ops import roi_align as roi_ops
from acne_jax.ops.shapes import check_shape

DEFAULT_MASK_SIZE = 56
_SHIFT = 4  # sub-pixel bits for cv2.fillPoly


def _fill(polygon: np.ndarray, height: int, width: int, origin: Tuple[float, float]) -> np.ndarray:
  """uint8 ``[height, width]``: 1 where the pixel centre is inside ``polygon`` (x, y continuous
  coordinates), for a raster whose top-left pixel starts at ``origin``."""
  raster = np.zeros((height, width), np.uint8)
  pts = np.round((np.asarray(polygon, np.float64) - np.asarray(origin, np.float64) - 0.5) * (1 << _SHIFT)).astype(np.int32)
  cv2.fillPoly(raster, [pts], 1, lineType=cv2.LINE_8, shift=_SHIFT)
  return raster


def rasterize_full(polygon: np.ndarray, height: int, width: int) -> np.ndarray:
  """uint8 ``[height, width]`` full-image binary mask of a polygon (the reference's mask)."""
  return _fill(polygon, height, width, (0.0, 0.0))


def rasterize_box_masks(polygons: Sequence[np.ndarray], boxes: np.ndarray, mask_size: int = DEFAULT_MASK_SIZE
                        ) -> Tuple[np.ndarray, np.ndarray]:
  """Ground-truth mask bitmaps over their own boxes (module docstring).

  Args:
    polygons: K float ``[V_k, 2]`` (x, y) continuous pixel coordinates, ``V_k >= 3``.
    boxes: ``[K, 4]`` float x1y1x2y2, each polygon's box.
    mask_size: ``M``.

  Returns:
    ``(masks uint8 [K, M, M]`` with 255 inside (area fractions for ``scale > 1``),
    ``frames float32 [K, 3]`` ``(x0, y0, scale))``.

  Raises:
    ValueError: for a polygon with fewer than 3 vertices.
  """
  boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
  if len(polygons) != len(boxes):
    raise ValueError(f"rasterize_box_masks: {len(polygons)} polygons but {len(boxes)} boxes.")
  masks = np.zeros((len(boxes), mask_size, mask_size), np.uint8)
  frames = np.zeros((len(boxes), 3), np.float32)
  for k, (polygon, box) in enumerate(zip(polygons, boxes)):
    polygon = np.asarray(polygon, np.float64).reshape(-1, 2)
    if len(polygon) < 3:
      raise ValueError(f"rasterize_box_masks: polygon {k} has {len(polygon)} vertices; a mask needs at least 3.")
    x0, y0 = math.floor(box[0]) - 1, math.floor(box[1]) - 1
    extent = max(math.ceil(box[2]) - x0, math.ceil(box[3]) - y0) + 1
    scale = max(1, math.ceil(extent / mask_size))
    raster = _fill(polygon, mask_size * scale, mask_size * scale, (x0, y0))
    if scale > 1:
      coverage = raster.reshape(mask_size, scale, mask_size, scale).mean(axis=(1, 3))
      masks[k] = np.round(coverage * 255.0).astype(np.uint8)
    else:
      masks[k] = raster * 255
    frames[k] = (x0, y0, scale)
  return masks, frames


def mask_target_values(masks: jnp.ndarray, frames: jnp.ndarray, rois: jnp.ndarray, matched: jnp.ndarray,
                       output_size: int = 28, max_sampling_ratio: int = 4) -> jnp.ndarray:
  """RoIAlign (``aligned=True``, adaptive sampling) of each RoI's matched ground-truth mask.

  Args:
    masks: ``[G, M, M]`` uint8 bitmaps of :func:`rasterize_box_masks` (or float in [0, 1]).
    frames: ``[G, 3]`` float32 ``(x0, y0, scale)``.
    rois: ``[R, 4]`` float x1y1x2y2 image pixels.
    matched: ``[R]`` int index into ``G`` of each RoI's ground truth.
    output_size: ``m`` (28).
    max_sampling_ratio: static cap of the adaptive sampling grid (exact for RoIs up to
      ``m * max_sampling_ratio * scale`` pixels; see ``ops.roi_align``).

  Returns:
    ``[R, m, m]`` float32 mask coverage in [0, 1].
  """
  dims = check_shape("mask_target_values", "masks", masks, "[G, M, M]")
  check_shape("mask_target_values", "frames", frames, "[G, 3]", dims)
  check_shape("mask_target_values", "rois", rois, "[R, 4]")
  check_shape("mask_target_values", "matched", matched, "[R]", {"R": rois.shape[0]})
  bitmaps = masks.astype(jnp.float32)
  if masks.dtype == jnp.uint8:
    bitmaps = bitmaps / 255.0
  frame = frames.astype(jnp.float32)[matched]  # [R, 3]
  origin = jnp.concatenate([frame[:, :2], frame[:, :2]], axis=1)
  local = (rois.astype(jnp.float32) - origin) / frame[:, 2:3]
  indexed = jnp.concatenate([matched.astype(jnp.float32)[:, None], local], axis=1)
  values = roi_ops.roi_align(bitmaps[..., None], indexed, output_size, spatial_scale=1.0, sampling_ratio=0, aligned=True,
                             max_sampling_ratio=max_sampling_ratio)
  return values[..., 0]


def mask_targets(masks, frames, rois, matched, output_size: int = 28, max_sampling_ratio: int = 4) -> jnp.ndarray:
  """``[R, m, m]`` float32 binary targets: :func:`mask_target_values` ``>= 0.5``."""
  return (mask_target_values(masks, frames, rois, matched, output_size, max_sampling_ratio) >= 0.5).astype(jnp.float32)
