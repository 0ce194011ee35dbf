"""Tests for acne_jax.ops.deform_conv against independent references.

* ``_np_deform_conv2d``: float64 NumPy loops written from the definition (torchvision's CPU
  kernel ``deform_conv2d_kernel.cpp``: one bilinear sample per output, tap and image, a
  sample with ``y <= -1``, ``y >= H``, ``x <= -1`` or ``x >= W`` reading 0 and corners outside
  the map reading 0); also differentiated by central finite differences.
* ``lax.conv_general_dilated``: zero offsets give a plain convolution.
* ``torchvision.ops.deform_conv2d``: the real C++ CPU kernel (forward and backward), in NCHW.

Bilinear interpolation with zero padding is continuous in the sample position, so float32
rounding of positions (and samples landing exactly on -1, H, W or integers) only moves values
by rounding; the derivative w.r.t. offsets jumps at integral positions, so gradient cases keep
every position at least 0.2 cell from an integer.
"""

from __future__ import annotations

import functools
import math

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from acne_jax.models.deform_conv import DeformConv
from acne_jax.ops.deform_conv import deform_conv2d

HIGHEST = jax.lax.Precision.HIGHEST

# Jitted once per static configuration (eager dispatch compiles every primitive separately).
_STATIC = ("stride", "padding", "dilation", "precision")
_jit_deform = jax.jit(deform_conv2d, static_argnames=_STATIC)


@functools.partial(jax.jit, static_argnames=_STATIC)
def _jit_grads(x, offsets, kernel, cotangent, **static):
  """Gradients of ``sum(deform_conv2d(x, offsets, kernel) * cotangent)`` w.r.t. the first three."""
  loss = lambda *a: jnp.sum(deform_conv2d(*a, **static) * cotangent)
  return jax.grad(loss, argnums=(0, 1, 2))(x, offsets, kernel)


def _pair(v):
  return (v, v) if isinstance(v, int) else tuple(v)


def _out_size(size, kernel, stride, padding, dilation):
  return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _np_bilinear(image, h, w):
  """torchvision's ``bilinear_interpolate``: ``image: [H, W, C]`` float64 at (h, w) -> ``[C]``."""
  height, width, channels = image.shape
  if h <= -1 or height <= h or w <= -1 or width <= w:
    return np.zeros(channels)
  h_low, w_low = math.floor(h), math.floor(w)
  h_high, w_high = h_low + 1, w_low + 1
  lh, lw = h - h_low, w - w_low
  hh, hw = 1 - lh, 1 - lw
  zero = np.zeros(channels)
  v1 = image[h_low, w_low] if h_low >= 0 and w_low >= 0 else zero
  v2 = image[h_low, w_high] if h_low >= 0 and w_high <= width - 1 else zero
  v3 = image[h_high, w_low] if h_high <= height - 1 and w_low >= 0 else zero
  v4 = image[h_high, w_high] if h_high <= height - 1 and w_high <= width - 1 else zero
  return hh * hw * v1 + hh * lw * v2 + lh * hw * v3 + lh * lw * v4


