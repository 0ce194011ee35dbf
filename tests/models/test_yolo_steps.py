"""YOLOv4 learns: a few Adam steps on one tiny batch lower its loss (batch norm in training mode). The
run through ``python -m acne_jax.train`` is ``test_yolo_train.py``."""

import os
import sys

import jax
import numpy as np
import optax

from acne_jax.models import yolo

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_yolo import drawn_variables, ground_truth, images, tiny_spec  # noqa: E402


def test_a_few_adam_steps_lower_the_loss():
  model = yolo.YOLOv4(tiny_spec(), train=True)
  x, gt = images(), ground_truth()
  variables = drawn_variables(model, x, gt)
  tx = optax.adam(3e-3)

  def step(params, batch_stats, opt_state):
    def loss_fn(p):
      (total, metrics), updates = model.apply({"params": p, "batch_stats": batch_stats}, x, *gt, mutable=["batch_stats"])
      return total, (metrics, updates["batch_stats"])

    (loss, (metrics, new_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), new_stats, opt_state, loss, metrics

  params, batch_stats = variables["params"], variables["batch_stats"]
  opt_state = tx.init(params)
  # Eight steps of a tiny model: XLA's backend optimisations would take most of the test's time.
  step = jax.jit(step).lower(params, batch_stats, opt_state).compile(compiler_options={"xla_backend_optimization_level": 0})
  history = []
  for _ in range(8):
    params, batch_stats, opt_state, loss, metrics = step(params, batch_stats, opt_state)
    history.append(float(loss))
  assert np.isfinite(history).all()
  assert history[-1] < 0.85 * history[0], history
  assert sum(b < a for a, b in zip(history, history[1:])) >= 6, history
  assert float(metrics["num_positives"]) > 0
