"""The grid head of Grid R-CNN (Lu et al., 2019) as CPM R-CNN uses it in every cascade stage.

``[R, 14, 14, C]`` RoIAlign features -> eight 3x3 convs of ``9 * 64 = 576`` channels, each with
GroupNorm(36) and ReLU, the first with stride 2 (14 -> 7) -> a 4x4 stride-2 transposed conv
grouped per point (576 -> 576, 7 -> 14) with GroupNorm(9) and ReLU -> a second one to one
``28 x 28`` logit map per point (``[R, 28, 28, 9]``). Each map is a window of the 56 x 56 map
over the expanded RoI (:mod:`acne_jax.ops.grid`).

Optional feature fusion (Grid R-CNN section 3.2, off in CPM R-CNN's final configuration): the
576 channels are 9 groups of 64, one per point; first-order fusion adds to each point's
features every 4-neighbour's, each through its own 5x5 depthwise + 1x1 transition; second-order
fusion repeats this on the first-order results. With fusion the head returns both heatmaps
(trained on both, decoded from the fused one), as the reference does.

Initialisation (``weight_init``): ``"grid_rcnn"`` (default) is the one the head's authors wrote, as
mmdet applies it: Kaiming-normal (fan-out, ReLU) convs with zero bias, transposed convs
N(0, 0.001), and the last one's bias ``-log(0.99 / 0.01)``, so that every heatmap starts at the
1 % positive prior instead of spending its first steps learning that almost every cell is
background. ``"torch_default"`` is what Pet's CPM R-CNN runs, because its ``init_weights`` is
never called (``reference_notes.md`` 2.2): PyTorch's default for every layer, kaiming-uniform
(a = sqrt 5), i.e. ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``, and biases from the same range.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from acne_jax.models.layers import Conv
from acne_jax.models.norm import GroupNorm
from acne_jax.ops import data_axis
from acne_jax.ops import losses

# PyTorch's default Conv2d/ConvTranspose2d/Linear initialisation (kaiming_uniform_(a=sqrt(5))).
torch_default_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def _torch_default_bias(fan_in: int):
  bound = 1.0 / np.sqrt(fan_in)
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


# Grid R-CNN's (mmdet GridHead's) initialisation.
kaiming_fan_out_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
HEATMAP_PRIOR = 0.01  # the last transposed conv's bias is the logit of this probability
INITS = ("grid_rcnn", "torch_default")


def _check_init(weight_init: str) -> None:
  if weight_init not in INITS:
    raise ValueError(f"model.roi_head.cpm.weight_init must be one of {INITS}; got {weight_init!r}.")


class GroupedConvTranspose(nn.Module):
  """PyTorch ``ConvTranspose2d(in, out, k, stride, padding, groups)`` on NHWC: the input dilated
  by the stride, padded by ``k - 1 - padding`` and convolved per group (the kernel is stored
  already flipped, which is only a re-parametrisation)."""

  features: int
  kernel_size: int = 4
  stride: int = 2
  padding: int = 1
  groups: int = 1
  dtype: jnp.dtype = jnp.float32
  # None: PyTorch's default initialisation; a float: kernel N(0, kernel_std**2) ...
  kernel_std: Optional[float] = None
  # ... and every bias this value.
  bias_value: float = 0.0

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    in_channels = x.shape[-1]
    k = self.kernel_size
    shape = (k, k, in_channels // self.groups, self.features)
    if self.kernel_std is None:
      # PyTorch's fan_in for a transposed conv weight [in, out / groups, k, k] is (out / groups) * k * k.
      fan_in = self.features // self.groups * k * k
      bound = 1.0 / np.sqrt(fan_in)
      kernel = self.param("kernel", lambda key, shape: jax.random.uniform(key, shape, jnp.float32, -bound, bound), shape)
      bias = self.param("bias", _torch_default_bias(fan_in), (self.features,))
    else:
      kernel = self.param("kernel", nn.initializers.normal(self.kernel_std), shape)
      bias = self.param("bias", nn.initializers.constant(self.bias_value), (self.features,))
    pad = k - 1 - self.padding
    y = jax.lax.conv_general_dilated(
        x.astype(self.dtype), kernel.astype(self.dtype), window_strides=(1, 1), padding=((pad, pad), (pad, pad)),
        lhs_dilation=(self.stride, self.stride), dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=self.groups)
    return y + bias.astype(self.dtype)


def _neighbours(grid_size: int) -> List[Tuple[int, ...]]:
  """4-neighbours of each point (point ``j`` at column ``j // g``, row ``j % g``)."""
  g = grid_size
  out = []
  for column in range(g):
    for row in range(g):
      near = []
      if column > 0:
        near.append((column - 1) * g + row)
      if row > 0:
        near.append(column * g + row - 1)
      if row < g - 1:
        near.append(column * g + row + 1)
      if column < g - 1:
        near.append((column + 1) * g + row)
      out.append(tuple(near))
  return out


class GridHead(nn.Module):
  """One cascade stage's grid branch (module docstring).

  Attributes:
    grid_size: ``g`` (3: nine points).
    point_channels: channels per point (64; the convs have ``g * g * point_channels``).
    num_convs: 3x3 convs (8), the first with stride 2.
    gn_groups: GroupNorm groups of the convs (36).
    fusion: Grid R-CNN's first- and second-order feature fusion.
    weight_init: ``"grid_rcnn"`` or ``"torch_default"`` (module docstring).
  """

  grid_size: int = 3
  point_channels: int = 64
  num_convs: int = 8
  gn_groups: int = 36
  fusion: bool = False
  dtype: jnp.dtype = jnp.float32
  weight_init: str = "torch_default"

  @property
  def num_points(self) -> int:
    return self.grid_size * self.grid_size

  def _conv(self, x, features, kernel, stride, name, groups=1, padding=None):
    pad = (kernel - 1) // 2 if padding is None else padding
    if self.weight_init == "torch_default":
      kernel_init, bias_init = torch_default_init, _torch_default_bias(x.shape[-1] // groups * kernel * kernel)
    else:
      kernel_init, bias_init = kaiming_fan_out_init, nn.initializers.zeros
    return Conv(features, (kernel, kernel), strides=(stride, stride), padding=((pad, pad), (pad, pad)),
                   feature_group_count=groups, kernel_init=kernel_init, bias_init=bias_init, name=name, dtype=self.dtype)(x)

  def _transition(self, x, name):
    c = self.point_channels
    x = self._conv(x, c, 5, 1, f"{name}_depthwise", groups=c)
    return self._conv(x, c, 1, 1, f"{name}_pointwise")

  def _fuse(self, parts: List[jnp.ndarray], sources: List[jnp.ndarray], order: str) -> List[jnp.ndarray]:
    fused = []
    for i, near in enumerate(_neighbours(self.grid_size)):
      x = parts[i]
      for j in near:
        x = x + self._transition(sources[j], f"{order}_{i}_from_{j}")
      fused.append(x)
    return fused

  @nn.compact
  def __call__(self, roi_features: jnp.ndarray) -> Tuple[Dict[str, jnp.ndarray], jnp.ndarray]:
    """Args: roi_features ``[R, s, s, C]`` (s = 14).

    Returns:
      ``({"unfused": [R, 2s, 2s, P][, "fused": ...]}, features [R, s/2, s/2, P * point_channels])``:
      heatmap logits, and the conv features the IoU scoring module reads.
    """
    _check_init(self.weight_init)
    channels = self.num_points * self.point_channels
    x = roi_features
    for i in range(self.num_convs):
      x = self._conv(x, channels, 3, 2 if i == 0 else 1, f"conv{i + 1}")
      x = nn.relu(GroupNorm(num_groups=self.gn_groups, epsilon=1e-5, name=f"conv{i + 1}_norm", dtype=self.dtype)(x))
    features = x
    # One decoder serves both heatmaps (the reference shares deconv_1 and deconv_2).
    heatmaps = {}
    decoder = _HeatmapDecoder(self.num_points, self.point_channels, self.dtype, self.weight_init, name="decoder")
    heatmaps["unfused"] = decoder(features)
    if self.fusion:
      c = self.point_channels
      parts = [features[..., i * c:(i + 1) * c] for i in range(self.num_points)]
      first = self._fuse(parts, parts, "first_order")
      second = self._fuse(parts, first, "second_order")
      heatmaps["fused"] = decoder(jnp.concatenate(second, axis=-1))
    return {name: h.astype(jnp.float32) for name, h in heatmaps.items()}, features


class _HeatmapDecoder(nn.Module):
  """deconv1 (grouped, 576 -> 576, x2) -> GroupNorm(points) -> ReLU -> deconv2 (grouped, -> points, x2)."""

  num_points: int
  point_channels: int
  dtype: jnp.dtype = jnp.float32
  weight_init: str = "torch_default"

  @nn.compact
  def __call__(self, x):
    p = self.num_points
    std = None if self.weight_init == "torch_default" else 0.001
    prior = float(-np.log((1 - HEATMAP_PRIOR) / HEATMAP_PRIOR))
    x = GroupedConvTranspose(p * self.point_channels, groups=p, name="deconv1", dtype=self.dtype, kernel_std=std)(x)
    x = nn.relu(GroupNorm(num_groups=p, epsilon=1e-5, name="deconv1_norm", dtype=self.dtype)(x))
    return GroupedConvTranspose(p, groups=p, name="deconv2", dtype=self.dtype, kernel_std=std, bias_value=prior)(x)


def grid_loss(heatmap_logits: jnp.ndarray, targets: jnp.ndarray, valid: jnp.ndarray) -> jnp.ndarray:
  """Sigmoid BCE averaged over every element of the valid RoIs' heatmaps (the reference's
  ``binary_cross_entropy_with_logits`` mean over its concatenated RoIs).

  Args:
    heatmap_logits, targets: ``[R, h, w, P]``; valid: ``[R]`` bool.

  Returns:
    Scalar (0 when no RoI is valid).
  """
  weight = jnp.broadcast_to(valid[:, None, None, None], targets.shape).astype(jnp.float32)
  total = losses.sigmoid_binary_cross_entropy(heatmap_logits.astype(jnp.float32), targets, weight, reduction="sum")
  return total / jnp.maximum(data_axis.batch_sum(jnp.sum(weight)), 1.0)
