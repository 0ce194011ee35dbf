"""The input pipeline of every data set: a random-access source (``tfds.data_source``) -> grain -> static-shape batches.

Every data set trains through this one path, the embedded synthetic one included; a small data
set may keep its decoded records in RAM inside it (:class:`DecodedCache`, ``data.cache_in_memory``).
Evaluation splits are prepared by the same per-record code (:meth:`ExampleTransform.prepare`).

Per record, in grain worker processes (or in the training process with ``worker_count=0``):

1. decode (:func:`acne_jax.data.records.decode_record`; PNG/JPEG bytes or decoded arrays);
2. optionally drop classes (``drop_labels``: the AcneSCU reference never supervises ``other``),
   then optionally resize like torchvision's detectors (``resize_min_size`` / ``resize_max_size``,
   :func:`acne_jax.data.resize.resize_example`: boxes and polygons scaled with the image);
3. optionally cut a random masked crop of ``crop_size`` (on-the-fly masked crops, SADH section
   3.1.2: lesions cut by the window are blacked out and dropped), so whole images can be
   streamed without storing pre-cut copies;
4. augment: horizontal flip (p = 0.5), optional vertical flip, optional rotation by a multiple of
   90 degrees (exact for boxes, unlike arbitrary angles), optional brightness scaling; the
   DeepLesion benchmark's pipeline as two options: a rotation by a random angle within
   ``rotate_degrees`` (reflected border, boxes enclosing the turned boxes) and a random centred
   crop of up to ``zoom_crop`` px per side resized back to the image's size; YOLOv4's mosaic of
   four records (``mosaic``: its probability), before the masked crop and the augmentations;
5. pad the image to ``image_size`` (bottom/right) and the ground truth to ``max_boxes`` rows
   with a validity mask.

Then grain batches ``batch_size`` records per host. The stream is defined globally: position
``p`` of the shuffled sequence and the generator of its random choices depend only on
``(seed, p)``, and host ``h`` of ``H`` reads the positions of its slice of every global batch
(:class:`ProcessSliceSampler`), so a global batch is the same whatever the number of hosts (for
a given worker count: grain fills each batch from one worker), and iteration resumes exactly
from :meth:`StreamingLoader.get_state`.

The batch layout is the one of :mod:`acne_jax.data.loader` (``image`` uint8 ``[B, H, W, 3]``,
``boxes`` float32 ``[B, G, 4]`` x1y1x2y2, ``labels`` int32 ``[B, G]`` with -1 padding, ``valid``
bool ``[B, G]``, ``image_id`` int64 ``[B]``; with ``mask_size`` also ``masks`` uint8
``[B, G, M, M]`` and ``mask_frames`` float32 ``[B, G, 3]``, rasterised from the polygons after
cropping and augmenting them with the image).

Class-balanced batches (DeepLesion benchmark: each lesion type gets an equal share of every
batch): :class:`ClassBalancedSampler` makes position ``i`` of the stream draw a record that
contains class ``i mod num_classes``.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Dict, Iterator, Optional, Sequence, Tuple

import grain.python as grain
import numpy as np

from acne_jax.data import resize
from acne_jax.data.records import decode_record

BATCH_KEYS = ("image", "boxes", "labels", "valid", "image_id")
MOSAIC_MIN_VISIBLE = 0.25
"""A lesion cut by its mosaic quadrant is kept when at least this share of its box is inside."""
MASK_KEYS = ("masks", "mask_frames")


@dataclasses.dataclass(frozen=True)
class Augmentation:
  """Random augmentation settings (all off except the horizontal flip of the reference)."""

  hflip: bool = True
  vflip: bool = False
  rotate90: bool = False
  brightness: float = 0.0  # scale factor drawn from [1 - b, 1 + b]
  rotate_degrees: float = 0.0  # > 0: a random angle in [-d, d] about the centre (reflected border)
  zoom_crop: int = 0  # > 0: cut c in [0, zoom_crop] px from every side, resize back (a zoom in)


def _rotate_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
  """``points [N, 2]`` (x, y) through OpenCV's affine ``matrix [2, 3]``."""
  return points @ matrix[:, :2].T + matrix[:, 2]


