"""Face crops of the synthetic graded faces with their lesion boxes: what the count-based grading
route's detector trains and counts on (issue 14).

The grader route (``configs/iga_grader.py``) reads the embedded faces at 352 px, where a lesion is
3-7 px long: too small for a detector. This set renders the *same visits* (same patients, grades,
lesions; :mod:`acne_jax.data.synthetic_faces`, same seed) at :data:`RENDER_SIZE` px, so a lesion is
5-13 px, and cuts each view's face square (:func:`acne_jax.grading.face_crop.crop_box` around the
generator's face box, :data:`CROP_MARGIN`) resized to :data:`CROP_SIZE` px, with the boxes of the
lesions it shows. Visits are split by patient exactly as ``python -m acne_jax.grade`` splits the
embedded set (:func:`patient_split`: the same :func:`acne_jax.grading.split.split_by_patient`
call on the same visits), so the two routes are scored on the same test visits.

Each record (``synthetic_acne/faces`` in ``tfds_builders``) is one view, with the common record
schema (:mod:`acne_jax.data.records`; each lesion's polygon is its box: the generator draws round
lesions but keeps only boxes per view) plus what grading needs: ``visit``, ``view``, ``iga_grade``
(0-4) and ``face_inflammatory``, the whole-face count of papules, pustules and nodules (Hayashi's
count, of the whole face, not only of this view).
"""

from __future__ import annotations

from typing import Dict, Iterator, List, Mapping, Sequence, Tuple

import numpy as np

from acne_jax.data import synthetic_faces

RENDER_SIZE = 640
CROP_SIZE = 384
CROP_MARGIN = 0.05
MIN_VISIBLE_FRACTION = 0.5
"""A lesion cut by the crop's edge is kept when at least this share of its box is inside."""
SPLIT_NAMES: Tuple[str, ...] = ("train", "validation", "test")
EXTRA_FEATURES = ("visit", "view", "iga_grade", "face_inflammatory")


def patient_split(num_patients: int, seed: int = 0, split_seed: int = 0) -> Dict[str, str]:
  """``{patient id: split name}`` of the embedded graded set of ``num_patients`` patients: the
  split ``python -m acne_jax.grade`` makes of it (80 / 10 / 10 by patient, the three IGA groups'
  shares kept; :func:`acne_jax.grading.split.split_by_patient` with ``seed=split_seed``), computed
  from the grades alone (nothing is rendered)."""
  from acne_jax.grading import scales
  from acne_jax.grading import split as split_lib

  grades = synthetic_faces.set_grades(num_patients, seed)
  patients = [f"p{index:04d}" for index, visits in enumerate(grades) for _ in visits]
  groups = scales.iga_groups([g for visits in grades for g in visits])
  return dict(split_lib.split_by_patient(patients, groups, num_grades=len(scales.IGA_GROUP_NAMES), seed=split_seed).patient_split)


def crop_view(image: np.ndarray, face_box: np.ndarray, boxes: np.ndarray, labels: np.ndarray, view: str,
              size: int = CROP_SIZE, margin: float = CROP_MARGIN) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """The face square of one photo and the lesions it shows.

  Args:
    image: uint8 ``[H, W, 3]`` RGB photo.
    face_box: ``[4]`` x1, y1, x2, y2 of the face in the photo.
    boxes: float32 ``[K, 4]`` x1y1x2y2 lesion boxes in the photo's pixels; labels: ``[K]``.
    view: ``frontal``, ``left`` or ``right`` (a profile's square moves towards the cheek).
    size: side of the crop, px; margin: context around the face box, fraction of its longer side.

  Returns:
    ``(crop uint8 [size, size, 3], boxes float32 [K', 4] in the crop's pixels, labels [K'],
    origin int [2] x, y of the square in the photo)``; lesions with less than
    :data:`MIN_VISIBLE_FRACTION` of their box inside the square are left out, the others clipped.
  """
  from acne_jax.grading import face_crop

  square = face_crop.crop_box(np.asarray(face_box, np.float32), view, margin)
  crop = face_crop.cut(image, square, size)
  x0, y0 = int(round(float(square[0]))), int(round(float(square[1])))  # as face_crop.cut places the square
  side = max(int(round(float(square[2]))) - x0, 1)
  scale = size / side
  boxes = (np.asarray(boxes, np.float32).reshape(-1, 4) - np.array([x0, y0, x0, y0], np.float32)) * scale
  clipped = np.clip(boxes, 0.0, float(size))
  area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
  inside = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
  keep = (inside >= MIN_VISIBLE_FRACTION * np.maximum(area, 1e-6)) & (clipped[:, 2] - clipped[:, 0] >= 1) & (clipped[:, 3] - clipped[:, 1] >= 1)
  return crop, clipped[keep], np.asarray(labels, np.int64).reshape(-1)[keep], np.array([x0, y0], np.int32)


