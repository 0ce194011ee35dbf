"""Our COCO engine against pycocotools (the oracle) on random sets (FROC: test_froc.py)."""

from __future__ import annotations

import contextlib
import copy
import io

import numpy as np
import pytest

from acne_jax.evaluation import coco_metrics

pytest.importorskip("pycocotools")

CAPS = (1, 10, 100, 300)  # the standard three and a crowded cap


def random_set(rng, crowded=None, mask_area=False):
  """A random COCO ground truth and results list.

  Several (non-contiguous) categories, images listed out of order, images without ground truth,
  crowd annotations, all size buckets (and exact bucket edges), duplicated annotations, detections
  that are jittered / duplicated / half copies of annotations (IoU exactly 0.5), detections on
  images without ground truth, a crowded image (>100 detections) in some sets, score ties.
  """
  num_images = int(rng.integers(3, 13))
  image_ids = rng.choice(np.arange(1, 1000), num_images, replace=False)
  category_ids = sorted(rng.choice(np.arange(1, 30), int(rng.integers(1, 5)), replace=False).tolist())
  images = [{"id": int(i), "height": 400, "width": 400} for i in rng.permutation(image_ids)]
  categories = [{"id": int(c), "name": f"class{c}"} for c in category_ids]
  crowded_image = int(rng.integers(num_images)) if (crowded if crowded is not None else rng.random() < 0.3) else -1
  integer_coords = rng.random() < 0.5
  tie_step = [None, 0.1, 0.02][int(rng.integers(3))]
  annotations, results = [], []

  def size():
    bucket = rng.integers(5)
    if bucket == 3:
      return [(32.0, 32.0), (96.0, 96.0), (16.0, 64.0), (48.0, 192.0)][int(rng.integers(4))]
    lo, hi = [(1, 31), (33, 95), (97, 250), (1, 250)][min(bucket, 3)]
    w, h = rng.uniform(lo, hi, 2)
    return (float(np.round(w)), float(np.round(h))) if integer_coords else (float(w), float(h))

  def add_detection(image_id, category, bbox):
    score = float(rng.random())
    if tie_step:
      score = float(np.round(score / tie_step) * tie_step)
    results.append({"image_id": int(image_id), "category_id": int(category), "bbox": [float(v) for v in bbox], "score": score})

  for n, image_id in enumerate(image_ids):
    num_gt = 0 if rng.random() < 0.2 else int(rng.integers(1, 40 if n == crowded_image else 12))
    image_annotations = []
    for _ in range(num_gt):
      if image_annotations and rng.random() < 0.1:
        ann = dict(image_annotations[int(rng.integers(len(image_annotations)))])  # a duplicate
      else:
        w, h = size()
        x, y = rng.uniform(0, 300, 2)
        if integer_coords:
          x, y = np.round(x), np.round(y)
        ann = {"image_id": int(image_id), "category_id": int(rng.choice(category_ids)), "bbox": [float(x), float(y), w, h],
               "iscrowd": int(rng.random() < 0.08)}
      ann = dict(ann, id=len(annotations) + 1)
      ann["area"] = ann["bbox"][2] * ann["bbox"][3] * (float(rng.uniform(0.5, 1.0)) if mask_area else 1.0)
      annotations.append(ann)
      image_annotations.append(ann)
    for ann in image_annotations:
      x, y, w, h = ann["bbox"]
      for _ in range(int(rng.integers(0, 4))):
        kind = rng.random()
        if kind < 0.15:
          bbox = [x, y, w, h]
        elif kind < 0.3:
          bbox = [x, y, w, h / 2]  # IoU exactly 0.5
        else:
          jitter = rng.normal(0, float(rng.choice([0.05, 0.15, 0.3])), 4) * [w, h, w, h]
          bbox = [x + jitter[0], y + jitter[1], max(w + jitter[2], 0.0), max(h + jitter[3], 0.0)]
        category = ann["category_id"] if rng.random() < 0.85 else int(rng.choice(category_ids))
        add_detection(image_id, category, bbox)
    num_random = int(rng.integers(110, 330)) if n == crowded_image else int(rng.integers(0, 8))
    for _ in range(num_random):
      w, h = size()
      x, y = rng.uniform(0, 300, 2)
      add_detection(image_id, int(rng.choice(category_ids)), [x, y, w, h])
  if rng.random() < 0.4:
    # Two annotations a detection overlaps equally (pycocotools gives it the later one), and a
    # lower-scored detection on the first: which one the first takes decides the second's match.
    image_id, category = int(rng.choice(image_ids)), int(rng.choice(category_ids))
    x, y, s = (float(v) for v in rng.integers(0, 300, 3) + [0, 0, 10])
    for bbox in ([x, y, s, s], [x + 2, y, s, s]):
      annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category, "bbox": bbox,
                          "iscrowd": 0, "area": s * s})
    results.append({"image_id": image_id, "category_id": category, "bbox": [x + 1, y, s, s], "score": 1.0})
    results.append({"image_id": image_id, "category_id": category, "bbox": [x, y, s, s], "score": 0.99})
  rng.shuffle(results)
  return {"images": images, "annotations": annotations, "categories": categories}, results


