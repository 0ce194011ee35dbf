"""Anchor grids in the MMDetection 2 convention (``AnchorGenerator``, ``center_offset=0``).

For a level with stride ``s`` and base size ``b`` (default ``b = s``), each ratio ``r``
(height / width) and scale ``k`` gives one base anchor centred on the origin with

    h = b * k * sqrt(r),   w = b * k / sqrt(r)

(no rounding by default: MMDetection 2 does not round; ``round_base=True`` rounds the corners
of these centred base anchors to whole pixels, half to even, as torchvision's
``AnchorGenerator`` and Detectron do). Anchors are
ordered ratio-major then scale (MMDetection's ``scale_major=True``). The base anchors are
then shifted to every feature-map location ``(x, y) = (j * s, i * s)``: with
``center_offset=0`` the first anchor is centred on the image's top-left corner, not on the
centre of the first stride cell. The flattened order is location-major (row ``i``, column
``j``), then anchor, i.e. ``[H, W, A, 4] -> [H * W * A, 4]``, matching an NHWC head output of
``A`` channels reshaped the same way.

The SADH setting: strides (4, 8, 16, 32) on P2-P5, scale 8, ratios (0.5, 1, 2), so base
anchors of sqrt-area 32, 64, 128 and 256 px.

Anchors depend only on the image size, so they are computed once, in NumPy (float64, then
cast), outside any jitted step.
"""

from __future__ import annotations

import math
from typing import List, Sequence, Tuple

import numpy as np


def base_anchors(
    base_size: float,
    scales: Sequence[float] = (8.0,),
    ratios: Sequence[float] = (0.5, 1.0, 2.0),
    center_offset: float = 0.0,
    round_base: bool = False,
) -> np.ndarray:
  """Anchors of one level centred on location (0, 0).

  Args:
    base_size: side of the reference square, usually the level's stride.
    scales: multipliers of ``base_size``.
    ratios: height / width aspect ratios.
    center_offset: centre of the location in units of ``base_size`` (0: the corner, as
      MMDetection 2; 0.5: the cell centre).
    round_base: round the corners (of the anchors centred on 0) to whole pixels (torchvision).

  Returns:
    ``[len(ratios) * len(scales), 4]`` float64 x1y1x2y2, ratio-major.
  """
  if base_size <= 0 or not scales or not ratios:
    raise ValueError(f"base_anchors: need base_size > 0 and non-empty scales/ratios; got {base_size}, {scales}, {ratios}.")
  h_ratios = np.sqrt(np.asarray(ratios, dtype=np.float64))
  w_ratios = 1.0 / h_ratios
  scales = np.asarray(scales, dtype=np.float64)
  widths = (base_size * w_ratios[:, None] * scales[None, :]).reshape(-1)
  heights = (base_size * h_ratios[:, None] * scales[None, :]).reshape(-1)
  half = np.stack([-widths, -heights, widths, heights], axis=-1) / 2.0
  if round_base:
    half = np.round(half)
  return center_offset * base_size + half


def anchor_grid(
    feature_size: Tuple[int, int],
    stride: float | Tuple[float, float],
    base_size: float | None = None,
    scales: Sequence[float] = (8.0,),
    ratios: Sequence[float] = (0.5, 1.0, 2.0),
    center_offset: float = 0.0,
    dtype=np.float32,
    round_base: bool = False,
) -> np.ndarray:
  """All anchors of one feature level.

  Args:
    feature_size: ``(height, width)`` of the feature map.
    stride: pixels between adjacent locations, or ``(stride_y, stride_x)``.
    base_size: defaults to ``stride`` (the first, when a pair).
    scales, ratios, center_offset, round_base: as :func:`base_anchors`.
    dtype: output dtype.

  Returns:
    ``[height * width * A, 4]`` x1y1x2y2 with ``A = len(scales) * len(ratios)``, ordered
    row, column, anchor.
  """
  height, width = feature_size
  stride_y, stride_x = stride if isinstance(stride, (tuple, list)) else (stride, stride)
  base = base_anchors(stride_y if base_size is None else base_size, scales, ratios, center_offset, round_base)
  shift_x = np.arange(width, dtype=np.float64) * stride_x
  shift_y = np.arange(height, dtype=np.float64) * stride_y
  yy, xx = np.meshgrid(shift_y, shift_x, indexing="ij")
  shifts = np.stack([xx, yy, xx, yy], axis=-1).reshape(-1, 1, 4)
  return (shifts + base[None, :, :]).reshape(-1, 4).astype(dtype)


def feature_sizes(image_size: Tuple[int, int], strides: Sequence[int]) -> List[Tuple[int, int]]:
  """Feature-map ``(height, width)`` per stride for an image, ``ceil(size / stride)``.

  This is what a ResNet/FPN with 'same' padding produces for any input size.
  """
  return [(math.ceil(image_size[0] / s), math.ceil(image_size[1] / s)) for s in strides]


def multilevel_anchors(
    image_size: Tuple[int, int],
    strides: Sequence[int] = (4, 8, 16, 32),
    scales: Sequence[float] = (8.0,),
    ratios: Sequence[float] = (0.5, 1.0, 2.0),
    base_sizes: Sequence[float] | None = None,
    center_offset: float = 0.0,
    dtype=np.float32,
    round_base: bool = False,
    strides_from_sizes: bool = False,
) -> List[np.ndarray]:
  """Anchors of every level for an image size; computed once per size, outside jit.

  Args:
    image_size: ``(height, width)`` of the (padded) network input.
    strides: one stride per level, finest first (P2-P5: 4, 8, 16, 32).
    scales, ratios, center_offset, round_base: as :func:`base_anchors`.
    base_sizes: one per level; defaults to the strides.
    dtype: output dtype.
    strides_from_sizes: shift the anchors by ``image_size // feature_size`` per axis instead of
      the nominal stride, as torchvision's ``AnchorGenerator`` does: where ``ceil`` rounding made
      a level's map larger than ``image / stride`` (P6 of an 800 x 1344 input is 13 x 21, so
      its vertical step is 61 px, not 64), the grid is spaced that way.

  Returns:
    A list with, per level, ``[H_l * W_l * A, 4]`` x1y1x2y2.
  """
  if base_sizes is None:
    base_sizes = strides
  if len(base_sizes) != len(strides):
    raise ValueError(f"multilevel_anchors: base_sizes has {len(base_sizes)} entries but strides has {len(strides)}.")
  sizes = feature_sizes(image_size, strides)
  steps = [(image_size[0] // h, image_size[1] // w) if strides_from_sizes else s for (h, w), s in zip(sizes, strides)]
  return [
      anchor_grid(size, step, base, scales, ratios, center_offset, dtype, round_base)
      for size, step, base in zip(sizes, steps, base_sizes)
  ]
