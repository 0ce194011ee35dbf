"""Losses against PyTorch's functional losses and float64 NumPy formulas."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from acne_jax.ops import losses


def _t(x):
  return torch.as_tensor(np.asarray(x, np.float64))


@pytest.mark.parametrize("seed", range(5))
def test_bce_ce_l1_smooth_l1_match_torch(seed):
  rng = np.random.default_rng(seed)
  logits = rng.normal(0, 4, size=(64,)).astype(np.float32)
  targets = (rng.uniform(size=64) > 0.5).astype(np.float32)
  weights = (rng.uniform(size=64) > 0.3).astype(np.float32)
  got = losses.sigmoid_binary_cross_entropy(jnp.asarray(logits), jnp.asarray(targets), jnp.asarray(weights), avg_factor=37.0)
  ref = (F.binary_cross_entropy_with_logits(_t(logits), _t(targets), reduction="none") * _t(weights)).sum() / 37.0
  np.testing.assert_allclose(float(got), float(ref), rtol=1e-6)

  class_logits = rng.normal(0, 3, size=(32, 11)).astype(np.float32)
  labels = rng.integers(0, 11, size=32)
  got = losses.softmax_cross_entropy(jnp.asarray(class_logits), jnp.asarray(labels))
  np.testing.assert_allclose(float(got), float(F.cross_entropy(_t(class_logits), torch.as_tensor(labels))), rtol=1e-6)

  pred = rng.normal(0, 1, size=(20, 4)).astype(np.float32)
  tgt = rng.normal(0, 1, size=(20, 4)).astype(np.float32)
  np.testing.assert_allclose(float(losses.l1_loss(jnp.asarray(pred), jnp.asarray(tgt), reduction="sum")), float(F.l1_loss(_t(pred), _t(tgt), reduction="sum")), rtol=1e-6)
  for beta in (0.0, 1.0 / 9.0, 1.0):
    got = losses.smooth_l1_loss(jnp.asarray(pred), jnp.asarray(tgt), beta=beta)
    np.testing.assert_allclose(float(got), float(F.smooth_l1_loss(_t(pred), _t(tgt), beta=beta)), rtol=1e-6)


def test_reductions_and_errors():
  x = jnp.array([1.0, -2.0, 3.0])
  y = jnp.zeros(3)
  np.testing.assert_allclose(losses.l1_loss(x, y, reduction="none"), [1, 2, 3])
  np.testing.assert_allclose(losses.l1_loss(x, y, weights=jnp.array([1.0, 0.0, 1.0]), reduction="mean"), 4 / 3)
  np.testing.assert_allclose(losses.l1_loss(x, y, weights=jnp.array([1.0, 0.0, 1.0]), avg_factor=2.0), 2.0)
  with pytest.raises(ValueError, match="reduction"):
    losses.l1_loss(x, y, reduction="avg")
  with pytest.raises(ValueError, match="'targets' must have the shape"):
    losses.l1_loss(x, jnp.zeros(4))
  with pytest.raises(ValueError, match="'labels' must have shape"):
    losses.softmax_cross_entropy(jnp.zeros((3, 4)), jnp.zeros((2,), jnp.int32))


def sbce_reference(p, y):
  return -np.log(1.0 - np.abs(np.asarray(y, np.float64) - np.asarray(p, np.float64)))


@pytest.mark.parametrize("seed", range(5))
def test_sbce_matches_paper_formula(seed):
  rng = np.random.default_rng(seed)
  logits = rng.normal(0, 3, size=500)
  targets = rng.uniform(size=500)
  targets[:20] = 1.0  # identical boxes
  targets[20:40] = 0.0
  probs = 1 / (1 + np.exp(-logits))
  ref = sbce_reference(probs, targets)
  got_p = losses.soft_binary_cross_entropy(jnp.asarray(probs, jnp.float32), jnp.asarray(targets, jnp.float32), reduction="none")
  got_x = losses.soft_binary_cross_entropy_with_logits(jnp.asarray(logits, jnp.float32), jnp.asarray(targets, jnp.float32), reduction="none")
  np.testing.assert_allclose(np.asarray(got_x), ref, rtol=2e-5, atol=2e-6)
  np.testing.assert_allclose(np.asarray(got_p), ref, rtol=1e-3, atol=1e-5)  # probability form loses digits near p=1
  # Hard targets: SBCE is BCE.
  hard = (targets > 0.5).astype(np.float32)
  bce = losses.sigmoid_binary_cross_entropy(jnp.asarray(logits, jnp.float32), jnp.asarray(hard), reduction="none")
  sbce = losses.soft_binary_cross_entropy_with_logits(jnp.asarray(logits, jnp.float32), jnp.asarray(hard), reduction="none")
  np.testing.assert_allclose(np.asarray(sbce), np.asarray(bce), rtol=1e-5, atol=1e-6)


def test_sbce_with_logits_is_finite_where_probability_form_overflows():
  logits = jnp.array([-120.0, -30.0, 30.0, 120.0])
  targets = jnp.array([1.0, 1.0, 0.0, 0.0])
  value = losses.soft_binary_cross_entropy_with_logits(logits, targets, reduction="none")
  # -log(1 - |y - p|) = -log(sigmoid(x)) for y = 1 = softplus(-x) ~ |x| for large |x|.
  np.testing.assert_allclose(value, [120.0, 30.0, 30.0, 120.0], rtol=1e-6)
  assert np.isinf(float(losses.soft_binary_cross_entropy(jax.nn.sigmoid(logits[:1]), targets[:1])))
  grads = jax.grad(lambda x, y: losses.soft_binary_cross_entropy_with_logits(x, y, reduction="sum"), argnums=(0, 1))(logits, targets)
  assert all(np.all(np.isfinite(np.asarray(g))) for g in grads)
  # At y = 1 the target gradient is d/dy -log(1 - y + p) = 1 / p, and d/dx = -(1 - p).
  x = jnp.array([0.3, -2.0])
  gx, gy = jax.grad(lambda x, y: losses.soft_binary_cross_entropy_with_logits(x, y, reduction="sum"), argnums=(0, 1))(x, jnp.ones(2))
  p = 1 / (1 + np.exp(-np.asarray(x, np.float64)))
  np.testing.assert_allclose(np.asarray(gy), 1 / p, rtol=1e-5)
  np.testing.assert_allclose(np.asarray(gx), -(1 - p), rtol=1e-5)


def test_sbce_gradients_match_float64_finite_differences():
  rng = np.random.default_rng(3)
  logits = rng.normal(0, 2, size=8)
  targets = rng.uniform(0.05, 0.95, size=8)
  fn = lambda x, y: sbce_reference(1 / (1 + np.exp(-x)), y).sum()
  gx, gy = jax.grad(lambda x, y: losses.soft_binary_cross_entropy_with_logits(x, y, reduction="sum"), argnums=(0, 1))(
      jnp.asarray(logits, jnp.float32), jnp.asarray(targets, jnp.float32))
  h = 1e-6
  for k in range(8):
    e = np.zeros(8)
    e[k] = h
    np.testing.assert_allclose(float(gx[k]), (fn(logits + e, targets) - fn(logits - e, targets)) / (2 * h), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(float(gy[k]), (fn(logits, targets + e) - fn(logits, targets - e)) / (2 * h), rtol=1e-4, atol=1e-5)
