"""Tests for acne_jax.ops.nms against independent greedy-NMS references and torchvision.

References (written from the definition, not from the code under test):
  * ``_numpy_greedy``: float64 NumPy; walks boxes by (descending score, ascending index)
    and keeps a box unless some already kept box has IoU > threshold.
  * ``_torch_greedy``: float64 PyTorch; ``torch.sort(stable=True, descending=True)``, then
    the classic "keep the next unsuppressed box and suppress everything after it" loop.
  * torchvision's C++ CPU kernel (``tv.ops.nms``, ``tv.ops.batched_nms``), loaded through
    ``acne_jax.testing.torchvision_cpu``; tests that need it skip where it cannot load.

Exactness of the float32 implementation vs the float64 references: integer coordinates in
[-100, 400] give areas < 2**24 (exact in float32) and IoUs p/q with q < 5e5, which are
>= 2e-7 away from 0.3/0.5/0.7 unless exactly equal -- far more than float32 rounding -- so
the comparisons agree. These suites pass the threshold as a traced float32 jit argument,
which is compared at its float32 value: an IoU of exactly 3/10 rounds to float32(0.3), is
not greater than it, and is kept, as in float64. (A Python-float 0.3 is torchvision's
double 0.3 < float32(0.3), which suppresses that IoU; that rule is tested against
torchvision's kernel at the end of this file.) For float coordinates, cases with an IoU
within 1e-5 of the threshold are regenerated.
"""

from __future__ import annotations

import fractions
import functools

import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from acne_jax.ops.boxes import box_iou
from acne_jax.ops.nms import batched_nms, nms, round_threshold_down

THRESHOLDS = (0.3, 0.5, 0.7)


# ----------------------------------------------------------------------------------------
# References.


def _iou_one_to_many_np(box: np.ndarray, others: np.ndarray) -> np.ndarray:
  """box: [4] float64 x1y1x2y2; others: [K, 4] float64 x1y1x2y2 -> [K] float64."""
  area = (box[2] - box[0]) * (box[3] - box[1])
  areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
  w = np.maximum(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0)
  h = np.maximum(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0)
  inter = w * h
  union = area + areas - inter
  out = np.zeros_like(union)
  np.divide(inter, union, out=out, where=union > 0)
  return out


def _numpy_greedy(boxes, scores, thr, valid=None) -> list[int]:
  """boxes: [N, 4] x1y1x2y2; scores: [N]; valid: [N] bool -> kept indices, in order."""
  boxes = np.asarray(boxes, np.float64)
  scores = np.asarray(scores, np.float64)
  n = len(scores)
  valid = np.ones(n, bool) if valid is None else np.asarray(valid, bool)
  cand = [i for i in range(n) if valid[i] and not np.isnan(scores[i])]
  cand.sort(key=lambda i: (-scores[i], i))
  kept: list[int] = []
  for i in cand:
    if kept and np.any(_iou_one_to_many_np(boxes[i], boxes[kept]) > thr):
      continue
    kept.append(i)
  return kept


