"""CPM R-CNN (Zhu et al.): a classification branch, cascade grid heads and fused scoring, as one RoI head.

The cascade mapping module (CMM, section 3.2) runs the grid head of :mod:`grid_head` in ``S``
stages (3), each with its own weights, mapping ratio (1, 0.5, 0.25: heatmaps over 2x, 1.5x and
1.25x the box), positive IoU (0.5, 0.6, 0.7) and loss weight (1, 0.5, 0.25).

Training, per image (``reference_notes.md`` 2.1-2.5):

1. **classification branch**: Faster R-CNN's box head without box regression: ground truth
   appended to the proposals, 512 RoIs sampled at 25 % positives (IoU 0.5), 7x7 RoIAlign, two
   FC layers, softmax cross-entropy (``rcnn_cls``);
2. **stage 0** takes the sampled positives, a random subset of at most ``max_grid_rois`` (96);
3. **every stage** matches its RoIs to the ground truth (max IoU), pools 14x14 features, predicts
   the heatmaps and is trained on the targets of :func:`acne_jax.ops.grid.grid_targets`
   (``grid_stage{j}``: BCE x 15 x the stage weight);
4. **between stages** (no gradient): the heatmaps are decoded into boxes; RoIs that are copies of
   a ground-truth box are dropped (their decoded box is replaced by the exact one appended next),
   every ground-truth box is appended, and the next stage keeps those with IoU >= its threshold;
5. the **IoU scoring module** reads the last stage's grid features, its target the max IoU of
   that stage's input boxes (``ism``); the **resampling scoring module** is trained on the
   classification branch's negatives plus the last stage's input boxes, re-sampled 512 at 25 %
   (``rsm``).

Static shapes: stage 0 has ``min(max_grid_rois, 512 * 0.25)`` RoI slots per image and every
later stage that many plus ``G`` (the padded ground-truth count; enough because ground-truth
copies are dropped before the ground truth is appended again), or ``later_stage_rois`` when set,
each with a validity mask; the IoU filter compacts the kept RoIs to the front with a stable sort
(refined boxes before the appended ground truth). No Python loop runs over boxes.

Inference: class probabilities of the proposals -> per-class score > 0.03 and NMS 0.3 on the
*unrefined* proposal boxes (at most ``box.max_detections`` per image) -> the grid stages in turn
refine the boxes -> boxes clipped to the image -> fused score (:func:`scoring.fused_score`) ->
detections re-ranked by it.
"""

from __future__ import annotations

from typing import Dict, Sequence, Tuple

import jax
import jax.numpy as jnp

from acne_jax.models import bbox_head
from acne_jax.models.grid_head import GridHead, grid_loss
from acne_jax.models.mask_head import positive_slots
from acne_jax.models.proposals import Proposals
from acne_jax.models.roi_heads import BoxRoIHead, GroundTruth, RoIHeadOutput
from acne_jax.models.scoring import IoUScoringModule, fused_score, ism_loss, iou_score
from acne_jax.ops import data_axis
from acne_jax.ops import boxes as box_ops
from acne_jax.ops import grid as grid_ops
from acne_jax.ops import losses


def match_to_ground_truth(boxes: jnp.ndarray, gt_boxes: jnp.ndarray, gt_valid: jnp.ndarray,
                          plus_one: bool = False) -> Tuple[jnp.ndarray, jnp.ndarray]:
  """Max IoU of each box over the valid ground truth of its image, and which one.

  Args:
    boxes: ``[B, N, 4]``; gt_boxes: ``[B, G, 4]``; gt_valid: ``[B, G]`` bool.
    plus_one: IoU with the legacy ``+1`` convention.

  Returns:
    ``max_iou [B, N]`` (-1 for an image without ground truth) and ``gt_index [B, N]`` int32.
  """

  def one_image(b, g, v):
    iou = box_ops.box_iou(box_ops.plus_one(b, plus_one), box_ops.plus_one(g, plus_one))  # [N, G]
    iou = jnp.where(v[None, :], iou, -1.0)
    return jnp.max(iou, axis=1), jnp.argmax(iou, axis=1).astype(jnp.int32)

  return jax.vmap(one_image)(boxes, gt_boxes, gt_valid)


