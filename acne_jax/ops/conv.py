"""2-D convolution whose kernel gradient on CPU is a sum of matrix products.

``conv_general_dilated`` has ``lax.conv_general_dilated``'s signature and forward; every
``nn.Conv`` of the models takes it (``nn.Conv(..., conv_general_dilated=...)``). What differs
is the gradient with respect to the kernel on CPU. XLA's CPU backend computes it as one more
convolution, of the input by the output gradient, whose "kernel" is the whole feature map;
on an FPN's P2 (two 128 x 128 maps, 256 channels) that runs at a seventh of the forward's
FLOP rate (about 1.2 s against 0.12 s on two cores), and the weight gradients of the two P2
3x3 convolutions were the two largest costs of a train step (BENCHMARKS.md). Here the
kernel gradient of a ``kh x kw`` convolution is ``kh * kw`` matrix products instead:

    dW[i, j] = sum over n, y, x of  input_padded[n, y * s + i * d, x * s + j * d, :]^T  dY[n, y, x, :]

each a GEMM of ``[C_out, N*H_out*W_out] x [N*H_out*W_out, C_in]`` that the CPU runs at close to
its peak. On other platforms the gradient is XLA's own (cuDNN's on GPU), chosen at lowering
time by ``lax.platform_dependent``. The input gradient is XLA's everywhere.

Only the layout the models use takes this path: NHWC input, HWIO kernel, no input dilation,
one feature group. Anything else is ``lax.conv_general_dilated`` unchanged.
"""

from __future__ import annotations

import functools
from typing import Optional, Sequence, Tuple, Union

import jax
import jax.numpy as jnp
from jax import lax

Padding = Union[str, Sequence[Tuple[int, int]]]

_NHWC = lax.ConvDimensionNumbers(lhs_spec=(0, 3, 1, 2), rhs_spec=(3, 2, 0, 1), out_spec=(0, 3, 1, 2))


def conv_general_dilated(lhs: jnp.ndarray, rhs: jnp.ndarray, window_strides: Sequence[int], padding: Padding,
                         lhs_dilation: Optional[Sequence[int]] = None, rhs_dilation: Optional[Sequence[int]] = None,
                         dimension_numbers=None, feature_group_count: int = 1, batch_group_count: int = 1,
                         precision=None, preferred_element_type=None) -> jnp.ndarray:
  """``lax.conv_general_dilated`` with a matrix-product kernel gradient on CPU (module docstring).

  Args: as ``lax.conv_general_dilated``. The fast path needs ``lhs: [N, H, W, C_in]``,
  ``rhs: [kh, kw, C_in, C_out]`` (``dimension_numbers`` NHWC / HWIO / NHWC), no
  ``lhs_dilation``, ``feature_group_count == batch_group_count == 1``.

  Returns:
    ``[N, H_out, W_out, C_out]``, as ``lax.conv_general_dilated``.
  """
  plain = functools.partial(lax.conv_general_dilated, window_strides=window_strides, padding=padding,
                            lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
                            feature_group_count=feature_group_count, batch_group_count=batch_group_count,
                            precision=precision, preferred_element_type=preferred_element_type)
  if lhs.ndim != 4 or rhs.ndim != 4 or feature_group_count != 1 or batch_group_count != 1:
    return plain(lhs, rhs)
  if lhs_dilation is not None and tuple(lhs_dilation) != (1, 1):
    return plain(lhs, rhs)
  if lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers) != _NHWC:
    return plain(lhs, rhs)
  strides = tuple(int(s) for s in window_strides)
  dilation = (1, 1) if rhs_dilation is None else tuple(int(d) for d in rhs_dilation)
  if isinstance(padding, str):
    effective = tuple((k - 1) * d + 1 for k, d in zip(rhs.shape[:2], dilation))
    padding = lax.padtype_to_pads(lhs.shape[1:3], effective, strides, padding)
  pads = tuple((int(lo), int(hi)) for lo, hi in padding)
  return _conv_nhwc(lhs, rhs, strides, pads, dilation, precision, preferred_element_type)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5, 6))
