"""The DeepLesion benchmark paper's Tables 3-5, rerun: its six Faster R-CNN rows and its two YOLOv4 rows.

    python scripts/benchmark_deeplesion.py [--out workdir/benchmark_deeplesion] [--markdown BENCHMARKS.md]
    python scripts/benchmark_deeplesion.py --data_dir=~/tensorflow_datasets     # real DeepLesion, full settings
    python scripts/benchmark_deeplesion.py --quick                                # smoke run (tests)

Rows (``shared/papers/deeplesion_detection_benchmark.md``):

- Faster R-CNN, Table 2 rows 1-6 (``configs/deeplesion_benchmark.py:<row>``): COCO-pretrained or
  not, Adam or SGD, balanced batches or not, augmentation or not;
- YOLOv4 at 416 px with YOLOv4's anchors, and the seed's stride-4 variant with its anchors
  (``configs/yolov4.py:416`` and ``:stride4``).

Each row trains with ``python -m acne_jax.train`` in its own workdir under ``--out`` and is scored
on the test split's detections (``detections_test.json``): the paper's 11-threshold mAP and mean
IoU of matched detections at IoU 0.21 (:mod:`acne_jax.evaluation.threshold_map`, Tables 3-4), COCO
mAP@50 / mAP@75 (Table 5) and the DeepLesion literature's class-agnostic FROC (sensitivity at 4 FP
per image and the mean over 0.5-4). A finished row writes ``result.json`` and is skipped when run
again, so the script resumes.

On the embedded synthetic CT set (the default: no download) every row runs at a 2-core CPU budget,
stated in the table: the thin CPU models of the configs, ``--steps`` steps of batch ``--batch``,
the slices at their own 512 px. The paper's COCO weights cannot be downloaded here, so a detector
trained on the embedded synthetic acne set stands in for them (``train.init_from``), and its
backbone stands in for ImageNet's (``model.backbone.pretrained``); it is trained first, once.
With ``--data_dir`` (a built ``deep_lesion`` data set) the rows run with the configs' full settings
(the paper's epochs and batches; a GPU's work), the COCO rows reading ``workdir/torchvision_coco``
(see ``configs/deeplesion_benchmark.py``). The paper's YOLOv4 rows start from darknet's COCO
backbone: ``--yolo_weights=yolov4.conv.137`` gives it to both YOLO rows (``model.pretrained``, with
darknet's input scale, mean 0 and std 255); without it they train from scratch.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

FASTER_RCNN_ROWS = (1, 2, 3, 4, 5, 6)
YOLO_ROWS = ("416", "stride4")
STAND_IN = "coco_stand_in"


def rows(data: str):
  """``(name, label, config argument, pretrained)`` of every row."""
  out = []
  for row in FASTER_RCNN_ROWS:
    from configs import deeplesion_benchmark

    pretrained, optimizer, balanced, augment = deeplesion_benchmark.TABLE_2[row]
    label = (f"Faster R-CNN #{row}: {'COCO' if pretrained else 'ImageNet'}, {optimizer}, "
             f"{'balanced' if balanced else 'plain'}{', augmented' if augment else ''}")
    out.append((f"frcnn_{row}", label, f"configs/deeplesion_benchmark.py:{row},{data}", pretrained))
  for variant in YOLO_ROWS:
    label = "YOLOv4 416 px" if variant == "416" else "YOLOv4 stride 4, seed anchors"
    out.append((f"yolo_{variant}", label, f"configs/yolov4.py:{variant},{data}", False))
  return out


def score(workdir: str) -> dict:
  """The paper's metrics of a run's test detections (module docstring)."""
  from acne_jax.evaluation import coco_metrics, threshold_map

  with open(os.path.join(workdir, "ground_truth_test.json")) as f:
    gt = json.load(f)
  with open(os.path.join(workdir, "detections_test.json")) as f:
    dets = json.load(f)
  seed = threshold_map.evaluate(gt, dets, iou=threshold_map.SEED_IOU)
  coco = coco_metrics.evaluate(gt, dets, max_dets=(100,))
  froc = coco_metrics.froc(gt, dets, iou=0.5, class_agnostic=True, definition="deeplesion")
  return {"mAP@0.21": seed["mAP"], "mean_IoU@0.21": seed["mean_iou"], "AP_per_type@0.21": seed["AP_per_class"],
          "mAP@50": coco.average_precision(0.5), "mAP@75": coco.average_precision(0.75),
          "FROC@4FP": froc["sens@4FP"], "FROC_mean@0.5-4FP": froc["sens_mean@0.5-4FP"]}


def _train(config_arg: str, workdir: str, overrides, log) -> float:
  command = [sys.executable, "-m", "acne_jax.train", f"--config={config_arg}", f"--workdir={workdir}", *overrides]
  log("  $ " + " ".join(command[1:]))
  start = time.perf_counter()
  with open(os.path.join(os.path.dirname(workdir), os.path.basename(workdir) + ".log"), "w") as out:
    result = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
  if result.returncode:
    raise RuntimeError(f"{config_arg} failed (exit {result.returncode}); see {workdir}.log")
  return time.perf_counter() - start


def cpu_overrides(args, kind: str):
  """The CPU budget of a row on the synthetic CT set (``kind``: ``frcnn``, ``yolo``, ``stand_in``)."""
  common = [f"--config.train.steps={args.steps}", f"--config.train.batch_size={args.batch}", "--config.train.epochs=0",
            f"--config.train.checkpoint_every={args.steps}", "--config.eval.calibration_split="]
  if args.quick:
    common += ["--config.data.ct_set=tiny"] if kind != "stand_in" else ["--config.data.builder_config=tiny"]
  if args.data_root:
    common.append(f"--config.data.data_dir={args.data_root}")
  if kind == "yolo":
    return common + [f"--config.optimizer.decay_steps=({int(0.8 * args.steps)},{int(0.9 * args.steps)})",
                     f"--config.optimizer.warmup_steps={min(50, args.steps // 4)}"]
  # The Faster R-CNN rows: torchvision's layout (FPN P2-P6, anchors 32-512, plain RPN head) at the
  # thin CPU size of the embedded sets (ResNet-18 of width 32, group norm, 64-channel FPN).
  thin = ["--config.model.backbone.depth=18", "--config.model.backbone.width=32", "--config.model.backbone.norm=gn",
          "--config.model.backbone.frozen_stages=-1", "--config.model.neck.channels=64",
          "--config.model.roi_head.box.fc_dim=256", "--config.model.rpn.train_nms_pre=1000",
          "--config.model.rpn.train_max_proposals=300", "--config.model.rpn.test_nms_pre=1000",
          "--config.model.rpn.test_max_proposals=300"]
  return common + thin


def yolo_overrides(weights: str):
  """The YOLOv4 rows' start: darknet's ``weights`` (``model.pretrained``) fed at darknet's input
  scale (RGB / 255), or nothing (from scratch) for ``""``."""
  if not weights:
    return []
  return [f"--config.model.pretrained={os.path.abspath(os.path.expanduser(weights))}", "--config.data.mean=0,0,0",
          "--config.data.std=255,255,255"]


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default="workdir/benchmark_deeplesion")
  parser.add_argument("--data_dir", default="", help="A built deep_lesion data set's TFDS folder: the real benchmark, full settings.")
  parser.add_argument("--steps", type=int, default=600, help="Steps per row on the synthetic CT set (CPU budget).")
  parser.add_argument("--batch", type=int, default=2, help="Batch per step on the synthetic CT set.")
  parser.add_argument("--rows", default="", help="Comma-separated row names to run (default: all).")
  parser.add_argument("--quick", action="store_true", help="Smoke run: the tiny sets, --steps 2.")
  parser.add_argument("--markdown", default="", help="Append the table to this file (e.g. BENCHMARKS.md).")
  parser.add_argument("--yolo_weights", default="", help="darknet's yolov4.conv.137 (or yolov4.weights): the YOLOv4 rows "
                      "start from it as the paper's; default: from scratch.")
  parser.add_argument("--data_root", default="", help=argparse.SUPPRESS)  # tests: where the embedded sets live
  args = parser.parse_args(argv)
  if args.quick:
    args.steps = 2
  real = bool(args.data_dir)
  data = "deep_lesion" if real else "synthetic_ct"
  args.out = os.path.abspath(args.out)
  os.makedirs(args.out, exist_ok=True)
  log = lambda text: print(text, flush=True)  # noqa: E731
  if args.yolo_weights and not os.path.isfile(os.path.expanduser(args.yolo_weights)):
    log(f"error: --yolo_weights={args.yolo_weights} does not exist; download darknet's yolov4.conv.137 "
        f"(https://github.com/AlexeyAB/darknet/releases/download/darknet_yolo_v3_optimal/yolov4.conv.137) or leave the "
        f"option out to train the YOLOv4 rows from scratch.")
    return 2
  wanted = set(filter(None, args.rows.split(",")))
  selected = [r for r in rows(data) if not wanted or r[0] in wanted]
  stand_in = os.path.join(os.path.abspath(args.out), STAND_IN)
  if not real and any(r[3] or not r[0].startswith("yolo") for r in selected) and not os.path.exists(os.path.join(stand_in, "done")):
    log(f"training the COCO stand-in (the embedded synthetic acne set, {args.steps} steps)")
    _train("configs/deeplesion_benchmark.py:1,synthetic", stand_in,
           cpu_overrides(args, "stand_in") + ["--config.train.init_from=", "--config.model.roi_head.num_classes=10"], log)
    open(os.path.join(stand_in, "done"), "w").close()
  results = []
  for name, label, config_arg, pretrained in selected:
    workdir = os.path.join(os.path.abspath(args.out), name)
    done = os.path.join(workdir, "result.json")
    if os.path.exists(done):
      with open(done) as f:
        results.append(json.load(f))
      log(f"{label}: done before")
      continue
    log(f"{label}")
    overrides = []
    if name.startswith("yolo"):
      overrides += yolo_overrides(args.yolo_weights)
      if real and not args.yolo_weights:
        log("  (from scratch: the paper's YOLOv4 starts from darknet's yolov4.conv.137; see --yolo_weights)")
    if real:
      overrides.append(f"--config.data.data_dir={args.data_dir}")
    else:
      overrides += cpu_overrides(args, "yolo" if name.startswith("yolo") else "frcnn")
      if not name.startswith("yolo"):
        overrides += ([f"--config.train.init_from={stand_in}", "--config.model.backbone.pretrained="] if pretrained
                      else ["--config.train.init_from=", f"--config.model.backbone.pretrained={stand_in}"])
    seconds = _train(config_arg, workdir, overrides, log)
    result = {"name": name, "label": label, "config": config_arg, "train_seconds": seconds, **score(workdir)}
    with open(done, "w") as f:
      json.dump(result, f, indent=2)
    results.append(result)
  table = format_table(results, args, data)
  log(table)
  if args.markdown:
    with open(args.markdown, "a") as f:
      f.write("\n" + table + "\n")
  return 0


def format_table(results, args, data: str) -> str:
  def pct(value):
    return "-" if value is None else f"{100 * value:.1f}"

  budget = ("the configs' full settings" if data == "deep_lesion"
            else f"{args.steps} steps of batch {args.batch} per row, thin CPU models, 512 px")
  budget += f"; YOLOv4 from {os.path.basename(args.yolo_weights)}" if args.yolo_weights else "; YOLOv4 from scratch"
  lines = [f"DeepLesion benchmark rows on {data} ({budget}); {datetime.date.today()}, {platform.machine()}, "
           f"{os.cpu_count()} CPU cores; `python scripts/benchmark_deeplesion.py {' '.join(sys.argv[1:])}`", "",
           "| row | mAP@0.21 | mean IoU | mAP@50 | mAP@75 | FROC @4 FP | FROC mean 0.5-4 | train s |",
           "|---|---:|---:|---:|---:|---:|---:|---:|"]
  for r in results:
    lines.append(f"| {r['label']} | {pct(r['mAP@0.21'])} | {pct(r['mean_IoU@0.21'])} | {pct(r['mAP@50'])} | "
                 f"{pct(r['mAP@75'])} | {pct(r['FROC@4FP'])} | {pct(r['FROC_mean@0.5-4FP'])} | {r['train_seconds']:.0f} |")
  return "\n".join(lines)


if __name__ == "__main__":
  sys.exit(main())
