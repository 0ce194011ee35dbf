"""Sliced whole-image prediction: the tile grid, the merges, the border rule and the command line."""

from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest

from acne_jax import predict
from acne_jax.data import synthetic
from acne_jax.evaluation import merge, numpy_boxes
from acne_jax.models.bbox_head import Detections
from acne_jax.models.detector import Prediction

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ----------------------------------------------------------------------------------------
# A perfect detector inside each tile.


def perfect_detector(image, gt_boxes, gt_labels, tile, batch, min_overlap, score=lambda visible: np.full_like(visible, 0.9),
                     max_dets=128):
  """A stub ``predict_fn`` that reports, for every ground-truth box intersecting a tile, the box
  clipped to the tile (tile pixels) with ``score(visible fraction)``.

  ``predict_image`` calls ``predict_fn`` on the tiles of ``tile_origins`` in order, ``batch`` at
  a time; the stub checks that it is given exactly those pixels (zero padding included).
  """
  height, width = image.shape[:2]
  origins = merge.tile_origins(height, width, tile, min_overlap)
  gt_boxes = np.asarray(gt_boxes, np.float64).reshape(-1, 4)
  calls = []

  def predict_fn(variables, tiles):
    assert variables == "vars"
    assert tiles.shape == (batch, tile, tile, 3) and tiles.dtype == np.uint8
    start = len(calls) * batch
    calls.append(start)
    boxes = np.zeros((batch, max_dets, 4), np.float32)
    scores = np.zeros((batch, max_dets), np.float32)
    classes = np.zeros((batch, max_dets), np.int32)
    valid = np.zeros((batch, max_dets), bool)
    for k in range(batch):
      if start + k >= len(origins):
        assert not tiles[k].any(), "padding tiles of the last batch must be blank"
        continue
      x0, y0 = (int(v) for v in origins[start + k])
      crop = image[y0:y0 + tile, x0:x0 + tile]
      expected = np.zeros((tile, tile, 3), np.uint8)
      expected[:crop.shape[0], :crop.shape[1]] = crop
      np.testing.assert_array_equal(tiles[k], expected)
      local = gt_boxes - [x0, y0, x0, y0]
      clipped = np.clip(local, 0, tile)
      seen = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
      area = lambda b: (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
      visible = area(clipped[seen]) / area(local[seen])
      n = int(seen.sum())
      assert n <= max_dets
      boxes[k, :n] = clipped[seen]
      scores[k, :n] = score(visible)
      classes[k, :n] = np.asarray(gt_labels)[seen]
      valid[k, :n] = True
    return Prediction(Detections(boxes, scores, classes, valid), None)

  return predict_fn, origins, calls


def _straddles_internal_border(box, origins, tile, height, width):
  """True when some tile cuts the box at one of its internal borders."""
  for x0, y0 in origins:
    cuts = ((x0 > 0 and box[0] < x0 < box[2]) or (x0 + tile < width and box[0] < x0 + tile < box[2]) or
            (y0 > 0 and box[1] < y0 < box[3]) or (y0 + tile < height and box[1] < y0 + tile < box[3]))
    overlaps = box[0] < x0 + tile and box[2] > x0 and box[1] < y0 + tile and box[3] > y0
    if cuts and overlaps:
      return True
  return False


def _whole_somewhere(box, origins, tile, height, width, margin):
  for x0, y0 in origins:
    if ((x0 == 0 or box[0] > x0 + margin) and (y0 == 0 or box[1] > y0 + margin) and
        (x0 + tile >= width or box[2] < x0 + tile - margin) and (y0 + tile >= height or box[3] < y0 + tile - margin)):
      return True
  return False


@pytest.fixture(scope="module")
def synthetic_photo():
  record = synthetic.generate_example(1, image_size=(600, 900), num_lesions=(40, 60))
  return record["image"], record["objects"]["bbox"].astype(np.float64), record["objects"]["label"].astype(np.int32)


@pytest.mark.parametrize("method", ["nms", "wbf"])
def test_a_lesion_straddling_a_tile_border_is_reported_once_with_its_full_box(synthetic_photo, method):
  image, gt_boxes, gt_labels = synthetic_photo
  height, width = image.shape[:2]
  tile, batch, overlap = 256, 4, 96
  predict_fn, origins, calls = perfect_detector(image, gt_boxes, gt_labels, tile, batch, overlap)
  # Preconditions that make the test meaningful: a 6 x 4 grid, many lesions cut by tile
  # borders, and every lesion whole in some tile.
  assert len(origins) == 24
  straddling = [_straddles_internal_border(b, origins, tile, height, width) for b in gt_boxes]
  assert sum(straddling) >= 10, sum(straddling)
  assert all(_whole_somewhere(b, origins, tile, height, width, predict.DEFAULT_BORDER_MARGIN) for b in gt_boxes)

  result = predict.predict_image(predict_fn, "vars", image, tile, batch, overlap, merge=method, merge_iou=0.5)
  assert len(calls) == -(-len(origins) // batch)
  assert result["boxes"].dtype == np.float32 and result["classes"].dtype == np.int32
  assert len(result["scores"]) == len(gt_boxes), "every lesion exactly once"
  assert np.all(np.diff(result["scores"]) <= 0)
  # Match each lesion to the merged box equal to its full box (and of its class).
  for box, label in zip(gt_boxes, gt_labels):
    same = np.all(np.abs(result["boxes"] - box) < 1e-3, axis=1) & (result["classes"] == label)
    assert same.sum() == 1, (box, label)
  np.testing.assert_allclose(result["scores"], 0.9)


def test_odd_tile_counts_pad_the_last_batch(synthetic_photo):
  image, gt_boxes, gt_labels = synthetic_photo
  tile, batch, overlap = 256, 5, 96  # 24 tiles: the fifth call has 4 real tiles and 1 blank
  predict_fn, origins, calls = perfect_detector(image, gt_boxes, gt_labels, tile, batch, overlap)
  result = predict.predict_image(predict_fn, "vars", image, tile, batch, overlap)
  assert len(calls) == 5 and len(origins) == 24
  assert len(result["scores"]) == len(gt_boxes)


def _two_tile_case():
  """A 100 x 180 image, tiles of 100 at x = 0 and 80 (overlap 20), and two lesions."""
  image = np.full((100, 180, 3), 128, np.uint8)
  boxes = np.asarray([[85.0, 40.0, 105.0, 60.0],  # cut by tile 0's border x = 100, whole in tile 1
                      [10.0, 10.0, 30.0, 30.0]])  # inside tile 0 only
  return image, boxes, np.asarray([2, 5], np.int32)


def test_the_whole_view_wins_over_a_cut_view_that_scored_higher():
  image, boxes, labels = _two_tile_case()
  # The cut view (75% visible) scores 0.95, the whole view 0.9; their IoU is 0.75 > 0.5.
  score = lambda visible: np.where(visible < 1, 0.95, 0.9)
  for drop in (True, False):  # dropped before the merge, or ranked after whole views in NMS
    predict_fn, origins, _ = perfect_detector(image, boxes, labels, 100, 2, 20, score=score)
    np.testing.assert_array_equal(origins, [[0, 0], [80, 0]])
    result = predict.predict_image(predict_fn, "vars", image, 100, 2, 20, merge="nms", drop_truncated=drop)
    assert len(result["scores"]) == 2
    straddler = result["classes"] == 2
    np.testing.assert_allclose(result["boxes"][straddler], boxes[:1])
    np.testing.assert_allclose(result["scores"][straddler], [0.9])


def test_cut_views_are_kept_when_no_tile_sees_the_lesion_whole():
  image, _, _ = _two_tile_case()
  boxes = np.asarray([[70.0, 40.0, 110.0, 60.0]])  # wider than the overlap: cut in both tiles
  predict_fn, _, _ = perfect_detector(image, boxes, [3], 100, 2, 20)
  raw = predict.tile_detections(predict_fn, "vars", image, merge.tile_origins(100, 180, 100, 20), 100, 2)
  np.testing.assert_allclose(raw["boxes"], [[70, 40, 100, 60], [80, 40, 110, 60]])
  result = predict.merge_tile_detections(raw, merge.tile_origins(100, 180, 100, 20), 100, 100, 180, merge_iou=0.3)
  np.testing.assert_allclose(result["boxes"], [[70, 40, 100, 60]])  # IoU 0.5 > 0.3: merged, nothing lost


def test_boxes_in_the_zero_padding_are_clipped_to_the_image():
  image = np.full((50, 70, 3), 100, np.uint8)  # smaller than the tile: one padded tile

  def predict_fn(variables, tiles):
    assert tiles.shape == (1, 96, 96, 3) and not tiles[0, 50:].any() and not tiles[0, :, 70:].any()
    boxes = np.asarray([[[60.0, 40.0, 90.0, 60.0], [75.0, 10.0, 90.0, 20.0]]], np.float32)
    return Prediction(Detections(boxes, np.asarray([[0.8, 0.7]], np.float32), np.zeros((1, 2), np.int32), np.ones((1, 2), bool)), None)

  result = predict.predict_image(predict_fn, None, image, 96, 1)
  np.testing.assert_allclose(result["boxes"], [[60, 40, 70, 50]])  # the second box lies wholly in the padding


# ----------------------------------------------------------------------------------------
# The merges and the grid.


def nms_reference(boxes, scores, classes, iou, priority):
  """The textbook greedy loop."""
  order = sorted(range(len(scores)), key=lambda i: (-priority[i], -scores[i], i))
  kept = []
  for i in order:
    if all(classes[k] != classes[i] or numpy_boxes.pairwise_iou(boxes[i], boxes[k])[0, 0] <= iou for k in kept):
      kept.append(i)
  return kept


@pytest.mark.parametrize("iou", [0.0, 0.3, 0.5, 0.8])
def test_merge_nms_matches_the_plain_loop(iou):
  rng = np.random.default_rng(int(iou * 10))
  for trial in range(4):
    n = 250
    xy = rng.uniform(0, 150, (n, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(0, 40, (n, 2))], axis=1)
    boxes[:5, 2:] = boxes[:5, :2]  # empty boxes never suppress nor get suppressed
    boxes[5:10] = boxes[10:15]  # exact duplicates
    scores = rng.integers(0, 8, n) / 8.0  # many ties
    classes = rng.integers(0, 3, n)
    priority = rng.integers(0, 2, n) if trial % 2 else np.zeros(n)
    kept = merge.merge_nms(boxes, scores, classes, iou, priority if trial % 2 else None)
    assert kept.tolist() == nms_reference(boxes, scores, classes, iou, priority)


def test_merge_nms_agrees_with_the_jax_batched_nms():
  from acne_jax.ops.nms import batched_nms

  rng = np.random.default_rng(5)
  n = 200
  xy = rng.uniform(0, 120, (n, 2))
  boxes = np.concatenate([xy, xy + rng.uniform(2, 40, (n, 2))], axis=1).astype(np.float32)
  scores = rng.integers(0, 10, n).astype(np.float32) / 10
  classes = rng.integers(0, 4, n)
  indices, valid = batched_nms(boxes, scores, classes, 0.5, n)
  assert merge.merge_nms(boxes, scores, classes, 0.5).tolist() == np.asarray(indices)[np.asarray(valid)].tolist()


def test_merge_nms_small_chunks_and_empty_input():
  rng = np.random.default_rng(3)
  xy = rng.uniform(0, 60, (120, 2))
  boxes = np.concatenate([xy, xy + rng.uniform(5, 30, (120, 2))], axis=1)
  classes = np.zeros(120, np.int64)
  i, j = merge.overlapping_pairs(boxes, classes, 0.2, max_chunk=7)
  i2, j2 = merge.overlapping_pairs(boxes, classes, 0.2)
  assert sorted(zip(np.minimum(i, j), np.maximum(i, j))) == sorted(zip(np.minimum(i2, j2), np.maximum(i2, j2)))
  everything = numpy_boxes.pairwise_iou(boxes, boxes) > 0.2
  assert len(i) == (everything.sum() - np.trace(everything)) // 2
  assert merge.merge_nms(np.zeros((0, 4)), [], [], 0.5).shape == (0,)
  empty = merge.merge(np.zeros((0, 4)), [], [], "wbf")
  assert empty["boxes"].shape == (0, 4)


def test_weighted_box_fusion_by_hand():
  boxes = np.asarray([
      [0, 0, 10, 10],  # A, class 0, 0.9: starts cluster 1
      [1, 0, 11, 10],  # B, class 0, 0.6: IoU(B, A) = 9 / 11 > 0.55 -> joins; fused x = (0.4, 10.4)
      [0, 0, 10, 10],  # C, class 1, 0.8: other class, its own cluster
      [20, 20, 30, 30],  # D, class 0, 0.5: no overlap, its own cluster
      [2, 0, 12, 10],  # E, class 0, 0.3: IoU with (0.4, 0, 10.4, 10) = 8.4 / 11.6 > 0.55 -> joins
      [5, 0, 15, 10],  # F, class 0, 0.2: IoU 5.67 / 14.33 = 0.40 with the fused box -> own cluster
  ], np.float64)
  scores = np.asarray([0.9, 0.6, 0.8, 0.5, 0.3, 0.2])
  classes = np.asarray([0, 0, 1, 0, 0, 0])
  fused = merge.weighted_box_fusion(boxes, scores, classes, iou=0.55)
  x1 = (0.6 * 1 + 0.3 * 2) / 1.8
  x2 = (0.9 * 10 + 0.6 * 11 + 0.3 * 12) / 1.8
  np.testing.assert_allclose(fused["boxes"], [[x1, 0, x2, 10], [0, 0, 10, 10], [20, 20, 30, 30], [5, 0, 15, 10]], rtol=1e-6)
  np.testing.assert_allclose(fused["scores"], [0.9, 0.8, 0.5, 0.2], rtol=1e-6)
  assert fused["classes"].tolist() == [0, 1, 0, 0]
  assert fused["size"].tolist() == [3, 1, 1, 1]
  # Zero weights: the plain mean.
  zero = merge.weighted_box_fusion(boxes[:2], [0.0, 0.0], [0, 0], iou=0.55)
  np.testing.assert_allclose(zero["boxes"], [[0.5, 0, 10.5, 10]])


def test_weighted_box_fusion_matches_a_full_search():
  """The grid lookup gives the result of comparing every box with every cluster."""
  rng = np.random.default_rng(7)
  n = 300
  xy = rng.uniform(0, 200, (n, 2))
  boxes = np.concatenate([xy, xy + rng.uniform(1, 60, (n, 2))], axis=1)
  scores = rng.uniform(0.05, 1, n)
  classes = rng.integers(0, 2, n)
  fused = merge.weighted_box_fusion(boxes, scores, classes, iou=0.3)
  clusters = []  # [class, members]
  for i in np.lexsort((np.arange(n), -scores)):
    best, best_iou = None, 0.3
    for cluster in clusters:
      if cluster[0] == classes[i]:
        members = cluster[1]
        box = (scores[members, None] * boxes[members]).sum(0) / scores[members].sum()
        overlap = numpy_boxes.pairwise_iou(boxes[i], box)[0, 0]
        if overlap > best_iou:
          best, best_iou = cluster, overlap
    if best is None:
      clusters.append([classes[i], [i]])
    else:
      best[1].append(i)
  assert len(clusters) == len(fused["scores"])
  expected = sorted(((scores[m].max(), len(m)) for _, m in clusters), key=lambda t: -t[0])
  np.testing.assert_allclose(fused["scores"], [e[0] for e in expected], rtol=1e-6)
  assert sorted(fused["size"].tolist()) == sorted(e[1] for e in expected)


@pytest.mark.parametrize("size", [1, 96, 97, 200, 255, 256, 257, 300, 900, 1000, 3456, 5184])
@pytest.mark.parametrize("tile,min_overlap", [(96, 0), (96, 12), (256, 32), (256, 96), (1024, 128)])
def test_tile_origins_cover_the_image_with_the_minimum_overlap_and_equal_steps(size, tile, min_overlap):
  origins = merge.tile_origins(size, size + 7, tile, min_overlap)
  xs, ys = np.unique(origins[:, 0]), np.unique(origins[:, 1])
  assert len(origins) == len(xs) * len(ys)
  for axis, length in ((ys, size), (xs, size + 7)):
    assert axis[0] == 0
    if length <= tile:
      assert len(axis) == 1
      continue
    assert axis[-1] + tile == length  # the last tile ends at the border
    steps = np.diff(axis)
    assert steps.max() - steps.min() <= 1  # equal up to rounding
    assert tile - steps.max() >= min_overlap  # every overlap is at least the minimum
    n = len(axis)  # and n is the fewest tiles that can do it
    assert (n - 2) * (tile - min_overlap) + tile < length
  if min_overlap == 0:
    from acne_jax.data import masked_crop

    np.testing.assert_array_equal(origins, masked_crop.crop_origins(size, size + 7, tile))


def test_acne_scu_default_grid_is_the_masked_crop_grid():
  from acne_jax.data import masked_crop

  np.testing.assert_array_equal(merge.tile_origins(3456, 5184, 1024, predict.default_overlap(1024)),
                                masked_crop.crop_origins(3456, 5184, 1024))
  with pytest.raises(ValueError):
    merge.tile_origins(100, 100, 64, 64)


# ----------------------------------------------------------------------------------------
# The command line, on a freshly initialised tiny model.

def _tiny_overrides():
  from acne_jax.testing import tiny

  return ["--config.data.image_size=(96, 96)", "--config.data.max_boxes=8"] + tiny.flags()


def _save_initial_checkpoint(workdir):
  from acne_jax.testing import tiny
  from configs import sadh

  config = tiny.apply(sadh.get_config())
  with config.unlocked():
    config.data.image_size = (96, 96)
    config.data.max_boxes = 8
  tiny.save_drawn_checkpoint(config, workdir)


def test_command_line_writes_detections_figure_and_counts(tmp_path, capsys, monkeypatch):
  # Every path relative to the current directory, as a user types them.
  monkeypatch.chdir(tmp_path)
  workdir, out = "work", "out"
  _save_initial_checkpoint(workdir)
  image = synthetic.generate_example(0, image_size=(200, 300))["image"]
  path = "face.png"
  cv2.imwrite(path, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))

  argv = ["predict", f"--config={os.path.relpath(os.path.join(REPO, 'configs', 'sadh.py'))}", *_tiny_overrides(),
          f"--workdir={workdir}", "--tile=96", "--batch=4", "--score-threshold=0.0", f"--out={out}", "--image_id=7", path]
  assert predict.main(argv) == 0
  printed = capsys.readouterr().out
  assert "counting at score >= 0 (--score_threshold)" in printed and "lesions counted (score >= 0;" in printed

  with open(os.path.join(out, "face_detections.json")) as f:
    results = json.load(f)
  assert results, "a random model still scores ~1/11 per class, above model.score_threshold"
  assert all(r["image_id"] == 7 and 1 <= r["category_id"] <= 10 and len(r["bbox"]) == 4 for r in results)
  assert all(0 <= r["bbox"][0] and r["bbox"][0] + r["bbox"][2] <= 300 + 1e-3 for r in results)
  with open(os.path.join(out, "face_counts.json")) as f:
    counts = json.load(f)
  assert list(counts) == list(synthetic.CLASS_NAMES)
  assert sum(counts.values()) == len(results)  # threshold 0: everything is counted
  figure = cv2.imread(os.path.join(out, "face_detections.png"))
  assert figure is not None and figure.shape[1] == 300 and figure.shape[0] > 200  # the image plus a legend
  assert figure.std() > 10 and len(np.unique(figure.reshape(-1, 3), axis=0)) > 100

  assert predict.main(["predict", f"--config={os.path.join(REPO, 'configs', 'sadh.py')}", f"--workdir={workdir}"]) == 2
  assert predict.main(argv[:-1] + [str(tmp_path / "missing.png")]) == 1


# ----------------------------------------------------------------------------------------
# Counting thresholds.

OPERATING_POINT = {
    "split": "validation", "iou": 0.5, "images": 48,
    "global": {"threshold": 0.6, "precision": 0.8, "recall": 0.7, "f1": 0.75, "detections": 10, "true_positives": 8, "positives": 11},
    "per_class": {name: {"threshold": 0.1 * (i + 1), "precision": 0.9, "recall": 0.8, "f1": 0.85, "detections": 1,
                         "true_positives": 1, "positives": 1, "source": "calibrated"}
                  for i, name in enumerate(synthetic.CLASS_NAMES[:9])},  # the last class falls back to the global one
    "per_class_combined": {"precision": 0.85, "recall": 0.75, "f1": 0.8, "detections": 9, "true_positives": 8, "positives": 11},
}


def test_counting_thresholds_stored_overridden_calibrated_now_or_fallback(monkeypatch):
  from acne_jax import train
  from acne_jax import datasets
  from configs import sadh

  config = sadh.get_config()
  names = synthetic.CLASS_NAMES
  expected = [0.1 * (i + 1) for i in range(9)] + [0.6]
  thresholds, report = predict.counting_thresholds(config, {"operating_point": OPERATING_POINT}, None, None, names)
  np.testing.assert_allclose(thresholds, expected)
  assert "stored with the checkpoint" in report and "precision 0.850, recall 0.750" in report

  thresholds, report = predict.counting_thresholds(config, {"operating_point": OPERATING_POINT}, None, None, names, override=0.25)
  np.testing.assert_allclose(thresholds, 0.25)

  calls = []
  monkeypatch.setattr(datasets, "source", lambda data, split, key: (None, names))
  monkeypatch.setattr(train, "calibrate_counting", lambda *args: calls.append(args) or OPERATING_POINT)
  thresholds, report = predict.counting_thresholds(config, {"step": 100}, "fn", "vars", names)
  np.testing.assert_allclose(thresholds, expected)
  assert len(calls) == 1 and calls[0][:2] == ("fn", "vars") and "calibrated now" in report

  with config.unlocked():
    config.eval.calibration_split = ""
  thresholds, report = predict.counting_thresholds(config, {}, None, None, names)
  np.testing.assert_allclose(thresholds, predict.FALLBACK_SCORE_THRESHOLD)
  assert "--score_threshold" in report


def test_counts_and_drawing_use_each_class_threshold():
  detections = {"boxes": np.array([[10, 10, 30, 30], [40, 40, 60, 60], [70, 10, 90, 30]], np.float32),
                "scores": np.array([0.5, 0.5, 0.35], np.float32), "classes": np.array([0, 1, 1], np.int32)}
  names = ("a", "b")
  assert predict.count_classes(detections["classes"], detections["scores"], names, [0.6, 0.3]) == {"a": 0, "b": 2}
  assert predict.count_classes(detections["classes"], detections["scores"], names, 0.4) == {"a": 1, "b": 1}
  image = np.full((100, 100, 3), 200, np.uint8)
  figure = predict.draw_detections(image, detections, names, [0.6, 0.3])
  colors = predict.class_colors(2)
  # Class a's box (score 0.5 < 0.6) is not drawn; class b's two boxes are.
  assert tuple(figure[10, 20]) == (200, 200, 200)
  assert tuple(figure[40, 50]) == colors[1] and tuple(figure[10, 80]) == colors[1]


def test_a_mask_model_gets_masks_through_tiling_merging_drawing_and_the_json(synthetic_photo, tmp_path):
  from acne_jax.evaluation import rle

  image, gt_boxes, gt_labels = synthetic_photo
  height, width = image.shape[:2]
  box_fn, origins, _ = perfect_detector(image, gt_boxes, gt_labels, 256, 4, 96)

  def predict_fn(variables, tiles):  # the perfect boxes, each with a mask filling its box
    prediction = box_fn(variables, tiles)
    masks = np.ones((*prediction.detections.scores.shape, 28, 28), np.float32)
    return Prediction(prediction.detections, None, masks)

  result = predict.predict_image(predict_fn, "vars", image, 256, 4, 96)
  assert result["masks"].shape == (len(gt_boxes), 28, 28) and result["mask_boxes"].shape == (len(gt_boxes), 4)
  # Every merged lesion kept the mask of a tile detection lying over its own full box.
  np.testing.assert_allclose(result["mask_boxes"], result["boxes"], atol=1e-3)
  paths = predict.write_outputs(str(tmp_path), "face", image, result, 1, synthetic.CLASS_NAMES, 0.5)
  with open(paths["detections.json"]) as f:
    written = json.load(f)
  for entry in written:
    mask = rle.decode(entry["segmentation"])
    x, y, w, h = entry["bbox"]
    assert mask.shape == (height, width)
    assert mask[int(np.ceil(y)):int(y + h), int(np.ceil(x)):int(x + w)].all()  # the box's pixels are all in the mask
    assert mask.sum() <= (w + 1) * (h + 1)
  figure = cv2.imread(paths["detections.png"])
  assert figure is not None and figure.shape[1] == width


def test_a_resize_config_predicts_on_the_resized_photo_and_maps_back():
  """data.resize_min/max_size (torchvision's resize): the tiles are cut from the resized photo and
  the detections come back in the original pixels, by torchvision's postprocess rule."""
  from acne_jax.data import resize as resize_lib

  image = np.random.default_rng(3).integers(0, 255, (300, 450, 3), dtype=np.uint8)
  gt = np.array([[30.0, 40.0, 90.0, 100.0], [200.0, 150.0, 260.0, 230.0]])
  resized, resized_gt, _, _ = resize_lib.resize_example(image, gt.astype(np.float32), 200, 400)
  assert resized.shape[:2] == (200, 300)
  predict_fn, _, _ = perfect_detector(resized, resized_gt, [1, 2], tile=256, batch=2, min_overlap=32)
  out = predict.predict_image(predict_fn, "vars", image, tile=256, batch=2, min_overlap=32, resize_min_size=200,
                              resize_max_size=400)
  order = np.argsort(out["classes"])
  np.testing.assert_array_equal(out["classes"][order], [1, 2])
  np.testing.assert_allclose(out["boxes"][order], gt, atol=1e-3)


@pytest.mark.parametrize("counts, grade, counted", [
    ({"papule": 3, "pustule": 2, "nodule": 0, "closed_comedo": 40, "nevus": 9}, 0, 5),  # comedones and nevi do not count
    ({"papule": 3, "pustule": 2, "nodule": 1, "closed_comedo": 40}, 1, 6),
    ({"papule": 20, "open_comedo": 3}, 1, 20),
    ({"papule": 20, "pustule": 1}, 2, 21),
    ({"acne": 50}, 2, 50),  # ACNE04's one class: every lesion counts
    ({"acne": 51}, 3, 51),
])
def test_predict_reports_the_hayashi_grade_of_the_counted_inflammatory_lesions(counts, grade, counted):
  report = predict.hayashi_report(counts)
  assert (report["hayashi_grade"], report["counted_lesions"]) == (grade, counted)


def test_no_hayashi_grade_for_a_model_without_acne_classes():
  assert predict.hayashi_report({"liver": 3, "lung": 60}) is None
