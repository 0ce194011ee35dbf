"""The repository's ``scripts/*.py`` as modules, for the tests."""

import importlib
import pathlib
import sys

SCRIPTS = pathlib.Path(__file__).resolve().parents[2] / "scripts"


def import_script(name: str):
  """``scripts/<name>.py`` imported by name, with ``scripts/`` on ``sys.path`` (so that worker
  processes a script spawns can import it too)."""
  if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))
  return importlib.import_module(name)
