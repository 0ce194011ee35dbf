"""The convolution with a matrix-product kernel gradient, against PyTorch's conv2d autograd in float64."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from acne_jax.ops import conv as conv_ops

NHWC = ("NHWC", "HWIO", "NHWC")


def torch_gradients(x, kernel, grad_out, stride, padding, dilation):
  """float64 (input, kernel) gradients of torch's conv2d (symmetric padding), in NHWC / HWIO."""
  xt = torch.tensor(np.transpose(x, (0, 3, 1, 2)), dtype=torch.float64, requires_grad=True)
  wt = torch.tensor(np.transpose(kernel, (3, 2, 0, 1)), dtype=torch.float64, requires_grad=True)
  out = torch.nn.functional.conv2d(xt, wt, stride=stride, padding=padding, dilation=dilation)
  out.backward(torch.tensor(np.transpose(grad_out, (0, 3, 1, 2)), dtype=torch.float64))
  return (np.transpose(xt.grad.numpy(), (0, 2, 3, 1)), np.transpose(wt.grad.numpy(), (2, 3, 1, 0)),
          np.transpose(out.detach().numpy(), (0, 2, 3, 1)))


@pytest.mark.parametrize("kernel_size, stride, pad, dilation", [
    (1, 1, 0, 1),   # FPN laterals, bottleneck 1x1s
    (3, 1, 1, 1),   # FPN outputs, RPN / SADH heads
    (3, 2, 1, 1),   # ResNet's strided 3x3, FPN's P6 conv
    (7, 2, 3, 1),   # ResNet stem
    (1, 2, 0, 1),   # ResNet downsample
    (3, 1, 2, 2),   # dilated
    (3, 2, 1, 2),
])
def test_gradients_equal_torch_conv2d(kernel_size, stride, pad, dilation):
  rng = np.random.default_rng(kernel_size * 100 + stride * 10 + dilation)
  x = rng.standard_normal((2, 13, 11, 5)).astype(np.float32)
  kernel = rng.standard_normal((kernel_size, kernel_size, 5, 7)).astype(np.float32)

  def forward(x, kernel):
    return conv_ops.conv_general_dilated(x, kernel, (stride, stride), ((pad, pad), (pad, pad)),
                                         rhs_dilation=(dilation, dilation), dimension_numbers=NHWC)

  out, pullback = jax.vjp(forward, jnp.asarray(x), jnp.asarray(kernel))
  grad_out = rng.standard_normal(out.shape).astype(np.float32)
  grad_x, grad_kernel = pullback(jnp.asarray(grad_out))
  want_x, want_kernel, want_out = torch_gradients(x, kernel, grad_out, stride, pad, dilation)
  np.testing.assert_allclose(np.asarray(out), want_out, rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(np.asarray(grad_x), want_x, rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(np.asarray(grad_kernel), want_kernel, rtol=1e-5, atol=1e-4)


def test_uneven_and_negative_padding_and_same_equal_xla():
  """Paddings torch cannot express (asymmetric, negative, "SAME") against XLA's own gradient."""
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((1, 10, 9, 3)), jnp.float32)
  kernel = jnp.asarray(rng.standard_normal((3, 2, 3, 4)), jnp.float32)
  for strides, padding in [((1, 1), ((0, 2), (1, 0))), ((2, 1), ((-1, 1), (2, -1))), ((2, 2), "SAME")]:
    def ours(x, kernel):
      return jnp.sum(jnp.sin(conv_ops.conv_general_dilated(x, kernel, strides, padding, dimension_numbers=NHWC)))

    def xla(x, kernel):
      return jnp.sum(jnp.sin(jax.lax.conv_general_dilated(x, kernel, strides, padding, dimension_numbers=NHWC)))

    for got, want in zip(jax.grad(ours, (0, 1))(x, kernel), jax.grad(xla, (0, 1))(x, kernel)):
      np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)


def test_on_cpu_the_kernel_gradient_has_no_convolution():
  """The kernel gradient is GEMMs on CPU: its compiled program holds no convolution at all."""
  x = jnp.ones((2, 16, 16, 8))
  kernel = jnp.ones((3, 3, 8, 8))

  def loss(kernel, conv):
    return jnp.sum(conv(x, kernel, (1, 1), ((1, 1), (1, 1)), dimension_numbers=NHWC) ** 2)

  def convolutions(conv):
    hlo = jax.jit(jax.grad(loss), static_argnums=1).lower(kernel, conv).as_text()
    return hlo.count("convolution")

  assert convolutions(jax.lax.conv_general_dilated) == 2  # XLA's: the forward and the kernel gradient
  assert convolutions(conv_ops.conv_general_dilated) == 1  # ours: the forward only


def test_bfloat16_gradient_is_as_close_to_float32_as_xlas_own():
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.standard_normal((2, 12, 12, 16)), jnp.bfloat16)
  kernel = jnp.asarray(rng.standard_normal((3, 3, 16, 8)), jnp.bfloat16)

  def loss(kernel, x, conv):
    out = conv(x, kernel, (1, 1), ((1, 1), (1, 1)), dimension_numbers=NHWC)
    return jnp.sum(out.astype(jnp.float32) ** 2)

  ours = jax.grad(loss)(kernel, x, conv_ops.conv_general_dilated)
  xla = jax.grad(loss)(kernel, x, jax.lax.conv_general_dilated)
  exact = np.asarray(jax.grad(loss)(kernel.astype(jnp.float32), x.astype(jnp.float32), jax.lax.conv_general_dilated))
  assert ours.dtype == jnp.bfloat16
  error_ours = np.max(np.abs(np.asarray(ours, np.float32) - exact))
  error_xla = np.max(np.abs(np.asarray(xla, np.float32) - exact))
  assert error_ours <= 1e-2 * np.max(np.abs(exact))
  assert error_ours <= 1.5 * error_xla


def test_other_layouts_are_lax_unchanged():
  """NCHW, grouped or input-dilated convolutions take lax's path and its results."""
  rng = np.random.default_rng(2)
  x = jnp.asarray(rng.standard_normal((1, 4, 6, 6)), jnp.float32)
  kernel = jnp.asarray(rng.standard_normal((4, 2, 3, 3)), jnp.float32)
  arguments = dict(window_strides=(1, 1), padding=((1, 1), (1, 1)), feature_group_count=2)
  got = conv_ops.conv_general_dilated(x, kernel, **arguments)
  np.testing.assert_array_equal(np.asarray(got), np.asarray(jax.lax.conv_general_dilated(x, kernel, **arguments)))
