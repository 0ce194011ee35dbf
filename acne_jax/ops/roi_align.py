"""RoIAlign on NHWC feature maps, single-level and FPN multi-level.

:func:`roi_align` reproduces ``torchvision.ops.roi_align`` (He et al., Mask R-CNN, with
the ``aligned`` half-pixel fix of Detectron2's ROIAlignV2) on ``[B, H, W, C]`` features.
:func:`multilevel_roi_align` assigns each RoI to one FPN level
(:func:`map_rois_to_levels`) and samples every RoI from its own level in one gather.

Algorithm, per RoI ``(b, x1, y1, x2, y2)`` and output bin ``(ph, pw)`` (torchvision's
``roi_align_kernel.cpp``, written here for one axis; the other is the same):

* ``start = x1 * spatial_scale - offset`` with ``offset = 0.5`` if ``aligned`` else 0;
  ``length = x2 * spatial_scale - offset - start``, clamped to ``>= 1`` only when not
  aligned (an aligned RoI may have zero or negative length, as in torchvision);
  ``bin = length / pooled``.
* ``grid = sampling_ratio`` if ``> 0`` else ``ceil(bin)`` samples per bin, at
  ``start + pw * bin + (i + 0.5) * bin / grid`` for ``i < grid``.
* A sample at ``(y, x)`` contributes 0 if ``y < -1``, ``y > H``, ``x < -1`` or ``x > W``;
  otherwise it is the bilinear interpolation of the map at ``(max(y, 0), max(x, 0))``,
  with coordinates at or beyond the last row/column reading that row/column.
* The bin's value is the sum of its samples divided by ``max(grid_h * grid_w, 1)``.

Implementation. Bilinear weights and the out-of-range test are separable in y and x, so
each RoI gets ``2 * pooled_h * G`` row indices with weights (two rows per y sample) and
``2 * pooled_w * G`` column indices with weights, and the output is one gather of the
``rows x cols`` outer product followed by a weighted sum over the ``2G x 2G`` corners of
each bin. Shapes are static under ``jax.jit``: ``G`` is ``sampling_ratio`` when it is
positive, else the static cap ``max_sampling_ratio``; samples beyond an RoI's own grid
get weight 0 and the divisor uses the RoI's own grid. Gradients w.r.t. the features come
from autodiff of the gather (a scatter-add) and match torchvision's backward kernel.
Gradients w.r.t. the RoI coordinates are those of the bilinear weights (torchvision gives
none); detach proposals if that is not wanted.

Floating point. Positions are computed as ``x1 / stride - offset`` (``stride = 1 /
spatial_scale``; the same float as ``x1 * spatial_scale`` for power-of-two strides) and
``start + ((bin * grid + i + 0.5) * length) / (pooled * grid)``: equal to the formulas
above in exact arithmetic and within an ulp of the kernel's float32 evaluation, but exact
whenever the true position is representable (e.g. coordinates on a 1/8-cell grid with a
power-of-two stride), so samples exactly on -1, H or W and exactly integral
``roi / pooled`` are decided as in exact arithmetic. The form also has no ``a * b + c``
that XLA could contract into an FMA in one fusion and not in another (see
:func:`_axis_samples`). float32 results agree with a float64 reference to ~1e-5.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple, Union

import jax
import jax.numpy as jnp

from acne_jax.ops.shapes import check_shape

# Static bound on the adaptive grid (sampling_ratio <= 0). Time and memory grow with its
# square whatever the RoI sizes (CPU, P2-P5 of a 1024x1024 image, C=256, 1024 RoIs, 7x7
# forward: ~0.28 s at 2, ~0.6 s at 4). FPN assignment gives an RoI on P3/P4 a sqrt(area)
# of 14-28 cells of its level (less on P2, more on P5), so adaptive sampling of a square
# RoI needs 2-4 samples per bin at 7x7 and 1-2 at 14x14; elongated and very large RoIs
# need more. At 4 the result is torchvision's (see roi_align) for every RoI whose longer
# side is at most 28 cells (7x7) or 56 cells (14x14) on its level, and capped beyond.
DEFAULT_MAX_SAMPLING_RATIO = 4

# Gathered corner values per block of RoIs, by backend. XLA:CPU materialises the gather
# before the weighted sum, so RoIs are pooled in blocks (a lax.map) whose gather stays in
# cache: 2-3x faster than one block on CPU and bounded memory (one block of 1024 RoIs at
# 14x14, G=4, C=256 would be 13 GB). Accelerators fuse better; their bound is memory.
_BLOCK_ELEMENTS = {"cpu": 1 << 21, "default": 1 << 26}

OutputSize = Union[int, Tuple[int, int], Sequence[int]]


def _pair(fn: str, output_size: OutputSize) -> Tuple[int, int]:
  if isinstance(output_size, int):
    size = (output_size, output_size)
  else:
    size = tuple(int(s) for s in output_size)
  if len(size) != 2 or min(size) < 1:
    raise ValueError(
        f"{fn}: output_size must be a positive int or (h, w); got {output_size!r}")
  return size


def _divide(numerator: jnp.ndarray, denominator: jnp.ndarray) -> jnp.ndarray:
  """IEEE ``numerator / denominator``, kept a true division under XLA.

  XLA rewrites ``x / broadcast(c)`` as ``x * broadcast(1 / c)``: 1 ulp off, and a product
  that a following add may then contract into an FMA (see :func:`_axis_samples`). The
  denominator is materialised at full shape behind a barrier the simplifier does not see
  through.
  """
  numerator, denominator = jnp.broadcast_arrays(numerator, denominator)
  return numerator / jax.lax.optimization_barrier(denominator)


def _axis_samples(
    low_edge: jnp.ndarray,
    high_edge: jnp.ndarray,
    stride: jnp.ndarray,
    size: jnp.ndarray,
    pooled: int,
    static_grid: int,
    adaptive: bool,
    aligned: bool,
) -> Tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
  """Interpolation indices and weights along one axis (y or x).

  XLA recomputes cheap elementwise values inside every fusion that consumes them, and
  contracts ``a * b + c`` into an FMA in some fusions but not others. The gather index
  (``floor(pos)``) and the weight (``pos - floor(pos)``) land in different fusions, so if
  ``pos`` rounded differently in each, a sample 1 ulp from an integer would read the wrong
  pair of cells with weight ~1. So no product below feeds an addition unless it is a
  product of small integers (exact), and every value rounds the same way in any fusion:
  ``pos = start + ((bin * grid + i + 0.5) * length) / (pooled * grid)``, equal to
  the kernel's ``start + bin * bin_size + (i + 0.5) * bin_size / grid`` up to an ulp, and
  exact whenever the true position is representable.

  Args:
    low_edge, high_edge: ``[R]`` float RoI edges in image pixels (x1, x2 or y1, y2).
    stride: ``[R]`` float image pixels per feature cell (``1 / spatial_scale``).
    size: ``[R]`` int32 feature map extent along this axis (H or W of the RoI's map).
    pooled: number of output bins along this axis.
    static_grid: ``G``, samples per bin materialised for every RoI.
    adaptive: if True the RoI's own grid is ``min(ceil(length / pooled), G)`` and samples
      beyond it get weight 0; if False every RoI uses ``G`` samples.
    aligned: half-cell offset and no 1-cell minimum length, as in :func:`roi_align`.

  Returns:
    ``idx``: ``[R, pooled * 2G]`` int32 in ``[0, size)``, ordered (bin, sample, low/high);
    ``weight``: ``[R, pooled * 2G]`` float bilinear weight, 0 for masked or out-of-range
    samples; ``grid``: ``[R]`` int32 the RoI's own samples per bin (>= 0).
  """
  dtype = low_edge.dtype
  num_rois = low_edge.shape[0]
  offset = 0.5 if aligned else 0.0
  start = _divide(low_edge, stride) - offset
  length = (_divide(high_edge, stride) - offset) - start
  if not aligned:
    length = jnp.maximum(length, 1.0)
  if adaptive:
    # ceil of a zero or negative length gives grid <= 0: no samples, output 0.
    bin_size = _divide(length, jnp.asarray(pooled, dtype))
    grid = jnp.clip(jnp.ceil(bin_size), 0, static_grid).astype(jnp.int32)
  else:
    grid = jnp.full((num_rois,), static_grid, jnp.int32)
  divisor = jnp.maximum(grid, 1).astype(dtype)[:, None, None]

  bins = jnp.arange(pooled, dtype=dtype)[None, :, None]
  steps = jnp.arange(static_grid, dtype=dtype)[None, None, :]
  numerator = (bins * divisor + steps + 0.5) * length[:, None, None]
  pos = start[:, None, None] + _divide(numerator, pooled * divisor)

  size_f = size.astype(dtype)[:, None, None]
  valid = (pos >= -1.0) & (pos <= size_f)
  if adaptive:
    valid &= jnp.arange(static_grid)[None, None, :] < grid[:, None, None]
  # Clipping to [0, size - 1] before floor is the kernel's "y <= 0 -> 0" and
  # "y_low >= size - 1 -> y_low = y_high = size - 1, y = y_low" in one step, and keeps
  # huge coordinates from overflowing the int32 cast.
  pos = jnp.clip(pos, 0.0, size_f - 1.0)
  low = jnp.floor(pos)
  frac = pos - low
  low = low.astype(jnp.int32)
  high = jnp.minimum(low + 1, size[:, None, None] - 1)
  idx = jnp.stack([low, high], axis=-1).reshape(num_rois, pooled * 2 * static_grid)
  weight = jnp.where(valid[..., None], jnp.stack([1.0 - frac, frac], axis=-1), 0.0)
  weight = weight.reshape(num_rois, pooled * 2 * static_grid)
  return idx, weight, grid


def _sample_table(
    table: jnp.ndarray,
    boxes: jnp.ndarray,
    base: jnp.ndarray,
    height: jnp.ndarray,
    width: jnp.ndarray,
    stride: jnp.ndarray,
    output_size: Tuple[int, int],
    sampling_ratio: int,
    aligned: bool,
    max_sampling_ratio: int,
    rois_per_block: Optional[int],
) -> jnp.ndarray:
  """RoIAlign of every RoI from its own map inside a flattened feature table.

  Args:
    table: ``[N, C]`` feature rows; RoI ``r`` reads the row-major ``[height[r],
      width[r]]`` map whose top-left cell is row ``base[r]``.
    boxes: ``[R, 4]`` float (x1, y1, x2, y2) in image pixels.
    base: ``[R]`` int32 first table row of the RoI's map.
    height, width: ``[R]`` int32 extent of the RoI's map.
    stride: scalar or ``[R]`` float image pixels per cell (``1 / spatial_scale``).
    output_size, sampling_ratio, aligned, max_sampling_ratio, rois_per_block: as in
      :func:`roi_align`.

  Returns:
    ``[R, out_h, out_w, C]`` in ``table.dtype``.
  """
  out_h, out_w = output_size
  num_rois = boxes.shape[0]
  adaptive = sampling_ratio <= 0
  grid_cap = max_sampling_ratio if adaptive else sampling_ratio

  # float32 geometry for float32/bfloat16/float16 inputs, float64 under x64 inputs.
  dtype = jnp.promote_types(jnp.promote_types(table.dtype, boxes.dtype), jnp.float32)
  boxes = boxes.astype(dtype)
  stride = jnp.broadcast_to(jnp.asarray(stride).astype(dtype), (num_rois,))
  rows, wy, grid_h = _axis_samples(boxes[:, 1], boxes[:, 3], stride, height, out_h,
                                   grid_cap, adaptive, aligned)
  cols, wx, grid_w = _axis_samples(boxes[:, 0], boxes[:, 2], stride, width, out_w,
                                   grid_cap, adaptive, aligned)
  count = jnp.maximum(grid_h * grid_w, 1).astype(dtype)
  wy = _divide(wy, count[:, None])

  flat = (base[:, None, None] + rows[:, :, None] * width[:, None, None]
          + cols[:, None, :])                                  # [R, 2G*out_h, 2G*out_w]
  corners = 2 * grid_cap
  channels = table.shape[-1]

  def pool(flat, wy, wx):
    # One RoI: gather its (2G*out_h) x (2G*out_w) corner cells, weighted sum per bin.
    values = jnp.take(table, flat, axis=0, mode="clip")
    values = values.reshape(out_h, corners, out_w, corners, channels)
    wy = wy.reshape(out_h, corners, 1, 1, 1)
    wx = wx.reshape(1, 1, out_w, corners, 1)
    return jnp.sum(values * wy * wx, axis=(1, 3))

  if rois_per_block is None:
    budget = _BLOCK_ELEMENTS.get(jax.default_backend(), _BLOCK_ELEMENTS["default"])
    rois_per_block = max(1, budget // (flat.shape[1] * flat.shape[2] * channels))
  if rois_per_block >= num_rois:
    out = jax.vmap(pool)(flat, wy, wx)
  else:
    out = jax.lax.map(lambda args: pool(*args), (flat, wy, wx), batch_size=rois_per_block)
  return out.astype(table.dtype)


def _check_static(fn: str, sampling_ratio: int, max_sampling_ratio: int,
                  rois_per_block: Optional[int]) -> None:
  if int(sampling_ratio) != sampling_ratio:
    raise ValueError(f"{fn}: sampling_ratio must be an int; got {sampling_ratio!r}")
  if sampling_ratio <= 0 and (int(max_sampling_ratio) != max_sampling_ratio
                              or max_sampling_ratio < 1):
    raise ValueError(
        f"{fn}: max_sampling_ratio must be a positive int; got {max_sampling_ratio!r}")
  if rois_per_block is not None and (int(rois_per_block) != rois_per_block
                                     or rois_per_block < 1):
    raise ValueError(
        f"{fn}: rois_per_block must be a positive int; got {rois_per_block!r}")


def _batch_index(rois: jnp.ndarray, batch: int) -> jnp.ndarray:
  # Truncation like the kernel's int cast; clipped so a bad index cannot read another map.
  return jnp.clip(rois[:, 0].astype(jnp.int32), 0, batch - 1)


def roi_align(
    features: jnp.ndarray,
    rois: jnp.ndarray,
    output_size: OutputSize,
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
    *,
    max_sampling_ratio: int = DEFAULT_MAX_SAMPLING_RATIO,
    rois_per_block: Optional[int] = None,
) -> jnp.ndarray:
  """RoIAlign with the semantics of ``torchvision.ops.roi_align``, on NHWC features.

  Args:
    features: ``[B, H, W, C]`` float feature map (any float dtype; geometry and weights
      are float32, or float64 for float64 inputs).
    rois: ``[R, 5]`` float (batch_index, x1, y1, x2, y2) in image pixels; the batch index
      is truncated to int and clipped to ``[0, B)``.
    output_size: ``out`` or ``(out_h, out_w)``, bins per RoI.
    spatial_scale: image-to-feature scale, ``1 / stride`` (0.25 for a stride-4 map).
    sampling_ratio: samples per bin along each axis; ``<= 0`` for adaptive
      ``ceil(roi_size / output_size)`` per RoI and axis, capped at ``max_sampling_ratio``.
    aligned: if True shift the RoI by -0.5 cells so that pixel centres are at integer
      +0.5 coordinates (Detectron2 ROIAlignV2); if False the legacy behaviour, which also
      clamps the RoI to at least 1x1 cells.
    max_sampling_ratio: static cap on the adaptive grid (only used when
      ``sampling_ratio <= 0``). The output is exactly torchvision's whenever the RoI's
      ``ceil(roi_h / out_h)`` and ``ceil(roi_w / out_w)`` (in feature cells) are at most
      this. **Deviation**: along an axis that needs more, the RoI uses
      ``max_sampling_ratio`` evenly spaced samples per bin instead, i.e. torchvision with
      ``sampling_ratio=max_sampling_ratio`` on that axis: a coarser average that still
      spans the whole bin. Cost (time and memory) grows with its square; see
      ``DEFAULT_MAX_SAMPLING_RATIO``.
    rois_per_block: RoIs pooled per step of a ``lax.map`` (bounds the gathered
      intermediate, ``R x (2G out_h) x (2G out_w) x C`` when unblocked); default picks a
      block of about 2M gathered values on CPU and 64M elsewhere. Numerically the same
      for every value.

  Returns:
    ``[R, out_h, out_w, C]`` in ``features.dtype``; bins with no sample in range are 0.

  Raises:
    ValueError: on a wrong rank or shape (naming the argument) or bad sizes.
  """
  dims = check_shape("roi_align", "features", features, "[B, H, W, C]")
  check_shape("roi_align", "rois", rois, "[R, 5]")
  _check_static("roi_align", sampling_ratio, max_sampling_ratio, rois_per_block)
  size = _pair("roi_align", output_size)
  if isinstance(spatial_scale, (int, float)) and not spatial_scale > 0:
    raise ValueError(f"roi_align: spatial_scale must be positive; got {spatial_scale!r}")
  batch, height, width, channels = dims["B"], dims["H"], dims["W"], dims["C"]
  num_rois = rois.shape[0]
  if num_rois == 0 or batch * height * width == 0:
    return jnp.zeros((num_rois, *size, channels), features.dtype)

  b = _batch_index(rois, batch)
  table = features.reshape(batch * height * width, channels)
  return _sample_table(
      table,
      rois[:, 1:],
      base=b * (height * width),
      height=jnp.full((num_rois,), height, jnp.int32),
      width=jnp.full((num_rois,), width, jnp.int32),
      stride=1.0 / spatial_scale,
      output_size=size,
      sampling_ratio=sampling_ratio,
      aligned=aligned,
      max_sampling_ratio=max_sampling_ratio,
      rois_per_block=rois_per_block,
  )


def map_rois_to_levels(
    rois: jnp.ndarray,
    min_level: int,
    max_level: int,
    canonical_scale: float = 224.0,
    canonical_level: int = 4,
    eps: float = 1e-6,
    plus_one: bool = False,
) -> jnp.ndarray:
  """FPN level of each RoI (Lin et al., Feature Pyramid Networks, eq. 1).

  ``level = floor(canonical_level + log2(sqrt(area) / canonical_scale + eps))`` clipped
  to ``[min_level, max_level]``, with ``area = (x2 - x1) * (y2 - y1)`` (no ``+1``; a
  negative area counts as 0). An RoI of side 224 goes to P4, 112 to P3, 111 to P2, 448 to
  P5. It is evaluated without ``log2`` as the count of thresholds
  ``sqrt(area) >= canonical_scale * (2**(k - canonical_level) - eps)`` met for
  ``k = min_level + 1 .. max_level``: the same rule in exact arithmetic, free of ``log2``
  rounding, and computed identically in every XLA fusion that recomputes it.

  ``eps`` keeps an RoI whose side is exactly ``canonical_scale * 2**k`` on level
  ``canonical_level + k`` despite rounding. With the defaults this is
  MMDetection's ``SingleRoIExtractor.map_roi_levels`` (``finest_scale=56``:
  ``floor(log2(sqrt(area) / 56 + 1e-6))`` levels above P2, which is the same rule since
  ``56 = 224 / 2**2``) and Detectron2's ``assign_boxes_to_levels`` (eps 1e-8, also inside
  the log); torchvision's ``LevelMapper`` adds its eps outside the log. These agree except
  for sides within about 1e-6 relative of a level boundary.

  Args:
    rois: ``[..., 5]`` (batch_index, x1, y1, x2, y2) or ``[..., 4]`` (x1, y1, x2, y2)
      float, in image pixels.
    min_level, max_level: levels present (2 and 5 for P2-P5).
    canonical_scale: RoI side (pixels) mapped to ``canonical_level``.
    canonical_level: level of an RoI of side ``canonical_scale``.
    eps: added to the scale ratio before the log, see above.
    plus_one: area ``(x2 - x1 + 1) * (y2 - y1 + 1)`` (the legacy convention of Detectron,
      maskrcnn-benchmark and Pet).

  Returns:
    ``[...]`` int32 absolute levels in ``[min_level, max_level]``.
  """
  if rois.ndim < 1 or rois.shape[-1] not in (4, 5):
    raise ValueError(
        "map_rois_to_levels: argument 'rois' must have shape [..., 5] or [..., 4]; "
        f"got shape {list(rois.shape)}.")
  if min_level > max_level:
    raise ValueError(f"map_rois_to_levels: min_level {min_level} > max_level {max_level}")
  boxes = rois[..., -4:].astype(jnp.promote_types(rois.dtype, jnp.float32))
  one = 1.0 if plus_one else 0.0
  area = (boxes[..., 2] - boxes[..., 0] + one) * (boxes[..., 3] - boxes[..., 1] + one)
  side = jnp.sqrt(jnp.maximum(area, 0.0))
  level = jnp.full(side.shape, min_level, jnp.int32)
  for k in range(min_level + 1, max_level + 1):
    threshold = canonical_scale * (2.0 ** (k - canonical_level) - eps)
    level += (side >= threshold).astype(jnp.int32)
  return level


def _level_strides(
    fn: str,
    num_levels: int,
    strides: Optional[Sequence[float]],
    spatial_scales: Optional[Sequence[float]],
) -> Tuple[float, ...]:
  if (strides is None) == (spatial_scales is None):
    raise ValueError(f"{fn}: pass exactly one of strides or spatial_scales")
  values = tuple(float(s) for s in (strides if strides is not None else spatial_scales))
  if len(values) != num_levels:
    raise ValueError(
        f"{fn}: got {num_levels} feature levels but {len(values)} strides/spatial_scales")
  if min(values) <= 0:
    raise ValueError(f"{fn}: strides/spatial_scales must be positive; got {values}")
  return values if strides is not None else tuple(1.0 / s for s in values)


def multilevel_roi_align(
    features: Sequence[jnp.ndarray],
    rois: jnp.ndarray,
    output_size: OutputSize,
    strides: Optional[Sequence[float]] = None,
    spatial_scales: Optional[Sequence[float]] = None,
    sampling_ratio: int = -1,
    aligned: bool = False,
    canonical_scale: float = 224.0,
    canonical_level: int = 4,
    *,
    min_level: Optional[int] = None,
    eps: float = 1e-6,
    max_sampling_ratio: int = DEFAULT_MAX_SAMPLING_RATIO,
    rois_per_block: Optional[int] = None,
    plus_one: bool = False,
) -> jnp.ndarray:
  """RoIAlign of each RoI from its FPN level (MultiScaleRoIAlign / SingleRoIExtractor).

  Each RoI is assigned a level by :func:`map_rois_to_levels` and pooled exactly as
  :func:`roi_align` would pool it from that level alone (same ``sampling_ratio``,
  ``aligned`` and ``max_sampling_ratio`` semantics). All levels are flattened into one
  ``[sum_l B * H_l * W_l, C]`` table and every RoI reads its own level (its stride, size
  and row offset) in a single gather, so the cost is that of one level, not of all.

  Args:
    features: ``L`` maps ``[B, H_l, W_l, C]`` for consecutive levels
      ``min_level .. min_level + L - 1`` (e.g. P2-P5), finest first, same ``B``, ``C``
      and dtype.
    rois: ``[R, 5]`` float (batch_index, x1, y1, x2, y2) in image pixels.
    output_size: ``out`` or ``(out_h, out_w)``.
    strides: per-level stride in pixels, e.g. ``(4, 8, 16, 32)``; or
    spatial_scales: per-level ``1 / stride``. Exactly one of the two.
    sampling_ratio, aligned: as in :func:`roi_align`.
    canonical_scale, canonical_level: level-assignment rule, see
      :func:`map_rois_to_levels`.
    min_level: level number of ``features[0]``; default ``round(log2(stride_0))``
      (2 for stride 4).
    eps: see :func:`map_rois_to_levels`.
    max_sampling_ratio, rois_per_block: as in :func:`roi_align`.
    plus_one: level assignment from the legacy ``+1`` area (:func:`map_rois_to_levels`);
      the sampling itself is unchanged.

  Returns:
    ``[R, out_h, out_w, C]`` in the features' dtype.

  Raises:
    ValueError: on a wrong rank or shape (naming the argument) or inconsistent levels.
  """
  fn = "multilevel_roi_align"
  if len(features) == 0:
    raise ValueError(f"{fn}: argument 'features' must hold at least one level")
  dims = {}
  sizes = []
  for i, feature in enumerate(features):
    check_shape(fn, f"features[{i}]", feature, "[B, H, W, C]", dims)
    sizes.append(tuple(feature.shape[1:3]))
    dims.pop("H")
    dims.pop("W")
  check_shape(fn, "rois", rois, "[R, 5]")
  _check_static(fn, sampling_ratio, max_sampling_ratio, rois_per_block)
  level_strides = _level_strides(fn, len(features), strides, spatial_scales)
  if min_level is None:
    min_level = int(round(math.log2(level_strides[0])))
  max_level = min_level + len(features) - 1
  size = _pair(fn, output_size)
  batch, channels = dims["B"], dims["C"]
  num_rois = rois.shape[0]
  dtype = jnp.result_type(*features)
  if num_rois == 0:
    return jnp.zeros((num_rois, *size, channels), dtype)

  table = jnp.concatenate(
      [f.astype(dtype).reshape(-1, channels) for f in features], axis=0)
  level_rows = [batch * h * w for h, w in sizes]
  level_base = [sum(level_rows[:i]) for i in range(len(features))]
  level = map_rois_to_levels(
      rois, min_level, max_level, canonical_scale, canonical_level, eps, plus_one) - min_level
  height = jnp.asarray([h for h, _ in sizes], jnp.int32)[level]
  width = jnp.asarray([w for _, w in sizes], jnp.int32)[level]
  base = (jnp.asarray(level_base, jnp.int32)[level]
          + _batch_index(rois, batch) * (height * width))
  return _sample_table(
      table,
      rois[:, 1:],
      base=base,
      height=height,
      width=width,
      stride=jnp.asarray(level_strides)[level],
      output_size=size,
      sampling_ratio=sampling_ratio,
      aligned=aligned,
      max_sampling_ratio=max_sampling_ratio,
      rois_per_block=rois_per_block,
  )
