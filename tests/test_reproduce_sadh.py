"""``scripts/reproduce_sadh.py --quick``: the experiment script end to end on a tiny budget.

The shared backbone is pretrained on the easy set first and every row starts from it; each row
writes ``result.json`` and a rerun reads it instead of training; the table has the paper's
columns; the Fig. 6/7 plots render. The numbers of a two-step run mean nothing, so the test
checks their ranges and the wiring (which rows have an NWD branch), not their values. The quick
run trains in this process (``--jobs 1``: its rows reuse the pretraining's compiled programs);
``--jobs 2``'s core-pinned workers are checked on a job that only reports its cores.
"""

import json
import math
import os
import pathlib
import sys

import cv2
import pytest

from acne_jax.testing.scripts import import_script


def load_script():
  # Imported by name (not from a file spec) so that --jobs' spawned workers can import it too.
  return import_script("reproduce_sadh")


def test_quick_run_writes_results_resumes_and_prints_the_table(tmp_path, capsys):
  script = load_script()
  out, data_dir, markdown = tmp_path / "out", tmp_path / "tfds", tmp_path / "table.md"
  argv = ["--quick", "--out", str(out), "--data_dir", str(data_dir), "--markdown", str(markdown)]
  # Two runs at a time, each worker process pinned to its own core (on one core, both share it).
  rows = script.main(argv + ["--figures", str(tmp_path / "figures"), "--figure_images", "3"])

  assert [name for _, name, _ in rows] == ["Faster R-CNN (vanilla RPN)", "+ SADH + NWD"]
  pretrained = out / "pretrain_synthetic"
  assert (pretrained / "checkpoints").is_dir()
  results = {}
  for slug in script.QUICK_ROWS:
    with open(out / "synthetic_hard" / slug / "seed0" / "result.json") as f:
      results[slug] = json.load(f)
    result = results[slug]
    assert result["pretrained"] == str(pretrained) and result["seed"] == 0
    for key in script.METRICS:  # -1: no ground truth of that size bucket (COCO's convention)
      assert 0.0 <= result[key] <= 1.0 or (key.startswith(("AP_", "AR_")) and result[key] == -1.0), (slug, key)
    assert result["AR@100"] <= result["AR@300"] <= result["AR@1000"]
  assert results["faster_rcnn"]["cpu_cores"] == sorted(os.sched_getaffinity(0))  # --jobs 1: this process's cores
  # Only the row with an NWD branch has the Fig. 7 coefficients.
  assert all(math.isnan(results["faster_rcnn"][f"pearson_{n}"]) for n in ("s_cls", "nwd", "s_final"))
  assert all(-1.0 <= results["faster_sadh_nwd"][f"pearson_{n}"] <= 1.0 for n in ("s_cls", "nwd", "s_final"))

  text = markdown.read_text()
  lines = [line for line in text.splitlines() if line.startswith("|")]
  assert lines[0].startswith("| group | row | AP@0.5 | AR@0.5 | AP_s@0.5 | AP_m@0.5 | prop. AR@100 |")
  assert len(lines) == 4 and "| Table 1 | + SADH + NWD |" in lines[3]
  assert "`python scripts/reproduce_sadh.py --quick`" in text

  # Figs. 6/7 of the two rows, plus the precision-recall curves and drawn detections, render.
  for name in ("confidence_gradient.png", "iou_vs_score.png", "precision_recall.png", "detections.png"):
    image = cv2.imread(str(tmp_path / "figures" / name))
    assert image is not None, name
    assert image.shape[0] > 100 and image.shape[1] > 100 and image.std() > 5, name  # decodes, not blank

  # A rerun trains nothing: the finished runs' results are read back.
  capsys.readouterr()
  stamps = {slug: os.path.getmtime(out / "synthetic_hard" / slug / "seed0" / "result.json") for slug in script.QUICK_ROWS}
  again = script.main(argv)
  assert not any(line.startswith(("training ", "pretraining ")) for line in capsys.readouterr().out.splitlines())
  assert json.dumps([r[2] for r in again], sort_keys=True) == json.dumps([r[2] for r in rows], sort_keys=True)  # NaN == NaN
  assert stamps == {slug: os.path.getmtime(out / "synthetic_hard" / slug / "seed0" / "result.json") for slug in script.QUICK_ROWS}


def report_worker(index, rendezvous):
  """A job for ``run_all`` that waits until the other job has started too (so the two ran at
  once, in two workers) and says where it ran. Module level: spawned workers import it by name."""
  import time

  pathlib.Path(rendezvous, f"started_{index}").touch()
  deadline = time.monotonic() + 120
  while len(os.listdir(rendezvous)) < 2:
    if time.monotonic() > deadline:
      raise TimeoutError(f"job {index}: the other job never started alongside it")
    time.sleep(0.05)
  return index, os.getpid(), sorted(os.sched_getaffinity(0))


def test_jobs_run_at_once_in_workers_pinned_to_disjoint_cores(tmp_path):
  script = load_script()
  sys.path.insert(0, str(pathlib.Path(__file__).parent))  # spawned workers import this module by name
  rendezvous = tmp_path / "rendezvous"
  rendezvous.mkdir()
  jobs = [(0, str(rendezvous)), (1, str(rendezvous))]
  out = script.run_all(jobs, num_workers=2, cache_dir=str(tmp_path / "cache"), target=report_worker)
  assert [index for index, _, _ in out] == [0, 1]  # results in job order
  (_, first_pid, first), (_, second_pid, second) = out
  assert os.getpid() not in (first_pid, second_pid) and first_pid != second_pid
  cores = set(os.sched_getaffinity(0))
  if len(cores) >= 2:  # on one core both workers share it
    assert first and second and not set(first) & set(second) and set(first) | set(second) <= cores, (first, second)


def test_unknown_row_is_refused():
  with pytest.raises(SystemExit):
    load_script().main(["--quick", "--rows", "faster_rcnn,no_such_row"])
