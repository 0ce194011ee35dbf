"""Masks for COCO segm evaluation: ground truth from the per-box bitmaps, detections pasted.

- Ground truth: each lesion's ``M x M`` bitmap over its frame ``(x0, y0, scale)``
  (``acne_jax.ops.mask_targets``) is placed in an image-sized mask (cells of ``scale > 1``
  bitmaps repeated ``scale x scale`` times, kept where the coverage is at least one half) and
  run-length encoded; its ``area`` becomes the mask's pixel count.
- Detections: each detection's ``m x m`` probabilities are pasted into the image
  (``mask_head.paste_mask``, threshold ``model.roi_head.mask.threshold``) and encoded.

``segm_metrics`` then evaluates with ``coco_metrics.evaluate(iou_type="segm",
area_source="annotation")`` (pycocotools' segm conventions) and names the numbers ``mask_AP@0.5``
and so on, beside the box metrics.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Sequence

import numpy as np

from acne_jax.evaluation import coco_metrics, rle


def place_window(bitmap: np.ndarray, frame: Sequence[float], height: int, width: int):
  """``(uint8 window, top, left)``: one ground-truth bitmap (255 inside) as image pixels, cut
  to the image; the image mask is zero elsewhere."""
  x0, y0, scale = int(round(frame[0])), int(round(frame[1])), int(round(frame[2]))
  cells = np.asarray(bitmap) >= 128
  if scale > 1:
    cells = np.kron(cells, np.ones((scale, scale), bool))
  top, left = max(y0, 0), max(x0, 0)
  bottom, right = min(y0 + cells.shape[0], height), min(x0 + cells.shape[1], width)
  if bottom <= top or right <= left:
    return np.zeros((0, 0), np.uint8), 0, 0
  return cells[top - y0:bottom - y0, left - x0:right - x0].astype(np.uint8), top, left


def place(bitmap: np.ndarray, frame: Sequence[float], height: int, width: int) -> np.ndarray:
  """uint8 ``[height, width]`` binary mask of one ground-truth bitmap in its frame."""
  out = np.zeros((height, width), np.uint8)
  window, top, left = place_window(bitmap, frame, height, width)
  out[top:top + window.shape[0], left:left + window.shape[1]] = window
  return out


def ground_truth_with_masks(ground_truth: Mapping[str, Any], masks: np.ndarray, frames: np.ndarray, valid: np.ndarray,
                            image_sizes: np.ndarray) -> Dict[str, Any]:
  """A copy of a COCO ground truth (``coco_metrics.coco_ground_truth``, annotations in image
  then box order) with each annotation's ``segmentation`` (RLE) and mask ``area``.

  Args:
    masks: ``[N, G, M, M]`` uint8; frames: ``[N, G, 3]``; valid: ``[N, G]`` bool;
    image_sizes: ``[N, 2]`` ``(height, width)``; image ``n`` of the arrays is ``images[n]``.
  """
  out = dict(ground_truth)
  annotations = []
  entries = iter(ground_truth["annotations"])
  for n in range(len(masks)):
    height, width = (int(v) for v in image_sizes[n])
    for g in np.flatnonzero(valid[n]):
      entry = dict(next(entries))
      window, top, left = place_window(masks[n, g], frames[n, g], height, width)
      entry["segmentation"] = rle.encode_window(window, top, left, height, width)
      entry["area"] = float(window.sum())
      annotations.append(entry)
  out["annotations"] = annotations
  return out


def results_with_masks(results: Sequence[Mapping[str, Any]], probabilities: List[np.ndarray], image_sizes: Mapping[int, Sequence[int]],
                       threshold: float = 0.5) -> List[Dict[str, Any]]:
  """COCO results with a ``segmentation`` (RLE) per detection: ``probabilities[i]`` ``[m, m]`` is
  result ``i``'s mask over its box, pasted into its image (``image_sizes[image_id] = (h, w)``)."""
  from acne_jax.models.mask_head import paste_mask_window

  out = []
  for result, probs in zip(results, probabilities):
    height, width = (int(v) for v in image_sizes[int(result["image_id"])])
    x, y, w, h = result["bbox"]
    window, top, left = paste_mask_window(probs, (x, y, x + w, y + h), height, width, threshold)
    out.append({**result, "segmentation": rle.encode_window(window, top, left, height, width)})
  return out


def segm_metrics(ground_truth: Mapping[str, Any], results: Sequence[Mapping[str, Any]], iou: float = 0.5,
                 max_dets: int = 100) -> Dict[str, float]:
  """``evaluate_detections``' AP/AR keys for masks, prefixed ``mask_``."""
  ev = coco_metrics.evaluate(ground_truth, results, iou_thresholds=[iou], max_dets=[max_dets], area_source="annotation",
                             iou_type="segm")
  return {f"mask_{k}": v for k, v in coco_metrics._headline(ev, iou, max_dets).items()}
