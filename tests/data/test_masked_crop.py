"""Tests for acne_jax.data.masked_crop (SADH section 3.1.2, reference ``_relative_crop``)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from acne_jax.data import masked_crop as mc


def _rect(x1, y1, x2, y2):
  """float64 [4, 2] rectangle polygon, clockwise on screen from the top-left corner."""
  return np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], np.float64)


def _textured(h, w, seed=0):
  """uint8 [h, w, 3] with no zero pixel (so blacked-out pixels are recognisable)."""
  return np.random.default_rng(seed).integers(1, 256, size=(h, w, 3), dtype=np.uint8)


# ----------------------------------------------------------------------------------------
# Layout.


def test_issue_grid_3456x5184_gives_24_crops():
  h, w, s = 3456, 5184, 1024
  origins = mc.crop_origins(h, w)
  assert origins.dtype == np.int32 and origins.shape == (24, 2)
  # By hand: space_w = (5184 - 1024) / 5 = 832; space_h = (3456 - 1024) / 3 = 810.67.
  xs = [0, 832, 1664, 2496, 3328, 4160]
  ys = [0, 811, 1622, 2432]
  expected = np.array([[x, y] for y in ys for x in xs], np.int32)  # row-major, rows over y
  np.testing.assert_array_equal(origins, expected)
  # The reference formula, ceil(i * space), computed in float as the reference does.
  space_w, space_h = (w - s) / 5, (h - s) / 3
  assert [math.ceil(i * space_w) for i in range(6)] == xs
  assert [math.ceil(i * space_h) for i in range(4)] == ys
  # The last windows end exactly at the border; overlaps are equal up to 1 px of rounding.
  assert xs[-1] + s == w and ys[-1] + s == h
  assert set(np.diff(xs)) == {832}
  assert set(np.diff(ys)) <= {810, 811}

  image = np.zeros((h, w, 3), np.uint8)
  lesion = _rect(900.5, 900.5, 930.5, 930.5)  # inside windows (0,0), (832,0), (0,811), (832,811)
  crops = mc.masked_crops(image, [lesion], [3])
  assert len(crops) == 24
  for k, crop in enumerate(crops):
    assert crop.origin == tuple(expected[k])
    assert crop.image.shape == (s, s, 3) and crop.image.dtype == np.uint8
  holders = [k for k, c in enumerate(crops) if len(c.source_index)]
  assert holders == [0, 1, 6, 7]
  for k in holders:
    x0, y0 = crops[k].origin
    np.testing.assert_array_equal(crops[k].boxes, [[900 - x0, 900 - y0, 930 - x0, 930 - y0]])
    assert crops[k].labels.tolist() == [3]
  assert all(len(c.masked_index) == 0 for c in crops)


def test_crop_origins_equal_overlaps_and_last_window_at_border():
  for h, w, s in [(3000, 4000, 1024), (2049, 1025, 1024), (130, 200, 64), (7000, 6999, 1024)]:
    o = mc.crop_origins(h, w, s)
    n_h, n_w = math.ceil(h / s), math.ceil(w / s)
    assert o.shape == (n_h * n_w, 2)
    xs, ys = o[:n_w, 0], o[::n_w, 1]
    assert xs[0] == 0 and xs[-1] == w - s and ys[0] == 0 and ys[-1] == h - s
    if n_w > 1:
      assert np.ptp(np.diff(xs)) <= 1
      assert [math.ceil(i * (w - s) / (n_w - 1)) for i in range(n_w)] == xs.tolist()


def test_crop_origins_small_dimensions_get_one_window():
  np.testing.assert_array_equal(mc.crop_origins(40, 50, 64), [[0, 0]])
  np.testing.assert_array_equal(mc.crop_origins(64, 64, 64), [[0, 0]])
  np.testing.assert_array_equal(mc.crop_origins(40, 100, 64), [[0, 0], [36, 0]])
  with pytest.raises(ValueError):
    mc.crop_origins(0, 10, 64)


# ----------------------------------------------------------------------------------------
# Masking.


def test_lesion_cut_by_window_edge_is_black_there_and_whole_in_the_other_window():
  s = 64
  image = _textured(64, 112)  # n_w = 2, space = 48: windows x in [0, 64) and [48, 112)
  original = image.copy()
  np.testing.assert_array_equal(mc.crop_origins(64, 112, s), [[0, 0], [48, 0]])
  lesion = _rect(55.3, 10.2, 70.6, 30.7)  # straddles x = 63 (edge of window 0), inside window 1
  crops = mc.masked_crops(image, [lesion], [4], crop_size=s)
  w0, w1 = crops

  # Window 0: dropped, masked. Clipped to [1, 63] and truncated: x in [55, 63], y in [10, 30].
  assert w0.source_index.size == 0 and w0.boxes.shape == (0, 4) and w0.polygons == []
  assert w0.masked_index.tolist() == [0]
  expected = original[:, :64].copy()
  expected[10:31, 55:64] = 0
  np.testing.assert_array_equal(w0.image, expected)

  # Window 1: kept whole and unmasked. Shifted x in [7.3, 22.6]: floor 7, ceil(15.3) = 16.
  assert w1.masked_index.size == 0
  assert w1.source_index.tolist() == [0] and w1.labels.tolist() == [4]
  np.testing.assert_array_equal(w1.boxes, np.array([[7, 10, 23, 31]], np.float32))
  np.testing.assert_array_equal(w1.areas, np.array([16 * 21], np.float32))
  np.testing.assert_allclose(w1.polygons[0], (lesion - [48, 0]).astype(np.float32))
  assert w1.polygons[0].dtype == np.float32
  np.testing.assert_array_equal(w1.image, original[:, 48:112])
  np.testing.assert_array_equal(image, original)  # input untouched


def test_partial_threshold_is_one_pixel_from_the_window_edge():
  s = 64
  image = _textured(s, s, seed=1)
  a = _rect(0.5, 20.0, 20.0, 40.0)  # x = 0.5 < 1: partial
  b = _rect(40.0, 20.0, 63.0, 40.0)  # x = S - 1 exactly: not partial
  c = _rect(20.0, 1.0, 30.0, 63.0)  # y in [1, S - 1] exactly: not partial
  d = _rect(40.0, 45.0, 63.01, 60.0)  # x = 63.01 > S - 1: partial
  crop = mc.masked_crop(image, [a, b, c, d], [1, 2, 3, 4], (0, 0), crop_size=s)
  assert crop.masked_index.tolist() == [0, 3]
  assert crop.source_index.tolist() == [1, 2]
  assert crop.labels.tolist() == [2, 3]
  np.testing.assert_array_equal(crop.boxes, [[40, 20, 63, 40], [20, 1, 30, 63]])
  expected = image.copy()
  expected[20:41, 1:21] = 0  # a clipped to x >= 1: column 0 is never painted
  expected[45:61, 40:64] = 0  # d clipped to x <= 63
  np.testing.assert_array_equal(crop.image, expected)


def test_small_lesions_dropped_not_masked_but_small_partial_lesions_masked():
  s = 64
  image = _textured(s, s, seed=2)
  small = _rect(20.0, 20.0, 28.5, 40.0)  # box w = ceil(8.5) = 9 < 10: dropped, not masked
  just = _rect(40.2, 40.2, 49.7, 49.7)  # box 40 + ceil(9.5) = 50: w = h = 10, kept
  small_partial = _rect(60.0, 5.0, 66.0, 9.0)  # 6 x 4 and cut by x = 63: masked anyway
  crop = mc.masked_crop(image, [small, just, small_partial], [0, 1, 2], (0, 0), crop_size=s)
  assert crop.source_index.tolist() == [1]
  np.testing.assert_array_equal(crop.boxes, [[40, 40, 50, 50]])
  assert crop.masked_index.tolist() == [2]
  expected = image.copy()
  expected[5:10, 60:64] = 0
  np.testing.assert_array_equal(crop.image, expected)
  # min_size = 0 keeps the small one.
  crop = mc.masked_crop(image, [small, just], [0, 1], (0, 0), crop_size=s, min_size=0)
  assert crop.source_index.tolist() == [0, 1]


def test_masked_polygon_is_truncated_and_outlined():
  s = 32
  image = _textured(s, 40, seed=3)
  tri = np.array([[-5.0, 2.7], [12.9, 2.7], [-5.0, 20.9]])  # clipped/truncated: (1,2),(12,2),(1,20)
  crop = mc.masked_crop(image, [tri], [0], (0, 0), crop_size=s, fill_value=(7, 8, 9))
  assert crop.masked_index.tolist() == [0]
  painted = np.all(crop.image == [7, 8, 9], axis=-1)
  assert painted[2, 1] and painted[2, 12] and painted[20, 1] and painted[10, 5]
  assert not painted[:, 0].any() and not painted[0].any()
  assert not painted[21:].any() and not painted[:, 13:].any()
  assert not painted[15, 10]  # beyond the hypotenuse
  np.testing.assert_array_equal(crop.image[~painted], image[:s, :s][~painted])


def test_reference_rounding_by_hand():
  p = np.array([[3.7, 2.2], [15.2, 2.9], [9.0, 14.1]])
  # floor(3.7) = 3, 3 + ceil(11.5) = 15 (< max x 15.2: the reference's quirk);
  # floor(2.2) = 2, 2 + ceil(11.9) = 14 (< max y 14.1).
  np.testing.assert_array_equal(mc.polygon_bounds(p), [3, 2, 15, 14])
  np.testing.assert_allclose(mc.polygon_bounds(p, reference_rounding=False), [3.7, 2.2, 15.2, 14.1])
  np.testing.assert_array_equal(mc.polygon_bounds(_rect(1, 2, 11, 22)), [1, 2, 11, 22])

  image = _textured(64, 64, seed=4)
  lesion = p * 2 + 10  # x in [17.4, 40.4], y in [14.4, 38.2]
  crop = mc.masked_crop(image, [lesion], [5], (0, 0), crop_size=64)
  # floor(17.4) = 17, 17 + ceil(23) = 40; floor(14.4) = 14, 14 + ceil(23.8) = 38.
  np.testing.assert_array_equal(crop.boxes, [[17, 14, 40, 38]])
  np.testing.assert_array_equal(crop.areas, [23 * 24])  # box area, not polygon area
  tight = mc.masked_crop(image, [lesion], [5], (0, 0), crop_size=64, reference_rounding=False)
  np.testing.assert_allclose(tight.boxes, [[17.4, 14.4, 40.4, 38.2]], rtol=1e-6)
  np.testing.assert_allclose(tight.areas, [23.0 * 23.8], rtol=1e-6)
  assert tight.boxes.dtype == np.float32 and tight.areas.dtype == np.float32


def test_overlap_uses_the_rounded_box_with_strict_inequalities():
  s = 32
  image = _textured(32, 80, seed=5)  # windows x0 = 0, 24, 48
  np.testing.assert_array_equal(mc.crop_origins(32, 80, s)[:, 0], [0, 24, 48])
  # Box [5, 5, 24, 15] (integers): touches x = 24 (window 1's left edge) without overlapping.
  lesion = _rect(5.0, 5.0, 24.0, 15.0)
  crops = mc.masked_crops(image, [lesion], [0], crop_size=s)
  assert crops[0].source_index.tolist() == [0]
  assert crops[1].masked_index.size == 0 and crops[1].source_index.size == 0
  np.testing.assert_array_equal(crops[1].image, image[:, 24:56])
  # max x = 24.2 -> rounded box [5, .., 25, ..] overlaps window 1: partial there (x - 24 < 1).
  crops = mc.masked_crops(image, [_rect(5.0, 5.0, 24.2, 15.0)], [0], crop_size=s)
  assert crops[1].masked_index.tolist() == [0]
  expected = image[:, 24:56].copy()
  expected[5:16, 1] = 0  # clipped to x in [1, 1]: a 1-px line at column 1
  np.testing.assert_array_equal(crops[1].image, expected)
  # A zero-width box never overlaps: the lesion is ignored everywhere.
  flat = np.array([[10.0, 5.0], [10.0, 15.0], [10.0, 25.0]])
  crops = mc.masked_crops(image, [flat], [0], crop_size=s)
  assert all(c.source_index.size == 0 and c.masked_index.size == 0 for c in crops)


def test_circle_to_polygon_by_hand():
  poly = mc.circle_to_polygon((10.0, 20.0), (13.0, 24.0))  # d = 5
  e = 5 / math.sqrt(2)
  expected = [
      [10, 15], [10 - e, 20 - e], [5, 20], [10 - e, 20 + e],
      [10, 25], [10 + e, 20 + e], [15, 20], [10 + e, 20 - e],
  ]
  assert poly.shape == (8, 2)
  np.testing.assert_allclose(poly, expected, atol=1e-12)
  np.testing.assert_allclose(np.hypot(poly[:, 0] - 10, poly[:, 1] - 20), 5.0)
  np.testing.assert_array_equal(mc.polygon_bounds(poly), [5, 15, 15, 25])


def test_image_smaller_than_crop_is_padded_into_one_window():
  image = _textured(40, 50, seed=6)
  lesion = _rect(30.0, 20.0, 49.5, 39.5)  # touches the image edge, far from the window edge
  crops = mc.masked_crops(image, [lesion], [7], crop_size=64)
  assert len(crops) == 1
  crop = crops[0]
  assert crop.origin == (0, 0) and crop.image.shape == (64, 64, 3)
  np.testing.assert_array_equal(crop.image[:40, :50], image)
  assert not crop.image[40:].any() and not crop.image[:, 50:].any()
  assert crop.source_index.tolist() == [0]
  np.testing.assert_array_equal(crop.boxes, [[30, 20, 50, 40]])

  # Only one dimension smaller: windows along x, bottom padding.
  image = _textured(40, 100, seed=7)
  crops = mc.masked_crops(image, [], [], crop_size=64)
  assert [c.origin for c in crops] == [(0, 0), (36, 0)]
  np.testing.assert_array_equal(crops[1].image[:40], image[:, 36:])
  assert not crops[1].image[40:].any()
  assert crops[1].boxes.shape == (0, 4) and crops[1].labels.dtype == np.int32


def test_random_masked_crop_deterministic_and_in_bounds():
  image = _textured(90, 120, seed=8)
  original = image.copy()
  polys = [_rect(10.3, 10.3, 30.1, 25.9), _rect(50.0, 40.0, 80.0, 70.0), _rect(95.0, 60.0, 118.0, 88.0)]
  labels = [1, 2, 3]
  a = [mc.random_masked_crop(np.random.default_rng(5), image, polys, labels, crop_size=48)]
  b = [mc.random_masked_crop(np.random.default_rng(5), image, polys, labels, crop_size=48)]
  rng = np.random.default_rng(11)
  many = [mc.random_masked_crop(rng, image, polys, labels, crop_size=48) for _ in range(40)]
  assert a[0].origin == b[0].origin
  np.testing.assert_array_equal(a[0].image, b[0].image)
  np.testing.assert_array_equal(a[0].boxes, b[0].boxes)
  origins = np.array([c.origin for c in many])
  assert origins[:, 0].min() >= 0 and origins[:, 0].max() <= 120 - 48
  assert origins[:, 1].min() >= 0 and origins[:, 1].max() <= 90 - 48
  assert len({tuple(o) for o in origins}) > 10
  for c in many:  # same rule as masked_crop at that origin
    ref = mc.masked_crop(image, polys, labels, c.origin, crop_size=48)
    np.testing.assert_array_equal(c.image, ref.image)
    np.testing.assert_array_equal(c.source_index, ref.source_index)
    np.testing.assert_array_equal(c.masked_index, ref.masked_index)
  # Smaller than the crop: origin 0.
  small = mc.random_masked_crop(np.random.default_rng(0), image[:30, :40], [], [], crop_size=48)
  assert small.origin == (0, 0) and small.image.shape == (48, 48, 3)
  np.testing.assert_array_equal(image, original)


def test_input_not_modified_and_indices_consistent():
  rng = np.random.default_rng(9)
  image = _textured(100, 150, seed=9)
  original = image.copy()
  polys, labels = [], []
  for k in range(30):
    cx, cy = rng.uniform(0, 150), rng.uniform(0, 100)
    r = rng.uniform(2, 15)
    polys.append(mc.circle_to_polygon((cx, cy), (cx + r, cy)).astype(np.float32))
    labels.append(k % 10)
  polys_copy = [p.copy() for p in polys]
  labels = np.array(labels, np.int64)
  crops = mc.masked_crops(image, polys, labels, crop_size=64)
  assert len(crops) == 2 * 3
  np.testing.assert_array_equal(image, original)
  for p, q in zip(polys, polys_copy):
    np.testing.assert_array_equal(p, q)
  for c in crops:
    k = len(c.source_index)
    assert c.source_index.dtype == np.int32 and c.masked_index.dtype == np.int32
    assert c.labels.dtype == np.int32 and c.boxes.dtype == np.float32 and c.areas.dtype == np.float32
    assert c.boxes.shape == (k, 4) and c.labels.shape == (k,) and c.areas.shape == (k,)
    assert len(c.polygons) == k
    np.testing.assert_array_equal(c.labels, labels[c.source_index])
    assert np.all(np.diff(c.source_index) > 0) and np.all(np.diff(c.masked_index) > 0)
    assert not set(c.source_index) & set(c.masked_index)
    x0, y0 = c.origin
    for j, idx in enumerate(c.source_index):
      shifted = polys[idx].astype(np.float64) - [x0, y0]
      np.testing.assert_allclose(c.polygons[j], shifted, atol=1e-4)
      np.testing.assert_array_equal(c.boxes[j], mc.polygon_bounds(shifted))
      assert shifted.min() >= 1 and shifted.max() <= 63
      assert c.boxes[j, 2] - c.boxes[j, 0] >= 10 and c.boxes[j, 3] - c.boxes[j, 1] >= 10
    np.testing.assert_array_equal(c.areas, (c.boxes[:, 2] - c.boxes[:, 0]) * (c.boxes[:, 3] - c.boxes[:, 1]))
    # Pixels outside the masked lesions are the source pixels.
    if not len(c.masked_index):
      np.testing.assert_array_equal(c.image, image[y0 : y0 + 64, x0 : x0 + 64])
  # A lesion is kept in a window iff the window holds it (vertices in [1, 63]) and its
  # box is >= 10 px; it is kept somewhere iff some window holds it.
  for idx, p in enumerate(polys):
    p = p.astype(np.float64)
    box = mc.polygon_bounds(p)
    big = box[2] - box[0] >= 10 and box[3] - box[1] >= 10
    for c in crops:
      q = p - c.origin
      holds = q.min() >= 1 and q.max() <= 63
      assert (idx in c.source_index) == (holds and big)


def _loop_reference(image, polygons, labels, s, min_size=10):
  """The reference rules written as a plain per-window, per-lesion loop (test oracle)."""
  import cv2

  h, w = image.shape[:2]
  out = []
  for x0, y0 in mc.crop_origins(h, w, s).tolist():
    pixels = np.zeros((s, s, 3), np.uint8)
    part = image[y0 : y0 + s, x0 : x0 + s]
    pixels[: part.shape[0], : part.shape[1]] = part
    kept, masked, boxes = [], [], []
    for k, poly in enumerate(polygons):
      poly = [list(map(float, v)) for v in poly]
      xs, ys = [v[0] for v in poly], [v[1] for v in poly]
      bx, by = math.floor(min(xs)), math.floor(min(ys))
      bw, bh = math.ceil(max(xs) - min(xs)), math.ceil(max(ys) - min(ys))
      if bw == 0 or bh == 0 or bx >= x0 + s or x0 >= bx + bw or by + bh <= y0 or y0 + s <= by:
        continue
      split = False
      for v in poly:
        v[0] -= x0
        v[1] -= y0
        if v[0] < 1 or v[0] > s - 1 or v[1] < 1 or v[1] > s - 1:
          split = True
        v[0] = min(max(v[0], 1), s - 1)
        v[1] = min(max(v[1], 1), s - 1)
      if split:
        pts = np.array(poly, np.int32).reshape(-1, 1, 2)
        cv2.polylines(pixels, [pts], True, (0, 0, 0), 1)
        cv2.fillPoly(pixels, [pts], (0, 0, 0))
        masked.append(k)
        continue
      xs, ys = [v[0] for v in poly], [v[1] for v in poly]
      x, y = math.floor(min(xs)), math.floor(min(ys))
      bw, bh = math.ceil(max(xs) - min(xs)), math.ceil(max(ys) - min(ys))
      if bw < min_size or bh < min_size:
        continue
      kept.append(k)
      boxes.append([x, y, x + bw, y + bh])
    out.append((pixels, kept, masked, np.array(boxes, np.float32).reshape(-1, 4)))
  return out


def test_matches_a_plain_loop_of_the_reference_rules():
  rng = np.random.default_rng(12)
  image = _textured(150, 230, seed=12)
  polys = []
  for _ in range(60):
    cx, cy = rng.uniform(-5, 235), rng.uniform(-5, 155)
    if rng.random() < 0.5:
      r = rng.uniform(1, 14)
      polys.append(mc.circle_to_polygon((cx, cy), (cx + r * rng.uniform(0.3, 1), cy + r)))
    else:
      v = int(rng.integers(3, 9))
      ang = np.sort(rng.uniform(0, 2 * np.pi, v))
      rad = rng.uniform(2, 16, v)
      polys.append(np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1))
  labels = rng.integers(0, 10, len(polys))
  crops = mc.masked_crops(image, polys, labels, crop_size=64)
  oracle = _loop_reference(image, polys, labels, 64)
  assert len(crops) == len(oracle) == 3 * 4
  n_kept = n_masked = 0
  for c, (pixels, kept, masked, boxes) in zip(crops, oracle):
    np.testing.assert_array_equal(c.image, pixels)
    assert c.source_index.tolist() == kept and c.masked_index.tolist() == masked
    np.testing.assert_array_equal(c.boxes, boxes)
    n_kept += len(kept)
    n_masked += len(masked)
  assert n_kept > 10 and n_masked > 10


def test_scalar_fill_value_paints_every_channel():
  image = _textured(32, 32, seed=13)
  crop = mc.masked_crop(image, [_rect(-3, 4, 10, 12)], [0], (0, 0), crop_size=32, fill_value=5)
  np.testing.assert_array_equal(crop.image[4:13, 1:11], 5)
  np.testing.assert_array_equal(crop.image[:, 0], image[:, 0])


def test_validation():
  image = _textured(20, 20)
  with pytest.raises(ValueError):
    mc.masked_crop(image, [_rect(1, 1, 5, 5)], [1, 2], (0, 0), crop_size=16)
  with pytest.raises(ValueError):
    mc.masked_crop(image.astype(np.float32), [], [], (0, 0), crop_size=16)
  with pytest.raises(ValueError):
    mc.masked_crop(image, [np.zeros((3, 3))], [1], (0, 0), crop_size=16)
  with pytest.raises(ValueError):
    mc.masked_crop(image, [_rect(1, 1, np.nan, 5)], [1], (0, 0), crop_size=16)
  # Polygons with <= 2 vertices are skipped, as in the reference.
  crop = mc.masked_crop(image, [np.array([[1.0, 1.0], [15.0, 15.0]])], [1], (0, 0), crop_size=16, min_size=0)
  assert crop.source_index.size == 0 and crop.masked_index.size == 0
  # Flat [2V] polygons are accepted.
  crop = mc.masked_crop(image, [_rect(2, 2, 14, 14).ravel()], [1], (0, 0), crop_size=16)
  np.testing.assert_array_equal(crop.boxes, [[2, 2, 14, 14]])
