"""One rule for every path a user types: ``~`` expanded, relative paths taken from the current
directory, and the result absolute (orbax and TFDS refuse or misplace relative paths)."""

from __future__ import annotations

import os
from typing import Optional


def resolve(path: str) -> str:
  """``path`` with ``~`` expanded, made absolute against the current directory."""
  return os.path.abspath(os.path.expanduser(os.fspath(path)))


def resolve_optional(path: Optional[str]) -> Optional[str]:
  """:func:`resolve`, passing ``None`` and ``""`` (meaning "the default") through unchanged."""
  return resolve(path) if path else path
