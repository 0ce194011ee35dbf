"""YOLOv3/v4 head math: decoding raw head outputs into boxes, and the YOLOv4 loss.

A head level's raw output is ``[B, H, W, A, 5 + K]``: per anchor ``(t_x, t_y, t_w, t_h, t_obj,
t_cls_1..K)``, darknet's channel order. Decoding (darknet ``get_yolo_box`` with the
``scale_x_y`` grid sensitivity of YOLOv4, section 3.4 "eliminate grid sensitivity")::

  c_x = (i + s * sigmoid(t_x) - (s - 1) / 2) * stride      column i, s = scale_x_y
  c_y = (j + s * sigmoid(t_y) - (s - 1) / 2) * stride      row j
  w   = anchor_w * exp(t_w),  h = anchor_h * exp(t_h)      anchors in input pixels

With ``s > 1`` a centre can reach the cell's edges (``sigmoid`` alone reaches them only at
infinite logits); YOLOv4 uses 1.2, 1.1 and 1.05 on its stride-8, 16 and 32 levels. ``t_w, t_h``
are clamped to ``+-log(1000 / 16)`` before ``exp`` (the bound our delta coder uses), which
darknet does not do: its ``max_delta`` clips gradients instead. The clamp only acts on boxes
62x larger or smaller than their anchor and keeps ``exp`` finite early in training.

The loss (:func:`yolo_loss`) is darknet's ``[yolo]`` layer with ``iou_loss=ciou`` as a function,
summed over every slot of every level of an image and averaged over the images (darknet sums
its deltas over the batch and divides the learning rate by the batch size)::

  L = box_weight * sum_pos (1 - CIoU(box, target))            iou_normalizer 0.07
    + obj_weight * sum_{pos or not ignored} BCE(t_obj, pos)   obj_normalizer 1
    + cls_weight * sum_pos sum_k BCE(t_cls_k, onehot_k)       cls_normalizer 1

with positives from :func:`acne_jax.ops.yolo_targets.yolo_targets` and "ignored" from
:func:`acne_jax.ops.yolo_targets.ignore_mask` (a non-positive prediction overlapping a box by
more than 0.7 gets no objectness loss). Optionally the box term is multiplied by
``2 - w h / (W H)`` (``box_size_weight``; darknet does so for its MSE box loss only).
"""

from __future__ import annotations

import math
from typing import Dict, List, NamedTuple, Sequence, Tuple

import jax
import jax.numpy as jnp

from acne_jax.ops import boxes as box_ops
from acne_jax.ops import losses
from acne_jax.ops import yolo_targets as targets_ops
from acne_jax.ops.shapes import check_shape

# Clamp on t_w, t_h before exp (as boxes.DEFAULT_SCALE_CLAMP): at most 62.5x the anchor.
WH_CLAMP = math.log(1000.0 / 16.0)
# YOLOv4's scale_x_y of its three heads, finest first (yolov4.cfg).
YOLOV4_SCALE_X_Y = (1.2, 1.1, 1.05)


def decode_level(
    raw: jnp.ndarray,
    anchors: Sequence[Tuple[float, float]],
    stride: float,
    scale_x_y: float = 1.0,
) -> jnp.ndarray:
  """Boxes of one level (see the module docstring).

  Args:
    raw: ``[..., H, W, A, C]`` float head output, ``C >= 4`` (only ``t_x, t_y, t_w, t_h`` are read).
    anchors: ``A`` anchors ``(w, h)`` in input pixels.
    stride: the level's stride in input pixels.
    scale_x_y: YOLOv4's grid sensitivity factor ``s`` (1.0: YOLOv3).

  Returns:
    ``[..., H, W, A, 4]`` float32 x1y1x2y2 in input pixels (not clipped).
  """
  check_shape("decode_level", "raw", raw, "[..., H, W, A, C]")
  height, width, num_anchors = raw.shape[-4:-1]
  if len(anchors) != num_anchors:
    raise ValueError(f"decode_level: {len(anchors)} anchors for a head with {num_anchors} per cell.")
  raw = raw.astype(jnp.float32)
  cols = jnp.arange(width, dtype=jnp.float32)[None, :, None]
  rows = jnp.arange(height, dtype=jnp.float32)[:, None, None]
  offset = (scale_x_y - 1.0) / 2.0
  center_x = (cols + scale_x_y * jax.nn.sigmoid(raw[..., 0]) - offset) * stride
  center_y = (rows + scale_x_y * jax.nn.sigmoid(raw[..., 1]) - offset) * stride
  anchor_wh = jnp.asarray(anchors, jnp.float32)
  half_w = 0.5 * anchor_wh[:, 0] * jnp.exp(jnp.clip(raw[..., 2], -WH_CLAMP, WH_CLAMP))
  half_h = 0.5 * anchor_wh[:, 1] * jnp.exp(jnp.clip(raw[..., 3], -WH_CLAMP, WH_CLAMP))
  return jnp.stack([center_x - half_w, center_y - half_h, center_x + half_w, center_y + half_h], axis=-1)


