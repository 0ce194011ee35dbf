"""Train a two-stage detector: ``python -m acne_jax.train --config=configs/sadh.py [--workdir=DIR]``.

The loop, in order: workdir check -> mesh -> input -> model and optimiser -> jit-compiled,
donated train step -> resume from the newest checkpoint -> steps (progress bar, JSONL and
TensorBoard metrics, periodic checkpoints, optional periodic evaluation) -> final checkpoint
and evaluation on the held-out split.

The batch is sharded over every device on a ``data`` mesh axis and the parameters replicated;
each device runs the model on its own images (``acne_jax.training.parallel``) and the devices
exchange only the gradient sum. The loop waits for the device only every ``train.log_every``
steps (and around checkpoints), where it checks every loss since the last wait.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import sys
import time
from typing import Any, Dict, Mapping, NamedTuple, Optional, Tuple

import flax.traverse_util
import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from acne_jax import cli, datasets
from acne_jax.data.loader import InMemoryDataset, steps_per_epoch
from acne_jax.evaluation import coco_metrics, operating_point
from acne_jax.evaluation import proposals as proposal_metrics
from acne_jax.paths import resolve
from acne_jax.models import factory
from acne_jax.models.detector import TwoStageDetector
from acne_jax.training import distributed, optim, parallel, preemption
from acne_jax.training.checkpoint import CheckpointError, Checkpointer
from acne_jax.training.writers import MetricWriter


class WorkdirError(RuntimeError):
  """The work directory cannot be used."""


def check_workdir(workdir: str) -> str:
  """Creates ``workdir`` and proves it writable before any compute is spent."""
  workdir = resolve(workdir)
  try:
    os.makedirs(workdir, exist_ok=True)
    probe = os.path.join(workdir, f".write_test_{os.getpid()}")
    with open(probe, "w") as f:
      f.write("ok")
    os.remove(probe)
  except OSError as e:
    raise WorkdirError(f"workdir {workdir} is not writable ({e.strerror}); pass --workdir=DIR with a directory you can write to.") from e
  return workdir


def _flatten_json(tree, prefix=""):
  if isinstance(tree, dict):
    out = {}
    for k, v in tree.items():
      out.update(_flatten_json(v, f"{prefix}{k}."))
    return out
  return {prefix[:-1]: tree}


# Model settings a run may resume with changed: the computation dtype, and YOLOv4's darknet file
# (model.pretrained, model.pretrained_layers: read when a run starts, never on resume).
RESUME_INDEPENDENT_KEYS = ("compute_dtype", "pretrained", "pretrained_layers")


def check_resumable(workdir: str, config: ml_collections.ConfigDict) -> None:
  """Refuses a workdir whose checkpoints belong to another model: a run resumes from the newest
  checkpoint in its workdir, and restoring a different model's weights fails deep inside orbax.

  Raises:
    WorkdirError: naming the model settings that differ from the saved ``config.json``.
  """
  saved = os.path.join(workdir, "config.json")
  if not (os.path.exists(saved) and _has_checkpoints(workdir)):
    return
  try:
    with open(saved) as f:
      old = _flatten_json(json.load(f).get("model", {}))
  except (OSError, ValueError):
    return  # unreadable: let the restore speak
  new = _flatten_json(json.loads(config.to_json_best_effort()).get("model", {}))
  differ = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k) and k not in RESUME_INDEPENDENT_KEYS)
  if differ:
    shown = ", ".join(f"model.{k}: {old.get(k)!r} there, {new.get(k)!r} now" for k in differ[:5])
    raise WorkdirError(f"workdir {workdir} holds checkpoints of a different model ({shown}{', ...' if len(differ) > 5 else ''}); "
                       "pass --workdir=DIR with a new folder to start this run, or the same config to resume that one.")


def default_workdir(config_argument: str) -> str:
  """``workdir/<config file stem>[_<argument>]``: ``configs/sadh.py`` -> ``workdir/sadh``,
  ``configs/sadh.py:acne_scu`` -> ``workdir/sadh_acne_scu`` (so data sets do not share one)."""
  path, _, arg = config_argument.partition(":")
  stem = os.path.splitext(os.path.basename(path))[0]
  return os.path.join("workdir", f"{stem}_{arg}" if arg and arg != "synthetic" else stem)


def total_steps(config: ml_collections.ConfigDict, num_train_images: int) -> Tuple[int, int]:
  """``(steps, steps_per_epoch)`` from ``train.steps`` or ``train.epochs``."""
  per_epoch = steps_per_epoch(num_train_images, config.train.batch_size)
  steps = config.train.steps or config.train.epochs * per_epoch
  if steps <= 0:
    raise ValueError("set train.steps or train.epochs to a positive number.")
  return int(steps), per_epoch


def optimizer_config(config: ml_collections.ConfigDict, per_epoch: int) -> Dict[str, Any]:
  o = config.optimizer
  decay_steps = list(o.decay_steps) or [int(e * per_epoch) for e in o.decay_epochs]
  return dict(name=o.get("name", "sgd"), lr=o.lr, momentum=o.momentum, betas=tuple(o.get("betas", optim.ADAM_BETAS)),
              eps=o.get("eps", optim.ADAM_EPS), weight_decay=o.weight_decay, warmup_steps=o.warmup_steps,
              warmup_ratio=o.warmup_ratio, decay_steps=decay_steps, decay_factor=o.decay_factor, grad_clip_norm=o.grad_clip_norm)


def normalize(images: jnp.ndarray, mean, std) -> jnp.ndarray:
  """uint8 ``[B, H, W, 3]`` -> float32 ``(x - mean) / std``."""
  return (images.astype(jnp.float32) - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)


def _gt_args(batch):
  return batch["boxes"], jnp.maximum(batch["labels"], 0), batch["valid"]


def _mask_kwargs(batch):
  return {"gt_masks": batch["masks"], "gt_mask_frames": batch["mask_frames"]} if "masks" in batch else {}


def create_state(model: TwoStageDetector, tx, key, image_size, max_boxes: int, batch_size: int):
  """Initialises ``{"step", "params", "batch_stats", "opt_state"}``."""
  images = jnp.zeros((batch_size, *image_size, 3), jnp.float32)
  boxes = jnp.tile(jnp.asarray([[0.0, 0.0, 16.0, 16.0]]), (batch_size, max_boxes, 1))
  labels = jnp.zeros((batch_size, max_boxes), jnp.int32)
  valid = jnp.zeros((batch_size, max_boxes), bool)
  masks = {}
  if factory.has_mask_head(model):  # no parameter depends on the bitmap size: 8 x 8 will do
    masks = {"gt_masks": jnp.zeros((batch_size, max_boxes, 8, 8), jnp.uint8),
             "gt_mask_frames": jnp.tile(jnp.asarray([0.0, 0.0, 1.0]), (batch_size, max_boxes, 1))}
  variables = model.init(key, images, boxes, labels, valid, key, method="losses", **masks)
  params = variables["params"]
  return {
      "step": jnp.asarray(0, jnp.int32),
      "params": params,
      "batch_stats": variables.get("batch_stats", {}),
      "opt_state": tx.init(params),
  }


# Initialisation runs once, for milliseconds, yet XLA's backend optimisations spend most of its
# compile time (15 of 18 s for the tiny test model on CPU: every parameter's threefry draw is
# optimised and vectorised). Level 0 compiles it in about 4 s; the values it draws differ from an
# optimised build's by at most one float32 ulp (the normal sampler's polynomial is fused
# differently), and it is the same program every run, so runs stay reproducible.
INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}


def initial_state(model: TwoStageDetector, tx, key, image_size, max_boxes: int, batch_size: int, out_shardings=None):
  """:func:`create_state` compiled once (see ``INIT_COMPILER_OPTIONS``) and run; ``out_shardings``
  as for ``jax.jit`` (``None``: the default device)."""
  init = jax.jit(lambda k: create_state(model, tx, k, image_size, max_boxes, batch_size),
                 **({} if out_shardings is None else {"out_shardings": out_shardings}))
  return init.lower(key).compile(compiler_options=INIT_COMPILER_OPTIONS)(key)


def make_streaming_loader(config: ml_collections.ConfigDict, source, per_process_batch: int):
  """The grain pipeline of ``config.data`` over ``source`` (this host's slice of every global
  batch), with its decoded records kept in RAM when ``data.cache_in_memory`` is set."""
  from acne_jax.data import pipeline

  d = config.data
  if d.cache_in_memory:
    source = pipeline.DecodedCache(source)
  transform = pipeline.ExampleTransform(
      image_size=tuple(d.image_size), max_boxes=d.max_boxes, drop_labels=tuple(d.drop_labels), crop_size=d.crop_size,
      crop_min_size=d.crop_min_size, mask_size=datasets.mask_size(d),
      resize_min_size=d.resize_min_size, resize_max_size=d.resize_max_size, resize_style=datasets.configured_style(d),
      augmentation=pipeline.Augmentation(hflip=d.hflip, vflip=d.vflip, rotate90=d.rotate90, brightness=d.brightness,
                                         rotate_degrees=float(d.get("rotate_degrees", 0.0)), zoom_crop=int(d.get("zoom_crop", 0))),
      mosaic=float(d.get("mosaic", 0.0)), mosaic_source=source if d.get("mosaic", 0.0) else None)
  balanced = None
  if d.class_balanced:
    balanced = (pipeline.record_classes(source, tuple(d.drop_labels)), factory.num_classes(config.model))
  return pipeline.StreamingLoader(source, per_process_batch, transform, seed=config.train.seed, worker_count=d.worker_count,
                                  class_balanced=balanced)


def make_train_step(model: TwoStageDetector, tx, schedule, mean, std, update_batch_stats: bool, mesh=None):
  """The train step ``(state, batch, key) -> (state, metrics)``; pure, for ``jax.jit``.

  With a ``mesh``, the losses and gradients are computed on each device's share of the batch
  (:func:`acne_jax.training.parallel.per_device`) and summed over the devices: the same numbers
  as on one device, with no activation leaving its device. The optimiser update runs replicated.
  """

  def gradients(params, batch_stats, batch, step_key):
    images = normalize(batch["image"], mean, std)

    def loss_fn(params):
      variables = {"params": params, "batch_stats": batch_stats}
      if update_batch_stats:
        losses, updates = model.apply(variables, images, *_gt_args(batch), step_key, method="losses", mutable=["batch_stats"],
                                      **_mask_kwargs(batch))
        new_batch_stats = updates["batch_stats"]
      else:
        losses = model.apply(variables, images, *_gt_args(batch), step_key, method="losses", **_mask_kwargs(batch))
        new_batch_stats = batch_stats
      return sum(losses.values()), (losses, new_batch_stats)

    (loss, (losses, new_batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    return loss, losses, new_batch_stats, grads

  if mesh is not None:
    local = gradients

    def gradients(params, batch_stats, batch, step_key):
      def on_device(params, batch_stats, batch, step_key):
        # Each device's losses are its images' share of the batch's (normalisers are batch-wide),
        # so the sums are the batch's losses and gradients. Batch statistics are synchronised.
        loss, losses, new_batch_stats, grads = local(params, batch_stats, batch, step_key)
        return parallel.sum_over_devices((loss, losses, grads)) + (new_batch_stats,)

      step = parallel.per_device(on_device, mesh, in_specs=(None, None, "batch", None), out_specs=None)
      loss, losses, grads, new_batch_stats = step(params, batch_stats, batch, step_key)
      return loss, losses, new_batch_stats, grads

  def train_step(state, batch, key):
    step_key = jax.random.fold_in(key, state["step"])
    loss, losses, batch_stats, grads = gradients(state["params"], state["batch_stats"], batch, step_key)
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    new_state = {
        "step": state["step"] + 1,
        "params": optax.apply_updates(state["params"], updates),
        "batch_stats": batch_stats,
        "opt_state": opt_state,
    }
    metrics = {"loss": loss, **losses, "lr": schedule(state["step"]), "grad_norm": optax.tree.norm(grads)}
    return new_state, metrics

  return train_step


def make_predict(model: TwoStageDetector, mean, std, mesh=None):
  """``(variables, uint8 images [B, H, W, 3]) -> Prediction``; with a ``mesh``, each device
  predicts its share of the batch (``B`` a multiple of the device count)."""

  def predict(variables, images):
    return model.apply(variables, normalize(images, mean, std), method="predict")

  if mesh is None:
    return predict
  return parallel.per_device(predict, mesh, in_specs=(None, "batch"), out_specs="batch")


class ModelOutputs(NamedTuple):
  """Predictions for a whole data set, in order, as NumPy arrays with a leading ``[N]`` axis."""

  image_ids: np.ndarray  # [N]
  detections: Any  # bbox_head.Detections
  proposals: Any  # proposals.Proposals
  masks: Optional[np.ndarray]  # [N, D, m, m] float16 mask probabilities, or None


def run_model(predict_fn, variables, dataset: InMemoryDataset, batch_size: int, batch_sharding=None) -> ModelOutputs:
  """Predictions for every image of ``dataset``, in order (masks too when the model makes them).
  With a ``batch_sharding``, batches are split over its devices (``batch_size`` rounded up to a
  multiple of their count; the padding images are dropped)."""
  if batch_sharding is not None:
    devices = batch_sharding.mesh.size
    batch_size = -(-batch_size // devices) * devices
  processes = jax.process_count()
  ids, detections, proposals, masks = [], [], [], []
  for batch in dataset.eval_batches(batch_size):
    if batch_sharding is None:
      images = batch["image"]
    else:  # each process puts its slice of the batch on its devices
      share = batch_size // processes
      mine = slice(jax.process_index() * share, (jax.process_index() + 1) * share)
      images = jax.make_array_from_process_local_data(batch_sharding, batch["image"][mine])
    output = predict_fn(variables, images)
    # Several processes: every one receives the whole batch's predictions (one gather per batch).
    prediction = multihost_utils.process_allgather(output, tiled=True) if processes > 1 else jax.device_get(output)
    keep = batch["image_valid"]
    ids.append(batch["image_id"][keep])
    detections.append(jax.tree_util.tree_map(lambda x: x[keep], prediction.detections))
    proposals.append(jax.tree_util.tree_map(lambda x: x[keep], prediction.proposals))
    if getattr(prediction, "masks", None) is not None:
      masks.append(np.asarray(prediction.masks[keep], np.float16))
  concat = lambda *xs: np.concatenate(xs)
  return ModelOutputs(np.concatenate(ids), jax.tree_util.tree_map(concat, *detections), jax.tree_util.tree_map(concat, *proposals),
                      np.concatenate(masks) if masks else None)


def ground_truth(dataset: InMemoryDataset, class_names):
  """COCO ground truth of ``dataset`` (padding removed), in the original images' pixels (the
  boxes and sizes from before the resize when ``data.resize_*`` resized the data set)."""
  sizes, boxes, _, _ = dataset.ground_truth_geometry()
  return coco_metrics.coco_ground_truth(
      dataset.image_ids, sizes, [b[v] for b, v in zip(boxes, dataset.valid)],
      [l[v] for l, v in zip(dataset.labels, dataset.valid)], class_names)


def detection_results(outputs: ModelOutputs, dataset: InMemoryDataset):
  """COCO results of ``outputs`` (``run_model`` on ``dataset``), boxes in the original images'
  pixels: with a resize they are mapped back per image as torchvision's ``postprocess`` does
  (``InMemoryDataset.boxes_to_original``, from ``dataset.image_sizes`` and ``original_sizes``)."""
  d = outputs.detections
  return coco_metrics.coco_results(outputs.image_ids, dataset.boxes_to_original(d.boxes), d.scores, d.classes, d.valid)


def coco_evaluation(outputs: ModelOutputs, dataset: InMemoryDataset, config: ml_collections.ConfigDict, class_names):
  """``(metrics, ground truth, results)`` of a model's outputs on ``dataset``: box AP/AR at
  ``eval.iou`` and, when the model made masks and the data set has them, mask AP/AR
  (``mask_*``); ground truth and results are COCO dictionaries, with ``segmentation`` then,
  both in the original images' pixels when the data set was resized."""
  d = outputs.detections
  results = detection_results(outputs, dataset)
  gt = ground_truth(dataset, class_names)
  metrics = coco_metrics.evaluate_detections(gt, results, iou=config.eval.iou, max_dets=config.eval.max_dets)
  metrics.update(froc_metrics(gt, results, config))
  if outputs.masks is not None and dataset.masks is not None:
    from acne_jax.evaluation import masks as mask_eval

    # Box-relative masks: pasted over the mapped-back boxes into the original images.
    gt_sizes, _, gt_masks, gt_frames = dataset.ground_truth_geometry()
    gt = mask_eval.ground_truth_with_masks(gt, gt_masks, gt_frames, dataset.valid, gt_sizes)
    probabilities = [mask.astype(np.float32) for image_masks, valid in zip(outputs.masks, d.valid) for mask in image_masks[valid]]
    sizes = {int(i): s for i, s in zip(dataset.image_ids, gt_sizes)}
    results = mask_eval.results_with_masks(results, probabilities, sizes, factory.mask_threshold(config.model))
    metrics.update(mask_eval.segm_metrics(gt, results, config.eval.iou, config.eval.max_dets))
  return metrics, gt, results


