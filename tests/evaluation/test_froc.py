"""FROC: the DeepLesion literature's definition against a plain float64 re-statement of it, the
COCO-matched one pinned by hand, and the config route.

The DeepLesion definition (MULAN's ``detection_eval.py`` / 3DCE's ``evaluation.py``: ``FROC``
and ``sens_at_FP``), restated in ``reference_froc`` below with loops: walk the detections by
descending score; a detection with IoU >= the threshold with no lesion of its image is a false
positive, otherwise it marks every lesion of its image with IoU >= the threshold as found (found
lesions stay found, nothing else happens); the curve's points are (false positives / images,
found / lesions) after each detection; the sensitivity at a rate is the highest one among the
points at or below that rate, the last one beyond the curve. With tied scores our curve takes
the tied detections together (a threshold cannot split them), so the restatement records a
point only after the last detection of a tie.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import interpolate

from acne_jax.evaluation import coco_metrics
from configs import faster_rcnn, sadh

RATES = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)


def box_iou(a, b) -> float:
  """IoU of two [x, y, w, h] boxes (continuous coordinates), in Python floats."""
  w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
  h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
  if w <= 0 or h <= 0:
    return 0.0
  inter = w * h
  return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def reference_curve(ground_truth, results, iou=0.5, class_agnostic=True):
  """The DeepLesion FROC curve by loops: ``[(fp per image, sensitivity), ...]``, (0, 0) first,
  one point per distinct score (after the last detection of a tie)."""
  num_images = len(ground_truth["images"])
  lesions = ground_truth["annotations"]
  found = [False] * len(lesions)
  dets = sorted(results, key=lambda d: -d["score"])
  false_positives, points = 0, [(0.0, 0.0)]
  for i, d in enumerate(dets):
    near = [j for j, a in enumerate(lesions) if a["image_id"] == d["image_id"]
            and (class_agnostic or a["category_id"] == d["category_id"]) and box_iou(d["bbox"], a["bbox"]) >= iou]
    if not near:
      false_positives += 1
    for j in near:
      found[j] = True
    if i + 1 == len(dets) or dets[i + 1]["score"] != d["score"]:
      points.append((false_positives / num_images, sum(found) / len(lesions)))
  return points


def reference_froc(ground_truth, results, rates=RATES, iou=0.5, class_agnostic=True):
  """Sensitivity at each rate: the best among the points at or below it (sensitivity never
  falls along the walk, so: the last such point)."""
  points = reference_curve(ground_truth, results, iou, class_agnostic)
  return [max(s for f, s in points if f <= rate) for rate in rates]


def random_set(rng, num_images, ties=False, num_categories=1):
  """Lesions that overlap each other, repeated detections of them, detections at IoU exactly
  0.5 and just below, strays, images without lesions. Coordinates on a 0.5 px grid, so every
  IoU is computed exactly (the same float whichever way it is summed)."""
  images = [{"id": 100 + i} for i in range(num_images)]
  annotations, results = [], []

  def det(image, bbox, category):
    results.append({"image_id": image, "category_id": category, "bbox": [float(v) for v in bbox], "score": 0.0})

  for image in images:
    image_id = image["id"]
    for _ in range(rng.choice([0, 0, 1, 2, 3, 5])):
      x, y = rng.integers(0, 200, size=2) / 2
      w, h = rng.integers(8, 40, size=2)  # even half-widths below
      category = int(rng.integers(1, num_categories + 1))
      annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category, "bbox": [x, y, w, h]})
      if rng.random() < 0.4:  # a neighbour overlapping it (one detection may find both)
        annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category,
                            "bbox": [x + rng.integers(0, 4) / 2, y + rng.integers(0, 4) / 2, w, h]})
      for _ in range(rng.integers(0, 4)):  # repeated detections, jittered
        det(image_id, [x + rng.integers(-4, 5) / 2, y + rng.integers(-4, 5) / 2, w + rng.integers(-2, 3), h], category)
      if rng.random() < 0.5:
        det(image_id, [x, y, w / 2, h], category)  # IoU exactly 0.5: found
      if rng.random() < 0.5:
        det(image_id, [x, y, w / 2 - 0.5, h], category)  # IoU just below 0.5: a false positive
      if rng.random() < 0.2:
        det(image_id, [x, y, w, h], int(rng.integers(1, num_categories + 1)))  # maybe the wrong category
    for _ in range(rng.integers(0, 4)):  # strays
      det(image_id, [*(rng.integers(0, 400, size=2) / 2), *rng.integers(4, 30, size=2)], int(rng.integers(1, num_categories + 1)))
  scores = rng.integers(0, 6, size=len(results)) / 5 if ties else rng.permutation(len(results)) / len(results)
  for r, s in zip(results, scores):
    r["score"] = float(s)
  categories = [{"id": k + 1, "name": f"type{k + 1}"} for k in range(num_categories)]
  return {"images": images, "annotations": annotations, "categories": categories}, results


@pytest.mark.parametrize("seed", range(12))
def test_deeplesion_froc_equals_the_definition_on_random_sets(seed):
  rng = np.random.default_rng(seed)
  num_images = int(rng.choice([5, 7, 9, 11]))  # odd: 0.5 FP per image is no whole number of FPs
  gt, dets = random_set(rng, num_images, ties=seed % 3 == 2, num_categories=1 + seed % 2)
  assert gt["annotations"], "the generator always makes lesions for these seeds"
  for class_agnostic in (True, False):
    ours = coco_metrics.froc(gt, dets, RATES, class_agnostic=class_agnostic)
    expected = reference_froc(gt, dets, RATES, class_agnostic=class_agnostic)
    np.testing.assert_allclose([ours[f"sens@{r:g}FP"] for r in RATES], expected, rtol=0, atol=1e-12)
    assert ours["sens_mean@0.5-4FP"] == pytest.approx(np.mean(expected[:4]), abs=1e-12)
    assert ours["sens_mean@0.5-8FP"] == pytest.approx(np.mean(expected[:5]), abs=1e-12)
    fpi, sens, _ = coco_metrics.froc_curve(gt, dets, class_agnostic=class_agnostic)
    np.testing.assert_allclose(np.stack([fpi, sens], 1), reference_curve(gt, dets, class_agnostic=class_agnostic),
                               rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_the_step_reading_is_mulans_linear_interpolation(seed):
  """MULAN's ``sens_at_FP``: SciPy's linear ``interp1d`` over the per-detection points (the
  sensitivity after each detection against its false positives so far), the last sensitivity
  beyond them. Each false positive repeats the sensitivity already reached, so that line is flat
  between FP counts: the step reading. Distinct scores (the per-detection curve is then ours)."""
  rng = np.random.default_rng(100 + seed)
  gt, dets = random_set(rng, 9)
  per_detection = []  # the points after each detection, (0, 0) not among them, as in MULAN
  for i in range(1, len(dets) + 1):
    first = sorted(dets, key=lambda d: -d["score"])[:i]
    f, s = reference_curve(gt, first)[-1]
    per_detection.append((f, s))
  fp_per_image, sensitivity = np.asarray(per_detection).T
  inside = [r for r in RATES if r <= fp_per_image[-1]]
  mulan = list(interpolate.interp1d(fp_per_image, sensitivity)(inside)) + [sensitivity[-1]] * (len(RATES) - len(inside))
  ours = coco_metrics.froc(gt, dets, RATES)
  assert inside and fp_per_image[0] <= RATES[0]  # the interpolation range covers some rates
  np.testing.assert_allclose([ours[f"sens@{r:g}FP"] for r in RATES], mulan, rtol=0, atol=1e-12)


def issue_case():
  """One image, lesions A [0, 0, 10, 10] and B [20, 20, 10, 10]; detections A 0.9, A again 0.8, B 0.7."""
  gt = {"images": [{"id": 1}], "categories": [{"id": 1, "name": "lesion"}], "annotations": [
      {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]},
      {"id": 2, "image_id": 1, "category_id": 1, "bbox": [20, 20, 10, 10]},
  ]}
  det = lambda bbox, score: {"image_id": 1, "category_id": 1, "bbox": bbox, "score": score}
  return gt, [det([0, 0, 10, 10], 0.9), det([0, 0, 10, 10], 0.8), det([20, 20, 10, 10], 0.7)]


def test_a_second_detection_of_a_found_lesion_is_no_false_positive():
  gt, dets = issue_case()
  deeplesion = coco_metrics.froc(gt, dets)
  assert all(deeplesion[f"sens@{r:g}FP"] == 1.0 for r in RATES)
  assert deeplesion["sens_mean@0.5-4FP"] == deeplesion["sens_mean@0.5-8FP"] == 1.0
  fpi, sens, _ = coco_metrics.froc_curve(gt, dets)
  np.testing.assert_allclose(fpi, [0, 0, 0, 0])  # no false positive at all
  np.testing.assert_allclose(sens, [0, 0.5, 0.5, 1])
  # COCO matching: the second A is a false positive, so B comes at 1 FP per image; read linearly
  # between (0, 0.5) and (1, 1) that is 0.75 at 0.5 FP per image (the issue's number), 0.5 as a step.
  coco = coco_metrics.froc(gt, dets, definition="coco")
  assert coco["sens@0.5FP"] == pytest.approx(0.75)
  assert all(coco[f"sens@{r:g}FP"] == 1.0 for r in RATES[1:])
  assert coco["sens_mean@0.5-4FP"] == pytest.approx((0.75 + 3) / 4)
  assert coco["sens_mean@0.5-8FP"] == pytest.approx((0.75 + 4) / 5)
  assert coco_metrics.froc(gt, dets, definition="coco", interpolation="step")["sens@0.5FP"] == pytest.approx(0.5)
  fpi, sens, _ = coco_metrics.froc_curve(gt, dets, definition="coco")
  np.testing.assert_allclose(fpi, [0, 0, 1, 1])
  np.testing.assert_allclose(sens, [0, 0.5, 0.5, 1])
  assert reference_froc(gt, dets) == [1.0] * len(RATES)


def test_one_detection_finds_two_lesions():
  gt = {"images": [{"id": 1}, {"id": 2}], "categories": [{"id": 1, "name": "lesion"}], "annotations": [
      {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]},
      {"id": 2, "image_id": 1, "category_id": 1, "bbox": [0, 1, 10, 9]},  # IoU 0.9 with the first
      {"id": 3, "image_id": 2, "category_id": 1, "bbox": [0, 0, 10, 10]},
  ]}
  det = lambda image, bbox, score: {"image_id": image, "category_id": 1, "bbox": bbox, "score": score}
  dets = [det(1, [0, 0, 10, 10], 0.9),  # IoU 1 and 0.9: both lesions of image 1
          det(2, [30, 30, 5, 5], 0.8),  # a false positive
          det(2, [0, 0, 10, 5], 0.7)]  # IoU exactly 0.5 with lesion 3: found
  fpi, sens, _ = coco_metrics.froc_curve(gt, dets)
  np.testing.assert_allclose(fpi, [0, 0, 0.5, 0.5])
  np.testing.assert_allclose(sens, [0, 2 / 3, 2 / 3, 1])
  assert coco_metrics.froc(gt, dets)["sens@0.5FP"] == pytest.approx(1.0)  # the step reading counts up to the next FP
  # COCO matching: the first detection takes one lesion (the exact one); the other is never found.
  fpi, sens, _ = coco_metrics.froc_curve(gt, dets, definition="coco")
  np.testing.assert_allclose(fpi, [0, 0, 0.5, 0.5])
  np.testing.assert_allclose(sens, [0, 1 / 3, 1 / 3, 2 / 3])
  # Just below IoU 0.5 the last detection is a false positive in both.
  dets[2]["bbox"] = [0, 0, 10, 4.99]
  fpi, sens, _ = coco_metrics.froc_curve(gt, dets)
  np.testing.assert_allclose(fpi, [0, 0, 0.5, 1])
  np.testing.assert_allclose(sens, [0, 2 / 3, 2 / 3, 2 / 3])


def test_a_rate_met_exactly_counts_the_hits_before_the_next_false_positive():
  """Two images, four lesions; detections TP, FP, TP, FP, TP, FP by score. At 0.5 FP per image
  (1 FP) the sensitivity is 2/4: the hit after the first FP counts (MULAN with SciPy >= 1.6;
  3DCE's extrapolating interp1d would read 1/4 there)."""
  gt = {"images": [{"id": 1}, {"id": 2}], "categories": [{"id": 1, "name": "lesion"}], "annotations": [
      {"id": i + 1, "image_id": 1 + i % 2, "category_id": 1, "bbox": [40.0 * i, 0, 10, 10]} for i in range(4)]}
  det = lambda image, bbox, score: {"image_id": image, "category_id": 1, "bbox": bbox, "score": score}
  dets = [det(1, [0, 0, 10, 10], 0.9), det(1, [0, 300, 10, 10], 0.8), det(2, [40, 0, 10, 10], 0.7),
          det(2, [0, 300, 10, 10], 0.6), det(1, [80, 0, 10, 10], 0.5), det(1, [100, 300, 10, 10], 0.4)]
  ours = coco_metrics.froc(gt, dets, (0.5, 0.75, 1.0, 1.5, 2.0))
  assert [ours[k] for k in ("sens@0.5FP", "sens@0.75FP", "sens@1FP", "sens@1.5FP", "sens@2FP")] == [0.5, 0.5, 0.75, 0.75, 0.75]
  assert ours["sens_mean@0.5-4FP"] == pytest.approx((0.5 + 0.75 * 3) / 4)  # the means need no rates asked for
  assert reference_froc(gt, dets, (0.5, 0.75, 1.0, 1.5, 2.0)) == [0.5, 0.5, 0.75, 0.75, 0.75]


def test_images_without_lesions_count_and_ties_enter_together():
  gt = {"images": [{"id": 1}, {"id": 2}, {"id": 3}], "categories": [{"id": 1, "name": "lesion"}], "annotations": [
      {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]},
      {"id": 2, "image_id": 2, "category_id": 1, "bbox": [0, 0, 10, 10]},
  ]}
  det = lambda image, bbox, score: {"image_id": image, "category_id": 1, "bbox": bbox, "score": score}
  dets = [det(3, [0, 0, 10, 10], 0.9),  # image 3 has no lesion: a false positive
          det(1, [0, 0, 10, 10], 0.8),
          det(3, [50, 50, 10, 10], 0.7), det(2, [0, 0, 10, 10], 0.7)]  # a tie: they enter together
  fpi, sens, thresholds = coco_metrics.froc_curve(gt, dets)
  np.testing.assert_allclose(fpi, [0, 1 / 3, 1 / 3, 2 / 3])
  np.testing.assert_allclose(sens, [0, 0, 0.5, 1])
  np.testing.assert_allclose(thresholds, [np.inf, 0.9, 0.8, 0.7])
  ours = coco_metrics.froc(gt, dets)
  assert ours["sens@0.5FP"] == 0.5 and ours["sens@1FP"] == 1.0  # no point (2/3, 0.5) inside the tie
  assert reference_froc(gt, dets, (0.5, 1.0)) == [0.5, 1.0]
  assert coco_metrics.froc({"images": [{"id": 1}], "annotations": [], "categories": [{"id": 1}]}, dets[:0]) == {
      **{f"sens@{r:g}FP": -1.0 for r in RATES}, "sens_mean@0.5-4FP": -1.0, "sens_mean@0.5-8FP": -1.0}
  no_detections = coco_metrics.froc(gt, [])
  assert set(no_detections.values()) == {0.0}


