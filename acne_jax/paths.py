"""One rule for every path a user types: ``~`` expanded, relative paths taken from the current
directory, and the result absolute (orbax and TFDS refuse or misplace relative paths)."""

from __future__ import annotations

import os


def resolve(path: str) -> str:
  """``path`` with ``~`` expanded, made absolute against the current directory."""
  return os.path.abspath(os.path.expanduser(os.fspath(path)))

