"""Fixed-count random sampling of positives and negatives (MMDetection's ``RandomSampler``).

Up to ``int(num * positive_fraction)`` positives are drawn uniformly without replacement; the
remaining ``num - num_positives_drawn`` slots are filled with negatives, drawn the same way.
When there are not enough candidates the tail of the output is padding, marked invalid.

Static shapes: every candidate gets an independent uniform priority from the PRNG key and the
top-``k`` priorities among positives (resp. negatives) are taken, which draws a uniformly
random subset of size ``k`` without a data-dependent shape. One call samples one image; vmap
it with split keys for a batch.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from acne_jax.ops.shapes import check_shape


class Sample(NamedTuple):
  """``num`` sampled candidates of one image.

  Attributes:
    indices: ``[num]`` int32 candidate indices; positives first, then negatives, then padding
      (index 0).
    valid: ``[num]`` bool, False for padding.
    positive: ``[num]`` bool, True for the sampled positives.
  """

  indices: jnp.ndarray
  valid: jnp.ndarray
  positive: jnp.ndarray


def random_sample(
    key: jax.Array,
    positive: jnp.ndarray,
    negative: jnp.ndarray,
    num: int,
    positive_fraction: float,
) -> Sample:
  """Samples ``num`` candidates, at most ``int(num * positive_fraction)`` of them positive.

  Args:
    key: PRNG key.
    positive: ``[N]`` bool, candidates that may be drawn as positives.
    negative: ``[N]`` bool, candidates that may be drawn as negatives (disjoint from ``positive``).
    num: total samples per image (RPN 256, R-CNN 512).
    positive_fraction: upper bound on the positive share (RPN 0.5, R-CNN 0.25).

  Returns:
    A :class:`Sample`.
  """
  dims = check_shape("random_sample", "positive", positive, "[N]")
  check_shape("random_sample", "negative", negative, "[N]", dims)
  num_candidates = positive.shape[0]
  max_positives = int(num * positive_fraction)
  positive = positive.astype(bool)
  negative = negative.astype(bool) & ~positive

  priority = jax.random.uniform(key, (num_candidates,))
  # Priorities in [0, 1) for eligible candidates and -1 for the rest; top_k then picks a
  # uniform random subset of the eligible ones first.
  k_pos = min(max_positives, num_candidates)
  k_neg = min(num, num_candidates)
  _, pos_order = jax.lax.top_k(jnp.where(positive, priority, -1.0), k_pos)
  _, neg_order = jax.lax.top_k(jnp.where(negative, priority, -1.0), k_neg)
  num_pos = jnp.minimum(jnp.sum(positive), k_pos)
  num_neg = jnp.minimum(jnp.sum(negative), num - num_pos)

  slot = jnp.arange(num)
  is_pos_slot = slot < num_pos
  pos_pick = pos_order[jnp.clip(slot, 0, max(k_pos - 1, 0))] if k_pos > 0 else jnp.zeros((num,), jnp.int32)
  neg_pick = neg_order[jnp.clip(slot - num_pos, 0, k_neg - 1)]
  valid = slot < num_pos + num_neg
  indices = jnp.where(is_pos_slot, pos_pick, jnp.where(valid, neg_pick, 0)).astype(jnp.int32)
  return Sample(indices=indices, valid=valid, positive=is_pos_slot)
