"""Seeded synthetic facial-skin patches with acne lesions of the 10 AcneSCU categories.

The default data set of ``acne_jax``: it is generated on the machine (NumPy + OpenCV, no
download) and is small enough for a CPU to train a detector on in minutes. Each lesion class
has its own look (colour, contrast, size range, boundary sharpness, relief), so a detector can
learn it; the looks are drawn from the clinical descriptions, not copied from any image.

Rendering model (all in float32 RGB in ``[0, 1]``): a skin albedo (patient skin tone, low- and
mid-frequency blotches, pores, fine texture) is modified lesion by lesion inside a soft
polygon mask (colour blend + relief shading from a height map lit from the top left); then a
smooth illumination field multiplies the whole image, a mild Gaussian blur and sensor noise
are applied, and the image is quantised to uint8.

Layout of a generated record (``acne_jax.data.records.to_tfds_example`` stores it in the common
schema of :mod:`acne_jax.data.records`)::

  {"image": uint8 [H, W, 3] RGB,
   "image_id": int, "file_name": str, "patient_id": str,
   "crop_origin": int32 [2]  (x, y of the patch in its source image; (0, 0) here),
   "objects": {"bbox": float32 [K, 4]  x1, y1, x2, y2 pixels, no +1,
               "label": int64 [K]  in 0..9 (index into ``CLASS_NAMES``),
               "area": float32 [K]  bbox area (x2 - x1) * (y2 - y1),
               "polygon": list of K float32 [2 * V_k] flat [x0, y0, x1, y1, ...]}}

Polygon coordinates are continuous pixel coordinates: pixel ``(i, j)`` (row, column) covers
``[j, j + 1] x [i, i + 1]``, so a polygon lies inside ``[0, W] x [0, H]`` and its box is its
tight bounds.

Splits are made by "patient": patient ``k`` (for a seed) has 1-4 images sharing one skin tone,
and belongs to exactly one split, fixed by ``(seed, k)`` alone, so the splits are disjoint in
patients whatever the requested image counts.
"""

from __future__ import annotations

import dataclasses
import json
import os
import math
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from acne_jax.data.records import ACNE_SCU_CLASS_NAMES as CLASS_NAMES  # the ten AcneSCU classes

NUM_CLASSES = len(CLASS_NAMES)

# Relative lesion frequencies, ordered like AcneSCU's (closed comedones, papules, atrophic
# scars, open comedones and melasma most common; nodules and hypertrophic scars rarest), but
# with every class frequent enough to be learnt from a few hundred images.
DEFAULT_CLASS_WEIGHTS: Tuple[float, ...] = (
    0.21,  # closed_comedo
    0.11,  # open_comedo
    0.16,  # papule
    0.08,  # pustule
    0.04,  # nodule
    0.13,  # atrophic_scar
    0.04,  # hypertrophic_scar
    0.08,  # melasma
    0.08,  # nevus
    0.07,  # other
)

# Default image counts per split (the "s256" configuration).
DEFAULT_SPLIT_SIZES: Dict[str, int] = {"train": 480, "validation": 48, "test": 96}
# Probability that a patient belongs to each split (proportional to the default counts).
_SPLIT_PROBS: Dict[str, float] = {"train": 0.77, "validation": 0.08, "test": 0.15}
SPLITS: Tuple[str, ...] = ("train", "validation", "test")
MAX_IMAGES_PER_PATIENT = 4
MIN_BOX_SIDE = 4.0  # lesions whose clipped box is narrower or lower than this are dropped
MAX_BOX_IOU = 0.1  # a placement overlapping an earlier lesion's box more than this is rejected

# Skin-tone anchors (sRGB in [0, 1]) from very light to very dark, interpolated by a scalar.
_SKIN_TONES = np.array(
    [
        [0.96, 0.83, 0.75],
        [0.91, 0.75, 0.64],
        [0.82, 0.63, 0.50],
        [0.68, 0.49, 0.37],
        [0.50, 0.35, 0.25],
        [0.34, 0.23, 0.17],
    ],
    dtype=np.float32,
)


@dataclasses.dataclass(frozen=True)
class _ClassStyle:
  """Geometry of one lesion class (appearance is in its renderer)."""

  size: Tuple[float, float]  # range of the nominal sqrt(box area), px (log-uniform)
  aspect: Tuple[float, float]  # range of the major/minor axis ratio
  irregularity: float  # std of the relative radial perturbation of the outline


_STYLES: Tuple[_ClassStyle, ...] = (
    _ClassStyle(size=(7.0, 15.0), aspect=(1.0, 1.3), irregularity=0.06),  # closed_comedo
    _ClassStyle(size=(7.0, 15.0), aspect=(1.0, 1.3), irregularity=0.06),  # open_comedo
    _ClassStyle(size=(10.0, 25.0), aspect=(1.0, 1.4), irregularity=0.08),  # papule
    _ClassStyle(size=(10.0, 24.0), aspect=(1.0, 1.3), irregularity=0.07),  # pustule
    _ClassStyle(size=(25.0, 45.0), aspect=(1.0, 1.5), irregularity=0.08),  # nodule
    _ClassStyle(size=(8.0, 28.0), aspect=(1.0, 1.8), irregularity=0.18),  # atrophic_scar
    _ClassStyle(size=(15.0, 38.0), aspect=(1.8, 3.5), irregularity=0.14),  # hypertrophic_scar
    _ClassStyle(size=(35.0, 70.0), aspect=(1.0, 1.8), irregularity=0.22),  # melasma
    _ClassStyle(size=(7.0, 18.0), aspect=(1.0, 1.25), irregularity=0.04),  # nevus
    _ClassStyle(size=(7.0, 28.0), aspect=(1.0, 2.0), irregularity=0.15),  # other
)