def _torch_greedy(boxes, scores, thr, valid=None) -> list[int]:
  """Same contract as ``_numpy_greedy``, written with torch tensors."""
  boxes = torch.as_tensor(np.asarray(boxes), dtype=torch.float64)
  scores = torch.as_tensor(np.asarray(scores), dtype=torch.float64)
  ok = ~torch.isnan(scores)
  if valid is not None:
    ok &= torch.as_tensor(np.asarray(valid), dtype=torch.bool)
  idx = torch.nonzero(ok).flatten()  # ascending, so the stable sort keeps index order
  order = idx[torch.sort(scores[idx], stable=True, descending=True).indices]
  b = boxes[order]
  area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
  suppressed = torch.zeros(len(order), dtype=torch.bool)
  kept: list[int] = []
  for p in range(len(order)):
    if suppressed[p]:
      continue
    kept.append(int(order[p]))
    rest = b[p + 1:]
    lt = torch.maximum(b[p, :2], rest[:, :2])
    rb = torch.minimum(b[p, 2:], rest[:, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[:, 0] * wh[:, 1]
    union = area[p] + area[p + 1:] - inter
    iou = torch.where(union > 0, inter / torch.where(union > 0, union, 1.0), 0.0)
    suppressed[p + 1:] |= iou > thr
  return kept


def _grouped_reference(boxes, scores, groups, thr, valid=None) -> list[int]:
  """Greedy NMS per group separately, merged by (descending score, ascending index)."""
  scores = np.asarray(scores, np.float64)
  valid = np.ones(len(scores), bool) if valid is None else np.asarray(valid, bool)
  kept: list[int] = []
  for g in np.unique(groups):
    members = np.nonzero(groups == g)[0]
    sub = _numpy_greedy(boxes[members], scores[members], thr, valid[members])
    kept.extend(int(members[i]) for i in sub)
  kept.sort(key=lambda i: (-scores[i], i))
  return kept


# ----------------------------------------------------------------------------------------
# Case generation.


def _pairwise_iou_np(boxes: np.ndarray) -> np.ndarray:
  return np.stack([_iou_one_to_many_np(b, boxes) for b in boxes])


def _boxes_from_xywh(x, y, w, h) -> np.ndarray:
  return np.stack([x, y, x + w, y + h], axis=1)


def _random_case(rng: np.random.Generator, n: int, kind: str, thr: float):
  """Returns boxes [n, 4] float32 x1y1x2y2, scores [n] float32, valid [n] bool or None."""
  integer = rng.random() < 0.5
  for _ in range(100):
    if kind == "uniform":
      x, y = rng.uniform(-50, 300, n), rng.uniform(-50, 300, n)
      w, h = rng.uniform(4, 80, n), rng.uniform(4, 80, n)
    elif kind == "cluster":  # a few objects, many jittered proposals: suppression chains
      k = max(1, n // 8)
      cx, cy = rng.uniform(0, 250, k), rng.uniform(0, 250, k)
      c = rng.integers(0, k, n)
      x, y = cx[c] + rng.normal(0, 8, n), cy[c] + rng.normal(0, 8, n)
      w, h = rng.uniform(20, 50, n), rng.uniform(20, 50, n)
    elif kind == "chain":  # boxes sliding along a line: long A > B > C chains
      step = rng.uniform(3, 15)
      x = np.arange(n) * step + rng.normal(0, 1, n) - 60
      y = rng.normal(0, 2, n)
      w = h = np.full(n, 40.0)
    elif kind == "degenerate":  # zero-area, inverted, duplicated, negative/outside boxes
      x, y = rng.uniform(-100, 250, n), rng.uniform(-100, 250, n)
      w, h = rng.uniform(0, 60, n), rng.uniform(0, 60, n)
      w[rng.random(n) < 0.3] = 0
      h[rng.random(n) < 0.2] = 0
      w[rng.random(n) < 0.1] *= -1
    elif kind == "identical":
      x, y, w, h = (np.full(n, v) for v in rng.uniform(0, 100, 4))
    else:
      raise ValueError(kind)
    boxes = _boxes_from_xywh(x, y, w, h)
    if integer:
      boxes = np.round(boxes)
    boxes = np.clip(boxes, -100, 400).astype(np.float32)
    if integer:
      break
    iou = _pairwise_iou_np(boxes.astype(np.float64))
    if not np.any(np.abs(iou - thr) < 1e-5):
      break
  else:
    raise RuntimeError("could not draw a non-borderline case")

  r = rng.random()
  if r < 0.3:  # many exact ties
    scores = np.round(rng.random(n), 1)
  elif r < 0.4:
    scores = np.full(n, 0.5)
  else:
    scores = rng.random(n)
  if kind == "chain" and rng.random() < 0.5:
    scores = np.sort(scores)[::-1].copy()
  scores = scores.astype(np.float32)
  if rng.random() < 0.15:
    scores[rng.random(n) < 0.2] = np.nan
  valid = None
  if rng.random() < 0.35:
    valid = rng.random(n) < 0.7
  return boxes, scores, valid


KINDS = ("uniform", "cluster", "chain", "degenerate", "identical")


def _check_result(indices, keep_valid, expected: list[int], max_output: int) -> None:
  indices, keep_valid = np.asarray(indices), np.asarray(keep_valid)
  assert indices.shape == (max_output,) and indices.dtype == np.int32
  assert keep_valid.shape == (max_output,) and keep_valid.dtype == bool
  want = expected[:max_output]
  k = len(want)
  assert keep_valid[:k].all() and not keep_valid[k:].any(), keep_valid
  assert indices[:k].tolist() == want
  assert (indices[k:] == 0).all()


@functools.lru_cache(maxsize=None)
def _jitted_nms(max_output: int, tile_size: int):
  return jax.jit(
      lambda b, s, thr, v: nms(b, s, thr, max_output, v, tile_size=tile_size))


@functools.lru_cache(maxsize=None)
def _jitted_batched(max_output: int, tile_size: int):
  return jax.jit(lambda b, s, g, thr, v: batched_nms(
      b, s, g, thr, max_output, v, tile_size=tile_size))


def _as_valid(valid, n):
  return np.ones(n, bool) if valid is None else valid


# ----------------------------------------------------------------------------------------
# Randomized equivalence: 12 configurations x 20 cases = 240 cases.

CONFIGS = [  # (n, tile_size, max_output)
    (1, 256, 1),
    (1, 256, 4),
    (2, 1, 3),
    (5, 2, 5),
    (17, 4, 3),
    (17, 4, 40),
    (64, 16, 10),
    (64, 16, 64),
    (64, 256, 100),
    (300, 64, 50),
    (300, 64, 300),
    (300, 512, 1000),
]


@pytest.mark.parametrize("n,tile_size,max_output", CONFIGS)
def test_matches_references(n, tile_size, max_output):
  rng = np.random.default_rng(1000 * n + 10 * tile_size + max_output)
  fn = _jitted_nms(max_output, tile_size)
  for case in range(20):
    kind = KINDS[case % len(KINDS)]
    thr = THRESHOLDS[case % len(THRESHOLDS)]
    boxes, scores, valid = _random_case(rng, n, kind, thr)
    ref_np = _numpy_greedy(boxes, scores, thr, valid)
    ref_torch = _torch_greedy(boxes, scores, thr, valid)
    assert ref_np == ref_torch, (kind, thr)
    indices, keep_valid = fn(boxes, scores, thr, _as_valid(valid, n))
    _check_result(indices, keep_valid, ref_np, max_output)


@hypothesis.settings(max_examples=100, deadline=None, derandomize=True)
@hypothesis.given(
    data=st.lists(
        st.tuples(
            st.integers(0, 16), st.integers(0, 16),  # x1, y1
            st.integers(0, 10), st.integers(0, 10),  # w, h (0 allowed)
            st.sampled_from([0.1, 0.2, 0.3, 0.5, 0.9]), st.booleans()),
        min_size=1, max_size=12),
    thr=st.sampled_from(THRESHOLDS),
    max_output=st.sampled_from([3, 12]),
)
def test_matches_references_hypothesis(data, thr, max_output):
  # Pad to a fixed N=12 with invalid boxes so that one compilation serves all examples.
  n = 12
  boxes = np.zeros((n, 4), np.float32)
  scores = np.zeros(n, np.float32)
  valid = np.zeros(n, bool)
  for i, (x, y, w, h, s, v) in enumerate(data):
    boxes[i] = (x, y, x + w, y + h)
    scores[i] = s
    valid[i] = v or i % 3 == 0
  ref = _numpy_greedy(boxes, scores, thr, valid)
  assert ref == _torch_greedy(boxes, scores, thr, valid)
  _check_result(*_jitted_nms(max_output, 4)(boxes, scores, thr, valid), ref, max_output)


# ----------------------------------------------------------------------------------------
# Hand-written cases.


def _run(boxes, scores, thr, max_output, valid=None, tile_size=256):
  """Jitted nms on small hand-written inputs; returns the kept indices as a list."""
  boxes = np.asarray(boxes, np.float32)
  scores = np.asarray(scores, np.float32)
  valid = np.ones(len(scores), bool) if valid is None else np.asarray(valid, bool)
  indices, keep_valid = _jitted_nms(max_output, tile_size)(boxes, scores, thr, valid)
  return np.asarray(indices)[np.asarray(keep_valid)].tolist()


@pytest.mark.parametrize("tile_size", [1, 2, 3, 256])
def test_suppression_chain(tile_size):
  # IoU(A, B) = IoU(B, C) = 1/3, IoU(A, C) = 0: A suppresses B, so C survives.
  boxes = [[0, 0, 10, 10], [5, 0, 15, 10], [10, 0, 20, 10]]
  assert _run(boxes, [0.9, 0.8, 0.7], 0.3, 5, tile_size=tile_size) == [0, 2]
  # Reversed input order (scores decide the order, not positions).
  assert _run(boxes[::-1], [0.7, 0.8, 0.9], 0.3, 5, tile_size=tile_size) == [2, 0]
  # Long chain: every other box is kept.
  chain = [[5 * i, 0, 5 * i + 10, 10] for i in range(9)]
  scores = np.linspace(1, 0.1, 9)
  assert _run(chain, scores, 0.3, 9, tile_size=tile_size) == [0, 2, 4, 6, 8]


@pytest.mark.parametrize("tile_size", [1, 256])  # across tiles and within a tile
def test_threshold_is_strict(tile_size):
  boxes = [[0, 0, 10, 10], [0, 0, 10, 20], [0, 0, 10, 30]]  # IoU(0, 1) = 0.5 exactly
  assert _run(boxes, [0.9, 0.8, 0.0], 0.5, 3, tile_size=tile_size) == [0, 1]
  assert _run(boxes, [0.9, 0.8, 0.0], 0.49, 3, tile_size=tile_size) == [0, 2]


def test_identical_boxes_and_ties():
  boxes = np.tile([[1.0, 2.0, 30.0, 40.0]], (7, 1))
  assert _run(boxes, np.full(7, 0.5), 0.5, 3) == [0]
  assert _run(boxes, [0.1, 0.9, 0.9, 0.2, 0.9, 0.0, 0.3], 0.5, 3) == [1]
  # Disjoint boxes with equal scores: lower index first.
  disjoint = [[20 * i, 0, 20 * i + 10, 10] for i in range(6)]
  assert _run(disjoint, [0.5, 0.7, 0.5, 0.7, 0.5, 0.5], 0.5, 6) == [1, 3, 0, 2, 4, 5]


def test_zero_area_boxes_never_suppress_or_get_suppressed():
  boxes = [[0, 0, 10, 10], [5, 5, 5, 5], [5, 5, 5, 5], [2, 2, 8, 2], [0, 0, 10, 10]]
  assert _run(boxes, [0.9, 0.8, 0.7, 0.6, 0.5], 0.0, 5) == [0, 1, 2, 3]
  assert _run(boxes, [0.1, 0.8, 0.7, 0.6, 0.5], 0.0, 5) == [1, 2, 3, 4]


def test_nan_scores_and_valid_mask():
  boxes = [[0, 0, 10, 10], [1, 1, 10, 10], [2, 2, 10, 10], [50, 50, 60, 60]]
  # The NaN box (index 0) would suppress 1 and 2 if it counted.
  assert _run(boxes, [np.nan, 0.8, 0.7, 0.6], 0.5, 4) == [1, 3]
  valid = [False, True, True, False]
  assert _run(boxes, [0.9, 0.8, 0.7, 0.6], 0.5, 4, valid=valid) == [1]
  assert _run(boxes, [0.9, 0.8, 0.7, 0.6], 0.5, 4, valid=[False] * 4) == []


def test_max_output_truncation_and_padding():
  boxes = np.asarray([[20 * i, 0, 20 * i + 10, 10] for i in range(5)], np.float32)
  scores = np.asarray([0.1, 0.5, 0.3, 0.9, 0.7], np.float32)
  valid = np.ones(5, bool)
  indices, keep_valid = _jitted_nms(2, 256)(boxes, scores, 0.5, valid)
  assert indices.tolist() == [3, 4] and keep_valid.tolist() == [True, True]
  indices, keep_valid = _jitted_nms(8, 2)(boxes, scores, 0.5, valid)
  assert indices.tolist() == [3, 4, 1, 2, 0, 0, 0, 0]
  assert keep_valid.tolist() == [True] * 5 + [False] * 3
  indices, keep_valid = nms(boxes, scores, 0.5, 0)
  assert indices.shape == (0,) and keep_valid.shape == (0,)


# ----------------------------------------------------------------------------------------
# Transformations.


def test_vmap_over_images():
  rng = np.random.default_rng(7)
  n, max_output, batch = 50, 20, 10
  cases = [_random_case(rng, n, KINDS[i % len(KINDS)], 0.5) for i in range(batch)]
  boxes = np.stack([c[0] for c in cases])
  scores = np.stack([c[1] for c in cases])
  valid = np.stack([_as_valid(c[2], n) for c in cases])
  fn = jax.jit(jax.vmap(lambda b, s, v: nms(b, s, 0.5, max_output, v, tile_size=16)))
  indices, keep_valid = fn(boxes, scores, valid)
  assert indices.shape == (batch, max_output)
  for i in range(batch):
    ref = _numpy_greedy(boxes[i], scores[i], 0.5, valid[i])
    _check_result(indices[i], keep_valid[i], ref, max_output)


def test_vmap_over_thresholds():
  rng = np.random.default_rng(8)
  boxes, scores, _ = _random_case(rng, 40, "cluster", 0.5)
  thrs = jnp.asarray([0.3, 0.5, 0.7], jnp.float32)
  fn = jax.jit(jax.vmap(lambda t: nms(boxes, scores, t, 40, tile_size=8)))
  indices, keep_valid = fn(thrs)
  for i, thr in enumerate(THRESHOLDS):
    if np.any(np.abs(_pairwise_iou_np(boxes.astype(np.float64)) - thr) < 1e-5):
      continue
    _check_result(indices[i], keep_valid[i], _numpy_greedy(boxes, scores, thr), 40)


def test_large_n_under_jit():
  rng = np.random.default_rng(6000)
  n = 6000
  xy = rng.uniform(0, 1000, (n, 2))
  wh = rng.uniform(8, 200, (n, 2))
  boxes = np.concatenate([xy, xy + wh], axis=1).astype(np.float32)
  scores = rng.random(n).astype(np.float32)
  fn = jax.jit(lambda b, s: nms(b, s, 0.7, 1000))
  indices, keep_valid = fn(boxes, scores)
  indices, keep_valid = np.asarray(indices), np.asarray(keep_valid)
  assert keep_valid.all()  # 6000 random boxes at 0.7 keep far more than 1000
  assert len(set(indices.tolist())) == 1000
  assert np.all(np.diff(scores[indices]) <= 0)
  # Greedy decisions depend only on higher-ranked boxes, so greedy over the top 1500
  # boxes gives the reference's first kept boxes cheaply.
  top = np.argsort(-scores, kind="stable")[:1500]
  ref = [int(top[i]) for i in _numpy_greedy(boxes[top], scores[top], 0.7)]
  m = min(len(ref), 1000)
  assert m >= 500
  assert indices[:m].tolist() == ref[:m]


# ----------------------------------------------------------------------------------------
# batched_nms.


@pytest.mark.parametrize("n,tile_size,max_output",
                         [(40, 8, 40), (120, 32, 30), (120, 256, 200)])
def test_batched_nms_matches_per_group_reference(n, tile_size, max_output):
  rng = np.random.default_rng(n + tile_size)
  fn = _jitted_batched(max_output, tile_size)
  for case in range(12):
    kind = KINDS[case % len(KINDS)]
    thr = THRESHOLDS[case % len(THRESHOLDS)]
    boxes, scores, valid = _random_case(rng, n, kind, thr)
    groups = rng.choice(np.array([-3, 0, 1, 2, 79]), size=n).astype(np.int32)
    ref = _grouped_reference(boxes, scores, groups, thr, valid)
    indices, keep_valid = fn(boxes, scores, groups, thr, _as_valid(valid, n))
    _check_result(indices, keep_valid, ref, max_output)


def test_batched_nms_groups_do_not_interact():
  boxes = np.tile([[-5.0, -5.0, 20.0, 20.0]], (6, 1))
  groups = np.array([0, 1, 0, 1, 2, 2], np.int32)
  scores = np.array([0.9, 0.8, 0.7, 0.95, 0.1, 0.2], np.float32)
  fn = _jitted_batched(6, 256)
  indices, keep_valid = fn(boxes, scores, groups, 0.5, np.ones(6, bool))
  assert np.asarray(indices)[np.asarray(keep_valid)].tolist() == [3, 0, 5]


# ----------------------------------------------------------------------------------------
# Shape validation.


@pytest.mark.parametrize("boxes_shape,scores_shape,valid_shape,arg", [
    ((10, 5), (10,), None, "boxes"),
    ((10,), (10,), None, "boxes"),
    ((2, 10, 4), (10,), None, "boxes"),
    ((10, 4), (10, 1), None, "scores"),
    ((10, 4), (9,), None, "scores"),
    ((10, 4), (10,), (9,), "valid"),
])
def test_nms_shape_errors(boxes_shape, scores_shape, valid_shape, arg):
  boxes = jnp.zeros(boxes_shape)
  scores = jnp.zeros(scores_shape)
  valid = None if valid_shape is None else jnp.ones(valid_shape, bool)
  with pytest.raises(ValueError, match=f"nms: argument '{arg}'"):
    nms(boxes, scores, 0.5, 5, valid)
  with pytest.raises(ValueError, match=f"nms: argument '{arg}'"):
    jax.jit(lambda b, s: nms(b, s, 0.5, 5, valid))(boxes, scores)


def test_batched_nms_shape_errors():
  boxes, scores = jnp.zeros((10, 4)), jnp.zeros((10,))
  with pytest.raises(ValueError, match="batched_nms: argument 'group_ids'"):
    batched_nms(boxes, scores, jnp.zeros((11,), jnp.int32), 0.5, 5)
  with pytest.raises(ValueError, match="batched_nms: argument 'boxes'"):
    batched_nms(jnp.zeros((10, 3)), scores, jnp.zeros((10,), jnp.int32), 0.5, 5)


def test_bad_static_arguments():
  boxes, scores = jnp.zeros((10, 4)), jnp.zeros((10,))
  with pytest.raises(ValueError, match="max_output"):
    nms(boxes, scores, 0.5, -1)
  with pytest.raises(ValueError, match="tile_size"):
    nms(boxes, scores, 0.5, 5, tile_size=0)


# ----------------------------------------------------------------------------------------
# torchvision's CPU kernel as the reference: the threshold rule and tie order.

TV_THRESHOLDS = (0.1, 0.3, 0.5, 0.6, 0.7)  # float32(t) > t for 0.1, 0.3, 0.6


def _kernel_iou32(a, b) -> np.ndarray:
  """torchvision's CPU-kernel IoU, operation by operation in float32.

  a: [N, 4], b: [M, 4] float32 x1y1x2y2 with x2 >= x1 and y2 >= y1 -> [N, M] float32
  ``inter / ((area_a + area_b) - inter)``, each operation rounded to float32.
  """
  a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
  area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
  area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
  zero = np.float32(0)
  w = np.maximum(zero, np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]))
  h = np.maximum(zero, np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]))
  inter = w * h
  with np.errstate(invalid="ignore"):
    return inter / ((area_a[:, None] + area_b[None, :]) - inter)


