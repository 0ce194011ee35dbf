"""Faster R-CNN box head: RoI sampling, losses and inference against NumPy references."""

import math

import jax
import jax.numpy as jnp
import numpy as np

from acne_jax.models import bbox_head


def test_sample_rois_appends_ground_truth_and_labels_positives():
  proposals = jnp.array([[[0, 0, 10, 10], [50, 50, 60, 60], [0, 0, 0, 0]]], jnp.float32)
  proposal_valid = jnp.array([[True, True, False]])
  gt = jnp.array([[[1, 1, 11, 11], [30, 30, 40, 40]]], jnp.float32)
  labels = jnp.array([[3, 7]])
  gt_valid = jnp.array([[True, True]])
  rois = bbox_head.sample_rois(jax.random.key(0), proposals, proposal_valid, gt, labels, gt_valid, num_classes=10,
                               num_samples=8, positive_fraction=0.5)
  boxes = np.asarray(rois.boxes[0])[np.asarray(rois.valid[0])]
  got = {tuple(b): int(l) for b, l in zip(boxes, np.asarray(rois.labels[0])[np.asarray(rois.valid[0])])}
  # Candidates: 2 valid proposals + 2 ground truths (the padded proposal never appears).
  # [0,0,10,10] overlaps gt0 with IoU 81/119 = 0.68 -> class 3; both GT copies are positives;
  # [50,50,60,60] overlaps nothing -> background (10).
  assert got == {(0, 0, 10, 10): 3, (1, 1, 11, 11): 3, (30, 30, 40, 40): 7, (50, 50, 60, 60): 10}
  positive = np.asarray(rois.positive[0])
  np.testing.assert_array_equal(np.asarray(rois.target_boxes[0])[positive & (np.asarray(rois.labels[0]) == 7)], [[30, 30, 40, 40]])


def test_rcnn_losses_match_numpy():
  rng = np.random.default_rng(0)
  k, s = 3, 6
  boxes = np.array([[[0, 0, 10, 10], [5, 5, 20, 25], [0, 0, 8, 8], [10, 10, 30, 30], [0, 0, 1, 1], [2, 2, 9, 9]]], np.float32)
  targets = boxes + rng.uniform(-0.2, 0.2, boxes.shape).astype(np.float32)
  labels = np.array([[0, 2, 3, 3, 1, 3]], np.int32)  # 3 = background
  valid = np.array([[True, True, True, True, True, False]])
  positive = (labels < k) & valid
  rois = bbox_head.SampledRois(jnp.asarray(boxes), jnp.asarray(valid), jnp.asarray(labels), jnp.asarray(positive), jnp.asarray(targets),
                               jnp.zeros(labels.shape, jnp.int32))
  logits = rng.normal(0, 1, (s, k + 1)).astype(np.float32)
  deltas = rng.normal(0, 1, (s, k, 4)).astype(np.float32)
  out = bbox_head.rcnn_losses(jnp.asarray(logits), jnp.asarray(deltas), rois)
  lp = logits.astype(np.float64) - np.log(np.exp(logits.astype(np.float64)).sum(-1, keepdims=True))
  n = valid.sum()
  ce = -sum(lp[i, labels[0, i]] for i in range(s) if valid[0, i]) / n
  np.testing.assert_allclose(float(out["rcnn_cls"]), ce, rtol=1e-5)
  l1 = 0.0
  for i in range(s):
    if not positive[0, i]:
      continue
    b, t = boxes[0, i].astype(np.float64), targets[0, i].astype(np.float64)
    bw, bh, tw, th = b[2] - b[0], b[3] - b[1], t[2] - t[0], t[3] - t[1]
    enc = np.array([((t[0] + t[2]) - (b[0] + b[2])) / 2 / bw / 0.1, ((t[1] + t[3]) - (b[1] + b[3])) / 2 / bh / 0.1,
                    math.log(tw / bw) / 0.2, math.log(th / bh) / 0.2])
    l1 += np.abs(deltas[i, labels[0, i]] - enc).sum()
  np.testing.assert_allclose(float(out["rcnn_bbox"]), l1 / n, rtol=1e-5)


def test_detect_matches_per_class_threshold_and_nms_reference():
  rng = np.random.default_rng(1)
  k, p = 3, 40
  xy = rng.uniform(0, 60, (1, p, 2))
  proposals = np.concatenate([xy, xy + rng.uniform(5, 30, (1, p, 2))], -1).astype(np.float32)
  proposal_valid = np.arange(p)[None] < 35
  logits = rng.normal(0, 2, (p, k + 1)).astype(np.float32)
  deltas = rng.normal(0, 0.5, (p, k, 4)).astype(np.float32)
  det = bbox_head.detect(jnp.asarray(logits), jnp.asarray(deltas), jnp.asarray(proposals), jnp.asarray(proposal_valid),
                         image_size=(80, 80), score_threshold=0.05, nms_iou=0.5, max_per_image=25)
  probs = np.exp(logits - logits.max(-1, keepdims=True))
  probs = probs / probs.sum(-1, keepdims=True)
  candidates = []
  for i in range(35):
    b = proposals[0, i].astype(np.float64)
    bw, bh = b[2] - b[0], b[3] - b[1]
    for c in range(k):
      if probs[i, c] <= 0.05:
        continue
      d = deltas[i, c].astype(np.float64) * [0.1, 0.1, 0.2, 0.2]
      cx, cy = b[0] + bw / 2 + d[0] * bw, b[1] + bh / 2 + d[1] * bh
      w, h = bw * math.exp(d[2]), bh * math.exp(d[3])
      box = np.clip([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 0, 80)
      candidates.append((probs[i, c], c, box))
  candidates.sort(key=lambda t: -t[0])
  kept = []
  for score, c, box in candidates:
    def iou(a, b):
      iw = max(min(a[2], b[2]) - max(a[0], b[0]), 0)
      ih = max(min(a[3], b[3]) - max(a[1], b[1]), 0)
      u = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - iw * ih
      return iw * ih / u if u > 0 else 0.0
    if all(kc != c or iou(box, kb) <= 0.5 for _, kc, kb in kept):
      kept.append((score, c, box))
  kept = kept[:25]
  count = int(det.valid[0].sum())
  assert count == len(kept)
  np.testing.assert_allclose(np.asarray(det.scores[0, :count]), [s for s, _, _ in kept], rtol=1e-5)
  np.testing.assert_array_equal(np.asarray(det.classes[0, :count]), [c for _, c, _ in kept])
  np.testing.assert_allclose(np.asarray(det.boxes[0, :count]), [b for _, _, b in kept], atol=1e-3)
