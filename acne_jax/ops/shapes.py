"""Trace-time shape checks shared by every op.

Ops in ``acne_jax.ops`` take arrays whose shapes are written in their docstrings as
``[N, 4]``, ``[..., 4]`` or ``[B, H, W, C]``. :func:`check_shape` checks an argument
against the same notation while the function is being traced, so a wrong rank or size
fails with a ``ValueError`` naming the function, the argument and the expected shape,
instead of an XLA broadcasting error three calls deeper.

Shapes are static under ``jax.jit``, so these checks cost nothing at run time.
"""

from __future__ import annotations

from typing import Any, Dict, Optional


def _parse_spec(spec: str) -> list[str]:
  inner = spec.strip()
  if not (inner.startswith("[") and inner.endswith("]")):
    raise ValueError(f"shape spec must look like '[N, 4]', got {spec!r}")
  inner = inner[1:-1].strip()
  return [tok.strip() for tok in inner.split(",")] if inner else []


def check_shape(
    fn: str,
    arg: str,
    x: Any,
    spec: str,
    dims: Optional[Dict[str, int]] = None,
) -> Dict[str, int]:
  """Checks ``x.shape`` against ``spec`` and returns the named sizes it binds.

  Args:
    fn: name of the calling op, for the message (``"box_iou"``).
    arg: name of the argument being checked (``"boxes1"``).
    x: anything with a ``.shape`` (jax or numpy array, tracer).
    spec: expected shape, e.g. ``"[N, 4]"``, ``"[..., 4]"``, ``"[B, H, W, C]"``. Integer
      tokens must match exactly; a name matches any size but must be the same size
      everywhere it appears (also across calls sharing ``dims``); ``...`` matches any
      number of leading dimensions and may appear only first.
    dims: sizes already bound by earlier checks (updated in place and returned), so
      that e.g. ``scores: [N]`` must agree with ``boxes: [N, 4]``.

  Returns:
    The ``dims`` dictionary with the sizes this argument bound.

  Raises:
    ValueError: naming ``fn``, ``arg``, ``spec`` and the actual shape.
  """
  dims = {} if dims is None else dims
  shape = tuple(getattr(x, "shape", ()))
  tokens = _parse_spec(spec)
  ellipsis = bool(tokens) and tokens[0] == "..."
  fixed = tokens[1:] if ellipsis else tokens

  def fail(reason: str) -> None:
    raise ValueError(
        f"{fn}: argument '{arg}' must have shape {spec}; got shape {list(shape)} ({reason})."
    )

  if ellipsis:
    if len(shape) < len(fixed):
      fail(f"expected rank >= {len(fixed)}")
    tail = shape[len(shape) - len(fixed):]
  else:
    if len(shape) != len(fixed):
      fail(f"expected rank {len(fixed)}")
    tail = shape
  for token, size in zip(fixed, tail):
    if token.lstrip("-").isdigit():
      if size != int(token):
        fail(f"dimension '{token}' is {size}")
    else:
      bound = dims.get(token)
      if bound is not None and bound != size:
        fail(f"'{token}' is {size} here but {bound} elsewhere")
      dims[token] = size
  return dims