def _record(visit: synthetic_faces.Visit, view: str, image_id: int, size: int, margin: float) -> Dict[str, object]:
  crop, boxes, labels, origin = crop_view(visit.images[view], visit.face_boxes[view], visit.boxes[view], visit.labels[view],
                                          view, size, margin)
  x1, y1, x2, y2 = boxes.T if len(boxes) else (np.zeros(0, np.float32),) * 4
  polygons = [np.array([a, b, c, b, c, d, a, d], np.float32) for a, b, c, d in zip(x1, y1, x2, y2)]
  return {
      "image": crop,
      "image_id": int(image_id),
      "file_name": f"{visit.patient}_v{visit.visit}_{view}",
      "patient_id": visit.patient,
      "crop_origin": origin,
      "objects": {"bbox": boxes, "label": labels, "area": (x2 - x1) * (y2 - y1), "polygon": polygons},
      "visit": int(visit.visit),
      "view": view,
      "iga_grade": int(visit.grade),
      "face_inflammatory": int(visit.inflammatory),
  }


def generate_split(split: str, num_patients: int = synthetic_faces.DEFAULT_NUM_PATIENTS, seed: int = 0, split_seed: int = 0,
                   render_size: int = RENDER_SIZE, crop_size: int = CROP_SIZE, margin: float = CROP_MARGIN) -> Iterator[Dict[str, object]]:
  """The records of one split (one per view of each visit of the split's patients, in patient,
  visit, view order; ``image_id`` counts over the whole set so that ids are unique across splits).

  Only the split's own patients are rendered.
  """
  if split not in SPLIT_NAMES:
    raise ValueError(f"split must be one of {SPLIT_NAMES}; got {split!r}.")
  assignment = patient_split(num_patients, seed, split_seed)
  grades = synthetic_faces.set_grades(num_patients, seed)
  image_id = 0
  for index, visit_grades in enumerate(grades):
    patient = f"p{index:04d}"
    if assignment[patient] != split:
      image_id += len(visit_grades) * len(synthetic_faces.VIEWS)
      continue
    for visit in synthetic_faces.generate_patient(seed, index, render_size, visit_grades):
      for view in synthetic_faces.VIEWS:
        yield _record(visit, view, image_id, crop_size, margin)
        image_id += 1


def visit_table(records: Sequence[Mapping[str, object]]) -> List[Dict[str, object]]:
  """Groups per-view records (read back from TFDS or from :func:`generate_split`) into visits:
  ``[{"patient", "visit", "iga_grade", "face_inflammatory", "rows": {view: index into records}}]``
  in first-seen order. Raises ``ValueError`` when a visit's views disagree on its grade or count."""
  from acne_jax.data.records import _text

  visits: Dict[Tuple[str, int], Dict[str, object]] = {}
  for row, record in enumerate(records):
    key = (_text(record["patient_id"]), int(record["visit"]))
    entry = visits.setdefault(key, {"patient": key[0], "visit": key[1], "iga_grade": int(record["iga_grade"]),
                                    "face_inflammatory": int(record["face_inflammatory"]), "rows": {}})
    if (entry["iga_grade"], entry["face_inflammatory"]) != (int(record["iga_grade"]), int(record["face_inflammatory"])):
      raise ValueError(f"the views of visit {key[1]} of patient {key[0]} disagree on its grade or lesion count.")
    entry["rows"][_text(record["view"])] = row
  return list(visits.values())
