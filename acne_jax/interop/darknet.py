"""Darknet ``.weights`` files -> YOLOv4 Flax variables (``model.pretrained``).

The released files are ``yolov4.weights`` (the whole COCO detector, 80 classes) and
``yolov4.conv.137`` (its first 137 layers, darknet's ``partial`` cut: CSPDarknet53, SPP and the
top-down path; what the paper's YOLO runs start from). Both hold no shapes: a header and then every
convolutional layer's floats in the order of ``cfg/yolov4.cfg``, so the model decides how they
are read, and the file's size is the only check that it fits.

**Format** (darknet's ``load_weights``; little-endian): ``int32`` major, minor, revision; then the
count of images seen as ``uint64`` when ``major * 10 + minor >= 2`` (and both below 1000),
``int32`` otherwise (a 20- or 16-byte header); then ``float32`` per convolutional layer
``[n, c, k, k]``: with batch norm ``biases (beta) [n], scales (gamma) [n], rolling_mean [n],
rolling_variance [n], weights [n, c, k, k]``; without (the prediction layers) ``biases [n],
weights``. Kernels become Flax ``[k, k, c, n]``; beta / gamma / mean / variance go to the norm's
``bias`` / ``scale`` / ``mean`` / ``var``, in whichever collection ``model.norm`` keeps them
(``"bn"``, ``"eval_bn"``, ``"frozen_bn"``; ``"gn"`` has no place for darknet's statistics).
darknet normalises with ``(x - mean) / sqrt(var + 1e-5)``, the epsilon of our batch norms.

**Layer order** (:func:`cfg_layers`, for any ``width`` and ``stage_blocks``; darknet numbers every
cfg section after ``[net]`` from 0, routes, shortcuts, pools and ``[yolo]`` included):

- the stem 3x3 (layer 0); per CSP stage: the 3x3/2 ``down``, the 1x1 ``bypass`` (the branch a
  ``route -2`` leads past the blocks), the 1x1 ``split``, per block 1x1 and 3x3 (a shortcut after),
  the 1x1 ``transition``, the route concatenating ``[transition, bypass]``, the 1x1 ``fuse``;
- SPP: three convolutions, the max pools and routes, three convolutions;
- the top-down path, coarse to fine: per level the 1x1 ``reduce``, upsample, route to the backbone
  level, the 1x1 ``lateral``, the concatenation ``[lateral, upsampled]``, five convolutions;
- then darknet **interleaves the heads with the bottom-up path**: the finest level's head (3x3,
  then the 1x1 prediction with bias), then per coarser level a ``route -4`` back past that head,
  the strided 3x3 ``downsample``, ``[downsample, top-down]``, five convolutions, and that level's
  head. yolov4.cfg's layers 137, 138 are the stride-8 head, 141 the first downsample.

``yolov4.conv.137`` is then everything before the first head. A model laid out otherwise
(``head_strides`` other than ``(8, 16, 32)``, other SPP pools) takes the file's layers up to the
first one whose place or shape differs (at least the backbone and SPP) and keeps its own
initialisation from there; a prediction layer whose size differs (other classes or anchors than
the file's) keeps its initialisation too, and the layers after it still load.

darknet feeds RGB divided by 255: with these weights the data should be normalised with
``data.mean = 0`` and ``data.std = 255`` (:func:`normalisation_warning`).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from acne_jax.paths import resolve

YOLOV4_HEAD_STRIDES = (8, 16, 32)
YOLOV4_POOLS = (5, 9, 13)
YOLOV4_WIDTH = 32
YOLOV4_BLOCKS = (1, 2, 8, 8, 4)
COCO_PREDICTION = 3 * (5 + 80)  # yolov4.cfg's filters=255 before each [yolo]
LOADS = ("all", "backbone")
RELEASES = "https://github.com/AlexeyAB/darknet/releases/download/darknet_yolo_v3_optimal"
DARKNET_MEAN, DARKNET_STD = (0.0, 0.0, 0.0), (255.0, 255.0, 255.0)
_FLOAT = np.dtype("<f4")


class DarknetWeightsError(ValueError):
  """A darknet weights file does not fit the model (the message names the file and the fix)."""


@dataclasses.dataclass(frozen=True)
class ConvLayer:
  """One darknet ``[convolutional]`` section and the module of ours it fills.

  Attributes:
    index: darknet's layer number (every cfg section after ``[net]``, from 0).
    path: our module, e.g. ``("backbone", "stage1", "down")`` or ``("head_s8", "pred")``.
    in_channels, out_channels, kernel, stride: the convolution ``[out, in, kernel, kernel]``.
    batch_norm: False for the prediction layers (bias, no norm).
    detail: what else decides the layer's meaning beyond its shape (SPP's pool sizes).
  """

  index: int
  path: Tuple[str, ...]
  in_channels: int
  out_channels: int
  kernel: int
  stride: int = 1
  batch_norm: bool = True
  detail: str = ""

  @property
  def num_floats(self) -> int:
    return self.out_channels * (self.in_channels * self.kernel ** 2 + (4 if self.batch_norm else 1))

  @property
  def name(self) -> str:
    return "/".join(self.path)

  def describe(self) -> str:
    return (f"darknet layer {self.index} ({self.name}: {self.kernel}x{self.kernel}/{self.stride} conv "
            f"[{self.out_channels}, {self.in_channels}, {self.kernel}, {self.kernel}]{'' if self.batch_norm else ' with bias'}, "
            f"{self.num_floats} floats)")

  def same_place(self, other: "ConvLayer") -> bool:
    """The same module on the same input: all but the output count of a prediction layer agree."""
    return (self.path, self.in_channels, self.kernel, self.stride, self.batch_norm, self.detail) == (
        other.path, other.in_channels, other.kernel, other.stride, other.batch_norm, other.detail) and (
            not self.batch_norm or self.out_channels == other.out_channels)


def cfg_layers(width: int, stage_blocks: Sequence[int], head_strides: Sequence[int] = YOLOV4_HEAD_STRIDES,
               predictions: Sequence[int] = (COCO_PREDICTION,) * 3, pool_sizes: Sequence[int] = YOLOV4_POOLS) -> List[ConvLayer]:
  """The convolutional layers of a yolov4.cfg-style network, in darknet's file order.

  Args:
    width: stem channels (yolov4.cfg: 32).
    stage_blocks: residual blocks per CSP stage (yolov4.cfg: 1, 2, 8, 8, 4).
    head_strides: output strides, finest first; (8, 16, 32) is yolov4.cfg, others are our model's
      variants laid out in the same style.
    predictions: per level, the prediction layer's outputs ``A (5 + K)``.
    pool_sizes: SPP's max pools.
  """
  layers: List[ConvLayer] = []
  index = 0

  def conv(path, cin, cout, k, stride=1, batch_norm=True, detail=""):
    nonlocal index
    layers.append(ConvLayer(index, tuple(path), cin, cout, k, stride, batch_norm, detail))
    index += 1

  def other(count=1):  # route, shortcut, upsample, maxpool, yolo: no weights
    nonlocal index
    index += count

  def five(prefix, cin, features):
    for i, (f, k) in enumerate(((1, 1), (2, 3), (1, 1), (2, 3), (1, 1))):
      conv(prefix[:-1] + (f"{prefix[-1]}_{i}",), cin if i == 0 else (features * 2 if k == 1 else features), features * f, k)

  conv(("backbone", "stem"), 3, width, 3)
  cin = width
  for i, blocks in enumerate(stage_blocks):
    c = width * 2 ** (i + 1)
    branch = c if i == 0 else c // 2
    hidden = c // 2 if i == 0 else branch
    stage = ("backbone", f"stage{i + 1}")
    conv(stage + ("down",), cin, c, 3, 2)
    conv(stage + ("bypass",), c, branch, 1)
    other()  # route -2: back to `down`
    conv(stage + ("split",), c, branch, 1)
    for b in range(blocks):
      conv(stage + (f"block{b}_conv1",), branch, hidden, 1)
      conv(stage + (f"block{b}_conv2",), hidden, branch, 3)
      other()  # shortcut from=-3
    conv(stage + ("transition",), branch, branch, 1)
    other()  # route [transition, bypass]
    conv(stage + ("fuse",), 2 * branch, c, 1)
    cin = c

  from acne_jax.models.yolo import panet_channels

  channels = panet_channels(width, len(head_strides))
  top = channels[-1]
  conv(("spp", "pre1"), cin, top, 1)
  conv(("spp", "pre2"), top, 2 * top, 3)
  conv(("spp", "pre3"), 2 * top, top, 1)
  other(2 * len(pool_sizes))  # max pool and route per pool size (the last route concatenates)
  pools = "max pools " + ", ".join(str(p) for p in sorted(pool_sizes, reverse=True))
  conv(("spp", "post1"), (len(pool_sizes) + 1) * top, top, 1, detail=pools)
  conv(("spp", "post2"), top, 2 * top, 3)
  conv(("spp", "post3"), 2 * top, top, 1)

  levels = len(head_strides)
  for i in range(levels - 2, -1, -1):
    stride, features = head_strides[i], channels[i]
    conv(("neck", f"reduce_s{stride}"), channels[i + 1], features, 1)
    other(2)  # upsample, route to the backbone level
    conv(("neck", f"lateral_s{stride}"), width * stride, features, 1)  # C_s has `width * stride` channels
    other()  # route [lateral, upsampled]
    five(("neck", f"top_down_s{stride}"), 2 * features, features)
  for i in range(levels):
    stride, features = head_strides[i], channels[i]
    if i:
      other()  # route -4: the previous level's path output, past its head
      conv(("neck", f"downsample_s{stride}"), channels[i - 1], features, 3, stride // head_strides[i - 1])
      other()  # route [downsample, top-down]
      five(("neck", f"bottom_up_s{stride}"), 2 * features, features)
    conv((f"head_s{stride}", "conv"), features, 2 * features, 3)
    conv((f"head_s{stride}", "pred"), 2 * features, predictions[i], 1, batch_norm=False)
    other()  # [yolo]
  return layers


def model_layers(spec) -> List[ConvLayer]:
  """:func:`cfg_layers` of a :class:`~acne_jax.models.yolo.YoloSpec` (its own head layout)."""
  predictions = [len(a) * (5 + spec.num_classes) for a in spec.level_anchors]
  return cfg_layers(spec.width, spec.stage_blocks, spec.head_strides, predictions, spec.spp_pool_sizes)


def yolov4_layers(width: int, stage_blocks: Sequence[int], prediction: int = COCO_PREDICTION) -> List[ConvLayer]:
  """yolov4.cfg's layers at ``width`` and ``stage_blocks``, ``prediction`` outputs per head."""
  return cfg_layers(width, stage_blocks, YOLOV4_HEAD_STRIDES, (prediction,) * 3, YOLOV4_POOLS)