def _np_deform_pixel(x, offsets, kernel, b, oy, ox, stride, padding, dilation):
  """``out[b, oy, ox]`` (``[C_out]``) of the loop reference; ``offsets: [2*kh*kw]`` of that
  output position."""
  (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
  kh, kw, _, c_out = kernel.shape
  out = np.zeros(c_out)
  for i in range(kh):
    for j in range(kw):
      k = i * kw + j
      h = oy * sh - ph + i * dh + offsets[2 * k]
      w = ox * sw - pw + j * dw + offsets[2 * k + 1]
      out += _np_bilinear(x[b], h, w) @ kernel[i, j]
  return out


def _np_deform_conv2d(x, offsets, kernel, stride, padding, dilation):
  """float64 loops. ``x: [B, H, W, C_in]``, ``offsets: [B, H_out, W_out, 2*kh*kw]``,
  ``kernel: [kh, kw, C_in, C_out]`` -> ``[B, H_out, W_out, C_out]``."""
  x, offsets, kernel = (np.asarray(a, np.float64) for a in (x, offsets, kernel))
  (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
  batch, height, width, _ = x.shape
  kh, kw, _, c_out = kernel.shape
  out_h = _out_size(height, kh, sh, ph, dh)
  out_w = _out_size(width, kw, sw, pw, dw)
  assert offsets.shape == (batch, out_h, out_w, 2 * kh * kw)
  out = np.zeros((batch, out_h, out_w, c_out))
  for b, oy, ox in np.ndindex(batch, out_h, out_w):
    out[b, oy, ox] = _np_deform_pixel(x, offsets[b, oy, ox], kernel, b, oy, ox,
                                      stride, padding, dilation)
  return out


def _lax_conv(x, kernel, stride, padding, dilation):
  (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
  return jax.lax.conv_general_dilated(
      x, kernel, (sh, sw), ((ph, ph), (pw, pw)), rhs_dilation=(dh, dw),
      dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=HIGHEST)


def _mixed_offsets(rng, shape):
  """float32 offsets: a third exact integers in [-3, 3], a third multiples of 1/8 in [-4, 4]
  (samples exactly on cell edges, on -1, H, W), a third uniform in [-4, 4]. Many samples
  land outside the map."""
  integers = rng.integers(-3, 4, size=shape).astype(np.float64)
  eighths = rng.integers(-32, 33, size=shape) / 8.0
  uniform = rng.uniform(-4.0, 4.0, size=shape)
  kind = rng.integers(0, 3, size=shape)
  return np.choose(kind, [integers, eighths, uniform]).astype(np.float32)


def _smooth_offsets(rng, shape):
  """Offsets whose fractional part is in [0.2, 0.8]: positions (integer base + offset) stay
  0.2 cell away from the kinks of bilinear interpolation; integer parts in [-2, 2] still put
  some samples outside the map."""
  return (rng.integers(-2, 3, size=shape) + rng.uniform(0.2, 0.8, size=shape)).astype(np.float32)


def _case(rng, batch, height, width, c_in, c_out, kernel_hw, stride, padding, dilation, smooth=False):
  kh, kw = kernel_hw
  (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
  out_h, out_w = _out_size(height, kh, sh, ph, dh), _out_size(width, kw, sw, pw, dw)
  x = rng.standard_normal((batch, height, width, c_in)).astype(np.float32)
  kernel = (0.5 * rng.standard_normal((kh, kw, c_in, c_out))).astype(np.float32)
  make = _smooth_offsets if smooth else _mixed_offsets
  offsets = make(rng, (batch, out_h, out_w, 2 * kh * kw))
  return x, offsets, kernel


# (stride, padding, dilation): the spec's strides 1/2 and dilations 1/2 at padding 1, plus
# padding 0 and 2.
CONFIGS = [(1, 1, 1), (2, 1, 1), (1, 1, 2), (2, 1, 2), (1, 2, 2), (2, 0, 1)]


@pytest.mark.parametrize("stride,padding,dilation", CONFIGS)
def test_forward_matches_numpy_reference(stride, padding, dilation):
  """float32 within 1e-5 and float64 within 1e-12 of the float64 loop reference, with
  integer, dyadic and random offsets (many samples outside the map or on its edges)."""
  rng = np.random.default_rng(stride * 100 + padding * 10 + dilation)
  x, offsets, kernel = _case(rng, 2, 6, 6, 3, 4, (3, 3), stride, padding, dilation)
  expected = _np_deform_conv2d(x, offsets, kernel, stride, padding, dilation)
  assert np.count_nonzero(np.all(expected == 0, axis=-1)) < expected[..., 0].size // 2
  out = _jit_deform(x, offsets, kernel, stride=stride, padding=padding, dilation=dilation,
                    precision=HIGHEST)
  assert out.dtype == jnp.float32 and out.shape == expected.shape
  np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-5, atol=1e-5)
  with jax.enable_x64(True):
    out64 = _jit_deform(jnp.asarray(x, jnp.float64), jnp.asarray(offsets, jnp.float64),
                        jnp.asarray(kernel, jnp.float64), stride=stride, padding=padding,
                        dilation=dilation, precision=HIGHEST)
    assert out64.dtype == jnp.float64
    np.testing.assert_allclose(np.asarray(out64), expected, rtol=0, atol=1e-12)


def test_forward_non_square_kernel_and_pairs():
  """(h, w) pairs for stride/padding/dilation, a 2x3 kernel and a non-square map."""
  rng = np.random.default_rng(7)
  args = dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2))
  x, offsets, kernel = _case(rng, 1, 7, 5, 2, 3, (2, 3), **args)
  expected = _np_deform_conv2d(x, offsets, kernel, **args)
  out = _jit_deform(x, offsets, kernel, precision=HIGHEST, **args)
  np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("stride,padding,dilation,size", [(1, 1, 1, 4), (2, 2, 2, 5)])
def test_gradients_match_finite_differences(stride, padding, dilation, size):
  """float64 autodiff w.r.t. x, offsets and kernel equals central differences of the float64
  loop reference (positions >= 0.2 cell from integers; bilinear is linear in each offset
  within a cell, so the differences are exact up to rounding)."""
  rng = np.random.default_rng(11 + stride)
  x, offsets, kernel = _case(rng, 1, size, size, 2, 3, (3, 3), stride, padding, dilation,
                             smooth=True)
  args = (stride, padding, dilation)
  cotangent = rng.standard_normal(_np_deform_conv2d(x, offsets, kernel, *args).shape)
  inputs = [np.asarray(a, np.float64) for a in (x, offsets, kernel)]

  def np_loss(x, offsets, kernel):
    return float(np.sum(_np_deform_conv2d(x, offsets, kernel, *args) * cotangent))

  with jax.enable_x64(True):
    grads = _jit_grads(*(jnp.asarray(a) for a in inputs), jnp.asarray(cotangent), stride=stride,
                       padding=padding, dilation=dilation, precision=HIGHEST)
  step = 1e-5
  numeric = [np.zeros_like(a) for a in inputs]
  for which in (0, 2):  # x and kernel: every output may change
    for index in np.ndindex(inputs[which].shape):
      plus, minus = [a.copy() for a in inputs], [a.copy() for a in inputs]
      plus[which][index] += step
      minus[which][index] -= step
      numeric[which][index] = (np_loss(*plus) - np_loss(*minus)) / (2 * step)
  x64, offsets64, kernel64 = inputs
  for index in np.ndindex(offsets64.shape):  # an offset moves only its own output position
    b, oy, ox, channel = index
    plus, minus = offsets64[b, oy, ox].copy(), offsets64[b, oy, ox].copy()
    plus[channel] += step
    minus[channel] -= step
    difference = (_np_deform_pixel(x64, plus, kernel64, b, oy, ox, *args)
                  - _np_deform_pixel(x64, minus, kernel64, b, oy, ox, *args))
    numeric[1][index] = difference @ cotangent[b, oy, ox] / (2 * step)
  for name, grad, expected in zip(("x", "offsets", "kernel"), grads, numeric):
    assert np.abs(expected).max() > 0.1
    np.testing.assert_allclose(np.asarray(grad), expected, rtol=1e-7, atol=1e-7, err_msg=name)


@pytest.mark.parametrize("stride,padding,dilation", CONFIGS)
def test_zero_offsets_equal_plain_conv(stride, padding, dilation):
  """Zero offsets: lax.conv_general_dilated with the same stride, padding and dilation."""
  rng = np.random.default_rng(3)
  x, offsets, kernel = _case(rng, 2, 6, 6, 3, 4, (3, 3), stride, padding, dilation)
  out = _jit_deform(x, np.zeros_like(offsets), kernel, stride=stride, padding=padding,
                    dilation=dilation, precision=HIGHEST)
  np.testing.assert_allclose(np.asarray(out), np.asarray(_lax_conv(x, kernel, *(stride, padding, dilation))),
                             rtol=1e-5, atol=1e-5)


def test_integer_offsets_shift_the_input():
  """Channel order: dy (channel 2k) = +1 and dx (2k + 1) = -2 on every tap equal a plain conv
  of the zero-extended map moved up one row and right two columns."""
  rng = np.random.default_rng(5)
  x = rng.standard_normal((1, 6, 7, 2)).astype(np.float32)
  kernel = rng.standard_normal((3, 3, 2, 3)).astype(np.float32)
  offsets = np.tile(np.array([1.0, -2.0], np.float32), (1, 6, 7, 9))
  # Tap (i, j) of output (oy, ox) reads x[oy - 1 + i + 1, ox - 1 + j - 2], zero off the map:
  # a valid (unpadded) conv of the map zero-padded by 3, taken from row 3 and column 0.
  big = np.pad(x, ((0, 0), (3, 3), (3, 3), (0, 0)))
  expected = np.asarray(_lax_conv(big, kernel, 1, 0, 1))[:, 3:9, 0:7]
  out = _jit_deform(x, offsets, kernel, precision=HIGHEST)
  np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-5, atol=1e-5)


