"""TFDS builder of ACNE04 (Wu et al., ICCV 2019): facial acne photos with lesion boxes and a severity grade.

Manual download (see ``MANUAL_DOWNLOAD_INSTRUCTIONS``); build without TensorFlow into ArrayRecord
files and read back with ``as_data_source``::

  builder = Acne04(config="fold0", data_dir=data_dir)
  builder.download_and_prepare(
      file_format="array_record",
      download_config=tfds.download.DownloadConfig(manual_dir="/path/to/ACNE04"))
  source = builder.as_data_source(split="train")     # source[i] -> dict
  summary = read_build_summary(data_dir, "fold0")   # what was skipped, clipped, inconsistent

Configurations ``fold0`` .. ``fold4``: the release's 5 cross-validation folds, split ``train`` =
``NNEW_trainval_k.txt`` and split ``test`` = ``NNEW_test_k.txt`` (no validation split).

Record layout (the ``objects``/``polygons``/``crop_origin`` part is the one of
``tfds_builders.synthetic_acne``, so ``acne_jax.data.records.decode_record`` reads it)::

  image         uint8 [H, W, 3] RGB; stored as the release's JPEG bytes, unchanged
  image_id      int64: 100000 * grade_in_name + n for "levle{grade}_{n}.jpg" (else a CRC32 of the name)
  file_name     text, as in the list file, e.g. "levle0_1.jpg"
  crop_origin   int32 [2] (x, y) = (0, 0): whole images
  grade         ClassLabel 0..3 (GRADE_NAMES), from the list file (authoritative)
  lesion_count  int32, from the list file
  objects       Sequence (lists of length K when read back):
    bbox          float32 [4] x1, y1, x2, y2 pixels: VOC (xmin - 1, ymin - 1, xmax, ymax), clipped
                  to the image (see ``acne_jax.data.voc``)
    label         ClassLabel over ("acne",): always 0 (the release's single class "fore")
    area          float32, bbox area (x2 - x1) * (y2 - y1)
    polygon_size  int32, 8 (the box as a 4-vertex polygon)
    difficult     bool, the VOC <difficult> flag
  polygons      float32 [8 K]: [x1, y1, x2, y1, x2, y2, x1, y2] per box, in object order

Images are decoded (for validation and size) with ``cv2.IMREAD_UNCHANGED``, as TFDS decodes them
when reading back: no EXIF rotation, so boxes stay in the stored pixel frame.

Bad input. Missing manual folder or required file/folder -> ``FileNotFoundError`` naming the path
and repeating the layout. A listed image without a file, an undecodable image, or an unreadable
XML -> the record is skipped (an image whose XML is unreadable is skipped rather than kept
box-less: its lesions would become background). A listed image without an XML is kept with zero
boxes; an XML without an image is skipped. Boxes are clipped to the image; boxes of zero width or
height after clipping (also inverted or outside boxes), objects without four finite box
coordinates and objects of another class than "fore" are dropped. Every such file, list line and
object is logged and listed, with its file, its line or object index, its label and the reason,
in the build summary (``<data_dir>/acne04/<config>/<version>/build_summary.json``, see
``tfds_builders.build_summary``), together with the consistency checks: grade vs Hayashi grade
of the lesion count, grade vs "levle{g}" in the file name, number of boxes vs lesion count
(checked on written records). A split with no usable image (an empty list file, or every listed
image skipped) is left out of the data set and reported in the summary's ``empty_splits`` (TFDS
cannot write an empty split); a fold with no usable image at all raises ``NoUsableDataError``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import zlib
from typing import Any, Dict, Iterator, List, Optional, Tuple

import cv2
import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from tfds_builders import build_summary
from tfds_builders.build_summary import SUMMARY_FILE, BuildSummary, NoUsableDataError  # noqa: F401  (re-exported)

from acne_jax.data import image_bytes, records, voc
from acne_jax.grading.scales import hayashi_grade  # noqa: F401  (re-exported; one implementation)

_LOG = logging.getLogger(__name__)

NUM_FOLDS = 5
CLASS_NAMES: Tuple[str, ...] = records.ACNE04_CLASS_NAMES
VOC_CLASS = "fore"
# Hayashi severity grades (label of the list files).
GRADE_NAMES: Tuple[str, ...] = records.ACNE04_GRADE_NAMES

CLASSIFICATION_DIR = "Classification"
CLASSIFICATION_IMAGES = os.path.join("Classification", "JPEGImages")
VOC_DIR = os.path.join("Detection", "VOC2007")
VOC_ANNOTATIONS = os.path.join(VOC_DIR, "Annotations")
VOC_IMAGES = os.path.join(VOC_DIR, "JPEGImages")

LAYOUT = """\
  <manual_dir>/
    Classification/
      JPEGImages/levle{grade}_{n}.jpg          the 1457 photos ("levle" is the release's spelling)
      NNEW_trainval_{0..4}.txt                 lines "<file name> <grade 0-3> <lesion count>"
      NNEW_test_{0..4}.txt
    Detection/VOC2007/
      Annotations/levle{grade}_{n}.xml         Pascal VOC boxes, one class "fore"
      ImageSets/Main/                          (not used)
      JPEGImages/levle{grade}_{n}.jpg          (optional; preferred over Classification/JPEGImages)"""

_NAME_RE = re.compile(r"^levle(\d+)_(\d+)$")

# Counters of the build summary, in display order.
COUNT_KEYS: Tuple[str, ...] = (
    "listed_images",  # list-file entries of the fold (train + test)
    "malformed_list_lines",  # list lines that are not "<name> <grade 0-3> <count>": skipped
    "duplicate_entries",  # a file listed twice in one split: the repeat is skipped
    "train_test_overlap",  # files listed in both splits of the fold (kept in both)
    "missing_images",  # listed, no image file: skipped
    "corrupt_images",  # image does not decode (or has 2 or 4+ channels): skipped
    "corrupt_annotations",  # XML does not parse: image skipped
    "images_without_annotation",  # no XML: kept with zero boxes
    "unannotated_with_lesions",  # ... of which the list file gives lesion_count > 0
    "annotations_without_image",  # XML files whose image exists in neither JPEGImages: skipped
    "unknown_class_boxes",  # objects not named "fore": dropped
    "invalid_boxes",  # objects without a <bndbox> of four finite numbers: dropped
    "clipped_boxes",  # boxes moved by clipping to the image, kept
    "dropped_empty_boxes",  # boxes of zero width or height after clipping: dropped
    "size_mismatches",  # XML <size> differs from the decoded image (boxes are not rescaled)
    "invalid_sizes",  # XML <size> fields that are not integers in 0..2**31-1 (ignored)
    "grade_count_mismatches",  # list grade != Hayashi grade of the list lesion count
    "file_grade_mismatches",  # list grade != the grade in the "levle{g}_" file name
    "box_count_mismatches",  # annotated images whose number of kept boxes != lesion count
)


def image_id_of(file_name: str) -> int:
  """``100000 * g + n`` for ``levle{g}_{n}.jpg``; other names: CRC32 of the name + 10**6 (>= 10**6)."""
  stem = os.path.splitext(os.path.basename(file_name))[0]
  match = _NAME_RE.match(stem)
  if match and int(match.group(2)) < 100000:
    return 100000 * int(match.group(1)) + int(match.group(2))
  return 10**6 + zlib.crc32(stem.encode("utf-8"))


def grade_in_file_name(file_name: str) -> Optional[int]:
  """The ``g`` of ``levle{g}_{n}.jpg`` (None for other names)."""
  match = _NAME_RE.match(os.path.splitext(os.path.basename(file_name))[0])
  return int(match.group(1)) if match else None


@dataclasses.dataclass(frozen=True)
class ListEntry:
  """One line of an ``NNEW_*.txt`` list: ``file_name grade lesion_count`` (line: 1-based;
  source: the list file's path)."""

  file_name: str
  grade: int
  lesion_count: int
  line: int
  source: str = ""  # the list file


def parse_list_file(path: os.PathLike, bad_lines: Optional[List[Tuple[int, str]]] = None) -> List[ListEntry]:
  """Reads an ``NNEW_trainval_k.txt`` / ``NNEW_test_k.txt`` list.

  Each non-blank line is ``<file name> <grade 0-3> <lesion count >= 0>``, whitespace separated,
  in UTF-8 (a line that is not is malformed). A name without extension gets ".jpg".

  Args:
    path: the list file.
    bad_lines: if given, malformed lines are skipped and ``(line, message)`` appended; else the
      first one raises ``ValueError`` naming the file and line.
  """
  entries = []
  with open(path, "rb") as f:
    data = f.read()
  for number, raw in enumerate(data.splitlines(), start=1):
    text = raw.decode("utf-8", "backslashreplace").lstrip("\ufeff")
    if not text.split():
      continue
    try:
      try:
        raw.decode("utf-8")
      except UnicodeDecodeError as e:
        raise ValueError(f"not UTF-8 text (byte {raw[e.start]:#04x} at column {e.start + 1})") from None
      parts = text.split()
      if len(parts) != 3:
        raise ValueError(f"expected 3 fields, got {len(parts)}")
      name, grade, count = parts[0], int(parts[1]), int(parts[2])
      if not 0 <= grade < len(GRADE_NAMES) or count < 0:
        raise ValueError(f"grade {grade} not in 0..3 or negative lesion count {count}")
    except ValueError as e:
      message = f"{os.fspath(path)}, line {number}: {e} ({text.strip()!r})"
      if bad_lines is None:
        raise ValueError(message) from None
      bad_lines.append((number, message))
      continue
    if not os.path.splitext(name)[1]:
      name += ".jpg"
    entries.append(ListEntry(file_name=name, grade=grade, lesion_count=count, line=number, source=os.fspath(path)))
  return entries


# --------------------------------------------------------------------------------------------
# Build summary (same API as ``tfds_builders.deep_lesion``).


def summary_path(data_dir: os.PathLike, config: str = "fold0", version: Optional[str] = None) -> epath.Path:
  """``<data_dir>/acne04/<config>/<version>/build_summary.json`` (version: the builder's)."""
  return build_summary.summary_path(data_dir, "acne04", config, version or Acne04.VERSION)


def read_build_summary(data_dir: os.PathLike, config: str = "fold0", version: Optional[str] = None) -> BuildSummary:
  """The summary written by a build of ``config`` into ``data_dir`` (FileNotFoundError if none)."""
  return build_summary.read_build_summary(data_dir, "acne04", config, version or Acne04.VERSION)


# --------------------------------------------------------------------------------------------
# Builder.


@dataclasses.dataclass(eq=False)
class Acne04Config(tfds.core.BuilderConfig):
  """One of the 5 official cross-validation folds."""

  fold: int = 0


class Acne04(tfds.core.GeneratorBasedBuilder):
  """ACNE04: facial acne photos, lesion boxes (one class) and Hayashi severity grades, 5 folds."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release."}
  BUILDER_CONFIGS = [
      Acne04Config(name=f"fold{k}", description=f"Fold {k}: train = NNEW_trainval_{k}.txt, test = NNEW_test_{k}.txt.", fold=k)
      for k in range(NUM_FOLDS)
  ]
  DEFAULT_CONFIG_NAME = "fold0"
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
Download ACNE04 as linked from https://github.com/xpwu95/LDL (README, "Dataset"), extract
the classification and detection parts, and pass the folder as manual_dir, laid out as:
{LAYOUT}
"""

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    """This file (TFDS's default needs ``importlib_resources``, absent without TensorFlow)."""
    return epath.Path(__file__)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__.splitlines()[0],
        features=records.tfds_features(
            CLASS_NAMES, image_encoding="jpeg",
            extra={"grade": tfds.features.ClassLabel(names=GRADE_NAMES), "lesion_count": np.int32},
            extra_objects={"difficult": np.bool_}),
        homepage="https://github.com/xpwu95/LDL",
        citation="Wu et al., Joint Acne Image Grading and Counting via Label Distribution Learning, ICCV 2019.",
        # Keep list-file order: record i of a split is the i-th kept line of its list.
        disable_shuffling=True,
    )

  def _download_and_prepare(self, dl_manager, download_config) -> None:  # pytype: disable=signature-mismatch
    self._summary = BuildSummary(dataset=self.name, config=self.builder_config.name, version=str(self.version),
                                 counts={k: 0 for k in COUNT_KEYS})
    super()._download_and_prepare(dl_manager=dl_manager, download_config=download_config)
    # self.data_path is the temporary build folder here; TFDS renames it on success.
    build_summary.write_build_summary(self._summary, self.data_path)

  def _manual_root(self, dl_manager) -> str:
    try:
      root = dl_manager.manual_dir
    except AssertionError as e:  # TFDS: "Manual directory ... does not exist or is empty."
      raise FileNotFoundError(f"acne04: {e}") from None
    return os.fspath(root)

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    root = self._manual_root(dl_manager)
    fold = self.builder_config.fold
    lists = {
        "train": os.path.join(root, CLASSIFICATION_DIR, f"NNEW_trainval_{fold}.txt"),
        "test": os.path.join(root, CLASSIFICATION_DIR, f"NNEW_test_{fold}.txt"),
    }
    for path in list(lists.values()) + [os.path.join(root, VOC_ANNOTATIONS)]:
      if not os.path.exists(path):
        raise FileNotFoundError(f"acne04: missing {path}. Expected layout:\n{LAYOUT}")
    image_dirs = [os.path.join(root, d) for d in (VOC_IMAGES, CLASSIFICATION_IMAGES) if os.path.isdir(os.path.join(root, d))]
    if not image_dirs:
      raise FileNotFoundError(
          f"acne04: missing {os.path.join(root, CLASSIFICATION_IMAGES)} (and {os.path.join(root, VOC_IMAGES)}). Expected layout:\n{LAYOUT}"
      )
    summary = self._summary
    summary.manual_dir = root
    entries: Dict[str, List[ListEntry]] = {}
    for split, path in lists.items():
      bad: List[Tuple[int, str]] = []
      parsed = parse_list_file(path, bad_lines=bad)
      for line, message in bad:
        summary.record("skipped", path, "malformed_list_line", _reason(message, f"{os.fspath(path)}, line {line}"), index=line, item="line")
      summary.add("malformed_list_lines", len(bad))
      seen: Dict[str, int] = {}
      kept = []
      for entry in parsed:
        if entry.file_name in seen:
          summary.add("duplicate_entries")
          summary.record("skipped", path, "duplicate_entry", f"{entry.file_name} is listed again (first on line {seen[entry.file_name]}): repeat skipped",
                         index=entry.line, item="line")
          continue
        seen[entry.file_name] = entry.line
        kept.append(entry)
      entries[split] = kept
      summary.add("listed_images", len(kept))
    train_lines = {e.file_name: e.line for e in entries["train"]}
    for entry in entries["test"]:
      if entry.file_name in train_lines:
        summary.add("train_test_overlap")
        summary.record("noted", lists["test"], "train_test_overlap",
                       f"{entry.file_name} is also in {os.path.basename(lists['train'])} (line {train_lines[entry.file_name]}): kept in both",
                       index=entry.line, item="line")
    annotation_dir = os.path.join(root, VOC_ANNOTATIONS)
    image_stems = {os.path.splitext(f)[0] for d in image_dirs for f in os.listdir(d)}
    for name in sorted(os.listdir(annotation_dir)):
      stem, ext = os.path.splitext(name)
      if ext.lower() == ".xml" and stem not in image_stems:
        summary.add("annotations_without_image")
        summary.record("skipped", os.path.join(annotation_dir, name), "annotation_without_image",
                       "no image of this name in " + " or ".join(summary.relative(d) for d in image_dirs))
    generators = {}
    for split in entries:
      if not entries[split]:  # TFDS cannot write an empty split
        summary.empty_split(split, f"{os.path.basename(lists[split])} lists no image")
        continue
      summary.splits[split] = {"examples": 0, "boxes": 0, **{f"grade_{g}": 0 for g in range(len(GRADE_NAMES))}}
      make = lambda entry, split=split: self._counted(split, entry, image_dirs, annotation_dir)  # noqa: E731
      first, rest = build_summary.first_usable(entries[split], make)
      if first is None:
        summary.empty_split(split, f"all {len(entries[split])} images listed in {os.path.basename(lists[split])} were skipped")
        continue
      generators[split] = build_summary.chain_first(first, self._generate_examples(split, rest, image_dirs, annotation_dir))
    if not generators:
      raise build_summary.no_usable_data(
          "acne04", summary, "Fix or replace the files named above, or check the fold's list files (expected layout:\n" + LAYOUT + ")")
    return generators

  def _generate_examples(self, split: str, entries: List[ListEntry], image_dirs: List[str], annotation_dir: str) -> Iterator[Tuple[int, Dict[str, Any]]]:
    for entry in entries:
      example = self._counted(split, entry, image_dirs, annotation_dir)
      if example is not None:
        yield example

  def _counted(self, split: str, entry: ListEntry, image_dirs: List[str], annotation_dir: str) -> Optional[Tuple[int, Dict[str, Any]]]:
    """``(key, record)`` of one list entry, counted in its split, or None when it is skipped."""
    example = self._example(entry, image_dirs, annotation_dir)
    if example is None:
      return None
    counts = self._summary.splits[split]
    counts["examples"] += 1
    counts["boxes"] += len(example["objects"]["bbox"])
    counts[f"grade_{entry.grade}"] += 1
    return example["image_id"], example

  def _example(self, entry: ListEntry, image_dirs: List[str], annotation_dir: str) -> Optional[Dict[str, Any]]:
    """The record of one list entry, or None (recorded in the summary) when it is skipped."""
    summary = self._summary
    name = entry.file_name
    path = next((os.path.join(d, name) for d in image_dirs if os.path.isfile(os.path.join(d, name))), None)
    if path is None:
      summary.add("missing_images")
      summary.record("skipped", os.path.join(image_dirs[-1], name), "missing_image",
                     f"listed on line {entry.line} of {os.path.basename(entry.source)} but not found in "
                     + " or ".join(summary.relative(d) for d in image_dirs))
      return None
    with open(path, "rb") as f:
      data = f.read()
    cut = image_bytes.incomplete(data)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if data and not cut else None  # imdecode raises on b""
    if image is None or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3)):
      summary.add("corrupt_images")
      summary.record("skipped", path, "corrupt_image", cut or "the image does not decode as a 1- or 3-channel picture")
      return None
    height, width = image.shape[:2]

    xml_path = os.path.join(annotation_dir, os.path.splitext(name)[0] + ".xml")
    bndboxes, difficult, objects = [], [], []
    if not os.path.isfile(xml_path):
      summary.add("images_without_annotation")
      if entry.lesion_count > 0:
        summary.add("unannotated_with_lesions")
        summary.record("noted", path, "no_annotation",
                       f"no {summary.relative(xml_path)} though the list gives {entry.lesion_count} lesions: kept with zero boxes")
    else:
      bad: List[Tuple[int, str]] = []
      try:
        annotation = voc.parse_voc_xml(xml_path, bad_objects=bad)
      except voc.VocParseError as e:
        summary.add("corrupt_annotations")
        summary.record("skipped", xml_path, "unreadable_annotation", f"{_reason(str(e), xml_path)} The image is skipped (its lesions would become background).")
        return None
      for index, message in bad:
        summary.add("invalid_boxes")
        summary.record("dropped", xml_path, "invalid_box", _reason(message, xml_path), index=index, item="object")
      if annotation.bad_size:
        summary.add("invalid_sizes")
        summary.record("noted", xml_path, "invalid_size", f"{', '.join(annotation.bad_size)} is not a size in pixels: ignored (it is informative)")
      if annotation.width > 0 and annotation.height > 0 and (annotation.width, annotation.height) != (width, height):
        summary.add("size_mismatches")
        summary.record("noted", xml_path, "size_mismatch", f"<size> {annotation.width}x{annotation.height} but the image is {width}x{height} (boxes not rescaled)")
      for obj in annotation.objects:
        if obj.name != VOC_CLASS:
          summary.add("unknown_class_boxes")
          summary.record("dropped", xml_path, "unknown_class", f"class {obj.name!r} is not {VOC_CLASS!r}", index=obj.index, item="object", label=obj.name)
          continue
        bndboxes.append(obj.bndbox)
        difficult.append(obj.difficult)
        objects.append(obj)

    raw = np.asarray(bndboxes, np.float64).reshape(-1, 4) - np.array([1.0, 1.0, 0.0, 0.0])  # voc_to_xyxy, in float64
    boxes, changed, keep = voc.clip_boxes(raw, width, height)
    summary.add("clipped_boxes", int(np.sum(changed & keep)))
    summary.add("dropped_empty_boxes", int(np.sum(~keep)))
    for obj, box, moved, kept in zip(objects, raw, changed, keep):
      if not kept:
        reason, why = voc.degenerate_reason(box, width, height)
        summary.record("dropped", xml_path, reason, why, index=obj.index, item="object", label=obj.name)
      elif moved:
        summary.record("clipped", xml_path, "clipped", f"box {_fmt(obj.bndbox)} (VOC) reaches outside the {width}x{height} image: clipped",
                       index=obj.index, item="object", label=obj.name, level=logging.INFO)
    boxes = boxes[keep]
    difficult = np.asarray(difficult, bool).reshape(-1)[keep]

    if hayashi_grade(entry.lesion_count) != entry.grade:
      summary.add("grade_count_mismatches")
      summary.record("noted", entry.source, "grade_count_mismatch",
                     f"{name}: grade {entry.grade} but {entry.lesion_count} lesions is Hayashi grade {hayashi_grade(entry.lesion_count)} (list grade kept)",
                     index=entry.line, item="line", level=logging.INFO)
    name_grade = grade_in_file_name(name)
    if name_grade is not None and name_grade != entry.grade:
      summary.add("file_grade_mismatches")
      summary.record("noted", entry.source, "file_grade_mismatch", f"{name}: listed as grade {entry.grade} (list grade kept)",
                     index=entry.line, item="line", level=logging.INFO)
    if os.path.isfile(xml_path) and len(boxes) != entry.lesion_count:
      summary.add("box_count_mismatches")
      summary.record("noted", xml_path, "box_count_mismatch", f"{len(boxes)} boxes kept, the list gives {entry.lesion_count} lesions",
                     level=logging.INFO)

    polygons = voc.box_polygons(boxes)
    return {
        "image": data,
        "image_id": image_id_of(name),
        "file_name": name,
        "crop_origin": np.zeros((2,), np.int32),
        "grade": entry.grade,
        "lesion_count": np.int32(entry.lesion_count),
        "objects": {
            "bbox": boxes.astype(np.float32),
            "label": np.zeros((len(boxes),), np.int64),
            "area": ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).astype(np.float32),
            "polygon_size": np.full((len(boxes),), 8, np.int32),
            "difficult": difficult,
        },
        "polygons": polygons.reshape(-1),
    }


def _reason(message: str, prefix: str) -> str:
  """``message`` without its leading ``"<prefix>: "``."""
  return message.removeprefix(f"{prefix}: ")


def _fmt(box) -> str:
  return "(" + ", ".join(f"{v:g}" for v in box) + ")"
