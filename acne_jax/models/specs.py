"""Every setting of a two-stage detector, one frozen dataclass per component.

The ``model`` section of a config has one sub-section per component, and each component reads
only its own (habit 8 of ``DESIGN.md``: a component gets one sub-config, its fields are never
copied onto the parent)::

  model.backbone   BackboneSpec   ResNet depth, width, normalisation, frozen stages
  model.neck       NeckSpec       FPN channels and how an extra top level is made
  model.rpn        RPNSpec        head type, anchors, assigner, sampler, NWD branch, proposals
  model.roi_head   RoIHeadSpec    head type, classes, RoIAlign, and the box / mask / cpm settings

Defaults are the SADH paper's AcneSCU setting (section 4.2 and the reference's
``skin_config.py``). :func:`spec_from_config` builds the whole tree from a config section,
rejecting an unknown key with the section it is in and the closest known keys.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any, Mapping, Tuple

RPN_HEADS = ("rpn", "sadh")
ROI_HEADS = ("box", "mask", "cpm")
EXTRA_LEVELS = ("none", "max_pool", "conv")
NWD_TARGETS = ("nwd", "iou", "giou", "diou")
NWD_LOSSES = ("sbce", "l1")
NORMS = ("frozen_bn", "eval_bn", "bn", "gn")


def _choice(name: str, value: Any, choices: Tuple[str, ...]) -> None:
  if value not in choices:
    raise ValueError(f"model.{name} must be one of {choices}; got {value!r}.")


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
  """ResNet (``acne_jax.models.resnet``)."""

  depth: int = 50  # 18, 34, 50 or 101
  width: int = 64  # channels of the first stage; smaller gives the thin CPU variants
  norm: str = "frozen_bn"  # "frozen_bn", "eval_bn" (statistics frozen, affine trained), "bn" or "gn" (32 groups)
  frozen_stages: int = -1  # stem and stages 1..k get no gradient (-1: train everything)
  zero_init_residual: bool = False
  # Per stage C2..C5: deformable (v1) 3x3 convolutions in its bottlenecks (the paper: c3-c5).
  deformable_stages: Tuple[bool, bool, bool, bool] = (False, False, False, False)
  # Loaded into the backbone before training starts ("" for none): a torchvision ImageNet ResNet
  # checkpoint (.pth; acne_jax/interop/torch.py maps its keys) or an acne_jax run's workdir (the
  # backbone of its newest checkpoint, same backbone settings).
  pretrained: str = ""

  def __post_init__(self):
    _choice("backbone.norm", self.norm, NORMS)
    if len(self.deformable_stages) != 4:
      raise ValueError(f"model.backbone.deformable_stages needs 4 entries (C2, C3, C4, C5); got {self.deformable_stages!r}.")
    if any(self.deformable_stages) and self.depth not in (50, 101):
      raise ValueError(f"model.backbone.deformable_stages: deformable convolutions need ResNet-50 or 101; depth is {self.depth}.")


@dataclasses.dataclass(frozen=True)
class NeckSpec:
  """FPN (``acne_jax.models.fpn``): P2-P5, plus P6 when ``extra_level`` is not ``"none"``."""

  channels: int = 256
  extra_level: str = "none"  # "none" (the SADH reference), "max_pool" (torchvision, Detectron2) or "conv" (3x3/2 on P5)
  # An acne_jax run's workdir whose newest checkpoint's FPN is loaded before training starts
  # ("" for none; same neck and backbone settings), e.g. with backbone.pretrained naming the same run.
  pretrained: str = ""

  def __post_init__(self):
    _choice("neck.extra_level", self.extra_level, EXTRA_LEVELS)


@dataclasses.dataclass(frozen=True)
class RPNSpec:
  """RPN or SADH head, its targets and losses, and proposal generation (``models/rpn*.py``,
  ``models/proposals.py``). The NWD-branch options are the SADH paper's Table 4 ablations."""

  head: str = "sadh"  # "rpn" (vanilla 3x3 tower) or "sadh" (spatial-aware double head)
  # Anchors (one level per stride: 4..32 are P2-P5, 64 needs neck.extra_level).
  anchor_strides: Tuple[int, ...] = (4, 8, 16, 32)
  anchor_scales: Tuple[float, ...] = (8.0,)
  anchor_ratios: Tuple[float, ...] = (0.5, 1.0, 2.0)
  anchor_round: bool = False  # round base anchors to whole pixels (torchvision, Detectron); MMDetection 2 does not
  anchor_steps_from_sizes: bool = False  # grid step = image size // feature size per axis (torchvision), not the stride
  # Max-IoU assigner and random sampler.
  pos_iou: float = 0.5
  neg_iou: float = 0.3
  min_pos_iou: float = 0.3
  num_samples: int = 256
  positive_fraction: float = 0.5
  # SADH towers.
  gn_groups: int = 32
  cls_kernel: int = 1  # 1 is SADH; 3 the Table 4 ablation
  reg_kernel: int = 3
  # NWD prediction branch (SADH section 3.3), on either head.
  with_nwd: bool = True
  nwd_target: str = "nwd"  # what the branch learns: "nwd", "iou", "giou" or "diou" (Table 4, group 3)
  nwd_loss: str = "sbce"  # "sbce" or "l1" (Table 4, group 2)
  nwd_constant: float = 32.0  # C of the NWD
  nwd_loss_weight: float = 1.0
  nwd_score_weight: float = 1.0  # w of the rectified score, eq. 5
  # Proposals.
  train_nms_pre: int = 2000
  train_max_proposals: int = 1000
  test_nms_pre: int = 2000
  test_max_proposals: int = 1000
  nms_iou: float = 0.7
  train_min_size: float = 0.0
  test_min_size: float = 10.0
  min_size_inclusive: bool = False  # keep proposals whose side equals min_size (torchvision) or drop them (MMDetection)

  def __post_init__(self):
    _choice("rpn.head", self.head, RPN_HEADS)
    _choice("rpn.nwd_target", self.nwd_target, NWD_TARGETS)
    _choice("rpn.nwd_loss", self.nwd_loss, NWD_LOSSES)
    for name in ("cls_kernel", "reg_kernel"):
      if getattr(self, name) not in (1, 3):
        raise ValueError(f"model.rpn.{name} must be 1 or 3; got {getattr(self, name)!r}.")


