"""The grading paper's training step: Adam, learning rate 0.01 then 0.001, class-weighted loss.

"We trained our model for 1000 epochs, a batch size of 12, and the Adam optimizer starting with
learning rate 0.01, decreasing to 0.001 after 800 epochs" (the decay at 80 % of the epochs, here
for any number of epochs). The loss is :func:`acne_jax.ops.losses.class_weighted_cross_entropy`;
the class weights are an argument of the compiled step, so a run without weights (all ones, the
paper's Table 4) uses the same program. Batch norm uses the batch's statistics in training and
updates its running averages; batches should be full (drop the last partial batch in training:
padded rows would enter the statistics). Early stopping on the validation split (the paper's) is
the caller's: :func:`make_eval_fn` gives logits of any batch.

Usage::

  model = Grader(num_classes=3, **CPU)
  schedule = learning_rate_schedule(epochs, steps_per_epoch)
  optimizer = optax.adam(schedule)
  state = create_state(model, jax.random.key(0), views_shape=(BATCH_SIZE, 3, 224, 224, 3), optimizer=optimizer)
  step = make_train_step(model, optimizer)
  state, metrics = step(state, views, labels, class_weights, dropout_key)   # views uint8 [B, V, H, W, 3]
  logits = make_eval_fn(model)(state, views)                                # [B, K]
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Sequence, Tuple

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from acne_jax.ops import losses

BATCH_SIZE = 12
LEARNING_RATE = 0.01
FINAL_LEARNING_RATE = 0.001
DECAY_FRACTION = 0.8
EPOCHS = 1000


def learning_rate_schedule(epochs: int, steps_per_epoch: int, learning_rate: float = LEARNING_RATE,
                           final_learning_rate: float = FINAL_LEARNING_RATE,
                           decay_fraction: float = DECAY_FRACTION) -> optax.Schedule:
  """``learning_rate`` for the first ``round(decay_fraction * epochs)`` epochs, then
  ``final_learning_rate`` (the paper: 0.01 for 800 of 1000 epochs, then 0.001).

  The schedule is indexed by optimiser step: the change happens at step
  ``round(decay_fraction * epochs) * steps_per_epoch``.
  """
  if epochs < 1 or steps_per_epoch < 1:
    raise ValueError(f"learning_rate_schedule: epochs and steps_per_epoch must be >= 1; got {epochs}, {steps_per_epoch}.")
  decay_step = int(round(decay_fraction * epochs)) * steps_per_epoch
  return optax.piecewise_constant_schedule(learning_rate, {decay_step: final_learning_rate / learning_rate})


class GraderState(flax.struct.PyTreeNode):
  """Training state: ``step`` (int32 scalar), ``params``, ``batch_stats``, ``opt_state``."""

  step: jnp.ndarray
  params: Any
  batch_stats: Any
  opt_state: Any

  @property
  def variables(self) -> Dict[str, Any]:
    """``{"params", "batch_stats"}`` for ``model.apply``."""
    return {"params": self.params, "batch_stats": self.batch_stats}


def create_state(model: nn.Module, key: jax.Array, views_shape: Sequence[int], optimizer: optax.GradientTransformation) -> GraderState:
  """Initialises the model for views of ``views_shape`` (``[B, V, H, W, 3]``; ``V`` matters only
  for ``fusion="concat"``) and the optimiser state; the initialisation is compiled once."""
  views = jnp.zeros(tuple(views_shape), jnp.uint8)
  variables = jax.jit(model.init)(key, views)
  params = variables["params"]
  return GraderState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=variables.get("batch_stats", {}),
                     opt_state=optimizer.init(params))


def make_train_step(model: nn.Module, optimizer: optax.GradientTransformation
                    ) -> Callable[[GraderState, jnp.ndarray, jnp.ndarray, jnp.ndarray, jax.Array], Tuple[GraderState, Dict[str, jnp.ndarray]]]:
  """A jit-compiled ``step(state, views, labels, class_weights, key) -> (state, metrics)``.

  Args of ``step``:
    views: ``[B, V, H, W, 3]`` uint8 (augmented by the caller, :mod:`acne_jax.grading.augment`).
    labels: ``[B]`` int grades in ``[0, K)``.
    class_weights: ``[K]`` float (:func:`acne_jax.ops.losses.inverse_frequency_weights`, or ones).
    key: dropout key; the step folds in its step number, so one key may be passed every step.

  ``metrics``: ``loss`` (the batch's weighted loss) and ``accuracy`` (the batch's, in training
  mode, before the update); the learning rate used is ``schedule(state.step)`` of the input state.
  """

  def loss_fn(params, batch_stats, views, labels, class_weights, key):
    logits, updates = model.apply({"params": params, "batch_stats": batch_stats}, views, train=True,
                                  rngs={"dropout": key}, mutable=["batch_stats"])
    loss = losses.class_weighted_cross_entropy(logits, labels, class_weights)
    return loss, (logits, updates["batch_stats"])

  @jax.jit
  def step(state: GraderState, views, labels, class_weights, key):
    labels = labels.astype(jnp.int32)
    key = jax.random.fold_in(key, state.step)
    (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params, state.batch_stats, views, labels, jnp.asarray(class_weights, jnp.float32), key)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {"loss": loss, "accuracy": jnp.mean((jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32))}
    return state.replace(step=state.step + 1, params=params, batch_stats=batch_stats, opt_state=opt_state), metrics

  return step


def make_eval_fn(model: nn.Module) -> Callable[[GraderState, jnp.ndarray], jnp.ndarray]:
  """A jit-compiled ``eval_logits(state, views) -> [B, K]`` float32 logits in evaluation mode
  (running batch-norm averages, no dropout); ``argmax`` over the last axis is the predicted grade.
  ``state`` may also be a ``{"params", "batch_stats"}`` dict (a checkpoint's variables)."""

  @jax.jit
  def eval_logits(state, views):
    variables = state.variables if isinstance(state, GraderState) else state
    return model.apply(variables, views, train=False)

  return eval_logits
