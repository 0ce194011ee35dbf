"""Two measurements for PyTorch users, each a ratio taken in one run on one machine.

    python scripts/benchmark_torch.py [--repeats 5] [--markdown BENCHMARKS.md]

1. **DCN backbone training step**: one jitted SGD step (losses, gradients, update) of the SADH
   Faster R-CNN of ``configs/sadh.py:acne_scu`` (ResNet-50, deformable convolutions in c3-c5,
   eval-mode BN) next to the same model with plain 3x3 convolutions, on ``--train-size``
   square images, batch 2.
2. **Converted torchvision detector, inference**: torchvision's ``fasterrcnn_resnet50_fpn`` (its
   C++ kernels, eval mode, ``torch.no_grad``) and our jitted model built from
   ``configs/torchvision_faster_rcnn.py`` with the converted weights, on the same
   ``--infer-height`` x ``--infer-width`` images, batch ``--infer-batch``; torchvision runs
   with torch's default intra-op threads (all cores), as a user would run it.

Times are medians of ``--repeats`` runs after a warm-up (for JAX, after compilation). With
``--markdown`` the results are appended to that file with the machine, date and command.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from acne_jax.testing import report  # noqa: E402


def train_step_time(deformable, size, repeats):
  from acne_jax.models.detector import TwoStageDetector, spec_from_config
  from configs import sadh

  config = sadh.get_config("acne_scu")
  with config.unlocked():
    config.model.backbone.pretrained = ""
    config.model.backbone.deformable_stages = (False, True, True, True) if deformable else (False,) * 4
  model = TwoStageDetector(spec_from_config(config.model), train=True)
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.normal(size=(2, size, size, 3)), jnp.float32)
  boxes = jnp.tile(jnp.asarray([[[40.0, 40.0, 90.0, 80.0], [120.0, 60.0, 150.0, 100.0]]]), (2, 1, 1))
  labels = jnp.zeros((2, 2), jnp.int32)
  valid = jnp.ones((2, 2), bool)
  key = jax.random.key(0)
  variables = model.init(key, images, boxes, labels, valid, key, method="losses")
  tx = optax.sgd(0.002, momentum=0.9)
  state = (variables["params"], tx.init(variables["params"]))

  @jax.jit
  def step(state):
    params, opt_state = state
    loss_fn = lambda p: sum(model.apply({"params": p, "batch_stats": variables["batch_stats"]}, images, boxes, labels, valid, key,  # noqa: E731
                                        method="losses").values())
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), loss

  holder = {"state": state}

  def run():
    holder["state"], loss = step(holder["state"])
    loss.block_until_ready()

  return report.median_seconds(run, repeats)


def inference_times(height, width, batch, repeats):
  import torch

  from acne_jax.interop import torch as interop
  from acne_jax.models.detector import TwoStageDetector, spec_from_config
  from acne_jax.testing import torchvision_parity as parity
  from acne_jax.testing.torchvision_cpu import import_torchvision

  tv = import_torchvision()
  theirs = parity.seeded_fasterrcnn(tv, 3, (height, width), seed=0)
  spec = spec_from_config(parity.torchvision_config(3).model)
  model = TwoStageDetector(spec)
  template = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, height, width, 3))))
  variables = interop.from_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()}, template, "torchvision")
  variables = jax.tree_util.tree_map(jnp.asarray, variables)
  pixels = np.random.default_rng(0).integers(0, 256, (batch, height, width, 3), dtype=np.uint8)
  torch_images = [torch.from_numpy(p).permute(2, 0, 1).float() / 255.0 for p in pixels]
  ours_images = jnp.asarray((pixels.astype(np.float32) - parity.IMAGENET_MEAN) / parity.IMAGENET_STD)
  predict = jax.jit(lambda v, x: model.apply(v, x, method="predict"))

  def run_theirs():
    with torch.no_grad():
      theirs(torch_images)

  def run_ours():
    jax.block_until_ready(predict(variables, ours_images))

  return report.median_seconds(run_theirs, repeats), report.median_seconds(run_ours, repeats), torch.get_num_threads()


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--train-size", type=int, default=256)
  parser.add_argument("--infer-height", type=int, default=480)
  parser.add_argument("--infer-width", type=int, default=640)
  parser.add_argument("--infer-batch", type=int, default=1)
  parser.add_argument("--markdown", default=None)
  args = parser.parse_args()
  plain = train_step_time(False, args.train_size, args.repeats)
  dcn = train_step_time(True, args.train_size, args.repeats)
  torch_time, jax_time, threads = inference_times(args.infer_height, args.infer_width, args.infer_batch, args.repeats)
  command = "python scripts/benchmark_torch.py " + " ".join(sys.argv[1:])
  text = "\n".join([
      f"### PyTorch interop, {datetime.date.today().isoformat()} — {report.machine_description()}",
      "",
      f"Command: `{command.strip()}`; medians of {args.repeats} runs after a warm-up.",
      "",
      "| measurement | ours (s) | reference (s) | ratio |",
      "|---|---:|---:|---:|",
      f"| SADH Faster R-CNN train step, ResNet-50 with DCN c3-c5 vs plain, {args.train_size}^2, batch 2 "
      f"| {dcn:.2f} (DCN) | {plain:.2f} (plain) | DCN costs {dcn / plain:.2f}x |",
      f"| fasterrcnn_resnet50_fpn inference, {args.infer_batch} x {args.infer_height}x{args.infer_width}: ours (jit) vs "
      f"torchvision (eval, no_grad, {threads} threads) | {jax_time:.2f} | {torch_time:.2f} | ours {torch_time / jax_time:.2f}x "
      f"{'faster' if jax_time < torch_time else 'slower'} |",
      "",
  ])
  report.emit(text, args.markdown)
  return 0


if __name__ == "__main__":
  sys.exit(main())
