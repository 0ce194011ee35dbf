"""Shared pytest fixtures and settings."""

import os

# Tests run on CPU; keep XLA from grabbing every core for its own thread pool per compile.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np
import pytest


@pytest.fixture(scope="session")
def tv():
  """torchvision with its C++ CPU kernels (acne_jax.testing.torchvision_cpu); skips, with the
  reason, where they cannot be loaded (no gcc)."""
  from acne_jax.testing.torchvision_cpu import TorchvisionUnavailable, import_torchvision

  try:
    return import_torchvision()
  except TorchvisionUnavailable as error:
    pytest.skip(str(error))


@pytest.fixture
def rng():
  """A seeded NumPy generator, fresh per test."""
  return np.random.default_rng(0)


@pytest.fixture
def random_boxes():
  """``make(rng, n, ...)`` -> ``[n, 4]`` float64 x1y1x2y2 boxes with sizes in [min_size, max_size]."""

  def make(rng, n, max_coord=100.0, min_size=0.0, max_size=50.0):
    xy = rng.uniform(-10.0, max_coord, size=(n, 2))
    wh = rng.uniform(min_size, max_size, size=(n, 2))
    return np.concatenate([xy, xy + wh], axis=1)

  return make
