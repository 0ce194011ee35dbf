"""TFDS builder of AcneSCU (facial acne photographs, 10 lesion classes), from a manual download.

Build without TensorFlow into ArrayRecord files and read back with ``tfds.data_source``::

  builder = AcneScu(config="crops_1024", data_dir=data_dir)
  builder.download_and_prepare(
      file_format="array_record",
      download_config=tfds.download.DownloadConfig(manual_dir=folder))
  source = builder.as_data_source(split="train")   # source[i] -> dict, see below
  print(load_build_summary(data_dir, "crops_1024").format())

Stored features (the layout of ``tfds_builders.synthetic_acne``; turn a record into NumPy
arrays with ``acne_jax.data.records.decode_record``):

* ``image``: uint8 ``[H, W, 3]`` RGB. ``whole``: the image file's own bytes (JPEG as shipped)
  when OpenCV decodes them to the annotated pixels, else a PNG of those pixels (EXIF-rotated,
  grey or 16-bit files). Crops: PNG (lossless, so masked pixels read back exactly 0),
  ``S x S`` with ``S = crop_size``.
* ``image_id`` int64: ``n`` for the ``n``-th annotated image (all splits, sorted by file
  name); crop ``k`` of it is ``CROP_ID_STRIDE * n + k``.
* ``file_name`` text: the image path relative to ``manual_dir`` (LabelMe) or the COCO
  ``file_name`` (relative to ``images/``) for ``whole``; for crop ``k`` (row-major in the crop
  grid) that path without extension plus ``_crop<k>``, e.g. ``J__..._斑点_crop3``.
* ``patient_id`` text: ``acne_jax.data.labelme.patient_of(file_name)``.
* ``crop_origin`` int32 ``[2]``: ``(x, y)`` of the crop's top-left corner in its image
  (``(0, 0)`` for ``whole``).
* ``objects`` (``Sequence``; Python lists when read back): ``bbox`` float32 ``[4]``
  ``x1, y1, x2, y2`` pixels, ``label`` (``ClassLabel`` over ``CLASS_NAMES``: closed_comedo,
  open_comedo, papule, pustule, nodule, atrophic_scar, hypertrophic_scar, melasma, nevus,
  other), ``area`` float32 (box area, as the reference), ``polygon_size`` int32 (``2 V``).
* ``polygons``: float32 ``[sum 2 V]``, the objects' flat ``[x0, y0, x1, y1, ...]`` polygons
  concatenated in object order (image or crop coordinates).

All 10 classes are kept, ``other`` included (the reference's evaluation drops it: set
``data.drop_labels`` in the training config).

Configurations (``AcneScuConfig``):

* ``whole``: one record per image, lesions clipped to the image; no size filter (the
  reference's test set ``all_whole.json``).
* ``crops_1024`` (default): the reference's training data: the masked-crop grid of 1024 x
  1024 windows of every image (``acne_jax.data.masked_crop.masked_crops``): a lesion cut by a
  window is blacked out there and not annotated; kept lesions with a box side under 10 px are
  dropped. Every window is a record, with or without lesions.
* ``crops_256``: the same with 256 x 256 windows (tests, CPU experiments).

Boxes use the reference's integer rounding (``reference_rounding=True``; see
``masked_crop.polygon_bounds``); polygons keep their float coordinates.

Splits: ``train`` / ``validation`` / ``test`` by patient, ``labelme.split_of``: a salted
SHA-256 of the patient id gives ``u`` in [0, 1); ``u < 0.10`` -> test, ``u < 0.15`` ->
validation, else train. A patient's images are all in one split, whatever the other files.
A split that gets no usable image (a small release: one patient puts everything in one split)
is left out of the data set and reported in the summary's ``empty_splits``, as is a split of
fraction 0 in a custom configuration; a release with no usable image at all raises
:class:`~tfds_builders.build_summary.NoUsableDataError`.

Bad input never passes silently: every case is logged and listed, with the file, the shape's
position in it, its label and the reason, in the
:class:`~tfds_builders.build_summary.BuildSummary` written to
``<data_dir>/acne_scu/<config>/<version>/build_summary.json`` (:func:`load_build_summary`):

* no ``manual_dir`` or no annotation file in it, or an unusable COCO file:
  :class:`ManualDataError` naming the path and repeating the expected layout;
* unreadable / invalid JSON, missing image, image ``cv2.imdecode`` cannot decode or whose
  size differs from the JSON's, a second annotation file of one image: the file is skipped;
* shapes with <= 2 points, unknown labels, unsupported shape types or bad points: dropped;
* polygons reaching outside the image: clipped; polygons with nothing inside the image or a
  box of zero width or height: dropped;
* (crops) lesions in no window, under ``min_size`` or cut by every window holding them:
  dropped (by design, as the reference; logged at INFO level).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from acne_jax.data import labelme
from acne_jax.data import masked_crop
from acne_jax.data import records
from acne_jax.data.records import ACNE_SCU_CLASS_NAMES as CLASS_NAMES
from tfds_builders import build_summary
from tfds_builders.build_summary import SUMMARY_FILE, BuildSummary, NoUsableDataError  # noqa: F401  (re-exported)

logger = logging.getLogger(__name__)

NAME = "acne_scu"
COCO_ANNOTATIONS = "annotations.json"
COCO_IMAGES = "images"
CROP_ID_STRIDE = 10_000  # image_id of crop k of image n: CROP_ID_STRIDE * n + k

LAYOUT = f"""\
Lay the data out in manual_dir in ONE of two ways:

