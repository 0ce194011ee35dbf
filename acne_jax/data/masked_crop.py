"""Masked crop (SADH acne-detection paper, section 3.1.2), as the reference code does it.

A high-resolution photograph (AcneSCU: about 3500 x 5000) is cut into ``S x S`` windows
(``S = 1024`` by default). A lesion that a window cuts ("partial") is blacked out in that
window and its annotation is dropped there; the lesion stays, unmasked and annotated, in any
window that holds it whole. The rules below follow the reference converter
(``labelme_to_coco_zjw.py``, ``_relative_crop`` with ``mask_flag=True``); see
``shared/reference_notes.md`` section 1.3 and trap 7.

Conventions. Images are uint8 ``[H, W, C]`` (RGB, ``C = 3``), indexed ``[row, column]``.
Polygons are float ``[V, 2]`` arrays of ``(x, y)`` vertices in pixels of the image they
belong to. Boxes are ``x1, y1, x2, y2`` float pixels with no ``+1`` (width ``x2 - x1``).
A window is given by its top-left corner ``origin = (x0, y0)`` (integers) in the source
image; window coordinates are source coordinates minus the origin.

Layout (:func:`crop_origins`). ``n_h = ceil(H / S)`` rows and ``n_w = ceil(W / S)`` columns
of windows; along x the step is ``(W - S) / (n_w - 1)`` and window ``i`` starts at
``ceil(i * (W - S) / (n_w - 1))`` (same along y), so the first window starts at 0, the last
ends exactly at the border and the overlaps are equal up to the rounding. Windows are
numbered row-major (row index over y, column index over x). The reference divides by zero
when a dimension is ``<= S``; here such a dimension gets a single window at 0 and the crop
is zero-padded (bottom / right) to ``S``. The reference computes ``ceil`` of a float
product; this module uses exact integer arithmetic, which gives the same origins for
``S = 1024`` (checked for every size up to 60 * 1024) and never lets the last window run
past the border (the float product can, for some sizes with other ``S``, e.g. 800).

Per window (:func:`masked_crop`), for every lesion:

1. **Overlap.** The lesion is considered only if its box (:func:`polygon_bounds`, with the
   chosen rounding) overlaps the window with strict inequalities:
   ``x1 < x0 + S and x2 > x0 and y1 < y0 + S and y2 > y0``. A box of zero width or height
   never overlaps anything (reference ``doOverlap``), so such a lesion is never kept nor
   masked. Polygons with fewer than 3 vertices are skipped entirely, as in the reference.
2. **Partial test.** The lesion is *partial* in the window if ANY vertex, in window
   coordinates, has ``x < 1`` or ``x > S - 1`` or ``y < 1`` or ``y > S - 1`` (no area ratio:
   any cut counts). The test is against the window, not the image: in the border windows of
   the grid, a lesion touching the image border (a vertex within 1 px of it) is partial, as
   in the reference; in a zero-padded window the padding counts as inside the window.
3. **Partial lesions** are masked and dropped: the window-coordinate polygon is clipped to
   ``[1, S - 1]``, its vertices truncated to int32, and ``cv2.fillPoly`` plus a 1-px closed
   ``cv2.polylines`` outline (8-connected) paint it with ``fill_value`` (0, black, on all
   channels by default). Pixel row / column 0 of a window is therefore never painted. A
   partial lesion is masked **whatever its size**: in the reference the size filter sits in
   the branch of the kept (non-partial) annotations only (notes 1.3, "Kept lesions").
4. **Kept lesions** (not partial): shifted polygon, box computed on the shifted polygon,
   ``area = box width * box height`` (box area, not polygon area). A kept lesion whose box
   has width ``< min_size`` or height ``< min_size`` is dropped **and not masked**.

Box rounding. With ``reference_rounding=True`` (default; matches the reference COCO data) a
box is ``(floor(min x), floor(min y), floor(min x) + ceil(max x - min x),
floor(min y) + ceil(max y - min y))``, i.e. the reference's integer COCO ``[x, y, w, h]``
written as corners. Note that ``x2`` can be smaller than ``max x`` (``min x = 3.7``,
``max x = 15.2`` gives ``x1 = 3``, ``x2 = 15``). With ``reference_rounding=False`` the box
is the tight float bounds of the vertices. The same box is used for the overlap test (in
source coordinates) and, recomputed on the shifted polygon, for the output box and the
``min_size`` filter.

Efficiency: bounds of all lesions are computed once, vectorised (``reduceat`` over the
concatenated vertices); the overlap and partial tests are vectorised per window; only the
lesions to mask are drawn, with OpenCV, on the window's own copy. The input image is never
modified.
"""

