"""group_norm against a float64 NumPy transcription of Wu & He's formula and against flax's GroupNorm."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from acne_jax.models.norm import GroupNorm
from acne_jax.ops.group_norm import group_norm


def group_norm_float64(x, scale, bias, groups, epsilon):
  b, c = x.shape[0], x.shape[-1]
  grouped = x.astype(np.float64).reshape(b, -1, groups, c // groups)
  mean = grouped.mean(axis=(1, 3), keepdims=True)
  var = grouped.var(axis=(1, 3), keepdims=True)
  return ((grouped - mean) / np.sqrt(var + epsilon)).reshape(x.shape) * scale + bias


@pytest.mark.parametrize("shape, groups", [((2, 9, 7, 64), 32), ((3, 5, 5, 36), 36), ((2, 4, 4, 576), 9), ((4, 12), 3)])
def test_matches_the_formula_in_float64(shape, groups):
  rng = np.random.default_rng(sum(shape))
  x = (rng.standard_normal(shape) * 3 + 2).astype(np.float32)
  scale = rng.uniform(0.5, 2, shape[-1]).astype(np.float32)
  bias = rng.standard_normal(shape[-1]).astype(np.float32)
  got = group_norm(jnp.asarray(x), jnp.asarray(scale), jnp.asarray(bias), groups)
  np.testing.assert_allclose(np.asarray(got), group_norm_float64(x, scale, bias, groups, 1e-5), rtol=1e-5, atol=1e-5)


def test_module_equals_flax_groupnorm_values_and_gradients():
  """Same parameter tree, outputs and gradients as flax.linen.GroupNorm (which it replaces)."""
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((2, 16, 16, 256)) * 2 - 1, jnp.float32)
  ours, flax_gn = GroupNorm(num_groups=32), nn.GroupNorm(num_groups=32, epsilon=1e-5)
  variables = flax_gn.init(jax.random.key(0), x)
  variables = jax.tree.map(lambda v: v + jnp.asarray(rng.standard_normal(v.shape), jnp.float32) * 0.1, variables)
  assert jax.tree.structure(ours.init(jax.random.key(0), x)) == jax.tree.structure(variables)

  def loss(module, variables, x):
    return jnp.sum(jnp.sin(nn.relu(module.apply(variables, x))))

  got = jax.value_and_grad(loss, (1, 2))(ours, variables, x)
  want = jax.value_and_grad(loss, (1, 2))(flax_gn, variables, x)
  for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=2e-4, atol=2e-5)


def test_bfloat16_input_keeps_float32_statistics():
  rng = np.random.default_rng(1)
  x = (rng.standard_normal((2, 8, 8, 32)) * 4 + 100).astype(np.float32)  # a large mean: E[x^2] - E[x]^2 in bf16 would be noise
  ones, zeros = jnp.ones(32), jnp.zeros(32)
  got = group_norm(jnp.asarray(x, jnp.bfloat16), ones, zeros, 8)
  assert got.dtype == jnp.bfloat16
  want = group_norm_float64(np.asarray(jnp.asarray(x, jnp.bfloat16), np.float32), np.ones(32), np.zeros(32), 8, 1e-5)
  np.testing.assert_allclose(np.asarray(got, np.float32), want, atol=0.03)


def test_groups_must_divide_channels():
  with pytest.raises(ValueError, match="48 channels cannot be split into 32 groups"):
    group_norm(jnp.ones((1, 2, 2, 48)), jnp.ones(48), jnp.zeros(48), 32)
