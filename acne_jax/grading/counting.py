"""Grades from detections: count a trained detector's lesions on photos, as ``predict`` does.

:class:`LesionCounter` loads a detector's checkpoint once and counts lesions per class on any
number of photos (whole images of any size, tiled and merged as ``python -m acne_jax.predict``
does, at the per-class score thresholds stored with the checkpoint). The count-based grading
routes (the embedded faces' in ``acne_jax.grade``, ACNE04's in ``scripts/compare_acne04_grading.py``)
turn the counts into Hayashi grades with :mod:`acne_jax.grading.scales`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, Optional, Sequence

import numpy as np


@dataclasses.dataclass
class LesionCounter:
  """A detector checkpoint ready to count lesions.

  Attributes:
    config: the detector's config (``configs/sadh.py`` ...).
    variables: its restored variables.
    step: the checkpoint step.
    predict_fn: the jitted ``(variables, uint8 [B, T, T, 3]) -> Prediction``.
    class_names: ``[K]`` names of its classes.
    thresholds: float64 ``[K]`` per-class score thresholds a detection must reach to count.
    threshold_report: where the thresholds come from (printed by the callers).
    tile: tile side in pixels (the config's ``data.image_size``).
  """

  config: Any
  variables: Any
  step: int
  predict_fn: Callable
  class_names: Sequence[str]
  thresholds: np.ndarray
  threshold_report: str
  tile: int

  @classmethod
  def from_workdir(cls, config, workdir: str, step: Optional[int] = None,
                   score_threshold: Optional[float] = None) -> "LesionCounter":
    """The checkpoint of ``workdir`` (the newest, or ``step``), counting at ``score_threshold``
    for every class if given, else at the thresholds ``predict`` would use
    (:func:`acne_jax.predict.counting_thresholds`)."""
    from acne_jax import evaluate, predict

    variables, found_step, meta = evaluate.restore(config, workdir, step)
    predict_fn = predict.make_predict_fn(config)
    names = tuple(predict.class_names_for(config))
    thresholds, report = predict.counting_thresholds(config, meta, predict_fn, variables, names, score_threshold)
    return cls(config, variables, int(found_step), predict_fn, names, np.asarray(thresholds, np.float64), report,
               predict.default_tile(config))

  def detections(self, image: np.ndarray) -> Dict[str, np.ndarray]:
    """:func:`acne_jax.predict.predict_image` of uint8 ``[H, W, 3]`` RGB ``image`` with
    ``predict``'s defaults (tiles of ``tile`` px, NMS merge)."""
    from acne_jax import predict

    return predict.predict_image(self.predict_fn, self.variables, image, self.tile, 4, None, "nms", 0.5, True,
                                 predict.DEFAULT_BORDER_MARGIN, *predict.inference_resize(self.config))

  def count(self, image: np.ndarray) -> Dict[str, int]:
    """``{class name: lesions counted}`` on ``image`` (every class, zeros included)."""
    from acne_jax import predict

    found = self.detections(image)
    return predict.count_classes(found["classes"], found["scores"], self.class_names, self.thresholds)


def fit_cut_points(counts, grades, num_grades: int) -> np.ndarray:
  """Count cut points that best separate ``num_grades`` ordered grades: grade ``g`` is given to a
  count ``c`` with ``cuts[g - 1] < c <= cuts[g]`` (``cuts`` int ``[num_grades - 1]``, increasing).

  Chosen by exhaustive search over the counts seen, maximising the balanced accuracy (mean recall
  over the grades present) of ``grades`` from ``counts``; cut points lie in the
  middle of a gap (the candidates are midpoints between the counts seen), and between
  equal scores to the lowest. This is how the count-based route maps a lesion count to a scale that is
  not defined by counts (IGA), from the training visits' true counts.

  Args:
    counts: ``[N]`` non-negative lesion counts; grades: ``[N]`` ints in ``[0, num_grades)``.
  """
  counts = np.asarray(counts, np.float64).reshape(-1)
  grades = np.asarray(grades, np.int64).reshape(-1)
  if len(counts) != len(grades) or not len(counts):
    raise ValueError(f"fit_cut_points needs as many counts as grades, at least one; got {len(counts)} and {len(grades)}.")
  if grades.min() < 0 or grades.max() >= num_grades:
    raise ValueError(f"grades must be in [0, {num_grades}); got {grades.min()}..{grades.max()}.")
  values = np.unique(counts)
  # Candidate cut c: counts <= c are below it. Midpoints between seen values (and beyond both ends).
  candidates = np.concatenate([[values[0] - 1.0], 0.5 * (values[1:] + values[:-1]), [values[-1] + 1.0]])
  present = np.unique(grades)

  def balanced(cuts) -> float:
    predicted = np.searchsorted(np.asarray(cuts), counts, side="left")
    return float(np.mean([np.mean(predicted[grades == g] == g) for g in present]))

  import itertools

  best, best_cuts = -1.0, None
  for cuts in itertools.combinations(candidates, num_grades - 1):
    score = balanced(cuts)
    if score > best + 1e-12:
      best, best_cuts = score, cuts
  return np.asarray(best_cuts, np.float64)


def grades_from_cut_points(counts, cuts) -> np.ndarray:
  """int64 ``[N]``: the grade of each count under :func:`fit_cut_points`'s ``cuts``."""
  return np.searchsorted(np.asarray(cuts, np.float64), np.asarray(counts, np.float64), side="left").astype(np.int64)
