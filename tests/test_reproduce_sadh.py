"""``scripts/reproduce_sadh.py --quick``: the experiment script end to end on a tiny budget.

The shared backbone is pretrained on the easy set first and every row starts from it; the two
rows train at once in core-pinned workers (``--jobs 2``); each row writes ``result.json`` and a
rerun reads it instead of training; the table has the paper's columns; the Fig. 6/7 plots
render. The numbers of a two-step run mean nothing, so the test checks their ranges and the
wiring (which rows have an NWD branch, which cores ran them), not their values.
"""

import importlib
import json
import math
import os
import pathlib
import sys

import cv2
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load_script():
  # Imported by name (not from a file spec) so that --jobs' spawned workers can import it too.
  if str(ROOT / "scripts") not in sys.path:
    sys.path.insert(0, str(ROOT / "scripts"))
  return importlib.import_module("reproduce_sadh")


def test_quick_run_writes_results_resumes_and_prints_the_table(tmp_path, capsys):
  script = load_script()
  out, data_dir, markdown = tmp_path / "out", tmp_path / "tfds", tmp_path / "table.md"
  argv = ["--quick", "--out", str(out), "--data_dir", str(data_dir), "--markdown", str(markdown)]
  # Two runs at a time, each worker process pinned to its own core (on one core, both share it).
  rows = script.main(argv + ["--jobs", "2", "--figures", str(tmp_path / "figures"), "--figure_images", "3"])

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
  # --jobs 2: each run trained in its own worker, pinned to its own core where there are two.
  cores = sorted(os.sched_getaffinity(0))
  if len(cores) >= 2:
    first, second = (set(results[slug]["cpu_cores"]) for slug in script.QUICK_ROWS)
    assert first and second and not first & second and first | second <= set(cores), (first, second)
  # Only the row with an NWD branch has the Fig. 7 coefficients.
  assert all(math.isnan(results["faster_rcnn"][f"pearson_{n}"]) for n in ("s_cls", "nwd", "s_final"))
  assert all(-1.0 <= results["faster_sadh_nwd"][f"pearson_{n}"] <= 1.0 for n in ("s_cls", "nwd", "s_final"))

  text = markdown.read_text()
  lines = [line for line in text.splitlines() if line.startswith("|")]
  assert lines[0].startswith("| group | row | AP@0.5 | AR@0.5 | AP_s@0.5 | AP_m@0.5 | prop. AR@100 |")
  assert len(lines) == 4 and "| Table 1 | + SADH + NWD |" in lines[3]
  assert "`python scripts/reproduce_sadh.py --quick --jobs 2`" in text

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


def test_unknown_row_is_refused():
  with pytest.raises(SystemExit):
    load_script().main(["--quick", "--rows", "faster_rcnn,no_such_row"])
