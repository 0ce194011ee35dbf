"""YOLOv4 label assignment on padded ground truth, as dense per-level targets with static shapes.

YOLOv4 (darknet ``yolo_layer.c``, ``[yolo]`` layers of ``cfg/yolov4.cfg``) has ``L`` output levels
(strides 8, 16, 32), each with ``A`` anchors (3) of fixed pixel sizes; a prediction slot is
``(level, row, column, anchor)``. A ground-truth box ``g`` with centre ``(cx, cy)`` is assigned

1. to the **best anchor over all** ``L * A`` anchors, by the IoU of the anchor's and the box's
   shapes placed at a common centre (``min(w_g, w_a) min(h_g, h_a) / (w_g h_g + w_a h_a - ...)``);
   ties go to the first anchor, as darknet's strict ``iou > best_iou`` scan;
2. **plus every other anchor whose shape IoU exceeds** ``iou_threshold`` (darknet's
   ``iou_thresh=0.213``, YOLOv4's multi-anchor rule; ``>= 1`` turns it off, as in darknet),

each at the **cell containing the centre** on that anchor's level: ``(floor(cy / s),
floor(cx / s))`` for stride ``s``, clipped to the grid. With ``neighbor_cells`` (off by default;
scaled-YOLOv4 / YOLOv5) the box is also assigned at the two neighbouring cells nearest the centre,
the left or right one (centre in the left or right half of its cell) and the one above or below,
where they exist. Predictions of a neighbour cell have to reach the centre from outside their own
cell, which YOLOv4's ``scale_x_y`` of 1.05-1.2 does not allow (it reaches 0.1 cell beyond); use it
with scaled-YOLOv4's ``scale_x_y = 2``.

**Collisions.** A slot holds one target. When several assignments land on one slot, the winner
is the one made at the box's own centre cell (not a neighbour cell), then the one with the higher
shape IoU with the slot's anchor, then the lower ground-truth index; the others are dropped at
that slot (they keep their other slots). Darknet instead sums the box gradients of every box that
lands on a slot and keeps the class of the last one; a dense target cannot hold two boxes.

Targets of one level, ``[H, W, A, ...]`` (``[B, H, W, A, ...]`` from :func:`yolo_targets`):

- ``boxes`` ``[.., 4]``: the assigned ground-truth box, x1y1x2y2 pixels (0 where none);
- ``objectness`` ``[..]``: 1.0 at assigned slots, else 0.0;
- ``classes`` ``[.., K]``: one-hot of the assigned box's label;
- ``box_weights`` ``[..]``: ``2 - w h / (W_img H_img)`` at assigned slots (darknet's ``scale``,
  larger for small boxes; darknet applies it to its MSE box loss only, not to CIoU), else 0;
- ``gt_index`` ``[..]``: int32 index of the assigned ground truth, -1 where none.

Ground truth is padded to ``G`` boxes with a validity mask; padding and boxes of zero width or
height take part in nothing. :func:`ignore_mask` gives darknet's ``ignore_thresh`` rule for the
objectness loss (the prediction side of the assignment).
"""

from __future__ import annotations

from typing import List, NamedTuple, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from acne_jax.ops.boxes import box_iou
from acne_jax.ops.shapes import check_shape

# darknet's iou_thresh in cfg/yolov4.cfg: every anchor whose shape IoU with a box exceeds it is
# assigned too (the best anchor always is).
YOLOV4_IOU_THRESHOLD = 0.213
# darknet's ignore_thresh: a prediction overlapping some box by more than this gets no negative
# objectness loss.
YOLOV4_IGNORE_THRESHOLD = 0.7


class LevelTargets(NamedTuple):
  """Dense targets of one output level (see the module docstring); ``[..., H, W, A, ...]``."""

  boxes: jnp.ndarray
  objectness: jnp.ndarray
  classes: jnp.ndarray
  box_weights: jnp.ndarray
  gt_index: jnp.ndarray


