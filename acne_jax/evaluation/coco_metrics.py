"""COCO-style detection metrics, computed by our own vectorised NumPy engine.

What is computed (``evaluate`` returns the raw arrays, the helpers below read them):

- AP and AR at any IoU thresholds with any detection caps (the SADH paper: IoU 0.5, 100
  detections; crowded images need more), overall and for the COCO size buckets (small < 32^2
  <= medium < 96^2 <= large; both ends inclusive, as pycocotools' ranges are). The ground
  truth's area is its box area by default (``area_source="box"``, what the SADH reference
  uses), or the annotation's ``area`` field (the mask area; ``area_source="annotation"``, what
  pycocotools uses). A detection's area is always its box area.
- per-class AP, the 12 standard COCO statistics (``coco_stats``), mAP@50 / mAP@75;
- FROC: sensitivity at 0.5/1/2/4/8/16 false positives per image (``froc``), by the DeepLesion
  literature's definition (MULAN / 3DCE: ``definition="deeplesion"``) or by COCO's one-to-one
  matching (``definition="coco"``); ``froc``'s docstring says how they differ.

The definitions are pycocotools' ``COCOeval`` (bbox) ones, and the numbers equal its numbers
(``tests/evaluation/test_coco_metrics.py`` checks the whole precision/recall arrays against it
on random sets): per image and category, detections are taken in descending score order
(ties keep their order in the results list: a stable sort, as pycocotools' mergesort on
-score), at most ``max(max_dets)`` of them, and each is greedily matched to the unmatched
ground truth of highest IoU >= the threshold, preferring regular ground truth over ignored
ground truth (crowd, or outside the area range); among equal IoUs the later annotation wins.
Crowd ground truth can be matched repeatedly, its IoU is intersection over the detection's
area, and it never counts as a positive. A detection matched to ignored ground truth, or
unmatched and outside the area range, is ignored. Precision is interpolated at 101 recall
points with the monotone (right-to-left maximum) envelope; recall is the recall at the last
detection; -1 marks an undefined value (no non-ignored ground truth). Caps apply per image
and per category, as in pycocotools. Known difference: pycocotools treats a match to an
annotation whose ``id`` is 0 as no match (it stores ids and tests them for truth); we don't
use annotation ids.

Vectorisation: the IoUs of all (detection, ground truth) pairs of the same image and
category are computed in one pass over flat pair arrays; the greedy matching is sequential
only over a detection's rank within its image and category (at most ``max(max_dets)``
steps), each step handling every image, category, area range and IoU threshold at once; the
accumulation is one cumulative sum per category and cap over [areas, thresholds, detections].
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

AREA_NAMES = ("all", "small", "medium", "large")
# pycocotools' ranges (both ends inclusive).
COCO_AREA_RANGES = {"all": (0.0, 1e5 ** 2), "small": (0.0, 32.0 ** 2), "medium": (32.0 ** 2, 96.0 ** 2), "large": (96.0 ** 2, 1e5 ** 2)}
# pycocotools' thresholds, built the same way (np.linspace) so that 0.75 is exactly 0.75.
COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
RECALL_THRESHOLDS = np.linspace(0.0, 1.0, int(np.round((1.0 - 0.0) / 0.01)) + 1, endpoint=True)
COCO_MAX_DETS = (1, 10, 100)
FROC_FPS_PER_IMAGE = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)  # MULAN's TEST.VAL_FROC_FP
FROC_DEFINITIONS = ("deeplesion", "coco")
# The means ``froc`` reports beside the per-rate sensitivities: MULAN's logged one (over its first
# four rates) and ours (0.5 to 8).
FROC_MEANS = {"sens_mean@0.5-4FP": (0.5, 1.0, 2.0, 4.0), "sens_mean@0.5-8FP": (0.5, 1.0, 2.0, 4.0, 8.0)}
COCO_STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


class CocoFormatError(ValueError):
  """A malformed ground-truth or results entry; names its kind, index and content."""

  def __init__(self, kind: str, index: Optional[int], reason: str, entry: Any = None):
    self.kind, self.index, self.reason, self.entry = kind, index, reason, entry
    where = kind if index is None else f"{kind} {index}"
    content = "" if entry is None else f": {_short(entry)}"
    super().__init__(f"{where} {reason}{content}")


def _short(entry: Any, limit: int = 300) -> str:
  try:
    text = json.dumps(entry, allow_nan=True)
  except (TypeError, ValueError):
    text = repr(entry)
  return text if len(text) <= limit else text[:limit] + "..."


# ---------------------------------------------------------------------------------------------
# Building COCO dictionaries from arrays (used by training and evaluation).


def coco_ground_truth(image_ids: Sequence[int], image_sizes: Sequence[Sequence[int]], boxes: Sequence[np.ndarray],
                      labels: Sequence[np.ndarray], class_names: Sequence[str]) -> Dict[str, Any]:
  """A COCO instances dictionary (category ids ``1..K``; boxes ``[x, y, w, h]``; area = box area).

  Args:
    image_ids: ``[N]`` ids; image_sizes: ``[N, 2]`` (height, width); boxes: ``N`` arrays
      ``[G_i, 4]`` x1y1x2y2; labels: ``N`` arrays ``[G_i]`` of class indices ``0..K-1``.
  """
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
  """COCO results list from padded detections (class ids ``0..K-1`` -> ``1..K``).

  Args:
    image_ids: ``[N]``; boxes: ``[N, D, 4]`` x1y1x2y2; scores, classes, valid: ``[N, D]``.
  """
  results = []
  for image_id, b, s, c, v in zip(image_ids, boxes, scores, classes, valid):
    for box, score, cls in zip(np.asarray(b)[v], np.asarray(s)[v], np.asarray(c)[v]):
      results.append({
          "image_id": int(image_id), "category_id": int(cls) + 1,
          "bbox": [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])], "score": float(score),
      })
  return results


# ---------------------------------------------------------------------------------------------
# Parsing and checking COCO input.


@dataclasses.dataclass(frozen=True)
class CocoIndex:
  """The images and categories of a ground truth: sorted ids (pycocotools' order) and names."""
  image_ids: np.ndarray  # [I] int64, sorted, unique
  category_ids: np.ndarray  # [K] int64, sorted, unique
  category_names: Tuple[str, ...]  # [K]


@dataclasses.dataclass(frozen=True)
class _Boxes:
  """Annotations or detections as parallel arrays (entries in input order)."""
  image: np.ndarray  # [N] int64, index into CocoIndex.image_ids
  category: np.ndarray  # [N] int64, index into CocoIndex.category_ids
  box: np.ndarray  # [N, 4] float64, COCO [x, y, w, h]
  area: np.ndarray  # [N] float64
  crowd: np.ndarray  # [N] bool (all False for detections)
  score: np.ndarray  # [N] float64 (ones for ground truth)
  masks: Optional[List[Tuple[np.ndarray, np.ndarray]]] = None  # segm: N runs of ones (rle.intervals)


def _is_int(x) -> bool:
  return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def _is_number(x) -> bool:
  return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _entry_problem(entry, image_set, category_set, with_score: bool, with_area: bool) -> Optional[str]:
  """Why ``entry`` (an annotation or detection) is malformed, or ``None``."""
  if not isinstance(entry, Mapping):
    return "is not a JSON object"
  for key in ("image_id", "category_id", "bbox") + (("score",) if with_score else ()):
    if key not in entry:
      return f"has no {key!r}"
  if not _is_int(entry["image_id"]):
    return "has a non-integer image_id"
  if int(entry["image_id"]) not in image_set:
    return f"has an unknown image_id {entry['image_id']} (not in the ground truth's images)"
  if not _is_int(entry["category_id"]):
    return "has a non-integer category_id"
  if int(entry["category_id"]) not in category_set:
    return f"has an unknown category_id {entry['category_id']} (not in the ground truth's categories)"
  bbox = entry["bbox"]
  if not isinstance(bbox, (list, tuple, np.ndarray)) or len(bbox) != 4:
    return "has a bbox that is not 4 numbers [x, y, w, h]"
  if not all(_is_number(v) for v in bbox):
    return "has a bbox with a non-numeric value"
  if not all(math.isfinite(float(v)) for v in bbox):
    return "has a bbox with a NaN or infinite value"
  if float(bbox[2]) < 0 or float(bbox[3]) < 0:
    return "has a bbox with a negative width or height"
  if with_score and not (_is_number(entry["score"]) and math.isfinite(float(entry["score"]))):
    return "has a score that is not a finite number"
  if with_area:
    if "area" not in entry:
      return "has no 'area' (needed for area_source='annotation')"
    if not (_is_number(entry["area"]) and math.isfinite(float(entry["area"])) and float(entry["area"]) >= 0):
      return "has an area that is not a finite number >= 0"
  crowd = entry.get("iscrowd", 0)
  if not (isinstance(crowd, (bool, numbers.Integral)) and int(crowd) in (0, 1)):
    return "has an iscrowd that is not 0 or 1"
  return None


def _raise_first_problem(kind, entries, index: CocoIndex, with_score, with_area, candidates=None):
  image_set, category_set = set(index.image_ids.tolist()), set(index.category_ids.tolist())
  order = range(len(entries)) if candidates is None else candidates
  for i in order:
    problem = _entry_problem(entries[i], image_set, category_set, with_score, with_area)
    if problem is not None:
      raise CocoFormatError(kind, int(i), problem, entries[i])
  raise CocoFormatError(kind, None, "malformed entries")  # not reached for well-formed checks


def _parse_entries(kind: str, entries: Sequence[Any], index: CocoIndex, with_score: bool, area_field: bool) -> _Boxes:
  """Vectorised parse of annotations / detections; the first malformed entry raises ``CocoFormatError``."""
  n = len(entries)
  if n == 0:
    return _Boxes(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 4)), np.zeros(0), np.zeros(0, bool), np.zeros(0))
  try:
    image = np.asarray([e["image_id"] for e in entries])
    category = np.asarray([e["category_id"] for e in entries])
    box = np.asarray([e["bbox"] for e in entries])
    score = np.asarray([e["score"] for e in entries]) if with_score else np.ones(n)
    area = np.asarray([e["area"] for e in entries]) if area_field else np.zeros(0)
    crowd = np.asarray([e.get("iscrowd", 0) for e in entries]) if not with_score else np.zeros(n, np.int64)
    # Strings or booleans among the numbers take the entry-by-entry path (which names them).
    ok = (image.dtype.kind in "iu" and category.dtype.kind in "iu" and box.shape == (n, 4) and box.dtype.kind in "iuf"
          and score.dtype.kind in "iuf" and area.dtype.kind in "iuf" and crowd.dtype.kind in "iub")
  except (KeyError, TypeError, ValueError, AttributeError, IndexError):
    ok = False
  if not ok:
    _raise_first_problem(kind, entries, index, with_score, area_field)
  box, score = box.astype(np.float64), score.astype(np.float64)
  area = area.astype(np.float64) if area_field else None
  image_i = np.searchsorted(index.image_ids, image)
  category_i = np.searchsorted(index.category_ids, category)
  bad = ((image_i >= len(index.image_ids)) | (index.image_ids[np.minimum(image_i, len(index.image_ids) - 1)] != image)
         if len(index.image_ids) else np.ones(n, bool))
  bad |= ((category_i >= len(index.category_ids)) | (index.category_ids[np.minimum(category_i, len(index.category_ids) - 1)] != category)
          if len(index.category_ids) else np.ones(n, bool))
  bad |= ~np.isfinite(box).all(axis=1) | (box[:, 2] < 0) | (box[:, 3] < 0) | ~np.isfinite(score)
  bad |= (crowd != 0) & (crowd != 1)
  if area is not None:
    bad |= ~np.isfinite(area) | (area < 0)
  if bad.any():
    _raise_first_problem(kind, entries, index, with_score, area_field, candidates=np.flatnonzero(bad))
  box_area = box[:, 2] * box[:, 3]
  return _Boxes(image_i.astype(np.int64), category_i.astype(np.int64), box, box_area if area is None else area,
                crowd.astype(bool), score)


