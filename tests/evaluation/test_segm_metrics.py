"""Mask (segm) evaluation: RLE by hand, and our engine against pycocotools' COCOeval(iouType="segm")."""

from __future__ import annotations

import contextlib
import copy
import io

import numpy as np
import pytest

from acne_jax.evaluation import coco_metrics, rle

pycocotools_mask = pytest.importorskip("pycocotools.mask")

CAPS = (1, 10, 100)


def test_rle_by_hand_and_against_pycocotools():
  mask = np.array([[0, 1, 1], [0, 1, 0]], np.uint8)  # column-major: 0 0 | 1 1 | 1 0 -> runs 2, 3, 1
  encoded = rle.encode(mask)
  assert rle.counts_of(encoded).tolist() == [2, 3, 1] and encoded["size"] == [2, 3]
  np.testing.assert_array_equal(rle.decode(encoded), mask)
  assert rle.area(encoded) == 3
  starts, ends = rle.intervals(encoded)
  assert starts.tolist() == [2] and ends.tolist() == [5]
  assert rle.counts_of(rle.encode(np.ones((2, 2), np.uint8))).tolist() == [0, 4]  # a leading empty run of zeros
  rng = np.random.default_rng(0)
  for _ in range(200):
    h, w = rng.integers(1, 40, 2)
    a = (rng.uniform(size=(h, w)) < rng.uniform()).astype(np.uint8)
    b = (rng.uniform(size=(h, w)) < rng.uniform()).astype(np.uint8)
    theirs_a, theirs_b = pycocotools_mask.encode(np.asfortranarray(a)), pycocotools_mask.encode(np.asfortranarray(b))
    assert rle.encode(a)["counts"] == theirs_a["counts"].decode("ascii")
    np.testing.assert_array_equal(rle.decode(theirs_a), a)
    crowd = [bool(rng.integers(2))]
    assert rle.iou([rle.encode(a)], [rle.encode(b)], crowd)[0, 0] == pytest.approx(
        pycocotools_mask.iou([theirs_a], [theirs_b], crowd)[0, 0], abs=1e-12)


def test_encode_window_equals_encoding_the_whole_mask():
  rng = np.random.default_rng(5)
  for _ in range(1000):
    height, width = rng.integers(1, 20, 2)
    top, left = rng.integers(0, height), rng.integers(0, width)
    bottom, right = rng.integers(top + 1, height + 1), rng.integers(left + 1, width + 1)
    window = (rng.uniform(size=(bottom - top, right - left)) < rng.uniform()).astype(np.uint8)
    full = np.zeros((height, width), np.uint8)
    full[top:bottom, left:right] = window
    assert rle.encode_window(window, top, left, height, width) == rle.encode(full)


def _ellipse(rng, height, width, cx, cy, rx, ry):
  yy, xx = np.mgrid[:height, :width]
  angle = rng.uniform(0, np.pi)
  dx, dy = xx + 0.5 - cx, yy + 0.5 - cy
  u = dx * np.cos(angle) + dy * np.sin(angle)
  v = -dx * np.sin(angle) + dy * np.cos(angle)
  return ((u / rx) ** 2 + (v / ry) ** 2 <= 1.0).astype(np.uint8)


def _bbox(mask):
  ys, xs = np.nonzero(mask)
  if not len(xs):
    return [0.0, 0.0, 0.0, 0.0]
  return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]


