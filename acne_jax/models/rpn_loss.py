"""RPN training targets and losses, including the SADH NWD branch's SBCE loss.

Per image: anchors of all levels are assigned to the padded ground truth by max IoU
(SADH: positive at IoU >= 0.5, negative below 0.3, low-quality matches at >= 0.3), then
256 anchors are sampled with at most half positives. Over the batch:

- objectness: sigmoid BCE on the sampled anchors;
- box: L1 on the sampled positives' normalised deltas (the reference uses L1, not smooth L1);
- NWD (SADH paper eq. 1-4): SBCE ``-log(1 - |y - p|)`` on the sampled positives, with
  ``p = sigmoid(nwd_logit)`` and target ``y = NWD(decode(anchor, predicted deltas),
  decode(anchor, target deltas))``, C = 32. The prediction inside ``y`` is *not* detached, as
  in the reference, so this loss also pulls the regressor towards its target.

  Table 4's ablations are options: ``branch_target`` ``"iou"``, ``"giou"`` or ``"diou"``
  replaces the NWD in ``y`` (GIoU and DIoU lie in [-1, 1] and are mapped to ``(m + 1) / 2`` so
  the sigmoid can reach them; the paper does not say how it did this), and ``branch_loss="l1"``
  replaces SBCE by ``|y - p|``.

All three are summed over the batch and divided by the same ``avg_factor``: the number of
sampled anchors, counting at least one positive and one negative per image (MMDetection's
``num_total_pos + num_total_neg``).
"""

from __future__ import annotations

from typing import Dict, Sequence

import jax
import jax.numpy as jnp

from acne_jax.models.rpn import LevelPredictions
from acne_jax.ops import assign as assign_ops
from acne_jax.ops import data_axis
from acne_jax.ops import boxes as box_ops
from acne_jax.ops import losses
from acne_jax.ops import sample as sample_ops


def branch_target_function(name: str, nwd_constant: float = 32.0):
  """``(predicted [N, 4], target [N, 4]) -> [N]`` in [0, 1]: the NWD branch's learning target.

  ``"nwd"``: NWD with constant C; ``"iou"``: IoU; ``"giou"``, ``"diou"``: ``(m + 1) / 2`` of the
  generalised / distance IoU, which lie in [-1, 1].
  """
  if name == "nwd":
    return lambda a, b: box_ops.normalized_wasserstein_distance(a, b, nwd_constant)
  pairwise = {"iou": box_ops.box_iou, "giou": box_ops.generalized_box_iou, "diou": box_ops.distance_box_iou}.get(name)
  if pairwise is not None:
    elementwise = jax.vmap(lambda a, b: pairwise(a[None], b[None])[0, 0])
    return elementwise if name == "iou" else (lambda a, b: 0.5 * (elementwise(a, b) + 1.0))
  raise ValueError(f"rpn_losses: branch_target must be 'nwd', 'iou', 'giou' or 'diou'; got {name!r}.")


