"""AcneSCU annotations as released: LabelMe JSON per image, or one COCO instance JSON.

AcneSCU (github.com/pingguokiller/acnedetection) ships its facial photographs as JPEGs, each
with a LabelMe JSON file beside it::

  {"shapes": [{"label": "papule", "points": [[x, y], ...], "shape_type": "polygon"},
              {"label": "nevus", "points": [[cx, cy], [rim_x, rim_y]], "shape_type": "circle"},
              ...],
   "imagePath": "J__name_..._20190123090437000_....jpg", "imageHeight": H, "imageWidth": W,
   "imageData": null or base64 image}

This module turns either that or a COCO instance JSON (category ids 1..10 in ``CLASS_NAMES``
order, polygon ``segmentation``, ``file_name``) into :class:`AnnotatedImage` objects: one per
image, with lesion polygons ``[V, 2]`` float64 (x, y) in continuous pixel coordinates and
class ids in 0..9. It never raises for a bad shape: shapes that cannot be used are skipped and
listed in ``AnnotatedImage.skipped_shapes`` with the reason, and every such skip is logged
with the file and label. A file that cannot be used at all raises :class:`AnnotationError`
naming it (the TFDS builder catches it, skips the file and counts it).

Shape rules (those of the reference converter ``labelme_to_coco_zjw.py``):

* ``polygon`` (or a missing / null ``shape_type``, as older LabelMe wrote polygons): the
  points are used as they are;
* ``circle`` (centre, rim point): the octagon of ``masked_crop.circle_to_polygon``, vertices
  at the circle's radius on the axes and diagonals;
* shapes with two points or fewer are skipped (``"too_few_points"``), as are other shape
  types (``"unsupported_shape_type"``: rectangle, line, point, ...), labels outside the 10
  categories (``"unknown_label"``) and points that are not numbers (strings, true/false), not
  finite, or of magnitude ``2**31`` px or more (``"invalid_points"``).

Labels are matched after ``strip()``, lower-casing and turning spaces and hyphens into
underscores, so ``"Closed comedo"`` is ``closed_comedo``; anything else is unknown.

Patients and splits: see :func:`patient_of` and :func:`split_of`.
"""

from __future__ import annotations

import base64
import binascii
import collections
import dataclasses
import hashlib
import json
import logging
import math
import os
import re
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import cv2
import numpy as np

from acne_jax.data import image_bytes
from acne_jax.data.masked_crop import circle_to_polygon, polygon_bounds
from acne_jax.data.records import ACNE_SCU_CLASS_NAMES as CLASS_NAMES
from acne_jax.data.synthetic import clip_polygon

logger = logging.getLogger(__name__)

NUM_CLASSES = len(CLASS_NAMES)
CLASS_IDS: Dict[str, int] = {name: i for i, name in enumerate(CLASS_NAMES)}
# COCO category id of each class (the reference's ``classname_to_id``): class id + 1.
COCO_CATEGORY_IDS: Dict[str, int] = {name: i + 1 for i, name in enumerate(CLASS_NAMES)}

IMAGE_EXTENSIONS: Tuple[str, ...] = (".jpg", ".jpeg", ".JPG", ".JPEG", ".png", ".PNG", ".bmp", ".BMP")

# Why a shape was skipped (keys of the skip counters).
TOO_FEW_POINTS = "too_few_points"
UNKNOWN_LABEL = "unknown_label"
UNSUPPORTED_SHAPE_TYPE = "unsupported_shape_type"
INVALID_POINTS = "invalid_points"
# Why a COCO entry was left out (``parse_coco(..., problems=...)``).
UNKNOWN_IMAGE_ID = "unknown_image_id"  # an annotation whose image_id is no (usable) entry of "images"
MALFORMED_IMAGE_ENTRY = "malformed_image_entry"  # an "images" entry without an id or a file_name
DUPLICATE_IMAGE_ID = "duplicate_image_id"  # an "images" entry whose id an earlier one has

# Coordinates are pixels: a magnitude of 2**31 or more is not a coordinate of any image.
MAX_COORDINATE = 2.0**31

# Patient-level split (see ``split_of``).
SPLIT_SALT = "acne_scu/patient-split/v1"
DEFAULT_TEST_FRACTION = 0.10
DEFAULT_VALIDATION_FRACTION = 0.05
SPLITS: Tuple[str, ...] = ("train", "validation", "test")


