"""A two-stage detector assembled from a :class:`~acne_jax.models.specs.DetectorSpec`.

Backbone (ResNet) -> neck (FPN) -> RPN head (vanilla or SADH, optionally with the NWD branch)
-> proposals -> RoI head (box: Faster R-CNN; mask: Mask R-CNN; cpm: CPM R-CNN's cascade grid
heads), each built from its own
section of the spec. ``TwoStageDetector`` is a Flax module with two entry points:

- ``model.apply(variables, images, gt_boxes, gt_labels, gt_valid, key, method="losses")``
  (plus ``gt_masks=``, ``gt_mask_frames=`` for a mask head) returns the training losses;
- ``model.apply(variables, images, method="predict")`` returns final detections, the
  proposals they came from, and masks when the RoI head makes them.

The RPN head and the RoI head are chosen by the visible dictionaries below (no registry filled
by imports); the RoI head seam is described in :mod:`acne_jax.models.roi_heads`.
"""

from __future__ import annotations

from typing import Dict, NamedTuple, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from acne_jax.models import bbox_head
from acne_jax.models.cascade import CPMRoIHead
from acne_jax.models.fpn import FPN
from acne_jax.models.mask_head import MaskRoIHead
from acne_jax.models.proposals import Proposals, generate_proposals
from acne_jax.models.resnet import ResNet
from acne_jax.models.roi_heads import BoxRoIHead, GroundTruth
from acne_jax.models.rpn import RPNHead, SADHHead
from acne_jax.models.rpn_loss import rpn_losses
from acne_jax.models.specs import DetectorSpec, spec_from_config  # noqa: F401  (spec_from_config re-exported)
from acne_jax.ops import anchors as anchor_ops

ROI_HEADS = {"box": BoxRoIHead, "mask": MaskRoIHead, "cpm": CPMRoIHead}


class Prediction(NamedTuple):
  """``detections`` (:class:`bbox_head.Detections`), ``proposals`` and ``masks``
  (``[B, D, m, m]`` float32 probabilities over each detection's box, or ``None``)."""

  detections: bbox_head.Detections
  proposals: Proposals
  masks: Optional[jnp.ndarray] = None


class TwoStageDetector(nn.Module):
  """Backbone -> FPN -> RPN/SADH head -> proposals -> RoI head."""

  spec: DetectorSpec
  train: bool = False

  @property
  def dtype(self) -> jnp.dtype:
    """Computation dtype of convolutions and matmuls (``model.compute_dtype``); every head's
    outputs are float32 whatever it is."""
    return jnp.dtype(self.spec.compute_dtype)

  def setup(self):
    s = self.spec
    b = s.backbone
    self.backbone = ResNet(b.depth, b.width, b.norm, b.frozen_stages, b.zero_init_residual, self.train, self.dtype,
                           tuple(b.deformable_stages))
    self.neck = FPN(s.neck.channels, s.neck.extra_level, dtype=self.dtype)
    r = s.rpn
    num_anchors = len(r.anchor_scales) * len(r.anchor_ratios)
    if r.head == "sadh":
      self.rpn = SADHHead(num_anchors, s.neck.channels, r.gn_groups, r.cls_kernel, r.reg_kernel, r.with_nwd, self.dtype)
    else:
      self.rpn = RPNHead(num_anchors, s.neck.channels, r.with_nwd, self.dtype)
    self.roi_head = ROI_HEADS[s.roi_head.type](s.roi_head, self.dtype)

  def _features(self, images):
    """``(RoI levels [P2..P5], RPN levels [P2..], RPN predictions per level)``."""
    pyramid = self.neck(self.backbone(images))
    rpn_levels = [pyramid[f"P{i + 2}"] for i in range(len(self.spec.rpn.anchor_strides))]
    roi_levels = [pyramid[f"P{i + 2}"] for i in range(4)]
    return roi_levels, rpn_levels, self.rpn(rpn_levels)

  def _levels(self, images):
    """``(RPN levels, RPN predictions)`` (the paper analyses read these)."""
    _, rpn_levels, predictions = self._features(images)
    return rpn_levels, predictions

  def anchors(self, image_size: Tuple[int, int]):
    r = self.spec.rpn
    return [jnp.asarray(a) for a in anchor_ops.multilevel_anchors(image_size, r.anchor_strides, r.anchor_scales, r.anchor_ratios,
                                                                                 round_base=r.anchor_round,
                                                                                 strides_from_sizes=r.anchor_steps_from_sizes)]

  def _proposals(self, predictions, image_size, training: bool) -> Proposals:
    r = self.spec.rpn
    nms_pre, max_proposals, min_size = ((r.train_nms_pre, r.train_max_proposals, r.train_min_size) if training
                                        else (r.test_nms_pre, r.test_max_proposals, r.test_min_size))
    return generate_proposals(predictions, self.anchors(image_size), image_size, nms_pre, max_proposals, r.nms_iou, min_size,
                              r.nwd_score_weight, r.min_size_inclusive)

  def __call__(self, images: jnp.ndarray) -> Prediction:
    return self.predict(images)

  def losses(self, images, gt_boxes, gt_labels, gt_valid, key, gt_masks=None, gt_mask_frames=None) -> Dict[str, jnp.ndarray]:
    """Training losses.

    Args:
      images: ``[B, H, W, 3]`` float, normalised.
      gt_boxes: ``[B, G, 4]`` float x1y1x2y2; gt_labels: ``[B, G]`` int; gt_valid: ``[B, G]`` bool.
      key: PRNG key for the samplers.
      gt_masks, gt_mask_frames: ``[B, G, M, M]`` uint8 and ``[B, G, 3]`` (mask head only; see
        :class:`acne_jax.models.roi_heads.GroundTruth`).

    Returns:
      ``{"rpn_cls", "rpn_bbox", ["rpn_nwd"]}`` and the RoI head's scalars: ``"rcnn_cls", "rcnn_bbox"``
      (box), plus ``"rcnn_mask"`` (mask); ``"rcnn_cls", "grid_stage1".., ["ism"], ["rsm"]`` (cpm).
    """
    r = self.spec.rpn
    image_size = images.shape[1:3]
    levels, _, predictions = self._features(images)
    rpn_key, roi_key = jax.random.split(key)
    out = rpn_losses(rpn_key, predictions, self.anchors(image_size), gt_boxes, gt_valid, r.pos_iou, r.neg_iou, r.min_pos_iou,
                     r.num_samples, r.positive_fraction, r.nwd_constant, r.nwd_loss_weight, r.nwd_target, r.nwd_loss)
    proposals = self._proposals(predictions, image_size, training=True)
    gt = GroundTruth(gt_boxes, gt_labels, gt_valid, gt_masks, gt_mask_frames)
    out.update(self.roi_head.losses(levels, proposals, gt, roi_key))
    return out

  def predict(self, images: jnp.ndarray) -> Prediction:
    """Detections for ``[B, H, W, 3]`` normalised images (see :class:`Prediction`)."""
    image_size = images.shape[1:3]
    levels, _, predictions = self._features(images)
    proposals = self._proposals(predictions, image_size, training=False)
    output = self.roi_head.predict(levels, proposals, image_size)
    return Prediction(output.detections, proposals, output.masks)