from __future__ import annotations

import dataclasses
import math
from typing import List, Sequence, Tuple, Union

import cv2
import numpy as np

DEFAULT_CROP_SIZE = 1024
DEFAULT_MIN_SIZE = 10.0

FillValue = Union[int, float, Sequence[Union[int, float]]]


@dataclasses.dataclass
class Crop:
  """One masked window of a source image.

  Attributes:
    image: uint8 ``[S, S, C]`` window pixels, partial lesions painted with the fill value,
      zero-padded (bottom / right) where the window extends past the source image.
    origin: ``(x0, y0)`` int, top-left corner of the window in the source image.
    polygons: list of ``K`` float32 ``[V_k, 2]`` kept lesions, ``(x, y)`` window coordinates.
    boxes: float32 ``[K, 4]`` kept boxes ``x1, y1, x2, y2`` window pixels, no ``+1``.
    labels: int32 ``[K]`` labels of the kept lesions (``labels[source_index]`` of the input).
    areas: float32 ``[K]`` box areas ``(x2 - x1) * (y2 - y1)``.
    source_index: int32 ``[K]`` index of each kept lesion in the input list (increasing).
    masked_index: int32 ``[M]`` indices (in the input list, increasing) of the lesions
      masked in this window.
  """

  image: np.ndarray
  origin: Tuple[int, int]
  polygons: List[np.ndarray]
  boxes: np.ndarray
  labels: np.ndarray
  areas: np.ndarray
  source_index: np.ndarray
  masked_index: np.ndarray


# ----------------------------------------------------------------------------------------
# Geometry helpers.


def circle_to_polygon(center: Sequence[float], rim_point: Sequence[float]) -> np.ndarray:
  """The reference's octagon for a LabelMe ``circle`` shape.

  Args:
    center: ``(cx, cy)`` centre of the circle, pixels.
    rim_point: ``(px, py)`` a point on the circle; the radius is
      ``d = |rim_point - center|``.

  Returns:
    float64 ``[8, 2]`` ``(x, y)`` vertices at distance ``d`` from the centre along the axes
    and diagonals (``e = d / sqrt(2)``), in the reference's order, which is
    counter-clockwise on screen (y pointing down), starting at the top:
    ``(cx, cy - d)``, ``(cx - e, cy - e)``, ``(cx - d, cy)``, ``(cx - e, cy + e)``,
    ``(cx, cy + d)``, ``(cx + e, cy + e)``, ``(cx + d, cy)``, ``(cx + e, cy - e)``.
  """
  cx, cy = (float(v) for v in center)
  px, py = (float(v) for v in rim_point)
  d = math.sqrt((cx - px) ** 2 + (cy - py) ** 2)
  e = math.sqrt(d * d / 2.0)
  return np.array(
      [
          [cx, cy - d],
          [cx - e, cy - e],
          [cx - d, cy],
          [cx - e, cy + e],
          [cx, cy + d],
          [cx + e, cy + e],
          [cx + d, cy],
          [cx + e, cy - e],
      ],
      dtype=np.float64,
  )


def _round_bounds(tight: np.ndarray) -> np.ndarray:
  """float64 ``[..., 4]`` tight bounds -> the reference's integer-valued corner boxes."""
  x1 = np.floor(tight[..., 0])
  y1 = np.floor(tight[..., 1])
  x2 = x1 + np.ceil(tight[..., 2] - tight[..., 0])
  y2 = y1 + np.ceil(tight[..., 3] - tight[..., 1])
  return np.stack([x1, y1, x2, y2], axis=-1)


def _as_polygon(polygon) -> np.ndarray:
  """float64 ``[V, 2]`` from ``[V, 2]`` or a flat ``[2V]`` array; rejects non-finite values."""
  p = np.asarray(polygon, dtype=np.float64)
  if p.ndim == 1 and p.size % 2 == 0:
    p = p.reshape(-1, 2)
  if p.ndim != 2 or p.shape[1] != 2:
    raise ValueError(f"a polygon must be [V, 2] (or flat [2V]); got shape {p.shape}")
  if not np.all(np.isfinite(p)):
    raise ValueError("polygon coordinates must be finite")
  return p