1. LabelMe, as released: every image beside its LabelMe JSON file, at the top of manual_dir
   or in sub-folders of any depth, e.g.
     <manual_dir>/J__<name>_痤疮_20190123090437000_斑点.jpg
     <manual_dir>/J__<name>_痤疮_20190123090437000_斑点.json
     <manual_dir>/more/<image>.jpg + <manual_dir>/more/<image>.json
   A JSON's "imagePath" names its image (relative to the JSON's folder); when that file is
   missing, an image named like the JSON (.jpg, .jpeg, .png, .bmp) is used, then the JSON's
   embedded "imageData". Shapes: "polygon" and "circle", labels {", ".join(CLASS_NAMES)}.

2. COCO: <manual_dir>/{COCO_ANNOTATIONS} (a COCO instance file: category ids 1..10 in the
   order above, polygon "segmentation") and the images under <manual_dir>/{COCO_IMAGES}/ at
   their "file_name" paths. When {COCO_ANNOTATIONS} exists, other JSON files are ignored.
"""

MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
AcneSCU cannot be downloaded automatically. The README of
https://github.com/pingguokiller/acnedetection links to a Baidu Netdisk share (with its
password) holding the photographs and their LabelMe annotations; download and extract it.

{LAYOUT}
Then build, e.g.
  python -m tfds_builders.build --dataset=acne_scu --manual_dir=FOLDER --data_dir=DATA_DIR
or from Python: AcneScu(config="crops_1024", data_dir=DATA_DIR).download_and_prepare(
    file_format="array_record",
    download_config=tfds.download.DownloadConfig(manual_dir=FOLDER)).
"""


class ManualDataError(FileNotFoundError):
  """The manual download is missing or holds no annotation file; the message says where and
  how to lay it out."""


# Counters of the build summary, in display order.
COUNT_KEYS: Tuple[str, ...] = (
    "annotation_files",  # JSON files found (1 for COCO)
    "images",  # annotated images found (before the images are opened)
    "skipped_files",  # annotation or image files skipped (unreadable, missing, corrupt, wrong size, duplicate)
    "skipped_shapes",  # shapes dropped while parsing (too few points, unknown label, unsupported type, bad points)
    "clipped",  # polygons with a vertex outside their image, clipped to it (kept or not)
    "dropped_zero_area",  # polygons with nothing inside the image or a box of zero width or height: dropped
    "masked",  # (crops) lesion instances blacked out in a window that cut them
    "lesions_not_in_any_crop",  # (crops) lesions annotated in no window (under min_size or always cut)
    "reencoded_images",  # (whole) images stored as PNG instead of their own bytes
)


