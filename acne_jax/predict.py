"""Detect lesions on whole photographs by tiling: ``python -m acne_jax.predict --config=... --workdir=DIR IMAGE...``.

    python -m acne_jax.predict --config=configs/sadh.py:acne_scu --workdir=workdir/acne_scu photo.jpg
    python -m acne_jax.predict --config=configs/sadh.py --workdir=workdir/sadh --tile=256 --merge=wbf a.png b.png

A full-resolution photo (AcneSCU: about 3456 x 5184) is far larger than the crops the model
was trained on, so it is cut into overlapping square tiles, the tiles go through the detector
in fixed-size batches, and the detections are mapped back and merged.

Tiles. Side ``--tile`` (default: the config's ``data.image_size``, the training crop size),
origins from :func:`acne_jax.evaluation.merge.tile_origins` with neighbouring tiles
overlapping by at least ``--overlap`` pixels (default ``tile // 8``: 128 for 1024 tiles, which
for a 3456 x 5184 photo is the 4 x 6 grid of the reference's masked crops) and equal steps.
An image side shorter than the tile gets one tile, zero-padded (bottom / right) like the
training crops. Every batch has ``--batch`` tiles (the last one padded with blank tiles), so
ONE compiled predict function serves every image and every batch.

Merge rule (:func:`merge_tile_detections`), per image, after mapping boxes to image pixels
and clipping them to the image:

1. A box is *truncated* in its tile when it comes within ``border_margin`` pixels (default 2)
   of an *internal* border of that tile (a border that is not the image's): the lesion may
   continue in the neighbouring tile. A box is *whole* in a tile when it lies inside that
   tile and more than ``border_margin`` pixels from each of its internal borders.
2. With ``drop_truncated`` (default on, ``--nodrop_truncated`` to disable), a truncated box
   is dropped when it is whole in some other tile: that tile saw the lesion (at least all of
   it that this box shows) whole and reports it itself. Lesions that no tile sees whole (larger
   than the overlap) keep their pieces, which the merge below may join or not; raise
   ``--overlap`` to the size of the largest lesions to avoid that.
3. The boxes left are merged class-wise (``--merge_iou``, default 0.5) by greedy NMS
   (``--merge=nms``, default) or weighted box fusion (``--merge=wbf``), visiting boxes that
   are not truncated before truncated ones and each group by descending score: so when a
   whole view and a cut view of a lesion both survive step 2 (it is off, or the lesion is not
   more than ``border_margin`` inside the other tile), the whole view wins even if the cut one
   scored higher, and WBF seeds clusters with whole views.

The model's own per-tile NMS and score threshold (``model.score_threshold``) still apply first.

A config with torchvision's resize (``data.resize_min_size`` / ``resize_max_size``,
``configs/torchvision_faster_rcnn.py``) resizes each photo that way first, tiles the resized
photo, and maps the detections back to the original pixels as torchvision does.

Outputs per image, in ``--out`` (default ``<workdir>/predictions``), named after the image's
stem: ``<stem>_detections.json`` (COCO results: ``image_id`` from ``--image_id``, incremented
per image in command-line order, ``category_id`` = class + 1, ``bbox`` ``[x, y, w, h]``;
every merged detection, whatever its score), ``<stem>_detections.png`` (the photo, its longer
side downscaled to ``--draw_max_side``, with the counted boxes drawn in per-class colours and a
legend with the counts), ``<stem>_counts.json`` (class name -> number of lesions counted;
also printed) and, for acne models, ``<stem>_grade.json``: the Hayashi grade the counts imply
(:func:`hayashi_report`: inflammatory lesions, i.e. papules, pustules and nodules of AcneSCU's
classes or every lesion of ACNE04's single class; 0 mild <= 5, 1 moderate 6-20, 2 severe 21-50,
3 very severe > 50), also printed.

Counting. A detection is counted (and drawn) when it scores at least its class's threshold:
by default the per-class thresholds that maximise F1 on the validation split, chosen at the end
of training and stored with the final checkpoint (:mod:`acne_jax.evaluation.operating_point`;
see :func:`counting_thresholds` for checkpoints without them); ``--score_threshold`` (or
``--score-threshold``) sets one threshold for every class instead. The thresholds and the
precision and recall they give on the validation split are printed first.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

import cv2
import numpy as np

from acne_jax import cli
from acne_jax.data import resize as resize_lib
from acne_jax.evaluation import merge as merge_lib
from acne_jax.paths import resolve

DEFAULT_BORDER_MARGIN = 2.0


def default_overlap(tile: int) -> int:
  """The default minimum overlap of neighbouring tiles: ``tile // 8``."""
  return int(tile) // 8