def parse_ground_truth(ground_truth: Mapping[str, Any], area_source: str = "box", iou_type: str = "bbox") -> Tuple[CocoIndex, _Boxes]:
  """``(index, annotations)`` from a COCO instances dictionary; ``CocoFormatError`` if malformed.

  ``area_source``: ``"box"`` (area = bbox w * h) or ``"annotation"`` (the ``area`` field).
  ``iou_type="segm"``: every annotation's ``segmentation`` (polygons, or RLE over its image's
  ``height`` x ``width``) is read as a mask.
  """
  if area_source not in ("box", "annotation"):
    raise ValueError(f"area_source must be 'box' or 'annotation', not {area_source!r}")
  if not isinstance(ground_truth, Mapping):
    raise CocoFormatError("ground truth", None, "is not a JSON object with 'images', 'annotations' and 'categories'")
  for key in ("images", "annotations", "categories"):
    if not isinstance(ground_truth.get(key), (list, tuple)):
      raise CocoFormatError("ground truth", None, f"has no {key!r} list")
  ids = []
  for kind, entries in (("image", ground_truth["images"]), ("category", ground_truth["categories"])):
    for i, entry in enumerate(entries):
      if not isinstance(entry, Mapping) or not _is_int(entry.get("id")):
        raise CocoFormatError(kind, i, "has no integer 'id'", entry)
    ids.append(np.asarray([int(e["id"]) for e in entries], dtype=np.int64))
  category_ids, first = np.unique(ids[1], return_index=True)
  names = tuple(str(ground_truth["categories"][i].get("name", category_ids[j])) for j, i in enumerate(first))
  index = CocoIndex(np.unique(ids[0]), category_ids, names)
  boxes = _parse_entries("annotation", ground_truth["annotations"], index, False, area_source == "annotation")
  if iou_type == "segm":
    sizes = _image_sizes(ground_truth)
    boxes = dataclasses.replace(boxes, masks=_parse_masks("annotation", ground_truth["annotations"], sizes))
  elif iou_type != "bbox":
    raise ValueError(f"iou_type must be 'bbox' or 'segm', not {iou_type!r}")
  return index, boxes


