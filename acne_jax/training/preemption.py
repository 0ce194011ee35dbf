"""Stopping a training run on SIGTERM / SIGINT with a checkpoint of where it stands.

A cluster that preempts a job sends SIGTERM (SLURM: to every task) and kills it a grace period
later; Ctrl-C sends SIGINT. While :class:`StopOnSignal` is active, either signal only sets
:attr:`StopOnSignal.requested`; the training loop sees it at the next step, checkpoints the
state it holds (after the usual check that the next step's loss is finite) and raises
:class:`Preempted`, which ``python -m acne_jax.train`` turns into exit status 0 and the command
that resumes. A second SIGINT while a stop is pending interrupts at once (``KeyboardInterrupt``).
"""

from __future__ import annotations

import signal
import threading
from typing import Optional

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Preempted(Exception):
  """Training stopped on a signal after checkpointing step :attr:`step` in :attr:`checkpoint_dir`."""

  def __init__(self, signal_name: str, step: int, checkpoint_dir: str):
    super().__init__(f"{signal_name} received: stopped after checkpointing step {step} in {checkpoint_dir}")
    self.signal_name, self.step, self.checkpoint_dir = signal_name, step, checkpoint_dir


class StopOnSignal:
  """Context manager: SIGTERM / SIGINT request a stop instead of killing the process.

  Outside the main thread (where Python cannot install handlers) it does nothing.
  """

  def __init__(self):
    self.requested: Optional[str] = None
    self._previous = {}

  def _handle(self, signum, frame):
    if self.requested is not None and signum == signal.SIGINT:
      raise KeyboardInterrupt
    self.requested = signal.Signals(signum).name

  def __enter__(self) -> "StopOnSignal":
    if threading.current_thread() is threading.main_thread():
      for signum in _SIGNALS:
        self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def __exit__(self, *exc) -> None:
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)
    self._previous = {}