class AnnotationError(ValueError):
  """An annotation file (or its image) that cannot be used at all; the message names it.

  ``reason`` is a short code for build summaries: ``"unreadable_json"``, ``"not_labelme"``,
  ``"not_coco"``, ``"invalid_size"``, ``"image_not_found"``, ``"unreadable_image"``,
  ``"corrupt_image"`` or ``"image_size_mismatch"``.
  """

  def __init__(self, message: str, reason: str = "unusable_annotation"):
    super().__init__(message)
    self.reason = reason


@dataclasses.dataclass(frozen=True)
class SkippedShape:
  """A shape left out of an image's annotations (or, for COCO, an entry left out of the file)."""

  file: str  # the annotation file
  index: int  # position of the shape (LabelMe) or annotation (COCO) in the file
  label: str  # its label as written in the file
  reason: str  # TOO_FEW_POINTS, UNKNOWN_LABEL, UNSUPPORTED_SHAPE_TYPE, INVALID_POINTS, or a COCO entry's reason
  item: str = ""  # what index counts when not the file's shapes: "image" (a COCO "images" entry)


@dataclasses.dataclass
class AnnotatedImage:
  """One image and its usable lesions.

  Attributes:
    file_name: the image's path relative to the data folder (POSIX separators), e.g.
      ``"batch1/J__name_..._20190123090437000_....jpg"``.
    image_path: absolute path of the image file ("" when the only copy of the image is the
      LabelMe ``imageData``).
    annotation_path: the JSON file the annotations came from.
    height, width: image size declared by the annotation file (0 when it declares none).
    polygons: K float64 ``[V_k, 2]`` (x, y) vertices, continuous pixel coordinates (pixel
      ``(i, j)`` covers ``[j, j + 1] x [i, i + 1]``), as annotated (not yet clipped).
    labels: int64 ``[K]`` class ids in 0..9 (index into ``CLASS_NAMES``).
    shape_types: K strings, "polygon", "circle" or "bbox" (a COCO box without polygon).
    skipped_shapes: shapes of this image that were left out, with the reason.
    image_data: the decoded LabelMe ``imageData`` bytes, used when the image file is missing.
    shape_indices: K ints, the position of each lesion's shape in the file (LabelMe
      ``shapes``, COCO ``annotations``), for messages.
  """

  file_name: str
  image_path: str
  annotation_path: str
  height: int
  width: int
  polygons: List[np.ndarray]
  labels: np.ndarray
  shape_types: List[str]
  skipped_shapes: List[SkippedShape] = dataclasses.field(default_factory=list)
  image_data: Optional[bytes] = None
  shape_indices: List[int] = dataclasses.field(default_factory=list)

  @property
  def stem(self) -> str:
    """The image's file name without folders and extension."""
    return _stem(self.file_name)

  @property
  def patient_id(self) -> str:
    return patient_of(self.file_name)


# --------------------------------------------------------------------------------------------
# Labels, shapes, patients and splits.


def label_id(label: Any) -> Optional[int]:
  """Class id (0..9) of a label, or None if it is not one of ``CLASS_NAMES``.

  Matching ignores surrounding blanks and case and treats spaces and hyphens as underscores.
  """
  if not isinstance(label, str):
    return None
  key = re.sub(r"[\s\-]+", "_", label.strip().lower())
  return CLASS_IDS.get(key)


def _is_number(value: Any) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def _coordinates(array: np.ndarray) -> bool:
  """Every value finite and of magnitude under ``MAX_COORDINATE``."""
  return bool(np.isfinite(array).all() and (np.abs(array) < MAX_COORDINATE).all())


def _points(points: Any) -> np.ndarray:
  """``[V, 2]`` float64 from a list of ``[x, y]`` numbers (JSON numbers: not true/false, not
  strings) of pixel range; raises ValueError when malformed."""
  if (not isinstance(points, (list, tuple)) or not points
      or not all(isinstance(p, (list, tuple)) and len(p) == 2 and all(_is_number(v) for v in p) for p in points)):
    raise ValueError(f"points are not a [V, 2] list of numbers: {points!r:.80}")
  array = np.asarray(points, dtype=np.float64)
  if not _coordinates(array):
    raise ValueError(f"points are not finite numbers under 2**31 px: {points!r:.80}")
  return array


