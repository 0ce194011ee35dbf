"""Small releases in the real file formats of the manual-download data sets, for tests and the fuzzer.

* AcneSCU: LabelMe JSON beside JPEG files (:func:`labelme_document`, :func:`write_labelme_pair`),
  or one COCO instance JSON with the images under ``images/`` (:func:`coco_document`);
* ACNE04: ``Classification/`` (``JPEGImages/``, ``NNEW_trainval_k.txt``, ``NNEW_test_k.txt``)
  and ``Detection/VOC2007/`` (``Annotations/*.xml``, ``JPEGImages/``)
  (:func:`write_acne04_release`);
* DeepLesion: ``DL_info.csv`` and ``Images_png/<patient>_<study>_<series>/<slice>.png``
  (uint16, HU + 32768) (:func:`write_deep_lesion_release`).

The writers write what they are given without checking it, so a fixture can hold bad items as
easily as good ones. Nothing here imports the builders.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from acne_jax.data import deep_lesion
from acne_jax.data.masked_crop import circle_to_polygon
from acne_jax.data.records import ACNE_SCU_CLASS_NAMES

PathLike = Union[str, os.PathLike]

# --------------------------------------------------------------------------------------------
# Images and files.


def write_bytes(path: PathLike, data: bytes) -> None:
  """Writes ``data`` to ``path``, making its folder."""
  os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
  with open(path, "wb") as f:
    f.write(data)


def encode_jpeg(image_rgb: np.ndarray, quality: int = 90) -> bytes:
  """JPEG bytes of a uint8 ``[H, W, 3]`` RGB image."""
  ok, buffer = cv2.imencode(".jpg", cv2.cvtColor(np.ascontiguousarray(image_rgb), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
  if not ok:
    raise RuntimeError("encode_jpeg: cv2.imencode failed")
  return buffer.tobytes()


def noise_jpeg(seed: int, width: int, height: int, quality: int = 90) -> bytes:
  """JPEG bytes of uniform noise (a photo stand-in whose pixels only its bytes define)."""
  image = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
  return encode_jpeg(image, quality)


def decode_rgb(data: bytes) -> np.ndarray:
  """uint8 ``[H, W, 3]`` RGB of encoded image bytes, as OpenCV decodes them."""
  return cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


# --------------------------------------------------------------------------------------------
# AcneSCU: LabelMe and COCO.


def rect(x1: float, y1: float, x2: float, y2: float) -> List[List[float]]:
  """The four corners of a rectangle, clockwise from the top-left."""
  return [[x1, y1], [x2, y1], [x2, y2], [x1, y2]]


def polygon_shape(label: str, points: Iterable[Sequence[float]]) -> Dict[str, Any]:
  """A LabelMe ``polygon`` shape."""
  return {"label": label, "points": [[float(x), float(y)] for x, y in points], "group_id": None, "shape_type": "polygon", "flags": {}}


def circle_shape(label: str, cx: float, cy: float, r: float) -> Dict[str, Any]:
  """A LabelMe ``circle`` shape (centre, then a point on the rim)."""
  return {"label": label, "points": [[float(cx), float(cy)], [float(cx + r), float(cy)]], "group_id": None, "shape_type": "circle", "flags": {}}


def shape_points(shape: Mapping[str, Any]) -> np.ndarray:
  """float64 ``[V, 2]`` vertices of a well-formed shape: a circle's octagon, else its points."""
  points = np.asarray(shape["points"], np.float64)
  if shape.get("shape_type") == "circle":
    return circle_to_polygon(points[0], points[1])
  return points


def labelme_document(image_path: str, shapes: List[Dict[str, Any]], height: int, width: int) -> Dict[str, Any]:
  """A LabelMe 5 annotation file's content."""
  return {"version": "5.0.1", "flags": {}, "shapes": shapes, "imagePath": image_path, "imageData": None,
          "imageHeight": height, "imageWidth": width}


def write_json(path: PathLike, obj: Any) -> None:
  """UTF-8 JSON (non-ASCII names written as they are, as LabelMe does)."""
  write_bytes(path, json.dumps(obj, ensure_ascii=False).encode("utf-8"))


