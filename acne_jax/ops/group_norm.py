"""Group normalisation (Wu & He, 2018) as per-channel statistics, for the CPU's sake.

``y = (x - mean_g) / sqrt(var_g + eps) * scale_c + bias_c`` with ``mean_g`` and ``var_g`` over
the spatial positions and the ``C / G`` channels of group ``g``; the same numbers as
``flax.linen.GroupNorm`` (float32 statistics, ``var = E[x^2] - E[x]^2`` clamped at 0).

What differs is the shape of the work. Flax reshapes ``[B, H, W, C]`` to ``[B, H, W, G, C/G]``
and normalises there; with ``C / G = 8`` the innermost dimension is too short for XLA's CPU
code to vectorise. Here the statistics are per-channel sums, folded to groups on a ``[B, C]``
array, and the normalisation is one multiply-add per element with ``[B, C]`` coefficients over
``C`` contiguous channels, which fuses with whatever follows. On two CPU cores, GroupNorm(32) +
ReLU of two 128 x 128 x 256 maps (the SADH towers on P2) takes 4 ms instead of 20 forward and
43 ms instead of 67 with its gradient; in a whole SADH train step the difference is within the
run-to-run noise (BENCHMARKS.md).
"""

from __future__ import annotations

import math

import jax.numpy as jnp

from acne_jax.ops.shapes import check_shape


def group_norm(x: jnp.ndarray, scale: jnp.ndarray, bias: jnp.ndarray, num_groups: int, epsilon: float = 1e-5,
               dtype=None) -> jnp.ndarray:
  """Group normalisation of channels-last ``x``.

  Args:
    x: ``[B, ..., C]`` (``[B, H, W, C]`` for feature maps); statistics over every axis but the
      first and the last, per group of ``C / num_groups`` consecutive channels.
    scale, bias: ``[C]`` affine parameters.
    num_groups: ``G``, which must divide ``C``.
    epsilon: added to the variance.
    dtype: output dtype (default ``x.dtype``); statistics are float32 whatever it is.

  Returns:
    ``[B, ..., C]`` normalised ``x``.
  """
  dims = check_shape("group_norm", "scale", scale, "[C]")
  check_shape("group_norm", "bias", bias, "[C]", dims)
  channels = x.shape[-1]
  if x.ndim < 2 or channels != dims["C"]:
    raise ValueError(f"group_norm: argument 'x' must be [B, ..., C] with C = {dims['C']} (scale's length); got shape {x.shape}.")
  if channels % num_groups:
    raise ValueError(f"group_norm: {channels} channels cannot be split into {num_groups} groups; choose a divisor of {channels}.")
  batch, per_group = x.shape[0], channels // num_groups
  reduce_axes = tuple(range(1, x.ndim - 1))
  count = math.prod(x.shape[1:-1]) * per_group
  wide = x.astype(jnp.float32)
  # Sums over positions keep the channel axis minor (vectorised); only [B, C] is regrouped.
  group_sum = jnp.sum(wide, axis=reduce_axes).reshape(batch, num_groups, per_group).sum(-1)
  group_square_sum = jnp.sum(wide * wide, axis=reduce_axes).reshape(batch, num_groups, per_group).sum(-1)
  mean = group_sum / count
  variance = jnp.maximum(group_square_sum / count - mean * mean, 0.0)
  inverse_std = jnp.repeat(1.0 / jnp.sqrt(variance + epsilon), per_group, axis=1)  # [B, C]
  multiplier = inverse_std * scale.astype(jnp.float32)[None, :]
  shift = bias.astype(jnp.float32)[None, :] - jnp.repeat(mean, per_group, axis=1) * multiplier
  coefficient_shape = (batch,) + (1,) * len(reduce_axes) + (channels,)
  y = wide * multiplier.reshape(coefficient_shape) + shift.reshape(coefficient_shape)
  return y.astype(dtype or x.dtype)
