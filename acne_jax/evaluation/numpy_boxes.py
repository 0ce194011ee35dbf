"""Float64 NumPy box overlaps for host-side evaluation, analysis and tile merging.

Same convention as ``acne_jax.ops.boxes`` (x1y1x2y2 pixels, no +1, empty boxes have area 0, IoU
0 where the union is empty), in float64 NumPy because these run outside jit on results.
"""

from __future__ import annotations

import numpy as np


def elementwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """IoU of broadcastable ``[..., 4]`` box arrays -> ``[...]``."""
  iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
  ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
  inter = iw * ih
  area_a = np.clip(a[..., 2] - a[..., 0], 0, None) * np.clip(a[..., 3] - a[..., 1], 0, None)
  area_b = np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)
  union = area_a + area_b - inter
  return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def pairwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """IoU of ``[N, 4]`` and ``[M, 4]`` boxes -> ``[N, M]`` float64."""
  a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
  return elementwise_iou(a[:, None, :], b[None, :, :])
