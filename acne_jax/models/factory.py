"""The detector a config's ``model`` section describes: the two-stage family (``TwoStageDetector``,
every ``configs/*.py`` but one) or the one-stage YOLOv4 (``model.type="yolov4"``,
``configs/yolov4.py``). Both answer ``losses(images, gt_boxes, gt_labels, gt_valid, key)`` and
``predict(images) -> Prediction``, so one training loop, evaluation and ``predict`` serve both;
the few things that differ (which classes, which layers update batch statistics, what a
pretrained file feeds) are asked here.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional

MODEL_TYPES = ("two_stage", "yolov4")


def model_type(model_config: Mapping[str, Any]) -> str:
  """``model.type`` (absent: ``"two_stage"``, the configs written before YOLOv4)."""
  kind = model_config.get("type", "two_stage")
  if kind not in MODEL_TYPES:
    raise ValueError(f"model.type={kind!r}: use one of {', '.join(MODEL_TYPES)}.")
  return kind


def _without_type(model_config: Mapping[str, Any]) -> dict:
  config = model_config.to_dict() if hasattr(model_config, "to_dict") else dict(model_config)
  config.pop("type", None)
  return config


def spec(model_config: Mapping[str, Any]):
  """The model's spec dataclass (``DetectorSpec`` or ``YoloSpec``); an unknown key is named."""
  if model_type(model_config) == "yolov4":
    from acne_jax.models import yolo

    return yolo.spec_from_config(_without_type(model_config))
  from acne_jax.models.detector import spec_from_config

  return spec_from_config(_without_type(model_config))


def build(model_config: Mapping[str, Any], train: bool):
  """The Flax module of ``model_config`` in training (``train=True``) or inference mode."""
  model_spec = spec(model_config)
  if model_type(model_config) == "yolov4":
    from acne_jax.models import yolo

    return yolo.YOLOv4(model_spec, train=train)
  from acne_jax.models.detector import TwoStageDetector

  return TwoStageDetector(model_spec, train=train)


def num_classes(model_config: Mapping[str, Any]) -> int:
  """The number of object classes (no background)."""
  if model_type(model_config) == "yolov4":
    return int(model_config["num_classes"])
  return int(model_config["roi_head"]["num_classes"])


def has_mask_head(model) -> bool:
  return getattr(getattr(model.spec, "roi_head", None), "type", "") == "mask"


def updates_batch_stats(model) -> bool:
  """Whether training updates batch-norm statistics (a ``"bn"`` norm)."""
  backbone = getattr(model.spec, "backbone", None)
  return (backbone.norm if backbone is not None else model.spec.norm) == "bn"


def frozen_predicate(model) -> Optional[Callable[[str], bool]]:
  """Which parameters the optimiser leaves alone (the two-stage backbone's frozen stages), or None."""
  from acne_jax.training import optim

  backbone = getattr(model.spec, "backbone", None)
  if backbone is None or backbone.frozen_stages < 0:
    return None
  return optim.frozen_backbone_predicate(backbone.frozen_stages)


def mask_threshold(model_config: Mapping[str, Any]) -> float:
  """The mask head's binarisation threshold (0.5 for a model without masks)."""
  if model_type(model_config) == "yolov4":
    return 0.5
  return float(model_config["roi_head"]["mask"]["threshold"])
