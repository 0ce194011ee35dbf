"""scripts/benchmark_deeplesion.py --quick: the COCO stand-in, one Faster R-CNN row of Table 2
(COCO-initialised, Adam, balanced, augmented) on the tiny synthetic CT set, its scores recomputed
from the run's detections, the table, and the resume."""

import json
import os

import pytest

from acne_jax.evaluation import coco_metrics, threshold_map
from acne_jax.testing.scripts import import_script


@pytest.fixture(scope="module")
def bench():
  return import_script("benchmark_deeplesion")


def test_quick_row_scores_and_resumes(bench, tmp_path, capsys):
  out, root = str(tmp_path / "bench"), str(tmp_path / "tfds")
  argv = ["--quick", "--out", out, "--rows", "frcnn_6", "--data_root", root, "--markdown", str(tmp_path / "table.md")]
  assert bench.main(argv) == 0
  workdir = os.path.join(out, "frcnn_6")
  with open(os.path.join(workdir, "config.json")) as f:
    config = json.load(f)
  assert config["train"]["init_from"] == os.path.join(out, bench.STAND_IN) and config["optimizer"]["name"] == "adam"
  assert config["data"]["rotate_degrees"] == 30.0 and config["data"]["class_balanced"] and config["data"]["ct_set"] == "tiny"
  with open(os.path.join(workdir, "result.json")) as f:
    result = json.load(f)
  with open(os.path.join(workdir, "ground_truth_test.json")) as f:
    gt = json.load(f)
  with open(os.path.join(workdir, "detections_test.json")) as f:
    dets = json.load(f)
  assert result["mAP@0.21"] == threshold_map.evaluate(gt, dets, 0.21)["mAP"]
  assert result["FROC@4FP"] == coco_metrics.froc(gt, dets, class_agnostic=True)["sens@4FP"]
  table = (tmp_path / "table.md").read_text()
  assert "Faster R-CNN #6: COCO, adam, balanced, augmented" in table and "2 steps of batch 2" in table
  capsys.readouterr()
  assert bench.main(argv) == 0  # resumes: nothing trains again
  printed = capsys.readouterr().out
  assert "done before" in printed and "$ " not in printed


def test_yolo_rows_start_from_a_darknet_file_at_darknets_input_scale(bench, tmp_path, capsys):
  from absl import flags
  from ml_collections import config_flags

  from acne_jax import cli

  weights = tmp_path / "yolov4.conv.137"
  weights.write_bytes(b"")
  overrides = bench.yolo_overrides(str(weights))
  flag_values = flags.FlagValues()
  config_flags.DEFINE_config_file("config", None, "config", flag_values=flag_values)
  assert cli.parse(flag_values, ["bench", "--config=configs/yolov4.py:stride4", *overrides]) == []
  config = flag_values.config
  assert config.model.pretrained == str(weights)
  assert tuple(config.data.mean) == (0, 0, 0) and tuple(config.data.std) == (255, 255, 255)
  assert bench.yolo_overrides("") == []
  # A missing file stops the script before anything trains, naming the file and where to get it.
  out = tmp_path / "bench"
  assert bench.main(["--quick", "--out", str(out), "--yolo_weights", str(tmp_path / "missing.137")]) == 2
  printed = capsys.readouterr().out
  assert "missing.137 does not exist" in printed and "yolov4.conv.137" in printed and "$ " not in printed
  assert not any(out.iterdir())
