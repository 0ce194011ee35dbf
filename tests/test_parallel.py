"""Data parallelism: the compiled 8-device programs move no activation between devices, and the
same run on 8 (simulated) devices in two processes gives the losses of one device.

Device counts are fixed when JAX starts, so those runs happen in subprocesses
(``XLA_FLAGS=--xla_force_host_platform_device_count=N``). The cross-device operations are read
from the compiled HLO (``acne_jax.training.parallel.collectives``).
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


def test_a_single_process_joins_nothing_and_half_a_launch_is_refused(monkeypatch):
  from acne_jax.training import distributed

  for name in (*distributed.ENVIRONMENT, "SLURM_NTASKS", "SLURM_PROCID"):
    monkeypatch.delenv(name, raising=False)
  assert distributed.initialize() is False  # no flags, no environment, no SLURM
  assert distributed.initialize("localhost:1", 1, 0) is False  # one process: nothing to join
  with pytest.raises(ValueError, match="--num_processes and --process_id"):
    distributed.initialize("localhost:1")
  monkeypatch.setenv("ACNE_JAX_PROCESS_ID", "1")
  with pytest.raises(ValueError, match="ACNE_JAX_COORDINATOR_ADDRESS"):
    distributed.initialize()


@pytest.fixture(scope="module")
def one_device_run(data_dir, tmp_path_factory):
  """The reference: the run on one device in this process (it also builds the data set)."""
  single = str(tmp_path_factory.mktemp("one_device") / "run")
  train.train_and_evaluate(tiny_config(data_dir, batch_size=8, steps=3, checkpoint_every=3), single, show_progress=False)
  return single


def test_the_eight_device_programs_move_no_activation(data_dir, tmp_path):
  """The train step and the batch prediction compiled for 8 devices, read from their HLO: in the
  train step, only the gradients (one sum per parameter, combined or not) and the loss
  normalisers' counts cross devices; in prediction, nothing. No gather of any activation."""
  out = str(tmp_path / "collectives.json")
  script = textwrap.dedent(f"""
      import json, sys
      import jax
      assert jax.device_count() == 8, jax.devices()
      import jax.numpy as jnp
      import optax
      sys.path.insert(0, {os.path.join(ROOT, 'tests')!r})
      from test_train import tiny_config
      from acne_jax import train
      from acne_jax.models.detector import TwoStageDetector, spec_from_config
      from acne_jax.training import optim, parallel

      # As train_and_evaluate builds them (functions, shardings, donation), lowered from shapes; the
      # optimiser has no frozen-backbone mask, so that every parameter's gradient must be reduced.
      config = tiny_config({data_dir!r}, batch_size=8)
      mesh = parallel.make_mesh()
      replicated, batch_sharded = parallel.replicated(mesh), parallel.batch_sharded(mesh)
      spec = spec_from_config(config.model)
      model = TwoStageDetector(spec, train=True)
      key = jax.random.key(0)
      abstract = jax.eval_shape(lambda k: train.create_state(model, optax.identity(), k, (96, 96), 8, 8), key)
      tx, schedule = optim.make_optimizer(train.optimizer_config(config, 10), abstract["params"], None)
      state = jax.eval_shape(lambda k: train.create_state(model, tx, k, (96, 96), 8, 8), key)
      batch = {{"image": jax.ShapeDtypeStruct((8, 96, 96, 3), jnp.uint8), "boxes": jax.ShapeDtypeStruct((8, 8, 4), jnp.float32),
               "labels": jax.ShapeDtypeStruct((8, 8), jnp.int32), "valid": jax.ShapeDtypeStruct((8, 8), bool)}}
      step = jax.jit(train.make_train_step(model, tx, schedule, config.data.mean, config.data.std, False, mesh),
                     in_shardings=(replicated, batch_sharded, replicated), out_shardings=(replicated, replicated), donate_argnums=0)
      predict = jax.jit(train.make_predict(TwoStageDetector(spec, train=False), config.data.mean, config.data.std, mesh),
                        in_shardings=(replicated, batch_sharded))
      variables = {{"params": state["params"], "batch_stats": state["batch_stats"]}}
      programs = {{"train_step": step.lower(state, batch, key), "predict": predict.lower(variables, batch["image"])}}
      found = {{name: parallel.collectives(p.compile().as_text()) for name, p in programs.items()}}
      found["parameters"] = sum(x.size for x in jax.tree_util.tree_leaves(state["params"]))
      with open({out!r}, "w") as f:
        json.dump(found, f)
  """)
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)
  result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
  assert result.returncode == 0, result.stderr[-3000:]
  with open(out) as f:
    found = json.load(f)
  kinds = {kind for program in ("train_step", "predict") for kind, _, _ in found[program]}
  assert kinds <= {"all-reduce"}, [(k, n, line[:160]) for p in ("train_step", "predict") for k, n, line in found[p] if k != "all-reduce"]
  assert found["predict"] == []
  # (Parameters whose gradient is a compile-time zero are not reduced: hence 0.99.)
  reduced = sum(n for _, n, _ in found["train_step"])
  assert 0.99 * found["parameters"] <= reduced <= found["parameters"] + 64, (reduced, found["parameters"])


def test_two_processes_of_four_devices_match_one_device(data_dir, one_device_run, tmp_path):
  """Two processes on this machine with four CPU devices each (8 in all, gloo collectives between
  the processes), joined through the environment as a launcher would: the losses of one device on
  the same global batch, and only the first process writes the run's files."""
  import socket

  with socket.socket() as probe:  # a free port for the coordinator
    probe.bind(("localhost", 0))
    port = probe.getsockname()[1]
  workdir = str(tmp_path / "two_processes")
  script = textwrap.dedent(f"""
      import sys
      sys.path.insert(0, {os.path.join(ROOT, 'tests')!r})
      from acne_jax.training import distributed
      assert distributed.initialize()
      import jax
      assert (jax.process_count(), jax.local_device_count(), jax.device_count()) == (2, 4, 8), jax.devices()
      from test_train import tiny_config
      from acne_jax import train
      train.train_and_evaluate(tiny_config({data_dir!r}, batch_size=8, steps=3, checkpoint_every=3), {workdir!r}, show_progress=False)
      print("process", jax.process_index(), "done", flush=True)
  """)
  processes = []
  for index in range(2):
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT, XLA_FLAGS="--xla_force_host_platform_device_count=4",
               ACNE_JAX_COORDINATOR_ADDRESS=f"localhost:{port}", ACNE_JAX_NUM_PROCESSES="2", ACNE_JAX_PROCESS_ID=str(index))
    processes.append(subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
  outputs = [p.communicate(timeout=900) for p in processes]
  for index, (p, (out, err)) in enumerate(zip(processes, outputs)):
    assert p.returncode == 0 and f"process {index} done" in out, f"process {index}:\n{err[-3000:]}"
  one, eight = read_losses(one_device_run), read_losses(workdir)
  assert sorted(one) == sorted(eight) == [1, 2, 3]  # one metrics file, written once
  for step in one:
    assert eight[step] == pytest.approx(one[step], rel=1e-4), (step, one, eight)
  with open(os.path.join(one_device_run, "metrics_test.json")) as f1, open(os.path.join(workdir, "metrics_test.json")) as f8:
    assert json.load(f8)["AP@0.5"] == pytest.approx(json.load(f1)["AP@0.5"], abs=0.02)
  assert "evaluation on" in outputs[0][0] and "evaluation on" not in outputs[1][0]
