"""Re-evaluate a trained detector: ``python -m acne_jax.evaluate --config=configs/sadh.py --workdir=DIR``.

Restores the newest checkpoint in ``DIR`` (or ``--step``), runs the model over the evaluation
split, prints AP/AR at ``eval.iou`` with ``eval.max_dets`` detections (overall and per size
bucket) and the proposal recall AR@100/300/1000, and writes ``detections_<split>.json`` (COCO
results) and ``eval_<split>.json`` (the metrics) into ``DIR``. Config overrides work as for
training, e.g. ``--config.eval.max_dets=300`` or ``--config.model.test_max_proposals=1000``.
"""

from __future__ import annotations

import json
import os
import sys

import jax
import ml_collections
import optax

from acne_jax import train
from acne_jax.data import datasets
from acne_jax.evaluation import coco_metrics
from acne_jax.evaluation import proposals as proposal_metrics
from acne_jax.models.detector import TwoStageDetector, spec_from_config
from acne_jax.training.checkpoint import Checkpointer
from acne_jax.training import optim


def restore_variables(config: ml_collections.ConfigDict, workdir: str, step=None):
  """``({"params", "batch_stats"}, step)`` from the checkpoints in ``workdir``."""
  checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"))
  if checkpointer.latest_step() is None:
    raise FileNotFoundError(f"no checkpoint in {workdir}/checkpoints; train first with python -m acne_jax.train --workdir={workdir}.")
  spec = spec_from_config(config.model)
  model = TwoStageDetector(spec, train=True)
  # The optimiser's state has the same structure whatever its hyper-parameters.
  opt = train.optimizer_config(config, per_epoch=1)
  abstract_params = jax.eval_shape(lambda k: train.create_state(model, optax.identity(), k, config.data.image_size, config.data.max_boxes, 1), jax.random.key(0))["params"]
  frozen = optim.frozen_backbone_predicate(spec.frozen_stages) if spec.frozen_stages >= 0 else None
  tx, _ = optim.make_optimizer(opt, abstract_params, frozen)
  template = jax.eval_shape(lambda k: train.create_state(model, tx, k, config.data.image_size, config.data.max_boxes, 1), jax.random.key(0))
  sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  template = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), template)
  state, _, restored_step = checkpointer.restore(template, step)
  return {"params": state["params"], "batch_stats": state["batch_stats"]}, restored_step


def evaluate_workdir(config: ml_collections.ConfigDict, workdir: str, step=None, proposal_limits=(100, 300, 1000)):
  """Evaluates the checkpoint; returns the metrics dictionary (also written to the workdir)."""
  variables, step = restore_variables(config, workdir, step)
  _, eval_data, class_names = datasets.load(config.data)
  spec = spec_from_config(config.model)
  predict = jax.jit(train.make_predict(TwoStageDetector(spec, train=False), config.data.mean, config.data.std))
  image_ids, detections, proposals = train.run_model(predict, variables, eval_data, config.eval.batch_size)
  results = coco_metrics.coco_results(image_ids, detections.boxes, detections.scores, detections.classes, detections.valid)
  metrics = coco_metrics.evaluate_detections(train.ground_truth(eval_data, class_names), results, config.eval.iou, config.eval.max_dets)
  gt_boxes = [b[v] for b, v in zip(eval_data.boxes, eval_data.valid)]
  proposal_boxes = [b[v] for b, v in zip(proposals.boxes, proposals.valid)]
  metrics.update(proposal_metrics.average_recall(gt_boxes, proposal_boxes, proposal_limits))
  split = config.data.eval_split
  with open(os.path.join(workdir, f"detections_{split}.json"), "w") as f:
    json.dump(results, f)
  with open(os.path.join(workdir, f"eval_{split}.json"), "w") as f:
    json.dump({"step": step, **metrics}, f, indent=2)
  print(f"{config.data.name}/{split}, checkpoint step {step}, {len(eval_data)} images:")
  print(train.format_metrics(metrics))
  return metrics


def main(argv=None) -> int:
  from absl import flags
  from ml_collections import config_flags

  flag_values = flags.FlagValues()
  config_flag = config_flags.DEFINE_config_file("config", None, "The config the model was trained with.", flag_values=flag_values, lock_config=True)
  flags.DEFINE_string("workdir", None, "Workdir of the training run.", flag_values=flag_values)
  flags.DEFINE_integer("step", None, "Checkpoint step (default: the newest).", flag_values=flag_values)
  argv = list(sys.argv if argv is None else argv)
  saved_argv, sys.argv = sys.argv, argv
  try:
    flag_values(argv)
  except (flags.Error, AttributeError, KeyError, ValueError, TypeError) as e:
    print(f"error: bad command line or config override: {train._unknown_override(argv) or e}", file=sys.stderr)
    return 2
  finally:
    sys.argv = saved_argv
  if config_flag.value is None or not flag_values.workdir:
    print("error: --config and --workdir are required, e.g. --config=configs/sadh.py --workdir=workdir/sadh", file=sys.stderr)
    return 2
  try:
    evaluate_workdir(config_flag.value, flag_values.workdir, flag_values.step)
  except (FileNotFoundError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
