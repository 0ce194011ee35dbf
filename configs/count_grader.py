"""Acne severity from lesion counts: the count-based grading route on the embedded graded faces.

    python -m acne_jax.grade --config=configs/count_grader.py [--workdir=workdir/count_grader]

Trains the SADH detector (``configs/sadh.py:synthetic_faces``) on the face squares of the training
visits of the embedded graded faces (the grader route's visits and patient split, rendered at 640
px so that lesions are 5-13 px; ``acne_jax.data.synthetic_face_crops``), counts the inflammatory
lesions (papules, pustules, nodules) in the three views of each test visit, and grades the visit
from the count: Hayashi's grade (0: <= 5, 1: 6-20, 2: 21-50, 3: > 50) and the IGA group (0-1, 2,
3-4) by cut points fitted on the training visits' true counts. Reports accuracy, per-grade
precision / recall / F1, quadratic kappa and confusion matrices, as the grader route does
(``acne_jax.grade.run_counts``). Any detector setting can be overridden, e.g.
``--config.detector.train.steps=100``.
"""

import ml_collections

from configs import common


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.route = "counts"  # acne_jax.grade: "grader" (configs/iga_grader.py) or "counts" (this file)
  config.detector = common.detector_config("synthetic_faces", rpn_head="sadh")
  return config.lock()