def anchor_shape_iou(gt_wh: jnp.ndarray, anchor_wh: jnp.ndarray) -> jnp.ndarray:
  """IoU of box shapes placed at a common centre (darknet's ``box_iou`` of ``truth_shift``).

  Args:
    gt_wh: ``[G, 2]`` float widths and heights (pixels).
    anchor_wh: ``[T, 2]`` float anchor widths and heights (pixels).

  Returns:
    ``[G, T]`` IoU in [0, 1]; 0 where the union is empty.
  """
  check_shape("anchor_shape_iou", "gt_wh", gt_wh, "[G, 2]")
  check_shape("anchor_shape_iou", "anchor_wh", anchor_wh, "[T, 2]")
  inter = jnp.prod(jnp.minimum(gt_wh[:, None, :], anchor_wh[None, :, :]), axis=-1)
  union = jnp.prod(gt_wh, axis=-1)[:, None] + jnp.prod(anchor_wh, axis=-1)[None, :] - inter
  positive = union > 0
  return jnp.where(positive, inter / jnp.where(positive, union, 1.0), 0.0)


def _check_levels(anchors, strides, grid_sizes) -> Tuple[np.ndarray, List[int]]:
  if not (len(anchors) == len(strides) == len(grid_sizes)) or not anchors:
    raise ValueError(f"yolo_targets: anchors, strides and grid_sizes need one entry per level; got {len(anchors)}, "
                     f"{len(strides)} and {len(grid_sizes)}.")
  per_level = []
  for level, level_anchors in enumerate(anchors):
    a = np.asarray(level_anchors, np.float32)
    if a.ndim != 2 or a.shape[1] != 2 or a.shape[0] < 1:
      raise ValueError(f"yolo_targets: anchors of level {level} must be [A, 2] (w, h) pixels; got shape {list(a.shape)}.")
    per_level.append(a)
  return np.concatenate(per_level), [len(a) for a in per_level]