def _rotate(image: np.ndarray, boxes: np.ndarray, shapes, degrees: float):
  """``image`` turned by ``degrees`` (counter-clockwise) about its centre, the border reflected;
  each box becomes the box enclosing its four turned corners, clipped to the image (a box is
  all the annotation DeepLesion has; polygons turn exactly). Boxes left with no area are kept
  as degenerate boxes for the caller to drop."""
  import cv2

  height, width = image.shape[:2]
  # Continuous coordinates: pixel (i, j) covers [j, j + 1); OpenCV rotates pixel centres.
  matrix = cv2.getRotationMatrix2D(((width - 1) / 2.0, (height - 1) / 2.0), float(degrees), 1.0)
  turned = cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
  shift = matrix.copy()
  shift[:, 2] += 0.5 - matrix[:, :2].sum(axis=1) * 0.5  # the same map on continuous coordinates (p - 0.5 -> q - 0.5)
  if len(boxes):
    corners = np.stack([boxes[:, [0, 1]], boxes[:, [2, 1]], boxes[:, [2, 3]], boxes[:, [0, 3]]], axis=1)  # [K, 4, 2]
    moved = _rotate_points(corners.reshape(-1, 2).astype(np.float64), shift).reshape(-1, 4, 2)
    boxes = np.concatenate([moved.min(axis=1), moved.max(axis=1)], axis=1)
    boxes = np.clip(boxes, 0.0, [width, height, width, height]).astype(np.float32)
  if shapes is not None:
    shapes = [np.clip(_rotate_points(p.astype(np.float64), shift), 0.0, [width, height]).astype(np.float32) for p in shapes]
  return turned, boxes, shapes


def _zoom_crop(image: np.ndarray, boxes: np.ndarray, shapes, cut: int):
  """The centred window ``cut`` px inside every side, resized back to the image's size."""
  import cv2

  height, width = image.shape[:2]
  if cut <= 0 or 2 * cut >= min(height, width):
    return image, boxes, shapes
  window = image[cut:height - cut, cut:width - cut]
  zoomed = cv2.resize(window, (width, height), interpolation=cv2.INTER_LINEAR)
  sx, sy = width / (width - 2.0 * cut), height / (height - 2.0 * cut)
  scale = np.array([sx, sy, sx, sy], np.float32)
  boxes = np.clip((boxes - cut) * scale, 0.0, [width, height, width, height]).astype(np.float32)
  if shapes is not None:
    shapes = [np.clip((p - cut) * scale[:2], 0.0, [width, height]).astype(np.float32) for p in shapes]
  return zoomed, boxes, shapes


def _flip_boxes_x(boxes: np.ndarray, width: int) -> np.ndarray:
  return np.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], axis=1)


def _flip_boxes_y(boxes: np.ndarray, height: int) -> np.ndarray:
  return np.stack([boxes[:, 0], height - boxes[:, 3], boxes[:, 2], height - boxes[:, 1]], axis=1)


def _rotate90_boxes(boxes: np.ndarray, width: int) -> np.ndarray:
  """Boxes of an image rotated 90 degrees counter-clockwise (``np.rot90``): (x, y) -> (y, W - x)."""
  return np.stack([boxes[:, 1], width - boxes[:, 2], boxes[:, 3], width - boxes[:, 0]], axis=1)


