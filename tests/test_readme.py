"""README.md's commands, run as a user runs them, so a README line that stops working fails CI.

Every command of README.md's ```bash blocks is run, in document order, by ``bash -c`` in ONE
temporary folder (so commands that use an earlier one's output, such as ``evaluate`` after
``train``, find it there), with:

- ``HOME`` set to that folder, where small fixture releases stand in for the real downloads the
  README names (``~/AcneSCU``: three generated faces, ``~/ACNE04`` and ``~/DeepLesion``: the
  builder tests' fixtures), and TFDS data goes to ``~/tensorflow_datasets`` there;
- ``configs/`` and ``scripts/`` linked into the folder, as in a checkout;
- the small overrides of :func:`adapt`, appended to the command (a later ``--config.x=v`` wins
  over an earlier one): the tiny model of ``acne_jax.testing.tiny``; two training steps; for the
  embedded data set the ``tiny`` builder configuration (96 x 96 patches); for the real data sets
  ``data.worker_count=0``, with 256 x 256 input for ACNE04's 40 x 30 fixture photos, DeepLesion's
  16 x 16 fixture slices and AcneSCU's crops; and the text substitutions of ``SUBSTITUTIONS``
  (fewer, smaller generated photos; the ``crops_256`` build instead of ``crops_1024``, the same
  builder and crop code);
- not run: the install command (checked to be the one ``.ci/run`` runs before this suite) and
  the test command (this suite; ``test_repo.py`` checks ``.ci/run`` runs exactly it).

Each command must exit 0; the checks after some of them (``CHECKS``) read what they wrote.
The whole file takes a few minutes on two cores: ``-m "not readme"`` leaves it out of a quick
local run.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import re
import shlex
import subprocess
import sys

import pytest

from acne_jax.testing import tiny

pytestmark = pytest.mark.readme

ROOT = pathlib.Path(__file__).resolve().parents[1]

INSTALL = 'python -m pip install -e ".[test]"'
TEST_COMMAND = "python -m pytest -q -n auto --dist loadfile tests"

TINY_SYNTHETIC = {"data.builder_config": "tiny", "data.image_size": "(96, 96)", "data.max_boxes": "8"}
SUBSTITUTIONS = {
    "write_labelme_release('faces', 5, seed=2026, image_size=(1728, 2592))":
        "write_labelme_release('faces', 2, seed=2026, image_size=(150, 200), num_lesions=(2, 4))",
    "write_labelme_release('fake_scu', 20, image_size=(2048, 3072))":
        "write_labelme_release('fake_scu', 3, image_size=(512, 512), num_lesions=(4, 8))",
    # 256 px masked crops instead of 1024 px ones: the same builder and crop code, a quarter of the
    # side, so the AcneSCU trainings below compile and run at 256 x 256.
    "--dataset=acne_scu --config=crops_1024": "--dataset=acne_scu --config=crops_256",
}
MODEL_COMMANDS = ("python -m acne_jax.train ", "python -m acne_jax.evaluate --config", "python -m acne_jax.predict ")


def readme_commands():
  """The commands of README.md's ```bash blocks: comments dropped, ``&&`` chains split."""
  blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
  commands = []
  for block in blocks:
    for line in block.replace("\\\n", " ").splitlines():
      line = re.sub(r"\s+#.*$", "", line).strip()  # no README command has a '#' of its own
      if line:
        commands += [part.strip() for part in line.split(" && ")]
  return commands


# The grading command on 12 synthetic patients, 64 px crops, two epochs.
GRADE_COMMAND = "python -m acne_jax.grade "
GRADE_OVERRIDES = {"data.num_patients": 12, "data.image_size": 64, "train.epochs": 2, "train.batch_size": 6,
                   "eval.every_epochs": 1}


