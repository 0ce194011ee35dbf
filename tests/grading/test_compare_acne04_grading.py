"""``scripts/compare_acne04_grading.py``: ACNE04's test photos graded by the detector's counts and
by the grade classifier, both scored against the list files' Hayashi grades.

An ACNE04-format fixture release (built with the real builder) whose 8 test photos carry
annotated boxes chosen so the Hayashi grades of the box counts make a hand-worked confusion
matrix against the list grades. The grader trains for one epoch (``grade.run``, one variant);
the detector is a tiny model whose checkpoint holds drawn parameters (a detector training step
would compile for ~35 s on 2 cores, and the comparison only needs a checkpoint that counts).
Everything the script reports is checked against an independent computation: counts from a
second :class:`LesionCounter` on the release's JPEG files, grades from ``scales.hayashi_grade``,
the grader's grades from its own model applied to ``grade.load_acne04``'s test views and the
report ``grade.run`` wrote at training, and the metrics from the confusion-matrix formulas in
float64 here.
"""

import json
import os
import sys

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from acne_jax import grade, predict  # noqa: E402
from acne_jax.grading import counting, scales  # noqa: E402
from acne_jax.testing import fixtures, tiny  # noqa: E402
from configs import acne04_grader, iga_grader, sadh  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if os.path.join(ROOT, "scripts") not in sys.path:
  sys.path.insert(0, os.path.join(ROOT, "scripts"))

import compare_acne04_grading as compare  # noqa: E402

DETECTOR_SIZE = 128  # the tiny detector's input (keep-ratio resize of the 80 x 60 photos to 128 x 96)
GRADER_SIZE = 32
LIST_COUNTS = {0: 3, 1: 12, 2: 30, 3: 60}  # the list files' lesion count of each grade
# The test photos: name -> (list grade, annotated boxes). The boxes' Hayashi grades are
# (0, 1, 1, 0, 2, 3, 3, 3) against the list's (0, 0, 1, 1, 2, 2, 3, 3).
TEST_PHOTOS = {"levle0_0.jpg": (0, 2), "levle0_1.jpg": (0, 7), "levle1_0.jpg": (1, 10), "levle1_1.jpg": (1, 3),
               "levle2_0.jpg": (2, 25), "levle2_1.jpg": (2, 55), "levle3_0.jpg": (3, 60), "levle3_1.jpg": (3, 60)}
# By hand, that confusion matrix [[1,1,0,0],[1,1,0,0],[0,0,1,1],[0,0,0,2]] gives: accuracy 5/8;
# F1 per grade 1/2, 1/2, 2/3 (precision 1, recall 1/2), 4/5 (precision 2/3, recall 1); quadratic
# kappa 1 - (3/9) / (22/9) = 19/22 (observed: three cells one grade off, 1/9 each; expected:
# row sums 2, column sums (2, 2, 1, 3), sum_j c_j sum_i (i - j)^2 / 9 = 88/9, times 2/8).
HAND_CONFUSION = [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 0, 2]]
HAND_ACCURACY, HAND_F1, HAND_KAPPA = 5 / 8, [1 / 2, 1 / 2, 2 / 3, 4 / 5], 19 / 22


