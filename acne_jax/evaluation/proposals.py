"""Recall of region proposals (how good the RPN is before the second stage).

For each image, ground truth and the top-``k`` proposals are matched one to one, greedily by
IoU: the best remaining pair is matched and both are removed (Hosang et al.'s protocol, as in
MMDetection's ``eval_recalls``). A ground-truth box is recalled at threshold ``t`` when its
match has IoU >= ``t``. AR@k is the recall averaged over ``t`` in 0.5:0.05:0.95 and over all
ground truth of the data set (also reported per COCO size bucket when ``areas`` are given).
"""

from __future__ import annotations

from typing import Dict, Sequence

import numpy as np

from acne_jax.evaluation.numpy_boxes import pairwise_iou

COCO_IOUS = np.linspace(0.5, 0.95, 10)
SIZE_BUCKETS = {"s": (0.0, 32.0**2), "m": (32.0**2, 96.0**2), "l": (96.0**2, np.inf)}


def matched_ious(gt: np.ndarray, proposals: np.ndarray) -> np.ndarray:
  """Greedy one-to-one matching; returns ``[G]`` the IoU of each ground truth's match (0 if none).

  Args:
    gt: ``[G, 4]`` x1y1x2y2.
    proposals: ``[P, 4]`` x1y1x2y2, best first (only their set matters here).
  """
  result = np.zeros(len(gt))
  if len(gt) == 0 or len(proposals) == 0:
    return result
  ious = pairwise_iou(gt, proposals)
  for _ in range(min(len(gt), len(proposals))):
    g, p = np.unravel_index(np.argmax(ious), ious.shape)
    if ious[g, p] < 0:
      break
    result[g] = ious[g, p]
    ious[g, :] = -1.0
    ious[:, p] = -1.0
  return result


def average_recall(
    gt_boxes: Sequence[np.ndarray],
    proposals: Sequence[np.ndarray],
    limits: Sequence[int] = (100, 300, 1000),
    iou_thresholds: np.ndarray = COCO_IOUS,
) -> Dict[str, float]:
  """AR@k for each ``k`` in ``limits``, overall and per size bucket (box area of the ground truth).

  Args:
    gt_boxes: per image ``[G_i, 4]``.
    proposals: per image ``[P_i, 4]`` sorted by score, best first (padding already removed).
    limits: numbers of proposals per image.
    iou_thresholds: thresholds averaged over.

  Returns:
    ``{"AR@100": ..., "AR_s@100": ..., ...}``; a bucket without ground truth gives -1.
  """
  areas = np.concatenate([np.clip(g[:, 2] - g[:, 0], 0, None) * np.clip(g[:, 3] - g[:, 1], 0, None) for g in gt_boxes]) if gt_boxes else np.zeros(0)
  out = {}
  for k in limits:
    best = np.concatenate([matched_ious(g, p[:k]) for g, p in zip(gt_boxes, proposals)]) if gt_boxes else np.zeros(0)
    recalled = best[:, None] >= np.asarray(iou_thresholds)[None, :]  # [total G, T]
    out[f"AR@{k}"] = float(recalled.mean()) if len(best) else -1.0
    for name, (lo, hi) in SIZE_BUCKETS.items():
      inside = (areas >= lo) & (areas < hi)
      out[f"AR_{name}@{k}"] = float(recalled[inside].mean()) if inside.any() else -1.0
  return out
