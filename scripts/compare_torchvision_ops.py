"""Parity of acne_jax's box_iou, nms and roi_align with torchvision.ops on the same random inputs.

    python scripts/compare_torchvision_ops.py [--cases 50] [--markdown PARITY.md] [--allow-reference]

Needs torchvision's compiled ops: on a CPU-only machine they load through
``acne_jax.testing.torchvision_cpu`` (needs gcc). With ``--allow-reference`` and no torchvision it compares against the pure-PyTorch
references of ``acne_jax.testing.torch_reference`` instead and says so in the output; that is
a check of our two implementations, not of torchvision. Reports the maximum absolute error of
IoU and RoIAlign (forward and the gradient w.r.t. the features, aligned True/False, sampling
ratio 0 and 2) and the number of NMS cases whose kept set differs. With ``--markdown`` the
results are appended to that file with the date, machine and command.
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

from acne_jax.ops import boxes as box_ops
from acne_jax.ops import nms as nms_ops
from acne_jax.ops import roi_align as roi_ops
from acne_jax.testing import report, torch_reference


def load_reference(allow_reference: bool):
  found = report.torchvision_ops()
  if found is not None:
    return found
  if not allow_reference:
    sys.exit("torchvision.ops is not usable here; run on a machine with torchvision, or pass --allow-reference.")
  return "pure-PyTorch reference (acne_jax.testing.torch_reference)", torch_reference.box_iou, torch_reference.nms, torch_reference.roi_align


def random_boxes(rng, n, size=512.0):
  xy = rng.uniform(-20, size, (n, 2))
  wh = rng.uniform(0, 120, (n, 2))
  return np.concatenate([xy, xy + wh], 1).astype(np.float32)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--cases", type=int, default=50)
  parser.add_argument("--markdown", default=None)
  parser.add_argument("--allow-reference", action="store_true")
  args = parser.parse_args()
  name, tv_iou, tv_nms, tv_roi_align = load_reference(args.allow_reference)
  device = "cuda" if torch.cuda.is_available() else "cpu"
  rng = np.random.default_rng(0)

  iou_err = 0.0
  for _ in range(args.cases):
    a, b = random_boxes(rng, 300), random_boxes(rng, 200)
    ours = np.asarray(box_ops.box_iou(jnp.asarray(a), jnp.asarray(b)))
    theirs = tv_iou(torch.as_tensor(a, device=device), torch.as_tensor(b, device=device)).cpu().numpy()
    iou_err = max(iou_err, float(np.abs(ours - theirs).max()))

  nms_fn = jax.jit(lambda bx, sc: nms_ops.nms(bx, sc, 0.5, 3000))
  nms_mismatch = 0
  for case in range(args.cases):
    n = 2000
    boxes = random_boxes(rng, n)
    boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
    # Scores of distinct values: torchvision's sort is not stable, so tied scores have no defined order.
    scores = rng.permutation(n).astype(np.float32) / n
    idx, valid = nms_fn(jnp.asarray(boxes), jnp.asarray(scores))
    ours = np.asarray(idx)[np.asarray(valid)]
    theirs = tv_nms(torch.as_tensor(boxes, device=device), torch.as_tensor(scores, device=device), 0.5).cpu().numpy()
    nms_mismatch += int(not np.array_equal(ours, theirs))

  roi_rows = []
  for aligned in (True, False):
    for sampling_ratio in (0, 2):
      fwd_err = grad_err = 0.0
      for _ in range(max(1, args.cases // 5)):
        feats = rng.normal(size=(2, 64, 80, 32)).astype(np.float32)
        xy = rng.uniform(-40, 300, (256, 2))
        wh = rng.uniform(0, 64, (256, 2))
        rois = np.concatenate([rng.integers(0, 2, (256, 1)), xy, xy + wh], 1).astype(np.float32)
        cotangent = rng.normal(size=(256, 7, 7, 32)).astype(np.float32)
        fn = lambda f: roi_ops.roi_align(f, jnp.asarray(rois), 7, 0.25, sampling_ratio, aligned)
        ours, vjp = jax.vjp(fn, jnp.asarray(feats))
        (ours_grad,) = vjp(jnp.asarray(cotangent))
        tf = torch.as_tensor(feats, device=device).permute(0, 3, 1, 2).contiguous().requires_grad_(True)
        out = tv_roi_align(tf, torch.as_tensor(rois, device=device), 7, 0.25, sampling_ratio, aligned)
        out.backward(torch.as_tensor(cotangent, device=device).permute(0, 3, 1, 2))
        fwd_err = max(fwd_err, float(np.abs(np.asarray(ours) - out.detach().permute(0, 2, 3, 1).cpu().numpy()).max()))
        grad_err = max(grad_err, float(np.abs(np.asarray(ours_grad) - tf.grad.permute(0, 2, 3, 1).cpu().numpy()).max()))
      roi_rows.append((aligned, sampling_ratio, fwd_err, grad_err))

  jax_device = jax.devices()[0]
  machine = report.machine_description()
  lines = [
      f"### {datetime.date.today().isoformat()} — {machine}",
      "",
      f"Command: `python scripts/compare_torchvision_ops.py --cases {args.cases}{' --allow-reference' if args.allow_reference else ''}`; "
      f"reference: **{name}** on {device}; acne_jax on JAX {jax.__version__} ({jax_device.platform}).",
      "",
      "| op | case | max abs error / mismatches |",
      "|---|---|---:|",
      f"| box_iou | {args.cases} pairs of 300x200 random boxes | {iou_err:.2e} |",
      f"| nms | {args.cases} cases of 2,000 boxes, IoU 0.5, distinct scores | {nms_mismatch} of {args.cases} kept sets differ |",
  ]
  for aligned, sampling_ratio, fwd_err, grad_err in roi_rows:
    lines.append(f"| roi_align 7x7, scale 1/4, aligned={aligned}, sampling_ratio={sampling_ratio} | forward / grad w.r.t. features | {fwd_err:.2e} / {grad_err:.2e} |")
  text = "\n".join(lines) + "\n"
  report.emit(text, args.markdown)


if __name__ == "__main__":
  main()
