"""PyTorch state dicts <-> acne_jax Flax variables.

Three PyTorch layouts are read, named by where the checkpoint comes from:

- ``"resnet"``: a torchvision ImageNet ResNet (``resnet50-*.pth``: ``conv1.weight``,
  ``layer1.0.bn1.running_mean``, ...), loaded into the backbone only; its ImageNet classifier
  ``fc.*`` is the one part we skip on purpose, and the offset convolutions of deformable stages,
  which it does not have, keep their zero initialisation (MMDetection does the same);
- ``"torchvision"``: a torchvision ``fasterrcnn_resnet50_fpn`` (v1) detector (``backbone.body.*``,
  ``backbone.fpn.*``, ``rpn.head.*``, ``roi_heads.box_head.fc6/fc7``, ``roi_heads.box_predictor.*``);
  the old key spellings of checkpoints saved before torchvision 0.13 (``rpn.head.conv.weight``,
  ``backbone.fpn.inner_blocks.0.weight``) are read too;
- ``"mmdet"``: an MMDetection 2.x or 3.x Faster / Mask R-CNN R50-FPN (``backbone.*`` with DCN
  ``conv2.conv_offset``, ``neck.lateral_convs.0.conv``, ``rpn_head.rpn_conv``,
  ``roi_head.bbox_head.shared_fcs.0``, ``roi_head.mask_head.convs.0.conv``, ...), including the
  SADH authors' ``RPNHeadNwd`` (``rpn_head.cls_head.0`` 1x1 conv, ``.1`` GroupNorm,
  ``rpn_head.bbox_head.0/.1``, ``rpn_head.rpn_cls/rpn_reg/rpn_nwd``).

The mapping is derived from *our* variable tree: every Flax leaf names the PyTorch key it comes
from (:func:`torch_key`), so a checkpoint that lacks a key we need, has a key we would ignore,
or holds a tensor of another shape is an error that lists those keys (:class:`StateDictMismatch`).
``num_batches_tracked`` counters carry nothing and are skipped.

Layout conversions (PyTorch -> Flax):

- convolution ``[O, I, kh, kw]`` -> ``[kh, kw, I, O]``; transposed convolution (the mask head's
  2x2 upsampling) ``[I, O, kh, kw]`` -> ``[kh, kw, I, O]`` flipped in space (Flax applies the
  kernel of a transposed convolution unflipped);
- linear ``[out, in]`` -> ``[in, out]``; the first box-head layer also reorders its inputs from
  PyTorch's flattened ``[C, 7, 7]`` RoI features to our ``[7, 7, C]``;
- torchvision's class scores put background first (``K + 1`` rows) and predict a box for it
  (``4 (K + 1)`` rows); ours put background last and predict ``4 K``: rows are permuted and the
  background box rows dropped (:func:`to_torchvision` writes zeros there);
- batch norm ``weight/bias/running_mean/running_var`` -> ``scale/bias/mean/var`` in whichever
  collection the chosen norm keeps them (``params`` or ``batch_stats``); GroupNorm
  ``weight/bias`` -> ``scale/bias``.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

import numpy as np

from acne_jax.paths import resolve

LAYOUTS = ("resnet", "torchvision", "mmdet")
_NORM_LEAVES = {"scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}


class StateDictMismatch(ValueError):
  """A checkpoint does not fit the model: the message lists the missing, unexpected and
  mis-shaped keys."""


@dataclasses.dataclass(frozen=True)
class Leaf:
  """One Flax leaf and the PyTorch tensor it corresponds to.

  Attributes:
    collection: ``"params"`` or ``"batch_stats"``.
    path: names from the collection's root to the leaf.
    key: the PyTorch state-dict key.
    kind: how to convert: ``"conv"``, ``"conv_transpose"``, ``"linear"``, ``"linear_rois"``
      (first box-head layer), ``"cls_bg_first"``, ``"reg_bg_first"`` or ``"vector"``.
    aliases: older spellings of ``key`` accepted when reading.
  """

  collection: str
  path: Tuple[str, ...]
  key: str
  kind: str
  aliases: Tuple[str, ...] = ()


# ----------------------------------------------------------------------------------------------
# Names: one rule per component and layout.


def _backbone_key(path: Tuple[str, ...], prefix: str) -> Optional[str]:
  """``("layer2_0", "conv2", "conv_offset", "kernel")`` -> ``prefix + "layer2.0.conv2.conv_offset.weight"``."""
  *modules, leaf = path
  names = []
  for module in modules:
    match = re.fullmatch(r"layer(\d)_(\d+)", module)
    if match:
      names.append(f"layer{match.group(1)}.{match.group(2)}")
    elif module == "stem_conv":
      names.append("conv1")
    elif module == "stem_bn":
      names.append("bn1")
    elif module == "downsample_conv":
      names.append("downsample.0")
    elif module == "downsample_bn":
      names.append("downsample.1")
    elif module == "gn":
      continue  # our GroupNorm wrapper's inner module
    else:
      names.append(module)
  torch_leaf = "weight" if leaf == "kernel" else _NORM_LEAVES.get(leaf)
  if torch_leaf is None:
    return None
  return prefix + ".".join(names + [torch_leaf])


def _leaf_name(leaf: str) -> str:
  return "weight" if leaf in ("kernel", "scale") else _NORM_LEAVES[leaf]


def _neck_key(path: Tuple[str, ...], layout: str) -> Tuple[str, Tuple[str, ...]]:
  module, leaf = path
  level = int(module[-1]) - 2  # lateral_C2 / output_P2 -> 0
  name = _leaf_name(leaf)
  if layout == "torchvision":
    if module.startswith("lateral_"):
      return f"backbone.fpn.inner_blocks.{level}.0.{name}", (f"backbone.fpn.inner_blocks.{level}.{name}",)
    if module.startswith("output_"):
      return f"backbone.fpn.layer_blocks.{level}.0.{name}", (f"backbone.fpn.layer_blocks.{level}.{name}",)
    raise StateDictMismatch(f"torchvision's FPN has no {module} (its P6 is a max-pool): use model.neck.extra_level='max_pool'.")
  if module.startswith("lateral_"):
    return f"neck.lateral_convs.{level}.conv.{name}", ()
  if module.startswith("output_"):
    return f"neck.fpn_convs.{level}.conv.{name}", ()
  return f"neck.fpn_convs.4.conv.{name}", ()  # extra_P6: MMDetection's first extra conv


_MMDET_RPN = {"rpn_conv": "rpn_conv", "rpn_cls": "rpn_cls", "rpn_reg": "rpn_reg", "rpn_nwd": "rpn_nwd",
              "cls_tower_conv": "cls_head.0", "cls_tower_gn": "cls_head.1",
              "reg_tower_conv": "bbox_head.0", "reg_tower_gn": "bbox_head.1"}
_TORCHVISION_RPN = {"rpn_conv": "conv.0.0", "rpn_cls": "cls_logits", "rpn_reg": "bbox_pred"}


def _rpn_key(path: Tuple[str, ...], layout: str) -> Tuple[str, Tuple[str, ...]]:
  module, leaf = path
  name = _leaf_name(leaf)
  if layout == "torchvision":
    if module not in _TORCHVISION_RPN:
      raise StateDictMismatch(f"torchvision's RPN head has no {module}: use model.rpn.head='rpn' and model.rpn.with_nwd=False "
                              "for a torchvision checkpoint.")
    aliases = ("rpn.head.conv." + name,) if module == "rpn_conv" else ()
    return f"rpn.head.{_TORCHVISION_RPN[module]}.{name}", aliases
  return f"rpn_head.{_MMDET_RPN[module]}.{name}", ()


def _roi_key(path: Tuple[str, ...], layout: str) -> Tuple[str, str]:
  head, module, leaf = path
  name = _leaf_name(leaf)
  if layout == "torchvision":
    if head != "box_head":
      raise StateDictMismatch(f"torchvision conversion covers Faster R-CNN; the checkpoint cannot fill roi_head/{head}.")
    table = {"fc1": ("box_head.fc6", "linear_rois"), "fc2": ("box_head.fc7", "linear"),
             "cls": ("box_predictor.cls_score", "cls_bg_first"), "reg": ("box_predictor.bbox_pred", "reg_bg_first")}
    target, kind = table[module]
    return f"roi_heads.{target}.{name}", kind if leaf == "kernel" or kind in ("cls_bg_first", "reg_bg_first") else "vector"
  if head == "box_head":
    table = {"fc1": ("shared_fcs.0", "linear_rois"), "fc2": ("shared_fcs.1", "linear"), "cls": ("fc_cls", "linear"),
             "reg": ("fc_reg", "linear")}
    target, kind = table[module]
    return f"roi_head.bbox_head.{target}.{name}", kind if leaf == "kernel" else "vector"
  match = re.fullmatch(r"conv(\d+)", module)
  if match:
    return f"roi_head.mask_head.convs.{int(match.group(1)) - 1}.conv.{name}", "conv" if leaf == "kernel" else "vector"
  if module == "upsample":
    return f"roi_head.mask_head.upsample.{name}", "conv_transpose" if leaf == "kernel" else "vector"
  return f"roi_head.mask_head.conv_logits.{name}", "conv" if leaf == "kernel" else "vector"


def _flat(tree: Mapping[str, Any], prefix: Tuple[str, ...] = ()) -> Dict[Tuple[str, ...], Any]:
  out = {}
  for name, value in tree.items():
    if isinstance(value, Mapping):
      out.update(_flat(value, prefix + (name,)))
    else:
      out[prefix + (name,)] = value
  return out


def leaves(variables: Mapping[str, Any], layout: str) -> List[Leaf]:
  """Every Flax leaf of ``variables`` (``{"params", "batch_stats"}``) with its PyTorch key.

  For ``layout="resnet"`` only the backbone's leaves are listed (the rest stays as it is).
  """
  if layout not in LAYOUTS:
    raise ValueError(f"layout must be one of {LAYOUTS}; got {layout!r}.")
  result = []
  for collection in ("params", "batch_stats"):
    for path, value in _flat(variables.get(collection, {})).items():
      component, rest = path[0], path[1:]
      kind = "conv" if path[-1] == "kernel" and np.ndim(value) == 4 else "vector"
      aliases: Tuple[str, ...] = ()
      if component == "backbone":
        if layout == "resnet" and "conv_offset" in path:
          continue  # an ImageNet ResNet has no deformable offsets: they keep their zero start
        prefix = {"resnet": "", "torchvision": "backbone.body.", "mmdet": "backbone."}[layout]
        key = _backbone_key(rest, prefix)
      elif layout == "resnet":
        continue
      elif component == "neck":
        key, aliases = _neck_key(rest, layout)
      elif component == "rpn":
        key, aliases = _rpn_key(rest, layout)
      elif component == "roi_head":
        key, kind = _roi_key(rest, layout)
      else:
        key = None
      if key is None:
        raise StateDictMismatch(f"no PyTorch name for our variable {collection}/{'/'.join(path)}")
      result.append(Leaf(collection, path, key, kind, aliases))
  return result


# ----------------------------------------------------------------------------------------------
# Tensor layouts.


def _to_flax(kind: str, tensor: np.ndarray, roi_channels: int) -> np.ndarray:
  if kind == "conv":
    return tensor.transpose(2, 3, 1, 0)
  if kind == "conv_transpose":
    return tensor.transpose(2, 3, 0, 1)[::-1, ::-1]
  if kind == "linear":
    return tensor.T
  if kind == "linear_rois":  # inputs flattened as [C, h, w] in PyTorch, [h, w, C] here
    out_features, in_features = tensor.shape
    channels = roi_channels
    side = int(round((in_features // channels) ** 0.5))
    return tensor.reshape(out_features, channels, side, side).transpose(2, 3, 1, 0).reshape(in_features, out_features)
  if kind == "cls_bg_first":
    order = list(range(1, tensor.shape[0])) + [0]
    return tensor[order].T if tensor.ndim == 2 else tensor[order]
  if kind == "reg_bg_first":
    return tensor[4:].T if tensor.ndim == 2 else tensor[4:]
  return tensor


def _from_flax(kind: str, array: np.ndarray, roi_channels: int = 0) -> np.ndarray:
  return np.ascontiguousarray(_from_flax_view(kind, array, roi_channels))


def _from_flax_view(kind: str, array: np.ndarray, roi_channels: int) -> np.ndarray:
  if kind == "conv":
    return array.transpose(3, 2, 0, 1)
  if kind == "conv_transpose":
    return array[::-1, ::-1].transpose(2, 3, 0, 1)
  if kind == "linear":
    return array.T
  if kind == "linear_rois":
    in_features, out_features = array.shape
    side = int(round((in_features // roi_channels) ** 0.5))
    return array.reshape(side, side, roi_channels, out_features).transpose(3, 2, 0, 1).reshape(out_features, in_features)
  if kind == "cls_bg_first":
    rows = array.T if array.ndim == 2 else array
    return np.concatenate([rows[-1:], rows[:-1]])
  if kind == "reg_bg_first":
    rows = array.T if array.ndim == 2 else array
    return np.concatenate([np.zeros_like(rows[:4]), rows])
  return array


# ----------------------------------------------------------------------------------------------
# Reading and writing.


def read_state_dict(path: str) -> Dict[str, np.ndarray]:
  """A ``.pth``/``.pt`` checkpoint as ``{key: float32 ndarray}``.

  Unwraps MMDetection's ``{"state_dict": ..., "meta": ...}`` and other ``"model"`` wrappers, and
  strips a ``module.`` prefix (checkpoints saved from ``DataParallel``).

  Raises:
    FileNotFoundError: naming the file.
    ValueError: when the file is not a PyTorch checkpoint of tensors.
  """
  import torch

  path = resolve(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"PyTorch checkpoint {path} does not exist.")
  try:
    loaded = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as error:  # noqa: BLE001 - re-raised with the file name
    raise ValueError(f"{path} is not a readable PyTorch checkpoint ({type(error).__name__}: {error}).") from error
  for wrapper in ("state_dict", "model", "model_state_dict"):
    if isinstance(loaded, Mapping) and wrapper in loaded and isinstance(loaded[wrapper], Mapping):
      loaded = loaded[wrapper]
      break
  if not isinstance(loaded, Mapping):
    raise ValueError(f"{path} holds a {type(loaded).__name__}, not a state dict of tensors.")
  state = {}
  for key, value in loaded.items():
    if not hasattr(value, "detach"):
      continue
    key = key[len("module."):] if key.startswith("module.") else key
    state[key] = value.detach().cpu().numpy()
  return state


def _ignored(key: str, layout: str) -> bool:
  if key.endswith("num_batches_tracked"):
    return True
  return layout == "resnet" and key.startswith("fc.")  # the ImageNet classifier


def _roi_channels(variables: Mapping[str, Any]) -> int:
  """Channels of the RoI features the first box-head layer flattens: the neck's width (0 without a neck)."""
  lateral = variables.get("params", {}).get("neck", {}).get("lateral_C2")
  return int(lateral["kernel"].shape[-1]) if lateral else 0


