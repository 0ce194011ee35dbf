"""TFDS builder of NIH DeepLesion: CT key slices as 3-slice images with all their lesion boxes.

Manual download (see ``MANUAL_DOWNLOAD_INSTRUCTIONS``); build without TensorFlow into ArrayRecord
files and read back with ``as_data_source``::

  builder = DeepLesion(config="default", data_dir=data_dir)
  builder.download_and_prepare(
      file_format="array_record",
      download_config=tfds.download.DownloadConfig(manual_dir="/path/to/DeepLesion"))
  source = builder.as_data_source(split="validation")   # source[i] -> dict
  summary = read_build_summary(data_dir, "default")

One record per annotated key slice (``File_name`` of ``DL_info.csv``) with the boxes of every
lesion row of that slice, in CSV order. Splits from ``Train_Val_Test``: 1 ``train``,
2 ``validation``, 3 ``test`` (patient-level, official). Records are in increasing ``image_id``.

Input image: the slices at -2, 0, +2 mm around the key slice as (R, G, B) channels, neighbours
linearly interpolated on HU when 2 mm is not a multiple of the slice interval, missing or
out-of-``Slice_range`` neighbours replaced by the nearest available slice towards the key (3DCE);
see ``acne_jax.data.deep_lesion`` for the exact rules. Then windowed to uint8.

Configurations (``DeepLesionConfig``):

* ``default``: window [-1024, 3071] HU -> uint8 (3DCE / MULAN), 2 mm channel spacing;
* ``dicom_window``: each slice's own ``DICOM_windows`` (of its first CSV row) -> uint8;
* ``hu``: no window: uint16 PNG of ``round_half_up(HU) + 32768`` (the release's encoding;
  interpolated neighbours are rounded to the nearest HU).

Record layout::

  image            uint8 [H, W, 3] (``hu``: uint16) PNG, channels (key - 2 mm, key, key + 2 mm)
  image_id         int64 ((patient * 100 + study) * 100 + series) * 1000 + key slice
  file_name        text, the key slice as in the CSV, e.g. "000001_01_01_109.png"
  patient_id       text, "000001" (6 digits, for patient-level grouping)
  study_index, series_id, key_slice   int32
  crop_origin      int32 [2] (0, 0)
  spacing          float32 [3] (x, y, z) mm (``Spacing_mm_px_``; z = slice interval)
  slice_range      int32 [2] first, last slice shipped (``Slice_range``)
  slice_positions  float32 [3] the weighted slice index each channel was made of (e.g. 106.4, 109, 111.6)
  window           float32 [2] (lo, hi) HU used for uint8 (NaN, NaN for ``hu``)
  dicom_window     float32 [2] ``DICOM_windows``
  split_code       int32 1 / 2 / 3
  patient_gender   text "F" / "M" / "";  patient_age int32 (-1 unknown)
  objects          Sequence (lists of length K when read back), one per kept CSV row:
    bbox             float32 [4] x1, y1, x2, y2 0-based pixels from ``Bounding_boxes``, clipped
    label            ClassLabel over LESION_TYPES: Coarse_lesion_type - 1 in 0..7, or -1 (unknown)
    coarse_type      int32 the CSV value, 1..8 or -1
    area             float32 bbox area
    polygon_size     int32, 8 (the box as a 4-vertex polygon, for ``decode_record``)
    noisy            bool ``Possibly_noisy``
    recist           float32 [8] ``Measurement_coordinates`` (long axis x1 y1 x2 y2, short axis x3 y3 x4 y4)
    diameters        float32 [2] ``Lesion_diameters_Pixel_`` (long, short)
    location         float32 [3] ``Normalized_lesion_location``
    csv_line         int32 line of the row in ``DL_info.csv`` (header = line 1)
  polygons         float32 [8 K] [x1, y1, x2, y1, x2, y2, x1, y2] per box

Bad input. Missing manual folder, ``DL_info.csv`` or ``Images_png`` -> ``FileNotFoundError``
naming the path and repeating the layout. Malformed CSV rows, key slices missing or not decoding
(record skipped), neighbour slices missing, not decoding or of another size than the key slice
(replaced as above). Boxes are clipped to the image and boxes of zero width or height dropped (a
slice keeps its record even if no box survives). Rows of one slice with different split codes or
DICOM windows: the first row's value is used. Every such row and file is logged and listed, with
the file, the CSV line, the lesion type and the reason, in
``<data_dir>/deep_lesion/<config>/<version>/build_summary.json`` (``tfds_builders.build_summary``).
A split without any usable key slice is left out of the data set and reported in the summary's
``empty_splits`` (TFDS cannot write an empty split); a release with none at all raises
``NoUsableDataError``.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import math
import os
from typing import Any, Dict, Iterator, List, Optional, Tuple

import cv2
import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from tfds_builders import build_summary
from tfds_builders.build_summary import SUMMARY_FILE, BuildSummary, NoUsableDataError  # noqa: F401  (re-exported)

from acne_jax.data import deep_lesion as dl
from acne_jax.data import records, voc

_LOG = logging.getLogger(__name__)

SPLITS: Tuple[str, ...] = ("train", "validation", "test")

LAYOUT = """\
  <manual_dir>/
    DL_info.csv                                         one row per lesion (18 columns)
    Images_png/<patient:06d>_<study:02d>_<series:02d>/<slice:03d>.png
                                                        uint16 slices, HU = value - 32768
  (unzip every Images_png_NN.zip of the release into the same Images_png/ folder)"""

# Counters of the build summary, in display order.
COUNT_KEYS: Tuple[str, ...] = (
    "csv_rows",  # rows of DL_info.csv parsed
    "malformed_rows",  # rows that do not parse: skipped
    "key_slices",  # distinct File_name values (candidate records)
    "bad_split_codes",  # slices whose Train_Val_Test is not 1/2/3: skipped
    "split_conflicts",  # slices whose rows disagree on Train_Val_Test (first row wins)
    "window_conflicts",  # slices whose rows disagree on DICOM_windows (first row wins)
    "row_conflicts",  # rows whose Spacing_mm_px_, Slice_range or Image_size differ from their slice's first row
    "invalid_dicom_windows",  # dicom_window config: hi <= lo or not finite -> default window used
    "missing_key_slices",  # key slice PNG absent: skipped
    "corrupt_images",  # slice PNGs not decoding as uint16, per record reading them (key: skipped; neighbour: replaced)
    "missing_neighbour_files",  # neighbour slices inside Slice_range but absent on disk, per record
    "neighbour_fallbacks",  # channel taps moved towards the key slice (outside range/missing/corrupt)
    "interpolated_channels",  # channels interpolated between two slices
    "neighbour_size_mismatches",  # neighbour slices of another size than the key slice, per record (replaced)
    "unusable_spacings",  # key slices whose Spacing_mm_px_ z is not a positive number (key slice in every channel)
    "image_size_mismatches",  # Image_size differs from the decoded key slice
    "clipped_boxes",  # boxes moved by clipping to the image, kept
    "dropped_empty_boxes",  # boxes of zero width or height after clipping: dropped
    "unknown_type_boxes",  # kept boxes with Coarse_lesion_type -1
    "noisy_boxes",  # kept boxes with Possibly_noisy
)


# --------------------------------------------------------------------------------------------
# Build summary (same API as ``tfds_builders.acne04``).


def summary_path(data_dir: os.PathLike, config: str = "default", version: Optional[str] = None) -> epath.Path:
  """``<data_dir>/deep_lesion/<config>/<version>/build_summary.json`` (version: the builder's)."""
  return build_summary.summary_path(data_dir, "deep_lesion", config, version or DeepLesion.VERSION)


def read_build_summary(data_dir: os.PathLike, config: str = "default", version: Optional[str] = None) -> BuildSummary:
  """The summary written by a build of ``config`` into ``data_dir`` (FileNotFoundError if none)."""
  return build_summary.read_build_summary(data_dir, "deep_lesion", config, version or DeepLesion.VERSION)


# --------------------------------------------------------------------------------------------
# Builder.


@dataclasses.dataclass(eq=False)
class DeepLesionConfig(tfds.core.BuilderConfig):
  """How key slices become images.

  Attributes:
    slice_interval_mm: distance between the channels (mm).
    window: (lo, hi) HU mapped to 0..255 (ignored when ``use_dicom_window`` or ``store_hu``).
    use_dicom_window: window each slice with its own ``DICOM_windows``.
    store_hu: store uint16 ``HU + 32768`` instead of a windowed uint8 image.
  """

  slice_interval_mm: float = dl.DEFAULT_SLICE_INTERVAL_MM
  window: Tuple[float, float] = dl.DEFAULT_WINDOW
  use_dicom_window: bool = False
  store_hu: bool = False


class DeepLesion(tfds.core.GeneratorBasedBuilder):
  """NIH DeepLesion: 3-slice CT key-slice images, lesion boxes, coarse types, RECIST, official splits."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release."}
  BUILDER_CONFIGS = [
      DeepLesionConfig(name="default", description="3 slices at -2/0/+2 mm, window [-1024, 3071] HU -> uint8."),
      DeepLesionConfig(name="dicom_window", description="3 slices at -2/0/+2 mm, each slice's DICOM window -> uint8.", use_dicom_window=True),
      DeepLesionConfig(name="hu", description="3 slices at -2/0/+2 mm, uint16 HU + 32768 (no window).", store_hu=True),
  ]
  DEFAULT_CONFIG_NAME = "default"
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
Download DeepLesion from the NIH Clinical Center (https://nihcc.app.box.com/v/DeepLesion):
DL_info.csv and the Images_png_NN.zip archives, then pass the folder as manual_dir:
{LAYOUT}
"""

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    """This file (TFDS's default needs ``importlib_resources``, absent without TensorFlow)."""
    return epath.Path(__file__)

  def _info(self) -> tfds.core.DatasetInfo:
    dtype = np.uint16 if self.builder_config.store_hu else np.uint8
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__.splitlines()[0],
        features=records.tfds_features(
            records.DEEP_LESION_CLASS_NAMES, image_dtype=dtype,
            extra={
                "patient_id": tfds.features.Text(),
                "study_index": np.int32,
                "series_id": np.int32,
                "key_slice": np.int32,
                "spacing": tfds.features.Tensor(shape=(3,), dtype=np.float32),
                "slice_range": tfds.features.Tensor(shape=(2,), dtype=np.int32),
                "slice_positions": tfds.features.Tensor(shape=(3,), dtype=np.float32),
                "window": tfds.features.Tensor(shape=(2,), dtype=np.float32),
                "dicom_window": tfds.features.Tensor(shape=(2,), dtype=np.float32),
                "split_code": np.int32,
                "patient_gender": tfds.features.Text(),
                "patient_age": np.int32,
            },
            extra_objects={
                "coarse_type": np.int32,
                "noisy": np.bool_,
                "recist": tfds.features.Tensor(shape=(8,), dtype=np.float32),
                "diameters": tfds.features.Tensor(shape=(2,), dtype=np.float32),
                "location": tfds.features.Tensor(shape=(3,), dtype=np.float32),
                "csv_line": np.int32,
            }),
        homepage="https://nihcc.app.box.com/v/DeepLesion",
        citation="Yan et al., DeepLesion: automated mining of large-scale lesion annotations and universal lesion detection with deep learning, J. Med. Imaging 5(3), 2018.",
        disable_shuffling=True,
    )

  def _download_and_prepare(self, dl_manager, download_config) -> None:  # pytype: disable=signature-mismatch
    self._summary = BuildSummary(dataset=self.name, config=self.builder_config.name, version=str(self.version),
                                 counts={k: 0 for k in COUNT_KEYS})
    super()._download_and_prepare(dl_manager=dl_manager, download_config=download_config)
    # self.data_path is the temporary build folder here; TFDS renames it on success.
    build_summary.write_build_summary(self._summary, self.data_path)

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    try:
      root = os.fspath(dl_manager.manual_dir)
    except AssertionError as e:  # TFDS: "Manual directory ... does not exist or is empty."
      raise FileNotFoundError(f"deep_lesion: {e}") from None
    for path in (os.path.join(root, dl.CSV_NAME), os.path.join(root, dl.IMAGES_DIR)):
      if not os.path.exists(path):
        raise FileNotFoundError(f"deep_lesion: missing {path}. Expected layout:\n{LAYOUT}")
    summary = self._summary
    summary.manual_dir = root
    csv_path = os.path.join(root, dl.CSV_NAME)
    bad: List[Tuple[int, str]] = []
    rows = dl.parse_dl_info(csv_path, bad_rows=bad)
    summary.add("csv_rows", len(rows))
    summary.add("malformed_rows", len(bad))
    for line, message in bad:
      summary.record("skipped", csv_path, "malformed_row", message.removeprefix(f"{csv_path}, line {line}: "), index=line, item="line")

    groups: Dict[str, List[dl.DLInfoRow]] = collections.OrderedDict()
    for row in rows:
      groups.setdefault(row.file_name, []).append(row)
    summary.add("key_slices", len(groups))
    by_split: Dict[str, List[Tuple[int, List[dl.DLInfoRow]]]] = {s: [] for s in SPLITS}
    for file_name, group in groups.items():
      first = group[0]
      if any(r.train_val_test != first.train_val_test for r in group):
        summary.add("split_conflicts")
        for r in group[1:]:
          if r.train_val_test != first.train_val_test:
            summary.record("noted", csv_path, "split_conflict",
                           f"{file_name}: Train_Val_Test {r.train_val_test}, but the slice's first row (line {first.line}) says {first.train_val_test}, which is used",
                           index=r.line, item="line", label=_type_name(r))
      for r in group[1:]:
        fields = [label for field, label in _SLICE_FIELDS if not _same(getattr(r, field), getattr(first, field))]
        if fields:
          summary.add("row_conflicts")
          summary.record("noted", csv_path, "row_conflict",
                         f"{file_name}: {', '.join(fields)} differ from the slice's first row (line {first.line}), whose values are used",
                         index=r.line, item="line", label=_type_name(r))
      if any(r.dicom_windows != first.dicom_windows for r in group):
        summary.add("window_conflicts")
        for r in group[1:]:
          if r.dicom_windows != first.dicom_windows:
            summary.record("noted", csv_path, "window_conflict",
                           f"{file_name}: DICOM_windows {r.dicom_windows}, but the slice's first row (line {first.line}) says {first.dicom_windows}, which is used",
                           index=r.line, item="line", label=_type_name(r), level=logging.INFO)
      split = dl.SPLIT_CODES.get(first.train_val_test)
      if split is None:
        summary.add("bad_split_codes")
        for r in group:
          summary.record("skipped", csv_path, "bad_split_code",
                         f"{file_name}: Train_Val_Test {first.train_val_test} is not 1, 2 or 3: the slice is skipped",
                         index=r.line, item="line", label=_type_name(r))
        continue
      by_split[split].append((_image_id(first), group))
    generators = {}
    for split in SPLITS:
      if not by_split[split]:  # TFDS cannot write an empty split
        code = {v: k for k, v in dl.SPLIT_CODES.items()}[split]
        summary.empty_split(split, f"no usable row of {dl.CSV_NAME} has Train_Val_Test {code}")
        continue
      by_split[split].sort(key=lambda item: item[0])
      summary.splits[split] = {"examples": 0, "boxes": 0}
      make = lambda item, split=split: self._counted(split, item, root)  # noqa: E731
      first, rest = build_summary.first_usable(by_split[split], make)
      if first is None:
        summary.empty_split(split, f"all {len(by_split[split])} key slices of the split were skipped")
        continue
      generators[split] = build_summary.chain_first(first, self._generate_examples(split, rest, root))
    if not generators:
      raise build_summary.no_usable_data(
          "deep_lesion", summary, f"Fix or replace the files named above (expected layout:\n{LAYOUT})")
    return generators

  def _generate_examples(self, split: str, groups, root: str) -> Iterator[Tuple[int, Dict[str, Any]]]:
    for item in groups:
      example = self._counted(split, item, root)
      if example is not None:
        yield example

  def _counted(self, split: str, item: Tuple[int, List[dl.DLInfoRow]], root: str) -> Optional[Tuple[int, Dict[str, Any]]]:
    """``(key, record)`` of one key slice, counted in its split, or None when it is skipped."""
    image_id, group = item
    example = self._example(image_id, group, root)
    if example is None:
      return None
    self._summary.splits[split]["examples"] += 1
    self._summary.splits[split]["boxes"] += len(example["objects"]["bbox"])
    return image_id, example

  def _example(self, image_id: int, rows: List[dl.DLInfoRow], root: str) -> Optional[Dict[str, Any]]:
    """The record of one key slice, or None (recorded in the summary) when it is skipped."""
    summary, config = self._summary, self.builder_config
    csv_path = os.path.join(root, dl.CSV_NAME)
    first = rows[0]
    lines = ", ".join(str(r.line) for r in rows)
    key_index = first.key_slice_index
    key_path = dl.slice_path(root, first.file_name, key_index)
    try:
      key_hu = dl.load_hu(key_path)
    except FileNotFoundError:
      summary.add("missing_key_slices")
      summary.record("skipped", key_path, "missing_key_slice", f"key slice of {first.file_name} (CSV lines {lines}) not found: skipped")
      return None
    except ValueError as e:
      summary.add("corrupt_images")
      summary.record("skipped", key_path, "corrupt_image", f"{_reason(e, key_path)}: key slice of {first.file_name} (CSV lines {lines}) skipped")
      return None
    height, width = key_hu.shape

    def load_slice(index: int) -> Optional[np.ndarray]:
      if index == key_index:
        return key_hu
      path = dl.slice_path(root, first.file_name, index)
      try:
        hu = dl.load_hu(path)
      except FileNotFoundError:
        summary.add("missing_neighbour_files")
        summary.record("noted", path, "missing_neighbour_slice", f"neighbour of {first.file_name} inside Slice_range not found: nearest slice used")
        return None
      except ValueError as e:
        summary.add("corrupt_images")
        summary.record("noted", path, "corrupt_neighbour_slice", f"{_reason(e, path)}: neighbour of {first.file_name}, nearest slice used")
        return None
      if hu.shape != key_hu.shape:
        summary.add("neighbour_size_mismatches")
        summary.record("noted", path, "neighbour_size_mismatch",
                       f"{hu.shape[1]}x{hu.shape[0]}, but the key slice {first.file_name} is {width}x{height}: nearest slice used")
        return None
      return hu

    spacing_z = first.spacing_mm_px[2]
    if not (math.isfinite(spacing_z) and spacing_z > 0):
      summary.add("unusable_spacings")
      summary.record("noted", csv_path, "unusable_spacing",
                     f"{first.file_name}: Spacing_mm_px_ z {spacing_z} is not a positive number: every channel is the key slice",
                     index=first.line, item="line", label=_type_name(first))
    hu, taps = dl.three_slice_image(load_slice, key_index, spacing_z, config.slice_interval_mm, 3, slice_range=first.slice_range)
    wanted = dl.neighbour_slices(key_index, spacing_z, config.slice_interval_mm, 3)
    summary.add("interpolated_channels", sum(len(c) > 1 for c in wanted))
    summary.add("neighbour_fallbacks", sum(sum(i not in dict(got) for i, _ in want) for want, got in zip(wanted, taps)))
    positions = [sum(i * w for i, w in channel) for channel in taps]

    if config.store_hu:
      window = (math.nan, math.nan)
      image = dl.hu_to_uint16(hu)
    else:
      window = tuple(float(v) for v in (first.dicom_windows if config.use_dicom_window else config.window))
      if not (math.isfinite(window[0]) and math.isfinite(window[1]) and window[1] > window[0]):
        summary.add("invalid_dicom_windows")
        summary.record("noted", csv_path, "invalid_dicom_window", f"{first.file_name}: DICOM window {window} is empty: using {tuple(config.window)}",
                       index=first.line, item="line", label=_type_name(first))
        window = tuple(float(v) for v in config.window)
      image = dl.window(hu, *window)
    ok, buffer = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
      raise RuntimeError(f"deep_lesion: PNG encoding failed for {first.file_name}")

    if tuple(first.image_size) not in ((height, width), (width, height)):
      summary.add("image_size_mismatches")
      summary.record("noted", key_path, "image_size_mismatch", f"Image_size {first.image_size} (CSV line {first.line}) but the slice is {width}x{height}")

    boxes, changed, keep = voc.clip_boxes([r.bounding_box for r in rows], width, height)
    summary.add("clipped_boxes", int(np.sum(changed & keep)))
    summary.add("dropped_empty_boxes", int(np.sum(~keep)))
    for r, moved, kept in zip(rows, changed, keep):
      if not kept:
        reason, why = voc.degenerate_reason(r.bounding_box, width, height)
        summary.record("dropped", csv_path, reason, f"{first.file_name}: {why}", index=r.line, item="line", label=_type_name(r))
      elif moved:
        summary.record("clipped", csv_path, "clipped",
                       f"{first.file_name}: box {_fmt(r.bounding_box)} px reaches outside the {width}x{height} slice: clipped",
                       index=r.line, item="line", label=_type_name(r), level=logging.INFO)
    kept = [r for r, k in zip(rows, keep) if k]
    boxes = boxes[keep]
    summary.add("unknown_type_boxes", sum(r.label < 0 for r in kept))
    summary.add("noisy_boxes", sum(r.possibly_noisy for r in kept))

    patient, study, series = _series_numbers(first)
    return {
        "image": buffer.tobytes(),
        "image_id": image_id,
        "file_name": first.file_name,
        "patient_id": f"{patient:06d}",
        "study_index": np.int32(study),
        "series_id": np.int32(series),
        "key_slice": np.int32(key_index),
        "crop_origin": np.zeros((2,), np.int32),
        "spacing": np.asarray(first.spacing_mm_px, np.float32),
        "slice_range": np.asarray(first.slice_range, np.int32),
        "slice_positions": np.asarray(positions, np.float32),
        "window": np.asarray(window, np.float32),
        "dicom_window": np.asarray(first.dicom_windows, np.float32),
        "split_code": np.int32(first.train_val_test),
        "patient_gender": first.patient_gender,
        "patient_age": np.int32(first.patient_age),
        "objects": {
            "bbox": boxes.astype(np.float32),
            "label": np.asarray([r.label for r in kept], np.int64),
            "coarse_type": np.asarray([r.coarse_lesion_type for r in kept], np.int32),
            "area": ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).astype(np.float32),
            "polygon_size": np.full((len(kept),), 8, np.int32),
            "noisy": np.asarray([r.possibly_noisy for r in kept], bool),
            "recist": np.asarray([r.measurement_coordinates for r in kept], np.float32).reshape(-1, 8),
            "diameters": np.asarray([r.lesion_diameters_pixel for r in kept], np.float32).reshape(-1, 2),
            "location": np.asarray([r.normalized_lesion_location for r in kept], np.float32).reshape(-1, 3),
            "csv_line": np.asarray([r.line for r in kept], np.int32),
        },
        "polygons": voc.box_polygons(boxes).reshape(-1),
    }