def froc_definition(config: ml_collections.ConfigDict) -> str:
  """``eval.froc_definition`` (``""``: none), checked: a FROC definition of ``coco_metrics``."""
  definition = getattr(config.eval, "froc_definition", "")
  if definition and definition not in coco_metrics.FROC_DEFINITIONS:
    raise ValueError(f"eval.froc_definition={definition!r}: choose {', '.join(map(repr, coco_metrics.FROC_DEFINITIONS))} "
                     f"or '' (no FROC).")
  return definition


def froc_metrics(gt, results, config: ml_collections.ConfigDict) -> Dict[str, float]:
  """The FROC of ``eval.froc_definition`` (``{}`` for ``""``) at ``eval.iou`` with every detection,
  class-agnostic when ``eval.froc_class_agnostic``, as scalars: ``{"froc_sens@0.5FP", ...,
  "froc_sens@16FP", "froc_sens_mean@0.5-4FP", "froc_sens_mean@0.5-8FP"}`` (``coco_metrics.froc``)."""
  definition = froc_definition(config)
  if not definition:
    return {}
  class_agnostic = bool(getattr(config.eval, "froc_class_agnostic", False))
  values = coco_metrics.froc(gt, results, iou=config.eval.iou, class_agnostic=class_agnostic, definition=definition)
  return {f"froc_{k}": v for k, v in values.items()}


