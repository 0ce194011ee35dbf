"""Faster R-CNN second stage: RoI sampling, the Shared2FC box head, its losses and inference.

Training (MMDetection ``StandardRoIHead`` semantics, as the SADH reference):

1. ground-truth boxes are appended to the proposals;
2. max-IoU assignment at 0.5/0.5 (with low-quality matches at 0.5);
3. 512 RoIs sampled per image, at most 25 % positive;
4. multi-level RoIAlign 7x7 (sampling ratio 0, aligned) -> flatten -> FC 1024 -> FC 1024 ->
   class logits (``K + 1``, background last) and class-specific deltas (``4 K``);
5. softmax cross-entropy over the sampled RoIs and L1 on the positives' deltas, both divided
   by the number of sampled RoIs; deltas normalised with stds (0.1, 0.1, 0.2, 0.2).

Inference: softmax scores, class-specific decode clipped to the image, per-class score
threshold (0.05), per-class NMS (0.5), the best ``max_per_image`` (200) detections.
"""

from __future__ import annotations

from typing import Dict, NamedTuple, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from acne_jax.ops import assign as assign_ops
from acne_jax.ops import data_axis
from acne_jax.ops import boxes as box_ops
from acne_jax.ops import losses
from acne_jax.ops import nms as nms_ops
from acne_jax.ops import roi_align as roi_ops
from acne_jax.ops import sample as sample_ops

RCNN_DELTA_STDS = (0.1, 0.1, 0.2, 0.2)


class Shared2FCHead(nn.Module):
  """Two shared fully connected layers, then class and box predictors.

  Attributes:
    num_classes: foreground classes ``K``.
    fc_dim: width of both FC layers (1024).
    with_box_regression: False gives a classifier only (CPM R-CNN's classification branch and
      resampling scoring module): ``deltas`` is then ``None``.
  """

  num_classes: int
  fc_dim: int = 1024
  dtype: jnp.dtype = jnp.float32
  with_box_regression: bool = True

  @nn.compact
  def __call__(self, roi_features: jnp.ndarray) -> Tuple[jnp.ndarray, jnp.ndarray]:
    """Args: roi_features ``[R, h, w, C]``.

    Returns:
      ``class_logits [R, K + 1]`` (index ``K`` is background) and ``deltas [R, K, 4]`` (or ``None``).
    """
    x = roi_features.reshape(roi_features.shape[0], -1)
    x = nn.relu(nn.Dense(self.fc_dim, name="fc1", dtype=self.dtype, kernel_init=nn.initializers.xavier_uniform())(x))
    x = nn.relu(nn.Dense(self.fc_dim, name="fc2", dtype=self.dtype, kernel_init=nn.initializers.xavier_uniform())(x))
    class_logits = nn.Dense(self.num_classes + 1, name="cls", dtype=self.dtype, kernel_init=nn.initializers.normal(0.01))(x)
    class_logits = class_logits.astype(jnp.float32)  # losses and detection are float32 whatever self.dtype
    if not self.with_box_regression:
      return class_logits, None
    deltas = nn.Dense(self.num_classes * 4, name="reg", dtype=self.dtype, kernel_init=nn.initializers.normal(0.001))(x)
    return class_logits, deltas.astype(jnp.float32).reshape(-1, self.num_classes, 4)


class SampledRois(NamedTuple):
  """RoIs sampled for the box head, per image.

  Attributes:
    boxes: ``[B, S, 4]`` float x1y1x2y2.
    valid: ``[B, S]`` bool.
    labels: ``[B, S]`` int32 class in ``0..K-1`` for positives, ``K`` (background) otherwise.
    positive: ``[B, S]`` bool.
    target_boxes: ``[B, S, 4]`` matched ground truth (the RoI itself where not positive).
    gt_index: ``[B, S]`` int32 index of the matched ground truth (meaningful for positives).
  """

  boxes: jnp.ndarray
  valid: jnp.ndarray
  labels: jnp.ndarray
  positive: jnp.ndarray
  target_boxes: jnp.ndarray
  gt_index: jnp.ndarray


