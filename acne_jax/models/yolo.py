"""YOLOv4 (Bochkovskiy et al. 2020), one-stage: CSPDarknet53 -> SPP -> PANet -> YOLOv3 heads.

The layout is darknet's ``cfg/yolov4.cfg`` (layer numbers below are darknet's, from 0):

- **CSPDarknet53** (Mish everywhere): a 3x3 stem of ``width`` (32) channels, then five CSP stages
  of ``stage_blocks`` (1, 2, 8, 8, 4) residual blocks. A stage halves the resolution with a 3x3/2
  convolution to ``c = width * 2^(i+1)`` channels, splits into two 1x1 branches (``c / 2`` each;
  ``c`` in the first stage), runs the residual blocks (1x1 then 3x3, identity shortcut) and a 1x1
  on one of them, concatenates ``[blocks, bypass]`` and fuses with a 1x1 to ``c``. Outputs
  ``C2..C5`` at strides 4..32 (128, 256, 512, 1024 channels; darknet layers 23, 54, 85, 104).
- **SPP** (leaky ReLU 0.1 from here on): 1x1, 3x3, 1x1 to ``16 width`` (512) on C5, max pools of
  5, 9 and 13 at stride 1, concatenated ``[13, 9, 5, identity]``, then 1x1, 3x3, 1x1 again.
- **PANet**: a top-down path (1x1 and nearest upsampling of the coarser level, concatenated
  after a 1x1 lateral of the backbone level, then five convolutions 1x1/3x3/1x1/3x3/1x1), then a
  bottom-up path (a strided 3x3 of the finer level concatenated before the top-down feature, five
  convolutions). Channels halve at each level below the top: 512, 256, 128 (x ``width / 32``).
- **YOLOv3 heads**: per level a 3x3 to twice the level's channels and a 1x1 (with bias) to
  ``A (5 + K)`` outputs, read as ``[B, H, W, A, 5 + K]`` (:mod:`acne_jax.ops.yolo_head`).

``head_strides`` picks the output levels: ``(8, 16, 32)`` is YOLOv4; ``(4, 16, 32)`` is the
seed paper's darknet change for lesions under 16 px (the README's small-object recipe: the
top-down path upsamples by 4 onto the stride-4 backbone output, layer 23, and the bottom-up path
comes back with a 3x3/4 convolution); ``(4, 8, 16, 32)`` adds a fourth head at stride 4 (P2)
and keeps YOLOv4's three. Anchors are sorted by area and split evenly over the levels, finest
level first, so a 4-level model needs 12 anchors (3 per level, as darknet's 5-head
``yolov3_5l.cfg`` and YOLOv5's P2 model): compute them with ``scripts/yolo_anchors.py
--num_anchors=12`` (``docs/decisions.md``).

Entry points (``model = YOLOv4(spec, train=...)``):

- ``model.apply(variables, images, gt_boxes, gt_labels, gt_valid)`` -> ``(total_loss, metrics)``;
- ``model.apply(variables, images, gt_boxes, gt_labels, gt_valid, key, method="losses")`` -> the
  loss terms ``{"yolo_box", "yolo_obj", "yolo_cls"}`` whose sum is the total (the signature of
  :meth:`acne_jax.models.detector.TwoStageDetector.losses`, so ``train.make_train_step`` can sum
  them unchanged; ``key`` is unused);
- ``model.apply(variables, images, method="predict")`` -> :class:`~acne_jax.models.detector.Prediction`
  (per-class NMS detections, objectness "proposals", no masks), the two-stage detector's structure;
- ``model.apply(variables, images, method="raw_outputs")`` -> per level ``[B, H, W, A, 5 + K]``.

With ``norm="bn"`` (darknet's batch norm) a training apply needs ``mutable=["batch_stats"]``.
``pretrained`` names a darknet ``.weights`` file (yolov4.conv.137 or yolov4.weights) that training
starts from; :mod:`acne_jax.interop.darknet` maps darknet's layer order onto these modules.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict, List, Mapping, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from acne_jax.models import specs
from acne_jax.models.bbox_head import Detections, select_detections
from acne_jax.models.detector import Prediction
from acne_jax.models.layers import Conv
from acne_jax.models.norm import make_norm
from acne_jax.models.proposals import Proposals
from acne_jax.ops import boxes as box_ops
from acne_jax.ops import nms as nms_ops
from acne_jax.ops import yolo_head
from acne_jax.ops import yolo_targets

# yolov4.cfg's anchors (COCO, k-means at 608 px input), (w, h) input pixels, sorted by area.
YOLOV4_ANCHORS: Tuple[Tuple[float, float], ...] = (
    (12, 16), (19, 36), (40, 28), (36, 75), (76, 55), (72, 146), (142, 110), (192, 243), (459, 401))
# The seed paper's DeepLesion anchors (its section 3.2, k-means at its 869 px training input).
SEED_DEEPLESION_ANCHORS: Tuple[Tuple[float, float], ...] = (
    (15, 15), (21, 21), (29, 26), (34, 38), (50, 37), (46, 58), (69, 60), (97, 94), (156, 133))
BACKBONE_STRIDES = (4, 8, 16, 32)  # C2..C5, the levels a head can read
NORMS = ("bn", "frozen_bn", "eval_bn", "gn")
LEAKY_SLOPE = 0.1  # darknet's leaky activation


@dataclasses.dataclass(frozen=True)
class YoloSpec:
  """Every setting of :class:`YOLOv4` (defaults: ``cfg/yolov4.cfg``)."""

  num_classes: int = 80
  # CSPDarknet53: stem channels (the stages have 2, 4, .., 32 times as many) and blocks per stage.
  width: int = 32
  stage_blocks: Tuple[int, ...] = (1, 2, 8, 8, 4)
  norm: str = "bn"  # darknet's batch norm; "gn", "frozen_bn", "eval_bn" as the two-stage backbone
  # Heads: strides of the output levels, finest first; (4, 16, 32) is the seed's small-lesion
  # variant, (4, 8, 16, 32) adds a P2 head (and needs 4 x 3 anchors).
  head_strides: Tuple[int, ...] = (8, 16, 32)
  # (w, h) in input pixels; sorted by area and split evenly over the levels, finest first.
  anchors: Tuple[Tuple[float, float], ...] = YOLOV4_ANCHORS
  # Grid sensitivity per level, finest first; () gives YOLOv4's: 1.05 on the coarsest level,
  # 1.1 on the next and 1.2 on every finer one.
  scale_x_y: Tuple[float, ...] = ()
  spp_pool_sizes: Tuple[int, ...] = (5, 9, 13)
  # Label assignment and loss (darknet's [yolo] settings).
  iou_threshold: float = yolo_targets.YOLOV4_IOU_THRESHOLD  # iou_thresh: extra anchors above this
  ignore_threshold: float = yolo_targets.YOLOV4_IGNORE_THRESHOLD  # ignore_thresh
  neighbor_cells: bool = False  # also the two nearest neighbour cells (scaled-YOLOv4; wants scale_x_y 2)
  box_loss_weight: float = 0.07  # iou_normalizer
  obj_loss_weight: float = 1.0  # obj_normalizer
  cls_loss_weight: float = 1.0  # cls_normalizer
  box_size_weight: bool = False  # multiply the CIoU term by 2 - wh / image area (darknet: MSE loss only)
  obj_prior: float = 0.01  # initial objectness probability of every prediction (darknet starts at 0.5)
  # Inference.
  score_threshold: float = 0.005  # objectness x class probability (darknet's mAP threshold)
  nms_iou: float = 0.45  # per-class greedy NMS (darknet's -nms 0.45)
  max_detections: int = 200
  pre_nms_top_k: int = 4000  # (prediction, class) candidates kept by score before NMS
  max_proposals: int = 1000  # class-agnostic objectness boxes returned as Prediction.proposals
  proposal_nms_iou: float = 0.7
  compute_dtype: str = "float32"  # "bfloat16": bf16 convolutions; outputs, losses, decoding, NMS float32
  # A darknet .weights file read when training starts (not on resume; acne_jax/interop/darknet.py):
  # yolov4.conv.137 (backbone, SPP, top-down path) or yolov4.weights; "" trains from scratch.
  pretrained: str = ""
  pretrained_layers: str = "all"  # "all": every layer the file holds that fits; "backbone": CSPDarknet53 only

  def __post_init__(self):
    # Config trees hold lists; keep the spec hashable (Flax module attribute) with tuples.
    object.__setattr__(self, "anchors", tuple(tuple(float(v) for v in a) for a in self.anchors))
    for name in ("stage_blocks", "head_strides", "scale_x_y", "spp_pool_sizes"):
      object.__setattr__(self, name, tuple(getattr(self, name)))
    if self.norm not in NORMS:
      raise ValueError(f"model.norm must be one of {NORMS}; got {self.norm!r}.")
    if self.compute_dtype not in ("float32", "bfloat16"):
      raise ValueError(f"model.compute_dtype must be 'float32' or 'bfloat16'; got {self.compute_dtype!r}.")
    if len(self.stage_blocks) != 5 or min(self.stage_blocks) < 1:
      raise ValueError(f"model.stage_blocks needs 5 entries >= 1 (CSPDarknet53: (1, 2, 8, 8, 4)); got {self.stage_blocks}.")
    if self.width < 2 or self.width % 2:
      raise ValueError(f"model.width must be an even number >= 2; got {self.width}.")
    strides = self.head_strides
    if (not strides or strides[-1] != 32 or any(s not in BACKBONE_STRIDES for s in strides)
        or list(strides) != sorted(set(strides))):
      raise ValueError(f"model.head_strides must be increasing strides of {BACKBONE_STRIDES} ending at 32 (SPP sits on "
                       f"stride 32): (8, 16, 32) YOLOv4, (4, 16, 32) the seed's small-lesion variant, (4, 8, 16, 32) "
                       f"with a P2 head; got {strides}.")
    if any(len(a) != 2 or min(a) <= 0 for a in self.anchors):
      raise ValueError(f"model.anchors must be positive (w, h) pairs; got {self.anchors}.")
    if len(self.anchors) % len(strides):
      raise ValueError(f"model.anchors: {len(self.anchors)} anchors cannot be split evenly over {len(strides)} levels "
                       f"{strides}; give {len(strides)} x 3 (python scripts/yolo_anchors.py --num_anchors="
                       f"{3 * len(strides)}).")
    if self.scale_x_y and len(self.scale_x_y) != len(strides):
      raise ValueError(f"model.scale_x_y needs one entry per level {strides} (or () for YOLOv4's); got {self.scale_x_y}.")
    if not 0.0 < self.obj_prior < 1.0:
      raise ValueError(f"model.obj_prior must be in (0, 1); got {self.obj_prior}.")
    if self.num_classes < 1:
      raise ValueError(f"model.num_classes must be >= 1; got {self.num_classes}.")
    if self.pretrained_layers not in ("all", "backbone"):
      raise ValueError(f"model.pretrained_layers must be 'all' or 'backbone'; got {self.pretrained_layers!r}.")

  @property
  def num_levels(self) -> int:
    return len(self.head_strides)

  @property
  def level_anchors(self) -> List[Tuple[Tuple[float, float], ...]]:
    """Per level (finest first), its anchors."""
    return yolo_head.level_anchor_split(self.anchors, self.num_levels)

  @property
  def level_scale_x_y(self) -> Tuple[float, ...]:
    if self.scale_x_y:
      return self.scale_x_y
    coarse = (1.05, 1.1)
    return tuple(coarse[self.num_levels - 1 - i] if self.num_levels - 1 - i < 2 else 1.2 for i in range(self.num_levels))

  @property
  def level_channels(self) -> Tuple[int, ...]:
    """PANet channels per level, finest first (:func:`panet_channels`)."""
    return panet_channels(self.width, self.num_levels)


def panet_channels(width: int, num_levels: int) -> Tuple[int, ...]:
  """PANet channels per level, finest first: ``16 width`` on the top level, halved below."""
  return tuple(width * 16 // 2 ** (num_levels - 1 - i) for i in range(num_levels))


def spec_from_config(model_config: Mapping[str, Any]) -> YoloSpec:
  """:class:`YoloSpec` from a config's ``model`` section; an unknown key names the closest ones."""
  return specs._build(YoloSpec, specs._to_dict(model_config), "model")  # pylint: disable=protected-access


