"""The SADH paper's proposal analyses and the plots people look at.

- :func:`confidence_gradient` (paper Fig. 6): how fast the RPN's classification score falls
  away from a lesion. For every ground-truth box, take the FPN level and anchor that match it
  best, the feature-map cell of the box centre, and ``delta s_cls(d) = s_cls(cell at Manhattan
  distance d) - s_cls(centre cell)`` for the same anchor; average over cells at distance ``d`` and
  over boxes. A steeper (more negative) curve means adjacent positions are scored more
  independently, which is what the 1x1 classification tower of SADH is for.
- :func:`iou_score_pairs` (paper Fig. 7): per image, the top anchors by rectified score on each
  level are decoded into boxes; for those overlapping a ground truth, their IoU with it against
  ``s_cls``, the predicted NWD ``p`` and ``s_final = sqrt(s_cls^(2-w) p^w)``; :func:`pearson` gives
  the correlation (the paper reports 0.63, 0.68 and 0.73 on AcneSCU).
- :func:`precision_recall` : per-class precision-recall curves at one IoU (greedy matching by
  score, as COCO), for plotting.
- :func:`draw_detections`: boxes in per-class colours on an image, with a legend.

Plotting helpers write PNG files with matplotlib's Agg backend.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from acne_jax.evaluation.numpy_boxes import pairwise_iou

# Ten distinguishable colours (RGB), one per AcneSCU category.
CLASS_COLOURS = np.array([
    (255, 255, 255), (30, 30, 30), (230, 40, 40), (250, 200, 0), (140, 40, 200),
    (40, 120, 255), (255, 60, 200), (150, 90, 30), (20, 200, 60), (0, 220, 230),
], np.uint8)


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def confidence_gradient(
    cls_logits: Sequence[np.ndarray],
    feature_sizes: Sequence[Tuple[int, int]],
    anchors: Sequence[np.ndarray],
    strides: Sequence[int],
    gt_boxes: Sequence[np.ndarray],
    max_distance: int = 6,
) -> np.ndarray:
  """Mean ``delta s_cls`` by Manhattan distance from the ground-truth centre (Fig. 6).

  Args:
    cls_logits: per level, ``[N, H_l * W_l * A]`` objectness logits of ``N`` images (anchor
      order: row, column, anchor).
    feature_sizes: per level ``(H_l, W_l)``.
    anchors: per level ``[H_l * W_l * A, 4]`` x1y1x2y2.
    strides: per level.
    gt_boxes: per image ``[G_i, 4]``.
    max_distance: largest Manhattan distance ``D``.

  Returns:
    ``[D + 1]`` mean ``delta s_cls`` (entry 0 is 0); NaN where no cell was at that distance.
  """
  num_anchors = anchors[0].shape[0] // (feature_sizes[0][0] * feature_sizes[0][1])
  sums = np.zeros(max_distance + 1)
  counts = np.zeros(max_distance + 1)
  offsets = [(dy, dx) for dy in range(-max_distance, max_distance + 1) for dx in range(-max_distance, max_distance + 1)
             if abs(dy) + abs(dx) <= max_distance]
  for image, boxes in enumerate(gt_boxes):
    for box in np.asarray(boxes, np.float64).reshape(-1, 4):
      # The level and anchor shape that match the box best (the anchor centred on the box centre).
      best = None
      for level, (size, level_anchors, stride) in enumerate(zip(feature_sizes, anchors, strides)):
        cy, cx = (box[1] + box[3]) / 2, (box[0] + box[2]) / 2
        row, col = int(round(cy / stride)), int(round(cx / stride))
        if not (0 <= row < size[0] and 0 <= col < size[1]):
          continue
        base = (row * size[1] + col) * num_anchors
        ious = pairwise_iou(box[None], level_anchors[base:base + num_anchors].astype(np.float64))[0]
        a = int(np.argmax(ious))
        if best is None or ious[a] > best[0]:
          best = (ious[a], level, row, col, a)
      if best is None:
        continue
      _, level, row, col, a = best
      height, width = feature_sizes[level]
      scores = _sigmoid(np.asarray(cls_logits[level][image]).reshape(height, width, num_anchors)[..., a])
      centre = scores[row, col]
      for dy, dx in offsets:
        r, c = row + dy, col + dx
        if 0 <= r < height and 0 <= c < width:
          d = abs(dy) + abs(dx)
          sums[d] += scores[r, c] - centre
          counts[d] += 1
  with np.errstate(invalid="ignore"):
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def iou_score_pairs(
    cls_logits: Sequence[np.ndarray],
    nwd_logits: Sequence[np.ndarray],
    decoded_boxes: Sequence[np.ndarray],
    gt_boxes: Sequence[np.ndarray],
    top_k: int = 200,
    nwd_weight: float = 1.0,
) -> Dict[str, np.ndarray]:
  """IoU with the matched ground truth against ``s_cls``, ``p`` and ``s_final`` (Fig. 7).

  Args:
    cls_logits, nwd_logits: per level ``[N, A_l]`` logits of ``N`` images.
    decoded_boxes: per level ``[N, A_l, 4]`` anchors decoded with the predicted deltas.
    gt_boxes: per image ``[G_i, 4]``.
    top_k: anchors kept per image and level, by ``s_final``.
    nwd_weight: ``w`` of ``s_final``.

  Returns:
    ``{"iou", "s_cls", "nwd", "s_final"}``, 1-D arrays over the kept anchors that overlap a
    ground truth (IoU > 0).
  """
  out = {k: [] for k in ("iou", "s_cls", "nwd", "s_final")}
  for image, boxes in enumerate(gt_boxes):
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    if not len(boxes):
      continue
    for cls, nwd, decoded in zip(cls_logits, nwd_logits, decoded_boxes):
      s_cls, p = _sigmoid(cls[image]), _sigmoid(nwd[image])
      s_final = np.sqrt(s_cls ** (2 - nwd_weight) * p ** nwd_weight)
      keep = np.argsort(-s_final, kind="stable")[:top_k]
      iou = pairwise_iou(np.asarray(decoded[image], np.float64)[keep], boxes).max(axis=1)
      matched = iou > 0
      for name, values in (("iou", iou), ("s_cls", s_cls[keep]), ("nwd", p[keep]), ("s_final", s_final[keep])):
        out[name].append(values[matched])
  return {k: np.concatenate(v) if v else np.zeros(0) for k, v in out.items()}


def pearson(x: np.ndarray, y: np.ndarray) -> float:
  """Pearson correlation coefficient (NaN for fewer than two points or a constant input)."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  if len(x) < 2 or x.std() == 0 or y.std() == 0:
    return float("nan")
  return float(np.mean((x - x.mean()) * (y - y.mean())) / (x.std() * y.std()))


