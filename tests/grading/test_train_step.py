"""The grading training step: the paper's schedule, the weighted loss, and a loss that falls."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from acne_jax.grading import train_step as T
from acne_jax.models.grader import Grader
from acne_jax.ops import losses


def test_schedule_is_the_papers():
  schedule = T.learning_rate_schedule(1000, 90)  # 1077 visits / 12 per batch
  assert float(schedule(0)) == pytest.approx(0.01) and float(schedule(800 * 90 - 1)) == pytest.approx(0.01)
  assert float(schedule(800 * 90)) == pytest.approx(0.001) and float(schedule(10**6)) == pytest.approx(0.001)
  short = T.learning_rate_schedule(10, 3)
  assert float(short(23)) == pytest.approx(0.01) and float(short(24)) == pytest.approx(0.001)
  assert T.BATCH_SIZE == 12 and T.EPOCHS == 1000
  with pytest.raises(ValueError, match="epochs"):
    T.learning_rate_schedule(0, 3)


def test_loss_falls_on_a_fixed_batch_and_eval_gives_logits():
  rng = np.random.default_rng(0)
  views = jnp.asarray(rng.integers(0, 256, (T.BATCH_SIZE, 3, 16, 16, 3), dtype=np.uint8))
  labels = jnp.asarray(np.array([0, 1, 2, 2, 2, 1, 2, 1, 2, 2, 0, 2]))
  weights = jnp.asarray(losses.inverse_frequency_weights(np.asarray(labels), 3))
  model = Grader(num_classes=3, depth=8, width=4, dropout_rate=0.0)
  optimizer = optax.adam(T.learning_rate_schedule(epochs=10, steps_per_epoch=3))
  # rbg: XLA on CPU compiles threefry initialisers slowly; values do not matter here.
  state = T.create_state(model, jax.random.key(0, impl="rbg"), views.shape, optimizer)
  step = T.make_train_step(model, optimizer)
  key = jax.random.key(1, impl="rbg")
  # The step's loss is the class-weighted cross-entropy of the training-mode logits.
  logits, _ = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))(state.variables, views)
  expected = float(losses.class_weighted_cross_entropy(logits, labels, weights))
  history = []
  for _ in range(30):
    state, metrics = step(state, views, labels, weights, key)
    history.append(float(metrics["loss"]))
  assert history[0] == pytest.approx(expected, rel=1e-5)
  assert int(state.step) == 30 and np.all(np.isfinite(history))
  assert history[-1] < 0.3 * history[0], history
  eval_logits = T.make_eval_fn(model)
  out = eval_logits(state, views)
  assert out.shape == (T.BATCH_SIZE, 3) and out.dtype == jnp.float32
  np.testing.assert_allclose(eval_logits(state.variables, views), out, rtol=1e-6)
  # Unweighted (ones) runs through the same compiled step.
  _, unweighted = step(state, views, labels, jnp.ones(3), key)
  assert np.isfinite(float(unweighted["loss"])) and step._cache_size() == 1