def default_model_config() -> dict:
  """The ``model`` section with every field at its default."""
  return dataclasses.asdict(YoloSpec())


# darknet's make_convolutional_layer: uniform(-sqrt(2 / fan_in), sqrt(2 / fan_in)).
darknet_init = nn.initializers.variance_scaling(2.0 / 3.0, "fan_in", "uniform")


def mish(x):
  """``x tanh(softplus(x))`` (Misra 2019), CSPDarknet53's activation."""
  return x * jnp.tanh(jax.nn.softplus(x))


def leaky(x):
  return jax.nn.leaky_relu(x, LEAKY_SLOPE)


class ConvNormAct(nn.Module):
  """Convolution (no bias, PyTorch/darknet symmetric padding ``kernel // 2``) -> norm -> activation."""

  features: int
  kernel: int
  stride: int = 1
  activation: str = "leaky"  # "mish" or "leaky"
  norm: str = "bn"
  train: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    pad = self.kernel // 2
    x = Conv(self.features, (self.kernel, self.kernel), strides=(self.stride, self.stride), padding=((pad, pad), (pad, pad)),
             use_bias=False, kernel_init=darknet_init, dtype=self.dtype, name="conv")(x)
    x = make_norm(self.norm, self.train, dtype=self.dtype)(name="norm")(x)
    return mish(x) if self.activation == "mish" else leaky(x)


