"""YOLOv4 head math (``ops/yolo_head.py``): decoding and the loss against the float64 NumPy
restatement in ``acne_jax.testing.yolo_reference``, with predictions placed on the boxes so that
the ignore rule and perfect matches are exercised."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from acne_jax.ops import yolo_head
from acne_jax.ops import yolo_targets
from acne_jax.testing import yolo_reference as ref

ANCHORS_9 = ((6, 8), (10, 12), (14, 10), (16, 24), (24, 18), (30, 30), (40, 36), (50, 60), (60, 50))
STRIDES = (8, 16, 32)
SCALE_X_Y = (1.2, 1.1, 1.05)
IMAGE = 64
K = 3
LEVEL_ANCHORS = yolo_head.level_anchor_split(ANCHORS_9, 3)
GRIDS = [(IMAGE // s, IMAGE // s) for s in STRIDES]


def test_decode_level_against_reference_and_hand_values(rng):
  raw = rng.normal(scale=2.0, size=(2, 4, 5, 3, 7)).astype(np.float32)
  raw[0, 0, 0, 0, 2] = 30.0  # clamped to log(62.5)
  got = np.asarray(jax.jit(yolo_head.decode_level, static_argnums=(1, 2, 3))(jnp.asarray(raw), LEVEL_ANCHORS[1], 16, 1.1))
  np.testing.assert_allclose(got, ref.decode(raw, LEVEL_ANCHORS[1], 16, 1.1), rtol=1e-6, atol=2e-5)
  assert got[0, 0, 0, 0, 2] - got[0, 0, 0, 0, 0] == pytest.approx(16 * 62.5, rel=1e-5)
  # Zero logits: the centre of the cell (column 0, row 1: (4, 12)), the anchor's size (14 x 10).
  zero = np.asarray(yolo_head.decode_level(jnp.zeros((1, 2, 2, 3, 5)), LEVEL_ANCHORS[0], 8, 1.2))
  np.testing.assert_allclose(zero[0, 1, 0, 2], [4 - 7, 12 - 5, 4 + 7, 12 + 5], atol=1e-5)
  # scale_x_y lets the centre reach 0.1 cell beyond either edge (s = 1.2) at saturated logits.
  edge = np.asarray(yolo_head.decode_level(jnp.full((1, 1, 1, 1, 5), -50.0), ((8, 8),), 8, 1.2))
  assert (edge[0, 0, 0, 0, 0] + edge[0, 0, 0, 0, 2]) / 2 == pytest.approx(-0.8, abs=1e-5)
  with pytest.raises(ValueError, match="2 anchors for a head with 3"):
    yolo_head.decode_level(jnp.zeros((1, 2, 2, 3, 5)), ((1, 1), (2, 2)), 8)


def test_level_anchor_split_sorts_by_area():
  shuffled = ANCHORS_9[::-1]
  assert yolo_head.level_anchor_split(shuffled, 3) == [tuple(map(lambda a: tuple(map(float, a)), ANCHORS_9[i:i + 3]))
                                                        for i in (0, 3, 6)]
  with pytest.raises(ValueError, match="9 anchors cannot be split evenly over 4 levels"):
    yolo_head.level_anchor_split(ANCHORS_9, 4)


def ground_truth():
  boxes = np.asarray([[[10, 10, 30, 40], [5, 5, 15, 12], [40, 30, 62, 60], [0, 0, 0, 0]],
                      [[20, 20, 60, 50], [33, 2, 41, 9], [0, 0, 0, 0], [1, 1, 2, 2]]], np.float32)
  labels = np.asarray([[0, 2, 1, 0], [1, 0, 0, 2]], np.int32)
  valid = np.asarray([[True, True, True, False], [True, True, False, False]])
  return jnp.asarray(boxes), jnp.asarray(labels), jnp.asarray(valid)


@functools.partial(jax.jit, static_argnames=("box_size_weight",))
def loss(outputs, gt_boxes, gt_labels, gt_valid, box_size_weight):
  return yolo_head.yolo_loss(outputs, LEVEL_ANCHORS, STRIDES, SCALE_X_Y, gt_boxes, gt_labels, gt_valid, (IMAGE, IMAGE),
                             box_size_weight=box_size_weight)


def _logit(p):
  return math.log(p / (1 - p))


def test_yolo_loss_matches_float64_reference_with_ignored_and_matched_predictions(rng):
  gt = ground_truth()
  outputs = [rng.normal(scale=1.5, size=(2, h, w, 3, 5 + K)) for h, w in GRIDS]
  level_targets = jax.jit(lambda *g: yolo_targets.yolo_targets(*g, LEVEL_ANCHORS, STRIDES, GRIDS, (IMAGE, IMAGE), K))(*gt)

  def place(level, b, row, col, anchor, box):
    """Raw outputs that decode exactly onto ``box`` at this slot."""
    stride, sxy = STRIDES[level], SCALE_X_Y[level]
    aw, ah = LEVEL_ANCHORS[level][anchor]
    cx, cy = (box[0] + box[2]) / 2 / stride - col, (box[1] + box[3]) / 2 / stride - row
    outputs[level][b, row, col, anchor, :4] = [_logit((cx + (sxy - 1) / 2) / sxy), _logit((cy + (sxy - 1) / 2) / sxy),
                                               math.log((box[2] - box[0]) / aw), math.log((box[3] - box[1]) / ah)]

  boxes = np.asarray(gt[0])
  ignored_placed = 0
  for b, g in ((0, 0), (0, 2), (1, 0)):
    slots = [(level, *map(int, idx)) for level, t in enumerate(level_targets)
             for idx in np.argwhere(np.asarray(t.gt_index[b]) == g)]
    level, row, col, anchor = slots[0]
    place(level, b, row, col, anchor, boxes[b, g])  # a positive exactly on its box: CIoU 1
    free = [a for a in range(3) if int(level_targets[level].gt_index[b, row, col, a]) < 0]
    if free:  # a non-positive prediction on a box: ignored by the objectness loss
      place(level, b, row, col, free[0], boxes[b, g])
      ignored_placed += 1
  outputs[0][0, 0, 0, 0, 4:] = 40.0  # saturated logits
  outputs[1][1, 0, 0, 1, 4:] = -40.0
  outputs = [o.astype(np.float32) for o in outputs]
  for box_size_weight in (False, True):
    got = loss([jnp.asarray(o) for o in outputs], *gt, box_size_weight=box_size_weight)
    want = ref.yolo_loss(outputs, level_targets, LEVEL_ANCHORS, STRIDES, SCALE_X_Y, gt[0], gt[2],
                         box_size_weight=box_size_weight)
    np.testing.assert_allclose([got.box, got.obj, got.cls, got.num_positives], want, rtol=2e-6)
  decoded = [yolo_head.decode_level(jnp.asarray(o), a, s, sxy) for o, a, s, sxy in zip(outputs, LEVEL_ANCHORS, STRIDES, SCALE_X_Y)]
  flat = jnp.concatenate([d.reshape(2, -1, 4) for d in decoded], axis=1)
  assert ignored_placed >= 1
  assert int(yolo_targets.ignore_mask(flat, gt[0], gt[2]).sum()) >= 3 + ignored_placed
  assert 0.2 < float(got.mean_iou) < 1.0


def test_yolo_loss_weights_and_empty_images():
  gt = ground_truth()
  outputs = [jnp.asarray(np.random.default_rng(1).normal(size=(2, h, w, 3, 5 + K)), jnp.float32) for h, w in GRIDS]
  base = loss(outputs, *gt, box_size_weight=False)
  scaled = jax.jit(lambda o: yolo_head.yolo_loss(o, LEVEL_ANCHORS, STRIDES, SCALE_X_Y, *gt, (IMAGE, IMAGE), box_weight=1.0,
                                                 obj_weight=2.0, cls_weight=0.5))(outputs)
  np.testing.assert_allclose([scaled.box, scaled.obj, scaled.cls], [base.box / 0.07, 2 * base.obj, 0.5 * base.cls], rtol=1e-6)
  # No valid box: no positives, no box or class loss, every prediction a negative.
  empty = loss(outputs, gt[0], gt[1], jnp.zeros_like(gt[2]), box_size_weight=False)
  assert float(empty.box) == 0 and float(empty.cls) == 0 and float(empty.num_positives) == 0
  negatives = sum(float(jnp.sum(jax.nn.softplus(o[..., 4]))) for o in outputs) / 2
  assert float(empty.obj) == pytest.approx(negatives, rel=1e-5)
  # Gradients are finite and reach every output.
  grads = jax.grad(lambda o: sum(loss(o, *gt, box_size_weight=False)[:3]))(outputs)
  assert all(np.isfinite(np.asarray(g)).all() for g in grads)
  with pytest.raises(ValueError, match="one entry per level"):
    yolo_head.yolo_loss(outputs[:2], LEVEL_ANCHORS, STRIDES, SCALE_X_Y, *gt, (IMAGE, IMAGE))
