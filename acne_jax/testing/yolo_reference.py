"""A float64 NumPy restatement of the YOLOv4 head math, for tests: decoding (darknet's
``get_yolo_box`` with ``scale_x_y``), CIoU from its paper's formula, BCE on logits, the ignore rule
and the loss summed per image and averaged over the batch. Written from the definitions, not
from :mod:`acne_jax.ops.yolo_head`; the dense targets come from the caller."""

from __future__ import annotations

import math
from typing import Sequence, Tuple

import numpy as np


def sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def bce(logits, targets):
  """``-t log sigmoid(x) - (1 - t) log(1 - sigmoid(x))``, in its stable form."""
  return np.maximum(logits, 0) - logits * targets + np.log1p(np.exp(-np.abs(logits)))


def decode(raw, anchors, stride, scale_x_y, wh_clamp=math.log(1000 / 16)):
  """``[B, H, W, A, C]`` raw outputs -> ``[B, H, W, A, 4]`` x1y1x2y2 input pixels."""
  raw = np.asarray(raw, np.float64)
  _, h, w, _, _ = raw.shape
  col = np.arange(w)[None, None, :, None]
  row = np.arange(h)[None, :, None, None]
  cx = (col + scale_x_y * sigmoid(raw[..., 0]) - 0.5 * (scale_x_y - 1)) * stride
  cy = (row + scale_x_y * sigmoid(raw[..., 1]) - 0.5 * (scale_x_y - 1)) * stride
  anchors = np.asarray(anchors, np.float64)
  bw = anchors[:, 0] * np.exp(np.clip(raw[..., 2], -wh_clamp, wh_clamp))
  bh = anchors[:, 1] * np.exp(np.clip(raw[..., 3], -wh_clamp, wh_clamp))
  return np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=-1)


def iou(a, b):
  """Elementwise (broadcasting) IoU of ``[..., 4]`` boxes; 0 for an empty union."""
  inter = (np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
           * np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None))
  area_a = np.clip(a[..., 2] - a[..., 0], 0, None) * np.clip(a[..., 3] - a[..., 1], 0, None)
  area_b = np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)
  union = area_a + area_b - inter
  return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def ciou(a, b):
  """CIoU of non-empty box pairs ``[..., 4]`` (Zheng et al. 2020): ``IoU - rho^2/c^2 - alpha v``."""
  overlap = iou(a, b)
  cw = np.maximum(a[..., 2], b[..., 2]) - np.minimum(a[..., 0], b[..., 0])
  ch = np.maximum(a[..., 3], b[..., 3]) - np.minimum(a[..., 1], b[..., 1])
  rho2 = (((a[..., 0] + a[..., 2]) - (b[..., 0] + b[..., 2])) / 2) ** 2 + (((a[..., 1] + a[..., 3]) - (b[..., 1] + b[..., 3])) / 2) ** 2
  v = 4 / math.pi**2 * (np.arctan((b[..., 2] - b[..., 0]) / (b[..., 3] - b[..., 1]))
                        - np.arctan((a[..., 2] - a[..., 0]) / (a[..., 3] - a[..., 1]))) ** 2
  alpha = np.where((1 - overlap) + v > 0, v / np.where((1 - overlap) + v > 0, (1 - overlap) + v, 1), 0.0)
  return overlap - rho2 / (cw**2 + ch**2) - alpha * v


def yolo_loss(outputs: Sequence[np.ndarray], level_targets, level_anchors, strides, scale_x_y, gt_boxes, gt_valid,
              ignore_threshold: float = 0.7, box_weight: float = 0.07, obj_weight: float = 1.0, cls_weight: float = 1.0,
              box_size_weight: bool = False) -> Tuple[float, float, float, float]:
  """``(box, obj, cls, positives per image)`` of YOLOv4's loss from raw outputs ``[B, H, W, A, 5 + K]``
  per level and dense targets per level (``objectness``, ``boxes``, ``classes``, ``box_weights``)."""
  outputs = [np.asarray(o, np.float64) for o in outputs]
  gt_boxes = np.asarray(gt_boxes, np.float64)
  gt_valid = np.asarray(gt_valid)
  batch = outputs[0].shape[0]
  box = obj = cls = positives = 0.0
  for raw, anchors, stride, sxy, t in zip(outputs, level_anchors, strides, scale_x_y, level_targets):
    boxes = decode(raw, anchors, stride, sxy)
    pos = np.asarray(t.objectness) > 0
    target_boxes = np.asarray(t.boxes, np.float64)
    classes = np.asarray(t.classes, np.float64)
    for b in range(batch):
      overlaps = iou(boxes[b][..., None, :], gt_boxes[b][None, None, None, :, :])  # [H, W, A, G]
      ignored = np.where(gt_valid[b], overlaps, 0.0).max(axis=-1) > ignore_threshold
      weight = np.where(pos[b], 1.0, np.where(ignored, 0.0, 1.0))
      obj += np.sum(weight * bce(raw[b, ..., 4], pos[b].astype(np.float64)))
      if pos[b].any():
        scale = np.asarray(t.box_weights, np.float64)[b][pos[b]] if box_size_weight else 1.0
        box += np.sum((1 - ciou(boxes[b][pos[b]], target_boxes[b][pos[b]])) * scale)
        cls += np.sum(bce(raw[b][pos[b]][:, 5:], classes[b][pos[b]]))
      positives += pos[b].sum()
  return box_weight * box / batch, obj_weight * obj / batch, cls_weight * cls / batch, positives / batch
