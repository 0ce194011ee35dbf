"""COCO run-length encoded masks: encode, decode, area and IoU, in NumPy (no pycocotools).

COCO stores an ``H x W`` binary mask as ``{"size": [H, W], "counts": ...}``: the mask is read
in column-major order (down the first column, then the next) and ``counts`` are the lengths of
the alternating runs, zeros first (so a mask starting with a one begins with a zero-length
run). ``counts`` is either that list of integers ("uncompressed RLE") or a string
("compressed RLE", what COCO results carry): each count, minus the count two places before it
from the fourth on, is written as a signed number in 5-bit groups, least significant first,
each group in one character ``chr(48 + group)`` with bit 5 (``0x20``) set while more groups
follow; the last group's bit 4 (``0x10``) is its sign.

Intersections are computed on the runs, never on full-size bitmaps: a whole-face AcneSCU
photo is 18 M pixels, and a mask is a few hundred runs. A mask's ones are intervals
``[start, end)`` of flat column-major indices; the overlap of two masks is
``sum_a F_b(end_a) - F_b(start_a)`` where ``F_b(x)`` is how much of ``b`` lies below ``x``
(a ``searchsorted`` over ``b``'s interval ends and a cumulative sum).
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Sequence, Tuple

import numpy as np


def encode(mask: np.ndarray) -> Dict[str, Any]:
  """Compressed COCO RLE of a binary ``[H, W]`` mask: ``{"size": [H, W], "counts": str}``."""
  mask = np.asarray(mask)
  if mask.ndim != 2:
    raise ValueError(f"rle.encode: mask must be [H, W]; got shape {mask.shape}.")
  flat = (mask != 0).ravel(order="F")
  if not flat.size:
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts_to_string([0])}
  bounds = np.r_[0, np.flatnonzero(flat[1:] != flat[:-1]) + 1, flat.size]
  counts = ([0] if flat[0] else []) + np.diff(bounds).tolist()
  return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts_to_string(counts)}


def encode_window(window: np.ndarray, top: int, left: int, height: int, width: int) -> Dict[str, Any]:
  """Compressed COCO RLE of an ``[height, width]`` mask that is zero outside ``window`` (placed
  with its top-left pixel at ``(top, left)``), without materialising the whole mask: a
  whole-face photo has 18 M pixels, a lesion's window a few hundred."""
  window = np.asarray(window) != 0
  rows, cols = window.shape
  if rows == 0 or cols == 0 or not window.any():
    return {"size": [int(height), int(width)], "counts": counts_to_string([int(height) * int(width)])}
  if top < 0 or left < 0 or top + rows > height or left + cols > width:
    raise ValueError(f"rle.encode_window: a {rows} x {cols} window at ({top}, {left}) is not inside {height} x {width}.")
  padded = np.zeros((rows + 2, cols), np.int8)
  padded[1:-1] = window
  change = np.diff(padded, axis=0)  # [rows + 1, cols]: +1 where a run of ones starts, -1 past its end
  start_row, start_col = np.nonzero(change.T == 1)[::-1]
  end_row, end_col = np.nonzero(change.T == -1)[::-1]
  # np.nonzero on the transpose walks column by column: runs come out in column-major order.
  starts = (start_col + left) * height + start_row + top
  ends = (end_col + left) * height + end_row + top
  # Runs ending at the bottom row and starting again at the top of the next column are one run.
  joined = np.r_[False, ends[:-1] == starts[1:]] if len(starts) else np.zeros(0, bool)
  starts, ends = starts[~joined], ends[np.r_[~joined[1:], True]] if len(ends) else ends
  bounds = np.ravel(np.column_stack([starts, ends]))
  counts = np.diff(np.r_[0, bounds, int(height) * int(width)]).tolist()
  if counts[-1] == 0:  # the mask ends with a one: no trailing run of zeros
    counts.pop()
  return {"size": [int(height), int(width)], "counts": counts_to_string(counts)}


def counts_to_string(counts: Sequence[int]) -> str:
  """COCO's compressed form of uncompressed run lengths (see the module docstring)."""
  out = []
  for i, value in enumerate(counts):
    x = int(value) - (int(counts[i - 2]) if i > 2 else 0)
    more = True
    while more:
      c = x & 0x1F
      x >>= 5
      more = (x != -1) if (c & 0x10) else (x != 0)
      if more:
        c |= 0x20
      out.append(chr(c + 48))
  return "".join(out)


def string_to_counts(text: str) -> List[int]:
  """Run lengths of a compressed COCO ``counts`` string."""
  counts: List[int] = []
  p, n = 0, len(text)
  while p < n:
    x, k, more = 0, 0, True
    while more:
      if p >= n:
        raise ValueError("rle: truncated counts string")
      c = ord(text[p]) - 48
      x |= (c & 0x1F) << (5 * k)
      more = bool(c & 0x20)
      p += 1
      k += 1
      if not more and (c & 0x10):
        x |= -1 << (5 * k)
    if len(counts) > 2:
      x += counts[-2]
    counts.append(x)
  return counts


