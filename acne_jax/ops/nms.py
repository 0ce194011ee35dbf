"""Greedy non-maximum suppression with static shapes (jit- and vmap-safe).

:func:`nms` returns exactly the boxes that the classic greedy algorithm keeps (the one
``torchvision.ops.nms`` runs): visit boxes by descending score and keep a box unless its
IoU with an already kept box is strictly greater than ``iou_threshold``. The result is
truncated to the first ``max_output`` kept boxes and padded to that static length.

Threshold comparison (as torchvision's CPU kernel)
--------------------------------------------------
torchvision computes the IoU in the boxes' dtype (float32) and tests ``ovr > iou_threshold``
with ``iou_threshold`` a C++ ``double``: the float32 IoU is compared, exactly, with the
double value of the Python float. Comparing with ``float32(iou_threshold)`` instead is wrong
when the threshold is not a float32 and rounds up (0.1, 0.3 and 0.6 do: float32(0.3) > 0.3),
because an IoU equal to ``float32(t)`` is then kept where torchvision suppresses it. With x64
off we cannot hold the double inside jit, so a Python (or NumPy) threshold ``t`` is replaced,
at trace time, by ``d = the largest value of the IoU dtype that is <= t``, and we test
``iou > d``. For every IoU ``x`` of that dtype, ``x > t  <=>  x > d``:

* ``x > t`` implies ``x > d``, since ``t >= d``.
* If ``t`` is representable, ``d = t``. Otherwise ``d < t < u``, where ``u`` is the next
  representable value after ``d`` (no representable value lies in ``(d, t]``, by the choice
  of ``d``). Then ``x > d`` implies ``x >= u > t``, as ``x`` is representable.

``d`` is ``float32(t)`` when that rounds down or is exact (0.5, 0.7), and its predecessor
``nextafter(float32(t), -inf)`` when it rounds up (0.1, 0.3, 0.6). NaN thresholds stay NaN
(nothing is suppressed, as in C++) and thresholds beyond the dtype's range behave as in C++.

A traced (or ``jax.Array``) threshold is compared as it is: ``iou > thr`` with JAX's type
promotion, which is exact on the two values, so it matches torchvision called with
``iou_threshold=float(thr)``. It differs from torchvision called with the Python float you
converted it from only when an IoU equals the converted value exactly and the conversion
rounded up. To pass a threshold through jit or vmap as an argument and keep torchvision's
decisions for a Python float ``t``, pass ``round_threshold_down(t)`` instead of ``t``.

Design (the tiled scheme of TF's ``non_max_suppression_padded``)
----------------------------------------------------------------
A plain greedy loop is N sequential tiny steps, which is slow under XLA for the
2,000-10,000 proposals of an RPN. Instead:

1. Sort by score (stable, descending; invalid boxes last) and pad N up to a multiple of
   the tile size T.
2. ``while_loop`` over the N/T tiles, stopping early once ``max_output`` boxes are kept
   or only invalid boxes remain. For tile t:

   a. Cross-tile suppression: ``[T, T]`` IoU blocks between the tile and the filled
      chunks of a buffer of the boxes kept in tiles ``< t`` (at most
      ``min(max_output, padded N)`` of them). The buffer holds every earlier kept box,
      because the loop stops as soon as it is full.
   b. Within-tile suppression: iterate
      ``keep_j = cand_j and not any_{i<j}(keep_i and iou_ij > thr)`` from
      ``keep = cand`` until it stops changing (a ``while_loop``; a few iterations in
      practice, at most T).
   c. Append the tile's kept boxes to the buffer in order.

Why (b) is exact: the map ``F(keep)_j = cand_j and not any_{i<j}(keep_i and S_ij)`` is
triangular -- ``F(keep)_j`` reads only ``keep_i`` for ``i < j`` -- so it has exactly one
fixed point, the sequential greedy answer (fix ``keep_0``, then ``keep_1``, ...). After k
iterations the first k entries are final, so the loop ends within T iterations, and
because it stops only at a fixed point it stops only at the greedy answer. Chains come
out right: if A suppresses B and B overlaps C (but A does not), an early iteration may
drop C, but once ``keep_B`` is False, C is restored. Step (a) is exact because a box
of an earlier tile is final when the tile ends and only kept boxes suppress.

Conventions
-----------
* Boxes are ``x1y1x2y2`` in pixels with ``area = (x2 - x1) * (y2 - y1)`` (no +1).
* IoU is defined as 0 when the union is not positive (e.g. two zero-area boxes), so
  zero-area and inverted boxes never suppress and are never suppressed.
* Ties in score go to the lower original index first (stable descending sort). This is
  also torchvision's CPU order: its kernel (``torchvision/csrc/ops/cpu/nms_kernel.cpp``)
  sorts with ``scores.sort(/*stable=*/true, 0, /*descending=*/true)``. Checked on
  torchvision 0.28 with all-equal and few-valued scores for N from 5 to 100,000: the kept
  order is always index order among ties, whereas a plain ``torch.sort(descending=True)``
  already reorders ties from N = 17. Older torchvision sources call ``scores.sort(0,
  true)``, which is not stable by contract; only the CPU kernel was checked. Note that
  ``torchvision.ops.batched_nms`` on CPU with N > 1000 boxes runs per-class NMS and then
  re-sorts the merged result with an unstable ``sort(descending=True)``, so its order
  among tied scores of different classes is not index order.
* Boxes with ``valid == False`` or a NaN score are invalid: never kept, never suppress.
* IoU is computed in float32 (or the boxes' dtype if wider), with torchvision's formula
  and order ``inter / ((area_i + area_j) - inter)``. It is bit-identical to the kernel's
  float32 IoU whenever the products ``w * h`` (areas, intersection) are exact in float32,
  e.g. integer coordinates below 2048 or power-of-two heights. Otherwise it can differ by
  one ulp: XLA CPU always lets LLVM fuse a product and a sum into one fused multiply-add
  (``fma(w, h, area_j)`` is rounded once, the kernel rounds twice). Under jit we measured
  it on 15% of the overlapping pairs of random float boxes (1.3% of all pairs); only a
  pair whose IoU is within an ulp of the threshold can then be decided differently from
  torchvision.
"""

