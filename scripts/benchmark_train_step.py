"""Training throughput of several configs side by side: the real jitted train step, images per second.

    python scripts/benchmark_train_step.py [--configs configs/sadh.py:acne_scu configs/cpm_rcnn.py:acne_scu]
        [--size 0] [--batch 0] [--boxes 64] [--repeats 5] [--markdown BENCHMARKS.md]

For each config: ``acne_jax.train.create_state`` and ``make_train_step`` (losses, gradients, SGD
update, exactly what ``python -m acne_jax.train`` runs), jitted, on random images of the config's
``data.image_size`` (or ``--size`` square) at its ``train.batch_size`` (or ``--batch``), with
``--boxes`` random lesions of 8-64 px per image in the config's padded ground truth. Backbone
weights are random (``backbone.pretrained`` is ignored: the time does not depend on them). The
time is the median of ``--repeats`` steps after compilation; the table gives each config's step
time, images/s and its ratio to the first config, measured in one run on one machine.

On a GPU machine the defaults answer "what does CPM R-CNN cost over SADH Faster R-CNN at the
paper's AcneSCU setting" (1024 x 1024 crops, batch 2).
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from acne_jax.testing import report  # noqa: E402


def load_config(argument: str):
  path, _, data = argument.partition(":")
  module = importlib.import_module(path.replace("/", ".").removesuffix(".py"))
  return module.get_config(data) if data else module.get_config()


def step_seconds(argument: str, size: int, batch: int, boxes: int, repeats: int):
  """``(seconds per step, batch, image size)`` of the config's train step."""
  from acne_jax import train
  from acne_jax.models.detector import TwoStageDetector, spec_from_config
  from acne_jax.training import optim

  config = load_config(argument)
  with config.unlocked():
    config.model.backbone.pretrained = ""
    if size:
      config.data.image_size = (size, size)
    if batch:
      config.train.batch_size = batch
  height, width = config.data.image_size
  batch = config.train.batch_size
  max_boxes = config.data.max_boxes
  model = TwoStageDetector(spec_from_config(config.model), train=True)
  opt = dict(config.optimizer.to_dict(), decay_steps=())
  abstract = jax.eval_shape(lambda k: train.create_state(model, optax.identity(), k, (height, width), max_boxes, batch),
                            jax.random.key(0))["params"]
  tx, schedule = optim.make_optimizer(opt, abstract)
  state = train.initial_state(model, tx, jax.random.key(0), (height, width), max_boxes, batch)
  step = jax.jit(train.make_train_step(model, tx, schedule, config.data.mean, config.data.std, config.model.backbone.norm == "bn"))
  rng = np.random.default_rng(0)
  n = min(boxes, max_boxes)
  xy = rng.uniform(0, [width - 64, height - 64], (batch, max_boxes, 2))
  wh = rng.uniform(8, 64, (batch, max_boxes, 2))
  data = {"image": jnp.asarray(rng.uniform(0, 255, (batch, height, width, 3)), jnp.float32),
          "boxes": jnp.asarray(np.concatenate([xy, xy + wh], -1), jnp.float32),
          "labels": jnp.asarray(rng.integers(0, config.model.roi_head.num_classes, (batch, max_boxes)), jnp.int32),
          "valid": jnp.asarray(np.arange(max_boxes)[None].repeat(batch, 0) < n)}
  holder = {"state": state}

  def run():
    holder["state"], metrics = step(holder["state"], data, jax.random.key(1))
    metrics["loss"].block_until_ready()

  return report.median_seconds(run, repeats), batch, (height, width)


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--configs", nargs="+", default=["configs/sadh.py:acne_scu", "configs/cpm_rcnn.py:acne_scu"])
  parser.add_argument("--size", type=int, default=0, help="square image side (0: the config's data.image_size)")
  parser.add_argument("--batch", type=int, default=0, help="images per step (0: the config's train.batch_size)")
  parser.add_argument("--boxes", type=int, default=64, help="valid ground-truth boxes per image")
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--markdown", default=None)
  args = parser.parse_args()
  rows = []
  for argument in args.configs:
    seconds, batch, size = step_seconds(argument, args.size, args.batch, args.boxes, args.repeats)
    rows.append((argument, seconds, batch, size))
    print(f"{argument}: {seconds:.3f} s/step, {batch / seconds:.2f} images/s ({batch} x {size[0]}x{size[1]})", flush=True)
  command = "python scripts/benchmark_train_step.py " + " ".join(a for a in sys.argv[1:] if a != "--markdown" and a != args.markdown)
  lines = [f"## Train-step throughput: {', '.join(a for a, *_ in rows)}\n",
           f"{datetime.date.today().isoformat()}, {report.machine_description()}, JAX {jax.__version__}.\n",
           f"Command: `{command.strip()}` (median of {args.repeats} jitted steps after compilation; "
           f"{args.boxes} ground-truth boxes per image).\n",
           "| config | batch x image | s / step | images / s | time vs first |", "|---|---|---:|---:|---:|"]
  for argument, seconds, batch, size in rows:
    lines.append(f"| `{argument}` | {batch} x {size[0]}x{size[1]} | {seconds:.3f} | {batch / seconds:.2f} | {seconds / rows[0][1]:.2f}x |")
  report.emit("\n".join(lines) + "\n", args.markdown)
  return 0


if __name__ == "__main__":
  sys.exit(main())
