"""A two-stage detector (Faster R-CNN with a vanilla RPN or SADH + NWD head) assembled from a spec.

``TwoStageDetector`` is a Flax module with two entry points:

- ``model.apply(variables, images, gt_boxes, gt_labels, gt_valid, key, method="losses")``
  returns the dictionary of training losses;
- ``model.apply(variables, images, method="predict")`` returns final detections and the
  proposals they came from.

Everything the model does is in :class:`DetectorSpec` (built from the ``model`` section of a
config by :func:`spec_from_config`), whose defaults are the SADH paper's AcneSCU setting.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Mapping, NamedTuple, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from acne_jax.models import bbox_head
from acne_jax.models.fpn import FPN
from acne_jax.models.proposals import Proposals, generate_proposals
from acne_jax.models.resnet import ResNet
from acne_jax.models.rpn import RPNHead, SADHHead
from acne_jax.models.rpn_loss import rpn_losses
from acne_jax.ops import anchors as anchor_ops

RPN_HEADS = ("rpn", "sadh")


@dataclasses.dataclass(frozen=True)
class DetectorSpec:
  """Every setting of the detector; defaults are the SADH paper's (AcneSCU, section 4.2)."""

  num_classes: int = 10
  # Backbone and neck.
  depth: int = 50
  width: int = 64
  norm: str = "frozen_bn"
  frozen_stages: int = -1
  zero_init_residual: bool = False
  fpn_channels: int = 256
  # RPN.
  rpn_head: str = "sadh"  # "rpn" (vanilla) or "sadh"
  with_nwd: bool = True
  sadh_cls_kernel: int = 1
  gn_groups: int = 32
  anchor_strides: Tuple[int, ...] = (4, 8, 16, 32)
  anchor_scales: Tuple[float, ...] = (8.0,)
  anchor_ratios: Tuple[float, ...] = (0.5, 1.0, 2.0)
  rpn_pos_iou: float = 0.5
  rpn_neg_iou: float = 0.3
  rpn_min_pos_iou: float = 0.3
  rpn_num_samples: int = 256
  rpn_positive_fraction: float = 0.5
  nwd_constant: float = 32.0
  nwd_loss_weight: float = 1.0
  nwd_score_weight: float = 1.0
  train_nms_pre: int = 2000
  train_max_proposals: int = 1000
  test_nms_pre: int = 2000
  test_max_proposals: int = 1000
  proposal_nms_iou: float = 0.7
  train_proposal_min_size: float = 0.0
  test_proposal_min_size: float = 10.0
  # R-CNN.
  roi_size: int = 7
  roi_sampling_ratio: int = 0
  roi_aligned: bool = True
  roi_max_sampling_ratio: int = 4  # static cap of the adaptive grid; exact up to this (ops/roi_align.py)
  fc_dim: int = 1024
  rcnn_pos_iou: float = 0.5
  rcnn_neg_iou: float = 0.5
  rcnn_min_pos_iou: float = 0.5
  rcnn_num_samples: int = 512
  rcnn_positive_fraction: float = 0.25
  score_threshold: float = 0.05
  detection_nms_iou: float = 0.5
  max_detections: int = 200
  detection_pre_nms_top_k: int = 4000

  def __post_init__(self):
    if self.rpn_head not in RPN_HEADS:
      raise ValueError(f"model.rpn_head must be one of {RPN_HEADS}; got {self.rpn_head!r}.")
    if self.fpn_channels % self.gn_groups and self.rpn_head == "sadh":
      raise ValueError(f"model.fpn_channels ({self.fpn_channels}) must be divisible by model.gn_groups ({self.gn_groups}) for the SADH head.")


def spec_from_config(model_config: Mapping[str, Any]) -> DetectorSpec:
  """Builds a :class:`DetectorSpec` from a config section, rejecting unknown keys by name."""
  known = {f.name for f in dataclasses.fields(DetectorSpec)}
  values = dict(model_config)
  unknown = sorted(set(values) - known)
  if unknown:
    raise ValueError(f"unknown model config key(s) {unknown}; known keys: {sorted(known)}.")
  for name in ("anchor_strides", "anchor_scales", "anchor_ratios"):
    if name in values:
      values[name] = tuple(values[name])
  return DetectorSpec(**values)


class Prediction(NamedTuple):
  detections: bbox_head.Detections
  proposals: Proposals