def test_crowd_regions_and_categories():
  gt, dets = issue_case()
  gt["annotations"].append({"id": 3, "image_id": 1, "category_id": 1, "bbox": [50, 50, 40, 40], "iscrowd": 1})
  dets.append({"image_id": 1, "category_id": 1, "bbox": [60, 60, 10, 10], "score": 0.95})  # inside the crowd region
  fpi, sens, _ = coco_metrics.froc_curve(gt, dets)
  np.testing.assert_allclose(fpi, [0, 0, 0, 0, 0])  # neither a hit nor a false positive; still 2 lesions
  np.testing.assert_allclose(sens, [0, 0, 0.5, 0.5, 1])
  gt["categories"].append({"id": 2, "name": "other"})
  dets[0]["category_id"] = 2  # the first detection of A (0.9) now has the other category
  aware = coco_metrics.froc_curve(gt, dets)
  np.testing.assert_allclose(aware[0], [0, 0, 1, 1, 1])  # it finds nothing of its category: a false positive
  np.testing.assert_allclose(aware[1], [0, 0, 0, 0.5, 1])  # A is found by the second one
  agnostic = coco_metrics.froc_curve(gt, dets, class_agnostic=True)
  np.testing.assert_allclose(agnostic[0], [0, 0, 0, 0, 0])