def test_samples_outside_the_map_are_zero_with_zero_gradients():
  """Offsets of +-100, -1e30 and inf: every sample is off the map, the output and all
  gradients are exactly 0 (no NaN from the huge positions)."""
  rng = np.random.default_rng(6)
  x, offsets, kernel = _case(rng, 2, 6, 6, 3, 4, (3, 3), 1, 1, 1)
  offsets = np.where(rng.random(offsets.shape) < 0.5, 100.0, -100.0).astype(np.float32)
  offsets[..., 0::4] = -1e30
  offsets[..., 1::4] = np.inf
  out = _jit_deform(x, offsets, kernel, stride=1, padding=1, dilation=1, precision=HIGHEST)
  assert np.all(np.asarray(out) == 0)
  cotangent = rng.standard_normal(out.shape).astype(np.float32)
  for grad in _jit_grads(x, offsets, kernel, cotangent, stride=1, padding=1, dilation=1,
                         precision=HIGHEST):
    assert np.all(np.asarray(grad) == 0)


def test_rejects_wrong_offset_shape():
  x = jnp.zeros((1, 6, 6, 2))
  kernel = jnp.zeros((3, 3, 2, 4))
  with pytest.raises(ValueError, match="offsets"):
    deform_conv2d(x, jnp.zeros((1, 6, 6, 9)), kernel)
  with pytest.raises(ValueError, match="offsets"):
    deform_conv2d(x, jnp.zeros((1, 6, 6, 18)), kernel, stride=2)