def write_labelme_pair(root: PathLike, rel: str, image_bytes: bytes, shapes: List[Dict[str, Any]], height: int, width: int,
                       image_path: Optional[str] = None) -> Tuple[str, str]:
  """Writes ``<root>/<rel>`` (the image) and the LabelMe JSON beside it; returns both paths.
  ``image_path``: the JSON's ``imagePath`` (default: the image's base name)."""
  image_file = os.path.join(os.fspath(root), rel)
  json_file = os.path.splitext(image_file)[0] + ".json"
  write_bytes(image_file, image_bytes)
  write_json(json_file, labelme_document(os.path.basename(rel) if image_path is None else image_path, shapes, height, width))
  return image_file, json_file


def coco_category_id(label: str, unknown: int = 99) -> int:
  """COCO category id of an AcneSCU class name (1..10), ``unknown`` for any other label."""
  names = {name: i + 1 for i, name in enumerate(ACNE_SCU_CLASS_NAMES)}
  return names.get(label.lower(), unknown)


def coco_document(images: Sequence[Mapping[str, Any]], categories: bool = True) -> Dict[str, Any]:
  """A COCO instance file's content.

  Args:
    images: ``{"id", "file_name", "height", "width", "shapes"}`` per image, ``shapes`` LabelMe
      shapes (a circle becomes its octagon, as the reference converter writes it; a label that
      is not a class gets category 99).
    categories: write the ``categories`` list (ids 1..10).
  """
  out_images, annotations = [], []
  for image in images:
    out_images.append({"id": image["id"], "file_name": image["file_name"], "height": image["height"], "width": image["width"]})
    for shape in image["shapes"]:
      annotations.append({"id": len(annotations), "image_id": image["id"], "category_id": coco_category_id(shape["label"]),
                          "iscrowd": 0, "segmentation": [shape_points(shape).reshape(-1).tolist()]})
  doc = {"images": out_images, "annotations": annotations}
  if categories:
    doc["categories"] = [{"id": i + 1, "name": n} for i, n in enumerate(ACNE_SCU_CLASS_NAMES)]
  return doc


# --------------------------------------------------------------------------------------------
# ACNE04.

ACNE04_CLASSIFICATION = "Classification"
ACNE04_CLASSIFICATION_IMAGES = os.path.join("Classification", "JPEGImages")
ACNE04_ANNOTATIONS = os.path.join("Detection", "VOC2007", "Annotations")
ACNE04_DETECTION_IMAGES = os.path.join("Detection", "VOC2007", "JPEGImages")

# (class name, xmin, ymin, xmax, ymax, difficult), VOC 1-based inclusive pixels
VocObject = Tuple[str, float, float, float, float, int]


def voc_xml(name: str, objects: Iterable[VocObject], width: int, height: int) -> str:
  """A Pascal VOC annotation as ACNE04 ships it (one ``<object>`` per box)."""
  body = "".join(
      f"<object><name>{n}</name><pose>Unspecified</pose><truncated>0</truncated><difficult>{d}</difficult>"
      f"<bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
      for n, x1, y1, x2, y2, d in objects
  )
  return (
      f"<annotation><folder>VOC2007</folder><filename>{name}</filename>"
      f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>"
      f"<segmented>0</segmented>{body}</annotation>"
  )


@dataclasses.dataclass
class Acne04Image:
  """One photo of an ACNE04 fixture.

  Attributes:
    grade, lesion_count: what the list files say.
    objects: the VOC objects, None for no XML file, "corrupt" for a truncated XML.
    image: "cls" (in Classification/JPEGImages), "det" (only in Detection/VOC2007/JPEGImages),
      "corrupt" (garbage bytes in Classification/JPEGImages) or "missing" (no file).
    size: (width, height) of the photo.
    xml_size: the ``<size>`` written in the XML (default: ``size``).
    seed: of the photo's noise.
  """

  grade: int
  lesion_count: int
  objects: Union[None, str, List[VocObject]]
  image: str = "cls"
  size: Tuple[int, int] = (40, 30)
  xml_size: Optional[Tuple[int, int]] = None
  seed: int = 0