def pycocotools_eval(ground_truth, results, iou_thresholds, max_dets):
  from pycocotools.coco import COCO
  from pycocotools.cocoeval import COCOeval

  with contextlib.redirect_stdout(io.StringIO()):
    gt = COCO()
    gt.dataset = copy.deepcopy(ground_truth)
    gt.createIndex()
    if results:
      dt = gt.loadRes(copy.deepcopy(results))
    else:
      dt = COCO()
      dt.dataset = {"images": list(ground_truth["images"]), "annotations": [], "categories": list(ground_truth["categories"])}
      dt.createIndex()
    evaluator = COCOeval(gt, dt, iouType="bbox")
    evaluator.params.iouThrs = np.asarray(iou_thresholds, float)
    evaluator.params.maxDets = list(max_dets)
    evaluator.evaluate()
    evaluator.accumulate()
    if len(max_dets) >= 3 and len(iou_thresholds) == 10:
      evaluator.summarize()
  return evaluator


def oracle_mean(values):
  return float(np.mean(values[values > -1])) if np.any(values > -1) else -1.0


def check_against_oracle(ground_truth, results):
  ours = coco_metrics.evaluate(ground_truth, results, max_dets=CAPS)
  oracle = pycocotools_eval(ground_truth, results, coco_metrics.COCO_IOU_THRESHOLDS, CAPS)
  precision, recall = oracle.eval["precision"], oracle.eval["recall"]
  np.testing.assert_allclose(ours.precision, precision, atol=1e-6, rtol=0)
  np.testing.assert_allclose(ours.recall, recall, atol=1e-6, rtol=0)
  # The 12 standard statistics (pycocotools' summarize uses maxDets[2] = 100).
  np.testing.assert_allclose(list(coco_metrics.coco_stats(ours, 100).values()), oracle.stats, atol=1e-6, rtol=0)
  # AP/AR at IoU 0.5 per bucket and per class, at every cap (1 / 10 / 100 / 300).
  for m, cap in enumerate(CAPS):
    for a, area in enumerate(coco_metrics.AREA_NAMES):
      assert ours.average_precision(0.5, area, cap) == pytest.approx(oracle_mean(precision[0, :, :, a, m]), abs=1e-6)
      assert ours.average_recall(0.5, area, cap) == pytest.approx(oracle_mean(recall[0, :, a, m]), abs=1e-6)
    for k, (cid, name) in enumerate(zip(ours.index.category_ids, ours.index.category_names)):
      assert ours.per_class_ap(0.5, "all", cap)[name] == pytest.approx(oracle_mean(precision[0, :, k, 0, m]), abs=1e-6)
  # The training-time entry point, and mAP@50 / mAP@75.
  headline = coco_metrics.evaluate_detections(ground_truth, results, iou=0.5, max_dets=100)
  for a, area in enumerate(coco_metrics.AREA_NAMES):
    suffix = "" if area == "all" else "_" + area[0]
    assert headline[f"AP{suffix}@0.5"] == pytest.approx(oracle_mean(precision[0, :, :, a, 2]), abs=1e-6)
    assert headline[f"AR{suffix}@0.5"] == pytest.approx(oracle_mean(recall[0, :, a, 2]), abs=1e-6)
  assert ours.average_precision(0.5, "all", 100) == pytest.approx(oracle.stats[1], abs=1e-6)
  assert ours.average_precision(0.75, "all", 100) == pytest.approx(oracle.stats[2], abs=1e-6)
  return ours, oracle


@pytest.mark.parametrize("chunk", range(20))
def test_matches_pycocotools_on_random_sets(chunk):
  """200 random sets: the full precision [T, R, K, A, M] / recall arrays, the 12 stats, AP/AR per
  bucket and class at caps 1/10/100/300."""
  for i in range(10):
    ground_truth, results = random_set(np.random.default_rng(1000 * chunk + i))
    check_against_oracle(ground_truth, results)