def parse_results(results: Sequence[Any], index: CocoIndex, iou_type: str = "bbox",
                  image_sizes: Optional[Mapping[int, Tuple[int, int]]] = None) -> _Boxes:
  """Detections ``[{"image_id", "category_id", "bbox": [x, y, w, h], "score"}, ...]`` as arrays.

  For ``iou_type="segm"`` each also has a ``segmentation`` (RLE over its image's size in
  ``image_sizes`` ``{id: (h, w)}``). A detection's area (for the size buckets) is then what
  pycocotools' ``loadRes`` makes it: the box area when the results carry boxes (decided by the
  first entry, as ``loadRes`` does), else the mask area, with the box from the mask.
  """
  if not isinstance(results, (list, tuple)):
    raise CocoFormatError("detections", None, "are not a JSON list of detections")
  if iou_type != "segm":
    return _parse_entries("detection", results, index, True, False)
  masks = _parse_masks("detection", results, image_sizes or {})
  if results and isinstance(results[0], Mapping) and "bbox" not in results[0]:
    from acne_jax.evaluation import rle

    with_boxes = [dict(r, bbox=rle.bbox_of(rle.intervals(r["segmentation"]), int(r["segmentation"]["size"][0])))
                  for r in results]
    boxes = _parse_entries("detection", with_boxes, index, True, False)
    boxes = dataclasses.replace(boxes, area=np.asarray([float(np.sum(e - s)) for s, e in masks], np.float64))
  else:
    boxes = _parse_entries("detection", results, index, True, False)
  return dataclasses.replace(boxes, masks=masks)


def _image_sizes(ground_truth: Mapping[str, Any]) -> Dict[int, Tuple[int, int]]:
  sizes = {}
  for i, image in enumerate(ground_truth["images"]):
    if not (_is_int(image.get("height")) and _is_int(image.get("width"))):
      raise CocoFormatError("image", i, "has no integer 'height' and 'width' (needed to read masks)", image)
    sizes[int(image["id"])] = (int(image["height"]), int(image["width"]))
  return sizes


def _parse_masks(kind: str, entries: Sequence[Mapping[str, Any]], sizes: Mapping[int, Tuple[int, int]]):
  """Per entry, the runs of ones of its ``segmentation`` (compressed or uncompressed RLE, or
  polygons, which are rasterised with pycocotools' own polygon rasteriser so that masks agree
  with COCO's to the pixel)."""
  from acne_jax.evaluation import rle

  out = []
  for i, entry in enumerate(entries):
    seg = entry.get("segmentation")
    size = sizes.get(int(entry["image_id"]))
    if seg is None:
      raise CocoFormatError(kind, i, "has no 'segmentation' (needed for iou_type='segm')", entry)
    try:
      if isinstance(seg, Mapping):
        if size is not None and [int(v) for v in seg.get("size", ())] != list(size):
          raise ValueError(f"its RLE size {seg.get('size')} is not its image's {list(size)}")
        out.append(rle.intervals(seg))
      elif isinstance(seg, list) and size is not None:
        from pycocotools import mask as coco_mask  # polygon rasterisation: COCO's own, for identical masks

        merged = coco_mask.merge(coco_mask.frPyObjects(seg, *size)) if seg else rle.encode(np.zeros(size, np.uint8))
        out.append(rle.intervals(merged))
      else:
        raise ValueError("its segmentation is neither RLE nor polygons over a known image size")
    except (ValueError, TypeError, KeyError) as e:
      raise CocoFormatError(kind, i, f"has a bad segmentation: {e}", entry) from None
  return out


# ---------------------------------------------------------------------------------------------
# Matching and accumulation.