def _detections(output) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """``(boxes [B, D, 4], scores [B, D], classes [B, D], valid [B, D])`` on the host from a
  model ``Prediction`` (or bare ``Detections``); only these arrays leave the device."""
  import jax

  dets = getattr(output, "detections", output)
  boxes, scores, classes, valid = jax.device_get((dets.boxes, dets.scores, dets.classes, dets.valid))
  return np.asarray(boxes), np.asarray(scores), np.asarray(classes), np.asarray(valid)


def _masks(output) -> Optional[np.ndarray]:
  """``[B, D, m, m]`` mask probabilities of a mask model's ``Prediction``, else ``None``."""
  import jax

  masks = getattr(output, "masks", None)
  return None if masks is None else np.asarray(jax.device_get(masks), np.float16)


def tile_batches(image: np.ndarray, origins: np.ndarray, tile: int, batch: int):
  """Yields ``(first tile index, number of real tiles, uint8 [batch, tile, tile, 3])``.

  Tiles past the image (bottom / right) and the padding tiles of the last batch are zeros.
  """
  height, width = image.shape[:2]
  for start in range(0, len(origins), batch):
    chunk = origins[start:start + batch]
    tiles = np.zeros((batch, tile, tile, image.shape[2]), image.dtype)
    for k, (x0, y0) in enumerate(chunk.tolist()):
      crop = image[y0:min(y0 + tile, height), x0:min(x0 + tile, width)]
      tiles[k, :crop.shape[0], :crop.shape[1]] = crop
    yield start, len(chunk), tiles


def tile_detections(predict_fn: Callable, variables: Any, image: np.ndarray, origins: np.ndarray, tile: int,
                    batch: int) -> Dict[str, np.ndarray]:
  """Runs ``predict_fn`` over every tile and maps the detections to image pixels.

  Args:
    predict_fn: ``(variables, uint8 [batch, tile, tile, 3]) -> Prediction`` (or ``Detections``)
      with ``boxes [batch, D, 4]`` x1y1x2y2 tile pixels, ``scores``, ``classes``, ``valid``
      ``[batch, D]``; normalisation is its business (``acne_jax.train.make_predict``). Called
      with the same shapes every time, so a jitted function compiles once. The next batch
      is dispatched before the previous one's results are fetched (asynchronous dispatch
      overlaps cutting tiles with the model).
    variables: passed through to ``predict_fn``.
    image: uint8 ``[H, W, 3]`` RGB.
    origins: int ``[M, 2]`` ``(x0, y0)`` tile corners.
    tile: tile side.
    batch: tiles per call.

  Returns:
    ``{"boxes": float32 [N, 4] image pixels clipped to the image, "scores": float32 [N],
    "classes": int32 [N], "tile": int32 [N] index into origins}``; boxes that are empty after
    clipping (wholly in a tile's zero padding) are dropped. For a mask model also ``"masks"``
    float16 ``[N, m, m]`` (probabilities over each box) and ``"mask_boxes"`` ``[N, 4]`` (the
    unclipped boxes they lie over).
  """
  height, width = image.shape[:2]
  origins = np.asarray(origins, np.int64).reshape(-1, 2)
  parts = []

  def collect(start, count, output):
    boxes, scores, classes, valid = _detections(output)
    masks = _masks(output)
    for k in range(count):
      v = np.asarray(valid[k], bool)
      x0, y0 = origins[start + k]
      b = boxes[k][v].astype(np.float32) + np.asarray([x0, y0, x0, y0], np.float32)
      # A mask is relative to its unclipped box: keep that box beside the clipped one.
      unclipped = b.copy()
      b = np.clip(b, 0.0, np.asarray([width, height, width, height], np.float32))
      nonempty = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
      part = (b[nonempty], scores[k][v][nonempty].astype(np.float32), classes[k][v][nonempty].astype(np.int32),
              np.full(int(nonempty.sum()), start + k, np.int32))
      if masks is not None:
        part += (masks[k][v][nonempty], unclipped[nonempty])
      parts.append(part)

  pending = None
  for start, count, tiles in tile_batches(image, origins, tile, batch):
    output = predict_fn(variables, tiles)
    if pending is not None:
      collect(*pending)
    pending = (start, count, output)
  if pending is not None:
    collect(*pending)
  if not parts:
    return {"boxes": np.zeros((0, 4), np.float32), "scores": np.zeros([0], np.float32),
            "classes": np.zeros([0], np.int32), "tile": np.zeros([0], np.int32)}
  names = ("boxes", "scores", "classes", "tile", "masks", "mask_boxes")
  return {name: np.concatenate([p[i] for p in parts]) for i, name in enumerate(names[:len(parts[0])])}


