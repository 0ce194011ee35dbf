"""Key slices of the synthetic CT set, one per lesion type, with their DeepLesion boxes.

    python scripts/synthetic_ct_figure.py [--set tiny] [--out docs/figures/synthetic_ct_samples.png]

Writes the release of ``--set`` (``acne_jax.data.synthetic_ct.SETS``; ``tiny`` holds every type) into
a temporary folder, reads the key slices back from its PNGs and ``DL_info.csv`` as the builder does,
and draws the first key slice of each type in a soft-tissue window ([-175, 275] HU) with its
``Bounding_boxes`` and RECIST diameters, and a 3x zoom on the lesion.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SOFT_TISSUE_WINDOW = (-175.0, 275.0)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--set", default="tiny")
  parser.add_argument("--out", default="docs/figures/synthetic_ct_samples.png")
  args = parser.parse_args(argv)
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from matplotlib.patches import Rectangle

  from acne_jax.data import deep_lesion as dl
  from acne_jax.data import synthetic_ct

  with tempfile.TemporaryDirectory() as tmp:
    synthetic_ct.write_release(tmp, synthetic_ct.SETS[args.set])
    rows = dl.parse_dl_info(os.path.join(tmp, dl.CSV_NAME))
    first = {}
    for row in rows:
      first.setdefault(row.coarse_lesion_type, row)
    types = sorted(first)
    slices = {t: dl.load_hu(dl.slice_path(tmp, first[t].file_name, first[t].key_slice_index)) for t in types}

  cols = 4
  rows_n = (len(types) + cols - 1) // cols
  fig, axes = plt.subplots(rows_n, cols, figsize=(4.2 * cols, 4.6 * rows_n), layout="constrained")
  for ax in np.ravel(axes):
    ax.axis("off")
  for ax, t in zip(np.ravel(axes), types):
    row, hu = first[t], slices[t]
    image = dl.window(hu, *SOFT_TISSUE_WINDOW)
    ax.imshow(image, cmap="gray", vmin=0, vmax=255)
    x1, y1, x2, y2 = row.bounding_box
    ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor="red", linewidth=1.2))
    ax.set_title(f"type {t}: {dl.LESION_TYPES[t - 1]}   {row.lesion_diameters_pixel[0]:.0f} x {row.lesion_diameters_pixel[1]:.0f} px\n"
                 f"{row.file_name}  {row.spacing_mm_px[0]:.2f} mm/px, {row.spacing_mm_px[2]:g} mm slices", fontsize=9)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    half = max(24.0, 0.8 * max(x2 - x1, y2 - y1))
    inset = ax.inset_axes([0.0, 0.0, 0.36, 0.36])
    inset.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    inset.set_xlim(cx - half, cx + half)
    inset.set_ylim(cy + half, cy - half)
    m = row.measurement_coordinates
    inset.plot([m[0], m[2]], [m[1], m[3]], color="yellow", linewidth=1.0)
    inset.plot([m[4], m[6]], [m[5], m[7]], color="cyan", linewidth=1.0)
    inset.set_xticks([])
    inset.set_yticks([])
    for spine in inset.spines.values():
      spine.set_edgecolor("red")
  fig.suptitle("Synthetic CT key slices (soft-tissue window [-175, 275] HU): DeepLesion boxes (red), RECIST long (yellow) "
               "and short (cyan) diameters in the zoom", fontsize=11)
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  fig.savefig(args.out, dpi=80)
  print(f"wrote {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