def _bbox_iou(det: np.ndarray, gt: np.ndarray, crowd: np.ndarray) -> np.ndarray:
  """IoU of paired COCO boxes ``det[P, 4]``, ``gt[P, 4]`` -> ``[P]``; intersection over the
  detection's area where ``crowd[P]``. The same float64 operations as pycocotools' ``bbIou``."""
  w = np.minimum(det[:, 2] + det[:, 0], gt[:, 2] + gt[:, 0]) - np.maximum(det[:, 0], gt[:, 0])
  h = np.minimum(det[:, 3] + det[:, 1], gt[:, 3] + gt[:, 1]) - np.maximum(det[:, 1], gt[:, 1])
  inter = w * h
  det_area = det[:, 2] * det[:, 3]
  union = np.where(crowd, det_area, det_area + gt[:, 2] * gt[:, 3] - inter)
  overlap = (w > 0) & (h > 0)
  out = np.zeros(len(det))
  np.divide(inter, union, out=out, where=overlap)
  return out


@dataclasses.dataclass(frozen=True)
class _Matches:
  """Greedy matching results, for the detections kept (sorted by image/category group, then rank)."""
  category: np.ndarray  # [D] category index
  image: np.ndarray  # [D] image index
  score: np.ndarray  # [D]
  rank: np.ndarray  # [D] rank within its (image, category) by descending score
  tp: np.ndarray  # [A, T, D] bool: matched to regular ground truth
  fp: np.ndarray  # [A, T, D] bool: unmatched and inside the area range
  num_positives: np.ndarray  # [K, A] non-ignored ground truth per category and area range
  iou: np.ndarray  # [A, T, D] float64: IoU with the ground truth it matched (0 where unmatched)


def _mask_pair_iou(det_masks, gt_masks, det_index: np.ndarray, gt_index: np.ndarray, crowd: np.ndarray) -> np.ndarray:
  """Mask IoU of (detection, ground truth) pairs given by index; over the detection's area
  where the ground truth is a crowd region (pycocotools' ``maskUtils.iou``)."""
  from acne_jax.evaluation import rle

  return np.asarray([rle.runs_iou(det_masks[d], gt_masks[g], bool(c))
                     for d, g, c in zip(det_index.tolist(), gt_index.tolist(), crowd.tolist())], np.float64)


def _ranked_detections(dt: _Boxes, num_categories: int, max_det: Optional[int]):
  """Detections by (image, category) group, then descending score (stable), at most ``max_det``
  per group (``None``: all): ``(order [D], group [D], rank [D])``; ``order`` indexes ``dt``,
  ``rank`` is the place within the group."""
  group = dt.image * num_categories + dt.category
  order = np.lexsort((np.arange(len(group)), -dt.score, group))
  group = group[order]
  n = len(group)
  starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]]) if n else np.zeros(0, np.int64)
  rank = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))
  keep = rank < max_det if max_det is not None else np.ones(n, bool)
  return order[keep], group[keep], rank[keep]


def _group_pairs(gt_group: np.ndarray, dt_group: np.ndarray):
  """Every (detection, ground truth) pair of the same group: ``(pair_det [P], pair_gt [P])``,
  indices into ``dt_group [D]`` and ``gt_group [G]`` (which must be sorted)."""
  gt_first = np.searchsorted(gt_group, dt_group, side="left")
  gt_count = np.searchsorted(gt_group, dt_group, side="right") - gt_first
  pair_det = np.repeat(np.arange(len(dt_group)), gt_count)
  pair_offset = np.arange(len(pair_det)) - np.repeat(np.cumsum(gt_count) - gt_count, gt_count)
  return pair_det, np.repeat(gt_first, gt_count) + pair_offset


def _match(gt: _Boxes, dt: _Boxes, num_categories: int, thresholds: np.ndarray, area_ranges: np.ndarray,
           max_det: Optional[int]) -> _Matches:
  """COCO greedy matching of ``dt`` to ``gt`` per image and category (see the module docstring).

  Args:
    thresholds: ``[T]`` IoU thresholds; area_ranges: ``[A, 2]`` inclusive area ranges;
    max_det: detections kept per image and category (``None``: all).
  """
  T, A, K = len(thresholds), len(area_ranges), num_categories
  # Ground truth, grouped by (image, category) and in annotation order within a group.
  gt_group = gt.image * K + gt.category
  gt_order = np.argsort(gt_group, kind="stable")
  gt_group, gt_box, gt_crowd, gt_area = gt_group[gt_order], gt.box[gt_order], gt.crowd[gt_order], gt.area[gt_order]
  lo, hi = area_ranges[:, 0:1], area_ranges[:, 1:2]
  gt_ignore = gt_crowd[None, :] | (gt_area[None, :] < lo) | (gt_area[None, :] > hi)  # [A, G]
  gt_category = gt.category[gt_order]
  num_positives = np.zeros((K, A), np.int64)
  for a in range(A):
    num_positives[:, a] = np.bincount(gt_category[~gt_ignore[a]], minlength=K)

  dt_order, dt_group, rank = _ranked_detections(dt, K, max_det)
  dt_box, dt_score, dt_area = dt.box[dt_order], dt.score[dt_order], dt.area[dt_order]
  D = len(dt_order)
  pair_det, pair_gt = _group_pairs(gt_group, dt_group)
  if gt.masks is not None and dt.masks is not None:  # segm
    pair_iou = _mask_pair_iou(dt.masks, gt.masks, dt_order[pair_det], gt_order[pair_gt], gt_crowd[pair_gt])
  else:
    pair_iou = _bbox_iou(dt_box[pair_det], gt_box[pair_gt], gt_crowd[pair_gt])
  effective = np.minimum(np.asarray(thresholds, np.float64), 1 - 1e-10)  # as pycocotools
  candidate = pair_iou >= effective.min() if T else np.zeros(len(pair_iou), bool)
  cand_det, cand_gt, cand_iou = pair_det[candidate], pair_gt[candidate], pair_iou[candidate]
  # By rank, detection, then preference: higher IoU, then the later annotation.
  order = np.lexsort((-cand_gt, -cand_iou, cand_det, rank[cand_det]))
  cand_det, cand_gt, cand_iou = cand_det[order], cand_gt[order], cand_iou[order]
  seg_start = np.flatnonzero(np.r_[True, cand_det[1:] != cand_det[:-1]]) if len(cand_det) else np.zeros(0, np.int64)
  seg_len = np.diff(np.r_[seg_start, len(cand_det)])
  seg_det = cand_det[seg_start]
  seg_rank = rank[seg_det]
  # Position from the end within a detection's candidates: larger = more preferred.
  preference = (np.repeat(seg_start + seg_len, seg_len) - 1 - np.arange(len(cand_det))).astype(np.int64)
  big = int(seg_len.max()) + 1 if len(seg_len) else 1

  matched_gt = np.zeros((A, T, len(gt_group)), bool)
  tp = np.zeros((A, T, D), bool)
  matched = np.zeros((A, T, D), bool)
  matched_iou = np.zeros((A, T, D), np.float64)
  rank_bounds = np.searchsorted(seg_rank, np.arange(int(seg_rank.max()) + 2 if len(seg_rank) else 1))
  for r in range(len(rank_bounds) - 1):
    s0, s1 = rank_bounds[r], rank_bounds[r + 1]
    if s0 == s1:
      continue
    c0, c1 = seg_start[s0], (seg_start[s1] if s1 < len(seg_start) else len(cand_det))
    gts = cand_gt[c0:c1]
    free = ~matched_gt[:, :, gts] | gt_crowd[gts]  # [A, T, C]
    ok = free & (cand_iou[c0:c1] >= effective[:, None])[None]
    priority = ok * (1 + (~gt_ignore[:, gts]))[:, None, :]  # 0 none, 1 ignored, 2 regular
    key = priority.astype(np.int64) * big + preference[c0:c1]
    best = np.maximum.reduceat(key, seg_start[s0:s1] - c0, axis=2)  # [A, T, S]
    hit = best >= big
    pos = (seg_start[s0:s1] + seg_len[s0:s1] - 1)[None, None, :] - best % big - c0
    chosen = gts[np.where(hit, pos, 0)]
    ai, ti, si = np.nonzero(hit)
    gi = chosen[ai, ti, si]
    matched_gt[ai, ti, gi] = True
    det = seg_det[s0:s1][si]
    matched[ai, ti, det] = True
    matched_iou[ai, ti, det] = cand_iou[c0:c1][pos[ai, ti, si]]
    tp[ai, ti, det] = ~gt_ignore[ai, gi]
  dt_outside = (dt_area[None, :] < lo) | (dt_area[None, :] > hi)  # [A, D]
  fp = ~matched & ~dt_outside[:, None, :]
  return _Matches(dt.category[dt_order], dt.image[dt_order], dt_score, rank, tp, fp, num_positives, matched_iou)


