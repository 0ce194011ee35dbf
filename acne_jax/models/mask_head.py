"""Mask R-CNN's mask branch (He et al., 2017), with MMDetection 2 ``FCNMaskHead`` semantics.

Training, on top of the box head's RoI sample (:class:`~acne_jax.models.roi_heads.BoxRoIHead`):

1. the positive RoIs of each image: the sampler puts positives first, so the first
   ``P = int(num_samples * positive_fraction)`` slots (128 of 512) hold every positive, with a
   validity mask (a static count, no gather of a data-dependent size);
2. multi-level RoIAlign ``14 x 14`` of those RoIs;
3. four 3x3 convs of 256 channels + ReLU, a 2x2 stride-2 transposed conv + ReLU, and a 1x1
   conv to one ``28 x 28`` logit map per class;
4. targets: each RoI's matched ground-truth mask cut over the RoI and binarised
   (:mod:`acne_jax.ops.mask_targets`, from per-box bitmaps, never full-image masks);
5. per-pixel sigmoid BCE on the ground-truth class's map only, averaged over the valid RoIs'
   pixels (``loss_mask``, weight 1).

Inference: the box head's final detections go through the same branch; each detection gets
its class's ``28 x 28`` probabilities (``Prediction.masks``). Pasting into the image
(:func:`paste_masks`) happens on the host, as COCO RLE.
"""

from __future__ import annotations

from typing import Dict, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from acne_jax.models import bbox_head
from acne_jax.models.layers import Conv
from acne_jax.models.proposals import Proposals
from acne_jax.models.roi_heads import BoxRoIHead, GroundTruth, RoIHeadOutput
from acne_jax.ops import data_axis
from acne_jax.ops import losses
from acne_jax.ops import mask_targets as target_ops

# Kaiming-normal fan-out (MMDetection initialises the deconv and the logits this way).
mask_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


class FCNMaskHead(nn.Module):
  """Attributes: ``num_classes`` ``K``, ``channels`` (256), ``num_convs`` (4)."""

  num_classes: int
  channels: int = 256
  num_convs: int = 4
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, roi_features: jnp.ndarray) -> jnp.ndarray:
    """Args: roi_features ``[R, s, s, C]``. Returns: ``[R, 2s, 2s, K]`` mask logits."""
    x = roi_features
    for i in range(self.num_convs):
      x = nn.relu(Conv(self.channels, (3, 3), padding=((1, 1), (1, 1)), kernel_init=mask_init, name=f"conv{i + 1}",
                          dtype=self.dtype)(x))
    x = nn.relu(nn.ConvTranspose(self.channels, (2, 2), strides=(2, 2), padding="VALID", kernel_init=mask_init, name="upsample",
                                 dtype=self.dtype)(x))
    return Conv(self.num_classes, (1, 1), kernel_init=mask_init, name="logits", dtype=self.dtype)(x).astype(jnp.float32)


def positive_slots(num_samples: int, positive_fraction: float) -> int:
  """How many leading sample slots can hold positives (the sampler's cap)."""
  return int(num_samples * positive_fraction)


def mask_loss(logits: jnp.ndarray, labels: jnp.ndarray, targets: jnp.ndarray, valid: jnp.ndarray) -> jnp.ndarray:
  """Sigmoid BCE on each RoI's own class map, averaged over the valid RoIs' pixels.

  Args:
    logits: ``[R, m, m, K]``; labels: ``[R]`` int class; targets: ``[R, m, m]`` in {0, 1};
    valid: ``[R]`` bool.

  Returns:
    Scalar (0 when no RoI is valid).
  """
  class_logits = jnp.take_along_axis(logits, jnp.clip(labels, 0, logits.shape[-1] - 1)[:, None, None, None], axis=-1)[..., 0]
  weight = jnp.broadcast_to(valid[:, None, None], targets.shape).astype(logits.dtype)
  avg_factor = jnp.maximum(data_axis.batch_sum(jnp.sum(weight)), 1.0)
  return losses.sigmoid_binary_cross_entropy(class_logits, targets, weight, reduction="sum") / avg_factor