def _boxes(count):
  """``count`` distinct 5 x 5 px VOC boxes on a grid of the 80 x 60 photo."""
  return [("fore", 2 + 7 * (i % 11), 2 + 7 * (i // 11), 6 + 7 * (i % 11), 6 + 7 * (i // 11), 0) for i in range(count)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  root = tmp_path_factory.mktemp("acne04_compare")
  images = {name: fixtures.Acne04Image(grade=g, lesion_count=LIST_COUNTS[g], objects=_boxes(n), size=(80, 60), seed=i)
            for i, (name, (g, n)) in enumerate(TEST_PHOTOS.items())}
  for g in range(4):  # 4 training photos per grade (train + validation of the grader)
    for i in range(2, 6):
      images[f"levle{g}_{i}.jpg"] = fixtures.Acne04Image(grade=g, lesion_count=LIST_COUNTS[g], objects=_boxes(2),
                                                         size=(80, 60), seed=100 + 10 * g + i)
  release = root / "release"
  fixtures.write_acne04_release(release, images, {0: ([n for n in images if n not in TEST_PHOTOS], list(TEST_PHOTOS))})
  from tfds_builders.acne04 import Acne04

  data_dir = str(root / "tfds")
  Acne04(config="fold0", data_dir=data_dir).download_and_prepare(
      file_format="array_record", download_config=tfds.download.DownloadConfig(manual_dir=str(release)))

  grader_config = acne04_grader.get_config()
  with grader_config.unlocked():
    grader_config.data.update(data_dir=data_dir, image_size=GRADER_SIZE)
    grader_config.train.update(epochs=1, batch_size=4, variants=("unweighted",))
    grader_config.eval.every_epochs = 1
  grader_workdir = str(root / "grader")
  grade.run(grader_config, grader_workdir, log=lambda *_: None)

  detector_config = _detector_config(data_dir)
  detector_workdir = str(root / "detector")
  tiny.save_drawn_checkpoint(detector_config, detector_workdir)
  return {"release": release, "data_dir": data_dir, "grader_config": grader_config, "grader_workdir": grader_workdir,
          "detector_config": detector_config, "detector_workdir": detector_workdir}


def _detector_overrides(data_dir):
  return {**{f"model.{k}": v for k, v in tiny.TINY_MODEL.items()},
          "data.data_dir": data_dir, "data.image_size": (DETECTOR_SIZE, DETECTOR_SIZE), "data.resize_min_size": DETECTOR_SIZE,
          "data.resize_max_size": DETECTOR_SIZE, "data.max_boxes": 8}


def _detector_config(data_dir):
  return tiny.override(sadh.get_config("acne04"), _detector_overrides(data_dir))


def _argv(t, *extra):
  """The command line as a user types it, the tiny sizes as config overrides; the data directory
  is given to the detector config only (the grader config's stays empty: one data set is read)."""
  detector = [f"--detector_config.{k}={tiny._flag_value(v)}" for k, v in _detector_overrides(t["data_dir"]).items()]
  return ["compare_acne04_grading.py", f"--detector_config={os.path.join(ROOT, 'configs', 'sadh.py')}:acne04", *detector,
          f"--grader_config={os.path.join(ROOT, 'configs', 'acne04_grader.py')}",
          f"--grader_config.data.image_size={GRADER_SIZE}",
          f"--detector_workdir={t['detector_workdir']}", f"--grader_workdir={t['grader_workdir']}", *extra]


def _kappa(cm):
  """Cohen's quadratically weighted kappa from its definition, float64."""
  cm = np.asarray(cm, np.float64)
  k = len(cm)
  i, j = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
  weights = (i - j) ** 2 / (k - 1) ** 2
  expected = np.outer(cm.sum(1), cm.sum(0)) / cm.sum()
  return 1.0 - (weights * cm).sum() / (weights * expected).sum()


def _check_report(report, truth, predicted):
  """``report`` (grading_report's dict) against the confusion matrix of ``truth``/``predicted``
  counted here and the metrics' formulas."""
  cm = np.zeros((4, 4), np.int64)
  for t, p in zip(truth, predicted):
    cm[t, p] += 1
  assert report["confusion_matrix"] == cm.tolist() and report["num_samples"] == len(truth)
  assert report["accuracy"] == pytest.approx(np.trace(cm) / cm.sum(), abs=1e-12)
  for k, name in enumerate(scales.HAYASHI_GRADE_NAMES):
    precision = cm[k, k] / cm[:, k].sum() if cm[:, k].sum() else 0.0
    recall = cm[k, k] / cm[k].sum() if cm[k].sum() else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    assert report["per_grade"][name]["f1"] == pytest.approx(f1, abs=1e-12), name
  expected = np.outer(cm.sum(1), cm.sum(0))
  if ((np.subtract.outer(np.arange(4), np.arange(4)) ** 2) * expected).sum() == 0:
    assert report["quadratic_kappa"] is None
  else:
    assert report["quadratic_kappa"] == pytest.approx(_kappa(cm), abs=1e-12)


def test_both_routes_are_graded_and_scored_as_an_independent_computation(trained, tmp_path, capsys):
  out = str(tmp_path / "comparison.json")
  # At 0.6 the drawn detector counts 10-23 lesions on these photos (grades 1 and 2); predict's
  # default here, 0.5 (no calibration split), would count 22-28 on every one.
  assert compare.main(_argv(trained, f"--out={out}", "--score_threshold=0.6")) == 0
  printed = capsys.readouterr().out
  for title in ("detector count -> Hayashi", "grader, unweighted loss", "annotated boxes -> Hayashi (reference)"):
    assert title in printed
  assert "mean |counted - annotated boxes|" in printed
  with open(out) as f:
    result = json.load(f)
  assert os.path.isfile(str(tmp_path / "comparison.png"))
  assert result["grader"]["variants"] == ["unweighted"]  # the only grader_<variant>.msgpack there
  assert list(result["methods"]) == ["detector_count", "grader_unweighted", "annotated_box_count"]

  photos = {p["file_name"]: p for p in result["photos"]}
  assert sorted(photos) == sorted(TEST_PHOTOS) and result["data"]["photos"] == 8
  names = sorted(photos)
  truth = [TEST_PHOTOS[n][0] for n in names]
  for name in names:
    grade_, boxes = TEST_PHOTOS[name]
    assert (photos[name]["grade"], photos[name]["annotated_boxes"], photos[name]["lesion_count"]) == (
        grade_, boxes, LIST_COUNTS[grade_])

  # The reference row: the hand-worked case.
  assert [photos[n]["grades"]["annotated_box_count"] for n in names] == [scales.hayashi_grade(TEST_PHOTOS[n][1]) for n in names]
  reference = result["methods"]["annotated_box_count"]
  assert reference["confusion_matrix"] == HAND_CONFUSION
  assert reference["accuracy"] == pytest.approx(HAND_ACCURACY, abs=1e-12)
  assert reference["quadratic_kappa"] == pytest.approx(HAND_KAPPA, abs=1e-12)
  assert [reference["per_grade"][g]["f1"] for g in scales.HAYASHI_GRADE_NAMES] == pytest.approx(HAND_F1, abs=1e-12)
  assert reference["macro_f1"] == pytest.approx(np.mean(HAND_F1), abs=1e-12)

  # Detector: a second counter on the release's own JPEG files counts as predict does.
  counter = counting.LesionCounter.from_workdir(trained["detector_config"], trained["detector_workdir"], score_threshold=0.6)
  assert result["detector"]["thresholds"] == [0.6] and result["detector"]["class_names"] == ["acne"]
  counts = {}
  for name in names:
    image = predict.read_image(str(trained["release"] / fixtures.ACNE04_CLASSIFICATION_IMAGES / name))
    counts[name] = sum(counter.count(image).values())  # ACNE04's one class, "acne", all counted
    assert photos[name]["detector_count"] == counts[name], name
  detector_grades = [scales.hayashi_grade(counts[n]) for n in names]
  assert [photos[n]["grades"]["detector_count"] for n in names] == detector_grades
  _check_report(result["methods"]["detector_count"], truth, detector_grades)
  assert max(counts.values()) > 0, "a drawn model still scores above the fallback threshold somewhere"
  boxes = np.asarray([TEST_PHOTOS[n][1] for n in names], np.float64)
  listed = np.asarray([LIST_COUNTS[TEST_PHOTOS[n][0]] for n in names], np.float64)
  counted = np.asarray([counts[n] for n in names], np.float64)
  errors = result["count_errors"]
  assert errors["vs_annotated_boxes"]["mae"] == pytest.approx(np.abs(counted - boxes).mean(), abs=1e-12)
  assert errors["vs_annotated_boxes"]["mean_signed"] == pytest.approx((counted - boxes).mean(), abs=1e-12)
  assert errors["vs_list_lesion_count"]["mae"] == pytest.approx(np.abs(counted - listed).mean(), abs=1e-12)

  # Grader: its own model on load_acne04's views (the training preprocessing) with the saved variables.
  import jax.numpy as jnp
  from flax import serialization

  from acne_jax.models import grader

  views, grades, load_names, is_test = grade.load_acne04(trained["grader_config"].data)
  model = grader.Grader(num_classes=4, dropout_rate=0.5, fusion="mean", **grader.CPU)
  with open(os.path.join(trained["grader_workdir"], "grader_unweighted.msgpack"), "rb") as f:
    variables = serialization.msgpack_restore(f.read())
  logits = np.asarray(model.apply(variables, jnp.asarray(views[is_test]), train=False))
  by_name = dict(zip(np.asarray(load_names)[is_test], logits.argmax(-1)))
  grader_grades = [int(by_name[n]) for n in names]
  assert [photos[n]["grades"]["grader_unweighted"] for n in names] == grader_grades
  _check_report(result["methods"]["grader_unweighted"], truth, grader_grades)
  with open(os.path.join(trained["grader_workdir"], "grading_unweighted.json")) as f:
    at_training = json.load(f)  # grade.run scored the same test photos with the same variables
  assert result["methods"]["grader_unweighted"]["confusion_matrix"] == at_training["confusion_matrix"]
  # The script's view of a photo is the training one, byte for byte.
  for name in names:
    image = predict.read_image(str(trained["release"] / fixtures.ACNE04_CLASSIFICATION_IMAGES / name))
    np.testing.assert_array_equal(compare.grader_view(image, GRADER_SIZE), views[load_names.index(name)])


def test_missing_grader_variables_and_checkpoints_are_named_with_the_command_that_makes_them(trained, tmp_path, capsys,
                                                                                             monkeypatch):
  assert compare.main(_argv(trained, "--variant=weighted", f"--out={tmp_path / 'x.json'}")) == 1
  error = capsys.readouterr().err
  assert os.path.join(trained["grader_workdir"], "grader_weighted.msgpack") in error
  assert f"python -m acne_jax.grade --config=configs/acne04_grader.py --workdir={trained['grader_workdir']}" in error

  empty = str(tmp_path / "empty_grader")
  os.makedirs(empty)
  argv = [a.replace(trained["grader_workdir"], empty) for a in _argv(trained)]
  assert compare.main(argv) == 1
  assert "no grader variables in" in capsys.readouterr().err

  argv = [a.replace(trained["detector_workdir"], str(tmp_path / "no_detector")) for a in _argv(trained)]
  assert compare.main(argv) == 1
  error = capsys.readouterr().err
  assert f"no detector checkpoint in {tmp_path / 'no_detector'}/checkpoints" in error
  assert "python -m acne_jax.train --config=configs/sadh.py:acne04" in error
  assert not os.path.exists(tmp_path / "x.json")

  assert compare.main(_argv(trained, "--grader_config.train.batchsize=1")) == 2
  assert "did you mean 'train.batch_size'" in capsys.readouterr().err
  assert compare.main(["compare_acne04_grading.py"]) == 2
  assert "--detector_config and --grader_config are required" in capsys.readouterr().err

  # The default workdirs are those of train and grade run from here (workdir/sadh_acne04,
  # workdir/acne04_grader), the grader's looked for first.
  monkeypatch.chdir(tmp_path)
  assert compare.main([a for a in _argv(trained) if not a.startswith(("--detector_workdir=", "--grader_workdir="))]) == 1
  error = capsys.readouterr().err
  assert f"no grader workdir {tmp_path / 'workdir' / 'acne04_grader'}; train the ACNE04 grader first" in error


def test_configs_must_name_one_acne04_fold_and_one_data_directory(trained):
  detector, grader_config = trained["detector_config"], acne04_grader.get_config()
  assert compare.data_spec(detector, grader_config) == {"name": "acne04", "builder_config": "fold0",
                                                        "data_dir": trained["data_dir"]}
  with grader_config.unlocked():
    grader_config.data.builder_config = "fold1"
  with pytest.raises(ValueError, match="fold"):
    compare.data_spec(detector, grader_config)
  grader_config = acne04_grader.get_config()
  with grader_config.unlocked():
    grader_config.data.data_dir = "/elsewhere"
  with pytest.raises(ValueError, match="differ"):
    compare.data_spec(detector, grader_config)
  with pytest.raises(ValueError, match="configs/acne04_grader.py"):
    compare.data_spec(detector, iga_grader.get_config())
  with pytest.raises(ValueError, match="configs/sadh.py:acne04"):
    compare.data_spec(sadh.get_config(), acne04_grader.get_config())
