"""The batch-wide parts of the losses under data parallelism (acne_jax/ops/data_axis.py).

A batch split into shards along a named axis (``jax.vmap(..., axis_name=...)`` stands in for the
devices of ``shard_map``: the same collectives) must give, summed over the shards, the losses of
the whole batch: normalisers, sampler keys and Pet's batch-ranked ISM rows included.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from acne_jax.models import rpn
from acne_jax.models.rpn_loss import rpn_losses
from acne_jax.models.scoring import ism_loss
from acne_jax.ops import data_axis


def over_shards(fn, shards: int, *batched):
  """``fn`` on ``shards`` equal slices of each ``batched`` argument's leading axis, as on devices."""

  def on_shard(*args):
    with data_axis.over("shards"):
      return fn(*args)

  split = [jax.tree_util.tree_map(lambda x: x.reshape(shards, x.shape[0] // shards, *x.shape[1:]), b) for b in batched]
  return jax.vmap(on_shard, axis_name="shards")(*split)


def test_helpers_are_the_single_device_computation_outside_a_data_axis():
  key = jax.random.key(3)
  assert data_axis.current() is None
  np.testing.assert_array_equal(jax.random.key_data(data_axis.image_keys(key, 4)), jax.random.key_data(jax.random.split(key, 4)))
  assert int(data_axis.batch_sum(jnp.asarray(5))) == 5 and int(data_axis.count_before(jnp.asarray(5))) == 0
  assert bool(data_axis.is_first_device())


def test_each_shard_gets_its_images_keys_of_the_whole_batch_split():
  key = jax.random.key(7)
  dummy = jnp.zeros((8,))
  keys = over_shards(lambda x: jax.random.key_data(data_axis.image_keys(key, x.shape[0])), 4, dummy)
  np.testing.assert_array_equal(np.asarray(keys).reshape(8, -1), np.asarray(jax.random.key_data(jax.random.split(key, 8))))
  counts = jnp.asarray([3, 0, 2, 5])
  before = over_shards(lambda c: data_axis.count_before(c[0]), 4, counts)
  np.testing.assert_array_equal(np.asarray(before), [0, 3, 3, 5])
  total = over_shards(lambda c: data_axis.batch_sum(c[0]), 4, counts)
  np.testing.assert_array_equal(np.asarray(total), [10] * 4)
  first = over_shards(lambda c: data_axis.is_first_device(), 4, counts)
  np.testing.assert_array_equal(np.asarray(first), [True, False, False, False])


@pytest.mark.parametrize("reference", [False, True])
def test_ism_loss_summed_over_shards_is_the_whole_batch_loss(reference, rng):
  rows = 16
  logits = jnp.asarray(rng.normal(0, 1, (rows, 2)), jnp.float32)
  iou = jnp.asarray(rng.uniform(0, 1, rows), jnp.float32)
  valid = jnp.asarray(rng.random(rows) > 0.4)
  valid = valid.at[:4].set(False)  # the batch's first valid rows (Pet's gathered rows) lie in a later shard
  whole = ism_loss(logits, iou, valid, reference)
  shards = over_shards(lambda l, i, v: ism_loss(l, i, v, reference), 4, logits, iou, valid)
  np.testing.assert_allclose(float(jnp.sum(shards)), float(whole), rtol=1e-6)


def test_rpn_losses_summed_over_shards_are_the_whole_batch_losses(rng):
  """Sampling included: 4 images, far more candidates than samples, so the keys decide."""
  corners = np.stack(np.meshgrid(np.arange(0, 64, 4.0), np.arange(0, 64, 4.0)), -1).reshape(-1, 2)
  anchors = np.concatenate([np.concatenate([corners, corners + size], 1) for size in (8.0, 16.0)]).astype(np.float32)
  batch, n = 4, anchors.shape[0]
  xy = rng.uniform(0, 48, (batch, 3, 2))
  gt = np.concatenate([xy, xy + rng.uniform(6, 16, (batch, 3, 2))], -1).astype(np.float32)
  gt_valid = np.array([[True, True, False], [True, False, False], [True, True, True], [False, False, False]])
  cls = jnp.asarray(rng.normal(0, 1, (batch, n)), jnp.float32)
  deltas = jnp.asarray(rng.normal(0, 0.2, (batch, n, 4)), jnp.float32)
  nwd = jnp.asarray(rng.normal(0, 1, (batch, n)), jnp.float32)
  key = jax.random.key(11)

  def losses(cls, deltas, nwd, gt, gt_valid):
    return rpn_losses(key, [rpn.LevelPredictions(cls, deltas, nwd)], [jnp.asarray(anchors)], gt, gt_valid, num_samples=32)

  whole = jax.jit(losses)(cls, deltas, nwd, jnp.asarray(gt), jnp.asarray(gt_valid))
  shards = jax.jit(lambda *a: over_shards(losses, 2, *a))(cls, deltas, nwd, jnp.asarray(gt), jnp.asarray(gt_valid))
  for name in ("rpn_cls", "rpn_bbox", "rpn_nwd"):
    np.testing.assert_allclose(float(jnp.sum(shards[name])), float(whole[name]), rtol=1e-5, err_msg=name)
  # Without the batch-wide normaliser and keys (each shard on its own) the numbers differ.
  alone = jax.jit(jax.vmap(losses))(*[x.reshape(2, 2, *x.shape[1:]) for x in (cls, deltas, nwd, jnp.asarray(gt), jnp.asarray(gt_valid))])
  assert abs(float(jnp.mean(alone["rpn_cls"])) - float(whole["rpn_cls"])) > 1e-4
