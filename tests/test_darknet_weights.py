"""Darknet ``.weights`` files into YOLOv4 (``acne_jax/interop/darknet.py``, issue 17 point 3).

References independent of the loader:

- the released files' sizes (``yolov4.weights`` 257,717,640 bytes, ``yolov4.conv.137``
  170,038,676) from our model's variable shapes alone (``jax.eval_shape``);
- a PyTorch interpreter of a darknet layer graph (conv + batch norm + mish / leaky / linear,
  route, shortcut, upsample, max pool, yolo), with a layer list written here after
  ``cfg/yolov4.cfg``'s sections (its relative routes included) for the thin model, reading a random
  file in darknet's format written here: the three ``[yolo]`` inputs must equal our model's raw
  head outputs with the loaded variables, so the layer order, the routes and the concatenation
  orders are darknet's;
- the cut file (yolov4.conv.137's kind), the stride-4 variant, a head for other classes and every
  error, by which variables equal the whole file's load and which keep their initialisation;
- two training steps through ``train_and_evaluate`` at learning rate 0 from a written file: the
  checkpoint holds the file's floats.
"""

import dataclasses

import flax.traverse_util
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from acne_jax import train
from acne_jax.interop import darknet
from acne_jax.models import yolo
from acne_jax.testing import tiny

ANCHORS_9 = ((6, 8), (10, 12), (14, 10), (16, 24), (24, 18), (30, 30), (40, 36), (50, 60), (60, 50))
NUM_CLASSES = 3
PREDICTION = 3 * (5 + NUM_CLASSES)
WIDTH, BLOCKS = 8, (1, 1, 1, 1, 1)  # configs/yolov4.py's CPU model
IMAGE = 64


# ------------------------------------------------------------------------- darknet graph, in torch


