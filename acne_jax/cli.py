"""Command-line parsing shared by the commands (``train``, ``evaluate``, ``predict``, ``grade``,
``convert`` and the scripts that take configs).

Each command defines its flags on its own ``absl.flags.FlagValues`` (so that calling ``main(argv)``
in-process, as the tests do, never touches the global flags) and parses with :func:`parse`.
``ml_collections.config_flags`` reads ``--config.a.b=value`` overrides from ``sys.argv`` whatever
argv is parsed, so :func:`parse` puts ``argv`` there while parsing; a bad override is reported with
the key it names and the closest real keys (:func:`unknown_override`).
"""

from __future__ import annotations

import difflib
import importlib.util
import sys
from typing import List, Optional, Sequence

import ml_collections


def _load_config(config_arg: str):
  path, _, arg = config_arg.partition(":")
  module_spec = importlib.util.spec_from_file_location("_acne_jax_config", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


def unknown_override(argv: Sequence[str], config_names: Sequence[str] = ("config",)) -> Optional[str]:
  """For a ``--<config name>.a.b=v`` naming no config field: which key, and the closest real ones;
  ``None`` when every override names a field (or a config file cannot be loaded: its own error
  then speaks)."""
  for name in config_names:
    config_arg = next((a.split("=", 1)[1] for a in argv if a.startswith(f"--{name}=")), None)
    if config_arg is None:
      continue
    try:
      config = _load_config(config_arg)
    except Exception:  # pylint: disable=broad-except
      continue
    for override in argv:
      if not override.startswith(f"--{name}."):
        continue
      keys = override[len(f"--{name}."):].split("=", 1)[0].split(".")
      node = config
      for depth, key in enumerate(keys):
        if not isinstance(node, ml_collections.ConfigDict) or key not in node:
          siblings = list(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
          close = difflib.get_close_matches(key, siblings, n=3)
          prefix = ".".join(keys[:depth])
          hint = f"; did you mean {', '.join(repr('.'.join(filter(None, [prefix, c]))) for c in close)}?" if close else ""
          return f"unknown config key '{'.'.join(keys)}' in {override}{hint}"
        node = node[key]
  return None


def parse(flag_values, argv: Sequence[str], config_names: Sequence[str] = ("config",)) -> Optional[List[str]]:
  """Parses ``argv`` (program name first) into ``flag_values``, config overrides included.

  Returns:
    The positional arguments after the program name, or ``None`` when the command line is bad
    (the reason is printed to stderr as ``error: bad command line or config override: ...``;
    the caller exits with status 2).
  """
  from absl import flags

  argv = list(argv)
  saved_argv, sys.argv = sys.argv, argv
  try:
    return list(flag_values(argv)[1:])
  except (flags.Error, AttributeError, KeyError, ValueError, TypeError) as e:
    reason = unknown_override(argv, config_names) or str(e.args[0] if e.args else e).replace("\\n", " ").replace("\n", " ").strip("'\" ")
    print(f"error: bad command line or config override: {reason}", file=sys.stderr)
    return None
  finally:
    sys.argv = saved_argv