from __future__ import annotations

from typing import Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from acne_jax.ops.boxes import box_iou
from acne_jax.ops.shapes import check_shape

DEFAULT_TILE_SIZE = 256


def _check_inputs(fn, boxes, scores, valid, group_ids=None):
  dims = check_shape(fn, "boxes", boxes, "[N, 4]")
  check_shape(fn, "scores", scores, "[N]", dims)
  if group_ids is not None:
    check_shape(fn, "group_ids", group_ids, "[N]", dims)
  if valid is not None:
    check_shape(fn, "valid", valid, "[N]", dims)
  return dims["N"]


def _check_static(fn: str, max_output, tile_size) -> None:
  if not isinstance(max_output, int) or max_output < 0:
    raise ValueError(f"{fn}: max_output must be a static int >= 0; got {max_output!r}.")
  if not isinstance(tile_size, int) or tile_size < 1:
    raise ValueError(f"{fn}: tile_size must be a static int >= 1; got {tile_size!r}.")


def round_threshold_down(iou_threshold: float, dtype=jnp.float32) -> np.floating:
  """The largest value of ``dtype`` that is <= ``iou_threshold`` (NaN stays NaN).

  For every IoU ``x`` of ``dtype``, ``x > result`` holds exactly when ``x > iou_threshold``
  holds in exact arithmetic (proof in the module docstring), which is torchvision's test
  ``float_iou > double_threshold``. :func:`nms` applies this to Python thresholds itself;
  call it yourself only to pass a threshold as a traced argument (jit, vmap) and keep
  torchvision's decisions, e.g. ``nms(b, s, t_traced, k)`` with
  ``t_traced = round_threshold_down(0.3)``.

  Args:
    iou_threshold: scalar Python or NumPy number; its float64 value is used.
    dtype: a float dtype, that of the IoU (float32 unless the boxes are float64).

  Returns:
    A NumPy scalar of ``dtype`` (shape ``[]``).
  """
  dtype = np.dtype(dtype)
  threshold = float(iou_threshold)
  with np.errstate(over="ignore"):  # beyond the range: +-inf, then stepped below if needed
    rounded = dtype.type(threshold)  # round to nearest
  if float(rounded) > threshold:  # rounded up: its predecessor is the largest value <= t
    rounded = np.nextafter(rounded, dtype.type(-np.inf))
  return rounded


def _comparable_threshold(iou_threshold, dtype):
  """The threshold to use as ``iou > threshold`` on IoUs of ``dtype`` (see module docstring).

  A Python/NumPy scalar becomes :func:`round_threshold_down`; anything else (a tracer or a
  ``jax.Array``) is compared as is, exactly on its own value by JAX's type promotion.
  """
  if isinstance(iou_threshold, (int, float, np.integer, np.floating)) or (
      isinstance(iou_threshold, np.ndarray) and iou_threshold.ndim == 0):
    return round_threshold_down(iou_threshold, dtype)
  return jnp.asarray(iou_threshold)


