"""Whole-image evaluation: ``predict``'s sliced detections against whole-image annotations.

``python -m acne_jax.evaluate --gt ANNOTATIONS --dets DETECTIONS`` reads, besides COCO files:

- ground truth as LabelMe (the AcneSCU release format): one LabelMe JSON file, or a folder of
  them (searched recursively). Lesions become boxes exactly as the ``acne_scu`` builder makes
  them (polygons clipped to the image, the reference's integer rounding, labels matched to
  ``CLASS_NAMES``; category id = class + 1, as ``predict`` writes). Images get ids 1, 2, ...
  in path order and keep their file name;
- detections as ``predict``'s output: its folder (every ``<stem>_detections.json`` in it) or
  such files. Each file's detections belong to the ground-truth image whose file name has the
  same stem, whatever ``image_id`` they carry, so ``predict`` can be run on the photos in any
  order. A detections file whose stem names no annotated image is an error naming it.

A COCO results file (a list with ``image_id``s of the ground truth) still works as before.
"""

from __future__ import annotations

import glob
import json
import os
from typing import Any, Dict, List, Mapping, Sequence, Tuple

import cv2

from acne_jax.data import labelme
from acne_jax.data.records import ACNE_SCU_CLASS_NAMES as CLASS_NAMES
from acne_jax.paths import resolve

DETECTIONS_SUFFIX = "_detections.json"


def read_json(path: str) -> Any:
  """The parsed file; ``ValueError`` naming the file on a read or syntax error."""
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise ValueError(f"{path}: not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}") from None
  except UnicodeDecodeError as e:
    raise ValueError(f"{path}: not valid JSON: not UTF-8 text ({e.reason} at byte {e.start})") from None
  except OSError as e:
    raise ValueError(f"{path}: cannot read: {e.strerror or e}") from None


def _stem(file_name: str) -> str:
  return os.path.splitext(os.path.basename(file_name.replace("\\", "/")))[0]


def is_labelme(obj: Any) -> bool:
  return isinstance(obj, Mapping) and isinstance(obj.get("shapes"), list)


def labelme_ground_truth(json_paths: Sequence[str], root: str = None) -> Tuple[Dict[str, Any], List[str]]:
  """COCO instances of LabelMe files, and notes on what was left out.

  Args:
    json_paths: LabelMe JSON files (each with its image beside it, or sizes in the JSON).
    root: folder the image ``file_name``s are relative to (default: base names).

  Returns:
    ``(ground_truth, notes)``: ``ground_truth`` with ``images`` (ids ``1..N`` in the given order,
    ``file_name``, ``height``, ``width``), ``annotations`` (``bbox`` ``[x, y, w, h]``, ``area`` the
    box area, ``iscrowd`` 0) and the ten ``CLASS_NAMES`` categories (ids ``1..10``); ``notes``
    says which shapes were skipped or dropped, per file.

  Raises:
    ValueError: naming the file, for one that is not a usable LabelMe annotation.
  """
  images, annotations, notes = [], [], []
  for image_id, path in enumerate(json_paths, start=1):
    try:
      item = labelme.parse_labelme(read_json(path), path, root)
    except labelme.AnnotationError as e:
      raise ValueError(str(e)) from None
    height, width = item.height, item.width
    if not (height and width):
      pixels = cv2.imread(item.image_path, cv2.IMREAD_UNCHANGED) if item.image_path else None
      if pixels is None:
        raise ValueError(f"{path}: declares no imageHeight/imageWidth and its image cannot be read to find them.")
      height, width = pixels.shape[:2]
    lesions = labelme.clip_lesions(item.polygons, item.labels, width, height, reference_rounding=True)
    if item.skipped_shapes:
      reasons = sorted({s.reason for s in item.skipped_shapes})
      notes.append(f"{path}: {len(item.skipped_shapes)} shapes skipped ({', '.join(reasons)})")
    if lesions.num_dropped:
      notes.append(f"{path}: {lesions.num_dropped} lesions dropped (nothing left inside the image)")
    images.append({"id": image_id, "file_name": item.file_name, "height": int(height), "width": int(width)})
    for box, label in zip(lesions.boxes.tolist(), lesions.labels.tolist()):
      w, h = box[2] - box[0], box[3] - box[1]
      annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": int(label) + 1,
                          "bbox": [box[0], box[1], w, h], "area": w * h, "iscrowd": 0})
  categories = [{"id": i + 1, "name": name} for i, name in enumerate(CLASS_NAMES)]
  return {"images": images, "annotations": annotations, "categories": categories}, notes


def load_ground_truth(path: str) -> Tuple[Dict[str, Any], List[str]]:
  """COCO ground truth from a COCO instances file, a LabelMe file or a folder of LabelMe files."""
  path = resolve(path)
  if os.path.isdir(path):
    files = labelme.find_labelme_files(path)
    if not files:
      raise ValueError(f"{path}: no LabelMe .json files in this folder.")
    return labelme_ground_truth(files, path)
  obj = read_json(path)
  if is_labelme(obj):
    return labelme_ground_truth([path], os.path.dirname(path))
  return obj, []


def detection_files(path: str) -> List[str]:
  """``predict``'s ``*_detections.json`` files in a folder (sorted), or ``[path]`` for a file."""
  path = resolve(path)
  if os.path.isdir(path):
    files = sorted(glob.glob(os.path.join(path, "*" + DETECTIONS_SUFFIX)))
    if not files:
      raise ValueError(f"{path}: no *{DETECTIONS_SUFFIX} files (predict's output) in this folder.")
    return files
  return [path]


def load_detections(path: str, ground_truth: Mapping[str, Any]) -> List[Dict[str, Any]]:
  """COCO results from a COCO results file, or from ``predict``'s output (folder or files),
  re-labelled with the ``image_id`` of the ground-truth image of the same stem."""
  files = detection_files(path)
  if len(files) == 1 and not files[0].endswith(DETECTIONS_SUFFIX):
    return read_json(files[0])
  by_stem: Dict[str, int] = {}
  for image in ground_truth.get("images", []):
    if isinstance(image, Mapping) and "file_name" in image:
      by_stem.setdefault(_stem(str(image["file_name"])), image.get("id"))
  results = []
  for file in files:
    stem = os.path.basename(file)[:-len(DETECTIONS_SUFFIX)]
    if stem not in by_stem:
      known = ", ".join(sorted(by_stem)[:5]) + (" ..." if len(by_stem) > 5 else "")
      raise ValueError(f"{file}: no annotated image named {stem}.* in the ground truth (it has {known or 'none'}); "
                       "run predict on the annotated photos, or pass the matching annotations with --gt.")
    entries = read_json(file)
    if not isinstance(entries, list):
      raise ValueError(f"{file}: not a JSON list of detections (predict's <stem>_detections.json).")
    results += [{**entry, "image_id": by_stem[stem]} if isinstance(entry, Mapping) else entry for entry in entries]
  return results
