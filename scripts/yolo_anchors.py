"""YOLO anchors by k-means on the training boxes' shapes, with ``1 - IoU`` as the distance.

    python scripts/yolo_anchors.py --config=configs/faster_rcnn.py:synthetic_ct [--split=train] \\
        [--num_anchors=9] [--input_size=0] [--seed=0] [--restarts=10]

YOLOv2's "dimension clusters" as darknet's ``detector calc_anchors`` and YOLOv3 compute them:
every training box becomes its ``(w, h)`` alone (placed at a common centre), the distance of a
box to a centroid is ``1 - IoU`` of the two shapes, each iteration assigns every box to its
nearest centroid and moves each centroid to the mean ``(w, h)`` of its boxes, until no box changes
cluster. The start is k-means++ on that distance (darknet starts from random boxes), seeded, and
the best of ``--restarts`` runs by mean best IoU is kept, so a seed always gives the same anchors.
An emptied cluster restarts at the box worst served by the others.

Boxes are read from the config's data set (``acne_jax.datasets.source(config.data, split)``),
without the labels the pipeline drops (``data.drop_labels``, negative labels), and measured in
the pixels the network sees: the config's resize when ``data.resize_min_size`` /
``resize_max_size`` are set, the record's own pixels otherwise (our crop pipelines), or, with
``--input_size=N``, darknet's resize of every image to ``N x N`` (width and height scaled
separately). Prints the anchors sorted by area in darknet's ``anchors = w,h, ...`` form (for
``model.anchors``: the first three go to the finest head) and the mean IoU of every box with its
best anchor (darknet's "avg IoU").
"""

from __future__ import annotations

import os
import sys
from typing import Iterable, Mapping, Optional, Tuple

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def shape_iou(wh: np.ndarray, anchors: np.ndarray) -> np.ndarray:
  """``[N, K]`` IoU of box shapes ``[N, 2]`` and anchor shapes ``[K, 2]`` at a common centre."""
  inter = np.minimum(wh[:, None, 0], anchors[None, :, 0]) * np.minimum(wh[:, None, 1], anchors[None, :, 1])
  union = (wh[:, 0] * wh[:, 1])[:, None] + (anchors[:, 0] * anchors[:, 1])[None, :] - inter
  return inter / union


def _kmeans_once(wh: np.ndarray, k: int, rng: np.random.Generator, max_iterations: int) -> np.ndarray:
  # k-means++ on the 1 - IoU distance: each next centre drawn with probability ~ distance^2.
  centers = [wh[rng.integers(len(wh))]]
  for _ in range(1, k):
    distance = 1.0 - shape_iou(wh, np.asarray(centers)).max(axis=1)
    weights = distance**2
    total = weights.sum()
    index = rng.choice(len(wh), p=weights / total) if total > 0 else rng.integers(len(wh))
    centers.append(wh[index])
  centers = np.asarray(centers, np.float64)
  assignment = None
  for _ in range(max_iterations):
    iou = shape_iou(wh, centers)
    new_assignment = iou.argmax(axis=1)
    if assignment is not None and np.array_equal(new_assignment, assignment):
      break
    assignment = new_assignment
    for c in range(k):
      members = wh[assignment == c]
      if len(members):
        centers[c] = members.mean(axis=0)
      else:  # restart an empty cluster at the box the others serve worst
        centers[c] = wh[iou.max(axis=1).argmin()]
  return centers


def kmeans_anchors(wh, num_anchors: int = 9, seed: int = 0, restarts: int = 10,
                   max_iterations: int = 300) -> Tuple[np.ndarray, float]:
  """Anchors by k-means with ``1 - IoU`` distance (module docstring).

  Args:
    wh: ``[N, 2]`` box widths and heights (pixels the network sees); boxes without area are skipped.
    num_anchors: ``K`` (9 for YOLOv4's three heads, 12 with a fourth).
    seed: seeds the k-means++ starts; the same seed and boxes give the same anchors.
    restarts: runs from different starts; the best by mean best IoU is kept.
    max_iterations: cap on Lloyd iterations per run (each ends earlier once no box moves).

  Returns:
    ``(anchors [K, 2] float64 sorted by area, mean over the boxes of their best anchor IoU)``.

  Raises:
    ValueError: fewer distinct box shapes than ``num_anchors``.
  """
  wh = np.asarray(wh, np.float64).reshape(-1, 2)
  wh = wh[(wh[:, 0] > 0) & (wh[:, 1] > 0)]
  if len(np.unique(wh, axis=0)) < num_anchors:
    raise ValueError(f"k-means needs at least {num_anchors} distinct box shapes for {num_anchors} anchors; got "
                     f"{len(np.unique(wh, axis=0))} (from {len(wh)} boxes).")
  rng = np.random.default_rng(seed)
  best, best_iou = None, -1.0
  for _ in range(max(restarts, 1)):
    centers = _kmeans_once(wh, num_anchors, rng, max_iterations)
    mean_iou = float(shape_iou(wh, centers).max(axis=1).mean())
    if mean_iou > best_iou:
      best, best_iou = centers, mean_iou
  order = np.lexsort((best[:, 0], best[:, 0] * best[:, 1]))
  return best[order], best_iou


