"""Data parallelism: the same run on 8 (simulated) devices and on 1 gives the same losses.

The 8-device run happens in a subprocess because the device count is fixed when JAX starts
(``XLA_FLAGS=--xla_force_host_platform_device_count=8``).
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from acne_jax import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_train import read_losses, tiny_config  # noqa: E402


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("tfds_parallel"))


def test_eight_devices_match_one(data_dir, tmp_path):
  single = str(tmp_path / "one_device")
  train.train_and_evaluate(tiny_config(data_dir, batch_size=8, steps=3, checkpoint_every=3), single, show_progress=False)

  sharded = str(tmp_path / "eight_devices")
  script = textwrap.dedent(f"""
      import jax
      assert jax.device_count() == 8, jax.devices()
      import sys
      sys.path.insert(0, {os.path.join(ROOT, 'tests')!r})
      from test_train import tiny_config
      from acne_jax import train
      train.train_and_evaluate(tiny_config({data_dir!r}, batch_size=8, steps=3, checkpoint_every=3), {sharded!r}, show_progress=False)
  """)
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)
  result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
  assert result.returncode == 0, result.stderr[-3000:]

  one, eight = read_losses(single), read_losses(sharded)
  assert sorted(one) == sorted(eight) == [1, 2, 3]
  for step in one:
    assert eight[step] == pytest.approx(one[step], rel=1e-4), (step, one, eight)
  with open(os.path.join(single, "metrics_test.json")) as f1, open(os.path.join(sharded, "metrics_test.json")) as f8:
    m1, m8 = json.load(f1), json.load(f8)
  assert m8["AP@0.5"] == pytest.approx(m1["AP@0.5"], abs=0.02)
