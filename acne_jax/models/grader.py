"""The grading paper's IGA grader: a CIFAR-style ResNet-110 over a visit's views, one linear classifier.

Bernhard et al. 2024 grade acne on the IGA scale (three groups 0-1 / 2 / 3-4) with "the ResNet110
with 1.7 M tunable parameters" on 224 x 224 face crops, three views (frontal, left, right) per
visit, with dropout. ResNet-110 is He et al.'s CIFAR network (2016, section 4.2): a 3x3
convolution with 16 channels, then three stages of ``n = (depth - 2) / 6 = 18`` basic blocks (two
3x3 convolutions each) with 16, 32 and 64 channels, the second and third stages starting with
stride 2, global average pooling. Its shortcuts are identities; where a stage halves the
resolution and doubles the channels, the shortcut takes every second pixel and pads the new
channels with zeros (He et al.'s option A, no parameters; ``shortcut="projection"`` uses a 1x1
convolution and norm instead, as :mod:`acne_jax.models.resnet`). With 3 classes the paper setting
(:data:`PAPER`) has 1,727,507 trainable parameters: 1,719,216 convolution weights (no biases),
8,096 batch-norm scales and biases, 195 in the classifier (``tests/grading/test_grader.py``
counts them), the paper's "1.7 M".

How the views are combined is not in the paper; ours (``docs/decisions.md``): one backbone shared
by every view, each view's pooled features ``[C]``, their mean over the views (``fusion="mean"``,
the default: any number of views with the same weights, in any order; a single ACNE04 image is
``V = 1``) or their concatenation (``fusion="concat"``: view-specific weights, a fixed ``V``),
dropout, one linear layer to the class logits.

CPU budgets: at 224 px and stem stride 1 the first stage runs 36 convolutions at full
resolution. ``width``, ``depth`` and ``stem_stride`` (a max-pool after the stem) give the thin,
shallow variants (:data:`CPU`) that tests and CPU configs use; the paper's setting is
``Grader(**PAPER)`` (the defaults).
"""

from __future__ import annotations

from typing import Any, Dict, Tuple

import flax.linen as nn
import jax.numpy as jnp

from acne_jax.models.norm import make_norm
from acne_jax.models.resnet import conv

IMAGENET_MEAN: Tuple[float, float, float] = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD: Tuple[float, float, float] = (0.229 * 255, 0.224 * 255, 0.225 * 255)

PAPER: Dict[str, Any] = dict(depth=110, width=16, stem_stride=1)
"""The paper's ResNet-110 at full input resolution."""
CPU: Dict[str, Any] = dict(depth=20, width=8, stem_stride=4)
"""A ResNet-20 with half the channels after a 4x max-pool: a CPU-sized grader."""

FUSIONS = ("mean", "concat")
SHORTCUTS = ("zero_pad", "projection")


class CifarBasicBlock(nn.Module):
  """3x3 conv -> norm -> ReLU -> 3x3 conv -> norm, plus the shortcut, -> ReLU.

  Attributes:
    features: output channels.
    stride: of the first convolution (and the shortcut).
    norm: a :data:`acne_jax.models.norm.NORMS` name.
    shortcut: ``"zero_pad"`` (subsample, zero channels: no parameters) or ``"projection"``
      (1x1 convolution and norm) where the shape changes.
  """

  features: int
  stride: int = 1
  norm: str = "bn"
  shortcut: str = "zero_pad"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
    """``x: [N, H, W, C]`` -> ``[N, ceil(H / stride), ceil(W / stride), features]``."""
    norm = make_norm(self.norm, train, dtype=self.dtype)
    y = nn.relu(norm(name="bn1")(conv(self.features, 3, self.stride, "conv1", dtype=self.dtype)(x)))
    y = norm(name="bn2")(conv(self.features, 3, 1, "conv2", dtype=self.dtype)(y))
    shortcut = x
    if self.stride != 1 or x.shape[-1] != self.features:
      if self.shortcut == "projection":
        shortcut = norm(name="downsample_bn")(conv(self.features, 1, self.stride, "downsample_conv", dtype=self.dtype)(x))
      else:
        if x.shape[-1] > self.features:
          raise ValueError(f"CifarBasicBlock: a zero-pad shortcut cannot reduce {x.shape[-1]} channels to {self.features}.")
        shortcut = x[:, ::self.stride, ::self.stride, :]
        shortcut = jnp.pad(shortcut, ((0, 0), (0, 0), (0, 0), (0, self.features - x.shape[-1])))
    return nn.relu(y + shortcut.astype(y.dtype))