def is_ground_truth_copy(boxes: jnp.ndarray, gt_boxes: jnp.ndarray, gt_valid: jnp.ndarray) -> jnp.ndarray:
  """``[B, N]`` bool: the box equals one of its image's valid ground-truth boxes exactly."""
  equal = jnp.all(boxes[:, :, None, :] == gt_boxes[:, None, :, :], axis=-1) & gt_valid[:, None, :]
  return jnp.any(equal, axis=-1)


def compact(boxes: jnp.ndarray, keep: jnp.ndarray, slots: int) -> Tuple[jnp.ndarray, jnp.ndarray]:
  """The kept ``[B, N, 4]`` boxes moved to the front in their order, cut or padded to ``slots``:
  ``(boxes [B, slots, 4], valid [B, slots])``."""
  n = boxes.shape[1]
  if slots > n:
    boxes = jnp.concatenate([boxes, jnp.zeros((boxes.shape[0], slots - n, 4), boxes.dtype)], axis=1)
    keep = jnp.concatenate([keep, jnp.zeros((keep.shape[0], slots - n), bool)], axis=1)
  order = jnp.argsort(~keep, axis=1, stable=True)[:, :slots]
  return jnp.take_along_axis(boxes, order[..., None], axis=1), jnp.take_along_axis(keep, order, axis=1)


def next_stage_rois(
    decoded: jnp.ndarray,
    inputs: jnp.ndarray,
    valid: jnp.ndarray,
    gt_boxes: jnp.ndarray,
    gt_valid: jnp.ndarray,
    iou_threshold: float,
    slots: int,
    plus_one: bool = False,
) -> Tuple[jnp.ndarray, jnp.ndarray]:
  """Training input of the next stage (module docstring, step 4).

  Args:
    decoded: ``[B, N, 4]`` boxes decoded from this stage's heatmaps.
    inputs: ``[B, N, 4]`` this stage's input RoIs; valid: ``[B, N]``.
    gt_boxes: ``[B, G, 4]``; gt_valid: ``[B, G]``.
    iou_threshold: the next stage's positive IoU.
    slots: RoI slots of the next stage.

  Returns:
    ``(boxes [B, slots, 4], valid [B, slots])``: the refined boxes and the ground truth with IoU
    ``>= iou_threshold``, kept ones first.
  """
  copies = is_ground_truth_copy(inputs, gt_boxes, gt_valid)
  candidates = jnp.concatenate([decoded, gt_boxes], axis=1)
  candidate_valid = jnp.concatenate([valid & ~copies, gt_valid], axis=1)
  max_iou, _ = match_to_ground_truth(candidates, gt_boxes, gt_valid, plus_one)
  return compact(candidates, candidate_valid & (max_iou >= iou_threshold), slots)


def _softmax_ce(logits: jnp.ndarray, labels: jnp.ndarray, valid: jnp.ndarray) -> jnp.ndarray:
  """Softmax cross-entropy averaged over the valid rows."""
  weight = valid.astype(logits.dtype)
  return losses.softmax_cross_entropy(logits, labels, weight, avg_factor=jnp.maximum(data_axis.batch_sum(jnp.sum(weight)), 1.0))


