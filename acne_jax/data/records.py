"""The record schema every data set is stored in, its encoding and decoding, and each data set's class names.

All four TFDS builders (``tfds_builders/``: synthetic_acne, acne_scu, acne04, deep_lesion) write
records in this layout, and every reader (the grain pipeline, evaluation, previews) turns them
into NumPy arrays with :func:`decode_record`. The common features (:func:`tfds_features`)::

  {"image": uint8 [H, W, 3] RGB (PNG or JPEG bytes on disk; uint16 for DeepLesion's HU option),
   "image_id": int64, "file_name": text, "crop_origin": int32 [2] (x, y of the record in its
   source image),
   "objects": Sequence({"bbox": float32 [4] x1, y1, x2, y2 pixels, no +1,
                        "label": ClassLabel over the data set's CLASS_NAMES,
                        "area": float32 bbox area,
                        "polygon_size": int32 number of floats of the object's polygon}),
   "polygons": float32 [sum_k 2 V_k] all polygons concatenated flat (x0, y0, x1, y1, ...)}

plus each data set's own extra fields (patient id, grade, RECIST diameters, ...). Polygons are
stored flat because TFDS cannot serialise a ragged tensor inside a ``Sequence`` without
TensorFlow. Coordinates are continuous: pixel ``(i, j)`` (row, column) covers ``[j, j + 1] x
[i, i + 1]``.

This module imports neither TensorFlow Datasets (except inside :func:`tfds_features`) nor
``tfds_builders``: the builders import it, never the other way round.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Tuple

import cv2
import numpy as np

# AcneSCU's ten lesion categories (the synthetic set draws the same ten).
ACNE_SCU_CLASS_NAMES: Tuple[str, ...] = (
    "closed_comedo",
    "open_comedo",
    "papule",
    "pustule",
    "nodule",
    "atrophic_scar",
    "hypertrophic_scar",
    "melasma",
    "nevus",
    "other",
)
# ACNE04 has one lesion class (its VOC files call it "fore") and four Hayashi grades per image.
ACNE04_CLASS_NAMES: Tuple[str, ...] = ("acne",)
ACNE04_GRADE_NAMES: Tuple[str, ...] = ("mild", "moderate", "severe", "very_severe")
# DeepLesion's Coarse_lesion_type 1..8 -> label 0..7 (-1, "unknown", stays -1).
DEEP_LESION_CLASS_NAMES: Tuple[str, ...] = (
    "bone",
    "abdomen",
    "mediastinum",
    "liver",
    "lung",
    "kidney",
    "soft_tissue",
    "pelvis",
)
CLASS_NAMES: Dict[str, Tuple[str, ...]] = {
    "synthetic_acne": ACNE_SCU_CLASS_NAMES,
    "acne_scu": ACNE_SCU_CLASS_NAMES,
    "acne04": ACNE04_CLASS_NAMES,
    "deep_lesion": DEEP_LESION_CLASS_NAMES,
    "synthetic_ct": DEEP_LESION_CLASS_NAMES,
}


def tfds_features(class_names: Tuple[str, ...], image_shape=(None, None, 3), image_dtype=np.uint8,
                  image_encoding: str = "png", extra: Optional[Mapping[str, Any]] = None,
                  extra_objects: Optional[Mapping[str, Any]] = None):
  """The ``tfds.features.FeaturesDict`` of the common schema above, with a data set's ``extra``
  top-level features and ``extra_objects`` per-object features added (``image`` and the
  common fields cannot be overridden)."""
  import tensorflow_datasets as tfds

  objects = {
      "bbox": tfds.features.Tensor(shape=(4,), dtype=np.float32),
      "label": tfds.features.ClassLabel(names=class_names),
      "area": np.float32,
      "polygon_size": np.int32,
  }
  top = {
      "image": tfds.features.Image(shape=image_shape, dtype=image_dtype, encoding_format=image_encoding),
      "image_id": np.int64,
      "file_name": tfds.features.Text(),
      "crop_origin": tfds.features.Tensor(shape=(2,), dtype=np.int32),
      "polygons": tfds.features.Tensor(shape=(None,), dtype=np.float32),
  }
  for name, extras, common in (("extra", extra, top), ("extra_objects", extra_objects, objects)):
    clash = sorted(set(extras or {}) & set(common))
    if clash:
      raise ValueError(f"tfds_features: {name} redefines the common field(s) {clash}.")
  top["objects"] = tfds.features.Sequence({**objects, **(extra_objects or {})})
  return tfds.features.FeaturesDict({**top, **(extra or {})})



def encode_png(image: np.ndarray) -> bytes:
  """PNG bytes of a uint8 ``[H, W, 3]`` RGB image (deterministic, lossless)."""
  ok, buffer = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1])
  if not ok:
    raise RuntimeError("encode_png: cv2.imencode failed.")
  return buffer.tobytes()


def decode_png(data: bytes) -> np.ndarray:
  """uint8 ``[H, W, 3]`` RGB from PNG (or any cv2-readable) bytes."""
  image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
  if image is None:
    raise ValueError("decode_png: could not decode image bytes.")
  return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def to_tfds_example(record: Mapping[str, Any]) -> Dict[str, Any]:
  """A generator record in the TFDS storage layout.

  TFDS cannot serialise a ragged tensor inside a ``Sequence`` without TensorFlow, so polygons
  are stored flat at the top level: ``polygons`` float32 ``[sum_k 2 V_k]`` (all polygons
  concatenated in object order) and ``objects/polygon_size`` int32 ``[K]`` (``2 V_k``, the
  number of floats of each). The image is stored as PNG bytes.
  """
  objects = record["objects"]
  polygons = [np.asarray(p, np.float32).reshape(-1) for p in objects["polygon"]]
  flat = np.concatenate(polygons) if polygons else np.zeros((0,), np.float32)
  image = record["image"]
  return {
      "image": image if isinstance(image, (bytes, bytearray)) else encode_png(image),
      "image_id": int(record["image_id"]),
      "file_name": str(record["file_name"]),
      "patient_id": str(record["patient_id"]),
      "crop_origin": np.asarray(record["crop_origin"], np.int32).reshape(2),
      "objects": {
          "bbox": np.asarray(objects["bbox"], np.float32).reshape(-1, 4),
          "label": np.asarray(objects["label"], np.int64).reshape(-1),
          "area": np.asarray(objects["area"], np.float32).reshape(-1),
          "polygon_size": np.asarray([len(p) for p in polygons], np.int32),
      },
      "polygons": flat,
  }


def _text(value: Any) -> str:
  if isinstance(value, (bytes, bytearray)):
    return value.decode("utf-8")
  if isinstance(value, np.ndarray):
    return _text(value.item())
  return str(value)


def decode_record(record: Mapping[str, Any]) -> Dict[str, Any]:
  """NumPy arrays from a record read back from TFDS (or straight from the generator).

  Accepts the image as a decoded array or as encoded bytes, sequence features as Python lists
  (``[]`` when empty) or arrays, and polygons either in the TFDS layout (``polygons`` +
  ``objects/polygon_size``) or the generator's (``objects/polygon`` list).

  Returns:
    ``{"image": uint8 [H, W, 3] RGB, "boxes": float32 [K, 4] x1y1x2y2 pixels,
    "labels": int32 [K], "areas": float32 [K], "polygons": list of K float32 [2 V_k],
    "image_id": int, "file_name": str, "patient_id": str, "crop_origin": int32 [2]}``.
  """
  image = record["image"]
  if isinstance(image, (bytes, bytearray, np.bytes_)):
    image = decode_png(bytes(image))
  image = np.asarray(image, np.uint8)
  if image.ndim == 2:
    image = np.repeat(image[..., None], 3, axis=-1)
  objects = record["objects"]
  boxes = np.asarray(objects["bbox"], np.float32).reshape(-1, 4)
  labels = np.asarray(objects["label"], np.int64).reshape(-1).astype(np.int32)
  areas = np.asarray(objects.get("area", []), np.float32).reshape(-1)
  if areas.shape[0] != boxes.shape[0]:
    areas = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).astype(np.float32)
  if "polygon_size" in objects:
    sizes = np.asarray(objects["polygon_size"], np.int64).reshape(-1)
    flat = np.asarray(record.get("polygons", []), np.float32).reshape(-1)
    splits = np.cumsum(sizes)[:-1] if len(sizes) else []
    polygons = [np.asarray(p, np.float32) for p in np.split(flat, splits)] if len(sizes) else []
  else:
    polygons = [np.asarray(p, np.float32).reshape(-1) for p in objects.get("polygon", [])]
  return {
      "image": image,
      "boxes": boxes,
      "labels": labels,
      "areas": areas,
      "polygons": polygons,
      "image_id": int(np.asarray(record.get("image_id", 0))),
      "file_name": _text(record.get("file_name", "")),
      "patient_id": _text(record.get("patient_id", "")),
      "crop_origin": np.asarray(record.get("crop_origin", (0, 0)), np.int32).reshape(2),
  }
