"""Evaluate detections: a trained model's, or COCO files'.

Two modes, chosen by the flags given:

- ``python -m acne_jax.evaluate --config=configs/sadh.py --workdir=DIR`` re-evaluates a trained
  detector. Restores the newest checkpoint in ``DIR`` (or ``--step``), runs the model over the
  evaluation split, prints AP/AR at ``eval.iou`` with ``eval.max_dets`` detections (overall and
  per size bucket), the FROC when ``eval.froc_definition`` names one (``:deep_lesion`` configs)
  and the proposal recall AR@100/300/1000, and writes ``ground_truth_<split>.json`` and
  ``detections_<split>.json`` (COCO instances and results) and ``eval_<split>.json`` (the
  metrics) into ``DIR``. Config overrides work as for training, e.g.
  ``--config.eval.max_dets=300`` or ``--config.model.rpn.test_max_proposals=1000``.
- ``python -m acne_jax.evaluate --gt GT.json --dets DETS.json [--iou 0.5] [--max-dets 100]
  [--area box|annotation] [--out metrics.json]`` evaluates a COCO results file against a COCO
  instances file: AP/AR at ``--iou`` per size bucket, per-class AP, mAP@50/75, the 12 COCO
  statistics and FROC (``coco_metrics.full_metrics``); prints a table and writes the metrics as
  JSON. ``--froc [--class-agnostic] [--froc-definition=coco]`` reports only the FROC
  (``coco_metrics.froc``): sensitivity at 0.5-16 false positives per image and the means over
  0.5-4 (MULAN's) and 0.5-8, by the DeepLesion literature's definition unless told. Malformed
  input (bad JSON, unknown image or category ids, a bad bbox or score) is reported with the
  file and its first bad entry, exit code 1. Whole photographs: ``--gt`` may be LabelMe
  annotations (a file or a folder) and ``--dets`` ``predict``'s output folder
  (``acne_jax.evaluation.whole_image``), so sliced whole-image prediction has an AP too.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import jax
import ml_collections
import optax

from acne_jax import cli, train
from acne_jax import datasets
from acne_jax.evaluation import coco_metrics
from acne_jax.evaluation import whole_image
from acne_jax.models import factory
from acne_jax.paths import resolve
from acne_jax.training.checkpoint import Checkpointer


def restore(config: ml_collections.ConfigDict, workdir: str, step=None):
  """``({"params", "batch_stats"}, step, meta)`` from the checkpoints in ``workdir`` (relative or
  absolute); ``meta`` is the JSON saved beside the state (``operating_point`` in a final one).

  Only the checkpoint's inference variables are read (:meth:`Checkpointer.restore_variables`),
  checked against the shapes of ``config``'s model; the optimiser state is neither read nor
  needed. A checkpoint written before the variables were saved as their own item is read whole
  (train state and optimiser) and its variables taken from it."""
  workdir = resolve(workdir)
  directory = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(directory):  # checked first: the checkpoint manager would create the folder
    raise FileNotFoundError(f"no checkpoint in {directory}; train first with python -m acne_jax.train --workdir={workdir}.")
  checkpointer = Checkpointer(directory)
  if checkpointer.latest_step() is None:
    checkpointer.close()
    raise FileNotFoundError(f"no checkpoint in {workdir}/checkpoints; train first with python -m acne_jax.train --workdir={workdir}.")
  model = factory.build(config.model, train=True)
  abstract = jax.eval_shape(lambda k: train.create_state(model, optax.identity(), k, config.data.image_size, config.data.max_boxes, 1), jax.random.key(0))
  template = {"params": abstract["params"], "batch_stats": abstract["batch_stats"]}
  try:
    variables, meta, restored_step = checkpointer.restore_variables(step, template=template)
  finally:
    checkpointer.close()
  return variables, restored_step, meta


def restore_variables(config: ml_collections.ConfigDict, workdir: str, step=None):
  """``({"params", "batch_stats"}, step)``: :func:`restore` without the meta."""
  variables, restored_step, _ = restore(config, workdir, step)
  return variables, restored_step


def evaluate_workdir(config: ml_collections.ConfigDict, workdir: str, step=None, proposal_limits=(100, 300, 1000)):
  """Evaluates the checkpoint; returns the metrics dictionary (also written to the workdir)."""
  workdir = resolve(workdir)
  variables, step = restore_variables(config, workdir, step)
  eval_data, class_names = datasets.load_eval_split(config.data)  # the training split is not opened
  predict = jax.jit(train.make_predict(factory.build(config.model, train=False), config.data.mean, config.data.std))
  outputs = train.run_model(predict, variables, eval_data, config.eval.batch_size)
  metrics, gt, results = train.coco_evaluation(outputs, eval_data, config, class_names)
  metrics.update(train.proposal_recall(outputs, eval_data, proposal_limits))
  split = config.data.eval_split
  train.write_coco_pair(workdir, split, gt, results)
  with open(os.path.join(workdir, f"eval_{split}.json"), "w") as f:
    json.dump({"step": step, **metrics}, f, indent=2)
  print(f"{config.data.name}/{split}, checkpoint step {step}, {len(eval_data)} images:")
  print(train.format_metrics(metrics))
  return metrics


def _fmt(value: float) -> str:
  return "     -" if value < 0 else f"{value:.4f}"


def format_file_metrics(metrics, iou: float, max_dets: int) -> str:
  """A plain-text table of ``coco_metrics.full_metrics``' output."""
  tag = f"@{iou:g}"
  lines = [f"IoU {iou:g}, at most {max_dets} detections per image and category", "",
           f"{'':8s}{'all':>8s}{'small':>8s}{'medium':>8s}{'large':>8s}"]
  for kind in ("AP", "AR"):
    values = [metrics[f"{kind}{s}{tag}"] for s in ("", "_s", "_m", "_l")]
    lines.append(f"{kind + tag:8s}" + "".join(f"{_fmt(v):>8s}" for v in values))
  lines += ["", f"mAP@50 {_fmt(metrics['mAP@50'])}   mAP@75 {_fmt(metrics['mAP@75'])}", ""]
  lines.append("COCO (AP/AR over IoU 0.50:0.95 unless named):")
  names = list(metrics["coco"])
  lines.append("  " + "".join(f"{n:>8s}" for n in names))
  lines.append("  " + "".join(f"{_fmt(metrics['coco'][n]):>8s}" for n in names))
  lines += ["", f"Per-class AP{tag}:"]
  per_class = metrics[f"per_class_AP{tag}"]
  width = max([len(n) for n in per_class] + [5])
  lines += [f"  {name:{width}s}  {_fmt(value)}" for name, value in per_class.items()]
  if metrics.get("froc") is not None:
    lines += ["", format_froc(metrics["froc"])]
  return "\n".join(lines)


