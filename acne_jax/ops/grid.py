"""Grid-guided localisation (Grid R-CNN, Grid R-CNN Plus, CPM R-CNN): heatmap targets and decoding.

A box is described by ``g x g`` points (``g = 3``: corners, edge midpoints, centre). Point ``j``
has column ``j // g`` and row ``j % g`` (column-major, as the reference implementations), and
sits at ``(f_x * x1 + (1 - f_x) * x2, f_y * y1 + (1 - f_y) * y2)`` with ``f = 1 - index / (g - 1)``.

Each RoI's heatmaps cover its box *expanded* by the mapping ratio ``r`` (the "extended region
mapping" of Grid R-CNN; CPM's cascade uses r = 1, 0.5, 0.25, i.e. 2x, 1.5x, 1.25x the box):
``x1' = x1 - r w / 2``, ``x2' = x2 + r w / 2`` (the same in y). The whole map over the expanded
box is ``M x M`` (``M = 56``), but every point only predicts an ``M / 2`` window of it (Grid R-CNN
Plus): the left column of points the left half, the middle column the middle half, the right
column the right half, and the same for rows (:func:`point_windows`).

Layout: heatmaps are ``[R, M / 2, M / 2, P]`` (NHWC, one channel per point), as the grid head
outputs them. Boxes are x1y1x2y2 pixels.
"""

from __future__ import annotations

from typing import Tuple

import jax
import jax.numpy as jnp
import numpy as np

from acne_jax.ops.shapes import check_shape