def _nms_impl(
    boxes: jax.Array,
    scores: jax.Array,
    group_ids: Optional[jax.Array],
    iou_threshold,
    max_output: int,
    valid: Optional[jax.Array],
    tile_size: int,
) -> Tuple[jax.Array, jax.Array]:
  """Tiled greedy NMS; boxes of different ``group_ids`` (if given) never interact."""
  n = boxes.shape[0]
  if max_output == 0 or n == 0:
    return jnp.zeros((max_output,), jnp.int32), jnp.zeros((max_output,), bool)

  # jnp.asarray first so that NumPy float64 becomes float32 when x64 is off.
  boxes, scores = jnp.asarray(boxes), jnp.asarray(scores)
  dtype = jnp.promote_types(boxes.dtype, jnp.float32)
  boxes = boxes.astype(dtype)
  iou_threshold = _comparable_threshold(iou_threshold, dtype)
  scores = scores.astype(jnp.promote_types(scores.dtype, jnp.float32))
  valid = jnp.ones((n,), bool) if valid is None else jnp.asarray(valid).astype(bool)
  valid = valid & ~jnp.isnan(scores)

  # Sort key: valid first, then descending score; the stable sort puts the lower index
  # first among ties. Invalid scores are zeroed so they sort deterministically.
  neg_scores = jnp.where(valid, -scores, 0)
  _, _, order = lax.sort(
      ((~valid).astype(jnp.int32), neg_scores, jnp.arange(n, dtype=jnp.int32)),
      num_keys=2,
      is_stable=True,
  )
  num_valid = jnp.sum(valid, dtype=jnp.int32)

  tile = min(tile_size, n)
  num_tiles = -(-n // tile)
  padded = num_tiles * tile
  pad = padded - n
  s_boxes = jnp.pad(boxes[order], ((0, pad), (0, 0)))
  s_valid = jnp.pad(valid[order], (0, pad))
  s_groups = None
  if group_ids is not None:
    s_groups = jnp.pad(jnp.asarray(group_ids).astype(jnp.int32)[order], (0, pad))

  # The buffer of kept boxes: the first buf_size kept are stored, in a capacity rounded
  # up to whole tiles so that step (a) can read it in [T]-sized chunks.
  buf_size = min(max_output, padded)
  buf_cap = -(-buf_size // tile) * tile
  # Within-tile "i is earlier than j" mask: strictly upper triangular.
  earlier = jnp.arange(tile)[:, None] < jnp.arange(tile)[None, :]

  def same_group(g1, g2):
    return g1[:, None] == g2[None, :]

  def cond(state):
    t, count, *_ = state
    return (t < num_tiles) & (count < buf_size) & (t * tile < num_valid)

  def body(state):
    t, count, buf_boxes, buf_groups, buf_pos = state
    start = t * tile
    t_boxes = lax.dynamic_slice_in_dim(s_boxes, start, tile)
    t_valid = lax.dynamic_slice_in_dim(s_valid, start, tile)

    t_groups = None
    if s_groups is not None:
      t_groups = lax.dynamic_slice_in_dim(s_groups, start, tile)

    # (a) Suppression by the boxes kept in earlier tiles, which are all in the buffer.
    # Only the ceil(count / T) filled [T, T] chunks of the buffer are visited.
    def chunk_body(c, suppressed):
      lo = c * tile
      over = box_iou(t_boxes, lax.dynamic_slice_in_dim(buf_boxes, lo, tile))
      over = over > iou_threshold  # [T, T]
      over &= (lo + jnp.arange(tile) < count)[None, :]
      if t_groups is not None:
        over &= same_group(t_groups, lax.dynamic_slice_in_dim(buf_groups, lo, tile))
      return suppressed | jnp.any(over, axis=1)

    num_chunks = (count + tile - 1) // tile
    suppressed = lax.fori_loop(0, num_chunks, chunk_body, jnp.zeros((tile,), bool))
    cand = t_valid & ~suppressed

    # (b) Exact greedy inside the tile by fixed-point iteration (see module docstring).
    sup = (box_iou(t_boxes, t_boxes) > iou_threshold) & earlier  # [T, T]
    if s_groups is not None:
      sup &= same_group(t_groups, t_groups)

    def fp_cond(c):
      return c[1]

    def fp_body(c):
      keep, _ = c
      new = cand & ~jnp.any(sup & keep[:, None], axis=0)
      return new, jnp.any(new != keep)

    keep, _ = lax.while_loop(fp_cond, fp_body, (cand, jnp.array(True)))

    # (c) Append kept boxes in order; positions past the buffer are dropped.
    slot = count + jnp.cumsum(keep, dtype=jnp.int32) - 1
    slot = jnp.where(keep & (slot < buf_size), slot, buf_cap)
    buf_boxes = buf_boxes.at[slot].set(t_boxes, mode="drop")
    buf_pos = buf_pos.at[slot].set(start + jnp.arange(tile, dtype=jnp.int32), mode="drop")
    if s_groups is not None:
      buf_groups = buf_groups.at[slot].set(t_groups, mode="drop")
    count = jnp.minimum(count + jnp.sum(keep, dtype=jnp.int32), buf_size)
    return t + 1, count, buf_boxes, buf_groups, buf_pos

  init = (
      jnp.array(0, jnp.int32),
      jnp.array(0, jnp.int32),
      jnp.zeros((buf_cap, 4), dtype),
      jnp.zeros((buf_cap,), jnp.int32),
      jnp.zeros((buf_cap,), jnp.int32),
  )
  _, count, _, _, buf_pos = lax.while_loop(cond, body, init)
  buf_pos = buf_pos[:buf_size]

  keep_valid = jnp.arange(buf_size) < count
  indices = jnp.where(keep_valid, order[jnp.minimum(buf_pos, n - 1)], 0)
  extra = max_output - buf_size
  indices = jnp.pad(indices, (0, extra))
  keep_valid = jnp.pad(keep_valid, (0, extra))
  return indices.astype(jnp.int32), keep_valid


def nms(
    boxes: jax.Array,
    scores: jax.Array,
    iou_threshold,
    max_output: int,
    valid: Optional[jax.Array] = None,
    *,
    tile_size: int = DEFAULT_TILE_SIZE,
) -> Tuple[jax.Array, jax.Array]:
  """Greedy NMS, exactly as ``torchvision.ops.nms``, with static output shape.

  A box is suppressed when its IoU with a higher-ranked kept box is strictly greater
  than ``iou_threshold``. See the module docstring for tie order, zero-area boxes,
  NaN scores and the tiled algorithm.

  Args:
    boxes: [N, 4] float x1y1x2y2, pixels (``area = (x2 - x1) * (y2 - y1)``). N >= 1
      for a non-empty result.
    scores: [N] float. NaN scores mark the box invalid.
    iou_threshold: scalar. A Python or NumPy number is matched exactly as torchvision's
      double (an IoU equal to ``float32(0.3) > 0.3`` is suppressed at ``0.3``); a traced
      value is compared at its own (float32) value: see the module docstring and
      :func:`round_threshold_down`.
    max_output: static int >= 0, length of the outputs.
    valid: optional [N] bool; False boxes are never kept and never suppress.
    tile_size: static int, boxes per tile T (clipped to N). Larger tiles mean fewer
      sequential steps but a bigger ``[T, T]`` within-tile block.

  Returns:
    indices: [max_output] int32 indices into ``boxes`` of the kept boxes, in descending
      score order (ties: lower index first); padded with 0.
    keep_valid: [max_output] bool, True for the real entries of ``indices`` (a prefix).

  Raises:
    ValueError: on wrong shapes (at trace time) or a bad ``max_output``/``tile_size``.
  """
  _check_inputs("nms", boxes, scores, valid)
  _check_static("nms", max_output, tile_size)
  return _nms_impl(boxes, scores, None, iou_threshold, max_output, valid, tile_size)


def batched_nms(
    boxes: jax.Array,
    scores: jax.Array,
    group_ids: jax.Array,
    iou_threshold,
    max_output: int,
    valid: Optional[jax.Array] = None,
    *,
    tile_size: int = DEFAULT_TILE_SIZE,
) -> Tuple[jax.Array, jax.Array]:
  """Greedy NMS run independently per group (class or FPN level), merged by score.

  Boxes only suppress boxes with the same group id. The result equals running
  :func:`nms` on each group separately and merging the kept boxes by descending score
  (ties: lower index first), truncated to ``max_output``.

  This is what torchvision's coordinate-offset trick computes (shift each group's boxes
  by ``group_id * (max coordinate span + 1)`` so that boxes of different groups never
  overlap, then run one NMS), but here groups are separated by masking the IoU blocks
  with ``group_i == group_j`` instead of shifting coordinates. The mask costs nothing in
  the tiled algorithm, and it avoids the trick's float32 rounding: an offset of, say,
  80 * 1000 px has an ulp of ~0.008 px, which perturbs IoUs near the threshold, and the
  trick breaks for negative coordinates unless the span is taken from the minimum.

  Args:
    boxes: [N, 4] float x1y1x2y2, pixels.
    scores: [N] float. NaN scores mark the box invalid.
    group_ids: [N] int group of each box (any int values, negative allowed).
    iou_threshold: scalar, as in :func:`nms` (Python numbers match torchvision's double).
    max_output: static int >= 0, length of the outputs.
    valid: optional [N] bool; False boxes are never kept and never suppress.
    tile_size: static int, boxes per tile (clipped to N).

  Returns:
    indices: [max_output] int32 indices into ``boxes``, descending score; padded with 0.
    keep_valid: [max_output] bool, True for the real entries (a prefix).

  Raises:
    ValueError: on wrong shapes (at trace time) or a bad ``max_output``/``tile_size``.
  """
  _check_inputs("batched_nms", boxes, scores, valid, group_ids)
  _check_static("batched_nms", max_output, tile_size)
  return _nms_impl(boxes, scores, group_ids, iou_threshold, max_output, valid, tile_size)