def from_state_dict(state: Mapping[str, np.ndarray], variables: Mapping[str, Any], layout: str,
                    source: str = "the checkpoint") -> Dict[str, Any]:
  """``variables`` with every leaf of ``layout`` replaced by the checkpoint's tensor.

  Args:
    state: ``{key: ndarray}`` (:func:`read_state_dict`).
    variables: our ``{"params", "batch_stats"}`` (arrays or ShapeDtypeStructs), the template.
    layout: ``"resnet"``, ``"torchvision"`` or ``"mmdet"``.
    source: the file name, for messages.

  Returns:
    A new ``{"params", "batch_stats"}``: the checkpoint's tensors as NumPy float32 arrays, and
    the template's own leaves where the layout has none (``"resnet"``: all but the backbone).

  Raises:
    StateDictMismatch: listing missing, unexpected and mis-shaped keys.
  """
  table = leaves(variables, layout)
  roi_channels = _roi_channels(variables)
  flat = {c: _flat(variables.get(c, {})) for c in ("params", "batch_stats")}
  used, missing, misshaped = set(), [], []
  converted: Dict[Tuple[str, Tuple[str, ...]], np.ndarray] = {}
  for leaf in table:
    key = next((k for k in (leaf.key,) + leaf.aliases if k in state), None)
    if key is None:
      missing.append(leaf.key)
      continue
    used.add(key)
    target_shape = tuple(flat[leaf.collection][leaf.path].shape)
    tensor = np.asarray(state[key], np.float32)
    try:
      value = _to_flax(leaf.kind, tensor, roi_channels)
    except (ValueError, IndexError, StateDictMismatch):
      value = None
    if value is None or tuple(value.shape) != target_shape:
      misshaped.append(f"{key} {list(tensor.shape)} (ours {'/'.join(leaf.path)} {list(target_shape)})")
      continue
    converted[(leaf.collection, leaf.path)] = np.ascontiguousarray(value)
  unexpected = sorted(k for k in state if k not in used and not _ignored(k, layout))
  if missing or unexpected or misshaped:
    parts = []
    if missing:
      parts.append(f"missing {len(missing)}: {_listing(missing)}")
    if unexpected:
      parts.append(f"unexpected {len(unexpected)}: {_listing(unexpected)}")
    if misshaped:
      parts.append(f"wrong shape {len(misshaped)}: {_listing(misshaped)}")
    raise StateDictMismatch(f"{source} does not fit this model as a {layout} checkpoint; " + "; ".join(parts) +
                            ". Check that the config matches the checkpoint (depth, deformable_stages, number of classes, "
                            "heads) and that --from names where it comes from.")
  out: Dict[str, Any] = {}
  for collection in ("params", "batch_stats"):
    for path, value in flat[collection].items():
      array = converted.get((collection, path))
      if array is None:  # not in this layout (resnet: everything after the backbone)
        array = value
      _set(out.setdefault(collection, {}), path, array)
  return out


