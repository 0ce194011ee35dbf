"""The synthetic graded faces: grade distribution, IGA / Hayashi count rules, visits, the written folder."""

import collections
import csv
import json
import os

import numpy as np
import pytest

from acne_jax.data import grades_csv
from acne_jax.data import synthetic_faces as sf
from acne_jax.grading import scales


def test_grade_distribution_is_the_papers():
  """Over 3,000 patients (~10,000 visits) the groups 0-1 / 2 / 3-4 come within 2 points of
  12.3 % / 35.6 % / 52.1 %, patients have 1-5 visits (mean ~3.45) and some change grade."""
  per_patient = [sf.patient_grades(0, k) for k in range(3000)]
  grades = np.array([g for visits in per_patient for g in visits])
  groups = np.bincount([scales.iga_group(g) for g in grades], minlength=3) / len(grades)
  np.testing.assert_allclose(groups, [0.1232, 0.3556, 0.5212], atol=0.02)
  assert set(grades.tolist()) == {0, 1, 2, 3, 4}
  lengths = np.array([len(v) for v in per_patient])
  assert lengths.min() == 1 and lengths.max() == 5 and 3.2 < lengths.mean() < 3.7
  changed = np.mean([len(set(v)) > 1 for v in per_patient if len(v) > 1])
  assert 0.3 < changed < 0.9
  assert [sf.patient_grades(0, k) for k in range(50)] == per_patient[:50] != [sf.patient_grades(1, k) for k in range(50)]


@pytest.mark.parametrize("patients", [20, sf.DEFAULT_NUM_PATIENTS, 391])
def test_a_set_has_the_papers_imbalance(patients):
  """A set's own quantiles cut its visits: 12.3 / 35.6 / 52.1 % up to rounding, whatever its size."""
  per_patient = sf.set_grades(patients, seed=0)
  grades = np.array([g for visits in per_patient for g in visits])
  counts = np.bincount(grades, minlength=5)
  np.testing.assert_allclose(counts / len(grades), sf.GRADE_PROBS, atol=1.0 / len(grades) + 1e-9)
  groups = np.bincount([scales.iga_group(g) for g in grades], minlength=3) / len(grades)
  np.testing.assert_allclose(groups, [0.1232, 0.3556, 0.5212], atol=2.0 / len(grades))
  assert [len(v) for v in per_patient] == [len(sf.patient_grades(0, k)) for k in range(patients)]
  assert any(len(set(v)) > 1 for v in per_patient)


def test_counts_follow_iga_and_hayashi():
  rng = np.random.default_rng(0)
  inflammatory = collections.defaultdict(list)
  for grade in sf.IGA_GRADES:
    for _ in range(400):
      counts = sf.sample_lesion_counts(rng, grade)
      assert set(counts) == set(sf.CLASS_NAMES) | {sf.HEALED}
      assert all(v >= 0 for v in counts.values())
      n = scales.inflammatory_count(counts)
      inflammatory[grade].append(n)
      if grade == 0:  # clear: no papules or pustules
        assert n == 0
      if grade == 1:  # almost clear: rare papules only
        assert 1 <= counts["papule"] <= 3 and counts["pustule"] == 0 and counts["nodule"] == 0
      if grade <= 2:  # no nodulocystic lesions up to mild
        assert counts["nodule"] == 0
      if grade == 3:
        assert counts["nodule"] <= 2
      if grade == 4:
        assert counts["nodule"] >= 1
      if grade <= 1:  # Hayashi mild
        assert scales.hayashi_grade(n) == 0
  means = [np.mean(inflammatory[g]) for g in sf.IGA_GRADES]
  assert all(a < b for a, b in zip(means, means[1:])), means
  # Hayashi grades of the inflammatory count rise with the IGA grade, each IGA grade mostly in its band.
  hayashi = {g: scales.hayashi_grades(np.array(inflammatory[g])) for g in sf.IGA_GRADES}
  assert np.mean(hayashi[2] == 1) > 0.6 and np.mean(hayashi[3] == 2) > 0.6 and np.mean(hayashi[4] >= 2) == 1.0
  assert np.mean(hayashi[4] == 3) > 0.4
  with pytest.raises(ValueError, match="IGA grade must be one of"):
    sf.sample_lesion_counts(rng, 5)


@pytest.fixture(scope="module")
def patient():
  return sf.generate_patient(0, 18)  # IGA 4 then 2