def test_the_random_sets_cover_the_cases():
  """The generator does produce what the comparison is meant to exercise."""
  stats = {"crowded": 0, "crowd": 0, "no_gt_images": 0, "dets_on_no_gt": 0, "ties": 0, "buckets": set(), "half": 0}
  for seed in range(40):
    ground_truth, results = random_set(np.random.default_rng(seed))
    per_image = {}
    for r in results:
      per_image[r["image_id"]] = per_image.get(r["image_id"], 0) + 1
    stats["crowded"] += max(per_image.values(), default=0) > 100
    stats["crowd"] += any(a["iscrowd"] for a in ground_truth["annotations"])
    with_gt = {a["image_id"] for a in ground_truth["annotations"]}
    no_gt = {i["id"] for i in ground_truth["images"]} - with_gt
    stats["no_gt_images"] += bool(no_gt)
    stats["dets_on_no_gt"] += any(r["image_id"] in no_gt for r in results)
    scores = [r["score"] for r in results]
    stats["ties"] += len(set(scores)) < len(scores)
    for a in ground_truth["annotations"]:
      area = a["area"]
      stats["buckets"].add("small" if area < 32 ** 2 else "medium" if area < 96 ** 2 else "large")
  assert stats["crowded"] >= 5 and stats["crowd"] >= 10 and stats["no_gt_images"] >= 10
  assert stats["dets_on_no_gt"] >= 5 and stats["ties"] >= 20 and stats["buckets"] == {"small", "medium", "large"}


@pytest.mark.parametrize("seed", range(12))
def test_single_threshold_and_caps_match_pycocotools(seed):
  """Matching at a single IoU with the cap as the only (largest) cap: 1, 100 and a crowded 300."""
  ground_truth, results = random_set(np.random.default_rng(5000 + seed), crowded=True)
  for iou, cap in ((0.5, 300), (0.5, 1), (0.75, 100), (0.3, 100)):
    oracle = pycocotools_eval(ground_truth, results, [iou], [cap])
    ours = coco_metrics.evaluate_detections(ground_truth, results, iou=iou, max_dets=cap)
    for a, area in enumerate(coco_metrics.AREA_NAMES):
      suffix = "" if area == "all" else "_" + area[0]
      assert ours[f"AP{suffix}@{iou:g}"] == pytest.approx(oracle_mean(oracle.eval["precision"][0, :, :, a, 0]), abs=1e-6)
      assert ours[f"AR{suffix}@{iou:g}"] == pytest.approx(oracle_mean(oracle.eval["recall"][0, :, a, 0]), abs=1e-6)


@pytest.mark.parametrize("seed", range(10))
def test_area_source(seed):
  """``area_source="annotation"`` uses the annotation's area (pycocotools' choice); the default
  ``"box"`` equals pycocotools on the same ground truth with area = box area."""
  ground_truth, results = random_set(np.random.default_rng(7000 + seed), crowded=False, mask_area=True)
  oracle = pycocotools_eval(ground_truth, results, coco_metrics.COCO_IOU_THRESHOLDS, CAPS)
  ours = coco_metrics.evaluate(ground_truth, results, max_dets=CAPS, area_source="annotation")
  np.testing.assert_allclose(ours.precision, oracle.eval["precision"], atol=1e-6, rtol=0)
  np.testing.assert_allclose(ours.recall, oracle.eval["recall"], atol=1e-6, rtol=0)
  boxed = copy.deepcopy(ground_truth)
  for ann in boxed["annotations"]:
    ann["area"] = ann["bbox"][2] * ann["bbox"][3]
  oracle = pycocotools_eval(boxed, results, coco_metrics.COCO_IOU_THRESHOLDS, CAPS)
  ours = coco_metrics.evaluate(ground_truth, results, max_dets=CAPS)
  np.testing.assert_allclose(ours.precision, oracle.eval["precision"], atol=1e-6, rtol=0)
  np.testing.assert_allclose(ours.recall, oracle.eval["recall"], atol=1e-6, rtol=0)


def test_empty_results_and_classes_without_ground_truth():
  ground_truth, results = random_set(np.random.default_rng(3))
  ground_truth["categories"].append({"id": 999, "name": "absent"})
  ours, _ = check_against_oracle(ground_truth, results)
  assert ours.per_class_ap(0.5)["absent"] == -1.0
  check_against_oracle(ground_truth, [])
  empty = coco_metrics.evaluate_detections(ground_truth, [])
  assert empty["AP@0.5"] == 0.0 and empty["AR@0.5"] == 0.0
  none = coco_metrics.evaluate_detections({"images": [{"id": 1}], "annotations": [], "categories": [{"id": 1}]}, [])
  assert set(none.values()) == {-1.0}


