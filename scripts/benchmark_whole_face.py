"""Lesion counts and AP on held-out synthetic whole faces, through ``predict`` and ``evaluate``.

    python scripts/benchmark_whole_face.py --config=configs/sadh.py --workdir=workdir/sadh [--faces 5]
        [--seed 2026] [--out /tmp/whole_faces] [--markdown BENCHMARKS.md]

Writes ``--faces`` generated whole faces (1728 x 2592, the size of the issue's example) as an
AcneSCU-style LabelMe release with a seed the embedded data set does not use (its images are
therefore held out), runs ``python -m acne_jax.predict`` on them with the trained model in
``--workdir`` (tiles of the training size, the calibrated counting thresholds), and reports:

- per face, the annotated lesion count, the count ``predict`` prints (calibrated per-class
  thresholds) and the count a fixed threshold of 0.3 would give (the old default), read from
  the same detections;
- the mean absolute relative count error ``mean(|counted - annotated| / annotated)``;
- whole-face AP@0.5 / AR@0.5 from ``python -m acne_jax.evaluate --gt FACES --dets PREDICTIONS``,
  next to the crop-level AP@0.5 of the same checkpoint (``metrics_test.json`` in the workdir).

With ``--markdown`` the table is appended to that file with the date, machine and command.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", default="configs/sadh.py")
  parser.add_argument("--workdir", default="workdir/sadh")
  parser.add_argument("--faces", type=int, default=5)
  parser.add_argument("--seed", type=int, default=2026)
  parser.add_argument("--height", type=int, default=1728)
  parser.add_argument("--width", type=int, default=2592)
  parser.add_argument("--out", default="/tmp/whole_faces")
  parser.add_argument("--markdown", default=None)
  args = parser.parse_args()

  from acne_jax import evaluate, predict
  from acne_jax.data import synthetic
  from acne_jax.evaluation import whole_image
  from acne_jax.testing.report import emit, machine_description

  faces, predictions = os.path.join(args.out, "faces"), os.path.join(args.out, "predictions")
  for folder in (faces, predictions):
    for old in glob.glob(os.path.join(folder, "*")):
      os.remove(old)
  synthetic.write_labelme_release(faces, args.faces, seed=args.seed, image_size=(args.height, args.width))
  photos = sorted(glob.glob(os.path.join(faces, "*.jpg")))
  tick = time.perf_counter()
  code = predict.main(["predict", f"--config={args.config}", f"--workdir={args.workdir}", f"--out={predictions}", *photos])
  if code:
    raise SystemExit(f"predict failed with exit code {code}")
  predict_seconds = time.perf_counter() - tick

  gt, _ = whole_image.load_ground_truth(faces)
  rows, errors, fixed_errors = [], [], []
  for image in gt["images"]:
    stem = os.path.splitext(os.path.basename(image["file_name"]))[0]
    annotated = sum(a["image_id"] == image["id"] for a in gt["annotations"])
    with open(os.path.join(predictions, f"{stem}_counts.json")) as f:
      counted = sum(json.load(f).values())
    with open(os.path.join(predictions, f"{stem}_detections.json")) as f:
      at_fixed = sum(d["score"] >= 0.3 for d in json.load(f))
    errors.append(abs(counted - annotated) / annotated)
    fixed_errors.append(abs(at_fixed - annotated) / annotated)
    rows.append((stem, annotated, counted, at_fixed))
  metrics, _ = evaluate.evaluate_files(faces, predictions, iou=0.5, max_dets=100)
  crop_ap = float("nan")
  crop_metrics = os.path.join(args.workdir, "metrics_test.json")
  if os.path.exists(crop_metrics):
    with open(crop_metrics) as f:
      crop_ap = json.load(f)["AP@0.5"]

  command = "python " + " ".join([os.path.relpath(__file__)] + sys.argv[1:])
  lines = [f"### Whole faces, {datetime.date.today()} — {machine_description()}", "",
           f"`{command}`", "",
           f"{args.faces} held-out synthetic faces of {args.width} x {args.height} (seed {args.seed}), `predict` with the "
           f"checkpoint in `{args.workdir}` ({predict_seconds:.0f} s for all, compilation included).", "",
           "| face | annotated lesions | counted (calibrated, default) | score >= 0.3 (old default) |",
           "|---|---:|---:|---:|"]
  lines += [f"| {stem} | {a} | {c} | {f} |" for stem, a, c, f in rows]
  lines += ["", f"Mean absolute relative count error: **{np.mean(errors):.1%}** at the calibrated thresholds, "
            f"{np.mean(fixed_errors):.1%} at 0.3.", "",
            f"Whole-face AP@0.5 **{metrics['AP@0.5']:.3f}**, AR@0.5 {metrics['AR@0.5']:.3f} "
            f"(`evaluate --gt {faces} --dets {predictions}`); crop-level AP@0.5 of the same checkpoint on the "
            f"256 x 256 test split: {crop_ap:.3f}.", ""]
  emit("\n".join(lines), args.markdown)


if __name__ == "__main__":
  main()
