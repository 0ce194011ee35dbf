"""Analysis numbers against hand-made cases (the figures rendered from trained models:
tests/test_reproduce_sadh.py)."""

import numpy as np
import pytest

from acne_jax.evaluation import analysis


def test_confidence_gradient_by_hand():
  # One level, 5x5 cells, stride 8, one anchor per cell of size 16; one ground truth centred on
  # cell (2, 2). Scores fall with Manhattan distance d as s = 0.9 - 0.2 d (logits chosen so).
  stride, size = 8, (5, 5)
  ys, xs = np.meshgrid(np.arange(5) * stride, np.arange(5) * stride, indexing="ij")
  anchors = np.stack([xs - 8, ys - 8, xs + 8, ys + 8], -1).reshape(-1, 4).astype(np.float32)
  distance = np.abs(np.arange(5)[:, None] - 2) + np.abs(np.arange(5)[None, :] - 2)
  probability = np.clip(0.9 - 0.2 * distance, 0.01, None)
  logits = np.log(probability / (1 - probability)).reshape(1, -1)
  curve = analysis.confidence_gradient([logits], [size], [anchors], [stride], [np.array([[8, 8, 24, 24]])], max_distance=4)
  expected = [0.0] + [max(0.9 - 0.2 * d, 0.01) - 0.9 for d in range(1, 5)]
  np.testing.assert_allclose(curve, expected, atol=1e-9)


def test_pearson_and_iou_score_pairs():
  rng = np.random.default_rng(0)
  x, y = rng.normal(size=100), rng.normal(size=100)
  assert analysis.pearson(x, y) == pytest.approx(np.corrcoef(x, y)[0, 1])
  assert np.isnan(analysis.pearson(np.ones(5), y[:5]))
  decoded = [np.array([[[0, 0, 10, 10], [0, 0, 5, 10], [50, 50, 60, 60]]], np.float32)]
  pairs = analysis.iou_score_pairs([np.array([[2.0, 0.0, 1.0]])], [np.array([[0.0, 0.0, 0.0]])], decoded,
                                   [np.array([[0, 0, 10, 10]])], top_k=3)
  # The third box does not overlap: dropped. IoUs 1.0 and 0.5; s_final = sqrt(s_cls * 0.5).
  order = np.argsort(-pairs["s_final"])
  np.testing.assert_allclose(pairs["iou"][order], [1.0, 0.5])
  s = 1 / (1 + np.exp(-np.array([2.0, 0.0])))
  np.testing.assert_allclose(pairs["s_final"][order], np.sqrt(s * 0.5))


def test_precision_recall_by_hand():
  gt = [np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float)]
  labels = [np.array([0, 0])]
  dets = [np.array([[0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 30, 31], [50, 50, 60, 60]], float)]
  scores = [np.array([0.9, 0.8, 0.7, 0.6])]
  classes = [np.array([0, 0, 0, 0])]
  recall, precision = analysis.precision_recall(gt, labels, dets, scores, classes, num_classes=2)[0]
  # Hits in score order: yes, no (duplicate), yes (IoU 100/110), no.
  np.testing.assert_allclose(recall, [0.5, 0.5, 1.0, 1.0])
  np.testing.assert_allclose(precision, [1.0, 0.5, 2 / 3, 0.5])
  assert analysis.precision_recall(gt, labels, dets, scores, classes, num_classes=2)[1][0].size == 0


def test_draw_detections_uses_class_colours_and_adds_a_legend():
  image = np.zeros((60, 300, 3), np.uint8)
  out = analysis.draw_detections(image, np.array([[10, 10, 40, 40]]), np.array([2]), ["a", "b", "c"])
  assert out.shape[0] > 60 and out.shape[1] == 300
  assert tuple(out[10, 25]) == tuple(analysis.CLASS_COLOURS[2])  # top edge of the class-2 box
