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

Initialisation is PyTorch's default for every layer, as CPM R-CNN's head never calls its
``init_weights`` (``reference_notes.md`` 2.2): kaiming-uniform(a = sqrt 5) kernels, i.e.
``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``, and biases from the same range.
"""

from __future__ import annotations

from typing import Dict, List, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from acne_jax.ops import losses

# PyTorch's default Conv2d/ConvTranspose2d/Linear initialisation (kaiming_uniform_(a=sqrt(5))).
torch_default_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def _torch_default_bias(fan_in: int):
  bound = 1.0 / np.sqrt(fan_in)
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


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

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    in_channels = x.shape[-1]
    k = self.kernel_size
    # PyTorch's fan_in for a transposed conv weight [in, out / groups, k, k] is (out / groups) * k * k.
    fan_in = self.features // self.groups * k * k
    bound = 1.0 / np.sqrt(fan_in)
    kernel = self.param("kernel", lambda key, shape: jax.random.uniform(key, shape, jnp.float32, -bound, bound),
                        (k, k, in_channels // self.groups, self.features))
    bias = self.param("bias", _torch_default_bias(fan_in), (self.features,))
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
  """

  grid_size: int = 3
  point_channels: int = 64
  num_convs: int = 8
  gn_groups: int = 36
  fusion: bool = False
  dtype: jnp.dtype = jnp.float32

  @property
  def num_points(self) -> int:
    return self.grid_size * self.grid_size

  def _conv(self, x, features, kernel, stride, name, groups=1, padding=None):
    pad = (kernel - 1) // 2 if padding is None else padding
    fan_in = x.shape[-1] // groups * kernel * kernel
    return nn.Conv(features, (kernel, kernel), strides=(stride, stride), padding=((pad, pad), (pad, pad)),
                   feature_group_count=groups, kernel_init=torch_default_init, bias_init=_torch_default_bias(fan_in),
                   name=name, dtype=self.dtype)(x)

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
    channels = self.num_points * self.point_channels
    x = roi_features
    for i in range(self.num_convs):
      x = self._conv(x, channels, 3, 2 if i == 0 else 1, f"conv{i + 1}")
      x = nn.relu(nn.GroupNorm(num_groups=self.gn_groups, epsilon=1e-5, name=f"conv{i + 1}_norm", dtype=self.dtype)(x))
    features = x
    # One decoder serves both heatmaps (the reference shares deconv_1 and deconv_2).
    heatmaps = {}
    decoder = _HeatmapDecoder(self.num_points, self.point_channels, self.dtype, name="decoder")
    heatmaps["unfused"] = decoder(features)
    if self.fusion:
      c = self.point_channels
      parts = [features[..., i * c:(i + 1) * c] for i in range(self.num_points)]
      first = self._fuse(parts, parts, "first_order")
      second = self._fuse(parts, first, "second_order")
      heatmaps["fused"] = decoder(jnp.concatenate(second, axis=-1))
    return heatmaps, features


class _HeatmapDecoder(nn.Module):
  """deconv1 (grouped, 576 -> 576, x2) -> GroupNorm(points) -> ReLU -> deconv2 (grouped, -> points, x2)."""

  num_points: int
  point_channels: int
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    p = self.num_points
    x = GroupedConvTranspose(p * self.point_channels, groups=p, name="deconv1", dtype=self.dtype)(x)
    x = nn.relu(nn.GroupNorm(num_groups=p, epsilon=1e-5, name="deconv1_norm", dtype=self.dtype)(x))
    return GroupedConvTranspose(p, groups=p, name="deconv2", dtype=self.dtype)(x)


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
  return total / jnp.maximum(jnp.sum(weight), 1.0)
