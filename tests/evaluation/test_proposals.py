"""Proposal recall against hand-worked matchings."""

import numpy as np
import pytest

from acne_jax.evaluation import proposals


def test_greedy_one_to_one_matching_by_hand():
  gt = np.array([[0, 0, 10, 10], [0, 0, 10, 8]], float)
  # One proposal equals gt0 (IoU 1 with gt0, 0.8 with gt1); another has IoU 0.5 with gt1.
  props = np.array([[0, 0, 10, 10], [0, 0, 5, 8]], float)
  # Greedy: the best pair (gt0, p0, 1.0) first; gt1 then gets p1: inter 40 / union 80 = 0.5.
  np.testing.assert_allclose(proposals.matched_ious(gt, props), [1.0, 0.5])
  # Only the first proposal: gt1 is left unmatched (one to one), so its IoU is 0.
  np.testing.assert_allclose(proposals.matched_ious(gt, props[:1]), [1.0, 0.0])


def test_average_recall_over_thresholds_and_buckets():
  gt = [np.array([[0, 0, 10, 10], [0, 0, 10, 8]], float), np.array([[0, 0, 100, 100]], float)]
  props = [np.array([[0, 0, 10, 10], [0, 0, 5, 8]], float), np.array([[0, 0, 100, 70]], float)]
  out = proposals.average_recall(gt, props, limits=(1, 2))
  # Thresholds 0.5..0.95: IoU 1.0 recalled at all 10; IoU 0.5 at 1 of 10; IoU 0.7 at 5 of 10 (0.5..0.7).
  assert out["AR@2"] == pytest.approx((10 + 1 + 5) / 30)
  assert out["AR@1"] == pytest.approx((10 + 0 + 5) / 30)
  assert out["AR_s@2"] == pytest.approx(11 / 20)  # the two small boxes
  assert out["AR_l@2"] == pytest.approx(5 / 10)  # 100x100 = 10^4 >= 96^2: large
  assert out["AR_m@2"] == -1.0
  empty = proposals.average_recall([np.zeros((0, 4))], [np.zeros((0, 4))], limits=(10,))
  assert empty["AR@10"] == -1.0
