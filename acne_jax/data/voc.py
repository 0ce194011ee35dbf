"""Pascal VOC XML annotations (as in ACNE04's ``Detection/VOC2007/Annotations``) and box helpers.

Coordinate convention. A VOC ``<bndbox>`` holds 1-based, inclusive pixel indices: ``xmin = 1``
is the first column and ``xmax = W`` the last, so a box covering the whole image is
``(1, 1, W, H)``. ``acne_jax`` boxes are continuous pixel coordinates in which pixel ``(i, j)``
(row, column, 0-based) covers ``[j, j + 1] x [i, i + 1]`` (see ``acne_jax.data.synthetic``), so
the box covering VOC pixels ``xmin..xmax`` is::

  x1 = xmin - 1,  y1 = ymin - 1,  x2 = xmax,  y2 = ymax      (float32 pixels, no "+1")

(the same reading as detectron2's Pascal VOC loader: width ``x2 - x1 = xmax - xmin + 1`` pixels,
and the whole image maps to ``(0, 0, W, H)``). Only the top-left corner moves, by one pixel;
keeping the raw values would shift every box half a pixel down-right and shrink it by one pixel
in each direction, which matters for the 5-20 px acne lesions.
"""

from __future__ import annotations

import dataclasses
import os
import xml.etree.ElementTree as ET
from typing import List, Optional, Tuple, Union

import numpy as np

PathOrBytes = Union[str, os.PathLike, bytes]


class VocParseError(ValueError):
  """A VOC XML file that cannot be read (malformed XML, missing or non-numeric box fields)."""


@dataclasses.dataclass(frozen=True)
class VocObject:
  """One ``<object>`` of a VOC annotation.

  Attributes:
    name: class name (``<name>``, stripped), e.g. ``"fore"`` in ACNE04.
    bndbox: ``(xmin, ymin, xmax, ymax)`` exactly as written in the file (1-based inclusive
      pixel indices, floats: some tools write ``"12.0"``).
    difficult: ``<difficult>`` is 1 (False when absent).
    truncated: ``<truncated>`` is 1 (False when absent).
    index: position of the ``<object>`` among the file's objects (0-based).
  """

  name: str
  bndbox: Tuple[float, float, float, float]
  difficult: bool = False
  truncated: bool = False
  index: int = 0  # position among the file's <object> elements (0-based)


@dataclasses.dataclass(frozen=True)
class VocAnnotation:
  """A parsed VOC annotation file.

  Attributes:
    filename: ``<filename>`` ("" when absent).
    width, height, depth: ``<size>`` fields (0 when absent or unreadable; VOC files written by
      some tools have zeros here, so they are informative only).
    objects: the ``<object>`` entries in file order.
    bad_size: the ``<size>`` fields written but unreadable (not an integer in 0..2**31-1),
      e.g. ``("<width>1e400</width>",)``.
  """

  filename: str
  width: int
  height: int
  depth: int
  objects: Tuple[VocObject, ...]
  bad_size: Tuple[str, ...] = ()


def _text(node: ET.Element, tag: str, default: str = "") -> str:
  child = node.find(tag)
  if child is None or child.text is None:
    return default
  return child.text.strip()


def _int_or_zero(text: str) -> int:
  """An integer field (``<width>``): 0 when it is not a number of at most 31 bits."""
  try:
    value = float(text)
  except ValueError:
    return 0
  return int(value) if np.isfinite(value) and abs(value) < 2**31 else 0


def _is_size(text: str) -> bool:
  """``text`` is an integer in 0 .. 2**31 - 1 (``"12"`` or ``"12.0"``)."""
  try:
    value = float(text)
  except ValueError:
    return False
  return bool(np.isfinite(value)) and value == int(value) and 0 <= value < 2**31


def _flag(text: str) -> bool:
  """A 0/1 flag (``<difficult>``): any number but 0 (and NaN) is set; text is not."""
  try:
    value = float(text)
  except ValueError:
    return False
  return not np.isnan(value) and int(value != 0) == 1


def _bndbox(obj: ET.Element, k: int, label: str) -> Tuple[float, float, float, float]:
  box = obj.find("bndbox")
  if box is None:
    raise VocParseError(f"{label}: object {k} has no <bndbox>.")
  coords = []
  for tag in ("xmin", "ymin", "xmax", "ymax"):
    text = _text(box, tag)
    try:
      value = float(text)
    except ValueError:
      raise VocParseError(f"{label}: object {k} has a missing or non-numeric <{tag}> ({text!r}).") from None
    if not np.isfinite(value):
      raise VocParseError(f"{label}: object {k} has a non-finite <{tag}> ({text!r}).")
    coords.append(value)
  return tuple(coords)


