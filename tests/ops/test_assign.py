"""Max-IoU assignment against a transcription of MMDetection 2's algorithm (loops, float64)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from acne_jax.ops import assign as assign_ops
from acne_jax.ops import boxes as box_ops


def assign_reference(overlaps, gt_valid, pos, neg, min_pos, low_quality, assign_all, neg_min=0.0):
  """MMDetection's ``assign_wrt_overlaps`` on the valid rows, as sequential loops.

  Returns MMDetection's ``assigned_gt_inds`` with indices into the padded ground truth.
  """
  valid_rows = np.flatnonzero(gt_valid)
  ov = overlaps[valid_rows].astype(np.float64)
  num_gts, num_boxes = ov.shape
  assigned = np.full(num_boxes, -1, dtype=np.int64)
  if num_gts == 0:
    assigned[:] = 0
    return assigned
  max_ov = ov.max(axis=0)
  argmax = ov.argmax(axis=0)
  for j in range(num_boxes):
    if neg_min <= max_ov[j] < neg:
      assigned[j] = 0
    if max_ov[j] >= pos:
      assigned[j] = valid_rows[argmax[j]] + 1
  if low_quality:
    for i in range(num_gts):
      best = ov[i].max()
      if best >= min_pos:
        if assign_all:
          for j in range(num_boxes):
            if ov[i, j] == best:
              assigned[j] = valid_rows[i] + 1
        else:
          assigned[ov[i].argmax()] = valid_rows[i] + 1
  return assigned


_assign = jax.jit(assign_ops.max_iou_assign, static_argnames=("pos_iou_thr", "neg_iou_thr", "min_pos_iou", "match_low_quality", "gt_max_assign_all"))


@pytest.mark.parametrize("seed", range(30))
@pytest.mark.parametrize("setting", [(0.5, 0.3, 0.3, True, True), (0.7, 0.3, 0.3, True, False), (0.5, 0.5, 0.5, False, True), (0.5, 0.4, 0.0, True, True)])
def test_matches_mmdet_transcription(seed, setting, random_boxes):
  rng = np.random.default_rng(seed)
  num_boxes, num_gt = 64, 6
  boxes = random_boxes(rng, num_boxes, max_coord=60, min_size=4, max_size=30)
  if seed % 3 == 0:
    boxes[10:20] = boxes[0]  # duplicates: ties at a ground truth's best overlap
  gt = random_boxes(rng, num_gt, max_coord=60, min_size=4, max_size=30)
  gt[1] = boxes[3]  # an exact match (IoU 1)
  gt_valid = rng.uniform(size=num_gt) > 0.3
  if seed % 7 == 0:
    gt_valid[:] = False  # no valid ground truth at all
  pos, neg, min_pos, low_quality, assign_all = setting
  result = _assign(jnp.asarray(boxes, jnp.float32), jnp.asarray(gt, jnp.float32), jnp.asarray(gt_valid),
                   pos_iou_thr=pos, neg_iou_thr=neg, min_pos_iou=min_pos, match_low_quality=low_quality, gt_max_assign_all=assign_all)
  overlaps = np.asarray(box_ops.box_iou(jnp.asarray(gt, jnp.float32), jnp.asarray(boxes, jnp.float32)))
  expected = assign_reference(overlaps, gt_valid, pos, neg, min_pos, low_quality, assign_all)
  np.testing.assert_array_equal(np.asarray(result.mmdet_assigned_gt_inds()), expected)
  assert not np.any(np.asarray(result.positive) & np.asarray(result.negative))
  if gt_valid.any():
    np.testing.assert_allclose(np.asarray(result.max_iou), overlaps[gt_valid].max(axis=0), atol=1e-6)
  else:
    assert np.all(np.asarray(result.negative)) and np.all(np.asarray(result.max_iou) == 0)


def test_hand_case_low_quality_and_later_ground_truth_wins():
  anchors = jnp.array([[0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 40, 40], [100, 100, 110, 110]], jnp.float32)
  # gt0 overlaps anchors 0 and 1 with IoU 0.4 (below pos 0.5, above min_pos 0.3): low-quality
  # positives. gt1 also reaches its best (0.4) on the same anchors and, being later, wins them.
  gt = jnp.array([[0, 0, 10, 4], [0, 0, 4, 10], [20, 20, 40, 40], [0, 0, 0, 0]], jnp.float32)
  valid = jnp.array([True, True, True, False])
  result = assign_ops.max_iou_assign(anchors, gt, valid, 0.5, 0.3, 0.3)
  np.testing.assert_array_equal(result.mmdet_assigned_gt_inds(), [2, 2, 3, 0])
  no_low = assign_ops.max_iou_assign(anchors, gt, valid, 0.5, 0.3, 0.3, match_low_quality=False)
  np.testing.assert_array_equal(no_low.mmdet_assigned_gt_inds(), [-1, -1, 3, 0])


def test_vmap_over_images_and_shape_errors(random_boxes):
  rng = np.random.default_rng(0)
  boxes = jnp.asarray(np.stack([random_boxes(rng, 32) for _ in range(3)]), jnp.float32)
  gts = jnp.asarray(np.stack([random_boxes(rng, 4) for _ in range(3)]), jnp.float32)
  valid = jnp.array([[True, True, False, False], [False] * 4, [True] * 4])
  batched = jax.vmap(lambda b, g, v: assign_ops.max_iou_assign(b, g, v, 0.5, 0.3, 0.3))(boxes, gts, valid)
  for i in range(3):
    single = assign_ops.max_iou_assign(boxes[i], gts[i], valid[i], 0.5, 0.3, 0.3)
    np.testing.assert_array_equal(batched.mmdet_assigned_gt_inds()[i], single.mmdet_assigned_gt_inds())
  with pytest.raises(ValueError, match="'gt_valid' must have shape"):
    assign_ops.max_iou_assign(boxes[0], gts[0], valid[0, :3], 0.5, 0.3)
  with pytest.raises(ValueError, match="'gt_boxes' must have shape"):
    assign_ops.max_iou_assign(boxes[0], gts[0, :, :3], valid[0], 0.5, 0.3)


def test_padded_candidates_are_neither_positive_nor_negative(random_boxes):
  rng = np.random.default_rng(5)
  boxes = random_boxes(rng, 40, max_coord=60, min_size=4, max_size=30)
  gt = random_boxes(rng, 5, max_coord=60, min_size=4, max_size=30)
  gt[0] = boxes[-1]  # the best (and only IoU-1) match of gt 0 is a padded candidate
  candidate_valid = np.arange(40) < 30
  gt_valid = np.ones(5, bool)
  got = assign_ops.max_iou_assign(jnp.asarray(boxes, jnp.float32), jnp.asarray(gt, jnp.float32), jnp.asarray(gt_valid),
                                  0.5, 0.3, 0.3, candidate_valid=jnp.asarray(candidate_valid))
  # Reference: the assignment restricted to the valid candidates, padding marked -1.
  overlaps = np.asarray(box_ops.box_iou(jnp.asarray(gt, jnp.float32), jnp.asarray(boxes[:30], jnp.float32)))
  expected = np.concatenate([assign_reference(overlaps, gt_valid, 0.5, 0.3, 0.3, True, True), np.full(10, -1)])
  np.testing.assert_array_equal(np.asarray(got.mmdet_assigned_gt_inds()), expected)


@pytest.mark.parametrize("assign_all", [True, False])
def test_ground_truth_in_blocks_gives_the_whole_matrix_result(assign_all, rng):
  """Above ``max_overlap_elements`` the ground truth is scanned in blocks of rows: the same
  assignment, ties included (integer boxes repeat IoUs; two ground truths are identical)."""
  n, g = 300, 11
  xy = rng.integers(0, 40, size=(n, 2)).astype(np.float32)
  boxes = np.concatenate([xy, xy + rng.integers(1, 20, size=(n, 2))], axis=1)
  gts = boxes[rng.choice(n, g, replace=False)] + rng.integers(-2, 3, size=(g, 4))
  gts[:, 2:] = np.maximum(gts[:, 2:], gts[:, :2] + 1)
  gts[7] = gts[3]  # a duplicate ground truth: the later one wins low-quality claims
  gt_valid = np.ones(g, bool)
  gt_valid[[2, 10]] = False  # padding, one of them in the last (padded) block
  candidate_valid = rng.random(n) > 0.1
  args = (jnp.asarray(boxes), jnp.asarray(gts), jnp.asarray(gt_valid), 0.5, 0.3, 0.3)
  kwargs = dict(gt_max_assign_all=assign_all, candidate_valid=jnp.asarray(candidate_valid))
  whole = assign_ops.max_iou_assign(*args, **kwargs)
  for rows in (1, 3, 4):  # blocks of 1, 3 (11 = 3 + 3 + 3 + 2 padded) and 4 ground-truth rows
    blocked = jax.jit(lambda *a: assign_ops.max_iou_assign(*a[:3], *args[3:], **kwargs, max_overlap_elements=rows * n))(*args[:3])
    for name in whole._fields:
      np.testing.assert_array_equal(np.asarray(getattr(blocked, name)), np.asarray(getattr(whole, name)), err_msg=f"{name}, rows={rows}")
  assert int(jnp.sum(whole.positive)) > 10 and int(jnp.sum(whole.negative)) > 10  # a case worth comparing


def test_blocks_stop_after_each_images_last_valid_box_under_vmap(rng):
  """Batched, the block loop runs to the batch's last needed block; every image's result is its
  own whole-matrix one, whether its valid boxes come first, last, scattered or not at all."""
  n, g = 200, 40
  xy = rng.uniform(0, 50, size=(n, 2))
  boxes = jnp.asarray(np.concatenate([xy, xy + rng.uniform(2, 20, size=(n, 2))], axis=1), jnp.float32)
  gts = np.stack([np.asarray(boxes)[rng.choice(n, g, replace=False)] + rng.uniform(-2, 2, size=(g, 4)) for _ in range(4)])
  valid = np.zeros((4, g), bool)
  valid[0, :5] = True  # a prefix: two blocks of 4 rows
  valid[1, [3, 39]] = True  # the last row: every block
  valid[3, ::7] = True
  gts, valid = jnp.asarray(gts, jnp.float32), jnp.asarray(valid)
  blocked = jax.jit(jax.vmap(lambda gt, v: assign_ops.max_iou_assign(boxes, gt, v, 0.5, 0.3, 0.3, max_overlap_elements=4 * n)))(gts, valid)
  for image in range(4):
    whole = assign_ops.max_iou_assign(boxes, gts[image], valid[image], 0.5, 0.3, 0.3)
    for name in whole._fields:
      np.testing.assert_array_equal(np.asarray(getattr(blocked, name))[image], np.asarray(getattr(whole, name)),
                                    err_msg=f"{name}, image {image}")
  assert not np.any(np.asarray(blocked.positive)[2]) and np.all(np.asarray(blocked.negative)[2])  # no valid box


def test_rpn_assignment_at_1024_stays_within_the_overlap_budget():
  """An RPN at 1024 x 1024 (261,888 anchors) with 512 ground-truth boxes: the whole IoU matrix
  would be 0.5 GB; the compiled assignment's temporaries stay near the 64 MiB block."""
  from acne_jax.ops import anchors as anchor_ops

  anchors = np.concatenate(anchor_ops.multilevel_anchors((1024, 1024), (4, 8, 16, 32, 64), (8.0,), (0.5, 1.0, 2.0)))
  assert anchors.shape == (261888, 4)
  shapes = (jax.ShapeDtypeStruct(anchors.shape, jnp.float32), jax.ShapeDtypeStruct((512, 4), jnp.float32),
            jax.ShapeDtypeStruct((512,), bool))

  def temp_bytes(budget):
    fn = jax.jit(lambda a, g, v: assign_ops.max_iou_assign(a, g, v, 0.7, 0.3, 0.3, max_overlap_elements=budget))
    return fn.lower(*shapes).compile().memory_analysis().temp_size_in_bytes

  dense = 512 * anchors.shape[0] * 4
  whole_matrix = jax.jit(lambda a, g, v: assign_ops.assign_from_overlaps(box_ops.box_iou(g, a), v, 0.7, 0.3, 0.3))
  assert whole_matrix.lower(*shapes).compile().memory_analysis().temp_size_in_bytes >= dense  # what it avoids
  assert temp_bytes(assign_ops.DEFAULT_MAX_OVERLAP_ELEMENTS) < 3 * assign_ops.DEFAULT_MAX_OVERLAP_ELEMENTS * 4 < dense / 2