def augment(image: np.ndarray, boxes: np.ndarray, rng: np.random.Generator, settings: Augmentation,
            polygons: Optional[Sequence[np.ndarray]] = None):
  """Applies the random augmentations to ``image [H, W, 3] uint8`` and ``boxes [K, 4] x1y1x2y2``
  (and, when given, the lesions' ``polygons``, K float ``[V_k, 2]`` (x, y), moved the same way).

  Returns:
    ``(image, boxes)``, or ``(image, boxes, polygons)`` when ``polygons`` is given.
  """
  boxes = boxes.astype(np.float32)
  shapes = None if polygons is None else [np.asarray(p, np.float32).reshape(-1, 2) for p in polygons]

  def move(fn):
    return None if shapes is None else [fn(p) for p in shapes]

  if settings.hflip and rng.uniform() < 0.5:
    width = image.shape[1]
    image = image[:, ::-1]
    boxes = _flip_boxes_x(boxes, width)
    shapes = move(lambda p: np.stack([width - p[:, 0], p[:, 1]], axis=1))
  if settings.vflip and rng.uniform() < 0.5:
    height = image.shape[0]
    image = image[::-1]
    boxes = _flip_boxes_y(boxes, height)
    shapes = move(lambda p: np.stack([p[:, 0], height - p[:, 1]], axis=1))
  if settings.rotate90:
    for _ in range(int(rng.integers(0, 4))):
      width = image.shape[1]
      boxes = _rotate90_boxes(boxes, width)
      shapes = move(lambda p: np.stack([p[:, 1], width - p[:, 0]], axis=1))
      image = np.rot90(image)
  if settings.rotate_degrees > 0:
    image, boxes, shapes = _rotate(image, boxes, shapes, rng.uniform(-settings.rotate_degrees, settings.rotate_degrees))
  if settings.zoom_crop > 0:
    image, boxes, shapes = _zoom_crop(image, boxes, shapes, int(rng.integers(0, settings.zoom_crop + 1)))
  if settings.brightness > 0:
    factor = rng.uniform(1.0 - settings.brightness, 1.0 + settings.brightness)
    image = np.clip(image.astype(np.float32) * factor, 0, 255).astype(np.uint8)
  if polygons is None:
    return np.ascontiguousarray(image), boxes.astype(np.float32)
  return np.ascontiguousarray(image), boxes.astype(np.float32), shapes


def lesion_masks(polygons: Sequence[np.ndarray], boxes: np.ndarray, mask_size: int, name: str = "") -> Tuple[np.ndarray, np.ndarray]:
  """``(masks uint8 [K, M, M], frames float32 [K, 3])`` of a record's lesions
  (``acne_jax.ops.mask_targets.rasterize_box_masks``).

  Raises:
    ValueError: naming the record, when it has no polygon per box (a data set annotated with
      boxes only cannot train a mask head) or a polygon has fewer than 3 vertices.
  """
  from acne_jax.ops.mask_targets import rasterize_box_masks

  if len(polygons) != len(boxes):
    raise ValueError(f"record {name}: {len(boxes)} boxes but {len(polygons)} polygons; a mask head needs a polygon per "
                     "lesion (AcneSCU and the synthetic set have them), so use a box-only config for this data set.")
  try:
    return rasterize_box_masks([np.asarray(p, np.float64).reshape(-1, 2) for p in polygons], boxes, mask_size)
  except ValueError as e:
    raise ValueError(f"record {name}: {e}") from None