def _listing(keys: Iterable[str], limit: int = 12) -> str:
  keys = list(keys)
  shown = ", ".join(keys[:limit])
  return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def _set(tree: Dict[str, Any], path: Tuple[str, ...], value: Any) -> None:
  for name in path[:-1]:
    tree = tree.setdefault(name, {})
  tree[path[-1]] = value


def to_torchvision(variables: Mapping[str, Any]) -> Dict[str, np.ndarray]:
  """Our variables as a torchvision ``fasterrcnn_resnet50_fpn`` state dict (NumPy arrays).

  The model must use torchvision's conventions (``configs/torchvision_faster_rcnn.py``); the
  background class's box-regression rows, which we do not have, are written as zeros.
  """
  state = {}
  roi_channels = _roi_channels(variables)
  flat = {c: _flat(variables.get(c, {})) for c in ("params", "batch_stats")}
  for leaf in leaves(variables, "torchvision"):
    state[leaf.key] = np.ascontiguousarray(_from_flax(leaf.kind, np.asarray(flat[leaf.collection][leaf.path], np.float32), roi_channels))
  return state


def save_torch(state: Mapping[str, np.ndarray], path: str) -> None:
  """Writes ``{key: ndarray}`` as a PyTorch ``.pth`` state dict (atomically)."""
  import torch

  path = resolve(path)
  tmp = path + ".tmp"
  torch.save({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}, tmp)
  os.replace(tmp, path)