def precision_recall(
    gt_boxes: Sequence[np.ndarray], gt_labels: Sequence[np.ndarray],
    det_boxes: Sequence[np.ndarray], det_scores: Sequence[np.ndarray], det_labels: Sequence[np.ndarray],
    num_classes: int, iou: float = 0.5,
) -> List[Tuple[np.ndarray, np.ndarray]]:
  """Per class ``(recall, precision)`` arrays over detections sorted by score (greedy matching).

  Each detection, in descending score order within its image, matches the unmatched ground
  truth of its class with the highest IoU >= ``iou``; the curve steps through all detections of
  the class across images in descending score. A class without ground truth gets empty arrays.
  """
  curves = []
  for c in range(num_classes):
    scores, hits, total = [], [], 0
    for gb, gl, db, ds, dl in zip(gt_boxes, gt_labels, det_boxes, det_scores, det_labels):
      g = np.asarray(gb, np.float64).reshape(-1, 4)[np.asarray(gl) == c]
      d_mask = np.asarray(dl) == c
      d = np.asarray(db, np.float64).reshape(-1, 4)[d_mask]
      s = np.asarray(ds, np.float64)[d_mask]
      total += len(g)
      order = np.argsort(-s, kind="mergesort")
      used = np.zeros(len(g), bool)
      ious = pairwise_iou(d[order], g) if len(g) and len(d) else np.zeros((len(d), len(g)))
      for row, k in enumerate(order):
        hit = False
        if len(g):
          candidates = np.where(used, -1.0, ious[row])
          j = int(np.argmax(candidates))
          if candidates[j] >= iou:
            used[j] = True
            hit = True
        scores.append(s[k])
        hits.append(hit)
    if total == 0:
      curves.append((np.zeros(0), np.zeros(0)))
      continue
    order = np.argsort(-np.asarray(scores), kind="mergesort")
    tp = np.cumsum(np.asarray(hits, np.float64)[order])
    fp = np.cumsum(1.0 - np.asarray(hits, np.float64)[order])
    curves.append((tp / total, tp / np.maximum(tp + fp, 1e-12)))
  return curves


