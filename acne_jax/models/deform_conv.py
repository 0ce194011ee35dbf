"""Deformable convolution v1 as a layer: MMDetection's ``DCN`` (mmcv ``DeformConv2dPack``).

The sampling op is :func:`acne_jax.ops.deform_conv.deform_conv2d`; this module adds its
offset-predicting convolution, ``conv_offset``, initialised to zero so the layer starts as the
plain convolution it replaces.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from acne_jax.models.layers import Conv
from acne_jax.ops.deform_conv import deform_conv2d


class DeformConv(nn.Module):
  """Deformable conv layer with its own offset conv (MMDetection ``DCN``, mmcv ``DeformConv2dPack``).

  ``conv_offset`` is an ``nn.Conv`` with ``2 * kernel_size ** 2`` outputs, the same kernel
  size, stride, padding and dilation, and a bias; its kernel and bias start at zero, so the
  layer starts as a plain conv. ``kernel`` is ``[k, k, C_in, features]``, Kaiming normal
  (fan out) as MMDetection's ResNet init; there is no bias.

  Attributes:
    features: output channels.
    kernel_size, stride, padding, dilation: ints, as in :func:`deform_conv2d`.
    dtype: computation dtype (parameters stay float32).
  """
  features: int
  kernel_size: int = 3
  stride: int = 1
  padding: int = 1
  dilation: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    """``x: [B, H, W, C_in]`` -> ``[B, H_out, W_out, features]`` in ``dtype``."""
    k, p = self.kernel_size, self.padding
    offsets = Conv(
        2 * k * k, (k, k), strides=self.stride, padding=((p, p), (p, p)),
        kernel_dilation=self.dilation, use_bias=True, kernel_init=nn.initializers.zeros,
        bias_init=nn.initializers.zeros, dtype=self.dtype, name="conv_offset")(x)
    kernel = self.param("kernel", nn.initializers.variance_scaling(2.0, "fan_out", "normal"),
                        (k, k, x.shape[-1], self.features))
    return deform_conv2d(x.astype(self.dtype), offsets, kernel.astype(self.dtype),
                         stride=self.stride, padding=p, dilation=self.dilation)
