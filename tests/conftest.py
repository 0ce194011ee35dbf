"""Shared pytest fixtures and settings."""

import os
import shutil
import tempfile

# Tests run on CPU; keep XLA from grabbing every core for its own thread pool per compile.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

# One persistent XLA compilation cache for the whole run: many tests (and the commands they
# start) compile the same tiny-model programs. The pytest process that loads this first (the
# xdist controller, or a plain run) makes the folder; xdist workers and subprocesses inherit it
# through the environment, and JAX reads it before anything compiles (a cache folder set after
# a process's first compile is never used). The controller deletes it at the end.
_CACHE_VARIABLE = "ACNE_JAX_TEST_JAX_CACHE"
_OWNS_CACHE = _CACHE_VARIABLE not in os.environ
if _OWNS_CACHE:
  os.environ[_CACHE_VARIABLE] = tempfile.mkdtemp(prefix="acne_jax_test_jax_cache_")
os.environ["JAX_COMPILATION_CACHE_DIR"] = os.environ[_CACHE_VARIABLE]


# The test command distributes whole files (--dist loadfile) in collection order (xdist's
# reordering by number of tests is turned off in pytest_configure): the longest files go first, so that no long file
# starts late and leaves the other worker idle at the end. Seconds of each file with two busy
# workers, as last profiled (2026-12-01, 2 cores); a file not named keeps its place after these.
LONGEST_FILES_FIRST = (
    "tests/test_readme.py",  # 567
    "tests/test_train.py",  # 221 before its resume runs moved to test_preemption.py
    "tests/test_preemption.py",  # ~90
    "tests/test_parallel.py",  # ~180
    "tests/test_reproduce_sadh.py",  # 175
    "tests/interop/test_torch_checkpoints.py",  # 160
    "tests/test_acne04_whole_images.py",  # ~80
    "tests/models/test_yolo_train.py",  # ~75
    "tests/test_darknet_weights.py",  # ~60
    "tests/models/test_cpm.py",  # 115
    "tests/models/test_detector.py",  # 115
    "tests/ops/test_roi_align.py",  # 105
    "tests/ops/test_nms.py",  # 89
    "tests/models/test_rpn.py",  # 52
    "tests/interop/test_torchvision_parity.py",  # 44
)


def pytest_configure(config):
  if hasattr(config.option, "loadscopereorder"):  # xdist's --no-loadscope-reorder
    config.option.loadscopereorder = False


def pytest_collection_modifyitems(session, config, items):
  rank = {name: i for i, name in enumerate(LONGEST_FILES_FIRST)}
  items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))  # stable: the rest keep their order


def pytest_unconfigure(config):
  if _OWNS_CACHE:
    shutil.rmtree(os.environ.pop(_CACHE_VARIABLE), ignore_errors=True)

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
