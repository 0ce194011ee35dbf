"""Orbax checkpoints of the train state, written atomically and resumed automatically.

Orbax writes each checkpoint into a temporary directory and renames it when complete, so an
interrupted save (``kill -9``, a crash) never leaves a half-written step behind; the newest
complete step is what a restarted run resumes from. Beside the state each step stores a small
JSON ``meta`` record (the data-iterator position and the host-side PRNG state), so resuming
continues the exact sequence of batches and random draws of an uninterrupted run.

What can still go wrong is named, and the previous checkpoint stays usable:

- a save that fails (full disk, unwritable directory) raises :class:`CheckpointError` naming
  the step, the directory, the cause and the newest intact checkpoint; each save is waited for,
  so a failure surfaces at the step that caused it;
- a complete-looking newest step that cannot be read (files lost or damaged after the rename:
  a copied or synced workdir, a failing disk) is reported by name, moved aside to
  ``<step>.unreadable`` and the previous step is restored instead.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Dict, Optional, Tuple

import jax
import orbax.checkpoint as ocp

from acne_jax.paths import resolve


class CheckpointError(RuntimeError):
  """A checkpoint could not be written, or no checkpoint could be read."""


def _reason(error: BaseException) -> str:
  text = " ".join(str(error).split())
  return f"{type(error).__name__}: {text[:300]}"


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
    """Writes ``step`` and waits until it is complete.

    Raises:
      CheckpointError: it could not be written (the message names the newest intact step).
    """
    intact = self.latest_step()
    try:
      self._manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
                         force=True)
      self._manager.wait_until_finished()
    except Exception as error:  # orbax raises OSError, ValueError or its own errors, also from its writer thread
      kept = f"the newest intact checkpoint is step {intact}" if intact is not None else "no checkpoint had been written yet"
      raise CheckpointError(
          f"could not write checkpoint step {step} to {self.directory} ({_reason(error)}); {kept}. Free disk space or "
          f"make the directory writable (or give another --workdir), then run the same command again: it resumes from "
          f"the newest intact checkpoint.") from error

  def restore(self, state_template: Any, step: Optional[int] = None) -> Tuple[Any, Dict[str, Any], int]:
    """Restores ``step`` (default: the newest readable one) into arrays shaped and sharded like
    ``state_template``. An unreadable newest step is reported, moved aside to ``<step>.unreadable``
    and the one before it restored; only once an older step has restored, so that a template that
    fits no step (another model) sets nothing aside.

    Raises:
      FileNotFoundError: there is no checkpoint.
      CheckpointError: ``step`` was given and cannot be read, or none of the checkpoints can be.
    """
    abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, state_template)
    arguments = ocp.args.Composite(state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore())
    if step is not None:
      try:
        restored = self._manager.restore(step, args=arguments)
      except Exception as error:
        raise CheckpointError(f"checkpoint step {step} in {self.directory} cannot be read ({_reason(error)}).") from error
      return restored["state"], dict(restored["meta"]), step
    candidates = sorted(self.all_steps(), reverse=True)
    if not candidates:
      raise FileNotFoundError(f"no checkpoint in {self.directory}")
    failures = []  # (step, error) of the newer steps that could not be read
    for candidate in candidates:
      try:
        restored = self._manager.restore(candidate, args=arguments)
      except Exception as error:
        failures.append((candidate, error))
        continue
      # An older step reads with the same template: the newer ones' files are at fault, not the
      # template (a mismatched model fails on every step and sets nothing aside).
      for failed, error in failures:
        aside = self._set_aside(failed)
        print(f"warning: checkpoint step {failed} in {self.directory} cannot be read ({_reason(error)}); moved to "
              f"{aside}; resuming from step {candidate}.", file=sys.stderr, flush=True)
      return restored["state"], dict(restored["meta"]), candidate
    step, error = failures[0]
    raise CheckpointError(f"no checkpoint in {self.directory} can be read (steps {candidates}; the newest, step {step}: "
                          f"{_reason(error)}). If the model or its config changed since they were written, use another "
                          f"--workdir; if the files are damaged, delete the directory to start again.") from error

  def _set_aside(self, step: int) -> str:
    """Renames step ``step``'s directory to ``<step>.unreadable`` (orbax no longer lists it)."""
    source = os.path.join(self.directory, str(step))
    target = source + ".unreadable"
    suffix = 1
    while os.path.exists(target):
      suffix += 1
      target = f"{source}.unreadable{suffix}"
    os.rename(source, target)
    self._manager.reload()
    return target

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