def shape_polygon(shape: Mapping[str, Any]) -> Tuple[Optional[np.ndarray], str]:
  """Polygon of one LabelMe shape.

  Returns:
    ``(polygon, shape_type)`` with ``polygon`` float64 ``[V, 2]`` (x, y), V >= 3, or
    ``(None, reason)`` when the shape must be skipped (reason: ``TOO_FEW_POINTS``,
    ``UNSUPPORTED_SHAPE_TYPE`` or ``INVALID_POINTS``). The label is not looked at.
  """
  shape_type = shape.get("shape_type") or "polygon"
  if shape_type not in ("polygon", "circle"):
    return None, UNSUPPORTED_SHAPE_TYPE
  try:
    points = _points(shape.get("points"))
  except (TypeError, ValueError):
    return None, INVALID_POINTS
  if shape_type == "circle":
    if len(points) != 2:
      return None, INVALID_POINTS
    try:
      octagon = np.asarray(circle_to_polygon(points[0], points[1]), np.float64).reshape(-1, 2)
    except OverflowError:  # math.sqrt of a square beyond float range
      return None, INVALID_POINTS
    return (octagon, "circle") if _coordinates(octagon) else (None, INVALID_POINTS)
  if len(points) <= 2:
    return None, TOO_FEW_POINTS
  return points, "polygon"


def _stem(file_name: str) -> str:
  name = str(file_name).replace("\\", "/").rsplit("/", 1)[-1]
  base, ext = os.path.splitext(name)
  return base if ext.lower() in {e.lower() for e in IMAGE_EXTENSIONS} | {".json"} else name


_ACNE = "痤疮"  # "acne", the diagnosis that follows (sometimes without "_") a patient's name
_VIEW_WORDS = frozenset({"left", "right", "front", "frontal", "center", "centre", "side", "lateral", "profile", "l", "r", "f", "c"})
_INDEX_TOKEN = re.compile(r"^(?:view|v|img|image|crop|photo|p|no)?\d+$", re.IGNORECASE)


def patient_of(file_name: str) -> str:
  """The patient of an image, from its file name (folders and extension are ignored).

  AcneSCU names its photographs ``<operator>__<patient name>[_<diagnosis>]_<timestamp>_<view>``
  (e.g. ``J__<name>_痤疮_20190123090437000_斑点``). The reference splits by the patient name, so:

  * a name with ``"__"``: the first non-empty ``_``-separated token after the first ``"__"``,
    cut before ``"痤疮"`` where the diagnosis is glued to the name (``<name>痤疮``). The
    operator prefix is not part of it: images of one patient taken by different operators
    share the patient.
  * any other name: the ``_``/``-``/blank-separated tokens, dropping trailing tokens that are
    numbers, indices (``view2``, ``img3``, ``crop0``) or view words (left, right, front,
    frontal, center, side, lateral, profile, l, r, f, c), e.g. ``p012_left_2`` -> ``p012``.
    A bare number is an index, so ``patient_7_2`` -> ``patient`` and camera names such as
    ``IMG_1234`` all map to ``IMG`` (one "patient": never a leak, but lopsided splits);
    rename such files ``p7_2`` / ``<patient>_<index>`` first.

  A ``_crop<k>`` suffix (a crop of an image) is dropped first. (The reference takes the
  all-Chinese token that is not a diagnosis or view word and drops its last two characters
  when it is longer than four; that misses ``<2-character name>痤疮`` and cuts names of five
  characters or more, hence the rule above.)
  """
  stem = re.sub(r"_crop\d+$", "", _stem(file_name))
  if "__" in stem:
    tokens = [t for t in stem.split("__", 1)[1].split("_") if t]
    if tokens:
      name = tokens[0]
      cut = name.find(_ACNE)
      if cut > 0:
        name = name[:cut]
      return name
  tokens = [t for t in re.split(r"[_\-\s]+", stem) if t]
  while len(tokens) > 1 and (tokens[-1].lower() in _VIEW_WORDS or _INDEX_TOKEN.match(tokens[-1])):
    tokens.pop()
  return "_".join(tokens) if tokens else stem


def split_fraction(patient_id: str, salt: str = SPLIT_SALT) -> float:
  """A number in [0, 1) fixed by the patient id: the first 8 bytes of SHA-256(salt NUL id)."""
  digest = hashlib.sha256(f"{salt}\0{patient_id}".encode("utf-8")).digest()
  return int.from_bytes(digest[:8], "big") / 2.0**64


