"""Whole-image evaluation: LabelMe ground truth and predict's output folders through `evaluate`."""

import json
import math
import os

import numpy as np
import pytest

from acne_jax import evaluate
from acne_jax.data import synthetic
from acne_jax.evaluation import whole_image


@pytest.fixture(scope="module")
def release(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("labelme"))
  paths = synthetic.write_labelme_release(root, 3, seed=5, image_size=(300, 420), num_lesions=(4, 8))
  return root, sorted(paths)


def _expected_boxes(json_path):
  """The reference's integer boxes, worked from the polygons: floor of the minimum, plus the
  ceiling of the extent (all generated polygons lie inside the image)."""
  with open(json_path) as f:
    shapes = json.load(f)["shapes"]
  out = []
  for s in shapes:
    p = np.asarray(s["points"], np.float64)
    x0, y0 = math.floor(p[:, 0].min()), math.floor(p[:, 1].min())
    out.append(([x0, y0, math.ceil(p[:, 0].max() - p[:, 0].min()), math.ceil(p[:, 1].max() - p[:, 1].min())],
                synthetic.CLASS_NAMES.index(s["label"]) + 1))
  return out


def test_labelme_folder_becomes_coco_ground_truth(release):
  root, paths = release
  gt, notes = whole_image.load_ground_truth(root)
  assert notes == []
  assert [im["id"] for im in gt["images"]] == [1, 2, 3]
  assert [os.path.splitext(im["file_name"])[0] for im in gt["images"]] == [os.path.splitext(os.path.basename(p))[0] for p in paths]
  assert all((im["height"], im["width"]) == (300, 420) for im in gt["images"])
  assert [c["name"] for c in gt["categories"]] == list(synthetic.CLASS_NAMES)
  for image_id, path in enumerate(paths, start=1):
    got = [(a["bbox"], a["category_id"]) for a in gt["annotations"] if a["image_id"] == image_id]
    assert got == _expected_boxes(path)
  one, _ = whole_image.load_ground_truth(paths[1])  # a single LabelMe file
  assert len(one["images"]) == 1 and len(one["annotations"]) == len(_expected_boxes(paths[1]))


def _write_predict_output(folder, gt, stems, perfect=True, image_id=99):
  os.makedirs(folder, exist_ok=True)
  for image in gt["images"]:
    stem = os.path.splitext(os.path.basename(image["file_name"]))[0]
    if stem not in stems:
      continue
    dets = [{"image_id": image_id, "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9}
            for a in gt["annotations"] if a["image_id"] == image["id"]]
    if not perfect:  # every box shifted by its own width: no detection matches
      dets = [{**d, "bbox": [d["bbox"][0] + d["bbox"][2] + 1, *d["bbox"][1:]]} for d in dets]
    with open(os.path.join(folder, f"{stem}_detections.json"), "w") as f:
      json.dump(dets, f)


def test_predict_folder_is_matched_to_the_annotations_by_stem(release, tmp_path):
  root, paths = release
  gt, _ = whole_image.load_ground_truth(root)
  stems = [os.path.splitext(os.path.basename(p))[0] for p in paths]
  good, bad = str(tmp_path / "good"), str(tmp_path / "bad")
  # image_id 99 in every file (as predict run once per photo writes): the stem decides.
  _write_predict_output(good, gt, stems)
  metrics, summary = evaluate.evaluate_files(root, good)
  assert metrics["AP@0.5"] == pytest.approx(1.0) and metrics["AR@0.5"] == pytest.approx(1.0)
  assert "3 images" in summary
  # Two faces found perfectly, one missed entirely: recall is the found share of the lesions.
  _write_predict_output(bad, gt, stems[:2])
  _write_predict_output(bad, gt, stems[2:], perfect=False)
  metrics, _ = evaluate.evaluate_files(root, bad)
  # AR is the class mean of each class's found share.
  found = [c for p in paths[:2] for _, c in _expected_boxes(p)]
  every = found + [c for _, c in _expected_boxes(paths[2])]
  expected = np.mean([found.count(c) / every.count(c) for c in sorted(set(every))])
  assert expected < 1.0
  assert metrics["AR@0.5"] == pytest.approx(expected)


def test_a_detections_file_for_an_unannotated_image_is_named(release, tmp_path, capsys):
  root, _ = release
  folder = tmp_path / "preds"
  folder.mkdir()
  (folder / "someone_else_detections.json").write_text("[]")
  code = evaluate.main(["evaluate", "--gt", root, "--dets", str(folder)])
  assert code == 1
  err = capsys.readouterr().err
  assert "someone_else_detections.json" in err and "no annotated image named someone_else" in err


def test_a_folder_without_labelme_files_is_an_error(tmp_path, capsys):
  (tmp_path / "empty").mkdir()
  assert evaluate.main(["evaluate", "--gt", str(tmp_path / "empty"), "--dets", str(tmp_path)]) == 1
  assert "no LabelMe .json files" in capsys.readouterr().err
