"""Tests for acne_jax.ops.roi_align against two independent references.

* ``_np_roi_align``: plain loops written from the torchvision kernel's definition, with
  sample positions in exact rational arithmetic and interpolation in float64 (slow; used
  on small maps).
* ``_torch_roi_align``: float64 PyTorch tensor ops in NCHW, differentiable, used both as a
  second forward reference and for autograd gradients.

Random RoIs are half snapped to a 1/8-cell grid, so samples land exactly on -1, H, W and
integers and ``roi / pooled`` is often integral: those discontinuities must be decided as
in exact arithmetic, not by the rounding of one fusion or another.
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from acne_jax.ops.roi_align import (
    DEFAULT_MAX_SAMPLING_RATIO,
    map_rois_to_levels,
    multilevel_roi_align,
    roi_align,
)

TOL = 1e-4  # float32 implementation vs float64 references

# Jitted once per static configuration: eager dispatch compiles every primitive separately
# and costs seconds per new shape.
_jit_roi_align = jax.jit(roi_align, static_argnames=(
    "output_size", "spatial_scale", "sampling_ratio", "aligned", "max_sampling_ratio",
    "rois_per_block"))
_jit_multilevel = jax.jit(multilevel_roi_align, static_argnames=(
    "output_size", "strides", "spatial_scales", "sampling_ratio", "aligned",
    "canonical_scale", "canonical_level", "min_level", "eps", "max_sampling_ratio",
    "rois_per_block"))


def _ra(features, rois, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False,
        **kwargs):
  return _jit_roi_align(jnp.asarray(features), jnp.asarray(rois), output_size=output_size,
                        spatial_scale=spatial_scale, sampling_ratio=sampling_ratio,
                        aligned=aligned, **kwargs)


# ----------------------------------------------------------------------------------------
# References
# ----------------------------------------------------------------------------------------


def _pair(size):
  return (size, size) if isinstance(size, int) else tuple(size)


def _roi_geometry(roi, spatial_scale, aligned):
  """(start_y, start_x, roi_h, roi_w) on the feature map, as exact Fractions."""
  _, x1, y1, x2, y2 = (Fraction(float(v)) for v in roi)
  scale = Fraction(spatial_scale)
  offset = Fraction(1, 2) if aligned else Fraction(0)
  start_x, start_y = x1 * scale - offset, y1 * scale - offset
  roi_w = x2 * scale - offset - start_x
  roi_h = y2 * scale - offset - start_y
  if not aligned:
    roi_w, roi_h = max(roi_w, Fraction(1)), max(roi_h, Fraction(1))
  return start_y, start_x, roi_h, roi_w


def _grid(length, pooled, sampling_ratio, max_grid):
  grid = sampling_ratio if sampling_ratio > 0 else math.ceil(length / pooled)
  if sampling_ratio <= 0 and max_grid is not None:
    grid = min(grid, max_grid)
  return grid


def _axis_points(start, length, pooled, grid, size):
  """Per bin, the samples along one axis as (low, high, frac), or None when the sample is
  outside [-1, size]; positions in exact rational arithmetic, straight from the definition
  (y = start + p * bin + (i + 0.5) * bin / grid)."""
  bin_size = length / pooled
  points = []
  for p in range(pooled):
    row = []
    for i in range(max(grid, 0)):
      pos = start + p * bin_size + (i + Fraction(1, 2)) * bin_size / grid
      if pos < -1 or pos > size:
        row.append(None)
        continue
      pos = max(pos, Fraction(0))
      low = math.floor(pos)
      if low >= size - 1:
        low = high = size - 1
        pos = Fraction(low)
      else:
        high = low + 1
      row.append((low, high, float(pos - low)))
    points.append(row)
  return points


def _np_roi_align(features, rois, output_size, spatial_scale, sampling_ratio, aligned,
                  max_grid=None):
  """float64 loops. features: [B, H, W, C]; rois: [R, 5] (b, x1, y1, x2, y2).

  Sample positions are exact rationals, so samples exactly on -1, H or W are decided as
  in exact arithmetic. ``max_grid`` caps the adaptive grid per axis (the documented
  deviation of the JAX op); None is exactly torchvision.
  """
  f = np.asarray(features, np.float64)
  _, height, width, channels = f.shape
  out_h, out_w = _pair(output_size)
  out = np.zeros((len(rois), out_h, out_w, channels))
  for r, roi in enumerate(np.asarray(rois)):
    fb = f[int(roi[0])]
    start_y, start_x, roi_h, roi_w = _roi_geometry(roi, spatial_scale, aligned)
    grid_h = _grid(roi_h, out_h, sampling_ratio, max_grid)
    grid_w = _grid(roi_w, out_w, sampling_ratio, max_grid)
    count = max(grid_h * grid_w, 1)
    ys = _axis_points(start_y, roi_h, out_h, grid_h, height)
    xs = _axis_points(start_x, roi_w, out_w, grid_w, width)
    for ph, pw in itertools.product(range(out_h), range(out_w)):
      acc = np.zeros(channels)
      for y, x in itertools.product(ys[ph], xs[pw]):
        if y is None or x is None:  # y < -1, y > H, x < -1 or x > W
          continue
        (y_low, y_high, ly), (x_low, x_high, lx) = y, x
        hy, hx = 1.0 - ly, 1.0 - lx
        acc += (hy * hx * fb[y_low, x_low] + hy * lx * fb[y_low, x_high]
                + ly * hx * fb[y_high, x_low] + ly * lx * fb[y_high, x_high])
      out[r, ph, pw] = acc / count
  return out


def _torch_axis(start, length, pooled, grid, size):
  """Sample corners along one axis: low, high [pooled, grid] long; weights; valid.

  ``start + p * bin + (i + 0.5) * bin / grid`` is evaluated as the algebraically equal
  ``start + ((p * grid + i + 0.5) * length) / (pooled * grid)``: one rounding in float64,
  so a sample exactly on -1, H or W is decided as in exact arithmetic.
  """
  dt = torch.float64
  start, length = float(start), float(length)
  steps = (torch.arange(pooled, dtype=dt)[:, None] * grid
           + torch.arange(grid, dtype=dt)[None, :] + 0.5)
  pos = start + (steps * length) / (pooled * grid)
  valid = (pos >= -1.0) & (pos <= size)
  pos = pos.clamp(min=0.0)
  low = pos.floor().long()
  at_end = low >= size - 1
  low = torch.where(at_end, torch.full_like(low, size - 1), low)
  high = torch.where(at_end, low, low + 1)
  pos = torch.where(at_end, low.to(dt), pos)
  frac = pos - low.to(dt)
  return low, high, 1.0 - frac, frac, valid


def _torch_roi_align(features, rois, output_size, spatial_scale, sampling_ratio, aligned,
                     max_grid=None):
  """float64 torch. features: [B, C, H, W] (NCHW); rois: [R, 5] (b, x1, y1, x2, y2).

  Returns [R, C, out_h, out_w]; differentiable w.r.t. features.
  """
  _, channels, height, width = features.shape
  out_h, out_w = _pair(output_size)
  outs = []
  for roi in rois.tolist():
    start_y, start_x, roi_h, roi_w = _roi_geometry(roi, spatial_scale, aligned)
    grid_h = _grid(roi_h, out_h, sampling_ratio, max_grid)
    grid_w = _grid(roi_w, out_w, sampling_ratio, max_grid)
    if grid_h <= 0 or grid_w <= 0:
      outs.append(features.new_zeros((channels, out_h, out_w)))
      continue
    fb = features[int(roi[0])]
    ylo, yhi, wylo, wyhi, vy = _torch_axis(start_y, roi_h, out_h, grid_h, height)
    xlo, xhi, wxlo, wxhi, vx = _torch_axis(start_x, roi_w, out_w, grid_w, width)
    mask = (vy[:, :, None, None] & vx[None, None, :, :]).to(features.dtype)
    acc = 0.0
    for yi, wy in ((ylo, wylo), (yhi, wyhi)):
      for xi, wx in ((xlo, wxlo), (xhi, wxhi)):
        vals = fb[:, yi[:, :, None, None], xi[None, None, :, :]]  # [C, oh, gh, ow, gw]
        acc = acc + vals * (wy[:, :, None, None] * wx[None, None, :, :] * mask)
    outs.append(acc.sum(dim=(2, 4)) / max(grid_h * grid_w, 1))
  return torch.stack(outs)


def _torch_forward(features_nhwc, rois, *args, **kwargs):
  f = torch.tensor(np.asarray(features_nhwc, np.float64)).permute(0, 3, 1, 2)
  out = _torch_roi_align(f, torch.tensor(np.asarray(rois, np.float64)), *args, **kwargs)
  return out.permute(0, 2, 3, 1).numpy()


def _needed_grid(rois, output_size, spatial_scale, aligned):
  """Largest adaptive grid any RoI needs (>= 1), i.e. a cap that changes nothing."""
  out_h, out_w = _pair(output_size)
  need = 1
  for roi in np.asarray(rois):
    _, _, roi_h, roi_w = _roi_geometry(roi, spatial_scale, aligned)
    need = max(need, math.ceil(roi_h / out_h), math.ceil(roi_w / out_w))
  return need


# ----------------------------------------------------------------------------------------
# Random cases
# ----------------------------------------------------------------------------------------


def _random_rois(rng, num, batch, height, width, spatial_scale, aligned):
  """RoIs in image pixels: inside, straddling and outside the map; huge, tiny, zero-size,
  (when aligned) inverted; half snapped to 1/8 cell so bin edges hit integers exactly."""
  extent = np.array([width, height], np.float64) / spatial_scale  # image pixels
  centre = rng.uniform(-0.4, 1.4, (num, 2)) * extent
  kind = rng.integers(0, 5, num)
  size = np.where(
      (kind == 0)[:, None], 0.0,
      np.where((kind == 1)[:, None], rng.uniform(0, 0.8, (num, 2)) / spatial_scale,
               np.where((kind == 4)[:, None], rng.uniform(1.0, 2.5, (num, 2)),
                        rng.uniform(0.05, 1.0, (num, 2))) * extent))
  boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1)
  if aligned:
    flip = rng.random(num) < 0.1
    boxes[flip] = boxes[flip][:, [2, 3, 0, 1]]
  snap = rng.random(num) < 0.5
  cell = 8.0 * spatial_scale
  boxes[snap] = np.round(boxes[snap] * cell) / cell
  batch_index = rng.integers(0, batch, (num, 1)).astype(np.float64)
  return np.concatenate([batch_index, boxes], axis=1).astype(np.float32)


_SCALES = (1.0, 0.25, 1.0 / 32)
_SIZES = (7, (2, 3), 14)
_CASES = list(itertools.product(range(len(_SCALES)), (False, True), (0, -1, 1, 2, 3)))


def _random_case(index, seed=None, size_shift=0):
  scale_index, aligned, sampling_ratio = _CASES[index]
  rng = np.random.default_rng(1000 + index if seed is None else seed)
  batch, height, width = rng.integers(1, 3), rng.integers(1, 9), rng.integers(1, 9)
  channels = int(rng.integers(1, 4))
  scale = _SCALES[scale_index]
  output_size = _SIZES[(index + size_shift) % 3]
  features = rng.standard_normal((batch, height, width, channels)).astype(np.float32)
  rois = _random_rois(rng, 7, batch, height, width, scale, aligned)
  return features, rois, output_size, scale, sampling_ratio, aligned


# Cases that once failed (a sample exactly on W, or 1 ulp from an integer, decided
# differently in the index and weight fusions): (index, seed, size_shift).
_REGRESSIONS = [(27, 50027, 0), (24, 50224, 2), (14, 50514, 5), (0, 50800, 8)]


@pytest.mark.parametrize("index,seed,size_shift", [
    *[(i, None, 0) for i in range(len(_CASES))], *_REGRESSIONS])
def test_matches_references_on_random_cases(index, seed, size_shift):
  features, rois, output_size, scale, sampling_ratio, aligned = _random_case(
      index, seed, size_shift)
  args = (output_size, scale, sampling_ratio, aligned)
  # A cap no RoI exceeds: the op must then be exactly torchvision.
  cap = _needed_grid(rois, output_size, scale, aligned)
  got = np.asarray(_ra(features, rois, *args, max_sampling_ratio=cap))
  ref = _np_roi_align(features, rois, *args)
  assert got.shape == ref.shape
  np.testing.assert_allclose(got, ref, rtol=0, atol=TOL)
  # The two references agree with each other to float64 rounding.
  np.testing.assert_allclose(_torch_forward(features, rois, *args), ref, rtol=0,
                             atol=1e-10)
  # Default cap: equal to the reference with the same per-axis cap.
  got_default = np.asarray(_ra(features, rois, *args))
  ref_default = _np_roi_align(features, rois, *args, max_grid=DEFAULT_MAX_SAMPLING_RATIO)
  np.testing.assert_allclose(got_default, ref_default, rtol=0, atol=TOL)


def test_blocked_pooling_matches_single_block():
  # rois_per_block < R takes the lax.map path (with a remainder block).
  features, rois, output_size, scale, _, aligned = _random_case(7)
  run = lambda block: _ra(features, rois, output_size, scale, 0, aligned,
                          rois_per_block=block)
  np.testing.assert_allclose(np.asarray(run(3)), np.asarray(run(len(rois))), atol=1e-6)
  np.testing.assert_allclose(np.asarray(run(1)), np.asarray(run(None)), atol=1e-6)


# ----------------------------------------------------------------------------------------
# Hand-worked values
# ----------------------------------------------------------------------------------------

# f[y, x] = 5 * y + x on a 5x5 map, one channel, batch 1.
_ARANGE = np.arange(25, dtype=np.float32).reshape(1, 5, 5, 1)


def _align(rois, output_size, sampling_ratio, aligned, features=_ARANGE, scale=1.0):
  rois = np.asarray(rois, np.float32).reshape(-1, 5)
  out = _ra(features, rois, output_size, scale, sampling_ratio, aligned)
  return np.asarray(out)[..., 0]


def test_aligned_roi_on_pixel_centres_returns_pixels():
  # aligned: start = 0 - 0.5, bin = 1, one sample at -0.5 + p + 0.5 = p: pixel p exactly.
  np.testing.assert_allclose(_align([0, 0, 0, 5, 5], 5, 1, True)[0], _ARANGE[0, ..., 0])
  # Adaptive grid is ceil(5 / 5) = 1 as well.
  np.testing.assert_allclose(_align([0, 0, 0, 5, 5], 5, 0, True)[0], _ARANGE[0, ..., 0])
  # Pixel (y=2, x=1) alone: sample at (2, 1) -> 5 * 2 + 1 = 11.
  np.testing.assert_allclose(_align([0, 1, 2, 2, 3], 1, 1, True), [[[11.0]]])


def test_hand_computed_values():
  # Not aligned, [0, 4]^2 into 2x2, one sample per bin at bin centres 1 and 3:
  # f(1, 1) = 6, f(1, 3) = 8, f(3, 1) = 16, f(3, 3) = 18.
  np.testing.assert_allclose(_align([0, 0, 0, 4, 4], 2, 1, False)[0], [[6, 8], [16, 18]])
  # f is linear, so bilinear interpolation is exact and a bin is f at its sample mean.
  # x in [0.5, 3.5]: roi_w 3 -> grid 3, x = 1, 2, 3; y in [1, 2]: grid 1, y = 1.5.
  # (8.5 + 9.5 + 10.5) / 3 = 9.5 = f(1.5, 2).
  np.testing.assert_allclose(_align([0, 0.5, 1, 3.5, 2], 1, 0, False), [[[9.5]]])
  # Bottom-right border: [3, 5]^2, 2 samples per axis at 3.5 and 4.5; 4.5 >= H - 1 reads
  # row/col 4. Values f(3.5, 3.5) = 21, f(3.5, 4) = 21.5, f(4, 3.5) = 23.5, f(4, 4) = 24;
  # mean 22.5.
  np.testing.assert_allclose(_align([0, 3, 3, 5, 5], 1, 2, False), [[[22.5]]])
  # x sample at -1.0 is in range and clamps to column 0: f(0.5, 0) = 2.5.
  np.testing.assert_allclose(_align([0, -1.5, 0, -0.5, 1], 1, 1, False), [[[2.5]]])
  # x sample at -1.5 < -1 and at 7 > W contribute 0.
  np.testing.assert_allclose(_align([0, -2, 0, -1, 1], 1, 1, False), [[[0.0]]])
  np.testing.assert_allclose(_align([0, 6.5, 0, 7.5, 1], 1, 1, False), [[[0.0]]])
  # Zero-size RoI at (2, 2). Not aligned: clamped to 1x1, sample at (2.5, 2.5) -> 15.
  np.testing.assert_allclose(_align([0, 2, 2, 2, 2], 1, 0, False), [[[15.0]]])
  # Aligned, adaptive: grid ceil(0) = 0, no samples -> 0.
  np.testing.assert_allclose(_align([0, 2, 2, 2, 2], 1, 0, True), [[[0.0]]])
  # Aligned, 2 samples: all at (1.5, 1.5) -> f = 9.
  np.testing.assert_allclose(_align([0, 2, 2, 2, 2], 1, 2, True), [[[9.0]]])
  # spatial_scale 0.25: image RoI [4, 12]^2 is map [1, 3]^2, centre (2, 2) -> 12.
  np.testing.assert_allclose(_align([0, 4, 4, 12, 12], 1, 0, False, scale=0.25),
                             [[[12.0]]])


def test_constant_map_returns_constant_inside():
  features = np.full((2, 6, 7, 3), 3.25, np.float32)
  rng = np.random.default_rng(0)
  x1y1 = rng.uniform(-0.9, 5.0, (20, 2))
  x2y2 = x1y1 + rng.uniform(0.0, 1.0, (20, 2)) * (np.array([7.0, 6.0]) - x1y1)
  rois = np.concatenate([rng.integers(0, 2, (20, 1)), x1y1, x2y2], 1)
  for sampling_ratio in (0, 2):
    out = _align(rois, 3, sampling_ratio, False, features=features)
    np.testing.assert_allclose(out, 3.25, atol=1e-6)


# ----------------------------------------------------------------------------------------
# Gradients
# ----------------------------------------------------------------------------------------


def _grad_case(aligned, sampling_ratio):
  rng = np.random.default_rng(7)
  features = rng.standard_normal((2, 4, 5, 2))
  rois = np.array([
      [0, -1.3, 0.4, 3.1, 2.9],    # straddles the top-left border
      [1, 1.2, 0.7, 4.9, 3.6],     # reaches the bottom-right clamp
      [1, 0.3, 0.2, 1.1, 0.9],     # smaller than a cell
      [0, 2.0, 1.0, 2.0, 1.0],     # zero size
      [1, -3.0, -3.0, 7.0, 6.0],   # covers more than the map
  ], np.float32)  # float32 values, so the float32 and float64 runs see the same RoIs
  return features, rois, (2, 3), 1.0, sampling_ratio, aligned


@pytest.mark.parametrize("aligned,sampling_ratio", [(True, 0), (False, 2), (True, 3)])
def test_gradient_matches_float64_finite_differences(aligned, sampling_ratio):
  features, rois, *args = _grad_case(aligned, sampling_ratio)
  cotangent = np.random.default_rng(1).standard_normal((len(rois), 2, 3, 2))
  with jax.enable_x64(True):
    f64 = jnp.asarray(features, jnp.float64)
    r64 = jnp.asarray(rois, jnp.float64)
    ct = jnp.asarray(cotangent, jnp.float64)
    cap = _needed_grid(rois, args[0], args[1], aligned)
    align = jax.jit(lambda f: roi_align(f, r64, *args, max_sampling_ratio=cap))
    loss = jax.jit(lambda f: jnp.sum(align(f) * ct))
    # Float64 forward agrees with the loop reference to float64 rounding.
    np.testing.assert_allclose(np.asarray(align(f64)),
                               _np_roi_align(features, rois, *args), atol=1e-12)
    grad = np.asarray(jax.grad(loss)(f64))
    step, numeric = 1e-3, np.zeros_like(features)
    for i in np.ndindex(features.shape):
      delta = np.zeros_like(features)
      delta[i] = step
      numeric[i] = (loss(f64 + delta) - loss(f64 - delta)) / (2 * step)
  assert np.abs(grad).max() > 0
  np.testing.assert_allclose(grad, numeric, atol=1e-9)


@pytest.mark.parametrize("index", [0, 6, 13, 22, 29])
def test_gradient_matches_torch_autograd(index):
  features, rois, output_size, scale, sampling_ratio, aligned = (
      _grad_case(True, 0) if index == 0 else _random_case(index))
  args = (output_size, scale, sampling_ratio, aligned)
  cap = _needed_grid(rois, output_size, scale, aligned)
  out_h, out_w = _pair(output_size)
  cotangent = np.random.default_rng(index).standard_normal(
      (len(rois), out_h, out_w, features.shape[-1]))
  loss = lambda f: jnp.sum(roi_align(f, jnp.asarray(rois, jnp.float32), *args,
                                     max_sampling_ratio=cap) * cotangent)
  grad = np.asarray(jax.jit(jax.grad(loss))(jnp.asarray(features, jnp.float32)))

  f_torch = torch.tensor(np.asarray(features, np.float64)).permute(0, 3, 1, 2)
  f_torch.requires_grad_(True)
  out = _torch_roi_align(f_torch, torch.tensor(np.asarray(rois, np.float64)), *args)
  (out.permute(0, 2, 3, 1) * torch.tensor(cotangent)).sum().backward()
  expected = f_torch.grad.permute(0, 2, 3, 1).numpy()
  np.testing.assert_allclose(grad, expected, atol=TOL)


# ----------------------------------------------------------------------------------------
# Multi-level
# ----------------------------------------------------------------------------------------


def test_level_assignment_table():
  side = np.array([111.0, 112.0, 223.9, 224.0, 447.0, 448.0, 10000.0, 1.0, 0.0])
  expected = [2, 3, 3, 4, 4, 5, 5, 2, 2]
  zeros = np.zeros_like(side)
  rois = np.stack([zeros, zeros + 10, zeros + 20, side + 10, side + 20], 1)
  levels = map_rois_to_levels(jnp.asarray(rois, jnp.float32), 2, 5)
  assert levels.dtype == jnp.int32
  np.testing.assert_array_equal(np.asarray(levels), expected)
  # Boxes without the batch column give the same levels; a non-square box uses sqrt(area):
  # 56 x 224 has sqrt(area) 112 -> P3.
  boxes = jnp.asarray(rois[:, 1:], jnp.float32)
  np.testing.assert_array_equal(np.asarray(map_rois_to_levels(boxes, 2, 5)), expected)
  np.testing.assert_array_equal(
      np.asarray(map_rois_to_levels(jnp.asarray([[0.0, 0.0, 56.0, 224.0]]), 2, 5)), [3])


def _pyramid(rng, batch=2, image=64, channels=3, strides=(4, 8, 16, 32)):
  shapes = [(batch, image // s, image // s, channels) for s in strides]
  return [rng.standard_normal(shape).astype(np.float32) for shape in shapes]


def _pyramid_rois(rng, num=40, batch=2, image=64):
  side = np.exp(rng.uniform(np.log(1.0), np.log(90.0), (num, 1)))
  aspect = np.exp(rng.uniform(-0.7, 0.7, (num, 1)))
  wh = np.concatenate([side * aspect, side / aspect], 1)
  centre = rng.uniform(-8, image + 8, (num, 2))
  boxes = np.concatenate([centre - wh / 2, centre + wh / 2], 1)
  return np.concatenate([rng.integers(0, batch, (num, 1)), boxes], 1).astype(np.float32)


@pytest.mark.parametrize("aligned,sampling_ratio,output_size", [
    (True, 0, 7), (False, 2, (2, 3)), (True, -1, 14)])
def test_multilevel_equals_per_level_roi_align(aligned, sampling_ratio, output_size):
  rng = np.random.default_rng(3)
  features = [jnp.asarray(f) for f in _pyramid(rng)]
  rois = jnp.asarray(_pyramid_rois(rng))
  strides = (4, 8, 16, 32)
  # canonical_scale 16 spreads RoIs of a 64-pixel image over P2-P5.
  kw = dict(sampling_ratio=sampling_ratio, aligned=aligned, canonical_scale=16.0)
  got = _jit_multilevel(features, rois, output_size, strides=strides, **kw)
  levels = np.asarray(map_rois_to_levels(rois, 2, 5, canonical_scale=16.0))
  assert set(levels.tolist()) == {2, 3, 4, 5}
  expected = np.zeros(got.shape, np.float32)
  for level, (feature, stride) in enumerate(zip(features, strides), start=2):
    sel = levels == level
    expected[sel] = _ra(feature, rois[sel], output_size, 1.0 / stride, sampling_ratio,
                        aligned)
  np.testing.assert_allclose(np.asarray(got), expected, atol=1e-6)
  # spatial_scales and an explicit min_level are the same thing.
  scales = tuple(1.0 / s for s in strides)
  same = _jit_multilevel(features, rois, output_size, spatial_scales=scales, min_level=2,
                         **kw)
  np.testing.assert_array_equal(np.asarray(same), np.asarray(got))


def test_multilevel_gradient_equals_per_level_gradients():
  rng = np.random.default_rng(4)
  features = [jnp.asarray(f) for f in _pyramid(rng)]
  rois = jnp.asarray(_pyramid_rois(rng, num=24))
  strides = (4, 8, 16, 32)
  cotangent = jnp.asarray(rng.standard_normal((24, 7, 7, 3)), jnp.float32)
  levels = np.asarray(map_rois_to_levels(rois, 2, 5, canonical_scale=16.0))

  def multi(feats):
    out = multilevel_roi_align(feats, rois, 7, strides=strides, sampling_ratio=0,
                               aligned=True, canonical_scale=16.0)
    return jnp.sum(out * cotangent)

  def per_level(feats):
    total = 0.0
    for level, (feature, stride) in enumerate(zip(feats, strides), start=2):
      sel = levels == level
      out = roi_align(feature, rois[sel], 7, 1.0 / stride, 0, True)
      total += jnp.sum(out * cotangent[sel])
    return total

  grads = jax.jit(jax.grad(multi))(features), jax.jit(jax.grad(per_level))(features)
  for got, expected in zip(*grads):
    assert np.abs(np.asarray(expected)).max() > 0
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), atol=1e-5)


# ----------------------------------------------------------------------------------------
# Transformations, validation, the cap
# ----------------------------------------------------------------------------------------


def test_jit_and_vmap():
  features, rois, output_size, scale, sampling_ratio, aligned = _random_case(2)
  fn = jax.jit(lambda f, r: roi_align(f, r, output_size, scale, sampling_ratio, aligned))
  np.testing.assert_allclose(
      np.asarray(fn(jnp.asarray(features), jnp.asarray(rois))),
      _np_roi_align(features, rois, output_size, scale, sampling_ratio, aligned,
                    max_grid=DEFAULT_MAX_SAMPLING_RATIO), atol=TOL)

  # vmap over a leading batch of (features, rois) pairs of equal shapes.
  rng = np.random.default_rng(5)
  stack_f = rng.standard_normal((3, 2, 6, 5, 2)).astype(np.float32)
  stack_r = np.stack([_random_rois(rng, 6, 2, 6, 5, 0.5, True) for _ in range(3)])
  mapped = jax.jit(jax.vmap(lambda f, r: roi_align(f, r, (2, 3), 0.5, 0, True,
                                                   rois_per_block=4)))(stack_f, stack_r)
  for i in range(3):
    ref = _np_roi_align(stack_f[i], stack_r[i], (2, 3), 0.5, 0, True,
                        max_grid=DEFAULT_MAX_SAMPLING_RATIO)
    np.testing.assert_allclose(np.asarray(mapped[i]), ref, atol=TOL)

  pyramids = [_pyramid(rng, batch=1) for _ in range(2)]
  stacked = [jnp.stack(level) for level in zip(*pyramids)]
  rois = jnp.stack([jnp.asarray(_pyramid_rois(rng, num=8, batch=1)) for _ in range(2)])
  ml = lambda f, r: multilevel_roi_align(f, r, 3, strides=(4, 8, 16, 32),
                                         sampling_ratio=2, canonical_scale=16.0)
  mapped = jax.jit(jax.vmap(ml))(stacked, rois)
  single = jax.jit(ml)
  for i in range(2):
    expected = single([jnp.asarray(f) for f in pyramids[i]], rois[i])
    np.testing.assert_allclose(np.asarray(mapped[i]), np.asarray(expected), atol=1e-5)


def test_shape_validation_names_the_argument():
  features = jnp.zeros((1, 5, 5, 2))
  rois = jnp.zeros((3, 5))
  with pytest.raises(ValueError, match="'features'.*\\[B, H, W, C\\]"):
    roi_align(jnp.zeros((5, 5, 2)), rois, 2)
  with pytest.raises(ValueError, match="'rois'.*\\[R, 5\\]"):
    roi_align(features, jnp.zeros((3, 4)), 2)
  with pytest.raises(ValueError, match="'rois'"):
    roi_align(features, jnp.zeros((5,)), 2)
  with pytest.raises(ValueError, match="output_size"):
    roi_align(features, rois, (2, 0))
  with pytest.raises(ValueError, match="max_sampling_ratio"):
    roi_align(features, rois, 2, max_sampling_ratio=0)
  with pytest.raises(ValueError, match="rois_per_block"):
    roi_align(features, rois, 2, rois_per_block=0)
  with pytest.raises(ValueError, match="spatial_scale"):
    roi_align(features, rois, 2, spatial_scale=0.0)
  pyramid = [jnp.zeros((1, 8, 8, 2)), jnp.zeros((1, 4, 4, 3))]
  with pytest.raises(ValueError, match="'features\\[1\\]'.*'C'"):
    multilevel_roi_align(pyramid, rois, 2, strides=(4, 8))
  with pytest.raises(ValueError, match="'features\\[1\\]'.*'B'"):
    multilevel_roi_align([pyramid[0], jnp.zeros((2, 4, 4, 2))], rois, 2, strides=(4, 8))
  with pytest.raises(ValueError, match="'rois'"):
    multilevel_roi_align(pyramid[:1], jnp.zeros((3, 4)), 2, strides=(4,))
  with pytest.raises(ValueError, match="strides"):
    multilevel_roi_align(pyramid[:1], rois, 2, strides=(4, 8))
  with pytest.raises(ValueError, match="exactly one"):
    multilevel_roi_align(pyramid[:1], rois, 2)
  with pytest.raises(ValueError, match="'rois'"):
    map_rois_to_levels(jnp.zeros((3, 3)), 2, 5)


def test_empty_rois_and_bfloat16():
  features = np.random.default_rng(0).standard_normal((1, 6, 6, 4))
  features = jnp.asarray(features, jnp.float32)
  assert roi_align(features, jnp.zeros((0, 5)), (2, 3)).shape == (0, 2, 3, 4)
  assert multilevel_roi_align([features], jnp.zeros((0, 5)), 2, strides=(4,)).shape == (
      0, 2, 2, 4)
  rois = jnp.asarray([[0, 0.5, 0.5, 5.0, 4.0]], jnp.float32)
  full = _ra(features, rois, 2, 1.0, 0, True)
  half = _ra(features.astype(jnp.bfloat16), rois, 2, 1.0, 0, True)
  assert half.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(half, np.float32), np.asarray(full), atol=3e-2)


def test_cap_on_adaptive_grid():
  rng = np.random.default_rng(6)
  features = rng.standard_normal((1, 12, 12, 2)).astype(np.float32)
  cap = 2
  # Needs ceil(11.5 / 2) = 6 > cap samples along both axes.
  both = np.array([[0, 0.2, 0.3, 11.7, 11.8]], np.float32)
  got = np.asarray(_ra(features, both, 2, 1.0, 0, False, max_sampling_ratio=cap))
  np.testing.assert_allclose(got, _np_roi_align(features, both, 2, 1.0, cap, False),
                             atol=TOL)
  # The deviation is real: torchvision would use 6x6 samples here.
  assert np.abs(got - _np_roi_align(features, both, 2, 1.0, 0, False)).max() > 1e-3
  # Needs 6 along x but 1 along y: capped per axis (2 x 1 samples, divisor 2).
  wide = np.array([[0, 0.2, 3.0, 11.7, 4.5]], np.float32)
  got = np.asarray(_ra(features, wide, 2, 1.0, 0, False, max_sampling_ratio=cap))
  np.testing.assert_allclose(got, _np_roi_align(features, wide, 2, 1.0, 0, False,
                                                max_grid=cap), atol=TOL)
  # An RoI within the cap, in the same call, is exactly torchvision.
  small = np.array([[0, 1.0, 2.0, 4.5, 5.0]], np.float32)  # needs 2 x 2
  both_small = np.concatenate([both, small])
  got = np.asarray(_ra(features, both_small, 2, 1.0, 0, False, max_sampling_ratio=cap))
  np.testing.assert_allclose(got[1:], _np_roi_align(features, small, 2, 1.0, 0, False),
                             atol=TOL)