# The count-based grading route: the tiny faces set (8 patients), the tiny detector, two steps.
COUNT_GRADE_OVERRIDES = {"detector.data.builder_config": "faces_tiny", "detector.data.image_size": "(160,160)",
                         "detector.train.steps": 2, "detector.train.batch_size": 2, "detector.train.checkpoint_every": 2,
                         "detector.eval.batch_size": 2, **{f"detector.model.{k}": v for k, v in tiny.TINY_MODEL.items()}}


def adapt(command: str) -> str:
  """The command as the test runs it (see the module docstring)."""
  for old, new in SUBSTITUTIONS.items():
    command = command.replace(old, new)
  if command.startswith(GRADE_COMMAND) and "configs/count_grader.py" in command:
    return command + "".join(f" {shlex.quote(f'--config.{k}={tiny._flag_value(v)}')}" for k, v in COUNT_GRADE_OVERRIDES.items())
  if command.startswith(GRADE_COMMAND):
    return command + "".join(f" --config.{k}={v}" for k, v in GRADE_OVERRIDES.items())
  if not command.startswith(MODEL_COMMANDS):
    return command
  config = re.search(r"--config=(\S+)", command).group(1)
  overrides = {f"model.{k}": v for k, v in tiny.TINY_MODEL.items()}
  if ":" in config:
    overrides.update({"data.worker_count": 0, "eval.batch_size": 2})
    if config.endswith((":acne04", ":deep_lesion")):  # the fixture photos are 40 x 30, the CT slices 16 x 16
      overrides["data.image_size"] = "(256, 256)"
    if config.endswith(":acne04"):  # its keep-ratio resize, to the smaller size
      overrides.update({"data.resize_min_size": 256, "data.resize_max_size": 256})
    if config.endswith(":acne_scu"):  # the crops_256 build (SUBSTITUTIONS)
      overrides.update({"data.builder_config": "crops_256", "data.image_size": "(256, 256)", "data.max_boxes": 64})
  else:
    overrides.update(TINY_SYNTHETIC)
  if command.startswith("python -m acne_jax.train "):
    overrides["train.steps"] = 2
  return command + "".join(f" {shlex.quote(f'--config.{k}={v}')}" for k, v in overrides.items())


COMMANDS = readme_commands()