def draw_detections(
    image: np.ndarray, boxes: np.ndarray, classes: np.ndarray, class_names: Sequence[str],
    scores: Optional[np.ndarray] = None, gt_boxes: Optional[np.ndarray] = None, thickness: int = 1,
) -> np.ndarray:
  """``image [H, W, 3] uint8 RGB`` with boxes in per-class colours, ground truth dashed grey, and a legend.

  Returns:
    uint8 ``[H + legend, W, 3]`` RGB.
  """
  canvas = np.ascontiguousarray(image.copy())
  if gt_boxes is not None:
    for box in np.asarray(gt_boxes).reshape(-1, 4):
      x1, y1, x2, y2 = np.round(box).astype(int)
      for t in range(0, max(x2 - x1, 1), 4):
        cv2.line(canvas, (x1 + t, y1), (min(x1 + t + 2, x2), y1), (160, 160, 160), 1)
        cv2.line(canvas, (x1 + t, y2), (min(x1 + t + 2, x2), y2), (160, 160, 160), 1)
      for t in range(0, max(y2 - y1, 1), 4):
        cv2.line(canvas, (x1, y1 + t), (x1, min(y1 + t + 2, y2)), (160, 160, 160), 1)
        cv2.line(canvas, (x2, y1 + t), (x2, min(y1 + t + 2, y2)), (160, 160, 160), 1)
  for k, (box, cls) in enumerate(zip(np.asarray(boxes).reshape(-1, 4), np.asarray(classes).reshape(-1))):
    colour = tuple(int(v) for v in CLASS_COLOURS[int(cls) % len(CLASS_COLOURS)])
    x1, y1, x2, y2 = np.round(box).astype(int)
    cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thickness)
    if scores is not None and image.shape[1] >= 400:
      cv2.putText(canvas, f"{scores[k]:.2f}", (x1, max(y1 - 2, 8)), cv2.FONT_HERSHEY_SIMPLEX, 0.3, colour, 1, cv2.LINE_AA)
  # Legend: one swatch and name per class, wrapped over rows.
  width = canvas.shape[1]
  per_row = max(1, width // 126)
  rows = -(-len(class_names) // per_row)
  legend = np.full((rows * 18 + 4, width, 3), 255, np.uint8)
  for i, name in enumerate(class_names):
    r, c = divmod(i, per_row)
    x, y = c * 126 + 4, r * 18 + 4
    colour = tuple(int(v) for v in CLASS_COLOURS[i % len(CLASS_COLOURS)])
    cv2.rectangle(legend, (x, y), (x + 12, y + 12), colour, -1)
    cv2.rectangle(legend, (x, y), (x + 12, y + 12), (0, 0, 0), 1)
    cv2.putText(legend, name, (x + 16, y + 11), cv2.FONT_HERSHEY_SIMPLEX, 0.34, (0, 0, 0), 1, cv2.LINE_AA)
  return np.concatenate([canvas, legend], axis=0)
