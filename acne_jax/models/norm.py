"""Normalisation layers chosen by name from a config.

``"frozen_bn"``: batch norm with fixed statistics and affine parameters (MMDetection's
``norm_eval`` with ``requires_grad=False``, torchvision's ``FrozenBatchNorm2d``).
``"eval_bn"``: batch norm that always uses its running statistics, which stay fixed, while its
affine scale and bias are trained (MMDetection's ``norm_eval=True, requires_grad=True``, the
setting of the SADH paper's ImageNet-initialised ResNet-50).
``"bn"``: batch norm whose statistics are updated from each batch during training (kept in the
``batch_stats`` collection). ``"gn"``: group norm, independent of the batch, the choice for a
backbone trained from scratch on small per-device batches.
"""

from __future__ import annotations

import functools
import math
from typing import Callable

import flax.linen as nn
import jax.numpy as jnp

from acne_jax.ops import data_axis
from acne_jax.ops.group_norm import group_norm

NORMS = ("frozen_bn", "eval_bn", "bn", "gn")


class FrozenBatchNorm(nn.Module):
  """``y = (x - mean) / sqrt(var + eps) * scale + bias`` with every term constant.

  The four vectors live in the ``batch_stats`` collection (not ``params``), so the optimiser
  never sees them; they come from a converted checkpoint or stay at the identity.
  """

  epsilon: float = 1e-5

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    features = x.shape[-1]
    stats = {
        name: self.variable("batch_stats", name, lambda n=name: jnp.full((features,), 1.0 if n in ("var", "scale") else 0.0))
        for name in ("mean", "var", "scale", "bias")
    }
    multiplier = stats["scale"].value * jnp.reciprocal(jnp.sqrt(stats["var"].value + self.epsilon))
    return x * multiplier + (stats["bias"].value - stats["mean"].value * multiplier)


class EvalBatchNorm(nn.Module):
  """``y = (x - mean) / sqrt(var + eps) * scale + bias``: statistics constant, affine trained.

  ``mean`` and ``var`` live in ``batch_stats`` (never updated: a checkpoint's running averages),
  ``scale`` and ``bias`` in ``params``, named as ``flax.linen.BatchNorm`` names them.
  """

  epsilon: float = 1e-5
  scale_init: Callable = nn.initializers.ones

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    features = x.shape[-1]
    mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((features,), jnp.float32))
    var = self.variable("batch_stats", "var", lambda: jnp.ones((features,), jnp.float32))
    scale = self.param("scale", self.scale_init, (features,), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (features,), jnp.float32)
    multiplier = scale * jnp.reciprocal(jnp.sqrt(var.value + self.epsilon))
    return x * multiplier + (bias - mean.value * multiplier)


class GroupNorm(nn.Module):
  """``flax.linen.GroupNorm``'s parameters (``scale``, ``bias``: ``[C]``) and numbers, computed by
  :func:`acne_jax.ops.group_norm.group_norm` (per-channel statistics, which vectorise on CPU).

  Attributes:
    num_groups: ``G``; must divide the channel count.
  """

  num_groups: int = 32
  epsilon: float = 1e-5
  scale_init: Callable = nn.initializers.ones
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    """``x: [B, ..., C]`` -> ``[B, ..., C]`` in ``dtype``."""
    scale = self.param("scale", self.scale_init, (x.shape[-1],), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (x.shape[-1],), jnp.float32)
    return group_norm(x, scale, bias, self.num_groups, self.epsilon, dtype=self.dtype)


class DivisorGroupNorm(nn.Module):
  """GroupNorm with ``gcd(num_groups, channels)`` groups, so thin networks can use it too.

  The backbone's ``"gn"``; its parameters sit in an inner module ``gn`` (``.../gn/scale``).
  """

  num_groups: int = 32
  epsilon: float = 1e-5
  scale_init: Callable = nn.initializers.ones
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    groups = math.gcd(self.num_groups, x.shape[-1])
    return GroupNorm(num_groups=groups, epsilon=self.epsilon, scale_init=self.scale_init, dtype=self.dtype, name="gn")(x)


def make_norm(kind: str, train: bool, groups: int = 32, dtype=jnp.float32) -> Callable[..., nn.Module]:
  """A constructor ``norm(name=...)`` for the named normalisation.

  Args:
    kind: one of :data:`NORMS`.
    train: for ``"bn"``, update batch statistics (training) or use the running averages.
    groups: number of groups for ``"gn"`` (the channel count must be divisible by it).
    dtype: computation dtype.
  """
  if kind == "frozen_bn":
    return FrozenBatchNorm
  if kind == "eval_bn":
    return EvalBatchNorm
  if kind == "bn":
    # Statistics over the whole batch, across the data axis when sharded (SyncBN): a step on 8
    # devices normalises as on one.
    return functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=dtype,
                             axis_name=data_axis.current())
  if kind == "gn":
    return functools.partial(DivisorGroupNorm, num_groups=groups, epsilon=1e-5, dtype=dtype)
  raise ValueError(f"unknown norm {kind!r}; choose one of {NORMS}.")
