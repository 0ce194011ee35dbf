"""Synthetic graded faces: the embedded data set of the acne severity graders (issue 14).

The grading paper (``shared/papers/iga_acne_severity_grading.md``) grades *visits*: at each visit
of a patient a dermatologist gives an IGA grade (0 clear ... 4 severe, its Table 1) and three
photos are taken, frontal, left and right profile; the photos are face-cropped and resized to
224 x 224. Its data are 1,347 visits of 391 patients (1-5 visits each), strongly imbalanced
(its Fig. 2 / Table 2: 12.3 % grade 0-1, 35.6 % grade 2, 52.1 % grade 3-4). This module makes such
visits on the machine, NumPy + OpenCV only, small enough to train a grader on a 2-core CPU:

- **Patients** (:class:`Identity`): head shape, skin tone, eyes, brows, lips, hair (short or long),
  background and clothes, and persistent marks (nevi, atrophic scars) that every visit shows.
- **Visits** (:func:`generate_visits`): 1-5 per patient (:data:`VISITS_PER_PATIENT_PROBS`, mean
  ~3.5 as the paper's), each with an IGA grade such that the set has :data:`GRADE_PROBS`
  (:func:`set_grades`; a patient's visits are correlated, and a patient can change grade between
  visits, as in the paper), lesions drawn by :func:`sample_lesion_counts`, and three
  views rendered from one face-surface lesion layout (a cheek lesion is seen in the frontal and
  the matching profile view).
- **Lesion counts** (:data:`GRADE_RULES`) follow the IGA definitions and agree with Hayashi's
  count of inflammatory lesions (papules, pustules and nodules, ``acne_jax.grading.scales``):
  grade 0 has no inflammatory lesion; grade 1 a few (1-3) resolving papules, drawn faint and
  brownish ("hyperpigmented, not pink-red"); grade 2 a few papules/pustules (4-18), no nodule;
  grade 3 many (16-38) with at most two nodules; grade 4 more (36-66), with 1-4 nodules, larger and
  redder lesions and diffuse redness. Comedones, scars and healed red marks (Fig. 3's "healed but
  still red" confusers) come on top. The true counts by class are kept per visit (whole face)
  and per view (visible lesions, with their boxes), so a count-based (Hayashi) grade can be
  scored.

Rendering model. The head is an ellipsoid (half width ``a``) turned by a yaw angle: the view's
pixels are traced onto it analytically, giving each pixel a face-surface coordinate ``(p, q)``
(object ``X / a``, ``Y / a``; ``p > 0`` is the patient's left, ``q`` grows downwards) and a surface
normal for Lambert shading. Eyes, brows, lips, hair and lesion sites are drawn in ``(p, q)``, so
they turn with the head; the nose is a low-polygon solid in front of the surface, so it occludes
the far cheek in a profile view. Views: ``frontal`` (yaw within a few degrees of 0), ``left``
(the patient's left cheek towards the camera, nose pointing to the image's left) and ``right``
(the mirror). Profile views are three-quarter views (yaw :data:`PROFILE_YAW_DEG`), as clinical
photography's oblique views are, not 90 degree silhouettes: they must show the cheek. The skin
texture and the lesion looks are the easy set's (:mod:`acne_jax.data.synthetic`), lesions drawn
at face scale (:data:`LESION_SIZES`, fractions of ``a``).

Images are ``image_size`` square (default :data:`IMAGE_SIZE`), RGB uint8, the face covering about
55 % of the width; :func:`acne_jax.grading.face_crop.crop_face` cuts the 224 x 224 crop the grader
reads. :func:`write_grading_folder` writes the set as a user folder (images + ``grades.csv``, read
back by :func:`acne_jax.data.grades_csv.read_grades_csv`), the layout real data come in.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
from typing import Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import cv2
import numpy as np

from acne_jax.data import grades_csv
from acne_jax.data import synthetic

CLASS_NAMES: Tuple[str, ...] = tuple(synthetic.CLASS_NAMES)
_LABEL = {name: i for i, name in enumerate(CLASS_NAMES)}
INFLAMMATORY_CLASSES: Tuple[str, ...] = ("papule", "pustule", "nodule")
"""The lesions Hayashi counts (as ``acne_jax.grading.scales.INFLAMMATORY_CLASSES``)."""

VIEWS: Tuple[str, ...] = ("frontal", "left", "right")
IMAGE_SIZE = 352
IGA_GRADES: Tuple[int, ...] = (0, 1, 2, 3, 4)
GRADE_PROBS: Tuple[float, ...] = (0.030, 0.093, 0.356, 0.380, 0.141)
"""Share of visits per IGA grade: the paper's groups (Table 2: 12.32 % / 35.56 % / 52.12 %), split
inside the groups 0-1 and 3-4 by its Fig. 2 (grade 1 and grade 3 the larger halves)."""
VISITS_PER_PATIENT_PROBS: Tuple[float, ...] = (0.16, 0.14, 0.15, 0.17, 0.38)
"""Probability of 1, 2, 3, 4, 5 visits (mean 3.47; the paper: 1,347 visits / 391 patients = 3.45)."""
VISIT_GRADE_CORRELATION = 0.75
"""Correlation of a patient's visits' latent severities (visits change grade, as the paper's do)."""
PROFILE_YAW_DEG: Tuple[float, float] = (36.0, 48.0)
FRONTAL_YAW_DEG = 4.0
MIN_FACING = 0.35
"""A lesion shows in a view when the cosine between its surface normal and the camera is at least this."""

# Per IGA grade: inclusive count ranges of the whole face. "inflammatory" is papules + pustules
# (+ nodules, below); "pustule_share" the pustules' share of it. Comedones are closed + open.
GRADE_RULES: Dict[int, Dict[str, Tuple[float, float]]] = {
    0: {"inflammatory": (0, 0), "nodule": (0, 0), "comedo": (0, 8), "healed": (0, 3), "pustule_share": (0.0, 0.0)},
    1: {"inflammatory": (1, 3), "nodule": (0, 0), "comedo": (2, 14), "healed": (1, 5), "pustule_share": (0.0, 0.0)},
    2: {"inflammatory": (4, 18), "nodule": (0, 0), "comedo": (6, 24), "healed": (1, 6), "pustule_share": (0.15, 0.4)},
    3: {"inflammatory": (16, 38), "nodule": (0, 2), "comedo": (8, 32), "healed": (2, 8), "pustule_share": (0.2, 0.45)},
    4: {"inflammatory": (36, 66), "nodule": (1, 4), "comedo": (10, 40), "healed": (2, 8), "pustule_share": (0.25, 0.5)},
}
"""IGA grade -> count ranges. Inflammatory lesions (papules + pustules + nodules) therefore grow
with the grade and fall into Hayashi's bands: grade 0-1 <= 5 (Hayashi mild), grade 2 mostly
6-20 (moderate), grade 3 mostly 21-50 (severe), grade 4 mostly > 40 (severe to very severe)."""

LESION_SIZES: Dict[str, Tuple[float, float]] = {
    "closed_comedo": (0.030, 0.048),
    "open_comedo": (0.030, 0.048),
    "papule": (0.050, 0.085),
    "pustule": (0.050, 0.085),
    "nodule": (0.110, 0.160),
    "atrophic_scar": (0.040, 0.075),
    "hypertrophic_scar": (0.080, 0.130),
    "melasma": (0.220, 0.380),
    "nevus": (0.028, 0.050),
    "other": (0.050, 0.090),
}
"""Nominal lesion size (sqrt of the box area) as a fraction of the head's half width ``a``: a
papule of 3-5 mm on a ~14 cm wide face."""
HEALED = "healed"  # a healed lesion's red-brown mark; drawn, never counted as a lesion


# --------------------------------------------------------------------------------------------
# Patients.


@dataclasses.dataclass(frozen=True)
class Identity:
  """What stays the same across a patient's visits and views."""

  skin: np.ndarray  # [3] float32 sRGB
  head_width: float  # a / image width
  aspect: float  # b / a (head height over width)
  depth: float  # c / a
  centre: Tuple[float, float]  # head centre / image size (x, y)
  jaw: float  # how much the head narrows towards the chin (0: an ellipsoid)
  eye: Tuple[float, float, float, float]  # centre p, centre q, half width, half height (units of a)
  iris_colour: np.ndarray  # [3]
  brow: Tuple[float, float, float]  # q of the brow above the eye centre, thickness, arch
  lip_colour: np.ndarray  # [3]
  mouth: Tuple[float, float]  # q, half width
  nose: Tuple[float, float]  # length factor, width factor
  hair_colour: np.ndarray  # [3]
  hairline: float  # q of the hairline at the centre
  long_hair: bool
  background: Tuple[np.ndarray, np.ndarray]  # top, bottom colour
  clothes: np.ndarray  # [3]
  marks: Tuple[Tuple[str, float, float, float], ...]  # persistent (class, p, q, size): nevi, scars


def sample_identity(rng: np.random.Generator) -> Identity:
  """A random patient (see :class:`Identity`)."""
  hair_dark = rng.uniform()
  hair = np.float32([0.06, 0.045, 0.035]) if hair_dark < 0.6 else (
      np.float32([0.22, 0.14, 0.08]) * rng.uniform(0.7, 1.3) if hair_dark < 0.9 else np.float32([0.55, 0.42, 0.25]))
  wall = rng.uniform(0.35, 0.85)
  tint = rng.normal(0.0, 0.04, 3).astype(np.float32)
  top = np.clip(wall + tint, 0.1, 0.95).astype(np.float32)
  marks: List[Tuple[str, float, float, float]] = []
  for _ in range(int(rng.integers(0, 4))):
    p, q = _sample_site(rng)
    marks.append(("nevus", p, q, _size(rng, "nevus")))
  for _ in range(int(rng.poisson(1.0))):
    p, q = _sample_site(rng)
    marks.append(("atrophic_scar", p, q, _size(rng, "atrophic_scar")))
  return Identity(
      skin=synthetic.sample_skin(rng),
      head_width=float(rng.uniform(0.265, 0.30)),
      aspect=float(rng.uniform(1.22, 1.36)),
      depth=float(rng.uniform(0.95, 1.1)),
      centre=(float(rng.uniform(0.48, 0.52)), float(rng.uniform(0.43, 0.47))),
      jaw=float(rng.uniform(0.12, 0.28)),
      eye=(float(rng.uniform(0.38, 0.44)), float(rng.uniform(-0.06, 0.0)), float(rng.uniform(0.15, 0.18)),
           float(rng.uniform(0.06, 0.075))),
      iris_colour=(np.float32([0.18, 0.11, 0.07]) * rng.uniform(0.5, 1.4)).astype(np.float32),
      brow=(float(rng.uniform(0.17, 0.23)), float(rng.uniform(0.035, 0.055)), float(rng.uniform(0.02, 0.06))),
      lip_colour=(np.float32([0.72, 0.36, 0.36]) * rng.uniform(0.8, 1.1)).astype(np.float32),
      mouth=(float(rng.uniform(0.74, 0.82)), float(rng.uniform(0.25, 0.31))),
      nose=(float(rng.uniform(0.9, 1.1)), float(rng.uniform(0.9, 1.15))),
      hair_colour=hair.astype(np.float32),
      hairline=float(rng.uniform(-0.82, -0.68)),
      long_hair=bool(rng.uniform() < 0.45),
      background=(top, np.clip(top * rng.uniform(0.7, 1.0), 0.05, 0.95).astype(np.float32)),
      clothes=rng.uniform(0.1, 0.8, 3).astype(np.float32),
      marks=tuple(marks),
  )


# Where acne sits (units of a): forehead, both cheeks, chin, jaw; weights of each region.
_SITES = (
    (0.18, (-0.55, 0.55), (-0.62, -0.32)),  # forehead
    (0.30, (0.28, 0.82), (0.12, 0.72)),  # left cheek (p > 0)
    (0.30, (-0.82, -0.28), (0.12, 0.72)),  # right cheek
    (0.10, (-0.30, 0.30), (0.95, 1.15)),  # chin
    (0.12, (0.55, 0.88), (0.70, 1.02)),  # jaw (side chosen at random)
)


def _sample_site(rng: np.random.Generator) -> Tuple[float, float]:
  weights = np.array([s[0] for s in _SITES])
  k = int(rng.choice(len(_SITES), p=weights / weights.sum()))
  _, (p0, p1), (q0, q1) = _SITES[k]
  p, q = float(rng.uniform(p0, p1)), float(rng.uniform(q0, q1))
  if k == 4 and rng.uniform() < 0.5:
    p = -p
  return p, q


def _size(rng: np.random.Generator, name: str) -> float:
  lo, hi = LESION_SIZES[name]
  return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


# --------------------------------------------------------------------------------------------
# Lesions of a visit.


@dataclasses.dataclass(frozen=True)
class FaceLesion:
  """A lesion on the face surface: class (or ``"healed"``), site ``(p, q)`` in units of ``a``,
  size (fraction of ``a``) and contrast (1: the easy set's look; resolving papules are fainter)."""

  name: str
  p: float
  q: float
  size: float
  contrast: float = 1.0


def sample_lesion_counts(rng: np.random.Generator, grade: int) -> Dict[str, int]:
  """Whole-face lesion counts of one visit of IGA ``grade`` (:data:`GRADE_RULES`).

  Returns:
    ``{class name: count}`` over :data:`CLASS_NAMES` plus ``"healed"`` (healed red marks, not
    lesions). The persistent marks of the patient (nevi, scars) are not included.
  """
  if grade not in GRADE_RULES:
    raise ValueError(f"IGA grade must be one of {IGA_GRADES}; got {grade!r}.")
  rule = GRADE_RULES[grade]

  def draw(key: str) -> int:
    lo, hi = rule[key]
    return int(rng.integers(int(lo), int(hi) + 1))

  counts = {name: 0 for name in CLASS_NAMES}
  inflamed = draw("inflammatory")
  nodules = min(draw("nodule"), inflamed)
  share = float(rng.uniform(*rule["pustule_share"]))
  pustules = int(round(share * (inflamed - nodules)))
  counts["nodule"] = nodules
  counts["pustule"] = pustules
  counts["papule"] = inflamed - nodules - pustules
  comedo = draw("comedo")
  counts["closed_comedo"] = int(rng.binomial(comedo, 0.6))
  counts["open_comedo"] = comedo - counts["closed_comedo"]
  counts["hypertrophic_scar"] = int(rng.uniform() < 0.05 * grade)
  counts["other"] = int(rng.poisson(0.4))
  counts[HEALED] = draw("healed")
  return counts


def sample_visit_lesions(rng: np.random.Generator, grade: int, counts: Mapping[str, int]) -> List[FaceLesion]:
  """Sites, sizes and contrasts of ``counts`` on the face (grade 4: larger lesions; grade 1:
  faint resolving papules)."""
  lesions: List[FaceLesion] = []
  scale = 1.15 if grade == 4 else 1.0
  for name, count in counts.items():
    for _ in range(int(count)):
      p, q = _sample_site(rng)
      if name == HEALED:
        lesions.append(FaceLesion(HEALED, p, q, _size(rng, "papule") * 1.2, float(rng.uniform(0.3, 0.6))))
        continue
      contrast = 1.0
      if name in ("papule", "pustule", "nodule"):
        contrast = float(rng.uniform(0.3, 0.5)) if grade <= 1 else float(rng.uniform(0.75, 0.95) if grade == 2 else rng.uniform(0.85, 1.0))
      lesions.append(FaceLesion(name, p, q, _size(rng, name) * scale, contrast))
  return lesions


# --------------------------------------------------------------------------------------------
# Rendering.


@dataclasses.dataclass(frozen=True)
class RenderedView:
  """One rendered photo and what is known about it."""

  image: np.ndarray  # uint8 [S, S, 3] RGB
  face_box: np.ndarray  # float32 [4] x1, y1, x2, y2: the visible facial skin and nose (hairline to chin)
  boxes: np.ndarray  # float32 [K, 4] x1, y1, x2, y2 of the lesions visible in this view
  labels: np.ndarray  # int64 [K] index into CLASS_NAMES


def _ellipse(p, q, cp, cq, rp, rq):
  return ((p - cp) / rp) ** 2 + ((q - cq) / rq) ** 2


def _soft(d, width: float) -> np.ndarray:
  """A soft step of ``2 * width``: 1 where ``d < -width``, 0 where ``d > width``."""
  return np.clip(0.5 - d / (2.0 * width), 0.0, 1.0).astype(np.float32)


def _rotate(X, Y, Z, yaw: float):
  """Object -> world coordinates for a head turned by ``yaw`` about the vertical axis."""
  s, c = math.sin(yaw), math.cos(yaw)
  return X * c + Z * s, Y, -X * s + Z * c


class _Head:
  """A head in one photo: ellipsoid half axes ``a`` (width), ``b`` (height), ``c`` (depth) in
  pixels, narrowed towards the chin by ``taper``, centred at ``(cx, cy)`` and turned by ``yaw``.
  Object coordinates: X to the image's right in a frontal view (the patient's left), Y down,
  Z towards the camera."""

  def __init__(self, identity: Identity, view: str, size: int, rng: np.random.Generator):
    s = float(size)
    self.a = identity.head_width * s * float(rng.uniform(0.97, 1.03))
    self.b, self.c = identity.aspect * self.a, identity.depth * self.a
    self.taper = identity.jaw
    self.cx = (identity.centre[0] + float(rng.normal(0.0, 0.01))) * s
    self.cy = (identity.centre[1] + float(rng.normal(0.0, 0.01))) * s
    if view == "frontal":
      degrees = float(rng.uniform(-FRONTAL_YAW_DEG, FRONTAL_YAW_DEG))
    else:
      degrees = float(rng.uniform(*PROFILE_YAW_DEG)) * (-1.0 if view == "left" else 1.0)
    self.yaw = math.radians(degrees)

  def half_width(self, Y):
    """Half width of the head at object height ``Y`` (px): the jaw narrows."""
    t = np.clip((Y / self.b - 0.1) / 0.9, 0.0, 1.0)
    return self.a * (1.0 - self.taper * t ** 1.5)

  def surface(self, p: float, q: float, lift: float = 0.0) -> Optional[np.ndarray]:
    """Object point of the face surface at ``(p, q)`` (units of a), ``lift * a`` in front of it."""
    X, Y = p * self.a, q * self.a
    r = 1.0 - (X / float(self.half_width(Y))) ** 2 - (Y / self.b) ** 2
    if r <= 0.0:
      return None
    return np.array([X, Y, self.c * math.sqrt(r) + lift * self.a])

  def to_image(self, point: np.ndarray) -> Tuple[float, float, float]:
    """Object point -> (image x, image y, depth towards the camera)."""
    x, y, z = _rotate(point[0], point[1], point[2], self.yaw)
    return x + self.cx, y + self.cy, z

  def facing(self, point: np.ndarray) -> float:
    """Cosine between the surface normal at ``point`` and the direction to the camera."""
    n = np.array([point[0] / float(self.half_width(point[1])) ** 2, point[1] / self.b ** 2, point[2] / self.c ** 2])
    nx, ny, nz = _rotate(n[0], n[1], n[2], self.yaw)
    return float(nz / (math.sqrt(nx * nx + ny * ny + nz * nz) + 1e-12))

  def window(self, corners: Sequence[Tuple[float, float]], size: int, margin: int = 3) -> Tuple[slice, slice]:
    """Image rows and columns holding the projections of the surface points ``corners``."""
    xs, ys = [], []
    for p, q in corners:
      point = self.surface(p, q)
      if point is None:
        point = np.array([p * self.a, q * self.a, 0.0])
      x, y, _ = self.to_image(point)
      xs.append(x)
      ys.append(y)
    x0, x1 = max(int(min(xs)) - margin, 0), min(int(max(xs)) + margin + 1, size)
    y0, y1 = max(int(min(ys)) - margin, 0), min(int(max(ys)) + margin + 1, size)
    return slice(y0, max(y1, y0)), slice(x0, max(x1, x0))


@dataclasses.dataclass
class _Maps:
  """Per-pixel surface maps of one view (``[S, S]`` float32; zero off the head)."""

  alpha: np.ndarray  # head coverage, antialiased
  p: np.ndarray  # surface coordinates (units of a)
  q: np.ndarray
  w: np.ndarray  # Z / c: 1 at the front, 0 at the side (ears), < 0 behind
  shade: np.ndarray  # Lambert shading with ambient light
  lambert: np.ndarray


def _trace(head: _Head, size: int, light: np.ndarray) -> _Maps:
  """Traces every pixel onto the head (analytically: a quadratic per pixel)."""
  maps = _Maps(*(np.zeros((size, size), np.float32) for _ in range(6)))
  sn, cs = math.sin(head.yaw), math.cos(head.yaw)
  reach = math.sqrt((head.a * cs) ** 2 + (head.c * sn) ** 2) + 2.0
  rows = slice(max(int(head.cy - head.b) - 2, 0), min(int(head.cy + head.b) + 3, size))
  cols = slice(max(int(head.cx - reach) - 2, 0), min(int(head.cx + reach) + 3, size))
  y = (np.arange(rows.start, rows.stop, dtype=np.float32) + 0.5 - head.cy)[:, None]
  x = (np.arange(cols.start, cols.stop, dtype=np.float32) + 0.5 - head.cx)[None, :]
  ar = head.half_width(y).astype(np.float32)
  ia2, ic2 = 1.0 / (ar * ar), np.float32(1.0 / head.c ** 2)
  qa = sn * sn * ia2 + cs * cs * ic2
  qb = 2.0 * x * (sn * cs * (ic2 - ia2))
  qc = x * x * (cs * cs * ia2 + sn * sn * ic2) + y * y / np.float32(head.b ** 2) - 1.0
  disc = qb * qb - 4.0 * qa * qc
  z = (-qb + np.sqrt(np.maximum(disc, 0.0))) / (2.0 * qa)
  X, Z = x * cs - z * sn, x * sn + z * cs
  nx, ny, nz = _rotate(X * ia2, np.broadcast_to(y / np.float32(head.b ** 2), X.shape), Z * ic2, head.yaw)
  norm = np.sqrt(nx * nx + ny * ny + nz * nz) + 1e-12
  lambert = np.maximum((nx * light[0] + ny * light[1] + nz * light[2]) / norm, 0.0)
  maps.alpha[rows, cols] = cv2.GaussianBlur((disc >= 0).astype(np.float32), (0, 0), 0.6)
  maps.p[rows, cols] = X / head.a
  maps.q[rows, cols] = np.broadcast_to(y / head.a, X.shape)
  maps.w[rows, cols] = Z / head.c
  maps.lambert[rows, cols] = lambert
  maps.shade[rows, cols] = 0.42 + 0.62 * lambert
  return maps


def render_view(identity: Identity, lesions: Sequence[FaceLesion], view: str, rng: np.random.Generator,
                image_size: int = IMAGE_SIZE, grade: int = 0) -> RenderedView:
  """Renders one photo of a face with ``lesions`` (see the module docstring).

  Args:
    identity: the patient; its persistent marks (nevi, atrophic scars) are drawn and boxed too.
    lesions: the visit's lesions on the face surface.
    view: ``frontal``, ``left`` or ``right``.
    rng: generator (consumed): pose jitter, lighting, skin texture, lesion outlines, noise.
    image_size: side ``S`` of the square photo, px.
    grade: the visit's IGA grade (grades 3-4 add diffuse redness on the cheeks).

  Returns:
    The photo, its face box and the boxes and labels of the lesions it shows.
  """
  if view not in VIEWS:
    raise ValueError(f"view must be one of {VIEWS}; got {view!r}.")
  size = int(image_size)
  head = _Head(identity, view, size, rng)
  light = np.array([rng.uniform(-0.35, 0.35), rng.uniform(-0.45, -0.1), 1.0], np.float32)
  light /= np.linalg.norm(light)
  maps = _trace(head, size, light)

  # Hair: above the hairline and over the back of the head; the rest of the head is skin.
  hairline = identity.hairline + 0.35 * maps.p ** 2 + 0.03 * np.sin(9.0 * maps.p)
  nape = 0.12 + 0.9 * np.maximum(0.1 - maps.w, 0.0)  # side hair reaches lower towards the back
  hair = np.maximum(_soft(maps.q - hairline, 0.03), _soft(maps.w - 0.1, 0.05) * _soft(maps.q - nape, 0.06)) * maps.alpha
  face = maps.alpha - hair

  # Skin albedo (the easy set's texture), redness, lesions.
  albedo = _skin_albedo(identity, head, rng, size)
  if grade >= 3:  # diffuse redness over the cheeks: inflammation "more apparent"
    cheeks = np.exp(-((np.abs(maps.p) - 0.55) ** 2 + (maps.q - 0.4) ** 2) / (2 * 0.22 ** 2)).astype(np.float32)
    red = (0.12 if grade == 4 else 0.06) * cheeks * face
    albedo *= 1.0 + red[..., None] * np.float32([0.1, -0.45, -0.4])
  nose_alpha, nose_shade = _nose(identity, head, light, size)
  nose_hard = nose_alpha > 0.5
  boxes, labels = _draw_lesions(albedo, head, identity, lesions, face, nose_hard, rng, size)

  # Compose back to front: background, clothes and neck, long hair, ears behind, head, features,
  # nose, nostrils, near ear.
  canvas = _background(identity, rng, size)
  _clothes_and_neck(canvas, identity, albedo, head, light, size)
  hair_rgb = _hair_texture(identity, rng, size)
  if identity.long_hair:
    drape = _long_hair_mask(head, size)
    canvas += (hair_rgb * 0.75 - canvas) * drape[..., None]
  near_ear = _ears(canvas, identity, albedo, head, size, behind=True)
  skin = albedo * maps.shade[..., None]
  _draw_features(skin, identity, head, maps, size)
  hair_shaded = hair_rgb * (0.55 + 0.5 * maps.lambert)[..., None]
  canvas = canvas * (1.0 - maps.alpha[..., None]) + skin * face[..., None] + hair_shaded * hair[..., None]
  nose_shade = 0.5 * nose_shade + 0.5 * np.where(maps.alpha > 0.5, maps.shade, nose_shade)  # no brighter than its cheek
  canvas += (albedo * nose_shade[..., None] - canvas) * nose_alpha[..., None]
  _nostrils(canvas, identity, head, size)
  if near_ear is not None and not identity.long_hair:
    _ears(canvas, identity, albedo, head, size, behind=False, only=near_ear)

  image = canvas * _smooth_field(rng, size, synthetic._illumination)[..., None]
  image = cv2.GaussianBlur(image.astype(np.float32), (0, 0), float(rng.uniform(0.45, 0.7)))
  image += np.float32(rng.uniform(0.004, 0.01)) * rng.standard_normal((size, size, 1), dtype=np.float32)
  image = np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)

  ys, xs = np.nonzero((face > 0.5) | nose_hard)
  face_box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32) if len(xs) else np.zeros(4, np.float32)
  return RenderedView(image=image, face_box=face_box, boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
                      labels=np.asarray(labels, np.int64))


