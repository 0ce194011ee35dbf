"""Training speed against torchvision's detector, measured side by side in one run on one machine.

    python scripts/benchmark_train.py [--configs configs/torchvision_faster_rcnn.py:acne_scu configs/sadh.py:acne_scu]
        [--sizes 512 1024] [--batches 1 2 4] [--dtypes float32 bfloat16] [--boxes 64] [--repeats 3]
        [--no-torch] [--peak-tflops X] [--trace DIR] [--markdown BENCHMARKS.md]

For every config, image size, per-device batch and computation dtype: the real jitted train step
of ``python -m acne_jax.train`` (``acne_jax.train.make_train_step`` over the device mesh; losses,
gradients, SGD update, donated state) on random images with ``--boxes`` random 8-64 px lesions
each; random backbone weights (the time does not depend on them). Per row: compile time, median
step time of ``--repeats`` steps after compilation, images/s, peak memory (the device's own
counter where it has one, else XLA's compile-time estimate: arguments + outputs + temporaries),
model FLOPs per image from XLA's cost analysis, and the FLOPs utilisation against
``--peak-tflops`` (known GPUs: their dense bf16 / float32 peak; CPU: only when given).

Beside each row, the peer a user would otherwise run: torchvision's ``fasterrcnn_resnet50_fpn``
(its C++ kernels; frozen BN, three trainable stages, as torchvision builds it; its transform
sized to the same square so that it does not resize), one SGD step of its training losses on the
same size and batch, float32 (bf16 rows compare with it too: torchvision's float32 step is what a
user would otherwise run), with torch's default threads. The ratio is torchvision's step time over
ours (above 1: we are faster).

``configs/torchvision_faster_rcnn.py`` is torchvision's architecture in our code (the equal
setting); ``configs/sadh.py:acne_scu`` is the SADH paper's model (SADH head, DCN c3-c5).
``--trace DIR`` writes a ``jax.profiler`` trace of one step of the first row (open it in
TensorBoard or Perfetto).
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from acne_jax.testing import report  # noqa: E402

# Dense peak TFLOP/s (bf16, float32) of GPUs a lent machine may have.
PEAK_TFLOPS = {"H100": (989.0, 67.0), "H200": (989.0, 67.0), "A100": (312.0, 19.5)}


def load_config(argument: str):
  path, _, data = argument.partition(":")
  module = importlib.import_module(path.replace("/", ".").removesuffix(".py"))
  return module.get_config(data) if data else module.get_config()


def random_batch(rng, batch: int, size: int, max_boxes: int, boxes: int, num_classes: int):
  """uint8 images and ``boxes`` valid random 8-64 px lesions per image, padded to ``max_boxes``."""
  xy = rng.uniform(0, size - 64, (batch, max_boxes, 2))
  wh = rng.uniform(8, 64, (batch, max_boxes, 2))
  return {"image": rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8),
          "boxes": np.concatenate([xy, xy + wh], -1).astype(np.float32),
          "labels": rng.integers(0, num_classes, (batch, max_boxes)).astype(np.int32),
          "valid": np.arange(max_boxes)[None].repeat(batch, 0) < min(boxes, max_boxes)}


def ours(argument: str, size: int, per_device: int, dtype: str, boxes: int, trace: str | None) -> dict:
  """Compiles our train step; returns its compile time, FLOPs, memory estimate and ``run`` (one step)."""
  from acne_jax import train
  from acne_jax.models.detector import TwoStageDetector, spec_from_config
  from acne_jax.training import optim, parallel

  config = load_config(argument)
  with config.unlocked():
    config.model.backbone.pretrained = ""
    config.model.compute_dtype = dtype
  mesh = parallel.make_mesh()
  batch = per_device * mesh.size
  max_boxes = max(config.data.max_boxes, boxes)
  spec = spec_from_config(config.model)
  model = TwoStageDetector(spec, train=True)
  replicated, sharded = parallel.replicated(mesh), parallel.batch_sharded(mesh)
  abstract = jax.eval_shape(lambda k: train.create_state(model, optax.identity(), k, (size, size), max_boxes, batch),
                            jax.random.key(0))["params"]
  tx, schedule = optim.make_optimizer(dict(config.optimizer.to_dict(), decay_steps=()), abstract)
  state = train.initial_state(model, tx, jax.random.key(0), (size, size), max_boxes, batch, replicated)
  data = {k: jax.device_put(v, sharded) for k, v in
          random_batch(np.random.default_rng(0), batch, size, max_boxes, boxes, spec.num_classes).items()}
  step = jax.jit(train.make_train_step(model, tx, schedule, config.data.mean, config.data.std, spec.backbone.norm == "bn", mesh),
                 in_shardings=(replicated, sharded, replicated), out_shardings=(replicated, replicated), donate_argnums=0)
  key = jax.random.key(1)
  start = time.perf_counter()
  compiled = step.lower(state, data, key).compile()
  compile_seconds = time.perf_counter() - start
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  flops = float(cost.get("flops", float("nan"))) if cost else float("nan")
  memory = compiled.memory_analysis()
  estimate = (memory.argument_size_in_bytes + memory.output_size_in_bytes + memory.temp_size_in_bytes) if memory else float("nan")
  holder = {"state": state}

  def run():
    holder["state"], metrics = compiled(holder["state"], data, key)
    metrics["loss"].block_until_ready()

  if trace:
    with jax.profiler.trace(trace):
      run()
  return {"compile": compile_seconds, "run": run, "batch": batch, "flops_per_image": flops / batch, "estimate": estimate}


def torchvision_step(size: int, batch: int, boxes: int):
  """One SGD step of torchvision's fasterrcnn_resnet50_fpn training losses, as a function (after one warm-up)."""
  import torch

  from acne_jax.testing.torchvision_cpu import import_torchvision

  tv = import_torchvision()
  torch.manual_seed(0)
  # fasterrcnn_resnet50_fpn as torchvision builds it around ImageNet weights (frozen BN, layers
  # 2-4 trainable); without weights it would switch to trainable BN and all five stages.
  from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
  from torchvision.ops import misc

  backbone = _resnet_fpn_extractor(tv.models.resnet50(weights=None, norm_layer=misc.FrozenBatchNorm2d), 3)
  model = tv.models.detection.FasterRCNN(backbone, num_classes=11, min_size=size, max_size=size)
  model.train()
  data = random_batch(np.random.default_rng(0), batch, size, boxes, boxes, 10)
  images = [torch.from_numpy(im).permute(2, 0, 1).float() / 255.0 for im in data["image"]]
  targets = [{"boxes": torch.from_numpy(b), "labels": torch.from_numpy(l + 1).long()} for b, l in zip(data["boxes"], data["labels"])]
  optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.002, momentum=0.9)

  def run():
    losses = model(images, targets)
    optimizer.zero_grad()
    sum(losses.values()).backward()
    optimizer.step()

  return run


