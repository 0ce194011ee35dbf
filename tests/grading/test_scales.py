"""IGA groups and Hayashi grades at every boundary; the counted classes."""

import numpy as np
import pytest

from acne_jax.data import records
from acne_jax.grading import scales


def test_iga_groups_as_the_paper_merges_them():
  assert [scales.iga_group(g) for g in range(5)] == [0, 0, 1, 2, 2]
  assert scales.iga_group("3") == 2 and scales.iga_group(np.int64(1)) == 0 and scales.iga_group(4.0) == 2
  np.testing.assert_array_equal(scales.iga_groups([4, 0, 2, "1"]), [2, 0, 1, 0])
  assert scales.IGA_GROUP_NAMES == ("0-1", "2", "3-4") and len(scales.IGA_GRADE_NAMES) == 5
  for bad in (5, -1, 2.5, "mild", None, True, float("nan")):
    with pytest.raises(ValueError, match="IGA grade"):
      scales.iga_group(bad)
  with pytest.raises(ValueError, match="row 2: IGA grade must be 0-4.*7"):
    scales.iga_groups([0, 1, 7])


@pytest.mark.parametrize("count, grade", [(0, 0), (5, 0), (6, 1), (20, 1), (21, 2), (50, 2), (51, 3), (10**6, 3)])
def test_hayashi_grade_at_every_boundary(count, grade):
  assert scales.hayashi_grade(count) == grade
  assert scales.hayashi_grades(np.array([count]))[0] == grade


def test_hayashi_vectorised_and_errors():
  counts = np.arange(0, 60)
  expected = [scales.hayashi_grade(int(c)) for c in counts]
  np.testing.assert_array_equal(scales.hayashi_grades(counts), expected)
  np.testing.assert_array_equal(scales.hayashi_grades(counts.astype(np.float32).reshape(6, 10)), np.reshape(expected, (6, 10)))
  assert scales.hayashi_grades([]).shape == (0,)
  for bad in (-1, 2.5, "x"):
    with pytest.raises(ValueError):
      scales.hayashi_grade(bad)
    with pytest.raises(ValueError):
      scales.hayashi_grades([3, bad])
  assert scales.HAYASHI_GRADE_NAMES == records.ACNE04_GRADE_NAMES


def test_the_acne04_builder_uses_this_implementation():
  pytest.importorskip("tensorflow_datasets")
  from tfds_builders import acne04
  from tfds_builders.acne04 import acne04 as module

  assert acne04.hayashi_grade is scales.hayashi_grade and module.hayashi_grade is scales.hayashi_grade


def test_counted_classes():
  names = records.ACNE_SCU_CLASS_NAMES
  mask = scales.hayashi_counted_mask(names)
  assert [n for n, m in zip(names, mask) if m] == ["papule", "pustule", "nodule"]
  assert set(scales.INFLAMMATORY_CLASSES) | set(scales.NON_INFLAMMATORY_CLASSES) == set(names)
  np.testing.assert_array_equal(scales.hayashi_counted_mask(records.ACNE04_CLASS_NAMES), [True])
  with pytest.raises(ValueError, match="bone"):
    scales.hayashi_counted_mask(records.DEEP_LESION_CLASS_NAMES)
  counts = {"papule": 3, "pustule": 2, "nodule": 1, "closed_comedo": 40, "atrophic_scar": 9, "nevus": 2}
  assert scales.inflammatory_count(counts) == 6 and scales.hayashi_grade_of_counts(counts) == 1
  assert scales.hayashi_grade_of_counts(counts, counted=("papule", "pustule")) == 0
  assert scales.hayashi_grade_of_counts({"acne": 51}) == 3 and scales.hayashi_grade_of_counts({}) == 0
