"""Time our COCO evaluation engine against pycocotools on a synthetic set.

    python scripts/benchmark_eval.py [--images 1000] [--dets 200] [--classes 10] [--markdown BENCHMARKS.md]

The set: ``--images`` images with ``--gt`` ground-truth boxes each (random classes, sizes in all
COCO buckets, a few crowd regions) and ``--dets`` detections each (jittered copies of the
ground truth plus random boxes, random classes and scores). Two workloads, both from the COCO
dictionaries (parsing included):

- ``full COCO``: 10 IoU thresholds 0.50:0.95, caps 1/10/100, 4 areas (``coco_metrics.evaluate``
  vs ``COCOeval.evaluate() + accumulate()``); the 12 statistics are asserted equal (1e-6);
- ``IoU 0.5, 100 dets`` (the training-time metric): ``coco_metrics.evaluate_detections`` vs
  ``COCOeval`` with ``iouThrs=[0.5]``, ``maxDets=[100]``; the 8 numbers are asserted equal.

Reported: wall-clock seconds (ours: the best of ``--repeats``; pycocotools: one run, it is
slow) and the speed-up. With ``--markdown`` the table is appended to that file with the date,
machine and command.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import io
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np

from acne_jax.evaluation import coco_metrics
from acne_jax.testing import report


def synthetic_set(num_images: int, gt_per_image: int, dets_per_image: int, num_classes: int, seed: int):
  """``(ground_truth, results)`` COCO dictionaries (see the module docstring)."""
  rng = np.random.default_rng(seed)
  images = [{"id": i + 1, "height": 1024, "width": 1024} for i in range(num_images)]
  categories = [{"id": k + 1, "name": f"class{k + 1}"} for k in range(num_classes)]
  g = num_images * gt_per_image
  gt_image = np.repeat(np.arange(1, num_images + 1), gt_per_image)
  gt_class = rng.integers(1, num_classes + 1, g)
  gt_wh = np.exp(rng.uniform(np.log(4), np.log(300), (g, 2)))
  gt_xy = rng.uniform(0, 1024 - gt_wh)
  gt_crowd = rng.random(g) < 0.01
  annotations = [
      {"id": i + 1, "image_id": int(gt_image[i]), "category_id": int(gt_class[i]), "bbox": [*map(float, gt_xy[i]), *map(float, gt_wh[i])],
       "area": float(gt_wh[i, 0] * gt_wh[i, 1]), "iscrowd": int(gt_crowd[i])}
      for i in range(g)
  ]
  # Detections: up to 2 jittered copies per ground truth box, the rest random.
  copies = rng.integers(0, 3, g)
  src = np.repeat(np.arange(g), copies)
  per_image_copies = np.bincount(gt_image[src] - 1, minlength=num_images)
  keep = np.concatenate([np.flatnonzero(gt_image[src] == i + 1)[:dets_per_image] for i in range(num_images)])
  src = src[keep]
  jitter = rng.normal(0, 0.1, (len(src), 4)) * np.concatenate([gt_wh[src], gt_wh[src]], axis=1)
  copy_boxes = np.concatenate([gt_xy[src] + jitter[:, :2], np.maximum(gt_wh[src] + jitter[:, 2:], 1.0)], axis=1)
  copy_class = np.where(rng.random(len(src)) < 0.9, gt_class[src], rng.integers(1, num_classes + 1, len(src)))
  num_random = dets_per_image - np.minimum(per_image_copies, dets_per_image)
  random_image = np.repeat(np.arange(1, num_images + 1), num_random)
  random_wh = np.exp(rng.uniform(np.log(4), np.log(300), (len(random_image), 2)))
  random_boxes = np.concatenate([rng.uniform(0, 1024 - random_wh), random_wh], axis=1)
  det_image = np.concatenate([gt_image[src], random_image])
  det_class = np.concatenate([copy_class, rng.integers(1, num_classes + 1, len(random_image))])
  det_boxes = np.concatenate([copy_boxes, random_boxes])
  det_score = np.concatenate([rng.uniform(0.3, 1.0, len(src)), rng.uniform(0.0, 0.7, len(random_image))])
  results = [
      {"image_id": int(det_image[i]), "category_id": int(det_class[i]), "bbox": [float(v) for v in det_boxes[i]], "score": float(det_score[i])}
      for i in rng.permutation(len(det_image))
  ]
  return {"images": images, "annotations": annotations, "categories": categories}, results


def pycocotools_eval(ground_truth, results, iou_thresholds, max_dets):
  from pycocotools.coco import COCO
  from pycocotools.cocoeval import COCOeval

  with contextlib.redirect_stdout(io.StringIO()):
    gt = COCO()
    gt.dataset = ground_truth
    gt.createIndex()
    evaluator = COCOeval(gt, gt.loadRes(results), iouType="bbox")
    evaluator.params.iouThrs = np.asarray(iou_thresholds, float)
    evaluator.params.maxDets = list(max_dets)
    evaluator.evaluate()
    evaluator.accumulate()
    if len(iou_thresholds) == 10:
      evaluator.summarize()
  return evaluator


def timed(fn, repeats: int):
  best, out = float("inf"), None
  for _ in range(repeats):
    start = time.perf_counter()
    out = fn()
    best = min(best, time.perf_counter() - start)
  return best, out


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--images", type=int, default=1000)
  parser.add_argument("--dets", type=int, default=200, help="detections per image")
  parser.add_argument("--gt", type=int, default=20, help="ground-truth boxes per image")
  parser.add_argument("--classes", type=int, default=10)
  parser.add_argument("--repeats", type=int, default=3, help="runs of ours (best taken); pycocotools runs once")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--markdown", default=None)
  args = parser.parse_args()
  ground_truth, results = synthetic_set(args.images, args.gt, args.dets, args.classes, args.seed)
  print(f"{args.images} images, {len(ground_truth['annotations'])} ground-truth boxes, {len(results)} detections, "
        f"{args.classes} classes", flush=True)
  rows = []

  ours_s, ours = timed(lambda: coco_metrics.evaluate(ground_truth, results), args.repeats)
  theirs_s, theirs = timed(lambda: pycocotools_eval(copy.deepcopy(ground_truth), copy.deepcopy(results),
                                                    coco_metrics.COCO_IOU_THRESHOLDS, (1, 10, 100)), 1)
  stats = np.array(list(coco_metrics.coco_stats(ours).values()))
  np.testing.assert_allclose(stats, theirs.stats, atol=1e-6, rtol=0)
  np.testing.assert_allclose(ours.precision, theirs.eval["precision"], atol=1e-6, rtol=0)
  rows.append(("full COCO: IoU 0.50:0.95, caps 1/10/100, 4 areas", theirs_s, ours_s, f"AP {stats[0]:.4f}, AP50 {stats[1]:.4f}"))
  print(f"{rows[-1][0]}: pycocotools {theirs_s:.2f} s, ours {ours_s:.3f} s ({theirs_s / ours_s:.0f}x)", flush=True)

  ours_s, headline = timed(lambda: coco_metrics.evaluate_detections(ground_truth, results, 0.5, 100), args.repeats)
  theirs_s, theirs = timed(lambda: pycocotools_eval(copy.deepcopy(ground_truth), copy.deepcopy(results), [0.5], [100]), 1)
  for a, area in enumerate(coco_metrics.AREA_NAMES):
    suffix = "" if area == "all" else "_" + area[0]
    for kind, array in (("AP", theirs.eval["precision"][0, :, :, a, 0]), ("AR", theirs.eval["recall"][0, :, a, 0])):
      expected = float(np.mean(array[array > -1])) if np.any(array > -1) else -1.0
      assert abs(headline[f"{kind}{suffix}@0.5"] - expected) <= 1e-6, (kind, area, headline, expected)
  rows.append(("IoU 0.5, 100 dets (evaluate_detections)", theirs_s, ours_s, f"AP@0.5 {headline['AP@0.5']:.4f}"))
  print(f"{rows[-1][0]}: pycocotools {theirs_s:.2f} s, ours {ours_s:.3f} s ({theirs_s / ours_s:.0f}x)", flush=True)

  command = (f"python scripts/benchmark_eval.py --images {args.images} --dets {args.dets} --gt {args.gt} "
             f"--classes {args.classes} --repeats {args.repeats} --seed {args.seed}")
  lines = [
      f"### COCO evaluation, {datetime.date.today().isoformat()} — {report.machine_description()}",
      "",
      f"Command: `{command}`. {args.images} images x {args.dets} detections ({len(results)} in all), "
      f"{len(ground_truth['annotations'])} ground-truth boxes, {args.classes} classes; from the COCO dictionaries "
      "(parsing included), same numbers asserted (1e-6). Ours: best of "
      f"{args.repeats}; pycocotools: one run.",
      "",
      "| workload | pycocotools (s) | acne_jax (s) | speed-up | result |",
      "|---|---:|---:|---:|---|",
  ]
  lines += [f"| {name} | {theirs:.2f} | {ours:.3f} | {theirs / ours:.0f}x | {result} |" for name, theirs, ours, result in rows]
  table = "\n".join(lines) + "\n"
  print()
  report.emit(table, args.markdown)


if __name__ == "__main__":
  main()