def pad_example(image: np.ndarray, boxes: np.ndarray, labels: np.ndarray, image_id: int,
                image_size: Tuple[int, int], max_boxes: int, name: str = "", masks: Optional[np.ndarray] = None,
                mask_frames: Optional[np.ndarray] = None) -> Dict[str, np.ndarray]:
  """Pads one example to static shapes (with ``masks [K, M, M]`` and ``mask_frames [K, 3]``
  when given: ``masks [max_boxes, M, M]``, ``mask_frames [max_boxes, 3]`` in the output).

  Raises:
    ValueError: naming the record when the image is larger than ``image_size`` or it has more
      than ``max_boxes`` boxes.
  """
  height, width = image_size
  h, w = image.shape[:2]
  if h > height or w > width:
    raise ValueError(f"record {name or image_id}: image {h}x{w} is larger than data.image_size {height}x{width}; "
                     "raise data.image_size or set data.crop_size.")
  if len(boxes) > max_boxes:
    raise ValueError(f"record {name or image_id}: {len(boxes)} boxes, more than data.max_boxes={max_boxes}; raise data.max_boxes.")
  padded = np.zeros((height, width, 3), np.uint8)
  padded[:h, :w] = image
  out_boxes = np.zeros((max_boxes, 4), np.float32)
  out_labels = np.full((max_boxes,), -1, np.int32)
  out_boxes[:len(boxes)] = boxes
  out_labels[:len(labels)] = labels
  out = {"image": padded, "boxes": out_boxes, "labels": out_labels, "valid": out_labels >= 0, "image_id": np.int64(image_id)}
  if masks is not None:
    out["masks"] = np.zeros((max_boxes, *masks.shape[1:]), np.uint8)
    out["masks"][:len(masks)] = masks
    out["mask_frames"] = np.zeros((max_boxes, 3), np.float32)
    out["mask_frames"][:, 2] = 1.0
    out["mask_frames"][:len(mask_frames)] = mask_frames
  return out