def split_of(
    patient_id: str,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    validation_fraction: float = DEFAULT_VALIDATION_FRACTION,
    salt: str = SPLIT_SALT,
) -> str:
  """The split of every image of a patient: "test", "validation" or "train".

  ``u = split_fraction(patient_id, salt)``; test if ``u < test_fraction``, validation if
  ``u < test_fraction + validation_fraction``, train otherwise. The split depends on the
  patient alone (not on the other files, their order or the machine), so adding images never
  moves a patient, and a patient's images are never in two splits. About 10% / 5% / 85% of the
  patients by default (images follow patients, so image fractions vary). The reference's own
  split (sklearn ``train_test_split`` without ``random_state``) cannot be reproduced.
  """
  if not (test_fraction >= 0.0 and validation_fraction >= 0.0 and test_fraction + validation_fraction <= 1.0):
    raise ValueError(f"split_of: fractions must be >= 0 and sum to <= 1, got test={test_fraction}, validation={validation_fraction}.")
  u = split_fraction(patient_id, salt)
  if u < test_fraction:
    return "test"
  if u < test_fraction + validation_fraction:
    return "validation"
  return "train"


# --------------------------------------------------------------------------------------------
# LabelMe.


def _warn_skip(skipped: SkippedShape) -> None:
  logger.warning("acne_scu: %s: shape %d (label %r) skipped: %s.", skipped.file, skipped.index, skipped.label, skipped.reason)


def _read_json(path: str) -> Any:
  try:
    with open(path, "rb") as f:
      return json.loads(f.read().decode("utf-8-sig"))
  except (OSError, UnicodeDecodeError, ValueError) as e:
    raise AnnotationError(f"{path}: not a readable JSON file ({type(e).__name__}: {e}).", "unreadable_json") from e


def _relative(path: str, root: Optional[str]) -> str:
  if root is None:
    return os.path.basename(path)
  return os.path.relpath(path, root).replace(os.sep, "/")


def _find_image(json_path: str, image_path: Any) -> str:
  """The image file of a LabelMe JSON: ``imagePath`` (relative to the JSON's folder, or just
  its base name there), else a file with the JSON's stem and an image extension; "" if none."""
  folder = os.path.dirname(json_path)
  candidates = []
  if isinstance(image_path, str) and image_path:
    normalised = image_path.replace("\\", "/")
    candidates += [os.path.join(folder, normalised), os.path.join(folder, normalised.rsplit("/", 1)[-1])]
  stem = os.path.splitext(os.path.basename(json_path))[0]
  candidates += [os.path.join(folder, stem + ext) for ext in IMAGE_EXTENSIONS]
  for candidate in candidates:
    if os.path.isfile(candidate):
      return os.path.normpath(candidate)
  return ""


def _int_field(obj: Mapping[str, Any], key: str, path: str) -> int:
  value = obj.get(key)
  if value is None:
    return 0
  if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or value != int(value):
    raise AnnotationError(f"{path}: {key} must be a non-negative integer, got {value!r}.", "invalid_size")
  return int(value)


