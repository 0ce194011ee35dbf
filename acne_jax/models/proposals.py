"""From RPN head outputs to a fixed number of proposals per image.

The order of operations is the SADH reference's (``RPNHeadNwd._get_bboxes_single``), used for
training proposals and at test time alike:

1. per level, score every anchor by the rectified objectness ``sqrt(s_cls^(2-w) p^w)``
   (:func:`acne_jax.models.rpn.rectified_objectness`; plain ``s_cls`` without an NWD branch);
2. per level, keep the top ``nms_pre`` anchors by that score;
3. decode their deltas, clipped to the image;
4. drop boxes whose width or height is not ``> min_size`` (``>= min_size`` with
   ``min_size_inclusive``, torchvision's ``remove_small_boxes``), marked invalid: shapes stay static;
5. NMS at ``nms_iou`` *within* each level (level ids as groups), all levels at once;
6. keep the best ``max_per_image`` by score.

Everything is written for one image and vmapped over the batch.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence, Tuple

import jax
import jax.numpy as jnp

from acne_jax.models.rpn import LevelPredictions, rectified_objectness
from acne_jax.ops import boxes as box_ops
from acne_jax.ops import nms as nms_ops


class Proposals(NamedTuple):
  """Fixed-size proposals.

  Attributes:
    boxes: ``[B, P, 4]`` float x1y1x2y2 image pixels, ``P = max_per_image``.
    scores: ``[B, P]`` float rectified objectness, descending.
    valid: ``[B, P]`` bool; the valid entries form a prefix.
  """

  boxes: jnp.ndarray
  scores: jnp.ndarray
  valid: jnp.ndarray


def generate_proposals(
    predictions: Sequence[LevelPredictions],
    anchors: Sequence[jnp.ndarray],
    image_size: Tuple[int, int],
    nms_pre: int = 2000,
    max_per_image: int = 1000,
    nms_iou: float = 0.7,
    min_size: float = 0.0,
    nwd_weight: float = 1.0,
    min_size_inclusive: bool = False,
) -> Proposals:
  """Proposals for a batch (see the module docstring for the steps).

  Args:
    predictions: per level, :class:`LevelPredictions` with ``[B, N_l]`` / ``[B, N_l, 4]`` arrays.
    anchors: per level, ``[N_l, 4]`` float x1y1x2y2 (shared by the batch).
    image_size: ``(height, width)`` of the network input, for clipping.
    nms_pre: anchors kept per level before NMS (2000 in the reference).
    max_per_image: proposals returned per image (1000).
    nms_iou: NMS IoU threshold within a level (0.7).
    min_size: boxes need width and height ``> min_size`` (0 in training, 10 px at test in the
      reference).
    nwd_weight: ``w`` of the rectified score.
    min_size_inclusive: keep sides equal to ``min_size`` (torchvision) instead of dropping them
      (MMDetection).

  Returns:
    :class:`Proposals` (no gradient flows into them).
  """
  if len(predictions) != len(anchors):
    raise ValueError(f"generate_proposals: {len(predictions)} prediction levels but {len(anchors)} anchor levels.")
  for level, (pred, level_anchors) in enumerate(zip(predictions, anchors)):
    if pred.cls_logits.shape[1] != level_anchors.shape[0]:
      raise ValueError(
          f"generate_proposals: level {level} has {pred.cls_logits.shape[1]} predictions but {level_anchors.shape[0]} anchors; "
          "the anchors must be made for the same image size and anchor settings as the head."
      )

  def one_image(cls_per_level, deltas_per_level, nwd_per_level):
    boxes, scores, levels, valid = [], [], [], []
    for level, (cls, deltas, nwd, level_anchors) in enumerate(zip(cls_per_level, deltas_per_level, nwd_per_level, anchors)):
      score = rectified_objectness(cls, nwd, nwd_weight)
      k = min(nms_pre, score.shape[0])
      top_scores, top = jax.lax.top_k(score, k)
      decoded = box_ops.decode_deltas(level_anchors[top], deltas[top], image_size=image_size)
      wh = decoded[:, 2:] - decoded[:, :2]
      boxes.append(decoded)
      scores.append(top_scores)
      levels.append(jnp.full((k,), level, jnp.int32))
      big = (wh >= min_size) if min_size_inclusive else (wh > min_size)
      valid.append(big[:, 0] & big[:, 1])
    boxes, scores, levels, valid = (jnp.concatenate(x) for x in (boxes, scores, levels, valid))
    keep, keep_valid = nms_ops.batched_nms(boxes, scores, levels, nms_iou, max_per_image, valid)
    return boxes[keep], jnp.where(keep_valid, scores[keep], 0.0), keep_valid

  cls = [jax.lax.stop_gradient(p.cls_logits) for p in predictions]
  deltas = [jax.lax.stop_gradient(p.deltas) for p in predictions]
  nwd = [None if p.nwd_logits is None else jax.lax.stop_gradient(p.nwd_logits) for p in predictions]
  boxes, scores, valid = jax.vmap(one_image)(cls, deltas, nwd)
  return Proposals(boxes, scores, valid)
