"""Box ops against float64 NumPy references written from the definitions, PyTorch for IoU, and
torchvision's ``distance_box_iou`` (loaded through ``acne_jax.testing.torchvision_cpu``) for DIoU."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from acne_jax.ops import boxes as box_ops

# ----------------------------------------------------------------------------- references


def iou_giou_diou_reference(b1, b2):
  """Plain-Python float64 loops over pairs: (IoU, GIoU, DIoU), each [N, M]."""
  n, m = len(b1), len(b2)
  iou = np.zeros((n, m))
  giou = np.zeros((n, m))
  diou = np.zeros((n, m))
  for i in range(n):
    for j in range(m):
      ax1, ay1, ax2, ay2 = map(float, b1[i])
      bx1, by1, bx2, by2 = map(float, b2[j])
      area_a = max(ax2 - ax1, 0.0) * max(ay2 - ay1, 0.0)
      area_b = max(bx2 - bx1, 0.0) * max(by2 - by1, 0.0)
      iw = max(min(ax2, bx2) - max(ax1, bx1), 0.0)
      ih = max(min(ay2, by2) - max(ay1, by1), 0.0)
      inter = iw * ih
      union = area_a + area_b - inter
      iou[i, j] = inter / union if union > 0 else 0.0
      cw = max(ax2, bx2) - min(ax1, bx1)
      ch = max(ay2, by2) - min(ay1, by1)
      enclose = max(cw, 0.0) * max(ch, 0.0)
      giou[i, j] = iou[i, j] - ((enclose - union) / enclose if enclose > 0 else 0.0)
      diag = cw * cw + ch * ch
      rho = ((ax1 + ax2) / 2 - (bx1 + bx2) / 2) ** 2 + ((ay1 + ay2) / 2 - (by1 + by2) / 2) ** 2
      diou[i, j] = iou[i, j] - (rho / diag if diag > 0 else 0.0)
  return iou, giou, diou


def diou_reference(b1, b2):
  """Vectorised float64 DIoU from the definition: [N, 4], [M, 4] boxes of positive size -> [N, M].

  ``IoU - rho^2 / c^2`` with centres ``(x1 + x2) / 2`` (exact enough in float64) and no epsilon.
  """
  a = np.asarray(b1, np.float64)[:, None, :]
  b = np.asarray(b2, np.float64)[None, :, :]
  area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
  area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
  iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
  ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
  inter = iw * ih
  iou = inter / (area_a + area_b - inter)
  cw = np.maximum(a[..., 2], b[..., 2]) - np.minimum(a[..., 0], b[..., 0])
  ch = np.maximum(a[..., 3], b[..., 3]) - np.minimum(a[..., 1], b[..., 1])
  rho_sq = (((a[..., 0] + a[..., 2]) - (b[..., 0] + b[..., 2])) / 2) ** 2 + (
      ((a[..., 1] + a[..., 3]) - (b[..., 1] + b[..., 3])) / 2) ** 2
  return iou - rho_sq / (cw**2 + ch**2)


def torch_iou(b1, b2):
  """Vectorised PyTorch IoU written from the definition (float64)."""
  b1 = torch.as_tensor(b1, dtype=torch.float64)
  b2 = torch.as_tensor(b2, dtype=torch.float64)
  area1 = (b1[:, 2] - b1[:, 0]).clamp(min=0) * (b1[:, 3] - b1[:, 1]).clamp(min=0)
  area2 = (b2[:, 2] - b2[:, 0]).clamp(min=0) * (b2[:, 3] - b2[:, 1]).clamp(min=0)
  lt = torch.maximum(b1[:, None, :2], b2[None, :, :2])
  rb = torch.minimum(b1[:, None, 2:], b2[None, :, 2:])
  wh = (rb - lt).clamp(min=0)
  inter = wh[..., 0] * wh[..., 1]
  union = area1[:, None] + area2[None, :] - inter
  return torch.where(union > 0, inter / torch.where(union > 0, union, torch.ones_like(union)), torch.zeros_like(union)).numpy()


def nwd_reference(b1, b2, c=32.0):
  out = np.zeros(len(b1))
  for i, (p, q) in enumerate(zip(b1, b2)):
    vp = [(p[0] + p[2]) / 2, (p[1] + p[3]) / 2, (p[2] - p[0]) / 2, (p[3] - p[1]) / 2]
    vq = [(q[0] + q[2]) / 2, (q[1] + q[3]) / 2, (q[2] - q[0]) / 2, (q[3] - q[1]) / 2]
    out[i] = math.exp(-math.sqrt(sum((a - b) ** 2 for a, b in zip(vp, vq))) / c)
  return out


def encode_reference(b, t, means, stds):
  out = np.zeros((len(b), 4))
  for i in range(len(b)):
    bw, bh = b[i, 2] - b[i, 0], b[i, 3] - b[i, 1]
    bx, by = b[i, 0] + 0.5 * bw, b[i, 1] + 0.5 * bh
    tw, th = t[i, 2] - t[i, 0], t[i, 3] - t[i, 1]
    tx, ty = t[i, 0] + 0.5 * tw, t[i, 1] + 0.5 * th
    d = [(tx - bx) / bw, (ty - by) / bh, math.log(tw / bw), math.log(th / bh)]
    out[i] = [(d[k] - means[k]) / stds[k] for k in range(4)]
  return out


def decode_reference(b, d, means, stds, clamp, image_size=None):
  out = np.zeros((len(b), 4))
  for i in range(len(b)):
    dx, dy, dw, dh = [d[i, k] * stds[k] + means[k] for k in range(4)]
    dw = min(max(dw, -clamp), clamp)
    dh = min(max(dh, -clamp), clamp)
    bw, bh = b[i, 2] - b[i, 0], b[i, 3] - b[i, 1]
    bx, by = b[i, 0] + 0.5 * bw, b[i, 1] + 0.5 * bh
    cx, cy, w, h = bx + dx * bw, by + dy * bh, bw * math.exp(dw), bh * math.exp(dh)
    box = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
    if image_size is not None:
      hgt, wid = image_size
      box = [min(max(box[0], 0), wid), min(max(box[1], 0), hgt), min(max(box[2], 0), wid), min(max(box[3], 0), hgt)]
    out[i] = box
  return out


# ----------------------------------------------------------------------------- cases

_iou_jit = jax.jit(box_ops.box_iou)
_giou_jit = jax.jit(box_ops.generalized_box_iou)
_diou_jit = jax.jit(box_ops.distance_box_iou)


def _edge_boxes():
  """Degenerate and outside-the-image boxes mixed into every random case."""
  return np.array(
      [
          [10, 10, 10, 10],  # zero area point
          [10, 10, 30, 10],  # zero height
          [-50, -40, -10, -5],  # entirely outside the image
          [0, 0, 20, 20],
          [0, 0, 20, 20],  # duplicate: IoU exactly 1
          [30, 30, 20, 20],  # inverted: treated as empty
          [5, 5, 15, 15],  # nested in [0, 0, 20, 20]
      ],
      dtype=np.float64,
  )


@pytest.mark.parametrize("seed", range(40))
def test_iou_giou_diou_match_float64_reference(seed, random_boxes):
  rng = np.random.default_rng(seed)
  n, m = (1, 24) if seed % 2 else (17, 9)  # two shape pairs: few compilations, many values
  b1 = np.concatenate([random_boxes(rng, n), _edge_boxes()])
  b2 = np.concatenate([_edge_boxes(), random_boxes(rng, m)])
  ref_iou, ref_giou, ref_diou = iou_giou_diou_reference(b1, b2)
  f1, f2 = jnp.asarray(b1, jnp.float32), jnp.asarray(b2, jnp.float32)
  np.testing.assert_allclose(np.asarray(_iou_jit(f1, f2)), ref_iou, atol=1e-5, rtol=0)
  np.testing.assert_allclose(np.asarray(_giou_jit(f1, f2)), ref_giou, atol=1e-5, rtol=0)
  np.testing.assert_allclose(np.asarray(_diou_jit(f1, f2)), ref_diou, atol=1e-5, rtol=0)
  np.testing.assert_allclose(np.asarray(box_ops.box_iou(f1, f2)), torch_iou(b1, b2), atol=1e-5, rtol=0)


def test_iou_hand_values():
  a = jnp.array([[0.0, 0.0, 10.0, 10.0]])
  b = jnp.array([[5.0, 0.0, 15.0, 10.0], [20.0, 20.0, 30.0, 30.0], [0.0, 0.0, 10.0, 10.0]])
  # Overlap 5x10 = 50, union 150 -> 1/3; disjoint -> 0; identical -> 1.
  np.testing.assert_allclose(box_ops.box_iou(a, b), [[1 / 3, 0.0, 1.0]], atol=1e-7)
  # GIoU of the disjoint pair: enclosing 30x30 = 900, union 200 -> 0 - 700/900.
  np.testing.assert_allclose(box_ops.generalized_box_iou(a, b)[0, 1], -700 / 900, atol=1e-7)
  # DIoU of the disjoint pair: centres (5,5),(25,25) -> rho^2 = 800; diagonal^2 = 1800.
  np.testing.assert_allclose(box_ops.distance_box_iou(a, b)[0, 1], -800 / 1800, atol=1e-7)


def test_iou_empty_inputs_and_vmap(random_boxes):
  empty = jnp.zeros((0, 4))
  some = jnp.asarray(random_boxes(np.random.default_rng(1), 3), jnp.float32)
  assert box_ops.box_iou(empty, some).shape == (0, 3)
  assert box_ops.generalized_box_iou(some, empty).shape == (3, 0)
  batch1 = jnp.asarray(np.stack([random_boxes(np.random.default_rng(i), 5) for i in range(3)]), jnp.float32)
  batch2 = jnp.asarray(np.stack([random_boxes(np.random.default_rng(9 + i), 4) for i in range(3)]), jnp.float32)
  batched = jax.vmap(box_ops.box_iou)(batch1, batch2)
  for i in range(3):
    np.testing.assert_allclose(batched[i], iou_giou_diou_reference(np.asarray(batch1[i]), np.asarray(batch2[i]))[0], atol=1e-5)


@pytest.mark.parametrize("seed", range(10))
def test_nwd_matches_reference(seed, random_boxes):
  rng = np.random.default_rng(seed)
  b1 = random_boxes(rng, 50, max_coord=500, min_size=1, max_size=80)
  b2 = b1 + rng.normal(0, 5, size=b1.shape) * (rng.uniform(size=(50, 1)) > 0.2)  # some identical
  got = jax.jit(box_ops.normalized_wasserstein_distance)(jnp.asarray(b1, jnp.float32), jnp.asarray(b2, jnp.float32))
  # Inputs are rounded to float32 first so the comparison measures the op, not the input rounding.
  ref = nwd_reference(b1.astype(np.float32).astype(np.float64), b2.astype(np.float32).astype(np.float64))
  np.testing.assert_allclose(np.asarray(got), ref, atol=1e-5, rtol=0)


def test_nwd_hand_values_and_half_sizes():
  a = jnp.array([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0], [3.0, 4.0, 9.0, 8.0]])
  b = jnp.array([[2.0, 0.0, 12.0, 10.0], [0.0, 0.0, 20.0, 10.0], [3.0, 4.0, 9.0, 8.0]])
  # Shift by 2: W2 = 2. Widening 10 -> 20 from the left edge: centre moves 5 and HALF width moves 5,
  # so W2 = sqrt(50) (with full widths it would be sqrt(125)). Identical boxes: NWD = 1.
  expected = [math.exp(-2 / 32), math.exp(-math.sqrt(50) / 32), 1.0]
  np.testing.assert_allclose(box_ops.normalized_wasserstein_distance(a, b), expected, rtol=1e-6)
  np.testing.assert_allclose(
      box_ops.normalized_wasserstein_distance(a[:1], b[:1], constant=2.0), [math.exp(-1.0)], rtol=1e-6
  )


def test_nwd_gradient_finite_at_identical_boxes_and_matches_float64():
  box = jnp.array([[3.0, 4.0, 9.0, 8.0]])
  grad = jax.grad(lambda x: box_ops.normalized_wasserstein_distance(x, box).sum())(box)
  assert np.all(np.isfinite(np.asarray(grad)))
  np.testing.assert_array_equal(np.asarray(grad), 0.0)
  # Away from the origin the gradient equals the float64 finite difference.
  other = np.array([[1.0, 2.0, 12.0, 9.0]])
  fn = lambda x: nwd_reference(x, np.asarray(box, np.float64))[0]
  numeric = np.zeros(4)
  for k in range(4):
    step = np.zeros((1, 4))
    step[0, k] = 1e-5
    numeric[k] = (fn(other + step) - fn(other - step)) / 2e-5
  analytic = jax.grad(lambda x: box_ops.normalized_wasserstein_distance(x, box).sum())(jnp.asarray(other, jnp.float32))
  np.testing.assert_allclose(np.asarray(analytic)[0], numeric, atol=1e-6)


@pytest.mark.parametrize("means,stds", [((0, 0, 0, 0), (1, 1, 1, 1)), ((0.1, -0.2, 0.05, 0.0), (0.1, 0.1, 0.2, 0.2))])
@pytest.mark.parametrize("seed", range(5))
def test_coder_matches_reference_and_round_trips(seed, means, stds, random_boxes):
  rng = np.random.default_rng(seed)
  # Anchors and ground truth of lesion-like sizes, coordinates within a 64-px window so float32
  # resolution (4e-6 at 64) leaves room for the 1e-5 bound; larger coordinates are checked
  # relatively below.
  anchors = random_boxes(rng, 200, max_coord=40, min_size=2, max_size=24)
  # Targets near their anchors, as matched ground truth is (IoU >= ~0.3): normalised deltas of a
  # few units, where float32 resolution is ~1e-7.
  targets = anchors + rng.uniform(-0.3, 0.3, size=(200, 4)) * (anchors[:, 2:] - anchors[:, :2]).repeat(2, axis=1)
  targets[:, 2:] = np.maximum(targets[:, 2:], targets[:, :2] + 1.0)
  anchors32 = anchors.astype(np.float32).astype(np.float64)
  targets32 = targets.astype(np.float32).astype(np.float64)
  deltas = box_ops.encode_deltas(jnp.asarray(anchors32, jnp.float32), jnp.asarray(targets32, jnp.float32), means, stds)
  ref_deltas = encode_reference(anchors32, targets32, means, stds)
  assert np.max(np.abs(np.asarray(deltas) - ref_deltas)) <= 1e-5

  clamp = box_ops.DEFAULT_SCALE_CLAMP
  decoded = box_ops.decode_deltas(jnp.asarray(anchors32, jnp.float32), deltas, means, stds)
  np.testing.assert_allclose(np.asarray(decoded), targets32, atol=1e-5, rtol=0)  # round trip
  random_deltas = rng.normal(0, 0.5, size=(200, 4)).astype(np.float32).astype(np.float64)
  decoded = jax.jit(lambda a, d: box_ops.decode_deltas(a, d, means, stds))(
      jnp.asarray(anchors32, jnp.float32), jnp.asarray(random_deltas, jnp.float32)
  )
  ref = decode_reference(anchors32, random_deltas, means, stds, clamp)
  assert np.max(np.abs(np.asarray(decoded) - ref)) <= 1e-5


def test_decode_large_coordinates_relative_clamp_and_clip(random_boxes):
  rng = np.random.default_rng(3)
  anchors = random_boxes(rng, 300, max_coord=1000, min_size=4, max_size=300).astype(np.float32).astype(np.float64)
  deltas = rng.normal(0, 1.0, size=(300, 4))
  deltas[:10, 2:] = 50.0  # far beyond the clamp
  deltas[10:20, 2:] = -50.0
  deltas = deltas.astype(np.float32).astype(np.float64)
  clamp = box_ops.DEFAULT_SCALE_CLAMP
  got = box_ops.decode_deltas(jnp.asarray(anchors, jnp.float32), jnp.asarray(deltas, jnp.float32), image_size=(800, 1000))
  ref = decode_reference(anchors, deltas, (0, 0, 0, 0), (1, 1, 1, 1), clamp, image_size=(800, 1000))
  np.testing.assert_allclose(np.asarray(got), ref, rtol=2e-6, atol=1e-4)
  assert np.all(np.asarray(got)[:, [0, 2]] <= 1000) and np.all(np.asarray(got)[:, [1, 3]] <= 800)
  # Hand value: a 10x10 box at the origin, dw = log(2): width doubles about the same centre.
  one = box_ops.decode_deltas(jnp.array([[0.0, 0.0, 10.0, 10.0]]), jnp.array([[0.1, 0.0, math.log(2.0), 0.0]]))
  np.testing.assert_allclose(one, [[-4.0, 0.0, 16.0, 10.0]], atol=1e-5)


def test_format_conversions_clip_and_area():
  xyxy = jnp.array([[1.0, 2.0, 5.0, 10.0], [-3.0, -1.0, 3.0, 1.0]])
  cxcywh = box_ops.xyxy_to_cxcywh(xyxy)
  np.testing.assert_allclose(cxcywh, [[3.0, 6.0, 4.0, 8.0], [0.0, 0.0, 6.0, 2.0]])
  np.testing.assert_allclose(box_ops.cxcywh_to_xyxy(cxcywh), xyxy)
  np.testing.assert_allclose(box_ops.box_area(xyxy), [32.0, 12.0])
  np.testing.assert_allclose(box_ops.box_area(jnp.array([[5.0, 5.0, 1.0, 9.0]])), [0.0])
  np.testing.assert_allclose(box_ops.clip_boxes(xyxy, (8, 4)), [[1.0, 2.0, 4.0, 8.0], [0.0, 0.0, 3.0, 1.0]])


@pytest.mark.parametrize(
    "call,arg",
    [
        (lambda: box_ops.box_iou(jnp.zeros((3, 5)), jnp.zeros((2, 4))), "boxes1"),
        (lambda: box_ops.box_iou(jnp.zeros((3, 4)), jnp.zeros((4,))), "boxes2"),
        (lambda: box_ops.generalized_box_iou(jnp.zeros((2, 3, 4)), jnp.zeros((2, 4))), "boxes1"),
        (lambda: box_ops.normalized_wasserstein_distance(jnp.zeros((3, 4)), jnp.zeros((3, 2))), "boxes2"),
        (lambda: box_ops.encode_deltas(jnp.zeros((3, 3)), jnp.zeros((3, 4))), "boxes"),
        (lambda: box_ops.decode_deltas(jnp.zeros((3, 4)), jnp.zeros((3, 2))), "deltas"),
    ],
)
def test_wrong_shapes_raise_naming_the_argument(call, arg):
  with pytest.raises(ValueError, match=f"'{arg}' must have shape"):
    call()


def test_shape_error_raised_at_trace_time_under_jit():
  with pytest.raises(ValueError, match=r"'boxes1' must have shape \[N, 4\]"):
    jax.jit(box_ops.box_iou)(jnp.zeros((3, 5)), jnp.zeros((2, 4)))


# ----------------------------------------------------------------------------- DIoU vs torchvision


def _boxes_around(rng, n, origin, size):
  """[n, 4] float32 boxes with sides in [size / 10, size] and corners within 2 * size of origin."""
  xy = origin + rng.uniform(-2 * size, 2 * size, size=(n, 2))
  wh = rng.uniform(size / 10, size, size=(n, 2))
  return np.concatenate([xy, xy + wh], axis=1).astype(np.float32)


# float32 DIoU error bound: a few roundings of values in [-1, 1], each 2**-24 = 6e-8 at most.
DIOU_ATOL = 6e-7


@pytest.mark.parametrize("origin,size", [
    (1000.0, 0.5),  # sub-pixel, far from the origin: centre subtraction cancels
    (300.0, 0.2),
    (10.0, 0.5),
    (0.0, 0.5),  # straddling 0
    (400.0, 100.0),  # lesion-sized
    (0.0, 50.0),
])
def test_distance_box_iou_matches_float64_and_torchvision(tv, origin, size):
  rng = np.random.default_rng(int(origin) + int(100 * size))
  b1, b2 = _boxes_around(rng, 48, origin, size), _boxes_around(rng, 40, origin, size)
  ours = np.asarray(_diou_jit(jnp.asarray(b1), jnp.asarray(b2)), np.float64)
  # torchvision in float64 on the same (float32) values, eps=0, is the exact formula.
  exact = tv.ops.distance_box_iou(torch.from_numpy(b1).double(), torch.from_numpy(b2).double(), eps=0.0).numpy()
  np.testing.assert_allclose(diou_reference(b1, b2), exact, atol=1e-12, rtol=0)
  assert np.max(np.abs(ours - exact)) <= DIOU_ATOL
  # torchvision's own float32 call (centres (x1 + x2) / 2, c^2 + 1e-7).
  tv32 = tv.ops.distance_box_iou(torch.from_numpy(b1), torch.from_numpy(b2)).double().numpy()
  if size >= 10:  # eps / c^2 < 1e-9, and both are a few float32 roundings off the exact value
    assert np.max(np.abs(ours - tv32)) <= 1e-6
  if origin >= 1000:  # its centre subtraction loses ~1e-4 here; ours does not
    assert np.max(np.abs(tv32 - exact)) > 1e-5


def test_torchvision_diou_eps_changes_the_penalty_by_eps_over_c_squared(tv):
  # torchvision adds eps = 1e-7 to c^2: the penalty p = rho^2 / c^2 drops by p * eps / (c^2 + eps),
  # above float32 resolution (6e-8) for c below ~1 px and below 1e-9 for c >= 10 px.
  rng = np.random.default_rng(5)
  b1 = np.concatenate([_boxes_around(rng, 30, 50.0, s) for s in (0.05, 0.3, 1.0, 10.0, 60.0)]).astype(np.float64)
  b2 = b1 + rng.normal(0, 1, size=b1.shape) * (b1[:, 2:] - b1[:, :2]).repeat(2, axis=1) / 4
  b2[:, 2:] = np.maximum(b2[:, 2:], b2[:, :2] + 1e-3)
  t1, t2 = torch.from_numpy(b1), torch.from_numpy(b2)
  diff = (tv.ops.distance_box_iou(t1, t2) - tv.ops.distance_box_iou(t1, t2, eps=0.0)).numpy()
  c_sq = ((np.maximum(b1[:, None, 2:], b2[None, :, 2:]) - np.minimum(b1[:, None, :2], b2[None, :, :2])) ** 2).sum(-1)
  rho_sq = (((b1[:, None, :2] + b1[:, None, 2:]) - (b2[None, :, :2] + b2[None, :, 2:])) / 2) ** 2
  penalty = rho_sq.sum(-1) / c_sq
  np.testing.assert_allclose(diff, penalty * 1e-7 / (c_sq + 1e-7), rtol=1e-6, atol=1e-15)
  assert diff[c_sq < 1.0].max() > 6e-8
  assert diff[c_sq >= 100.0].max() < 1e-9