def _write_fixture_releases(home: pathlib.Path):
  """Small releases where the README's real-data commands look (``~/AcneSCU`` etc.)."""
  from acne_jax.data import synthetic

  synthetic.write_labelme_release(str(home / "AcneSCU"), 3, image_size=(512, 512), num_lesions=(4, 8))
  for name, folder in (("test_acne04", "ACNE04"), ("test_deep_lesion", "DeepLesion")):
    spec = importlib.util.spec_from_file_location(f"readme_fixture_{name}", ROOT / "tests" / "data" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (home / folder).mkdir()
    module._write_release(home / folder)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
  home = tmp_path_factory.mktemp("readme")
  for name in ("configs", "scripts"):
    (home / name).symlink_to(ROOT / name)
  _write_fixture_releases(home)
  env = {k: v for k, v in os.environ.items() if k != "ACNE_JAX_DATA_DIR"}
  # JAX_COMPILATION_CACHE_DIR: the run's shared cache (conftest.py), inherited.
  env.update(HOME=str(home), JAX_PLATFORMS="cpu",
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
             PATH=os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", ""))
  return home, env


def test_the_readme_has_the_commands_this_test_expects():
  assert COMMANDS[0] == INSTALL and COMMANDS[2] == TEST_COMMAND, COMMANDS[:3]
  ci = (ROOT / ".ci" / "run").read_text().splitlines()
  assert INSTALL in [line.strip() for line in ci], "the README's install command must be what CI installs with"
  for old in SUBSTITUTIONS:
    assert any(old in c for c in COMMANDS), f"SUBSTITUTIONS names text the README no longer has: {old}"
  assert sum(c.startswith(MODEL_COMMANDS) for c in COMMANDS) >= 9


def _check_main_run(home):
  work = home / "workdir" / "sadh"
  for name in ("metrics_test.json", "ground_truth_test.json", "detections_test.json", "operating_point.json"):
    assert (work / name).exists(), name
  with open(work / "operating_point.json") as f:
    assert json.load(f)["split"] == "validation"


def _check_sadh_100(home):
  with open(home / "workdir" / "sadh_100" / "metrics.jsonl") as f:
    steps = [json.loads(line)["step"] for line in f if "loss" in line]
  assert max(steps) == 2, "the test's --config.train.steps=2 must win over the README's 100"


def _check_files_mode(home):
  with open(home / "metrics.json") as f:
    from_files = json.load(f)
  with open(home / "workdir" / "sadh" / "eval_test.json") as f:
    from_workdir = json.load(f)
  assert from_files["AP@0.5"] == pytest.approx(from_workdir["AP@0.5"], abs=1e-9)


def _check_predict(home):
  written = sorted(p.name for p in (home / "faces_predicted").iterdir())
  assert len([n for n in written if n.endswith("_counts.json")]) == 2, written


def _check_mask_run(home):
  with open(home / "workdir" / "mask_rcnn_sadh" / "metrics_test.json") as f:
    metrics = json.load(f)
  assert "AP@0.5" in metrics and "mask_AP@0.5" in metrics


def _check_grading(home):
  work = home / "workdir" / "iga_grader"
  first_loss = {}
  for variant in ("weighted", "unweighted"):
    with open(work / f"grading_{variant}.json") as f:
      report = json.load(f)
    assert sum(map(sum, report["confusion_matrix"])) == report["test_visits"] > 0
    assert [h["epoch"] for h in report["history"]] == [1, 2] and (work / f"grader_{variant}.msgpack").exists()
    first_loss[variant] = report["history"][0]["loss"]
  # The same data, split and seed: only the class weights differ, so the first epochs' losses do.
  assert first_loss["weighted"] != first_loss["unweighted"]
  assert (work / "grading_confusion.png").exists() and (work / "split.json").exists()


def _check_count_grading(home):
  work = home / "workdir" / "count_grader"
  with open(work / "grading_counts.json") as f:
    summary = json.load(f)
  assert summary["detector_step"] == 2 and summary["test_visits"] == len(summary["visits"]) > 0
  for report in summary["reports"].values():
    assert sum(map(sum, report["confusion_matrix"])) == summary["test_visits"]
  assert (work / "grading_counts_confusion.png").exists()


def _check_figures(home):
  assert (home / "docs" / "figures" / "detections.png").exists()


# Checks after a command: (text of the README command, check of what it wrote).
CHECKS = (
    ("python -m acne_jax.train --config=configs/sadh.py", _check_main_run),
    ("--workdir=workdir/sadh_100", _check_sadh_100),
    ("--out metrics.json", _check_files_mode),
    ("python -m acne_jax.predict ", _check_predict),
    ("scripts/plot_analysis.py", _check_figures),
    ("python -m acne_jax.train --config=configs/mask_rcnn_sadh.py", _check_mask_run),
    ("python -m acne_jax.grade --config=configs/iga_grader.py", _check_grading),
    ("python -m acne_jax.grade --config=configs/count_grader.py", _check_count_grading),
)
RUNNABLE = [c for c in COMMANDS if c not in (INSTALL, TEST_COMMAND)]


def test_every_check_names_a_readme_command():
  for text, _ in CHECKS:
    assert any(text in c for c in RUNNABLE), text


@pytest.mark.parametrize("command", RUNNABLE, ids=[f"{i}:{c[10:70]}" for i, c in enumerate(RUNNABLE)])
def test_readme_command(command, sandbox):
  home, env = sandbox
  run = adapt(command)
  result = subprocess.run(["bash", "-c", run], cwd=home, env=env, capture_output=True, text=True, timeout=900)
  assert result.returncode == 0, (f"README command failed: {command}\nran: {run}\n"
                                  f"stdout (end):\n{result.stdout[-3000:]}\nstderr (end):\n{result.stderr[-5000:]}")
  checks = [check for text, check in CHECKS if (command == text if text.endswith("sadh.py") else text in command)]
  for check in checks:
    check(home)