def _safe_bounds(origins: np.ndarray, tile: int, height: int, width: int, margin: float) -> np.ndarray:
  """float64 ``[M, 4]`` per tile: a box is whole in the tile iff ``x1 > b0, y1 > b1, x2 < b2,
  y2 < b3`` (``-inf`` / ``+inf`` at image borders, which are not internal)."""
  x0, y0 = origins[:, 0].astype(np.float64), origins[:, 1].astype(np.float64)
  return np.stack([
      np.where(x0 > 0, x0 + margin, -np.inf),
      np.where(y0 > 0, y0 + margin, -np.inf),
      np.where(x0 + tile < width, x0 + tile - margin, np.inf),
      np.where(y0 + tile < height, y0 + tile - margin, np.inf),
  ], axis=1)


def whole_in_tiles(boxes: np.ndarray, origins: np.ndarray, tile: int, height: int, width: int,
                   margin: float = DEFAULT_BORDER_MARGIN) -> np.ndarray:
  """bool ``[N, M]``: box ``n`` (image pixels, inside the image) is whole in tile ``m``: inside
  it and more than ``margin`` pixels from each of its internal borders."""
  bounds = _safe_bounds(np.asarray(origins).reshape(-1, 2), tile, height, width, margin)
  b = np.asarray(boxes, np.float64).reshape(-1, 4)
  return ((b[:, None, 0] > bounds[None, :, 0]) & (b[:, None, 1] > bounds[None, :, 1]) &
          (b[:, None, 2] < bounds[None, :, 2]) & (b[:, None, 3] < bounds[None, :, 3]))


def merge_tile_detections(raw: Mapping[str, np.ndarray], origins: np.ndarray, tile: int, height: int, width: int,
                          merge: str = "nms", merge_iou: float = 0.5, drop_truncated: bool = True,
                          border_margin: float = DEFAULT_BORDER_MARGIN) -> Dict[str, np.ndarray]:
  """Merges :func:`tile_detections` output by the rule of the module docstring.

  Returns:
    ``{"boxes": float32 [K, 4], "scores": float32 [K], "classes": int32 [K]}`` by descending score.
  """
  boxes, scores, classes, tiles = (np.asarray(raw[k]) for k in ("boxes", "scores", "classes", "tile"))
  origins = np.asarray(origins, np.int64).reshape(-1, 2)
  bounds = _safe_bounds(origins, tile, height, width, border_margin)[tiles]
  truncated = ~((boxes[:, 0] > bounds[:, 0]) & (boxes[:, 1] > bounds[:, 1]) & (boxes[:, 2] < bounds[:, 2]) & (boxes[:, 3] < bounds[:, 3]))
  if drop_truncated and truncated.any():
    candidates = np.flatnonzero(truncated)
    drop = np.zeros(len(boxes), bool)
    for lo in range(0, len(candidates), 4096):
      rows = candidates[lo:lo + 4096]
      drop[rows] = whole_in_tiles(boxes[rows], origins, tile, height, width, border_margin).any(axis=1)
    keep = ~drop
    boxes, scores, classes, truncated = boxes[keep], scores[keep], classes[keep], truncated[keep]
  return merge_lib.merge(boxes, scores, classes, merge, merge_iou, priority=(~truncated).astype(np.float64))


