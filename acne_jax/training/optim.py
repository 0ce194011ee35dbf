"""Optimiser and learning-rate schedule from the ``optimizer`` config section.

``optimizer.name="sgd"`` (default): SGD with momentum and weight decay exactly as PyTorch (and so
MMDetection) apply it: ``g += wd * p``; ``buf = momentum * buf + g``; ``p -= lr * buf``.
``"adam"``: ``torch.optim.Adam`` (the DeepLesion benchmark's optimiser): the same coupled weight
decay ``g += wd * p``, then Adam with ``betas`` and ``eps`` (PyTorch's defaults 0.9, 0.999, 1e-8). The schedule is a linear
warm-up from ``warmup_ratio * lr`` over ``warmup_steps``, then a step decay by ``decay_factor``
at each of ``decay_steps`` (MMDetection's ``step`` policy).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import optax


OPTIMIZERS = ("sgd", "adam")
ADAM_BETAS = (0.9, 0.999)  # torch.optim.Adam's defaults
ADAM_EPS = 1e-8


def lr_schedule(base_lr: float, warmup_steps: int, warmup_ratio: float, decay_steps: Sequence[int], decay_factor: float) -> optax.Schedule:
  """``step -> learning rate`` (see the module docstring)."""
  boundaries = sorted(int(s) for s in decay_steps)

  def schedule(step):
    step = jnp.asarray(step, jnp.float32)
    decays = sum(jnp.where(step >= b, 1.0, 0.0) for b in boundaries) if boundaries else 0.0
    lr = base_lr * decay_factor ** decays
    if warmup_steps > 0:
      fraction = jnp.minimum(step / warmup_steps, 1.0)
      lr = lr * (warmup_ratio + (1.0 - warmup_ratio) * fraction)
    return lr

  return schedule


def trainable_mask(params: Any, frozen: Callable[[str], bool]) -> Any:
  """A pytree of bools over ``params``: False where ``frozen('/'.join(path))``."""
  return jax.tree_util.tree_map_with_path(
      lambda path, _: not frozen("/".join(str(getattr(k, "key", k)) for k in path)), params
  )


def frozen_backbone_predicate(frozen_stages: int) -> Callable[[str], bool]:
  """Parameters of the stem (``frozen_stages >= 0``) and stages ``1..frozen_stages`` are frozen."""

  def frozen(path: str) -> bool:
    if frozen_stages < 0 or not path.startswith("backbone/"):
      return False
    name = path.split("/")[1]
    if name.startswith("stem_"):
      return True
    if name.startswith("layer"):
      return int(name[len("layer"):].split("_")[0]) <= frozen_stages
    return False

  return frozen


def make_optimizer(config: Mapping[str, Any], params: Any, frozen: Callable[[str], bool] | None = None):
  """Returns ``(optax transformation, schedule)`` for the ``optimizer`` config section.

  Keys: ``name`` (``"sgd"`` or ``"adam"``; absent: sgd), ``lr``, ``momentum`` (sgd),
  ``betas``, ``eps`` (adam; absent: PyTorch's defaults), ``weight_decay``, ``warmup_steps``,
  ``warmup_ratio``, ``decay_steps`` (list of step numbers), ``decay_factor``, ``grad_clip_norm``
  (0 = off). Frozen parameters get neither updates nor weight decay.
  """
  name = config.get("name", "sgd")
  if name not in OPTIMIZERS:
    raise ValueError(f"optimizer.name={name!r}: use one of {', '.join(OPTIMIZERS)}.")
  schedule = lr_schedule(config["lr"], config["warmup_steps"], config["warmup_ratio"], config["decay_steps"], config["decay_factor"])
  parts = []
  if config["grad_clip_norm"]:
    parts.append(optax.clip_by_global_norm(config["grad_clip_norm"]))
  parts.append(optax.add_decayed_weights(config["weight_decay"]))
  if name == "adam":
    b1, b2 = config.get("betas", ADAM_BETAS)
    parts.append(optax.adam(schedule, b1=float(b1), b2=float(b2), eps=float(config.get("eps", ADAM_EPS))))
  else:
    parts.append(optax.sgd(schedule, momentum=config["momentum"] or None))
  tx = optax.chain(*parts)
  if frozen is not None:
    mask = trainable_mask(params, frozen)
    tx = optax.multi_transform({True: tx, False: optax.set_to_zero()}, mask)
  return tx, schedule
