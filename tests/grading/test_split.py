"""The paper's split: patients apart, grade proportions within one image, bad input named."""

import json

import numpy as np
import pytest

from acne_jax.grading import split as S


def paper_like_visits(seed=0, num_patients=391, grade_counts=(166, 479, 702)):
  """Rows (patient, grade group) shaped like the paper's data (Fig. 2, Table 2): 391 patients with 1-5
  visits each, 1347 visits of grades 0-1 / 2 / 3-4 in the paper's counts 166 / 479 / 702 (12 / 36 /
  52 %). A visit's grade is the rank of a latent severity (the patient's own level, visit noise, and
  improvement over the visits, as under treatment), so a patient's visits share or neighbour a grade."""
  rng = np.random.default_rng(seed)
  num_visits = sum(grade_counts)
  visits = np.ones(num_patients, int)
  np.add.at(visits, rng.choice(num_patients * 4, num_visits - num_patients, replace=False) // 4, 1)
  patients, severity = [], []
  for p in range(num_patients):
    level = rng.normal()
    for visit in range(visits[p]):
      patients.append(f"patient_{p:03d}")
      severity.append(level + rng.normal(0, 0.4) - 0.15 * visit)
  grades = np.empty(num_visits, int)
  grades[np.argsort(severity, kind="stable")] = np.repeat([0, 1, 2], grade_counts)
  return patients, grades


@pytest.fixture(scope="module")
def data():
  return paper_like_visits()


def _check_disjoint(result, patients, all_used=True):
  seen = {}
  for patient, s in zip(patients, result.row_split):
    assert seen.setdefault(patient, s) == s, f"patient {patient} in two splits"
  if all_used:
    assert {result.names[s] for s in seen.values()} == set(result.names)
  assert result.patient_split == {p: result.names[s] for p, s in seen.items()}


def test_patients_apart_and_grade_shares_within_one_image(data):
  patients, grades = data
  shares = np.bincount(grades) / len(grades)
  np.testing.assert_allclose(shares, [0.1232, 0.3556, 0.5212], atol=5e-5)  # the paper's Fig. 2
  assert max(np.bincount(np.unique(patients, return_counts=True)[1])) > 1  # patients with several visits
  result = S.split_by_patient(patients, grades, seed=0)
  _check_disjoint(result, patients)
  assert result.within_tolerance and result.max_deviation <= 1.0
  totals = np.bincount(grades, minlength=3)
  for s, fraction in enumerate((0.8, 0.1, 0.1)):
    rows = result.rows(result.names[s])
    counts = np.bincount(grades[rows], minlength=3)
    np.testing.assert_array_equal(counts, result.counts[s])
    assert np.all(np.abs(counts - fraction * totals) <= 1.0), (result.names[s], counts, fraction * totals)
    assert abs(len(rows) - fraction * len(grades)) <= 3.0  # 1077 / 135 / 135 by visits
  assert sum(len(result.rows(n)) for n in result.names) == len(grades)
  sampled_only = S.split_by_patient(patients, grades, seed=1, local_search=False)  # the paper's random samplings alone
  assert sampled_only.within_tolerance and sampled_only.local_steps == 0 and sampled_only.tries < 20_000
  table = result.table(("0-1", "2", "3-4"))
  assert json.loads(json.dumps(table)) == table and table["full"]["visits"] == 1347
  assert table["test"]["grades"]["0-1"]["target"] == pytest.approx(0.1 * totals[0])


def test_seeded_deterministic_and_independent_of_row_order(data):
  patients, grades = data
  a = S.split_by_patient(patients, grades, seed=3)
  b = S.split_by_patient(patients, grades, seed=3)
  np.testing.assert_array_equal(a.row_split, b.row_split)
  order = np.random.default_rng(1).permutation(len(grades))
  c = S.split_by_patient([patients[i] for i in order], grades[order], seed=3)
  assert c.patient_split == a.patient_split
  d = S.split_by_patient(patients, grades, seed=4)
  assert d.patient_split != a.patient_split and d.max_deviation <= 1.0


def test_preassigned_patients_stay_and_the_rest_fits_around_them(data):
  patients, grades = data
  chosen = sorted(set(patients))[:12]
  preassigned = ["test" if p in chosen else None for p in patients]
  result = S.split_by_patient(patients, grades, preassigned=preassigned, seed=0)
  assert all(result.patient_split[p] == "test" for p in chosen)
  _check_disjoint(result, patients)
  assert result.max_deviation <= 1.0
  # A patient placed by one of its rows only: all its rows follow.
  first = patients.index(chosen[0])
  only_one = [None] * len(patients)
  only_one[first] = "validation"
  result = S.split_by_patient(patients, grades, preassigned=only_one, seed=0)
  assert result.patient_split[chosen[0]] == "validation"


def test_local_search_reaches_the_tolerance_from_one_try_and_leaves_preassigned_patients(data):
  patients, grades = data
  chosen = set(sorted(set(patients))[:40:2])
  preassigned = ["validation" if p in chosen else None for p in patients]
  alone = S.split_by_patient(patients, grades, preassigned=preassigned, max_tries=1, local_search=False, seed=5)
  result = S.split_by_patient(patients, grades, preassigned=preassigned, max_tries=1, seed=5)
  assert alone.max_deviation > 1.0 and alone.local_steps == 0
  assert result.tries == 1 and result.local_steps > 0 and result.max_deviation <= 1.0 and result.within_tolerance
  assert all(result.patient_split[p] == "validation" for p in chosen)
  _check_disjoint(result, patients)


def test_bad_input_is_named():
  patients = ["a", "a", "b", "c"]
  with pytest.raises(ValueError, match=r"row 2 \(img_2.jpg\) of patient 'b' has grade 'severe', not one of 0..2"):
    S.split_by_patient(patients, [0, 1, "severe", 2], row_names=[f"img_{i}.jpg" for i in range(4)])
  for bad in (3, -1, 1.5, None, float("nan"), True):
    with pytest.raises(ValueError, match="row 1 of patient 'a' has grade"):
      S.split_by_patient(patients, [0, bad, 1, 2])
  with pytest.raises(ValueError, match=r"patient 'a' is pre-assigned to two splits: 'train' \(row 0\) and 'test' \(row 1\)"):
    S.split_by_patient(patients, [0, 1, 1, 2], preassigned=["train", "test", None, None])
  with pytest.raises(ValueError, match=r"row 3 is pre-assigned to 'holdout'"):
    S.split_by_patient(patients, [0, 1, 1, 2], preassigned=[None, None, "", "holdout"])
  with pytest.raises(ValueError, match="row 1 has no patient id"):
    S.split_by_patient(["a", " ", "b"], [0, 1, 2])
  with pytest.raises(ValueError, match="4 patients but 3 grades"):
    S.split_by_patient(patients, [0, 1, 2])
  with pytest.raises(ValueError, match="sum to 1"):
    S.split_by_patient(patients, [0, 1, 1, 2], fractions=(0.8, 0.1, 0.2))
  with pytest.raises(ValueError, match="no rows"):
    S.split_by_patient([], [])
  # Digit strings and integer floats (a CSV's fields) are grades.
  S.split_by_patient(patients, ["0", 1.0, np.int64(1), " 2 "])


def test_unreachable_tolerance_returns_the_best_with_a_warning(caplog):
  # One patient holds half of the visits: no split can take 10 / 10 / 80 % of them.
  patients = ["big"] * 10 + [f"p{i}" for i in range(10)]
  grades = [2] * 10 + [0, 1] * 5
  result = S.split_by_patient(patients, grades, max_tries=2000, seed=0)
  assert not result.within_tolerance and result.tries == 2000
  assert "deviates by" in caplog.text
  _check_disjoint(result, patients, all_used=False)
  assert result.patient_split["big"] == "train"
