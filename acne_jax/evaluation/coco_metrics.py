"""COCO-style detection metrics as the SADH paper reports them.

AP and AR at a single IoU threshold (0.5) with at most ``max_dets`` detections per image, and
the same for the COCO size buckets (small < 32^2 <= medium < 96^2 <= large, on the ground
truth's box area). Ground truth and detections are COCO dictionaries / result lists, so the
numbers can be checked against any COCO tool.

The computation is delegated to pycocotools' ``COCOeval`` with ``iouThrs = [iou]`` and
``maxDets = [max_dets]``, reading precision and recall from its accumulated arrays (its own
``summarize`` hard-codes maxDets 1/10/100, and the SADH reference's variant silently uses
1000 for every statistic).
"""

from __future__ import annotations

import contextlib
import io
from typing import Any, Dict, List, Mapping, Sequence

import numpy as np

AREA_NAMES = ("all", "small", "medium", "large")


def coco_ground_truth(image_ids: Sequence[int], image_sizes: Sequence[Sequence[int]], boxes: Sequence[np.ndarray],
                      labels: Sequence[np.ndarray], class_names: Sequence[str]) -> Dict[str, Any]:
  """A COCO instances dictionary (category ids ``1..K``; boxes ``[x, y, w, h]``; area = box area)."""
  images, annotations = [], []
  for image_id, (h, w), image_boxes, image_labels in zip(image_ids, image_sizes, boxes, labels):
    images.append({"id": int(image_id), "height": int(h), "width": int(w)})
    for box, label in zip(np.asarray(image_boxes).reshape(-1, 4), np.asarray(image_labels).reshape(-1)):
      bw, bh = float(box[2] - box[0]), float(box[3] - box[1])
      annotations.append({
          "id": len(annotations) + 1, "image_id": int(image_id), "category_id": int(label) + 1,
          "bbox": [float(box[0]), float(box[1]), bw, bh], "area": bw * bh, "iscrowd": 0,
      })
  categories = [{"id": i + 1, "name": name} for i, name in enumerate(class_names)]
  return {"images": images, "annotations": annotations, "categories": categories}


def coco_results(image_ids, boxes, scores, classes, valid) -> List[Dict[str, Any]]:
  """COCO results list from padded detections ``[N, D, ...]`` (class ids ``0..K-1`` -> ``1..K``)."""
  results = []
  for image_id, b, s, c, v in zip(image_ids, boxes, scores, classes, valid):
    for box, score, cls in zip(np.asarray(b)[v], np.asarray(s)[v], np.asarray(c)[v]):
      results.append({
          "image_id": int(image_id), "category_id": int(cls) + 1,
          "bbox": [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])], "score": float(score),
      })
  return results


def evaluate_detections(ground_truth: Mapping[str, Any], results: Sequence[Mapping[str, Any]], iou: float = 0.5,
                        max_dets: int = 100) -> Dict[str, float]:
  """AP/AR at ``iou`` with ``max_dets`` per image, overall and per size bucket.

  Returns:
    ``{"AP@0.5", "AR@0.5", "AP_s@0.5", "AP_m@0.5", "AP_l@0.5", "AR_s@0.5", ...}``; a bucket
    without ground truth reports -1, as COCO does.
  """
  from pycocotools.coco import COCO
  from pycocotools.cocoeval import COCOeval

  with contextlib.redirect_stdout(io.StringIO()):
    gt = COCO()
    gt.dataset = {k: list(v) for k, v in ground_truth.items()}
    gt.createIndex()
    dt = gt.loadRes(list(results)) if len(results) else COCO()
    if not len(results):
      dt.dataset = {"images": list(ground_truth["images"]), "annotations": [], "categories": list(ground_truth["categories"])}
      dt.createIndex()
    evaluator = COCOeval(gt, dt, iouType="bbox")
    evaluator.params.iouThrs = np.array([iou])
    evaluator.params.maxDets = [max_dets]
    evaluator.evaluate()
    evaluator.accumulate()
  precision = evaluator.eval["precision"]  # [T=1, R, K, A, M=1]
  recall = evaluator.eval["recall"]  # [T=1, K, A, M=1]
  metrics = {}
  tag = f"@{iou:g}"
  for a, name in enumerate(AREA_NAMES):
    suffix = "" if name == "all" else "_" + name[0]
    p = precision[0, :, :, a, 0]
    r = recall[0, :, a, 0]
    metrics[f"AP{suffix}{tag}"] = float(np.mean(p[p > -1])) if np.any(p > -1) else -1.0
    metrics[f"AR{suffix}{tag}"] = float(np.mean(r[r > -1])) if np.any(r > -1) else -1.0
  return metrics