_box_iou_jit = jax.jit(box_iou)


def _tv_nms(tv, boxes, scores, thr) -> list[int]:
  """tv.ops.nms with the threshold passed as the double ``float(thr)``."""
  return tv.ops.nms(torch.from_numpy(boxes), torch.from_numpy(scores), float(thr)).tolist()


def _tv_batched(tv, boxes, scores, groups, thr) -> list[int]:
  """tv.ops.batched_nms; tied scores put in index order.

  For N > 1000 boxes torchvision runs NMS per group and re-sorts the merged result with an
  unstable sort, which can reorder tied scores; sorting by (-score, index) undoes that.
  """
  keep = tv.ops.batched_nms(torch.from_numpy(boxes), torch.from_numpy(scores),
                            torch.from_numpy(groups.astype(np.int64)), float(thr)).tolist()
  return sorted(keep, key=lambda i: (-scores[i], i))


def _kept(result) -> list[int]:
  indices, keep_valid = result
  return np.asarray(indices)[np.asarray(keep_valid)].tolist()


@pytest.mark.parametrize("t", TV_THRESHOLDS + (0.0, 1.0, 1 / 3, 0.25, -0.3, 1e-30, 1e39, -1e39))
def test_round_threshold_down_is_the_double_comparison(t):
  d = round_threshold_down(t)
  assert d.dtype == np.float32 and float(d) <= t
  with np.errstate(over="ignore"):
    assert float(np.nextafter(d, np.float32(np.inf))) > t  # d is the largest float32 <= t
  # Every float32 within 64 ulps of d, and a few far away: (x > d) == (double(x) > t), the
  # kernel's `ovr > iou_threshold` with a float ovr and a double iou_threshold.
  xs = [d]
  with np.errstate(over="ignore"):
    for direction in (np.float32(-np.inf), np.float32(np.inf)):
      x = d
      for _ in range(64):
        x = np.nextafter(x, direction)
        xs.append(x)
    xs = np.asarray(xs + [0.0, 1.0, -1.0, np.inf, -np.inf, np.float32(t)], np.float32)
  np.testing.assert_array_equal(xs > d, xs.astype(np.float64) > t)
  # Wider IoU dtypes hold the double itself; NaN stays NaN (never suppresses).
  assert round_threshold_down(t, np.float64) == t
  assert np.isnan(round_threshold_down(np.nan))