def summary_path(data_dir: Union[str, os.PathLike], config: str = "crops_1024", version: Optional[str] = None) -> str:
  """``<data_dir>/acne_scu/<config>/<version>/build_summary.json`` (default version: the
  builder's ``VERSION``)."""
  return os.path.join(os.fspath(data_dir), NAME, config, str(version or AcneScu.VERSION), SUMMARY_FILE)


def load_build_summary(data_dir: Union[str, os.PathLike], config: str = "crops_1024", version: Optional[str] = None) -> BuildSummary:
  """The :class:`BuildSummary` of a prepared configuration.

  Raises:
    FileNotFoundError: naming the path, when that configuration / version was not built.
  """
  path = summary_path(data_dir, config, version)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"no AcneSCU build summary at {path}: build acne_scu/{config} into {os.fspath(data_dir)} first.")
  return build_summary.read_build_summary(data_dir, NAME, config, str(version or AcneScu.VERSION))


@dataclasses.dataclass(eq=False)
class AcneScuConfig(tfds.core.BuilderConfig):
  """How images become records.

  Attributes:
    crop_size: window side of the masked crops; None for whole images.
    min_size: (crops) kept lesions with a box side under this are dropped (not masked).
    reference_rounding: integer boxes as the reference (``masked_crop.polygon_bounds``).
    test_fraction, validation_fraction, split_salt: the patient split (``labelme.split_of``).
  """

  crop_size: Optional[int] = None
  min_size: float = masked_crop.DEFAULT_MIN_SIZE
  reference_rounding: bool = True
  test_fraction: float = labelme.DEFAULT_TEST_FRACTION
  validation_fraction: float = labelme.DEFAULT_VALIDATION_FRACTION
  split_salt: str = labelme.SPLIT_SALT


Records = List[Tuple[str, Dict[str, Any]]]