def format_froc(froc) -> str:
  """A plain-text table of ``coco_metrics.froc_entry``'s output: the sensitivity at each FP rate
  and the two means (0.5-4 FP per image, MULAN's; 0.5-8, ours)."""
  points = [k for k in froc if k.startswith("sens@")]
  means = [k for k in froc if k.startswith("sens_mean@")]
  kind = "class-agnostic" if froc["class_agnostic"] else "per class"
  reading = {"deeplesion": "DeepLesion/MULAN matching, step reading", "coco": "COCO one-to-one matching, linear reading"}
  return "\n".join([
      f"FROC, {froc['definition']} definition ({reading[froc['definition']]}), {kind}, IoU {froc['iou']:g}; "
      "sensitivity at average false positives per image:",
      "  " + "".join(f"{k[5:-2] + ' FP':>8s}" for k in points) + "".join(f"{'mean ' + k[10:-2]:>12s}" for k in means),
      "  " + "".join(f"{_fmt(froc[k]):>8s}" for k in points) + "".join(f"{_fmt(froc[k]):>12s}" for k in means)])


def evaluate_files(gt_path: str, dets_path: str, iou: float = 0.5, max_dets: int = 100, area_source: str = "box",
                   iou_type: str = "bbox", froc_definition: str = "deeplesion", class_agnostic: bool = False,
                   froc_only: bool = False, threshold_map: bool = False):
  """``coco_metrics.full_metrics`` of detections against ground truth (``froc_only``: only its
  ``"froc"`` entry, ``coco_metrics.froc_entry``); ``ValueError`` naming the file and its first
  bad entry on malformed input. ``froc_definition``, ``class_agnostic``: the FROC's (and the
  ``threshold_map``'s). ``threshold_map``: also the DeepLesion benchmark's 11-threshold mAP and
  mean matched IoU at ``iou`` (:mod:`acne_jax.evaluation.threshold_map`), as ``"threshold_map"``.

  ``gt_path``: a COCO instances file, a LabelMe file or a folder of LabelMe files;
  ``dets_path``: a COCO results file, or ``predict``'s output folder (or one of its
  ``*_detections.json``), matched to the annotated images by file stem
  (:mod:`acne_jax.evaluation.whole_image`).
  """
  ground_truth, notes = whole_image.load_ground_truth(gt_path)
  detections = whole_image.load_detections(dets_path, ground_truth)
  try:
    index, _ = coco_metrics.parse_ground_truth(ground_truth, area_source, iou_type)
  except coco_metrics.CocoFormatError as e:
    raise ValueError(f"{gt_path}: {e}") from None
  try:
    sizes = coco_metrics._image_sizes(ground_truth) if iou_type == "segm" else None
    coco_metrics.parse_results(detections, index, iou_type, sizes)
  except coco_metrics.CocoFormatError as e:
    raise ValueError(f"{dets_path}: {e}") from None
  if froc_only:
    metrics = {"froc": coco_metrics.froc_entry(ground_truth, detections, iou, froc_definition, class_agnostic,
                                               area_source=area_source)}
  else:
    metrics = coco_metrics.full_metrics(ground_truth, detections, iou=iou, max_dets=max_dets, area_source=area_source,
                                        iou_type=iou_type, froc_definition=froc_definition,
                                        froc_class_agnostic=class_agnostic)
  if threshold_map:
    from acne_jax.evaluation import threshold_map as threshold_map_lib

    metrics["threshold_map"] = threshold_map_lib.evaluate(ground_truth, detections, iou, class_agnostic=class_agnostic)
  summary = (f"{gt_path}: {len(index.image_ids)} images, {len(ground_truth['annotations'])} annotations, "
             f"{len(index.category_ids)} categories; {dets_path}: {len(detections)} detections")
  if notes:
    summary += "\n" + "\n".join(f"  note: {n}" for n in notes)
  return metrics, summary