def _skin_albedo(identity: Identity, head: _Head, rng: np.random.Generator, size: int) -> np.ndarray:
  """``[S, S, 3]`` skin reflectance: the easy set's texture over the head, ears and neck (the
  only places skin shows), the plain skin tone elsewhere."""
  albedo = np.empty((size, size, 3), np.float32)
  albedo[...] = identity.skin
  reach = math.sqrt((head.a * math.cos(head.yaw)) ** 2 + (head.c * math.sin(head.yaw)) ** 2) + 0.3 * head.a
  y0, x0 = max(int(head.cy - head.b) - 4, 0), max(int(head.cx - reach) - 4, 0)
  x1 = min(int(head.cx + reach) + 5, size)
  if x1 - x0 > 8 and size - y0 > 8:
    albedo[y0:, x0:x1] = synthetic._skin_albedo(rng, size - y0, x1 - x0, identity.skin)
  return albedo


def _smooth_field(rng: np.random.Generator, size: int, make) -> np.ndarray:
  """A smooth per-pixel field made at a quarter of the resolution (``make(rng, h, w)``) and resized."""
  small = max(size // 4, 8)
  return cv2.resize(make(rng, small, small), (size, size), interpolation=cv2.INTER_LINEAR)


def _feature_distance(identity: Identity, p: float, q: float) -> float:
  """Below 0 inside (or next to) an eye, a brow, the mouth or the nose; units of a."""
  ep, eq, ew, eh = identity.eye
  d_eye = math.sqrt(_ellipse(abs(p), q, ep, eq, ew * 1.4, eh * 2.6)) - 1.0
  d_brow = math.sqrt(_ellipse(abs(p), q, ep - 0.02, eq - identity.brow[0] - identity.brow[2], ew * 1.5, identity.brow[1] * 2.2)) - 1.0
  mq, mw = identity.mouth
  d_mouth = math.sqrt(_ellipse(p, q, 0.0, mq + 0.01, mw * 1.2, 0.13)) - 1.0
  d_nose = math.sqrt(_ellipse(p, q, 0.0, 0.24, 0.2, 0.3)) - 1.0
  return min(d_eye, d_brow, d_mouth, d_nose)


def _draw_lesions(albedo, head: _Head, identity: Identity, lesions: Sequence[FaceLesion], face, nose_hard,
                  rng: np.random.Generator, size: int) -> Tuple[List[np.ndarray], List[int]]:
  """Draws the lesions (and the patient's marks) that this view shows; returns their boxes and labels.

  A lesion is shown when its site faces the camera (cosine >= :data:`MIN_FACING`), lies on the
  facial skin of this view and is not hidden by the nose; it is foreshortened by the square root
  of that cosine.
  """
  boxes: List[np.ndarray] = []
  labels: List[int] = []
  every = [FaceLesion(n, p, q, s) for (n, p, q, s) in identity.marks] + list(lesions)
  for lesion in sorted(every, key=lambda les: -les.size):
    point = head.surface(lesion.p, lesion.q)
    if point is None or _feature_distance(identity, lesion.p, lesion.q) < 0.0:
      continue
    facing = head.facing(point)
    if facing < MIN_FACING:
      continue
    x, y, _ = head.to_image(point)
    ix, iy = int(x), int(y)
    if not (0 <= ix < size and 0 <= iy < size) or face[iy, ix] < 0.9 or nose_hard[iy, ix]:
      continue
    px_size = lesion.size * head.a * math.sqrt(facing)
    shape = "papule" if lesion.name == HEALED else lesion.name
    label = _LABEL[shape]
    polygon = synthetic.clip_polygon(synthetic._random_polygon(rng, x, y, px_size, synthetic._STYLES[label]), size, size)
    if len(polygon) < 3:
      continue
    if lesion.name == HEALED:
      _healed_mark(albedo, polygon, px_size, rng, lesion.contrast)
      continue
    _render_scaled(albedo, label, polygon, px_size, rng, lesion.contrast, resolving=shape == "papule" and lesion.contrast < 0.6)
    box = synthetic.polygon_box(polygon)
    if box[2] - box[0] >= 1.0 and box[3] - box[1] >= 1.0:
      boxes.append(box.astype(np.float32))
      labels.append(label)
  return boxes, labels


def _patch_window(polygon: np.ndarray, size: float, shape: Tuple[int, int]) -> Optional[Tuple[int, int, int, int]]:
  box = synthetic.polygon_box(polygon)
  pad = int(math.ceil(0.6 * size + 3))
  x0, y0 = max(int(math.floor(box[0])) - pad, 0), max(int(math.floor(box[1])) - pad, 0)
  x1, y1 = min(int(math.ceil(box[2])) + pad, shape[1]), min(int(math.ceil(box[3])) + pad, shape[0])
  if x1 <= x0 or y1 <= y0:
    return None
  return x0, y0, x1, y1


def _render_scaled(albedo: np.ndarray, label: int, polygon: np.ndarray, size: float, rng: np.random.Generator,
                   contrast: float, resolving: bool = False) -> None:
  """The easy set's rendering of one lesion at ``contrast`` (a resolving papule: faint, browner)."""
  window = _patch_window(polygon, size, albedo.shape[:2])
  if window is None:
    return
  x0, y0, x1, y1 = window
  before = albedo[y0:y1, x0:x1].copy()
  synthetic._render_lesion(albedo, label, polygon, size, rng)
  after = before + np.float32(contrast) * (albedo[y0:y1, x0:x1] - before)
  if resolving:  # hyperpigmented rather than pink-red
    mask = synthetic._blur(synthetic.polygon_mask(polygon, y1 - y0, x1 - x0, origin=(x0, y0)), 0.3 * size)
    after = after * (1.0 - 0.25 * mask[..., None] * np.float32([0.15, 0.4, 0.55]))
  albedo[y0:y1, x0:x1] = np.clip(after, 0.0, 1.0)


def _healed_mark(albedo: np.ndarray, polygon: np.ndarray, size: float, rng: np.random.Generator, strength: float) -> None:
  """A flat red or brown macule where a lesion healed: no relief, a soft edge."""
  window = _patch_window(polygon, size, albedo.shape[:2])
  if window is None:
    return
  x0, y0, x1, y1 = window
  mask = synthetic._blur(synthetic.polygon_mask(polygon, y1 - y0, x1 - x0, origin=(x0, y0)), 0.25 * size)
  tint = np.float32([0.98, 0.72, 0.72]) if rng.uniform() < 0.6 else np.float32([0.85, 0.7, 0.62])
  view = albedo[y0:y1, x0:x1]
  view *= 1.0 + strength * mask[..., None] * (tint - 1.0)


def _background(identity: Identity, rng: np.random.Generator, size: int) -> np.ndarray:
  top, bottom = identity.background
  t = np.linspace(0.0, 1.0, size, dtype=np.float32)[:, None, None]
  noise = _smooth_field(rng, size, lambda r, h, w: synthetic._smooth_noise(r, h, w, cells=3)[..., 0])
  canvas = (top * (1.0 - t) + bottom * t) * (1.0 + 0.03 * noise[..., None])
  return np.ascontiguousarray(canvas, np.float32)


def _clothes_and_neck(canvas: np.ndarray, identity: Identity, albedo: np.ndarray, head: _Head, light, size: int) -> None:
  top = max(int(head.cy + 0.5 * head.b), 0)
  if top >= size:
    return
  rows = slice(top, size)
  y = np.arange(top, size, dtype=np.float32)[:, None] + 0.5
  x = np.arange(size, dtype=np.float32)[None, :] + 0.5
  neck_x = head.cx - 0.12 * head.c * math.sin(head.yaw)
  half = 0.56 * head.a
  neck = _soft(np.abs(x - neck_x) - half, 1.0) * np.ones_like(y)
  across = np.clip((x - neck_x) / half, -1.0, 1.0)
  neck_shade = (0.55 + 0.25 * np.sqrt(1.0 - across ** 2) + 0.1 * across * light[0]) * np.clip(
      (y - head.cy - 0.8 * head.b) / (0.5 * head.a), 0.55, 1.0)
  part = canvas[rows]
  part += (albedo[rows] * neck_shade[..., None] - part) * neck[..., None]
  shoulders_y = head.cy + 1.22 * head.b
  shoulders = _soft(_ellipse(x, y, neck_x, shoulders_y + 1.1 * head.a, 2.4 * head.a, 1.2 * head.a) - 1.0, 0.02)
  fabric = identity.clothes * (0.8 + 0.2 * np.clip(1.0 - (y - shoulders_y) / (2.0 * head.a), 0.0, 1.0))[..., None]
  part += (fabric - part) * shoulders[..., None]


def _hair_texture(identity: Identity, rng: np.random.Generator, size: int) -> np.ndarray:
  strands = rng.standard_normal((size // 6 + 1, size // 2 + 1)).astype(np.float32)
  strands = cv2.resize(strands, (size, size), interpolation=cv2.INTER_LINEAR)  # vertical streaks
  return (identity.hair_colour * (1.0 + 0.22 * np.clip(strands, -2.0, 2.0))[..., None]).astype(np.float32)


def _long_hair_mask(head: _Head, size: int) -> np.ndarray:
  """Hair falling behind the head to the shoulders, wider than the head."""
  y = np.arange(size, dtype=np.float32)[:, None] + 0.5
  x = np.arange(size, dtype=np.float32)[None, :] + 0.5
  hx = head.cx + 0.3 * head.a * math.sin(head.yaw)
  crown = _soft(_ellipse(x, y, hx, head.cy - 0.06 * head.b, 1.14 * head.a, 1.06 * head.b) - 1.0, 0.03)
  bottom = head.cy + 1.3 * head.b + 0.06 * head.a * np.sin(x / (0.21 * head.a))
  drape = _soft(np.abs(x - hx) - 1.1 * head.a * (1.0 + 0.1 * np.clip((y - head.cy) / head.b, 0, 2)), 1.5) * _soft(y - bottom, 2.0) * (y > head.cy)
  return np.maximum(crown, drape).astype(np.float32)


def _ears(canvas, identity: Identity, albedo, head: _Head, size: int, behind: bool, only: Optional[float] = None) -> Optional[float]:
  """Draws the ears behind the head (``behind``), or the near ear in front; returns the near ear's
  side (+1 the patient's left, -1 the right) when it faces the camera."""
  near = None
  for side in (-1.0, 1.0):
    if only is not None and side != only:
      continue
    turn = -side * math.sin(head.yaw)  # > 0: this ear turns towards the camera
    Y = 0.1 * head.a
    X = side * float(head.half_width(Y)) * 0.97
    x, y, _ = head.to_image(np.array([X, Y, -0.08 * head.c]))
    x += side * 0.05 * head.a * math.cos(head.yaw)
    if behind and turn > 0.45:
      near = side
      continue
    rx = head.a * (0.06 + 0.11 * max(turn, 0.0))
    ry = 0.2 * head.a
    y0, y1 = max(int(y - ry) - 4, 0), min(int(y + ry) + 5, size)
    x0, x1 = max(int(x - ry) - 4, 0), min(int(x + ry) + 5, size)
    if y1 <= y0 or x1 <= x0:
      continue
    m = np.zeros((y1 - y0, x1 - x0), np.float32)
    cv2.ellipse(m, (int((x - x0) * 16), int((y - y0) * 16)), (int(rx * 16), int(ry * 16)), side * 8.0, 0, 360, 1.0, -1, cv2.LINE_AA, shift=4)
    inner = np.zeros_like(m)
    cv2.ellipse(inner, (int((x - x0 - side * 0.2 * rx) * 16), int((y - y0 + 0.05 * ry) * 16)),
                (int(0.5 * rx * 16), int(0.55 * ry * 16)), side * 8.0, 0, 360, 1.0, -1, cv2.LINE_AA, shift=4)
    inner = cv2.GaussianBlur(inner, (0, 0), 1.0) * m
    part = canvas[y0:y1, x0:x1]
    part += (albedo[y0:y1, x0:x1] * (0.78 - 0.25 * inner)[..., None] - part) * m[..., None]
  return near


def _draw_features(skin: np.ndarray, identity: Identity, head: _Head, maps: _Maps, size: int) -> None:
  """Paints eye sockets, eyes, brows, lips and faint folds onto the shaded skin ``skin`` (in place),
  each in an image window around it, in surface coordinates."""
  ep, eq, ew, eh = identity.eye
  bq, bt, arch = identity.brow
  for side in (-1.0, 1.0):
    rows, cols = head.window([(side * (ep + s * 1.7 * ew), eq + t) for s in (-1, 1) for t in (-bq - arch - 2 * bt, 3.2 * eh)], size)
    p, q, w, shade = (side * maps.p[rows, cols], maps.q[rows, cols], maps.w[rows, cols], maps.shade[rows, cols])
    out = skin[rows, cols]
    front = _soft(0.12 - w, 0.05)
    socket = np.exp(-_ellipse(p, q, ep, eq - 0.02, ew * 1.5, eh * 3.0)) * front
    out *= (1.0 - 0.2 * socket)[..., None]
    t = np.clip((p - ep) / ew, -1.0, 1.0)
    inside = _soft(np.abs(p - ep) - ew, 0.008)
    upper = eq - eh * np.power(np.maximum(1 - t * t, 0.0), 0.8)
    lower = eq + 0.65 * eh * np.power(np.maximum(1 - t * t, 0.0), 0.9)
    eye = inside * _soft(upper - q, 0.006) * _soft(q - lower, 0.006) * front
    out += (np.float32([0.86, 0.84, 0.8]) * shade[..., None] - out) * eye[..., None]
    r = np.sqrt(_ellipse(p, q, ep, eq - 0.1 * eh, 1.0, 1.0))
    iris = _soft(r - 0.95 * eh, 0.006) * eye
    out += (identity.iris_colour * shade[..., None] - out) * iris[..., None]
    pupil = _soft(r - 0.4 * eh, 0.005) * eye
    out += (np.float32([0.02, 0.02, 0.02]) - out) * pupil[..., None]
    lash = inside * np.exp(-((q - upper) / 0.013) ** 2) * front
    out *= (1.0 - 0.85 * lash)[..., None]
    crease = inside * np.exp(-((q - (upper - 0.05)) / 0.01) ** 2) * front
    out *= (1.0 - 0.25 * crease)[..., None]
    tb = np.clip((p - (ep - 0.02)) / (ew * 1.35), -1.0, 1.0)
    centre = eq - bq - arch * (1 - tb * tb) + 0.02 * tb
    brow = _soft(np.abs(p - (ep - 0.02)) - ew * 1.35, 0.01) * _soft(np.abs(q - centre) - bt * (1.0 - 0.45 * np.clip(tb, 0, 1)), 0.008) * front
    out += (identity.hair_colour * shade[..., None] - out) * (0.85 * brow)[..., None]
  mq, mw = identity.mouth
  rows, cols = head.window([(s * 1.1 * mw, mq + t) for s in (-1, 1) for t in (-0.12, 0.15)], size)
  p, q, w, shade = maps.p[rows, cols], maps.q[rows, cols], maps.w[rows, cols], maps.shade[rows, cols]
  out = skin[rows, cols]
  front = _soft(0.12 - w, 0.05)
  tm = np.clip(p / mw, -1.0, 1.0)
  span = _soft(np.abs(p) - mw, 0.01)
  top = mq - 0.065 * np.power(np.maximum(1 - tm * tm, 0.0), 0.5) * (1 - 0.25 * np.exp(-(p / 0.05) ** 2))
  bottom = mq + 0.085 * np.power(np.maximum(1 - tm * tm, 0.0), 0.6)
  lips = span * _soft(top - q, 0.006) * _soft(q - bottom, 0.008) * front
  lip_rgb = identity.lip_colour * (0.5 * identity.skin / max(float(identity.skin.mean()), 1e-3) + 0.5) * shade[..., None]
  out += (lip_rgb - out) * lips[..., None]
  out *= (1.0 - 0.6 * span * np.exp(-((q - mq) / 0.01) ** 2) * front)[..., None]


def _nose_points(identity: Identity, head: _Head) -> Dict[str, np.ndarray]:
  """Object points of the nose: root, bridge, tip, wings, base and nostrils."""
  length, width = identity.nose
  tip_q = -0.02 + 0.42 * length

  def at(p, q, lift):
    point = head.surface(p, q, lift)
    return point if point is not None else np.array([p * head.a, q * head.a, lift * head.a])

  return {
      "root": at(0.0, -0.04, 0.05),
      "bridge_l": at(0.08 * width, 0.02, 0.015),
      "bridge_r": at(-0.08 * width, 0.02, 0.015),
      "tip": at(0.0, tip_q, 0.22),
      "wing_l": at(0.16 * width, tip_q + 0.05, 0.03),
      "wing_r": at(-0.16 * width, tip_q + 0.05, 0.03),
      "base": at(0.0, tip_q + 0.09, 0.07),
      "nostril_l": at(0.07 * width, tip_q + 0.075, 0.06),
      "nostril_r": at(-0.07 * width, tip_q + 0.075, 0.06),
  }


def _nose(identity: Identity, head: _Head, light: np.ndarray, size: int) -> Tuple[np.ndarray, np.ndarray]:
  """The nose as four flat-shaded facets drawn back to front: ``(alpha [S, S], shade [S, S])``."""
  pts = _nose_points(identity, head)
  world = {k: np.array(_rotate(v[0], v[1], v[2], head.yaw)) for k, v in pts.items()}
  inner = np.array(_rotate(0.0, pts["tip"][1], pts["tip"][2] - 0.4 * head.a, head.yaw))
  facets = (("root", "bridge_l", "wing_l", "tip"), ("root", "tip", "wing_r", "bridge_r"),
            ("tip", "wing_l", "base"), ("tip", "base", "wing_r"))
  drawn = []
  for names in facets:
    v = np.stack([world[n] for n in names])
    normal = np.cross(v[2] - v[0], v[-1] - v[1]) if len(v) == 4 else np.cross(v[1] - v[0], v[2] - v[0])
    if np.dot(normal, v.mean(axis=0) - inner) < 0:
      normal = -normal
    normal /= np.linalg.norm(normal) + 1e-12
    if normal[2] > 0.05:  # faces the camera
      drawn.append((float(v[:, 2].mean()), v, normal))
  alpha = np.zeros((size, size), np.float32)
  shade = np.zeros((size, size), np.float32)
  for _, v, normal in sorted(drawn, key=lambda d: d[0]):
    corners = np.round((v[:, :2] + np.array([head.cx, head.cy])) * 16).astype(np.int32)
    m = np.zeros((size, size), np.float32)
    cv2.fillPoly(m, [corners], 1.0, cv2.LINE_AA, shift=4)
    s = 0.42 + 0.62 * max(float(np.dot(normal, light)), 0.0)
    shade += (s - shade) * m
    alpha = np.maximum(alpha, m)
  soft = cv2.GaussianBlur(alpha, (0, 0), 1.3)
  shade = cv2.GaussianBlur(shade * alpha, (0, 0), 1.3) / np.maximum(soft, 1e-3)
  return cv2.GaussianBlur(alpha, (0, 0), 0.5), shade


def _nostrils(canvas: np.ndarray, identity: Identity, head: _Head, size: int) -> None:
  pts = _nose_points(identity, head)
  for key, side in (("nostril_l", 1.0), ("nostril_r", -1.0)):
    x, y, _ = head.to_image(pts[key])
    facing = math.cos(head.yaw + side * 0.5)  # a nostril shows from the front and from its own side
    if facing < 0.4:
      continue
    rx, ry = max(0.045 * head.a * facing, 0.8), max(0.022 * head.a, 0.6)
    y0, y1 = max(int(y - rx) - 4, 0), min(int(y + rx) + 5, size)
    x0, x1 = max(int(x - rx) - 4, 0), min(int(x + rx) + 5, size)
    if y1 <= y0 or x1 <= x0:
      continue
    m = np.zeros((y1 - y0, x1 - x0), np.float32)
    cv2.ellipse(m, (int((x - x0) * 16), int((y - y0) * 16)), (int(rx * 16), int(ry * 16)), 0, 0, 360, 1.0, -1, cv2.LINE_AA, shift=4)
    canvas[y0:y1, x0:x1] *= (1.0 - 0.7 * cv2.GaussianBlur(m, (0, 0), 0.8))[..., None]


# --------------------------------------------------------------------------------------------
# Visits and the folder.


@dataclasses.dataclass(frozen=True)
class Visit:
  """One visit: an IGA grade, three photos and the truth about its lesions."""

  patient: str  # "p0007"
  visit: int  # 1-based
  grade: int  # IGA 0-4
  counts: Mapping[str, int]  # whole-face lesions by class (CLASS_NAMES), the patient's nevi and scars included
  healed_marks: int  # healed red or brown marks drawn (not lesions, never counted)
  images: Mapping[str, np.ndarray]  # view -> uint8 [S, S, 3] RGB
  face_boxes: Mapping[str, np.ndarray]  # view -> float32 [4] x1, y1, x2, y2 of the visible facial skin
  boxes: Mapping[str, np.ndarray]  # view -> float32 [K, 4] lesions visible in that photo
  labels: Mapping[str, np.ndarray]  # view -> int64 [K] index into CLASS_NAMES

  @property
  def inflammatory(self) -> int:
    """Papules, pustules and nodules on the whole face (what Hayashi counts)."""
    return sum(int(self.counts[name]) for name in INFLAMMATORY_CLASSES)


def _grade_thresholds() -> np.ndarray:
  """Latent-severity cut points giving :data:`GRADE_PROBS` (standard normal quantiles)."""
  from statistics import NormalDist  # pylint: disable=import-outside-toplevel
  cumulative = np.cumsum(GRADE_PROBS)[:-1]
  return np.array([NormalDist().inv_cdf(float(c)) for c in cumulative])


def _latent_severities(seed: int, index: int) -> np.ndarray:
  """``[V]`` latent severities of patient ``index``'s 1-5 visits: ``sqrt(r) * patient + sqrt(1 - r)
  * visit`` (standard normals, ``r`` = :data:`VISIT_GRADE_CORRELATION`)."""
  rng = np.random.default_rng([int(seed), int(index), 0x6A0E])
  visits = int(rng.choice(len(VISITS_PER_PATIENT_PROBS), p=np.asarray(VISITS_PER_PATIENT_PROBS))) + 1
  r = VISIT_GRADE_CORRELATION
  return math.sqrt(r) * rng.standard_normal() + math.sqrt(1.0 - r) * rng.standard_normal(visits)


def patient_grades(seed: int, index: int) -> List[int]:
  """IGA grades of patient ``index``'s visits as drawn from the population: its latent severities
  cut at the normal quantiles of :data:`GRADE_PROBS` (a pure function of ``(seed, index)``; over
  many patients every visit's grade follows :data:`GRADE_PROBS`, and a patient's grades move
  between visits as the paper's do)."""
  return [int(g) for g in np.searchsorted(_grade_thresholds(), _latent_severities(seed, index))]


def set_grades(num_patients: int, seed: int = 0) -> List[List[int]]:
  """IGA grades of every visit of a set of ``num_patients`` patients, per patient.

  The set's visits are ranked by latent severity and cut at the set's own quantiles, so that a
  small set has :data:`GRADE_PROBS` up to rounding (80 patients cut at the population quantiles
  gave 18 / 34 / 48 % instead of 12 / 36 / 52 %: a patient's visits move together). Patient ``k``'s
  visits and their order of severity do not depend on ``num_patients``; the cut points do.
  """
  latents = [_latent_severities(seed, index) for index in range(int(num_patients))]
  flat = np.concatenate(latents) if latents else np.zeros(0)
  order = np.argsort(flat, kind="stable")
  grades = np.empty(len(flat), np.int64)
  bounds = np.round(np.cumsum((0.0,) + GRADE_PROBS) * len(flat)).astype(int)
  for grade in range(len(GRADE_PROBS)):
    grades[order[bounds[grade]:bounds[grade + 1]]] = grade
  out, start = [], 0
  for latent in latents:
    out.append([int(g) for g in grades[start:start + len(latent)]])
    start += len(latent)
  return out


def generate_patient(seed: int, index: int, image_size: int = IMAGE_SIZE, grades: Optional[Sequence[int]] = None) -> List[Visit]:
  """Every visit of patient ``index``, with ``grades`` (one per visit; default
  :func:`patient_grades`). A pure function of its arguments."""
  if grades is None:
    grades = patient_grades(seed, index)
  if len(grades) != len(_latent_severities(seed, index)):
    raise ValueError(f"patient {index} of seed {seed} has {len(_latent_severities(seed, index))} visits; got {len(grades)} grades.")
  rng = np.random.default_rng([int(seed), int(index), 0xFACE])
  identity = sample_identity(rng)
  patient = f"p{int(index):04d}"
  visits = []
  for number, grade in enumerate(grades, start=1):
    counts = sample_lesion_counts(rng, grade)
    lesions = sample_visit_lesions(rng, grade, counts)
    healed = counts.pop(HEALED)
    for name, _, _, _ in identity.marks:
      counts[name] += 1
    views = {view: render_view(identity, lesions, view, rng, image_size, grade) for view in VIEWS}
    visits.append(Visit(patient=patient, visit=number, grade=grade, counts=counts, healed_marks=healed,
                        images={v: r.image for v, r in views.items()}, face_boxes={v: r.face_box for v, r in views.items()},
                        boxes={v: r.boxes for v, r in views.items()}, labels={v: r.labels for v, r in views.items()}))
  return visits


def generate_visits(num_patients: int, seed: int = 0, image_size: int = IMAGE_SIZE) -> Iterator[Visit]:
  """The visits of patients ``0 .. num_patients - 1`` in order, graded by :func:`set_grades`
  (lazily: one patient in memory at a time)."""
  grades = set_grades(num_patients, seed)
  for index in range(int(num_patients)):
    yield from generate_patient(seed, index, image_size, grades[index])


GENERATOR_VERSION = 2
"""Bumped whenever the same parameters would render other visits (2: grades cut at the set's own
quantiles); a folder written by another version is not reused (:func:`ensure_grading_folder`)."""
DEFAULT_NUM_PATIENTS = 80
"""The embedded set: 80 patients, ~280 visits, ~830 photos (the paper: 391 patients, 1,347 visits)."""
MANIFEST = "synthetic_faces.json"


def image_name(patient: str, visit: int, view: str, image_format: str = "jpg") -> str:
  return f"images/{patient}_v{visit}_{view}.{image_format}"


def _write_patient(args) -> List[Dict[str, object]]:
  folder, seed, index, image_size, image_format, grades = args
  out = []
  for visit in generate_patient(seed, index, image_size, grades):
    files = {}
    for view in VIEWS:
      name = image_name(visit.patient, visit.visit, view, image_format)
      params = [cv2.IMWRITE_JPEG_QUALITY, 95] if image_format == "jpg" else []
      if not cv2.imwrite(os.path.join(folder, name), visit.images[view][..., ::-1], params):
        raise OSError(f"could not write {os.path.join(folder, name)}")
      files[view] = {"image": name, "face_box": [round(float(v), 1) for v in visit.face_boxes[view]],
                     "boxes": np.round(visit.boxes[view], 1).tolist(), "labels": visit.labels[view].tolist()}
    out.append({"patient": visit.patient, "visit": visit.visit, "grade": visit.grade, "counts": dict(visit.counts),
                "inflammatory": visit.inflammatory, "healed_marks": visit.healed_marks, "views": files})
  return out


def write_grading_folder(folder: str, num_patients: int = DEFAULT_NUM_PATIENTS, seed: int = 0, image_size: int = IMAGE_SIZE,
                         image_format: str = "jpg", workers: int = 0) -> str:
  """Writes the synthetic graded set as a user folder (read back by :func:`grades_csv.read_grades_csv`).

  Files::

    folder/grades.csv            image,patient,grade,visit,view (one row per photo)
    folder/lesion_counts.csv     patient,visit,grade,<10 classes>,inflammatory,healed_marks: whole-face truth
    folder/synthetic_faces.json  parameters, class names, and per photo its face box and the boxes and
                                 labels of the lesions it shows
    folder/images/<patient>_v<visit>_<view>.jpg

  The folder is written beside as ``folder + ".partial"`` and renamed when complete, so a folder
  that exists is whole.

  Args:
    folder: where to write (must not exist).
    num_patients, seed, image_size: see :func:`generate_visits`.
    image_format: ``jpg`` (quality 95) or ``png``.
    workers: processes rendering patients in parallel (0: one per CPU core, 1: none); the
      result does not depend on it. Workers are fresh Python processes
      (``python -m acne_jax.data.synthetic_faces``), so the caller's state (JAX, threads, an
      unguarded ``__main__``) never reaches them.

  Returns:
    ``folder``.
  """
  if image_format not in ("jpg", "png"):
    raise ValueError(f"image_format must be 'jpg' or 'png'; got {image_format!r}.")
  folder = os.path.abspath(folder)
  if os.path.exists(folder):
    raise ValueError(f"{folder} exists already; write the synthetic grading set into a new folder.")
  partial = folder + ".partial"
  if os.path.exists(partial):
    import shutil  # pylint: disable=import-outside-toplevel
    shutil.rmtree(partial)
  os.makedirs(os.path.join(partial, "images"))
  workers = max(1, min(int(workers) or (os.cpu_count() or 1), int(num_patients)))
  if workers == 1:
    visits = [v for index, grades in enumerate(set_grades(num_patients, seed))
              for v in _write_patient((partial, int(seed), index, int(image_size), image_format, grades))]
  else:
    visits = _write_in_subprocesses(partial, int(num_patients), int(seed), int(image_size), image_format, workers)
  grades_csv.write_grades_csv(os.path.join(partial, grades_csv.CSV_NAME), (
      {"image": v["views"][view]["image"], "patient": v["patient"], "grade": v["grade"], "visit": v["visit"], "view": view}
      for v in visits for view in VIEWS))
  with open(os.path.join(partial, "lesion_counts.csv"), "w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f)
    writer.writerow(["patient", "visit", "grade", *CLASS_NAMES, "inflammatory", "healed_marks"])
    for v in visits:
      writer.writerow([v["patient"], v["visit"], v["grade"], *(v["counts"][n] for n in CLASS_NAMES), v["inflammatory"], v["healed_marks"]])
  manifest = {"generator": "acne_jax.data.synthetic_faces", "generator_version": GENERATOR_VERSION,
              "num_patients": int(num_patients), "seed": int(seed),
              "image_size": int(image_size), "image_format": image_format, "class_names": list(CLASS_NAMES),
              "inflammatory_classes": list(INFLAMMATORY_CLASSES), "views": list(VIEWS), "visits": visits}
  with open(os.path.join(partial, MANIFEST), "w", encoding="utf-8") as f:
    json.dump(manifest, f)
  os.rename(partial, folder)
  return folder


def _write_in_subprocesses(folder: str, num_patients: int, seed: int, image_size: int, image_format: str,
                           workers: int) -> List[Dict[str, object]]:
  """Patients ``k, k + workers, ...`` rendered by worker ``k``; their records merged in patient order."""
  import subprocess  # pylint: disable=import-outside-toplevel
  import sys  # pylint: disable=import-outside-toplevel
  procs = []
  grades = set_grades(num_patients, seed)
  for k in range(workers):
    out = os.path.join(folder, f".worker{k}.json")
    cmd = [sys.executable, "-m", "acne_jax.data.synthetic_faces", folder, str(seed), str(image_size), image_format, out,
           *(f"{i}:{'.'.join(str(g) for g in grades[i])}" for i in range(k, num_patients, workers))]
    procs.append((subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT), out))
  records: Dict[Tuple[str, int], Dict[str, object]] = {}
  failures = []
  for proc, out in procs:
    log, _ = proc.communicate()
    if proc.returncode != 0:
      failures.append(log.decode("utf-8", "replace")[-2000:])
      continue
    with open(out, encoding="utf-8") as f:
      for record in json.load(f):
        records[(record["patient"], record["visit"])] = record
    os.remove(out)
  if failures:
    raise RuntimeError("writing the synthetic grading set failed in a worker:\n" + "\n".join(failures))
  return [records[key] for key in sorted(records)]


def _worker_main(argv: Sequence[str]) -> None:
  folder, seed, image_size, image_format, out, *patients = argv  # patients: "<index>:<grade>.<grade>..."
  records = []
  for patient in patients:
    index, grades = patient.split(":")
    records += _write_patient((folder, int(seed), int(index), int(image_size), image_format, [int(g) for g in grades.split(".")]))
  with open(out, "w", encoding="utf-8") as f:
    json.dump(records, f)


def ensure_grading_folder(folder: str, num_patients: int = DEFAULT_NUM_PATIENTS, seed: int = 0,
                          image_size: int = IMAGE_SIZE, image_format: str = "jpg", workers: int = 0) -> str:
  """``folder`` when it holds this very set (same parameters), else writes it there first.

  Raises ``ValueError`` when ``folder`` exists with something else in it (another set, one
  written by another :data:`GENERATOR_VERSION`, or no manifest), naming the difference, rather
  than writing over it.
  """
  folder = os.path.abspath(folder)
  wanted = {"generator_version": GENERATOR_VERSION, "num_patients": int(num_patients), "seed": int(seed),
            "image_size": int(image_size), "image_format": image_format}
  from acne_jax.data import generated

  if generated.holds(folder, MANIFEST, wanted, "synthetic grading set"):
    return folder
  return write_grading_folder(folder, num_patients, seed, image_size, image_format, workers)


if __name__ == "__main__":  # a worker of write_grading_folder
  import sys  # pylint: disable=ungrouped-imports
  _worker_main(sys.argv[1:])