def _accumulate(m: _Matches, num_categories: int, max_dets: Sequence[int], recall_thresholds: np.ndarray):
  """``(precision [T, R, K, A, M], recall [T, K, A, M])`` as pycocotools' ``accumulate``."""
  A, T, _ = m.tp.shape
  K, M, R = num_categories, len(max_dets), len(recall_thresholds)
  precision = -np.ones((T, R, K, A, M))
  recall = -np.ones((T, K, A, M))
  # Across images: descending score; ties by image, then rank (pycocotools' mergesort over the
  # per-image lists concatenated in image order).
  order = np.lexsort((m.rank, m.image, -m.score, m.category))
  bounds = np.searchsorted(m.category[order], np.arange(K + 1))
  eps = np.spacing(1)
  for k in range(K):
    npig = m.num_positives[k]  # [A]
    valid_a = np.flatnonzero(npig > 0)
    if not len(valid_a):
      continue
    order_k = order[bounds[k]:bounds[k + 1]]
    # Number of true positives needed to reach each recall threshold, per area: pycocotools
    # compares tp / npig (float) with the thresholds; the same division here.
    needed = np.stack([np.searchsorted(np.arange(npig[a] + 1) / npig[a], recall_thresholds, side="left") for a in valid_a])  # [A', R]
    for mi, cap in enumerate(max_dets):
      idx = order_k[m.rank[order_k] < cap]
      n = len(idx)
      if n == 0:
        precision[:, :, k, valid_a, mi] = 0.0
        recall[:, k, valid_a, mi] = 0.0
        continue
      tp, fp = m.tp[:, :, idx], m.fp[:, :, idx]
      if len(valid_a) < A:
        tp, fp = tp[valid_a], fp[valid_a]
      tps = np.cumsum(tp, axis=2, dtype=np.float64)  # [A', T, n]
      fps = np.cumsum(fp, axis=2, dtype=np.float64)
      pr = tps / (fps + tps + eps)
      envelope = np.flip(np.maximum.accumulate(np.flip(pr, axis=2), axis=2), axis=2)
      recall[:, k, valid_a, mi] = (tps[:, :, -1] / npig[valid_a, None]).T
      # First detection whose cumulative TP count reaches ``needed``: one searchsorted over all
      # rows, made globally sorted by a per-row integer offset (exact).
      rows = tps.reshape(-1, n)  # [A' * T, n]
      stride = float(n + 2 + npig.max())
      offsets = np.arange(len(rows))[:, None] * stride
      targets = offsets + np.repeat(needed, T, axis=0)  # [A' * T, R]
      first = np.searchsorted((rows + offsets).ravel(), targets.ravel(), side="left").reshape(targets.shape)
      first -= (np.arange(len(rows)) * n)[:, None]
      inside = first < n
      q = np.where(inside, np.take_along_axis(envelope.reshape(-1, n), np.minimum(first, n - 1), axis=1), 0.0)
      precision[:, :, k, valid_a, mi] = q.reshape(len(valid_a), T, R).transpose(1, 2, 0)
  return precision, recall


# ---------------------------------------------------------------------------------------------
# The public evaluation API.