def parse_labelme(obj: Mapping[str, Any], json_path: str, root: Optional[str] = None) -> AnnotatedImage:
  """Annotations of one LabelMe JSON document.

  Args:
    obj: the parsed JSON.
    json_path: where it was read from (for the image look-up and messages).
    root: the data folder; ``file_name`` is the image path relative to it (default: the
      image's base name).

  Returns:
    An :class:`AnnotatedImage` (possibly with no lesions).

  Raises:
    AnnotationError: naming the file, when it is not a LabelMe document (no ``shapes`` list),
      declares an invalid size, or has neither an image file beside it nor ``imageData``.
  """
  if not isinstance(obj, Mapping) or not isinstance(obj.get("shapes"), list):
    raise AnnotationError(f"{json_path}: not a LabelMe annotation file (no 'shapes' list).", "not_labelme")
  height = _int_field(obj, "imageHeight", json_path)
  width = _int_field(obj, "imageWidth", json_path)
  image_path = _find_image(json_path, obj.get("imagePath"))
  image_data = None
  if not image_path:
    data = obj.get("imageData")
    if isinstance(data, str) and data:
      try:
        image_data = base64.b64decode(data, validate=False)
      except (binascii.Error, ValueError) as e:
        raise AnnotationError(f"{json_path}: imageData is not base64 ({e}) and no image file is beside it.", "image_not_found") from e
    else:
      raise AnnotationError(
          f"{json_path}: image {obj.get('imagePath')!r} not found beside it (nor a file named like the JSON with "
          f"one of {', '.join(IMAGE_EXTENSIONS)}), and the JSON has no imageData.", "image_not_found")
    name = obj.get("imagePath") if isinstance(obj.get("imagePath"), str) and obj.get("imagePath") else os.path.splitext(json_path)[0] + ".jpg"
    file_name = _relative(os.path.join(os.path.dirname(json_path), name.replace("\\", "/")), root)
  else:
    file_name = _relative(image_path, root)

  polygons, labels, types, skipped, indices = [], [], [], [], []
  for index, shape in enumerate(obj["shapes"]):
    label = shape.get("label") if isinstance(shape, Mapping) else None
    label_text = label if isinstance(label, str) else repr(label)
    if not isinstance(shape, Mapping):
      skipped.append(SkippedShape(json_path, index, label_text, INVALID_POINTS))
      _warn_skip(skipped[-1])
      continue
    polygon, kind = shape_polygon(shape)
    if polygon is None:
      skipped.append(SkippedShape(json_path, index, label_text, kind))
      _warn_skip(skipped[-1])
      continue
    class_id = label_id(label)
    if class_id is None:
      skipped.append(SkippedShape(json_path, index, label_text, UNKNOWN_LABEL))
      _warn_skip(skipped[-1])
      continue
    polygons.append(polygon)
    labels.append(class_id)
    types.append(kind)
    indices.append(index)
  return AnnotatedImage(
      file_name=file_name,
      image_path=image_path,
      annotation_path=json_path,
      height=height,
      width=width,
      polygons=polygons,
      labels=np.asarray(labels, np.int64),
      shape_types=types,
      skipped_shapes=skipped,
      image_data=image_data,
      shape_indices=indices,
  )


def parse_labelme_file(json_path: str, root: Optional[str] = None) -> AnnotatedImage:
  """:func:`parse_labelme` of a file; raises :class:`AnnotationError` naming it when unusable."""
  return parse_labelme(_read_json(json_path), json_path, root)


def find_labelme_files(root: str) -> List[str]:
  """All ``*.json`` files under ``root`` (sub-folders included, hidden ones skipped), sorted."""
  found = []
  for folder, dirs, files in os.walk(root):
    dirs[:] = sorted(d for d in dirs if not d.startswith("."))
    found += [os.path.join(folder, f) for f in files if f.lower().endswith(".json") and not f.startswith(".")]
  return sorted(found)


# --------------------------------------------------------------------------------------------
# COCO.


def _coco_category_map(obj: Mapping[str, Any], path: str) -> Dict[int, Tuple[str, Optional[int]]]:
  """COCO category id -> (name, class id or None). Without a ``categories`` list, ids 1..10
  are ``CLASS_NAMES`` in order; with one, categories are matched by name."""
  categories = obj.get("categories")
  if not categories:
    return {i + 1: (name, i) for i, name in enumerate(CLASS_NAMES)}
  mapping = {}
  for category in categories:
    if not isinstance(category, Mapping) or "id" not in category or not _hashable(category["id"]):
      raise AnnotationError(f"{path}: malformed category {category!r:.80}.", "not_coco")
    name = category.get("name", "")
    mapping[category["id"]] = (str(name), label_id(name))
  return mapping


def _coco_polygon(annotation: Mapping[str, Any]) -> Tuple[Optional[np.ndarray], str]:
  segmentation = annotation.get("segmentation")
  parts = []
  if isinstance(segmentation, list) and segmentation:
    flat = segmentation if not isinstance(segmentation[0], (list, tuple)) else None
    for part in ([flat] if flat is not None else segmentation):
      if not isinstance(part, (list, tuple)) or not all(_is_number(v) for v in part):
        return None, INVALID_POINTS
      array = np.asarray(part, np.float64).reshape(-1)
      if array.size % 2 or not _coordinates(array):
        return None, INVALID_POINTS
      parts.append(array.reshape(-1, 2))
  elif segmentation:  # RLE or anything else
    return None, UNSUPPORTED_SHAPE_TYPE
  if parts:
    # One polygon per lesion: a multi-part segmentation keeps its largest part.
    areas = [abs(float(cv2.contourArea(p.astype(np.float32)))) if len(p) >= 3 else -1.0 for p in parts]
    polygon = parts[int(np.argmax(areas))]
    if len(polygon) <= 2:
      return None, TOO_FEW_POINTS
    return polygon, "polygon"
  bbox = annotation.get("bbox")
  if not isinstance(bbox, (list, tuple)) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
    return None, INVALID_POINTS
  x, y, w, h = (float(v) for v in bbox)
  if not _coordinates(np.array([x, y, x + w, y + h])):
    return None, INVALID_POINTS
  return np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], np.float64), "bbox"