def layout_floats(layers: Sequence[ConvLayer], upto: Optional[int] = None) -> int:
  """Floats of ``layers`` (those before darknet layer ``upto``, darknet's ``partial`` cut)."""
  return sum(l.num_floats for l in layers if upto is None or l.index < upto)


# ----------------------------------------------------------------------------------------------
# The file.


@dataclasses.dataclass(frozen=True)
class Header:
  major: int
  minor: int
  revision: int
  seen: int  # images seen in training
  num_bytes: int  # 20 or 16


def read_header(path: str) -> Tuple[Header, int]:
  """``(header, number of floats after it)``.

  Raises:
    FileNotFoundError: no such file (the message says where the released files are).
    DarknetWeightsError: shorter than its header, or not whole floats after it.
  """
  path = resolve(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(missing_message(path))
  size = os.path.getsize(path)
  with open(path, "rb") as f:
    version = np.fromfile(f, "<i4", count=3)
    if version.size == 3:
      major, minor, revision = (int(v) for v in version)
      wide = major * 10 + minor >= 2 and major < 1000 and minor < 1000
      seen = np.fromfile(f, "<u8" if wide else "<i4", count=1)
  if version.size < 3 or seen.size < 1:
    raise DarknetWeightsError(f"model.pretrained: {path} holds {size} bytes, less than a darknet weights header (16 or 20 "
                              f"bytes: version and images seen); the download is broken: fetch yolov4.conv.137 or "
                              f"yolov4.weights again ({RELEASES}/).")
  header = Header(major, minor, revision, int(seen[0]), 20 if wide else 16)
  body = size - header.num_bytes
  if body % 4:
    raise DarknetWeightsError(f"model.pretrained: {path} holds {body} bytes after its {header.num_bytes}-byte header, not "
                              f"whole float32 values: the file is cut short or not a darknet .weights file; download it "
                              f"again ({RELEASES}/).")
  return header, body // 4


def missing_message(path: str) -> str:
  return (f"model.pretrained: {path} does not exist. Download darknet's yolov4.conv.137 (the backbone, SPP and top-down "
          f"path; what the paper's YOLO runs start from), e.g. curl -L -o {path} {RELEASES}/yolov4.conv.137, or the whole "
          f"COCO detector {RELEASES}/yolov4.weights; or set --config.model.pretrained='' to train from scratch.")


@dataclasses.dataclass
class Plan:
  """What :func:`plan` decided: which of the file's layers load, and what to tell the user."""

  path: str
  header: Header
  file_layers: List[ConvLayer]  # yolov4.cfg at the model's width and blocks, with the file's prediction size
  load: List[bool]  # per file layer
  messages: List[str]

  @property
  def loaded(self) -> List[ConvLayer]:
    return [l for l, on in zip(self.file_layers, self.load) if on]


def _prediction_text(outputs: int) -> str:
  if outputs % 3 == 0 and outputs // 3 >= 5:
    return f"{outputs} = 3 x (5 + {outputs // 3 - 5})"
  return str(outputs)


def _file_prediction(num_floats: int, width: int, blocks: Sequence[int]) -> Optional[int]:
  """The prediction layers' outputs if ``num_floats`` is a whole yolov4.cfg (same size at every
  level, as yolov4.cfg's 255), else None."""
  layers = yolov4_layers(width, blocks, 0)
  rest = num_floats - layout_floats(layers)
  per_output = sum(l.in_channels + 1 for l in layers if not l.batch_norm)
  if rest > 0 and rest % per_output == 0:
    return rest // per_output
  return None


def identify(num_floats: int, widths: Sequence[int] = (2, 4, 8, 16, 32, 64),
             blocks: Sequence[Tuple[int, ...]] = (YOLOV4_BLOCKS, (1, 1, 1, 1, 1))) -> Optional[str]:
  """Which yolov4.cfg layout holds exactly ``num_floats``: a whole file (any prediction size) or
  one cut after a convolutional layer; a phrase, or None."""
  for width in widths:
    for b in blocks:
      b = tuple(b)
      prediction = _file_prediction(num_floats, width, b)
      if prediction is not None:
        return f"a whole yolov4.cfg at width {width}, blocks {b}, {_prediction_text(prediction)} prediction outputs"
      total = 0
      for layer in yolov4_layers(width, b):
        total += layer.num_floats
        if total == num_floats:
          return f"yolov4.cfg at width {width}, blocks {b} up to darknet layer {layer.index} ({layer.name})"
        if total > num_floats:
          break
  return None


def plan(path: str, spec, layers: str = "all") -> Plan:
  """Reads the header and size of ``path`` and decides which layers load into a model of ``spec``.

  Args:
    path: a darknet ``.weights`` file.
    spec: the model's :class:`~acne_jax.models.yolo.YoloSpec`.
    layers: ``"all"`` (every layer the file holds that sits where the model has it) or
      ``"backbone"`` (CSPDarknet53 only).

  Raises:
    FileNotFoundError: no such file.
    DarknetWeightsError: a broken header, a file laid out for another width or cfg (too many
      floats; or a size matching another width), a file that ends inside a layer that must load,
      a model with group norm.
  """
  path = resolve(path)
  if layers not in LOADS:
    raise DarknetWeightsError(f"model.pretrained_layers={layers!r}: use one of {', '.join(map(repr, LOADS))}.")
  if spec.norm == "gn":
    raise DarknetWeightsError(f"model.pretrained: {path}: darknet's layers carry batch-norm statistics and model.norm='gn' "
                              f"has no place for them; set --config.model.norm=bn (or eval_bn / frozen_bn).")
  header, num_floats = read_header(path)
  width, blocks = spec.width, tuple(spec.stage_blocks)
  at = f"width {width}, blocks {blocks}"
  if num_floats == 0:
    raise DarknetWeightsError(f"model.pretrained: {path} holds a header and no layers; download yolov4.conv.137 again "
                              f"({RELEASES}/yolov4.conv.137).")
  ours = model_layers(spec)
  whole = _file_prediction(num_floats, width, blocks)
  # The file's prediction size: that of a whole file's size; else (a prefix) this model's if the
  # model is laid out as yolov4.cfg, COCO's otherwise (it matters only for a cut past a head).
  if whole is not None:
    prediction = whole
  else:
    prediction = ours[-1].out_channels if tuple(spec.head_strides) == YOLOV4_HEAD_STRIDES else COCO_PREDICTION
  file_layers = yolov4_layers(width, blocks, prediction)
  total = layout_floats(file_layers)
  held, end_inside, offset = 0, None, 0
  for layer in file_layers:
    if offset + layer.num_floats > num_floats:
      end_inside = layer if offset < num_floats else None
      break
    offset += layer.num_floats
    held += 1
  fits = whole is not None or (end_inside is None and num_floats <= total)
  if not fits:  # a size another layout explains names the settings to change
    other = identify(num_floats)
    if other is not None:
      raise DarknetWeightsError(
          f"model.pretrained: {path} holds {num_floats} floats, the size of {other}, not of yolov4.cfg at this model's {at}: "
          f"set --config.model.width and --config.model.stage_blocks to the file's (the released yolov4.weights and "
          f"yolov4.conv.137: --config.model.width=32 --config.model.stage_blocks=\"(1,2,8,8,4)\").")
  if num_floats > total:
    raise DarknetWeightsError(
        f"model.pretrained: {path} holds {num_floats - total} floats more than yolov4.cfg at {at} "
        f"({total} floats with {_prediction_text(prediction)} prediction outputs): it is not yolov4.cfg at this width; "
        f"is it yolov4-tiny, yolov4-csp or another cfg, or were model.width / model.stage_blocks meant to be the file's "
        f"(32 and (1, 2, 8, 8, 4) for the released files)?")

  # Which layers sit where the model has the same module: a common prefix of the two layouts.
  common = 0
  while common < min(len(file_layers), len(ours)) and file_layers[common].same_place(ours[common]):
    common += 1
  wanted = [i < common and (layers == "all" or l.path[0] == "backbone") for i, l in enumerate(file_layers)]
  messages = []
  if end_inside is not None:
    index = file_layers.index(end_inside)
    there = num_floats - offset
    if wanted[index]:
      raise DarknetWeightsError(
          f"model.pretrained: {path} ends inside {end_inside.describe()}: {there} of its floats are there. The file is cut "
          f"short (download it again, {RELEASES}/) or laid out for another cfg, width or blocks than yolov4.cfg at {at}.")
    messages.append(f"{path} ends inside {end_inside.describe()} ({there} of its floats), which is not loaded")
  load = []
  for i, layer in enumerate(file_layers):
    on = wanted[i] and i < held
    if on and not layer.batch_norm and layer.out_channels != ours[i].out_channels:
      on = False
      messages.append(f"{layer.name} (darknet layer {layer.index}) keeps its initialisation: the file predicts "
                      f"{_prediction_text(layer.out_channels)} outputs per cell, this model "
                      f"{_prediction_text(ours[i].out_channels)} (model.num_classes={spec.num_classes}, "
                      f"{len(spec.level_anchors[0])} anchors per level)")
    load.append(on)
  if held < len(file_layers) and end_inside is None and any(wanted[held:]):
    messages.append(f"the file ends after darknet layer {file_layers[held - 1].index} ({file_layers[held - 1].name}; a "
                    f"partial cut as yolov4.conv.137): from {file_layers[held].name} (layer {file_layers[held].index}) on, "
                    f"the model keeps its initialisation")
  if common < len(ours) and layers == "all" and common < held:
    mine = ours[common]
    theirs = file_layers[common] if common < len(file_layers) else None
    messages.append(f"from darknet layer {mine.index} the model differs from yolov4.cfg (this model: {mine.name} "
                    f"[{mine.out_channels}, {mine.in_channels}, {mine.kernel}, {mine.kernel}]"
                    + (f", yolov4.cfg: {theirs.name} [{theirs.out_channels}, {theirs.in_channels}, {theirs.kernel}, "
                       f"{theirs.kernel}]" if theirs is not None else "")
                    + f"; model.head_strides={tuple(spec.head_strides)}, model.spp_pool_sizes={tuple(spec.spp_pool_sizes)}): "
                    f"layers up to {file_layers[common - 1].index} ({file_layers[common - 1].name}) load, the rest keeps its "
                    f"initialisation")
  if layers == "backbone":
    messages.append("model.pretrained_layers='backbone': CSPDarknet53 only; SPP, PANet and the heads keep their initialisation")
  return Plan(path, header, file_layers, load, messages)


def _norm_leaves(variables: Mapping[str, Any], path: Tuple[str, ...]) -> Dict[str, str]:
  """``{"scale" | "bias" | "mean" | "var": collection}`` of the norm under ``path``."""
  found = {}
  for collection in ("params", "batch_stats"):
    node = variables.get(collection, {})
    for name in path + ("norm",):
      node = node.get(name, {}) if isinstance(node, Mapping) else {}
    for leaf in ("scale", "bias", "mean", "var"):
      if isinstance(node, Mapping) and leaf in node:
        found[leaf] = collection
  return found


def load_variables(variables: Mapping[str, Any], spec, path: str, layers: str = "all") -> Tuple[Dict[str, Any], Plan]:
  """``variables`` (``{"params", "batch_stats"}`` of a YOLOv4 of ``spec``) with the layers of a
  darknet weights file in place (:func:`plan` decides which); the file is streamed, one layer read
  at a time, and stops being read after the last layer that loads.

  Returns:
    ``(variables, plan)``: new dicts (NumPy arrays where loaded, the others as given), and the plan
    whose ``messages`` say what did not load.
  """
  import flax.traverse_util

  p = plan(path, spec, layers)
  flat = {c: flax.traverse_util.flatten_dict(dict(variables.get(c, {})), keep_empty_nodes=True) for c in ("params", "batch_stats")}

  def put(collection, key, value):
    target = flat[collection].get(key)
    if target is None or tuple(target.shape) != value.shape:
      found = "missing" if target is None else f"shape {tuple(target.shape)}"
      raise DarknetWeightsError(f"model.pretrained: {p.path}: {collection}/{'/'.join(key)} is {found}, darknet's layer "
                                f"gives {value.shape}; this model is not laid out as acne_jax/interop/darknet.py expects.")
    flat[collection][key] = value.astype(np.dtype(target.dtype))

  last = max((i for i, on in enumerate(p.load) if on), default=-1)
  with open(p.path, "rb") as f:
    f.seek(p.header.num_bytes)
    for layer, on in zip(p.file_layers[:last + 1], p.load):
      if not on:
        f.seek(layer.num_floats * _FLOAT.itemsize, os.SEEK_CUR)
        continue
      n, k = layer.out_channels, layer.kernel
      values = np.fromfile(f, _FLOAT, count=layer.num_floats)
      if values.size != layer.num_floats:  # plan() measured the file; it changed since
        raise DarknetWeightsError(f"model.pretrained: {p.path} ended while reading {layer.describe()}; was it being written?")
      pieces = np.split(values, np.cumsum([n] * (4 if layer.batch_norm else 1)))
      kernel = pieces[-1].reshape(n, layer.in_channels, k, k).transpose(2, 3, 1, 0)
      if layer.batch_norm:
        put("params", layer.path + ("conv", "kernel"), kernel)
        where = _norm_leaves(variables, layer.path)
        for leaf, value in zip(("bias", "scale", "mean", "var"), pieces[:4]):
          put(where.get(leaf, "params"), layer.path + ("norm", leaf), value)
      else:
        put("params", layer.path + ("kernel",), kernel)
        put("params", layer.path + ("bias",), pieces[0])
  out = {c: flax.traverse_util.unflatten_dict(flat[c]) for c in ("params", "batch_stats")}
  return out, p


def describe(plan_: Plan) -> List[str]:
  """Lines for the training log: what loaded, then the plan's messages."""
  loaded = plan_.loaded
  parts = []
  for name in ("backbone", "spp", "neck"):
    count = sum(l.path[0] == name for l in loaded)
    if count:
      parts.append(f"{name} {count}/{sum(l.path[0] == name for l in plan_.file_layers)}")
  heads = sum(l.path[0].startswith("head_") for l in loaded)
  if heads:
    parts.append(f"heads {heads}/{sum(l.path[0].startswith('head_') for l in plan_.file_layers)}")
  h = plan_.header
  lines = [f"darknet weights {plan_.path} (version {h.major}.{h.minor}.{h.revision}, {h.seen} images seen): "
           f"{len(loaded)} convolutional layers loaded ({', '.join(parts) or 'none'})"]
  return lines + [f"  {m}" for m in plan_.messages]


def normalisation_warning(mean: Sequence[float], std: Sequence[float]) -> Optional[str]:
  """A warning when ``data.mean`` / ``data.std`` are not darknet's input scale (RGB / 255), else None."""
  if np.allclose(np.asarray(mean, np.float64), DARKNET_MEAN) and np.allclose(np.asarray(std, np.float64), DARKNET_STD):
    return None
  return (f"warning: darknet's weights expect RGB divided by 255 (mean 0, std 255); this config normalises with "
          f"data.mean={tuple(mean)} data.std={tuple(std)}, so the first layers see other values than they were trained on. "
          f"Add --config.data.mean=0,0,0 --config.data.std=255,255,255 to feed darknet's scale.")
