"""Draw annotated synthetic examples: ``python -m acne_jax.data.preview --out grid.png``.

Renders a grid of generated images (default 2 x 3 from the ``train`` split, seed 0) with
class-coloured boxes and a legend. The repository figure ``docs/figures/synthetic_examples.png``
is ``--count 12 --pick 0,1,2,3,4,5 --bits 6`` (6 bits per channel keeps the PNG small).
"""

from __future__ import annotations

import argparse
from typing import Mapping, Sequence

import cv2
import numpy as np

from acne_jax.data import synthetic

# One RGB colour per class, in CLASS_NAMES order.
CLASS_COLORS = (
    (255, 255, 255), (30, 30, 30), (230, 30, 30), (255, 220, 0), (150, 0, 200),
    (0, 150, 255), (255, 0, 220), (150, 90, 20), (0, 200, 60), (0, 230, 230),
)


def draw_boxes(image: np.ndarray, boxes: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """Copy of uint8 ``[H, W, 3]`` RGB ``image`` with x1y1x2y2 pixel ``boxes`` [K, 4] drawn in class colours."""
  out = np.ascontiguousarray(image).copy()
  for box, label in zip(np.asarray(boxes).reshape(-1, 4), np.asarray(labels).reshape(-1)):
    x1, y1 = int(np.floor(box[0])), int(np.floor(box[1]))
    x2, y2 = int(np.ceil(box[2])) - 1, int(np.ceil(box[3])) - 1
    cv2.rectangle(out, (x1, y1), (x2, y2), CLASS_COLORS[int(label)], 1)
  return out


def legend(width: int, columns: int = 5) -> np.ndarray:
  """uint8 ``[rows * 20 + 4, width, 3]`` RGB legend of class colours and names."""
  rows = -(-len(synthetic.CLASS_NAMES) // columns)
  out = np.full((rows * 20 + 4, width, 3), 255, np.uint8)
  step = width // columns
  for i, name in enumerate(synthetic.CLASS_NAMES):
    x, y = 8 + (i % columns) * step, 6 + (i // columns) * 20
    cv2.rectangle(out, (x, y), (x + 12, y + 12), CLASS_COLORS[i], -1)
    cv2.rectangle(out, (x, y), (x + 12, y + 12), (120, 120, 120), 1)
    cv2.putText(out, name, (x + 17, y + 11), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
  return out


def grid(records: Sequence[Mapping], columns: int = 3, pad: int = 4) -> np.ndarray:
  """uint8 RGB grid of annotated records (all the same size) with a legend underneath."""
  tiles = [np.pad(draw_boxes(r["image"], r["objects"]["bbox"], r["objects"]["label"]), ((pad, pad), (pad, pad), (0, 0)), constant_values=255) for r in records]
  blank = np.full_like(tiles[0], 255)
  tiles += [blank] * (-len(tiles) % columns)
  rows = [np.concatenate(tiles[i : i + columns], axis=1) for i in range(0, len(tiles), columns)]
  body = np.concatenate(rows, axis=0)
  return np.concatenate([body, legend(body.shape[1])], axis=0)


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default="synthetic_examples.png")
  parser.add_argument("--split", default="train")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--image-size", type=int, default=256)
  parser.add_argument("--count", type=int, default=6, help="records generated")
  parser.add_argument("--pick", default="", help="comma-separated indices of the records to show (default: all)")
  parser.add_argument("--bits", type=int, default=8, help="bits per channel kept in the PNG")
  args = parser.parse_args(argv)
  records = list(synthetic.generate_split(args.split, args.count, seed=args.seed, image_size=args.image_size))
  if args.pick:
    records = [records[int(i)] for i in args.pick.split(",")]
  figure = grid(records)
  if args.bits < 8:
    drop = 8 - args.bits
    figure = ((figure >> drop) << drop) + (1 << (drop - 1))
  cv2.imwrite(args.out, cv2.cvtColor(figure.astype(np.uint8), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])


if __name__ == "__main__":
  main()