# (batch, height, width, c_in, c_out, kernel_hw, stride, padding, dilation)
TORCH_CASES = [
    (2, 6, 6, 3, 4, (3, 3), 1, 1, 1),
    (2, 9, 7, 5, 6, (3, 3), 2, 2, 2),
    (1, 7, 5, 2, 3, (2, 3), (2, 1), (1, 2), (1, 2)),
]


@pytest.mark.parametrize("case", TORCH_CASES)
def test_matches_torchvision(tv, case):
  """Forward with mixed offsets, and gradients w.r.t. input, offsets and weight (smooth
  offsets) of torchvision's C++ CPU kernel, within 1e-5."""
  import torch

  batch, height, width, c_in, c_out, kernel_hw, stride, padding, dilation = case
  rng = np.random.default_rng(sum(case[:5]))
  args = dict(stride=stride, padding=padding, dilation=dilation)

  def run_torch(x, offsets, kernel, cotangent=None):
    tx = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    to = torch.tensor(offsets.transpose(0, 3, 1, 2), requires_grad=True)
    tk = torch.tensor(kernel.transpose(3, 2, 0, 1), requires_grad=True)
    out = tv.ops.deform_conv2d(tx, to, tk, **args)
    if cotangent is None:
      return out.detach().numpy().transpose(0, 2, 3, 1)
    (out * torch.tensor(cotangent.transpose(0, 3, 1, 2))).sum().backward()
    return (tx.grad.numpy().transpose(0, 2, 3, 1), to.grad.numpy().transpose(0, 2, 3, 1),
            tk.grad.numpy().transpose(2, 3, 1, 0))

  x, offsets, kernel = _case(rng, batch, height, width, c_in, c_out, kernel_hw, **args)
  out = _jit_deform(x, offsets, kernel, precision=HIGHEST, **args)
  np.testing.assert_allclose(np.asarray(out), run_torch(x, offsets, kernel), rtol=1e-5, atol=1e-5)

  x, offsets, kernel = _case(rng, batch, height, width, c_in, c_out, kernel_hw, smooth=True, **args)
  cotangent = rng.standard_normal(out.shape).astype(np.float32)
  grads = _jit_grads(x, offsets, kernel, cotangent, precision=HIGHEST, **args)
  for name, grad, expected in zip(("x", "offsets", "kernel"), grads,
                                  run_torch(x, offsets, kernel, cotangent)):
    np.testing.assert_allclose(np.asarray(grad), expected, rtol=1e-5, atol=1e-5, err_msg=name)


