"""Checkpoints that cannot be written or read are named, and the previous one stays usable."""

import errno
import gc
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from jax.sharding import SingleDeviceSharding

from acne_jax import train
from acne_jax.training.checkpoint import CheckpointError, Checkpointer


def _state(value):
  return {"params": {"w": jnp.full((3, 2), value, jnp.float32)}, "step": jnp.asarray(int(value), jnp.int32)}


def test_an_unreadable_newest_checkpoint_is_named_set_aside_and_the_previous_restored(tmp_path, capsys):
  directory = str(tmp_path / "checkpoints")
  saver = Checkpointer(directory)
  for step in (2, 4, 6):
    saver.save(step, _state(step), {"step": step})
  saver.close()
  # Step 6 looks complete but lost its array data (a partial copy of the workdir, a failing disk).
  shutil.rmtree(os.path.join(directory, "6", "state", "ocdbt.process_0"))
  shutil.rmtree(os.path.join(directory, "6", "state", "d"))

  reader = Checkpointer(directory)
  state, meta, step = reader.restore(_state(0))
  reader.close()
  assert step == 4 and meta == {"step": 4}
  np.testing.assert_array_equal(np.asarray(state["params"]["w"]), np.full((3, 2), 4.0))
  warning = capsys.readouterr().err
  assert f"checkpoint step 6 in {directory} cannot be read" in warning and "6.unreadable" in warning
  assert sorted(os.listdir(directory)) == ["2", "4", "6.unreadable"]
  # The next save of step 6 (the resumed run reaching it again) works.
  again = Checkpointer(directory)
  again.save(6, _state(6), {"step": 6})
  assert again.all_steps() == [2, 4, 6]
  again.close()


def test_a_failing_save_names_step_directory_cause_and_the_intact_checkpoint(tmp_path, monkeypatch):
  directory = str(tmp_path / "checkpoints")
  saver = Checkpointer(directory)
  saver.save(2, _state(2), {"step": 2})

  def disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")

  monkeypatch.setattr(saver._manager, "save", disk_full)
  with pytest.raises(CheckpointError) as raised:
    saver.save(4, _state(4), {"step": 4})
  message = str(raised.value)
  assert "could not write checkpoint step 4 to " + directory in message
  assert "No space left on device" in message and "the newest intact checkpoint is step 2" in message
  monkeypatch.undo()
  saver.close()
  state, _, step = Checkpointer(directory).restore(_state(0))
  assert step == 2 and float(state["params"]["w"][0, 0]) == 2.0


def test_the_command_line_reports_a_checkpoint_error_and_exits_1(monkeypatch, capsys, tmp_path):
  def failing(config, workdir):
    raise CheckpointError("could not write checkpoint step 4 to /x (OSError: full); the newest intact checkpoint is step 2.")

  monkeypatch.setattr(train, "train_and_evaluate", failing)
  assert train.main(["train", "--config=configs/sadh.py", f"--workdir={tmp_path}"]) == 1
  assert "error: could not write checkpoint step 4" in capsys.readouterr().err


def test_resume_command_repeats_the_arguments_and_names_the_workdir():
  command = train.resume_command(["train", "--config=configs/sadh.py", "--config.train.steps=100"], "workdir/sadh")
  assert command == "python -m acne_jax.train --config=configs/sadh.py --config.train.steps=100 --workdir=workdir/sadh"
  assert train.resume_command(["train", "--config=c.py", "--workdir=/w x"], "/w x").endswith("'--workdir=/w x'")


def test_no_checkpoint_at_all_is_file_not_found(tmp_path):
  with pytest.raises(FileNotFoundError, match="no checkpoint in"):
    Checkpointer(str(tmp_path / "none")).restore(_state(0))