# Per-slice fields that every row of a key slice repeats (the first row's are used).
_SLICE_FIELDS = (("spacing_mm_px", "Spacing_mm_px_"), ("slice_range", "Slice_range"), ("image_size", "Image_size"))


def _same(a, b) -> bool:
  return bool(np.array_equal(np.asarray(a, np.float64), np.asarray(b, np.float64), equal_nan=True))


def _type_name(row: dl.DLInfoRow) -> str:
  """The lesion type of a row (``"liver"``, ``"unknown"`` for -1)."""
  return dl.LESION_TYPES[row.label] if row.label >= 0 else "unknown"


def _fmt(box) -> str:
  return "(" + ", ".join(f"{float(v):g}" for v in box) + ")"



def _reason(error: Exception, path: str) -> str:
  """The message of ``error`` without its leading ``"<path>: "``."""
  return str(error).removeprefix(f"{path}: ")


def _series_numbers(row: dl.DLInfoRow) -> Tuple[int, int, int]:
  """(patient, study, series) from the series folder name, else from the CSV columns."""
  parts = row.series_dir.split("_")
  if len(parts) == 3 and all(p.isdigit() for p in parts):
    return int(parts[0]), int(parts[1]), int(parts[2])
  return row.patient_index, row.study_index, row.series_id


def _image_id(row: dl.DLInfoRow) -> int:
  return dl.image_id(*_series_numbers(row), row.key_slice_index)
