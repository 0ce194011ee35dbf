"""The SADH paper's experiments (Tables 1, 3, 4, masked crop, Figs. 6-7), every row with one budget.

    python scripts/reproduce_sadh.py [--data synthetic_hard] [--seeds 0,1] [--out workdir/reproduce_sadh]
                                     [--rows a,b] [--jobs N] [--data_dir DIR] [--markdown BENCHMARKS.md] [--quick]

Each row is a config and overrides of it (``ROWS``), trained once per seed with
``acne_jax.train.train_and_evaluate`` in its own workdir ``<out>/<data>/<row>/seed<k>``, the same
hyper-parameters for every row (no tuning per row). A finished run writes ``result.json`` there
and is skipped when the script runs again, so it resumes. Per run: AP@0.5, AR@0.5, AP_s@0.5,
AP_m@0.5 (the paper's metrics: IoU 0.5, size buckets), the proposals' AR@100/300/1000, and for
rows with an NWD branch the Fig. 7 Pearson coefficients of IoU against s_cls, the NWD score and
s_final, and the Fig. 6 confidence drop one and two cells from the lesion centre (every row).
The table gives each number as the mean over seeds with its spread (max - min).

``--jobs N`` trains N runs at once, each process pinned to its own share of the CPU cores (on
a GPU machine leave it at 1). XLA's CPU step of these thin models runs only ~1.5x faster on two
cores than on one, so on 2 cores ``--jobs 2`` finishes the table's runs ~1.3x sooner. A run's
reductions then split differently than on two threads, so its numbers differ from a ``--jobs 1``
run of the same seed by about as much as two seeds differ (docs/decisions.md).

``--data synthetic_hard`` (default) is the hard synthetic set (acne_jax/data/synthetic_hard.py,
384 x 384 crops, the config's 240 steps of batch 2), every row starting from the backbone, FPN
and box-head fc layers of one detector pretrained on the easy embedded set (``PRETRAIN``, trained
first into ``<out>/pretrain_synthetic``: the stand-in for the paper's COCO Mask R-CNN start);
``--data acne_scu`` runs the paper-sized setting on the real data from the configs' ImageNet
backbone. ``--quick`` is a smoke run of the script
(a tiny model, the ``tiny`` and ``hard_tiny`` builder configs, 2 steps, one seed, the rows of
``QUICK_ROWS`` unless ``--rows`` names others) that produces the table's format in minutes.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import sys
import time
from typing import Dict, List, Mapping, Sequence, Tuple

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# (slug, row, paper's table, config module, data suffix, overrides of the config)
ROWS: Tuple[Tuple[str, str, str, str, str, Mapping[str, object]], ...] = (
    ("faster_rcnn", "Faster R-CNN (vanilla RPN)", "Table 1", "faster_rcnn", "", {}),
    ("faster_sadh", "+ SADH", "Table 1", "sadh", "", {"model.rpn.with_nwd": False}),
    ("faster_sadh_nwd", "+ SADH + NWD", "Table 1", "sadh", "", {}),
    ("mask_rcnn", "Mask R-CNN (vanilla RPN)", "Table 3", "mask_rcnn", "", {}),
    ("mask_sadh_nwd", "Mask R-CNN + SADH + NWD", "Table 3", "mask_rcnn_sadh", "", {}),
    ("cls_3x3", "SADH + NWD, 3x3 cls conv", "Table 4: cls tower", "sadh", "", {"model.rpn.cls_kernel": 3}),
    ("nwd_l1", "SADH + NWD, L1 instead of SBCE", "Table 4: branch loss", "sadh", "", {"model.rpn.nwd_loss": "l1"}),
    ("target_iou", "SADH + branch target IoU", "Table 4: branch target", "sadh", "", {"model.rpn.nwd_target": "iou"}),
    ("target_giou", "SADH + branch target GIoU", "Table 4: branch target", "sadh", "", {"model.rpn.nwd_target": "giou"}),
    ("target_diou", "SADH + branch target DIoU", "Table 4: branch target", "sadh", "", {"model.rpn.nwd_target": "diou"}),
    ("rpn_nwd", "vanilla RPN + NWD branch", "Table 4: head", "faster_rcnn", "", {"model.rpn.with_nwd": True}),
    ("plain_crops", "SADH + NWD, plain crops (no masking)", "masked crop", "sadh", "_plain", {}),
)
METRICS = ("AP@0.5", "AR@0.5", "AP_s@0.5", "AP_m@0.5", "AR@100", "AR@300", "AR@1000")
QUICK_ROWS = ("faster_rcnn", "faster_sadh_nwd")  # --quick's default: the baseline and the paper's model
FIGURE_METRICS = ("pearson_s_cls", "pearson_nwd", "pearson_s_final", "gradient_1", "gradient_2")


def row_config(module: str, data: str, overrides: Mapping[str, object], quick: bool, pretrained: str = "",
               data_dir: str = ""):
  """The row's config: ``configs/<module>.py:<data>`` with the overrides (and the quick budget),
  its backbone, FPN and box-head fc layers initialised from ``pretrained`` (an acne_jax workdir;
  "" keeps the config's own start), TFDS data in ``data_dir`` ("" keeps the config's)."""
  from acne_jax.testing import tiny

  config = importlib.import_module(f"configs.{module}").get_config(data)
  tiny.override(config, overrides, caller="reproduce_sadh")
  if quick:
    apply_quick(config, "hard_tiny")
  if pretrained:
    tiny.override(config, {"model.backbone.pretrained": pretrained, "model.neck.pretrained": pretrained,
                           "model.roi_head.box.pretrained": pretrained})
  if data_dir:
    tiny.override(config, {"data.data_dir": data_dir})
  # No counting thresholds (they serve predict's lesion counts, not the table): saves an evaluation.
  tiny.override(config, {"eval.calibration_split": ""})
  return config


# The COCO stand-in of the synthetic experiments: the paper fine-tunes every row from one COCO
# Mask R-CNN (ImageNet ResNet-50); here every row (and seed) starts from the backbone, FPN and
# box-head fc layers of one detector trained on the easy embedded set (configs/faster_rcnn.py, the
# main command's budget), since no such weights fit the thin model; the RPN or SADH head and the
# class-specific layers start from scratch (docs/decisions.md).
PRETRAIN = ("pretrain", "faster_rcnn", "synthetic")


def pretrain_backbone(out: str, quick: bool, data_dir: str = "") -> str:
  """Trains (once; resumable) the shared pretraining run and returns its workdir."""
  slug, module, data = PRETRAIN
  workdir = os.path.join(out, f"{slug}_{data}")
  from acne_jax import train
  from acne_jax.testing import tiny

  config = importlib.import_module(f"configs.{module}").get_config(data)
  if quick:
    apply_quick(config, "tiny")
  if data_dir:
    tiny.override(config, {"data.data_dir": data_dir})
  # A finished run's final evaluation is its last write; an interrupted one resumes.
  if not os.path.exists(os.path.join(workdir, f"metrics_{config.data.eval_split}.json")):
    print(f"pretraining the shared backbone (configs/{module}.py:{data}) into {workdir}", flush=True)
    train.train_and_evaluate(config, workdir, show_progress=False)
  return workdir


def apply_quick(config, builder_config: str) -> None:
  """The smoke budget: the tiny model, a tiny builder config, 2 steps, no calibration split. One
  input shape for the pretraining (96 px patches, padded) and the rows (128 px crops), so the
  vanilla row reuses the pretraining's compiled programs from the compilation cache."""
  from acne_jax.testing import tiny

  tiny.apply(config)
  with config.unlocked():
    config.data.update(builder_config=builder_config, image_size=(128, 128), max_boxes=64)
    config.train.update(steps=2, log_every=1, checkpoint_every=2)
    config.optimizer.update(warmup_steps=0, decay_steps=())
    config.eval.update(batch_size=4, calibration_split="")