def counts_of(rle: Mapping[str, Any]) -> np.ndarray:
  """int64 run lengths of a COCO RLE (compressed or not)."""
  counts = rle["counts"]
  if isinstance(counts, bytes):
    counts = counts.decode("ascii")
  values = string_to_counts(counts) if isinstance(counts, str) else list(counts)
  return np.asarray(values, np.int64)


def decode(rle: Mapping[str, Any]) -> np.ndarray:
  """uint8 ``[H, W]`` binary mask of a COCO RLE."""
  height, width = (int(v) for v in rle["size"])
  counts = counts_of(rle)
  values = np.arange(len(counts)) % 2
  flat = np.repeat(values.astype(np.uint8), counts)
  if flat.size != height * width:
    raise ValueError(f"rle: counts sum to {flat.size}, not {height} x {width}.")
  return flat.reshape((width, height)).T.copy()


def intervals(rle: Mapping[str, Any]) -> Tuple[np.ndarray, np.ndarray]:
  """``(starts, ends)`` int64 of the runs of ones, in flat column-major indices."""
  counts = counts_of(rle)
  bounds = np.cumsum(np.r_[0, counts])
  starts, ends = bounds[1:-1:2], bounds[2::2]
  keep = ends > starts
  return starts[keep], ends[keep]


def bbox_of(runs: Tuple[np.ndarray, np.ndarray], height: int) -> List[float]:
  """COCO ``[x, y, w, h]`` of a mask from its runs of ones (pycocotools' ``toBbox``: whole pixels,
  ``w = x_max - x_min + 1``; ``[0, 0, 0, 0]`` for an empty mask)."""
  starts, ends = runs
  if not len(starts):
    return [0.0, 0.0, 0.0, 0.0]
  last = ends - 1
  first_col, last_col = starts // height, last // height
  one_column = first_col == last_col
  y_min = np.where(one_column, starts % height, 0).min()
  y_max = np.where(one_column, last % height, height - 1).max()
  x_min, x_max = first_col.min(), last_col.max()
  return [float(x_min), float(y_min), float(x_max - x_min + 1), float(y_max - y_min + 1)]


def area(rle: Mapping[str, Any]) -> int:
  """Number of ones."""
  return int(counts_of(rle)[1::2].sum())


def _overlap(a: Tuple[np.ndarray, np.ndarray], b: Tuple[np.ndarray, np.ndarray]) -> int:
  """Ones common to two masks given as sorted disjoint intervals ``(starts, ends)``."""
  if not len(a[0]) or not len(b[0]):
    return 0
  end = np.iinfo(np.int64).max
  b_starts, b_ends = np.r_[b[0], end], np.r_[b[1], end]  # a sentinel interval past every index
  covered = np.r_[0, np.cumsum(b[1] - b[0])]  # covered[k]: ones of b in its first k intervals

  def below(x):  # ones of b at flat indices < x
    k = np.searchsorted(b_ends, x, side="right")  # intervals of b that end at or before x
    return covered[k] + np.clip(x - b_starts[k], 0, None)  # plus the part of the next one below x

  return int(np.sum(below(a[1]) - below(a[0])))


def iou(detections: Sequence[Mapping[str, Any]], ground_truth: Sequence[Mapping[str, Any]], crowd: Sequence[bool]) -> np.ndarray:
  """float64 ``[D, G]`` mask IoU, COCO's definition: intersection over union, or over the
  detection's area where the ground truth is a crowd region. Masks of different sizes are an
  error; an empty union gives 0."""
  crowd = np.asarray(crowd, bool).reshape(-1)
  out = np.zeros((len(detections), len(ground_truth)))
  if not len(detections) or not len(ground_truth):
    return out
  sizes = {tuple(int(v) for v in r["size"]) for r in list(detections) + list(ground_truth)}
  if len(sizes) > 1:
    raise ValueError(f"rle.iou: masks of different sizes {sorted(sizes)}")
  det_runs = [intervals(r) for r in detections]
  gt_runs = [intervals(r) for r in ground_truth]
  for i, d in enumerate(det_runs):
    for j, g in enumerate(gt_runs):
      out[i, j] = runs_iou(d, g, bool(crowd[j]))
  return out


def runs_iou(detection: Tuple[np.ndarray, np.ndarray], ground_truth: Tuple[np.ndarray, np.ndarray], crowd: bool = False) -> float:
  """COCO mask IoU of two masks given by their runs of ones (:func:`intervals`): intersection
  over union, or over the detection's area for a crowd ground truth; 0 for an empty union."""
  inter = _overlap(detection, ground_truth)
  det_area = float(np.sum(detection[1] - detection[0]))
  union = det_area if crowd else det_area + float(np.sum(ground_truth[1] - ground_truth[0])) - inter
  return inter / union if union > 0 else 0.0