def test_visit_contents(patient):
  assert [v.grade for v in patient] == [4, 2] and [v.visit for v in patient] == [1, 2]
  for visit in patient:
    assert visit.patient == "p0018"
    assert set(visit.images) == set(sf.VIEWS)
    for view in sf.VIEWS:
      image = visit.images[view]
      assert image.shape == (sf.IMAGE_SIZE, sf.IMAGE_SIZE, 3) and image.dtype == np.uint8
      x1, y1, x2, y2 = visit.face_boxes[view]
      assert 0 <= x1 < x2 <= sf.IMAGE_SIZE and 0 <= y1 < y2 <= sf.IMAGE_SIZE and (x2 - x1) > 0.35 * sf.IMAGE_SIZE
      boxes, labels = visit.boxes[view], visit.labels[view]
      assert boxes.shape == (len(labels), 4) and labels.dtype == np.int64
      assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= sf.IMAGE_SIZE).all()
      # Lesions shown in a photo sit on its face (up to the box of the drawn face, plus a lesion's size).
      centres = (boxes[:, :2] + boxes[:, 2:]) / 2
      assert ((centres >= visit.face_boxes[view][:2] - 2) & (centres <= visit.face_boxes[view][2:] + 2)).all()
    assert visit.inflammatory == sum(visit.counts[c] for c in ("papule", "pustule", "nodule"))
  # A photo shows only part of the face: no view shows more inflammatory lesions than the face has.
  severe = patient[0]
  inflamed = [sf.CLASS_NAMES.index(c) for c in sf.INFLAMMATORY_CLASSES]
  shown = [int(np.isin(severe.labels[v], inflamed).sum()) for v in sf.VIEWS]
  assert max(shown) <= severe.inflammatory and sum(shown) >= 0.6 * severe.inflammatory, (shown, severe.inflammatory)
  # Severe acne is redder than mild acne in the frontal photo's face region.
  def redness(visit):
    x1, y1, x2, y2 = visit.face_boxes["frontal"].astype(int)
    face = visit.images["frontal"][y1:y2, x1:x2].astype(np.float64)
    return np.mean(face[..., 0] - face[..., 1])
  assert redness(patient[0]) > redness(patient[1])


def test_patients_are_pure_functions_of_seed_and_index(patient):
  again = sf.generate_patient(0, 18)
  first = list(sf.generate_visits(1, seed=3))
  assert [v.grade for v in first] == sf.set_grades(1, 3)[0] and {v.patient for v in first} == {"p0000"}
  for a, b in zip(patient, again):
    assert (a.patient, a.visit, a.grade, dict(a.counts)) == (b.patient, b.visit, b.grade, dict(b.counts))
    for view in sf.VIEWS:
      np.testing.assert_array_equal(a.images[view], b.images[view])
  other = sf.generate_patient(1, 18)
  assert not np.array_equal(other[0].images["frontal"], patient[0].images["frontal"])


def test_written_folder_reads_back(tmp_path):
  folder = sf.write_grading_folder(str(tmp_path / "faces"), num_patients=3, seed=0, workers=1)
  table = grades_csv.read_grades_csv(folder)
  assert table.skipped == [] and table.views == sf.VIEWS
  expected = [g for grades in sf.set_grades(3, 0) for g in grades]
  assert [v.grade for v in table.visits] == expected
  assert [v.patient for v in table.visits][:1] == ["p0000"]
  for visit in table.visits:
    assert set(visit.images) == set(sf.VIEWS) and all(os.path.isfile(p) for p in visit.images.values())
  with open(os.path.join(folder, "lesion_counts.csv"), newline="") as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == len(table.visits)
  for row, visit in zip(rows, table.visits):
    assert (row["patient"], int(row["grade"])) == (visit.patient, visit.grade)
    assert int(row["inflammatory"]) == sum(int(row[c]) for c in sf.INFLAMMATORY_CLASSES)
  assert not os.path.exists(folder + ".partial")
  with pytest.raises(ValueError, match="exists already"):
    sf.write_grading_folder(folder, num_patients=3)
  assert sf.ensure_grading_folder(folder, num_patients=3, seed=0) == folder
  with pytest.raises(ValueError, match="num_patients 3 != 4"):
    sf.ensure_grading_folder(folder, num_patients=4, seed=0)
  # A folder an older generator wrote (no version, or another) is refused, not silently reused.
  manifest_path = os.path.join(folder, sf.MANIFEST)
  with open(manifest_path) as f:
    manifest = json.load(f)
  del manifest["generator_version"]
  with open(manifest_path, "w") as f:
    json.dump(manifest, f)
  with pytest.raises(ValueError, match=f"generator_version None != {sf.GENERATOR_VERSION}.*remove it"):
    sf.ensure_grading_folder(folder, num_patients=3, seed=0)


def test_workers_write_the_same_files(tmp_path):
  one = sf.write_grading_folder(str(tmp_path / "one"), num_patients=2, seed=5, workers=1)
  two = sf.write_grading_folder(str(tmp_path / "two"), num_patients=2, seed=5, workers=2)
  for name in ("grades.csv", "lesion_counts.csv", sf.MANIFEST):
    with open(os.path.join(one, name), "rb") as a, open(os.path.join(two, name), "rb") as b:
      assert a.read() == b.read(), name
  images = sorted(os.listdir(os.path.join(one, "images")))
  assert images == sorted(os.listdir(os.path.join(two, "images"))) and len(images) % 3 == 0
  for name in images:
    with open(os.path.join(one, "images", name), "rb") as a, open(os.path.join(two, "images", name), "rb") as b:
      assert a.read() == b.read(), name