class CPMRoIHead(BoxRoIHead):
  """CPM R-CNN's second stage (module docstring). Losses: ``rcnn_cls``, ``grid_stage1..S``,
  ``ism`` and ``rsm`` (when those modules are on)."""

  def setup(self):
    s, c = self.spec, self.spec.cpm
    self.box_head = bbox_head.Shared2FCHead(s.num_classes, s.box.fc_dim, self.dtype, with_box_regression=False)
    self.grid_stages = [GridHead(c.grid_size, c.point_channels, c.num_convs, c.gn_groups, c.fusion, self.dtype, c.weight_init)
                        for _ in range(c.num_stages)]
    if c.ism:
      self.ism_head = IoUScoringModule(c.ism_fc_dim, self.dtype)
    if c.rsm:
      self.rsm_head = bbox_head.Shared2FCHead(s.num_classes, s.box.fc_dim, self.dtype, with_box_regression=False)

  @property
  def map_size(self) -> int:
    return 4 * self.spec.cpm.roi_size

  def _stage(self, j: int, levels, boxes: jnp.ndarray):
    """Stage ``j`` on ``[B, N, 4]`` boxes: ``(heatmaps {name: [B * N, h, w, P]}, grid features)``."""
    return self.grid_stages[j](self.pool(levels, boxes, self.spec.cpm.roi_size))

  def _decode(self, j: int, heatmaps: Dict[str, jnp.ndarray], boxes: jnp.ndarray) -> jnp.ndarray:
    c = self.spec.cpm
    logits = heatmaps["fused" if c.fusion else "unfused"]
    decoded, _ = grid_ops.decode_grid(logits, boxes.reshape(-1, 4), c.mapping_ratios[j], self.map_size, c.grid_size)
    return decoded.reshape(boxes.shape)

  def losses(self, levels: Sequence[jnp.ndarray], proposals: Proposals, gt: GroundTruth, key: jax.Array) -> Dict[str, jnp.ndarray]:
    s, c = self.spec, self.spec.cpm
    sample_key, rsm_key = jax.random.split(key)
    rois = self.sample(sample_key, proposals, gt)
    class_logits, _ = self.box_head(self.pool(levels, rois.boxes, s.roi_size))
    out = {"rcnn_cls": _softmax_ce(class_logits, rois.labels.reshape(-1), rois.valid.reshape(-1))}

    # Stage 0: the sampled positives sit first, in random order, so the first slots are a random subset.
    first_slots = min(c.max_grid_rois, positive_slots(s.box.num_samples, s.box.positive_fraction))
    boxes = rois.boxes[:, :first_slots]
    valid = rois.positive[:, :first_slots] & rois.valid[:, :first_slots]
    later_slots = c.later_stage_rois or first_slots + gt.boxes.shape[1]
    last = c.num_stages - 1
    for j in range(c.num_stages):
      if j > 0:
        boxes, valid = next_stage_rois(decoded, boxes, valid, gt.boxes, gt.valid, c.stage_ious[j], later_slots, s.plus_one)
      boxes = jax.lax.stop_gradient(boxes)
      # Diagnostics (scripts/ablate_cpm.py), kept only when "intermediates" is mutable: RoIs per
      # image the stage trains on, and how many of them are not ground-truth copies.
      self.sow("intermediates", "stage_rois", jnp.sum(valid, axis=1))
      self.sow("intermediates", "stage_refined_rois", jnp.sum(valid & ~is_ground_truth_copy(boxes, gt.boxes, gt.valid), axis=1))
      max_iou, gt_index = match_to_ground_truth(boxes, gt.boxes, gt.valid, s.plus_one)
      matched = jnp.take_along_axis(gt.boxes, gt_index[..., None], axis=1)
      targets = grid_ops.grid_targets(boxes.reshape(-1, 4), matched.reshape(-1, 4), c.mapping_ratios[j], self.map_size,
                                      c.pos_radius, c.grid_size)
      heatmaps, features = self._stage(j, levels, boxes)
      flat_valid = valid.reshape(-1)
      stage_loss = sum(grid_loss(h, targets, flat_valid) for h in heatmaps.values())
      out[f"grid_stage{j + 1}"] = c.grid_loss_weight * c.stage_loss_weights[j] * stage_loss
      if j == last and c.ism:
        out["ism"] = c.ism_loss_weight * ism_loss(self.ism_head(features), max_iou.reshape(-1), flat_valid, c.ism_reference)
      if j < last:
        decoded = jax.lax.stop_gradient(self._decode(j, heatmaps, boxes))

    if c.rsm:
      # The classification branch's negatives and the last stage's input boxes, re-sampled.
      candidates = jnp.concatenate([rois.boxes, boxes], axis=1)
      candidate_valid = jnp.concatenate([rois.valid & ~rois.positive, valid], axis=1)
      b = s.box
      rescored = bbox_head.sample_rois(rsm_key, candidates, candidate_valid, gt.boxes, gt.labels, gt.valid, s.num_classes,
                                       b.pos_iou, b.neg_iou, b.min_pos_iou, c.rsm_num_samples, c.rsm_positive_fraction,
                                       add_gt_as_proposals=False, plus_one=s.plus_one)
      rsm_logits, _ = self.rsm_head(self.pool(levels, rescored.boxes, s.roi_size))
      out["rsm"] = c.rsm_loss_weight * _softmax_ce(rsm_logits, rescored.labels.reshape(-1), rescored.valid.reshape(-1))
    return out

  def predict(self, levels: Sequence[jnp.ndarray], proposals: Proposals, image_size: Tuple[int, int]) -> RoIHeadOutput:
    s, c = self.spec, self.spec.cpm
    b = s.box
    batch, per_image = proposals.boxes.shape[:2]
    class_logits, _ = self.box_head(self.pool(levels, proposals.boxes, s.roi_size))
    probs = jax.nn.softmax(class_logits.astype(jnp.float32), axis=-1)[:, :s.num_classes].reshape(batch, per_image, -1)
    unrefined = box_ops.clip_boxes(proposals.boxes, image_size)[:, :, None, :]
    detections = bbox_head.select_detections(probs, unrefined, proposals.valid, b.score_threshold, b.nms_iou, b.max_detections,
                                             b.pre_nms_top_k, b.min_size)
    boxes = detections.boxes
    ism = None
    # Diagnostics (scripts/ablate_cpm.py), in the order before the re-ranking: the classified
    # detections, then every stage's boxes.
    self.sow("intermediates", "cls_detections", detections)
    self.sow("intermediates", "stage_boxes", boxes)
    for j in range(c.num_stages):
      heatmaps, features = self._stage(j, levels, boxes)
      if j == c.num_stages - 1 and c.ism:
        ism = iou_score(self.ism_head(features), c.ism_reference).reshape(boxes.shape[:2])
        self.sow("intermediates", "ism_score", ism)
      boxes = self._decode(j, heatmaps, boxes)
      self.sow("intermediates", "stage_boxes", boxes)
    boxes = box_ops.clip_boxes(boxes, image_size)
    rsm = None
    if c.rsm:
      rsm_logits, _ = self.rsm_head(self.pool(levels, boxes, s.roi_size))
      rsm_probs = jax.nn.softmax(rsm_logits.astype(jnp.float32), axis=-1).reshape(*boxes.shape[:2], -1)
      rsm = jnp.take_along_axis(rsm_probs, detections.classes[..., None], axis=-1)[..., 0]
    scores = jnp.where(detections.valid, fused_score(detections.scores, ism, rsm, c.score_gamma), 0.0)
    # Valid detections first by fused score (a NaN score, possible only with ism_reference, last among them).
    rank = jnp.where(jnp.isnan(scores), jnp.finfo(jnp.float32).max, -scores)
    order = jnp.argsort(jnp.where(detections.valid, rank, jnp.inf), axis=1, stable=True)

    def take(x):
      return jnp.take_along_axis(x, order.reshape(order.shape + (1,) * (x.ndim - 2)), axis=1)

    return RoIHeadOutput(bbox_head.Detections(take(boxes), take(scores), take(detections.classes), take(detections.valid)))
