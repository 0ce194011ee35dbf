"""The grading paper's training augmentation, per image of a visit's views.

"Each image could either remain unmodified with a 20% probability, or undergo one of the four
transformations described with a 20% probability each": vertical flip, horizontal flip,
rotation, brightness change. Each view of a triplet draws its own transformation. The paper
gives neither the rotation angles nor the brightness range; our choices (:data:`MAX_ANGLE`,
:data:`BRIGHTNESS_RANGE`):

- rotation by an angle drawn uniformly in ``[-15, 15]`` degrees (head tilts of portrait
  photos), about the image centre, same size, bilinear, the corners that come from outside the
  image black (torchvision's ``RandomRotation`` fill); positive angles turn the picture
  counter-clockwise on screen, as OpenCV, PIL and torchvision;
- brightness: every value multiplied by a factor drawn uniformly in ``[0.75, 1.25]``, rounded
  and clipped to 0-255 (torchvision's ``adjust_brightness`` on uint8).

NumPy only, deterministic given the ``numpy.random.Generator`` passed in: the transformation is
``rng.integers(5)``, then its angle or factor is drawn (nothing else for flips or no change).
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

OPERATIONS: Tuple[str, ...] = ("none", "vertical_flip", "horizontal_flip", "rotation", "brightness")
"""The five outcomes, each with probability 1/5."""

MAX_ANGLE = 15.0
BRIGHTNESS_RANGE: Tuple[float, float] = (0.75, 1.25)


def _check_image(image: np.ndarray, fn: str) -> np.ndarray:
  image = np.asarray(image)
  if image.dtype != np.uint8 or image.ndim != 3:
    raise ValueError(f"{fn}: 'image' must be uint8 [H, W, C]; got {image.dtype} {list(image.shape)}.")
  return image


def rotate(image: np.ndarray, angle: float) -> np.ndarray:
  """``image`` uint8 ``[H, W, C]`` turned ``angle`` degrees counter-clockwise about its centre.

  Each output pixel samples the input bilinearly at its position turned back by ``angle`` about
  ``((W - 1) / 2, (H - 1) / 2)``; samples outside the image are 0. A multiple of 90 degrees on a
  square image is exactly ``np.rot90``.
  """
  image = _check_image(image, "rotate")
  height, width = image.shape[:2]
  theta = np.deg2rad(angle)
  cos, sin = np.cos(theta), np.sin(theta)
  cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
  v, u = np.mgrid[0:height, 0:width].astype(np.float64)
  u, v = u - cx, v - cy
  # Content turned counter-clockwise on screen (y down): output offset (u, v) shows the input at
  # (u, v) turned clockwise on screen by the same angle.
  sx = cx + u * cos - v * sin
  sy = cy + u * sin + v * cos
  sx = np.where(np.abs(sx - np.round(sx)) < 1e-9, np.round(sx), sx)  # exact right angles
  sy = np.where(np.abs(sy - np.round(sy)) < 1e-9, np.round(sy), sy)
  x0, y0 = np.floor(sx).astype(np.int64), np.floor(sy).astype(np.int64)
  fx, fy = (sx - x0)[..., None], (sy - y0)[..., None]
  # A one-pixel black frame; a tap outside the image reads the frame's corner (0, 0), which is 0.
  source = np.pad(image.astype(np.float64), ((1, 1), (1, 1), (0, 0)))

  def framed(index, size):
    index = index + 1
    return np.where((index >= 1) & (index <= size), index, 0)

  x0, x1 = framed(x0, width), framed(x0 + 1, width)
  y0, y1 = framed(y0, height), framed(y0 + 1, height)
  out = ((1 - fy) * ((1 - fx) * source[y0, x0] + fx * source[y0, x1])
         + fy * ((1 - fx) * source[y1, x0] + fx * source[y1, x1]))
  return np.clip(np.round(out), 0, 255).astype(np.uint8)


def change_brightness(image: np.ndarray, factor: float) -> np.ndarray:
  """``clip(round(image * factor), 0, 255)`` as uint8."""
  image = _check_image(image, "change_brightness")
  if factor < 0:
    raise ValueError(f"change_brightness: factor must be >= 0; got {factor}.")
  return np.clip(np.round(image.astype(np.float64) * factor), 0, 255).astype(np.uint8)


def augment_view(image: np.ndarray, rng: np.random.Generator, max_angle: float = MAX_ANGLE,
                 brightness_range: Tuple[float, float] = BRIGHTNESS_RANGE) -> Tuple[np.ndarray, str]:
  """One view: unchanged, flipped vertically, flipped horizontally, rotated or brightened, each
  with probability 1/5.

  Args:
    image: uint8 ``[H, W, C]``.
    rng: the generator every draw comes from.
    max_angle: rotation angles are uniform in ``[-max_angle, max_angle]`` degrees.
    brightness_range: brightness factors are uniform in this interval.

  Returns:
    (uint8 ``[H, W, C]`` image, the name of the outcome in :data:`OPERATIONS`). The input is
    never modified; an unchanged view is returned as a copy.
  """
  image = _check_image(image, "augment_view")
  operation = OPERATIONS[int(rng.integers(len(OPERATIONS)))]
  if operation == "vertical_flip":
    return image[::-1].copy(), operation
  if operation == "horizontal_flip":
    return image[:, ::-1].copy(), operation
  if operation == "rotation":
    return rotate(image, float(rng.uniform(-max_angle, max_angle))), operation
  if operation == "brightness":
    return change_brightness(image, float(rng.uniform(*brightness_range))), operation
  return image.copy(), operation


def augment_views(views: np.ndarray, rng: np.random.Generator, max_angle: float = MAX_ANGLE,
                  brightness_range: Tuple[float, float] = BRIGHTNESS_RANGE) -> np.ndarray:
  """Every image of ``[..., H, W, C]`` uint8 views (one visit's ``[V, H, W, 3]`` or a batch's
  ``[B, V, H, W, 3]``) augmented independently by :func:`augment_view`, in row-major order."""
  views = np.asarray(views)
  if views.dtype != np.uint8 or views.ndim < 3:
    raise ValueError(f"augment_views: 'views' must be uint8 [..., H, W, C]; got {views.dtype} {list(views.shape)}.")
  flat = views.reshape((-1,) + views.shape[-3:])
  out = np.stack([augment_view(v, rng, max_angle, brightness_range)[0] for v in flat]) if len(flat) else flat.copy()
  return out.reshape(views.shape)