@dataclasses.dataclass(frozen=True)
class CocoEvaluation:
  """Accumulated precision / recall, laid out as pycocotools' ``COCOeval.eval``.

  Attributes:
    precision: ``[T, R, K, A, M]`` interpolated precision (-1: no ground truth).
    recall: ``[T, K, A, M]`` recall at the last detection (-1: no ground truth).
    iou_thresholds: ``[T]``; recall_thresholds: ``[R]``; max_dets: ``M`` sorted caps;
    area_names: ``A`` names; index: the images and ``K`` categories.
  """
  precision: np.ndarray
  recall: np.ndarray
  iou_thresholds: np.ndarray
  recall_thresholds: np.ndarray
  max_dets: Tuple[int, ...]
  area_names: Tuple[str, ...]
  index: CocoIndex

  def _t(self, iou: Optional[float]):
    if iou is None:
      return slice(None)
    found = np.flatnonzero(np.isclose(self.iou_thresholds, iou, rtol=0, atol=1e-12))
    if not len(found):
      raise KeyError(f"IoU {iou} was not evaluated (thresholds {self.iou_thresholds.tolist()})")
    return found[:1]

  def _m(self, max_dets: Optional[int]) -> int:
    cap = self.max_dets[-1] if max_dets is None else int(max_dets)
    if cap not in self.max_dets:
      raise KeyError(f"max_dets {cap} was not evaluated (caps {list(self.max_dets)})")
    return self.max_dets.index(cap)

  def _k(self, category: Optional[int]):
    if category is None:
      return slice(None)
    found = np.flatnonzero(self.index.category_ids == category)
    if not len(found):
      raise KeyError(f"no category id {category}")
    return found[:1]

  def average_precision(self, iou: Optional[float] = None, area: str = "all", max_dets: Optional[int] = None,
                        category: Optional[int] = None) -> float:
    """Mean precision over recall points, classes (or ``category``, an id) and ``iou`` (None: all
    thresholds), ignoring -1 entries; -1 if none is defined."""
    p = self.precision[self._t(iou)][:, :, self._k(category), self.area_names.index(area), self._m(max_dets)]
    return float(np.mean(p[p > -1])) if np.any(p > -1) else -1.0

  def average_recall(self, iou: Optional[float] = None, area: str = "all", max_dets: Optional[int] = None,
                     category: Optional[int] = None) -> float:
    """Mean recall over classes (or ``category``) and ``iou`` (None: all thresholds); -1 if undefined."""
    r = self.recall[self._t(iou)][:, self._k(category), self.area_names.index(area), self._m(max_dets)]
    return float(np.mean(r[r > -1])) if np.any(r > -1) else -1.0

  def per_class_ap(self, iou: Optional[float] = 0.5, area: str = "all", max_dets: Optional[int] = None) -> Dict[str, float]:
    """``{category name: AP}`` (-1 for a class without ground truth)."""
    return {name: self.average_precision(iou, area, max_dets, int(cid))
            for cid, name in zip(self.index.category_ids, self.index.category_names)}


def evaluate(ground_truth: Mapping[str, Any], results: Sequence[Mapping[str, Any]],
             iou_thresholds: Sequence[float] = COCO_IOU_THRESHOLDS, max_dets: Sequence[int] = COCO_MAX_DETS,
             area_ranges: Optional[Mapping[str, Tuple[float, float]]] = None, area_source: str = "box",
             recall_thresholds: np.ndarray = RECALL_THRESHOLDS, iou_type: str = "bbox") -> CocoEvaluation:
  """COCO evaluation of ``results`` (a COCO results list) against ``ground_truth`` (a COCO
  instances dictionary). Raises ``CocoFormatError`` naming the first malformed entry (unknown
  image or category ids, bad bbox or segmentation, non-finite score).

  Args:
    iou_thresholds: ``[T]``; max_dets: caps per image and category (sorted, the largest is the
      matching cap); area_ranges: ``{name: (lo, hi)}`` inclusive (default: COCO's all / small /
      medium / large); area_source: ``"box"`` or ``"annotation"`` (ground truth area);
      iou_type: ``"bbox"`` (box IoU) or ``"segm"`` (mask IoU on RLE, pycocotools'
      ``iouType="segm"``: a detection's area is its mask's; use ``area_source="annotation"``
      for pycocotools' ground-truth areas).
  """
  area_ranges = COCO_AREA_RANGES if area_ranges is None else area_ranges
  index, gt = parse_ground_truth(ground_truth, area_source, iou_type)
  dt = parse_results(results, index, iou_type, _image_sizes(ground_truth) if iou_type == "segm" else None)
  caps = tuple(sorted(int(m) for m in max_dets))
  thresholds = np.asarray(iou_thresholds, np.float64).reshape(-1)
  ranges = np.asarray(list(area_ranges.values()), np.float64).reshape(-1, 2)
  matches = _match(gt, dt, len(index.category_ids), thresholds, ranges, caps[-1])
  precision, recall = _accumulate(matches, len(index.category_ids), caps, np.asarray(recall_thresholds, np.float64))
  return CocoEvaluation(precision, recall, thresholds, np.asarray(recall_thresholds), caps, tuple(area_ranges), index)


def coco_stats(evaluation: CocoEvaluation, max_dets: Optional[int] = None) -> Dict[str, float]:
  """The 12 standard COCO statistics (``COCO_STAT_NAMES``; pycocotools' ``stats`` order).

  Needs thresholds including 0.5 and 0.75 and caps including 1, 10 and ``max_dets`` (default:
  the largest evaluated). AP and the size-bucket statistics use ``max_dets`` (pycocotools:
  literally 100, the same with its default caps); "AR100" is named after the cap used.
  """
  ev = evaluation
  cap = ev.max_dets[-1] if max_dets is None else int(max_dets)
  values = [
      ev.average_precision(None, "all", cap), ev.average_precision(0.5, "all", cap), ev.average_precision(0.75, "all", cap),
      ev.average_precision(None, "small", cap), ev.average_precision(None, "medium", cap), ev.average_precision(None, "large", cap),
      ev.average_recall(None, "all", 1), ev.average_recall(None, "all", 10), ev.average_recall(None, "all", cap),
      ev.average_recall(None, "small", cap), ev.average_recall(None, "medium", cap), ev.average_recall(None, "large", cap),
  ]
  names = list(COCO_STAT_NAMES)
  names[8] = f"AR{cap}"
  return dict(zip(names, values))


def _headline(ev: CocoEvaluation, iou: float, max_dets: int) -> Dict[str, float]:
  metrics = {}
  tag = f"@{iou:g}"
  for name in AREA_NAMES:
    suffix = "" if name == "all" else "_" + name[0]
    metrics[f"AP{suffix}{tag}"] = ev.average_precision(iou, name, max_dets)
    metrics[f"AR{suffix}{tag}"] = ev.average_recall(iou, name, max_dets)
  return metrics