def predict_image(predict_fn: Callable, variables: Any, image: np.ndarray, tile: int, batch: int = 4,
                  min_overlap: Optional[int] = None, merge: str = "nms", merge_iou: float = 0.5,
                  drop_truncated: bool = True, border_margin: float = DEFAULT_BORDER_MARGIN,
                  resize_min_size: float = 0, resize_max_size: float = 0,
                  resize_style: str = "torchvision") -> Dict[str, np.ndarray]:
  """Detections on a whole image of any size, by overlapping tiles (see the module docstring).

  With ``resize_min_size`` / ``resize_max_size`` (a config's ``data.resize_*``: torchvision's
  detector resize, or MMDetection's keep-ratio resize with ``resize_style="mmdetection"``), the
  image is first resized as the model saw its training images, tiled at that size, and the
  detections mapped back to the original pixels.

  Args:
    predict_fn: ``(variables, uint8 [batch, tile, tile, 3]) -> Prediction`` (see
      :func:`tile_detections`); any function of that form, e.g. a stub in tests.
    variables: the model variables, passed to ``predict_fn``.
    image: uint8 ``[H, W, 3]`` RGB, any ``H``, ``W``.
    tile: tile side in pixels.
    batch: tiles per ``predict_fn`` call (fixed; the last call is padded).
    min_overlap: minimum overlap of neighbouring tiles (default :func:`default_overlap`).
    merge: ``"nms"`` or ``"wbf"``.
    merge_iou: IoU above which same-class boxes are merged.
    drop_truncated: drop boxes cut by a tile border that another tile sees whole.
    border_margin: pixels from an internal tile border within which a box counts as cut.

  Returns:
    ``{"boxes": float32 [K, 4] x1y1x2y2 image pixels, "scores": float32 [K], "classes":
    int32 [K] in 0..num_classes-1}``, by descending score; for a mask model also ``"masks"``
    ``[K, m, m]`` and ``"mask_boxes"`` ``[K, 4]`` (see :func:`tile_detections`).
  """
  image = np.asarray(image)
  if image.ndim != 3 or image.shape[2] != 3:
    raise ValueError(f"predict_image: image must be [H, W, 3]; got shape {image.shape}.")
  original_size = image.shape[:2]
  resizing = resize_lib.resize_enabled(resize_min_size, resize_max_size)
  if resizing:
    image = resize_lib.resize_example(image, np.zeros((0, 4), np.float32), resize_min_size, resize_max_size,
                                      style=resize_style)[0]
  height, width = image.shape[:2]
  min_overlap = default_overlap(tile) if min_overlap is None else int(min_overlap)
  origins = merge_lib.tile_origins(height, width, tile, min_overlap)
  raw = tile_detections(predict_fn, variables, image, origins, tile, batch)
  merged = merge_tile_detections(raw, origins, tile, height, width, merge, merge_iou, drop_truncated, border_margin)
  if "masks" in raw:
    merged.update(_masks_of_merged(raw, merged))
  if resizing:
    for key in ("boxes", "mask_boxes"):
      if key in merged:
        merged[key] = resize_lib.boxes_to_original(merged[key][None], [(height, width)], [original_size])[0]
  return merged


def _masks_of_merged(raw: Mapping[str, np.ndarray], merged: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
  """Each merged detection's mask: that of the tile detection of its class that overlaps it
  most, higher score first among equals (for NMS, the detection it kept)."""
  from acne_jax.evaluation import numpy_boxes

  n, m = len(merged["scores"]), raw["masks"].shape[-1]
  masks, boxes = np.zeros((n, m, m), np.float16), np.zeros((n, 4), np.float32)
  if n and len(raw["scores"]):
    iou = numpy_boxes.pairwise_iou(np.asarray(merged["boxes"], np.float64), np.asarray(raw["boxes"], np.float64))
    iou = np.where(merged["classes"][:, None] == raw["classes"][None, :], iou, -1.0)
    best = np.argmax(iou + 1e-6 * raw["scores"][None, :], axis=1)
    masks, boxes = raw["masks"][best], raw["mask_boxes"][best]
  return {"masks": masks, "mask_boxes": boxes}


# ----------------------------------------------------------------------------------------
# Outputs.


def class_names_for(config) -> Tuple[str, ...]:
  """Class names of the config's data set, without loading the data set."""
  from acne_jax.models import factory

  num_classes = factory.num_classes(config.model)
  name = config.data.name
  from acne_jax.data.records import CLASS_NAMES

  names: Sequence[str] = CLASS_NAMES.get(name, ())
  if len(names) != num_classes:
    names = tuple(f"class_{i}" for i in range(num_classes))
  return tuple(names)


def class_colors(num_classes: int) -> Tuple[Tuple[int, int, int], ...]:
  """One RGB colour per class: the data preview's ten, then evenly spaced hues."""
  from acne_jax.data.preview import CLASS_COLORS

  colors = list(CLASS_COLORS[:num_classes])
  for i in range(len(colors), num_classes):
    hsv = np.uint8([[[int(180 * i / num_classes), 220, 230]]])
    colors.append(tuple(int(v) for v in cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0]))
  return tuple(colors)