@dataclasses.dataclass
class ExampleTransform:
  """Steps 1-5 of the module docstring for one record, with a per-record generator."""

  image_size: Tuple[int, int]
  max_boxes: int
  augmentation: Augmentation = Augmentation()
  drop_labels: Tuple[int, ...] = ()
  crop_size: int = 0
  crop_min_size: float = 10.0
  mask_size: int = 0  # > 0: also "masks" [G, M, M] and "mask_frames" [G, 3] from the polygons
  # > 0 both: torchvision's resize (short side to resize_min_size, long side at most
  # resize_max_size) right after decoding, before cropping, augmenting and padding; 0: none.
  resize_min_size: int = 0
  resize_max_size: int = 0
  resize_style: str = "torchvision"  # or "mmdetection": Resize(keep_ratio=True) (acne_jax.data.resize)
  # YOLOv4's mosaic: with this probability a record is the 2 x 2 mosaic of itself and three records
  # drawn from ``mosaic_source`` (the training source), on an ``image_size`` canvas (:meth:`mosaic_of`).
  mosaic: float = 0.0
  mosaic_source: Any = None

  def prepare(self, record: Any) -> Dict[str, Any]:
    """Steps 1-2 (decode, drop classes, resize), the deterministic part that training and
    evaluation share.

    Returns:
      the decoded record (:func:`decode_record`) with the kept, resized ``image``, ``boxes``,
      ``labels`` and ``polygons``, plus ``scale`` float32 ``[2]`` (ratio_h, ratio_w; 1 without a
      resize) and ``original`` (the decoded ``(height, width)``, boxes and polygons before the
      resize, after dropping classes).
    """
    example = record if _is_decoded(record) else decode_record(record)
    boxes, labels, polygons = example["boxes"], example["labels"], example["polygons"]
    keep = ~np.isin(labels, np.asarray(self.drop_labels, np.int32))
    boxes, labels = boxes[keep], labels[keep]
    polygons = [p for p, k in zip(polygons, keep) if k] if len(polygons) == len(keep) else []
    image = example["image"]
    original = {"size": image.shape[:2], "boxes": boxes, "polygons": polygons}
    scale = np.ones((2,), np.float32)
    if resize.resize_enabled(self.resize_min_size, self.resize_max_size):
      image, boxes, polygons, scale = resize.resize_example(image, boxes, self.resize_min_size, self.resize_max_size, polygons,
                                                            style=self.resize_style)
    return {**example, "image": image, "boxes": boxes, "labels": labels, "polygons": polygons,
            "scale": np.asarray(scale, np.float32), "original": original}

  def mosaic_of(self, examples: Sequence[Dict[str, Any]], rng: np.random.Generator) -> Dict[str, Any]:
    """YOLOv4's mosaic of four prepared examples on an ``image_size`` canvas: a centre point drawn
    in the middle half of the canvas, and example ``k`` in quadrant ``k`` (top-left, top-right,
    bottom-left, bottom-right) with its corner at the centre (the top-left example's bottom-right
    corner, and so on), cut by its quadrant. A lesion keeps its label and the part of its box
    inside the quadrant when at least :data:`MOSAIC_MIN_VISIBLE` of its area is there; when more
    than ``max_boxes`` remain, the largest are kept (the others stay unlabelled in the image, not
    an error mid-run); polygons are not carried (``check_options`` refuses a mosaic with masks).
    The first example's ids are kept."""
    height, width = self.image_size
    cx, cy = int(rng.integers(width // 4, 3 * width // 4 + 1)), int(rng.integers(height // 4, 3 * height // 4 + 1))
    canvas = np.zeros((height, width, 3), np.uint8)
    quadrants = ((0, 0, cx, cy), (cx, 0, width, cy), (0, cy, cx, height), (cx, cy, width, height))
    all_boxes, all_labels = [], []
    for k, (example, (x0, y0, x1, y1)) in enumerate(zip(examples, quadrants)):
      image = example["image"]
      h, w = image.shape[:2]
      ox = cx - w if k in (0, 2) else cx  # where the image's left edge lands
      oy = cy - h if k in (0, 1) else cy
      px0, py0, px1, py1 = max(x0, ox), max(y0, oy), min(x1, ox + w), min(y1, oy + h)
      if px1 > px0 and py1 > py0:
        canvas[py0:py1, px0:px1] = image[py0 - oy:py1 - oy, px0 - ox:px1 - ox]
      boxes = np.asarray(example["boxes"], np.float32).reshape(-1, 4) + np.array([ox, oy, ox, oy], np.float32)
      clipped = np.clip(boxes, [x0, y0, x0, y0], [x1, y1, x1, y1]).astype(np.float32)
      area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
      visible = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
      keep = ((visible >= MOSAIC_MIN_VISIBLE * np.maximum(area, 1e-6)) & (clipped[:, 2] - clipped[:, 0] >= 1)
              & (clipped[:, 3] - clipped[:, 1] >= 1))
      all_boxes.append(clipped[keep])
      all_labels.append(np.asarray(example["labels"], np.int32).reshape(-1)[keep])
    boxes, labels = np.concatenate(all_boxes), np.concatenate(all_labels)
    if len(boxes) > self.max_boxes:  # four records' lesions may not fit: the largest are kept
      area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
      keep = np.sort(np.argsort(-area, kind="stable")[:self.max_boxes])
      boxes, labels = boxes[keep], labels[keep]
    return {**examples[0], "image": canvas, "boxes": boxes, "labels": labels, "polygons": []}

  def __call__(self, record: Any, rng: np.random.Generator) -> Dict[str, np.ndarray]:
    example = self.prepare(record)
    if self.mosaic > 0 and self.mosaic_source is not None and rng.uniform() < self.mosaic:
      partners = rng.integers(0, len(self.mosaic_source), 3)
      example = self.mosaic_of([example] + [self.prepare(self.mosaic_source[int(j)]) for j in partners], rng)
    image, boxes, labels, polygons = example["image"], example["boxes"], example["labels"], example["polygons"]
    if self.crop_size:
      from acne_jax.data import masked_crop

      shapes = [np.asarray(p, np.float32).reshape(-1, 2) for p in polygons]
      if len(shapes) != len(labels):  # no polygons stored: the boxes are the shapes
        shapes = [np.array([[b[0], b[1]], [b[2], b[1]], [b[2], b[3]], [b[0], b[3]]], np.float32) for b in boxes]
      crop = masked_crop.random_masked_crop(rng, image, shapes, labels, crop_size=self.crop_size, min_size=self.crop_min_size)
      image, boxes, labels, polygons = crop.image, crop.boxes, crop.labels, crop.polygons
    if not self.mask_size:
      image, boxes = augment(image, boxes, rng, self.augmentation)
      boxes, labels, _ = self._drop_vanished(boxes, labels, None)
      return pad_example(image, boxes, labels, example["image_id"], self.image_size, self.max_boxes, example["file_name"])
    image, boxes, polygons = augment(image, boxes, rng, self.augmentation, polygons)
    boxes, labels, polygons = self._drop_vanished(boxes, labels, polygons)
    masks, frames = lesion_masks(polygons, boxes, self.mask_size, example["file_name"] or str(example["image_id"]))
    return pad_example(image, boxes, labels, example["image_id"], self.image_size, self.max_boxes, example["file_name"],
                       masks, frames)


  def _drop_vanished(self, boxes, labels, polygons):
    """Lesions a rotation or zoom pushed out of the image (less than 1 px wide or high left) are
    dropped with their labels and polygons; without those options nothing is."""
    if not (self.augmentation.rotate_degrees > 0 or self.augmentation.zoom_crop > 0) or not len(boxes):
      return boxes, labels, polygons
    keep = (boxes[:, 2] - boxes[:, 0] >= 1.0) & (boxes[:, 3] - boxes[:, 1] >= 1.0)
    if polygons is not None and len(polygons) == len(keep):
      polygons = [p for p, k in zip(polygons, keep) if k]
    return boxes[keep], labels[keep], polygons


def _is_decoded(record: Any) -> bool:
  """Whether ``record`` is already :func:`decode_record`'s output (from a :class:`DecodedCache`)."""
  return isinstance(record, dict) and "boxes" in record and isinstance(record.get("image"), np.ndarray)


class DecodedCache:
  """A random-access source whose records are decoded once (:func:`decode_record`) and then
  served from RAM: for data sets small enough to hold decoded (the embedded synthetic ones).

  Each grain worker process holds its own copy, so use it with ``worker_count=0`` (the
  decoding it saves is what the workers would be for).
  """

  def __init__(self, source):
    self._source = source
    self._records: Dict[int, Dict[str, Any]] = {}

  def __len__(self) -> int:
    return len(self._source)

  def __repr__(self) -> str:  # grain checks a restored position against the source's repr
    return f"DecodedCache({self._source!r})"

  def __getitem__(self, index: int) -> Dict[str, Any]:
    index = int(index)
    if index not in self._records:
      self._records[index] = decode_record(self._source[index])
    return self._records[index]


class ProcessSliceSampler:
  """This process's share of a global stream: grain sampler over the positions of its slice of
  every global batch.

  Position ``i`` of this process's stream is global position
  ``(i // per_process) * global_batch + process_index * per_process + i % per_process`` of
  ``sampler`` (whose record and generator depend only on the global position), so the global
  batch of a step is the same for any number of processes.
  """

  def __init__(self, sampler, global_batch: int, per_process: int, process_index: int):
    self._sampler = sampler
    self._global_batch, self._per_process, self._process_index = global_batch, per_process, process_index

  def __getitem__(self, index: int):
    step, offset = divmod(int(index), self._per_process)
    position = step * self._global_batch + self._process_index * self._per_process + offset
    metadata = self._sampler[position]
    return grain.RecordMetadata(index=index, record_key=metadata.record_key, rng=metadata.rng)


class ClassBalancedSampler:
  """A grain sampler whose position ``i`` draws a record containing class ``i mod C``.

  Args:
    record_classes: per record, the classes it contains (records without any class are never
      drawn).
    num_classes: ``C``.
    seed: base seed; the record for position ``i`` and its augmentation generator depend only on
      ``(seed, i)``.
    num_epochs: ``None`` for an endless stream; else the stream has ``num_epochs * num_records``
      positions.
  """

  def __init__(self, record_classes: Sequence[Sequence[int]], num_classes: int, seed: int, num_epochs: Optional[int] = None):
    self._by_class = [np.asarray([r for r, cs in enumerate(record_classes) if c in set(cs)], np.int64) for c in range(num_classes)]
    self._classes = [c for c in range(num_classes) if len(self._by_class[c])]
    if not self._classes:
      raise ValueError("ClassBalancedSampler: no record contains any class.")
    self._seed = seed
    self._length = None if num_epochs is None else num_epochs * len(record_classes)

  def __getitem__(self, index: int):
    if self._length is not None and index >= self._length:
      raise IndexError(index)
    cls = self._classes[index % len(self._classes)]
    rng = np.random.default_rng([self._seed, index])
    candidates = self._by_class[cls]
    return grain.RecordMetadata(index=index, record_key=int(candidates[rng.integers(len(candidates))]),
                                rng=np.random.Generator(np.random.Philox(key=[self._seed, index])))


def record_classes(source, drop_labels: Sequence[int] = ()) -> list:
  """Per record of ``source``, the sorted classes it contains (for :class:`ClassBalancedSampler`).

  Reads every record once (labels only are kept).
  """
  out = []
  for i in range(len(source)):
    record = source[i]
    labels = np.asarray(record["labels"] if _is_decoded(record) else record["objects"]["label"], np.int64).reshape(-1)
    out.append(sorted(set(int(l) for l in labels) - set(int(d) for d in drop_labels)))
  return out


class RandomExampleMap(grain.RandomMapTransform):
  """Applies an :class:`ExampleTransform` with grain's per-record generator (picklable for workers)."""

  def __init__(self, transform: ExampleTransform):
    self.transform = transform

  def random_map(self, element, rng: np.random.Generator):
    return self.transform(element, rng)


def _ensure_absl_flags_parsed() -> None:
  # grain's worker processes read absl flags; a program that parses its own FlagValues (ours)
  # leaves the global FLAGS unparsed.
  from absl import flags

  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


class StreamingLoader:
  """Batches from a random-access source through grain; iterate it, checkpoint :meth:`get_state`.

  Args:
    source: random access (``len``, ``[i]``), e.g. ``tfds.data_source(...)``, or a
      :class:`DecodedCache` of one.
    batch_size: examples per batch on this host (global batch / ``jax.process_count()``).
    transform: the per-record :class:`ExampleTransform`.
    seed: shuffling and augmentation seed.
    worker_count: grain worker processes (0: in the calling process).
    shuffle: shuffle records each epoch.
    num_epochs: ``None`` repeats forever.
    class_balanced: ``(record_classes, num_classes)`` for :class:`ClassBalancedSampler`, or None.
    shard_by_process: read only this host's slice of every global batch
      (:class:`ProcessSliceSampler`, ``jax.process_index()`` of ``jax.process_count()``).
  """

  def __init__(self, source, batch_size: int, transform: ExampleTransform, seed: int = 0, worker_count: int = 0,
               shuffle: bool = True, num_epochs: Optional[int] = None, class_balanced=None,
               shard_by_process: bool = True, worker_buffer_size: int = 2):
    _ensure_absl_flags_parsed()
    if class_balanced is not None:
      record_classes, num_classes = class_balanced
      sampler = ClassBalancedSampler(record_classes, num_classes, seed, num_epochs)
    else:
      sampler = grain.IndexSampler(len(source), shard_options=grain.NoSharding(), shuffle=shuffle, num_epochs=num_epochs,
                                   seed=seed)
    if shard_by_process:
      import jax

      processes = jax.process_count()
      if processes > 1:
        sampler = ProcessSliceSampler(sampler, batch_size * processes, batch_size, jax.process_index())
    self._loader = grain.DataLoader(
        data_source=source, sampler=sampler,
        operations=[RandomExampleMap(transform), grain.Batch(batch_size, drop_remainder=True)],
        worker_count=worker_count, worker_buffer_size=worker_buffer_size, shard_options=grain.NoSharding(),
    )
    self._iterator = iter(self._loader)

  def __iter__(self) -> Iterator[Dict[str, np.ndarray]]:
    return self

  def __next__(self) -> Dict[str, np.ndarray]:
    batch = next(self._iterator)
    return {k: np.asarray(batch[k]) for k in BATCH_KEYS + MASK_KEYS if k in batch}

  def get_state(self) -> str:
    """JSON text of the iterator position (store it beside a checkpoint)."""
    state = self._iterator.get_state()
    return state.decode("utf-8") if isinstance(state, bytes) else json.dumps(state)

  def set_state(self, state: str) -> None:
    """Continues from a position returned by :meth:`get_state`."""
    self._iterator.set_state(state.encode("utf-8"))


def check_options(data) -> None:
  """Refuses a ``data`` config section whose augmentation or sampling settings the pipeline
  could not carry out as written, naming each setting and the fix (every one that passes acts).

  Raises:
    ValueError: ``data.pipeline`` (the in-memory loader is gone); a masked crop larger than
      ``data.image_size``; ``data.rotate90`` with a non-square ``data.image_size`` and no crop (a
      rotated image would not fit); ``data.brightness`` outside ``[0, 1)``; a negative
      ``data.worker_count``; ``data.cache_in_memory`` with worker processes.
  """
  problems = []
  if "pipeline" in data:
    problems.append(f"data.pipeline={data['pipeline']!r}: there is one input pipeline (grain) for every data set now; "
                    "delete the setting (data.cache_in_memory=True keeps a small data set's decoded records in RAM)")
  height, width = (int(v) for v in data["image_size"])
  crop = int(data.get("crop_size", 0))
  if crop < 0 or crop > min(height, width):
    problems.append(f"data.crop_size={crop}: a masked crop must fit in data.image_size {height}x{width}; use a crop "
                    f"size between 1 and {min(height, width)} (0: no crop)")
  if data.get("rotate90") and not crop and height != width:
    problems.append(f"data.rotate90=True with data.image_size {height}x{width}: an image turned by 90 degrees would not "
                    "fit; use a square data.image_size or a data.crop_size")
  if not 0.0 <= float(data.get("rotate_degrees", 0.0)) <= 180.0:
    problems.append(f"data.rotate_degrees={data['rotate_degrees']}: the angle is drawn from [-d, d]; use 0 <= d <= 180 (0: off)")
  zoom = int(data.get("zoom_crop", 0))
  if zoom < 0 or 2 * zoom >= min(height, width):
    problems.append(f"data.zoom_crop={zoom}: at most that many px are cut from every side; use 0 <= c < {min(height, width) // 2}"
                    " (0: off)")
  mosaic = float(data.get("mosaic", 0.0))
  if not 0.0 <= mosaic <= 1.0:
    problems.append(f"data.mosaic={mosaic}: it is the probability of a mosaic; use 0 <= p <= 1 (0: off)")
  elif mosaic and data.get("with_masks"):
    problems.append("data.mosaic with lesion masks (data.with_masks): the mosaic does not carry polygons; use a box "
                    "config or data.mosaic=0")
  brightness = float(data.get("brightness", 0.0))
  if not 0.0 <= brightness < 1.0:
    problems.append(f"data.brightness={brightness}: the factor is drawn from [1 - b, 1 + b]; use 0 <= b < 1 (0: off)")
  resize_min, resize_max = resize.configured_sizes(data)
  try:
    resize.configured_style(data)
    if resize.resize_enabled(resize_min, resize_max) and resize_max > min(height, width):
      problems.append(f"data.resize_max_size={resize_max}: a resized image's long side can reach it, so it must fit in "
                      f"data.image_size {height}x{width}; raise data.image_size or lower data.resize_max_size")
  except ValueError as e:
    problems.append(str(e).rstrip("."))
  workers = int(data.get("worker_count", 0))
  if workers < 0:
    problems.append(f"data.worker_count={workers}: use 0 (in the training process) or more worker processes")
  if data.get("cache_in_memory") and workers:
    problems.append(f"data.cache_in_memory=True with data.worker_count={workers}: every worker process would decode "
                    "and hold its own copy of the data set; set data.worker_count=0 to cache, or turn the cache off")
  if problems:
    raise ValueError("; ".join(problems) + ".")