def yolov4_graph(width, blocks, prediction):
  """yolov4.cfg's sections after ``[net]`` at ``width`` / ``blocks``: ``("conv", filters, size,
  stride, batch_normalize, activation)``, ``("route", layers)``, ``("shortcut", from)``,
  ``("upsample", 2)``, ``("maxpool", size)``, ``("yolo",)``. Routes as the cfg writes them (relative),
  but for the two that name backbone layers by number (85, 54 in yolov4.cfg)."""
  net = []

  def add(*layer):
    net.append(layer)
    return len(net) - 1

  add("conv", width, 3, 1, True, "mish")
  stage_out = []
  for i, n in enumerate(blocks):
    c = width * 2 ** (i + 1)
    part = c if i == 0 else c // 2
    add("conv", c, 3, 2, True, "mish")  # downsample
    add("conv", part, 1, 1, True, "mish")
    add("route", (-2,))
    add("conv", part, 1, 1, True, "mish")
    for _ in range(n):
      add("conv", c // 2 if i == 0 else part, 1, 1, True, "mish")
      add("conv", part, 3, 1, True, "mish")
      add("shortcut", -3)
    add("conv", part, 1, 1, True, "mish")
    add("route", (-1, -(3 * n + 4)))  # yolov4.cfg: -1,-7 / -1,-10 / -1,-28 / -1,-28 / -1,-16
    stage_out.append(add("conv", c, 1, 1, True, "mish"))
  s = 16 * width
  add("conv", s, 1, 1, True, "leaky")
  add("conv", 2 * s, 3, 1, True, "leaky")
  add("conv", s, 1, 1, True, "leaky")
  add("maxpool", 5)
  add("route", (-2,))
  add("maxpool", 9)
  add("route", (-4,))
  add("maxpool", 13)
  add("route", (-1, -3, -5, -6))
  add("conv", s, 1, 1, True, "leaky")
  add("conv", 2 * s, 3, 1, True, "leaky")
  add("conv", s, 1, 1, True, "leaky")

  def five(f):
    for filters, size in ((f, 1), (2 * f, 3), (f, 1), (2 * f, 3), (f, 1)):
      add("conv", filters, size, 1, True, "leaky")

  for f, backbone in ((s // 2, stage_out[3]), (s // 4, stage_out[2])):
    add("conv", f, 1, 1, True, "leaky")
    add("upsample", 2)
    add("route", (backbone,))
    add("conv", f, 1, 1, True, "leaky")
    add("route", (-1, -3))
    five(f)
  first_head = len(net)  # yolov4.conv.137's cut: everything before the stride-8 head
  for level, f in enumerate((s // 4, s // 2, s)):
    if level:
      add("route", (-4,))
      add("conv", f, 3, 2, True, "leaky")
      add("route", (-1, -16) if level == 1 else (-1, -37))
      five(f)
    add("conv", 2 * f, 3, 1, True, "leaky")
    add("conv", prediction, 1, 1, False, "linear")
    add("yolo",)
  return net, first_head


def interpret(net, x, floats=None, rng=None):
  """Runs the graph on ``x`` ``[B, 3, H, W]``; the weights come from ``floats`` (darknet's order)
  or, with ``rng``, are drawn (and returned). Returns ``(yolo inputs, floats, {layer: float offset})``."""
  drawn, pos, starts, outputs, heads = [], 0, {}, [], []

  def take(n, draw):
    nonlocal pos
    if rng is not None:
      values = draw(n).astype(np.float32)
      drawn.append(values)
    else:
      values = floats[pos:pos + n]
      assert values.size == n, "the file ran out"
    pos += n
    return torch.from_numpy(np.ascontiguousarray(values))

  for index, layer in enumerate(net):
    kind = layer[0]
    if kind == "conv":
      _, n, size, stride, bn, act = layer
      c = x.shape[1]
      starts[index] = pos
      bias = take(n, lambda m: rng.normal(0, 0.1, m))
      if bn:
        scale = take(n, lambda m: rng.uniform(0.8, 1.2, m))
        mean = take(n, lambda m: rng.normal(0, 0.1, m))
        var = take(n, lambda m: rng.uniform(0.5, 1.5, m))
      # He-scaled, so that the signal neither vanishes nor explodes through the ~70 layers.
      weight = take(n * c * size * size, lambda m: rng.normal(0, (2 / (c * size * size)) ** 0.5, m)).reshape(n, c, size, size)
      x = F.conv2d(x, weight, None if bn else bias, stride, size // 2)
      if bn:
        x = F.batch_norm(x, mean, var, scale, bias, training=False, eps=1e-5)
      x = {"mish": F.mish, "leaky": lambda t: F.leaky_relu(t, 0.1), "linear": lambda t: t}[act](x)
    elif kind == "route":
      x = torch.cat([outputs[i if i >= 0 else index + i] for i in layer[1]], dim=1)
    elif kind == "shortcut":
      x = x + outputs[index + layer[1]]
    elif kind == "upsample":
      x = F.interpolate(x, scale_factor=layer[1], mode="nearest")
    elif kind == "maxpool":
      x = F.max_pool2d(x, layer[1], 1, layer[1] // 2)
    elif kind == "yolo":
      heads.append(x)
    outputs.append(x)
  if rng is None:
    assert pos == floats.size, f"{floats.size - pos} floats left over"
    return heads, floats, starts
  return heads, np.concatenate(drawn), starts


def write_weights(path, floats, major=0, minor=2, revision=5, seen=32013312):
  with open(path, "wb") as f:
    np.asarray([major, minor, revision], "<i4").tofile(f)
    np.asarray([seen], "<u8" if major * 10 + minor >= 2 else "<i4").tofile(f)
    np.asarray(floats, "<f4").tofile(f)
  return str(path)


@pytest.fixture(scope="module")
def thin_file(tmp_path_factory):
  """A random darknet file of the thin yolov4.cfg (``PREDICTION`` outputs per head), its floats,
  the graph, its first head's layer and each convolution's float offset."""
  net, first_head = yolov4_graph(WIDTH, BLOCKS, PREDICTION)
  x = torch.zeros(1, 3, IMAGE, IMAGE)
  _, floats, starts = interpret(net, x, rng=np.random.default_rng(0))
  path = write_weights(tmp_path_factory.mktemp("darknet") / "thin.weights", floats)
  return dict(path=path, floats=floats, net=net, first_head=first_head, starts=starts)


# ------------------------------------------------------------------------------------ the model


def thin_spec(**changes):
  return dataclasses.replace(yolo.YoloSpec(num_classes=NUM_CLASSES, width=WIDTH, stage_blocks=BLOCKS, anchors=ANCHORS_9), **changes)


def drawn_variables(spec, seed=1):
  """Variables drawn by shape with NumPy (no initialiser compile), as the model's initialisation."""
  model = yolo.YOLOv4(spec)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, IMAGE, IMAGE, 3)), method="raw_outputs"))
  return {c: tiny.draw_parameters(shapes[c], np.random.default_rng(seed), 0.1) for c in ("params", "batch_stats")}


def flat(variables):
  return {f"{c}/{k}": np.asarray(v) for c in ("params", "batch_stats")
          for k, v in flax.traverse_util.flatten_dict(variables[c], sep="/").items()}


def raw_outputs(spec, variables, images):
  fn = lambda v, x: yolo.YOLOv4(spec).apply(v, x, method="raw_outputs")  # noqa: E731
  return jax.jit(fn).lower(variables, images).compile(compiler_options={"xla_backend_optimization_level": 0})(variables, images)


def split_loaded(before, after):
  """Names of the leaves ``after`` changed and of those it kept."""
  a, b = flat(before), flat(after)
  return {k for k in a if not np.array_equal(a[k], b[k])}, {k for k in a if np.array_equal(a[k], b[k])}


# ---------------------------------------------------------------------------------------- tests


def test_released_file_sizes_from_the_model_shapes():
  """yolov4.weights and yolov4.conv.137 (20-byte headers) hold exactly our full model's variables,
  and those of its backbone, SPP and top-down path."""
  spec = yolo.YoloSpec()  # width 32, blocks (1, 2, 8, 8, 4), 80 classes, 3 anchors per level
  shapes = jax.eval_shape(lambda: yolo.YOLOv4(spec).init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)), method="raw_outputs"))
  sizes = {f"{c}/{k}": int(np.prod(v.shape)) for c in ("params", "batch_stats")
           for k, v in flax.traverse_util.flatten_dict(shapes[c], sep="/").items()}
  assert 20 + 4 * sum(sizes.values()) == 257717640
  top_down = ("neck/reduce_s16", "neck/lateral_s16", "neck/top_down_s16_", "neck/reduce_s8", "neck/lateral_s8", "neck/top_down_s8_")
  upto_137 = sum(n for k, n in sizes.items() if k.split("/", 1)[1].startswith(("backbone/", "spp/") + top_down))
  assert 20 + 4 * upto_137 == 170038676
  # The loader's layout says the same, and names both files by their size.
  layers = darknet.yolov4_layers(32, (1, 2, 8, 8, 4))
  assert (darknet.layout_floats(layers), darknet.layout_floats(layers, upto=137)) == (sum(sizes.values()), upto_137)
  assert darknet.identify(upto_137) == "yolov4.cfg at width 32, blocks (1, 2, 8, 8, 4) up to darknet layer 136 (neck/top_down_s8_4)"
  assert "255 = 3 x (5 + 80)" in darknet.identify(sum(sizes.values()))


