"""Pure helpers for the NIH DeepLesion release: ``DL_info.csv``, slice files, 3-slice inputs, HU windows.

Release layout (the folder given to the builder as ``manual_dir``)::

  DL_info.csv                                   one row per lesion (several rows can share a slice)
  Images_png/<patient:06d>_<study:02d>_<series:02d>/<slice:03d>.png
                                                uint16, HU = value - 32768; only the slices inside
                                                the row's Slice_range are shipped

``DL_info.csv`` columns, read by position (values inside a cell separated by ", ")::

  0 File_name  1 Patient_index  2 Study_index  3 Series_ID  4 Key_slice_index
  5 Measurement_coordinates (8: RECIST long axis x1 y1 x2 y2, short axis x3 y3 x4 y4, px)
  6 Bounding_boxes (x1 y1 x2 y2, 0-based px)  7 Lesion_diameters_Pixel_ (long, short)
  8 Normalized_lesion_location (x y z in [0, 1])  9 Coarse_lesion_type (1..8, -1 unknown)
  10 Possibly_noisy (0/1)  11 Slice_range (first, last)  12 Spacing_mm_px_ (x, y, z mm)
  13 Image_size  14 DICOM_windows (lo, hi HU)  15 Patient_gender  16 Patient_age
  17 Train_Val_Test (1 train, 2 validation, 3 test)

3-slice input (3DCE / MULAN style). Channel ``c`` of an ``n``-slice image (``n`` odd, default 3)
sits at ``(c - n // 2) * slice_interval_mm`` from the key slice, i.e. at the fractional slice
offset ``o = (c - n // 2) * slice_interval_mm / spacing_z``. When ``o`` is an integer the channel
is that slice; otherwise it is the linear interpolation of the two slices around it:
``(ceil(o) - o) * S[floor(o)] + (o - floor(o)) * S[ceil(o)]``, computed on HU. A slice that is
not available (outside ``Slice_range``, not on disk, unreadable, or of another size than the
key slice) is replaced by the nearest available slice between it and the key slice, stepping
one slice at a time towards the key (3DCE's behaviour), and taps that land on the same slice
are merged. With an unusable ``spacing_z`` (NaN or <= 0) or ``slice_interval_mm == 0`` every
channel is the key slice. For ``n = 3`` the channels are (previous, key, next), stored as
(R, G, B): the key slice is the green channel.

Windowing: ``window(hu, lo, hi) = clip(round_half_up((hu - lo) / (hi - lo) * 255), 0, 255)``
as uint8 (the DeepLesion FAQ formula; 3DCE/MULAN use the single wide window [-1024, 3071]).
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from acne_jax.data import image_bytes, records

HU_OFFSET = 32768  # PNG value - HU_OFFSET = Hounsfield units
DEFAULT_WINDOW: Tuple[float, float] = (-1024.0, 3071.0)
DEFAULT_SLICE_INTERVAL_MM = 2.0
NUM_COLUMNS = 18
IMAGES_DIR = "Images_png"
CSV_NAME = "DL_info.csv"

# The release's column names, in order (the parser reads the columns by position).
CSV_HEADER: Tuple[str, ...] = (
    "File_name", "Patient_index", "Study_index", "Series_ID", "Key_slice_index", "Measurement_coordinates",
    "Bounding_boxes", "Lesion_diameters_Pixel_", "Normalized_lesion_location", "Coarse_lesion_type",
    "Possibly_noisy", "Slice_range", "Spacing_mm_px_", "Image_size", "DICOM_windows", "Patient_gender",
    "Patient_age", "Train_Val_Test",
)

# Coarse_lesion_type 1..8 -> label 0..7 (-1, "unknown", stays -1).
LESION_TYPES: Tuple[str, ...] = records.DEEP_LESION_CLASS_NAMES
SPLIT_CODES: Dict[int, str] = {1: "train", 2: "validation", 3: "test"}

# (slice index, weight) taps of one channel.
Taps = List[Tuple[int, float]]


@dataclasses.dataclass(frozen=True)
class DLInfoRow:
  """One typed row (one lesion) of ``DL_info.csv``.

  Attributes:
    line: 1-based line number in the CSV (the header is line 1).
    file_name: key slice, ``"<patient>_<study>_<series>_<slice>.png"`` e.g. ``000001_01_01_109.png``.
    patient_index, study_index, series_id, key_slice_index: integers (the key slice index
      equals the number at the end of ``file_name``; rows where it does not are rejected).
    measurement_coordinates: 8 floats, RECIST long-axis endpoints then short-axis endpoints (px).
    bounding_box: ``(x1, y1, x2, y2)`` 0-based pixels.
    lesion_diameters_pixel: ``(long, short)`` px.
    normalized_lesion_location: ``(x, y, z)`` in [0, 1].
    coarse_lesion_type: 1..8 (see ``LESION_TYPES``) or -1 (unknown).
    possibly_noisy: ``Possibly_noisy > 0``.
    slice_range: ``(first, last)`` slice indices shipped for the series.
    spacing_mm_px: ``(x, y, z)`` mm; z is the slice interval (NaN when missing).
    image_size: the two integers of ``Image_size`` as written.
    dicom_windows: ``(lo, hi)`` HU.
    patient_gender: "F", "M" or "" when missing.
    patient_age: years, -1 when missing.
    train_val_test: split code (1 train, 2 validation, 3 test).
  """

  line: int
  file_name: str
  patient_index: int
  study_index: int
  series_id: int
  key_slice_index: int
  measurement_coordinates: Tuple[float, ...]
  bounding_box: Tuple[float, float, float, float]
  lesion_diameters_pixel: Tuple[float, float]
  normalized_lesion_location: Tuple[float, float, float]
  coarse_lesion_type: int
  possibly_noisy: bool
  slice_range: Tuple[int, int]
  spacing_mm_px: Tuple[float, float, float]
  image_size: Tuple[int, int]
  dicom_windows: Tuple[float, float]
  patient_gender: str
  patient_age: int
  train_val_test: int

  @property
  def series_dir(self) -> str:
    """Folder of the series under ``Images_png``, e.g. ``000001_01_01``."""
    return split_file_name(self.file_name)[0]

  @property
  def label(self) -> int:
    """``coarse_lesion_type - 1`` in 0..7, or -1 for unknown types."""
    return self.coarse_lesion_type - 1 if 1 <= self.coarse_lesion_type <= len(LESION_TYPES) else -1


def split_file_name(file_name: str) -> Tuple[str, int]:
  """``"000001_01_01_109.png"`` -> ``("000001_01_01", 109)`` (split on the last ``_``).

  Raises:
    ValueError: the name has no ``_`` or the part after it is not ``<int>.png``.
  """
  base = os.path.basename(file_name)
  head, sep, tail = base.rpartition("_")
  stem, ext = os.path.splitext(tail)
  if not sep or not head or ext.lower() != ".png" or not stem.isdigit():
    raise ValueError(f"not a DeepLesion slice file name: {file_name!r}")
  return head, int(stem)


def _floats(cell: str, n: Optional[int], what: str) -> Tuple[float, ...]:
  parts = [p.strip() for p in cell.split(",")] if cell.strip() else []
  values = []
  for p in parts:
    try:
      values.append(float(p))
    except ValueError:
      raise ValueError(f"{what}: non-numeric value {p!r}") from None
  if n is not None and len(values) != n:
    raise ValueError(f"{what}: expected {n} values, got {len(values)} ({cell!r})")
  return tuple(values)


INT32_LIMIT = 2**31  # integers are stored as int32: larger magnitudes are malformed (or unknown)


def _int(cell: str, what: str, default: Optional[int] = None) -> int:
  text = cell.strip()
  try:
    value = float(text)
  except ValueError:
    value = float("nan")
  if not math.isfinite(value) or value != int(value) or abs(value) >= INT32_LIMIT:
    if default is not None:
      return default
    raise ValueError(f"{what}: not an integer of at most 31 bits ({cell!r})")
  return int(value)


def _ints(cell: str, n: int, what: str) -> Tuple[int, ...]:
  values = _floats(cell, n, what)
  if not all(math.isfinite(v) and v == int(v) and abs(v) < INT32_LIMIT for v in values):
    raise ValueError(f"{what}: expected {n} integers of at most 31 bits ({cell!r})")
  return tuple(int(v) for v in values)


def _parse_row(cells: Sequence[str], line: int) -> DLInfoRow:
  if len(cells) < NUM_COLUMNS:
    raise ValueError(f"expected {NUM_COLUMNS} columns, got {len(cells)}")
  file_name = cells[0].strip()
  series_dir, slice_from_name = split_file_name(file_name)
  key = _int(cells[4], "Key_slice_index")
  if key != slice_from_name:
    raise ValueError(f"Key_slice_index {key} differs from the slice of File_name {file_name!r}")
  spacing = _floats(cells[12], None, "Spacing_mm_px_")
  if len(spacing) == 2:  # z missing: keep the key slice only
    spacing = spacing + (float("nan"),)
  if len(spacing) != 3:
    raise ValueError(f"Spacing_mm_px_: expected 3 values, got {len(spacing)}")
  slice_range = _ints(cells[11], 2, "Slice_range")
  size = _ints(cells[13], 2, "Image_size")
  return DLInfoRow(
      line=line,
      file_name=file_name,
      patient_index=_int(cells[1], "Patient_index"),
      study_index=_int(cells[2], "Study_index"),
      series_id=_int(cells[3], "Series_ID"),
      key_slice_index=key,
      measurement_coordinates=_floats(cells[5], 8, "Measurement_coordinates"),
      bounding_box=_floats(cells[6], 4, "Bounding_boxes"),
      lesion_diameters_pixel=_floats(cells[7], 2, "Lesion_diameters_Pixel_"),
      normalized_lesion_location=_floats(cells[8], 3, "Normalized_lesion_location"),
      coarse_lesion_type=_int(cells[9], "Coarse_lesion_type", default=-1),
      possibly_noisy=_int(cells[10], "Possibly_noisy", default=0) > 0,
      slice_range=slice_range,
      spacing_mm_px=tuple(float(s) for s in spacing),
      image_size=size,
      dicom_windows=_floats(cells[14], 2, "DICOM_windows"),
      patient_gender=cells[15].strip(),
      patient_age=_int(cells[16], "Patient_age", default=-1),
      train_val_test=_int(cells[17], "Train_Val_Test"),
  )


def parse_dl_info(csv_path: os.PathLike, bad_rows: Optional[List[Tuple[int, str]]] = None) -> List[DLInfoRow]:
  """Reads ``DL_info.csv`` into typed rows, in file order.

  The first line is a header when its first cell is not a slice file name. Each line is one
  row (the release has no line breaks inside cells), its cells parsed with the ``csv`` module
  (multi-value cells are quoted: ``"226.169, 90.0204, 241.252, 111.977"``); a line that is not
  UTF-8 or whose quotes do not close is malformed by itself, never merged with the next.

  Args:
    csv_path: path of ``DL_info.csv``.
    bad_rows: if given, malformed rows (wrong column count, non-numeric or missing values,
      key slice not matching the file name) are skipped and ``(line, message)`` appended here;
      if None, the first malformed row raises.

  Returns:
    One ``DLInfoRow`` per lesion. Blank lines are ignored.

  Raises:
    FileNotFoundError: no file at ``csv_path``.
    ValueError: a malformed row (when ``bad_rows`` is None); the message names the file and line.
  """
  rows: List[DLInfoRow] = []
  with open(csv_path, "rb") as f:
    data = f.read()
  for line, raw in enumerate(data.split(b"\n"), start=1):
    try:
      try:
        text = raw.decode("utf-8-sig" if line == 1 else "utf-8").rstrip("\r")
      except UnicodeDecodeError as e:
        raise ValueError(f"not UTF-8 text (byte {raw[e.start]:#04x} at column {e.start + 1})") from None
      if not text.strip():
        continue
      try:
        cells = next(csv.reader([text], strict=True))
      except csv.Error as e:
        raise ValueError(f"not a CSV line ({e})") from None
      if line == 1:
        try:
          split_file_name(cells[0].strip())
        except ValueError:
          continue  # header
      rows.append(_parse_row(cells, line))
    except ValueError as e:
      message = f"{os.fspath(csv_path)}, line {line}: {e}"
      if bad_rows is None:
        raise ValueError(message) from None
      bad_rows.append((line, message))
  return rows


def slice_path(root: os.PathLike, file_name: str, slice_index: int) -> str:
  """Path of slice ``slice_index`` of the series of ``file_name``.

  Args:
    root: the release folder (the one holding ``Images_png/``).
    file_name: a key slice name from ``DL_info.csv``, e.g. ``000001_01_01_109.png``.
    slice_index: the slice number (``%03d`` in the file name).

  Returns:
    ``<root>/Images_png/000001_01_01/<slice_index:03d>.png``.
  """
  series_dir, _ = split_file_name(file_name)
  return os.path.join(os.fspath(root), IMAGES_DIR, series_dir, f"{int(slice_index):03d}.png")


def load_hu(png_path: os.PathLike) -> np.ndarray:
  """Reads a DeepLesion slice as Hounsfield units.

  Returns:
    ``[H, W]`` float32, ``HU = value - 32768``.

  Raises:
    FileNotFoundError: no file at ``png_path``.
    ValueError: the file is cut short, does not decode, or is not a single-channel uint16 image.
  """
  path = os.fspath(png_path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"no slice file {path}")
  with open(path, "rb") as f:
    data = f.read()
  cut = image_bytes.incomplete(data)
  if cut:
    raise ValueError(f"{path}: {cut}")
  image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if data else None
  if image is None:
    raise ValueError(f"{path}: could not decode the PNG")
  if image.dtype != np.uint16 or image.ndim != 2:
    raise ValueError(f"{path}: expected a single-channel uint16 PNG, got {image.dtype} {image.shape}")
  return image.astype(np.float32) - np.float32(HU_OFFSET)


def channel_offsets(spacing_z: float, slice_interval_mm: float = DEFAULT_SLICE_INTERVAL_MM, num_slices: int = 3) -> List[float]:
  """Fractional slice offsets from the key slice of each channel (all 0 when spacing is unusable)."""
  if num_slices < 1 or num_slices % 2 == 0:
    raise ValueError(f"num_slices must be odd and positive, got {num_slices}")
  usable = spacing_z is not None and math.isfinite(spacing_z) and spacing_z > 0 and slice_interval_mm != 0
  half = num_slices // 2
  return [((c - half) * slice_interval_mm / spacing_z) if usable else 0.0 for c in range(num_slices)]


def neighbour_slices(
    key_slice: int,
    spacing_z: float,
    slice_interval_mm: float = DEFAULT_SLICE_INTERVAL_MM,
    num_slices: int = 3,
    is_available: Optional[Callable[[int], bool]] = None,
) -> List[Taps]:
  """Which slices, with which weights, make each channel of the multi-slice input.

  Args:
    key_slice: the annotated slice index.
    spacing_z: slice interval of the series (mm, ``Spacing_mm_px_[2]``).
    slice_interval_mm: spacing of the channels (mm; 2 as in 3DCE/MULAN).
    num_slices: number of channels (odd).
    is_available: ``is_available(index)`` for slices other than the key slice (default: all
      are). Unavailable slices step towards the key slice until an available one (or the key).

  Returns:
    ``num_slices`` lists of ``(slice_index, weight)``, weights > 0 summing to 1, in increasing
    slice order; the middle one is ``[(key_slice, 1.0)]``. Offsets within 1e-6 of an integer
    are treated as integers (no interpolation).
  """
  channels: List[Taps] = []
  for offset in channel_offsets(spacing_z, slice_interval_mm, num_slices):
    nearest = round(offset)
    if abs(offset - nearest) < 1e-6:
      taps = [(key_slice + int(nearest), 1.0)]
    else:
      lo = math.floor(offset)
      w_hi = offset - lo
      taps = [(key_slice + lo, 1.0 - w_hi), (key_slice + lo + 1, w_hi)]
    resolved: Dict[int, float] = {}
    for index, weight in taps:
      if is_available is not None:
        step = 1 if index < key_slice else -1
        while index != key_slice and not is_available(index):
          index += step
      resolved[index] = resolved.get(index, 0.0) + weight
    channels.append(sorted(resolved.items()))
  return channels


def three_slice_image(
    load_slice: Callable[[int], Optional[np.ndarray]],
    key_slice: int,
    spacing_z: float,
    slice_interval_mm: float = DEFAULT_SLICE_INTERVAL_MM,
    num_slices: int = 3,
    slice_range: Optional[Tuple[int, int]] = None,
) -> Tuple[np.ndarray, List[Taps]]:
  """The multi-slice HU image centred on the key slice.

  Args:
    load_slice: ``load_slice(index)`` -> ``[H, W]`` float32 HU, or None when the slice is
      missing or unreadable (it is called at most once per index).
    key_slice: the annotated slice index (must load).
    spacing_z, slice_interval_mm, num_slices: see ``neighbour_slices``.
    slice_range: ``(first, last)`` indices available (``Slice_range``); slices outside are
      treated as unavailable without calling ``load_slice``.

  Returns:
    ``(hu, taps)``: ``hu`` float32 ``[H, W, num_slices]`` (channel ``c`` = weighted sum of its
    taps' HU), ``taps`` the resolved ``neighbour_slices`` actually used.

  Raises:
    ValueError: the key slice does not load.
  """
  cache: Dict[int, Optional[np.ndarray]] = {}

  def get(index: int) -> Optional[np.ndarray]:
    if index not in cache:
      cache[index] = load_slice(index)
    return cache[index]

  key = get(key_slice)
  if key is None:
    raise ValueError(f"key slice {key_slice} is not available")
  key = np.asarray(key, np.float32)

  def available(index: int) -> bool:
    if slice_range is not None and not slice_range[0] <= index <= slice_range[1]:
      return False
    image = get(index)
    return image is not None and np.shape(image) == key.shape

  taps = neighbour_slices(key_slice, spacing_z, slice_interval_mm, num_slices, is_available=available)
  channels = []
  for channel in taps:
    acc = np.zeros(key.shape, np.float32)
    for index, weight in channel:
      acc += np.float32(weight) * (key if index == key_slice else np.asarray(get(index), np.float32))
    channels.append(acc)
  return np.stack(channels, axis=-1), taps


def window(hu: np.ndarray, lo: float, hi: float) -> np.ndarray:
  """Maps HU to uint8 with the window ``[lo, hi]``.

  Returns:
    ``clip(floor((hu - lo) / (hi - lo) * 255 + 0.5), 0, 255)`` as uint8, same shape as ``hu``
    (computed in float64; values below ``lo`` -> 0, above ``hi`` -> 255).

  Raises:
    ValueError: ``hi <= lo`` or a bound is not finite.
  """
  lo, hi = float(lo), float(hi)
  if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
    raise ValueError(f"invalid window [{lo}, {hi}]")
  scaled = (np.asarray(hu, np.float64) - lo) / (hi - lo) * 255.0
  return np.clip(np.floor(scaled + 0.5), 0, 255).astype(np.uint8)


def hu_to_uint16(hu: np.ndarray) -> np.ndarray:
  """HU (float) -> the release's uint16 storage: ``clip(round_half_up(hu) + 32768, 0, 65535)``."""
  return np.clip(np.floor(np.asarray(hu, np.float64) + 0.5) + HU_OFFSET, 0, 65535).astype(np.uint16)


def image_id(patient_index: int, study_index: int, series_id: int, slice_index: int) -> int:
  """Integer id of a slice: ``((patient * 100 + study) * 100 + series) * 1000 + slice``.

  E.g. ``000001_01_01_109.png`` -> 10101109 (unique while study, series < 100 and slice < 1000,
  which holds for DeepLesion).
  """
  return ((int(patient_index) * 100 + int(study_index)) * 100 + int(series_id)) * 1000 + int(slice_index)


# --------------------------------------------------------------------------------------------
# Writing files in the release's format (test fixtures, the fuzzer, the synthetic CT set).


def encode_uint16_png(values: np.ndarray, compression: Optional[int] = None) -> bytes:
  """PNG bytes of a uint16 ``[H, W]`` slice as the release stores it (``HU + 32768``, see
  :func:`hu_to_uint16`); ``compression``: OpenCV's PNG level 0-9 (None: OpenCV's default)."""
  values = np.asarray(values)
  if values.dtype != np.uint16 or values.ndim != 2:
    raise ValueError(f"encode_uint16_png: expected a uint16 [H, W] array, got {values.dtype} {values.shape}")
  params = [] if compression is None else [cv2.IMWRITE_PNG_COMPRESSION, int(compression)]
  ok, buffer = cv2.imencode(".png", values, params)
  if not ok:
    raise RuntimeError("encode_uint16_png: cv2.imencode failed")
  return buffer.tobytes()


def format_cell(values: Sequence[float]) -> str:
  """A multi-value cell as the release writes it: ``"a, b, c"`` (``repr``-exact floats, integers
  without a decimal point)."""
  return ", ".join(str(int(v)) if float(v).is_integer() else repr(float(v)) for v in values)


def write_dl_info(path: os.PathLike, rows: Sequence[Sequence[object]], header: bool = True) -> None:
  """Writes ``DL_info.csv``: the header (unless ``header`` is False), then one line per row, as
  the ``csv`` module writes them (multi-value cells quoted), UTF-8, ``\\r\\n`` line ends."""
  os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
  with open(path, "w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f)
    if header:
      writer.writerow(CSV_HEADER)
    writer.writerows(rows)