def evaluate_detections(ground_truth: Mapping[str, Any], results: Sequence[Mapping[str, Any]], iou: float = 0.5,
                        max_dets: int = 100) -> Dict[str, float]:
  """AP/AR at ``iou`` with ``max_dets`` per image (and category), overall and per size bucket.

  Returns:
    ``{"AP@0.5", "AR@0.5", "AP_s@0.5", "AR_s@0.5", "AP_m@0.5", ...}``; a bucket without
    ground truth reports -1, as COCO does.
  """
  ev = evaluate(ground_truth, results, iou_thresholds=[iou], max_dets=[max_dets])
  return _headline(ev, iou, max_dets)


# ---------------------------------------------------------------------------------------------
# FROC (the DeepLesion literature's, and a COCO-matched one).


def _check_froc_definition(definition: str) -> str:
  if definition not in FROC_DEFINITIONS:
    raise ValueError(f"the FROC definition must be one of {', '.join(map(repr, FROC_DEFINITIONS))}, not {definition!r}")
  return definition


def _froc_counts(gt: _Boxes, dt: _Boxes, num_categories: int, iou: float, max_det: Optional[int], definition: str):
  """What ``froc_curve`` counts: ``(score [D], false_positive [D], hit_scores [H], num_lesions)``.

  ``score``: the kept detections' scores; ``false_positive``: which of them are false
  positives; ``hit_scores``: per found lesion, the score from which on it counts as found (one
  entry per lesion found at any threshold); ``num_lesions``: the non-crowd ground truth.
  """
  if definition == "coco":
    m = _match(gt, dt, num_categories, np.array([iou]), np.array([[-np.inf, np.inf]]), max_det)
    return m.score, m.fp[0, 0], m.score[m.tp[0, 0]], int(m.num_positives.sum())
  gt_group = gt.image * num_categories + gt.category
  gt_order = np.argsort(gt_group, kind="stable")
  dt_order, dt_group, _ = _ranked_detections(dt, num_categories, max_det)
  pair_det, pair_gt = _group_pairs(gt_group[gt_order], dt_group)
  crowd = gt.crowd[gt_order][pair_gt]
  close = _bbox_iou(dt.box[dt_order][pair_det], gt.box[gt_order][pair_gt], crowd) >= iou  # [P]
  score = dt.score[dt_order]
  covered = np.zeros(len(dt_order), bool)
  covered[pair_det[close]] = True  # near a lesion (or inside a crowd region): never a false positive
  hit = close & ~crowd
  best = np.full(len(gt_order), -np.inf)  # a lesion is found from its best-scoring close detection on
  np.maximum.at(best, pair_gt[hit], score[pair_det[hit]])
  return score, ~covered, best[np.isfinite(best)], int(np.sum(~gt.crowd))


def froc_curve(ground_truth: Mapping[str, Any], results: Sequence[Mapping[str, Any]], iou: float = 0.5,
               class_agnostic: bool = False, max_dets: Optional[int] = None, area_source: str = "box",
               definition: str = "deeplesion"):
  """FROC operating points ``(fps_per_image [P], sensitivity [P], score_thresholds [P])``.

  One operating point per distinct detection score, from the strictest threshold (``+inf``: no
  detections, point ``(0, 0)``) down; tied detections enter together. At a threshold, the false
  positives are counted among the detections scoring at least that much and divided by the
  number of images in the ground truth (images without lesions or without detections count);
  the sensitivity is the fraction of the (non-crowd) ground truth those detections find, -1
  everywhere when there is none. Detections meet the ground truth of their own image, and of
  their own category unless ``class_agnostic``; ``max_dets`` keeps that many per image and
  category, by descending score (``None``: all, as the reference). IoU is box IoU on COCO
  ``[x, y, w, h]`` boxes (pycocotools', no "+1 pixel"); a crowd region's is intersection over
  the detection's area.

  ``definition``:

  - ``"deeplesion"``, the DeepLesion literature's (``FROC`` in MULAN's ``detection_eval.py``
    and 3DCE's ``evaluation.py``): a lesion is found once any detection has IoU >= ``iou`` with
    it, and a detection is a false positive only if no lesion of its image has IoU >= ``iou``
    with it. A second detection of a found lesion is neither a hit nor a false positive, and one
    detection can find several lesions. A detection with crowd IoU >= ``iou`` with a crowd
    region is no false positive either (the reference has no crowd regions).
  - ``"coco"``: pycocotools' greedy one-to-one matching (descending score; each detection takes
    the unmatched ground truth of highest IoU >= ``iou``): a detection finds at most one lesion,
    and a second detection of a lesion is a false positive; a detection matched to a crowd
    region counts as neither.
  """
  _check_froc_definition(definition)
  index, gt = parse_ground_truth(ground_truth, area_source)
  dt = parse_results(results, index)
  K = len(index.category_ids)
  if class_agnostic:
    gt = dataclasses.replace(gt, category=np.zeros_like(gt.category))
    dt = dataclasses.replace(dt, category=np.zeros_like(dt.category))
    K = 1
  score, false_positive, hit_scores, num_gt = _froc_counts(gt, dt, K, iou, max_dets, definition)
  thresholds = np.unique(score)[::-1]
  fp_scores, hit_scores = np.sort(score[false_positive]), np.sort(hit_scores)
  fps = len(fp_scores) - np.searchsorted(fp_scores, thresholds, side="left")  # [P - 1] scoring >= each threshold
  tps = len(hit_scores) - np.searchsorted(hit_scores, thresholds, side="left")
  num_images = max(len(index.image_ids), 1)
  fps_per_image = np.r_[0.0, fps / num_images]
  sensitivity = np.r_[0.0, tps / num_gt] if num_gt else -np.ones(1 + len(thresholds))
  return fps_per_image, sensitivity, np.r_[np.inf, thresholds]


