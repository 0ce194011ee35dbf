"""Region proposal heads: the vanilla RPN head and the SADH head with its NWD branch.

Both heads are shared across FPN levels and return, per level, flattened predictions in the
anchor order of :mod:`acne_jax.ops.anchors` (row, column, anchor):

- ``cls_logits``: ``[B, H*W*A]`` objectness logits;
- ``deltas``: ``[B, H*W*A, 4]`` box deltas (dx, dy, dw, dh);
- ``nwd_logits``: ``[B, H*W*A]`` logits of the predicted NWD (SADH only; ``None`` otherwise).

**Vanilla RPN** (Ren et al.): 3x3 conv + ReLU, then 1x1 convs for objectness and deltas.

**SADH, Spatial Aware Double Head** (Zhang et al., "Learning high-quality proposals for acne
detection", section 3.2, Fig. 3b): the two tasks get separate towers that see different
neighbourhoods. The classification tower is a **1x1** conv + GroupNorm(32) + ReLU, so the
scores of adjacent positions share no input and the confidence falls off steeply away from a
lesion's centre; the regression tower is a **3x3** conv + GN(32) + ReLU, so adjacent boxes
stay consistent. The **NWD branch** (section 3.3) is a 1x1 conv on the regression tower's
feature that predicts, through a sigmoid, the NWD between the decoded box and its ground truth.

Initialisation follows the reference: Normal(std 0.01) weights and zero biases on every
convolution; GroupNorm starts at the identity.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import flax.linen as nn
import jax.numpy as jnp

from acne_jax.models.layers import Conv
from acne_jax.models.norm import GroupNorm

head_init = nn.initializers.normal(stddev=0.01)


class LevelPredictions(NamedTuple):
  """Predictions of one FPN level, flattened in anchor order.

  Attributes:
    cls_logits: ``[B, H*W*A]`` float.
    deltas: ``[B, H*W*A, 4]`` float.
    nwd_logits: ``[B, H*W*A]`` float, or ``None`` for a head without the NWD branch.
  """

  cls_logits: jnp.ndarray
  deltas: jnp.ndarray
  nwd_logits: Optional[jnp.ndarray]


def _conv(features, kernel, name, dtype):
  pad = kernel // 2
  return Conv(features, (kernel, kernel), padding=((pad, pad), (pad, pad)), kernel_init=head_init,
                 bias_init=nn.initializers.zeros, name=name, dtype=dtype)


def _flatten(x: jnp.ndarray, last: int) -> jnp.ndarray:
  """``[B, H, W, A * last]`` -> float32 ``[B, H*W*A(, last)]`` (losses, decoding and NMS are float32)."""
  batch = x.shape[0]
  x = x.astype(jnp.float32)
  return x.reshape(batch, -1) if last == 1 else x.reshape(batch, -1, last)


class RPNHead(nn.Module):
  """Vanilla RPN head.

  Attributes:
    num_anchors: anchors per location.
    channels: width of the shared 3x3 conv.
    with_nwd: add the NWD branch, a 1x1 conv on the shared feature (the SADH paper's Table 4
      groups 2 and 3 put the branch on the vanilla head: "we use the origin RPN").
  """

  num_anchors: int = 3
  channels: int = 256
  with_nwd: bool = False
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, features: Sequence[jnp.ndarray]) -> Sequence[LevelPredictions]:
    """Args: features, one ``[B, H_l, W_l, C]`` per level. Returns one LevelPredictions per level."""
    tower = _conv(self.channels, 3, "rpn_conv", self.dtype)
    cls = _conv(self.num_anchors, 1, "rpn_cls", self.dtype)
    reg = _conv(self.num_anchors * 4, 1, "rpn_reg", self.dtype)
    nwd_out = _conv(self.num_anchors, 1, "rpn_nwd", self.dtype) if self.with_nwd else None
    outputs = []
    for x in features:
      y = nn.relu(tower(x))
      nwd = _flatten(nwd_out(y), 1) if nwd_out is not None else None
      outputs.append(LevelPredictions(_flatten(cls(y), 1), _flatten(reg(y), 4), nwd))
    return outputs


class SADHHead(nn.Module):
  """Spatial Aware Double Head with the NWD prediction branch.

  Attributes:
    num_anchors: anchors per location (3: ratios 0.5, 1, 2).
    channels: width of both towers (256 in the paper).
    gn_groups: GroupNorm groups (32 in the paper).
    cls_kernel: kernel of the classification tower; 1 is SADH, 3 the paper's ablation (Table 4).
    reg_kernel: kernel of the regression tower (3).
    with_nwd: add the NWD branch (SADH + NWD); without it, plain SADH.
  """

  num_anchors: int = 3
  channels: int = 256
  gn_groups: int = 32
  cls_kernel: int = 1
  reg_kernel: int = 3
  with_nwd: bool = True
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, features: Sequence[jnp.ndarray]) -> Sequence[LevelPredictions]:
    """Args: features, one ``[B, H_l, W_l, C]`` per level. Returns one LevelPredictions per level."""
    cls_conv = _conv(self.channels, self.cls_kernel, "cls_tower_conv", self.dtype)
    cls_norm = GroupNorm(num_groups=self.gn_groups, epsilon=1e-5, name="cls_tower_gn", dtype=self.dtype)
    reg_conv = _conv(self.channels, self.reg_kernel, "reg_tower_conv", self.dtype)
    reg_norm = GroupNorm(num_groups=self.gn_groups, epsilon=1e-5, name="reg_tower_gn", dtype=self.dtype)
    cls_out = _conv(self.num_anchors, 1, "rpn_cls", self.dtype)
    reg_out = _conv(self.num_anchors * 4, 1, "rpn_reg", self.dtype)
    nwd_out = _conv(self.num_anchors, 1, "rpn_nwd", self.dtype) if self.with_nwd else None
    outputs = []
    for x in features:
      cls_feature = nn.relu(cls_norm(cls_conv(x)))
      reg_feature = nn.relu(reg_norm(reg_conv(x)))
      nwd = _flatten(nwd_out(reg_feature), 1) if nwd_out is not None else None
      outputs.append(LevelPredictions(_flatten(cls_out(cls_feature), 1), _flatten(reg_out(reg_feature), 4), nwd))
    return outputs


def rectified_objectness(cls_logits: jnp.ndarray, nwd_logits: Optional[jnp.ndarray], nwd_weight: float = 1.0) -> jnp.ndarray:
  """Proposal score, SADH paper eq. 5: ``s_final = sqrt(s_cls^(2 - w) * p^w)``.

  ``s_cls = sigmoid(cls)`` and ``p = sigmoid(nwd)``; ``w = 1`` gives ``sqrt(s_cls * p)``, which is
  what the reference computes (its ``cls_alpha`` is ``2 - w``). Computed in log space so it stays
  accurate when either score is tiny. Without an NWD branch the score is ``s_cls``.

  Args:
    cls_logits: ``[...]`` objectness logits.
    nwd_logits: ``[...]`` NWD logits, or ``None``.
    nwd_weight: ``w`` in [0, 2].

  Returns:
    ``[...]`` scores in (0, 1).
  """
  if nwd_logits is None:
    return nn.sigmoid(cls_logits)
  log_score = 0.5 * ((2.0 - nwd_weight) * nn.log_sigmoid(cls_logits) + nwd_weight * nn.log_sigmoid(nwd_logits))
  return jnp.exp(log_score)