@dataclasses.dataclass(frozen=True)
class BoxHeadSpec:
  """Shared2FC box head, its RoI sampling and inference (``models/bbox_head.py``)."""

  fc_dim: int = 1024
  pos_iou: float = 0.5
  neg_iou: float = 0.5
  min_pos_iou: float = 0.5
  num_samples: int = 512
  positive_fraction: float = 0.25
  score_threshold: float = 0.05
  nms_iou: float = 0.5
  max_detections: int = 200
  pre_nms_top_k: int = 4000
  min_size: float = 0.0  # detections need width and height >= min_size (torchvision: 0.01; 0 keeps all)
  # An acne_jax run's workdir whose box head's shared layers (fc1, fc2) are loaded before training
  # starts ("" for none; same fc_dim, roi_size and neck channels); the class-specific cls and reg
  # layers start from scratch, as they do from a COCO model with other classes.
  pretrained: str = ""


@dataclasses.dataclass(frozen=True)
class MaskHeadSpec:
  """FCN mask head (``models/mask_head.py``), MMDetection 2 ``FCNMaskHead``."""

  roi_size: int = 14  # RoIAlign output; the head predicts 2 * roi_size masks
  channels: int = 256
  num_convs: int = 4
  loss_weight: float = 1.0
  threshold: float = 0.5  # binarises pasted masks at inference


