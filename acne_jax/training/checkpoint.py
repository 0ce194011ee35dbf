"""Orbax checkpoints of the train state, written atomically and resumed automatically.

Orbax writes each checkpoint into a temporary directory and renames it when complete, so an
interrupted save (``kill -9``, a crash) never leaves a half-written step behind; the newest
complete step is what a restarted run resumes from. Beside the state each step stores a small
JSON ``meta`` record (the data-iterator position and the host-side PRNG state), so resuming
continues the exact sequence of batches and random draws of an uninterrupted run.

Each step holds three orbax items: ``state`` (the whole train state, optimiser included: what
:meth:`Checkpointer.restore` resumes from), ``variables`` (a second copy of its ``params`` and
``batch_stats``, the model's inference variables) and ``meta``. ``evaluate``, ``predict`` and
pretrained-part loading read ``variables`` alone (:meth:`Checkpointer.restore_variables`): they
neither read the optimiser state nor need to know the optimiser to build a template for it.
orbax 0.12 cannot read a part of an item (``StandardRestore`` refuses a partial template and
``PLACEHOLDER`` leaves), hence the separate item; it costs one more copy of the parameters per
step on disk. Steps written before it existed have no ``variables`` and are read whole.

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
from typing import Any, Callable, Dict, Optional, Tuple

import jax
import orbax.checkpoint as ocp
from etils import epath

from acne_jax.paths import resolve


class CheckpointError(RuntimeError):
  """A checkpoint could not be written, or no checkpoint could be read."""


# The train state's entries that inference needs, saved again as the ``variables`` item.
VARIABLE_COLLECTIONS = ("params", "batch_stats")


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
    """Writes ``step`` (``state``, its :data:`VARIABLE_COLLECTIONS` again as the ``variables``
    item, and ``meta``) and waits until it is complete.

    Raises:
      CheckpointError: it could not be written (the message names the newest intact step).
    """
    intact = self.latest_step()
    try:
      variables = {name: state[name] for name in VARIABLE_COLLECTIONS if name in state}
      self._manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                       variables=ocp.args.StandardSave(variables),
                                                       meta=ocp.args.JsonSave(meta)), force=True)
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

    def read(candidate):
      restored = self._manager.restore(candidate, args=arguments)
      return restored["state"], dict(restored["meta"])

    return self._restore_readable(read, step, "resuming from")

  def restore_variables(self, step: Optional[int] = None, template: Any = None,
                        sharding: Optional[jax.sharding.Sharding] = None) -> Tuple[Dict[str, Any], Dict[str, Any], int]:
    """``({"params", "batch_stats"}, meta, step)`` of ``step`` (default: the newest readable one),
    for inference: only the ``variables`` item is read, never the optimiser state, and no
    template of the optimiser is needed. A torn newest step is handled as by :meth:`restore`.

    ``template`` (optional, ``{"params", "batch_stats"}`` of arrays or ``ShapeDtypeStruct``s)
    gives the shapes and dtypes the model expects: a checkpoint of another model then fails as
    in :meth:`restore` (every step unreadable, nothing set aside). Without it the arrays come
    back as saved. They are placed with ``sharding`` (default: on the first device), whatever
    devices the checkpoint was written from.

    A checkpoint written before the ``variables`` item existed (its steps hold ``state`` and
    ``meta`` only) is read whole instead: its full train state, optimiser included, is
    restored with the shapes it was saved with, and its ``params`` and ``batch_stats`` returned.

    Raises:
      FileNotFoundError: there is no checkpoint.
      CheckpointError: ``step`` was given and cannot be read, or none of the checkpoints can be.
    """
    sharding = sharding if sharding is not None else jax.sharding.SingleDeviceSharding(jax.devices()[0])

    def read(candidate):
      folder = epath.Path(self.directory) / str(candidate)
      item = "variables" if (folder / "variables").is_dir() else "state"  # "state" only: an older layout
      metadata = ocp.StandardCheckpointHandler().metadata(folder / item)
      saved = getattr(metadata, "tree", metadata)
      placed = lambda tree: jax.tree_util.tree_map(  # noqa: E731
          lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding), tree)
      abstract = dict(placed(saved))
      if template is not None:  # the model's shapes, so that another model's checkpoint fails here
        abstract.update({name: placed(template[name]) for name in VARIABLE_COLLECTIONS if name in template})
      restored = self._manager.restore(candidate, args=ocp.args.Composite(
          **{item: ocp.args.StandardRestore(abstract)}, meta=ocp.args.JsonRestore()))
      tree = restored[item]
      return {name: tree[name] for name in VARIABLE_COLLECTIONS if name in tree}, dict(restored["meta"])

    return self._restore_readable(read, step, "reading")

  def _restore_readable(self, read: Callable[[int], Tuple[Any, Dict[str, Any]]], step: Optional[int],
                        doing: str) -> Tuple[Any, Dict[str, Any], int]:
    """``(tree, meta, step)`` from ``read(step)``; with no ``step``, from the newest step that
    reads. Newer steps that failed are set aside only once an older one has read."""
    if step is not None:
      try:
        tree, meta = read(step)
      except Exception as error:
        raise CheckpointError(f"checkpoint step {step} in {self.directory} cannot be read ({_reason(error)}).") from error
      return tree, meta, step
    candidates = sorted(self.all_steps(), reverse=True)
    if not candidates:
      raise FileNotFoundError(f"no checkpoint in {self.directory}")
    failures = []  # (step, error) of the newer steps that could not be read
    for candidate in candidates:
      try:
        tree, meta = read(candidate)
      except Exception as error:
        failures.append((candidate, error))
        continue
      # An older step reads with the same template: the newer ones' files are at fault, not the
      # template (a mismatched model fails on every step and sets nothing aside).
      for failed, error in failures:
        aside = self._set_aside(failed)
        print(f"warning: checkpoint step {failed} in {self.directory} cannot be read ({_reason(error)}); moved to "
              f"{aside}; {doing} step {candidate}.", file=sys.stderr, flush=True)
      return tree, meta, candidate
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

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
