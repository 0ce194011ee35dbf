"""Benchmark NMS and multi-level RoIAlign, jitted and warm, beside a PyTorch reference.

    python scripts/benchmark_ops.py [--repeats 10] [--markdown BENCHMARKS.md]

Cases (the issue's): NMS of 2,000 and 6,000 boxes (IoU 0.7, keep 1,000); RoIAlign on P2-P5
of a 1024x1024 image (batch 2, 256 channels), 1,024 RoIs, 7x7 and 14x14, forward and
forward+backward. Times are medians over ``--repeats`` runs after a warm-up (and, for JAX,
after compilation). The PyTorch side is ``torchvision.ops`` (its C++ kernels, through
``acne_jax.testing.torchvision_cpu`` on a CPU-only machine) and otherwise the pure-PyTorch
references of ``acne_jax.testing.torch_reference``; the table says which. With ``--markdown`` the results are appended to that file
as a dated section with the machine and the command.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax
import jax.numpy as jnp
import numpy as np
import torch

from acne_jax.ops import nms as nms_ops
from acne_jax.ops import roi_align as roi_ops
from acne_jax.testing import report, torch_reference

STRIDES = (4, 8, 16, 32)


def _torch_ops():
  found = report.torchvision_ops()
  if found is None:
    return "pure-PyTorch reference", torch_reference.nms, None
  name, _, nms, roi_align = found
  return name, nms, roi_align


def random_boxes(rng, n, size=1024.0):
  xy = rng.uniform(0, size, (n, 2))
  wh = rng.uniform(8, 128, (n, 2))
  return np.concatenate([xy, np.minimum(xy + wh, size)], 1).astype(np.float32)


def bench_nms(rng, n, repeats, torch_nms, device):
  boxes = random_boxes(rng, n)
  scores = rng.uniform(size=n).astype(np.float32)
  fn = jax.jit(lambda b, s: nms_ops.nms(b, s, 0.7, 1000))
  b, s = jnp.asarray(boxes), jnp.asarray(scores)
  ours = report.median_seconds(lambda: jax.block_until_ready(fn(b, s)), repeats)
  tb, ts = torch.as_tensor(boxes, device=device), torch.as_tensor(scores, device=device)

  def run_torch():
    keep = torch_nms(tb, ts, 0.7)[:1000]
    if device != "cpu":
      torch.cuda.synchronize()
    return keep

  theirs = report.median_seconds(run_torch, max(3, repeats // 3))
  return ours, theirs


def pyramid(rng, batch=2, channels=256, size=1024):
  return [rng.normal(size=(batch, size // s, size // s, channels)).astype(np.float32) for s in STRIDES]


def random_rois(rng, count, batch=2, size=1024):
  boxes = random_boxes(rng, count, size)
  # Lesion-like and object-like sizes so every level gets RoIs.
  scale = rng.choice([1.0, 2.0, 4.0, 8.0], size=(count, 1))
  centers = (boxes[:, :2] + boxes[:, 2:]) / 2
  half = (boxes[:, 2:] - boxes[:, :2]) / 2 * scale
  boxes = np.clip(np.concatenate([centers - half, centers + half], 1), 0, size)
  return np.concatenate([rng.integers(0, batch, (count, 1)), boxes], 1).astype(np.float32)


def bench_roi_align(rng, output_size, repeats, torch_roi_align, device, features, rois):
  feats = [jnp.asarray(f) for f in features]
  r = jnp.asarray(rois)
  forward = jax.jit(lambda fs, r: roi_ops.multilevel_roi_align(fs, r, output_size, strides=STRIDES, sampling_ratio=0, aligned=True))
  backward = jax.jit(jax.grad(lambda fs, r: jnp.sum(roi_ops.multilevel_roi_align(fs, r, output_size, strides=STRIDES, sampling_ratio=0, aligned=True) ** 2)))
  ours_f = report.median_seconds(lambda: jax.block_until_ready(forward(feats, r)), repeats)
  ours_b = report.median_seconds(lambda: jax.block_until_ready(backward(feats, r)), repeats)

  t_feats = [torch.as_tensor(f, device=device).permute(0, 3, 1, 2).contiguous().requires_grad_(True) for f in features]
  t_rois = torch.as_tensor(rois, device=device)

  def torch_forward():
    if torch_roi_align is None:
      return torch_reference.multilevel_roi_align(t_feats, t_rois, output_size, STRIDES, 0, True, roi_ops.DEFAULT_MAX_SAMPLING_RATIO)
    levels = torch_reference.level_of_rois(t_rois, 2, 5)
    out = t_rois.new_zeros((t_rois.shape[0], t_feats[0].shape[1], output_size, output_size))
    for i, (f, s) in enumerate(zip(t_feats, STRIDES)):
      idx = torch.nonzero(levels == i + 2).flatten()
      out[idx] = torch_roi_align(f, t_rois[idx], output_size, 1.0 / s, 0, True)
    return out

  def run(backward_too):
    out = torch_forward()
    if backward_too:
      (out ** 2).sum().backward()
    if device != "cpu":
      torch.cuda.synchronize()

  theirs_f = report.median_seconds(lambda: run(False), max(3, repeats // 3))
  theirs_b = report.median_seconds(lambda: run(True), max(3, repeats // 3))
  return (ours_f, theirs_f), (ours_b, theirs_b)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeats", type=int, default=10)
  parser.add_argument("--markdown", default=None, help="append the results to this Markdown file")
  args = parser.parse_args()

  rng = np.random.default_rng(0)
  device = "cuda" if torch.cuda.is_available() else "cpu"
  reference, torch_nms, torch_roi_align = _torch_ops()
  rows = []
  for n in (2000, 6000):
    ours, theirs = bench_nms(rng, n, args.repeats, torch_nms, device)
    rows.append((f"nms, {n} boxes, IoU 0.7, keep <= 1000", ours, theirs))
    print(rows[-1], flush=True)
  features = pyramid(rng)
  rois = random_rois(rng, 1024)
  for size in (7, 14):
    forward, backward = bench_roi_align(rng, size, args.repeats, torch_roi_align, device, features, rois)
    rows.append((f"multilevel_roi_align {size}x{size}, B=2, P2-P5 of 1024^2, C=256, 1024 RoIs, forward", *forward))
    print(rows[-1], flush=True)
    rows.append((f"multilevel_roi_align {size}x{size}, same, forward+backward", *backward))
    print(rows[-1], flush=True)

  jax_device = jax.devices()[0]
  machine = report.machine_description()
  lines = [
      f"### Ops, {datetime.date.today().isoformat()} — {machine}",
      "",
      f"Command: `python scripts/benchmark_ops.py --repeats {args.repeats}`; JAX {jax.__version__} on {jax_device.platform}, "
      f"PyTorch {torch.__version__} on {device} ({reference}). Medians of warm runs, milliseconds.",
      "",
      "| case | acne_jax (jit) | PyTorch |",
      "|---|---:|---:|",
  ]
  lines += [f"| {name} | {ours * 1e3:.1f} | {theirs * 1e3:.1f} |" for name, ours, theirs in rows]
  text = "\n".join(lines) + "\n"
  report.emit(text, args.markdown)


if __name__ == "__main__":
  main()