@dataclasses.dataclass(frozen=True)
class CPMHeadSpec:
  """CPM R-CNN's cascade grid heads and fused scoring (``models/cascade.py``, ``grid_head.py``,
  ``scoring.py``). Its classification branch is ``roi_head.box`` without box regression (its
  sampler, and its score threshold and NMS before the grid stages). Defaults: the paper's final
  model (Pet's ``e2e_grid_cascade@567_rcnn_R-50-FPN_2x``)."""

  # Grid head of every stage.
  grid_size: int = 3  # 3 x 3 = 9 points
  roi_size: int = 14  # RoIAlign output; the whole heatmap over the expanded box is 4 * roi_size
  point_channels: int = 64  # conv channels = grid_size**2 * point_channels (576)
  num_convs: int = 8
  gn_groups: int = 36
  fusion: bool = False  # Grid R-CNN's first/second-order neighbour fusion (CPM: off)
  pos_radius: int = 1
  grid_loss_weight: float = 15.0
  # "grid_rcnn": the head's intended initialisation (mmdet's; 1 % heatmap prior); "torch_default":
  # Pet as it runs, whose init_weights is never called (docs/decisions.md).
  weight_init: str = "torch_default"
  # Cascade mapping module: one entry per stage.
  mapping_ratios: Tuple[float, ...] = (1.0, 0.5, 0.25)  # heatmap region = (1 + ratio) x the box
  stage_ious: Tuple[float, ...] = (0.5, 0.6, 0.7)  # stage j trains on boxes with IoU >= stage_ious[j] (stage 0: the cls positives)
  stage_loss_weights: Tuple[float, ...] = (1.0, 0.5, 0.25)
  max_grid_rois: int = 96  # stage-0 positives per image (a random subset beyond)
  # RoI slots per image of every later stage. 0: the stage-0 slots plus the padded ground-truth
  # count, which holds every refined box and ground-truth box that can pass. A smaller number
  # saves compute; when more pass, the refined boxes are kept first and the ground truth cut.
  later_stage_rois: int = 0
  # IoU scoring module (last stage).
  ism: bool = True
  ism_fc_dim: int = 1024
  ism_loss_weight: float = 1.0
  ism_reference: bool = False  # Pet's raw-logit score and row-gathering L2 loss (docs/decisions.md)
  # Resampling scoring module.
  rsm: bool = True
  rsm_num_samples: int = 512
  rsm_positive_fraction: float = 0.25
  rsm_loss_weight: float = 1.0
  score_gamma: float = 0.8  # fused score (s_cls * s_ISM)^gamma * s_RSM^(1 - gamma)

  @property
  def num_stages(self) -> int:
    return len(self.mapping_ratios)

  def __post_init__(self):
    stages = len(self.mapping_ratios)
    if stages < 1 or len(self.stage_ious) != stages or len(self.stage_loss_weights) != stages:
      raise ValueError("model.roi_head.cpm: mapping_ratios, stage_ious and stage_loss_weights need one entry per stage; got "
                       f"{self.mapping_ratios}, {self.stage_ious}, {self.stage_loss_weights}.")
    if self.grid_size < 2:
      raise ValueError(f"model.roi_head.cpm.grid_size must be >= 2; got {self.grid_size}.")
    channels = self.grid_size**2 * self.point_channels
    if channels % self.gn_groups:
      raise ValueError(f"model.roi_head.cpm.gn_groups ({self.gn_groups}) must divide the grid conv channels "
                       f"grid_size**2 * point_channels = {channels}.")
    if self.weight_init not in ("grid_rcnn", "torch_default"):
      raise ValueError(f"model.roi_head.cpm.weight_init must be 'grid_rcnn' or 'torch_default'; got {self.weight_init!r}.")
    if self.later_stage_rois < 0 or self.max_grid_rois < 1:
      raise ValueError(f"model.roi_head.cpm: max_grid_rois must be >= 1 and later_stage_rois >= 0 (0: the exact bound); "
                       f"got {self.max_grid_rois}, {self.later_stage_rois}.")
    if self.num_convs < 1:
      raise ValueError(f"model.roi_head.cpm.num_convs must be >= 1 (the first halves the RoI); got {self.num_convs}.")


@dataclasses.dataclass(frozen=True)
class RoIHeadSpec:
  """The stage after the proposals (``models/roi_heads.py``): ``type`` picks the head."""

  type: str = "box"  # "box" (Faster R-CNN), "mask" (Mask R-CNN) or "cpm" (CPM R-CNN's cascade grid heads)
  num_classes: int = 10
  # RoIAlign of the box branch.
  roi_size: int = 7
  sampling_ratio: int = 0
  aligned: bool = True
  max_sampling_ratio: int = 4  # static cap of the adaptive grid; exact up to this (ops/roi_align.py)
  # The legacy +1 box convention (Detectron, Pet) in RoI level mapping and RoI-ground-truth IoU;
  # with aligned=False and sampling_ratio=2 it is Pet's geometry. The box coder is unchanged.
  plus_one: bool = False
  box: BoxHeadSpec = BoxHeadSpec()
  mask: MaskHeadSpec = MaskHeadSpec()
  cpm: CPMHeadSpec = CPMHeadSpec()

  def __post_init__(self):
    _choice("roi_head.type", self.type, ROI_HEADS)


