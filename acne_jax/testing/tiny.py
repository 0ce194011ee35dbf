"""A tiny model for tests and smoke runs: the same detector, a few thousand parameters wide.

``TINY_MODEL`` maps ``model`` config keys (dotted, below ``model.``) to values; :func:`apply`
sets them on a config, :func:`flags` spells them as command-line overrides. One table serves
every test that trains or restores a model, so the tests agree on what "tiny" is.
"""

from __future__ import annotations

from typing import Dict, List, Mapping

import ml_collections

TINY_MODEL: Dict[str, object] = {
    "backbone.depth": 18, "backbone.width": 8, "backbone.deformable_stages": (False, False, False, False),
    "backbone.pretrained": "",
    "neck.channels": 16,
    "rpn.gn_groups": 8, "rpn.train_nms_pre": 200, "rpn.train_max_proposals": 64, "rpn.test_nms_pre": 200,
    "rpn.test_max_proposals": 64,
    "roi_head.box.fc_dim": 32, "roi_head.box.num_samples": 32, "roi_head.box.pre_nms_top_k": 256,
    "roi_head.mask.channels": 16, "roi_head.mask.num_convs": 2,
    "roi_head.cpm.point_channels": 4, "roi_head.cpm.gn_groups": 18, "roi_head.cpm.num_convs": 2,
    "roi_head.cpm.ism_fc_dim": 32, "roi_head.cpm.rsm_num_samples": 32, "roi_head.cpm.max_grid_rois": 8,
}


def apply(config: ml_collections.ConfigDict, overrides: Mapping[str, object] = TINY_MODEL) -> ml_collections.ConfigDict:
  """Sets ``config.model.<key> = value`` for every override (the config is unlocked for it)."""
  return override(config, {f"model.{key}": value for key, value in overrides.items()}, caller="tiny.apply")


def override(config: ml_collections.ConfigDict, overrides: Mapping[str, object], caller: str = "override") -> ml_collections.ConfigDict:
  """Sets ``config.<dotted key> = value`` for every override; a key the config lacks raises
  ``KeyError`` naming it (a typo must not silently add a key nothing reads)."""
  with config.unlocked():
    for key, value in overrides.items():
      *parents, leaf = key.split(".")
      node = config
      for name in parents:
        node = node[name]
      if leaf not in node:
        raise KeyError(f"{caller}: {key} is not a config key")
      node[leaf] = value
  return config


def flags(overrides: Mapping[str, object] = TINY_MODEL) -> List[str]:
  """``["--config.model.backbone.depth=18", ...]``."""
  return [f"--config.model.{key}={_flag_value(value)}" for key, value in overrides.items()]


def _flag_value(value: object) -> str:
  """A value as one shell word: tuples without spaces, strings bare (empty stays empty)."""
  if isinstance(value, tuple):
    return "(" + ",".join(str(v) for v in value) + ("," if len(value) == 1 else "") + ")"
  return str(value)


def draw_parameters(tree, rng, spread: float = 0.0):
  """Values for a parameter (or batch-statistics) tree of ``jax.ShapeDtypeStruct`` leaves, drawn
  with NumPy by shape, so a test gets a model without running (or compiling) its initialiser:
  kernels ``N(0, 1 / fan_in)``; ``scale`` and ``var`` leaves ``1``, other leaves (biases,
  means) ``0``, each plus ``spread * N(0, 1)`` when ``spread > 0``."""
  import jax
  import jax.numpy as jnp
  import numpy as np

  def draw(path, leaf):
    name = getattr(path[-1], "key", "")
    if name == "kernel":
      return jnp.asarray(rng.normal(size=leaf.shape) / np.sqrt(np.prod(leaf.shape[:-1])), leaf.dtype)
    base = 1.0 if name in ("scale", "var") else 0.0
    noise = spread * rng.normal(size=leaf.shape) if spread > 0 else 0.0
    return jnp.asarray(base + noise, leaf.dtype) * jnp.ones(leaf.shape, leaf.dtype)

  return jax.tree_util.tree_map_with_path(draw, tree)


def save_drawn_checkpoint(config: ml_collections.ConfigDict, workdir: str, seed: int = 0) -> None:
  """A step-0 checkpoint in ``workdir/checkpoints`` of ``config``'s model with parameters from
  :func:`draw_parameters` (the state's structure from ``train.create_state``, as
  ``evaluate.restore`` builds its template), so a test can run ``evaluate`` or ``predict``
  without compiling an initialiser or a training step."""
  import os

  import jax
  import numpy as np
  import optax

  from acne_jax import train
  from acne_jax.models import factory
  from acne_jax.training import optim
  from acne_jax.training.checkpoint import Checkpointer

  model = factory.build(config.model, train=True)
  size = config.data.image_size
  abstract = jax.eval_shape(lambda k: train.create_state(model, optax.identity(), k, size, config.data.max_boxes, 1),
                            jax.random.key(0))
  rng = np.random.default_rng(seed)
  params = draw_parameters(abstract["params"], rng)
  tx, _ = optim.make_optimizer(train.optimizer_config(config, per_epoch=1), abstract["params"], None)
  batch_stats = draw_parameters(abstract["batch_stats"], rng)
  state = {"step": np.zeros((), np.int32), "params": params, "batch_stats": batch_stats, "opt_state": tx.init(params)}
  checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"))
  checkpointer.save(0, state, {"step": 0})
  checkpointer.close()