def proposal_recall(outputs: ModelOutputs, dataset: InMemoryDataset, limits=(100, 300, 1000)) -> Dict[str, float]:
  """Proposal AR@k (COCO IoUs 0.5:0.95, overall and per size bucket) of the RPN's proposals,
  in the (resized) pixels the model saw: ``{"AR@100", "AR_s@100", ...}``."""
  gt_boxes = [b[v] for b, v in zip(dataset.boxes, dataset.valid)]
  proposal_boxes = [b[v] for b, v in zip(outputs.proposals.boxes, outputs.proposals.valid)]
  return proposal_metrics.average_recall(gt_boxes, proposal_boxes, limits)


def evaluate(predict_fn, variables, dataset: InMemoryDataset, config: ml_collections.ConfigDict, class_names, batch_sharding=None):
  """Runs the model over ``dataset``; returns ``(metrics, COCO ground truth, COCO results)``."""
  outputs = run_model(predict_fn, variables, dataset, config.eval.batch_size, batch_sharding)
  return coco_evaluation(outputs, dataset, config, class_names)


def calibrate_counting(predict_fn, variables, config: ml_collections.ConfigDict, class_names, batch_sharding=None):
  """The counting operating point (``operating_point.calibrate``) on ``eval.calibration_split``,
  or ``None`` when that is ``""``."""
  split = config.eval.calibration_split
  if not split:
    return None
  dataset = datasets.load_split_by_name(config.data, split)
  outputs = run_model(predict_fn, variables, dataset, config.eval.batch_size, batch_sharding)
  results = detection_results(outputs, dataset)
  return {"split": split, **operating_point.calibrate(ground_truth(dataset, class_names), results, config.eval.iou)}