def figure_numbers(config, workdir: str, num_images: int) -> Dict[str, float]:
  """Fig. 6 (confidence drop at distance 1 and 2) and Fig. 7 (Pearson of IoU with s_cls, the
  NWD score and s_final, NaN without a branch) of a trained run on its evaluation split."""
  from acne_jax import datasets
  from acne_jax.evaluation import analysis, plots

  eval_data, _ = datasets.load_eval_split(config.data)
  n = min(num_images, len(eval_data))
  gt_boxes = [b[v] for b, v in zip(eval_data.boxes[:n], eval_data.valid[:n])]
  out = plots.model_outputs(config, workdir, eval_data, n, config.eval.batch_size)
  curve = analysis.confidence_gradient(out["cls"], out["feature_sizes"], out["anchors"], out["strides"], gt_boxes, 2)
  numbers = {"gradient_1": float(curve[1]), "gradient_2": float(curve[2])}
  if out["nwd"] is not None:
    pairs = analysis.iou_score_pairs(out["cls"], out["nwd"], out["decoded"], gt_boxes,
                                     nwd_weight=config.model.rpn.nwd_score_weight)
    for name in ("s_cls", "nwd", "s_final"):
      numbers[f"pearson_{name}"] = analysis.pearson(pairs["iou"], pairs[name])
  else:
    numbers.update({f"pearson_{name}": float("nan") for name in ("s_cls", "nwd", "s_final")})
  return numbers


