"""CPM R-CNN's fused scoring network (section 3.3): the IoU and resampling scoring modules.

- **IoU scoring module (ISM)**: FC 1024 -> FC 1024 -> 2 on the last cascade stage's grid
  feature (``576 x 7 x 7`` after the eight convolutions), trained towards ``[1 - IoU, IoU]`` of
  that stage's input boxes with an L2 loss (the paper's Table 6).
- **Resampling scoring module (RSM)**: its own two-FC classifier on 7 x 7 RoIAlign features,
  trained on the classification branch's negatives plus the last stage's positives, re-sampled
  (:meth:`acne_jax.models.cascade.CPMRoIHead.losses`); at inference it scores the final boxes.
- **Fused score** (eq. 4): ``(s_cls * s_ISM) ** gamma * s_RSM ** (1 - gamma)``, gamma = 0.8.

The reference implementation (Pet) multiplies the *raw* ISM logit into the score and its L2 loss
gathers whole rows by mistake (``reference_notes.md``, Traps 11). By default we use the IoU
probability (softmax of the two outputs) and the per-element loss the paper describes;
``ism_reference=True`` reproduces Pet (``docs/decisions.md``).
"""

from __future__ import annotations

from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from acne_jax.ops import data_axis
from acne_jax.ops.shapes import check_shape

# PyTorch's nn.Linear after kaiming_uniform_(a=1) (Pet's make_fc): U(-sqrt(3 / fan_in), ..).
fc_init = nn.initializers.variance_scaling(1.0, "fan_in", "uniform")


class IoUScoringModule(nn.Module):
  """FC ``fc_dim`` -> ReLU -> FC ``fc_dim`` -> ReLU -> 2 logits ``(background, IoU)``."""

  fc_dim: int = 1024
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, grid_features: jnp.ndarray) -> jnp.ndarray:
    """Args: grid_features ``[R, 7, 7, C]``. Returns: ``[R, 2]`` logits."""
    x = grid_features.reshape(grid_features.shape[0], -1)
    x = nn.relu(nn.Dense(self.fc_dim, name="fc1", dtype=self.dtype, kernel_init=fc_init)(x))
    x = nn.relu(nn.Dense(self.fc_dim, name="fc2", dtype=self.dtype, kernel_init=fc_init)(x))
    return nn.Dense(2, name="iou", dtype=self.dtype, kernel_init=nn.initializers.normal(0.01))(x).astype(jnp.float32)


def iou_score(iou_logits: jnp.ndarray, reference: bool = False) -> jnp.ndarray:
  """``[R]`` predicted IoU: the softmax probability of the second output, or (``reference``) the
  raw second logit, unbounded, as Pet multiplies it into the score."""
  if reference:
    return iou_logits[:, 1]
  return jax.nn.softmax(iou_logits.astype(jnp.float32), axis=-1)[:, 1]


def ism_targets(iou: jnp.ndarray) -> jnp.ndarray:
  """``[R]`` IoU -> ``[R, 2]`` targets ``[1 - IoU, IoU]``."""
  return jnp.stack([1.0 - iou, iou], axis=-1)


def ism_loss(iou_logits: jnp.ndarray, iou: jnp.ndarray, valid: jnp.ndarray, reference: bool = False) -> jnp.ndarray:
  """L2 loss of the ISM: ``0.5 * sum (x - t)**2 / K`` over the ``K`` target entries ``t > 0`` of
  the valid rows.

  By default ``x`` is the softmax probability pair and the sum runs over those entries. With
  ``reference=True`` it is Pet's ``l2_loss`` as coded: ``x`` are the raw logits and indexing
  with the ``[K, 2]`` (row, column) pairs gathers *rows*: each pair adds the squared error of
  row ``r`` and of row ``c`` (``c`` in {0, 1}, so the first two valid rows of the batch).

  Args:
    iou_logits: ``[R, 2]``; iou: ``[R]`` target IoU; valid: ``[R]`` bool.

  Returns:
    Scalar (0 when no row is valid).
  """
  dims = check_shape("ism_loss", "iou_logits", iou_logits, "[R, 2]")
  check_shape("ism_loss", "iou", iou, "[R]", dims)
  targets = ism_targets(iou.astype(jnp.float32))
  entries = (targets > 0) & valid[:, None]
  count = data_axis.batch_sum(jnp.sum(entries)).astype(jnp.float32)
  if not reference:
    x = jax.nn.softmax(iou_logits.astype(jnp.float32), axis=-1)
    return 0.5 * jnp.sum(jnp.where(entries, (x - targets) ** 2, 0.0)) / jnp.maximum(count, 1.0)
  x = iou_logits.astype(jnp.float32)
  row_error = jnp.sum((x - targets) ** 2, axis=-1)  # [R]
  own = jnp.sum(jnp.sum(entries, axis=-1) * jnp.where(valid, row_error, 0.0))
  # The k-th valid row of the batch (the reference concatenates only valid rows).
  rank = jnp.cumsum(valid) - 1 + data_axis.count_before(jnp.sum(valid))
  first = data_axis.batch_sum(jnp.sum(jnp.where(valid & (rank == 0), row_error, 0.0)))
  second = data_axis.batch_sum(jnp.sum(jnp.where(valid & (rank == 1), row_error, 0.0)))
  gathered = (data_axis.batch_sum(jnp.sum(entries[:, 0])) * first + data_axis.batch_sum(jnp.sum(entries[:, 1])) * second)
  gathered = jnp.where(data_axis.is_first_device(), gathered, 0.0)  # counted once over the devices
  return jnp.where(count > 0, 0.5 * (own + gathered) / jnp.maximum(count, 1.0), 0.0)


def fused_score(cls_score: jnp.ndarray, ism_score: Optional[jnp.ndarray], rsm_score: Optional[jnp.ndarray],
                gamma: float = 0.8) -> jnp.ndarray:
  """Eq. 4: ``(s_cls * s_ISM) ** gamma * s_RSM ** (1 - gamma)``; a missing module drops out
  (no ISM: ``s_ISM = 1``; no RSM: ``s_cls * s_ISM`` unpowered, as in the reference)."""
  score = cls_score if ism_score is None else cls_score * ism_score
  if rsm_score is None:
    return score
  return score ** gamma * rsm_score ** (1.0 - gamma)
