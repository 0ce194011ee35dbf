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
    from acne_jax.data import resize as resize_lib

    return predict.predict_image(self.predict_fn, self.variables, image, self.tile, 4, None, "nms", 0.5, True,
                                 predict.DEFAULT_BORDER_MARGIN, *resize_lib.configured_sizes(self.config.data),
                                 resize_lib.configured_style(self.config.data))

  def count(self, image: np.ndarray) -> Dict[str, int]:
    """``{class name: lesions counted}`` on ``image`` (every class, zeros included)."""
    from acne_jax import predict

    found = self.detections(image)
    return predict.count_classes(found["classes"], found["scores"], self.class_names, self.thresholds)