@dataclasses.dataclass(frozen=True)
class DetectorSpec:
  """The whole detector."""

  backbone: BackboneSpec = BackboneSpec()
  neck: NeckSpec = NeckSpec()
  rpn: RPNSpec = RPNSpec()
  roi_head: RoIHeadSpec = RoIHeadSpec()
  # "bfloat16": mixed precision, bf16 convolutions and matmuls; parameters, optimiser state,
  # normalisation statistics, losses, box decoding and NMS stay float32.
  compute_dtype: str = "float32"

  def __post_init__(self):
    if self.compute_dtype not in ("float32", "bfloat16"):
      raise ValueError(f"model.compute_dtype must be 'float32' or 'bfloat16'; got {self.compute_dtype!r}.")
    if self.rpn.head == "sadh" and self.neck.channels % self.rpn.gn_groups:
      raise ValueError(f"model.neck.channels ({self.neck.channels}) must be divisible by model.rpn.gn_groups "
                       f"({self.rpn.gn_groups}) for the SADH head.")
    levels = len(self.rpn.anchor_strides)
    if tuple(self.rpn.anchor_strides) != tuple(4 * 2**i for i in range(levels)):
      raise ValueError(f"model.rpn.anchor_strides must be the FPN strides in order, (4, 8, 16, 32[, 64]); got {self.rpn.anchor_strides}.")
    if levels > 4 and self.neck.extra_level == "none":
      raise ValueError(f"model.rpn.anchor_strides has {levels} levels but the neck makes P2-P5 only; set "
                       "model.neck.extra_level to 'max_pool' or 'conv' for P6.")
    if levels > 5:
      raise ValueError(f"model.rpn.anchor_strides: at most 5 levels (P2-P6); got {self.rpn.anchor_strides}.")

  @property
  def num_classes(self) -> int:
    return self.roi_head.num_classes


def _build(cls, values: Mapping[str, Any], section: str):
  """``cls`` from a mapping, recursing into nested specs; unknown keys name ``section``."""
  fields = {f.name: f for f in dataclasses.fields(cls)}
  unknown = sorted(set(values) - set(fields))
  if unknown:
    hints = []
    for key in unknown:
      close = difflib.get_close_matches(key, list(fields), n=2)
      hints.append(f"'{section}.{key}'" + (f" (did you mean {' or '.join(repr(f'{section}.{c}') for c in close)}?)" if close else ""))
    raise ValueError(f"unknown config key(s) {', '.join(hints)}; section '{section}' has {sorted(fields)}.")
  kwargs = {}
  for name, value in values.items():
    default = fields[name].default
    if dataclasses.is_dataclass(default):
      if not isinstance(value, Mapping):
        raise ValueError(f"config key '{section}.{name}' is a section; got {value!r}.")
      kwargs[name] = _build(type(default), value, f"{section}.{name}")
    elif isinstance(default, tuple):
      kwargs[name] = tuple(value)
    else:
      kwargs[name] = value
  return cls(**kwargs)


def spec_from_config(model_config: Mapping[str, Any]) -> DetectorSpec:
  """:class:`DetectorSpec` from the ``model`` section of a config (a ConfigDict or dict tree).

  Raises:
    ValueError: for an unknown key (naming its section and the closest keys) or a bad value.
  """
  return _build(DetectorSpec, _to_dict(model_config), "model")


def _to_dict(tree: Any) -> Any:
  if hasattr(tree, "to_dict"):
    tree = tree.to_dict()
  if isinstance(tree, Mapping):
    return {k: _to_dict(v) for k, v in tree.items()}
  return tree


def default_model_config() -> dict:
  """The ``model`` section with every field at its default, as a nested dict."""
  return dataclasses.asdict(DetectorSpec())