def test_module_starts_as_plain_conv():
  """Params are conv_offset/{kernel,bias} (zero) and kernel (Kaiming normal, fan out); the
  zero offset conv makes the layer a plain conv with its kernel. A nonzero offset bias is
  the offset field, in deform_conv2d's channel order. Stride 2, padding 2, dilation 2 check
  that all three reach both convs."""
  rng = np.random.default_rng(8)
  stride, dilation = 2, 2
  x = jnp.asarray(rng.standard_normal((1, 9, 8, 16)), jnp.float32)
  layer = DeformConv(64, stride=stride, padding=dilation, dilation=dilation)
  params = jax.jit(layer.init)(jax.random.PRNGKey(0), x)["params"]
  flat = {"/".join(path): value for path, value in flax.traverse_util.flatten_dict(params).items()}
  assert set(flat) == {"conv_offset/kernel", "conv_offset/bias", "kernel"}
  assert flat["conv_offset/kernel"].shape == (3, 3, 16, 18)
  assert flat["conv_offset/bias"].shape == (18,)
  assert flat["kernel"].shape == (3, 3, 16, 64)
  assert not np.any(flat["conv_offset/kernel"]) and not np.any(flat["conv_offset/bias"])
  std = float(np.std(flat["kernel"]))
  assert abs(std / math.sqrt(2.0 / (3 * 3 * 64)) - 1) < 0.05

  apply = jax.jit(layer.apply)
  out = apply({"params": params}, x)
  conv = _lax_conv(x, params["kernel"], stride, dilation, dilation)
  assert out.shape == conv.shape
  np.testing.assert_allclose(np.asarray(out), np.asarray(conv), rtol=1e-4, atol=1e-4)

  bias = jnp.asarray(rng.uniform(-1.5, 1.5, size=18), jnp.float32)
  moved = {"conv_offset": {"kernel": params["conv_offset"]["kernel"], "bias": bias},
           "kernel": params["kernel"]}
  offsets = jnp.broadcast_to(bias, out.shape[:3] + (18,))
  np.testing.assert_allclose(
      np.asarray(apply({"params": moved}, x)),
      np.asarray(_jit_deform(x, offsets, params["kernel"], stride=stride, padding=dilation,
                             dilation=dilation)),
      rtol=1e-4, atol=1e-4)