def parse_coco(obj: Mapping[str, Any], json_path: str, image_root: str, root: Optional[str] = None,
               problems: Optional[List[SkippedShape]] = None) -> List[AnnotatedImage]:
  """Images of a COCO instance JSON.

  Args:
    obj: the parsed JSON (``images``, ``annotations``, optional ``categories``).
    json_path: where it was read from (for messages).
    image_root: folder the images' ``file_name`` are relative to.
    root: the data folder ``AnnotatedImage.file_name`` is made relative to (default
      ``image_root``).
    problems: if given, an ``images`` entry without an id or ``file_name`` (or with the id of
      an earlier entry) is left out, and so is an annotation whose ``image_id`` is no usable
      entry; each is appended here (``MALFORMED_IMAGE_ENTRY`` / ``DUPLICATE_IMAGE_ID`` with
      ``item="image"`` and its index in ``images``, ``UNKNOWN_IMAGE_ID`` with its index in
      ``annotations``) and logged. Without it the first such entry raises.

  Returns:
    One :class:`AnnotatedImage` per entry of ``images`` (file order), each with its polygon
    annotations in file order. Annotations with an unknown category or without usable
    geometry are skipped (listed in ``skipped_shapes`` of their image, ``index`` = position in
    ``annotations``); a segmentation with several parts keeps its largest; an annotation with
    ``bbox`` but no segmentation becomes its rectangle (shape type "bbox"). The image files are
    not opened here (``image_path`` is "" when the file is missing).

  Raises:
    AnnotationError: when the document is not a COCO instance file, or (without ``problems``)
      has a malformed image entry or refers to images that are not in ``images``.
  """
  if not isinstance(obj, Mapping) or not isinstance(obj.get("images"), list) or not isinstance(obj.get("annotations"), list):
    raise AnnotationError(f"{json_path}: not a COCO instance file (needs 'images' and 'annotations' lists).", "not_coco")
  root = image_root if root is None else root
  categories = _coco_category_map(obj, json_path)
  images: Dict[Any, AnnotatedImage] = {}
  order = []
  def problem(message: str, skipped: SkippedShape) -> None:
    if problems is None:
      raise AnnotationError(f"{json_path}: {message}", "not_coco")
    problems.append(skipped)
    logger.warning("acne_scu: %s: %s: left out.", json_path, message)

  for position, entry in enumerate(obj["images"]):
    if not isinstance(entry, Mapping) or not _hashable(entry.get("id")) or not isinstance(entry.get("file_name"), str) or not entry["file_name"]:
      problem(f"malformed image entry {position} {entry!r:.80} (needs 'id' and 'file_name')",
              SkippedShape(json_path, position, "", MALFORMED_IMAGE_ENTRY, "image"))
      continue
    if entry["id"] in images:
      problem(f"image entry {position} repeats the id {entry['id']!r} of an earlier entry",
              SkippedShape(json_path, position, "", DUPLICATE_IMAGE_ID, "image"))
      continue
    path = os.path.normpath(os.path.join(image_root, entry["file_name"].replace("\\", "/")))
    images[entry["id"]] = AnnotatedImage(
        file_name=_relative(path, root),
        image_path=path if os.path.isfile(path) else "",
        annotation_path=json_path,
        height=_int_field(entry, "height", json_path),
        width=_int_field(entry, "width", json_path),
        polygons=[],
        labels=np.zeros((0,), np.int64),
        shape_types=[],
    )
    order.append(entry["id"])
  labels: Dict[Any, List[int]] = collections.defaultdict(list)
  for index, annotation in enumerate(obj["annotations"]):
    if not isinstance(annotation, Mapping) or not _hashable(annotation.get("image_id")) or annotation.get("image_id") not in images:
      category = annotation.get("category_id") if isinstance(annotation, Mapping) and _hashable(annotation.get("category_id")) else None
      label = categories.get(category, ("", None))[0]
      problem(f"annotation {index} refers to no image of 'images': {annotation!r:.80}",
              SkippedShape(json_path, index, label, UNKNOWN_IMAGE_ID))
      continue
    image = images[annotation["image_id"]]
    category = annotation.get("category_id")
    name, class_id = categories.get(category, (f"category_id={category!r}", None)) if _hashable(category) else (f"category_id={category!r}", None)
    polygon, kind = _coco_polygon(annotation)
    reason = kind if polygon is None else (UNKNOWN_LABEL if class_id is None else "")
    if reason:
      image.skipped_shapes.append(SkippedShape(json_path, index, name, reason))
      _warn_skip(image.skipped_shapes[-1])
      continue
    image.polygons.append(polygon)
    image.shape_types.append(kind)
    image.shape_indices.append(index)
    labels[annotation["image_id"]].append(class_id)
  for image_id, image in images.items():
    image.labels = np.asarray(labels[image_id], np.int64)
  return [images[i] for i in order]


