"""ResNet 18/34/50/101 backbones returning C2-C5 (strides 4, 8, 16, 32), NHWC.

Torchvision ("pytorch style") layout, so torchvision/MMDetection weights map one to one:
7x7/2 stem + 3x3/2 max-pool, stride on the 3x3 convolution of a bottleneck, 1x1/2 projection
shortcuts, and PyTorch's symmetric padding (Flax's ``"SAME"`` pads stride-2 convolutions
asymmetrically, which would shift every feature by half a pixel against a torch checkpoint).
"""

from __future__ import annotations

from typing import Dict, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from acne_jax.models.layers import Conv
from acne_jax.models.norm import make_norm
from acne_jax.models.deform_conv import DeformConv

# (block type, blocks per stage) for each depth.
RESNET_SPECS: Dict[int, Tuple[str, Tuple[int, int, int, int]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
}

# Kaiming-normal, fan-out, as torchvision initialises ResNet convolutions.
conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def conv(features: int, kernel: int, stride: int = 1, name: str | None = None, use_bias: bool = False, dtype=jnp.float32):
  """A 2-D convolution with PyTorch's symmetric padding ``kernel // 2``."""
  pad = kernel // 2
  return Conv(
      features, (kernel, kernel), strides=(stride, stride), padding=((pad, pad), (pad, pad)),
      use_bias=use_bias, kernel_init=conv_init, name=name, dtype=dtype,
  )


class BasicBlock(nn.Module):
  """Two 3x3 convolutions (ResNet-18/34)."""

  features: int
  stride: int
  norm: str
  train: bool
  zero_init_residual: bool = False
  dtype: jnp.dtype = jnp.float32
  expansion = 1

  @nn.compact
  def __call__(self, x):
    norm = make_norm(self.norm, self.train, dtype=self.dtype)
    shortcut = x
    y = nn.relu(norm(name="bn1")(conv(self.features, 3, self.stride, "conv1", dtype=self.dtype)(x)))
    y = conv(self.features, 3, 1, "conv2", dtype=self.dtype)(y)
    y = _last_norm(norm, self.norm, self.zero_init_residual, "bn2")(y)
    if x.shape[-1] != self.features or self.stride != 1:
      shortcut = norm(name="downsample_bn")(conv(self.features, 1, self.stride, "downsample_conv", dtype=self.dtype)(x))
    return nn.relu(y + shortcut)


class Bottleneck(nn.Module):
  """1x1 -> 3x3 (strided) -> 1x1 with 4x expansion (ResNet-50/101).

  With ``deformable`` the 3x3 convolution is a deformable convolution v1 (MMDetection's
  ``dcn=dict(type="DCN", deform_groups=1)``): its offsets come from a zero-initialised 3x3
  convolution ``conv2/conv_offset``, so it starts as the plain 3x3 convolution.
  """

  features: int
  stride: int
  norm: str
  train: bool
  zero_init_residual: bool = False
  dtype: jnp.dtype = jnp.float32
  deformable: bool = False
  expansion = 4

  @nn.compact
  def __call__(self, x):
    norm = make_norm(self.norm, self.train, dtype=self.dtype)
    out_features = self.features * self.expansion
    shortcut = x
    y = nn.relu(norm(name="bn1")(conv(self.features, 1, 1, "conv1", dtype=self.dtype)(x)))
    if self.deformable:
      middle = DeformConv(self.features, 3, self.stride, 1, dtype=self.dtype, name="conv2")
    else:
      middle = conv(self.features, 3, self.stride, "conv2", dtype=self.dtype)
    y = nn.relu(norm(name="bn2")(middle(y)))
    y = conv(out_features, 1, 1, "conv3", dtype=self.dtype)(y)
    y = _last_norm(norm, self.norm, self.zero_init_residual, "bn3")(y)
    if x.shape[-1] != out_features or self.stride != 1:
      shortcut = norm(name="downsample_bn")(conv(out_features, 1, self.stride, "downsample_conv", dtype=self.dtype)(x))
    return nn.relu(y + shortcut)


def _last_norm(norm, kind, zero_init, name):
  """The block's last norm; optionally with scale 0 so each block starts as the identity."""
  if zero_init and kind in ("bn", "eval_bn", "gn"):
    return norm(name=name, scale_init=nn.initializers.zeros)
  return norm(name=name)


class ResNet(nn.Module):
  """ResNet backbone.

  Attributes:
    depth: 18, 34, 50 or 101.
    width: channels of the first stage (64 in the standard networks; smaller values give the
      thin variants the CPU configs use).
    norm: ``"frozen_bn"``, ``"eval_bn"``, ``"bn"`` or ``"gn"`` (see :mod:`acne_jax.models.norm`).
    frozen_stages: stop gradients through the stem (``>= 0``) and stages ``1..frozen_stages``
      (MMDetection semantics; ``-1`` trains everything). The optimiser must also skip these
      parameters (``acne_jax.training`` masks them) so weight decay does not move them.
    zero_init_residual: start every residual branch at zero.
    train: training mode (batch statistics for ``"bn"``).
    deformable_stages: per stage (C2, C3, C4, C5), whether its bottlenecks' 3x3 convolutions
      are deformable (v1); the SADH paper uses ``(False, True, True, True)``.
  """

  depth: int = 50
  width: int = 64
  norm: str = "frozen_bn"
  frozen_stages: int = -1
  zero_init_residual: bool = False
  train: bool = False
  dtype: jnp.dtype = jnp.float32
  deformable_stages: Tuple[bool, bool, bool, bool] = (False, False, False, False)

  @nn.compact
  def __call__(self, images: jnp.ndarray) -> Dict[str, jnp.ndarray]:
    """Args: images ``[B, H, W, 3]`` float, normalised.

    Returns:
      ``{"C2": [B, H/4, W/4, c2], ..., "C5": [B, H/32, W/32, c5]}`` (sizes rounded up).
    """
    if self.depth not in RESNET_SPECS:
      raise ValueError(f"ResNet depth must be one of {sorted(RESNET_SPECS)}; got {self.depth}.")
    if images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(f"ResNet: argument 'images' must have shape [B, H, W, 3]; got {list(images.shape)}.")
    block_type, blocks_per_stage = RESNET_SPECS[self.depth]
    if len(self.deformable_stages) != 4:
      raise ValueError(f"ResNet: deformable_stages needs one entry per stage C2-C5; got {self.deformable_stages}.")
    if any(self.deformable_stages) and block_type != "bottleneck":
      raise ValueError(f"ResNet-{self.depth}: deformable convolutions need bottleneck blocks (ResNet-50/101).")
    block = BasicBlock if block_type == "basic" else Bottleneck
    norm = make_norm(self.norm, self.train, dtype=self.dtype)

    x = conv(self.width, 7, 2, "stem_conv", dtype=self.dtype)(images.astype(self.dtype))
    x = nn.relu(norm(name="stem_bn")(x))
    x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    if self.frozen_stages >= 0:
      x = jax.lax.stop_gradient(x)

    outputs = {}
    for stage, num_blocks in enumerate(blocks_per_stage):
      features = self.width * 2**stage
      for index in range(num_blocks):
        stride = 2 if (index == 0 and stage > 0) else 1
        extra = {"deformable": True} if self.deformable_stages[stage] else {}
        x = block(features, stride, self.norm, self.train, self.zero_init_residual, self.dtype, name=f"layer{stage + 1}_{index}",
                  **extra)(x)
      if stage + 1 <= self.frozen_stages:
        x = jax.lax.stop_gradient(x)
      outputs[f"C{stage + 2}"] = x
    return outputs


def resnet_out_channels(depth: int, width: int = 64) -> Sequence[int]:
  """Channels of C2-C5 for a depth and width."""
  expansion = 1 if RESNET_SPECS[depth][0] == "basic" else 4
  return tuple(width * 2**stage * expansion for stage in range(4))