def run(slug: str, module: str, data: str, overrides, seed: int, out: str, quick: bool, figure_images: int,
        pretrained: str = "", data_dir: str = "") -> dict:
  workdir = os.path.join(out, data, slug, f"seed{seed}")
  result_path = os.path.join(workdir, "result.json")
  if os.path.exists(result_path):
    with open(result_path) as f:
      return json.load(f)
  from acne_jax import train

  config = row_config(module, data, overrides, quick, pretrained, data_dir)
  with config.unlocked():
    config.train.seed = seed
  print(f"training {slug} (configs/{module}.py:{data}, seed {seed}) into {workdir}", flush=True)
  start = time.time()
  metrics = train.train_and_evaluate(config, workdir, show_progress=False)
  figures = figure_numbers(config, workdir, figure_images)
  result = {"row": slug, "config": f"configs/{module}.py:{data}", "overrides": dict(overrides), "seed": seed,
            "pretrained": config.model.backbone.pretrained, "seconds": round(time.time() - start, 1),
            "cpu_cores": sorted(os.sched_getaffinity(0)),
            **{k: float(metrics[k]) for k in METRICS if k in metrics}, **figures}
  with open(result_path + ".tmp", "w") as f:
    json.dump(result, f, indent=1)
  os.replace(result_path + ".tmp", result_path)
  return result


def _pin_worker(core_queue) -> None:
  """Pool initializer: pins this worker to the next free set of cores before JAX starts in it."""
  os.sched_setaffinity(0, core_queue.get())


def _run_in_worker(target, args: tuple, cache_dir: str):
  import jax

  jax.config.update("jax_compilation_cache_dir", cache_dir)
  return target(*args)


def prepare_data(jobs: List[tuple]) -> None:
  """Builds (once, here) every data set the jobs read, so that parallel workers never race to
  build the same TFDS data set on a fresh machine."""
  from acne_jax import datasets

  done = set()
  for slug, module, data, overrides, _, _, quick, _, pretrained, data_dir in jobs:
    config = row_config(module, data, overrides, quick, pretrained, data_dir)
    key = (config.data.name, config.data.builder_config, config.data.data_dir)
    if key not in done:
      datasets.load_sources(config.data)
      done.add(key)


