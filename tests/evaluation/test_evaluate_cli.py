"""``python -m acne_jax.evaluate --gt GT.json --dets DETS.json``: the table, the JSON, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from acne_jax import evaluate
from acne_jax.evaluation import coco_metrics

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def small_set():
  """3 images (one without ground truth), 2 classes, a crowd region, every size bucket."""
  ann = lambda i, image, cat, bbox, crowd=0: {"id": i, "image_id": image, "category_id": cat, "bbox": bbox,
                                              "area": bbox[2] * bbox[3], "iscrowd": crowd}
  gt = {
      "images": [{"id": 7, "height": 300, "width": 300}, {"id": 3, "height": 300, "width": 300}, {"id": 9, "height": 300, "width": 300}],
      "categories": [{"id": 1, "name": "papule"}, {"id": 2, "name": "pustule"}],
      "annotations": [
          ann(1, 7, 1, [10, 10, 20, 20]), ann(2, 7, 1, [100, 100, 50, 50]), ann(3, 7, 2, [0, 150, 120, 120]),
          ann(4, 3, 2, [40, 40, 10, 12]), ann(5, 3, 1, [200, 200, 60, 60], crowd=1), ann(6, 3, 1, [5, 5, 40, 40]),
      ],
  }
  det = lambda image, cat, bbox, score: {"image_id": image, "category_id": cat, "bbox": bbox, "score": score}
  dets = [
      det(7, 1, [11, 10, 20, 19], 0.9), det(7, 1, [100, 102, 50, 45], 0.8), det(7, 1, [150, 0, 30, 30], 0.85),
      det(7, 2, [0, 150, 110, 120], 0.7), det(7, 2, [5, 160, 100, 100], 0.6), det(3, 2, [40, 41, 10, 12], 0.95),
      det(3, 1, [210, 210, 20, 20], 0.5), det(3, 1, [6, 5, 40, 38], 0.4), det(9, 1, [0, 0, 30, 30], 0.75),
      det(9, 2, [50, 50, 100, 100], 0.3),
  ]
  return gt, dets


@pytest.fixture
def files(tmp_path):
  gt, dets = small_set()
  paths = str(tmp_path / "gt.json"), str(tmp_path / "dets.json")
  for path, content in zip(paths, (gt, dets)):
    with open(path, "w") as f:
      json.dump(content, f)
  return paths


@pytest.mark.parametrize("iou, max_dets", [(0.5, 100), (0.75, 1), (0.3, 300)])
def test_files_mode_prints_a_table_and_writes_json(files, tmp_path, capsys, iou, max_dets):
  gt_path, dets_path = files
  out = str(tmp_path / "metrics.json")
  code = evaluate.main(["evaluate", "--gt", gt_path, f"--dets={dets_path}", "--iou", str(iou), "--max-dets", str(max_dets), "--out", out])
  printed = capsys.readouterr().out
  assert code == 0
  gt, dets = small_set()
  expected = coco_metrics.evaluate_detections(gt, dets, iou=iou, max_dets=max_dets)
  with open(out) as f:
    written = json.load(f)
  for key, value in expected.items():
    assert written[key] == pytest.approx(value, abs=1e-12), key
    assert f"{key.split('_')[0].split('@')[0]}@{iou:g}" in printed
  assert written["settings"] == {"gt": gt_path, "dets": dets_path, "iou": iou, "max_dets": max_dets, "area_source": "box",
                                 "iou_type": "bbox", "froc_definition": "deeplesion", "class_agnostic": False}
  assert written["froc"] == coco_metrics.froc_entry(gt, dets, iou)
  assert set(written[f"per_class_AP@{iou:g}"]) == {"papule", "pustule"}
  assert written["coco"]["AP50"] == pytest.approx(written["mAP@50"])
  for text in ("3 images, 6 annotations, 2 categories", "10 detections", "papule", "pustule", "mAP@50", "AP75",
               "FROC, deeplesion definition", "per class", "8 FP", "16 FP", "mean 0.5-4", "mean 0.5-8"):
    assert text in printed
  print_ap = f"{expected[f'AP@{iou:g}']:.4f}" if expected[f"AP@{iou:g}"] >= 0 else "-"
  assert print_ap in printed


def test_module_runs_as_a_program(files, tmp_path):
  gt_path, dets_path = files
  out = tmp_path / "m.json"
  run = subprocess.run([sys.executable, "-m", "acne_jax.evaluate", "--gt", gt_path, "--dets", dets_path, "--out", str(out)],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
  assert run.returncode == 0, run.stderr
  assert "AP@0.5" in run.stdout and out.exists()
  run = subprocess.run([sys.executable, "-m", "acne_jax.evaluate", "--gt", gt_path, "--dets", gt_path],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
  assert run.returncode == 1 and "Traceback" not in run.stderr
  assert run.stderr.startswith(f"error: {gt_path}: detections are not a JSON list")


def issue_files(tmp_path):
  """Issue 16's case: one image, lesions A [0, 0, 10, 10] and B [20, 20, 10, 10], detections A
  0.9, A again 0.8, B 0.7 (class 2 for the repeat, so per class it is a false positive)."""
  gt = {"images": [{"id": 1, "height": 64, "width": 64}], "categories": [{"id": 1, "name": "lesion"}, {"id": 2, "name": "other"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100, "iscrowd": 0},
                        {"id": 2, "image_id": 1, "category_id": 1, "bbox": [20, 20, 10, 10], "area": 100, "iscrowd": 0}]}
  dets = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.9},
          {"image_id": 1, "category_id": 2, "bbox": [0, 0, 10, 10], "score": 0.8},
          {"image_id": 1, "category_id": 1, "bbox": [20, 20, 10, 10], "score": 0.7}]
  paths = str(tmp_path / "issue_gt.json"), str(tmp_path / "issue_dets.json")
  for path, content in zip(paths, (gt, dets)):
    with open(path, "w") as f:
      json.dump(content, f)
  return gt, dets, paths


@pytest.mark.parametrize("flags, definition, class_agnostic, sens_05", [
    ([], "deeplesion", False, 0.5),  # per class the repeat (class 2) finds nothing: a false positive, read as a step
    (["--class-agnostic"], "deeplesion", True, 1.0),  # the reference: the repeat is neither hit nor false positive
    (["--class-agnostic", "--froc-definition=coco"], "coco", True, 0.75),  # COCO matching, read linearly
    (["--froc-definition", "coco"], "coco", False, 0.75),
])
def test_froc_mode_prints_and_writes_the_froc_table(tmp_path, capsys, flags, definition, class_agnostic, sens_05):
  gt, dets, (gt_path, dets_path) = issue_files(tmp_path)
  out = str(tmp_path / "froc.json")
  code = evaluate.main(["evaluate", "--gt", gt_path, "--dets", dets_path, "--froc", *flags, "--out", out])
  printed = capsys.readouterr().out
  assert code == 0
  with open(out) as f:
    written = json.load(f)
  assert set(written) == {"froc", "settings"}
  assert written["settings"] == {"gt": gt_path, "dets": dets_path, "iou": 0.5, "area_source": "box",
                                 "froc_definition": definition, "class_agnostic": class_agnostic}
  assert written["froc"] == coco_metrics.froc_entry(gt, dets, 0.5, definition, class_agnostic)
  assert written["froc"]["sens@0.5FP"] == pytest.approx(sens_05)
  assert all(written["froc"][f"sens@{r}FP"] == 1.0 for r in (1, 2, 4, 8, 16))
  assert written["froc"]["sens_mean@0.5-4FP"] == pytest.approx((sens_05 + 3) / 4)
  assert written["froc"]["sens_mean@0.5-8FP"] == pytest.approx((sens_05 + 4) / 5)
  header, columns, values = printed.splitlines()[1:4]
  assert header.startswith(f"FROC, {definition} definition") and ("class-agnostic" if class_agnostic else "per class") in header
  assert columns.split() == ["0.5", "FP", "1", "FP", "2", "FP", "4", "FP", "8", "FP", "16", "FP", "mean", "0.5-4", "mean", "0.5-8"]
  assert values.split() == [f"{v:.4f}" for v in [sens_05] + [1.0] * 5 + [(sens_05 + 3) / 4, (sens_05 + 4) / 5]]
  assert "AP@0.5" not in printed and f"wrote {out}" in printed


def test_froc_mode_usage_errors(tmp_path, capsys):
  _, _, (gt_path, dets_path) = issue_files(tmp_path)
  assert evaluate.main(["evaluate", "--gt", gt_path, "--dets", dets_path, "--froc", "--froc-definition=mulan"]) == 2
  assert "invalid choice: 'mulan'" in capsys.readouterr().err
  assert evaluate.main(["evaluate", "--gt", gt_path, "--dets", dets_path, "--froc", "--iou-type", "segm"]) == 2
  assert "--froc needs boxes" in capsys.readouterr().err


def test_froc_mode_runs_as_a_program(tmp_path):
  _, _, (gt_path, dets_path) = issue_files(tmp_path)
  out = tmp_path / "froc.json"
  run = subprocess.run([sys.executable, "-m", "acne_jax.evaluate", "--gt", gt_path, "--dets", dets_path, "--froc",
                        "--class-agnostic", "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=300)
  assert run.returncode == 0, run.stderr
  assert "FROC, deeplesion definition" in run.stdout and "1.0000" in run.stdout
  written = json.loads(out.read_text())
  assert written["froc"]["sens@0.5FP"] == 1.0 and written["froc"]["sens_mean@0.5-4FP"] == 1.0


def write(path, text):
  with open(path, "w") as f:
    f.write(text)
  return str(path)


GOOD = '{"image_id": 3, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5}'
BAD_DETECTIONS = [
    ('{"image_id": 12345, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5}', "unknown image_id 12345"),
    ('{"image_id": 3, "category_id": 8, "bbox": [1, 2, 3, 4], "score": 0.5}', "unknown category_id 8"),
    ('{"image_id": 3, "category_id": 1, "bbox": [1, 2, 3], "score": 0.5}', "bbox that is not 4 numbers"),
    ('{"image_id": 3, "category_id": 1, "bbox": [1, 2, 3, 4, 5], "score": 0.5}', "bbox that is not 4 numbers"),
    ('{"image_id": 3, "category_id": 1, "bbox": [1, 2, -3, 4], "score": 0.5}', "negative width or height"),
    ('{"image_id": 3, "category_id": 1, "bbox": [1, NaN, 3, 4], "score": 0.5}', "NaN"),
    ('{"image_id": 3, "category_id": 1, "bbox": [1, "2", 3, 4], "score": 0.5}', "non-numeric"),
    ('{"image_id": 3, "category_id": 1, "bbox": [1, 2, 3, 4]}', "no 'score'"),
]


@pytest.mark.parametrize("bad, reason", BAD_DETECTIONS)
def test_bad_detections_name_the_file_and_first_bad_entry(files, tmp_path, capsys, bad, reason):
  gt_path, _ = files
  dets_path = write(tmp_path / "bad_dets.json", f"[{GOOD}, {GOOD}, {bad}, {bad}]")
  assert evaluate.main(["evaluate", "--gt", gt_path, "--dets", dets_path]) == 1
  err = capsys.readouterr().err
  assert err.startswith(f"error: {dets_path}: detection 2 ") and reason in err, err
  assert json.dumps(json.loads(bad.replace("NaN", "null"))).replace("null", "NaN") in err  # the entry's content
  assert "Traceback" not in err


def test_bad_json_and_bad_ground_truth(files, tmp_path, capsys):
  gt_path, dets_path = files
  broken = write(tmp_path / "broken.json", '[{"image_id": 3,\n "category_id": 1 "bbox": []}]')
  assert evaluate.main(["evaluate", "--gt", gt_path, "--dets", broken]) == 1
  err = capsys.readouterr().err
  assert err.startswith(f"error: {broken}: not valid JSON: Expecting ',' delimiter at line 2, column 19")

  gt, _ = small_set()
  gt["annotations"][4]["image_id"] = 555
  gt["annotations"][5]["bbox"] = [0, 0, 1]
  bad_gt = write(tmp_path / "bad_gt.json", json.dumps(gt))
  assert evaluate.main(["evaluate", "--gt", bad_gt, "--dets", dets_path]) == 1
  err = capsys.readouterr().err
  assert err.startswith(f"error: {bad_gt}: annotation 4 has an unknown image_id 555") and '"id": 5' in err

  missing = str(tmp_path / "nope.json")
  assert evaluate.main(["evaluate", "--gt", missing, "--dets", dets_path]) == 1
  assert capsys.readouterr().err.startswith(f"error: {missing}: cannot read")
  assert evaluate.main(["evaluate", "--gt", gt_path]) == 2  # --dets missing: a usage error
  assert "--dets" in capsys.readouterr().err


def test_workdir_mode_is_still_dispatched(tmp_path, capsys):
  assert evaluate.main(["evaluate"]) == 2
  assert "--config and --workdir are required" in capsys.readouterr().err
  assert evaluate.main(["evaluate", f"--config={REPO}/configs/sadh.py", f"--workdir={tmp_path}"]) == 1
  assert "no checkpoint" in capsys.readouterr().err


def test_threshold_map_flag_prints_and_writes_the_benchmark_papers_metrics(files, tmp_path, capsys):
  from acne_jax.evaluation import threshold_map

  gt_path, dets_path = files
  out = str(tmp_path / "metrics.json")
  assert evaluate.main(["evaluate", "--gt", gt_path, "--dets", dets_path, "--iou", "0.21", "--threshold-map", "--out", out]) == 0
  printed = capsys.readouterr().out
  gt, dets = small_set()
  expected = threshold_map.evaluate(gt, dets, 0.21)
  with open(out) as f:
    written = json.load(f)
  assert written["threshold_map"] == json.loads(json.dumps(expected))
  assert "11-threshold mAP at IoU 0.21" in printed and f"{expected['mAP']:.3f}" in printed
  assert evaluate.main(["evaluate", "--gt", gt_path, "--dets", dets_path, "--threshold-map", "--iou-type", "segm"]) == 2
  assert "--threshold-map needs boxes" in capsys.readouterr().err
