"""Checkpoints that cannot be written or read are named, and the previous one stays usable."""

import errno
import json
import os
import shutil

import jax.numpy as jnp
import numpy as np
import pytest

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
