"""The batch-wide parts of a loss under data parallelism: normalisers and per-image sampler keys.

A data-parallel train step runs the model on each device's share of the batch (``jax.shard_map``
over the mesh's ``data`` axis, :mod:`acne_jax.training.parallel`), so RoIAlign, assignment,
sampling, proposals and NMS never leave the device that holds the image, and the only traffic is
the gradient sum. Two things in the losses span the whole batch:

- normalisers (MMDetection's ``avg_factor``: the sampled anchors or RoIs, the valid mask pixels
  of the whole batch): :func:`batch_sum` adds a per-device count over the devices;
- the samplers' per-image keys (``split(key, B)``): :func:`image_keys` gives each device its own
  images' keys of the whole batch's split.

With both, a step on 8 devices computes what it computes on one (up to float summation order).
The axis is set while a step is traced (:func:`over`); outside it (one device, tests, analysis
scripts) both functions are the plain single-device computation.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import jax
import jax.numpy as jnp

_axis: Optional[str] = None


@contextlib.contextmanager
def over(axis_name: str) -> Iterator[None]:
  """Within the block, the batch is sharded over the named ``shard_map`` axis."""
  global _axis
  previous, _axis = _axis, axis_name
  try:
    yield
  finally:
    _axis = previous


def current() -> Optional[str]:
  """The data axis being traced over, or ``None``."""
  return _axis


def batch_sum(x: jnp.ndarray) -> jnp.ndarray:
  """``x`` (a per-device sum) summed over the whole batch."""
  return x if _axis is None else jax.lax.psum(x, _axis)


def image_keys(key: jax.Array, count: int) -> jax.Array:
  """``[count]`` keys for this device's ``count`` images: rows ``i * count ..`` of
  ``split(key, count * devices)`` on device ``i``, so every image draws what it draws on one device."""
  if _axis is None:
    return jax.random.split(key, count)
  devices = jax.lax.axis_size(_axis)
  return jax.lax.dynamic_slice_in_dim(jax.random.split(key, count * devices), jax.lax.axis_index(_axis) * count, count)


def count_before(count: jnp.ndarray) -> jnp.ndarray:
  """The sum of ``count`` (a per-device scalar) over the devices before this one (0 on one device):
  a local row's offset in the whole batch."""
  if _axis is None:
    return jnp.zeros_like(count)
  counts = jax.lax.all_gather(count, _axis)
  return jnp.sum(jnp.where(jnp.arange(counts.shape[0]) < jax.lax.axis_index(_axis), counts, 0))


def is_first_device() -> jnp.ndarray:
  """True on the data axis's first device (always, on one): where a batch-wide term is added once."""
  return jnp.asarray(True) if _axis is None else jax.lax.axis_index(_axis) == 0