def test_bad_definition_and_reading():
  gt, dets = issue_case()
  with pytest.raises(ValueError, match="'deeplesion', 'coco'"):
    coco_metrics.froc(gt, dets, definition="mulan")
  with pytest.raises(ValueError, match="interpolation"):
    coco_metrics.froc(gt, dets, interpolation="cubic")


# The COCO-matched definition (the FROC we reported before the DeepLesion one).


def froc_case(score_5=0.5):
  """Images 1 (gt A, B), 2 (gt C), 3 (none); 7 detections (see the test)."""
  gt = {"images": [{"id": 1}, {"id": 2}, {"id": 3}], "categories": [{"id": 1, "name": "lesion"}], "annotations": [
      {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]},
      {"id": 2, "image_id": 1, "category_id": 1, "bbox": [20, 20, 10, 10]},
      {"id": 3, "image_id": 2, "category_id": 1, "bbox": [0, 0, 10, 10]},
  ]}
  det = lambda image, bbox, score: {"image_id": image, "category_id": 1, "bbox": bbox, "score": score}
  dets = [
      det(1, [0, 0, 10, 10], 0.9),  # TP (A)
      det(3, [0, 0, 5, 5], 0.8),  # FP 1
      det(1, [0, 0, 10, 10], 0.7),  # COCO: FP 2, A is taken; DeepLesion: neither
      det(2, [0, 0, 10, 9], 0.6),  # TP (C), IoU 0.9
      det(2, [50, 50, 5, 5], score_5),  # FP 3 (DeepLesion: 2)
      det(1, [20, 20, 10, 10], 0.4),  # TP (B)
      det(3, [30, 30, 5, 5], 0.3),  # FP 4 (DeepLesion: 3)
  ]
  return gt, dets


