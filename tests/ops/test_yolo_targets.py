"""YOLOv4 label assignment (``ops/yolo_targets.py``) on hand-made cases, and against a plain-Python
loop restatement of the rule on random padded ground truth."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from acne_jax.ops import yolo_targets as yt

# yolov4.cfg's COCO anchors (608 px input), 3 per level, strides 8/16/32.
ANCHORS = (((12, 16), (19, 36), (40, 28)), ((36, 75), (76, 55), (72, 146)), ((142, 110), (192, 243), (459, 401)))
STRIDES = (8, 16, 32)
IMAGE = (256, 256)
GRIDS = tuple((IMAGE[0] // s, IMAGE[1] // s) for s in STRIDES)
K = 4
MAX_GT = 4


@functools.partial(jax.jit, static_argnames=("anchors", "iou_threshold", "neighbor_cells"))
def _jitted_targets(boxes, labels, valid, anchors, iou_threshold, neighbor_cells):
  return yt.yolo_targets(boxes, labels, valid, anchors, STRIDES, GRIDS, IMAGE, K, iou_threshold, neighbor_cells)


def targets(boxes, labels, valid=None, iou_threshold=yt.YOLOV4_IOU_THRESHOLD, neighbor_cells=False, anchors=ANCHORS):
  """One image's targets as NumPy, its ground truth padded to 4 boxes (one compile per setting)."""
  pad = MAX_GT - len(boxes)
  valid = [True] * len(boxes) if valid is None else list(valid)
  boxes = jnp.asarray(list(boxes) + [[0.0, 0.0, 0.0, 0.0]] * pad, jnp.float32)[None]
  labels = jnp.asarray(list(labels) + [0] * pad, jnp.int32)[None]
  valid = jnp.asarray(valid + [False] * pad)[None]
  out = _jitted_targets(boxes, labels, valid, anchors, iou_threshold, neighbor_cells)
  return [jax.tree_util.tree_map(lambda x: np.asarray(x[0]), level) for level in out]


def assigned_slots(level_targets):
  """{(level, row, col, anchor): gt index} of every assigned slot."""
  slots = {}
  for level, t in enumerate(level_targets):
    for row, col, anchor in np.argwhere(t.gt_index >= 0):
      slots[(level, int(row), int(col), int(anchor))] = int(t.gt_index[row, col, anchor])
  return slots