class CifarResNet(nn.Module):
  """He et al.'s CIFAR ResNet (depth ``6 n + 2``): pooled features of each image.

  Attributes:
    depth: ``6 n + 2`` (20, 32, 44, 56, 110, ...); ``n`` blocks per stage.
    width: channels of the first stage (16 in the paper); the stages have ``width``,
      ``2 width``, ``4 width``.
    stem_stride: 1 (paper) or a max-pool of that size and stride after the stem convolution.
    norm: a :data:`acne_jax.models.norm.NORMS` name (``"bn"``: batch norm, batch statistics in
      training and running averages in evaluation).
    shortcut: see :class:`CifarBasicBlock`.
  """

  depth: int = 110
  width: int = 16
  stem_stride: int = 1
  norm: str = "bn"
  shortcut: str = "zero_pad"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    """``images: [N, H, W, 3]`` float, normalised -> ``[N, 4 width]`` features (global average)."""
    if self.depth < 8 or (self.depth - 2) % 6:
      raise ValueError(f"CifarResNet: depth must be 6 n + 2 (20, 32, 44, 56, 110, ...); got {self.depth}.")
    if self.shortcut not in SHORTCUTS:
      raise ValueError(f"CifarResNet: shortcut must be one of {SHORTCUTS}; got {self.shortcut!r}.")
    if self.stem_stride < 1 or self.width < 1:
      raise ValueError(f"CifarResNet: width and stem_stride must be >= 1; got {self.width}, {self.stem_stride}.")
    blocks = (self.depth - 2) // 6
    norm = make_norm(self.norm, train, dtype=self.dtype)
    x = nn.relu(norm(name="stem_bn")(conv(self.width, 3, 1, "stem_conv", dtype=self.dtype)(images.astype(self.dtype))))
    if self.stem_stride > 1:
      x = nn.max_pool(x, (self.stem_stride, self.stem_stride), strides=(self.stem_stride, self.stem_stride), padding="SAME")
    for stage in range(3):
      for index in range(blocks):
        stride = 2 if (stage > 0 and index == 0) else 1
        x = CifarBasicBlock(self.width * 2**stage, stride, self.norm, self.shortcut, self.dtype,
                            name=f"stage{stage + 1}_{index}")(x, train)
    return jnp.mean(x.astype(jnp.float32), axis=(1, 2))


class Grader(nn.Module):
  """Grade logits of ``[B, V, H, W, 3]`` views (``V = 3`` for the paper's triplets, 1 for ACNE04).

  Attributes:
    num_classes: grades (3: the paper's groups 0-1 / 2 / 3-4; 4: ACNE04's Hayashi grades).
    depth, width, stem_stride, norm, shortcut: the backbone (:class:`CifarResNet`); defaults
      are the paper's ResNet-110 (:data:`PAPER`).
    fusion: ``"mean"`` or ``"concat"`` of the views' pooled features (module docstring).
    dropout_rate: dropout before the classifier in training (the paper uses dropout without
      its rate; 0.5 is our choice).
    mean, std: per-channel RGB statistics in 0-255 units; the model computes
      ``(views - mean) / std`` (default ImageNet's).
  """

  num_classes: int = 3
  depth: int = 110
  width: int = 16
  stem_stride: int = 1
  norm: str = "bn"
  shortcut: str = "zero_pad"
  fusion: str = "mean"
  dropout_rate: float = 0.5
  mean: Tuple[float, ...] = IMAGENET_MEAN
  std: Tuple[float, ...] = IMAGENET_STD
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, views: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    """Args:
      views: ``[B, V, H, W, 3]`` uint8 RGB (or float in 0-255); the paper's ``H = W = 224``.
      train: batch statistics and dropout (needs an ``rngs={"dropout": key}``).

    Returns:
      ``[B, num_classes]`` float32 logits.
    """
    if views.ndim != 5 or views.shape[-1] != 3 or views.shape[1] < 1:
      raise ValueError(f"Grader: argument 'views' must have shape [B, V, H, W, 3] with V >= 1; got {list(views.shape)}.")
    if self.fusion not in FUSIONS:
      raise ValueError(f"Grader: fusion must be one of {FUSIONS}; got {self.fusion!r}.")
    batch, num_views = views.shape[:2]
    mean = jnp.asarray(self.mean, jnp.float32)
    std = jnp.asarray(self.std, jnp.float32)
    images = (views.astype(jnp.float32) - mean) / std
    images = images.reshape((batch * num_views,) + views.shape[2:])
    features = CifarResNet(self.depth, self.width, self.stem_stride, self.norm, self.shortcut, self.dtype,
                           name="backbone")(images, train)
    features = features.reshape(batch, num_views, -1)
    if self.fusion == "mean":
      pooled = jnp.mean(features, axis=1)
    else:
      pooled = features.reshape(batch, -1)
    pooled = nn.Dropout(self.dropout_rate, deterministic=not train)(pooled)
    return nn.Dense(self.num_classes, dtype=jnp.float32, name="classifier")(pooled)