def froc(ground_truth: Mapping[str, Any], results: Sequence[Mapping[str, Any]],
         fps_per_image: Sequence[float] = FROC_FPS_PER_IMAGE, iou: float = 0.5, class_agnostic: bool = False,
         interpolation: Optional[str] = None, max_dets: Optional[int] = None, area_source: str = "box",
         definition: str = "deeplesion") -> Dict[str, float]:
  """Sensitivity at given average numbers of false positives per image, read off ``froc_curve``
  (``definition``, ``iou``, ``class_agnostic``, ``max_dets``: as there).

  ``interpolation`` (default ``"step"`` for ``definition="deeplesion"``, ``"linear"`` for
  ``"coco"``):

  - ``"step"``: the highest sensitivity among the operating points at or below the requested
    rate (the loosest threshold with at most that many false positives per image), and the
    final sensitivity beyond the curve's last point. The reference's reading: MULAN's
    ``sens_at_FP`` interpolates its per-detection curve linearly, but each false positive
    starts the next FP count at the sensitivity already reached, so between counts the curve is
    flat, and a rate met exactly is read after the detections that follow that false positive
    (with SciPy's stable sort, SciPy >= 1.6). 3DCE's older ``sens_at_FP`` (SciPy's
    extrapolating branch) reads a rate met exactly one false positive earlier.
  - ``"linear"``: linear in the FP rate between the best sensitivities of consecutive reached
    rates, the final sensitivity beyond the last (our earlier reading; the reference's is flat
    between FP counts).

  Returns:
    ``{"sens@0.5FP": ..., ..., "sens@16FP": ...}`` at ``fps_per_image``, and
    ``"sens_mean@0.5-4FP"`` (the mean at 0.5, 1, 2 and 4: the one MULAN logs) and
    ``"sens_mean@0.5-8FP"`` (at 0.5, 1, 2, 4 and 8), whatever ``fps_per_image``; -1 everywhere
    without ground truth.
  """
  if interpolation is None:
    interpolation = "step" if _check_froc_definition(definition) == "deeplesion" else "linear"
  if interpolation not in ("linear", "step"):
    raise ValueError(f"interpolation must be 'linear' or 'step', not {interpolation!r}")
  fpi, sens, _ = froc_curve(ground_truth, results, iou, class_agnostic, max_dets, area_source, definition)
  keep = np.r_[fpi[1:] != fpi[:-1], True]
  fpi, sens = fpi[keep], sens[keep]
  targets = np.asarray(fps_per_image, np.float64).reshape(-1)
  rates = np.unique(np.concatenate([targets] + [np.asarray(r, np.float64) for r in FROC_MEANS.values()]))
  if sens[-1] < 0:
    values = -np.ones(len(rates))
  elif interpolation == "linear":
    values = np.interp(rates, fpi, sens)
  else:
    values = sens[np.maximum(np.searchsorted(fpi, rates, side="right") - 1, 0)]
  at = dict(zip(rates.tolist(), values.tolist()))
  out = {f"sens@{f:g}FP": at[f] for f in targets.tolist()}
  for name, mean_rates in FROC_MEANS.items():
    out[name] = float(np.mean([at[r] for r in mean_rates])) if sens[-1] >= 0 else -1.0
  return out


# ---------------------------------------------------------------------------------------------
# Everything at once (the command line's report).


def froc_entry(ground_truth: Mapping[str, Any], results: Sequence[Mapping[str, Any]], iou: float = 0.5,
               definition: str = "deeplesion", class_agnostic: bool = False,
               fps_per_image: Sequence[float] = FROC_FPS_PER_IMAGE, area_source: str = "box") -> Dict[str, Any]:
  """``froc`` with every detection and its default reading, with its settings: ``{"iou",
  "definition", "class_agnostic", "sens@0.5FP", ...}`` (the command line's FROC table)."""
  values = froc(ground_truth, results, fps_per_image, iou, class_agnostic, area_source=area_source, definition=definition)
  return {"iou": iou, "definition": definition, "class_agnostic": bool(class_agnostic), **values}


def full_metrics(ground_truth: Mapping[str, Any], results: Sequence[Mapping[str, Any]], iou: float = 0.5,
                 max_dets: int = 100, area_source: str = "box", fps_per_image: Sequence[float] = FROC_FPS_PER_IMAGE,
                 froc_iou: Optional[float] = None, iou_type: str = "bbox", froc_definition: str = "deeplesion",
                 froc_class_agnostic: bool = False) -> Dict[str, Any]:
  """Every metric of this module, as a JSON-able dictionary.

  Keys: ``evaluate_detections``' keys at (``iou``, ``max_dets``); ``"per_class_AP@<iou>"``
  ``{name: AP}``; ``"mAP@50"``, ``"mAP@75"`` (class-mean AP at IoU 0.5 / 0.75 with
  ``max_dets``); ``"coco"`` (``coco_stats`` with caps 1, 10, ``max_dets``); ``"froc"``
  (``froc_entry`` at ``froc_iou``, default ``iou``, by ``froc_definition``, with every
  detection; boxes only: not for ``iou_type="segm"``).
  """
  _check_froc_definition(froc_definition)
  caps = sorted({1, 10, int(max_dets)})
  coco = evaluate(ground_truth, results, COCO_IOU_THRESHOLDS, caps, area_source=area_source, iou_type=iou_type)
  if np.any(np.isclose(COCO_IOU_THRESHOLDS, iou, rtol=0, atol=1e-12)):
    single = coco
  else:
    single = evaluate(ground_truth, results, [iou], [max_dets], area_source=area_source, iou_type=iou_type)
  metrics: Dict[str, Any] = dict(_headline(single, iou, max_dets))
  metrics[f"per_class_AP@{iou:g}"] = single.per_class_ap(iou, "all", max_dets)
  metrics["mAP@50"] = coco.average_precision(0.5, "all", max_dets)
  metrics["mAP@75"] = coco.average_precision(0.75, "all", max_dets)
  metrics["coco"] = coco_stats(coco, max_dets)
  if iou_type == "bbox":
    froc_iou = iou if froc_iou is None else froc_iou
    metrics["froc"] = froc_entry(ground_truth, results, froc_iou, froc_definition, froc_class_agnostic, fps_per_image,
                                 area_source)
  return metrics