def yolo_targets_single(
    gt_boxes: jnp.ndarray,
    gt_labels: jnp.ndarray,
    gt_valid: jnp.ndarray,
    anchors: Sequence[Sequence[Tuple[float, float]]],
    strides: Sequence[int],
    grid_sizes: Sequence[Tuple[int, int]],
    image_size: Tuple[int, int],
    num_classes: int,
    iou_threshold: float = YOLOV4_IOU_THRESHOLD,
    neighbor_cells: bool = False,
) -> List[LevelTargets]:
  """YOLOv4 targets of one image (see the module docstring).

  Args:
    gt_boxes: ``[G, 4]`` float x1y1x2y2 pixels of the network input.
    gt_labels: ``[G]`` int class in ``[0, num_classes)``.
    gt_valid: ``[G]`` bool; padding is False.
    anchors: per level, ``A_l`` anchors ``(w, h)`` in input pixels (static).
    strides: per level, the stride in pixels (static).
    grid_sizes: per level, ``(H_l, W_l)`` of the output grid (static).
    image_size: ``(height, width)`` of the network input, for ``box_weights``.
    num_classes: ``K``.
    iou_threshold: extra anchors need a shape IoU above this (darknet ``iou_thresh``).
    neighbor_cells: also assign at the two nearest neighbouring cells.

  Returns:
    One :class:`LevelTargets` per level, ``[H_l, W_l, A_l, ...]``.
  """
  dims = check_shape("yolo_targets", "gt_boxes", gt_boxes, "[G, 4]")
  check_shape("yolo_targets", "gt_labels", gt_labels, "[G]", dims)
  check_shape("yolo_targets", "gt_valid", gt_valid, "[G]", dims)
  all_anchors, anchors_per_level = _check_levels(anchors, strides, grid_sizes)
  num_gt = gt_boxes.shape[0]
  num_anchors = all_anchors.shape[0]
  level_of_anchor = np.repeat(np.arange(len(anchors_per_level)), anchors_per_level)
  local_index = np.concatenate([np.arange(n) for n in anchors_per_level])
  anchor_strides = np.asarray(strides, np.float32)[level_of_anchor]
  grid_h = np.asarray([g[0] for g in grid_sizes], np.int32)[level_of_anchor]
  grid_w = np.asarray([g[1] for g in grid_sizes], np.int32)[level_of_anchor]

  gt_boxes = gt_boxes.astype(jnp.float32)
  wh = gt_boxes[:, 2:] - gt_boxes[:, :2]
  valid = gt_valid & (wh[:, 0] > 0) & (wh[:, 1] > 0)
  shape_iou = anchor_shape_iou(wh, jnp.asarray(all_anchors))  # [G, T]
  best = jnp.argmax(shape_iou, axis=1)
  assigned = valid[:, None] & ((jnp.arange(num_anchors)[None, :] == best[:, None]) | (shape_iou > iou_threshold))

  # Centre cell of every box on every anchor's level, [G, T].
  center = (gt_boxes[:, :2] + gt_boxes[:, 2:]) * 0.5
  scaled = center[:, None, :] / jnp.asarray(anchor_strides)[None, :, None]  # [G, T, 2] (x, y) in cells
  cell_x = jnp.clip(jnp.floor(scaled[..., 0]).astype(jnp.int32), 0, jnp.asarray(grid_w - 1)[None, :])
  cell_y = jnp.clip(jnp.floor(scaled[..., 1]).astype(jnp.int32), 0, jnp.asarray(grid_h - 1)[None, :])
  cells_x, cells_y, cells_ok, at_center = [cell_x], [cell_y], [assigned], [jnp.ones_like(assigned)]
  if neighbor_cells:
    frac = scaled - jnp.floor(scaled)
    step_x = jnp.where(frac[..., 0] < 0.5, -1, jnp.where(frac[..., 0] > 0.5, 1, 0))
    step_y = jnp.where(frac[..., 1] < 0.5, -1, jnp.where(frac[..., 1] > 0.5, 1, 0))
    nx, ny = cell_x + step_x, cell_y + step_y
    cells_x += [nx, cell_x]
    cells_y += [cell_y, ny]
    cells_ok += [assigned & (step_x != 0) & (nx >= 0) & (nx < grid_w[None, :]),
                 assigned & (step_y != 0) & (ny >= 0) & (ny < grid_h[None, :])]
    at_center += [jnp.zeros_like(assigned)] * 2
  # Candidates [T, N] with N = C * G (C cells per box), ordered (cell kind, box).
  cx = jnp.concatenate(cells_x, axis=0).T
  cy = jnp.concatenate(cells_y, axis=0).T
  ok = jnp.concatenate(cells_ok, axis=0).T
  centre_kind = jnp.concatenate(at_center, axis=0).T
  iou = jnp.tile(shape_iou, (len(cells_x), 1)).T
  gt_of = jnp.tile(jnp.arange(num_gt, dtype=jnp.int32), len(cells_x))  # [N]

  # One winner per slot: candidates of one anchor collide when they share a cell.
  same_cell = (cx[:, :, None] == cx[:, None, :]) & (cy[:, :, None] == cy[:, None, :])  # [T, N, N]
  other_first = (
      (centre_kind[:, :, None] & ~centre_kind[:, None, :])
      | ((centre_kind[:, :, None] == centre_kind[:, None, :])
         & ((iou[:, :, None] > iou[:, None, :])
            | ((iou[:, :, None] == iou[:, None, :]) & (gt_of[None, :, None] < gt_of[None, None, :]))))
  )  # [T, other, self]: the other candidate outranks this one
  beaten = jnp.any(same_cell & ok[:, :, None] & other_first, axis=1)  # [T, N]
  wins = ok & ~beaten

  height, width = image_size
  area = wh[:, 0] * wh[:, 1]
  weight_of_gt = 2.0 - area / float(height * width)
  labels = jnp.clip(gt_labels.astype(jnp.int32), 0, num_classes - 1)

  targets = []
  start = 0
  for level, num_level_anchors in enumerate(anchors_per_level):
    rows = slice(start, start + num_level_anchors)
    start += num_level_anchors
    h, w = grid_sizes[level]
    size = h * w * num_level_anchors
    slot = (cy[rows] * w + cx[rows]) * num_level_anchors + jnp.asarray(local_index[rows])[:, None]  # [A_l, N]
    slot = jnp.where(wins[rows], slot, size).reshape(-1)  # losers go out of range and are dropped
    gt = jnp.broadcast_to(gt_of[None, :], wins[rows].shape).reshape(-1)
    gt_index = jnp.full((size,), -1, jnp.int32).at[slot].set(gt, mode="drop")
    has = gt_index >= 0
    safe = jnp.maximum(gt_index, 0)
    boxes = jnp.where(has[:, None], gt_boxes[safe], 0.0)
    classes = jax.nn.one_hot(labels[safe], num_classes, dtype=jnp.float32) * has[:, None]
    shape = (h, w, num_level_anchors)
    targets.append(LevelTargets(
        boxes=boxes.reshape(shape + (4,)),
        objectness=has.astype(jnp.float32).reshape(shape),
        classes=classes.reshape(shape + (num_classes,)),
        box_weights=jnp.where(has, weight_of_gt[safe], 0.0).reshape(shape),
        gt_index=gt_index.reshape(shape),
    ))
  return targets