def test_one_box_goes_to_its_best_anchor_at_its_centre_cell():
  # 30 x 56 px, centre (100, 70): best anchor (36, 75) = level 1 anchor 0, shape IoU
  # 30*56 / (36*75) = 0.622; the next best are (19, 36) with 0.407 and (72, 146) with 0.16.
  box = [85.0, 42.0, 115.0, 98.0]
  out = targets([box], [2], iou_threshold=1.0)  # best anchor only
  assert assigned_slots(out) == {(1, 70 // 16, 100 // 16, 0): 0}
  t = out[1]
  row, col = 70 // 16, 100 // 16
  np.testing.assert_array_equal(t.boxes[row, col, 0], box)
  assert t.objectness[row, col, 0] == 1.0 and t.objectness.sum() == 1.0
  np.testing.assert_array_equal(t.classes[row, col, 0], [0, 0, 1, 0])
  assert t.classes.sum() == 1.0
  assert t.box_weights[row, col, 0] == pytest.approx(2 - 30 * 56 / (256 * 256))
  assert t.box_weights.sum() == pytest.approx(2 - 30 * 56 / (256 * 256))
  for other in (out[0], out[2]):
    assert other.objectness.sum() == 0 and not other.boxes.any() and (other.gt_index == -1).all()
  assert [level.boxes.shape for level in out] == [(32, 32, 3, 4), (16, 16, 3, 4), (8, 8, 3, 4)]
  assert out[0].classes.shape == (32, 32, 3, K)


def test_anchor_shape_iou_values():
  iou = np.asarray(yt.anchor_shape_iou(jnp.asarray([[30.0, 56.0], [0.0, 0.0]]), jnp.asarray([[36.0, 75.0], [19.0, 36.0]])))
  np.testing.assert_allclose(iou[0], [30 * 56 / (36 * 75), 19 * 36 / (30 * 56)], rtol=1e-6)
  np.testing.assert_array_equal(iou[1], [0.0, 0.0])


def test_box_over_the_threshold_for_two_anchors_gets_both_on_their_levels():
  # Same box, YOLOv4's iou_thresh 0.213: (36, 75) (0.622) is the best; (19, 36) has 684 / 1680 =
  # 0.407 and (40, 28) 840 / (1680 + 1120 - 840) = 0.429 on level 0, (76, 55) 1650 / (1680 + 4180 -
  # 1650) = 0.392 on level 1: all over it; (72, 146) has 0.160 and (12, 16) 0.114.
  box = [85.0, 42.0, 115.0, 98.0]
  out = targets([box], [1])
  want = {(0, 70 // 8, 100 // 8, 1): 0, (0, 70 // 8, 100 // 8, 2): 0, (1, 70 // 16, 100 // 16, 0): 0,
          (1, 70 // 16, 100 // 16, 1): 0}
  assert assigned_slots(out) == want
  for level, row, col, anchor in want:
    np.testing.assert_array_equal(out[level].boxes[row, col, anchor], box)
    assert out[level].classes[row, col, anchor, 1] == 1.0
  # An impossible threshold keeps the best anchor alone; 0 takes every anchor it overlaps at all.
  assert len(assigned_slots(targets([box], [1], iou_threshold=1.0))) == 1
  assert len(assigned_slots(targets([box], [1], iou_threshold=0.0))) == 9


def test_two_boxes_in_one_cell():
  # Both centred at (103, 70), level-1 cell (4, 6), and both best matched by (36, 75).
  a = [88.0, 40.0, 118.0, 100.0]  # 30 x 60, IoU with (36, 75) 0.667
  b = [86.0, 36.0, 120.0, 104.0]  # 34 x 68, IoU 0.856: wins the shared slot
  out = targets([a, b], [0, 3], iou_threshold=1.0)
  assert assigned_slots(out) == {(1, 4, 6, 0): 1}
  assert out[1].classes[4, 6, 0, 3] == 1.0 and out[1].classes.sum() == 1.0
  np.testing.assert_array_equal(out[1].boxes[4, 6, 0], b)
  # Equal shapes: the lower index wins.
  assert assigned_slots(targets([a, a], [0, 3], iou_threshold=1.0)) == {(1, 4, 6, 0): 0}
  assert assigned_slots(targets([b, a, b], [0, 3, 1], iou_threshold=1.0)) == {(1, 4, 6, 0): 0}
  # Different best anchors in one cell: each keeps its own slot. c (12 x 14, centre (104, 73)) is
  # best matched by (12, 16), e (20 x 24, centre (104, 74)) by (19, 36); level-0 cell (9, 13).
  c = [98.0, 66.0, 110.0, 80.0]
  e = [94.0, 62.0, 114.0, 86.0]
  assert assigned_slots(targets([c, e], [1, 2], iou_threshold=1.0)) == {(0, 9, 13, 0): 0, (0, 9, 13, 1): 1}
  # With the 0.213 rule both also claim each other's anchor (c: 0.875, 0.246 on (12, 16), (19, 36);
  # e: 0.400, 0.644, 0.429 on (12, 16), (19, 36), (40, 28)): each slot goes to the higher IoU.
  assert assigned_slots(targets([c, e], [1, 2])) == {(0, 9, 13, 0): 0, (0, 9, 13, 1): 1, (0, 9, 13, 2): 1}


def test_a_loser_keeps_its_other_slots():
  # a and b (above) share every cell. Shape IoUs over 0.213, a: (19, 36) 0.380, (40, 28) 0.404,
  # (36, 75) 0.667, (76, 55) 0.381; b: 0.296, 0.384, 0.856, 0.405 and (72, 146) 0.220. Each slot
  # goes to the higher: a keeps the two level-0 anchors, b takes the level-1 ones.
  a = [88.0, 40.0, 118.0, 100.0]
  b = [86.0, 36.0, 120.0, 104.0]
  assert assigned_slots(targets([a, b], [0, 1])) == {
      (0, 8, 12, 1): 0, (0, 8, 12, 2): 0, (1, 4, 6, 0): 1, (1, 4, 6, 1): 1, (1, 4, 6, 2): 1}


def test_padding_and_empty_boxes_change_nothing():
  box = [85.0, 42.0, 115.0, 98.0]
  ref = targets([box], [1])
  padded = targets([box, [10.0, 10.0, 50.0, 90.0], [5.0, 5.0, 5.0, 40.0]], [1, 2, 0], valid=[True, False, True])
  for r, p in zip(ref, padded):
    for name in ("boxes", "objectness", "classes", "box_weights", "gt_index"):
      np.testing.assert_array_equal(getattr(r, name), getattr(p, name), err_msg=name)
  nothing = targets([[0.0, 0.0, 0.0, 0.0]] * 3, [0, 0, 0], valid=[False, False, False])
  assert all(level.objectness.sum() == 0 and (level.gt_index == -1).all() for level in nothing)


def test_neighbour_cells():
  # Centre (100, 70): level 1 cell (4, 6), fraction (0.25, 0.375): neighbours left (4, 5) and up (3, 6).
  box = [85.0, 42.0, 115.0, 98.0]
  out = targets([box], [0], iou_threshold=1.0, neighbor_cells=True)
  assert assigned_slots(out) == {(1, 4, 6, 0): 0, (1, 4, 5, 0): 0, (1, 3, 6, 0): 0}
  # Right half and lower half of the cell: right and down; at the grid's corner none beyond it.
  box = [108.0 - 15, 77.0 - 28, 108.0 + 15, 77.0 + 28]  # centre (108, 77): fraction (0.75, 0.8125)
  assert set(assigned_slots(targets([box], [0], iou_threshold=1.0, neighbor_cells=True))) == {
      (1, 4, 6, 0), (1, 4, 7, 0), (1, 5, 6, 0)}
  corner = [0.0, 0.0, 30.0, 56.0]  # centre (15, 28): cell (1, 0), fraction (0.9375, 0.75)
  assert set(assigned_slots(targets([corner], [0], iou_threshold=1.0, neighbor_cells=True))) == {
      (1, 1, 0, 0), (1, 1, 1, 0), (1, 2, 0, 0)}
  corner = [0.0, 0.0, 6.0, 8.0]  # centre (3, 4): level 0 cell (0, 0), left and up fall off the grid
  assert assigned_slots(targets([corner], [0], iou_threshold=1.0, neighbor_cells=True)) == {(0, 0, 0, 0): 0}
  # Two neighbour claims on one slot: the higher shape IoU wins.
  left = [85.0, 42.0, 115.0, 98.0]  # centre cell (4, 6), neighbours (4, 5) and (3, 6); IoU 0.622
  other = [76.0 - 17, 70.0 - 34, 76.0 + 17, 70.0 + 34]  # 34 x 68 (IoU 0.856), centre cell (4, 4), neighbours (4, 5), (3, 4)
  slots = assigned_slots(targets([left, other], [0, 1], iou_threshold=1.0, neighbor_cells=True))
  assert slots == {(1, 4, 6, 0): 0, (1, 3, 6, 0): 0, (1, 4, 4, 0): 1, (1, 4, 5, 0): 1, (1, 3, 4, 0): 1}
  # A box at its own centre cell outranks another's neighbour claim, even with an equal IoU and a
  # higher index.
  inside = [75.0, 42.0, 105.0, 98.0]  # 30 x 56, centre (90, 70): cell (4, 5), neighbours (4, 6), (3, 5)
  slots = assigned_slots(targets([left, inside], [0, 1], iou_threshold=1.0, neighbor_cells=True))
  assert slots == {(1, 4, 6, 0): 0, (1, 3, 6, 0): 0, (1, 4, 5, 0): 1, (1, 3, 5, 0): 1}


def reference_assignment(boxes, labels, valid, iou_threshold, neighbor_cells=False):
  """Plain-Python restatement of the rule: ``{slot: gt}`` after collisions."""
  anchors = [a for level in ANCHORS for a in level]
  claims = {}
  for g, ((x1, y1, x2, y2), ok) in enumerate(zip(boxes, valid)):
    w, h = x2 - x1, y2 - y1
    if not ok or w <= 0 or h <= 0:
      continue
    ious = []
    for aw, ah in anchors:
      inter = min(w, aw) * min(h, ah)
      ious.append(inter / (w * h + aw * ah - inter))
    best = int(np.argmax(ious))
    for t, iou in enumerate(ious):
      if t != best and not iou > iou_threshold:
        continue
      level, anchor = divmod(t, 3)
      stride = STRIDES[level]
      gh, gw = GRIDS[level]
      fx, fy = (x1 + x2) / 2 / stride, (y1 + y2) / 2 / stride
      col, row = min(max(math.floor(fx), 0), gw - 1), min(max(math.floor(fy), 0), gh - 1)
      cells = [(row, col, True)]
      if neighbor_cells:
        dx = -1 if fx - math.floor(fx) < 0.5 else (1 if fx - math.floor(fx) > 0.5 else 0)
        dy = -1 if fy - math.floor(fy) < 0.5 else (1 if fy - math.floor(fy) > 0.5 else 0)
        if dx and 0 <= col + dx < gw:
          cells.append((row, col + dx, False))
        if dy and 0 <= row + dy < gh:
          cells.append((row + dy, col, False))
      for r, c, centre in cells:
        rank = (centre, iou, -g)
        key = (level, r, c, anchor)
        if key not in claims or rank > claims[key][0]:
          claims[key] = (rank, g)
  return {key: g for key, (_, g) in claims.items()}


@pytest.mark.parametrize("neighbor_cells", [False, True])
def test_random_batches_match_the_loop_reference(rng, neighbor_cells):
  batch, num_gt = 3, 12
  centres = rng.uniform(0, 256, size=(batch, num_gt, 2))
  sizes = np.exp(rng.uniform(np.log(4), np.log(200), size=(batch, num_gt, 2)))
  # Clusters of boxes so that cells collide.
  centres[:, : num_gt // 2] = centres[:, :1] + rng.normal(scale=6, size=(batch, num_gt // 2, 2))
  sizes[:, 2:4] = sizes[:, 1:2]  # equal shapes: ties broken by index
  boxes = np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=-1).astype(np.float32)
  labels = rng.integers(0, K, size=(batch, num_gt))
  valid = rng.uniform(size=(batch, num_gt)) < 0.85
  fn = jax.jit(lambda b, l, v: yt.yolo_targets(b, l, v, ANCHORS, STRIDES, GRIDS, IMAGE, K, neighbor_cells=neighbor_cells))
  out = fn(jnp.asarray(boxes), jnp.asarray(labels), jnp.asarray(valid))
  for i in range(batch):
    level_targets = [jax.tree_util.tree_map(lambda x: np.asarray(x[i]), level) for level in out]
    got = assigned_slots(level_targets)
    want = reference_assignment(boxes[i].astype(np.float64), labels[i], valid[i], yt.YOLOV4_IOU_THRESHOLD, neighbor_cells)
    assert got == want
    for (level, row, col, anchor), g in got.items():
      t = level_targets[level]
      np.testing.assert_array_equal(t.boxes[row, col, anchor], boxes[i, g])
      assert t.classes[row, col, anchor].argmax() == labels[i, g]
      area = (boxes[i, g, 2] - boxes[i, g, 0]) * (boxes[i, g, 3] - boxes[i, g, 1])
      assert t.box_weights[row, col, anchor] == pytest.approx(2 - area / 256**2, rel=1e-6)
    assert sum(level.objectness.sum() for level in level_targets) == len(got)


def test_ignore_mask():
  gt = jnp.asarray([[[0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 60.0, 60.0]]])
  valid = jnp.asarray([[True, False]])
  # IoU with the first box: 8.5/10 = 0.85 (ignored), 7/10 = 0.7 (not: strictly above), 0.6, 0;
  # the last overlaps only the padded box.
  preds = jnp.asarray([[[0.0, 0.0, 10.0, 8.5], [0.0, 0.0, 10.0, 7.0], [0.0, 0.0, 6.0, 10.0], [20.0, 20.0, 30.0, 30.0],
                        [50.0, 50.0, 60.0, 60.0]]])
  np.testing.assert_array_equal(yt.ignore_mask(preds, gt, valid), [[True, False, False, False, False]])
  np.testing.assert_array_equal(yt.ignore_mask(preds, gt, valid, threshold=0.5), [[True, True, True, False, False]])
  np.testing.assert_array_equal(yt.ignore_mask(preds, gt, jnp.asarray([[False, False]])), [[False] * 5])
  # Batched under jit, and the gradient through it is never taken.
  two = jnp.concatenate([preds, preds[:, ::-1]])
  got = jax.jit(yt.ignore_mask)(two, jnp.concatenate([gt, gt]), jnp.concatenate([valid, ~valid]))
  np.testing.assert_array_equal(got, [[True, False, False, False, False], [True, False, False, False, False]])


def test_shape_errors_name_the_argument():
  with pytest.raises(ValueError, match="yolo_targets: argument 'gt_labels'"):
    yt.yolo_targets(jnp.zeros((2, 3, 4)), jnp.zeros((2, 4), jnp.int32), jnp.zeros((2, 3), bool), ANCHORS, STRIDES, GRIDS,
                    IMAGE, K)
  with pytest.raises(ValueError, match="one entry per level"):
    yt.yolo_targets(jnp.zeros((2, 3, 4)), jnp.zeros((2, 3), jnp.int32), jnp.zeros((2, 3), bool), ANCHORS[:2], STRIDES,
                    GRIDS, IMAGE, K)