def test_coco_froc_by_hand():
  gt, dets = froc_case()
  fpi, sens, scores = coco_metrics.froc_curve(gt, dets, definition="coco")
  # Operating points (FP per image over 3 images, sensitivity over 3 lesions), one per score.
  np.testing.assert_allclose(fpi, [0, 0, 1 / 3, 2 / 3, 2 / 3, 1, 1, 4 / 3])
  np.testing.assert_allclose(sens, [0, 1 / 3, 1 / 3, 1 / 3, 2 / 3, 2 / 3, 1, 1])
  np.testing.assert_allclose(scores, [np.inf, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3])
  # Per FP rate the best sensitivity: 0 -> 1/3, 1/3 -> 1/3, 2/3 -> 2/3, 1 -> 1, 4/3 -> 1.
  linear = coco_metrics.froc(gt, dets, definition="coco")
  assert linear["sens@0.5FP"] == pytest.approx(0.5)  # halfway between (1/3, 1/3) and (2/3, 2/3)
  assert linear["sens@1FP"] == pytest.approx(1.0)
  assert all(linear[f"sens@{r:g}FP"] == pytest.approx(1.0) for r in (2, 4, 8, 16))  # beyond 4/3: the last
  assert linear["sens_mean@0.5-4FP"] == pytest.approx((0.5 + 3) / 4)
  assert linear["sens_mean@0.5-8FP"] == pytest.approx((0.5 + 4) / 5)
  step = coco_metrics.froc(gt, dets, definition="coco", interpolation="step")
  assert step["sens@0.5FP"] == pytest.approx(1 / 3)  # the largest reached rate <= 0.5 is 1/3
  assert step["sens@1FP"] == pytest.approx(1.0)
  # A stricter IoU: the TP at IoU 0.9 still counts at 0.85, none of them at 0.95 (A and B are exact).
  assert coco_metrics.froc(gt, dets, iou=0.95, definition="coco")["sens@8FP"] == pytest.approx(2 / 3)
  # The DeepLesion definition on the same set: the repeat of A is no FP.
  fpi, sens, _ = coco_metrics.froc_curve(gt, dets)
  np.testing.assert_allclose(fpi, [0, 0, 1 / 3, 1 / 3, 1 / 3, 2 / 3, 2 / 3, 1])
  np.testing.assert_allclose(sens, [0, 1 / 3, 1 / 3, 1 / 3, 2 / 3, 2 / 3, 1, 1])
  assert coco_metrics.froc(gt, dets)["sens@0.5FP"] == pytest.approx(2 / 3)
  assert reference_froc(gt, dets) == pytest.approx([2 / 3, 1, 1, 1, 1, 1])


