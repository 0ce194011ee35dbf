"""Score thresholds for counting lesions, calibrated on held-out images.

A lesion count (what a dermatologist and the Hayashi grade read) is the number of detections
scoring at least some threshold. Any fixed threshold is wrong for some model: a model that
ranks well but scores background generously over-counts at 0.3. So the threshold is chosen
on a validation split, where the ground truth is known, as the one that maximises F1 at an
IoU threshold (0.5): at that point the detector's false positives and misses are as few as
they can be together, and since F1 = 2 TP / (positives + detections), no threshold gives a
better-balanced count.

The matching is the COCO greedy matching of :mod:`acne_jax.evaluation.coco_metrics` (per
image and category, by descending score, each ground truth matched at most once). For each
class ``k`` with detections sorted by descending score, counting the first ``i`` of them
gives ``TP_k(i)`` true positives, precision ``TP_k(i) / i``, recall ``TP_k(i) / P_k`` and F1
``2 TP_k(i) / (P_k + i)``; only cuts between different scores are operating points (tied
detections are counted together, as ``score >= threshold`` does). The per-class threshold is
the score of the last detection counted at the best cut; a class with no validation ground
truth or no true positive gets the global threshold. The global threshold is the same
computation over all classes together (micro-averaged: the detections of every class, each
matched within its class), for users who want one number.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Sequence

import numpy as np

from acne_jax.evaluation import coco_metrics


def _best_cut(scores: np.ndarray, tp: np.ndarray, num_positives: int) -> Dict[str, float]:
  """The F1-maximising ``score >= threshold`` cut of one set of matched detections.

  Args:
    scores: ``[D]`` detection scores; tp: ``[D]`` bool, matched to ground truth.
    num_positives: ground truth count ``P``.

  Returns:
    ``{"threshold", "f1", "precision", "recall", "detections", "true_positives", "positives"}``;
    ``threshold`` is ``inf`` (count nothing) when no cut has a true positive.
  """
  order = np.argsort(-scores, kind="stable")
  s, hits = scores[order], np.cumsum(tp[order], dtype=np.int64)
  cuts = np.flatnonzero(np.r_[s[1:] != s[:-1], True]) if len(s) else np.zeros(0, np.int64)
  best = {"threshold": float("inf"), "f1": 0.0, "precision": 0.0, "recall": 0.0, "detections": 0, "true_positives": 0,
          "positives": int(num_positives)}
  if not len(cuts) or num_positives <= 0:
    return best
  counted = cuts + 1
  f1 = 2.0 * hits[cuts] / (num_positives + counted)
  i = int(np.argmax(f1))  # the first (strictest) of equal maxima: fewer detections for the same F1
  if f1[i] <= 0:
    return best
  tps, n = int(hits[cuts[i]]), int(counted[i])
  return {"threshold": float(s[cuts[i]]), "f1": float(f1[i]), "precision": tps / n, "recall": tps / num_positives,
          "detections": n, "true_positives": tps, "positives": int(num_positives)}


def calibrate(ground_truth: Mapping[str, Any], results: Sequence[Mapping[str, Any]], iou: float = 0.5) -> Dict[str, Any]:
  """Per-class and global F1-maximising score thresholds (see the module docstring).

  Args:
    ground_truth: COCO instances dictionary (``coco_metrics.coco_ground_truth``).
    results: COCO results list (every detection the model reports, whatever its score).
    iou: IoU at which a detection matches a lesion.

  Returns:
    ``{"iou", "images", "global": cut, "per_class": {name: cut + {"source"}},
    "per_class_combined"}`` where ``cut`` is :func:`_best_cut`'s dictionary; ``source`` is
    ``"calibrated"`` or ``"global"`` (the class had no ground truth or no true positive, and
    takes the global threshold; its own counts are kept for the record);
    ``per_class_combined`` is precision, recall and F1 over all classes when each class is
    counted at its own threshold (what ``predict`` does by default).
  """
  index, gt = coco_metrics.parse_ground_truth(ground_truth)
  dt = coco_metrics.parse_results(results, index)
  num_classes = len(index.category_ids)
  matches = coco_metrics._match(gt, dt, num_classes, np.array([iou]), np.array([[-np.inf, np.inf]]), None)
  tp = matches.tp[0, 0]
  positives = matches.num_positives[:, 0]
  overall = _best_cut(matches.score, tp, int(positives.sum()))
  per_class = {}
  for k, name in enumerate(index.category_names):
    mine = matches.category == k
    cut = _best_cut(matches.score[mine], tp[mine], int(positives[k]))
    if cut["true_positives"] > 0:
      per_class[name] = {**cut, "source": "calibrated"}
    else:
      per_class[name] = {**cut, "threshold": overall["threshold"], "source": "global"}
  # What counting with every class at its own threshold gives on this split.
  chosen = np.asarray([per_class[name]["threshold"] for name in index.category_names], np.float64)
  kept = matches.score >= chosen[matches.category] if len(matches.score) else np.zeros(0, bool)
  n, tps, p = int(kept.sum()), int((tp & kept).sum()), int(positives.sum())
  combined = {"precision": tps / n if n else 0.0, "recall": tps / p if p else 0.0,
              "f1": 2.0 * tps / (p + n) if p + n else 0.0, "detections": n, "true_positives": tps, "positives": p}
  return {"iou": float(iou), "images": int(len(index.image_ids)), "global": overall, "per_class": per_class,
          "per_class_combined": combined}


def thresholds_by_class(operating_point: Mapping[str, Any], class_names: Sequence[str]) -> np.ndarray:
  """float64 ``[K]`` per-class thresholds of a :func:`calibrate` result, in ``class_names``
  order; a class it does not name gets the global threshold."""
  fallback = float(operating_point["global"]["threshold"])
  per_class = operating_point.get("per_class", {})
  return np.asarray([float(per_class[n]["threshold"]) if n in per_class else fallback for n in class_names], np.float64)


def counted(scores: np.ndarray, classes: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
  """bool ``[N]``: detection ``n`` (class ``classes[n]``) scores at least its class's threshold."""
  classes = np.asarray(classes, np.int64)
  return np.asarray(scores, np.float64) >= np.asarray(thresholds, np.float64)[classes]


def describe(operating_point: Mapping[str, Any], split: str = "validation") -> str:
  """A few lines: the global threshold and each class's, with the precision and recall they give."""
  g = operating_point["global"]
  lines = [f"counting thresholds (max F1 at IoU {operating_point['iou']:g} on {operating_point['images']} {split} images): "
           f"global {g['threshold']:.3f} (precision {g['precision']:.3f}, recall {g['recall']:.3f}, F1 {g['f1']:.3f})"]
  c = operating_point.get("per_class_combined")
  if c:
    lines.append(f"  per-class thresholds together: precision {c['precision']:.3f}, recall {c['recall']:.3f}, F1 {c['f1']:.3f} "
                 f"({c['detections']} counted for {c['positives']} lesions)")
  for name, c in operating_point["per_class"].items():
    note = "" if c["source"] == "calibrated" else "  (global: no true positive in the split)"
    lines.append(f"  {name:18s} {c['threshold']:.3f}  precision {c['precision']:.3f}  recall {c['recall']:.3f}  "
                 f"({c['positives']} lesions){note}")
  return "\n".join(lines)