class LossTerms(NamedTuple):
  """Per-image sums averaged over the batch, already weighted: ``box``, ``obj``, ``cls``;
  ``num_positives`` (mean per image) and ``mean_iou`` of the positive predictions."""

  box: jnp.ndarray
  obj: jnp.ndarray
  cls: jnp.ndarray
  num_positives: jnp.ndarray
  mean_iou: jnp.ndarray


def yolo_loss(
    outputs: Sequence[jnp.ndarray],
    anchors: Sequence[Sequence[Tuple[float, float]]],
    strides: Sequence[int],
    scale_x_y: Sequence[float],
    gt_boxes: jnp.ndarray,
    gt_labels: jnp.ndarray,
    gt_valid: jnp.ndarray,
    image_size: Tuple[int, int],
    iou_threshold: float = targets_ops.YOLOV4_IOU_THRESHOLD,
    ignore_threshold: float = targets_ops.YOLOV4_IGNORE_THRESHOLD,
    neighbor_cells: bool = False,
    box_weight: float = 0.07,
    obj_weight: float = 1.0,
    cls_weight: float = 1.0,
    box_size_weight: bool = False,
) -> LossTerms:
  """YOLOv4's loss from raw head outputs and padded ground truth (see the module docstring).

  Args:
    outputs: per level, ``[B, H_l, W_l, A_l, 5 + K]`` raw head outputs.
    anchors: per level, ``A_l`` anchors ``(w, h)`` in input pixels.
    strides: per level, the stride in pixels.
    scale_x_y: per level, the grid sensitivity factor.
    gt_boxes: ``[B, G, 4]`` float x1y1x2y2 input pixels; gt_labels ``[B, G]`` int in ``[0, K)``;
      gt_valid ``[B, G]`` bool.
    image_size: ``(height, width)`` of the input.
    iou_threshold, neighbor_cells: label assignment (:func:`~acne_jax.ops.yolo_targets.yolo_targets`).
    ignore_threshold: objectness ignore rule (:func:`~acne_jax.ops.yolo_targets.ignore_mask`).
    box_weight, obj_weight, cls_weight: darknet's iou_normalizer, obj_normalizer, cls_normalizer.
    box_size_weight: multiply each box term by ``2 - w h / (W H)``.

  Returns:
    :class:`LossTerms`.
  """
  if not (len(outputs) == len(anchors) == len(strides) == len(scale_x_y)):
    raise ValueError(f"yolo_loss: outputs, anchors, strides and scale_x_y need one entry per level; got {len(outputs)}, "
                     f"{len(anchors)}, {len(strides)} and {len(scale_x_y)}.")
  batch = gt_boxes.shape[0]
  num_classes = outputs[0].shape[-1] - 5
  outputs = [o.astype(jnp.float32) for o in outputs]
  grid_sizes = [tuple(o.shape[1:3]) for o in outputs]
  level_targets = targets_ops.yolo_targets(gt_boxes, gt_labels, gt_valid, anchors, strides, grid_sizes, image_size,
                                           num_classes, iou_threshold, neighbor_cells)
  decoded = [decode_level(o, a, s, sxy) for o, a, s, sxy in zip(outputs, anchors, strides, scale_x_y)]
  flat_boxes = jnp.concatenate([d.reshape(batch, -1, 4) for d in decoded], axis=1)
  ignored = targets_ops.ignore_mask(flat_boxes, gt_boxes.astype(jnp.float32), gt_valid, ignore_threshold)

  box_sum = obj_sum = cls_sum = iou_sum = positives = 0.0
  start = 0
  for raw, boxes, t in zip(outputs, decoded, level_targets):
    positive = t.objectness  # [B, H, W, A] 0/1
    count = positive[0].size
    level_ignored = ignored[:, start:start + count].reshape(positive.shape)
    start += count
    ciou = box_ops.ciou(boxes, t.boxes)
    box_weights = positive * t.box_weights if box_size_weight else positive
    box_sum += jnp.sum((1.0 - ciou) * box_weights)
    obj_weights = jnp.maximum(positive, (~level_ignored).astype(jnp.float32))
    obj_sum += losses.sigmoid_binary_cross_entropy(raw[..., 4], positive, obj_weights, reduction="sum")
    cls_sum += losses.sigmoid_binary_cross_entropy(raw[..., 5:], t.classes, positive[..., None], reduction="sum")
    iou_sum += jnp.sum(jnp.where(positive > 0, _plain_iou(jax.lax.stop_gradient(boxes), t.boxes), 0.0))  # metric only
    positives += jnp.sum(positive)
  return LossTerms(
      box=box_weight * box_sum / batch,
      obj=obj_weight * obj_sum / batch,
      cls=cls_weight * cls_sum / batch,
      num_positives=positives / batch,
      mean_iou=iou_sum / jnp.maximum(positives, 1.0),
  )