def run_all(jobs: List[tuple], num_workers: int, cache_dir: str, target=run) -> list:
  """``target(*args)`` (default :func:`run`) of every job, in order; ``num_workers`` > 1 trains that
  many at once, each worker pinned to its own cores (``os.sched_setaffinity``, which XLA's CPU
  thread pool follows). ``target`` must be importable by name in a fresh interpreter."""
  if num_workers <= 1:
    return [target(*args) for args in jobs]
  import concurrent.futures
  import multiprocessing

  cores = sorted(os.sched_getaffinity(0))
  context = multiprocessing.get_context("spawn")  # fresh interpreters: no forked JAX runtime
  core_queue = context.Queue()
  for k in range(num_workers):  # more workers than cores share them round-robin
    core_queue.put(set(cores[k::num_workers]) or {cores[k % len(cores)]})
  with concurrent.futures.ProcessPoolExecutor(num_workers, mp_context=context, initializer=_pin_worker,
                                              initargs=(core_queue,)) as pool:
    futures = [pool.submit(_run_in_worker, target, args, cache_dir) for args in jobs]
    return [f.result() for f in futures]


def summarize(results: Sequence[dict], key: str) -> str:
  """``mean ± half-range`` over seeds ("-" when missing, NaN, or -1: a size bucket without ground truth)."""
  values = np.asarray([r.get(key, np.nan) for r in results], np.float64)
  values = values[np.isfinite(values)]
  if key.startswith(("AP_", "AR_")):
    values = values[values >= 0]
  if not len(values):
    return "-"
  if len(values) == 1:
    return f"{values[0]:.3f}"
  return f"{values.mean():.3f} ± {(values.max() - values.min()) / 2:.3f}"