def test_raw_outputs_equal_the_torch_darknet_graph(thin_file):
  spec = thin_spec()
  variables, plan = darknet.load_variables(drawn_variables(spec), spec, thin_file["path"])
  assert all(plan.load) and plan.messages == [] and plan.header.seen == 32013312
  images = np.random.default_rng(2).uniform(0, 1, (2, IMAGE, IMAGE, 3)).astype(np.float32)
  with torch.no_grad():
    heads, _, _ = interpret(thin_file["net"], torch.from_numpy(images.transpose(0, 3, 1, 2).copy()), thin_file["floats"])
  ours = raw_outputs(spec, variables, jnp.asarray(images))
  assert len(heads) == len(ours) == 3
  for theirs, mine in zip(heads, ours):
    b, _, h, w = theirs.shape
    expected = theirs.numpy().transpose(0, 2, 3, 1).reshape(b, h, w, 3, 5 + NUM_CLASSES)
    assert mine.shape == expected.shape
    np.testing.assert_allclose(np.asarray(mine), expected, rtol=1e-4, atol=1e-4)
    assert np.abs(expected).max() > 0.1  # the heads carry signal, not a vanished product


def _cut(thin_file, tmp_path, floats, name="cut.weights"):
  return write_weights(tmp_path / name, thin_file["floats"][:floats])