def polygon_bounds(polygon, reference_rounding: bool = True) -> np.ndarray:
  """Box of a polygon.

  Args:
    polygon: float ``[V, 2]`` ``(x, y)`` vertices (``V >= 1``).
    reference_rounding: True: the reference's rounding, ``(floor(min x), floor(min y),
      floor(min x) + ceil(max x - min x), floor(min y) + ceil(max y - min y))``;
      False: the tight float bounds ``(min x, min y, max x, max y)``.

  Returns:
    float64 ``[4]`` box ``x1, y1, x2, y2`` pixels, no ``+1``.
  """
  p = _as_polygon(polygon)
  if p.shape[0] == 0:
    raise ValueError("polygon_bounds of an empty polygon")
  tight = np.concatenate([p.min(axis=0), p.max(axis=0)])
  return _round_bounds(tight) if reference_rounding else tight


# ----------------------------------------------------------------------------------------
# Layout.


def _axis_origins(size: int, crop_size: int) -> np.ndarray:
  n = -(-size // crop_size)
  if n <= 1:
    return np.zeros([1], np.int64)
  i = np.arange(n, dtype=np.int64)
  return -((-i * (size - crop_size)) // (n - 1))  # exact ceil(i * (size - S) / (n - 1))


def crop_origins(height: int, width: int, crop_size: int = DEFAULT_CROP_SIZE) -> np.ndarray:
  """Top-left corners of the masked-crop grid.

  Args:
    height: ``H`` of the source image, pixels (> 0).
    width: ``W`` of the source image, pixels (> 0).
    crop_size: window side ``S`` (> 0).

  Returns:
    int32 ``[n_h * n_w, 2]`` ``(x0, y0)`` per window, row-major (window ``k`` is row
    ``k // n_w``, column ``k % n_w``), with ``n_h = ceil(H / S)``, ``n_w = ceil(W / S)`` and
    ``x0 = ceil(i_w * (W - S) / (n_w - 1))``, ``y0 = ceil(i_h * (H - S) / (n_h - 1))``;
    a dimension ``<= S`` has the single origin 0.
  """
  height, width, crop_size = int(height), int(width), int(crop_size)
  if height <= 0 or width <= 0 or crop_size <= 0:
    raise ValueError(f"sizes must be positive; got H={height}, W={width}, S={crop_size}")
  ys = _axis_origins(height, crop_size)
  xs = _axis_origins(width, crop_size)
  yy, xx = np.meshgrid(ys, xs, indexing="ij")
  return np.stack([xx.ravel(), yy.ravel()], axis=1).astype(np.int32)


# ----------------------------------------------------------------------------------------
# Masking.


@dataclasses.dataclass(frozen=True)
class _Lesions:
  """Lesions prepared once for any number of windows (usable lesions only).

  ``polygons[j]`` is float64 ``[V, 2]`` of input lesion ``index[j]``; ``tight`` float64
  ``[N', 4]`` tight bounds; ``boxes`` float64 ``[N', 4]`` overlap boxes (rounded or tight);
  ``labels`` int32 ``[N]`` all input labels.
  """

  polygons: List[np.ndarray]
  index: np.ndarray
  tight: np.ndarray
  boxes: np.ndarray
  labels: np.ndarray


def _prepare(polygons, labels, reference_rounding: bool) -> _Lesions:
  labels = np.asarray(labels).reshape(-1)
  if len(labels) != len(polygons):
    raise ValueError(f"{len(polygons)} polygons but {len(labels)} labels")
  if labels.size and not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f"labels must be integers; got dtype {labels.dtype}")
  labels = labels.astype(np.int32)
  polys = [_as_polygon(p) for p in polygons]
  index = np.array([k for k, p in enumerate(polys) if p.shape[0] >= 3], dtype=np.int64)
  used = [polys[k] for k in index]
  if not used:
    empty = np.zeros([0, 4], np.float64)
    return _Lesions([], index, empty, empty, labels)
  counts = np.array([p.shape[0] for p in used], dtype=np.int64)
  starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
  vertices = np.concatenate(used, axis=0)
  tight = np.concatenate(
      [np.minimum.reduceat(vertices, starts, axis=0), np.maximum.reduceat(vertices, starts, axis=0)],
      axis=1,
  )
  boxes = _round_bounds(tight) if reference_rounding else tight
  return _Lesions(used, index, tight, boxes, labels)


def _fill_color(fill_value: FillValue, channels: int) -> Tuple[float, ...]:
  """A per-channel colour tuple for OpenCV (a bare scalar ``v`` would mean ``(v, 0, 0, 0)``)."""
  values = np.asarray(fill_value, dtype=np.float64).reshape(-1)
  if values.size == 1:
    values = np.repeat(values, channels)
  if values.size != channels:
    raise ValueError(f"fill_value has {values.size} values for {channels} channels")
  if np.any(values < 0) or np.any(values > 255):
    raise ValueError(f"fill_value must lie in [0, 255]; got {fill_value}")
  return tuple(float(v) for v in values)


def _check_image(image) -> np.ndarray:
  image = np.asarray(image)
  if image.dtype != np.uint8 or image.ndim != 3 or not 1 <= image.shape[2] <= 4:
    raise ValueError(f"image must be uint8 [H, W, C] with C <= 4; got {image.dtype} {image.shape}")
  return image


def _window_pixels(image: np.ndarray, x0: int, y0: int, size: int) -> np.ndarray:
  """uint8 ``[S, S, C]`` copy of ``image[y0:y0+S, x0:x0+S]``, zero outside the image."""
  h, w, c = image.shape
  out = np.zeros([size, size, c], np.uint8)
  sx0, sy0 = max(x0, 0), max(y0, 0)
  sx1, sy1 = min(x0 + size, w), min(y0 + size, h)
  if sx1 > sx0 and sy1 > sy0:
    out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = image[sy0:sy1, sx0:sx1]
  return out


def _crop(
    image: np.ndarray,
    lesions: _Lesions,
    origin: Tuple[int, int],
    crop_size: int,
    min_size: float,
    reference_rounding: bool,
    color: Tuple[float, ...],
) -> Crop:
  x0, y0 = origin
  size = crop_size
  pixels = _window_pixels(image, x0, y0, size)
  b = lesions.boxes
  overlap = (
      (b[:, 0] < x0 + size)
      & (b[:, 2] > x0)
      & (b[:, 1] < y0 + size)
      & (b[:, 3] > y0)
      & (b[:, 2] > b[:, 0])
      & (b[:, 3] > b[:, 1])
  )
  rows = np.flatnonzero(overlap)
  shift = np.array([x0, y0, x0, y0], dtype=np.float64)
  tight = lesions.tight[rows] - shift  # window coordinates
  partial = (tight[:, 0] < 1) | (tight[:, 1] < 1) | (tight[:, 2] > size - 1) | (tight[:, 3] > size - 1)

  offset = np.array([x0, y0], dtype=np.float64)
  for j in rows[partial]:
    pts = np.clip(lesions.polygons[j] - offset, 1, size - 1).astype(np.int32).reshape(-1, 1, 2)
    cv2.polylines(pixels, [pts], True, color, thickness=1)
    cv2.fillPoly(pixels, [pts], color)

  keep_rows = rows[~partial]
  kept_tight = tight[~partial]
  boxes = _round_bounds(kept_tight) if reference_rounding else kept_tight
  big = (boxes[:, 2] - boxes[:, 0] >= min_size) & (boxes[:, 3] - boxes[:, 1] >= min_size)
  keep_rows, boxes = keep_rows[big], boxes[big]

  source_index = lesions.index[keep_rows].astype(np.int32)
  return Crop(
      image=pixels,
      origin=(int(x0), int(y0)),
      polygons=[(lesions.polygons[j] - offset).astype(np.float32) for j in keep_rows],
      boxes=boxes.astype(np.float32).reshape(-1, 4),
      labels=lesions.labels[source_index],
      areas=((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).astype(np.float32),
      source_index=source_index,
      masked_index=lesions.index[rows[partial]].astype(np.int32),
  )


def _check_sizes(crop_size: int, min_size: float) -> int:
  crop_size = int(crop_size)
  if crop_size < 3:
    raise ValueError(f"crop_size must be >= 3; got {crop_size}")
  if not min_size >= 0:
    raise ValueError(f"min_size must be >= 0; got {min_size}")
  return crop_size


def masked_crop(
    image: np.ndarray,
    polygons: Sequence[np.ndarray],
    labels: Sequence[int],
    origin: Tuple[int, int],
    crop_size: int = DEFAULT_CROP_SIZE,
    min_size: float = DEFAULT_MIN_SIZE,
    reference_rounding: bool = True,
    fill_value: FillValue = 0,
) -> Crop:
  """One masked window at a given origin.

  Args:
    image: uint8 ``[H, W, 3]`` source image (not modified).
    polygons: ``N`` float ``[V, 2]`` ``(x, y)`` lesion polygons in source pixels (``V >= 3``;
      shorter ones are skipped, as in the reference). A flat ``[2V]`` array is accepted too.
    labels: int ``[N]`` lesion labels.
    origin: ``(x0, y0)`` integer top-left corner of the window in the source image; any
      part of the window outside the image is zero-padded.
    crop_size: window side ``S``.
    min_size: kept lesions whose box width or height is ``< min_size`` are dropped (and not
      masked); partial lesions are masked whatever their size.
    reference_rounding: box rounding (see :func:`polygon_bounds`).
    fill_value: paint for partial lesions, a scalar for all channels or one value per
      channel (0: black, as the reference).

  Returns:
    The :class:`Crop`.
  """
  image = _check_image(image)
  crop_size = _check_sizes(crop_size, min_size)
  x0, y0 = (int(v) for v in origin)
  lesions = _prepare(polygons, labels, reference_rounding)
  color = _fill_color(fill_value, image.shape[2])
  return _crop(image, lesions, (x0, y0), crop_size, min_size, reference_rounding, color)


def masked_crops(
    image: np.ndarray,
    polygons: Sequence[np.ndarray],
    labels: Sequence[int],
    crop_size: int = DEFAULT_CROP_SIZE,
    min_size: float = DEFAULT_MIN_SIZE,
    reference_rounding: bool = True,
    fill_value: FillValue = 0,
) -> List[Crop]:
  """The whole masked-crop grid of an image (offline crops, as the reference's data).

  Args: as :func:`masked_crop`, without ``origin``.

  Returns:
    ``n_h * n_w`` :class:`Crop` objects, in the order of :func:`crop_origins` (row-major).
  """
  image = _check_image(image)
  crop_size = _check_sizes(crop_size, min_size)
  lesions = _prepare(polygons, labels, reference_rounding)
  color = _fill_color(fill_value, image.shape[2])
  origins = crop_origins(image.shape[0], image.shape[1], crop_size)
  return [
      _crop(image, lesions, (int(x0), int(y0)), crop_size, min_size, reference_rounding, color)
      for x0, y0 in origins
  ]


def random_masked_crop(
    rng: np.random.Generator,
    image: np.ndarray,
    polygons: Sequence[np.ndarray],
    labels: Sequence[int],
    crop_size: int = DEFAULT_CROP_SIZE,
    min_size: float = DEFAULT_MIN_SIZE,
    reference_rounding: bool = True,
    fill_value: FillValue = 0,
) -> Crop:
  """One masked window at a random origin (on-the-fly crops during training).

  The origin is drawn uniformly over the integer origins that keep the window inside the
  image: ``x0`` in ``[0, W - S]``, then ``y0`` in ``[0, H - S]`` (two ``rng.integers``
  draws); along a dimension ``<= S`` it is 0 and the crop is zero-padded. The masking rule
  is that of :func:`masked_crop`. (The reference's online sampler, ``MyTransform``, is
  commented out in its pipeline; only its masking rule is shared here.)

  Args:
    rng: NumPy generator (the only source of randomness).
    Others: as :func:`masked_crop`.

  Returns:
    The :class:`Crop`.
  """
  image = _check_image(image)
  crop_size = _check_sizes(crop_size, min_size)
  h, w = image.shape[:2]
  x0 = int(rng.integers(0, max(w - crop_size, 0) + 1))
  y0 = int(rng.integers(0, max(h - crop_size, 0) + 1))
  return masked_crop(
      image, polygons, labels, (x0, y0), crop_size, min_size, reference_rounding, fill_value
  )


__all__ = [
    "Crop",
    "DEFAULT_CROP_SIZE",
    "DEFAULT_MIN_SIZE",
    "circle_to_polygon",
    "crop_origins",
    "masked_crop",
    "masked_crops",
    "polygon_bounds",
    "random_masked_crop",
]
