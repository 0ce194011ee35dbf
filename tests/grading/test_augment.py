"""The paper's augmentation: five outcomes at 20 % each, each doing what it says, deterministic."""

import collections

import numpy as np
import pytest

from acne_jax.grading import augment as A


def _image(seed=0, size=(6, 8)):
  return np.random.default_rng(seed).integers(0, 256, size + (3,), dtype=np.uint8)


def test_five_outcomes_at_twenty_percent():
  rng = np.random.default_rng(0)
  image = _image(size=(4, 4))
  draws = 10_000
  counts = collections.Counter(A.augment_view(image, rng)[1] for _ in range(draws))
  assert set(counts) == set(A.OPERATIONS)
  for operation in A.OPERATIONS:
    assert abs(counts[operation] / draws - 0.2) < 0.015, counts  # binomial sd 0.004


def test_each_outcome_does_what_it_says():
  image = _image()
  seen = set()
  for seed in range(60):
    out, operation = A.augment_view(image, np.random.default_rng(seed))
    replay = np.random.default_rng(seed)
    assert A.OPERATIONS[int(replay.integers(5))] == operation
    assert out.dtype == np.uint8 and out.shape == image.shape
    if operation == "none":
      np.testing.assert_array_equal(out, image)
    elif operation == "vertical_flip":
      np.testing.assert_array_equal(out, image[::-1])
    elif operation == "horizontal_flip":
      np.testing.assert_array_equal(out, image[:, ::-1])
    elif operation == "rotation":
      angle = replay.uniform(-15, 15)
      assert -A.MAX_ANGLE <= angle <= A.MAX_ANGLE
      np.testing.assert_array_equal(out, A.rotate(image, angle))
    else:
      factor = replay.uniform(0.75, 1.25)
      np.testing.assert_array_equal(out, np.clip(np.round(image * factor), 0, 255).astype(np.uint8))
    seen.add(operation)
  assert seen == set(A.OPERATIONS)


def test_rotation():
  square = _image(1, (7, 7))
  np.testing.assert_array_equal(A.rotate(square, 0.0), square)
  np.testing.assert_array_equal(A.rotate(square, 90.0), np.rot90(square, 1))  # counter-clockwise
  np.testing.assert_array_equal(A.rotate(square, -90.0), np.rot90(square, -1))
  np.testing.assert_array_equal(A.rotate(_image(2, (6, 8)), 180.0), _image(2, (6, 8))[::-1, ::-1])
  # A bright spot right of the centre, turned 10 degrees counter-clockwise, moves up (y down).
  image = np.zeros((41, 41, 3), np.uint8)
  image[20, 30] = 200
  out = A.rotate(image, 10.0).astype(np.float64)[..., 0]
  ys, xs = np.mgrid[0:41, 0:41]
  centroid = np.array([(out * xs).sum(), (out * ys).sum()]) / out.sum()
  theta = np.deg2rad(10.0)
  np.testing.assert_allclose(centroid, [20 + 10 * np.cos(theta), 20 - 10 * np.sin(theta)], atol=0.02)
  # The image centre keeps its value; corners that come from outside are black.
  flat = np.full((21, 21, 3), 100, np.uint8)
  turned = A.rotate(flat, 45.0)
  assert (turned[10, 10] == 100).all() and (turned[0, 0] == 0).all() and (turned[10, 1:20] == 100).all()
  with pytest.raises(ValueError, match="uint8"):
    A.rotate(flat.astype(np.float32), 3.0)


def _rotate_reference(image, angle):
  """Pixel by pixel: the output pixel at offset (u, v) from the centre shows the input, bilinearly,
  at (u, v) turned back, with 0 outside."""
  h, w, c = image.shape
  t = np.deg2rad(angle)
  out = np.zeros(image.shape, np.float64)
  pixel = lambda y, x: image[y, x].astype(np.float64) if 0 <= y < h and 0 <= x < w else np.zeros(c)
  for y in range(h):
    for x in range(w):
      u, v = x - (w - 1) / 2, y - (h - 1) / 2
      sx = (w - 1) / 2 + u * np.cos(t) - v * np.sin(t)
      sy = (h - 1) / 2 + u * np.sin(t) + v * np.cos(t)
      x0, y0 = int(np.floor(sx)), int(np.floor(sy))
      ax, ay = sx - x0, sy - y0
      out[y, x] = ((1 - ay) * ((1 - ax) * pixel(y0, x0) + ax * pixel(y0, x0 + 1))
                   + ay * ((1 - ax) * pixel(y0 + 1, x0) + ax * pixel(y0 + 1, x0 + 1)))
  return np.clip(np.round(out), 0, 255)


@pytest.mark.parametrize("angle", [-14.2, 3.0, 37.5, 123.0])
def test_rotation_matches_a_pixel_by_pixel_reference(angle):
  image = _image(3, (9, 12))
  got = A.rotate(image, angle).astype(np.float64)
  assert np.abs(got - _rotate_reference(image, angle)).max() <= 1.0  # equal here; 1 allows a value at .5 rounding apart


def test_brightness():
  image = np.array([[[0, 100, 250]]], np.uint8)
  np.testing.assert_array_equal(A.change_brightness(image, 1.2), [[[0, 120, 255]]])  # clipped
  np.testing.assert_array_equal(A.change_brightness(image, 0.75), [[[0, 75, 188]]])  # 187.5 rounds to even
  np.testing.assert_array_equal(A.change_brightness(image, 1.0), image)
  with pytest.raises(ValueError, match="factor"):
    A.change_brightness(image, -1.0)


def test_views_deterministic_independent_and_input_untouched():
  batch = np.stack([np.stack([_image(s) for s in range(3)]) for _ in range(4)])  # [B=4, V=3, H, W, 3]
  before = batch.copy()
  a = A.augment_views(batch, np.random.default_rng(11))
  b = A.augment_views(batch, np.random.default_rng(11))
  np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(batch, before)
  assert a.shape == batch.shape and a.dtype == np.uint8
  # Row-major: the views draw in order, each its own outcome.
  rng = np.random.default_rng(11)
  expected = [A.augment_view(view, rng) for view in batch.reshape((-1,) + batch.shape[2:])]
  np.testing.assert_array_equal(a.reshape((-1,) + batch.shape[2:]), np.stack([e[0] for e in expected]))
  assert len({e[1] for e in expected}) > 1
  with pytest.raises(ValueError, match="uint8"):
    A.augment_views(batch.astype(np.float32), np.random.default_rng(0))