def test_coco_froc_ties_enter_together_and_crowds_are_ignored():
  gt, dets = froc_case(score_5=0.6)  # the FP on image 2 ties with the TP on image 2
  fpi, sens, _ = coco_metrics.froc_curve(gt, dets, definition="coco")
  np.testing.assert_allclose(fpi, [0, 0, 1 / 3, 2 / 3, 1, 1, 4 / 3])
  np.testing.assert_allclose(sens, [0, 1 / 3, 1 / 3, 1 / 3, 2 / 3, 1, 1])
  assert coco_metrics.froc(gt, dets, definition="coco")["sens@0.5FP"] == pytest.approx(1 / 3)  # no (2/3, 2/3) point any more
  gt["annotations"].append({"id": 4, "image_id": 3, "category_id": 1, "bbox": [0, 0, 40, 40], "iscrowd": 1})
  fpi, sens, _ = coco_metrics.froc_curve(gt, dets, definition="coco")
  # Both image-3 detections (scores 0.8, 0.3) lie inside the crowd region: neither FP nor TP
  # (their operating points repeat the previous one); still 3 lesions.
  np.testing.assert_allclose(fpi, [0, 0, 0, 1 / 3, 2 / 3, 2 / 3, 2 / 3])
  np.testing.assert_allclose(sens, [0, 1 / 3, 1 / 3, 1 / 3, 2 / 3, 1, 1])
  assert coco_metrics.froc(gt, dets, definition="coco")["sens@0.5FP"] == pytest.approx(2 / 3)  # between (1/3, 1/3) and (2/3, 1)
  empty = {"images": [{"id": 1}], "annotations": [], "categories": [{"id": 1}]}
  assert coco_metrics.froc(empty, [], definition="coco")["sens@1FP"] == -1.0


