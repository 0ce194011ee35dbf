"""Counting thresholds: F1-maximising cuts worked by hand, and a brute-force check."""

import numpy as np
import pytest

from acne_jax.evaluation import coco_metrics, numpy_boxes, operating_point


def _gt(boxes_by_image, labels_by_image, names=("a", "b")):
  image_ids = list(range(1, len(boxes_by_image) + 1))
  return coco_metrics.coco_ground_truth(image_ids, [(100, 100)] * len(image_ids),
                                        [np.asarray(b, np.float64).reshape(-1, 4) for b in boxes_by_image],
                                        [np.asarray(l, np.int64) for l in labels_by_image], names)


def _det(image_id, box, cls, score):
  return {"image_id": image_id, "category_id": cls + 1, "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]], "score": score}


A, B, C = [0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]
FAR = [70, 70, 80, 80]


def test_hand_worked_thresholds():
  # Class a: 3 lesions; detections by score: hit 0.9, false 0.8, hit 0.7, false 0.6, false 0.5, hit 0.4.
  #   cut after 1: F1 = 2*1/(3+1) = 0.5; after 3: 2*2/(3+3) = 0.667; after 6: 2*3/(3+6) = 0.667 -> the
  #   first (strictest) maximum, threshold 0.7, precision 2/3, recall 2/3.
  # Class b: 1 lesion; hit at 0.3 after a false 0.95: F1 after 1 = 0, after 2 = 2/(1+2) = 0.667 -> 0.3.
  gt = _gt([[A, B, C, [60, 60, 70, 70]]], [[0, 0, 0, 1]])
  dets = [_det(1, A, 0, 0.9), _det(1, FAR, 0, 0.8), _det(1, B, 0, 0.7), _det(1, [85, 85, 95, 95], 0, 0.6),
          _det(1, [1, 50, 9, 60], 0, 0.5), _det(1, C, 0, 0.4), _det(1, FAR, 1, 0.95), _det(1, [60, 60, 70, 70], 1, 0.3)]
  op = operating_point.calibrate(gt, dets, iou=0.5)
  a, b = op["per_class"]["a"], op["per_class"]["b"]
  assert a["threshold"] == pytest.approx(0.7) and a["source"] == "calibrated"
  assert a["precision"] == pytest.approx(2 / 3) and a["recall"] == pytest.approx(2 / 3) and a["f1"] == pytest.approx(2 / 3)
  assert (a["detections"], a["true_positives"], a["positives"]) == (3, 2, 3)
  assert b["threshold"] == pytest.approx(0.3) and b["f1"] == pytest.approx(2 / 3)
  # Global (micro): by score 0.95 F, 0.9 T, 0.8 F, 0.7 T, 0.6 F, 0.5 F, 0.4 T, 0.3 T with 4 lesions:
  #   F1 after k = 2 TP / (4 + k): k=2: 2/6, k=4: 4/8 = 0.5, k=7: 6/11, k=8: 8/12 = 0.667 -> 0.3.
  g = op["global"]
  assert g["threshold"] == pytest.approx(0.3) and g["f1"] == pytest.approx(2 / 3) and g["recall"] == 1.0
  # Each class at its own threshold: a counts 3 (2 hits), b counts 2 (1 hit): P 3/5, R 3/4.
  c = op["per_class_combined"]
  assert (c["detections"], c["true_positives"], c["positives"]) == (5, 3, 4)
  assert c["precision"] == pytest.approx(0.6) and c["recall"] == pytest.approx(0.75)
  thresholds = operating_point.thresholds_by_class(op, ["b", "a", "unknown"])
  np.testing.assert_allclose(thresholds, [0.3, 0.7, 0.3])


def test_ties_are_counted_together_and_classes_without_hits_take_the_global_threshold():
  # Two detections tie at 0.8, one hit and one miss: the only cut is after both.
  gt = _gt([[A], [B]], [[0], [0]])
  dets = [_det(1, A, 0, 0.8), _det(2, FAR, 0, 0.8), _det(2, FAR, 1, 0.99)]
  op = operating_point.calibrate(gt, dets)
  a = op["per_class"]["a"]
  assert a["threshold"] == pytest.approx(0.8) and a["detections"] == 2 and a["true_positives"] == 1
  b = op["per_class"]["b"]  # no lesion of class b anywhere
  assert b["source"] == "global" and b["threshold"] == op["global"]["threshold"] == pytest.approx(0.8)


def test_no_true_positive_counts_nothing():
  op = operating_point.calibrate(_gt([[A]], [[0]]), [_det(1, FAR, 0, 0.9)])
  assert op["global"]["threshold"] == float("inf") and op["global"]["f1"] == 0.0
  assert not operating_point.counted(np.array([0.99]), np.array([0]), operating_point.thresholds_by_class(op, ["a", "b"])).any()


def test_matches_brute_force_on_random_sets():
  """The chosen cut's F1 equals the best F1 over every threshold, computed by plain loops."""
  rng = np.random.default_rng(3)
  for trial in range(20):
    n_images, names = 4, ("a", "b", "c")
    gt_boxes, gt_labels, dets = [], [], []
    for i in range(n_images):
      k = rng.integers(0, 6)
      xy = rng.uniform(0, 80, (k, 2))
      boxes = np.c_[xy, xy + rng.uniform(5, 20, (k, 2))]
      labels = rng.integers(0, 3, k)
      gt_boxes.append(boxes)
      gt_labels.append(labels)
      for box, label in zip(boxes, labels):  # a jittered copy of most lesions, plus clutter
        if rng.uniform() < 0.8:
          jittered = box + rng.uniform(-2, 2, 4)
          dets.append(_det(i + 1, jittered.tolist(), int(label), float(rng.uniform(0.2, 1.0))))
      for _ in range(rng.integers(0, 5)):
        xy = rng.uniform(0, 80, 2)
        dets.append(_det(i + 1, [*xy, *(xy + rng.uniform(5, 20, 2))], int(rng.integers(0, 3)), float(np.round(rng.uniform(0, 1), 1))))
    gt = _gt(gt_boxes, gt_labels, names)
    op = operating_point.calibrate(gt, dets, iou=0.5)
    for k, name in enumerate(names):
      positives = int(sum((l == k).sum() for l in gt_labels))
      best = 0.0
      for t in sorted({d["score"] for d in dets if d["category_id"] == k + 1}):
        tp = n = 0
        for i in range(n_images):  # greedy matching by descending score, each lesion once
          mine = sorted([d for d in dets if d["image_id"] == i + 1 and d["category_id"] == k + 1 and d["score"] >= t],
                        key=lambda d: -d["score"])
          lesions = gt_boxes[i][gt_labels[i] == k]
          used = np.zeros(len(lesions), bool)
          for d in mine:
            n += 1
            box = np.asarray(d["bbox"], np.float64)
            box = np.r_[box[:2], box[:2] + box[2:]]
            ious = numpy_boxes.pairwise_iou(box[None], lesions)[0] if len(lesions) else np.zeros(0)
            ious[used] = -1
            if len(ious) and ious.max() >= 0.5:
              used[np.argmax(ious)] = True
              tp += 1
        if positives + n:
          best = max(best, 2 * tp / (positives + n))
      assert op["per_class"][name]["f1"] == pytest.approx(best, abs=1e-12), (trial, name)