def rpn_losses(
    key: jax.Array,
    predictions: Sequence[LevelPredictions],
    anchors: Sequence[jnp.ndarray],
    gt_boxes: jnp.ndarray,
    gt_valid: jnp.ndarray,
    pos_iou_thr: float = 0.5,
    neg_iou_thr: float = 0.3,
    min_pos_iou: float = 0.3,
    num_samples: int = 256,
    positive_fraction: float = 0.5,
    nwd_constant: float = 32.0,
    nwd_loss_weight: float = 1.0,
    branch_target: str = "nwd",
    branch_loss: str = "sbce",
) -> Dict[str, jnp.ndarray]:
  """RPN losses for a batch.

  Args:
    key: PRNG key for the anchor sampler.
    predictions: per level, :class:`LevelPredictions` (``[B, N_l]``, ``[B, N_l, 4]``).
    anchors: per level, ``[N_l, 4]`` float x1y1x2y2.
    gt_boxes: ``[B, G, 4]`` float x1y1x2y2, padded.
    gt_valid: ``[B, G]`` bool.
    pos_iou_thr, neg_iou_thr, min_pos_iou: assigner thresholds.
    num_samples, positive_fraction: sampler settings.
    nwd_constant: ``C`` of the NWD target.
    nwd_loss_weight: ``lambda_nwd`` (eq. 4).
    branch_target: what the NWD branch learns: ``"nwd"``, ``"iou"``, ``"giou"`` or ``"diou"``.
    branch_loss: ``"sbce"`` or ``"l1"``.

  Returns:
    ``{"rpn_cls": scalar, "rpn_bbox": scalar}`` plus ``"rpn_nwd"`` when the head has the NWD
    branch.
  """
  if branch_loss not in ("sbce", "l1"):
    raise ValueError(f"rpn_losses: branch_loss must be 'sbce' or 'l1'; got {branch_loss!r}.")
  branch_target_fn = branch_target_function(branch_target, nwd_constant)
  all_anchors = jnp.concatenate([jnp.asarray(a) for a in anchors])
  cls_logits = jnp.concatenate([p.cls_logits for p in predictions], axis=1)
  deltas = jnp.concatenate([p.deltas for p in predictions], axis=1)
  with_nwd = predictions[0].nwd_logits is not None
  nwd_logits = jnp.concatenate([p.nwd_logits for p in predictions], axis=1) if with_nwd else jnp.zeros_like(cls_logits)
  batch = gt_boxes.shape[0]
  if cls_logits.shape[1] != all_anchors.shape[0]:
    raise ValueError(f"rpn_losses: {cls_logits.shape[1]} predictions per image but {all_anchors.shape[0]} anchors.")

  def one_image(image_key, cls, pred_deltas, nwd, boxes, valid):
    assignment = assign_ops.max_iou_assign(all_anchors, boxes, valid, pos_iou_thr, neg_iou_thr, min_pos_iou)
    sample = sample_ops.random_sample(image_key, assignment.positive, assignment.negative, num_samples, positive_fraction)
    idx = sample.indices
    positive = sample.positive
    sampled_anchors = all_anchors[idx]
    matched_gt = boxes[assignment.gt_index[idx]]
    # Padding slots and negatives get a harmless target (the anchor itself); their weight is 0.
    target_boxes = jnp.where(positive[:, None], matched_gt, sampled_anchors)
    target_deltas = box_ops.encode_deltas(sampled_anchors, target_boxes)
    pos_weight = positive.astype(cls.dtype)
    cls_loss = losses.sigmoid_binary_cross_entropy(cls[idx], pos_weight, sample.valid.astype(cls.dtype), reduction="sum")
    bbox_loss = losses.l1_loss(pred_deltas[idx], target_deltas, pos_weight[:, None], reduction="sum")
    predicted_boxes = box_ops.decode_deltas(sampled_anchors, pred_deltas[idx])
    decoded_targets = box_ops.decode_deltas(sampled_anchors, target_deltas)
    nwd_target = branch_target_fn(predicted_boxes, decoded_targets)
    if branch_loss == "sbce":
      nwd_loss = losses.soft_binary_cross_entropy_with_logits(nwd[idx], nwd_target, pos_weight, reduction="sum")
    else:
      nwd_loss = losses.l1_loss(jax.nn.sigmoid(nwd[idx]), nwd_target, pos_weight, reduction="sum")
    num_pos = jnp.sum(positive)
    num_neg = jnp.sum(sample.valid & ~positive)
    count = jnp.maximum(num_pos, 1) + jnp.maximum(num_neg, 1)
    return cls_loss, bbox_loss, nwd_loss, count

  keys = data_axis.image_keys(key, batch)
  cls_loss, bbox_loss, nwd_loss, count = jax.vmap(one_image)(keys, cls_logits, deltas, nwd_logits, gt_boxes, gt_valid)
  avg_factor = data_axis.batch_sum(jnp.sum(count)).astype(cls_logits.dtype)
  out = {"rpn_cls": jnp.sum(cls_loss) / avg_factor, "rpn_bbox": jnp.sum(bbox_loss) / avg_factor}
  if with_nwd:
    out["rpn_nwd"] = nwd_loss_weight * jnp.sum(nwd_loss) / avg_factor
  return out