class AcneScu(tfds.core.GeneratorBasedBuilder):
  """AcneSCU: facial photographs with polygon-annotated lesions of 10 acne-related classes."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
  BUILDER_CONFIGS = [
      AcneScuConfig(name="whole", description="Whole images, lesions clipped to the image, no size filter."),
      AcneScuConfig(name="crops_1024", description="1024 x 1024 masked crops (the reference's training data).", crop_size=1024),
      AcneScuConfig(name="crops_256", description="256 x 256 masked crops (tests, CPU experiments).", crop_size=256),
  ]
  DEFAULT_CONFIG_NAME = "crops_1024"

  summary: Optional[BuildSummary] = None  # filled by download_and_prepare (this process)

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    """This file. TFDS's default looks the path up through ``importlib_resources``, which is
    not a dependency of tensorflow-datasets and is not installed without TensorFlow."""
    return epath.Path(__file__)

  def _info(self) -> tfds.core.DatasetInfo:
    size = self.builder_config.crop_size
    shape = (size, size, 3) if size else (None, None, 3)
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__.splitlines()[0],
        homepage="https://github.com/pingguokiller/acnedetection",
        features=records.tfds_features(CLASS_NAMES, image_shape=shape, image_encoding="png" if size else "jpeg",
                                       extra={"patient_id": tfds.features.Text()}),
        # Records in file-name order (crops row-major), as _generate_examples yields them.
        disable_shuffling=True,
    )

  # ------------------------------------------------------------------------------------------
  # Reading the manual download.

  def _manual_dir(self, dl_manager: tfds.download.DownloadManager) -> str:
    try:
      return os.fspath(dl_manager.manual_dir)
    except AssertionError as e:  # TFDS: "does not exist or is empty" / "not enabled"
      path = getattr(dl_manager, "_manual_dir", None)
      raise ManualDataError(
          f"AcneSCU: manual_dir {path} does not exist or is empty. Pass the folder of the AcneSCU "
          f"download as manual_dir (DownloadConfig(manual_dir=...) or --manual_dir).\n{LAYOUT}") from e

  def _read_annotations(self, manual_dir: str, summary: BuildSummary) -> List[labelme.AnnotatedImage]:
    """Every usable annotated image, sorted by file name; fills the input counts of ``summary``."""
    images: List[labelme.AnnotatedImage] = []
    coco = os.path.join(manual_dir, COCO_ANNOTATIONS)
    item = "shape"
    if os.path.isfile(coco):
      summary.info["input_format"] = "coco"
      summary.counts["annotation_files"] = 1
      item = "annotation"
      problems: List[labelme.SkippedShape] = []
      try:
        images = labelme.parse_coco_file(coco, os.path.join(manual_dir, COCO_IMAGES), problems=problems)
      except labelme.AnnotationError as e:
        raise ManualDataError(f"AcneSCU: {e} Fix or replace {coco} (or remove it to read LabelMe files).\n{LAYOUT}") from e
      for entry in problems:
        if entry.item == "image":
          summary.add("skipped_files")
          summary.record("skipped", coco, entry.reason, _SHAPE_REASONS.get(entry.reason, entry.reason), index=entry.index, item="image")
        else:
          summary.add("skipped_shapes")
          summary.record("dropped", coco, entry.reason, _SHAPE_REASONS.get(entry.reason, entry.reason), index=entry.index,
                         item="annotation", label=entry.label)
    else:
      summary.info["input_format"] = "labelme"
      files = labelme.find_labelme_files(manual_dir)
      summary.counts["annotation_files"] = len(files)
      if not files:
        raise ManualDataError(f"AcneSCU: no annotation file (*.json, or {COCO_ANNOTATIONS}) under manual_dir {manual_dir}.\n{LAYOUT}")
      for path in files:
        if build_summary.display_path(path) != path:  # TFDS stores names as UTF-8 text
          self._skip_file(summary, path, labelme.AnnotationError(NON_UTF8_NAME, "non_utf8_name"))
          continue
        try:
          images.append(labelme.parse_labelme_file(path, root=manual_dir))
        except labelme.AnnotationError as e:
          self._skip_file(summary, path, e)
    by_name: Dict[str, labelme.AnnotatedImage] = {}
    for image in images:
      for shape in image.skipped_shapes:
        summary.add("skipped_shapes")
        summary.record("dropped", shape.file, shape.reason, _SHAPE_REASONS.get(shape.reason, shape.reason),
                       index=shape.index, item=item, label=shape.label)
      if image.file_name in by_name:
        first = by_name[image.file_name].annotation_path
        self._skip_file(summary, image.annotation_path, labelme.AnnotationError(
            f"a second annotation file of image {image.file_name} (the first, {summary.relative(first)}, is used)", "duplicate_image"))
        continue
      by_name[image.file_name] = image
    summary.counts["images"] = len(by_name)
    return [by_name[name] for name in sorted(by_name)]

  @staticmethod
  def _skip_file(summary: BuildSummary, path: str, error: labelme.AnnotationError) -> None:
    reason = str(error)
    for prefix in (path, summary.relative(path)):
      reason = reason.removeprefix(prefix + ": ")  # AnnotationError messages start with the file
    summary.add("skipped_files")
    summary.record("skipped", path, getattr(error, "reason", "unusable_annotation"), reason)

  # ------------------------------------------------------------------------------------------
  # Generation.

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    config = self.builder_config
    manual_dir = self._manual_dir(dl_manager)
    summary = BuildSummary(dataset=NAME, config=config.name, version=str(self.version), manual_dir=manual_dir,
                           counts={k: 0 for k in COUNT_KEYS})
    summary.info["input_format"] = ""
    summary.info["boxes_per_class"] = {name: 0 for name in CLASS_NAMES}
    self.summary = summary
    self._patients: Dict[str, set] = {}  # per split, the patients of the images written
    images = self._read_annotations(manual_dir, summary)
    fractions = {
        "train": 1.0 - config.test_fraction - config.validation_fraction,
        "validation": config.validation_fraction,
        "test": config.test_fraction,
    }
    per_split: Dict[str, List[Tuple[int, labelme.AnnotatedImage]]] = {s: [] for s in labelme.SPLITS}
    for index, image in enumerate(images):
      split = labelme.split_of(image.patient_id, config.test_fraction, config.validation_fraction, config.split_salt)
      per_split[split].append((index, image))
    patients = len({image.patient_id for image in images})
    generators = {}
    for split in labelme.SPLITS:
      members = per_split[split]
      if fractions[split] <= 0:  # e.g. validation_fraction=0: train and test only
        summary.empty_split(split, f"its fraction is {fractions[split]:g} in the configuration")
        continue
      if not members:
        summary.empty_split(
            split, f"no patient falls in it ({len(images)} usable annotated images of {patients} patients; "
            f"test_fraction={config.test_fraction}, validation_fraction={config.validation_fraction})")
        continue
      summary.splits[split] = {"examples": 0, "boxes": 0, "images": 0, "patients": 0}
      make = lambda member, split=split: self._image_records(split, *member)  # noqa: E731
      first, rest = build_summary.first_usable(members, make)
      if first is None:
        summary.empty_split(split, f"all {len(members)} images of its patients were skipped")
        continue
      generators[split] = self._generate_examples(first, rest, make)
    if not generators:
      raise build_summary.no_usable_data(
          "AcneSCU", summary, f"Fix or replace the files named above; the expected layout:\n{LAYOUT}")
    return generators

  def _download_and_prepare(self, dl_manager, download_config=None):
    super()._download_and_prepare(dl_manager, download_config)
    if self.summary is not None:
      # self.data_dir is TFDS's temporary folder here; it becomes <data_dir>/acne_scu/<config>/<version>.
      build_summary.write_build_summary(self.summary, self.data_dir)
      logger.info("acne_scu: build summary:\n%s", self.summary.format())

  def _generate_examples(self, first: Records, rest: List[Tuple[int, labelme.AnnotatedImage]], make):
    yield from first
    for member in rest:
      yield from make(member) or []

  def _image_records(self, split: str, index: int, image: labelme.AnnotatedImage) -> Optional[Records]:
    """The records of one image (one, or its crops), counted; None when the image is skipped."""
    config, summary = self.builder_config, self.summary
    try:
      pixels, encoded = labelme.read_image(image)
    except labelme.AnnotationError as e:
      where = image.image_path or image.annotation_path
      if not image.image_path and summary.info.get("input_format") == "coco":  # the image file the entry names
        where = os.path.join(summary.manual_dir, COCO_IMAGES, image.file_name)
      self._skip_file(summary, where, e)
      return None
    height, width = pixels.shape[:2]
    lesions = labelme.clip_lesions(image.polygons, image.labels, width, height, config.reference_rounding)
    summary.add("clipped", lesions.num_clipped)
    summary.add("dropped_zero_area", lesions.num_dropped)
    item = "annotation" if summary.info.get("input_format") == "coco" else "shape"
    where = lambda position: dict(index=image.shape_indices[position], item=item, label=CLASS_NAMES[image.labels[position]])  # noqa: E731
    for position in lesions.clipped_index:
      summary.record("clipped", image.annotation_path, "clipped", f"reaches outside the {width}x{height} image: clipped to it",
                     level=logging.INFO, **where(position))
    for position, reason in lesions.dropped:
      why = (f"lies outside the {width}x{height} image" if reason == labelme.OUTSIDE_IMAGE
             else "its box has zero width or height" + (" once clipped to the image" if position in lesions.clipped_index else ""))
      summary.record("dropped", image.annotation_path, reason, why, **where(position))
    counts = summary.splits[split]
    counts["images"] += 1
    patients = self._patients.setdefault(split, set())
    patients.add(image.patient_id)
    counts["patients"] = len(patients)
    if config.crop_size is None:
      stored = labelme.stored_image_bytes(pixels, encoded)
      summary.add("reencoded_images", stored is not encoded)
      return [(image.file_name, self._example(
          split, stored, index, image.file_name, image.patient_id, (0, 0), lesions.boxes, lesions.labels, lesions.polygons))]
    crops = masked_crop.masked_crops(
        pixels, lesions.polygons, lesions.labels, crop_size=config.crop_size, min_size=config.min_size,
        reference_rounding=config.reference_rounding)
    if len(crops) >= CROP_ID_STRIDE:
      raise ValueError(f"AcneSCU: {image.file_name} gives {len(crops)} crops, more than image ids allow ({CROP_ID_STRIDE}).")
    seen = set()
    base = os.path.splitext(image.file_name)[0]
    out = []
    for k, crop in enumerate(crops):
      summary.add("masked", len(crop.masked_index))
      seen.update(int(i) for i in crop.source_index)
      name = f"{base}_crop{k}"
      out.append((name, self._example(
          split, labelme.encode_png(crop.image), CROP_ID_STRIDE * index + k, name, image.patient_id, crop.origin,
          crop.boxes, crop.labels, crop.polygons)))
    for j in range(len(lesions.labels)):
      if j in seen:
        continue
      summary.add("lesions_not_in_any_crop")
      box = lesions.boxes[j]
      w, h = float(box[2] - box[0]), float(box[3] - box[1])
      if w < config.min_size or h < config.min_size:
        reason, why = "under_min_size", f"box {w:g}x{h:g} px is under min_size {config.min_size:g} px: in no crop (as the reference)"
      else:
        reason, why = "cut_by_every_window", f"every {config.crop_size} px window holding it cuts it: masked, in no crop"
      summary.record("dropped", image.annotation_path, reason, why, level=logging.INFO, **where(lesions.kept_index[j]))
    return out

  def _example(self, split, image_bytes, image_id, file_name, patient_id, origin, boxes, labels, polygons) -> Dict[str, Any]:
    summary = self.summary
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    labels = np.asarray(labels, np.int64).reshape(-1)
    flat = [np.asarray(p, np.float32).reshape(-1) for p in polygons]
    summary.splits[split]["examples"] += 1
    summary.splits[split]["boxes"] += len(labels)
    for label in labels:
      summary.info["boxes_per_class"][CLASS_NAMES[label]] += 1
    return {
        "image": image_bytes,
        "image_id": int(image_id),
        "file_name": file_name,
        "patient_id": patient_id,
        "crop_origin": np.asarray(origin, np.int32).reshape(2),
        "objects": {
            "bbox": boxes,
            "label": labels,
            "area": ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).astype(np.float32),
            "polygon_size": np.asarray([len(p) for p in flat], np.int32),
        },
        "polygons": np.concatenate(flat) if flat else np.zeros((0,), np.float32),
    }


_SHAPE_REASONS = {
    labelme.TOO_FEW_POINTS: "two points or fewer",
    labelme.UNKNOWN_LABEL: f"not one of the {len(CLASS_NAMES)} classes",
    labelme.UNSUPPORTED_SHAPE_TYPE: "a shape type other than polygon and circle (or a COCO RLE)",
    labelme.INVALID_POINTS: "points that are not a [V, 2] list of finite numbers under 2**31 px (a circle needs exactly 2)",
    labelme.UNKNOWN_IMAGE_ID: "its image_id is no usable entry of 'images'",
    labelme.MALFORMED_IMAGE_ENTRY: "an entry of 'images' without an id or a file_name: left out with its annotations",
    labelme.DUPLICATE_IMAGE_ID: "an entry of 'images' with the id of an earlier entry: left out",
}
NON_UTF8_NAME = ("the file name (or a folder's) is not UTF-8, which a data set cannot store: an archive unzipped without "
                 "its encoding? Extract it again with its encoding (e.g. unzip -O GBK) or rename the files. Skipped")