def class_thresholds(score_threshold, num_classes: int) -> np.ndarray:
  """float64 ``[K]``: one threshold per class from a scalar (every class) or a ``[K]`` sequence."""
  thresholds = np.broadcast_to(np.asarray(score_threshold, np.float64), (num_classes,)).copy()
  return thresholds


def describe_thresholds(score_threshold, class_names: Sequence[str]) -> str:
  """"score >= 0.5" for one threshold for all classes, else "per-class score thresholds"."""
  t = class_thresholds(score_threshold, len(class_names))
  return f"score >= {t[0]:g}" if np.all(t == t[0]) else "score >= the per-class thresholds"


def count_classes(classes: np.ndarray, scores: np.ndarray, class_names: Sequence[str], score_threshold) -> Dict[str, int]:
  """``{class name: detections scoring >= their class's threshold}`` for every class (zeros
  included); ``score_threshold`` is a scalar for every class or one per class ``[K]``."""
  from acne_jax.evaluation.operating_point import counted

  classes = np.asarray(classes, np.int64)
  kept = classes[counted(scores, classes, class_thresholds(score_threshold, len(class_names)))]
  return {name: int(np.sum(kept == i)) for i, name in enumerate(class_names)}


def draw_detections(image: np.ndarray, detections: Mapping[str, np.ndarray], class_names: Sequence[str],
                    score_threshold, max_side: int = 2048, mask_threshold: float = 0.5) -> np.ndarray:
  """uint8 RGB figure: ``image`` (longer side downscaled to ``max_side``) with the boxes
  counted at ``score_threshold`` (scalar, or per class ``[K]``) in class colours, and a legend
  of class names and counts below."""
  from acne_jax.evaluation.operating_point import counted

  height, width = image.shape[:2]
  scale = min(1.0, max_side / max(height, width))
  out = image if scale == 1.0 else cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA)
  out = np.ascontiguousarray(out, np.uint8).copy()
  colors = class_colors(len(class_names))
  thickness = max(1, round(max(out.shape[:2]) / 1000))
  keep = counted(detections["scores"], detections["classes"], class_thresholds(score_threshold, len(class_names)))
  boxes = np.asarray(detections["boxes"], np.float64)[keep] * scale
  classes = np.asarray(detections["classes"])[keep]
  if "masks" in detections:  # a translucent fill of each counted lesion's mask
    from acne_jax.models.mask_head import paste_mask_window

    overlay = out.copy()
    mask_boxes = np.asarray(detections["mask_boxes"], np.float64)[keep] * scale
    for probs, mask_box, cls in zip(np.asarray(detections["masks"])[keep], mask_boxes, classes):
      window, top, left = paste_mask_window(probs.astype(np.float32), mask_box, out.shape[0], out.shape[1], mask_threshold)
      region = overlay[top:top + window.shape[0], left:left + window.shape[1]]
      region[window.astype(bool)] = colors[int(cls)]
    out = cv2.addWeighted(overlay, 0.45, out, 0.55, 0.0)
  # Low scores first so the most confident boxes end on top.
  for box, cls in list(zip(boxes, classes))[::-1]:
    x1, y1 = int(np.floor(box[0])), int(np.floor(box[1]))
    x2, y2 = max(int(np.ceil(box[2])) - 1, x1), max(int(np.ceil(box[3])) - 1, y1)
    cv2.rectangle(out, (x1, y1), (x2, y2), colors[int(cls)], thickness)
  counts = count_classes(detections["classes"], detections["scores"], class_names, score_threshold)
  return np.concatenate([out, _legend(out.shape[1], class_names, colors, counts, describe_thresholds(score_threshold, class_names))],
                        axis=0)