def box_shapes(records: Iterable[Mapping], input_size: int = 0, resize: Optional[Tuple[int, int, str]] = None,
               drop_labels: Tuple[int, ...] = ()) -> np.ndarray:
  """``[N, 2]`` widths and heights of the boxes of ``records`` as the network sees them.

  Args:
    records: TFDS records (or decoded ones: ``acne_jax.data.records.decode_record``'s keys).
    input_size: darknet's resize of every image to ``N x N`` (each axis scaled by ``N / side``); 0: off.
    resize: ``(min_size, max_size, style)`` of the config's resize (``acne_jax.data.resize``), or None.
    drop_labels: labels whose boxes the pipeline drops (negative labels are dropped too).
  """
  from acne_jax.data import records as records_lib
  from acne_jax.data import resize as resize_lib

  shapes = []
  for record in records:
    decoded = record if "boxes" in record else records_lib.decode_record(record)
    boxes = np.asarray(decoded["boxes"], np.float64).reshape(-1, 4)
    labels = np.asarray(decoded["labels"]).reshape(-1)
    keep = (labels >= 0) & ~np.isin(labels, np.asarray(drop_labels, np.int64))
    wh = boxes[keep, 2:] - boxes[keep, :2]
    height, width = np.asarray(decoded["image"]).shape[:2]
    if input_size:
      wh = wh * np.asarray([input_size / width, input_size / height])
    elif resize is not None:
      min_size, max_size, style = resize
      scale = resize_lib.torchvision_scale(height, width, min_size, max_size)
      new_h, new_w = resize_lib.resized_size(height, width, scale, style)
      wh = wh * np.asarray([new_w / width, new_h / height])
    shapes.append(wh)
  return np.concatenate(shapes) if shapes else np.zeros((0, 2))


def format_anchors(anchors: np.ndarray) -> str:
  """darknet's ``anchors = w,h, w,h, ...`` (rounded to pixels) line."""
  return "anchors = " + ", ".join(f"{round(w)},{round(h)}" for w, h in anchors)


def anchors_for_config(config, split: str, num_anchors: int = 9, input_size: int = 0, seed: int = 0,
                       restarts: int = 10) -> Tuple[np.ndarray, float, int]:
  """``(anchors, mean best IoU, number of boxes)`` for a config's data set and split."""
  from acne_jax import datasets
  from acne_jax.data import resize as resize_lib

  source, _ = datasets.source(config.data, split, "--split")
  min_size, max_size = resize_lib.configured_sizes(config.data)
  resize = (min_size, max_size, resize_lib.configured_style(config.data)) if resize_lib.resize_enabled(min_size, max_size) else None
  wh = box_shapes((source[i] for i in range(len(source))), input_size, resize, tuple(config.data.get("drop_labels", ())))
  anchors, mean_iou = kmeans_anchors(wh, num_anchors, seed, restarts)
  return anchors, mean_iou, len(wh)


def main(argv=None) -> int:
  from absl import flags
  from ml_collections import config_flags

  from acne_jax import cli

  flag_values = flags.FlagValues()
  config_flag = config_flags.DEFINE_config_file("config", None, "A detector config whose data set to read "
                                                "(configs/faster_rcnn.py:synthetic_ct).", flag_values=flag_values)
  flags.DEFINE_string("split", None, "Split to read (default: the config's data.train_split).", flag_values=flag_values)
  flags.DEFINE_integer("num_anchors", 9, "Anchors: 3 per head level (12 for head_strides (4, 8, 16, 32)).",
                       flag_values=flag_values)
  flags.DEFINE_integer("input_size", 0, "Resize every image to N x N as darknet does (0: the config's pixels).",
                       flag_values=flag_values)
  flags.DEFINE_integer("seed", 0, "Seed of the k-means starts.", flag_values=flag_values)
  flags.DEFINE_integer("restarts", 10, "k-means runs; the best by mean IoU is kept.", flag_values=flag_values)
  if cli.parse(flag_values, sys.argv if argv is None else argv) is None:
    return 2
  if config_flag.value is None:
    print("error: --config is required, e.g. --config=configs/faster_rcnn.py:synthetic_ct", file=sys.stderr)
    return 2
  config = config_flag.value
  split = flag_values.split or config.data.train_split
  try:
    anchors, mean_iou, count = anchors_for_config(config, split, flag_values.num_anchors, flag_values.input_size,
                                                  flag_values.seed, flag_values.restarts)
  except (ValueError, FileNotFoundError, OSError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  pixels = f"{flag_values.input_size} x {flag_values.input_size} input" if flag_values.input_size else "the config's pixels"
  print(f"{count} boxes of {config.data.name} {split} ({pixels}), {len(anchors)} anchors, seed {flag_values.seed}")
  print(format_anchors(anchors))
  print(f"mean best IoU: {mean_iou:.4f}")
  print("model.anchors: (" + ", ".join(f"({w:.1f}, {h:.1f})" for w, h in anchors) + ")")
  return 0


if __name__ == "__main__":
  sys.exit(main())