def parse_voc_xml(source: PathOrBytes, name: str = "", bad_objects: Optional[List[Tuple[int, str]]] = None) -> VocAnnotation:
  """Parses a Pascal VOC XML annotation.

  Args:
    source: a file path, or the XML bytes.
    name: what to call the file in error messages (default: the path).
    bad_objects: if given, an ``<object>`` without a ``<bndbox>`` of four finite numbers is
      left out and ``(index, message)`` appended here (``index``: its position among the
      objects); else the first one raises.

  Returns:
    The annotation, coordinates unchanged (see ``voc_to_xyxy``).

  Raises:
    FileNotFoundError: ``source`` is a path that does not exist.
    VocParseError: malformed XML, no ``<annotation>`` root, or (without ``bad_objects``) an
      ``<object>`` without a ``<bndbox>`` with four finite numeric fields; the message names the
      file.
  """
  if isinstance(source, (bytes, bytearray)):
    data = bytes(source)
    label = name or "<bytes>"
  else:
    label = name or os.fspath(source)
    with open(source, "rb") as f:
      data = f.read()
  try:
    root = ET.fromstring(data)
  except ET.ParseError as e:
    raise VocParseError(f"{label}: malformed XML ({e}).") from e
  if root.tag != "annotation":
    raise VocParseError(f"{label}: root element is <{root.tag}>, expected <annotation>.")
  size = root.find("size")
  width = height = depth = 0
  bad_size = []
  if size is not None:
    width = _int_or_zero(_text(size, "width"))
    height = _int_or_zero(_text(size, "height"))
    depth = _int_or_zero(_text(size, "depth"))
    for tag in ("width", "height", "depth"):
      text = _text(size, tag)
      if text and not _is_size(text):
        bad_size.append(f"<{tag}>{text}</{tag}>")
  objects = []
  for k, obj in enumerate(root.findall("object")):
    try:
      coords = _bndbox(obj, k, label)
    except VocParseError as e:
      if bad_objects is None:
        raise
      bad_objects.append((k, str(e)))
      continue
    objects.append(
        VocObject(
            name=_text(obj, "name"),
            bndbox=coords,
            difficult=_flag(_text(obj, "difficult", "0")),
            truncated=_flag(_text(obj, "truncated", "0")),
            index=k,
        )
    )
  return VocAnnotation(filename=_text(root, "filename"), width=width, height=height, depth=depth, objects=tuple(objects),
                       bad_size=tuple(bad_size))


def voc_to_xyxy(bndboxes) -> np.ndarray:
  """VOC 1-based inclusive ``(xmin, ymin, xmax, ymax)`` -> continuous x1y1x2y2 pixels.

  Args:
    bndboxes: ``[K, 4]`` (or ``[4]``) VOC boxes.

  Returns:
    ``[K, 4]`` float32 ``(xmin - 1, ymin - 1, xmax, ymax)`` (see the module docstring).
  """
  boxes = np.asarray(bndboxes, np.float64).reshape(-1, 4).copy()
  boxes[:, :2] -= 1.0
  return boxes.astype(np.float32)


def clip_boxes(boxes, width: float, height: float) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Clips x1y1x2y2 pixel boxes to the image ``[0, width] x [0, height]``.

  Args:
    boxes: ``[K, 4]`` x1, y1, x2, y2 (float pixels).
    width, height: image size in pixels.

  Returns:
    ``(clipped, changed, keep)``: ``clipped`` float32 ``[K, 4]`` the clipped boxes; ``changed``
    bool ``[K]`` whether clipping moved any coordinate; ``keep`` bool ``[K]`` whether the clipped
    box has positive width and height (boxes entirely outside the image, inverted or of zero
    area are not kept).
  """
  boxes = np.asarray(boxes, np.float64).reshape(-1, 4)  # float64: coordinates beyond float32 clip, not overflow
  limits = np.array([width, height, width, height], np.float64)
  clipped = np.clip(boxes, 0.0, limits)
  changed = np.any(clipped != boxes, axis=1)
  keep = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
  return clipped.astype(np.float32), changed, keep


def degenerate_reason(box, width: float, height: float) -> Tuple[str, str]:
  """Why :func:`clip_boxes` did not keep an x1y1x2y2 box: ``(reason, sentence)`` with reason
  ``"invalid_box"`` (a coordinate is not finite), ``"inverted_box"`` (``x2 < x1`` or
  ``y2 < y1``), ``"outside_image"`` (no part inside ``[0, width] x [0, height]``) or
  ``"zero_area"`` (zero width or height inside the image)."""
  values = [float(v) for v in np.asarray(box, np.float64).reshape(4)]
  text = "(" + ", ".join(f"{v:g}" for v in values) + ")"
  x1, y1, x2, y2 = values
  if not all(np.isfinite(values)):
    return "invalid_box", f"box {text} px has a coordinate that is not finite"
  if x2 < x1 or y2 < y1:
    return "inverted_box", f"box {text} px has x2 < x1 or y2 < y1"
  if x1 >= width or y1 >= height or x2 <= 0 or y2 <= 0:
    return "outside_image", f"box {text} px lies outside the {width:g}x{height:g} image"
  return "zero_area", f"box {text} px has zero width or height inside the {width:g}x{height:g} image"


def box_polygons(boxes) -> np.ndarray:
  """4-vertex polygons of x1y1x2y2 boxes, clockwise in image axes from the top-left corner.

  Returns:
    ``[K, 8]`` float32 ``[x1, y1, x2, y1, x2, y2, x1, y2]`` per box.
  """
  b = np.asarray(boxes, np.float32).reshape(-1, 4)
  x1, y1, x2, y2 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
  return np.stack([x1, y1, x2, y1, x2, y2, x1, y2], axis=1).astype(np.float32)