_LIGHT = np.array([-1.0, -1.0], dtype=np.float32) / math.sqrt(2.0)  # light from the top left

RngLike = Union[np.random.Generator, int, Sequence[int]]


def _as_rng(rng: RngLike) -> np.random.Generator:
  if isinstance(rng, np.random.Generator):
    return rng
  return np.random.default_rng(rng)


def _as_hw(image_size: Union[int, Tuple[int, int]]) -> Tuple[int, int]:
  if isinstance(image_size, (int, np.integer)):
    return int(image_size), int(image_size)
  height, width = image_size
  return int(height), int(width)


def skin_tone(t: float) -> np.ndarray:
  """Skin colour for a tone scalar ``t`` in [0, 1] (0: very light, 1: very dark).

  Returns:
    ``[3]`` float32 sRGB in [0, 1].
  """
  t = float(np.clip(t, 0.0, 1.0)) * (len(_SKIN_TONES) - 1)
  i = min(int(t), len(_SKIN_TONES) - 2)
  f = t - i
  return ((1.0 - f) * _SKIN_TONES[i] + f * _SKIN_TONES[i + 1]).astype(np.float32)


def sample_skin(rng: np.random.Generator) -> np.ndarray:
  """A random patient skin colour, light to dark (``[3]`` float32 sRGB in [0, 1])."""
  base = skin_tone(rng.beta(1.5, 2.0))
  jitter = np.array([rng.normal(0.0, 0.015), rng.normal(0.0, 0.015), rng.normal(0.0, 0.02)])
  return np.clip(base + jitter, 0.05, 1.0).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Geometry.


def _random_polygon(rng: np.random.Generator, cx: float, cy: float, size: float, style: _ClassStyle) -> np.ndarray:
  """An irregular polygon: a rotated ellipse whose radii are randomly, smoothly perturbed.

  Returns:
    ``[V, 2]`` float64 (x, y) vertices, V in [8, 24], counter-clockwise in image axes.
  """
  num_vertices = int(rng.integers(8, 25))
  aspect = rng.uniform(*style.aspect)
  radius = 0.5 * size  # ellipse with semi-axes r * sqrt(a), r / sqrt(a): sqrt(box area) ~ 2 r
  rx, ry = radius * math.sqrt(aspect), radius / math.sqrt(aspect)
  angles = np.sort(rng.uniform(0.0, 2.0 * math.pi, num_vertices))
  angles = 0.6 * angles + 0.4 * np.linspace(0.0, 2.0 * math.pi, num_vertices, endpoint=False)
  noise = rng.normal(0.0, style.irregularity, num_vertices)
  noise = 0.5 * noise + 0.25 * (np.roll(noise, 1) + np.roll(noise, -1))  # smooth along the outline
  scale = np.clip(1.0 + noise, 0.55, 1.5)
  theta = rng.uniform(0.0, math.pi)
  x = rx * np.cos(angles) * scale
  y = ry * np.sin(angles) * scale
  xr = cx + x * math.cos(theta) - y * math.sin(theta)
  yr = cy + x * math.sin(theta) + y * math.cos(theta)
  return np.stack([xr, yr], axis=1)


def clip_polygon(polygon: np.ndarray, width: float, height: float) -> np.ndarray:
  """Clip a polygon to the rectangle ``[0, width] x [0, height]`` (Sutherland-Hodgman).

  Args:
    polygon: ``[V, 2]`` (x, y) vertices of a simple polygon.

  Returns:
    ``[V', 2]`` float64 vertices of the clipped polygon (``V' = 0`` if nothing is inside).
  """
  points = [tuple(p) for p in np.asarray(polygon, np.float64)]
  for axis, bound, keep_below in ((0, 0.0, False), (0, float(width), True), (1, 0.0, False), (1, float(height), True)):
    if not points:
      break

    def inside(p):
      return p[axis] <= bound if keep_below else p[axis] >= bound

    def cross(p, q):
      t = (bound - p[axis]) / (q[axis] - p[axis])
      r = [p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1])]
      r[axis] = bound
      return tuple(r)

    out = []
    for i, q in enumerate(points):
      p = points[i - 1]
      if inside(q):
        if not inside(p):
          out.append(cross(p, q))
        out.append(q)
      elif inside(p):
        out.append(cross(p, q))
    points = out
  return np.asarray(points, np.float64).reshape(-1, 2)


def polygon_box(polygon: np.ndarray) -> np.ndarray:
  """Tight x1y1x2y2 bounds of ``[V, 2]`` vertices (``[4]`` float64)."""
  return np.concatenate([polygon.min(axis=0), polygon.max(axis=0)])


