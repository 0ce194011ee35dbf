"""Metric writers: JSON lines (one object per logging step) and TensorBoard event files.

TensorBoard files are written with the ``tensorboard`` package's own event writer, which needs
no TensorFlow.
"""

from __future__ import annotations

import json
import os
import time
from typing import Mapping

from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter


class MetricWriter:
  """Writes scalars to ``<workdir>/metrics.jsonl`` and ``<workdir>/tensorboard/``."""

  def __init__(self, workdir: str, enabled: bool = True):
    """``enabled=False``: writes nothing (the processes of a multi-process run but the first)."""
    self._enabled = enabled
    if enabled:
      path = os.path.join(workdir, "metrics.jsonl")
      _drop_torn_last_line(path)
      self._jsonl = open(path, "a", encoding="utf-8")
      self._events = EventFileWriter(os.path.join(workdir, "tensorboard"))

  def write(self, step: int, scalars: Mapping[str, float]) -> None:
    if not self._enabled:
      return
    scalars = {k: float(v) for k, v in scalars.items()}
    self._jsonl.write(json.dumps({"step": int(step), "time": time.time(), **scalars}) + "\n")
    self._jsonl.flush()
    summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=k, simple_value=v) for k, v in scalars.items()])
    self._events.add_event(event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary))
    self._events.flush()

  def close(self) -> None:
    if not self._enabled:
      return
    self._jsonl.close()
    self._events.close()


def _drop_torn_last_line(path: str) -> None:
  """Cuts a last line left without its newline by a process killed mid-write, so that the
  resumed run's lines do not run into it (every complete line stays)."""
  if not os.path.exists(path):
    return
  with open(path, "rb+") as f:
    data = f.read()
    if data and not data.endswith(b"\n"):
      f.truncate(data.rfind(b"\n") + 1)
