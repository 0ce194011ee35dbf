"""Data parallelism: the device mesh, its shardings, and per-device execution of the model.

The batch is split over every device of a one-axis mesh (``data``) and the parameters are
replicated. The model runs on each device's share of the batch inside ``jax.shard_map``: every
per-image computation (RoIAlign over the pyramid, assignment, sampling, proposals, NMS) stays on
the device that holds the image, and a train step's only cross-device traffic is the sum of the
gradients (and of a few scalars: loss normalisers, see :mod:`acne_jax.ops.data_axis`). Left to
``jit``'s automatic partitioning, the same model all-gathers the whole feature pyramid for
RoIAlign and every score vector for ``top_k``.
"""

from __future__ import annotations

import re
from typing import Callable, List, Tuple

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from acne_jax.ops import data_axis

DATA = "data"


def make_mesh() -> Mesh:
  """Every device of every process on one ``data`` axis."""
  return Mesh(np.asarray(jax.devices()), (DATA,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over the devices."""
  return NamedSharding(mesh, PartitionSpec(DATA))


def per_device(fn: Callable, mesh: Mesh, in_specs, out_specs) -> Callable:
  """``fn`` run on each device's share (``shard_map`` over ``data``), with the batch-wide parts of
  the losses (:mod:`acne_jax.ops.data_axis`) summed over the devices. Specs: ``None`` for an
  argument or result that is the same on every device, ``"batch"`` for one split along its
  leading axis; one spec covers a whole argument's tree, and ``out_specs`` is one spec or a tuple."""
  spec = lambda s: PartitionSpec(DATA) if s == "batch" else PartitionSpec()  # noqa: E731

  def traced(*args):
    with data_axis.over(DATA):
      return fn(*args)

  outs = tuple(spec(s) for s in out_specs) if isinstance(out_specs, tuple) else spec(out_specs)
  # check_vma=False: the model's loops (NMS, sampling) start from constants that shard_map's
  # replication typing would have to be told vary per device; the replicated results here are
  # psums, synchronised batch statistics or unchanged inputs, the same on every device.
  return jax.shard_map(traced, mesh=mesh, in_specs=tuple(spec(s) for s in in_specs), out_specs=outs, check_vma=False)


def sum_over_devices(tree):
  """Each leaf summed over the data axis (inside :func:`per_device`)."""
  return jax.tree_util.tree_map(lambda x: jax.lax.psum(x, DATA), tree)


_COLLECTIVE = re.compile(r"=\s*(.+?)\s+(all-gather|all-reduce|all-to-all|collective-permute|reduce-scatter)(?:-start)?\(")
_ARRAY = re.compile(r"\b(?:pred|[suf]\d+|bf16)\[([\d,]*)\]")


def collectives(hlo_text: str) -> List[Tuple[str, int, str]]:
  """``(kind, elements, HLO line)`` of every cross-device operation in a compiled program's text
  (``jit(f).lower(...).compile().as_text()``); ``elements`` counts every array of the result."""
  found = []
  for line in hlo_text.splitlines():
    match = _COLLECTIVE.search(line)
    if match:
      elements = sum(int(np.prod([int(d) for d in dims.split(",") if d])) for dims in _ARRAY.findall(match.group(1)))
      found.append((match.group(2), elements, line.strip()))
  return found
