"""CPM R-CNN's ablations on the embedded synthetic data: what the cascade and each scoring module buy.

    python scripts/ablate_cpm.py [--out workdir/ablate_cpm] [--steps 0] [--markdown BENCHMARKS.md]

Trains every row with ``python -m acne_jax.train`` (the same budget: each config's default of 500
steps of batch 4 unless ``--steps`` says otherwise, seed 0), each in its own workdir under
``--out``, then scores the test split's detections (``detections_test.json``, written by the
training run) at COCO's ten IoU thresholds, 100 detections per image:

- SADH + NWD Faster R-CNN (``configs/sadh.py``);
- one grid stage, no scoring modules (``configs/grid_rcnn.py``, the CPM paper's Table 1 baseline);
- three-stage CPM without ISM and RSM, with ISM, with RSM, and with both (``configs/cpm_rcnn.py``).

Each finished row writes ``result.json`` in its workdir and is skipped when run again, so the
script resumes. The table (AP@0.5, AP@0.75, AP@0.9, AP@[.5:.95], training wall time) is printed
and, with ``--markdown``, appended to that file with the date, machine and command.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

ROWS = (
    ("sadh", "SADH + NWD Faster R-CNN", "configs/sadh.py", ()),
    ("grid_1stage", "1-stage grid (no ISM, no RSM)", "configs/grid_rcnn.py", ()),
    ("cpm_3stage", "3-stage CPM (no ISM, no RSM)", "configs/cpm_rcnn.py",
     ("--config.model.roi_head.cpm.ism=False", "--config.model.roi_head.cpm.rsm=False")),
    ("cpm_ism", "3-stage CPM + ISM", "configs/cpm_rcnn.py", ("--config.model.roi_head.cpm.rsm=False",)),
    ("cpm_rsm", "3-stage CPM + RSM", "configs/cpm_rcnn.py", ("--config.model.roi_head.cpm.ism=False",)),
    ("cpm_full", "3-stage CPM + ISM + RSM (`configs/cpm_rcnn.py`)", "configs/cpm_rcnn.py", ()),
)


def score(workdir: str) -> dict:
  """AP at 0.5, 0.75, 0.9 and over 0.5:0.95 (100 detections) of the run's test detections."""
  from acne_jax.evaluation import coco_metrics

  with open(os.path.join(workdir, "ground_truth_test.json")) as f:
    gt = json.load(f)
  with open(os.path.join(workdir, "detections_test.json")) as f:
    dets = json.load(f)
  evaluation = coco_metrics.evaluate(gt, dets, max_dets=(100,))
  return {"AP50": evaluation.average_precision(0.5), "AP75": evaluation.average_precision(0.75),
          "AP90": evaluation.average_precision(0.9), "AP": evaluation.average_precision(None)}


def run_row(slug: str, config: str, overrides, out: str, steps: int) -> dict:
  workdir = os.path.join(out, slug)
  result_path = os.path.join(workdir, "result.json")
  if os.path.exists(result_path):
    with open(result_path) as f:
      return json.load(f)
  command = [sys.executable, "-m", "acne_jax.train", f"--config={config}", f"--workdir={workdir}", *overrides]
  if steps:
    command.append(f"--config.train.steps={steps}")
  print("running:", " ".join(command[1:]), flush=True)
  start = time.time()
  subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
  result = {"command": " ".join(["python"] + command[1:]), "train_and_eval_seconds": round(time.time() - start, 1), **score(workdir)}
  with open(result_path + ".tmp", "w") as f:
    json.dump(result, f, indent=1)
  os.replace(result_path + ".tmp", result_path)
  return result


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default="workdir/ablate_cpm")
  parser.add_argument("--steps", type=int, default=0, help="training steps of every row (0: each config's default, 500)")
  parser.add_argument("--markdown", default=None)
  args = parser.parse_args()
  from acne_jax.testing.report import emit, machine_description

  results = [(name, run_row(slug, config, overrides, args.out, args.steps)) for slug, name, config, overrides in ROWS]
  lines = [
      f"## CPM R-CNN ablation on the embedded synthetic data\n",
      f"{datetime.date.today().isoformat()}, {machine_description()}.\n",
      f"Command: `python scripts/ablate_cpm.py{' --steps ' + str(args.steps) if args.steps else ''}` (each row: "
      "`python -m acne_jax.train` with the row's config, the same budget and seed; test split, 100 detections).\n",
      "| model | AP@0.5 | AP@0.75 | AP@0.9 | AP@[.5:.95] | train + eval wall |",
      "|---|---:|---:|---:|---:|---:|",
  ]
  for name, r in results:
    lines.append(f"| {name} | {r['AP50']:.3f} | {r['AP75']:.3f} | {r['AP90']:.3f} | {r['AP']:.3f} | "
                 f"{r['train_and_eval_seconds'] / 60:.1f} min |")
  emit("\n".join(lines) + "\n", args.markdown)


if __name__ == "__main__":
  main()