def write_coco_pair(workdir: str, split: str, gt, results) -> None:
  """``ground_truth_<split>.json`` (COCO instances) and ``detections_<split>.json`` (COCO
  results) in ``workdir``: the evaluation's inputs, for ``evaluate --gt --dets`` or pycocotools."""
  for name, obj in ((f"ground_truth_{split}.json", gt), (f"detections_{split}.json", results)):
    with open(os.path.join(workdir, name), "w") as f:
      json.dump(obj, f)


def format_metrics(metrics: Mapping[str, float]) -> str:
  return "  ".join(f"{k} {v:.4f}" for k, v in metrics.items())


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, show_progress: bool = True) -> Dict[str, float]:
  """Trains (resuming from ``workdir`` if it holds checkpoints), evaluates, returns the metrics."""
  workdir = check_workdir(workdir)
  check_resumable(workdir, config)
  froc_definition(config)  # a mistyped eval.froc_definition fails now, not after training
  pretrained_parts = _pretrained_parts(config)
  pretrained = pretrained_parts["backbone"]
  if pretrained and not os.path.isfile(resolve(pretrained)) and not os.path.isdir(resolve(pretrained)):  # before any data is read
    from acne_jax.interop import torch as interop

    raise FileNotFoundError(interop.pretrained_missing_message(resolve(pretrained), config.model.backbone.depth))
  for key, value in (("model.neck.pretrained", pretrained_parts["neck"]),
                     ("model.roi_head.box.pretrained", pretrained_parts["box"]),
                     ("train.init_from", config.train.get("init_from", ""))):
    if value and not os.path.isdir(resolve(value)):
      hint = (" (a torchvision detector .pth becomes one with python -m acne_jax.convert --from=torchvision)"
              if key == "train.init_from" else "")
      raise FileNotFoundError(f"{key}: {resolve(value)} is not a directory; give an acne_jax run's workdir{hint}, or '' to "
                              f"train that part from scratch.")
  check_input_sides(config)  # a YOLOv4 test size it cannot read fails now, not after training
  darknet_file = _darknet_weights(config)
  if darknet_file and not _has_checkpoints(workdir):  # its size against the model, before any data is read
    from acne_jax.interop import darknet

    model_spec = factory.spec(config.model)
    darknet.plan(darknet_file, model_spec, model_spec.pretrained_layers)
  primary = distributed.is_primary()  # with several processes, the first writes the files
  if primary:
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=2))

  mesh = parallel.make_mesh()
  num_devices = mesh.devices.size
  batch_size = config.train.batch_size
  if batch_size % num_devices:
    raise ValueError(f"train.batch_size={batch_size} must be a multiple of the {num_devices} devices.")
  replicated, batch_sharding = parallel.replicated(mesh), parallel.batch_sharded(mesh)

  from acne_jax.data import pipeline

  pipeline.check_options(config.data)  # before any data is built or read
  train_source, class_names = datasets.source(config.data, config.data.train_split, "data.train_split")
  eval_data, _ = datasets.load_eval_split(config.data)
  steps, per_epoch = total_steps(config, len(train_source))

  model = factory.build(config.model, train=True)
  eval_model = factory.build(config.model, train=False)
  key = jax.random.key(config.train.seed)
  init_key, train_key = jax.random.split(key)

  # The optimiser mask needs the parameter tree; eval_shape gives it without computing anything.
  abstract_params = jax.eval_shape(
      lambda k: create_state(model, optax.identity(), k, config.data.image_size, config.data.max_boxes, num_devices), init_key)["params"]
  tx, schedule = optim.make_optimizer(optimizer_config(config, per_epoch), abstract_params, factory.frozen_predicate(model))
  state = initial_state(model, tx, init_key, config.data.image_size, config.data.max_boxes, num_devices, replicated)

  checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"), config.train.keep_checkpoints)
  start_step = 0
  meta = {}
  if checkpointer.latest_step() is not None:
    state, meta, start_step = checkpointer.restore(state)
    print(f"resumed from step {start_step} in {workdir}", flush=True)
  else:
    init_from = config.train.get("init_from", "")
    if init_from:  # every layer but the class-specific predictors; the parts named below override it
      state = load_pretrained_part(state, init_from, INIT_FROM_PARTS, replicated, config_key="train.init_from")
      print(f"backbone, neck, RPN and box head's shared layers initialised from {resolve(init_from)}", flush=True)
    # Parts taken from acne_jax runs: one checkpoint read per run named.
    from_runs: Dict[str, list] = {}
    if pretrained and os.path.isdir(resolve(pretrained)):
      from_runs.setdefault(pretrained, []).append("backbone")
    elif pretrained:
      state = load_pretrained_backbone(state, pretrained, replicated)
    if pretrained_parts["neck"]:
      from_runs.setdefault(pretrained_parts["neck"], []).append("neck")
    if pretrained_parts["box"]:
      from_runs.setdefault(pretrained_parts["box"], []).extend(BOX_HEAD_SHARED_LAYERS)
    for run_dir, parts in from_runs.items():
      state = load_pretrained_part(state, run_dir, tuple(parts), replicated)
    for name, path in (("backbone", pretrained), ("neck", pretrained_parts["neck"]),
                       ("box head's shared layers", pretrained_parts["box"])):
      if path:
        print(f"{name} initialised from {resolve(path)}", flush=True)
    if darknet_file:
      state = load_darknet_weights(state, config, replicated)

  # The input state is donated: a state due for a checkpoint is copied first (see the loop).
  train_step = jax.jit(
      make_train_step(model, tx, schedule, config.data.mean, config.data.std, factory.updates_batch_stats(model), mesh),
      in_shardings=(replicated, batch_sharding, replicated), out_shardings=(replicated, replicated), donate_argnums=0)
  predict = jax.jit(make_predict(eval_model, config.data.mean, config.data.std, mesh))

  writer = MetricWriter(workdir, enabled=primary)
  loader = make_streaming_loader(config, train_source, batch_size // jax.process_count())
  if meta.get("data_state"):
    loader.set_state(meta["data_state"])
  data_state = loader.get_state

  def global_batch():
    local = next(loader)
    keys = ("image", "boxes", "labels", "valid") + (("masks", "mask_frames") if "masks" in local else ())
    return {k: jax.make_array_from_process_local_data(batch_sharding, local[k]) for k in keys}

  last_saved = checkpointer.latest_step()
  progress = _progress(start_step, steps, show_progress and primary)
  # The host waits for the device only at a sync: after the first step (its time is the compile),
  # every log_every steps, at the end, before an evaluation, and one step after a checkpoint falls
  # due. A sync fetches the metrics of every step since the last one and checks each loss. The
  # state after k updates is checkpointed only once the loss computed on it (step k + 1's) is known
  # finite, so it is held (one on-device copy) until that step's sync; otherwise each step donates
  # its input state to its output.
  pending = []  # (step, metrics on the device) since the last sync
  held = None  # (updates, copy of the state after them, its input position), awaiting a sync
  interval_start = time.perf_counter()
  # SIGTERM / SIGINT: the state of the next step boundary is held and checkpointed like a due
  # checkpoint (once the following step's loss is known finite), then the run stops (Preempted).
  with preemption.StopOnSignal() as stop:
    # Step numbers count updates: step k computes its loss on the state after k - 1 updates.
    for completed in range(start_step, steps):
      step = completed + 1
      position = data_state()  # the input position of `state`, saved with it
      if stop.requested and completed == last_saved:  # nothing new since the newest checkpoint
        _stop_on_signal(stop, checkpointer, writer, progress)
      if stop.requested or (completed > start_step and completed % config.train.checkpoint_every == 0):
        held = (completed, jax.tree_util.tree_map(jnp.copy, state), position)
      state, metrics = train_step(state, global_batch(), train_key)
      pending.append((step, metrics))
      if progress is not None:
        progress.update(1)
      evaluate_now = bool(config.eval.every_steps) and step % config.eval.every_steps == 0 and step != steps
      if not (held or evaluate_now or step == start_step + 1 or step % config.train.log_every == 0 or step == steps):
        continue
      fetched = fetch_metrics(pending)
      for (pending_step, _), values in zip(pending, fetched):
        if not math.isfinite(values["loss"]):
          checkpointer.wait()
          kept = (f"the last good checkpoint (step {last_saved}) is kept in {workdir}/checkpoints" if last_saved is not None
                  else "no checkpoint had been written yet")
          raise FloatingPointError(
              f"non-finite loss ({values['loss']}) at step {pending_step}; training stopped and {kept}. Lower optimizer.lr "
              f"or set optimizer.grad_clip_norm. Losses: {values}")
      step_time = (time.perf_counter() - interval_start) / len(pending)
      interval_start = time.perf_counter()
      if held is not None:  # the loss on the held state (this step's) is finite: it is good
        updates, held_state, held_position = held
        checkpointer.save(updates, held_state, {"step": updates, "seed": config.train.seed, "data_state": held_position})
        last_saved, held = updates, None
      for (pending_step, _), values in zip(pending, fetched):
        if pending_step % config.train.log_every == 0 or pending_step == steps:
          writer.write(pending_step, {**values, "step_time": step_time})
      pending = []
      if progress is not None:
        latest = fetched[-1]
        progress.set_postfix_str(f"loss {latest['loss']:.3f} lr {latest['lr']:.2e} {step_time:.2f}s/step")
      if stop.requested and last_saved == completed:  # the state held at the signal is saved
        _stop_on_signal(stop, checkpointer, writer, progress)
      if evaluate_now:
        metrics_eval, _, _ = evaluate(predict, _eval_variables(state), eval_data, config, class_names, batch_sharding)
        writer.write(step, {f"eval/{k}": v for k, v in metrics_eval.items()})
        _print(progress, f"step {step}: {format_metrics(metrics_eval)}")
  if progress is not None:
    progress.close()
  if start_step < steps:
    # The final checkpoint carries the score thresholds that `predict` counts lesions at.
    counting = calibrate_counting(predict, _eval_variables(state), config, class_names, batch_sharding)
    if counting is not None and primary:
      print(operating_point.describe(counting, counting["split"]), flush=True)
      with open(os.path.join(workdir, "operating_point.json"), "w") as f:
        json.dump({"step": steps, **counting}, f, indent=2)
    checkpointer.save(steps, state, {"step": steps, "seed": config.train.seed, "data_state": data_state(),
                                     "operating_point": counting})
  checkpointer.close()

  outputs = run_model(predict, _eval_variables(state), eval_data, config.eval.batch_size, batch_sharding)
  final_metrics, gt, results = coco_evaluation(outputs, eval_data, config, class_names)
  final_metrics.update(proposal_recall(outputs, eval_data))
  writer.write(steps, {f"eval/{k}": v for k, v in final_metrics.items()})
  writer.close()
  split = config.data.eval_split
  if primary:
    write_coco_pair(workdir, split, gt, results)
    with open(os.path.join(workdir, f"metrics_{split}.json"), "w") as f:
      json.dump({"step": steps, **final_metrics}, f, indent=2)
    print(f"evaluation on {config.data.name}/{split} ({len(eval_data)} images) after {steps} steps:", flush=True)
    print(format_metrics(final_metrics), flush=True)
  return final_metrics


def _pretrained_parts(config) -> Dict[str, str]:
  """``{"backbone", "neck", "box"}``: the ``*.pretrained`` settings of the two-stage model ("" each
  for a model without them)."""
  if factory.model_type(config.model) != "two_stage":
    return {"backbone": "", "neck": "", "box": ""}
  return {"backbone": config.model.backbone.pretrained, "neck": config.model.neck.pretrained,
          "box": config.model.roi_head.box.pretrained}


def check_input_sides(config) -> None:
  """Refuses training (``data.image_size``) or test-time (``data.test_size``) inputs a YOLOv4
  cannot read: sides must be multiples of its coarsest stride, 32.

  Raises:
    ValueError: naming the setting and the nearest sides that work.
  """
  if factory.model_type(config.model) != "yolov4":
    return
  from acne_jax.data import resize

  settings = [("data.image_size", tuple(config.data.image_size))]
  if int(config.data.get("test_size", 0) or 0):
    settings.append(("data.test_size", resize.at_test_size(config.data)["image_size"]))
  for key, sides in settings:
    bad = [int(side) for side in sides if int(side) % 32]
    if bad:
      fixes = sorted({32 * (bad[0] // 32), 32 * -(-bad[0] // 32)} - {0})
      raise ValueError(f"{key}={sides if key == 'data.image_size' else sides[0]}: YOLOv4 reads inputs whose sides are "
                       f"multiples of 32 (its coarsest stride); use {' or '.join(map(str, fixes))}.")


def _darknet_weights(config) -> str:
  """YOLOv4's ``model.pretrained``: a darknet ``.weights`` file ("" for none, or a two-stage model)."""
  if factory.model_type(config.model) != "yolov4":
    return ""
  return config.model.get("pretrained", "")


def _has_checkpoints(workdir: str) -> bool:
  checkpoints = os.path.join(workdir, "checkpoints")
  return os.path.isdir(checkpoints) and bool(os.listdir(checkpoints))


def load_darknet_weights(state, config, sharding):
  """``state`` with the layers of YOLOv4's ``model.pretrained`` darknet file in place
  (``model.pretrained_layers``: all that fit, or the backbone); prints what loaded, what kept its
  initialisation, and a warning when ``data.mean`` / ``data.std`` are not darknet's 0 / 255."""
  from acne_jax.interop import darknet

  model_spec = factory.spec(config.model)
  variables, plan = darknet.load_variables({"params": state["params"], "batch_stats": state["batch_stats"]}, model_spec,
                                           config.model.pretrained, model_spec.pretrained_layers)
  for line in darknet.describe(plan):
    print(line, flush=True)
  warning = darknet.normalisation_warning(config.data.mean, config.data.std)
  if warning:
    print(warning, flush=True)
  return _put_variables(state, variables, sharding)


def _stop_on_signal(stop, checkpointer, writer, progress):
  """Ends a run stopped by SIGTERM / SIGINT once its checkpoint is written: raises Preempted."""
  checkpointer.close()
  writer.close()
  if progress is not None:
    progress.close()
  raise preemption.Preempted(stop.requested, checkpointer.latest_step(), checkpointer.directory)


def load_pretrained_backbone(state, path: str, sharding):
  """``state`` with its backbone replaced by pretrained weights (``model.backbone.pretrained``):
  a torchvision ImageNet ResNet checkpoint (a ``.pth`` file), or an acne_jax run (its workdir,
  whose newest checkpoint's backbone is taken: e.g. a backbone trained on the easy synthetic
  set, the ImageNet stand-in of ``scripts/reproduce_sadh.py``). The rest of the model and the
  optimiser state (zero momentum) are unchanged.

  Raises:
    FileNotFoundError: the run has no checkpoint.
    ValueError: the run's backbone is not this config's backbone (the first differing array is named).
  """
  if os.path.isdir(resolve(path)):
    return load_pretrained_part(state, path, "backbone", sharding)
  from acne_jax.interop import torch as interop

  variables = interop.load_pretrained_backbone({"params": state["params"], "batch_stats": state["batch_stats"]}, path)
  return _put_variables(state, variables, sharding)


# The box head's class-independent layers (``model.roi_head.box.pretrained``).
BOX_HEAD_SHARED_LAYERS = ("roi_head/box_head/fc1", "roi_head/box_head/fc2")
_PRETRAINED_KEYS = {"backbone": "model.backbone.pretrained", "neck": "model.neck.pretrained",
                    "roi_head": "model.roi_head.box.pretrained"}
# ``train.init_from``: a whole detector's class-independent layers (e.g. torchvision's COCO Faster
# R-CNN converted by ``python -m acne_jax.convert``), for fine-tuning on other classes.
INIT_FROM_PARTS = ("backbone", "neck", "rpn") + BOX_HEAD_SHARED_LAYERS


def load_pretrained_part(state, workdir: str, parts, sharding, config_key=None):
  """``state`` with the ``parts`` (one or a tuple of ``"backbone"``, ``"neck"``, or paths such as
  ``"roi_head/box_head/fc1"``) of an acne_jax run's newest checkpoint (``config_key``: the setting
  errors name, default the part's own ``*.pretrained``)."""
  variables = part_from_run({"params": state["params"], "batch_stats": state["batch_stats"]}, workdir, parts, config_key)
  return _put_variables(state, variables, sharding)


def _put_variables(state, variables, sharding):
  put = lambda tree: jax.tree_util.tree_map(lambda x: jax.device_put(jnp.asarray(x), sharding), tree)  # noqa: E731
  return {**state, "params": put(variables["params"]), "batch_stats": put(variables["batch_stats"])}


def part_from_run(variables, workdir: str, parts="backbone", config_key=None):
  """``variables`` (``{"params", "batch_stats"}``) with the ``parts`` subtrees (one or a tuple of
  ``"backbone"``, ``"neck"``, ``"rpn"``, or ``/`` paths into the parameters such as
  ``"roi_head/box_head/fc1"``) replaced by those of the newest checkpoint in ``workdir`` (an acne_jax
  training run), read once. Errors name ``config_key`` (default: the part's ``*.pretrained``)."""
  parts = (parts,) if isinstance(parts, str) else tuple(parts)
  key_of = lambda part: config_key or _PRETRAINED_KEYS[part.split("/")[0]]  # noqa: E731
  for part in parts:
    if not any(_subtree(variables[c], part) for c in ("params", "batch_stats")):
      raise ValueError(f"{key_of(part)}: this model has no {part} to load "
                       f"(model.roi_head.type decides the heads).")
  key = key_of(parts[0])
  directory = resolve(workdir)
  if os.path.isdir(os.path.join(directory, "checkpoints")):
    directory = os.path.join(directory, "checkpoints")
  checkpointer = Checkpointer(directory)
  if checkpointer.latest_step() is None:
    checkpointer.close()
    raise FileNotFoundError(f"{key}: {resolve(workdir)} holds no acne_jax checkpoint; give a finished run's workdir"
                            + (" or a torchvision .pth file." if parts == ("backbone",) else "."))
  try:  # the newest step's params and batch_stats only (its whole state for an older checkpoint)
    saved, _, step = checkpointer.restore_variables(checkpointer.latest_step())
  finally:
    checkpointer.close()
  out = {"params": variables["params"], "batch_stats": variables["batch_stats"]}
  for part in parts:
    key = key_of(part)
    for collection in ("params", "batch_stats"):
      ours = _subtree(out[collection], part)
      theirs = _subtree(saved.get(collection, {}), part)
      if not ours:
        continue
      ours_flat = flax.traverse_util.flatten_dict(ours, sep="/")
      theirs_flat = flax.traverse_util.flatten_dict(theirs or {}, sep="/")
      for name, value in ours_flat.items():
        if name not in theirs_flat or tuple(theirs_flat[name].shape) != tuple(value.shape):
          found = "missing" if name not in theirs_flat else f"shape {tuple(theirs_flat[name].shape)}"
          raise ValueError(f"{key}: the {part} of {resolve(workdir)} (step {step}) is not this config's {part}: "
                           f"{collection}/{part}/{name} is {found}, this model needs {tuple(value.shape)}. "
                           f"Pretrain with the same {key.rsplit('.', 1)[0] if config_key is None else 'model'} settings.")
      whole = flax.traverse_util.flatten_dict(out[collection], keep_empty_nodes=True, sep="/")
      whole.update({f"{part}/{name}": np.asarray(theirs_flat[name], dtype=value.dtype) for name, value in ours_flat.items()})
      out[collection] = flax.traverse_util.unflatten_dict(whole, sep="/")
  return out


def _subtree(tree, path: str):
  """The subtree of a nested dict at a ``/`` path, or None."""
  for name in path.split("/"):
    if not isinstance(tree, Mapping) or name not in tree:
      return None
    tree = tree[name]
  return tree


def fetch_metrics(pending) -> list:
  """The metrics of ``pending`` ``(step, metrics on the device)`` pairs as dicts of floats, in one
  transfer: the loop's only wait for the device between its syncs."""
  fetched = jax.device_get([metrics for _, metrics in pending])
  return [{k: float(v) for k, v in metrics.items()} for metrics in fetched]


def _eval_variables(state):
  return {"params": state["params"], "batch_stats": state["batch_stats"]}


def _progress(start, total, show):
  if not show:
    return None
  from tqdm import tqdm

  return tqdm(total=total, initial=start, dynamic_ncols=True, desc="train", file=sys.stdout, mininterval=1.0)


def _print(progress, text):
  if progress is not None:
    progress.write(text)
  else:
    print(text, flush=True)


def main(argv=None) -> int:
  from absl import flags
  from ml_collections import config_flags

  flag_values = flags.FlagValues()
  config_flag = config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/sadh.py or configs/sadh.py:acne_scu.", flag_values=flag_values, lock_config=True)
  flags.DEFINE_string("workdir", None, "Checkpoints, metrics and detections go here (default ./workdir/<config name>[_<data set>]).",
                      flag_values=flag_values)
  flags.DEFINE_string("coordinator_address", None, "Several processes: host:port of process 0 (acne_jax/training/distributed.py).",
                      flag_values=flag_values)
  flags.DEFINE_integer("num_processes", None, "Several processes: how many.", flag_values=flag_values)
  flags.DEFINE_integer("process_id", None, "Several processes: this one's index, 0 .. num_processes - 1.", flag_values=flag_values)
  argv = list(sys.argv if argv is None else argv)  # resume_command repeats them
  if cli.parse(flag_values, argv) is None:
    return 2
  if config_flag.value is None:
    print("error: --config is required, e.g. --config=configs/sadh.py", file=sys.stderr)
    return 2
  workdir = flag_values.workdir or default_workdir(flag_values["config"].config_filename)
  try:
    distributed.initialize(flag_values.coordinator_address, flag_values.num_processes, flag_values.process_id)
    train_and_evaluate(config_flag.value, workdir)
  except preemption.Preempted as e:
    print(f"{e}; resume with: {resume_command(argv, workdir)}", flush=True)
    return 0
  except (WorkdirError, datasets.DatasetNotFoundError, ValueError, FloatingPointError, CheckpointError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  return 0


def resume_command(argv, workdir: str) -> str:
  """The command line that continues a stopped run: the same arguments, with its workdir spelt out."""
  arguments = list(argv[1:])
  if not any(a == "--workdir" or a.startswith("--workdir=") for a in arguments):
    arguments.append(f"--workdir={workdir}")
  return "python -m acne_jax.train " + shlex.join(arguments)


if __name__ == "__main__":
  sys.exit(main())
