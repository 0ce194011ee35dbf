"""Box geometry: areas, overlaps (IoU, GIoU, DIoU, CIoU), NWD, format conversion and the delta coder.

Convention everywhere in acne_jax: a box is ``x1, y1, x2, y2`` in pixels with no ``+1``
(width = ``x2 - x1``), as in torchvision and MMDetection 2+. A box with ``x2 < x1`` or
``y2 < y1`` has zero width or height (we clamp at 0 rather than produce a negative area).

Divisions that can be ``0 / 0`` (two empty boxes) are defined, not epsilon-smoothed:
IoU of boxes whose union is empty is 0, and the GIoU/DIoU penalty of boxes whose enclosing
box is empty is 0. Values elsewhere are the exact formula, so float32 results match a
float64 reference to rounding.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import jax
import jax.numpy as jnp

from acne_jax.ops.shapes import check_shape

# MMDetection/Detectron2 clamp on predicted log-scale deltas: a box may grow at most
# 1000/16 = 62.5x its anchor in one step, which keeps exp() finite early in training.
DEFAULT_SCALE_CLAMP = math.log(1000.0 / 16.0)


def _safe_divide(numerator: jnp.ndarray, denominator: jnp.ndarray) -> jnp.ndarray:
  """``numerator / denominator`` where ``denominator > 0``, else 0, with finite gradients."""
  positive = denominator > 0
  return jnp.where(positive, numerator / jnp.where(positive, denominator, 1.0), 0.0)


def box_area(boxes: jnp.ndarray) -> jnp.ndarray:
  """Area of boxes.

  Args:
    boxes: ``[..., 4]`` float x1y1x2y2.

  Returns:
    ``[...]`` areas ``max(x2 - x1, 0) * max(y2 - y1, 0)``.
  """
  check_shape("box_area", "boxes", boxes, "[..., 4]")
  widths = jnp.maximum(boxes[..., 2] - boxes[..., 0], 0.0)
  heights = jnp.maximum(boxes[..., 3] - boxes[..., 1], 0.0)
  return widths * heights


def _pairwise_intersection_union(boxes1, boxes2):
  area1 = box_area(boxes1)
  area2 = box_area(boxes2)
  top_left = jnp.maximum(boxes1[:, None, :2], boxes2[None, :, :2])
  bottom_right = jnp.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])
  wh = jnp.maximum(bottom_right - top_left, 0.0)
  intersection = wh[..., 0] * wh[..., 1]
  union = area1[:, None] + area2[None, :] - intersection
  return intersection, union


def _check_pair(fn: str, boxes1, boxes2) -> None:
  check_shape(fn, "boxes1", boxes1, "[N, 4]")
  check_shape(fn, "boxes2", boxes2, "[M, 4]")


def box_iou(boxes1: jnp.ndarray, boxes2: jnp.ndarray) -> jnp.ndarray:
  """Pairwise intersection over union.

  Args:
    boxes1: ``[N, 4]`` float x1y1x2y2.
    boxes2: ``[M, 4]`` float x1y1x2y2.

  Returns:
    ``[N, M]`` IoU in [0, 1]; 0 where the union is empty (two zero-area boxes).
  """
  _check_pair("box_iou", boxes1, boxes2)
  intersection, union = _pairwise_intersection_union(boxes1, boxes2)
  return _safe_divide(intersection, union)


def plus_one(boxes: jnp.ndarray, enabled: bool = True) -> jnp.ndarray:
  """``[..., 4]`` boxes whose widths and heights are those of the legacy ``+1`` convention
  (Detectron, maskrcnn-benchmark, Pet: ``w = x2 - x1 + 1``): ``x2 + 1, y2 + 1``. Areas and IoUs
  of the result are the legacy ones; unchanged when not ``enabled``."""
  if not enabled:
    return boxes
  return boxes + jnp.asarray([0.0, 0.0, 1.0, 1.0], boxes.dtype)


def _enclosing_box(boxes1, boxes2):
  top_left = jnp.minimum(boxes1[:, None, :2], boxes2[None, :, :2])
  bottom_right = jnp.maximum(boxes1[:, None, 2:], boxes2[None, :, 2:])
  return top_left, bottom_right


def generalized_box_iou(boxes1: jnp.ndarray, boxes2: jnp.ndarray) -> jnp.ndarray:
  """Pairwise generalized IoU (Rezatofighi et al., 2019): ``IoU - (|C| - |A u B|) / |C|``.

  ``C`` is the smallest box enclosing both. The penalty is 0 where ``|C| = 0``.

  Args:
    boxes1: ``[N, 4]`` float x1y1x2y2.
    boxes2: ``[M, 4]`` float x1y1x2y2.

  Returns:
    ``[N, M]`` GIoU in [-1, 1].
  """
  _check_pair("generalized_box_iou", boxes1, boxes2)
  intersection, union = _pairwise_intersection_union(boxes1, boxes2)
  iou = _safe_divide(intersection, union)
  top_left, bottom_right = _enclosing_box(boxes1, boxes2)
  wh = jnp.maximum(bottom_right - top_left, 0.0)
  enclosing_area = wh[..., 0] * wh[..., 1]
  return iou - _safe_divide(enclosing_area - union, enclosing_area)


def distance_box_iou(boxes1: jnp.ndarray, boxes2: jnp.ndarray) -> jnp.ndarray:
  """Pairwise distance IoU (Zheng et al., 2020): ``IoU - rho^2 / c^2``.

  ``rho`` is the distance between the box centres and ``c`` the diagonal of the enclosing
  box. The penalty is 0 where ``c = 0``. torchvision instead adds ``eps = 1e-7`` to ``c^2``,
  which lowers the penalty ``p = rho^2 / c^2`` by ``p * eps / (c^2 + eps)``, a relative
  change of about ``eps / c^2``: ~1e-7 for ``c = 1`` px, 1e-5 for ``c = 0.1`` px, but
  under 1e-9 for ``c >= 10`` px. It exceeds float32 resolution (6e-8 near 1) once ``c`` is
  below about 1 px, so sub-pixel box pairs differ from torchvision by more than rounding.

  The centre offset is computed from corner offsets, ``((x1a - x1b) + (x2a - x2b)) / 2``,
  not as a difference of centres ``(x1 + x2) / 2``, as in :func:`encode_deltas`: nearby
  coordinates are subtracted first, so a sub-pixel pair far from the origin keeps a float32
  error of a few 1e-7 instead of 1e-4 and more (torchvision's float32 ``distance_box_iou``
  subtracts centres and has that larger error).

  Args:
    boxes1: ``[N, 4]`` float x1y1x2y2.
    boxes2: ``[M, 4]`` float x1y1x2y2.

  Returns:
    ``[N, M]`` DIoU in [-1, 1].
  """
  _check_pair("distance_box_iou", boxes1, boxes2)
  intersection, union = _pairwise_intersection_union(boxes1, boxes2)
  iou = _safe_divide(intersection, union)
  top_left, bottom_right = _enclosing_box(boxes1, boxes2)
  diagonal_sq = jnp.sum((bottom_right - top_left) ** 2, axis=-1)
  # Centre offsets [N, M, 2] as the mean of the corner offsets (see the docstring).
  center_offsets = ((boxes1[:, None, :2] - boxes2[None, :, :2])
                    + (boxes1[:, None, 2:] - boxes2[None, :, 2:])) * 0.5
  center_distance_sq = jnp.sum(center_offsets ** 2, axis=-1)
  return iou - _safe_divide(center_distance_sq, diagonal_sq)


def _aspect_angle(widths: jnp.ndarray, heights: jnp.ndarray) -> jnp.ndarray:
  """``atan(w / h)`` for ``w, h >= 0`` as ``atan2(w, h)``: exact, ``pi / 2`` for a zero-height box
  (where ``w / h`` is infinite) and defined as 0, with gradient 0, for an empty box (``w = h = 0``,
  where ``atan2``'s gradient is ``0 / 0``)."""
  nonempty = (widths > 0) | (heights > 0)
  angle = jnp.arctan2(jnp.where(nonempty, widths, 1.0), jnp.where(nonempty, heights, 1.0))
  return jnp.where(nonempty, angle, 0.0)


def ciou(boxes1: jnp.ndarray, boxes2: jnp.ndarray) -> jnp.ndarray:
  """Elementwise complete IoU (Zheng et al., "Distance-IoU loss", AAAI 2020, eq. 9-11).

  ``CIoU = IoU - rho^2 / c^2 - alpha v`` with

  - ``rho`` the distance between the box centres and ``c`` the diagonal of the smallest enclosing
    box (the DIoU penalty, as :func:`distance_box_iou`, centre offset from corner offsets);
  - ``v = 4 / pi^2 (atan(w2 / h2) - atan(w1 / h1))^2`` the aspect-ratio consistency, in [0, 1);
  - ``alpha = v / ((1 - IoU) + v)`` its trade-off weight, **without gradient**: the paper treats
    ``alpha`` as a constant in back-propagation, and so do darknet's ``dx_box_iou`` and
    ultralytics' ``bbox_iou`` (``with torch.no_grad()``).

  ``v``'s own gradient is the exact derivative (ultralytics). The paper, and darknet after it,
  also drop the factor ``1 / (w^2 + h^2)`` of ``dv/dw`` and ``dv/dh``, which is harmless in
  darknet's coordinates (fractions of the image, ``w^2 + h^2 <= 2``) but would multiply the
  gradient by the squared box size in our pixel coordinates; we keep the exact derivative
  (``docs/decisions.md``).

  Every term is symmetric in the two boxes. No epsilon: ``atan(w / h)`` is computed as
  ``atan2(w, h)`` (``pi / 2`` for a zero-height box, 0 for an empty one), and the divisions that
  can be ``0 / 0`` are defined as 0 (IoU of an empty union, the distance penalty of an empty
  enclosing box, ``alpha`` of identical boxes where ``IoU = 1`` and ``v = 0``), with finite
  gradients everywhere.

  Args:
    boxes1: ``[..., 4]`` float x1y1x2y2 (e.g. decoded predictions).
    boxes2: ``[..., 4]`` float x1y1x2y2 (e.g. their targets), broadcastable against ``boxes1``.

  Returns:
    ``[...]`` CIoU in (-1.5, 1]; 1 for identical non-empty boxes.
  """
  check_shape("ciou", "boxes1", boxes1, "[..., 4]")
  check_shape("ciou", "boxes2", boxes2, "[..., 4]")
  boxes1, boxes2 = jnp.broadcast_arrays(boxes1, boxes2)
  wh1 = jnp.maximum(boxes1[..., 2:] - boxes1[..., :2], 0.0)
  wh2 = jnp.maximum(boxes2[..., 2:] - boxes2[..., :2], 0.0)
  overlap = jnp.maximum(jnp.minimum(boxes1[..., 2:], boxes2[..., 2:]) - jnp.maximum(boxes1[..., :2], boxes2[..., :2]), 0.0)
  intersection = overlap[..., 0] * overlap[..., 1]
  union = wh1[..., 0] * wh1[..., 1] + wh2[..., 0] * wh2[..., 1] - intersection
  iou = _safe_divide(intersection, union)
  enclosing = jnp.maximum(boxes1[..., 2:], boxes2[..., 2:]) - jnp.minimum(boxes1[..., :2], boxes2[..., :2])
  diagonal_sq = jnp.sum(enclosing**2, axis=-1)
  center_offsets = ((boxes1[..., :2] - boxes2[..., :2]) + (boxes1[..., 2:] - boxes2[..., 2:])) * 0.5
  center_distance_sq = jnp.sum(center_offsets**2, axis=-1)
  angle_gap = _aspect_angle(wh2[..., 0], wh2[..., 1]) - _aspect_angle(wh1[..., 0], wh1[..., 1])
  v = (4.0 / math.pi**2) * angle_gap**2
  alpha = jax.lax.stop_gradient(_safe_divide(v, (1.0 - iou) + v))
  return iou - _safe_divide(center_distance_sq, diagonal_sq) - alpha * v


def _norm_with_zero_subgradient(x: jnp.ndarray) -> jnp.ndarray:
  """``||x||_2`` over the last axis, exactly (no epsilon), with gradient 0 at ``x = 0``.

  ``jnp.linalg.norm`` has a NaN gradient at the origin, which NWD hits whenever a
  prediction equals its target. The double ``where`` keeps the value exact and gives the
  zero subgradient there.
  """
  squared = jnp.sum(x * x, axis=-1)
  nonzero = squared > 0
  return jnp.where(nonzero, jnp.sqrt(jnp.where(nonzero, squared, 1.0)), 0.0)


def normalized_wasserstein_distance(
    boxes1: jnp.ndarray, boxes2: jnp.ndarray, constant: float = 32.0
) -> jnp.ndarray:
  """Elementwise Normalized Wasserstein Distance, SADH paper eq. 2-3.

  ``NWD = exp(-W2 / C)`` with ``W2 = ||[cx1, cy1, w1/2, h1/2] - [cx2, cy2, w2/2, h2/2]||_2``:
  centres and HALF widths/heights, as eq. 3 and the reference ``cal_nwd`` do (Wang et al.'s
  original NWD uses full w/2, h/2 as the Gaussian std too). No epsilon inside the norm, as in
  the reference; the gradient at ``W2 = 0`` is defined as 0 (see ``_norm_with_zero_subgradient``).

  Args:
    boxes1: ``[..., 4]`` float x1y1x2y2 (e.g. decoded predictions).
    boxes2: ``[..., 4]`` float x1y1x2y2, broadcastable against ``boxes1`` (e.g. targets).
    constant: ``C``, the normaliser in pixels; the paper sets it to the average lesion size, 32.

  Returns:
    ``[...]`` NWD in (0, 1]; 1 for identical boxes.
  """
  check_shape("normalized_wasserstein_distance", "boxes1", boxes1, "[..., 4]")
  check_shape("normalized_wasserstein_distance", "boxes2", boxes2, "[..., 4]")
  boxes1, boxes2 = jnp.broadcast_arrays(boxes1, boxes2)

  def center_and_half_size(boxes):
    return jnp.concatenate(
        [(boxes[..., :2] + boxes[..., 2:]) / 2.0, (boxes[..., 2:] - boxes[..., :2]) / 2.0], axis=-1
    )

  distance = _norm_with_zero_subgradient(center_and_half_size(boxes1) - center_and_half_size(boxes2))
  return jnp.exp(-distance / constant)


def xyxy_to_cxcywh(boxes: jnp.ndarray) -> jnp.ndarray:
  """``[..., 4]`` x1y1x2y2 -> ``[..., 4]`` (cx, cy, w, h)."""
  check_shape("xyxy_to_cxcywh", "boxes", boxes, "[..., 4]")
  return jnp.concatenate(
      [(boxes[..., :2] + boxes[..., 2:]) / 2.0, boxes[..., 2:] - boxes[..., :2]], axis=-1
  )


def cxcywh_to_xyxy(boxes: jnp.ndarray) -> jnp.ndarray:
  """``[..., 4]`` (cx, cy, w, h) -> ``[..., 4]`` x1y1x2y2."""
  check_shape("cxcywh_to_xyxy", "boxes", boxes, "[..., 4]")
  half = boxes[..., 2:] / 2.0
  return jnp.concatenate([boxes[..., :2] - half, boxes[..., :2] + half], axis=-1)


def clip_boxes(boxes: jnp.ndarray, image_size: Tuple[float, float]) -> jnp.ndarray:
  """Clips boxes to the image.

  Args:
    boxes: ``[..., 4]`` float x1y1x2y2.
    image_size: ``(height, width)``; x is clipped to [0, width] and y to [0, height]
      (box corners, not pixel indices, hence ``width`` and not ``width - 1``).

  Returns:
    ``[..., 4]`` clipped boxes.
  """
  check_shape("clip_boxes", "boxes", boxes, "[..., 4]")
  height, width = image_size
  upper = jnp.asarray([width, height, width, height], dtype=boxes.dtype)
  return jnp.clip(boxes, 0.0, upper)


def _coder_constants(means: Sequence[float], stds: Sequence[float], dtype):
  means = jnp.asarray(means, dtype=dtype)
  stds = jnp.asarray(stds, dtype=dtype)
  if means.shape != (4,) or stds.shape != (4,):
    raise ValueError(f"delta coder: means and stds must have 4 entries (dx, dy, dw, dh); got {means.shape} and {stds.shape}.")
  return means, stds


def encode_deltas(
    boxes: jnp.ndarray,
    targets: jnp.ndarray,
    means: Sequence[float] = (0.0, 0.0, 0.0, 0.0),
    stds: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
) -> jnp.ndarray:
  """Regression targets that move ``boxes`` onto ``targets`` (R-CNN parameterisation).

  ``dx = (tx - bx) / bw``, ``dy = (ty - by) / bh``, ``dw = log(tw / bw)``, ``dh = log(th / bh)``,
  with centres ``(x1 + x2) / 2`` and sizes ``x2 - x1`` (no +1, MMDetection 2
  ``DeltaXYWHBBoxCoder``), then normalised ``(d - means) / stds``. The RPN uses means 0 and
  stds 1; the R-CNN box head uses stds (0.1, 0.1, 0.2, 0.2).

  Args:
    boxes: ``[..., 4]`` float x1y1x2y2 anchors or proposals, with positive width and height.
    targets: ``[..., 4]`` float x1y1x2y2 ground truth, broadcastable against ``boxes``.
    means: 4 target means.
    stds: 4 target standard deviations.

  Returns:
    ``[..., 4]`` deltas ``(dx, dy, dw, dh)``.
  """
  check_shape("encode_deltas", "boxes", boxes, "[..., 4]")
  check_shape("encode_deltas", "targets", targets, "[..., 4]")
  means, stds = _coder_constants(means, stds, boxes.dtype)
  boxes, targets = jnp.broadcast_arrays(boxes, targets)
  box_sizes = boxes[..., 2:] - boxes[..., :2]
  target_sizes = targets[..., 2:] - targets[..., :2]
  # Centre offset as the mean of the corner offsets: the same value as (t_c - b_c), but the
  # subtraction of nearby coordinates comes first, which avoids float32 cancellation error
  # (it otherwise reaches 1e-5 in normalised deltas for small boxes far from the origin).
  center_offsets = ((targets[..., :2] - boxes[..., :2]) + (targets[..., 2:] - boxes[..., 2:])) * 0.5
  deltas = jnp.concatenate([center_offsets / box_sizes, jnp.log(target_sizes / box_sizes)], axis=-1)
  return (deltas - means) / stds


def decode_deltas(
    boxes: jnp.ndarray,
    deltas: jnp.ndarray,
    means: Sequence[float] = (0.0, 0.0, 0.0, 0.0),
    stds: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
    scale_clamp: float = DEFAULT_SCALE_CLAMP,
    image_size: Optional[Tuple[float, float]] = None,
) -> jnp.ndarray:
  """Applies deltas to boxes; the inverse of :func:`encode_deltas`.

  Args:
    boxes: ``[..., 4]`` float x1y1x2y2 anchors or proposals.
    deltas: ``[..., 4]`` float ``(dx, dy, dw, dh)``, normalised as by :func:`encode_deltas`,
      broadcastable against ``boxes``.
    means: 4 target means used at encoding.
    stds: 4 target standard deviations used at encoding.
    scale_clamp: ``dw`` and ``dh`` are clamped to ``[-scale_clamp, scale_clamp]`` after
      de-normalisation (default ``log(1000 / 16)``).
    image_size: optional ``(height, width)``; when given the decoded boxes are clipped to it.

  Returns:
    ``[..., 4]`` decoded boxes x1y1x2y2.
  """
  check_shape("decode_deltas", "boxes", boxes, "[..., 4]")
  check_shape("decode_deltas", "deltas", deltas, "[..., 4]")
  means, stds = _coder_constants(means, stds, deltas.dtype)
  deltas = deltas * stds + means
  b = xyxy_to_cxcywh(boxes)
  log_scale = jnp.clip(deltas[..., 2:], -scale_clamp, scale_clamp)
  centers = b[..., :2] + deltas[..., :2] * b[..., 2:]
  sizes = b[..., 2:] * jnp.exp(log_scale)
  decoded = cxcywh_to_xyxy(jnp.concatenate([centers, sizes], axis=-1))
  if image_size is not None:
    decoded = clip_boxes(decoded, image_size)
  return decoded
