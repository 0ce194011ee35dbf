"""Max-IoU label assignment (MMDetection 2 ``MaxIoUAssigner``) over padded ground truth.

Each candidate box (anchor or proposal) takes the ground-truth box it overlaps most, then:

1. ``max_iou < neg_iou_thr`` (and ``>= neg_iou_min``)   -> negative (background);
2. ``max_iou >= pos_iou_thr``                           -> positive, matched to that ground truth;
3. otherwise                                            -> ignored (neither);
4. low-quality matching (optional): every ground truth ``g`` whose best IoU over all
   candidates is ``>= min_pos_iou`` also makes positive the candidates that reach that
   best IoU (all of them when ``gt_max_assign_all``, as MMDetection's default; else the first),
   so that a small or oddly shaped lesion keeps at least one positive. Where several ground
   truths claim one candidate this way, the one with the highest index wins, as in
   MMDetection's loop over ground truths in order.

Ground truth is padded to a fixed count ``G`` with a validity mask so the assignment has
static shapes under ``jax.jit``. Padded boxes take part in nothing; an image with no valid
ground truth gets every candidate negative (MMDetection's ``num_gts == 0`` case).
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from acne_jax.ops.boxes import box_iou
from acne_jax.ops.shapes import check_shape


# max_iou_assign's largest IoU block (ground truth x candidates), in elements: 64 MiB of float32.
DEFAULT_MAX_OVERLAP_ELEMENTS = 1 << 24
# Ground-truth rows per block above that: small blocks let the loop stop after an image's last
# valid box. An RPN at 512 px (65,472 anchors, 512 padded boxes, 2 images) assigns in 64 ms with
# 64 valid boxes and 393 ms with 512 in blocks of 32 rows; the whole matrix took 566 ms for either.
BLOCK_ROWS = 32


class Assignment(NamedTuple):
  """Result of an assignment over ``N`` candidates.

  Attributes:
    gt_index: ``[N]`` int32 index of the matched ground truth; meaningful where
      ``positive`` (elsewhere the arg-max ground truth, or 0 with no valid ground truth).
    positive: ``[N]`` bool.
    negative: ``[N]`` bool; never true where ``positive``.
    max_iou: ``[N]`` float IoU with the best valid ground truth (0 with none).
  """

  gt_index: jnp.ndarray
  positive: jnp.ndarray
  negative: jnp.ndarray
  max_iou: jnp.ndarray

  def mmdet_assigned_gt_inds(self) -> jnp.ndarray:
    """``[N]`` int32 in MMDetection's encoding: -1 ignored, 0 negative, ``k > 0`` ground truth ``k - 1``."""
    return jnp.where(self.positive, self.gt_index + 1, jnp.where(self.negative, 0, -1)).astype(jnp.int32)


def assign_from_overlaps(
    overlaps: jnp.ndarray,
    gt_valid: jnp.ndarray,
    pos_iou_thr: float,
    neg_iou_thr: float,
    min_pos_iou: float = 0.0,
    match_low_quality: bool = True,
    gt_max_assign_all: bool = True,
    neg_iou_min: float = 0.0,
    candidate_valid: Optional[jnp.ndarray] = None,
) -> Assignment:
  """Assignment from a precomputed overlap matrix (IoU, or any similarity in [0, 1]).

  Args:
    overlaps: ``[G, N]`` float, ground truth by candidate.
    gt_valid: ``[G]`` bool, False for padding.
    pos_iou_thr: candidates with best overlap ``>=`` this are positive.
    neg_iou_thr: candidates with best overlap ``<`` this (and ``>= neg_iou_min``) are negative.
    min_pos_iou: a ground truth's best overlap must reach this for low-quality matching.
    match_low_quality: enable step 4 of the module docstring.
    gt_max_assign_all: in step 4, match every candidate tied at the ground truth's best overlap.
    neg_iou_min: lower bound of the negative range (MMDetection's tuple ``neg_iou_thr``).
    candidate_valid: optional ``[N]`` bool; padded candidates (e.g. the tail of a fixed-size
      proposal list) are neither positive nor negative and are never a ground truth's best match.

  Returns:
    An :class:`Assignment`.
  """
  dims = check_shape("assign_from_overlaps", "overlaps", overlaps, "[G, N]")
  check_shape("assign_from_overlaps", "gt_valid", gt_valid, "[G]", dims)
  if candidate_valid is not None:
    check_shape("assign_from_overlaps", "candidate_valid", candidate_valid, "[N]", dims)
  best, best_gt, claimant = _overlap_reductions(overlaps, gt_valid, candidate_valid, 0, match_low_quality, gt_max_assign_all,
                                                min_pos_iou)
  return _decide(best, best_gt, claimant, gt_valid, pos_iou_thr, neg_iou_thr, neg_iou_min, candidate_valid)


