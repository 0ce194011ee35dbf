"""Orbax checkpoints of the train state, written atomically and resumed automatically.

Orbax writes each checkpoint into a temporary directory and renames it when complete, so an
interrupted save never leaves a half-written step behind; the newest complete step is what a
restarted run resumes from. Beside the state each step stores a small JSON ``meta`` record
(the data-iterator position and the host-side PRNG state), so resuming continues the exact
sequence of batches and random draws of an uninterrupted run.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import jax
import orbax.checkpoint as ocp

from acne_jax.paths import resolve


class Checkpointer:
  """Saves and restores ``(state pytree, meta dict)`` under ``<workdir>/checkpoints``."""

  def __init__(self, directory: str, max_to_keep: int = 3):
    self.directory = resolve(directory)  # orbax refuses relative paths
    self._manager = ocp.CheckpointManager(
        self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
    )

  def latest_step(self) -> Optional[int]:
    return self._manager.latest_step()

  def all_steps(self):
    return list(self._manager.all_steps())

  def save(self, step: int, state: Any, meta: Dict[str, Any]) -> None:
    self._manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)

  def restore(self, state_template: Any, step: Optional[int] = None) -> Tuple[Any, Dict[str, Any], int]:
    """Restores ``step`` (default: the latest) into arrays shaped and sharded like ``state_template``."""
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError("no checkpoint to restore")
    abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, state_template)
    restored = self._manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
    return restored["state"], dict(restored["meta"]), step

  def restore_as_saved(self, step: Optional[int] = None) -> Tuple[Any, int]:
    """Restores ``step`` (default: the latest) with the shapes it was saved with, no template
    needed: for reading parts of another run's state (e.g. its backbone)."""
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {self.directory}")
    restored = self._manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
    return restored["state"], step

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