def test_a_cut_file_loads_backbone_spp_and_top_down_and_leaves_the_heads(thin_file, tmp_path):
  spec = thin_spec()
  init = drawn_variables(spec)
  whole, _ = darknet.load_variables(init, spec, thin_file["path"])
  path = _cut(thin_file, tmp_path, thin_file["starts"][thin_file["first_head"]])  # yolov4.conv.137's kind
  cut, plan = darknet.load_variables(init, spec, path)
  changed, kept = split_loaded(init, cut)
  tops = lambda k: k.split("/")[1]  # noqa: E731
  assert {tops(k) for k in changed} == {"backbone", "spp", "neck"}
  assert all(k.split("/")[2].startswith(("reduce", "lateral", "top_down")) for k in changed if tops(k) == "neck")
  assert {k for k in kept if tops(k) == "neck"} and all(tops(k) != "backbone" for k in kept)
  whole_flat, cut_flat = flat(whole), flat(cut)
  assert all(np.array_equal(whole_flat[k], cut_flat[k]) for k in changed)
  assert len(plan.loaded) == sum(l[0] == "conv" for l in thin_file["net"][:thin_file["first_head"]])
  assert any(f"head_s8/conv (layer {thin_file['first_head']}) on, the model keeps its initialisation" in m for m in plan.messages)


def test_the_stride4_variant_loads_what_it_shares_with_yolov4(thin_file):
  whole, _ = darknet.load_variables(drawn_variables(thin_spec()), thin_spec(), thin_file["path"])
  spec = thin_spec(head_strides=(4, 16, 32))
  init = drawn_variables(spec)
  loaded, plan = darknet.load_variables(init, spec, thin_file["path"])
  changed, _ = split_loaded(init, loaded)
  neck = {k.split("/")[2] for k in changed if k.split("/")[1] == "neck"}
  assert {k.split("/")[1] for k in changed} == {"backbone", "spp", "neck"}
  # The stride-16 top-down level is yolov4.cfg's; the stride-4 one (on C2) is not.
  assert neck == {"reduce_s16", "lateral_s16"} | {f"top_down_s16_{i}" for i in range(5)}
  whole_flat, loaded_flat = flat(whole), flat(loaded)
  assert all(np.array_equal(whole_flat[k], loaded_flat[k]) for k in changed)
  assert any("the model differs from yolov4.cfg (this model: neck/reduce_s4" in m and "yolov4.cfg: neck/reduce_s8" in m
             for m in plan.messages)
  backbone_only, plan = darknet.load_variables(init, spec, thin_file["path"], layers="backbone")
  assert {k.split("/")[1] for k in split_loaded(init, backbone_only)[0]} == {"backbone"}
  assert any("CSPDarknet53 only" in m for m in plan.messages)


def test_a_head_for_other_classes_keeps_its_initialisation_and_the_rest_loads(thin_file):
  whole, _ = darknet.load_variables(drawn_variables(thin_spec()), thin_spec(), thin_file["path"])
  spec = thin_spec(num_classes=8)
  init = drawn_variables(spec)
  loaded, plan = darknet.load_variables(init, spec, thin_file["path"])
  changed, kept = split_loaded(init, loaded)
  assert kept == {f"params/head_s{s}/pred/{leaf}" for s in (8, 16, 32) for leaf in ("kernel", "bias")}
  whole_flat, loaded_flat = flat(whole), flat(loaded)
  assert all(np.array_equal(whole_flat[k], loaded_flat[k]) for k in changed)
  assert sum("the file predicts 24 = 3 x (5 + 3) outputs per cell, this model 39 = 3 x (5 + 8)" in m
             for m in plan.messages) == 3


