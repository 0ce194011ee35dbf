"""Fixed-count random sampling: exact counts, membership, uniqueness and uniformity."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from acne_jax.ops import sample as sample_ops

_sample = jax.jit(sample_ops.random_sample, static_argnames=("num", "positive_fraction"))


@pytest.mark.parametrize("num_pos,num_neg", [(0, 0), (0, 500), (3, 500), (200, 500), (200, 10), (1000, 0)])
def test_counts_membership_and_uniqueness(num_pos, num_neg):
  n = 2000
  rng = np.random.default_rng(num_pos * 7 + num_neg)
  labels = np.zeros(n, int)  # 1 positive, -1 negative, 0 ignored
  order = rng.permutation(n)
  labels[order[:num_pos]] = 1
  labels[order[num_pos:num_pos + num_neg]] = -1
  for seed in range(3):
    s = _sample(jax.random.key(seed), jnp.asarray(labels == 1), jnp.asarray(labels == -1), num=256, positive_fraction=0.5)
    idx, valid, pos = map(np.asarray, (s.indices, s.valid, s.positive))
    expected_pos = min(num_pos, 128)  # MMDetection: int(256 * 0.5) positives at most
    expected_neg = min(num_neg, 256 - expected_pos)  # negatives fill the rest
    assert pos.sum() == expected_pos and valid.sum() == expected_pos + expected_neg
    assert np.all(valid[pos]) and np.all(labels[idx[pos]] == 1)
    assert np.all(labels[idx[valid & ~pos]] == -1)
    assert len(np.unique(idx[valid])) == valid.sum()
    assert np.all(np.flatnonzero(valid) == np.arange(valid.sum()))  # padding only at the tail


def test_draws_are_uniform_over_candidates():
  n, draws = 40, 3000
  positive = jnp.arange(n) < 20  # 20 positives, at most 4 drawn each time
  negative = ~positive
  counts = np.zeros(n)
  keys = jax.random.split(jax.random.key(1), draws)
  batch = jax.vmap(lambda k: sample_ops.random_sample(k, positive, negative, num=8, positive_fraction=0.5))(keys)
  for idx, valid in zip(np.asarray(batch.indices), np.asarray(batch.valid)):
    counts[idx[valid]] += 1
  # Each positive is drawn with probability 4/20 and each negative 4/20: 600 expected, sd ~ 22.
  np.testing.assert_allclose(counts, 600, atol=5 * 22)
  # Different keys give different draws.
  assert len({tuple(i) for i in np.asarray(batch.indices)[:50]}) > 40


def test_shape_errors():
  with pytest.raises(ValueError, match="'negative' must have shape"):
    sample_ops.random_sample(jax.random.key(0), jnp.zeros(5, bool), jnp.zeros(6, bool), num=4, positive_fraction=0.5)