def _overlap_reductions(overlaps, gt_valid, candidate_valid, first_gt, match_low_quality: bool, gt_max_assign_all: bool,
                        min_pos_iou: float):
  """What the assignment needs of a ``[g, N]`` block of ground truth ``first_gt ..`` by candidate.

  Returns ``[N]`` each: the best overlap with a valid ground truth of the block (-1 with none),
  the index of the first ground truth reaching it, and the highest index of a ground truth that
  claims the candidate by low-quality matching (-1 with none). Each ground truth's own best
  overlap needs every candidate, which a block of ground-truth rows holds whole.
  """
  gt_valid = gt_valid.astype(bool)
  # Padding gets -1 so it can never be a candidate's best match (nor a candidate a ground truth's).
  valid_pairs = gt_valid[:, None]
  if candidate_valid is not None:
    valid_pairs = valid_pairs & candidate_valid.astype(bool)[None, :]
  masked = jnp.where(valid_pairs, overlaps, -1.0)
  best = jnp.max(masked, axis=0)
  best_gt = (jnp.argmax(masked, axis=0) + first_gt).astype(jnp.int32)
  gt_index = first_gt + jnp.arange(overlaps.shape[0])
  claimant = jnp.full(best.shape, -1, jnp.int32)
  if match_low_quality:
    gt_best = jnp.max(masked, axis=1)  # [g]
    gt_eligible = gt_valid & (gt_best >= min_pos_iou)
    if gt_max_assign_all:
      claims = gt_eligible[:, None] & (masked == gt_best[:, None])  # [g, N]
    else:
      first = jnp.argmax(masked, axis=1)  # [g]
      claims = gt_eligible[:, None] & (jnp.arange(overlaps.shape[1])[None, :] == first[:, None])
    # The last claiming ground truth wins: the arg-max of its index among the claimants.
    claimant = jnp.max(jnp.where(claims, gt_index[:, None], -1), axis=0).astype(jnp.int32)
  return best, best_gt, claimant


def _decide(best, best_gt, claimant, gt_valid, pos_iou_thr, neg_iou_thr, neg_iou_min, candidate_valid) -> Assignment:
  """The assignment from :func:`_overlap_reductions`' three ``[N]`` arrays over all ground truth."""
  any_valid = jnp.any(gt_valid.astype(bool))
  max_iou = jnp.where(any_valid, jnp.maximum(best, 0.0), 0.0)
  gt_index = jnp.where(any_valid, best_gt, 0).astype(jnp.int32)
  negative = (max_iou >= neg_iou_min) & (max_iou < neg_iou_thr)
  positive = any_valid & (max_iou >= pos_iou_thr)
  claimed = claimant >= 0
  gt_index = jnp.where(claimed, claimant, gt_index).astype(jnp.int32)
  positive = positive | claimed
  negative = negative & ~positive
  if candidate_valid is not None:
    positive = positive & candidate_valid.astype(bool)
    negative = negative & candidate_valid.astype(bool)
  return Assignment(gt_index=gt_index, positive=positive, negative=negative, max_iou=max_iou)


