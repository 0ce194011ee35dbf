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


def _iou(a, b):
  """``[N, 4] x [N, 4] -> [N]`` IoU of paired x1y1x2y2 boxes."""
  import numpy as np

  w = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
  h = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
  inter = w * h
  area = lambda x: np.clip(x[:, 2] - x[:, 0], 0, None) * np.clip(x[:, 3] - x[:, 1], 0, None)
  return inter / np.maximum(area(a) + area(b) - inter, 1e-9)


def _sown(tree, name):
  """The values sown under ``name`` anywhere in a Flax ``intermediates`` collection."""
  found = []

  def visit(node):
    if isinstance(node, dict):
      for key, value in node.items():
        found.extend(value) if key == name else visit(value)

  visit(tree)
  return found


def stage_diagnostics(workdir: str) -> dict:
  """How each grid stage of a trained CPM run moves boxes, and what the later stages train on.

  On the test split: the detections whose unrefined box overlaps a ground-truth box at IoU >= 0.5
  are followed through the stages (IoU with that box after each; fraction at >= 0.75); the IoU
  scoring module's score and the class score are correlated (Pearson) with the final IoU; and
  the training losses are run on the same images to count, per image, the RoIs each stage
  trains on and how many of them are refined boxes rather than ground-truth copies.
  """
  import jax
  import ml_collections
  import numpy as np

  from acne_jax import evaluate, train
  from acne_jax import datasets
  from acne_jax.models.detector import TwoStageDetector, spec_from_config
  from acne_jax.ops import boxes as box_ops

  with open(os.path.join(workdir, "config.json")) as f:
    config = ml_collections.ConfigDict(json.load(f))
  spec = spec_from_config(config.model)
  variables, _ = evaluate.restore_variables(config, workdir)
  data, _ = datasets.load_eval_split(config.data)
  mean, std = config.data.mean, config.data.std
  predict = jax.jit(lambda v, x: TwoStageDetector(spec, train=False).apply(
      v, train.normalize(x, mean, std), method="predict", mutable=["intermediates"]))
  losses = jax.jit(lambda v, x, b, l, m, k: TwoStageDetector(spec, train=True).apply(
      v, train.normalize(x, mean, std), b, l, m, k, method="losses", mutable=["intermediates"]))
  stage_ious, cls_scores, ism_scores = [], [], []
  trained_rois, refined_rois = [], []
  key = jax.random.key(0)
  for batch in data.eval_batches(config.eval.batch_size):
    output, state = predict(variables, batch["image"])
    stages = [np.asarray(x) for x in _sown(state["intermediates"], "stage_boxes")]
    classified = _sown(state["intermediates"], "cls_detections")[0]
    ism = _sown(state["intermediates"], "ism_score")
    for i in np.flatnonzero(batch["image_valid"]):
      gts = batch["boxes"][i][batch["valid"][i]]
      keep = np.asarray(classified.valid[i])
      if not len(gts) or not keep.any():
        continue
      overlaps = np.asarray(box_ops.box_iou(stages[0][i][keep], gts))
      matched = overlaps.max(axis=1) >= 0.5
      target = gts[overlaps.argmax(axis=1)][matched]
      # The IoU of each stage's output with the ground truth its unrefined box matched.
      stage_ious.append(np.stack([_iou(stage[i][keep][matched], target) for stage in stages], axis=1))
      cls_scores.append(np.asarray(classified.scores[i])[keep][matched])
      if ism:
        ism_scores.append(np.asarray(ism[0][i])[keep][matched])
    key, sub = jax.random.split(key)
    _, state = losses(variables, batch["image"], batch["boxes"], batch["labels"], batch["valid"], sub)
    trained_rois.append(np.stack([np.asarray(x) for x in _sown(state["intermediates"], "stage_rois")], axis=1)[batch["image_valid"]])
    refined_rois.append(np.stack([np.asarray(x) for x in _sown(state["intermediates"], "stage_refined_rois")], axis=1)[batch["image_valid"]])
  ious = np.concatenate(stage_ious).astype(np.float64)
  out = {"followed": int(len(ious)), "mean_iou": ious.mean(axis=0).round(3).tolist(),
         "at_0.75": (ious >= 0.75).mean(axis=0).round(3).tolist(),
         "trained_rois": np.concatenate(trained_rois).mean(axis=0).round(1).tolist(),
         "refined_rois": np.concatenate(refined_rois).mean(axis=0).round(1).tolist()}
  # The IoU scoring module predicts the IoU of the last stage's input boxes.
  out["cls_iou_pearson"] = round(float(np.corrcoef(np.concatenate(cls_scores), ious[:, -2])[0, 1]), 3)
  if ism_scores:
    out["ism_iou_pearson"] = round(float(np.corrcoef(np.concatenate(ism_scores), ious[:, -2])[0, 1]), 3)
  return out


def run_row(slug: str, config: str, overrides, out: str, steps: int) -> dict:
  workdir = os.path.join(out, slug)
  result_path = os.path.join(workdir, "result.json")
  if os.path.exists(result_path):
    with open(result_path) as f:
      result = json.load(f)
    if ("cpm" in config or "grid" in config) and "stages" not in result:
      result["stages"] = stage_diagnostics(workdir)
      _write_json(result, result_path)
    return result
  command = [sys.executable, "-m", "acne_jax.train", f"--config={config}", f"--workdir={workdir}", *overrides]
  if steps:
    command.append(f"--config.train.steps={steps}")
  print("running:", " ".join(command[1:]), flush=True)
  start = time.time()
  subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
  result = {"command": " ".join(["python"] + command[1:]), "train_and_eval_seconds": round(time.time() - start, 1), **score(workdir)}
  if "cpm" in config or "grid" in config:
    result["stages"] = stage_diagnostics(workdir)
  _write_json(result, result_path)
  return result


def _write_json(value, path: str) -> None:
  with open(path + ".tmp", "w") as f:
    json.dump(value, f, indent=1)
  os.replace(path + ".tmp", path)


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
  lines += [
      "",
      "Inside the grid models (`stage_diagnostics` in the script; test split): the detections whose unrefined "
      "box overlaps a ground-truth box at IoU >= 0.5, followed through the stages (mean IoU with that box, and "
      "the fraction at >= 0.75, after each stage); the Pearson correlation of the class score and of the ISM "
      "score with the IoU of the last stage's input box; and, per image, the RoIs each stage trains on and how "
      "many of them are refined boxes rather than ground-truth copies.\n",
      "| model | followed | mean IoU: unrefined -> stages | IoU >= 0.75 | cls / ISM vs IoU | RoIs per stage (refined) |",
      "|---|---:|---|---|---|---|",
  ]
  for name, r in results:
    d = r.get("stages")
    if not d:
      continue
    arrow = lambda xs: " -> ".join(f"{x:.3f}" if isinstance(x, float) else str(x) for x in xs)
    rois = ", ".join(f"{a:g} ({b:g})" for a, b in zip(d["trained_rois"], d["refined_rois"]))
    ism = f"{d['ism_iou_pearson']:.2f}" if "ism_iou_pearson" in d else "-"
    lines.append(f"| {name} | {d['followed']} | {arrow(d['mean_iou'])} | {arrow(d['at_0.75'])} | "
                 f"{d['cls_iou_pearson']:.2f} / {ism} | {rois} |")
  emit("\n".join(lines) + "\n", args.markdown)


if __name__ == "__main__":
  main()