def _legend(width: int, class_names: Sequence[str], colors, counts: Mapping[str, int], rule: str) -> np.ndarray:
  """uint8 ``[rows * row_height + pad, width, 3]`` white strip: a swatch, name and count per class."""
  s = max(1.0, width / 1200)
  columns = max(1, min(5, int(width // (220 * s))))
  row = int(22 * s)
  rows = -(-len(class_names) // columns) + 1
  out = np.full((rows * row + int(6 * s), width, 3), 255, np.uint8)
  font, font_scale, line = cv2.FONT_HERSHEY_SIMPLEX, 0.45 * s, max(1, int(s))
  total = sum(counts.values())
  cv2.putText(out, f"{total} lesions counted ({rule})", (int(8 * s), int(16 * s)), font, font_scale,
              (0, 0, 0), line, cv2.LINE_AA)
  step = width // columns
  for i, name in enumerate(class_names):
    x, y = int(8 * s) + (i % columns) * step, (1 + i // columns) * row + int(5 * s)
    side = int(12 * s)
    cv2.rectangle(out, (x, y), (x + side, y + side), colors[i], -1)
    cv2.rectangle(out, (x, y), (x + side, y + side), (120, 120, 120), 1)
    cv2.putText(out, f"{name} ({counts[name]})", (x + side + int(5 * s), y + side - 1), font, font_scale, (0, 0, 0), line, cv2.LINE_AA)
  return out


def write_outputs(out_dir: str, stem: str, image: np.ndarray, detections: Mapping[str, np.ndarray], image_id: int,
                  class_names: Sequence[str], score_threshold, draw_max_side: int = 2048, mask_threshold: float = 0.5) -> Dict[str, str]:
  """Writes ``<stem>_detections.json``, ``<stem>_detections.png`` and ``<stem>_counts.json``; returns their paths."""
  from acne_jax.evaluation import coco_metrics

  os.makedirs(out_dir, exist_ok=True)
  paths = {kind: os.path.join(out_dir, f"{stem}_{kind}") for kind in ("detections.json", "detections.png", "counts.json")}
  n = len(detections["scores"])
  results = coco_metrics.coco_results([image_id], [detections["boxes"]], [detections["scores"]], [detections["classes"]],
                                      [np.ones(n, bool)])
  if "masks" in detections:  # COCO RLE of each mask over the whole photo
    from acne_jax.evaluation import rle
    from acne_jax.models.mask_head import paste_mask_window

    height, width = image.shape[:2]
    for result, probs, box in zip(results, detections["masks"], detections["mask_boxes"]):
      window, top, left = paste_mask_window(np.asarray(probs, np.float32), box, height, width, mask_threshold)
      result["segmentation"] = rle.encode_window(window, top, left, height, width)
  with open(paths["detections.json"], "w") as f:
    json.dump(results, f)
  figure = draw_detections(image, detections, class_names, score_threshold, draw_max_side, mask_threshold)
  if not cv2.imwrite(paths["detections.png"], cv2.cvtColor(figure, cv2.COLOR_RGB2BGR)):
    raise OSError(f"could not write {paths['detections.png']}")
  counts = count_classes(detections["classes"], detections["scores"], class_names, score_threshold)
  with open(paths["counts.json"], "w") as f:
    json.dump(counts, f, indent=2)
  grade = hayashi_report(counts)
  if grade is not None:
    paths["grade.json"] = os.path.join(out_dir, f"{stem}_grade.json")
    with open(paths["grade.json"], "w") as f:
      json.dump(grade, f, indent=2)
  return paths


def hayashi_report(counts: Mapping[str, int]) -> Optional[Dict[str, Any]]:
  """The Hayashi grade implied by one image's counted lesions (``{class name: count}``), or
  ``None`` when no class of the model is one Hayashi counts (e.g. DeepLesion's).

  Returns:
    ``{"hayashi_grade": 0..3, "hayashi_grade_name", "counted_lesions", "counted_classes"}``.
  """
  from acne_jax.grading import scales

  counted = [name for name in counts if name in scales.HAYASHI_COUNTED_CLASSES]
  if not counted:
    return None
  grade = scales.hayashi_grade_of_counts(counts)
  return {"hayashi_grade": grade, "hayashi_grade_name": scales.HAYASHI_GRADE_NAMES[grade],
          "counted_lesions": scales.inflammatory_count(counts), "counted_classes": counted}


def read_image(path: str) -> np.ndarray:
  """uint8 ``[H, W, 3]`` RGB (grey and alpha images are converted)."""
  image = cv2.imread(path, cv2.IMREAD_COLOR)
  if image is None:
    raise FileNotFoundError(f"cannot read image {path!r} (missing or not an image OpenCV can decode).")
  return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def make_predict_fn(config):
  """The jitted ``(variables, uint8 [B, T, T, 3]) -> Prediction`` of ``config``'s model."""
  import jax

  from acne_jax import train
  from acne_jax.models import factory

  return jax.jit(train.make_predict(factory.build(config.model, train=False), config.data.mean, config.data.std))


FALLBACK_SCORE_THRESHOLD = 0.5


def counting_thresholds(config, meta: Mapping[str, Any], predict_fn: Callable, variables: Any, class_names: Sequence[str],
                        override: Optional[float] = None) -> Tuple[np.ndarray, str]:
  """The per-class score thresholds ``predict`` counts and draws at, and a report of where they
  come from and the precision and recall they give on the calibration split.

  In order: ``override`` (``--score_threshold``) for every class; else the operating point
  stored with the checkpoint (``meta["operating_point"]``, written by training); else, for a
  checkpoint without one (an intermediate step, an older run), the operating point is
  calibrated now on ``eval.calibration_split``; else ``FALLBACK_SCORE_THRESHOLD``.
  """
  from acne_jax import train
  from acne_jax import datasets
  from acne_jax.evaluation import operating_point

  num_classes = len(class_names)
  if override is not None:
    return class_thresholds(override, num_classes), f"counting at score >= {override:g} (--score_threshold)"
  stored = (meta or {}).get("operating_point")
  source = "stored with the checkpoint"
  if not stored and config.eval.calibration_split:
    _, data_names = datasets.source(config.data, config.eval.calibration_split, "eval.calibration_split")
    stored = train.calibrate_counting(predict_fn, variables, config, data_names)
    source = "calibrated now: the checkpoint has none"
  if not stored:
    return (class_thresholds(FALLBACK_SCORE_THRESHOLD, num_classes),
            f"counting at score >= {FALLBACK_SCORE_THRESHOLD:g}: no calibration split (eval.calibration_split is ''); "
            "pass --score_threshold to choose")
  thresholds = operating_point.thresholds_by_class(stored, class_names)
  report = operating_point.describe(stored, stored.get("split", "validation"))
  return thresholds, f"{report}\n  ({source})"


def _underscore_flag_names(argv: Sequence[str], flag_values) -> list:
  """``--score-threshold=0.4`` -> ``--score_threshold=0.4`` for this command's own flags, so both
  spellings work (absl knows only the underscored one)."""
  out = []
  for arg in argv:
    name, sep, value = arg.partition("=")
    if name.startswith("--") and "-" in name[2:] and not name.startswith("--config"):
      plain = name[2:].replace("-", "_")
      negated = plain[2:] if plain.startswith("no") else plain
      if plain in flag_values or negated in flag_values:
        arg = f"--{plain}{sep}{value}"
    out.append(arg)
  return out


def default_tile(config) -> int:
  """The tile side when ``--tile`` is not given: the test-time ``data.image_size``
  (:func:`acne_jax.data.resize.at_test_size`)."""
  return int(max(resize_lib.at_test_size(config.data)["image_size"]))


def inference_resize(config) -> Tuple[int, int, str]:
  """``(resize_min_size, resize_max_size, resize_style)`` a whole photo is resized by before
  tiling: the config's, at ``data.test_size`` when that is set."""
  data = resize_lib.at_test_size(config.data)
  return (*resize_lib.configured_sizes(data), resize_lib.configured_style(data))


# ----------------------------------------------------------------------------------------
# Command line.


def main(argv=None) -> int:
  from absl import flags
  from ml_collections import config_flags

  from acne_jax import evaluate
  from acne_jax.models import factory

  flag_values = flags.FlagValues()
  config_flag = config_flags.DEFINE_config_file("config", None, "The config the model was trained with.", flag_values=flag_values, lock_config=True)
  flags.DEFINE_string("workdir", None, "Workdir of the training run (its checkpoints are read).", flag_values=flag_values)
  flags.DEFINE_integer("step", None, "Checkpoint step (default: the newest).", flag_values=flag_values)
  flags.DEFINE_integer("tile", None, "Tile side in pixels (default: the config's data.image_size).", flag_values=flag_values)
  flags.DEFINE_integer("overlap", None, "Minimum overlap of neighbouring tiles in pixels (default: tile // 8).", flag_values=flag_values)
  flags.DEFINE_integer("batch", 4, "Tiles per model call.", flag_values=flag_values)
  flags.DEFINE_enum("merge", "nms", list(merge_lib.MERGE_METHODS), "How detections of overlapping tiles are merged.", flag_values=flag_values)
  flags.DEFINE_float("merge_iou", 0.5, "IoU above which same-class boxes are merged.", flag_values=flag_values)
  flags.DEFINE_bool("drop_truncated", True, "Drop boxes cut by a tile border that another tile sees whole.", flag_values=flag_values)
  flags.DEFINE_float("border_margin", DEFAULT_BORDER_MARGIN, "Pixels from an internal tile border within which a box counts as cut.",
                     flag_values=flag_values)
  flags.DEFINE_float("score_threshold", None, "Count and draw the boxes scoring at least this, whatever their class (default: the "
                     "per-class thresholds calibrated on the validation split; the JSON has every box).", flag_values=flag_values)
  flags.DEFINE_string("out", None, "Output folder (default <workdir>/predictions).", flag_values=flag_values)
  flags.DEFINE_integer("image_id", 0, "COCO image_id of the first image; the next images count up.", flag_values=flag_values)
  flags.DEFINE_integer("draw_max_side", 2048, "Longer side of the drawn PNG (larger images are downscaled).", flag_values=flag_values)
  argv = _underscore_flag_names(list(sys.argv if argv is None else argv), flag_values)
  images = cli.parse(flag_values, argv)
  if images is None:
    return 2
  if config_flag.value is None or not flag_values.workdir or not images:
    print("error: --config, --workdir and at least one image are required, e.g. python -m acne_jax.predict "
          "--config=configs/sadh.py --workdir=workdir/sadh photo.jpg", file=sys.stderr)
    return 2
  config = config_flag.value
  tile = flag_values.tile or default_tile(config)
  overlap = default_overlap(tile) if flag_values.overlap is None else flag_values.overlap
  if not 0 <= overlap < tile or flag_values.batch < 1:
    print(f"error: need 0 <= --overlap < --tile ({overlap}, {tile}) and --batch >= 1.", file=sys.stderr)
    return 2
  workdir = resolve(flag_values.workdir)
  out_dir = resolve(flag_values.out) if flag_values.out else os.path.join(workdir, "predictions")
  try:
    variables, step, meta = evaluate.restore(config, workdir, flag_values.step)
    predict_fn = make_predict_fn(config)
    names = class_names_for(config)
    print(f"checkpoint step {step} of {workdir}; tiles {tile} px, overlap >= {overlap} px, batch {flag_values.batch}, "
          f"merge {flag_values.merge} at IoU {flag_values.merge_iou:g}", flush=True)
    thresholds, report = counting_thresholds(config, meta, predict_fn, variables, names, flag_values.score_threshold)
    print(report, flush=True)
    rule = describe_thresholds(thresholds, names)
    for offset, path in enumerate(images):
      image = read_image(path)
      detections = predict_image(predict_fn, variables, image, tile, flag_values.batch, overlap, flag_values.merge,
                                 flag_values.merge_iou, flag_values.drop_truncated, flag_values.border_margin,
                                 *inference_resize(config))
      stem = os.path.splitext(os.path.basename(path))[0]
      paths = write_outputs(out_dir, stem, image, detections, flag_values.image_id + offset, names, thresholds,
                            flag_values.draw_max_side, factory.mask_threshold(config.model))
      counts = count_classes(detections["classes"], detections["scores"], names, thresholds)
      listed = ", ".join(f"{name} {n}" for name, n in counts.items() if n) or "none"
      print(f"{path} ({image.shape[1]}x{image.shape[0]}): {sum(counts.values())} lesions counted ({rule}; "
            f"{len(detections['scores'])} detections in all): {listed}", flush=True)
      grade = hayashi_report(counts)
      if grade is not None:
        print(f"  Hayashi grade {grade['hayashi_grade']} ({grade['hayashi_grade_name']}): {grade['counted_lesions']} "
              f"inflammatory lesions counted ({', '.join(grade['counted_classes'])})", flush=True)
      print(f"  wrote {', '.join(paths.values())}", flush=True)
  except (FileNotFoundError, ValueError, OSError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