class CSPStage(nn.Module):
  """Downsample 3x3/2, two 1x1 branches, residual blocks on one, concatenate, fuse 1x1."""

  features: int
  num_blocks: int
  first: bool  # the first stage keeps full-width branches and halves the blocks' hidden width
  norm: str
  train: bool
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    conv = lambda f, k, s=1, name=None: ConvNormAct(f, k, s, "mish", self.norm, self.train, self.dtype, name=name)
    branch = self.features if self.first else self.features // 2
    hidden = self.features // 2 if self.first else branch
    x = conv(self.features, 3, 2, "down")(x)
    bypass = conv(branch, 1, name="bypass")(x)
    y = conv(branch, 1, name="split")(x)
    for i in range(self.num_blocks):
      y = y + conv(branch, 3, name=f"block{i}_conv2")(conv(hidden, 1, name=f"block{i}_conv1")(y))
    y = conv(branch, 1, name="transition")(y)
    return conv(self.features, 1, name="fuse")(jnp.concatenate([y, bypass], axis=-1))


class CSPDarknet53(nn.Module):
  """Returns ``{"C2": [B, H/4, W/4, 4 width], ..., "C5": [B, H/32, W/32, 32 width]}``."""

  width: int = 32
  stage_blocks: Tuple[int, ...] = (1, 2, 8, 8, 4)
  norm: str = "bn"
  train: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images):
    x = ConvNormAct(self.width, 3, 1, "mish", self.norm, self.train, self.dtype, name="stem")(images.astype(self.dtype))
    outputs = {}
    for i, blocks in enumerate(self.stage_blocks):
      x = CSPStage(self.width * 2 ** (i + 1), blocks, i == 0, self.norm, self.train, self.dtype, name=f"stage{i + 1}")(x)
      if i >= 1:
        outputs[f"C{i + 1}"] = x
    return outputs