def random_segm_set(rng):
  """Ground truth as RLE or polygons (crowds, empty images, small / medium / large masks) and
  detections as RLE: shifted, dilated or eroded copies, strays, score ties, a crowded image."""
  height, width = int(rng.integers(120, 260)), int(rng.integers(120, 260))
  num_images = int(rng.integers(2, 6))
  image_ids = rng.choice(np.arange(1, 500), num_images, replace=False)
  category_ids = sorted(rng.choice(np.arange(1, 12), int(rng.integers(1, 4)), replace=False).tolist())
  images = [{"id": int(i), "height": height, "width": width} for i in image_ids]
  crowded = int(rng.integers(num_images)) if rng.random() < 0.3 else -1
  annotations, results = [], []
  for n, image_id in enumerate(image_ids):
    num_gt = 0 if rng.random() < 0.2 else int(rng.integers(1, 25 if n == crowded else 8))
    for _ in range(num_gt):
      radius = float(rng.choice([rng.uniform(2, 9), rng.uniform(10, 30), rng.uniform(40, 70)]))
      cx, cy = rng.uniform(0, width), rng.uniform(0, height)
      mask = _ellipse(rng, height, width, cx, cy, radius, radius * rng.uniform(0.5, 1.0))
      category = int(rng.choice(category_ids))
      ann = {"id": len(annotations) + 1, "image_id": int(image_id), "category_id": category, "bbox": _bbox(mask),
             "area": float(mask.sum()), "iscrowd": int(rng.random() < 0.08)}
      if rng.random() < 0.3 and not ann["iscrowd"]:  # a polygon: a square-ish outline of the ellipse's box
        x, y, w, h = ann["bbox"]
        ann["segmentation"] = [[x, y, x + w, y, x + w, y + h, x, y + h]]
      else:
        encoded = rle.encode(mask)
        ann["segmentation"] = encoded if rng.random() < 0.7 else {"size": encoded["size"], "counts": rle.counts_of(encoded).tolist()}
      annotations.append(ann)
      for _ in range(int(rng.integers(0, 4))):
        shift = rng.integers(-4, 5, 2)
        moved = np.roll(mask, tuple(shift), axis=(0, 1))
        if rng.random() < 0.3:
          import cv2

          kernel = np.ones((3, 3), np.uint8)
          moved = cv2.dilate(moved, kernel) if rng.random() < 0.5 else cv2.erode(moved, kernel)
        det_category = category if rng.random() < 0.85 else int(rng.choice(category_ids))
        results.append({"image_id": int(image_id), "category_id": det_category, "segmentation": rle.encode(moved),
                        "bbox": _bbox(moved), "score": float(np.round(rng.random(), 1 if rng.random() < 0.5 else 6))})
    for _ in range(int(rng.integers(0, 3))):  # strays
      stray = _ellipse(rng, height, width, rng.uniform(0, width), rng.uniform(0, height), rng.uniform(3, 30), rng.uniform(3, 30))
      results.append({"image_id": int(image_id), "category_id": int(rng.choice(category_ids)), "segmentation": rle.encode(stray),
                      "bbox": _bbox(stray), "score": float(rng.random())})
  categories = [{"id": c, "name": f"c{c}"} for c in category_ids]
  return {"images": images, "annotations": annotations, "categories": categories}, results


def pycocotools_segm(ground_truth, results):
  from pycocotools.coco import COCO
  from pycocotools.cocoeval import COCOeval

  with contextlib.redirect_stdout(io.StringIO()):
    gt = COCO()
    gt.dataset = copy.deepcopy(ground_truth)
    gt.createIndex()
    if results:
      dets = copy.deepcopy(results)
      for d in dets:
        d["segmentation"] = {"size": d["segmentation"]["size"], "counts": d["segmentation"]["counts"].encode("ascii")}
      dt = gt.loadRes(dets)
    else:
      dt = COCO()
      dt.dataset = {"images": list(ground_truth["images"]), "annotations": [], "categories": list(ground_truth["categories"])}
      dt.createIndex()
    evaluator = COCOeval(gt, dt, iouType="segm")
    evaluator.params.maxDets = list(CAPS)
    evaluator.evaluate()
    evaluator.accumulate()
  return evaluator