def _box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
  if len(boxes) == 0:
    return np.zeros((0,))
  tl = np.maximum(box[:2], boxes[:, :2])
  br = np.minimum(box[2:], boxes[:, 2:])
  inter = np.prod(np.clip(br - tl, 0.0, None), axis=1)
  area = np.prod(box[2:] - box[:2])
  areas = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
  return inter / (area + areas - inter)


_SHIFT = 4  # sub-pixel bits for cv2.fillPoly


def polygon_mask(polygon: np.ndarray, height: int, width: int, origin: Tuple[int, int] = (0, 0), antialias: bool = True) -> np.ndarray:
  """Rasterise a polygon.

  Args:
    polygon: ``[V, 2]`` (x, y) continuous pixel coordinates (pixel centres at ``j + 0.5``).
    height, width: size of the raster.
    origin: (x, y) of the raster's top-left corner in the polygon's coordinates.
    antialias: soft (anti-aliased) edges if True, else a hard 0/1 mask.

  Returns:
    ``[height, width]`` float32 coverage in [0, 1].
  """
  mask = np.zeros((height, width), np.uint8)
  pts = np.asarray(polygon, np.float64) - np.asarray(origin, np.float64) - 0.5
  pts = np.round(pts * (1 << _SHIFT)).astype(np.int32)
  cv2.fillPoly(mask, [pts], 255, lineType=cv2.LINE_AA if antialias else cv2.LINE_8, shift=_SHIFT)
  return mask.astype(np.float32) / 255.0


# --------------------------------------------------------------------------------------------
# Skin.


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cells: int, channels: int = 1) -> np.ndarray:
  """Smooth random field ``[height, width, channels]`` float32, ~unit std, ~``cells`` bumps per side."""
  cells = max(int(cells), 2)
  gh = max(2, int(round(cells * height / max(height, width))))
  gw = max(2, int(round(cells * width / max(height, width))))
  grid = rng.normal(0.0, 1.0, (gh, gw, channels)).astype(np.float32)
  field = cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
  return field.reshape(height, width, channels)