def test_a_template_that_fits_no_step_sets_nothing_aside(tmp_path):
  """Another model's state (a shape mismatch) fails on every step: an error, every step kept."""
  directory = str(tmp_path / "checkpoints")
  saver = Checkpointer(directory)
  for step in (1, 2):
    saver.save(step, _state(step), {"step": step})
  saver.close()
  wrong = {"params": {"w": jnp.zeros((5, 2))}, "step": jnp.asarray(0, jnp.int32)}
  with pytest.raises(CheckpointError, match="no checkpoint in .* can be read \\(steps \\[2, 1\\]"):
    Checkpointer(directory).restore(wrong)
  assert sorted(os.listdir(directory)) == ["1", "2"]


def test_a_metrics_line_cut_by_a_kill_is_dropped_when_the_next_run_opens_the_file(tmp_path):
  from acne_jax.training.writers import MetricWriter

  path = tmp_path / "metrics.jsonl"
  path.write_text('{"step": 1, "loss": 2.5}\n{"step": 2, "lo')  # killed while writing step 2
  writer = MetricWriter(str(tmp_path))
  writer.write(2, {"loss": 2.25})
  writer.close()
  lines = path.read_text().splitlines()
  assert [json.loads(line)["step"] for line in lines] == [1, 2] and json.loads(lines[1])["loss"] == 2.25


# A restore that fails on one array leaves the other arrays' read errors unretrieved in orbax's
# event loop; the tests that fail reads on purpose collect them, so they are not reported later.
_quiet_failed_reads = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def _train_state(value):
  """A tiny train state with what a real one has: nested params, batch_stats, an optax state."""
  params = {"conv": {"kernel": jnp.full((3, 3, 2, 4), value, jnp.float32), "bias": jnp.arange(4, dtype=jnp.float32) + value},
            "head": {"kernel": jnp.full((4, 2), -value, jnp.bfloat16)}}
  batch_stats = {"bn": {"mean": jnp.full((4,), value / 3, jnp.float32), "var": jnp.full((4,), 1.0 + value, jnp.float32)}}
  opt_state = optax.adam(1e-3).init(params)
  opt_state = jax.tree_util.tree_map(lambda x: x + 7.0 if jnp.issubdtype(x.dtype, jnp.floating) else x, opt_state)
  return {"step": jnp.asarray(int(value), jnp.int32), "params": params, "batch_stats": batch_stats, "opt_state": opt_state}


def _assert_variables_equal(restored, state):
  assert set(restored) == {"params", "batch_stats"}
  for name in ("params", "batch_stats"):
    ours, theirs = jax.tree_util.tree_flatten_with_path(restored[name])[0], jax.tree_util.tree_flatten_with_path(state[name])[0]
    assert [path for path, _ in ours] == [path for path, _ in theirs]
    for (path, a), (_, b) in zip(ours, theirs):
      assert a.dtype == b.dtype and a.shape == b.shape, path
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=str(path))


@_quiet_failed_reads
def test_variables_restore_exactly_without_an_optimiser_template(tmp_path):
  directory = str(tmp_path / "checkpoints")
  saver = Checkpointer(directory)
  for step in (1, 2):
    saver.save(step, _train_state(step), {"step": step, "operating_point": {"score": 0.5}})
  saver.close()
  assert {"meta", "state", "variables"} <= set(os.listdir(os.path.join(directory, "2")))

  reader = Checkpointer(directory)
  variables, meta, step = reader.restore_variables()
  assert step == 2 and meta == {"step": 2, "operating_point": {"score": 0.5}}
  _assert_variables_equal(variables, _train_state(2))
  assert all(isinstance(leaf, jax.Array) and leaf.sharding == SingleDeviceSharding(jax.devices()[0])
             for leaf in jax.tree_util.tree_leaves(variables))
  # An explicit step; a template of the model's variables (no optimiser) checks the shapes.
  template = jax.eval_shape(lambda: {k: v for k, v in _train_state(0).items() if k in ("params", "batch_stats")})
  variables, _, step = reader.restore_variables(1, template=template)
  assert step == 1
  _assert_variables_equal(variables, _train_state(1))
  wrong = jax.tree_util.tree_map(lambda x: x, template)
  wrong["params"]["head"]["kernel"] = jax.ShapeDtypeStruct((5, 2), jnp.bfloat16)
  with pytest.raises(CheckpointError, match="no checkpoint in .* can be read \\(steps \\[2, 1\\]"):
    reader.restore_variables(template=wrong)
  assert sorted(s for s in os.listdir(directory) if s.isdigit()) == ["1", "2"]  # another model sets nothing aside
  # Resuming still reads the whole state, bit for bit.
  state, meta, step = reader.restore(_train_state(0))
  assert step == 2 and meta["step"] == 2
  for a, b in zip(jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(_train_state(2))):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  reader.close()
  gc.collect()


