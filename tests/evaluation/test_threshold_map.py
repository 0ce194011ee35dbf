"""The DeepLesion benchmark paper's 11-threshold mAP and mean matched IoU, against a float64 loop
written here from the paper's section 3.3 and against hand-worked cases."""

import numpy as np
import pytest

from acne_jax.evaluation import threshold_map


def _coco(gt_boxes, dets, num_images, num_classes=2):
  """gt_boxes: [(image, class, [x, y, w, h])]; dets: [(image, class, [x, y, w, h], score)]."""
  ground_truth = {
      "images": [{"id": i + 1, "width": 200, "height": 200} for i in range(num_images)],
      "categories": [{"id": k + 1, "name": f"type{k + 1}"} for k in range(num_classes)],
      "annotations": [{"id": n + 1, "image_id": i + 1, "category_id": k + 1, "bbox": list(map(float, b)),
                       "area": float(b[2] * b[3]), "iscrowd": 0} for n, (i, k, b) in enumerate(gt_boxes)],
  }
  results = [{"image_id": i + 1, "category_id": k + 1, "bbox": list(map(float, b)), "score": float(s)} for i, k, b, s in dets]
  return ground_truth, results


def _iou(a, b):
  ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
  w = min(ax2, bx2) - max(a[0], b[0])
  h = min(ay2, by2) - max(a[1], b[1])
  if w <= 0 or h <= 0:
    return 0.0
  inter = w * h
  return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def _reference(gt_boxes, dets, num_images, num_classes, iou, thresholds=threshold_map.SCORE_THRESHOLDS, iou_score=0.25):
  """The paper's procedure, literally: for each threshold, match the detections above it (by
  descending score, each to the best free lesion of its image and class at IoU >= iou)."""
  aps, ious_all = {}, []
  for k in range(num_classes):
    positives = sum(1 for _, c, _ in gt_boxes if c == k)
    points = []
    for t in sorted(thresholds, reverse=True):
      tp = fp = 0
      for image in range(num_images):
        lesions = [b for i, c, b in gt_boxes if i == image and c == k]
        free = [True] * len(lesions)
        mine = sorted([(s, n, b) for n, (i, c, b, s) in enumerate(dets) if i == image and c == k and s >= t],
                      key=lambda x: (-x[0], x[1]))
        for s, _, b in mine:
          best, best_j = -1.0, -1
          for j, lesion in enumerate(lesions):
            v = _iou(b, lesion)
            if free[j] and v >= iou and v >= best:  # ties: the later lesion, as COCO
              best, best_j = v, j
          if best_j >= 0:
            free[best_j] = False
            tp += 1
            if abs(t - 0.0) < 1e-12 and s >= iou_score:  # IoUs once, from the loosest threshold's matching
              ious_all.append((k, best))
          else:
            fp += 1
      precision = tp / (tp + fp) if tp + fp else 1.0
      recall = tp / positives if positives else 0.0
      points.append((precision, recall))
    if positives:
      ap, previous = 0.0, 0.0
      for p, r in points:
        ap += p * (r - previous)
        previous = r
      aps[k] = ap
  return aps, ious_all


def _random_case(rng, num_images):
  gt_boxes, dets = [], []
  for image in range(num_images):
    for _ in range(rng.integers(0, 4)):
      k = int(rng.integers(0, 2))
      x, y = rng.uniform(0, 150, 2)
      w, h = rng.uniform(8, 40, 2)
      gt_boxes.append((image, k, [x, y, w, h]))
      for _ in range(rng.integers(0, 3)):  # near and repeated detections of it
        jitter = rng.normal(0, rng.choice([1.0, 6.0]), 4)
        dets.append((image, k if rng.uniform() < 0.85 else 1 - k, [x + jitter[0], y + jitter[1], max(2.0, w + jitter[2]),
                                                                   max(2.0, h + jitter[3])], float(rng.uniform())))
    for _ in range(rng.integers(0, 3)):  # false positives
      dets.append((image, int(rng.integers(0, 2)), [*rng.uniform(0, 150, 2), *rng.uniform(8, 40, 2)], float(rng.uniform())))
  return gt_boxes, dets