def max_iou_assign(
    boxes: jnp.ndarray,
    gt_boxes: jnp.ndarray,
    gt_valid: jnp.ndarray,
    pos_iou_thr: float,
    neg_iou_thr: float,
    min_pos_iou: float = 0.0,
    match_low_quality: bool = True,
    gt_max_assign_all: bool = True,
    neg_iou_min: float = 0.0,
    candidate_valid: Optional[jnp.ndarray] = None,
    max_overlap_elements: int = DEFAULT_MAX_OVERLAP_ELEMENTS,
) -> Assignment:
  """Max-IoU assignment of candidate boxes to padded ground truth.

  The SADH RPN uses ``pos_iou_thr=0.5, neg_iou_thr=0.3, min_pos_iou=0.3`` with low-quality
  matching; its R-CNN stage ``0.5, 0.5, 0.5``.

  Args:
    boxes: ``[N, 4]`` float x1y1x2y2 candidates (anchors or proposals).
    gt_boxes: ``[G, 4]`` float x1y1x2y2 ground truth, padded.
    gt_valid: ``[G]`` bool validity of each ground-truth row.
    max_overlap_elements: the largest ground-truth-by-candidate IoU block built at once (an
      RPN at 1024 x 1024 has 261,888 anchors: with 512 boxes the whole matrix would be 0.5 GB).
      With more than :data:`BLOCK_ROWS` ground-truth rows, the ground truth is taken in blocks of
      ``min(BLOCK_ROWS, max_overlap_elements // N)`` rows up to the last valid box (a
      ``while_loop``), so memory stays at one block and time follows the valid boxes, not the
      padding. The result is the same either way: each IoU is computed once, and ties resolve as
      in the whole matrix.
    Other arguments: as :func:`assign_from_overlaps`.

  Returns:
    An :class:`Assignment` over the ``N`` candidates.
  """
  dims = check_shape("max_iou_assign", "boxes", boxes, "[N, 4]")
  dims = check_shape("max_iou_assign", "gt_boxes", gt_boxes, "[G, 4]", dims)
  check_shape("max_iou_assign", "gt_valid", gt_valid, "[G]", dims)
  if candidate_valid is not None:
    check_shape("max_iou_assign", "candidate_valid", candidate_valid, "[N]", dims)
  num_gt, num_boxes = gt_boxes.shape[0], boxes.shape[0]
  rows = max(1, min(BLOCK_ROWS, int(max_overlap_elements) // max(num_boxes, 1)))
  if rows < num_gt:
    return _blockwise_assign(boxes, gt_boxes, gt_valid, rows, pos_iou_thr, neg_iou_thr, min_pos_iou, match_low_quality,
                             gt_max_assign_all, neg_iou_min, candidate_valid)
  return assign_from_overlaps(
      box_iou(gt_boxes, boxes),
      gt_valid,
      pos_iou_thr=pos_iou_thr,
      neg_iou_thr=neg_iou_thr,
      min_pos_iou=min_pos_iou,
      match_low_quality=match_low_quality,
      gt_max_assign_all=gt_max_assign_all,
      neg_iou_min=neg_iou_min,
      candidate_valid=candidate_valid,
  )


def _blockwise_assign(boxes, gt_boxes, gt_valid, rows, pos_iou_thr, neg_iou_thr, min_pos_iou, match_low_quality,
                      gt_max_assign_all, neg_iou_min, candidate_valid) -> Assignment:
  """:func:`max_iou_assign` over blocks of ``rows`` ground-truth boxes (padding fills the last).

  Blocks are visited in order up to the last one holding a valid box (a ``while_loop``): the cost
  follows an image's valid boxes, not the padded count (batched under ``vmap``, the loop runs to
  the batch's largest such block and leaves finished images unchanged).
  """
  num_gt = gt_boxes.shape[0]
  blocks = -(-num_gt // rows)
  pad = blocks * rows - num_gt
  block_boxes = jnp.pad(gt_boxes, ((0, pad), (0, 0))).reshape(blocks, rows, 4)
  block_valid = jnp.pad(gt_valid.astype(bool), (0, pad)).reshape(blocks, rows)
  last_valid = jnp.max(jnp.where(gt_valid.astype(bool), jnp.arange(num_gt), -1))
  needed = (last_valid + 1 + rows - 1) // rows  # blocks up to the last valid box; 0 with none

  def one_block(carry):
    index, best, best_gt, claimant = carry
    b_best, b_gt, b_claimant = _overlap_reductions(box_iou(block_boxes[index], boxes), block_valid[index], candidate_valid,
                                                   index * rows, match_low_quality, gt_max_assign_all, min_pos_iou)
    better = b_best > best  # strict: on a tie the earlier ground truth stays, as argmax's first index
    return (index + 1, jnp.where(better, b_best, best), jnp.where(better, b_gt, best_gt),
            jnp.maximum(claimant, b_claimant))

  num_boxes = boxes.shape[0]
  dtype = jnp.promote_types(boxes.dtype, gt_boxes.dtype)
  start = (jnp.zeros((), jnp.int32), jnp.full((num_boxes,), -1.0, dtype), jnp.zeros((num_boxes,), jnp.int32),
           jnp.full((num_boxes,), -1, jnp.int32))
  _, best, best_gt, claimant = jax.lax.while_loop(lambda carry: carry[0] < needed, one_block, start)
  return _decide(best, best_gt, claimant, gt_valid, pos_iou_thr, neg_iou_thr, neg_iou_min, candidate_valid)