class SPP(nn.Module):
  """1x1, 3x3, 1x1; max pools at stride 1 concatenated ``[largest .. smallest, input]``; 1x1, 3x3, 1x1."""

  features: int
  pool_sizes: Tuple[int, ...] = (5, 9, 13)
  norm: str = "bn"
  train: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    conv = lambda f, k, name: ConvNormAct(f, k, 1, "leaky", self.norm, self.train, self.dtype, name=name)
    x = conv(self.features, 1, "pre1")(x)
    x = conv(self.features * 2, 3, "pre2")(x)
    x = conv(self.features, 1, "pre3")(x)
    # Padding with -inf (reduce_window's max identity), as darknet's maxpool ignores the border.
    pools = [nn.max_pool(x, (k, k), strides=(1, 1), padding=((k // 2, k // 2), (k // 2, k // 2)))
             for k in sorted(self.pool_sizes, reverse=True)]
    x = jnp.concatenate(pools + [x], axis=-1)
    x = conv(self.features, 1, "post1")(x)
    x = conv(self.features * 2, 3, "post2")(x)
    return conv(self.features, 1, "post3")(x)


def _upsample(x, factor: int):
  """Nearest-neighbour upsampling by an integer factor (darknet's ``[upsample]``)."""
  return jnp.repeat(jnp.repeat(x, factor, axis=1), factor, axis=2)


class PANet(nn.Module):
  """Top-down then bottom-up path aggregation over the head levels (finest first)."""

  strides: Tuple[int, ...]
  channels: Tuple[int, ...]
  norm: str = "bn"
  train: bool = False
  dtype: Any = jnp.float32

  def _five(self, x, features, name):
    for i, (f, k) in enumerate(((1, 1), (2, 3), (1, 1), (2, 3), (1, 1))):
      x = ConvNormAct(features * f, k, 1, "leaky", self.norm, self.train, self.dtype, name=f"{name}_{i}")(x)
    return x

  @nn.compact
  def __call__(self, top, backbone: Dict[str, jnp.ndarray]) -> List[jnp.ndarray]:
    conv = lambda f, k, s, name: ConvNormAct(f, k, s, "leaky", self.norm, self.train, self.dtype, name=name)
    levels = len(self.strides)
    top_down = [None] * levels
    top_down[-1] = top
    for i in range(levels - 2, -1, -1):
      stride, features = self.strides[i], self.channels[i]
      coarse = _upsample(conv(features, 1, 1, f"reduce_s{stride}")(top_down[i + 1]), self.strides[i + 1] // stride)
      lateral = conv(features, 1, 1, f"lateral_s{stride}")(backbone[f"C{int(math.log2(stride))}"])
      top_down[i] = self._five(jnp.concatenate([lateral, coarse], axis=-1), features, f"top_down_s{stride}")
    out = [top_down[0]]
    for i in range(1, levels):
      stride, features = self.strides[i], self.channels[i]
      down = conv(features, 3, stride // self.strides[i - 1], f"downsample_s{stride}")(out[-1])
      out.append(self._five(jnp.concatenate([down, top_down[i]], axis=-1), features, f"bottom_up_s{stride}"))
    return out


class YoloHead(nn.Module):
  """3x3 to twice the level's channels, then a 1x1 with bias to ``A (5 + K)`` (darknet order per
  anchor: ``t_x, t_y, t_w, t_h, t_obj, t_cls...``); objectness biases start at ``logit(obj_prior)``."""

  num_anchors: int
  num_classes: int
  obj_prior: float
  norm: str = "bn"
  train: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    x = ConvNormAct(x.shape[-1] * 2, 3, 1, "leaky", self.norm, self.train, self.dtype, name="conv")(x)
    per_anchor = 5 + self.num_classes
    prior = math.log(self.obj_prior / (1.0 - self.obj_prior))

    def bias_init(key, shape, dtype=jnp.float32):
      del key
      bias = np.zeros(shape, np.float32).reshape(self.num_anchors, per_anchor)
      bias[:, 4] = prior
      return jnp.asarray(bias.reshape(shape), dtype)

    x = Conv(self.num_anchors * per_anchor, (1, 1), kernel_init=darknet_init, bias_init=bias_init, dtype=self.dtype,
             name="pred")(x)
    batch, height, width, _ = x.shape
    return x.astype(jnp.float32).reshape(batch, height, width, self.num_anchors, per_anchor)


class YOLOv4(nn.Module):
  """CSPDarknet53 -> SPP -> PANet -> YOLOv3 heads (see the module docstring)."""

  spec: YoloSpec
  train: bool = False

  @property
  def dtype(self):
    return jnp.dtype(self.spec.compute_dtype)

  def setup(self):
    s = self.spec
    self.backbone = CSPDarknet53(s.width, s.stage_blocks, s.norm, self.train, self.dtype)
    self.spp = SPP(s.level_channels[-1], s.spp_pool_sizes, s.norm, self.train, self.dtype)
    self.neck = PANet(s.head_strides, s.level_channels, s.norm, self.train, self.dtype)
    self.heads = [YoloHead(len(a), s.num_classes, s.obj_prior, s.norm, self.train, self.dtype, name=f"head_s{stride}")
                  for a, stride in zip(s.level_anchors, s.head_strides)]

  def _check_images(self, images):
    if images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(f"YOLOv4: argument 'images' must have shape [B, H, W, 3]; got {list(images.shape)}.")
    if images.shape[1] % 32 or images.shape[2] % 32:
      raise ValueError(f"YOLOv4: the input height and width must be multiples of 32, the coarsest stride (darknet warns "
                       f"otherwise; here the upsampled PANet maps must match the backbone's); got "
                       f"{images.shape[1]}x{images.shape[2]}.")

  def raw_outputs(self, images: jnp.ndarray) -> List[jnp.ndarray]:
    """Per level (finest first), ``[B, H / stride, W / stride, A, 5 + K]`` float32 raw outputs."""
    self._check_images(images)
    features = self.backbone(images)
    levels = self.neck(self.spp(features["C5"]), features)
    return [head(level) for head, level in zip(self.heads, levels)]

  def loss_terms(self, images, gt_boxes, gt_labels, gt_valid) -> yolo_head.LossTerms:
    s = self.spec
    return yolo_head.yolo_loss(
        self.raw_outputs(images), s.level_anchors, s.head_strides, s.level_scale_x_y, gt_boxes, gt_labels, gt_valid,
        tuple(images.shape[1:3]), s.iou_threshold, s.ignore_threshold, s.neighbor_cells, s.box_loss_weight,
        s.obj_loss_weight, s.cls_loss_weight, s.box_size_weight)

  def __call__(self, images, gt_boxes, gt_labels, gt_valid) -> Tuple[jnp.ndarray, Dict[str, jnp.ndarray]]:
    """``(total loss, metrics)``: the three loss terms (``yolo_box``, ``yolo_obj``, ``yolo_cls``),
    ``num_positives`` (assigned slots per image) and ``mean_iou`` of the positive predictions.

    Args:
      images: ``[B, H, W, 3]`` float normalised, ``H`` and ``W`` multiples of 32.
      gt_boxes: ``[B, G, 4]`` float x1y1x2y2 input pixels; gt_labels ``[B, G]`` int;
        gt_valid ``[B, G]`` bool.
    """
    t = self.loss_terms(images, gt_boxes, gt_labels, gt_valid)
    total = t.box + t.obj + t.cls
    return total, {"yolo_box": t.box, "yolo_obj": t.obj, "yolo_cls": t.cls, "num_positives": t.num_positives,
                   "mean_iou": t.mean_iou}

  def losses(self, images, gt_boxes, gt_labels, gt_valid, key=None) -> Dict[str, jnp.ndarray]:
    """``{"yolo_box", "yolo_obj", "yolo_cls"}`` scalars whose sum is the training loss
    (:meth:`TwoStageDetector.losses`' signature; ``key`` is unused: nothing is sampled)."""
    del key
    t = self.loss_terms(images, gt_boxes, gt_labels, gt_valid)
    return {"yolo_box": t.box, "yolo_obj": t.obj, "yolo_cls": t.cls}

  def predict(self, images: jnp.ndarray) -> Prediction:
    """Detections for ``[B, H, W, 3]`` normalised images.

    Score = objectness x class probability for every (prediction, class); the best
    ``pre_nms_top_k`` above ``score_threshold`` go through per-class greedy NMS at ``nms_iou``
    (:func:`acne_jax.models.bbox_head.select_detections`, our ``ops/nms.py``), keeping
    ``max_detections``, boxes clipped to the image. ``proposals`` are the boxes ranked by objectness
    alone after class-agnostic NMS at ``proposal_nms_iou`` (``max_proposals`` of them), the
    counterpart of the RPN's for proposal recall.

    Returns:
      :class:`~acne_jax.models.detector.Prediction` with ``detections`` ``[B, max_detections]``,
      ``proposals`` ``[B, max_proposals]`` and ``masks=None``.
    """
    s = self.spec
    image_size = tuple(images.shape[1:3])
    outputs = [jax.lax.stop_gradient(o) for o in self.raw_outputs(images)]
    decoded = [yolo_head.decode_level(o, a, st, sxy)
               for o, a, st, sxy in zip(outputs, s.level_anchors, s.head_strides, s.level_scale_x_y)]
    flat = yolo_head.flatten_levels(outputs, decoded)
    boxes = box_ops.clip_boxes(flat["boxes"], image_size)
    probs = flat["objectness"][..., None] * flat["class_probs"]
    valid = jnp.ones(probs.shape[:2], bool)
    detections: Detections = select_detections(probs, boxes[:, :, None, :], valid, s.score_threshold, s.nms_iou,
                                               s.max_detections, s.pre_nms_top_k)
    proposals = jax.vmap(lambda b, o: _objectness_proposals(b, o, s.pre_nms_top_k, s.proposal_nms_iou, s.max_proposals))(
        boxes, flat["objectness"])
    return Prediction(detections, proposals, None)


def _objectness_proposals(boxes, objectness, pre_nms_top_k: int, nms_iou: float, max_proposals: int) -> Proposals:
  """One image's class-agnostic boxes: top ``pre_nms_top_k`` by objectness, NMS, ``max_proposals`` kept."""
  k = min(pre_nms_top_k, objectness.shape[0])
  scores, top = jax.lax.top_k(objectness, k)
  keep, keep_valid = nms_ops.nms(boxes[top], scores, nms_iou, max_proposals)
  return Proposals(boxes[top][keep], jnp.where(keep_valid, scores[keep], 0.0), keep_valid)
