"""Grading metrics on hand-worked examples and against float64 formulas written from the definitions."""

import json
import math

import numpy as np
import pytest

from acne_jax.grading import metrics

TRUTH = [0, 0, 1, 1, 1, 2, 2, 2, 2, 2]
PREDICTED = [0, 1, 1, 1, 2, 2, 2, 2, 1, 0]


def test_hand_worked_example():
  cm = metrics.confusion_matrix(TRUTH, PREDICTED, 3)
  np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 2, 1], [1, 1, 3]])
  assert metrics.accuracy(cm) == pytest.approx(0.6)
  precision, recall, f1 = metrics.precision_recall_f1(cm)
  np.testing.assert_allclose(precision, [1 / 2, 2 / 4, 3 / 4])
  np.testing.assert_allclose(recall, [1 / 2, 2 / 3, 3 / 5])
  np.testing.assert_allclose(f1, [1 / 2, 4 / 7, 2 / 3])
  # sum W O = 1.75, sum W E = 2.95 (rows 2, 3, 5; columns 2, 4, 4; W = ((i - j) / 2)^2).
  assert metrics.quadratic_weighted_kappa(cm) == pytest.approx(24 / 59, rel=1e-12)


def test_report_is_json_and_complete():
  report = metrics.grading_report(TRUTH, PREDICTED, ("0-1", "2", "3-4"))
  assert json.loads(json.dumps(report, allow_nan=False)) == report
  assert report["num_samples"] == 10 and report["accuracy"] == pytest.approx(0.6)
  assert report["per_grade"]["3-4"] == {"precision": 0.75, "recall": 0.6, "f1": pytest.approx(2 / 3), "support": 5, "predicted": 4}
  assert report["macro_f1"] == pytest.approx((1 / 2 + 4 / 7 + 2 / 3) / 3)
  np.testing.assert_allclose(report["confusion_matrix_row_percent"][1], [0, 200 / 3, 100 / 3])
  text = metrics.format_report(report, "test")
  assert "accuracy 0.6000" in text and "quadratic kappa 0.4068" in text and "3-4" in text


def test_edge_cases():
  cm = metrics.confusion_matrix([2, 2, 2], [2, 2, 2], 3)
  precision, recall, f1 = metrics.precision_recall_f1(cm)
  np.testing.assert_array_equal(precision, [0, 0, 1]) and np.testing.assert_array_equal(f1, [0, 0, 1])
  assert math.isnan(metrics.quadratic_weighted_kappa(cm))  # 0 / 0: both raters constant
  report = metrics.grading_report([2, 2, 2], [2, 2, 2], ("a", "b", "c"))
  assert report["quadratic_kappa"] is None and report["accuracy"] == 1.0
  assert report["confusion_matrix_row_percent"][0] == [0.0, 0.0, 0.0]
  json.dumps(report, allow_nan=False)
  assert metrics.quadratic_weighted_kappa(metrics.confusion_matrix([0, 1, 2, 2], [0, 1, 2, 2], 3)) == 1.0
  assert metrics.quadratic_weighted_kappa(metrics.confusion_matrix([0, 2], [2, 0], 3)) == pytest.approx(-1.0)
  empty = metrics.grading_report([], [], ("a", "b"))
  assert empty["num_samples"] == 0 and empty["accuracy"] == 0.0 and empty["quadratic_kappa"] is None
  np.testing.assert_array_equal(metrics.confusion_matrix(np.array([0.0, 1.0]), [1, 1], 2), [[0, 1], [0, 1]])


def test_bad_labels_are_named():
  with pytest.raises(ValueError, match=r"'predicted'\[2\] = 3 is not a grade in \[0, 3\)"):
    metrics.confusion_matrix([0, 1, 2], [0, 1, 3], 3)
  with pytest.raises(ValueError, match=r"'truth'\[0\] = -1"):
    metrics.confusion_matrix([-1], [0], 3)
  with pytest.raises(ValueError, match="truth has 2 labels, predicted 3"):
    metrics.confusion_matrix([0, 1], [0, 1, 2], 3)
  with pytest.raises(ValueError, match="integers"):
    metrics.confusion_matrix([0.5], [0], 3)


def _reference(truth, predicted, k):
  """Per-sample float64 definitions: counts by loops, kappa from pairwise squared differences."""
  truth = np.asarray(truth, np.float64)
  predicted = np.asarray(predicted, np.float64)
  n = len(truth)
  precision, recall, f1 = [], [], []
  for c in range(k):
    tp = sum(1 for t, p in zip(truth, predicted) if t == c and p == c)
    pp = sum(1 for p in predicted if p == c)
    ap = sum(1 for t in truth if t == c)
    pr = tp / pp if pp else 0.0
    rc = tp / ap if ap else 0.0
    precision.append(pr), recall.append(rc), f1.append(2 * pr * rc / (pr + rc) if pr + rc else 0.0)
  observed = np.sum((truth - predicted) ** 2) / n
  chance = np.sum((truth[:, None] - predicted[None, :]) ** 2) / n**2
  kappa = 1.0 - observed / chance
  return np.mean(truth == predicted), np.array(precision), np.array(recall), np.array(f1), kappa


@pytest.mark.parametrize("seed", range(5))
def test_random_against_float64_definitions(seed):
  rng = np.random.default_rng(seed)
  k = [3, 4, 5, 3, 2][seed]
  truth = rng.integers(0, k, 200)
  predicted = np.where(rng.uniform(size=200) < 0.6, truth, rng.integers(0, k, 200))
  cm = metrics.confusion_matrix(truth, predicted, k)
  acc, precision, recall, f1, kappa = _reference(truth, predicted, k)
  assert cm.sum() == 200 and metrics.accuracy(cm) == pytest.approx(acc, rel=1e-12)
  got = metrics.precision_recall_f1(cm)
  for a, b in zip(got, (precision, recall, f1)):
    np.testing.assert_allclose(a, b, rtol=1e-12)
  assert metrics.quadratic_weighted_kappa(cm) == pytest.approx(kappa, rel=1e-10)