def write_acne04_release(root: PathLike, images: Mapping[str, Acne04Image],
                         folds: Mapping[int, Tuple[Sequence[str], Sequence[str]]]) -> None:
  """Writes an ACNE04 release: the photos, the VOC files and, per fold ``k``, the lists
  ``NNEW_trainval_k.txt`` and ``NNEW_test_k.txt`` (``folds[k] = (train names, test names)``,
  lines ``"<name> <grade> <lesion count>"``)."""
  root = os.fspath(root)
  for folder in (ACNE04_CLASSIFICATION_IMAGES, ACNE04_ANNOTATIONS, ACNE04_DETECTION_IMAGES,
                 os.path.join("Detection", "VOC2007", "ImageSets", "Main")):
    os.makedirs(os.path.join(root, folder), exist_ok=True)
  for name, spec in images.items():
    width, height = spec.size
    if spec.image == "cls":
      write_bytes(os.path.join(root, ACNE04_CLASSIFICATION_IMAGES, name), noise_jpeg(spec.seed, width, height))
    elif spec.image == "det":
      write_bytes(os.path.join(root, ACNE04_DETECTION_IMAGES, name), noise_jpeg(spec.seed, width, height))
    elif spec.image == "corrupt":
      write_bytes(os.path.join(root, ACNE04_CLASSIFICATION_IMAGES, name), b"\xff\xd8\xff\xe0 this is not a JPEG")
    xml = os.path.join(root, ACNE04_ANNOTATIONS, os.path.splitext(name)[0] + ".xml")
    if spec.objects == "corrupt":
      write_bytes(xml, b"<annotation><object><name>fore</name><bndbox><xmin>1</xmin>")
    elif spec.objects is not None:
      write_bytes(xml, voc_xml(name, spec.objects, *(spec.xml_size or spec.size)).encode("utf-8"))
  for k, (train, test) in folds.items():
    for kind, names in (("trainval", train), ("test", test)):
      lines = "".join(f"{n} {images[n].grade} {images[n].lesion_count}\n" for n in names)
      write_bytes(os.path.join(root, ACNE04_CLASSIFICATION, f"NNEW_{kind}_{k}.txt"), lines.encode("utf-8"))


# --------------------------------------------------------------------------------------------
# DeepLesion.

DL_HEADER: Tuple[str, ...] = deep_lesion.CSV_HEADER


def dl_row(name: str, patient: int, study: int, series: int, key: int, box: str, type_: int, noisy: int, slice_range: str,
           spacing: str, split: int, window: str = "-175, 275", size: str = "16, 16",
           recist: str = "1.5, 2.5, 7.5, 8.5, 2.0, 8.0, 7.0, 3.0", diameters: str = "8.48, 7.07",
           location: str = "0.4, 0.5, 0.6", gender: str = "F", age: int = 62) -> List[Any]:
  """One ``DL_info.csv`` row (multi-value cells as ``"a, b, c"``), in column order."""
  return [name, patient, study, series, key, recist, box, diameters, location, type_, noisy, slice_range, spacing, size,
          window, gender, age, split]


def slice_hu(base: float, s: int, size: int = 16) -> np.ndarray:
  """HU of slice ``s`` of a fixture series: ``base + 50 s + 3 row + col`` (``[size, size]``)."""
  r, c = np.mgrid[0:size, 0:size]
  return base + 50 * s + 3 * r + c


def encode_slice(hu: np.ndarray) -> bytes:
  """A DeepLesion slice file's bytes: uint16 PNG of ``HU + 32768`` (no rounding: integer HU)."""
  return deep_lesion.encode_uint16_png((np.asarray(hu) + 32768).astype(np.uint16))


def write_dl_info(path: PathLike, rows: Iterable[Sequence[Any]], header: bool = True) -> None:
  """``DL_info.csv`` as the release writes it (the ``csv`` module quotes the multi-value cells)."""
  deep_lesion.write_dl_info(path, list(rows), header=header)


def write_deep_lesion_release(root: PathLike, rows: Iterable[Sequence[Any]],
                              series: Mapping[str, Tuple[float, Iterable[int], Iterable[int]]], size: int = 16) -> None:
  """Writes ``DL_info.csv`` and the slices: ``series[folder] = (HU base, slices written, corrupt
  slices)``; slice ``s`` holds :func:`slice_hu`, a corrupt one a truncated PNG header."""
  root = os.fspath(root)
  write_dl_info(os.path.join(root, "DL_info.csv"), rows)
  for folder, (base, slices, corrupt) in series.items():
    os.makedirs(os.path.join(root, "Images_png", folder), exist_ok=True)
    for s in slices:
      write_bytes(os.path.join(root, "Images_png", folder, f"{s:03d}.png"), encode_slice(slice_hu(base, s, size)))
    for s in corrupt:
      write_bytes(os.path.join(root, "Images_png", folder, f"{s:03d}.png"), b"\x89PNG\r\n\x1a\n truncated")