def parse_coco_file(json_path: str, image_root: str, root: Optional[str] = None,
                    problems: Optional[List[SkippedShape]] = None) -> List[AnnotatedImage]:
  """:func:`parse_coco` of a file; raises :class:`AnnotationError` naming it when unusable."""
  return parse_coco(_read_json(json_path), json_path, image_root, root, problems)


def _hashable(value: Any) -> bool:
  """A JSON value usable as an id (not a list or an object)."""
  return not isinstance(value, (list, dict))


# --------------------------------------------------------------------------------------------
# Images and geometry.


def read_image(image: AnnotatedImage) -> Tuple[np.ndarray, bytes]:
  """Decode an annotated image with OpenCV.

  The image is read with ``cv2.IMREAD_COLOR`` (EXIF orientation applied, as LabelMe shows
  it); when that does not have the annotated size but the unrotated image does, the latter is
  used. The annotated size is the JSON's ``imageHeight`` x ``imageWidth`` (not checked when
  the file declares none).

  Returns:
    ``(pixels, encoded)``: uint8 ``[H, W, 3]`` RGB, and the file's bytes.

  Raises:
    AnnotationError: naming the image, when it is missing, cut short
      (``image_bytes.incomplete``), cannot be decoded (``cv2.imdecode`` fails) or its size
      differs from the annotated one.
  """
  if image.image_path:
    try:
      with open(image.image_path, "rb") as f:
        encoded = f.read()
    except OSError as e:
      raise AnnotationError(f"{image.image_path}: cannot read the image ({e}).", "unreadable_image") from e
    where = image.image_path
  elif image.image_data is not None:
    encoded, where = image.image_data, f"{image.annotation_path} (imageData)"
  else:
    raise AnnotationError(f"{image.file_name}: image file not found (annotations in {image.annotation_path}).", "image_not_found")
  cut = image_bytes.incomplete(encoded)
  if cut:
    raise AnnotationError(f"{where}: {cut}.", "corrupt_image")
  buffer = np.frombuffer(encoded, np.uint8)
  decoded = cv2.imdecode(buffer, cv2.IMREAD_COLOR) if buffer.size else None
  if decoded is None:
    raise AnnotationError(f"{where}: cv2.imdecode could not decode the image (corrupt or not an image).", "corrupt_image")
  want = (image.height, image.width)
  if image.height and image.width and decoded.shape[:2] != want:
    unrotated = cv2.imdecode(buffer, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if unrotated is None or unrotated.shape[:2] != want:
      raise AnnotationError(
          f"{where}: decoded size {decoded.shape[0]}x{decoded.shape[1]} (HxW) differs from the annotated "
          f"imageHeight x imageWidth {want[0]}x{want[1]} in {image.annotation_path}.", "image_size_mismatch")
    decoded = unrotated
  return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB), encoded


def stored_image_bytes(pixels: np.ndarray, encoded: bytes) -> bytes:
  """Bytes to store for ``pixels`` (uint8 ``[H, W, 3]`` RGB decoded from ``encoded``).

  The original bytes when OpenCV's plain decoding of them (``cv2.IMREAD_UNCHANGED``, what
  TFDS uses to read images back) gives exactly ``pixels``, so a JPEG is stored as shipped;
  otherwise (EXIF rotation, grey or 16-bit images, alpha) a lossless PNG of ``pixels``.
  """
  raw = cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_UNCHANGED)
  if raw is not None and raw.dtype == np.uint8 and raw.shape == pixels.shape and np.array_equal(cv2.cvtColor(raw, cv2.COLOR_BGR2RGB), pixels):
    return encoded
  return encode_png(pixels)