def _positive_float(text: str) -> float:
  value = float(text)
  if not 0.0 < value <= 1.0:
    raise argparse.ArgumentTypeError(f"must be in (0, 1], not {text}")
  return value


def _positive_int(text: str) -> int:
  value = int(text)
  if value < 1:
    raise argparse.ArgumentTypeError(f"must be >= 1, not {text}")
  return value


def main_files(args) -> int:
  """The ``--gt/--dets`` mode (``args`` without the program name); returns the exit code."""
  parser = argparse.ArgumentParser(prog="python -m acne_jax.evaluate", description="Evaluate COCO-format detections against COCO ground truth.")
  parser.add_argument("--gt", required=True, help="COCO instances JSON (images, annotations, categories), or LabelMe: one "
                      "JSON file or a folder of them (whole-image annotations, e.g. AcneSCU's).")
  parser.add_argument("--dets", required=True, help="COCO results JSON: [{image_id, category_id, bbox: [x, y, w, h], score}, ...], "
                      "or predict's output folder (its <stem>_detections.json, matched to the annotated images by stem).")
  parser.add_argument("--iou", type=_positive_float, default=0.5, help="IoU threshold of AP/AR, per-class AP and FROC (default 0.5).")
  parser.add_argument("--max-dets", type=_positive_int, default=100, help="Detections kept per image and category (default 100).")
  parser.add_argument("--iou-type", choices=("bbox", "segm"), default="bbox",
                      help="Box IoU (default) or mask IoU on the 'segmentation' fields (COCO RLE or polygons), as "
                      "pycocotools' COCOeval(iouType=...).")
  parser.add_argument("--area", choices=("box", "annotation"), default=None,
                      help="Ground-truth area for the size buckets: box w*h or the annotation's 'area' (default: box "
                      "for bbox, annotation for segm, as pycocotools).")
  parser.add_argument("--froc", action="store_true",
                      help="Report only the FROC: sensitivity at 0.5, 1, 2, 4, 8 and 16 false positives per image and "
                      "the means over 0.5-4 (MULAN's) and 0.5-8, at --iou, with every detection (boxes only).")
  parser.add_argument("--froc-definition", choices=coco_metrics.FROC_DEFINITIONS, default="deeplesion",
                      help="deeplesion (default): the DeepLesion literature's (MULAN / 3DCE): a detection is a false "
                      "positive only if it has IoU >= --iou with no lesion of its image, finds every lesion it overlaps "
                      "so, and a second detection of a found lesion counts as neither; read as a step function. coco: "
                      "COCO's one-to-one matching (a second detection is a false positive), read linearly.")
  parser.add_argument("--class-agnostic", action="store_true",
                      help="FROC over lesion vs background, ignoring the categories (as the DeepLesion literature).")
  parser.add_argument("--threshold-map", action="store_true",
                      help="Also the DeepLesion benchmark paper's metrics at --iou (it uses 0.21): mAP over 11 "
                      "confidence thresholds and the mean IoU of true positives scoring >= 0.25 (boxes only; "
                      "--class-agnostic pools the categories).")
  parser.add_argument("--out", default=None, help="Write the metrics as JSON to this file.")
  try:
    parsed = parser.parse_args(args)
    if parsed.froc and parsed.iou_type != "bbox":
      parser.error("--froc needs boxes (--iou-type bbox)")
    if parsed.threshold_map and parsed.iou_type != "bbox":
      parser.error("--threshold-map needs boxes (--iou-type bbox)")
  except SystemExit as e:  # argparse has printed the usage error
    return int(e.code or 0)
  try:
    area = parsed.area or ("annotation" if parsed.iou_type == "segm" else "box")
    metrics, summary = evaluate_files(parsed.gt, parsed.dets, parsed.iou, parsed.max_dets, area, parsed.iou_type,
                                      parsed.froc_definition, parsed.class_agnostic, parsed.froc, parsed.threshold_map)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  print(summary)
  print(format_froc(metrics["froc"]) if parsed.froc else format_file_metrics(metrics, parsed.iou, parsed.max_dets))
  if "threshold_map" in metrics:
    from acne_jax.evaluation import threshold_map as threshold_map_lib

    print(threshold_map_lib.format_table(metrics["threshold_map"]))
  if parsed.out:
    if parsed.froc:
      settings = {"gt": parsed.gt, "dets": parsed.dets, "iou": parsed.iou, "area_source": area}
    else:
      settings = {"gt": parsed.gt, "dets": parsed.dets, "iou": parsed.iou, "max_dets": parsed.max_dets, "area_source": area,
                  "iou_type": parsed.iou_type}
    if "froc" in metrics:  # boxes only
      settings.update(froc_definition=parsed.froc_definition, class_agnostic=parsed.class_agnostic)
    try:
      with open(parsed.out, "w") as f:
        json.dump({**metrics, "settings": settings}, f, indent=2)
    except OSError as e:
      print(f"error: {parsed.out}: cannot write: {e.strerror or e}", file=sys.stderr)
      return 1
    print(f"wrote {parsed.out}")
  return 0