def yolo_targets(
    gt_boxes: jnp.ndarray,
    gt_labels: jnp.ndarray,
    gt_valid: jnp.ndarray,
    anchors: Sequence[Sequence[Tuple[float, float]]],
    strides: Sequence[int],
    grid_sizes: Sequence[Tuple[int, int]],
    image_size: Tuple[int, int],
    num_classes: int,
    iou_threshold: float = YOLOV4_IOU_THRESHOLD,
    neighbor_cells: bool = False,
) -> List[LevelTargets]:
  """:func:`yolo_targets_single` over a batch: ``gt_boxes [B, G, 4]``, ``gt_labels [B, G]``,
  ``gt_valid [B, G]`` -> per level :class:`LevelTargets` of ``[B, H_l, W_l, A_l, ...]``."""
  dims = check_shape("yolo_targets", "gt_boxes", gt_boxes, "[B, G, 4]")
  check_shape("yolo_targets", "gt_labels", gt_labels, "[B, G]", dims)
  check_shape("yolo_targets", "gt_valid", gt_valid, "[B, G]", dims)

  def one(boxes, labels, valid):
    return yolo_targets_single(boxes, labels, valid, anchors, strides, grid_sizes, image_size, num_classes, iou_threshold,
                               neighbor_cells)

  return jax.vmap(one)(gt_boxes, gt_labels, gt_valid)


def ignore_mask(
    pred_boxes: jnp.ndarray,
    gt_boxes: jnp.ndarray,
    gt_valid: jnp.ndarray,
    threshold: float = YOLOV4_IGNORE_THRESHOLD,
) -> jnp.ndarray:
  """darknet's ``ignore_thresh``: predictions whose best IoU with any valid ground-truth box exceeds
  ``threshold`` (0.7) get no *negative* objectness loss (a positive slot keeps its target 1).

  The original YOLOv3 rule, on any box whatever its class; AlexeyAB's current ``yolo_layer.c``
  also asks the prediction's class score for that box's class to exceed 0.25 (not done here).

  Args:
    pred_boxes: ``[B, N, 4]`` float x1y1x2y2 decoded predictions (no gradient is taken).
    gt_boxes: ``[B, G, 4]`` float x1y1x2y2.
    gt_valid: ``[B, G]`` bool.
    threshold: strict lower bound on the best IoU.

  Returns:
    ``[B, N]`` bool, True where the prediction is ignored.
  """
  dims = check_shape("ignore_mask", "pred_boxes", pred_boxes, "[B, N, 4]")
  check_shape("ignore_mask", "gt_boxes", gt_boxes, "[B, G, 4]", dims)
  check_shape("ignore_mask", "gt_valid", gt_valid, "[B, G]", dims)

  def one(pred, gt, valid):
    iou = jnp.where(valid[None, :], box_iou(jax.lax.stop_gradient(pred), gt), 0.0)
    return jnp.max(iou, axis=1, initial=0.0) > threshold

  return jax.vmap(one)(pred_boxes, gt_boxes, gt_valid)
