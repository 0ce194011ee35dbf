"""An evaluation split held in memory: padded, static-shape batches in order, and the ground truth.

Training streams every data set through the grain pipeline (:mod:`acne_jax.data.pipeline`);
evaluation holds the one split it scores (the test split, or the calibration split) decoded,
prepared per record by the pipeline's own :meth:`ExampleTransform.prepare <acne_jax.data.pipeline.ExampleTransform.prepare>`
(decode, drop classes, resize) and padded like a training batch, because the COCO evaluation
needs every image's ground truth at once.

With a torchvision resize (``data.resize_min_size`` / ``data.resize_max_size``,
:mod:`acne_jax.data.resize`) the stored images and ground truth are the resized ones; the
original sizes, boxes (and masks) and each image's ratios are kept beside them so that
evaluation can score in the original images' pixels (:meth:`InMemoryDataset.ground_truth_geometry`,
:meth:`InMemoryDataset.boxes_to_original`).

Batch layout (shared with the training pipeline of ``acne_jax.data.pipeline``):

- ``image``: ``[B, H, W, 3]`` uint8 RGB, zero-padded at the bottom/right to ``image_size``;
- ``boxes``: ``[B, G, 4]`` float32 x1y1x2y2 pixels, ``G = max_boxes``, padding rows zero;
- ``labels``: ``[B, G]`` int32 class ids, -1 for padding;
- ``valid``: ``[B, G]`` bool;
- ``image_id``: ``[B]`` int64; ``image_valid``: ``[B]`` bool (False for the padding images that
  complete the last evaluation batch);
- with masks: ``masks`` ``[B, G, M, M]`` uint8 and ``mask_frames`` ``[B, G, 3]`` float32
  (``acne_jax.ops.mask_targets``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Iterator, Optional, Sequence, Tuple

import numpy as np

from acne_jax.data import resize as resize_lib


@dataclasses.dataclass
class InMemoryDataset:
  """Decoded images and annotations of one split.

  Attributes:
    images: ``[N, H, W, 3]`` uint8, padded to a common size.
    boxes: ``[N, G, 4]`` float32; labels: ``[N, G]`` int32 (-1 padding); valid: ``[N, G]`` bool.
    image_ids: ``[N]`` int64.
    image_sizes: ``[N, 2]`` int32 ``(height, width)`` of each image in ``images`` before
      padding (the decoded image's size, or its size after the resize when there is one).
    name: what the data is, for messages.
    masks: ``[N, G, M, M]`` uint8 lesion mask bitmaps and mask_frames ``[N, G, 3]`` float32
      (``acne_jax.ops.mask_targets``), or ``None`` when loaded without ``mask_size``.
    scale: ``[N, 2]`` float32 ``(ratio_h, ratio_w)`` = resized / original size per axis, the
      factors the ground truth was multiplied by (``resize_boxes``); ``None`` without a resize
      (then every ``original_*`` field is ``None`` too).
    original_sizes: ``[N, 2]`` int32 decoded ``(height, width)`` before the resize.
    original_boxes: ``[N, G, 4]`` float32 ground truth in original pixels (same rows as ``boxes``).
    original_masks, original_mask_frames: the masks rasterised in original pixels (with
      ``mask_size`` only).
  """

  images: np.ndarray
  boxes: np.ndarray
  labels: np.ndarray
  valid: np.ndarray
  image_ids: np.ndarray
  image_sizes: np.ndarray
  name: str = "dataset"
  masks: Optional[np.ndarray] = None
  mask_frames: Optional[np.ndarray] = None
  scale: Optional[np.ndarray] = None
  original_sizes: Optional[np.ndarray] = None
  original_boxes: Optional[np.ndarray] = None
  original_masks: Optional[np.ndarray] = None
  original_mask_frames: Optional[np.ndarray] = None

  def __len__(self) -> int:
    return self.images.shape[0]

  @classmethod
  def from_records(
      cls,
      records: Sequence[Any],
      image_size: Tuple[int, int],
      max_boxes: int,
      drop_labels: Sequence[int] = (),
      name: str = "dataset",
      mask_size: int = 0,
      resize_min_size: int = 0,
      resize_max_size: int = 0,
      resize_style: str = "torchvision",
  ) -> "InMemoryDataset":
    """Decodes records (TFDS source items or generator dicts) into padded arrays (and, with
    ``mask_size > 0``, each lesion's mask bitmap from its polygon).

    With ``resize_min_size`` and ``resize_max_size`` (both > 0) each image, its boxes and
    polygons are first resized like torchvision's detectors
    (:func:`acne_jax.data.resize.resize_example`); ``scale`` and the ``original_*`` fields then
    keep what evaluation needs to map back to the original pixels.

    Raises:
      ValueError: naming the record when an image (after the resize) is larger than
        ``image_size`` or has more than ``max_boxes`` boxes (raise ``data.max_boxes`` or crop the
        images); when only one of the resize sizes is set.
    """
    from acne_jax.data.pipeline import ExampleTransform, lesion_masks

    n = len(records)
    height, width = image_size
    images = np.zeros((n, height, width, 3), np.uint8)
    boxes = np.zeros((n, max_boxes, 4), np.float32)
    labels = np.full((n, max_boxes), -1, np.int32)
    image_ids = np.zeros((n,), np.int64)
    sizes = np.zeros((n, 2), np.int32)
    masks = np.zeros((n, max_boxes, mask_size, mask_size), np.uint8) if mask_size else None
    frames = np.tile(np.asarray([0.0, 0.0, 1.0], np.float32), (n, max_boxes, 1)) if mask_size else None
    resizing = resize_lib.resize_enabled(resize_min_size, resize_max_size)
    transform = ExampleTransform(image_size=tuple(image_size), max_boxes=max_boxes, drop_labels=tuple(drop_labels),
                                 resize_min_size=resize_min_size if resizing else 0,
                                 resize_max_size=resize_max_size if resizing else 0, resize_style=resize_style)
    if resizing:
      scale = np.ones((n, 2), np.float32)
      original_sizes = np.zeros((n, 2), np.int32)
      original_boxes = np.zeros((n, max_boxes, 4), np.float32)
      original_masks = np.zeros_like(masks) if mask_size else None
      original_frames = frames.copy() if mask_size else None
    for i in range(n):
      record = transform.prepare(records[i])
      image, record_boxes, polygons, original = record["image"], record["boxes"], record["polygons"], record["original"]
      k = len(record["labels"])
      resized_note = ""
      if resizing:
        scale[i] = record["scale"]
        resized_note = (f" after the resize from {original['size'][0]}x{original['size'][1]} (data.resize_min_size="
                        f"{resize_min_size}, data.resize_max_size={resize_max_size})")
      h, w = image.shape[:2]
      if h > height or w > width:
        raise ValueError(
            f"{name}: image {record['file_name'] or i} is {h}x{w}{resized_note}, larger than data.image_size "
            f"{height}x{width}; raise data.image_size or use masked crops."
        )
      if k > max_boxes:
        raise ValueError(
            f"{name}: image {record['file_name'] or i} has {k} boxes, more than data.max_boxes={max_boxes}; "
            "raise data.max_boxes."
        )
      images[i, :h, :w] = image
      boxes[i, :k] = record_boxes
      labels[i, :k] = record["labels"]
      image_ids[i] = record["image_id"]
      sizes[i] = (h, w)
      if mask_size:
        masks[i, :k], frames[i, :k] = lesion_masks(polygons, record_boxes, mask_size,
                                                   f"{name}: {record['file_name'] or i}")
      if resizing:
        original_sizes[i], original_boxes[i, :k] = original["size"], original["boxes"]
        if mask_size:
          original_masks[i, :k], original_frames[i, :k] = lesion_masks(original["polygons"], original["boxes"], mask_size,
                                                                       f"{name}: {record['file_name'] or i}")
    if not resizing:
      return cls(images, boxes, labels, labels >= 0, image_ids, sizes, name, masks, frames)
    return cls(images, boxes, labels, labels >= 0, image_ids, sizes, name, masks, frames, scale=scale,
               original_sizes=original_sizes, original_boxes=original_boxes, original_masks=original_masks,
               original_mask_frames=original_frames)

  @property
  def resized(self) -> bool:
    """Whether the images and ground truth were resized (``scale`` and ``original_*`` are set)."""
    return self.scale is not None

  def ground_truth_geometry(self) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray], Optional[np.ndarray]]:
    """``(sizes [N, 2], boxes [N, G, 4], masks [N, G, M, M] or None, mask_frames [N, G, 3] or None)``
    of the ground truth in the original images' pixels, for evaluation (rows as ``valid``): the
    stored arrays without a resize, the kept originals with one."""
    if not self.resized:
      return self.image_sizes, self.boxes, self.masks, self.mask_frames
    return self.original_sizes, self.original_boxes, self.original_masks, self.original_mask_frames

  def boxes_to_original(self, boxes: np.ndarray) -> np.ndarray:
    """Detections ``[N, D, 4]`` on this data set's images (in order) in the original images'
    pixels: clipped to each image as the model saw it (``image_sizes``, without the padding that
    fills ``data.image_size``), then, with a resize, mapped back
    (:func:`acne_jax.data.resize.boxes_to_original`), as torchvision's detectors and MMDetection
    clip before ``postprocess`` / ``rescale``."""
    sizes = np.asarray(self.image_sizes, np.float32)
    limits = np.stack([sizes[:, 1], sizes[:, 0]] * 2, axis=-1)[:, None, :]  # [N, 1, 4] (w, h, w, h)
    clipped = np.clip(np.asarray(boxes, np.float32), 0.0, limits)
    if not self.resized:
      return clipped
    return resize_lib.boxes_to_original(clipped, self.image_sizes, self.original_sizes)

  def eval_batches(self, batch_size: int) -> Iterator[Dict[str, np.ndarray]]:
    """All images once, in order; the last batch is padded with invalid images."""
    for start in range(0, len(self), batch_size):
      index = np.arange(start, start + batch_size)
      image_valid = index < len(self)
      batch = self._gather(np.minimum(index, len(self) - 1))
      batch["image_valid"] = image_valid
      batch["valid"] = batch["valid"] & image_valid[:, None]
      yield batch

  def _gather(self, index: np.ndarray) -> Dict[str, np.ndarray]:
    batch = {
        "image": self.images[index],
        "boxes": self.boxes[index],
        "labels": self.labels[index],
        "valid": self.valid[index],
        "image_id": self.image_ids[index],
        "image_valid": np.ones(len(index), bool),
    }
    if self.masks is not None:
      batch["masks"] = self.masks[index]
      batch["mask_frames"] = self.mask_frames[index]
    return batch


def steps_per_epoch(num_images: int, batch_size: int) -> int:
  """Steps to see every image once (rounded up)."""
  return max(1, -(-num_images // batch_size))
