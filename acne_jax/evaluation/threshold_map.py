"""The DeepLesion benchmark paper's metrics: mAP over 11 confidence thresholds at a low IoU, and
the mean IoU of the matched detections (``shared/papers/deeplesion_detection_benchmark.md``,
section 3.3, its Tables 3-4; the paper sets the IoU threshold to 0.21).

Definition, as the paper's section 3.3 describes it:

- detections are matched to the ground truth of their image and class greedily by descending
  score, each to the unmatched lesion it overlaps most, when that IoU is at least ``iou``
  (COCO's matching, :func:`acne_jax.evaluation.coco_metrics._match`; the paper says "greater
  than", we keep the inclusive comparison of every other metric here);
- for each confidence threshold ``t`` in 0, 0.1, ..., 1.0, the detections scoring ``>= t`` give
  a precision ``TP / (TP + FP)`` and a recall ``TP / lesions`` (greedy matching in score order makes
  the matching of the detections above ``t`` independent of those below, so one matching serves
  every threshold);
- a class's AP is the area under these 11 points, ``sum_i precision_i * (recall_i - recall_{i-1})``
  over the points by increasing recall (decreasing ``t``), starting from recall 0; mAP is the mean
  over the classes that have lesions;
- the mean IoU is the mean IoU of the true positives scoring at least ``iou_score_threshold``
  (0.25, darknet's ``detector map`` default, which reports YOLO's average IoU there).

This is coarser than COCO's 101-point AP (:mod:`acne_jax.evaluation.coco_metrics`, mAP@50/75),
which the benchmark reports beside it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Mapping, Sequence

import numpy as np

from acne_jax.evaluation import coco_metrics

SCORE_THRESHOLDS = tuple(round(0.1 * i, 1) for i in range(11))
SEED_IOU = 0.21
IOU_SCORE_THRESHOLD = 0.25


def threshold_ap(precision: np.ndarray, recall: np.ndarray) -> float:
  """Area under precision-recall points ordered by increasing recall: ``sum_i p_i (r_i - r_{i-1})``,
  ``r_0 = 0``."""
  recall = np.asarray(recall, np.float64)
  return float(np.sum(np.asarray(precision, np.float64) * np.diff(np.r_[0.0, recall])))


def evaluate(ground_truth: Mapping[str, Any], results: Sequence[Mapping[str, Any]], iou: float = SEED_IOU,
             score_thresholds: Sequence[float] = SCORE_THRESHOLDS, iou_score_threshold: float = IOU_SCORE_THRESHOLD,
             class_agnostic: bool = False) -> Dict[str, Any]:
  """The paper's mAP and mean matched IoU (module docstring) of COCO ``results`` against
  COCO ``ground_truth``.

  Returns:
    ``{"iou", "mAP", "mean_iou", "AP_per_class": {name: AP or None}, "mean_iou_per_class": {name:
    IoU or None}, "points_per_class": {name: [[t, precision, recall], ...]}, "score_thresholds",
    "iou_score_threshold"}``; ``None`` (and ``mAP`` over the others) for a class without lesions,
    ``mean_iou`` ``None`` without true positives above ``iou_score_threshold``.
  """
  if not 0.0 < iou <= 1.0:
    raise ValueError(f"iou must be in (0, 1]; got {iou}.")
  thresholds = np.asarray(sorted(score_thresholds, reverse=True), np.float64)  # increasing recall
  index, gt = coco_metrics.parse_ground_truth(ground_truth)
  dt = coco_metrics.parse_results(results, index)
  num_categories = len(index.category_ids)
  names = index.category_names
  if class_agnostic:  # lesion vs background
    gt = dataclasses.replace(gt, category=np.zeros_like(gt.category))
    dt = dataclasses.replace(dt, category=np.zeros_like(dt.category))
    num_categories, names = 1, ("lesion",)
  matches = coco_metrics._match(gt, dt, num_categories, np.array([iou]), np.array([[0.0, np.inf]]), None)
  tp, fp, matched_iou = matches.tp[0, 0], matches.fp[0, 0], matches.iou[0, 0]
  above = matches.score[None, :] >= thresholds[:, None]  # [T, D]
  ap, mean_iou, points = {}, {}, {}
  for k, name in enumerate(names):
    mine = matches.category == k
    positives = int(matches.num_positives[k, 0])
    tps = np.sum(above & (tp & mine)[None], axis=1).astype(np.float64)
    fps = np.sum(above & (fp & mine)[None], axis=1).astype(np.float64)
    precision = np.divide(tps, tps + fps, out=np.ones_like(tps), where=tps + fps > 0)
    recall = tps / positives if positives else np.zeros_like(tps)
    ap[name] = threshold_ap(precision, recall) if positives else None
    points[name] = [[float(t), float(p), float(r)] for t, p, r in zip(thresholds, precision, recall)]
    kept = tp & mine & (matches.score >= iou_score_threshold)
    mean_iou[name] = float(matched_iou[kept].mean()) if kept.any() else None
  kept = tp & (matches.score >= iou_score_threshold)
  scored = [v for v in ap.values() if v is not None]
  return {"iou": float(iou), "mAP": float(np.mean(scored)) if scored else None,
          "mean_iou": float(matched_iou[kept].mean()) if kept.any() else None,
          "AP_per_class": ap, "mean_iou_per_class": mean_iou, "points_per_class": points,
          "score_thresholds": [float(t) for t in sorted(score_thresholds)], "iou_score_threshold": float(iou_score_threshold)}


def format_table(report: Mapping[str, Any]) -> str:
  """A few lines: mAP and mean IoU, then per class."""
  def fmt(value):
    return "   -  " if value is None else f"{value:6.3f}"

  lines = [f"11-threshold mAP at IoU {report['iou']:g} (the DeepLesion benchmark's): {fmt(report['mAP']).strip()}, "
           f"mean IoU of true positives scoring >= {report['iou_score_threshold']:g}: {fmt(report['mean_iou']).strip()}",
           f"  {'class':<20s}{'AP':>8s}{'IoU':>8s}"]
  for name, value in report["AP_per_class"].items():
    lines.append(f"  {name:<20s}{fmt(value):>8s}{fmt(report['mean_iou_per_class'][name]):>8s}")
  return "\n".join(lines)