@_quiet_failed_reads
def test_variables_restore_never_reads_the_optimiser_state(tmp_path):
  """With the ``state`` item's array data gone, the variables still read (the same step, nothing
  set aside) while resuming from that step fails."""
  directory = str(tmp_path / "checkpoints")
  saver = Checkpointer(directory)
  saver.save(3, _train_state(3), {"step": 3})
  saver.close()
  shutil.rmtree(os.path.join(directory, "3", "state", "ocdbt.process_0"))
  shutil.rmtree(os.path.join(directory, "3", "state", "d"))

  reader = Checkpointer(directory)
  variables, meta, step = reader.restore_variables()
  assert step == 3 and meta == {"step": 3}
  _assert_variables_equal(variables, _train_state(3))
  with pytest.raises(CheckpointError, match="checkpoint step 3 in .* cannot be read"):
    reader.restore(_train_state(0), step=3)
  with pytest.raises(CheckpointError, match="no checkpoint in .* can be read"):
    reader.restore(_train_state(0))
  assert sorted(os.listdir(directory)) == ["3"]
  reader.close()
  gc.collect()


@_quiet_failed_reads
def test_a_torn_newest_variables_item_is_set_aside_once_an_older_step_reads(tmp_path, capsys):
  directory = str(tmp_path / "checkpoints")
  saver = Checkpointer(directory)
  for step in (2, 4):
    saver.save(step, _train_state(step), {"step": step})
  saver.close()
  shutil.rmtree(os.path.join(directory, "4", "variables", "ocdbt.process_0"))
  shutil.rmtree(os.path.join(directory, "4", "variables", "d"))

  reader = Checkpointer(directory)
  variables, _, step = reader.restore_variables()
  reader.close()
  assert step == 2
  _assert_variables_equal(variables, _train_state(2))
  warning = capsys.readouterr().err
  assert f"checkpoint step 4 in {directory} cannot be read" in warning and "4.unreadable" in warning
  assert sorted(os.listdir(directory)) == ["2", "4.unreadable"]
  gc.collect()


def test_a_checkpoint_without_a_variables_item_is_read_whole(tmp_path):
  """Steps written before the ``variables`` item existed (``state`` and ``meta`` only) still give
  their variables, with or without a template, and still resume."""
  directory = str(tmp_path / "checkpoints")
  manager = ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(create=True))
  for step in (5, 6):  # exactly what Checkpointer.save wrote before
    manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(_train_state(step)), meta=ocp.args.JsonSave({"step": step})))
  manager.wait_until_finished()
  manager.close()
  assert "variables" not in os.listdir(os.path.join(directory, "6"))

  reader = Checkpointer(directory)
  variables, meta, step = reader.restore_variables()
  assert step == 6 and meta == {"step": 6}
  _assert_variables_equal(variables, _train_state(6))
  template = jax.eval_shape(lambda: {k: v for k, v in _train_state(0).items() if k in ("params", "batch_stats")})
  variables, _, step = reader.restore_variables(5, template=template)
  assert step == 5
  _assert_variables_equal(variables, _train_state(5))
  state, _, step = reader.restore(_train_state(0))
  assert step == 6 and int(state["step"]) == 6
  reader.close()
