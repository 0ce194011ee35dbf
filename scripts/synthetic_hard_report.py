"""Sample crops and statistics of the hard synthetic set beside the targets it states.

    python scripts/synthetic_hard_report.py [--faces 24] [--out docs/figures/synthetic_hard_samples.png]

Renders ``--faces`` test faces of ``acne_jax.data.synthetic_hard`` (seed 0, the ``hard`` builder
config's lesion density unless ``--density_scale`` says otherwise), cuts them into the
masked 384 x 384 crops the data set stores, and writes one figure: four crops raw and with their
lesions outlined by class, and the measured class frequencies, lesion sizes and lesions per crop
against AcneSCU's targets. Prints the same numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def hard_builder_density() -> float:
  from tfds_builders.synthetic_acne.synthetic_acne import SyntheticAcne

  return next(c.density_scale for c in SyntheticAcne.BUILDER_CONFIGS if c.name == "hard")


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--faces", type=int, default=24)
  parser.add_argument("--out", default="docs/figures/synthetic_hard_samples.png")
  parser.add_argument("--density_scale", type=float, default=0.0,
                      help="lesion-count multiplier (default: the `hard` builder config's)")
  args = parser.parse_args(argv)
  import cv2
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  from acne_jax.data import synthetic, synthetic_hard as hard
  from acne_jax.predict import class_colors

  density = args.density_scale if args.density_scale > 0 else hard_builder_density()
  crops, face_counts = [], []
  for p, _, image, skin, lesions in hard.generate_faces("test", args.faces, seed=0, density_scale=density):
    face_counts.append(len(lesions))
    crops.extend(hard.crop_records(image, skin, lesions, "masked", 0, "face", p.patient_id))
  labels = np.concatenate([c["objects"]["label"] for c in crops]).astype(int)
  boxes = np.concatenate([c["objects"]["bbox"] for c in crops]).reshape(-1, 4)
  sizes = np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
  per_crop = np.array([len(c["objects"]["label"]) for c in crops])
  frequencies = np.bincount(labels, minlength=10) / max(len(labels), 1)
  stats = {"faces": len(face_counts), "lesions_per_face": float(np.mean(face_counts)),
           "density_scale": density,
           "target_lesions_per_face": density * hard.LESIONS_PER_FRAME_PIXEL * hard.FACE_HW[0] * hard.FACE_HW[1],
           "crops": len(crops), "lesions_per_crop": float(per_crop.mean()), "empty_crops": float(np.mean(per_crop == 0)),
           "size_p10_p50_p90": np.percentile(sizes, [10, 50, 90]).round(1).tolist(),
           "size_targets": hard.SIZE_TARGETS, "share_6_32": float(np.mean((sizes >= 6) & (sizes <= 32))),
           "class_frequency": dict(zip(synthetic.CLASS_NAMES, frequencies.round(4).tolist())),
           "class_target": dict(zip(synthetic.CLASS_NAMES, np.round(hard.ACNESCU_CLASS_WEIGHTS, 4).tolist()))}
  print(json.dumps(stats, indent=1))

  colors = class_colors(10)
  busy = sorted(range(len(crops)), key=lambda i: -len(crops[i]["objects"]["label"]))[:4]
  fig = plt.figure(figsize=(16, 9), dpi=110)
  for k, i in enumerate(busy):
    crop = crops[i]
    outlined = crop["image"].copy()
    for polygon, label in zip(crop["objects"]["polygon"], crop["objects"]["label"]):
      pts = np.round(np.asarray(polygon).reshape(-1, 2)).astype(np.int32).reshape(-1, 1, 2)
      cv2.polylines(outlined, [pts], True, colors[int(label)], 1, cv2.LINE_AA)
    for row, picture, title in ((0, crop["image"], "crop"), (1, outlined, "lesions by class")):
      ax = fig.add_subplot(3, 4, 1 + k + 4 * row)
      ax.imshow(picture)
      ax.set_title(f"{title} ({len(crop['objects']['label'])} lesions)", fontsize=9)
      ax.axis("off")
  ax = fig.add_subplot(3, 3, 7)
  x = np.arange(10)
  ax.bar(x - 0.2, hard.ACNESCU_CLASS_WEIGHTS, 0.4, label="AcneSCU (target)")
  ax.bar(x + 0.2, frequencies, 0.4, label="measured")
  ax.set_xticks(x, synthetic.CLASS_NAMES, rotation=60, fontsize=7, ha="right")
  ax.set_title("class frequency", fontsize=9)
  ax.legend(fontsize=7)
  ax = fig.add_subplot(3, 3, 8)
  ax.hist(sizes, bins=np.arange(0, 80, 2), color="grey")
  for q, (low, high) in ((10, hard.SIZE_TARGETS["p10"]), (50, hard.SIZE_TARGETS["p50"]), (90, hard.SIZE_TARGETS["p90"])):
    ax.axvspan(low, high, alpha=0.2, label=f"target P{q}")
    ax.axvline(np.percentile(sizes, q), color="k", lw=1)
  ax.set_title("lesion size sqrt(box area), px (lines: measured P10/50/90)", fontsize=9)
  ax.legend(fontsize=7)
  ax = fig.add_subplot(3, 3, 9)
  ax.hist(per_crop, bins=np.arange(0, per_crop.max() + 2) - 0.5, color="grey")
  ax.set_title(f"lesions per crop (mean {per_crop.mean():.2f}; {len(crops)} crops of {len(face_counts)} faces)\n"
               f"{density:g} x VISIA density: {np.mean(face_counts):.0f} lesions per face "
               f"(target {stats['target_lesions_per_face']:.0f})", fontsize=9)
  fig.tight_layout()
  os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
  fig.savefig(args.out)
  print("wrote", args.out)


if __name__ == "__main__":
  main()
