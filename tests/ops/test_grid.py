"""acne_jax.ops.grid against float64 NumPy references written from the Grid R-CNN / CPM R-CNN
definitions (reference_notes.md 2.2): loops over RoIs, points and cells, Python ``int()``."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from acne_jax.ops import grid

MAP = 56
HALF = 28


def _np_targets(rois, gts, ratio, map_size=MAP, radius=1, g=3):
  """Whole 56x56 maps per point by loops, then each point's 28x28 window."""
  rois = np.asarray(rois, np.float64)
  gts = np.asarray(gts, np.float64)
  out = np.zeros((len(rois), HALF, HALF, g * g))
  for i, ((x1, y1, x2, y2), (gx1, gy1, gx2, gy2)) in enumerate(zip(rois, gts)):
    w, h = x2 - x1, y2 - y1
    ex1, ey1 = x1 - ratio * w / 2, y1 - ratio * h / 2
    ew, eh = (x2 + ratio * w / 2) - ex1, (y2 + ratio * h / 2) - ey1
    if ew <= g or eh <= g:
      continue
    for j in range(g * g):
      fx, fy = 1 - (j // g) / (g - 1), 1 - (j % g) / (g - 1)
      px, py = fx * gx1 + (1 - fx) * gx2, fy * gy1 + (1 - fy) * gy2
      cx, cy = int((px - ex1) / ew * map_size), int((py - ey1) / eh * map_size)
      whole = np.zeros((map_size, map_size))
      for x in range(cx - radius, cx + radius + 1):
        for y in range(cy - radius, cy + radius + 1):
          if 0 <= x < map_size and 0 <= y < map_size and (x - cx) ** 2 + (y - cy) ** 2 <= radius ** 2:
            whole[y, x] = 1
      x0 = {0: 0, 1: 14, 2: 28}[j // g]
      y0 = {0: 0, 1: 14, 2: 28}[j % g]
      out[i, :, :, j] = whole[y0:y0 + HALF, x0:x0 + HALF]
  return out


def _np_decode(logits, rois, ratio, map_size=MAP, g=3):
  """Pet's GridPostProcessor.get_boxes, in float64 loops."""
  logits = np.asarray(logits, np.float64)
  out = np.zeros((len(rois), 4))
  for i, (x1, y1, x2, y2) in enumerate(np.asarray(rois, np.float64)):
    w, h = x2 - x1, y2 - y1
    ex1, ey1 = x1 - ratio * w / 2, y1 - ratio * h / 2
    xs, ys, ss = [], [], []
    for j in range(g * g):
      window = 1 / (1 + np.exp(-logits[i, :, :, j]))
      pos = int(np.argmax(window))
      y, x = divmod(pos, HALF)
      x += {0: 0, 1: 14, 2: 28}[j // g]
      y += {0: 0, 1: 14, 2: 28}[j % g]
      xs.append((x + 0.5) / map_size * (1 + ratio) * w + ex1)
      ys.append((y + 0.5) / map_size * (1 + ratio) * h + ey1)
      ss.append(window.max())
    xs, ys, ss = map(np.asarray, (xs, ys, ss))

    def vote(values, idx):
      return (values[idx] * ss[idx]).sum() / ss[idx].sum()

    out[i] = [vote(xs, [0, 1, 2]), vote(ys, [0, 3, 6]), vote(xs, [6, 7, 8]), vote(ys, [2, 5, 8])]
  return out


def _random_pairs(rng, n):
  xy = rng.uniform(0, 200, (n, 2))
  wh = rng.uniform(2, 60, (n, 2))
  rois = np.concatenate([xy, xy + wh], 1)
  jitter = rng.normal(0, 0.25, (n, 4)) * np.concatenate([wh, wh], 1)
  return rois.astype(np.float32), (rois + jitter).astype(np.float32)


def test_point_layout_windows_and_edges():
  np.testing.assert_array_equal(grid.point_windows(3, 56), [[0, 0], [0, 14], [0, 28], [14, 0], [14, 14], [14, 28],
                                                             [28, 0], [28, 14], [28, 28]])
  np.testing.assert_array_equal(grid.point_factors(3)[[0, 4, 8]], [[1, 1], [0.5, 0.5], [0, 0]])
  left, top, right, bottom = grid.edge_points(3)
  assert (list(left), list(top), list(right), list(bottom)) == ([0, 1, 2], [0, 3, 6], [6, 7, 8], [2, 5, 8])


def test_expand_boxes_by_the_mapping_ratio():
  box = np.array([[10.0, 20.0, 30.0, 60.0]], np.float32)
  np.testing.assert_allclose(grid.expand_boxes(box, 1.0), [[0, 0, 40, 80]])
  np.testing.assert_allclose(grid.expand_boxes(box, 0.25), [[7.5, 15, 32.5, 65]])


@pytest.mark.parametrize("ratio", [1.0, 0.5, 0.25])
def test_targets_equal_the_loop_reference(ratio):
  rois, gts = _random_pairs(np.random.default_rng(int(ratio * 8)), 40)
  got = np.asarray(jax.jit(grid.grid_targets, static_argnums=(2,))(rois, gts, ratio))
  np.testing.assert_array_equal(got, _np_targets(rois, gts, ratio))
  assert got.sum() > 40 * 9  # the sample has positives, most points a whole plus


def test_targets_truncate_toward_zero_and_skip_tiny_regions():
  # Expanded region [0, 56] x [0, 56] (ratio 1 of [14, 14, 42, 42]): one pixel per cell.
  roi = np.array([[14.0, 14.0, 42.0, 42.0]], np.float32)
  gt = np.array([[-0.6, 10.3, 30.0, 30.0]], np.float32)  # left edge outside the region by 0.6 px
  t = np.asarray(grid.grid_targets(roi, gt, 1.0))
  # int(-0.6) == 0 (a floor would give -1): the left points' plus is centred on column 0, so
  # columns 0 and 1 are positive; row int(10.3) = 10 for the top-left point.
  assert t[0, 10, 0, 0] == 1 and t[0, 10, 1, 0] == 1 and t[0, 9, 0, 0] == 1 and t[0, 11, 0, 0] == 1
  assert t[0, :, :, 0].sum() == 4  # the plus's left arm fell off the map
  np.testing.assert_array_equal(t, _np_targets(roi, gt, 1.0))
  # Expanded sides of exactly 3 px get no targets; 3.02 px do (1.51 px boxes at ratio 1).
  tiny = np.array([[0.0, 0.0, 1.5, 1.5], [0.0, 0.0, 1.51, 1.51]], np.float32)
  # (The ground truth is shifted off the RoI: a point exactly on the RoI's edge lands exactly on
  # a cell boundary at ratio 1, where float32 and float64 may truncate differently.)
  shifted = tiny + np.float32(0.1)
  t = np.asarray(grid.grid_targets(tiny, shifted, 1.0))
  assert t[0].sum() == 0 and t[1].sum() > 0
  np.testing.assert_array_equal(t, _np_targets(tiny, shifted, 1.0))


@pytest.mark.parametrize("ratio", [1.0, 0.25])
def test_decode_equals_the_reference_post_processor(ratio):
  rng = np.random.default_rng(5)
  rois, _ = _random_pairs(rng, 12)
  logits = rng.normal(size=(12, HALF, HALF, 9)).astype(np.float32)
  boxes, scores = grid.decode_grid(logits, rois, ratio)
  np.testing.assert_allclose(boxes, _np_decode(logits, rois, ratio), rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(scores, 1 / (1 + np.exp(-logits.reshape(12, -1, 9).max(1))), rtol=1e-6)


@pytest.mark.parametrize("ratio", [1.0, 0.5, 0.25])
def test_a_box_encoded_into_targets_decodes_back_within_one_cell(ratio):
  rng = np.random.default_rng(11)
  rois, gts = _random_pairs(rng, 200)
  region = np.asarray(grid.expand_boxes(rois, ratio), np.float64)
  # Keep the pairs whose every point lies inside its own window (elsewhere it is unreachable by
  # construction of the windows, in the reference too; a point less than a cell outside the map
  # is truncated onto its edge cell, hence floor here, not the targets' truncation).
  factors = grid.point_factors(3)
  px = factors[:, 0] * gts[:, None, 0] + (1 - factors[:, 0]) * gts[:, None, 2]
  py = factors[:, 1] * gts[:, None, 1] + (1 - factors[:, 1]) * gts[:, None, 3]
  cx = np.floor((px - region[:, None, 0]) / (region[:, None, 2] - region[:, None, 0]) * MAP) - grid.point_windows(3, MAP)[:, 0]
  cy = np.floor((py - region[:, None, 1]) / (region[:, None, 3] - region[:, None, 1]) * MAP) - grid.point_windows(3, MAP)[:, 1]
  reachable = np.all((cx >= 0) & (cx < HALF) & (cy >= 0) & (cy < HALF), axis=1) & np.all(region[:, 2:] - region[:, :2] > 3, axis=1)
  rois, gts, region = rois[reachable], gts[reachable], region[reachable]
  assert len(rois) >= 20
  targets = np.asarray(grid.grid_targets(rois, gts, ratio))
  # A heatmap peaked at each plus's centre: every cell scores the number of positive cells in
  # its own plus, which is largest (5, or 4 at a window's border) at the centre.
  padded = np.pad(targets, ((0, 0), (1, 1), (1, 1), (0, 0)))
  logits = (padded[:, 1:-1, 1:-1] + padded[:, :-2, 1:-1] + padded[:, 2:, 1:-1] + padded[:, 1:-1, :-2] + padded[:, 1:-1, 2:]) * targets
  boxes, _ = grid.decode_grid(logits.astype(np.float32), rois, ratio)
  cell = np.concatenate([(region[:, 2:] - region[:, :2]) / MAP] * 2, axis=1)
  assert np.all(np.abs(np.asarray(boxes) - gts) <= cell), np.max(np.abs(np.asarray(boxes) - gts) / cell)
