"""torchvision's detector resize (``GeneralizedRCNNTransform``), in NumPy for the input pipeline.

torchvision (``torchvision/models/detection/transform.py``) resizes every image so that its short
side becomes ``min_size`` unless its long side would then exceed ``max_size``:

- ``scale = min(min_size / min(h, w), max_size / max(h, w))`` (:func:`torchvision_scale`);
- ``torch.nn.functional.interpolate(image, scale_factor=scale, mode="bilinear",
  recompute_scale_factor=True, align_corners=False)``: the output is
  ``(int(h * scale), int(w * scale))`` (Python float arithmetic, truncated;
  :func:`resized_size`) and the pixels are sampled at the scale ``in_size / out_size``
  recomputed from the integer sizes (:func:`resize_bilinear`);
- ground-truth boxes are multiplied per axis by ``new / old`` (``resize_boxes``), and
  ``postprocess`` maps detections back by ``old / new`` (:func:`boxes_to_original`).

:func:`resize_example` does all of it for one decoded example (uint8 image, boxes, polygons).

``style="mmdetection"`` is MMDetection's ``Resize(img_scale=(max_size, min_size), keep_ratio=True)``
(mmcv ``rescale_size`` / ``imresize``) instead, for whole images of any size (ACNE04):

- the same factor, ``min(max_long_edge / long side, max_short_edge / short side)``;
- the output is ``(int(h * scale + 0.5), int(w * scale + 0.5))``: rounded, not truncated
  (:func:`resized_size`);
- the pixels come from OpenCV's bilinear ``cv2.resize(..., INTER_LINEAR)``, which mmcv calls;
- boxes are multiplied by ``new / old`` per axis (``scale_factor``) and clipped to the new image,
  and detections are mapped back by the inverse ratios (``rescale=True``).

The image is then padded at the bottom/right to ``data.image_size`` (MMDetection's ``Pad``) by
the pipeline.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np


def resize_enabled(min_size: float, max_size: float) -> bool:
  """Whether a data config asks for the resize: both sizes 0 means no, both positive yes.

  Raises:
    ValueError: naming ``data.resize_min_size`` / ``data.resize_max_size`` when only one is set
      or one is negative.
  """
  if not min_size and not max_size:
    return False
  if min_size <= 0 or max_size <= 0:
    raise ValueError(f"data.resize_min_size={min_size} and data.resize_max_size={max_size}: set both to positive "
                     "sizes (torchvision's detectors use 800 and 1333) or both to 0 for no resize.")
  return True


RESIZE_STYLES = ("torchvision", "mmdetection")


def configured_style(data) -> str:
  """``data.resize_style`` ("torchvision" for configs written before it existed).

  Raises:
    ValueError: an unknown style, naming the known ones.
  """
  style = str(data.get("resize_style", "torchvision") or "torchvision")
  if style not in RESIZE_STYLES:
    raise ValueError(f"data.resize_style={style!r}: use 'torchvision' (GeneralizedRCNNTransform) or 'mmdetection' "
                     "(Resize(keep_ratio=True)).")
  return style


def configured_sizes(data) -> Tuple[int, int]:
  """``(data.resize_min_size, data.resize_max_size)`` of a config's data section, ``(0, 0)`` (no
  resize) for configs written before these settings existed."""
  return int(data.get("resize_min_size", 0) or 0), int(data.get("resize_max_size", 0) or 0)


def at_test_size(data: Mapping[str, Any]) -> Mapping[str, Any]:
  """``data`` as the model sees images at test time: with ``data.test_size`` = ``s`` > 0, every
  evaluated or predicted image is resized to fit an ``s x s`` canvas (``image_size`` ``(s, s)``,
  ``resize_min_size = resize_max_size = s``) whatever size the model trained at; ``data`` itself
  when it is 0 or absent (older configs). The DeepLesion benchmark's YOLOv4 trains at 869 px and
  infers at 1024 (a fully convolutional detector reads any multiple of its coarsest stride).

  Raises:
    ValueError: a negative ``data.test_size``.
  """
  size = int(data.get("test_size", 0) or 0)
  if size < 0:
    raise ValueError(f"data.test_size={size}: it is the side of the test-time input (0: the training size); use 0 or a "
                     "positive number of pixels.")
  if not size:
    return data
  return {**{key: data[key] for key in data.keys()}, "image_size": (size, size), "resize_min_size": size,
          "resize_max_size": size}


def torchvision_scale(height: int, width: int, min_size: float, max_size: float) -> float:
  """torchvision's resize factor: ``min(min_size / min(h, w), max_size / max(h, w))``.

  Raises:
    ValueError: a non-positive image side, ``min_size`` or ``max_size``.
  """
  if height <= 0 or width <= 0:
    raise ValueError(f"cannot resize an image of {height}x{width} pixels.")
  if min_size <= 0 or max_size <= 0:
    raise ValueError(f"resize min_size and max_size must be positive; got min_size={min_size}, max_size={max_size}.")
  return min(float(min_size) / min(height, width), float(max_size) / max(height, width))


def resized_size(height: int, width: int, scale: float, style: str = "torchvision") -> Tuple[int, int]:
  """``(new_h, new_w)``: torchvision's ``interpolate(scale_factor=scale, recompute_scale_factor=True)``
  gives ``int(side * scale)`` in double precision (truncated; the sides are positive);
  MMDetection's ``rescale_size`` gives ``int(side * scale + 0.5)`` (rounded).

  Raises:
    ValueError: when a side would become 0 pixels (torch refuses such an output too).
  """
  half = 0.5 if style == "mmdetection" else 0.0
  new_h, new_w = int(height * float(scale) + half), int(width * float(scale) + half)
  if new_h <= 0 or new_w <= 0:
    raise ValueError(f"resizing a {height}x{width} image by {scale} gives {new_h}x{new_w} pixels; "
                     "raise data.resize_min_size / data.resize_max_size.")
  return new_h, new_w


def _linear_indices(in_size: int, out_size: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """PyTorch's 1-D linear sampling (``align_corners=False``, ``UpSampleKernel.cpp``), float32:
  ``src = max((in / out) * (dst + 0.5) - 0.5, 0)``, ``i0 = min(floor(src), in - 1)``,
  ``i1 = i0 + 1`` clamped to ``in - 1``, ``l1 = clip(src - i0, 0, 1)``, ``l0 = 1 - l1``.

  Returns:
    ``(i0 [out] int64, i1 [out] int64, l0 [out] float32, l1 [out] float32)``.
  """
  scale = np.float32(in_size) / np.float32(out_size)
  dst = np.arange(out_size, dtype=np.float32)
  src = np.maximum(scale * (dst + np.float32(0.5)) - np.float32(0.5), np.float32(0.0))
  i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
  i1 = np.minimum(i0 + 1, in_size - 1)
  l1 = np.clip(src - i0.astype(np.float32), np.float32(0.0), np.float32(1.0)).astype(np.float32)
  return i0, i1, (np.float32(1.0) - l1).astype(np.float32), l1


def resize_bilinear(image: np.ndarray, new_size: Tuple[int, int]) -> np.ndarray:
  """PyTorch's bilinear resize (``align_corners=False``, ``antialias=False``) in NumPy.

  Each output pixel ``(y, x)`` samples the input at the half-pixel-centre position
  ``(in / out) * (dst + 0.5) - 0.5`` per axis, clamped at 0 below and at ``size - 1`` above,
  and mixes the 2 x 2 neighbours with the linear weights (float32 arithmetic, rows then
  columns; equal to ``torch.nn.functional.interpolate(..., mode="bilinear",
  align_corners=False)`` with ``size=new_size``, or with ``scale_factor`` and
  ``recompute_scale_factor=True`` which resolves to that size, up to float rounding).

  Args:
    image: ``[H, W]`` or ``[H, W, C]``, any real dtype.
    new_size: ``(new_h, new_w)``, positive.

  Returns:
    float32 ``[new_h, new_w]`` or ``[new_h, new_w, C]``.

  Raises:
    ValueError: an empty image or a non-positive ``new_size``.
  """
  image = np.asarray(image)
  if image.ndim not in (2, 3) or image.shape[0] == 0 or image.shape[1] == 0:
    raise ValueError(f"resize_bilinear expects a non-empty [H, W] or [H, W, C] image; got shape {image.shape}.")
  new_h, new_w = (int(s) for s in new_size)
  if new_h <= 0 or new_w <= 0:
    raise ValueError(f"resize_bilinear: new_size must be positive; got {tuple(new_size)}.")
  source = image.astype(np.float32, copy=False)
  h, w = source.shape[:2]
  extra = (None,) * (source.ndim - 2)  # broadcast the weights over channels
  y0, y1, ly0, ly1 = _linear_indices(h, new_h)
  rows = ly0[(slice(None), None) + extra] * source[y0] + ly1[(slice(None), None) + extra] * source[y1]  # [new_h, W, ...]
  x0, x1, lx0, lx1 = _linear_indices(w, new_w)
  out = lx0[(None, slice(None)) + extra] * rows[:, x0] + lx1[(None, slice(None)) + extra] * rows[:, x1]
  return np.ascontiguousarray(out, dtype=np.float32)


def size_ratios(original_size: Tuple[int, int], new_size: Tuple[int, int]) -> Tuple[np.float32, np.float32]:
  """``(ratio_h, ratio_w) = new / old`` per axis in float32, as torchvision's ``resize_boxes``
  (``torch.tensor(new, float32) / torch.tensor(old, float32)``)."""
  return (np.float32(new_size[0]) / np.float32(original_size[0]), np.float32(new_size[1]) / np.float32(original_size[1]))


def scale_boxes(boxes: np.ndarray, ratio_h, ratio_w) -> np.ndarray:
  """``boxes [..., 4]`` x1y1x2y2 with x multiplied by ``ratio_w`` and y by ``ratio_h``, float32."""
  boxes = np.asarray(boxes, np.float32)
  factors = np.stack([np.asarray(ratio_w, np.float32), np.asarray(ratio_h, np.float32)] * 2, axis=-1)
  return (boxes * factors).astype(np.float32)


def boxes_to_original(boxes: np.ndarray, resized_sizes: np.ndarray, original_sizes: np.ndarray) -> np.ndarray:
  """Detections on resized images mapped back to the original images' pixels, as torchvision's
  ``postprocess`` does (``resize_boxes(boxes, resized, original)``: x times ``old_w / new_w``
  and y times ``old_h / new_h``, ratios in float32).

  Args:
    boxes: ``[N, D, 4]`` x1y1x2y2 on the resized images.
    resized_sizes: ``[N, 2]`` ``(height, width)`` the model saw (before padding).
    original_sizes: ``[N, 2]`` ``(height, width)`` of the original images.

  Returns:
    float32 ``[N, D, 4]`` in original pixels.

  Raises:
    ValueError: when the leading sizes disagree.
  """
  boxes = np.asarray(boxes, np.float32)
  resized = np.asarray(resized_sizes, np.float32).reshape(-1, 2)
  original = np.asarray(original_sizes, np.float32).reshape(-1, 2)
  if boxes.ndim != 3 or boxes.shape[-1] != 4 or not (boxes.shape[0] == len(resized) == len(original)):
    raise ValueError(f"boxes_to_original expects boxes [N, D, 4] and sizes [N, 2] with the same N; got boxes "
                     f"{boxes.shape}, resized_sizes {resized.shape}, original_sizes {original.shape}.")
  ratios = original / resized  # [N, 2] (ratio_h, ratio_w), float32 as torchvision
  return scale_boxes(boxes, ratios[:, None, 0], ratios[:, None, 1])


def resize_example(image: np.ndarray, boxes: np.ndarray, min_size: float, max_size: float,
                   polygons: Optional[Sequence[np.ndarray]] = None, style: str = "torchvision"):
  """torchvision's detector resize of one example (or MMDetection's keep-ratio resize with
  ``style="mmdetection"``: rounded size, OpenCV's bilinear pixels, boxes clipped to the image).

  The image is resized in float (:func:`resize_bilinear`) and rounded to uint8, so it is within
  0.5 grey level of torchvision's result: torchvision resizes the normalised float image, but
  normalisation is a per-channel affine map and the bilinear weights sum to 1, so normalising
  before or after the resize gives the same image up to float rounding; only our rounding to
  uint8 differs.

  Args:
    image: uint8 ``[H, W, 3]``.
    boxes: ``[N, 4]`` x1y1x2y2 pixels.
    min_size, max_size: torchvision's ``min_size`` and ``max_size`` (:func:`torchvision_scale`);
      MMDetection's ``img_scale`` short and long edges.
    polygons: optional ``N`` arrays of (x, y) vertices, flat ``[2 V]`` or ``[V, 2]`` (kept so).

  Returns:
    ``(image uint8 [h', w', 3], boxes float32 [N, 4], polygons (None when not given),
    (ratio_h, ratio_w))`` with ``ratio = new / old`` per axis (float32); boxes and polygons are
    multiplied by them per axis as ``resize_boxes`` does.
  """
  if style not in RESIZE_STYLES:
    raise ValueError(f"resize style {style!r}: use one of {RESIZE_STYLES}.")
  image = np.asarray(image)
  h, w = image.shape[:2]
  new_size = resized_size(h, w, torchvision_scale(h, w, min_size, max_size), style)
  if style == "mmdetection":
    import cv2

    resized = cv2.resize(np.ascontiguousarray(image), (new_size[1], new_size[0]), interpolation=cv2.INTER_LINEAR)
  else:
    resized = np.clip(np.rint(resize_bilinear(image, new_size)), 0, 255).astype(np.uint8)
  ratio_h, ratio_w = size_ratios((h, w), new_size)
  out_boxes = scale_boxes(np.asarray(boxes, np.float32).reshape(-1, 4), ratio_h, ratio_w)
  if style == "mmdetection":  # Resize._resize_bboxes clips to the new image
    out_boxes = np.clip(out_boxes, 0, np.asarray([new_size[1], new_size[0]] * 2, np.float32))
  out_polygons = None
  if polygons is not None:
    out_polygons = []
    for polygon in polygons:
      p = np.asarray(polygon, np.float32)
      xy = p.reshape(-1, 2) * np.asarray([ratio_w, ratio_h], np.float32)
      out_polygons.append(xy.astype(np.float32).reshape(p.shape))
  return resized, out_boxes, out_polygons, (ratio_h, ratio_w)