@pytest.mark.parametrize("seed", range(6))
def test_matches_the_papers_procedure_on_random_sets(seed):
  rng = np.random.default_rng(seed)
  num_images = 5 + seed
  gt_boxes, dets = _random_case(rng, num_images)
  for iou in (0.21, 0.5, 0.75):
    report = threshold_map.evaluate(*_coco(gt_boxes, dets, num_images), iou=iou)
    aps, ious = _reference(gt_boxes, dets, num_images, 2, iou)
    for k in range(2):
      got = report["AP_per_class"][f"type{k + 1}"]
      assert (got is None) == (k not in aps)
      if k in aps:
        assert got == pytest.approx(aps[k], abs=1e-12), (seed, iou, k)
    if aps:
      assert report["mAP"] == pytest.approx(np.mean(list(aps.values())), abs=1e-12)
    expected = [v for _, v in ious]
    assert (report["mean_iou"] is None) == (not expected)
    if expected:
      assert report["mean_iou"] == pytest.approx(np.mean(expected), abs=1e-12)
      for k in range(2):
        mine = [v for c, v in ious if c == k]
        if mine:
          assert report["mean_iou_per_class"][f"type{k + 1}"] == pytest.approx(np.mean(mine), abs=1e-12)


def test_a_hand_worked_case():
  # Two lesions of one class in one image; detections: a hit at IoU 0.25 (score 0.95), a false
  # positive (0.55), a hit on the second lesion at IoU 1 (0.35).
  gt_boxes = [(0, 0, [0, 0, 10, 10]), (0, 0, [50, 50, 10, 10])]
  tiny_overlap = [0.0, 0.0, 10.0, 2.5]  # IoU 25 / 100 = 0.25
  dets = [(0, 0, tiny_overlap, 0.95), (0, 0, [100, 100, 10, 10], 0.55), (0, 0, [50, 50, 10, 10], 0.3)]
  report = threshold_map.evaluate(*_coco(gt_boxes, dets, 1, num_classes=1), iou=0.21)
  # t = 1.0: nothing (recall 0); 0.9: P 1, R 0.5; 0.8 ... 0.6: same; 0.5, 0.4: P 1/2, R 0.5; 0.3 (a score
  # exactly at the threshold counts) ... 0: P 2/3, R 1. AP = 1 * 0.5 + 2/3 * 0.5 = 5/6.
  expected = [[1.0, 1.0, 0.0]] + [[t, 1.0, 0.5] for t in (0.9, 0.8, 0.7, 0.6)] + [[t, 0.5, 0.5] for t in (0.5, 0.4)] + [
      [t, 2 / 3, 1.0] for t in (0.3, 0.2, 0.1, 0.0)]
  np.testing.assert_allclose(report["points_per_class"]["type1"], expected)
  assert report["AP_per_class"]["type1"] == pytest.approx(5 / 6)
  assert report["mean_iou"] == pytest.approx((0.25 + 1.0) / 2)
  # At IoU 0.5 the first detection is a false positive: P 0 / R 0 above 0.3, then P 1/3, R 0.5.
  report = threshold_map.evaluate(*_coco(gt_boxes, dets, 1, num_classes=1), iou=0.5)
  assert report["AP_per_class"]["type1"] == pytest.approx(1 / 3 * 0.5)
  assert report["mean_iou"] == pytest.approx(1.0)


def test_class_agnostic_pools_the_types():
  gt_boxes = [(0, 0, [0, 0, 10, 10]), (0, 1, [50, 50, 10, 10])]
  dets = [(0, 1, [0, 0, 10, 10], 0.9), (0, 0, [50, 50, 10, 10], 0.8)]  # both boxes right, both types wrong
  per_type = threshold_map.evaluate(*_coco(gt_boxes, dets, 1), iou=0.5)
  assert per_type["mAP"] == 0.0
  pooled = threshold_map.evaluate(*_coco(gt_boxes, dets, 1), iou=0.5, class_agnostic=True)
  assert pooled["AP_per_class"] == {"lesion": 1.0} and pooled["mean_iou"] == 1.0


def test_bad_iou_is_refused():
  with pytest.raises(ValueError, match="iou must be in"):
    threshold_map.evaluate(*_coco([], [], 1), iou=0.0)
