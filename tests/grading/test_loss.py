"""The grading paper's class-weighted cross-entropy against float64 NumPy and PyTorch."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from acne_jax.ops import losses


def reference(logits, labels, weights):
  """``sum_i w[y_i] ce_i / sum_i w[y_i]`` in float64."""
  z = np.asarray(logits, np.float64)
  z = z - z.max(axis=1, keepdims=True)
  log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
  ce = -log_p[np.arange(len(labels)), labels]
  w = np.asarray(weights, np.float64)[labels]
  return float((w * ce).sum() / w.sum())


@pytest.mark.parametrize("seed", range(4))
def test_weighted_cross_entropy_equals_float64_and_torch(seed):
  rng = np.random.default_rng(seed)
  n, k = 12, 3
  logits = rng.normal(0, 3, size=(n, k)).astype(np.float32)
  labels = rng.choice(k, size=n, p=[0.12, 0.36, 0.52])
  labels[:3] = [0, 1, 2]
  weights = losses.inverse_frequency_weights(labels, k)
  got = float(losses.class_weighted_cross_entropy(jnp.asarray(logits), jnp.asarray(labels), jnp.asarray(weights)))
  np.testing.assert_allclose(got, reference(logits, labels, weights), rtol=2e-6)
  torch_value = F.cross_entropy(torch.as_tensor(logits, dtype=torch.float64), torch.as_tensor(labels),
                                weight=torch.as_tensor(weights, dtype=torch.float64))
  np.testing.assert_allclose(got, float(torch_value), rtol=2e-6)
  # Scale invariance, and the unweighted case is the plain mean.
  np.testing.assert_allclose(float(losses.class_weighted_cross_entropy(jnp.asarray(logits), jnp.asarray(labels), 7.0 * jnp.asarray(weights))), got, rtol=1e-6)
  plain = float(losses.class_weighted_cross_entropy(jnp.asarray(logits), jnp.asarray(labels)))
  np.testing.assert_allclose(plain, reference(logits, labels, np.ones(k)), rtol=2e-6)
  np.testing.assert_allclose(float(losses.class_weighted_cross_entropy(jnp.asarray(logits), jnp.asarray(labels), jnp.ones(k))), plain, rtol=1e-6)


def test_gradient_matches_torch_and_jit():
  rng = np.random.default_rng(7)
  logits = rng.normal(0, 2, size=(9, 3)).astype(np.float32)
  labels = np.array([0, 1, 2, 2, 2, 1, 2, 2, 0])
  weights = np.array([3.0, 1.5, 0.5], np.float32)
  fn = jax.jit(lambda z: losses.class_weighted_cross_entropy(z, jnp.asarray(labels), jnp.asarray(weights)))
  grad = np.asarray(jax.grad(fn)(jnp.asarray(logits)))
  z = torch.tensor(logits.astype(np.float64), requires_grad=True)
  F.cross_entropy(z, torch.as_tensor(labels), weight=torch.as_tensor(weights, dtype=torch.float64)).backward()
  np.testing.assert_allclose(grad, z.grad.numpy(), rtol=1e-5, atol=1e-7)


def test_inverse_frequency_weights():
  labels = np.array([0] * 2 + [1] * 6 + [2] * 12)
  w = losses.inverse_frequency_weights(labels, 3)
  assert w.dtype == np.float32
  np.testing.assert_allclose(w, [20 / 6, 20 / 18, 20 / 36], rtol=1e-6)
  np.testing.assert_allclose(w[labels].mean(), 1.0, rtol=1e-6)  # average 1 over the samples
  np.testing.assert_allclose(w * np.bincount(labels), 20 / 3, rtol=1e-6)  # equal total per class
  assert w[0] > w[1] > w[2]  # the rarest grade (0-1) is penalised most, as the paper asks
  with pytest.raises(ValueError, match=r"class \[1\] has no training sample"):
    losses.inverse_frequency_weights([0, 2, 2], 3)
  with pytest.raises(ValueError, match=r"labels must be integers in \[0, 3\); got \[3\]"):
    losses.inverse_frequency_weights([0, 1, 2, 3], 3)
  with pytest.raises(ValueError, match="integers"):
    losses.inverse_frequency_weights([0.5, 1, 2], 3)


def test_shape_errors():
  with pytest.raises(ValueError, match="'class_weights' must have shape"):
    losses.class_weighted_cross_entropy(jnp.zeros((4, 3)), jnp.zeros((4,), jnp.int32), jnp.ones(4))
  with pytest.raises(ValueError, match="'labels' must have shape"):
    losses.class_weighted_cross_entropy(jnp.zeros((4, 3)), jnp.zeros((5,), jnp.int32), jnp.ones(3))