@pytest.mark.parametrize("n", [17, 300])
def test_tied_scores_follow_torchvisions_stable_order(tv, n):
  # torchvision's CPU kernel sorts scores stably (scores.sort(stable=true, descending)):
  # among tied scores the lower index comes first and wins. A plain torch.sort(descending)
  # reorders ties from N = 17 on, which would show here.
  rng = np.random.default_rng(n)
  loc = rng.integers(0, n // 3 + 1, n)  # many exact duplicates (IoU 1)
  boxes = np.stack([20 * loc, 0 * loc, 20 * loc + 10, 0 * loc + 10], 1).astype(np.float32)
  scores = rng.choice(np.float32([0.25, 0.5, 0.75]), n)
  want = _tv_nms(tv, boxes, scores, 0.5)
  assert want == _numpy_greedy(boxes, scores, 0.5)
  assert _kept(_jitted_nms(n, 256)(boxes, scores, 0.5, np.ones(n, bool))) == want
  disjoint = np.stack([20 * np.arange(n), np.zeros(n), 20 * np.arange(n) + 10, np.full(n, 10)], 1)
  assert _tv_nms(tv, disjoint.astype(np.float32), np.full(n, 0.5, np.float32), 0.5) == list(range(n))


def _exact_iou_pairs(rng: np.random.Generator, t: float, count: int) -> np.ndarray:
  """``count`` distinct integer box pairs whose IoU is exactly the rational ``t``.

  Enumerates A = [0, 0, wa, ha] and B = [dx, dy, dx + wb, dy + hb] with sizes in [1, 12]
  and offsets in [0, 11] (3M pairs), keeps those with inter / union == t, picks ``count``,
  moves each by a random integer offset in [0, 32) and randomly swaps A and B. Areas and
  intersections are small integers, exact in float32, so each pair's float32 IoU is the
  correctly rounded ``t``: float32(t). Returns [count, 2, 4] float32 x1y1x2y2 in [0, 56].
  """
  frac = fractions.Fraction(t).limit_denominator(100)  # 0.3 -> 3/10
  sizes, offsets = np.arange(1, 13), np.arange(0, 12)
  wa, ha, wb, hb, dx, dy = (g.ravel() for g in np.meshgrid(
      sizes, sizes, sizes, sizes, offsets, offsets, indexing="ij"))
  inter = (np.clip(np.minimum(wa, dx + wb) - dx, 0, None)
           * np.clip(np.minimum(ha, dy + hb) - dy, 0, None))
  union = wa * ha + wb * hb - inter
  found = np.nonzero((inter > 0) & (inter * frac.denominator == union * frac.numerator))[0]
  assert len(found) >= count, (t, len(found))
  pick = rng.choice(found, count, replace=False)
  zero = np.zeros(count, int)
  pairs = np.stack([
      np.stack([zero, zero, wa[pick], ha[pick]], axis=1),
      np.stack([dx[pick], dy[pick], dx[pick] + wb[pick], dy[pick] + hb[pick]], axis=1),
  ], axis=1)  # [count, 2, 4]
  pairs += np.tile(rng.integers(0, 32, (count, 2)), 2)[:, None, :]
  swap = rng.random(count) < 0.5
  pairs[swap] = pairs[swap][:, ::-1]
  return pairs.astype(np.float32)


@pytest.mark.parametrize("t", TV_THRESHOLDS)
def test_iou_equal_to_float32_threshold_matches_torchvision(tv, t):
  # 48 pairs, each in its own 64 x 64 cell, with float32 IoU == float32(t) exactly.
  # torchvision suppresses the lower-scored box of each pair iff float32(t) > t (the
  # double): for 0.1, 0.3 and 0.6, not for 0.5 (exact) and 0.7 (float32 rounds down).
  rng = np.random.default_rng(round(t * 10))
  count = 48
  pairs = _exact_iou_pairs(rng, t, count)
  cells = np.stack([np.arange(count) % 8, np.arange(count) // 8], axis=1) * 64
  boxes = (pairs + np.tile(cells, 2)[:, None, :]).reshape(-1, 4).astype(np.float32)
  n = len(boxes)
  assert np.all(_kernel_iou32(boxes[0::2], boxes[1::2]).diagonal() == np.float32(t))
  np.testing.assert_array_equal(np.asarray(_box_iou_jit(boxes, boxes)), _kernel_iou32(boxes, boxes))
  scores = rng.choice(np.float32([0.2, 0.4, 0.6, 0.8]), n)  # ties inside pairs too
  valid = np.ones(n, bool)
  rounds_up = float(np.float32(t)) > t

  want = _tv_nms(tv, boxes, scores, t)
  assert len(want) == (count if rounds_up else n)
  assert _kept(jax.jit(lambda b, s: nms(b, s, t, n))(boxes, scores)) == want
  assert _kept(nms(boxes, scores, np.float64(t), n, tile_size=5)) == want
  # Traced thresholds are compared at their own float32 value (see the nms docstring).
  assert _kept(_jitted_nms(n, 3)(boxes, scores, round_threshold_down(t), valid)) == want
  as_float32 = _kept(_jitted_nms(n, 3)(boxes, scores, np.float32(t), valid))
  assert as_float32 == _tv_nms(tv, boxes, scores, np.float32(t))
  assert len(as_float32) == n  # IoU == float32(t) is never > float32(t)

  groups = np.repeat(rng.integers(0, 4, count), 2).astype(np.int32)
  split = rng.random(count) < 0.3  # these pairs' boxes get different groups: both kept
  groups[1::2][split] = (groups[1::2][split] + 1) % 4
  want = _tv_batched(tv, boxes, scores, groups, t)
  assert len(want) == (count + int(split.sum()) if rounds_up else n)
  assert _kept(jax.jit(lambda b, s, g: batched_nms(b, s, g, t, n))(boxes, scores, groups)) == want
  assert _kept(_jitted_batched(n, 8)(boxes, scores, groups, round_threshold_down(t), valid)) == want


def _ulp_neighbours(x: float, steps: np.ndarray) -> np.ndarray:
  """float32(x) moved by ``steps`` ulps: [len(steps)] float32 (x > 0)."""
  return (np.asarray([x], np.float32).view(np.int32) + steps).view(np.float32)


def _near_threshold_scene(rng: np.random.Generator, t: float, clusters: int = 150, partners: int = 6):
  """Float boxes with many IoUs equal to float32(t) and to its two float32 neighbours.

  Each cluster is an anchor box and ``partners`` boxes whose float32 IoU with the anchor
  is, in turn, the float32 just below float32(t), float32(t) and the float32 just above:
  a partner is solved for IoU = t in float64, then its x1 and x2 are moved by up to 8 and
  24 ulps until the kernel's float32 IoU hits the target (a new partner is drawn if none
  of the 17 x 49 moves does). The boxes of a cluster share y1
  and have power-of-two heights, and clusters are disjoint in y, so every product w * h
  in the IoU is exact in float32: fused multiply-adds cannot change the IoU, which is
  then bit-identical in XLA and in torchvision's kernel (the test checks it).

  Returns:
    boxes: [clusters * (1 + partners), 4] float32 x1y1x2y2, x in [1, ~700].
    scores: [same] float32; in 3 of 4 clusters the anchor scores highest.
    groups: [same] int32; one group per cluster, a fifth of the boxes moved to another.
    counts: [3] int, anchor-partner pairs at the three target IoUs (of 2 * clusters each;
      a partner not found in 50 attempts, which happens for IoU 1 ulp below 0.5 mostly,
      is replaced by one with an IoU within a few ulps of t).
  """
  t32 = np.float32(t)
  targets = (np.nextafter(t32, np.float32(-1)), t32, np.nextafter(t32, np.float32(2)))
  x1_steps = np.repeat(np.arange(-8, 9, dtype=np.int32), 49)
  x2_steps = np.tile(np.arange(-24, 25, dtype=np.int32), 17)
  boxes, scores, groups = [], [], []
  counts = np.zeros(3, int)
  for c in range(clusters):
    y1 = float(128 * c + rng.integers(0, 32))
    ha = float(2 ** rng.integers(3, 7))
    ax1 = rng.uniform(1, 200)
    anchor = np.float32([ax1, y1, ax1 + rng.uniform(20, 120), y1 + ha])
    ax1, _, ax2, _ = anchor.astype(np.float64)
    cluster = [anchor]
    for k in range(partners):
      candidates = anchor[None]  # (a duplicate, if no attempt below gets as far as candidates)
      for _ in range(50):
        hb = float(2 ** rng.integers(3, 7))
        bx1 = ax1 + rng.uniform(0.0, 0.5) * (ax2 - ax1)
        inter = (ax2 - bx1) * min(ha, hb)
        x2 = bx1 + (inter / t - (ax2 - ax1) * ha + inter) / hb  # IoU = t exactly, if x2 > ax2
        if not x2 > ax2 + 1:
          continue
        candidates = np.tile(np.float32([0, y1, 0, y1 + hb]), (len(x1_steps), 1))
        candidates[:, 0] = _ulp_neighbours(bx1, x1_steps)
        candidates[:, 2] = _ulp_neighbours(x2, x2_steps)
        hits = np.nonzero(_kernel_iou32(anchor[None], candidates)[0] == targets[k % 3])[0]
        if len(hits):
          cluster.append(candidates[rng.choice(hits)])
          counts[k % 3] += 1
          break
      else:  # rare (1 ulp below 0.5, say): keep a partner whose IoU is near t, uncounted
        cluster.append(candidates[len(candidates) // 2])
    size = len(cluster)
    s = rng.random(size)
    if rng.random() < 0.75:
      s[0] += 1.0
    if rng.random() < 0.2:
      s = np.round(s, 1)  # ties
    g = np.full(size, rng.integers(0, 5))
    moved = rng.random(size) < 0.2
    g[moved] = (g[moved] + 1) % 5
    boxes.extend(cluster)
    scores.append(s)
    groups.append(g)
  return (np.asarray(boxes, np.float32), np.concatenate(scores).astype(np.float32),
          np.concatenate(groups).astype(np.int32), counts)


@pytest.mark.parametrize("t", TV_THRESHOLDS)
def test_near_threshold_float_boxes_match_torchvision(tv, t):
  rng = np.random.default_rng(round(t * 1000))
  boxes, scores, groups, counts = _near_threshold_scene(rng, t)
  n = len(boxes)
  assert n == 1050 and counts.min() >= 150, counts  # of 300 each
  # Our IoU is the kernel's, bit for bit, on this scene: only the threshold rule matters.
  np.testing.assert_array_equal(np.asarray(_box_iou_jit(boxes, boxes)), _kernel_iou32(boxes, boxes))
  valid = np.ones(n, bool)

  want = _tv_nms(tv, boxes, scores, t)
  assert _kept(jax.jit(lambda b, s: nms(b, s, t, n))(boxes, scores)) == want
  assert _kept(_jitted_nms(n, 64)(boxes, scores, round_threshold_down(t), valid)) == want
  as_float32 = _kept(_jitted_nms(n, 64)(boxes, scores, np.float32(t), valid))
  assert as_float32 == _tv_nms(tv, boxes, scores, np.float32(t))
  if float(np.float32(t)) > t:
    assert as_float32 != want  # the scene does decide on IoU == float32(t)

  # 1050 boxes: torchvision's per-group path, which does not shift coordinates.
  want = _tv_batched(tv, boxes, scores, groups, t)
  assert _kept(_jitted_batched(n, 256)(boxes, scores, groups, round_threshold_down(t), valid)) == want
