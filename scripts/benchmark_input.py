"""Throughput of the streaming input pipeline: 1024x1024 crops per second, by worker count.

    python scripts/benchmark_input.py [--workers 0,1,2] [--batches 30] [--markdown BENCHMARKS.md]

Two workloads over ArrayRecord data sets built by the synthetic builder into a temporary folder:

- ``pre-cut``: records are 1024x1024 PNG crops (as ``acne_scu/crops_1024`` stores them); each
  is decoded, flipped, padded and batched;
- ``on-the-fly``: records are whole 2048x3072 PNG images from which a random masked 1024 crop
  is cut per example (``data.crop_size=1024``), the way whole AcneSCU photos can be streamed.

Reported: crops per second through ``StreamingLoader`` (batch 8) after a warm-up batch, for each
``--workers`` value (0 = in the main process). With ``--markdown`` the table is appended to that
file with the date, machine and command.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


from acne_jax.data import pipeline
from acne_jax.testing import report


def build_source(data_dir: str, name: str, size, count: int):
  from tfds_builders.synthetic_acne.synthetic_acne import SyntheticAcne, SyntheticAcneConfig

  height, width = size
  config = SyntheticAcneConfig(name=name, image_size=height if height == width else (height, width), num_train=count,
                               num_validation=1, num_test=1, num_lesions=(40, 80))
  builder = SyntheticAcne(config=config, data_dir=data_dir)
  builder.download_and_prepare(file_format="array_record")
  return builder.as_data_source(split="train")


def crops_per_second(source, workers: int, batches: int, crop_size: int) -> float:
  transform = pipeline.ExampleTransform(image_size=(1024, 1024), max_boxes=256, crop_size=crop_size)
  loader = pipeline.StreamingLoader(source, 8, transform, seed=0, worker_count=workers, shard_by_process=False, worker_buffer_size=2)
  next(loader)  # warm-up: worker start and first batch
  start = time.perf_counter()
  for _ in range(batches):
    next(loader)
  return batches * 8 / (time.perf_counter() - start)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workers", default=f"0,1,{os.cpu_count()}")
  parser.add_argument("--batches", type=int, default=30)
  parser.add_argument("--markdown", default=None)
  args = parser.parse_args()
  workers = sorted({int(w) for w in args.workers.split(",")})
  with tempfile.TemporaryDirectory() as data_dir:
    print("building the benchmark data sets...", flush=True)
    workloads = [
        ("pre-cut 1024x1024 PNG crops", build_source(data_dir, "bench_crops", (1024, 1024), 48), 0),
        ("whole 2048x3072 PNG images, random masked 1024 crop", build_source(data_dir, "bench_whole", (2048, 3072), 16), 1024),
    ]
    rows = []
    for name, source, crop in workloads:
      for w in workers:
        rate = crops_per_second(source, w, args.batches, crop)
        rows.append((name, w, rate))
        print(f"{name}, {w} workers: {rate:.1f} crops/s", flush=True)
  lines = [
      f"### Input pipeline, {datetime.date.today().isoformat()} — {report.machine_description()}",
      "",
      f"Command: `python scripts/benchmark_input.py --workers {args.workers} --batches {args.batches}`. Batch 8, "
      "decode + masked crop (second workload) + flip + pad, through grain's DataLoader.",
      "",
      "| workload | workers | 1024x1024 crops / s | per worker |",
      "|---|---:|---:|---:|",
  ]
  lines += [f"| {name} | {w} | {rate:.1f} | {rate / max(w, 1):.1f} |" for name, w, rate in rows]
  text = "\n".join(lines) + "\n"
  report.emit(text, args.markdown)


if __name__ == "__main__":
  main()
