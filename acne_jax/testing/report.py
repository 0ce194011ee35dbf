"""What benchmark and parity scripts print about where they ran and what they compared with."""

from __future__ import annotations

import os
import platform
import statistics
import time


def machine_description() -> str:
  """``"x86_64, 16 CPU cores, NVIDIA H100 80GB HBM3"`` (or ``", no GPU"``), from JAX's first device."""
  import jax

  device = jax.devices()[0]
  accelerator = f", {device.device_kind}" if device.platform != "cpu" else ", no GPU"
  return f"{platform.machine()}, {os.cpu_count()} CPU cores{accelerator}"


def torchvision_ops():
  """``(name, box_iou, nms, roi_align)`` from torchvision.ops (its C++ kernels, loaded through
  :mod:`acne_jax.testing.torchvision_cpu` on a CPU-only machine), or ``None`` when they cannot run here."""
  try:
    import torch

    from acne_jax.testing.torchvision_cpu import import_torchvision

    torchvision = import_torchvision()
    ops = torchvision.ops

    ops.nms(torch.zeros((1, 4)), torch.zeros(1), 0.5)
    return f"torchvision.ops {torchvision.__version__}", ops.box_iou, ops.nms, ops.roi_align
  except Exception:  # ImportError, or the compiled ops failing to load
    return None


def emit(text: str, markdown: str | None) -> None:
  """Prints a results section and, when ``markdown`` names a file, appends it there."""
  print(text)
  if markdown:
    with open(markdown, "a") as f:
      f.write("\n" + text)


def median_seconds(fn, repeats: int) -> float:
  """Median wall time of ``repeats`` calls of ``fn`` after one warm-up call (compilation)."""
  fn()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times)
