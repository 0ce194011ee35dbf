"""Draws the synthetic graded faces: one visit per IGA grade, its three photos with the face box the
detector found (green) and the square the grader's crop is cut from (yellow), and the 224 px crops.

  python scripts/synthetic_faces_report.py --out docs/figures/synthetic_grading_faces.png

Also prints, over ``--patients`` patients, how many photos the face crop found a face in and the
IoU of its box with the drawn facial skin's box, per view.
"""

from __future__ import annotations

import argparse
import collections
import time

import cv2
import numpy as np
from PIL import Image

from acne_jax.data import synthetic_faces
from acne_jax.grading import face_crop


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
  ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
  iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
  inter = ix * iy
  return float(inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter))


def one_visit_per_grade(seed: int):
  """The first visit of each grade in the embedded set (generated lazily, patient by patient)."""
  found = {}
  for visit in synthetic_faces.generate_visits(synthetic_faces.DEFAULT_NUM_PATIENTS, seed):
    found.setdefault(visit.grade, visit)
    if len(found) == len(synthetic_faces.IGA_GRADES):
      break
  return [found[g] for g in sorted(found)]


def draw(out: str, seed: int, photo_px: int = 224) -> None:
  visits = one_visit_per_grade(seed)
  rows = []
  for visit in visits:
    c = visit.counts
    title = (f"{visit.patient} visit {visit.visit}: IGA {visit.grade} | papules {c['papule']}, pustules {c['pustule']}, "
             f"nodules {c['nodule']} (inflammatory {visit.inflammatory}), comedones {c['closed_comedo'] + c['open_comedo']}, "
             f"healed marks {visit.healed_marks} | photos {visit.images['frontal'].shape[0]} px, then the 224 px crops")
    photos, crops = [], []
    for view in synthetic_faces.VIEWS:
      image = visit.images[view]
      crop, box = face_crop.crop_face(image, view, name=f"{visit.patient} v{visit.visit} {view}")
      square = face_crop.crop_box(box, view)
      shown = image.copy()
      cv2.rectangle(shown, tuple(int(v) for v in square[:2]), tuple(int(v) for v in square[2:]), (240, 220, 40), 1)
      cv2.rectangle(shown, tuple(int(v) for v in box[:2]), tuple(int(v) for v in box[2:]), (40, 220, 40), 2)
      shown = cv2.resize(shown, (photo_px, photo_px), interpolation=cv2.INTER_AREA)
      cv2.putText(shown, f"{view} IoU {box_iou(box, visit.face_boxes[view]):.2f}", (4, photo_px - 6),
                  cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
      photos.append(shown)
      pad = (photo_px - crop.shape[0]) // 2
      crops.append(cv2.copyMakeBorder(crop, pad, photo_px - crop.shape[0] - pad, pad, photo_px - crop.shape[1] - pad,
                                      cv2.BORDER_CONSTANT, value=(255, 255, 255)))
    strip = np.concatenate(photos + crops, axis=1)
    header = np.full((24, strip.shape[1], 3), 255, np.uint8)
    cv2.putText(header, title, (6, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    rows.append(np.concatenate([header, strip], axis=0))
  sheet = np.concatenate(rows, axis=0)
  # 256 colours keep the file small (sensor noise defeats PNG's compression otherwise).
  Image.fromarray(sheet).quantize(colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.FLOYDSTEINBERG).save(out, optimize=True)
  print(f"wrote {out} (green: the face box found, yellow: the square the crop is cut from)")


def detection_stats(patients: int, seed: int) -> None:
  ious = collections.defaultdict(list)
  missed = []
  start = time.time()
  for visit in synthetic_faces.generate_visits(patients, seed):
    for view in synthetic_faces.VIEWS:
      name = f"{visit.patient} v{visit.visit} {view}"
      try:
        _, box = face_crop.crop_face(visit.images[view], view, name=name)
      except face_crop.FaceNotFoundError:
        missed.append(name)
        continue
      ious[view].append(box_iou(box, visit.face_boxes[view]))
  for view in synthetic_faces.VIEWS:
    values = np.asarray(ious[view])
    print(f"{view:8s} faces found {len(values)}, IoU with the drawn face min {values.min():.2f} mean {values.mean():.2f}")
  print(f"no face found: {missed or 'none'} ({time.time() - start:.0f} s)")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--out", default="docs/figures/synthetic_grading_faces.png")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--patients", type=int, default=20, help="patients for the detection statistics (0: none)")
  args = parser.parse_args()
  draw(args.out, args.seed)
  if args.patients:
    detection_stats(args.patients, args.seed)


if __name__ == "__main__":
  main()