class MaskRoIHead(BoxRoIHead):
  """The box head plus the mask branch: losses ``rcnn_cls``, ``rcnn_bbox``, ``rcnn_mask``;
  predictions with ``masks``."""

  def setup(self):
    super().setup()
    m = self.spec.mask
    self.mask_head = FCNMaskHead(self.spec.num_classes, m.channels, m.num_convs, self.dtype)

  def losses(self, levels: Sequence[jnp.ndarray], proposals: Proposals, gt: GroundTruth, key: jax.Array) -> Dict[str, jnp.ndarray]:
    if gt.masks is None or gt.mask_frames is None:
      raise ValueError("the mask head needs ground-truth masks: the data set's records must carry polygons "
                       "(data.with_masks is set for mask configs) and the batch 'masks' and 'mask_frames'.")
    s, m = self.spec, self.spec.mask
    rois = self.sample(key, proposals, gt)
    out = self.box_losses(levels, rois)
    slots = positive_slots(s.box.num_samples, s.box.positive_fraction)
    boxes = rois.boxes[:, :slots]
    valid = rois.positive[:, :slots] & rois.valid[:, :slots]
    labels = rois.labels[:, :slots]
    matched = rois.gt_index[:, :slots]
    logits = self.mask_head(self.pool(levels, boxes, m.roi_size))
    size = 2 * m.roi_size
    targets = jax.vmap(lambda masks, frames, b, i: target_ops.mask_targets(masks, frames, b, i, size))(
        gt.masks, gt.mask_frames, jax.lax.stop_gradient(boxes), matched)
    out["rcnn_mask"] = m.loss_weight * mask_loss(logits, labels.reshape(-1), targets.reshape(-1, size, size), valid.reshape(-1))
    return out

  def predict(self, levels: Sequence[jnp.ndarray], proposals: Proposals, image_size: Tuple[int, int]) -> RoIHeadOutput:
    detections = self.detect(levels, proposals, image_size)
    batch, per_image = detections.classes.shape
    logits = self.mask_head(self.pool(levels, detections.boxes, self.spec.mask.roi_size))
    class_logits = jnp.take_along_axis(logits, detections.classes.reshape(-1)[:, None, None, None], axis=-1)[..., 0]
    size = 2 * self.spec.mask.roi_size
    return RoIHeadOutput(detections, jax.nn.sigmoid(class_logits).reshape(batch, per_image, size, size))


def paste_mask(probabilities: np.ndarray, box: Sequence[float], height: int, width: int, threshold: float = 0.5) -> np.ndarray:
  """uint8 ``[height, width]`` image mask of one detection (MMDetection's ``_do_paste_mask``).

  Each image pixel centre ``(x + 0.5, y + 0.5)`` inside the box samples the ``m x m``
  probabilities bilinearly at ``((x + 0.5 - x1) / w * m - 0.5, ...)`` (``grid_sample`` with
  ``align_corners=False``, zeros outside), then ``>= threshold``.
  """
  out = np.zeros((height, width), np.uint8)
  window, top, left = paste_mask_window(probabilities, box, height, width, threshold)
  out[top:top + window.shape[0], left:left + window.shape[1]] = window
  return out


def paste_mask_window(probabilities: np.ndarray, box: Sequence[float], height: int, width: int, threshold: float = 0.5):
  """:func:`paste_mask` over the box's pixels only: ``(uint8 window [h, w], top, left)`` (the
  mask is zero elsewhere), for whole photographs where an image-sized mask per lesion is waste."""
  probabilities = np.asarray(probabilities, np.float64)
  m = probabilities.shape[0]
  empty = (np.zeros((0, 0), np.uint8), 0, 0)
  x1, y1, x2, y2 = (float(v) for v in box)
  if x2 <= x1 or y2 <= y1:
    return empty
  c0, c1 = max(int(np.floor(x1)), 0), min(int(np.ceil(x2)), width)
  r0, r1 = max(int(np.floor(y1)), 0), min(int(np.ceil(y2)), height)
  if c1 <= c0 or r1 <= r0:
    return empty
  u = (np.arange(c0, c1) + 0.5 - x1) / (x2 - x1) * m - 0.5
  v = (np.arange(r0, r1) + 0.5 - y1) / (y2 - y1) * m - 0.5
  padded = np.pad(probabilities, 1)  # zeros outside, as grid_sample's padding_mode="zeros"

  def axis(t):
    t = np.clip(t, -1.0, m)  # beyond one cell outside, every neighbour is a zero of the padding
    lo = np.floor(t).astype(np.int64)
    return lo + 1, t - lo  # index into the padded map, weight of the next cell

  cols, wx = axis(u)
  rows, wy = axis(v)
  top = padded[rows][:, cols] * (1 - wx) + padded[rows][:, np.minimum(cols + 1, m + 1)] * wx
  bottom = padded[np.minimum(rows + 1, m + 1)][:, cols] * (1 - wx) + padded[np.minimum(rows + 1, m + 1)][:, np.minimum(cols + 1, m + 1)] * wx
  value = top * (1 - wy)[:, None] + bottom * wy[:, None]
  return (value >= threshold).astype(np.uint8), r0, c0
