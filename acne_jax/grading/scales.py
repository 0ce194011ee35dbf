"""Acne severity scales: IGA grades and their three groups, Hayashi grades from lesion counts.

**IGA** (Investigator's Global Assessment, FDA 2005; the grading paper's Table 1): 0 clear,
1 almost clear, 2 mild, 3 moderate, 4 severe. The paper merges 0 with 1 and 3 with 4 (grades
treated alike clinically) and classifies three groups: ``0-1`` -> 0, ``2`` -> 1, ``3-4`` -> 2.

**Hayashi** (Hayashi et al., J Dermatol 2008): a count of inflammatory eruptions gives 0 mild
(<= 5), 1 moderate (6-20), 2 severe (21-50), 3 very severe (> 50). Hayashi counts papules and
pustules on one half of the face; ACNE04 (Wu et al. 2019, ``reference_notes.md`` C2) applies the
same thresholds to its per-image count of every annotated lesion (one class, ``fore``), and so do
we for whole-image detections. Which detector classes are counted
(:data:`HAYASHI_COUNTED_CLASSES`): on AcneSCU's ten classes, the inflammatory ones, ``papule``,
``pustule`` and ``nodule`` (the grading paper lists papules, pustules, nodules and cysts as the
inflammatory lesions; AcneSCU has no cyst class, and a face with many nodules must not grade as
mild); comedones (non-inflammatory), scars, melasma, nevus and ``other`` are not counted. Pass
``counted=("papule", "pustule")`` for Hayashi's papules and pustules alone. On ACNE04's single
class ``acne`` every lesion counts, as its own grades were computed.

NumPy only: ``tfds_builders.acne04`` imports :func:`hayashi_grade` from here.
"""

from __future__ import annotations

import numbers
from typing import Mapping, Sequence, Tuple

import numpy as np

IGA_GRADE_NAMES: Tuple[str, ...] = ("clear", "almost_clear", "mild", "moderate", "severe")
"""IGA score ``i`` is ``IGA_GRADE_NAMES[i]``."""

IGA_GROUP_NAMES: Tuple[str, ...] = ("0-1", "2", "3-4")
"""The grading paper's three groups, the classes of its classifier."""

_IGA_TO_GROUP = (0, 0, 1, 2, 2)

HAYASHI_GRADE_NAMES: Tuple[str, ...] = ("mild", "moderate", "severe", "very_severe")
"""Hayashi grade ``g`` is ``HAYASHI_GRADE_NAMES[g]`` (ACNE04's grade names, same order)."""

HAYASHI_UPPER_BOUNDS: Tuple[int, ...] = (5, 20, 50)
"""Largest count of grades 0, 1 and 2; more than 50 lesions is grade 3."""

INFLAMMATORY_CLASSES: Tuple[str, ...] = ("papule", "pustule", "nodule")
NON_INFLAMMATORY_CLASSES: Tuple[str, ...] = (
    "closed_comedo", "open_comedo", "atrophic_scar", "hypertrophic_scar", "melasma", "nevus", "other")
HAYASHI_COUNTED_CLASSES: Tuple[str, ...] = INFLAMMATORY_CLASSES + ("acne",)
"""Class names whose detections count towards a Hayashi grade (``acne``: ACNE04's one class)."""


def _as_int(value, what: str) -> int:
  """``value`` as an int when it is an integer (``3``, ``np.int64(3)``, ``3.0``), else ValueError."""
  if isinstance(value, bool):
    raise ValueError(f"{what} must be an integer; got {value!r}.")
  if isinstance(value, numbers.Integral):
    return int(value)
  if isinstance(value, numbers.Real) and float(value).is_integer():
    return int(value)
  if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
    return int(value.strip())
  raise ValueError(f"{what} must be an integer; got {value!r}.")


def iga_group(grade) -> int:
  """The group (0: IGA 0-1, 1: IGA 2, 2: IGA 3-4) of one IGA grade 0-4.

  Accepts ints, integer floats and digit strings (a CSV field); anything else, or a grade outside
  0-4, raises ``ValueError`` naming the value.
  """
  value = _as_int(grade, "IGA grade")
  if not 0 <= value < len(_IGA_TO_GROUP):
    raise ValueError(f"IGA grade must be 0-4 ({', '.join(IGA_GRADE_NAMES)}); got {grade!r}.")
  return _IGA_TO_GROUP[value]


def iga_groups(grades: Sequence) -> np.ndarray:
  """``[N]`` IGA grades -> ``[N]`` int32 groups; an unknown grade raises naming its index."""
  out = np.empty(len(grades), np.int32)
  for index, grade in enumerate(grades):
    try:
      out[index] = iga_group(grade)
    except ValueError as error:
      raise ValueError(f"row {index}: {error}") from None
  return out


def hayashi_grade(lesion_count: int) -> int:
  """Hayashi acne severity of a lesion count: 0 (<= 5), 1 (6-20), 2 (21-50), 3 (> 50).

  A negative or non-integer count raises ``ValueError``.
  """
  count = _as_int(lesion_count, "lesion count")
  if count < 0:
    raise ValueError(f"lesion count must be >= 0; got {lesion_count!r}.")
  for grade, upper in enumerate(HAYASHI_UPPER_BOUNDS):
    if count <= upper:
      return grade
  return len(HAYASHI_UPPER_BOUNDS)


def hayashi_grades(lesion_counts) -> np.ndarray:
  """``[...]`` non-negative integer counts -> ``[...]`` int32 Hayashi grades (vectorised)."""
  counts = np.asarray(lesion_counts)
  if counts.size and (not np.issubdtype(counts.dtype, np.number) or np.any(counts < 0) or np.any(counts != np.floor(counts))):
    raise ValueError(f"lesion counts must be integers >= 0; got {counts.ravel()[:8].tolist()}...")
  return np.searchsorted(np.asarray(HAYASHI_UPPER_BOUNDS), counts, side="left").astype(np.int32)


def hayashi_counted_mask(class_names: Sequence[str], counted: Sequence[str] = HAYASHI_COUNTED_CLASSES) -> np.ndarray:
  """``[K]`` bool: which of a data set's classes count towards a Hayashi grade.

  Args:
    class_names: the data set's class names (``acne_jax.data.records.CLASS_NAMES[name]``).
    counted: the class names that count (default: AcneSCU's inflammatory classes and ACNE04's
      ``acne``).

  Raises:
    ValueError: when no class of ``class_names`` counts (e.g. DeepLesion), naming them.
  """
  mask = np.array([name in counted for name in class_names], bool)
  if not mask.any():
    raise ValueError(f"none of the classes {list(class_names)} counts towards a Hayashi grade (counted: {list(counted)}).")
  return mask


def inflammatory_count(class_counts: Mapping[str, int], counted: Sequence[str] = HAYASHI_COUNTED_CLASSES) -> int:
  """The number of lesions Hayashi counts in ``{class name: count}`` (other classes ignored)."""
  return sum(_as_int(count, f"count of {name!r}") for name, count in class_counts.items() if name in counted)


def hayashi_grade_of_counts(class_counts: Mapping[str, int], counted: Sequence[str] = HAYASHI_COUNTED_CLASSES) -> int:
  """The Hayashi grade of one image's per-class lesion counts (``{"papule": 7, "nevus": 3, ...}``)."""
  return hayashi_grade(inflammatory_count(class_counts, counted))
