"""Latency of sliced whole-image prediction: one AcneSCU-sized photo (3456 x 5184) on this machine.

    python scripts/benchmark_predict.py [--tile 256] [--batch 4] [--repeats 2] [--markdown BENCHMARKS.md]

The model is the default synthetic config's (``configs/sadh.py``: ResNet-18 width 32 with
GroupNorm, 64-channel FPN, SADH head; trained on 256 x 256 images, hence tile 256), freshly
initialised: latency hardly depends on the weights, except through the number of detections,
and an untrained model puts out about the most there can be (every tile fills its
``model.max_detections`` = 200 slots with near-uniform class scores above the 0.05 score
threshold), so the merge times are an upper bound for a trained model, whose confident
detections are far fewer. The photo is a synthetic skin image with a few hundred lesions.

Reported, after one warm-up run that compiles the predict function (its time is given too):
the end-to-end latency of ``acne_jax.predict.predict_image``, timed as its two parts:
``tile_detections`` (cutting tiles, the model over all tiles in fixed batches, mapping back)
and ``merge_tile_detections`` (the border rule and the merge), the latter for ``nms`` and
``wbf`` on the same tile detections; medians of ``--repeats`` runs. With ``--markdown`` the
table is appended to that file with the date, machine and command.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--height", type=int, default=3456)
  parser.add_argument("--width", type=int, default=5184)
  parser.add_argument("--tile", type=int, default=256)
  parser.add_argument("--overlap", type=int, default=None, help="minimum tile overlap (default tile // 8)")
  parser.add_argument("--batch", type=int, default=4)
  parser.add_argument("--repeats", type=int, default=2)
  parser.add_argument("--markdown", default=None, help="append the results to this Markdown file")
  args = parser.parse_args()

  import jax
  import jax.numpy as jnp

  from acne_jax import predict
  from acne_jax.data import synthetic
  from acne_jax.evaluation import merge as merge_lib
  from acne_jax.models.detector import TwoStageDetector, spec_from_config
  from acne_jax.testing import report
  from configs import sadh

  config = sadh.get_config()
  overlap = predict.default_overlap(args.tile) if args.overlap is None else args.overlap
  print(f"generating a {args.height}x{args.width} synthetic photo...", flush=True)
  image = synthetic.generate_example(0, image_size=(args.height, args.width), num_lesions=(300, 400), lesion_scale=2.0)["image"]
  model = TwoStageDetector(spec_from_config(config.model), train=False)
  variables = jax.jit(lambda k: model.init(k, jnp.zeros((1, args.tile, args.tile, 3)), method="predict"))(jax.random.key(0))
  predict_fn = predict.make_predict_fn(config)
  origins = merge_lib.tile_origins(args.height, args.width, args.tile, overlap)

  def run_model():
    start = time.perf_counter()
    raw = predict.tile_detections(predict_fn, variables, image, origins, args.tile, args.batch)
    return raw, time.perf_counter() - start

  def run_merge(raw, method):
    start = time.perf_counter()
    merged = predict.merge_tile_detections(raw, origins, args.tile, args.height, args.width, merge=method)
    return merged, time.perf_counter() - start

  print(f"{len(origins)} tiles of {args.tile} px (overlap >= {overlap}); compiling...", flush=True)
  start = time.perf_counter()
  run_merge(run_model()[0], "nms")
  first_run = time.perf_counter() - start
  methods = ("nms", "wbf")
  model_times, merge_times, counts = [], {m: [] for m in methods}, {}
  for repeat in range(args.repeats):
    raw, seconds = run_model()
    model_times.append(seconds)
    for method in methods:
      merged, seconds = run_merge(raw, method)
      merge_times[method].append(seconds)
      counts[method] = (len(raw["scores"]), len(merged["scores"]))
    print(f"run {repeat + 1}: tiles + model {model_times[-1]:.2f} s, merge "
          + ", ".join(f"{m} {merge_times[m][-1]:.2f} s" for m in methods), flush=True)
  model_time = float(np.median(model_times))
  rows = []
  for method in methods:
    merge_time = float(np.median(merge_times[method]))
    rows.append((method, model_time + merge_time, model_time, merge_time, *counts[method]))

  per_tile = counts["nms"][0] / len(origins)
  load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
  lines = [
      f"### Sliced whole-image prediction, {datetime.date.today().isoformat()} — {report.machine_description()}",
      "",
      f"Command: `python scripts/benchmark_predict.py {' '.join(sys.argv[1:])}`. "
      f"One {args.height}x{args.width} image, {len(origins)} tiles of {args.tile} px (overlap >= {overlap} px), batch "
      f"{args.batch}, default synthetic model (configs/sadh.py) freshly initialised: {per_tile:.0f} detections per tile "
      f"(of at most {spec_from_config(config.model).roi_head.box.max_detections}), a merge-time upper bound. Median of {args.repeats} runs after a warm-up run "
      f"(first run, compile included: {first_run:.1f} s). Load average at the end: {load}.",
      "",
      "| merge | end to end (s) | tiles + model (s) | border rule + merge (s) | detections before merge | after |",
      "|---|---:|---:|---:|---:|---:|",
  ]
  lines += [f"| {m} | {t:.2f} | {mt:.2f} | {gt:.2f} | {nb} | {na} |" for m, t, mt, gt, nb, na in rows]
  text = "\n".join(lines) + "\n"
  report.emit(text, args.markdown)


if __name__ == "__main__":
  main()