def test_errors_name_the_file_and_the_fix(thin_file, tmp_path):
  spec = thin_spec()
  floats, starts, net = thin_file["floats"], thin_file["starts"], thin_file["net"]
  with pytest.raises(FileNotFoundError, match=r"nothing\.weights does not exist.*yolov4\.conv\.137.*model\.pretrained=''"):
    darknet.plan(str(tmp_path / "nothing.weights"), spec)
  (tmp_path / "short.weights").write_bytes(b"\0" * 10)
  with pytest.raises(darknet.DarknetWeightsError, match=r"short\.weights holds 10 bytes, less than a darknet weights header"):
    darknet.plan(str(tmp_path / "short.weights"), spec)
  (tmp_path / "odd.weights").write_bytes(np.asarray([0, 2, 0, 0, 0], "<i4").tobytes() + b"\0\0\0")
  with pytest.raises(darknet.DarknetWeightsError, match="not whole float32 values"):
    darknet.plan(str(tmp_path / "odd.weights"), spec)
  # Cut inside the second stage's downsampling convolution (darknet layer 11, as in yolov4.cfg).
  down2 = [i for i, l in enumerate(net) if l[0] == "conv" and l[3] == 2][1]
  assert down2 == 11
  path = _cut(thin_file, tmp_path, starts[down2] + 5, "mid.weights")
  with pytest.raises(darknet.DarknetWeightsError, match=r"mid\.weights ends inside darknet layer 11 \(backbone/stage2/down: "
                     r"3x3/2 conv \[32, 16, 3, 3\], 4736 floats\): 5 of its floats"):
    darknet.plan(path, spec)
  # Cut inside the neck: the backbone alone still loads, and says where the file ended.
  reduce = next(i for i, l in enumerate(net) if l[0] == "upsample") - 1  # the first top-down 1x1
  path = _cut(thin_file, tmp_path, starts[reduce] + 3, "neck.weights")
  with pytest.raises(darknet.DarknetWeightsError, match=f"ends inside darknet layer {reduce} \\(neck/reduce_s16"):
    darknet.plan(path, spec)
  assert any(f"ends inside darknet layer {reduce}" in m for m in darknet.plan(path, spec, "backbone").messages)
  longer = write_weights(tmp_path / "longer.weights", np.concatenate([floats, np.ones(7, np.float32)]))
  with pytest.raises(darknet.DarknetWeightsError, match=r"longer\.weights holds 7 floats more than yolov4\.cfg at width 8, "
                     r"blocks \(1, 1, 1, 1, 1\).*is it yolov4-tiny"):
    darknet.plan(longer, spec)
  # The file of another width: named, with the settings to change.
  with pytest.raises(darknet.DarknetWeightsError, match=r"the size of a whole yolov4\.cfg at width 8, blocks \(1, 1, 1, 1, 1\), "
                     r"24 = 3 x \(5 \+ 3\) prediction outputs, not of yolov4\.cfg at this model's width 4.*--config\.model\.width"):
    darknet.plan(thin_file["path"], thin_spec(width=4))
  # A file of yolov4.conv.137's size (sparse: only the header is written) into the thin model.
  with open(tmp_path / "yolov4.conv.137", "wb") as f:
    f.write(np.asarray([0, 2, 5, 0, 0], "<i4").tobytes())
    f.truncate(170038676)
  with pytest.raises(darknet.DarknetWeightsError, match=r"up to darknet layer 136 \(neck/top_down_s8_4\), not of yolov4\.cfg at "
                     r"this model's width 8.*--config\.model\.width=32 --config\.model\.stage_blocks=\"\(1,2,8,8,4\)\""):
    darknet.plan(str(tmp_path / "yolov4.conv.137"), spec)
  with pytest.raises(darknet.DarknetWeightsError, match=r"model\.norm='gn' has no place for them; set --config\.model\.norm=bn"):
    darknet.plan(thin_file["path"], thin_spec(norm="gn"))
  with pytest.raises(ValueError, match="model.pretrained_layers must be 'all' or 'backbone'"):
    thin_spec(pretrained_layers="neck")


def test_old_header_and_frozen_norm(thin_file, tmp_path):
  """A version 0.1 header (32-bit images seen, 16 bytes) and a ``frozen_bn`` model (all four
  statistics in batch_stats) load the same numbers."""
  path = write_weights(tmp_path / "old.weights", thin_file["floats"], major=0, minor=1, seen=7)
  bn, _ = darknet.load_variables(drawn_variables(thin_spec()), thin_spec(), thin_file["path"])
  frozen, plan = darknet.load_variables(drawn_variables(thin_spec(norm="frozen_bn")), thin_spec(norm="frozen_bn"), path)
  assert (plan.header.num_bytes, plan.header.seen) == (16, 7)
  stem_bn = {leaf: bn[c]["backbone"]["stem"]["norm"][leaf] for c, leaf in
             (("params", "scale"), ("params", "bias"), ("batch_stats", "mean"), ("batch_stats", "var"))}
  for leaf, value in stem_bn.items():
    np.testing.assert_array_equal(frozen["batch_stats"]["backbone"]["stem"]["norm"][leaf], value)
  first = thin_file["floats"][:4 * WIDTH].reshape(4, WIDTH)  # biases, scales, rolling mean, rolling variance
  for leaf, row in zip(("bias", "scale", "mean", "var"), first):
    np.testing.assert_array_equal(stem_bn[leaf], row)


