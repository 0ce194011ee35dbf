"""The RoI-head seam: what every second stage offers the detector, and the box head behind it.

A two-stage detector differs from another mostly in what happens after the proposals. Every
RoI head is a Flax module with two methods, called by :class:`TwoStageDetector` in training and
inference alike:

- ``losses(levels, proposals, ground_truth, key) -> {name: scalar}``: sample RoIs from the
  proposals against the ground truth and return this head's losses;
- ``predict(levels, proposals, image_size) -> RoIHeadOutput``: final detections (and masks for a
  head that makes them).

``levels`` are the FPN maps ``[P2, P3, P4, P5]`` (strides :data:`ROI_FEATURE_STRIDES`; a P6 made
for the RPN is not pooled from, as in MMDetection and torchvision); ``proposals`` are the RPN's
:class:`~acne_jax.models.proposals.Proposals` (``boxes [B, P, 4]``, ``valid [B, P]``).

Heads: :class:`BoxRoIHead` (Faster R-CNN, here), ``mask_head.MaskRoIHead`` (Mask R-CNN) and
``cascade.CPMRoIHead`` (CPM R-CNN). The detector picks one by ``model.roi_head.type``.
"""

from __future__ import annotations

from typing import Dict, NamedTuple, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from acne_jax.models import bbox_head
from acne_jax.models.proposals import Proposals
from acne_jax.models.specs import RoIHeadSpec

ROI_FEATURE_STRIDES: Tuple[int, ...] = (4, 8, 16, 32)


class GroundTruth(NamedTuple):
  """Padded ground truth of a batch.

  Attributes:
    boxes: ``[B, G, 4]`` float32 x1y1x2y2 pixels.
    labels: ``[B, G]`` int32 in ``0..K-1`` (anything on padding rows).
    valid: ``[B, G]`` bool.
    masks: ``[B, G, M, M]`` uint8 mask bitmaps (255 inside), each over its own box's frame, or
      ``None`` (see ``acne_jax.ops.mask_targets``).
    mask_frames: ``[B, G, 3]`` float32 ``(x0, y0, scale)`` of each bitmap, or ``None``.
  """

  boxes: jnp.ndarray
  labels: jnp.ndarray
  valid: jnp.ndarray
  masks: Optional[jnp.ndarray] = None
  mask_frames: Optional[jnp.ndarray] = None


class RoIHeadOutput(NamedTuple):
  """What a head predicts for a batch.

  Attributes:
    detections: :class:`bbox_head.Detections` (``boxes [B, D, 4]``, ``scores``, ``classes``, ``valid``).
    masks: ``[B, D, m, m]`` float32 mask probabilities of each detection's class over its box,
      or ``None`` for a head without masks.
  """

  detections: bbox_head.Detections
  masks: Optional[jnp.ndarray] = None


class BoxRoIHead(nn.Module):
  """Faster R-CNN's second stage: RoI sampling, multi-level RoIAlign, the Shared2FC box head,
  its losses and inference (``bbox_head``)."""

  spec: RoIHeadSpec
  dtype: jnp.dtype = jnp.float32

  def setup(self):
    self.box_head = bbox_head.Shared2FCHead(self.spec.num_classes, self.spec.box.fc_dim, self.dtype)

  def pool(self, levels: Sequence[jnp.ndarray], boxes: jnp.ndarray, output_size: int) -> jnp.ndarray:
    """Multi-level RoIAlign of ``[B, S, 4]`` boxes -> ``[B * S, output_size, output_size, C]``."""
    s = self.spec
    return bbox_head.pool_rois(levels[:len(ROI_FEATURE_STRIDES)], boxes, ROI_FEATURE_STRIDES, output_size, s.sampling_ratio,
                               s.aligned, s.max_sampling_ratio, s.plus_one)

  def sample(self, key: jax.Array, proposals: Proposals, gt: GroundTruth) -> bbox_head.SampledRois:
    b = self.spec.box
    return bbox_head.sample_rois(key, proposals.boxes, proposals.valid, gt.boxes, gt.labels, gt.valid, self.spec.num_classes,
                                 b.pos_iou, b.neg_iou, b.min_pos_iou, b.num_samples, b.positive_fraction,
                                 plus_one=self.spec.plus_one)

  def box_losses(self, levels, rois: bbox_head.SampledRois) -> Dict[str, jnp.ndarray]:
    class_logits, deltas = self.box_head(self.pool(levels, rois.boxes, self.spec.roi_size))
    return bbox_head.rcnn_losses(class_logits, deltas, rois)

  def losses(self, levels: Sequence[jnp.ndarray], proposals: Proposals, gt: GroundTruth, key: jax.Array) -> Dict[str, jnp.ndarray]:
    """``{"rcnn_cls", "rcnn_bbox"}`` scalars."""
    return self.box_losses(levels, self.sample(key, proposals, gt))

  def detect(self, levels, proposals: Proposals, image_size: Tuple[int, int]) -> bbox_head.Detections:
    b = self.spec.box
    class_logits, deltas = self.box_head(self.pool(levels, proposals.boxes, self.spec.roi_size))
    return bbox_head.detect(class_logits, deltas, proposals.boxes, proposals.valid, image_size, b.score_threshold, b.nms_iou,
                            b.max_detections, b.pre_nms_top_k, min_size=b.min_size)

  def predict(self, levels: Sequence[jnp.ndarray], proposals: Proposals, image_size: Tuple[int, int]) -> RoIHeadOutput:
    return RoIHeadOutput(self.detect(levels, proposals, image_size))