def point_factors(grid_size: int = 3) -> np.ndarray:
  """``[P, 2]`` float ``(f_x, f_y)`` of each point: its position is ``f * (x1, y1) + (1 - f) * (x2, y2)``."""
  j = np.arange(grid_size * grid_size)
  return np.stack([1.0 - (j // grid_size) / (grid_size - 1), 1.0 - (j % grid_size) / (grid_size - 1)], axis=1)


def edge_points(grid_size: int = 3) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """Indices of the points on the left, top, right and bottom edges (``g`` each)."""
  g = grid_size
  columns = np.arange(g * g).reshape(g, g)  # columns[c, r] = point at column c, row r
  return columns[0], columns[:, 0], columns[g - 1], columns[:, g - 1]


def point_windows(grid_size: int = 3, map_size: int = 56) -> np.ndarray:
  """``[P, 2]`` int ``(x0, y0)``: where each point's ``half x half`` window starts in the whole
  ``map_size`` map, ``half = map_size // 4 * 2`` (Grid R-CNN Plus). For 3 x 3 points and 56:
  column 0 -> 0, column 1 -> 14, column 2 -> 28 (rows alike)."""
  half = map_size // 4 * 2

  def start(index):
    if index == 0:
      return 0
    if index == grid_size - 1:
      return half
    return max(int((index / (grid_size - 1) - 0.25) * map_size), 0)

  j = np.arange(grid_size * grid_size)
  return np.asarray([[start(int(k // grid_size)), start(int(k % grid_size))] for k in j], np.int32)


def expand_boxes(boxes: jnp.ndarray, ratio: float) -> jnp.ndarray:
  """The region a box's heatmaps cover: ``[..., 4]`` boxes grown by ``ratio * w / 2`` (``ratio *
  h / 2``) on each side, i.e. ``(1 + ratio)`` times the box."""
  check_shape("expand_boxes", "boxes", boxes, "[..., 4]")
  w = boxes[..., 2] - boxes[..., 0]
  h = boxes[..., 3] - boxes[..., 1]
  dx, dy = ratio * w / 2, ratio * h / 2
  return jnp.stack([boxes[..., 0] - dx, boxes[..., 1] - dy, boxes[..., 2] + dx, boxes[..., 3] + dy], axis=-1)


def grid_targets(
    rois: jnp.ndarray,
    gt_boxes: jnp.ndarray,
    ratio: float,
    map_size: int = 56,
    radius: int = 1,
    grid_size: int = 3,
) -> jnp.ndarray:
  """Binary heatmap targets of each RoI's matched ground truth.

  For point ``j`` of the ground truth at ``(px, py)``, its cell in the whole map over the
  expanded RoI is ``cx = int((px - x1') / w' * M)`` (truncation toward zero, as Python's ``int``
  in the reference), ``cy`` alike; cells within ``radius`` of it (``dx**2 + dy**2 <= radius**2``:
  a 5-cell plus for radius 1) are positive, then the point's window is cut out. An RoI whose
  expanded width or height is ``<= grid_size`` pixels gets all-zero targets (the reference skips it).

  Args:
    rois: ``[R, 4]`` float x1y1x2y2, the RoIs the heatmaps are predicted for.
    gt_boxes: ``[R, 4]`` the ground truth matched to each RoI.
    ratio: mapping ratio of the stage (1 for Grid R-CNN and CPM's first stage).
    map_size: ``M``, side of the whole map (56).
    radius: positive radius in cells (1).
    grid_size: ``g`` (3).

  Returns:
    ``[R, M / 2, M / 2, g * g]`` float32 in {0, 1}.
  """
  dims = check_shape("grid_targets", "rois", rois, "[R, 4]")
  check_shape("grid_targets", "gt_boxes", gt_boxes, "[R, 4]", dims)
  region = expand_boxes(rois, ratio)
  width = region[:, 2] - region[:, 0]
  height = region[:, 3] - region[:, 1]
  factors = jnp.asarray(point_factors(grid_size), rois.dtype)
  px = factors[None, :, 0] * gt_boxes[:, None, 0] + (1 - factors[None, :, 0]) * gt_boxes[:, None, 2]  # [R, P]
  py = factors[None, :, 1] * gt_boxes[:, None, 1] + (1 - factors[None, :, 1]) * gt_boxes[:, None, 3]
  safe_w = jnp.where(width > 0, width, 1.0)[:, None]
  safe_h = jnp.where(height > 0, height, 1.0)[:, None]
  cx = jnp.trunc((px - region[:, None, 0]) / safe_w * map_size)
  cy = jnp.trunc((py - region[:, None, 1]) / safe_h * map_size)
  windows = point_windows(grid_size, map_size)
  half = map_size // 4 * 2
  cells = jnp.arange(half, dtype=rois.dtype)
  x = cells[None, None, :] + jnp.asarray(windows[:, 0], rois.dtype)[None, :, None]  # [1, P, half] whole-map columns
  y = cells[None, None, :] + jnp.asarray(windows[:, 1], rois.dtype)[None, :, None]
  dx2 = (x - cx[:, :, None]) ** 2  # [R, P, half]
  dy2 = (y - cy[:, :, None]) ** 2
  positive = dy2[:, :, :, None] + dx2[:, :, None, :] <= radius * radius  # [R, P, half(y), half(x)]
  large_enough = (width > grid_size) & (height > grid_size)
  positive = positive & large_enough[:, None, None, None]
  return jnp.transpose(positive, (0, 2, 3, 1)).astype(jnp.float32)


def decode_grid(
    heatmap_logits: jnp.ndarray,
    rois: jnp.ndarray,
    ratio: float,
    map_size: int = 56,
    grid_size: int = 3,
) -> Tuple[jnp.ndarray, jnp.ndarray]:
  """Boxes from predicted heatmaps (Grid R-CNN's ``get_bboxes``).

  Each point's position is the arg-max cell of its window, moved to the whole map and to the
  cell centre, then mapped back over the expanded RoI: ``x = (cell + 0.5) / M * (1 + r) w + x1'``.
  Each box edge is the mean of its ``g`` points' coordinates weighted by their peak
  probabilities (x1 from the left column, x2 the right, y1 the top row, y2 the bottom).

  Args:
    heatmap_logits: ``[R, h, w, P]`` logits (``h = w = M / 2``).
    rois: ``[R, 4]`` the boxes the heatmaps were predicted for.
    ratio: the stage's mapping ratio.

  Returns:
    ``boxes [R, 4]`` and ``point_scores [R, P]`` (peak probability per point).
  """
  dims = check_shape("decode_grid", "heatmap_logits", heatmap_logits, "[R, h, w, P]")
  check_shape("decode_grid", "rois", rois, "[R, 4]", dims)
  num_rois, h, w, points = heatmap_logits.shape
  if points != grid_size * grid_size or h != map_size // 4 * 2 or w != h:
    raise ValueError(f"decode_grid: heatmaps {heatmap_logits.shape[1:]} do not fit {grid_size}x{grid_size} points "
                     f"with windows of {map_size // 4 * 2} on a {map_size} map.")
  flat = jnp.transpose(heatmap_logits, (0, 3, 1, 2)).reshape(num_rois, points, h * w)
  position = jnp.argmax(flat, axis=-1)
  scores = jax.nn.sigmoid(jnp.max(flat, axis=-1).astype(jnp.float32))
  windows = jnp.asarray(point_windows(grid_size, map_size))
  xs = (position % w + windows[None, :, 0]).astype(rois.dtype)
  ys = (position // w + windows[None, :, 1]).astype(rois.dtype)
  region = expand_boxes(rois, ratio)
  width = (region[:, 2] - region[:, 0])[:, None]
  height = (region[:, 3] - region[:, 1])[:, None]
  abs_x = (xs + 0.5) / map_size * width + region[:, None, 0]
  abs_y = (ys + 0.5) / map_size * height + region[:, None, 1]
  left, top, right, bottom = (jnp.asarray(e) for e in edge_points(grid_size))

  def vote(coords, edge):
    weight = scores[:, edge]
    return jnp.sum(coords[:, edge] * weight, axis=1) / jnp.sum(weight, axis=1)

  boxes = jnp.stack([vote(abs_x, left), vote(abs_y, top), vote(abs_x, right), vote(abs_y, bottom)], axis=1)
  return boxes, scores