# ------------------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
  from tfds_builders.synthetic_ct import __main__ as ct_cli
  from tfds_builders.synthetic_ct import dataset_folder

  root = tmp_path_factory.mktemp("tfds")
  assert ct_cli.main(["--out", dataset_folder(str(root), "tiny"), "--set", "tiny"]) == 0
  return str(root)


def test_training_starts_from_the_file(data_root, tmp_path, capsys):
  """Two steps at learning rate 0 from a darknet file with COCO-sized heads: the checkpoint holds
  the file's floats (the stem's, read here by position) and the heads' initialisation."""
  from configs import yolov4
  from acne_jax import evaluate

  width = 2
  net, _ = yolov4_graph(width, BLOCKS, 3 * (5 + 80))
  _, floats, starts = interpret(net, torch.zeros(1, 3, 64, 64), rng=np.random.default_rng(3))
  path = write_weights(tmp_path / "coco_like.weights", floats)
  config = yolov4.get_config("416")
  with config.unlocked():
    config.data.update(ct_set="tiny", data_dir=data_root, image_size=(128, 128), resize_min_size=128, resize_max_size=128)
    config.model.update(width=width, max_detections=20, pre_nms_top_k=200, max_proposals=50, pretrained="missing.weights")
    config.train.update(batch_size=2, steps=2, log_every=1, checkpoint_every=2, keep_checkpoints=1)
    config.optimizer.update(lr=0.0, warmup_steps=0, decay_steps=())
    config.eval.update(batch_size=2, calibration_split="")
  # A missing file fails before any data is read (here: a data folder that does not exist).
  with config.unlocked():
    config.data.data_dir = str(tmp_path / "no_data")
  with pytest.raises(FileNotFoundError, match=r"model\.pretrained: .*missing\.weights does not exist"):
    train.train_and_evaluate(config, str(tmp_path / "missing"), show_progress=False)
  with config.unlocked():
    config.data.data_dir = data_root
    config.model.pretrained = path
  workdir = str(tmp_path / "run")
  train.train_and_evaluate(config, workdir, show_progress=False)
  printed = capsys.readouterr().out
  convs = sum(l[0] == "conv" for l in net)
  assert f"darknet weights {path} (version 0.2.5, 32013312 images seen): {convs - 3} convolutional layers loaded" in printed
  assert f"head_s32/pred (darknet layer {len(net) - 2}) keeps its initialisation: the file predicts 255 = 3 x (5 + 80)" in printed
  assert "--config.data.mean=0,0,0 --config.data.std=255,255,255" in printed  # the CT config's mean / std are 50
  variables, step, _ = evaluate.restore(config, workdir)
  assert step == 2
  stem = variables["params"]["backbone"]["stem"]
  n = width
  np.testing.assert_array_equal(stem["norm"]["bias"], floats[:n])
  np.testing.assert_array_equal(stem["norm"]["scale"], floats[n:2 * n])
  np.testing.assert_array_equal(stem["conv"]["kernel"], floats[4 * n:4 * n + n * 27].reshape(n, 3, 3, 3).transpose(2, 3, 1, 0))
  # The last five-convolution layer before the stride-32 head (after two heads with other shapes).
  fuse = variables["params"]["neck"]["bottom_up_s32_4"]["conv"]["kernel"]
  last = len(net) - 4  # ..., five convolutions, head 3x3, prediction, yolo
  c_in, n_out = 32 * width, 16 * width
  assert fuse.shape == (1, 1, c_in, n_out) and net[last][:3] == ("conv", n_out, 1)
  begin = starts[last] + 4 * n_out
  np.testing.assert_array_equal(fuse, floats[begin:begin + n_out * c_in].reshape(n_out, c_in, 1, 1).transpose(2, 3, 1, 0))
  # Resuming with another model.pretrained is allowed: the file is read only at the start.
  with config.unlocked():
    config.model.pretrained = str(tmp_path / "gone.weights")
  train.check_resumable(train.check_workdir(workdir), config)
