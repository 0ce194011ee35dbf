"""Merging detections of overlapping tiles: the tile grid, class-wise NMS and weighted box fusion.

A whole photograph (AcneSCU: about 3456 x 5184) is cut into overlapping square tiles
(:func:`tile_origins`), each tile is run through the detector, and the boxes, mapped back to
image coordinates, are merged so that a lesion seen by several tiles is reported once
(``acne_jax/predict.py`` does the cutting and the mapping). These functions are pure NumPy
on host arrays.

Conventions. Boxes are float ``[N, 4]`` ``(x1, y1, x2, y2)`` in pixels with no ``+1``
(``area = (x2 - x1) * (y2 - y1)``, clamped at 0), as everywhere in acne_jax. IoU is 0 when
the union is not positive, so empty boxes never merge with anything. Two boxes are merged
only when they have the same class and an IoU strictly greater than the threshold (as in
``acne_jax.ops.nms``). Boxes are visited in *rank* order: descending ``priority`` (optional,
e.g. "this box does not touch a tile border"), then descending score, then ascending index.
Boxes and scores must be finite.

- :func:`merge_nms`: exact greedy NMS per class (the result of the textbook loop, see the
  test's reference), in ``O(N log N + P)`` for ``P`` candidate pairs (same class, x-ranges
  overlapping enough, see :func:`overlapping_pairs`), so the ~70,000 boxes of an untrained
  model on the ~370 tiles of a 3456 x 5184 photo merge in about a second on two CPU cores.
- :func:`weighted_box_fusion`: WBF (Solovyev et al., 2021) per class: each box joins the
  cluster whose current fused box it overlaps most (IoU > ``iou``) or starts a new cluster;
  a cluster's box is the score-weighted mean of its members' boxes and its score the highest
  member score (a lesion seen whole by two tiles is as confident as its best view). Candidate
  clusters are looked up in a uniform grid, so the cost grows with the boxes near each box,
  not with all the clusters of its class.
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Tuple

import numpy as np

from acne_jax.evaluation.numpy_boxes import elementwise_iou

MERGE_METHODS = ("nms", "wbf")


def _axis_origins(size: int, tile: int, min_overlap: int) -> np.ndarray:
  if size <= tile:
    return np.zeros([1], np.int64)
  n = -(-(size - min_overlap) // (tile - min_overlap))  # fewest tiles whose overlaps are >= min_overlap
  i = np.arange(n, dtype=np.int64)
  return -((-i * (size - tile)) // (n - 1))  # exact ceil(i * (size - tile) / (n - 1))


def tile_origins(height: int, width: int, tile: int, min_overlap: int = 0) -> np.ndarray:
  """Top-left corners of a grid of overlapping ``tile x tile`` windows covering an image.

  Along each axis of size ``L > tile`` there are ``n = ceil((L - m) / (tile - m))`` windows
  (``m = min_overlap``), the fewest whose overlaps are all at least ``m``, at
  ``ceil(i * (L - tile) / (n - 1))``, ``i = 0..n-1``: the first starts at 0, the last ends
  exactly at the border, and the steps are equal up to rounding (they differ by at most one
  pixel), so every overlap is ``>= m``. An axis with ``L <= tile`` has the single origin 0
  (the window is zero-padded past the border). With ``min_overlap = 0`` this is
  ``acne_jax.data.masked_crop.crop_origins``, the grid of the reference's masked crops.

  Args:
    height: ``H`` of the image, pixels (> 0).
    width: ``W`` of the image, pixels (> 0).
    tile: window side (> 0).
    min_overlap: minimum overlap of neighbouring windows, pixels, ``0 <= min_overlap < tile``.

  Returns:
    int32 ``[n_h * n_w, 2]`` ``(x0, y0)`` per window, row-major (window ``k`` is row
    ``k // n_w``, column ``k % n_w``).
  """
  height, width, tile, min_overlap = int(height), int(width), int(tile), int(min_overlap)
  if height <= 0 or width <= 0 or tile <= 0:
    raise ValueError(f"tile_origins: sizes must be positive; got H={height}, W={width}, tile={tile}.")
  if not 0 <= min_overlap < tile:
    raise ValueError(f"tile_origins: min_overlap must be in [0, tile={tile}); got {min_overlap}.")
  ys = _axis_origins(height, tile, min_overlap)
  xs = _axis_origins(width, tile, min_overlap)
  yy, xx = np.meshgrid(ys, xs, indexing="ij")
  return np.stack([xx.ravel(), yy.ravel()], axis=1).astype(np.int32)


def _as_inputs(fn: str, boxes, scores, classes, priority) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
  n = len(boxes)
  scores = np.asarray(scores, np.float64).reshape(-1)
  classes = np.asarray(classes).reshape(-1).astype(np.int64)
  priority = np.zeros(n, np.float64) if priority is None else np.asarray(priority, np.float64).reshape(-1)
  for name, a in (("scores", scores), ("classes", classes), ("priority", priority)):
    if len(a) != n:
      raise ValueError(f"{fn}: {name} has {len(a)} entries for {n} boxes.")
  if not (np.all(np.isfinite(scores)) and np.all(np.isfinite(boxes))):
    raise ValueError(f"{fn}: boxes and scores must be finite.")
  return boxes, scores, classes, priority


def rank_order(scores: np.ndarray, priority: Optional[np.ndarray] = None) -> np.ndarray:
  """Indices ``[N]`` by descending ``priority``, then descending score, then ascending index."""
  scores = np.asarray(scores, np.float64).reshape(-1)
  priority = np.zeros_like(scores) if priority is None else np.asarray(priority, np.float64).reshape(-1)
  return np.lexsort((np.arange(len(scores)), -scores, -priority))


def overlapping_pairs(boxes, classes, iou: float, max_chunk: int = 1 << 22) -> Tuple[np.ndarray, np.ndarray]:
  """Every unordered pair of same-class boxes with IoU strictly greater than ``iou`` (>= 0).

  Sweep along x per class: after sorting a class's boxes by ``x1``, the later boxes that can
  overlap box ``k`` enough (their x1 lies before ``x2_k - iou * width_k``, since IoU > t
  needs an x-intersection wider than ``t * width_k``) are a contiguous run, found with
  ``searchsorted``; their IoUs are computed in vectorised chunks of at most ``max_chunk``
  candidate pairs.

  Returns:
    ``(i, j)`` int64 ``[P]`` indices into ``boxes`` with ``i != j``, each pair once.
  """
  if iou < 0:
    raise ValueError(f"overlapping_pairs: iou must be >= 0; got {iou}.")
  boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
  classes = np.asarray(classes).reshape(-1)
  first, second = [], []
  for c in np.unique(classes):
    members = np.flatnonzero(classes == c)
    members = members[np.argsort(boxes[members, 0], kind="stable")]
    b = boxes[members]
    n = len(b)
    # Candidates of k: positions k + 1 .. end[k] - 1. IoU > t needs an x-intersection wider
    # than t * (width of k), and a later box's intersection with k ends by k's x2, so its x1
    # must lie before x2 - t * width of k.
    width = np.clip(b[:, 2] - b[:, 0], 0, None)
    # (1 - 1e-7) keeps a little slack for rounding.
    end = np.searchsorted(b[:, 0], b[:, 2] - iou * (1 - 1e-7) * width, side="left")
    counts = np.maximum(end - np.arange(n) - 1, 0)
    cumulative = np.cumsum(counts)
    start_row = 0
    while start_row < n:
      # Rows start_row .. stop_row - 1 hold at most max_chunk candidates (at least one row).
      budget = (cumulative[start_row - 1] if start_row else 0) + max_chunk
      stop_row = max(int(np.searchsorted(cumulative, budget, side="right")), start_row + 1)
      rows = np.arange(start_row, stop_row)
      row_counts = counts[rows]
      total = int(row_counts.sum())
      if total:
        k = np.repeat(rows, row_counts)
        offsets = np.arange(total) - np.repeat(np.cumsum(row_counts) - row_counts, row_counts)
        j = k + 1 + offsets
        hit = elementwise_iou(b[k], b[j]) > iou
        first.append(members[k[hit]])
        second.append(members[j[hit]])
      start_row = stop_row
  if not first:
    return np.zeros([0], np.int64), np.zeros([0], np.int64)
  return np.concatenate(first).astype(np.int64), np.concatenate(second).astype(np.int64)


def merge_nms(boxes, scores, classes, iou: float = 0.5, priority=None) -> np.ndarray:
  """Class-wise greedy NMS: the boxes kept, in rank order.

  Visiting boxes in rank order (descending ``priority``, then score, then ascending index), a
  box is kept unless a kept box of its class overlaps it with IoU ``> iou``: exactly the
  textbook loop (and ``acne_jax.ops.nms.batched_nms`` with class groups when ``priority`` is
  not given), computed on the sparse graph of overlapping pairs (:func:`overlapping_pairs`).

  Args:
    boxes: float ``[N, 4]`` ``(x1, y1, x2, y2)`` pixels.
    scores: float ``[N]``, finite.
    classes: int ``[N]``; boxes of different classes never suppress each other.
    iou: IoU threshold in ``[0, 1]``.
    priority: optional float ``[N]`` ranked before the score (higher first).

  Returns:
    int64 ``[K]`` indices of the kept boxes, in rank order.
  """
  boxes, scores, classes, priority = _as_inputs("merge_nms", boxes, scores, classes, priority)
  n = len(boxes)
  order = rank_order(scores, priority)
  if n == 0:
    return order.astype(np.int64)
  position = np.empty(n, np.int64)
  position[order] = np.arange(n)
  i, j = overlapping_pairs(boxes, classes, iou)
  # Direct every edge from the earlier-ranked box to the later one, grouped by source.
  swap = position[i] > position[j]
  source, target = np.where(swap, j, i), np.where(swap, i, j)
  by_source = np.argsort(position[source], kind="stable")
  source, target = source[by_source], target[by_source]
  suppressed = np.zeros(n, bool)
  if len(source):
    starts = np.flatnonzero(np.r_[True, source[1:] != source[:-1]])
    stops = np.r_[starts[1:], len(source)]
    # Sources in rank order: when box s is reached every box ranked before it is final.
    for s, lo, hi in zip(source[starts].tolist(), starts.tolist(), stops.tolist()):
      if not suppressed[s]:
        suppressed[target[lo:hi]] = True
  return order[~suppressed[order]].astype(np.int64)


def weighted_box_fusion(boxes, scores, classes, iou: float = 0.55, priority=None) -> Dict[str, np.ndarray]:
  """Weighted box fusion per class.

  Boxes are visited in rank order (descending ``priority``, then score, then index). A box
  joins the cluster of its class whose current fused box it overlaps most, if that IoU is
  ``> iou``; otherwise it starts a new cluster. A cluster's fused box is the mean of its
  members' boxes weighted by their scores (the plain mean when every weight is 0) and is
  updated after every join; its score is the highest member score.

  Args:
    boxes: float ``[N, 4]`` ``(x1, y1, x2, y2)`` pixels.
    scores: float ``[N]``, finite and ``>= 0`` (the weights).
    classes: int ``[N]``.
    iou: IoU threshold in ``[0, 1]``.
    priority: optional float ``[N]``, ranked before the score.

  Returns:
    ``{"boxes": float32 [C, 4], "scores": float32 [C], "classes": int32 [C], "size": int32 [C]
    (members per cluster)}``, by descending score (ties: the cluster started first).
  """
  boxes, scores, classes, priority = _as_inputs("weighted_box_fusion", boxes, scores, classes, priority)
  if np.any(scores < 0):
    raise ValueError("weighted_box_fusion: scores are the weights and must be >= 0.")
  order = rank_order(scores, priority)
  out_boxes, out_scores, out_classes, out_sizes, out_rank = [], [], [], [], []
  for c in np.unique(classes):
    fused, best, size, first = _fuse_class(boxes, scores, order[classes[order] == c], iou)
    out_boxes.append(fused)
    out_scores.append(best)
    out_classes.append(np.full(len(best), c, np.int64))
    out_sizes.append(size)
    out_rank.append(first)
  if not out_boxes:
    return {"boxes": np.zeros((0, 4), np.float32), "scores": np.zeros([0], np.float32),
            "classes": np.zeros([0], np.int32), "size": np.zeros([0], np.int32)}
  b, s, cl, sz = (np.concatenate(x) for x in (out_boxes, out_scores, out_classes, out_sizes))
  started = np.concatenate(out_rank)
  sort = np.lexsort((cl, started, -s))
  return {"boxes": b[sort].astype(np.float32), "scores": s[sort].astype(np.float32),
          "classes": cl[sort].astype(np.int32), "size": sz[sort].astype(np.int32)}


def _fuse_class(boxes: np.ndarray, scores: np.ndarray, members: np.ndarray, iou: float):
  """WBF of one class's boxes ``members`` (indices, in rank order).

  Candidate clusters come from a uniform grid: a cluster is listed in every cell that its
  hull (the bounding box of its members) touches, and a fused box, a weighted mean of the
  members, lies inside the hull. A box with IoU > 0 against a fused box shares a point with
  it, hence a cell with the hull, so looking only at the clusters listed in the box's cells
  gives the same result as comparing with every cluster (ties between clusters go to the
  one started first in both cases).

  Returns:
    ``(fused [C, 4], best score [C], members per cluster [C], rank position of the box that
    started each cluster [C])``.
  """
  m = len(members)
  if m == 0:
    return np.zeros((0, 4)), np.zeros([0]), np.zeros([0], np.int64), np.zeros([0], np.int64)
  b = boxes[members]
  sides = np.maximum(np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]), 0.0)
  cell = max(float(np.median(sides)), float(sides.max()) / 16.0, 1e-6)
  box_cells = np.floor(b / cell).astype(np.int64).tolist()
  # Per cluster (plain Python: the loop visits one box at a time, where NumPy's per-call cost
  # would dominate): fused box, score-weighted and plain coordinate sums, weight, size, best
  # score, rank position of its first box, hull and the inclusive cell range it is listed in.
  fused, weighted, plain, weight, size, best, first, hull, cells = [], [], [], [], [], [], [], [], []
  grid: Dict[Tuple[int, int], List[int]] = {}
  for rank_pos, (box, score, (cx0, cy0, cx1, cy1)) in enumerate(zip(b.tolist(), scores[members].tolist(), box_cells)):
    x1, y1, x2, y2 = box
    area = max(x2 - x1, 0.0) * max(y2 - y1, 0.0)
    candidates = set()
    for cx in range(cx0, cx1 + 1):
      for cy in range(cy0, cy1 + 1):
        listed = grid.get((cx, cy))
        if listed:
          candidates.update(listed)
    k, best_iou = -1, iou
    for j in sorted(candidates):  # ascending: ties go to the cluster started first
      f1, g1, f2, g2 = fused[j]
      inter = max(min(x2, f2) - max(x1, f1), 0.0) * max(min(y2, g2) - max(y1, g1), 0.0)
      union = area + max(f2 - f1, 0.0) * max(g2 - g1, 0.0) - inter
      overlap = inter / union if union > 0 else 0.0
      if overlap > best_iou:
        k, best_iou = j, overlap
    if k < 0:
      k = len(fused)
      fused.append(list(box))
      weighted.append([score * v for v in box])
      plain.append(list(box))
      weight.append(score)
      size.append(1)
      best.append(score)
      first.append(rank_pos)
      hull.append(list(box))
      cells.append(None)
    else:
      weighted[k] = [w + score * v for w, v in zip(weighted[k], box)]
      plain[k] = [p + v for p, v in zip(plain[k], box)]
      weight[k] += score
      size[k] += 1
      best[k] = max(best[k], score)
      h = hull[k]
      hull[k] = [min(h[0], x1), min(h[1], y1), max(h[2], x2), max(h[3], y2)]
      fused[k] = [w / weight[k] for w in weighted[k]] if weight[k] > 0 else [p / size[k] for p in plain[k]]
    old = cells[k]
    new = tuple(int(math.floor(v / cell)) for v in hull[k])
    if new != old:
      cells[k] = new
      for cx in range(new[0], new[2] + 1):
        for cy in range(new[1], new[3] + 1):
          if old is None or not (old[0] <= cx <= old[2] and old[1] <= cy <= old[3]):
            grid.setdefault((cx, cy), []).append(k)
  return (np.asarray(fused, np.float64).reshape(-1, 4), np.asarray(best, np.float64), np.asarray(size, np.int64),
          np.asarray(first, np.int64))


def merge(boxes, scores, classes, method: str = "nms", iou: float = 0.5, priority=None) -> Dict[str, np.ndarray]:
  """``{"boxes" float32 [K, 4], "scores" float32 [K], "classes" int32 [K]}`` merged by
  :func:`merge_nms` (``method="nms"``) or :func:`weighted_box_fusion` (``"wbf"``), by descending score."""
  if method == "nms":
    keep = merge_nms(boxes, scores, classes, iou, priority)
    b = np.asarray(boxes, np.float32).reshape(-1, 4)[keep]
    s = np.asarray(scores, np.float32).reshape(-1)[keep]
    c = np.asarray(classes).reshape(-1).astype(np.int32)[keep]
    sort = np.argsort(-s, kind="stable")
    return {"boxes": b[sort], "scores": s[sort], "classes": c[sort]}
  if method == "wbf":
    fused = weighted_box_fusion(boxes, scores, classes, iou, priority)
    return {k: fused[k] for k in ("boxes", "scores", "classes")}
  raise ValueError(f"merge: method must be one of {MERGE_METHODS}; got {method!r}.")
