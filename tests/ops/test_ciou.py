"""``boxes.ciou`` and ``losses.ciou_loss`` against a float64 NumPy restatement of Zheng et al.'s
CIoU (AAAI 2020, eq. 9-11) on random and special box pairs, eagerly and under jit, with finite
gradients everywhere and ``alpha`` held constant in back-propagation."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from acne_jax.ops import boxes as box_ops
from acne_jax.ops import losses


def ciou_reference(b1, b2, frozen_alpha=None, return_alpha=False):
  """Float64 CIoU of box pairs ``[N, 4]``, ``[N, 4]`` -> ``[N]``, written from the paper.

  ``IoU - rho^2 / c^2 - alpha v``, ``v = 4 / pi^2 (atan(w_gt / h_gt) - atan(w / h))^2``,
  ``alpha = v / ((1 - IoU) + v)``. ``atan(w / 0) = pi / 2``; an empty box (0 x 0) has angle 0 and
  the 0 / 0 ratios (empty union, empty enclosing box, ``alpha`` with ``IoU = 1, v = 0``) are 0.
  With ``frozen_alpha`` ([N]) that value replaces ``alpha`` (for the gradient check); with
  ``return_alpha`` the ``alpha`` of each pair is returned too.
  """
  b1 = np.asarray(b1, np.float64)
  b2 = np.asarray(b2, np.float64)
  out = np.zeros(len(b1))
  alphas = np.zeros(len(b1))
  for i, ((ax1, ay1, ax2, ay2), (bx1, by1, bx2, by2)) in enumerate(zip(b1, b2)):
    wa, ha = max(ax2 - ax1, 0.0), max(ay2 - ay1, 0.0)
    wb, hb = max(bx2 - bx1, 0.0), max(by2 - by1, 0.0)
    inter = max(min(ax2, bx2) - max(ax1, bx1), 0.0) * max(min(ay2, by2) - max(ay1, by1), 0.0)
    union = wa * ha + wb * hb - inter
    iou = inter / union if union > 0 else 0.0
    cw = max(ax2, bx2) - min(ax1, bx1)
    ch = max(ay2, by2) - min(ay1, by1)
    c_sq = cw * cw + ch * ch
    rho_sq = ((ax1 + ax2) / 2 - (bx1 + bx2) / 2) ** 2 + ((ay1 + ay2) / 2 - (by1 + by2) / 2) ** 2

    def angle(w, h):
      if w == 0 and h == 0:
        return 0.0
      return math.pi / 2 if h == 0 else math.atan(w / h)

    v = 4.0 / math.pi**2 * (angle(wb, hb) - angle(wa, ha)) ** 2
    alpha = v / ((1.0 - iou) + v) if (1.0 - iou) + v > 0 else 0.0
    alphas[i] = alpha
    if frozen_alpha is not None:
      alpha = frozen_alpha[i]
    out[i] = iou - (rho_sq / c_sq if c_sq > 0 else 0.0) - alpha * v
  return (out, alphas) if return_alpha else out


def special_pairs():
  """(name, box1, box2) pairs the random draw rarely hits."""
  return [
      ("identical", [3.0, 4.0, 13.0, 24.0], [3.0, 4.0, 13.0, 24.0]),
      ("identical_far", [1000.25, 2000.5, 1010.75, 2003.0], [1000.25, 2000.5, 1010.75, 2003.0]),
      ("disjoint", [0.0, 0.0, 10.0, 10.0], [20.0, 30.0, 25.0, 60.0]),
      ("touching", [0.0, 0.0, 10.0, 10.0], [10.0, 0.0, 20.0, 10.0]),
      ("nested_concentric", [0.0, 0.0, 40.0, 40.0], [10.0, 10.0, 30.0, 30.0]),
      ("nested_offset", [0.0, 0.0, 40.0, 20.0], [1.0, 2.0, 9.0, 18.0]),
      ("same_centre_other_shape", [0.0, 10.0, 40.0, 30.0], [10.0, 0.0, 30.0, 40.0]),
      ("thin_horizontal", [0.0, 5.0, 30.0, 5.001], [2.0, 0.0, 12.0, 10.0]),
      ("thin_vertical", [5.0, 0.0, 5.0005, 30.0], [0.0, 0.0, 10.0, 10.0]),
      ("zero_height", [0.0, 5.0, 30.0, 5.0], [2.0, 0.0, 12.0, 10.0]),
      ("zero_width_both", [4.0, 0.0, 4.0, 8.0], [6.0, 1.0, 6.0, 3.0]),
      ("point_and_box", [5.0, 5.0, 5.0, 5.0], [0.0, 0.0, 10.0, 10.0]),
      ("point_point_same", [5.0, 5.0, 5.0, 5.0], [5.0, 5.0, 5.0, 5.0]),
      ("point_point_apart", [5.0, 5.0, 5.0, 5.0], [8.0, 9.0, 8.0, 9.0]),
      ("inverted", [10.0, 10.0, 0.0, 0.0], [0.0, 0.0, 10.0, 10.0]),
  ]


def random_pairs(rng, n):
  """Boxes of 0.5-60 px at -20..120, half of them overlapping their partner."""
  xy = rng.uniform(-20.0, 120.0, size=(n, 2))
  wh = rng.uniform(0.5, 60.0, size=(n, 2))
  b1 = np.concatenate([xy, xy + wh], axis=1)
  shift = np.where(rng.uniform(size=(n, 1)) < 0.5, rng.normal(scale=5.0, size=(n, 2)), rng.uniform(-80, 80, size=(n, 2)))
  wh2 = wh * rng.uniform(0.3, 3.0, size=(n, 2))
  b2 = np.concatenate([xy + shift, xy + shift + wh2], axis=1)
  return b1, b2


def all_pairs(rng):
  special = special_pairs()
  b1, b2 = random_pairs(rng, 400)
  b1 = np.concatenate([b1, np.asarray([p[1] for p in special])])
  b2 = np.concatenate([b2, np.asarray([p[2] for p in special])])
  return b1.astype(np.float32), b2.astype(np.float32)


@pytest.mark.parametrize("jit", [False, True])
def test_ciou_matches_float64_reference(rng, jit):
  b1, b2 = all_pairs(rng)
  fn = jax.jit(box_ops.ciou) if jit else box_ops.ciou
  got = np.asarray(fn(jnp.asarray(b1), jnp.asarray(b2)))
  # The reference reads the float32 inputs exactly, so only the op's float32 rounding differs.
  want = ciou_reference(b1, b2)
  np.testing.assert_allclose(got, want, rtol=0, atol=2e-6)
  # Symmetric in its arguments.
  np.testing.assert_allclose(np.asarray(fn(jnp.asarray(b2), jnp.asarray(b1))), want, rtol=0, atol=2e-6)


def test_ciou_special_values():
  names = [p[0] for p in special_pairs()]
  b1 = jnp.asarray([p[1] for p in special_pairs()], jnp.float32)
  b2 = jnp.asarray([p[2] for p in special_pairs()], jnp.float32)
  value = dict(zip(names, np.asarray(box_ops.ciou(b1, b2))))
  assert value["identical"] == 1.0 and value["identical_far"] == 1.0
  # Disjoint boxes: IoU 0, so CIoU = -rho^2/c^2 - v^2 / (1 + v) < 0.
  assert value["disjoint"] < 0 and value["touching"] < 0
  # Concentric boxes of one shape: rho = 0 and v = 0, so CIoU is the IoU (400 / 1600).
  assert value["nested_concentric"] == pytest.approx(0.25, abs=1e-7)
  # Same centre, IoU 400 / 1200, aspects 2:1 and 1:2: v = 4/pi^2 (atan 2 - atan 0.5)^2.
  v = 4 / math.pi**2 * (math.atan(2.0) - math.atan(0.5)) ** 2
  assert value["same_centre_other_shape"] == pytest.approx(1 / 3 - v * v / (2 / 3 + v), abs=1e-6)
  # Two empty boxes at one point: everything is 0 / 0 and defined as 0.
  assert value["point_point_same"] == 0.0
  assert np.isfinite(list(value.values())).all()


def test_ciou_broadcasts_and_checks_shapes():
  pred = jnp.asarray(np.random.default_rng(1).uniform(0, 50, size=(2, 3, 4)), jnp.float32).sort(axis=-1)
  target = jnp.asarray([0.0, 0.0, 20.0, 30.0])
  assert box_ops.ciou(pred, target).shape == (2, 3)
  with pytest.raises(ValueError, match="ciou: argument 'boxes1' must have shape"):
    box_ops.ciou(jnp.zeros((3, 5)), jnp.zeros((3, 4)))


def test_ciou_gradient_finite_everywhere_and_alpha_constant(rng):
  b1, b2 = all_pairs(rng)
  grad_fn = jax.jit(jax.grad(lambda a, b: jnp.sum(box_ops.ciou(a, b)), argnums=(0, 1)))
  g1, g2 = grad_fn(jnp.asarray(b1), jnp.asarray(b2))
  assert np.isfinite(np.asarray(g1)).all() and np.isfinite(np.asarray(g2)).all()
  loss_grad = jax.grad(lambda a: losses.ciou_loss(a, jnp.asarray(b2), reduction="sum"))(jnp.asarray(b1))
  assert np.isfinite(np.asarray(loss_grad)).all()

  # On pairs away from the kinks of min/max (random, well-separated corners), the float64 gradient
  # is the central difference of the reference with alpha frozen at its value: alpha carries none.
  n = 400
  with jax.enable_x64(True):
    a = jnp.asarray(b1[:n], jnp.float64)
    b = jnp.asarray(b2[:n], jnp.float64)
    got = np.asarray(jax.grad(lambda x: jnp.sum(box_ops.ciou(x, b)))(a))
  _, alpha = ciou_reference(b1[:n], b2[:n], return_alpha=True)
  step = 1e-6
  numeric = np.zeros((n, 4))
  for k in range(4):
    plus, minus = np.asarray(a).copy(), np.asarray(a).copy()
    plus[:, k] += step
    minus[:, k] -= step
    numeric[:, k] = (ciou_reference(plus, b2[:n], alpha) - ciou_reference(minus, b2[:n], alpha)) / (2 * step)
  np.testing.assert_allclose(got, numeric, rtol=1e-5, atol=1e-7)
  # With alpha differentiated too the gradient would differ measurably on these pairs.
  full = np.zeros((n, 4))
  for k in range(4):
    plus, minus = np.asarray(a).copy(), np.asarray(a).copy()
    plus[:, k] += step
    minus[:, k] -= step
    full[:, k] = (ciou_reference(plus, b2[:n]) - ciou_reference(minus, b2[:n])) / (2 * step)
  assert np.max(np.abs(full - numeric)) > 1e-4


def test_ciou_loss_reduces_with_weights():
  pred = jnp.asarray([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 20.0], [5.0, 5.0, 8.0, 9.0]])
  target = jnp.asarray([[0.0, 0.0, 10.0, 10.0], [2.0, 1.0, 12.0, 11.0], [0.0, 0.0, 4.0, 4.0]])
  per_box = 1.0 - ciou_reference(np.asarray(pred), np.asarray(target))
  np.testing.assert_allclose(losses.ciou_loss(pred, target, reduction="none"), per_box, atol=2e-6)
  weights = jnp.asarray([1.0, 0.5, 0.0])
  np.testing.assert_allclose(losses.ciou_loss(pred, target, weights, reduction="sum"), per_box[0] + 0.5 * per_box[1], atol=2e-6)
  np.testing.assert_allclose(losses.ciou_loss(pred, target, weights, avg_factor=2.0), (per_box[0] + 0.5 * per_box[1]) / 2,
                             atol=2e-6)
  with pytest.raises(ValueError, match="ciou_loss"):
    losses.ciou_loss(pred, target[:2])