def sample_rois(
    key: jax.Array,
    proposal_boxes: jnp.ndarray,
    proposal_valid: jnp.ndarray,
    gt_boxes: jnp.ndarray,
    gt_labels: jnp.ndarray,
    gt_valid: jnp.ndarray,
    num_classes: int,
    pos_iou_thr: float = 0.5,
    neg_iou_thr: float = 0.5,
    min_pos_iou: float = 0.5,
    num_samples: int = 512,
    positive_fraction: float = 0.25,
    add_gt_as_proposals: bool = True,
    plus_one: bool = False,
) -> SampledRois:
  """Steps 1-3 of training (module docstring) for a batch.

  Args:
    key: PRNG key.
    proposal_boxes: ``[B, P, 4]``; proposal_valid: ``[B, P]``.
    gt_boxes: ``[B, G, 4]``; gt_labels: ``[B, G]`` int in ``0..K-1``; gt_valid: ``[B, G]``.
    num_classes: ``K``.
    plus_one: IoU with the legacy ``+1`` box convention (Detectron, Pet): widths ``x2 - x1 + 1``.
    Other arguments: assigner and sampler settings.

  Returns:
    :class:`SampledRois` with ``S = num_samples``.
  """

  def one_image(image_key, boxes, valid, gts, labels, gvalid):
    if add_gt_as_proposals:
      boxes = jnp.concatenate([boxes, gts])
      valid = jnp.concatenate([valid, gvalid])
    boxes = jax.lax.stop_gradient(boxes)
    assignment = assign_ops.max_iou_assign(box_ops.plus_one(boxes, plus_one), box_ops.plus_one(gts, plus_one), gvalid, pos_iou_thr,
                                           neg_iou_thr, min_pos_iou, candidate_valid=valid)
    sample = sample_ops.random_sample(image_key, assignment.positive, assignment.negative, num_samples, positive_fraction)
    rois = boxes[sample.indices]
    matched = assignment.gt_index[sample.indices]
    labels = jnp.where(sample.positive, labels[matched], num_classes).astype(jnp.int32)
    targets = jnp.where(sample.positive[:, None], gts[matched], rois)
    return SampledRois(rois, sample.valid, labels, sample.positive, targets, matched.astype(jnp.int32))

  keys = data_axis.image_keys(key, proposal_boxes.shape[0])
  return jax.vmap(one_image)(keys, proposal_boxes, proposal_valid, gt_boxes, gt_labels, gt_valid)


def rois_with_batch_index(boxes: jnp.ndarray) -> jnp.ndarray:
  """``[B, S, 4]`` boxes -> ``[B * S, 5]`` rows ``(batch_index, x1, y1, x2, y2)`` for RoIAlign."""
  batch, per_image = boxes.shape[:2]
  index = jnp.repeat(jnp.arange(batch, dtype=boxes.dtype), per_image)[:, None]
  return jnp.concatenate([index, boxes.reshape(-1, 4)], axis=1)


def pool_rois(
    features: Sequence[jnp.ndarray],
    boxes: jnp.ndarray,
    strides: Sequence[int],
    output_size: int = 7,
    sampling_ratio: int = 0,
    aligned: bool = True,
    max_sampling_ratio: int = roi_ops.DEFAULT_MAX_SAMPLING_RATIO,
    plus_one: bool = False,
) -> jnp.ndarray:
  """Multi-level RoIAlign of ``[B, S, 4]`` boxes -> ``[B * S, output_size, output_size, C]``
  (``plus_one``: levels from the legacy ``(w + 1) (h + 1)`` area)."""
  return roi_ops.multilevel_roi_align(
      features, rois_with_batch_index(jax.lax.stop_gradient(boxes)), output_size,
      strides=strides, sampling_ratio=sampling_ratio, aligned=aligned, max_sampling_ratio=max_sampling_ratio,
      plus_one=plus_one,
  )


def rcnn_losses(
    class_logits: jnp.ndarray,
    deltas: jnp.ndarray,
    rois: SampledRois,
    delta_stds: Sequence[float] = RCNN_DELTA_STDS,
) -> Dict[str, jnp.ndarray]:
  """Box-head losses (step 5).

  Args:
    class_logits: ``[B * S, K + 1]``; deltas: ``[B * S, K, 4]`` from :class:`Shared2FCHead`.
    rois: the :class:`SampledRois` they were pooled from.
    delta_stds: target normalisation.

  Returns:
    ``{"rcnn_cls": scalar, "rcnn_bbox": scalar}``.
  """
  num_classes = deltas.shape[1]
  valid = rois.valid.reshape(-1)
  positive = rois.positive.reshape(-1)
  labels = rois.labels.reshape(-1)
  boxes = rois.boxes.reshape(-1, 4)
  avg_factor = jnp.maximum(data_axis.batch_sum(jnp.sum(valid)), 1).astype(class_logits.dtype)
  cls_loss = losses.softmax_cross_entropy(class_logits, labels, valid.astype(class_logits.dtype), avg_factor=avg_factor)
  targets = box_ops.encode_deltas(boxes, rois.target_boxes.reshape(-1, 4), stds=delta_stds)
  class_deltas = jnp.take_along_axis(deltas, jnp.clip(labels, 0, num_classes - 1)[:, None, None], axis=1)[:, 0]
  bbox_loss = losses.l1_loss(class_deltas, targets, positive.astype(deltas.dtype)[:, None], avg_factor=avg_factor)
  return {"rcnn_cls": cls_loss, "rcnn_bbox": bbox_loss}


