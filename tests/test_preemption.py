"""Interrupted runs resume with the uninterrupted run's losses, bit for bit.

``python -m acne_jax.train`` runs as a user runs it, in subprocesses sharing one JAX compilation
cache (so that only the first compiles): one uninterrupted run, then one run stopped by SIGTERM
(a checkpoint of where it stood, exit 0, the resume command printed), killed twice with SIGKILL
at seeded random moments of its training loop, and resumed to the end.
"""

import json
import os
import random
import re
import signal
import subprocess
import sys
import textwrap
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 10


def logged(workdir):
  """Every ``(step, loss)`` line of ``metrics.jsonl`` (re-run steps appear once per run)."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  rows = []
  with open(path, encoding="utf-8") as f:
    for line in f:
      if line.endswith("\n"):  # the line a killed process was writing may be cut
        row = json.loads(line)
        if "loss" in row:
          rows.append((row["step"], row["loss"]))
  return rows


def wait_until(condition, process, timeout=240.0):
  deadline = time.monotonic() + timeout
  while not condition():
    assert process.poll() is None, process.communicate()[1][-3000:]
    assert time.monotonic() < deadline, "timed out"
    time.sleep(0.05)


def test_sigterm_and_two_sigkills_then_resume_give_the_uninterrupted_losses_bit_for_bit(tmp_path):
  config_path = tmp_path / "tiny_config.py"
  config_path.write_text(textwrap.dedent(f"""
      import sys
      sys.path.insert(0, {os.path.join(ROOT, 'tests')!r})
      from test_train import tiny_config

      def get_config():
        return tiny_config({str(tmp_path / 'tfds')!r}, steps={STEPS}, checkpoint_every=1, log_every=1)
  """))
  # The suite's compilation cache when there is one (tests/conftest.py), else one of our own.
  cache = os.environ.get("JAX_COMPILATION_CACHE_DIR") or str(tmp_path / "jax_cache")
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=cache,
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")

  def launch(workdir):
    return subprocess.Popen([sys.executable, "-m", "acne_jax.train", f"--config={config_path}", f"--workdir={workdir}"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

  straight = str(tmp_path / "straight")
  process = launch(straight)
  _, err = process.communicate(timeout=600)
  assert process.returncode == 0, err[-3000:]
  expected = dict(logged(straight))
  assert sorted(expected) == list(range(1, STEPS + 1))

  interrupted = str(tmp_path / "interrupted")
  process = launch(interrupted)
  wait_until(lambda: len(logged(interrupted)) >= 2, process)
  process.send_signal(signal.SIGTERM)
  out, err = process.communicate(timeout=240)
  assert process.returncode == 0, err[-3000:]
  stopped = re.search(r"SIGTERM received: stopped after checkpointing step (\d+) in (\S+); resume with: (.*)", out)
  assert stopped, out[-2000:]
  assert 2 <= int(stopped.group(1)) < STEPS
  assert stopped.group(3) == f"python -m acne_jax.train --config={config_path} --workdir={interrupted}"

  moments = random.Random(0)
  for _ in range(2):
    process = launch(interrupted)
    before = len(logged(interrupted))
    wait_until(lambda: len(logged(interrupted)) > before, process)  # inside the training loop
    time.sleep(moments.uniform(0.0, 0.6))
    process.kill()
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL

  process = launch(interrupted)
  _, err = process.communicate(timeout=600)
  assert process.returncode == 0, err[-3000:]
  resumed = logged(interrupted)
  assert {step for step, _ in resumed} == set(expected)
  assert len(resumed) > STEPS  # some steps ran again after a kill
  for step, loss in resumed:
    assert loss == expected[step], (step, loss, expected[step])