def table(rows: List[Tuple[str, str, List[dict]]]) -> List[str]:
  lines = ["| group | row | AP@0.5 | AR@0.5 | AP_s@0.5 | AP_m@0.5 | prop. AR@100 | AR@300 | AR@1000 | "
           "Pearson s_cls / NWD / s_final | Δs_cls at 1 / 2 cells | min / run |",
           "|---|---|" + "---:|" * 7 + "---|---|---:|"]
  for group, name, results in rows:
    cells = [summarize(results, k) for k in METRICS]
    pearson = " / ".join(summarize(results, f"pearson_{n}") for n in ("s_cls", "nwd", "s_final"))
    gradient = " / ".join(summarize(results, f"gradient_{d}") for d in (1, 2))
    minutes = np.mean([r["seconds"] for r in results]) / 60
    lines.append(f"| {group} | {name} | " + " | ".join(cells) + f" | {pearson} | {gradient} | {minutes:.1f} |")
  return lines


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data", default="synthetic_hard", help="synthetic_hard (default) or acne_scu")
  parser.add_argument("--seeds", default="0,1")
  parser.add_argument("--out", default="workdir/reproduce_sadh")
  parser.add_argument("--rows", default="", help="comma-separated row slugs (default: all)")
  parser.add_argument("--jobs", type=int, default=1, help="runs trained at once, each on its own share of the "
                      "CPU cores (2 on a 2-core machine; 1 on a GPU)")
  parser.add_argument("--figure_images", type=int, default=64, help="evaluation images for the Fig. 6/7 numbers")
  parser.add_argument("--markdown", default=None)
  parser.add_argument("--data_dir", default="", help="TFDS data directory (default: the configs' own)")
  parser.add_argument("--figures", default="", help="directory for the Figs. 6/7 plots of seed 0's + SADH + NWD "
                      "against its Faster R-CNN (plots.make_figures), e.g. docs/figures/synthetic_hard")
  parser.add_argument("--quick", action="store_true",
                      help=f"smoke run: tiny model, hard_tiny data, 2 steps, one seed, rows {','.join(QUICK_ROWS)} unless --rows")
  args = parser.parse_args(argv)
  from acne_jax.testing.report import emit, machine_description

  seeds = [0] if args.quick else [int(s) for s in args.seeds.split(",")]
  chosen = set(args.rows.split(",")) if args.rows else (set(QUICK_ROWS) if args.quick else None)
  unknown = (chosen or set()) - {r[0] for r in ROWS}
  if unknown:
    parser.error(f"unknown rows {sorted(unknown)}; known: {', '.join(r[0] for r in ROWS)}")
  start = time.time()
  import jax

  # Seeds of one row compile the same programs: the later one reads them from this cache (or
  # from the one JAX_COMPILATION_CACHE_DIR names, as the test suite sets).
  cache_dir = os.environ.get("JAX_COMPILATION_CACHE_DIR") or os.path.abspath(os.path.join(args.out, "jax_cache"))
  jax.config.update("jax_compilation_cache_dir", cache_dir)
  pretrained = pretrain_backbone(args.out, args.quick, args.data_dir) if args.data.startswith("synthetic") else ""
  selected = []
  for slug, name, group, module, suffix, overrides in ROWS:
    if chosen and slug not in chosen:
      continue
    data = args.data + suffix if suffix and args.data.startswith("synthetic") else args.data
    if suffix and data == args.data:
      continue  # the real data sets have no plain-crop split
    selected.append((slug, name, group, module, data, overrides))
  # Every row's first seed before any second one, so that a second seed finds its programs cached.
  jobs = [(slug, module, data, overrides, seed, args.out, args.quick, args.figure_images, pretrained, args.data_dir)
          for seed in seeds for slug, _, _, module, data, overrides in selected]
  if args.jobs > 1:
    prepare_data(jobs)
  results = run_all(jobs, args.jobs, cache_dir)
  rows = [(group, name, [r for r, job in zip(results, jobs) if job[0] == slug]) for slug, name, group, *_ in selected]
  command = "python scripts/reproduce_sadh.py" + (" --quick" if args.quick else f" --data {args.data} --seeds {args.seeds}")
  command += f" --jobs {args.jobs}" if args.jobs > 1 else ""
  lines = [f"### SADH experiments on {args.data}, {datetime.date.today().isoformat()} — {machine_description()}\n",
           f"Command: `{command}` ({len(seeds)} seed(s) per row, mean ± half the range; "
           f"{round((time.time() - start) / 60, 1)} min for the runs not already done, pretraining included; "
           f"{args.jobs} run(s) at a time).\n", *table(rows)]
  emit("\n".join(lines) + "\n", args.markdown)
  if args.figures:
    write_figures(args, data=args.data, num_images=args.figure_images)
  return rows


def write_figures(args, data: str, num_images: int) -> Dict[str, object]:
  """Figs. 6/7 (confidence gradient, IoU against score), the precision-recall curves and drawn
  detections of seed 0's SADH + NWD row against its vanilla Faster R-CNN row, into ``args.figures``."""
  from acne_jax.evaluation import plots

  pretrained = os.path.join(args.out, f"{PRETRAIN[0]}_{PRETRAIN[2]}") if data.startswith("synthetic") else ""
  runs = []
  for slug in ("faster_sadh_nwd", "faster_rcnn"):
    _, _, _, module, _, overrides = next(r for r in ROWS if r[0] == slug)
    seed_dir = os.path.join(args.out, data, slug, "seed0")
    if not os.path.exists(os.path.join(seed_dir, "result.json")):
      raise FileNotFoundError(f"--figures needs the finished {slug} run of seed 0 ({seed_dir}); run that row first.")
    config = row_config(module, data, overrides, args.quick, pretrained, args.data_dir)
    runs.append((config, seed_dir))
  results = plots.make_figures(runs[0], runs[1], args.figures, num_images=num_images, batch_size=runs[0][0].eval.batch_size)
  print("wrote the figures into", args.figures, flush=True)
  return results


if __name__ == "__main__":
  main()