@pytest.mark.parametrize("chunk", range(5))
def test_segm_matches_pycocotools_on_random_sets(chunk):
  """100 random sets: the whole precision [T, R, K, A, M] and recall arrays."""
  for i in range(20):
    ground_truth, results = random_segm_set(np.random.default_rng(7000 + 20 * chunk + i))
    ours = coco_metrics.evaluate(ground_truth, results, max_dets=CAPS, area_source="annotation", iou_type="segm")
    oracle = pycocotools_segm(ground_truth, results)
    np.testing.assert_allclose(ours.precision, oracle.eval["precision"], atol=1e-6, rtol=0)
    np.testing.assert_allclose(ours.recall, oracle.eval["recall"], atol=1e-6, rtol=0)


def test_the_random_segm_sets_cover_the_cases():
  areas, crowds, empty_images, polygons = [], 0, 0, 0
  for i in range(100):
    gt, _ = random_segm_set(np.random.default_rng(7000 + i))
    areas += [a["area"] for a in gt["annotations"]]
    crowds += sum(a["iscrowd"] for a in gt["annotations"])
    polygons += sum(isinstance(a["segmentation"], list) for a in gt["annotations"])
    with_gt = {a["image_id"] for a in gt["annotations"]}
    empty_images += sum(im["id"] not in with_gt for im in gt["images"])
  areas = np.asarray(areas)
  assert (areas < 32 ** 2).sum() > 50 and ((areas >= 32 ** 2) & (areas < 96 ** 2)).sum() > 50 and (areas >= 96 ** 2).sum() > 20
  assert crowds > 10 and empty_images > 10 and polygons > 50


def test_segm_detection_without_segmentation_is_named():
  gt, results = random_segm_set(np.random.default_rng(1))
  while not results:
    gt, results = random_segm_set(np.random.default_rng(len(gt["images"]) + 2))
  del results[0]["segmentation"]
  with pytest.raises(coco_metrics.CocoFormatError, match="detection 0 has no 'segmentation'"):
    coco_metrics.evaluate(gt, results, iou_type="segm")


def test_segm_results_without_boxes_use_mask_areas_as_pycocotools():
  """``loadRes`` takes the box area when results carry boxes, else the mask area and its box."""
  for i in range(10):
    ground_truth, results = random_segm_set(np.random.default_rng(9000 + i))
    results = [{k: v for k, v in r.items() if k != "bbox"} for r in results]
    ours = coco_metrics.evaluate(ground_truth, results, max_dets=CAPS, area_source="annotation", iou_type="segm")
    oracle = pycocotools_segm(ground_truth, results)
    np.testing.assert_allclose(ours.precision, oracle.eval["precision"], atol=1e-6, rtol=0)
    np.testing.assert_allclose(ours.recall, oracle.eval["recall"], atol=1e-6, rtol=0)
  mask = np.zeros((6, 5), np.uint8)
  mask[2:5, 1:4] = 1
  mask[0, 3] = 1
  assert rle.bbox_of(rle.intervals(rle.encode(mask)), 6) == pycocotools_mask.toBbox(pycocotools_mask.encode(np.asfortranarray(mask))).tolist()


def test_evaluate_command_line_with_iou_type_segm(tmp_path, capsys):
  import json

  from acne_jax import evaluate

  ground_truth, results = random_segm_set(np.random.default_rng(11))
  (tmp_path / "gt.json").write_text(json.dumps(ground_truth))
  (tmp_path / "dets.json").write_text(json.dumps(results))
  code = evaluate.main(["evaluate", "--gt", str(tmp_path / "gt.json"), "--dets", str(tmp_path / "dets.json"), "--iou-type", "segm",
                        "--out", str(tmp_path / "m.json")])
  assert code == 0, capsys.readouterr().err
  written = json.loads((tmp_path / "m.json").read_text())
  oracle = pycocotools_segm(ground_truth, results)
  ap50 = oracle.eval["precision"][0, :, :, 0, 2]
  assert written["AP@0.5"] == pytest.approx(float(np.mean(ap50[ap50 > -1])), abs=1e-6)
  assert written["settings"]["iou_type"] == "segm" and written["settings"]["area_source"] == "annotation"
  assert "froc" not in written and "FROC" not in capsys.readouterr().out