def _plain_iou(boxes1: jnp.ndarray, boxes2: jnp.ndarray) -> jnp.ndarray:
  """Elementwise IoU of ``[..., 4]`` boxes (0 for an empty union)."""
  overlap = jnp.maximum(jnp.minimum(boxes1[..., 2:], boxes2[..., 2:]) - jnp.maximum(boxes1[..., :2], boxes2[..., :2]), 0.0)
  intersection = overlap[..., 0] * overlap[..., 1]
  union = box_ops.box_area(boxes1) + box_ops.box_area(boxes2) - intersection
  return jnp.where(union > 0, intersection / jnp.where(union > 0, union, 1.0), 0.0)


def flatten_levels(outputs: Sequence[jnp.ndarray], decoded: Sequence[jnp.ndarray]) -> Dict[str, jnp.ndarray]:
  """Every level's predictions as one list per image.

  Args:
    outputs: per level ``[B, H_l, W_l, A_l, 5 + K]`` raw outputs.
    decoded: per level ``[B, H_l, W_l, A_l, 4]`` boxes.

  Returns:
    ``{"boxes": [B, N, 4], "objectness": [B, N], "class_probs": [B, N, K]}`` with ``N`` the sum of
    ``H_l W_l A_l``, levels in order, each level row-major over ``(row, column, anchor)``.
  """
  batch = outputs[0].shape[0]
  num_classes = outputs[0].shape[-1] - 5
  boxes = jnp.concatenate([d.reshape(batch, -1, 4) for d in decoded], axis=1)
  raw = jnp.concatenate([o.astype(jnp.float32).reshape(batch, -1, 5 + num_classes) for o in outputs], axis=1)
  return {"boxes": boxes, "objectness": jax.nn.sigmoid(raw[..., 4]), "class_probs": jax.nn.sigmoid(raw[..., 5:])}


def level_anchor_split(anchors: Sequence[Tuple[float, float]], num_levels: int) -> List[Tuple[Tuple[float, float], ...]]:
  """Anchors sorted by area and cut into ``num_levels`` equal groups, smallest first (darknet's
  ``mask = 0,1,2`` / ``3,4,5`` / ``6,7,8`` on the finest to coarsest head).

  Raises:
    ValueError: when the count is not a multiple of ``num_levels``.
  """
  if num_levels < 1 or len(anchors) % num_levels:
    raise ValueError(f"{len(anchors)} anchors cannot be split evenly over {num_levels} levels; give "
                     f"{num_levels} x anchors_per_level (scripts/yolo_anchors.py --num_anchors).")
  ordered = sorted((tuple(float(v) for v in a) for a in anchors), key=lambda a: (a[0] * a[1], a[0]))
  per = len(ordered) // num_levels
  return [tuple(ordered[i * per:(i + 1) * per]) for i in range(num_levels)]