def medians(run_ours, run_torch, repeats: int):
  """Median seconds of ``repeats`` steps of ours, then of torchvision's, each block after one
  untimed step (``report.median_seconds``). Not alternated step by step: torch's OpenMP threads keep spinning for a while
  after each of its steps and slowed the next JAX step by half (5.5 s against 3.6 s measured).
  """
  return tuple(None if run is None else report.median_seconds(run, repeats) for run in (run_ours, run_torch))


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--configs", nargs="+", default=["configs/torchvision_faster_rcnn.py:acne_scu", "configs/sadh.py:acne_scu"])
  parser.add_argument("--sizes", nargs="+", type=int, default=[512])
  parser.add_argument("--batches", nargs="+", type=int, default=[2], help="images per device")
  parser.add_argument("--dtypes", nargs="+", default=["float32"], choices=["float32", "bfloat16"])
  parser.add_argument("--boxes", type=int, default=64, help="valid ground-truth boxes per image")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--no-torch", action="store_true", help="skip torchvision (no ratio column)")
  parser.add_argument("--peak-tflops", type=float, default=0.0, help="device peak for the utilisation column (0: known GPUs only)")
  parser.add_argument("--trace", default=None)
  parser.add_argument("--markdown", default=None)
  args = parser.parse_args()

  kind = jax.devices()[0].device_kind
  known = next((v for k, v in PEAK_TFLOPS.items() if k in kind), None)
  torch_steps = {}
  rows = []
  for size in args.sizes:
    for per_device in args.batches:
      for dtype in args.dtypes:
        for argument in args.configs:
          row = ours(argument, size, per_device, dtype, args.boxes, args.trace if not rows else None)
          key = (size, row["batch"])
          if not args.no_torch and key not in torch_steps:
            torch_steps[key] = torchvision_step(size, row["batch"], args.boxes)
          row["seconds"], torch_seconds = medians(row.pop("run"), torch_steps.get(key), args.repeats)
          stats = jax.devices()[0].memory_stats() or {}
          peak_bytes = stats.get("peak_bytes_in_use")
          peak = args.peak_tflops or (known[0 if dtype == "bfloat16" else 1] if known else 0.0)
          achieved = row["flops_per_image"] * row["batch"] / row["seconds"] / 1e12
          row.update(config=argument, size=size, dtype=dtype, torch=torch_seconds,
                     utilisation=achieved / peak if peak else None,
                     peak_bytes=float(peak_bytes) if peak_bytes else row.pop("estimate"), peak_measured=bool(peak_bytes))
          rows.append(row)
          print(f"{argument} {size}px batch {row['batch']} {dtype}: {row['seconds']:.3f} s/step "
                f"(torchvision {row['torch'] or float('nan'):.3f}), compile {row['compile']:.0f} s", flush=True)

  command = "python scripts/benchmark_train.py " + " ".join(a for a in sys.argv[1:] if a not in ("--markdown", args.markdown))
  lines = [f"### Train step against torchvision, {datetime.date.today().isoformat()} — {report.machine_description()}",
           "",
           f"Command: `{command.strip()}`; JAX {jax.__version__}; median of {args.repeats} steps after compilation, "
           f"{args.boxes} ground-truth boxes per image. "
           "Ratio: torchvision's step time over ours (above 1: ours faster).",
           "",
           "| config | image | batch | dtype | compile (s) | s / step | images / s | torchvision s / step | ratio "
           "| GFLOPs / image | FLOPs utilisation | peak memory (GB) |",
           "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
  for r in rows:
    ratio = f"{r['torch'] / r['seconds']:.2f}" if r["torch"] else "-"
    torch_cell = f"{r['torch']:.3f}" if r["torch"] else "-"
    utilisation = f"{100 * r['utilisation']:.1f} %" if r["utilisation"] is not None else "-"
    memory = f"{r['peak_bytes'] / 1e9:.2f}" + ("" if r["peak_measured"] else " (XLA estimate)")
    lines.append(f"| `{r['config']}` | {r['size']} | {r['batch']} | {r['dtype']} | {r['compile']:.0f} | {r['seconds']:.3f} | "
                 f"{r['batch'] / r['seconds']:.2f} | {torch_cell} | {ratio} | {r['flops_per_image'] / 1e9:.1f} | "
                 f"{utilisation} | {memory} |")
  report.emit("\n".join(lines) + "\n", args.markdown)
  return 0


if __name__ == "__main__":
  sys.exit(main())