class TwoStageDetector(nn.Module):
  """Backbone -> FPN -> RPN/SADH head -> proposals -> RoIAlign -> Shared2FC box head."""

  spec: DetectorSpec
  train: bool = False
  dtype: jnp.dtype = jnp.float32

  def setup(self):
    s = self.spec
    self.backbone = ResNet(s.depth, s.width, s.norm, s.frozen_stages, s.zero_init_residual, self.train, self.dtype)
    self.neck = FPN(s.fpn_channels, add_p6=False, dtype=self.dtype)
    num_anchors = len(s.anchor_scales) * len(s.anchor_ratios)
    if s.rpn_head == "sadh":
      self.rpn = SADHHead(num_anchors, s.fpn_channels, s.gn_groups, s.sadh_cls_kernel, 3, s.with_nwd, self.dtype)
    else:
      self.rpn = RPNHead(num_anchors, s.fpn_channels, self.dtype)
    self.box_head = bbox_head.Shared2FCHead(s.num_classes, s.fc_dim, self.dtype)

  def _levels(self, images):
    pyramid = self.neck(self.backbone(images))
    levels = [pyramid[f"P{i + 2}"] for i in range(len(self.spec.anchor_strides))]
    return levels, self.rpn(levels)

  def anchors(self, image_size: Tuple[int, int]):
    s = self.spec
    return [jnp.asarray(a) for a in anchor_ops.multilevel_anchors(image_size, s.anchor_strides, s.anchor_scales, s.anchor_ratios)]

  def __call__(self, images: jnp.ndarray) -> Prediction:
    return self.predict(images)

  def losses(self, images, gt_boxes, gt_labels, gt_valid, key) -> Dict[str, jnp.ndarray]:
    """Training losses.

    Args:
      images: ``[B, H, W, 3]`` float, normalised.
      gt_boxes: ``[B, G, 4]`` float x1y1x2y2; gt_labels: ``[B, G]`` int; gt_valid: ``[B, G]`` bool.
      key: PRNG key for the samplers.

    Returns:
      ``{"rpn_cls", "rpn_bbox", ["rpn_nwd"], "rcnn_cls", "rcnn_bbox"}`` scalars.
    """
    s = self.spec
    image_size = images.shape[1:3]
    levels, predictions = self._levels(images)
    anchors = self.anchors(image_size)
    rpn_key, rcnn_key = jax.random.split(key)
    out = rpn_losses(
        rpn_key, predictions, anchors, gt_boxes, gt_valid, s.rpn_pos_iou, s.rpn_neg_iou, s.rpn_min_pos_iou,
        s.rpn_num_samples, s.rpn_positive_fraction, s.nwd_constant, s.nwd_loss_weight,
    )
    proposals = generate_proposals(
        predictions, anchors, image_size, s.train_nms_pre, s.train_max_proposals, s.proposal_nms_iou,
        s.train_proposal_min_size, s.nwd_score_weight,
    )
    rois = bbox_head.sample_rois(
        rcnn_key, proposals.boxes, proposals.valid, gt_boxes, gt_labels, gt_valid, s.num_classes,
        s.rcnn_pos_iou, s.rcnn_neg_iou, s.rcnn_min_pos_iou, s.rcnn_num_samples, s.rcnn_positive_fraction,
    )
    pooled = bbox_head.pool_rois(levels, rois.boxes, s.anchor_strides, s.roi_size, s.roi_sampling_ratio, s.roi_aligned, s.roi_max_sampling_ratio)
    class_logits, deltas = self.box_head(pooled)
    out.update(bbox_head.rcnn_losses(class_logits, deltas, rois))
    return out

  def predict(self, images: jnp.ndarray) -> Prediction:
    """Detections for ``[B, H, W, 3]`` normalised images (see :class:`bbox_head.Detections`)."""
    s = self.spec
    image_size = images.shape[1:3]
    levels, predictions = self._levels(images)
    proposals = generate_proposals(
        predictions, self.anchors(image_size), image_size, s.test_nms_pre, s.test_max_proposals,
        s.proposal_nms_iou, s.test_proposal_min_size, s.nwd_score_weight,
    )
    pooled = bbox_head.pool_rois(levels, proposals.boxes, s.anchor_strides, s.roi_size, s.roi_sampling_ratio, s.roi_aligned, s.roi_max_sampling_ratio)
    class_logits, deltas = self.box_head(pooled)
    detections = bbox_head.detect(
        class_logits, deltas, proposals.boxes, proposals.valid, image_size, s.score_threshold,
        s.detection_nms_iou, s.max_detections, s.detection_pre_nms_top_k,
    )
    return Prediction(detections, proposals)
