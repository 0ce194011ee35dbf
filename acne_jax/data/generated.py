"""Folders the embedded generators write (the synthetic graded faces, the synthetic CT release):
is the folder already the one asked for?"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping


def holds(folder: str, manifest: str, wanted: Mapping[str, Any], what: str) -> bool:
  """Whether ``folder`` exists and its ``manifest`` JSON has every ``wanted`` value: ``False`` when
  there is no folder (the caller writes it), ``True`` when it is the very set.

  Raises:
    ValueError: the folder exists with something else in it (no readable manifest, or other values,
      each named), rather than being written over; ``what`` names the set in the message.
  """
  if not os.path.exists(folder):
    return False
  path = os.path.join(folder, manifest)
  try:
    with open(path, encoding="utf-8") as f:
      found = json.load(f)
  except (OSError, ValueError) as error:
    raise ValueError(f"{folder} exists but is no {what} ({path}: {error}); remove it or pick another folder.") from None
  differ = {k: (found.get(k), v) for k, v in wanted.items() if found.get(k) != v}
  if differ:
    raise ValueError(f"{folder} holds another {what} ({', '.join(f'{k} {a} != {b}' for k, (a, b) in differ.items())}); "
                     "remove it or pick another folder.")
  return True