def _conv_nhwc(x, kernel, strides, pads, dilation, precision, preferred_element_type):
  return lax.conv_general_dilated(x, kernel, strides, pads, rhs_dilation=dilation, dimension_numbers=_NHWC,
                                  precision=precision, preferred_element_type=preferred_element_type)


def _conv_nhwc_forward(x, kernel, strides, pads, dilation, precision, preferred_element_type):
  return _conv_nhwc(x, kernel, strides, pads, dilation, precision, preferred_element_type), (x, kernel)


def _conv_nhwc_backward(strides, pads, dilation, precision, preferred_element_type, residuals, grad_out):
  x, kernel = residuals

  def conv(x, kernel):
    return lax.conv_general_dilated(x, kernel, strides, pads, rhs_dilation=dilation, dimension_numbers=_NHWC,
                                    precision=precision, preferred_element_type=preferred_element_type)

  _, pullback = jax.vjp(conv, x, kernel)
  grad_x = pullback(grad_out)[0]
  grad_kernel = lax.platform_dependent(
      x, grad_out,
      cpu=lambda x, g: kernel_gradient_by_matmul(x, g, kernel.shape, strides, pads, dilation, precision),
      default=lambda x, g: pullback(g)[1])
  return grad_x, grad_kernel.astype(kernel.dtype)


_conv_nhwc.defvjp(_conv_nhwc_forward, _conv_nhwc_backward)


def kernel_gradient_by_matmul(x: jnp.ndarray, grad_out: jnp.ndarray, kernel_shape: Sequence[int], strides: Sequence[int],
                              pads: Sequence[Tuple[int, int]], dilation: Sequence[int], precision=None) -> jnp.ndarray:
  """The gradient of an NHWC / HWIO convolution with respect to its kernel, as ``kh * kw`` GEMMs.

  Args:
    x: ``[N, H, W, C_in]`` the convolution's input.
    grad_out: ``[N, H_out, W_out, C_out]`` gradient with respect to its output.
    kernel_shape: ``(kh, kw, C_in, C_out)``.
    strides, pads, dilation: the convolution's ``(sh, sw)``, ``((top, bottom), (left, right))``
      (negative crops, as in ``lax.conv_general_dilated``) and kernel dilation ``(dh, dw)``.

  Returns:
    ``[kh, kw, C_in, C_out]`` in the promoted dtype of ``x`` and ``grad_out`` (accumulated in float32).
  """
  kh, kw, c_in, c_out = kernel_shape
  n, h_out, w_out, _ = grad_out.shape
  padded = lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), (pads[0][0], pads[0][1], 0), (pads[1][0], pads[1][1], 0), (0, 0, 0)))
  # [C_out, N, H_out, W_out]: the output gradient as the left operand makes every product a plain
  # row-major GEMM (contracting the left operand's minor dimensions), the fastest form on CPU.
  grad_rows = jnp.transpose(grad_out, (3, 0, 1, 2))
  accumulate = jnp.promote_types(jnp.float32, jnp.promote_types(x.dtype, grad_out.dtype))
  taps = []
  for i in range(kh):
    for j in range(kw):
      top, left = i * dilation[0], j * dilation[1]
      window = lax.slice(padded, (0, top, left, 0),
                         (n, top + strides[0] * (h_out - 1) + 1, left + strides[1] * (w_out - 1) + 1, c_in),
                         (1, strides[0], strides[1], 1))  # [N, H_out, W_out, C_in]
      taps.append(lax.dot_general(grad_rows, window, (((1, 2, 3), (0, 1, 2)), ((), ())), precision=precision,
                                  preferred_element_type=accumulate))  # [C_out, C_in]
  stacked = jnp.stack(taps).reshape(kh, kw, c_out, c_in)
  return jnp.transpose(stacked, (0, 1, 3, 2)).astype(jnp.promote_types(x.dtype, grad_out.dtype))
