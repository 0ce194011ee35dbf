"""The IGA grader: ResNet-110's parameter count, shapes for any number of views, fusion, and a
PyTorch re-computation of a small one."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from acne_jax.models import grader as G

TINY = dict(depth=8, width=4, dropout_rate=0.5)


def key(seed=0):
  """An ``rbg`` key: XLA on CPU compiles threefry initialisers slowly (about 7 s for this file's
  tiny models against 1 s); the values do not matter here."""
  return jax.random.key(seed, impl="rbg")


def _count(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def test_resnet110_has_the_papers_1_7_million_parameters():
  model = G.Grader(**G.PAPER)
  shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 3, 224, 224, 3), jnp.uint8))
  params = shapes["params"]
  assert _count(params) == 1_727_507  # the paper: "ResNet110 with 1.7 M tunable parameters"
  kernels = [x for path, x in jax.tree_util.tree_leaves_with_path(params) if path[-1].key == "kernel"]
  convs = [k for k in kernels if k.ndim == 4]
  assert len(convs) == 109 and len(kernels) == 110  # stem + 3 x 18 blocks x 2 convolutions + classifier
  assert _count(convs) == 1_719_216 and params["classifier"]["kernel"].shape == (64, 3)
  assert [params["backbone"][f"stage{s}_0"]["conv1"]["kernel"].shape[-1] for s in (1, 2, 3)] == [16, 32, 64]
  assert "stage1_17" in params["backbone"] and "stage1_18" not in params["backbone"]
  projection = jax.eval_shape(G.Grader(**G.PAPER, shortcut="projection").init, jax.random.key(0),
                              jnp.zeros((1, 3, 224, 224, 3), jnp.uint8))
  assert _count(projection["params"]) == 1_727_507 + 16 * 32 + 32 * 64 + 2 * (32 + 64)
  assert G.Grader().depth == 110 and G.Grader().width == 16 and G.Grader().stem_stride == 1  # defaults = paper


@pytest.fixture(scope="module")
def tiny():
  model = G.Grader(**TINY)
  views = jnp.asarray(np.random.default_rng(0).integers(0, 256, (2, 3, 16, 16, 3), dtype=np.uint8))
  variables = jax.jit(model.init)(key(0), views)
  return model, variables, views


def test_shapes_any_number_of_views_and_mean_fusion_is_order_free(tiny):
  model, variables, views = tiny
  logits = model.apply(variables, views)
  assert logits.shape == (2, 3) and logits.dtype == jnp.float32
  single = model.apply(variables, views[:, :1])  # V = 1 (ACNE04) with the triplet model's weights
  assert single.shape == (2, 3)
  np.testing.assert_allclose(model.apply(variables, views[:, ::-1]), logits, rtol=1e-5, atol=1e-6)
  # Mean fusion: the logits of one view repeated are that view's.
  np.testing.assert_allclose(model.apply(variables, jnp.repeat(views[:, :1], 3, axis=1)), single, rtol=1e-5, atol=1e-6)
  # Floats in 0-255 are the same input as uint8.
  np.testing.assert_allclose(model.apply(variables, views.astype(jnp.float32)), logits, rtol=1e-6, atol=1e-6)
  concat = G.Grader(**TINY, fusion="concat")
  concat_vars = jax.jit(concat.init)(key(0), views)
  assert concat_vars["params"]["classifier"]["kernel"].shape == (3 * 16, 3)
  assert concat.apply(concat_vars, views).shape == (2, 3)


def test_train_mode_uses_batch_statistics_and_dropout(tiny):
  model, variables, views = tiny
  a, updates = model.apply(variables, views, train=True, rngs={"dropout": key(1)}, mutable=["batch_stats"])
  b, _ = model.apply(variables, views, train=True, rngs={"dropout": key(2)}, mutable=["batch_stats"])
  assert a.shape == (2, 3) and not np.allclose(a, b)  # dropout differs by key
  changed = jax.tree.map(lambda x, y: bool(jnp.any(x != y)), updates["batch_stats"], variables["batch_stats"])
  assert all(jax.tree.leaves(changed))
  np.testing.assert_array_equal(model.apply(variables, views), model.apply(variables, views))  # eval: deterministic


def test_zero_pad_shortcut():
  block = G.CifarBasicBlock(8, stride=2)
  x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 5, 7, 4)), jnp.float32)
  variables = block.init(key(0), x, False)
  zero = jax.tree_util.tree_map_with_path(lambda p, v: jnp.zeros_like(v) if p[-1].key == "kernel" else v, variables)
  out = block.apply(zero, x, False)  # both convolutions 0: the block is ReLU(shortcut)
  expected = np.maximum(np.concatenate([np.asarray(x)[:, ::2, ::2], np.zeros((2, 3, 4, 4))], axis=-1), 0)
  assert out.shape == (2, 3, 4, 8)
  np.testing.assert_allclose(out, expected, atol=1e-6)
  with pytest.raises(ValueError, match="cannot reduce"):
    G.CifarBasicBlock(2, stride=1).init(key(0), x, False)


def test_bad_arguments():
  model = G.Grader(**TINY)
  with pytest.raises(ValueError, match=r"'views' must have shape \[B, V, H, W, 3\]"):
    model.init(jax.random.key(0), jnp.zeros((2, 16, 16, 3), jnp.uint8))
  with pytest.raises(ValueError, match="depth must be 6 n \\+ 2"):
    G.Grader(depth=21).init(jax.random.key(0), jnp.zeros((1, 1, 8, 8, 3), jnp.uint8))
  with pytest.raises(ValueError, match="fusion"):
    G.Grader(**TINY, fusion="max").init(jax.random.key(0), jnp.zeros((1, 1, 8, 8, 3), jnp.uint8))


def _torch_grader(variables, views, mean, std, stem_stride, shortcut):
  """The same network written with torch.nn.functional (NCHW, eval mode), from our variables."""
  p, s = variables["params"], variables["batch_stats"]
  t = lambda a: torch.as_tensor(np.asarray(a, np.float64))
  conv_w = lambda k: t(k).permute(3, 2, 0, 1)  # HWIO -> OIHW

  def bn(x, params, stats):
    return F.batch_norm(x, t(stats["mean"]), t(stats["var"]), t(params["scale"]), t(params["bias"]), False, 0.0, 1e-5)

  def conv_bn(x, p_conv, p_bn, s_bn, stride, k):
    return bn(F.conv2d(x, conv_w(p_conv["kernel"]), stride=stride, padding=k // 2), p_bn, s_bn)

  b, v = views.shape[:2]
  x = (t(views) - t(mean)) / t(std)
  x = x.reshape((b * v,) + views.shape[2:]).permute(0, 3, 1, 2)
  pb, sb = p["backbone"], s["backbone"]
  x = F.relu(conv_bn(x, pb["stem_conv"], pb["stem_bn"], sb["stem_bn"], 1, 3))
  if stem_stride > 1:
    pad = lambda n: max((-(-n // stem_stride) - 1) * stem_stride + stem_stride - n, 0)
    ph, pw = pad(x.shape[2]), pad(x.shape[3])
    x = F.max_pool2d(F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), value=-np.inf), stem_stride)
  names = sorted((n for n in pb if n.startswith("stage")), key=lambda n: (int(n[5]), int(n.split("_")[1])))
  for name in names:
    blk_p, blk_s = pb[name], sb[name]
    features = blk_p["conv1"]["kernel"].shape[-1]
    stride = 2 if (name.endswith("_0") and not name.startswith("stage1")) else 1
    y = F.relu(conv_bn(x, blk_p["conv1"], blk_p["bn1"], blk_s["bn1"], stride, 3))
    y = conv_bn(y, blk_p["conv2"], blk_p["bn2"], blk_s["bn2"], 1, 3)
    if stride != 1 or x.shape[1] != features:
      if shortcut == "projection":
        x = conv_bn(x, blk_p["downsample_conv"], blk_p["downsample_bn"], blk_s["downsample_bn"], stride, 1)
      else:
        x = F.pad(x[:, :, ::stride, ::stride], (0, 0, 0, 0, 0, features - x.shape[1]))
    x = F.relu(y + x)
  features = x.mean(dim=(2, 3)).reshape(b, v, -1).mean(dim=1)
  return (features @ t(p["classifier"]["kernel"]) + t(p["classifier"]["bias"])).numpy()


@pytest.mark.parametrize("stem_stride, shortcut, size", [(1, "zero_pad", 17), (4, "projection", 30)])
def test_matches_a_pytorch_recomputation(stem_stride, shortcut, size):
  rng = np.random.default_rng(3)
  mean, std = (120.0, 110.0, 100.0), (60.0, 55.0, 50.0)
  model = G.Grader(depth=14, width=4, stem_stride=stem_stride, shortcut=shortcut, mean=mean, std=std)
  views = rng.integers(0, 256, (2, 3, size, size, 3), dtype=np.uint8)
  variables = jax.jit(model.init)(key(1), jnp.asarray(views))
  # Running statistics and affine parameters away from their initial values, so they are tested too.
  variables = jax.tree_util.tree_map_with_path(
      lambda p, x: jnp.asarray(rng.uniform(0.5, 1.5, x.shape) if p[-1].key in ("var", "scale") else
                               (rng.normal(0, 0.1, x.shape) if p[-1].key in ("mean", "bias") else x), jnp.float32), variables)
  got = np.asarray(jax.jit(model.apply)(variables, jnp.asarray(views)))
  np.testing.assert_allclose(got, _torch_grader(variables, views, mean, std, stem_stride, shortcut), rtol=1e-4, atol=1e-4)
