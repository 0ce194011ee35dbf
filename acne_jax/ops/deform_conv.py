"""Deformable convolution v1 (Dai et al., 2017) on NHWC feature maps.

:func:`deform_conv2d` reproduces ``torchvision.ops.deform_conv2d`` without mask (and mmcv's
``deform_conv2d``) with one offset group and no bias; :class:`DeformConv` is the layer
MMDetection puts in ResNet stages as ``DCN`` (mmcv ``DeformConv2dPack``): an offset conv,
zero-initialised, feeding the deformable conv.

Definition, for output position ``(oy, ox)`` and kernel tap ``(i, j)`` (``k = i * kw + j``):

* the tap samples the input at ``y = oy * stride - padding + i * dilation + dy`` and
  ``x = ox * stride - padding + j * dilation + dx``, where ``dy = offsets[..., 2k]`` and
  ``dx = offsets[..., 2k + 1]`` (torchvision/mmcv channel order: y before x);
* the sample is 0 if ``y <= -1``, ``y >= H``, ``x <= -1`` or ``x >= W``; otherwise it is the
  bilinear interpolation of the four cells around ``(y, x)``, a cell outside the map reading
  0 (torchvision's ``bilinear_interpolate`` in ``deform_conv2d_kernel.cpp``). This is
  continuous in ``(y, x)``: zero padding by one cell, interpolated, everywhere;
* ``out[b, oy, ox, o] = sum_{k, c} sample_k[c] * kernel[i, j, c, o]``.

Implementation. The map is zero-padded by one cell on each side, so the four corners of any
in-range sample (``-1 < y < H``) index the padded map without per-corner masks. The four
corners of every tap of every output are gathered at once (``[B, H_out, W_out, kh * kw, C_in]``
each), weighted and summed, and one contraction over ``(tap, C_in)`` with the kernel gives
the output. Gradients w.r.t. ``x`` (a scatter-add), ``offsets`` (through the bilinear
weights) and ``kernel`` come from ordinary autodiff and match torchvision's backward kernels
where the sample positions are not integral (where ``floor`` jumps, the offset gradient is
the one-sided derivative taken from above, as in torchvision).

Floating point. Positions are ``float(base) + offset`` with ``base`` an exact integer: one
rounding, no product feeding an add, so every fusion that recomputes them (XLA duplicates
cheap elementwise work) gets the same value and the gather index ``floor(y)`` agrees with the
weight ``y - floor(y)``. Positions are float32 for float32/bfloat16/float16 offsets (float64
under x64 inputs); the gathered values and the output keep the input's dtype.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple, Union

import jax
import jax.numpy as jnp
import numpy as np

from acne_jax.ops.shapes import check_shape

IntPair = Union[int, Tuple[int, int], Sequence[int]]


def _pair(fn: str, name: str, value: IntPair, minimum: int) -> Tuple[int, int]:
  if isinstance(value, (int, np.integer)):
    pair = (int(value), int(value))
  else:
    pair = tuple(int(v) for v in value)
  if len(pair) != 2 or min(pair) < minimum:
    raise ValueError(f"{fn}: {name} must be an int >= {minimum} or a pair of them; got {value!r}")
  return pair


def deform_conv2d(
    x: jnp.ndarray,
    offsets: jnp.ndarray,
    kernel: jnp.ndarray,
    stride: IntPair = 1,
    padding: IntPair = 1,
    dilation: IntPair = 1,
    precision: Optional[jax.lax.PrecisionLike] = None,
) -> jnp.ndarray:
  """Deformable convolution v1, torchvision/mmcv semantics, one offset group, no bias.

  Args:
    x: ``[B, H, W, C_in]`` input feature map.
    offsets: ``[B, H_out, W_out, 2 * kh * kw]`` sampling offsets in cells; channel ``2k``
      is the y (row) offset and ``2k + 1`` the x (column) offset of tap ``k = i * kw + j``.
    kernel: ``[kh, kw, C_in, C_out]`` weights (Flax ``nn.Conv`` layout).
    stride, padding, dilation: ints or ``(h, w)`` pairs, as in ``lax.conv_general_dilated``
      with symmetric padding; ``H_out = (H + 2 * padding - dilation * (kh - 1) - 1) // stride
      + 1`` and likewise ``W_out``.
    precision: passed to the final contraction with the kernel (``None``: backend default).

  Returns:
    ``[B, H_out, W_out, C_out]`` in ``jnp.result_type(x, kernel)``. With zero offsets it is
    ``lax.conv_general_dilated(x, kernel, stride, ((p, p), (p, p)), rhs_dilation=dilation)``.
  """
  fn = "deform_conv2d"
  sh, sw = _pair(fn, "stride", stride, 1)
  ph, pw = _pair(fn, "padding", padding, 0)
  dh, dw = _pair(fn, "dilation", dilation, 1)
  dims = check_shape(fn, "x", x, "[B, H, W, C_in]")
  check_shape(fn, "kernel", kernel, "[kh, kw, C_in, C_out]", dims)
  batch, height, width, channels = x.shape
  kh, kw = kernel.shape[:2]
  taps = kh * kw
  out_h = (height + 2 * ph - dh * (kh - 1) - 1) // sh + 1
  out_w = (width + 2 * pw - dw * (kw - 1) - 1) // sw + 1
  if out_h < 1 or out_w < 1:
    raise ValueError(f"{fn}: empty output {out_h}x{out_w} for input {height}x{width}, "
                     f"kernel {kh}x{kw}, stride {stride}, padding {padding}, dilation {dilation}")
  check_shape(fn, "offsets", offsets, f"[B, {out_h}, {out_w}, {2 * taps}]", dims)

  # Sampling positions [B, H_out, W_out, K]: exact integer base + offset, one rounding.
  coord_dtype = jnp.promote_types(offsets.dtype, jnp.float32)
  offsets = offsets.astype(coord_dtype).reshape(batch, out_h, out_w, taps, 2)
  tap_i, tap_j = np.divmod(np.arange(taps), kw)
  base_y = (np.arange(out_h) * sh - ph)[:, None, None] + (tap_i * dh)[None, None, :]  # [H_out, 1, K]
  base_x = (np.arange(out_w) * sw - pw)[None, :, None] + (tap_j * dw)[None, None, :]  # [1, W_out, K]
  y = jnp.asarray(base_y, coord_dtype) + offsets[..., 0]
  x_pos = jnp.asarray(base_x, coord_dtype) + offsets[..., 1]

  # Out-of-range samples read cell (0, 0) of the padded map with weight 0; where() keeps
  # their (possibly huge) positions out of the int conversion and their gradient at 0.
  inside = (y > -1) & (y < height) & (x_pos > -1) & (x_pos < width)
  y = jnp.where(inside, y, 0)
  x_pos = jnp.where(inside, x_pos, 0)
  y0 = jnp.floor(y)
  x0 = jnp.floor(x_pos)
  ly = y - y0                        # exact
  lx = x_pos - x0
  hy = 1 - ly
  hx = 1 - lx
  mask = inside.astype(coord_dtype)

  # Corner (y0, x0) of an in-range sample is row y0 + 1, column x0 + 1 of the padded map:
  # rows in [0, H], columns in [0, W]; the +1 corners in [1, H + 1] and [1, W + 1].
  padded_h, padded_w = height + 2, width + 2
  padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  table = padded.reshape(batch * padded_h * padded_w, channels)
  image_base = (jnp.arange(batch, dtype=jnp.int32) * (padded_h * padded_w))[:, None, None, None]
  top_left = image_base + (y0.astype(jnp.int32) + 1) * padded_w + (x0.astype(jnp.int32) + 1)

  # One gather per corner, each for all taps at once. XLA fuses the four gathers with the
  # weighted sum, so only [B, H_out, W_out, K, C_in] is materialised (a single gather of
  # [..., K, 4, C_in] is materialised whole on CPU: 2-3x slower forward, 4x the memory).
  def corner(step: int, weight: jnp.ndarray) -> jnp.ndarray:
    values = jnp.take(table, top_left + step, axis=0, mode="clip")  # [B, H_out, W_out, K, C_in]
    return values * (weight * mask).astype(x.dtype)[..., None]

  sampled = (corner(0, hy * hx) + corner(1, hy * lx)
             + corner(padded_w, ly * hx) + corner(padded_w + 1, ly * lx))

  columns = sampled.reshape(batch, out_h, out_w, taps * channels)
  matrix = kernel.reshape(taps * channels, kernel.shape[-1])        # row (i * kw + j) * C_in + c
  return jnp.einsum("bhwr,ro->bhwo", columns, matrix, precision=precision)