def _uses_files(args) -> bool:
  return any(a.split("=", 1)[0] in ("--gt", "--dets") for a in args)


def main(argv=None) -> int:
  argv = list(sys.argv if argv is None else argv)
  if _uses_files(argv[1:]):
    return main_files(argv[1:])
  return main_workdir(argv)


def main_workdir(argv) -> int:
  """The ``--config/--workdir`` mode (``argv`` with the program name); returns the exit code."""
  from absl import flags
  from ml_collections import config_flags

  flag_values = flags.FlagValues()
  config_flag = config_flags.DEFINE_config_file("config", None, "The config the model was trained with.", flag_values=flag_values, lock_config=True)
  flags.DEFINE_string("workdir", None, "Workdir of the training run.", flag_values=flag_values)
  flags.DEFINE_integer("step", None, "Checkpoint step (default: the newest).", flag_values=flag_values)
  if cli.parse(flag_values, argv) is None:
    return 2
  if config_flag.value is None or not flag_values.workdir:
    print("error: --config and --workdir are required, e.g. --config=configs/sadh.py --workdir=workdir/sadh "
          "(or --gt GT.json --dets DETS.json to evaluate COCO files)", file=sys.stderr)
    return 2
  try:
    evaluate_workdir(config_flag.value, flag_values.workdir, flag_values.step)
  except (FileNotFoundError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