def encode_png(pixels: np.ndarray) -> bytes:
  """Lossless PNG bytes of a uint8 ``[H, W, 3]`` RGB image."""
  ok, buffer = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 3])
  if not ok:
    raise RuntimeError("encode_png: cv2.imencode failed.")
  return buffer.tobytes()


# Why clip_lesions dropped a polygon.
OUTSIDE_IMAGE = "outside_image"  # nothing of it inside the image
ZERO_AREA = "zero_area"  # its (clipped) box has zero width or height


@dataclasses.dataclass
class ClippedLesions:
  """Lesions of an image after clipping to it (see :func:`clip_lesions`)."""

  polygons: List[np.ndarray]  # K float64 [V_k, 2] (x, y), inside [0, W] x [0, H]
  boxes: np.ndarray  # float32 [K, 4] x1, y1, x2, y2 pixels (see clip_lesions)
  labels: np.ndarray  # int64 [K]
  num_clipped: int  # polygons with a vertex outside the image, clipped to it (kept or not)
  num_dropped: int  # polygons whose (clipped) box has zero width or height (dropped)
  kept_index: List[int] = dataclasses.field(default_factory=list)  # K input positions of the kept polygons
  clipped_index: List[int] = dataclasses.field(default_factory=list)  # input positions of the clipped polygons that were kept
  dropped: List[Tuple[int, str]] = dataclasses.field(default_factory=list)  # (input position, OUTSIDE_IMAGE or ZERO_AREA)


def clip_lesions(
    polygons: Sequence[np.ndarray],
    labels: np.ndarray,
    width: int,
    height: int,
    reference_rounding: bool = True,
) -> ClippedLesions:
  """Clip polygons to the image ``[0, width] x [0, height]`` and drop the degenerate ones.

  A polygon with any vertex outside the image is clipped (Sutherland-Hodgman) and counted in
  ``num_clipped``; one whose box has zero width or height (nothing left inside, or a line) is
  dropped and counted in ``num_dropped``. Order is kept. ``kept_index``, ``clipped_index`` and
  ``dropped`` say which input polygons were kept, clipped (and kept) and dropped (with
  ``OUTSIDE_IMAGE`` when clipping left nothing, else ``ZERO_AREA``).

  Boxes are ``masked_crop.polygon_bounds`` of the (clipped) polygon: with
  ``reference_rounding`` the reference's integer boxes ``(floor(min x), floor(min y),
  floor(min x) + ceil(max x - min x), floor(min y) + ceil(max y - min y))`` (its COCO
  ``[x, y, w, h]`` as corners; inside the image since the polygon is), else the tight float
  bounds.
  """
  kept, boxes, kept_labels, kept_index, clipped_index, dropped = [], [], [], [], [], []
  clipped = 0
  for position, (polygon, label) in enumerate(zip(polygons, np.asarray(labels).reshape(-1))):
    polygon = np.asarray(polygon, np.float64).reshape(-1, 2)
    was_clipped = bool((polygon < 0).any() or (polygon[:, 0] > width).any() or (polygon[:, 1] > height).any())
    if was_clipped:
      clipped += 1
      polygon = clip_polygon(polygon, width, height)
    if len(polygon) < 3:
      dropped.append((position, OUTSIDE_IMAGE if was_clipped else ZERO_AREA))
      continue
    box = polygon_bounds(polygon, reference_rounding=reference_rounding)
    if box[2] <= box[0] or box[3] <= box[1]:
      dropped.append((position, ZERO_AREA))
      continue
    kept.append(polygon)
    boxes.append(box)
    kept_labels.append(int(label))
    kept_index.append(position)
    if was_clipped:
      clipped_index.append(position)
  return ClippedLesions(
      polygons=kept,
      boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
      labels=np.asarray(kept_labels, np.int64),
      num_clipped=clipped,
      num_dropped=len(dropped),
      kept_index=kept_index,
      clipped_index=clipped_index,
      dropped=dropped,
  )
