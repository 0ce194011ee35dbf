"""Synthetic CT: seeded body phantoms with lesions of DeepLesion's 8 coarse types, written as a
DeepLesion release (``DL_info.csv`` + ``Images_png/``), so the real ``deep_lesion`` builder reads it.

No download: NumPy + OpenCV draw 512 x 512 axial slices in Hounsfield units (stored as the release
stores them, uint16 ``HU + 32768``) of a body that exists in 3-D, so a series' slices agree with
each other and a lesion shrinks in the slices away from its centre.

**Phantom.** A patient is a list of 3-D primitives in millimetres (x to the image's right = the
patient's left, y posterior, z up from the pelvic floor): the body (an elliptic cross-section whose
width and depth follow z, back flat on the table), subcutaneous fat, a muscle wall, and inside it the
cavity, whose fat is mediastinal above the diaphragm, abdominal down to the iliac crest, pelvic
below. Organs are ellipsoids (lungs, heart, liver, spleen, stomach, kidneys with their sinus fat,
bladder, bowel loops some holding gas) or tubes drifting with z (aorta, vena cava, trachea, colon,
rectum, lung vessels); bones are cortical rings around marrow: vertebral bodies with discs every
~32 mm, the spinal canal, spinous processes, ribs (each a path that runs from the spine forwards
and down, so its cross-section moves along the chest wall from slice to slice), sternum, sacrum,
iliac wings and femoral heads. Each primitive paints a tissue label, only over the labels it may
replace (a lung fills the thoracic cavity's fat, never the liver), in a fixed order. A patient's
size, fat, organ positions and tissue values are drawn from its seed.

**Slice.** Labels -> HU through the patient's tissue table (:data:`TISSUE_HU`), plus a smooth
per-series texture that varies along z, then the lesions (soft-edged ellipsoids, see below), a
partial-volume blur (Gaussian, sigma 0.6 px), and correlated noise (white noise blurred with sigma
0.8 px, rescaled to the series' noise level, 10-18 HU). Outside the scanner's 512-px field-of-view
circle the value is -1024 without noise, as many scanners store it. Values are unenhanced CT
(liver ~60 HU, kidney ~35 HU, blood ~45 HU); DeepLesion's scans are mostly contrast-enhanced (see
docs/decisions.md).

**Lesions.** A lesion is a 3-D ellipsoid (in-plane semi-axes a >= b at angle theta, z semi-axis c)
of one coarse type (:data:`LESION_TYPES`: 1 bone, 2 abdomen, 3 mediastinum, 4 liver, 5 lung, 6 kidney,
7 soft tissue, 8 pelvis, DeepLesion's ``Coarse_lesion_type`` numbering), placed so that its
cross-sections at the key slice and at +-0.6 c lie wholly inside the tissues of that type
(:data:`TYPE_HOSTS`: a lung nodule in lung, a liver lesion in liver, a bone lesion in marrow, ...), with
that type's density (:func:`_lesion_hu`: hypo- or hyperdense against its organ). Long diameters are
log-normal per type (:data:`TYPE_SIZE_MM`; most lesions 10-50 px at the series' spacing), and the type
mix follows DeepLesion's typed lesions (:data:`TYPE_COUNTS`).

**Annotation (as DeepLesion gives it).** On the key slice (the slice nearest the lesion's centre,
the centre within +-0.2 of the slice interval of it) the cross-section's long axis and the
perpendicular short axis are the RECIST diameters (``Measurement_coordinates``: long-axis ends,
then short-axis ends, px), ``Lesion_diameters_Pixel_`` their lengths, and ``Bounding_boxes`` the
extent of the four end points padded by 5 px (DeepLesion's boxes come from the RECIST marks the same
way), 0-based, clipped to the image.

**Release.** Patients are split 70 / 15 / 15 into train / validation / test (``Train_Val_Test`` 1 / 2
/ 3; DeepLesion's split is patient-level with these proportions). A patient has 1-3 studies, each
one series (a chest-abdomen-pelvis scan at the study's pixel spacing, 0.6-0.98 mm, and slice interval,
1 or 5 mm mostly as in DeepLesion, sometimes 1.25, 2 or 2.5 mm) with 1-3 key slices, each holding 1
lesion (sometimes 2). Only the slices within ``context_mm`` (at least the 2 mm the builder's 3-slice
input needs) of a key slice are written, and each row's ``Slice_range`` says which. Types are written
for every split by default (the real release types only validation and test; ``untyped_train=True``
writes -1 for training rows as it does). ``Possibly_noisy`` is 0: the annotations are exact.
``synthetic_ct.json`` beside ``DL_info.csv`` records the generator version, the settings and every
lesion's true geometry and densities (the builder ignores it).

Everything is a pure function of ``(seed, patient index, study index)``, so a test can rebuild any
series of a written release (:func:`patient_series`) and compare it with the files.

Command line (``tfds_builders.synthetic_ct`` writes it and builds it with the deep_lesion builder)::

  python -m tfds_builders.synthetic_ct --out=DIR [--set=default|tiny]
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import math
import multiprocessing
import os
import shutil
import time
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import cv2
import numpy as np

from acne_jax.data import deep_lesion as dl

GENERATOR_VERSION = 1
"""Bumped whenever the same settings would write other files; a folder written by another
version is not reused (:func:`ensure_release`)."""
MANIFEST = "synthetic_ct.json"
IMAGE_SIZE = 512
OUTSIDE_FOV_HU = -1024.0  # outside the reconstruction circle (no noise)
BOX_PADDING_PX = 5.0  # DeepLesion's box: the RECIST end points' extent +- 5 px
BLUR_SIGMA_PX = 0.6  # partial-volume blur of the noiseless slice
NOISE_BLUR_SIGMA_PX = 0.8  # correlation length of the noise
DISC_PERIOD_MM, DISC_MM = 32.0, 7.0  # vertebral level height, disc thickness (times the height scale)
SPLIT_FRACTIONS: Tuple[Tuple[str, int, float], ...] = (("train", 1, 0.70), ("validation", 2, 0.15), ("test", 3, 0.15))

# --------------------------------------------------------------------------------------------
# Tissues.

TISSUES: Tuple[str, ...] = (
    "outside", "air", "subcutaneous_fat", "muscle", "mediastinal_fat", "abdominal_fat", "pelvic_fat", "lung",
    "lung_vessel", "heart", "vessel", "liver", "spleen", "kidney", "renal_sinus", "bowel", "gas", "stomach",
    "bladder", "cortical_bone", "marrow", "disc", "csf", "table", "lesion",
)
T = {name: i for i, name in enumerate(TISSUES)}  # tissue name -> label value in the label maps

# name -> (mean HU, patient-to-patient SD, texture amplitude HU). Unenhanced CT values.
TISSUE_HU: Dict[str, Tuple[float, float, float]] = {
    "outside": (OUTSIDE_FOV_HU, 0.0, 0.0),
    "air": (-1000.0, 0.0, 0.0),
    "subcutaneous_fat": (-100.0, 6.0, 6.0),
    "muscle": (45.0, 4.0, 5.0),
    "mediastinal_fat": (-95.0, 6.0, 8.0),
    "abdominal_fat": (-95.0, 6.0, 8.0),
    "pelvic_fat": (-95.0, 6.0, 8.0),
    "lung": (-850.0, 15.0, 25.0),
    "lung_vessel": (40.0, 4.0, 0.0),
    "heart": (45.0, 4.0, 4.0),
    "vessel": (45.0, 4.0, 3.0),
    "liver": (60.0, 5.0, 4.0),
    "spleen": (50.0, 4.0, 4.0),
    "kidney": (35.0, 4.0, 4.0),
    "renal_sinus": (-60.0, 8.0, 8.0),
    "bowel": (30.0, 5.0, 16.0),
    "gas": (-950.0, 10.0, 10.0),
    "stomach": (15.0, 4.0, 5.0),
    "bladder": (8.0, 3.0, 2.0),
    "cortical_bone": (850.0, 50.0, 40.0),
    "marrow": (250.0, 30.0, 35.0),
    "disc": (85.0, 8.0, 6.0),
    "csf": (12.0, 3.0, 2.0),
    "table": (60.0, 0.0, 0.0),
    "lesion": (0.0, 0.0, 0.0),  # label only: lesions carry their own HU
}

# --------------------------------------------------------------------------------------------
# Lesion types (DeepLesion's Coarse_lesion_type 1..8).

LESION_TYPES: Dict[int, str] = dict(enumerate(dl.LESION_TYPES, start=1))  # 1 bone ... 8 pelvis
# The tissues a lesion of each type must lie in (the whole cross-section, at three levels).
TYPE_HOSTS: Dict[int, Tuple[str, ...]] = {
    1: ("marrow",),
    2: ("abdominal_fat",),
    3: ("mediastinal_fat",),
    4: ("liver",),
    5: ("lung", "lung_vessel"),
    6: ("kidney",),  # the parenchyma, not the sinus fat
    7: ("subcutaneous_fat", "muscle"),
    8: ("pelvic_fat",),
}
# Typed lesions of DeepLesion's validation and test splits (9,816). Lung 2,394 and bone 247 are
# the benchmark paper's (../shared/papers/deeplesion_detection_benchmark.md, section 2.1); the other
# six are Yan et al. 2018's per-type counts as we recall them (not checked against the paper here):
# they sum with those two to the paper's 9,816 and follow its ordering (abdomen and lung most,
# then mediastinum and liver; bone and kidney fewest).
TYPE_COUNTS: Dict[int, int] = {1: 247, 2: 2166, 3: 1715, 4: 1270, 5: 2394, 6: 600, 7: 677, 8: 747}
# Median long diameter (mm) per type; log-normal with sigma LOG_SIZE_SIGMA, clipped to SIZE_RANGE_MM.
# At DeepLesion's usual 0.7-0.9 mm/px, ~90 % of the long axes fall in 10-50 px.
TYPE_SIZE_MM: Dict[int, float] = {1: 15.0, 2: 20.0, 3: 17.0, 4: 22.0, 5: 12.0, 6: 18.0, 7: 22.0, 8: 20.0}
LOG_SIZE_SIGMA = 0.42
SIZE_RANGE_MM = (6.0, 75.0)
# DICOM_windows written per key slice, by the type of its first lesion (soft tissue otherwise).
WINDOWS: Dict[str, Tuple[float, float]] = {"lung": (-1350.0, 150.0), "bone": (-500.0, 1300.0), "soft_tissue": (-175.0, 275.0)}
# Slice intervals (mm) and their probabilities: DeepLesion's are mostly 1 mm or 5 mm (the 3DCE paper:
# 48.3 % and 48.9 %), the rest in between.
SLICE_INTERVALS: Tuple[Tuple[float, float], ...] = ((1.0, 0.45), (1.25, 0.03), (2.0, 0.02), (2.5, 0.02), (5.0, 0.48))


# --------------------------------------------------------------------------------------------
# Settings.


@dataclasses.dataclass(frozen=True)
class SyntheticCTConfig:
  """Size and content of a synthetic CT release.

  Attributes:
    num_patients: patients (split 70 / 15 / 15, at least one per split).
    seed: everything follows from it.
    study_probs: probabilities of 1, 2, ... studies per patient.
    key_slice_probs: probabilities of 1, 2, ... key slices per series.
    second_lesion_prob: probability that a key slice holds a second lesion.
    context_mm: slices within this distance of a key slice are written (at least the 2 mm the
      builder's 3-slice input reads).
    type_mix: "deeplesion" (:data:`TYPE_COUNTS` proportions) or "cycle" (lesion n of patient p,
      counting from 0, has type ``(2 (p - 1) + n) mod 8 + 1``, so a tiny set holds every type).
    untyped_train: write ``Coarse_lesion_type`` -1 for training rows, as the real release does.
    slice_intervals: override :data:`SLICE_INTERVALS` (``((mm, probability), ...)``).
  """

  num_patients: int = 120
  seed: int = 0
  study_probs: Tuple[float, ...] = (0.55, 0.3, 0.15)
  key_slice_probs: Tuple[float, ...] = (0.5, 0.3, 0.2)
  second_lesion_prob: float = 0.1
  context_mm: float = 2.0
  type_mix: str = "deeplesion"
  untyped_train: bool = False
  slice_intervals: Tuple[Tuple[float, float], ...] = SLICE_INTERVALS

  def to_dict(self) -> Dict[str, Any]:
    out = dataclasses.asdict(self)
    out["slice_intervals"] = [list(p) for p in self.slice_intervals]
    out["study_probs"], out["key_slice_probs"] = list(self.study_probs), list(self.key_slice_probs)
    return out


SETS: Dict[str, SyntheticCTConfig] = {
    # 120 patients (84 / 18 / 18): 332 key slices (251 / 42 / 39), 351 lesions, 1,325 slice files, ~270 MB.
    "default": SyntheticCTConfig(),
    # 6 patients (4 / 1 / 1), one study each, 2 key slices per series, every type present.
    "tiny": SyntheticCTConfig(num_patients=6, study_probs=(1.0,), key_slice_probs=(0.0, 1.0), second_lesion_prob=0.0, type_mix="cycle",
                              slice_intervals=((1.25, 0.5), (5.0, 0.5))),
}


# --------------------------------------------------------------------------------------------
# Geometry primitives.


@dataclasses.dataclass(frozen=True)
class Shape:
  """A 3-D primitive painting one tissue.

  ``profile`` "ellipsoid": the in-plane semi-axes ``(rx, ry)`` at ``z = cz`` shrink as
  ``sqrt(1 - t^2)``, ``t = (z - cz) / rz_hi`` above and ``/ rz_lo`` below; "tube": constant
  semi-axes over ``[cz - rz_lo, cz + rz_hi]``, the centre drifting ``(dx, dy)`` mm per mm of z.
  ``ring``: > 0 paints only a shell of that thickness (mm) in-plane. ``within``: the labels it may
  replace (empty: any). Millimetres; ``angle`` in radians (rx's direction, image axes).
  """

  tissue: str
  cx: float
  cy: float
  cz: float
  rx: float
  ry: float
  rz_lo: float
  rz_hi: float
  angle: float = 0.0
  profile: str = "ellipsoid"
  dx: float = 0.0
  dy: float = 0.0
  within: Tuple[str, ...] = ()

  def section(self, z: float) -> Optional[Tuple[float, float, float, float]]:
    """``(cx, cy, rx, ry)`` of the cross-section at ``z`` (mm), or None."""
    dz = z - self.cz
    if dz < -self.rz_lo or dz > self.rz_hi:
      return None
    if self.profile == "tube":
      return self.cx + self.dx * dz, self.cy + self.dy * dz, self.rx, self.ry
    t = dz / (self.rz_hi if dz > 0 else self.rz_lo)
    s = math.sqrt(max(0.0, 1.0 - t * t))
    if s <= 0.0:
      return None
    return self.cx + self.dx * dz, self.cy + self.dy * dz, self.rx * s, self.ry * s


def _ellipse_inside(shape_hw: Tuple[int, int], cx: float, cy: float, rx: float, ry: float, angle: float, pad: float = 1.0):
  """``(row slice, col slice, mask)`` of the pixels whose centres lie inside the ellipse (pixels;
  ``cx, cy`` in continuous coordinates where pixel ``(i, j)`` covers ``[j, j+1] x [i, i+1]``),
  or None when it misses the image."""
  h, w = shape_hw
  ext = max(rx, ry) + pad
  r0, r1 = max(0, int(math.floor(cy - ext))), min(h, int(math.ceil(cy + ext)) + 1)
  c0, c1 = max(0, int(math.floor(cx - ext))), min(w, int(math.ceil(cx + ext)) + 1)
  if r0 >= r1 or c0 >= c1 or rx <= 0 or ry <= 0:
    return None
  yy = np.arange(r0, r1, dtype=np.float32)[:, None] + 0.5 - cy
  xx = np.arange(c0, c1, dtype=np.float32)[None, :] + 0.5 - cx
  ca, sa = math.cos(angle), math.sin(angle)
  u = xx * ca + yy * sa
  v = -xx * sa + yy * ca
  return slice(r0, r1), slice(c0, c1), (u / rx) ** 2 + (v / ry) ** 2 <= 1.0


# --------------------------------------------------------------------------------------------
# Patients.


@dataclasses.dataclass
class Patient:
  """One synthetic body: landmarks, body profile, primitives, tissue values (mm, HU)."""

  index: int
  gender: str
  age: int
  split_code: int
  z_pelvis: float  # iliac crest: pelvic cavity below, abdominal above
  z_diaphragm: float  # thoracic cavity above
  z_top: float  # lung apices
  body_z: np.ndarray  # [K] z knots of the body profile
  body_w: np.ndarray  # [K] half-width (mm)
  body_d: np.ndarray  # [K] half-depth (mm)
  fat_z: np.ndarray  # [K] subcutaneous fat thickness (mm)
  d_ref: float  # y of the back (mm): body centre y = d_ref - depth
  muscle_mm: float  # muscle wall thickness
  y_vb: float  # y of the vertebral bodies' centres
  disc_phase: float  # z of a disc's lower face (discs every DISC_PERIOD_MM * height scale)
  height_scale: float
  shapes: List[Shape]
  ribs: List[Tuple[float, float, float]]  # (z at the spine, z drop to the front end, side angle offset)
  rib_drop: float
  tissue_hu: np.ndarray  # [len(TISSUES)] mean HU
  tissue_tex: np.ndarray  # [len(TISSUES)] texture amplitude
  type_z: Dict[int, Tuple[float, float]]  # lesion type -> z range (mm) where its tissue is

  def body(self, z: float) -> Tuple[float, float, float]:
    """``(half-width, half-depth, fat thickness)`` of the body at ``z``."""
    return (float(np.interp(z, self.body_z, self.body_w)), float(np.interp(z, self.body_z, self.body_d)),
            float(np.interp(z, self.body_z, self.fat_z)))

  @property
  def max_half_width(self) -> float:
    return float(np.max(self.body_w))

  def cavity_tissue(self, z: float) -> str:
    if z >= self.z_diaphragm:
      return "mediastinal_fat"
    return "abdominal_fat" if z >= self.z_pelvis else "pelvic_fat"


def _rng(*keys: int) -> np.random.Generator:
  return np.random.default_rng(np.random.SeedSequence([int(k) & 0xFFFFFFFF for k in keys]))


def split_codes(num_patients: int, seed: int) -> List[int]:
  """``Train_Val_Test`` of each patient: a seeded permutation cut 70 / 15 / 15 (at least one
  patient in validation and test when there are 3 or more)."""
  n = int(num_patients)
  n_val = max(1, int(round(n * SPLIT_FRACTIONS[1][2]))) if n >= 3 else 0
  n_test = max(1, int(round(n * SPLIT_FRACTIONS[2][2]))) if n >= 3 else 0
  order = _rng(seed, 0x5117).permutation(n)
  codes = [1] * n
  for rank, p in enumerate(order):
    codes[p] = 2 if rank < n_val else 3 if rank < n_val + n_test else 1
  return codes


def make_patient(seed: int, index: int, split_code: int = 1) -> Patient:
  """The phantom of patient ``index`` (1-based) of ``seed``."""
  rng = _rng(seed, index, 0xB0D1)
  u = rng.uniform
  lam = u(0.93, 1.07)  # height
  sw = u(0.88, 1.13)  # width
  sd = sw * u(0.93, 1.07)  # depth
  fat = u(8.0, 30.0)  # abdominal subcutaneous fat (mm)
  z_pelvis, z_diaphragm, z_top = 170.0 * lam, 440.0 * lam, 640.0 * lam
  knots = np.array([0.0, 80.0, 170.0, 260.0, 350.0, 430.0, 520.0, 600.0, 660.0]) * lam
  body_w = np.array([170.0, 175.0, 163.0, 150.0, 150.0, 158.0, 163.0, 160.0, 150.0]) * sw
  body_d = np.array([108.0, 112.0, 108.0, 104.0, 108.0, 112.0, 110.0, 104.0, 95.0]) * sd
  fat_z = fat * np.array([1.0, 1.0, 1.0, 1.0, 0.9, 0.75, 0.6, 0.55, 0.5])
  d_ref = float(np.max(body_d))
  muscle = u(8.0, 12.0)
  # Spine: vertebral bodies this far in front of the back's muscle wall.
  y_vb = d_ref - float(np.max(fat_z)) - muscle - 40.0
  S: List[Shape] = []
  J = lambda v, s: v + rng.normal(0.0, s)  # noqa: E731  jitter

  # Bowel (abdomen and pelvis), colon, rectum: painted first, organs over them.
  for _ in range(int(rng.integers(14, 22))):
    cz = u(40.0, 330.0) * lam
    r = u(11.0, 22.0)
    cx, cy = u(-95.0, 95.0) * sw, u(-70.0, 25.0) * sd
    S.append(Shape("bowel", cx, cy, cz, r * u(0.8, 1.25), r * u(0.8, 1.25), u(15.0, 40.0), u(15.0, 40.0), angle=u(0, math.pi),
                   within=("abdominal_fat", "pelvic_fat")))
    if rng.random() < 0.45:  # gas bubbles in some loops
      S.append(Shape("gas", cx + u(-0.3, 0.3) * r, cy - u(0.0, 0.4) * r, cz, r * u(0.3, 0.6), r * u(0.25, 0.45), 12.0, 12.0,
                     within=("bowel",)))
  for side in (-1.0, 1.0):
    cx = side * J(108.0, 5.0) * sw
    S.append(Shape("bowel", cx, 10.0 * sd, 255.0 * lam, 19.0, 17.0, 75.0 * lam, 75.0 * lam, profile="tube", within=("abdominal_fat",)))
    S.append(Shape("gas", cx, 6.0 * sd, 255.0 * lam, 9.0, 7.0, 75.0 * lam, 75.0 * lam, profile="tube", within=("bowel",)))
  S.append(Shape("bowel", 0.0, y_vb - 18.0, 50.0 * lam, 16.0, 14.0, 60.0 * lam, 60.0 * lam, profile="tube", within=("pelvic_fat",)))
  S.append(Shape("gas", 0.0, y_vb - 19.0, 50.0 * lam, 6.0, 5.0, 60.0 * lam, 60.0 * lam, profile="tube", within=("bowel",)))
  S.append(Shape("bladder", J(0.0, 5.0), J(-45.0, 5.0) * sd, J(40.0, 8.0) * lam, u(38, 52), u(28, 40), 45.0, 40.0,
                 within=("pelvic_fat", "bowel")))

  # Upper abdominal organs.
  S.append(Shape("liver", J(-60.0, 5.0) * sw, J(-8.0, 5.0) * sd, 380.0 * lam, 88.0 * sw, 72.0 * sd, 80.0 * lam, 75.0 * lam,
                 angle=u(-0.15, 0.15), within=("abdominal_fat", "mediastinal_fat", "bowel")))
  S.append(Shape("liver", J(15.0, 5.0) * sw, -50.0 * sd, 400.0 * lam, 55.0 * sw, 30.0 * sd, 45.0 * lam, 40.0 * lam, angle=-0.2,
                 within=("abdominal_fat", "mediastinal_fat", "bowel")))
  S.append(Shape("spleen", J(92.0, 4.0) * sw, J(35.0, 4.0) * sd, 375.0 * lam, 28.0, 46.0, 50.0 * lam, 45.0 * lam, angle=0.5,
                 within=("abdominal_fat", "mediastinal_fat", "bowel")))
  S.append(Shape("stomach", J(48.0, 5.0) * sw, -38.0 * sd, 395.0 * lam, 42.0, 30.0, 45.0 * lam, 45.0 * lam, angle=0.3,
                 within=("abdominal_fat", "bowel")))
  S.append(Shape("gas", 48.0 * sw, -55.0 * sd, 410.0 * lam, 28.0, 11.0, 28.0 * lam, 28.0 * lam, angle=0.3, within=("stomach",)))
  for side, zc in ((-1.0, 275.0), (1.0, 290.0)):
    cx, cy, cz = side * J(78.0, 4.0) * sw, y_vb + J(2.0, 4.0), J(zc, 8.0) * lam
    a = u(24.0, 30.0)
    S.append(Shape("kidney", cx, cy, cz, a, a * u(1.2, 1.45), 55.0 * lam, 55.0 * lam, angle=side * 0.5,
                   within=("abdominal_fat", "bowel")))
    S.append(Shape("renal_sinus", cx - side * 9.0, cy, cz, 9.0, 13.0, 30.0, 30.0, angle=side * 0.5, within=("kidney",)))
  # Thorax.
  lung_base = z_diaphragm - 15.0 * lam
  for side, cx, rx in ((-1.0, -95.0, 74.0), (1.0, 98.0, 70.0)):  # clipped by the chest wall
    S.append(Shape("lung", cx * sw, J(5.0, 3.0) * sd, lung_base + 45.0 * lam, rx * sw, 105.0 * sd, 45.0 * lam,
                   z_top - lung_base - 45.0 * lam, within=("mediastinal_fat",)))
  S.append(Shape("heart", J(18.0, 4.0) * sw, -28.0 * sd, J(470.0, 6.0) * lam, 55.0 * sw, 45.0 * sd, 45.0 * lam, 55.0 * lam,
                 angle=-0.5, within=("mediastinal_fat", "lung")))
  S.append(Shape("gas", 0.0, y_vb - 40.0, z_top, 9.0, 8.0, 115.0 * lam, 40.0, profile="tube", within=("mediastinal_fat", "lung")))
  lung_top = z_top
  for k in range(int(rng.integers(26, 34))):  # lung vessels: thin tubes drifting through the lungs
    side = -1.0 if k % 2 else 1.0
    cx = side * u(40.0, 120.0) * sw
    cy = u(-70.0, 70.0) * sd
    r = u(1.0, 2.0) + (2.0 if abs(cx) < 65.0 * sw else 0.0) * u(0.0, 1.0)
    S.append(Shape("lung_vessel", cx, cy, 0.5 * (lung_base + lung_top), r, r, 0.5 * (lung_top - lung_base),
                   0.5 * (lung_top - lung_base), profile="tube", dx=u(-0.25, 0.25), dy=u(-0.25, 0.25), within=("lung",)))
  # Vessels (aorta, vena cava), psoas, paraspinal muscles.
  fat_tissues = ("mediastinal_fat", "abdominal_fat", "pelvic_fat", "lung", "bowel")
  S.append(Shape("vessel", J(20.0, 3.0), y_vb - 30.0, 0.5 * (z_top - 40.0 * lam + 175.0 * lam), 12.0, 12.0,
                 0.5 * (z_top - 40.0 * lam - 175.0 * lam), 0.5 * (z_top - 40.0 * lam - 175.0 * lam), profile="tube", within=fat_tissues))
  S.append(Shape("vessel", J(-24.0, 3.0), y_vb - 25.0, 340.0 * lam, 11.0, 10.0, 140.0 * lam, 130.0 * lam, profile="tube",
                 within=fat_tissues))
  for side in (-1.0, 1.0):
    S.append(Shape("muscle", side * 40.0, y_vb - 2.0, 110.0 * lam, 24.0, 20.0, 10.0, 230.0 * lam, dx=side * -0.03,
                   within=("abdominal_fat", "pelvic_fat", "bowel")))
    S.append(Shape("muscle", side * 34.0, y_vb + 33.0, 330.0 * lam, 26.0, 21.0, 400.0 * lam, 400.0 * lam, profile="tube"))
  # Pelvis: gluteal muscles, iliac wings, sacrum, femoral heads.
  for side in (-1.0, 1.0):
    S.append(Shape("muscle", side * 95.0 * sw, 55.0 * sd, 60.0 * lam, 52.0 * sw, 42.0 * sd, 70.0 * lam, 80.0 * lam,
                   within=("pelvic_fat", "abdominal_fat", "bowel", "subcutaneous_fat")))
    for tissue, grow in (("cortical_bone", 0.0), ("marrow", -3.5)):
      S.append(Shape(tissue, side * 98.0 * sw, 25.0 * sd, 130.0 * lam, 11.0 + grow, 58.0 * sd + grow, 55.0 * lam, 45.0 * lam,
                     angle=side * -0.6, within=("cortical_bone",) if tissue == "marrow" else ()))
      S.append(Shape(tissue, side * 88.0 * sw, 5.0 * sd, 30.0 * lam, 25.0 + grow, 25.0 + grow, 25.0 + grow, 25.0 + grow,
                     within=("cortical_bone",) if tissue == "marrow" else ()))
  for tissue, grow in (("cortical_bone", 0.0), ("marrow", -3.5)):
    S.append(Shape(tissue, 0.0, y_vb + 8.0, 120.0 * lam, 48.0 + grow, 18.0 + grow, 65.0 * lam, 45.0 * lam,
                   within=("cortical_bone",) if tissue == "marrow" else ()))
  # (Vertebrae, ribs and sternum follow the body wall and the disc spacing: drawn per slice, render_labels.)

  # Tissue values and textures.
  hu = np.zeros(len(TISSUES), np.float32)
  tex = np.zeros(len(TISSUES), np.float32)
  for name, (mean, sd_hu, amp) in TISSUE_HU.items():
    hu[T[name]] = mean + (rng.normal(0.0, sd_hu) if sd_hu else 0.0)
    tex[T[name]] = amp
  for name in ("mediastinal_fat", "abdominal_fat", "pelvic_fat"):  # one fat value for the whole cavity
    hu[T[name]] = hu[T["mediastinal_fat"]]
  # Ribs: 12 a side; rib k leaves the spine at z_k and reaches the front wall rib_drop lower.
  rib_drop = 95.0 * lam
  ribs = [(z_top - 12.0 * lam - 24.0 * lam * k, 0.0, u(-0.05, 0.05)) for k in range(12)]

  liver_z = (280.0 * lam, 455.0 * lam)
  type_z = {
      1: (20.0 * lam, z_top - 40.0 * lam),
      2: (z_pelvis + 15.0 * lam, z_diaphragm - 25.0 * lam),
      3: (z_diaphragm + 10.0 * lam, z_top - 40.0 * lam),
      4: (liver_z[0] + 15.0 * lam, liver_z[1] - 20.0 * lam),
      5: (lung_base + 25.0 * lam, z_top - 25.0 * lam),
      6: (225.0 * lam, 340.0 * lam),
      7: (15.0 * lam, z_top - 20.0 * lam),
      8: (15.0 * lam, z_pelvis - 10.0 * lam),
  }
  return Patient(index=index, gender="F" if rng.random() < 0.5 else "M", age=int(rng.integers(18, 90)), split_code=split_code,
                 z_pelvis=z_pelvis, z_diaphragm=z_diaphragm, z_top=z_top, body_z=knots, body_w=body_w, body_d=body_d,
                 fat_z=fat_z, d_ref=d_ref, muscle_mm=muscle, y_vb=y_vb, disc_phase=u(0.0, DISC_PERIOD_MM), height_scale=lam, shapes=S, ribs=ribs, rib_drop=rib_drop, tissue_hu=hu,
                 tissue_tex=tex, type_z=type_z)


# --------------------------------------------------------------------------------------------
# Series and lesions.


@dataclasses.dataclass
class Lesion:
  """A lesion: a 3-D ellipsoid (mm, the patient's frame) and its densities.

  Attributes:
    type: ``Coarse_lesion_type`` 1..8.
    cx, cy, cz: centre (mm).
    a, b, c: semi-axes (mm): long and short in-plane, z.
    angle: direction of the long axis (radians, image axes: x right, y down).
    hu: core density (HU); rim: HU added at the edge (rim-enhancing liver lesions), else 0.
    host_hu: the mean density of the tissue it sits in (for the record).
    kind: "hypodense", "hyperdense", "cyst", "solid", "lytic", "sclerotic", "ground_glass", "node".
    key_slice: index of its key slice in its series.
  """

  type: int
  cx: float
  cy: float
  cz: float
  a: float
  b: float
  c: float
  angle: float
  hu: float
  rim: float
  host_hu: float
  kind: str
  key_slice: int

  def scale_at(self, z: float) -> float:
    """In-plane scale of the cross-section at ``z`` (0 outside the lesion)."""
    t = (z - self.cz) / self.c
    return math.sqrt(1.0 - t * t) if abs(t) < 1.0 else 0.0


@dataclasses.dataclass
class Series:
  """One CT series: a patient scanned at one pixel spacing and slice interval, with its lesions.

  Slice ``i`` (1-based) lies at ``z = z_first - (i - 1) * interval``; pixel coordinates of a point
  ``(x, y)`` mm are ``(ox + x / spacing, oy + y / spacing)`` (continuous: pixel ``(r, c)`` covers
  ``[c, c + 1] x [r, r + 1]``).
  """

  patient: Patient
  seed: int
  study: int
  series_id: int
  spacing: float
  interval: float
  z_first: float
  num_slices: int
  ox: float
  oy: float
  noise_sd: float
  context: int  # slices written on each side of a key slice
  lesions: List[Lesion] = dataclasses.field(default_factory=list)
  key_slices: List[int] = dataclasses.field(default_factory=list)
  _texture: Optional[Tuple[np.ndarray, np.ndarray]] = dataclasses.field(default=None, repr=False)

  def z(self, index: float) -> float:
    return self.z_first - (index - 1) * self.interval

  def nearest_slice(self, z: float) -> int:
    return int(round((self.z_first - z) / self.interval)) + 1

  def px(self, x: float, y: float) -> Tuple[float, float]:
    return self.ox + x / self.spacing, self.oy + y / self.spacing

  def mm(self, col: float, row: float) -> Tuple[float, float]:
    return (col - self.ox) * self.spacing, (row - self.oy) * self.spacing

  @property
  def folder(self) -> str:
    return f"{self.patient.index:06d}_{self.study:02d}_{self.series_id:02d}"

  def slice_range(self, key: int) -> Tuple[int, int]:
    return max(1, key - self.context), min(self.num_slices, key + self.context)

  def written_slices(self) -> List[int]:
    out = set()
    for key in self.key_slices:
      lo, hi = self.slice_range(key)
      out.update(range(lo, hi + 1))
    return sorted(out)

  def texture(self) -> Tuple[np.ndarray, np.ndarray]:
    """Two smooth unit-variance fields; the texture at ``z`` mixes them (:func:`render_slice`)."""
    if self._texture is None:
      rng = _rng(self.seed, self.patient.index, self.study, 0x7E47)
      fields = []
      for _ in range(2):
        f = cv2.GaussianBlur(rng.standard_normal((IMAGE_SIZE, IMAGE_SIZE)).astype(np.float32), (0, 0), 4.0)
        fields.append(f / max(float(f.std()), 1e-6))
      self._texture = (fields[0], fields[1])
    return self._texture


TEXTURE_PERIOD_MM = 40.0  # the texture turns over along z with this period (smooth between slices)


def _paint(labels: np.ndarray, tissue: int, allowed: Optional[np.ndarray], cx: float, cy: float, rx: float, ry: float,
           angle: float = 0.0) -> None:
  hit = _ellipse_inside(labels.shape, cx, cy, rx, ry, angle)
  if hit is None:
    return
  rs, cs, mask = hit
  sub = labels[rs, cs]
  if allowed is not None:
    mask = mask & allowed[sub]
  sub[mask] = tissue


def _allowed(names: Sequence[str]) -> Optional[np.ndarray]:
  if not names:
    return None
  out = np.zeros(len(TISSUES), bool)
  out[[T[n] for n in names]] = True
  return out


def _paint_bone(labels: np.ndarray, series: Series, x: float, y: float, rx: float, ry: float, angle: float, cortex: float,
                allowed: Optional[np.ndarray] = None, inner: str = "marrow") -> None:
  """A cortical shell ``cortex`` mm thick around ``inner`` (mm, the patient's frame)."""
  col, row = series.px(x, y)
  sp = series.spacing
  _paint(labels, T["cortical_bone"], allowed, col, row, rx / sp, ry / sp, angle)
  if rx > cortex and ry > cortex:
    _paint(labels, T[inner], _ALLOWED_CORTEX, col, row, (rx - cortex) / sp, (ry - cortex) / sp, angle)


_ALLOWED_CORTEX = _allowed(("cortical_bone",))
_ALLOWED_SHAPES: Dict[Tuple[str, ...], Optional[np.ndarray]] = {}


def render_labels(series: Series, z: float, with_lesions: bool = False) -> np.ndarray:
  """uint8 ``[512, 512]`` tissue labels (:data:`T`) of the slice at ``z`` mm (``with_lesions``:
  the lesions' cross-sections painted as "lesion")."""
  p, sp = series.patient, series.spacing
  n = IMAGE_SIZE
  labels = np.full((n, n), T["outside"], np.uint8)
  _paint(labels, T["air"], None, n / 2, n / 2, n / 2, n / 2)  # the field of view
  w, d, fat = p.body(z)
  yc = p.d_ref - d
  # Table: a flat band under the back.
  col0, row0 = series.px(-1.3 * w, p.d_ref + 6.0)
  col1, row1 = series.px(1.3 * w, p.d_ref + 14.0)
  r0, r1, c0, c1 = max(0, int(row0)), min(n, int(row1)), max(0, int(col0)), min(n, int(col1))
  if r0 < r1 and c0 < c1:
    band = labels[r0:r1, c0:c1]
    band[band == T["air"]] = T["table"]
  ccol, crow = series.px(0.0, yc)
  _paint(labels, T["subcutaneous_fat"], None, ccol, crow, w / sp, d / sp)
  _paint(labels, T["muscle"], None, ccol, crow, (w - fat) / sp, (d - fat) / sp)
  wall = fat + p.muscle_mm
  _paint(labels, T[p.cavity_tissue(z)], None, ccol, crow, (w - wall) / sp, (d - wall) / sp)
  for shape in p.shapes:
    section = shape.section(z)
    if section is None:
      continue
    x, y, rx, ry = section
    allowed = _ALLOWED_SHAPES.get(shape.within)
    if allowed is None and shape.within:
      allowed = _ALLOWED_SHAPES.setdefault(shape.within, _allowed(shape.within))
    col, row = series.px(x, y)
    _paint(labels, T[shape.tissue], allowed, col, row, rx / sp, ry / sp, shape.angle)
  lam = p.height_scale
  # Spine: vertebral body (or disc), canal, laminae and spinous process, above the sacrum.
  if z > 150.0 * lam:
    disc = ((z - p.disc_phase * lam) % (DISC_PERIOD_MM * lam)) < DISC_MM * lam
    if disc:
      col, row = series.px(0.0, p.y_vb)
      _paint(labels, T["disc"], None, col, row, 20.0 / sp, 16.0 / sp)
    else:
      _paint_bone(labels, series, 0.0, p.y_vb, 20.0, 16.0, 0.0, 2.5)
    for side in (-1.0, 1.0):
      _paint_bone(labels, series, side * 10.0, p.y_vb + 15.0, 4.0, 9.0, side * 0.4, 1.5)
    _paint_bone(labels, series, 0.0, p.y_vb + 27.0, 12.0, 10.0, 0.0, 3.0, inner="csf")
    _paint_bone(labels, series, 0.0, p.y_vb + 45.0, 4.5, 10.0, 0.0, 1.6)
  # Ribs, from the spine forwards and down the chest wall; sternum in front.
  if z > p.z_diaphragm - 115.0 * lam:
    rx_wall, ry_wall = w - fat - 0.45 * p.muscle_mm, d - fat - 0.45 * p.muscle_mm
    phi_post, phi_front = 1.2, -1.05
    for z_spine, _, dphi in p.ribs:
      t = (z_spine - z) / p.rib_drop
      if not 0.0 <= t <= 1.0:
        continue
      phi = (1.0 - t) * phi_post + t * phi_front + dphi
      x, y = rx_wall * math.cos(phi), yc + ry_wall * math.sin(phi)
      tangent = math.atan2(ry_wall * math.cos(phi), -rx_wall * math.sin(phi))
      for side in (-1.0, 1.0):
        _paint_bone(labels, series, side * x, y, 7.0, 4.5, tangent if side > 0 else math.pi - tangent, 1.6)
    if p.z_diaphragm - 15.0 * lam < z < p.z_top - 45.0 * lam:
      _paint_bone(labels, series, 0.0, yc - d + fat + 0.5 * p.muscle_mm, 14.0, 6.0, 0.0, 1.8)
  if with_lesions:
    for lesion in series.lesions:
      s = lesion.scale_at(z)
      if s > 0:
        col, row = series.px(lesion.cx, lesion.cy)
        _paint(labels, T["lesion"], None, col, row, lesion.a * s / sp, lesion.b * s / sp, lesion.angle)
  return labels


def _noise_kernel_gain(sigma: float) -> float:
  """Standard deviation of unit white noise after ``cv2.GaussianBlur(sigma)``."""
  k = cv2.getGaussianKernel(2 * int(math.ceil(3 * sigma)) + 1, sigma).ravel()
  return float(np.sum(k ** 2))  # separable 2-D kernel: sqrt(sum k2d^2) = sum k1d^2


_NOISE_GAIN = _noise_kernel_gain(NOISE_BLUR_SIGMA_PX)


def render_slice(series: Series, index: Optional[int] = None, z: Optional[float] = None, noise: bool = True
                 ) -> Tuple[np.ndarray, np.ndarray]:
  """One slice of a series: ``(hu, labels)``.

  Args:
    series: the series.
    index: slice number (1-based); or ``z`` (mm) for a slice anywhere (noise then drawn for the
      nearest slice number).
    noise: add the scanner noise.

  Returns:
    ``hu`` float32 ``[512, 512]`` Hounsfield units (not yet rounded), ``labels`` uint8 tissue
    labels without lesions (:func:`render_labels`).
  """
  if z is None:
    if index is None:
      raise ValueError("render_slice: give index or z")
    z = series.z(index)
  p, sp = series.patient, series.spacing
  labels = render_labels(series, z)
  t1, t2 = series.texture()
  phase = 2.0 * math.pi * z / TEXTURE_PERIOD_MM
  texture = math.cos(phase) * t1 + math.sin(phase) * t2
  hu = p.tissue_hu[labels] + p.tissue_tex[labels] * texture
  for lesion in series.lesions:
    s = lesion.scale_at(z)
    if s <= 0:
      continue
    a, b = lesion.a * s / sp, lesion.b * s / sp
    col, row = series.px(lesion.cx, lesion.cy)
    ext = a + 3.0
    r0, r1 = max(0, int(row - ext)), min(IMAGE_SIZE, int(row + ext) + 2)
    c0, c1 = max(0, int(col - ext)), min(IMAGE_SIZE, int(col + ext) + 2)
    yy = np.arange(r0, r1, dtype=np.float32)[:, None] + 0.5 - row
    xx = np.arange(c0, c1, dtype=np.float32)[None, :] + 0.5 - col
    ca, sa = math.cos(lesion.angle), math.sin(lesion.angle)
    u, v = xx * ca + yy * sa, -xx * sa + yy * ca
    r = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    weight = np.clip(0.5 + (1.0 - r) * math.sqrt(a * b), 0.0, 1.0)  # ~1 px soft edge
    value = lesion.hu + 4.0 * texture[r0:r1, c0:c1]
    if lesion.rim:
      value = value + lesion.rim * np.exp(-(((1.0 - r) / 0.18) ** 2))
    sub = hu[r0:r1, c0:c1]
    sub += weight * (value - sub)
  hu = cv2.GaussianBlur(hu.astype(np.float32), (0, 0), BLUR_SIGMA_PX)
  fov = labels != T["outside"]
  if noise:
    key = index if index is not None else series.nearest_slice(z)
    rng = _rng(series.seed, p.index, series.study, 0x401, int(key))
    white = rng.standard_normal((IMAGE_SIZE, IMAGE_SIZE)).astype(np.float32)
    hu += cv2.GaussianBlur(white, (0, 0), NOISE_BLUR_SIGMA_PX) * np.float32(series.noise_sd / _NOISE_GAIN)
  hu[~fov] = OUTSIDE_FOV_HU
  return hu.astype(np.float32), labels


# --------------------------------------------------------------------------------------------
# Lesion placement.


def _lesion_hu(rng: np.random.Generator, lesion_type: int, host: str, host_hu: float) -> Tuple[float, float, str]:
  """``(core HU, rim HU, kind)`` of a lesion of ``lesion_type`` in ``host`` (mean ``host_hu``)."""
  u = rng.uniform
  if lesion_type == 1:  # bone: lytic (soft-tissue density in marrow) or sclerotic
    return (u(20.0, 90.0), 0.0, "lytic") if rng.random() < 0.6 else (u(550.0, 850.0), 0.0, "sclerotic")
  if lesion_type == 4:  # liver: mostly hypodense metastases, some rim-enhancing; some hyperdense
    if rng.random() < 0.75:
      return host_hu - u(25.0, 50.0), (u(15.0, 30.0) if rng.random() < 0.3 else 0.0), "hypodense"
    return host_hu + u(20.0, 45.0), 0.0, "hyperdense"
  if lesion_type == 5:  # lung: solid nodules, some ground-glass
    return (u(-40.0, 40.0), 0.0, "solid") if rng.random() < 0.8 else (u(-550.0, -350.0), 0.0, "ground_glass")
  if lesion_type == 6:  # kidney: cysts (water) or solid masses, hyperdense on unenhanced CT
    return (u(0.0, 15.0), 0.0, "cyst") if rng.random() < 0.5 else (u(55.0, 80.0), 0.0, "solid")
  if lesion_type == 7 and host == "muscle":  # soft tissue: hypodense in muscle, nodules in fat
    return u(5.0, 25.0), 0.0, "hypodense"
  return u(20.0, 50.0), 0.0, "node"  # abdomen, mediastinum, pelvis (lymph nodes, masses), soft tissue in fat


def _host_tissue_at(labels: np.ndarray, col: float, row: float, allowed: np.ndarray) -> str:
  r, c = min(IMAGE_SIZE - 1, max(0, int(row))), min(IMAGE_SIZE - 1, max(0, int(col)))
  label = int(labels[r, c])
  return TISSUES[label] if allowed[label] else TISSUES[int(np.bincount(labels[allowed[labels]]).argmax())]


def place_lesion(series: Series, lesion_type: int, rng: np.random.Generator, key: Optional[int] = None,
                 attempts: int = 40) -> Optional[Lesion]:
  """A lesion of ``lesion_type`` inside its tissues (:data:`TYPE_HOSTS`), or None if none fits.

  Draws its size (:data:`TYPE_SIZE_MM`, shrinking by 0.9 every 6 failed attempts), its centre's z in
  the type's z range (or on slice ``key`` when given), and an in-plane centre such that its
  cross-sections at the key slice and at ``cz +- 0.6 c`` (each grown by 1.5 px) lie in the host
  tissues and clear of the series' other lesions; a lesion whose z extent would reach another key
  slice of the series (or whose key slice another lesion reaches) is redrawn.
  """
  p, sp = series.patient, series.spacing
  allowed = _allowed(TYPE_HOSTS[lesion_type])
  cache: Dict[float, np.ndarray] = {}

  def labels_at(z: float) -> np.ndarray:
    z = round(z, 3)
    if z not in cache:
      cache[z] = render_labels(series, z, with_lesions=True)
    return cache[z]

  for attempt in range(attempts):
    shrink = 0.9 ** (attempt // 6)
    long_mm = float(np.clip(TYPE_SIZE_MM[lesion_type] * math.exp(rng.normal(0.0, LOG_SIZE_SIGMA)), *SIZE_RANGE_MM)) * shrink
    a = 0.5 * long_mm
    b = a * rng.uniform(0.55, 0.95)
    c = 0.5 * (a + b) * rng.uniform(0.75, 1.25)
    angle = rng.uniform(0.0, math.pi)
    if key is None:
      lo, hi = p.type_z[lesion_type]
      k = series.nearest_slice(rng.uniform(lo, hi))
    else:
      k = key
    if not 1 <= k <= series.num_slices:
      continue
    zk = series.z(k)
    cz = zk + rng.uniform(-0.2, 0.2) * min(series.interval, c)
    if any(o.key_slice != k and (abs(cz - series.z(o.key_slice)) < c + 1.0 or abs(o.cz - zk) < o.c + 1.0)
           for o in series.lesions):
      continue
    levels = [zk - cz, -0.6 * c, 0.6 * c]
    hosts = []
    candidates = None
    for dz in levels:
      s = math.sqrt(max(0.0, 1.0 - (dz / c) ** 2))
      host = allowed[labels_at(cz + dz)]
      dist = cv2.distanceTransform(host.astype(np.uint8), cv2.DIST_L2, 5)
      ok = dist >= b * s / sp + 2.0
      candidates = ok if candidates is None else candidates & ok
      hosts.append((host, s))
    rows, cols = np.nonzero(candidates)
    if len(rows) == 0:
      continue
    for i in rng.permutation(len(rows))[:60]:
      col, row = cols[i] + 0.5, rows[i] + 0.5
      inside = True
      for host, s in hosts:
        hit = _ellipse_inside(host.shape, col, row, a * s / sp + 1.5, b * s / sp + 1.5, angle)
        if hit is None:
          inside = False
          break
        rs, cs, mask = hit
        if not np.all(host[rs, cs][mask]) or np.count_nonzero(mask) < math.pi * (a * s / sp + 1.5) * (b * s / sp + 1.5) * 0.8:
          inside = False  # (the second test: the ellipse was cut by the image border)
          break
      if not inside:
        continue
      x, y = series.mm(col, row)
      host_name = _host_tissue_at(labels_at(cz + levels[0]), col, row, allowed)
      host_hu = float(p.tissue_hu[T[host_name]])
      hu, rim, kind = _lesion_hu(rng, lesion_type, host_name, host_hu)
      return Lesion(type=lesion_type, cx=x, cy=y, cz=cz, a=a, b=b, c=c, angle=angle, hu=hu, rim=rim, host_hu=host_hu,
                    kind=kind, key_slice=k)
  return None


# --------------------------------------------------------------------------------------------
# Series of a patient.


def _draw_type(rng: np.random.Generator, config: SyntheticCTConfig, patient: int, n: int) -> int:
  if config.type_mix == "cycle":
    return (2 * (patient - 1) + n) % len(TYPE_COUNTS) + 1
  if config.type_mix != "deeplesion":
    raise ValueError(f"SyntheticCTConfig.type_mix must be 'deeplesion' or 'cycle', got {config.type_mix!r}")
  types = sorted(TYPE_COUNTS)
  weights = np.asarray([TYPE_COUNTS[t] for t in types], np.float64)
  return int(types[rng.choice(len(types), p=weights / weights.sum())])


def _choice(rng: np.random.Generator, probs: Sequence[float]) -> int:
  """1-based index drawn with ``probs``."""
  probs = np.asarray(probs, np.float64)
  return int(rng.choice(len(probs), p=probs / probs.sum())) + 1


def patient_series(config: SyntheticCTConfig, index: int, split_code: Optional[int] = None) -> List[Series]:
  """The series of patient ``index`` (1-based) with their placed lesions: a pure function of
  ``(config, index)`` (``split_code`` only labels the patient; default: :func:`split_codes`)."""
  if split_code is None:
    split_code = split_codes(config.num_patients, config.seed)[index - 1]
  patient = make_patient(config.seed, index, split_code)
  rng = _rng(config.seed, index, 0x57D)
  n_lesions = 0
  out = []
  for study in range(1, _choice(rng, config.study_probs) + 1):
    srng = _rng(config.seed, index, study, 0x5E51)
    fov = round(2.0 * patient.max_half_width * srng.uniform(1.12, 1.32))
    spacing = float(np.clip(fov / IMAGE_SIZE, 0.6, 0.98))
    intervals = np.asarray([i for i, _ in config.slice_intervals], np.float64)
    interval = float(intervals[_choice(srng, [q for _, q in config.slice_intervals]) - 1])
    z_first = patient.z_top + srng.uniform(10.0, 30.0)
    num_slices = min(999, int((z_first + srng.uniform(0.0, 20.0)) // interval) + 1)
    context = int(math.ceil(max(config.context_mm, dl.DEFAULT_SLICE_INTERVAL_MM) / interval - 1e-9))
    series = Series(patient=patient, seed=config.seed, study=study, series_id=int(srng.integers(1, 6)), spacing=spacing,
                    interval=interval, z_first=z_first, num_slices=num_slices,
                    ox=IMAGE_SIZE / 2 + srng.uniform(-10.0, 10.0),
                    oy=IMAGE_SIZE / 2 + srng.uniform(0.0, 25.0) - (patient.d_ref - patient.body(300.0 * patient.height_scale)[1]) / spacing,
                    noise_sd=srng.uniform(10.0, 18.0), context=context)
    for _ in range(_choice(srng, config.key_slice_probs)):
      lesion = None
      for _retry in range(4):  # another type when this one finds no room in this series
        lesion_type = _draw_type(srng, config, index, n_lesions)
        lesion = place_lesion(series, lesion_type, srng)
        if lesion is not None or config.type_mix == "cycle":
          break
      if lesion is None:
        continue
      n_lesions += 1
      series.lesions.append(lesion)
      series.key_slices.append(lesion.key_slice)
      if srng.random() < config.second_lesion_prob:
        second = place_lesion(series, _draw_type(srng, config, index, n_lesions), srng, key=lesion.key_slice)
        if second is not None:
          n_lesions += 1
          series.lesions.append(second)
    if series.lesions:
      series.key_slices = sorted(set(series.key_slices))
      out.append(series)
  return out


# --------------------------------------------------------------------------------------------
# Annotations and rows.


def recist(series: Series, lesion: Lesion) -> Tuple[np.ndarray, Tuple[float, float]]:
  """``(8 floats: long-axis ends x1 y1 x2 y2, short-axis ends x3 y3 x4 y4 in px, (long, short)
  diameters px)`` of the lesion's cross-section on its key slice."""
  s = lesion.scale_at(series.z(lesion.key_slice))
  a, b = lesion.a * s / series.spacing, lesion.b * s / series.spacing
  col, row = series.px(lesion.cx, lesion.cy)
  ca, sa = math.cos(lesion.angle), math.sin(lesion.angle)
  ends = np.array([col - a * ca, row - a * sa, col + a * ca, row + a * sa,
                   col + b * sa, row - b * ca, col - b * sa, row + b * ca], np.float64)
  return ends, (2.0 * a, 2.0 * b)


def bounding_box(ends: np.ndarray) -> np.ndarray:
  """DeepLesion's box of RECIST end points: their extent +- ``BOX_PADDING_PX``, clipped to the image."""
  xs, ys = ends[0::2], ends[1::2]
  box = np.array([xs.min() - BOX_PADDING_PX, ys.min() - BOX_PADDING_PX, xs.max() + BOX_PADDING_PX, ys.max() + BOX_PADDING_PX])
  return np.clip(box, 0.0, IMAGE_SIZE - 1.0)


def _window(lesion_type: int) -> Tuple[float, float]:
  return WINDOWS["lung" if lesion_type == 5 else "bone" if lesion_type == 1 else "soft_tissue"]


def _num(v: float, digits: int = 3) -> float:
  return round(float(v), digits)


def series_rows(series: Series, untyped: bool = False) -> List[List[object]]:
  """The ``DL_info.csv`` rows of a series (one per lesion, key slices in order)."""
  p = series.patient
  rows = []
  for key in series.key_slices:
    lesions = [l for l in series.lesions if l.key_slice == key]
    window = _window(lesions[0].type)
    for lesion in lesions:
      ends, (long_d, short_d) = recist(series, lesion)
      box = bounding_box(ends)
      w, d, _ = p.body(lesion.cz)
      col, row = series.px(lesion.cx, lesion.cy)
      left, top = series.px(-w, p.d_ref - 2.0 * d)
      location = (np.clip((col - left) / (2.0 * w / series.spacing), 0, 1), np.clip((row - top) / (2.0 * d / series.spacing), 0, 1),
                  np.clip(1.0 - lesion.cz / p.z_top, 0, 1))
      rows.append([
          f"{series.folder}_{key:03d}.png", p.index, series.study, series.series_id, key,
          dl.format_cell([_num(v) for v in ends]), dl.format_cell([_num(v) for v in box]),
          dl.format_cell([_num(long_d), _num(short_d)]), dl.format_cell([_num(v, 5) for v in location]),
          -1 if untyped else lesion.type, 0, dl.format_cell(series.slice_range(key)),
          dl.format_cell([_num(series.spacing, 6), _num(series.spacing, 6), series.interval]),
          dl.format_cell([IMAGE_SIZE, IMAGE_SIZE]), dl.format_cell(window), p.gender, p.age, p.split_code,
      ])
  return rows


def lesion_record(series: Series, lesion: Lesion) -> Dict[str, Any]:
  """The manifest's entry of a lesion (true geometry in mm and px, densities)."""
  col, row = series.px(lesion.cx, lesion.cy)
  return {"file_name": f"{series.folder}_{lesion.key_slice:03d}.png", "type": lesion.type, "kind": lesion.kind,
          "centre_mm": [lesion.cx, lesion.cy, lesion.cz], "centre_px": [col, row],
          "semi_axes_mm": [lesion.a, lesion.b, lesion.c], "angle": lesion.angle, "hu": lesion.hu, "rim_hu": lesion.rim,
          "host_hu": lesion.host_hu}


# --------------------------------------------------------------------------------------------
# Writing a release.


def write_series(root: str, series: Series) -> int:
  """Writes the series' slices under ``<root>/Images_png/<folder>/``; returns how many."""
  folder = os.path.join(root, dl.IMAGES_DIR, series.folder)
  os.makedirs(folder, exist_ok=True)
  written = series.written_slices()
  for index in written:
    hu, _ = render_slice(series, index)
    with open(os.path.join(folder, f"{index:03d}.png"), "wb") as f:
      f.write(dl.encode_uint16_png(dl.hu_to_uint16(hu), compression=1))
  return len(written)


def _write_patient(args: Tuple[str, SyntheticCTConfig, int, int]) -> Tuple[List[List[object]], List[Dict[str, Any]], int]:
  root, config, index, split_code = args
  rows, lesions, files = [], [], 0
  for series in patient_series(config, index, split_code):
    files += write_series(root, series)
    rows += series_rows(series, untyped=config.untyped_train and split_code == 1)
    lesions += [lesion_record(series, l) for l in series.lesions]
  return rows, lesions, files


def write_release(folder: str, config: SyntheticCTConfig = SETS["default"], workers: int = 0, progress: bool = False) -> Dict[str, Any]:
  """Writes a synthetic release into ``folder`` (``DL_info.csv``, ``Images_png/``, :data:`MANIFEST`).

  Args:
    folder: where (created; existing files are overwritten).
    config: what.
    workers: processes (0: this one); patients are independent, so the files do not depend on it.
    progress: print a line per 10 % of the patients.

  Returns:
    The manifest (also written as :data:`MANIFEST`).
  """
  folder = os.path.abspath(folder)
  os.makedirs(os.path.join(folder, dl.IMAGES_DIR), exist_ok=True)
  codes = split_codes(config.num_patients, config.seed)
  jobs = [(folder, config, i + 1, codes[i]) for i in range(config.num_patients)]
  start = time.time()
  if workers and workers > 1:
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
      results = list(pool.map(_write_patient, jobs))
  else:
    results = []
    for n, job in enumerate(jobs, start=1):
      results.append(_write_patient(job))
      if progress and (n * 10 // len(jobs)) != ((n - 1) * 10 // len(jobs)):
        print(f"  synthetic CT: {n}/{len(jobs)} patients ({time.time() - start:.0f} s)", flush=True)
  rows = [r for res in results for r in res[0]]
  lesions = [l for res in results for l in res[1]]
  dl.write_dl_info(os.path.join(folder, dl.CSV_NAME), rows)
  key_slices = sorted({r[0] for r in rows})
  manifest = {
      "generator": "acne_jax.data.synthetic_ct", "generator_version": GENERATOR_VERSION, "config": config.to_dict(),
      "patients": config.num_patients, "key_slices": len(key_slices), "lesions": len(lesions),
      "slice_files": int(sum(res[2] for res in results)),
      "split_key_slices": {name: len({r[0] for r in rows if r[17] == code}) for name, code, _ in SPLIT_FRACTIONS},
      "type_counts": {LESION_TYPES[t]: sum(l["type"] == t for l in lesions) for t in sorted(LESION_TYPES)},
      "seconds": round(time.time() - start, 1), "lesion_truth": lesions,
  }
  with open(os.path.join(folder, MANIFEST), "w", encoding="utf-8") as f:
    json.dump(manifest, f)
  return manifest


def ensure_release(folder: str, config: SyntheticCTConfig = SETS["default"], workers: int = 0, progress: bool = False) -> str:
  """``folder`` when it holds this very release (same generator version and settings), else writes
  it there first (into ``<folder>.partial``, renamed when complete).

  Raises:
    ValueError: ``folder`` exists with something else in it (another release, another generator
      version, no manifest), naming the difference, rather than writing over it.
  """
  folder = os.path.abspath(folder)
  wanted = {"generator_version": GENERATOR_VERSION, "config": json.loads(json.dumps(config.to_dict()))}
  from acne_jax.data import generated

  if generated.holds(folder, MANIFEST, wanted, "synthetic CT release"):
    return folder
  partial = folder + ".partial"
  shutil.rmtree(partial, ignore_errors=True)
  write_release(partial, config, workers=workers, progress=progress)
  os.rename(partial, folder)
  return folder