class Detections(NamedTuple):
  """Final detections.

  Attributes:
    boxes: ``[B, D, 4]`` float x1y1x2y2 image pixels.
    scores: ``[B, D]`` float, descending.
    classes: ``[B, D]`` int32 in ``0..K-1``.
    valid: ``[B, D]`` bool (a prefix).
  """

  boxes: jnp.ndarray
  scores: jnp.ndarray
  classes: jnp.ndarray
  valid: jnp.ndarray


def detect(
    class_logits: jnp.ndarray,
    deltas: jnp.ndarray,
    proposal_boxes: jnp.ndarray,
    proposal_valid: jnp.ndarray,
    image_size: Tuple[int, int],
    score_threshold: float = 0.05,
    nms_iou: float = 0.5,
    max_per_image: int = 200,
    pre_nms_top_k: int = 4000,
    delta_stds: Sequence[float] = RCNN_DELTA_STDS,
    min_size: float = 0.0,
) -> Detections:
  """Inference from box-head outputs.

  Args:
    class_logits: ``[B * P, K + 1]``; deltas: ``[B * P, K, 4]``.
    proposal_boxes: ``[B, P, 4]``; proposal_valid: ``[B, P]``.
    image_size: ``(height, width)`` for clipping.
    score_threshold: per-class score threshold (0.05).
    nms_iou: per-class NMS threshold (0.5).
    max_per_image: detections per image (200).
    pre_nms_top_k: the ``P * K`` class-box candidates are cut to the best ``pre_nms_top_k``
      by score before NMS, for speed. MMDetection applies only the score threshold; the two agree
      whenever fewer than ``pre_nms_top_k`` candidates pass it.
    delta_stds: target normalisation.
    min_size: candidates need width and height ``>= min_size`` after clipping (torchvision's
      ``remove_small_boxes(boxes, 1e-2)``; 0 keeps every box).

  Returns:
    :class:`Detections` with ``D = max_per_image``.
  """
  batch, per_image = proposal_boxes.shape[:2]
  num_classes = deltas.shape[1]
  probs = jax.nn.softmax(class_logits, axis=-1)[:, :num_classes].reshape(batch, per_image, num_classes)
  deltas = deltas.reshape(batch, per_image, num_classes, 4)
  decoded = jax.vmap(lambda boxes, d: box_ops.decode_deltas(boxes[:, None, :], d, stds=delta_stds, image_size=image_size))(
      proposal_boxes, deltas)  # [B, P, K, 4]
  return select_detections(probs, decoded, proposal_valid, score_threshold, nms_iou, max_per_image, pre_nms_top_k, min_size)


def select_detections(
    probs: jnp.ndarray,
    class_boxes: jnp.ndarray,
    valid: jnp.ndarray,
    score_threshold: float,
    nms_iou: float,
    max_per_image: int,
    pre_nms_top_k: int,
    min_size: float = 0.0,
) -> Detections:
  """Per-class thresholding and NMS of every (RoI, class) candidate (the last steps of :func:`detect`).

  Args:
    probs: ``[B, P, K]`` foreground class probabilities.
    class_boxes: ``[B, P, K, 4]`` each RoI's box for each class (``[B, P, 1, 4]`` broadcasts one
      box to every class, as a classifier without box regression does).
    valid: ``[B, P]`` bool.
    Other arguments: as :func:`detect`.

  Returns:
    :class:`Detections` with ``D = max_per_image``.
  """
  batch, per_image, num_classes = probs.shape
  class_boxes = jnp.broadcast_to(class_boxes, (batch, per_image, num_classes, 4))

  def one_image(p, decoded, valid):
    scores = jnp.where(valid[:, None], p, 0.0).reshape(-1)
    classes = jnp.tile(jnp.arange(num_classes, dtype=jnp.int32), per_image)
    k = min(pre_nms_top_k, scores.shape[0])
    top_scores, top = jax.lax.top_k(scores, k)
    top_boxes = decoded.reshape(-1, 4)[top]
    top_classes = classes[top]
    candidate_valid = top_scores > score_threshold
    if min_size > 0:
      wh = top_boxes[:, 2:] - top_boxes[:, :2]
      candidate_valid &= (wh[:, 0] >= min_size) & (wh[:, 1] >= min_size)
    keep, keep_valid = nms_ops.batched_nms(top_boxes, top_scores, top_classes, nms_iou, max_per_image, candidate_valid)
    return Detections(top_boxes[keep], jnp.where(keep_valid, top_scores[keep], 0.0), top_classes[keep], keep_valid)

  return jax.vmap(one_image)(probs, class_boxes, valid)