def _skin_albedo(rng: np.random.Generator, height: int, width: int, skin: np.ndarray) -> np.ndarray:
  """Skin reflectance ``[H, W, 3]`` float32: tone, blotches, redness, pores and fine texture."""
  redness_dir = np.array([0.15, -0.6, -0.5], np.float32)
  low = _smooth_noise(rng, height, width, cells=3, channels=2)
  mid = _smooth_noise(rng, height, width, cells=max(6, width // 24), channels=2)
  brightness = 1.0 + 0.05 * low[..., 0] + 0.025 * mid[..., 0]
  albedo = skin[None, None, :] * brightness[..., None]
  redness = np.maximum(0.03 * low[..., 1] + 0.015 * mid[..., 1] + rng.uniform(0.0, 0.03), 0.0)
  albedo = albedo * (1.0 + redness[..., None] * redness_dir)
  # Pores: sparse dark dots blurred into ~1.5-2.5 px spots.
  density = rng.uniform(1.0 / 160.0, 1.0 / 80.0)
  num_pores = rng.poisson(density * height * width)
  pores = np.zeros((height, width), np.float32)
  ys = rng.integers(0, height, num_pores)
  xs = rng.integers(0, width, num_pores)
  pores[ys, xs] = rng.uniform(0.6, 1.6, num_pores).astype(np.float32)
  pores = cv2.GaussianBlur(pores, (0, 0), rng.uniform(0.7, 0.95))
  pore_depth = rng.uniform(0.25, 0.45)
  albedo = albedo * (1.0 - np.clip(pore_depth * pores, 0.0, 0.6))[..., None]
  # Fine texture: blurred multiplicative noise plus a few faint skin lines.
  texture = cv2.GaussianBlur(rng.standard_normal((height, width), dtype=np.float32), (0, 0), 0.8)
  albedo = albedo * (1.0 + 0.035 * texture)[..., None]
  lines = np.zeros((height, width), np.float32)
  for _ in range(int(rng.integers(2, 7)) * max(1, (height * width) // (256 * 256))):
    x0, y0 = rng.uniform(0, width), rng.uniform(0, height)
    angle = rng.uniform(0, math.pi)
    length = rng.uniform(0.2, 0.6) * max(height, width)
    x1, y1 = x0 + length * math.cos(angle), y0 + length * math.sin(angle)
    cv2.line(lines, (int(x0 * 16), int(y0 * 16)), (int(x1 * 16), int(y1 * 16)), float(rng.uniform(0.3, 1.0)), 1, cv2.LINE_AA, shift=4)
  lines = cv2.GaussianBlur(lines, (0, 0), 0.7)
  albedo = albedo * (1.0 - 0.06 * lines)[..., None]
  return albedo.astype(np.float32)


def _illumination(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
  """Smooth illumination ``[H, W]`` float32 around 1: a linear gradient, a soft falloff, blotches."""
  yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
  xx = xx / width - 0.5
  yy = yy / height - 0.5
  angle = rng.uniform(0.0, 2.0 * math.pi)
  gradient = rng.uniform(0.0, 0.3) * (xx * math.cos(angle) + yy * math.sin(angle))
  cx, cy = rng.uniform(-0.3, 0.3, 2)
  falloff = -rng.uniform(0.0, 0.35) * ((xx - cx) ** 2 + (yy - cy) ** 2)
  field = 1.0 + gradient + falloff + 0.03 * _smooth_noise(rng, height, width, cells=2)[..., 0]
  return (field * rng.uniform(0.9, 1.08)).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Lesions.


@dataclasses.dataclass
class _Patch:
  """Local rendering context of one lesion: views and maps over its bounding patch."""

  albedo: np.ndarray  # [h, w, 3] view into the image albedo (modified in place)
  mask: np.ndarray  # [h, w] anti-aliased polygon coverage
  depth: np.ndarray  # [h, w] normalised distance to the outline inside the polygon, 1 at the core
  skin: np.ndarray  # [3] local mean skin colour around the lesion
  size: float  # nominal sqrt(box area), px
  centroid: Tuple[float, float]  # (x, y) in patch coordinates


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
  if sigma < 0.3:
    return x
  return cv2.GaussianBlur(x, (0, 0), float(sigma))


def _blend(p: _Patch, colour: np.ndarray, alpha: np.ndarray) -> None:
  """albedo <- albedo * (1 - alpha) + colour * alpha; ``colour`` [3] or [h, w, 3]."""
  a = np.clip(alpha, 0.0, 1.0)[..., None]
  p.albedo[...] = p.albedo * (1.0 - a) + np.asarray(colour, np.float32) * a


def _tint(p: _Patch, factor: np.ndarray, alpha: np.ndarray) -> None:
  """Multiply the albedo by ``factor`` [3] with strength ``alpha`` (keeps the skin's texture)."""
  a = np.clip(alpha, 0.0, 1.0)[..., None]
  p.albedo[...] = p.albedo * (1.0 + a * (np.asarray(factor, np.float32) - 1.0))


def _shade(p: _Patch, height: np.ndarray, strength: float) -> None:
  """Relief shading of a height map (px) lit from the top left; negative heights are pits."""
  gy, gx = np.gradient(height)
  lambert = -(gx * _LIGHT[0] + gy * _LIGHT[1])  # > 0 on slopes facing the light
  p.albedo[...] = p.albedo * np.clip(1.0 + strength * lambert, 0.4, 1.6)[..., None]


def _dome(p: _Patch, power: float = 0.6) -> np.ndarray:
  return np.power(np.clip(p.depth, 0.0, 1.0), power)


def _specular(p: _Patch, rng: np.random.Generator, strength: float, radius_frac: float = 0.18) -> None:
  h, w = p.mask.shape
  cx, cy = p.centroid
  r = max(0.8, radius_frac * p.size)
  sx, sy = cx - 0.25 * p.size * rng.uniform(0.6, 1.0), cy - 0.25 * p.size * rng.uniform(0.6, 1.0)
  yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
  spot = np.exp(-((xx - sx) ** 2 + (yy - sy) ** 2) / (2.0 * r * r)) * p.mask
  p.albedo[...] = p.albedo + (strength * spot)[..., None] * np.array([1.0, 1.0, 0.97], np.float32)


def _closed_comedo(p: _Patch, rng: np.random.Generator) -> None:
  # Whitehead: faint, small, skin-coloured to whitish dome with a soft edge.
  alpha = _blur(p.mask, 0.12 * p.size + 0.4) * rng.uniform(0.5, 0.75) * (0.4 + 0.6 * _dome(p))
  whitish = 0.65 * np.minimum(p.skin * 1.12, 1.0) + 0.35 * np.array([0.97, 0.93, 0.84], np.float32)
  _blend(p, whitish, alpha)
  _shade(p, 0.22 * p.size * _blur(_dome(p, 0.7), 0.6), strength=0.45)


def _open_comedo(p: _Patch, rng: np.random.Generator) -> None:
  # Blackhead: small skin-coloured bump with a dark, fairly sharp plug in the middle.
  _tint(p, np.array([1.04, 1.02, 1.0]), _blur(p.mask, 0.15 * p.size) * 0.5)
  _shade(p, 0.15 * p.size * _blur(_dome(p, 0.7), 0.6), strength=0.3)
  core_radius = rng.uniform(0.35, 0.6)
  core = _blur((p.depth > 1.0 - core_radius).astype(np.float32), 0.45 + 0.03 * p.size)
  plug = np.array([0.16, 0.11, 0.08], np.float32) * rng.uniform(0.7, 1.4)
  _blend(p, np.minimum(plug, p.skin * 0.45), core * rng.uniform(0.75, 0.95))


def _papule(p: _Patch, rng: np.random.Generator, red: float = 1.0) -> None:
  # Inflammatory papule: red raised dome, erythema fading outwards.
  halo = _blur(p.mask, 0.25 * p.size) * rng.uniform(0.4, 0.6)
  _tint(p, np.array([1.02, 0.74, 0.76]), halo * red)
  core = _blur(p.mask, 0.12 * p.size + 0.5) * (0.35 + 0.65 * _dome(p)) * rng.uniform(0.6, 0.85)
  _tint(p, np.array([0.96, 0.5, 0.54]), core * red)
  _shade(p, 0.3 * p.size * _blur(_dome(p, 0.8), 0.1 * p.size), strength=0.3)
  _specular(p, rng, rng.uniform(0.04, 0.1))


def _pustule(p: _Patch, rng: np.random.Generator) -> None:
  # Pustule: red inflamed rim with a pale yellow-white pus head in the centre.
  _papule(p, rng)
  head = _blur((p.depth > rng.uniform(0.35, 0.55)).astype(np.float32), 0.06 * p.size + 0.4)
  pus = np.array([0.96, 0.92, 0.72], np.float32) * rng.uniform(0.93, 1.02)
  _blend(p, pus, head * rng.uniform(0.8, 0.95))
  _specular(p, rng, rng.uniform(0.08, 0.15), radius_frac=0.1)


def _nodule(p: _Patch, rng: np.random.Generator) -> None:
  # Nodule: large, deep red to violaceous, diffuse edge, strongly raised.
  halo = _blur(p.mask, 0.3 * p.size) * rng.uniform(0.3, 0.45)
  _tint(p, np.array([1.0, 0.7, 0.72]), halo)
  body = _blur(p.mask, 0.16 * p.size) * (0.35 + 0.65 * _dome(p, 0.8)) * rng.uniform(0.7, 0.9)
  _tint(p, np.array([0.78, 0.36, 0.42]) * rng.uniform(0.9, 1.05), body)
  _shade(p, 0.35 * p.size * _blur(_dome(p, 0.9), 0.1 * p.size), strength=0.35)
  _specular(p, rng, rng.uniform(0.03, 0.07), radius_frac=0.25)


def _atrophic_scar(p: _Patch, rng: np.random.Generator) -> None:
  # Atrophic (boxcar / rolling) scar: a shadowed depression with an irregular, fairly crisp rim.
  alpha = _blur(p.mask, 0.08 * p.size + 0.5)
  _tint(p, np.array([0.85, 0.79, 0.79]) * rng.uniform(0.96, 1.03), alpha * rng.uniform(0.55, 0.85))
  pit = -0.25 * p.size * _blur(np.power(np.clip(p.depth, 0.0, 1.0), rng.uniform(0.4, 0.7)), 0.04 * p.size + 0.6)
  _shade(p, pit, strength=0.38)


def _hypertrophic_scar(p: _Patch, rng: np.random.Generator) -> None:
  # Hypertrophic scar: elongated, pinkish, shiny, raised ridge with an irregular outline.
  alpha = _blur(p.mask, 0.07 * p.size + 0.4) * rng.uniform(0.7, 0.9)
  pink = 0.5 * np.minimum(p.skin * np.array([1.12, 0.86, 0.88]), 1.0) + 0.5 * np.array([0.9, 0.6, 0.62], np.float32)
  _blend(p, pink, alpha)
  _shade(p, 0.2 * p.size * _blur(_dome(p, 0.6), 0.05 * p.size + 0.6), strength=0.3)
  _specular(p, rng, rng.uniform(0.06, 0.12), radius_frac=0.2)


def _melasma(p: _Patch, rng: np.random.Generator) -> None:
  # Melasma: large, flat, diffuse light-to-mid brown patch, mottled, low contrast.
  h, w = p.mask.shape
  mottle = 0.65 + 0.35 * np.clip(_smooth_noise(rng, h, w, cells=max(3, int(p.size / 8)))[..., 0], -1.0, 1.0)
  alpha = _blur(p.mask, 0.12 * p.size) * mottle * rng.uniform(0.65, 0.9)
  _tint(p, np.array([0.76, 0.62, 0.5]), alpha)


def _nevus(p: _Patch, rng: np.random.Generator) -> None:
  # Melanocytic nevus: dark brown, sharp-edged, round, slightly raised, even colour.
  alpha = _blur(p.mask, 0.4) * rng.uniform(0.88, 0.98)
  brown = 0.5 * p.skin * np.array([0.42, 0.3, 0.25], np.float32) + 0.5 * np.array([0.27, 0.16, 0.11], np.float32)
  brown = brown * rng.uniform(0.75, 1.2)
  _blend(p, brown, alpha)
  _shade(p, 0.12 * p.size * _blur(_dome(p, 0.5), 0.5), strength=0.35)


def _other(p: _Patch, rng: np.random.Generator) -> None:
  # "Other": a mix of less common findings (milium, crust / excoriation, bruise-like macule,
  # yellowish sebaceous papule), deliberately ambiguous.
  kind = int(rng.integers(0, 4))
  if kind == 0:  # milium / sebaceous cyst: sharp, white to ivory
    _blend(p, np.array([0.96, 0.94, 0.88], np.float32), _blur(p.mask, 0.5) * rng.uniform(0.55, 0.8))
    _shade(p, 0.15 * p.size * _dome(p), strength=0.3)
  elif kind == 1:  # crust / excoriation: dark red-brown, irregular, rough
    h, w = p.mask.shape
    rough = 0.75 + 0.25 * np.clip(rng.normal(0.0, 1.0, (h, w)).astype(np.float32), -2.0, 2.0) / 2.0
    crust = np.array([0.5, 0.25, 0.16], np.float32) * rng.uniform(0.7, 1.1)
    _blend(p, np.minimum(crust, p.skin * 0.8), _blur(p.mask, 0.6) * rough * rng.uniform(0.7, 0.9))
  elif kind == 2:  # bruise-like violaceous macule, flat and diffuse
    _tint(p, np.array([0.78, 0.66, 0.82]), _blur(p.mask, 0.12 * p.size) * rng.uniform(0.5, 0.75))
  else:  # yellowish sebaceous papule with a central dell
    _blend(p, np.array([0.93, 0.85, 0.6], np.float32) * p.skin.mean() / 0.75, _blur(p.mask, 0.1 * p.size) * rng.uniform(0.4, 0.6))
    _shade(p, 0.2 * p.size * (_dome(p, 0.6) - 0.8 * (p.depth > 0.8)), strength=0.35)


_RENDERERS = (
    _closed_comedo,
    _open_comedo,
    _papule,
    _pustule,
    _nodule,
    _atrophic_scar,
    _hypertrophic_scar,
    _melasma,
    _nevus,
    _other,
)


def _render_lesion(albedo: np.ndarray, label: int, polygon: np.ndarray, size: float, rng: np.random.Generator) -> None:
  """Draw one lesion into ``albedo`` ([H, W, 3] float32, modified in place)."""
  height, width = albedo.shape[:2]
  box = polygon_box(polygon)
  pad = int(math.ceil(0.6 * size + 3))
  x0, y0 = max(int(math.floor(box[0])) - pad, 0), max(int(math.floor(box[1])) - pad, 0)
  x1, y1 = min(int(math.ceil(box[2])) + pad, width), min(int(math.ceil(box[3])) + pad, height)
  if x1 <= x0 or y1 <= y0:
    return
  view = albedo[y0:y1, x0:x1]
  mask = polygon_mask(polygon, y1 - y0, x1 - x0, origin=(x0, y0))
  hard = (mask >= 0.5).astype(np.uint8)
  dist = cv2.distanceTransform(hard, cv2.DIST_L2, 3) if hard.any() else np.zeros(hard.shape, np.float32)
  depth = dist / max(float(dist.max()), 1e-6)
  ring = _blur(mask, 0.6 * size)
  around = (ring > 0.02) & (mask < 0.05)
  skin = view[around].mean(axis=0) if around.any() else view.reshape(-1, 3).mean(axis=0)
  centroid = polygon.mean(axis=0) - np.array([x0, y0])
  patch = _Patch(albedo=view, mask=mask, depth=depth.astype(np.float32), skin=skin.astype(np.float32), size=float(size), centroid=(float(centroid[0]), float(centroid[1])))
  _RENDERERS[label](patch, rng)


# --------------------------------------------------------------------------------------------
# Examples and splits.


def _empty_objects() -> Dict[str, Any]:
  return {
      "bbox": np.zeros((0, 4), np.float32),
      "label": np.zeros((0,), np.int64),
      "area": np.zeros((0,), np.float32),
      "polygon": [],
  }


def generate_example(
    rng: RngLike,
    image_size: Union[int, Tuple[int, int]] = 256,
    num_lesions: Union[int, Tuple[int, int]] = (6, 20),
    class_weights: Optional[Sequence[float]] = None,
    skin: Optional[np.ndarray] = None,
    lesion_scale: float = 1.0,
    image_id: int = 0,
    file_name: str = "",
    patient_id: str = "",
) -> Dict[str, Any]:
  """One synthetic skin patch with lesions.

  Args:
    rng: a ``np.random.Generator`` (consumed) or a seed (int or sequence of ints).
    image_size: ``S`` for ``S x S`` or ``(H, W)``.
    num_lesions: exact count or inclusive ``(min, max)`` range of lesions to place (fewer may
      remain after rejecting overlapping placements and dropping lesions under 4 px).
    class_weights: ``[10]`` relative class frequencies (default ``DEFAULT_CLASS_WEIGHTS``).
    skin: ``[3]`` float sRGB skin colour in [0, 1] (default: random, light to dark).
    lesion_scale: multiplies every lesion's size range (e.g. 2 for images at twice the zoom).
    image_id, file_name, patient_id: copied into the record.

  Returns:
    A record (see the module docstring): ``image`` uint8 ``[H, W, 3]`` RGB and ``objects``
    with ``bbox`` float32 ``[K, 4]`` x1y1x2y2 pixels, ``label`` int64 ``[K]``, ``area``
    float32 ``[K]`` and ``polygon`` a list of ``K`` float32 ``[2 V]`` arrays. Lesions are
    ordered as drawn (largest first).
  """
  rng = _as_rng(rng)
  height, width = _as_hw(image_size)
  weights = np.asarray(DEFAULT_CLASS_WEIGHTS if class_weights is None else class_weights, np.float64)
  if weights.shape != (NUM_CLASSES,) or weights.min() < 0 or weights.sum() <= 0:
    raise ValueError(f"generate_example: class_weights must be {NUM_CLASSES} non-negative numbers, got {class_weights}.")
  weights = weights / weights.sum()
  if skin is None:
    skin = sample_skin(rng)
  skin = np.asarray(skin, np.float32)
  if isinstance(num_lesions, (int, np.integer)):
    count = int(num_lesions)
  else:
    count = int(rng.integers(num_lesions[0], num_lesions[1] + 1))

  albedo = _skin_albedo(rng, height, width, skin)

  # Place lesions: sample class, size and position, reject placements overlapping earlier ones.
  labels = rng.choice(NUM_CLASSES, size=count, p=weights)
  placed: List[Tuple[int, np.ndarray, float]] = []
  boxes: List[np.ndarray] = []
  for label in labels:
    style = _STYLES[label]
    lo, hi = style.size
    for _ in range(25):
      size = lesion_scale * math.exp(rng.uniform(math.log(lo), math.log(hi)))
      margin = 0.3 * size
      cx = rng.uniform(margin, width - margin) if width > 2 * margin else width / 2
      cy = rng.uniform(margin, height - margin) if height > 2 * margin else height / 2
      polygon = clip_polygon(_random_polygon(rng, cx, cy, size, style), width, height)
      if len(polygon) < 3:
        continue
      box = polygon_box(polygon)
      if box[2] - box[0] < MIN_BOX_SIDE or box[3] - box[1] < MIN_BOX_SIDE:
        continue
      if boxes and _box_iou(box, np.stack(boxes)).max() > MAX_BOX_IOU:
        continue
      placed.append((int(label), polygon, size))
      boxes.append(box)
      break

  # Draw the largest first so small lesions sit on top of large diffuse ones (e.g. melasma).
  order = sorted(range(len(placed)), key=lambda i: -placed[i][2])
  objects = _empty_objects()
  polygons = []
  out_boxes, out_labels = [], []
  for i in order:
    label, polygon, size = placed[i]
    _render_lesion(albedo, label, polygon, size, rng)
    flat = polygon.astype(np.float32)
    polygons.append(flat.reshape(-1))
    out_boxes.append(polygon_box(flat.astype(np.float64)))
    out_labels.append(label)
  if order:
    objects["bbox"] = np.asarray(out_boxes, np.float32).reshape(-1, 4)
    objects["label"] = np.asarray(out_labels, np.int64)
    objects["area"] = ((objects["bbox"][:, 2] - objects["bbox"][:, 0]) * (objects["bbox"][:, 3] - objects["bbox"][:, 1])).astype(np.float32)
    objects["polygon"] = polygons

  image = albedo * _illumination(rng, height, width)[..., None]
  image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.45, 0.8))
  image = image + np.float32(rng.uniform(0.004, 0.012)) * rng.standard_normal(image.shape, dtype=np.float32)
  image = np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)
  return {
      "image": image,
      "image_id": int(image_id),
      "file_name": str(file_name),
      "patient_id": str(patient_id),
      "crop_origin": np.zeros((2,), np.int32),
      "objects": objects,
  }


@dataclasses.dataclass(frozen=True)
class Patient:
  """A generated patient: its split, skin colour and number of images."""

  index: int
  patient_id: str
  split: str
  skin: np.ndarray  # [3] float32 sRGB
  num_images: int


def patient(seed: int, index: int) -> Patient:
  """Patient ``index`` of the population for ``seed`` (a pure function of both)."""
  rng = np.random.default_rng([int(seed), int(index), 0x5A11])
  u = rng.uniform()
  split = SPLITS[-1]
  cumulative = 0.0
  for name in SPLITS:
    cumulative += _SPLIT_PROBS[name]
    if u < cumulative:
      split = name
      break
  skin = sample_skin(rng)
  num_images = int(rng.integers(1, MAX_IMAGES_PER_PATIENT + 1))
  return Patient(index=int(index), patient_id=f"p{int(index):05d}", split=split, skin=skin, num_images=num_images)


def generate_split(
    split: str,
    num_images: Optional[int] = None,
    seed: int = 0,
    image_size: Union[int, Tuple[int, int]] = 256,
    **example_kwargs: Any,
) -> Iterator[Dict[str, Any]]:
  """Records of one split, patient by patient.

  Patients ``0, 1, 2, ...`` of ``seed`` are visited in order; those whose split is ``split``
  contribute all their images until ``num_images`` records have been produced (the last
  patient may be cut short). The output is a pure function of the arguments, and a split's
  first ``n`` records are the same whatever the total count.

  Args:
    split: "train", "validation" or "test".
    num_images: records to produce (default ``DEFAULT_SPLIT_SIZES[split]``).
    seed: data set seed.
    image_size: ``S`` or ``(H, W)``.
    **example_kwargs: passed to ``generate_example`` (``num_lesions``, ``class_weights``,
      ``lesion_scale``).

  Yields:
    Records (module docstring) with ``image_id = 4 * patient_index + image_index`` (unique
    across splits), ``file_name`` "synthetic_s{seed}_p{patient:05d}_{image}.png" and
    ``patient_id`` "p{patient:05d}".
  """
  if split not in SPLITS:
    raise ValueError(f"generate_split: split must be one of {SPLITS}, got {split!r}.")
  if num_images is None:
    num_images = DEFAULT_SPLIT_SIZES[split]
  for p, j in images_of_split(split, num_images, seed):
    rng = np.random.default_rng([int(seed), p.index, j + 1])
    yield generate_example(
        rng,
        image_size=image_size,
        skin=p.skin,
        image_id=MAX_IMAGES_PER_PATIENT * p.index + j,
        file_name=f"synthetic_s{int(seed)}_{p.patient_id}_{j}.png",
        patient_id=p.patient_id,
        **example_kwargs,
    )




def images_of_split(split: str, num_images: int, seed: int = 0) -> Iterator[Tuple[Patient, int]]:
  """``(patient, image index)`` of a split's first ``num_images`` images: patients ``0, 1, ...``
  of ``seed`` in order, those of ``split`` with all their images (the last one cut short)."""
  produced, index = 0, 0
  while produced < num_images:
    p = patient(seed, index)
    index += 1
    if p.split != split:
      continue
    for j in range(p.num_images):
      if produced >= num_images:
        return
      yield p, j
      produced += 1


def _release_split_counts(num_images: int) -> Dict[str, int]:
  """Images per split of :func:`write_labelme_release`: the AcneSCU builder's default shares
  (10 % test, 5 % validation, rounded), at least one each while there are images, the rest train."""
  from acne_jax.data import labelme  # imports this module

  test = min(num_images, max(1, round(labelme.DEFAULT_TEST_FRACTION * num_images)))
  validation = min(num_images - test, max(1, round(labelme.DEFAULT_VALIDATION_FRACTION * num_images)))
  return {"train": num_images - test - validation, "validation": validation, "test": test}


def _patient_name_in_split(patient_id: str, split: str) -> str:
  """``patient_id`` plus the shortest suffix ``a``, ``b``, ..., ``z``, ``aa``, ... (or none) that
  ``labelme.split_of`` assigns to ``split``."""
  from acne_jax.data import labelme  # imports this module

  for n in range(100000):
    suffix = ""
    k = n
    while k:
      k -= 1
      suffix = chr(ord("a") + k % 26) + suffix
      k //= 26
    if labelme.split_of(patient_id + suffix) == split:
      return patient_id + suffix
  raise RuntimeError(f"no patient name for split {split!r}")  # unreachable: each split has a non-zero share


def write_labelme_release(
    root: str,
    num_images: int = 12,
    seed: int = 0,
    image_size: Union[int, Tuple[int, int]] = (1200, 1600),
    jpeg_quality: int = 95,
    **example_kwargs: Any,
) -> List[str]:
  """Writes generated images as an AcneSCU release: LabelMe JSON + JPEG pairs in ``root``.

  This lets the synthetic data go through exactly the AcneSCU path (the ``acne_scu`` builder's
  parsing, clipping, masked crops and patient split)::

    write_labelme_release("/tmp/fake_scu", num_images=20, image_size=(2048, 3072))
    python -m tfds_builders.build --dataset=acne_scu --config=crops_1024 --manual_dir=/tmp/fake_scu

  Files are named like AcneSCU's, ``S__p<patient><suffix>_<timestamp>_<view>.jpg``, so
  ``acne_jax.data.labelme.patient_of`` recovers the generated patient. Images of all three
  generated splits are written (``num_images`` shared as the builder's default split shares them,
  at least one image per split) and
  each patient's name gets the shortest letter suffix that makes the builder's default patient
  split (``labelme.split_of``) put it in its generated split: the builder then finds every
  split non-empty, even for three images.

  Returns:
    The JSON paths written.
  """
  os.makedirs(root, exist_ok=True)
  written = []
  counts = _release_split_counts(num_images)
  for split, count in counts.items():
    for record in generate_split(split, count, seed=seed, image_size=image_size, **example_kwargs):
      view = record["image_id"] % 4
      stem = f"S__{_patient_name_in_split(record['patient_id'], split)}_2026010{view}120000000_view{view}"
      image_path = os.path.join(root, stem + ".jpg")
      bgr = cv2.cvtColor(record["image"], cv2.COLOR_RGB2BGR)
      if not cv2.imwrite(image_path, bgr, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality]):
        raise OSError(f"could not write {image_path}")
      height, width = record["image"].shape[:2]
      shapes = [
          {"label": CLASS_NAMES[int(label)], "points": np.asarray(polygon, np.float64).reshape(-1, 2).tolist(),
           "group_id": None, "shape_type": "polygon", "flags": {}}
          for polygon, label in zip(record["objects"]["polygon"], record["objects"]["label"])
      ]
      annotation = {"version": "5.0.1", "flags": {}, "shapes": shapes, "imagePath": stem + ".jpg", "imageData": None,
                    "imageHeight": height, "imageWidth": width}
      json_path = os.path.join(root, stem + ".json")
      with open(json_path, "w", encoding="utf-8") as f:
        json.dump(annotation, f)
      written.append(json_path)
  return written