def test_coco_froc_class_agnostic():
  gt, dets = froc_case()
  gt["categories"].append({"id": 2, "name": "other"})
  for d in dets[:3]:
    d["category_id"] = 2  # the first TP now has the wrong class
  aware = coco_metrics.froc_curve(gt, dets, definition="coco")
  agnostic = coco_metrics.froc_curve(gt, dets, class_agnostic=True, definition="coco")
  assert aware[1][-1] == pytest.approx(2 / 3) and agnostic[1][-1] == pytest.approx(1.0)


# The config route: eval.froc_definition, read by train.coco_evaluation (through froc_metrics).


def test_deep_lesion_configs_report_the_literature_froc():
  for module in (sadh, faster_rcnn):
    config = module.get_config("deep_lesion")
    assert config.eval.froc_definition == "deeplesion" and config.eval.froc_class_agnostic
    for other in ("acne_scu", "acne04"):
      assert module.get_config(other).eval.froc_definition == ""


def test_train_froc_metrics_follow_the_config():
  from acne_jax import train

  gt, dets = issue_case()
  config = sadh.get_config("deep_lesion")
  metrics = train.froc_metrics(gt, dets, config)
  assert metrics == {f"froc_{k}": v for k, v in coco_metrics.froc(gt, dets, class_agnostic=True).items()}
  assert metrics["froc_sens@0.5FP"] == 1.0 and set(map(type, metrics.values())) == {float}
  config.eval.froc_definition = "coco"
  assert train.froc_metrics(gt, dets, config)["froc_sens@0.5FP"] == pytest.approx(0.75)
  config.eval.froc_definition = ""
  assert train.froc_metrics(gt, dets, config) == {}
  config.eval.froc_definition = "deep_lesion"
  with pytest.raises(ValueError, match="eval.froc_definition='deep_lesion'"):
    train.froc_definition(config)