def load_pretrained_backbone(variables: Mapping[str, Any], path: str) -> Dict[str, Any]:
  """``variables`` with the backbone replaced by a torchvision ImageNet ResNet checkpoint.

  Raises:
    FileNotFoundError: the file is missing (the message says where to download it).
    StateDictMismatch: the checkpoint is not a ResNet of this depth.
  """
  resolved = resolve(path)
  if not os.path.isfile(resolved):
    raise FileNotFoundError(pretrained_missing_message(resolved))
  return from_state_dict(read_state_dict(resolved), variables, "resnet", source=resolved)


TORCHVISION_RESNET_URLS = {
    50: "https://download.pytorch.org/models/resnet50-0676ba61.pth",
    101: "https://download.pytorch.org/models/resnet101-63fe2227.pth",
}


def pretrained_missing_message(path: str, depth: int = 50) -> str:
  url = TORCHVISION_RESNET_URLS.get(depth, TORCHVISION_RESNET_URLS[50])
  return (f"model.backbone.pretrained: {path} does not exist. Download torchvision's ImageNet ResNet-{depth} weights "
          f"({url}, the file torchvision.models.ResNet{depth}_Weights.IMAGENET1K_V1 fetches), e.g. "
          f"curl -L -o {path} {url}, or set --config.model.backbone.pretrained='' to train from scratch.")
