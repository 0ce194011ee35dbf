"""Padded, static-shape batches from a data set held in memory.

Small data sets (the embedded synthetic one, fixtures, a validation split of crops) fit in
host memory; this loader decodes every record once and then serves batches as pure functions
of ``(seed, step)``: the batch of global step ``s`` is the same whether or not the run was
interrupted before it, so resuming needs nothing but the step number.

Batch layout (shared with the streaming pipeline of ``acne_jax.data.pipeline``):

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

from acne_jax.data.synthetic import decode_record


@dataclasses.dataclass
class InMemoryDataset:
  """Decoded images and annotations of one split.

  Attributes:
    images: ``[N, H, W, 3]`` uint8, padded to a common size.
    boxes: ``[N, G, 4]`` float32; labels: ``[N, G]`` int32 (-1 padding); valid: ``[N, G]`` bool.
    image_ids: ``[N]`` int64.
    image_sizes: ``[N, 2]`` int32 original ``(height, width)``.
    name: what the data is, for messages.
    masks: ``[N, G, M, M]`` uint8 lesion mask bitmaps and mask_frames ``[N, G, 3]`` float32
      (``acne_jax.ops.mask_targets``), or ``None`` when loaded without ``mask_size``.
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
  ) -> "InMemoryDataset":
    """Decodes records (TFDS source items or generator dicts) into padded arrays (and, with
    ``mask_size > 0``, each lesion's mask bitmap from its polygon).

    Raises:
      ValueError: naming the record when an image is larger than ``image_size`` or has more
        than ``max_boxes`` boxes (raise ``data.max_boxes`` or crop the images).
    """
    n = len(records)
    height, width = image_size
    images = np.zeros((n, height, width, 3), np.uint8)
    boxes = np.zeros((n, max_boxes, 4), np.float32)
    labels = np.full((n, max_boxes), -1, np.int32)
    image_ids = np.zeros((n,), np.int64)
    sizes = np.zeros((n, 2), np.int32)
    masks = np.zeros((n, max_boxes, mask_size, mask_size), np.uint8) if mask_size else None
    frames = np.tile(np.asarray([0.0, 0.0, 1.0], np.float32), (n, max_boxes, 1)) if mask_size else None
    for i in range(n):
      record = decode_record(records[i])
      image = record["image"]
      h, w = image.shape[:2]
      if h > height or w > width:
        raise ValueError(
            f"{name}: image {record['file_name'] or i} is {h}x{w}, larger than data.image_size {height}x{width}; "
            "raise data.image_size or use masked crops."
        )
      keep = ~np.isin(record["labels"], np.asarray(drop_labels, np.int32))
      k = int(keep.sum())
      if k > max_boxes:
        raise ValueError(
            f"{name}: image {record['file_name'] or i} has {k} boxes, more than data.max_boxes={max_boxes}; "
            "raise data.max_boxes."
        )
      images[i, :h, :w] = image
      boxes[i, :k] = record["boxes"][keep]
      labels[i, :k] = record["labels"][keep]
      image_ids[i] = record["image_id"]
      sizes[i] = (h, w)
      if mask_size:
        from acne_jax.data.pipeline import lesion_masks

        polygons = [p for p, kept in zip(record["polygons"], keep) if kept] if len(record["polygons"]) == len(keep) else []
        masks[i, :k], frames[i, :k] = lesion_masks(polygons, record["boxes"][keep], mask_size,
                                                   f"{name}: {record['file_name'] or i}")
    return cls(images, boxes, labels, labels >= 0, image_ids, sizes, name, masks, frames)

  def train_batch(self, step: int, batch_size: int, seed: int, hflip: bool = True) -> Dict[str, np.ndarray]:
    """The batch of global step ``step``: epoch-wise shuffling, optional horizontal flips.

    Epoch ``e`` visits the images in the permutation drawn from ``(seed, e)``; a step's images
    are the next ``batch_size`` of that sequence (wrapping into the next epoch).
    """
    n = len(self)
    positions = step * batch_size + np.arange(batch_size)
    epochs, offsets = positions // n, positions % n
    index = np.array([_permutation(seed, e, n)[o] for e, o in zip(epochs, offsets)])
    batch = self._gather(index)
    if hflip:
      flip = np.random.default_rng([seed, step, 1]).uniform(size=batch_size) < 0.5
      batch = _flip_horizontal(batch, flip, self.image_sizes[index, 1])
    return batch

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


_PERMUTATIONS: Dict[Tuple[int, int, int], np.ndarray] = {}


def _permutation(seed: int, epoch: int, n: int) -> np.ndarray:
  key = (seed, int(epoch), n)
  if key not in _PERMUTATIONS:
    if len(_PERMUTATIONS) > 8:
      _PERMUTATIONS.clear()
    _PERMUTATIONS[key] = np.random.default_rng([seed, int(epoch)]).permutation(n)
  return _PERMUTATIONS[key]


def _flip_horizontal(batch: Dict[str, np.ndarray], flip: np.ndarray, widths: np.ndarray) -> Dict[str, np.ndarray]:
  """Mirrors the chosen images about their own width (padding stays at the right)."""
  images = batch["image"].copy()
  boxes = batch["boxes"].copy()
  for i in np.flatnonzero(flip):
    w = int(widths[i])
    images[i, :, :w] = images[i, :, :w][:, ::-1]
    x1 = boxes[i, :, 0].copy()
    boxes[i, :, 0] = np.where(batch["valid"][i], w - boxes[i, :, 2], 0.0)
    boxes[i, :, 2] = np.where(batch["valid"][i], w - x1, 0.0)
  out = {**batch, "image": images, "boxes": boxes}
  if "masks" in batch:
    # A bitmap over [x0, x0 + M s] mirrors to one over [w - x0 - M s, w - x0], columns reversed.
    masks, frames = batch["masks"].copy(), batch["mask_frames"].copy()
    for i in np.flatnonzero(flip):
      w, size = int(widths[i]), masks.shape[-1]
      masks[i] = masks[i][..., ::-1]
      frames[i, :, 0] = w - frames[i, :, 0] - size * frames[i, :, 2]
    out.update(masks=masks, mask_frames=frames)
  return out
