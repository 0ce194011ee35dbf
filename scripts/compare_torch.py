"""Per-stage differences between a converted torchvision Faster R-CNN and torchvision; writes PARITY.md.

    python scripts/compare_torch.py                      # CPU: 4 images of 128 x 160, 3 classes
    python scripts/compare_torch.py --markdown=PARITY.md

torchvision runs its own C++ kernels (acne_jax/testing/torchvision_cpu.py on a CPU-only machine);
the comparison itself is acne_jax/testing/torchvision_parity.py, the one the tests assert on:
seeded random weights (batch norms away from the identity, output layers calibrated so scores
are spread), every stage of our model next to torchvision's, and the final detections matched
box by box. On a GPU machine JAX runs on the GPU and torchvision on the CPU.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402

from acne_jax.testing import report  # noqa: E402
from acne_jax.testing import torchvision_parity as parity  # noqa: E402
from acne_jax.testing.torchvision_cpu import import_torchvision  # noqa: E402


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--height", type=int, default=128)
  parser.add_argument("--width", type=int, default=160)
  parser.add_argument("--batch", type=int, default=4)
  parser.add_argument("--classes", type=int, default=3)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--markdown", default=None, help="append the section to this Markdown file (PARITY.md)")
  args = parser.parse_args()
  tv = import_torchvision()
  import torch

  result = parity.compare(tv, args.classes, (args.height, args.width), args.batch, args.seed)
  lines = [
      f"### Whole detector vs torchvision, {datetime.date.today().isoformat()}",
      "",
      f"Converted `fasterrcnn_resnet50_fpn` (v1) weights in `configs/torchvision_faster_rcnn.py` against torchvision "
      f"{tv.__version__} (its C++ CPU kernels) on {args.batch} random {args.height} x {args.width} images, "
      f"{args.classes} classes, seed {args.seed}, seeded random weights (acne_jax/testing/torchvision_parity.py).",
      "",
      f"- Command: `python scripts/compare_torch.py --height={args.height} --width={args.width} --batch={args.batch} "
      f"--classes={args.classes} --seed={args.seed} --markdown=PARITY.md`",
      f"- Date: {datetime.date.today().isoformat()}; machine: {platform.machine()} {os.cpu_count()} cores, JAX {jax.__version__} "
      f"on {jax.devices()[0].platform.upper()}, torch {torch.__version__}; `jax_default_matmul_precision=\"highest\"`.",
      "- Each stage gets the same input on both sides (the next stage is fed torchvision's output where an exact score tie "
      "could reorder things); \"relative\" is the largest difference over the reference's largest magnitude.",
      "",
      "| stage | max abs diff | relative | note |",
      "|---|---|---|---|",
  ]
  for row in result.rows:
    lines.append(f"| {row.stage} | {row.max_abs:.2e} | {row.max_rel:.2e} | {row.note} |")
  lines += ["", "Final detections (whole models, 100 per image at most):", "",
            "| image | matched | max box diff (px) | max score diff | only ours | only torchvision |", "|---|---|---|---|---|---|"]
  for index, match in enumerate(result.matches):
    lines.append(f"| {index} | {match.matched} | {match.box_diff:.2e} | {match.score_diff:.2e} | "
                 f"{'; '.join(match.only_ours) or '-'} | {'; '.join(match.only_theirs) or '-'} |")
  lines += ["", "A detection only one side keeps is a float32 tie, named in the table: an IoU within 1e-5 of the NMS "
            "threshold, two candidates whose scores agree within 1e-6, the computation's own noise (NMS keeps whichever "
            "it meets first, and rounding decides which that is), or what such a tie changes further down the same image.", ""]
  report.emit("\n".join(lines), args.markdown)
  return 0


if __name__ == "__main__":
  sys.exit(main())