def test_crowd_and_tie_rules_by_hand():
  gt = {"images": [{"id": 1}], "categories": [{"id": 1, "name": "a"}], "annotations": [
      {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "iscrowd": 0, "area": 100},
      {"id": 2, "image_id": 1, "category_id": 1, "bbox": [0, 0, 100, 100], "iscrowd": 1, "area": 1e4},
  ]}
  dets = [
      {"image_id": 1, "category_id": 1, "bbox": [50, 50, 10, 10], "score": 0.9},  # inside the crowd box: ignored
      {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.8},  # TP
      {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.7},  # duplicate: goes to the crowd, ignored
      {"image_id": 1, "category_id": 1, "bbox": [200, 200, 10, 10], "score": 0.6},  # FP
  ]
  ev = coco_metrics.evaluate(gt, dets, iou_thresholds=[0.5], max_dets=[100])
  # One positive; the TP comes first among the counted detections: precision 1 at every recall.
  assert ev.average_precision(0.5) == pytest.approx(1.0)
  assert ev.average_recall(0.5) == 1.0
  assert coco_metrics.evaluate(gt, dets, iou_thresholds=[0.5], max_dets=[1]).average_recall(0.5) == 0.0
  # Equal IoUs: the later annotation is taken (pycocotools' loop keeps the last best), which
  # leaves the exact match of the second detection free.
  gt["annotations"] = [
      {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]},
      {"id": 2, "image_id": 1, "category_id": 1, "bbox": [2, 0, 10, 10]},
  ]
  dets = [
      {"image_id": 1, "category_id": 1, "bbox": [1, 0, 10, 10], "score": 0.9},  # IoU 90/110 with both
      {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.8},  # IoU 1 with the first, 80/120 with the second
  ]
  assert coco_metrics.evaluate(gt, dets, iou_thresholds=[0.8], max_dets=[100]).average_recall(0.8) == 1.0


def test_full_metrics_agrees_with_its_parts():
  ground_truth, results = random_set(np.random.default_rng(11), crowded=True)
  metrics = coco_metrics.full_metrics(ground_truth, results, iou=0.5, max_dets=300)
  headline = coco_metrics.evaluate_detections(ground_truth, results, 0.5, 300)
  for key, value in headline.items():
    assert metrics[key] == pytest.approx(value, abs=1e-12)
  oracle = pycocotools_eval(ground_truth, results, coco_metrics.COCO_IOU_THRESHOLDS, [1, 10, 300])
  assert metrics["mAP@50"] == pytest.approx(oracle_mean(oracle.eval["precision"][0, :, :, 0, 2]), abs=1e-6)
  assert metrics["mAP@75"] == pytest.approx(oracle_mean(oracle.eval["precision"][5, :, :, 0, 2]), abs=1e-6)
  assert list(metrics["coco"]) == ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR300", "ARs", "ARm", "ARl"]
  assert set(metrics["froc"]) == {"iou", "definition", "class_agnostic", "sens@0.5FP", "sens@1FP", "sens@2FP", "sens@4FP",
                                  "sens@8FP", "sens@16FP", "sens_mean@0.5-4FP", "sens_mean@0.5-8FP"}
  assert metrics["froc"] == {"iou": 0.5, "definition": "deeplesion", "class_agnostic": False,
                             **coco_metrics.froc(ground_truth, results, iou=0.5)}


@pytest.mark.parametrize("bad, reason", [
    ({"image_id": 12345, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}, "unknown image_id 12345"),
    ({"image_id": 1, "category_id": 77, "bbox": [0, 0, 1, 1], "score": 0.5}, "unknown category_id 77"),
    ({"image_id": 1, "category_id": 1, "bbox": [0, 0, 1], "score": 0.5}, "not 4 numbers"),
    ({"image_id": 1, "category_id": 1, "bbox": [0, 0, -1, 1], "score": 0.5}, "negative width or height"),
    ({"image_id": 1, "category_id": 1, "bbox": [0, float("nan"), 1, 1], "score": 0.5}, "NaN"),
    ({"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": float("nan")}, "score"),
    ({"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]}, "no 'score'"),
])
def test_malformed_detections_name_the_first_bad_entry(bad, reason):
  gt = {"images": [{"id": 1}], "annotations": [], "categories": [{"id": 1}]}
  good = {"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}
  with pytest.raises(coco_metrics.CocoFormatError) as info:
    coco_metrics.evaluate_detections(gt, [good, good, bad, bad, good])
  assert info.value.index == 2 and reason in str(info.value) and str(info.value).startswith("detection 2 ")
