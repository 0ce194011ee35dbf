"""PyTorch checkpoints in and out: ImageNet ResNets, MMDetection (with the SADH authors' RPN head,
DCN and the mask head), errors that list keys, ``python -m acne_jax.convert``, and training from
ImageNet weights on the AcneSCU path.

Each mapping is checked by running the PyTorch layer the checkpoint was saved from (torchvision's
modules, or a module tree named as MMDetection names it) next to ours on the same input.
"""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from acne_jax.interop import torch as interop
from acne_jax.testing import tiny

torch = pytest.importorskip("torch")
nn = torch.nn


def _randomise_batch_norms(module, seed=0):
  generator = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for m in module.modules():
      if isinstance(m, nn.BatchNorm2d):
        m.running_mean.uniform_(-0.2, 0.2, generator=generator)
        m.running_var.uniform_(0.5, 2.0, generator=generator)
        m.weight.uniform_(0.5, 1.5, generator=generator)
        m.bias.uniform_(-0.2, 0.2, generator=generator)
  return module


@pytest.fixture(scope="module")
def resnet50_file(tv, tmp_path_factory):
  """A torchvision ImageNet-layout ResNet-50 checkpoint (seeded random weights), its module and path."""
  torch.manual_seed(0)
  model = _randomise_batch_norms(tv.models.resnet50(weights=None)).eval()
  path = str(tmp_path_factory.mktemp("weights") / "resnet50.pth")
  torch.save(model.state_dict(), path)
  return model, path


def _backbone_variables(deformable, norm="frozen_bn"):
  from acne_jax.models.resnet import ResNet

  module = ResNet(50, 64, norm, deformable_stages=deformable)
  template = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3))))
  return module, {"params": {"backbone": template["params"]}, "batch_stats": {"backbone": template["batch_stats"]}}


@pytest.mark.parametrize("deformable,norm", [((False,) * 4, "frozen_bn"), ((False, True, True, True), "eval_bn")])
def test_imagenet_resnet_equals_torchvision(resnet50_file, deformable, norm):
  """C2-C5 of the converted weights equal torchvision's layer1-layer4 (DCN stages start as
  plain convolutions: their offsets are zero, which the ImageNet file does not set)."""
  model, path = resnet50_file
  module, template = _backbone_variables(deformable, norm)
  variables = interop.load_pretrained_backbone(template, path)
  if any(deformable):  # not in the file: kept from the template
    assert isinstance(variables["params"]["backbone"]["layer2_0"]["conv2"]["conv_offset"]["kernel"], jax.ShapeDtypeStruct)
  x = np.random.default_rng(0).normal(size=(2, 64, 64, 3)).astype(np.float32)
  params = variables["params"]["backbone"]
  if any(deformable):  # the template's offsets are abstract: give them their zero start
    params = jax.tree_util.tree_map(lambda v: jnp.zeros(v.shape, v.dtype) if isinstance(v, jax.ShapeDtypeStruct) else v, params)
  with jax.default_matmul_precision("highest"):
    ours = module.apply({"params": params, "batch_stats": variables["batch_stats"]["backbone"]}, x)
  with torch.no_grad():
    t = torch.from_numpy(x).permute(0, 3, 1, 2)
    t = model.maxpool(model.relu(model.bn1(model.conv1(t))))
    for index, layer in enumerate((model.layer1, model.layer2, model.layer3, model.layer4)):
      t = layer(t)
      theirs = t.permute(0, 2, 3, 1).numpy()
      diff = np.abs(np.asarray(ours[f"C{index + 2}"]) - theirs).max() / np.abs(theirs).max()
      assert diff <= 1e-4, (index, diff)


def test_checkpoint_errors_list_the_keys(resnet50_file, tmp_path):
  model, _ = resnet50_file
  _, template = _backbone_variables((False,) * 4)
  state = {k: v.numpy() for k, v in model.state_dict().items()}
  interop.from_state_dict(state, template, "resnet")  # fc.* (the classifier) is skipped on purpose
  broken = dict(state)
  del broken["layer3.2.bn1.running_var"]
  broken["layer5.0.conv1.weight"] = np.zeros((1, 1, 1, 1), np.float32)
  broken["layer1.0.conv2.weight"] = np.zeros((64, 64, 1, 1), np.float32)
  with pytest.raises(interop.StateDictMismatch) as error:
    interop.from_state_dict(broken, template, "resnet", source="resnet.pth")
  message = str(error.value)
  assert "resnet.pth" in message
  assert "missing 1: layer3.2.bn1.running_var" in message
  assert "unexpected 1: layer5.0.conv1.weight" in message
  assert "wrong shape 1: layer1.0.conv2.weight [64, 64, 1, 1]" in message
  # A ResNet-50 file for a ResNet-101 model.
  from acne_jax.models.resnet import ResNet

  deep = jax.eval_shape(lambda: ResNet(101, 64).init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3))))
  with pytest.raises(interop.StateDictMismatch, match=r"missing 255: layer3\.\d+\."):
    interop.from_state_dict(state, {"params": {"backbone": deep["params"]}, "batch_stats": {"backbone": deep["batch_stats"]}},
                            "resnet")


def test_missing_pretrained_file_says_where_to_download(tmp_path):
  with pytest.raises(FileNotFoundError, match=r"download\.pytorch\.org/models/resnet50-0676ba61\.pth"):
    interop.load_pretrained_backbone({}, str(tmp_path / "nowhere.pth"))
  not_a_checkpoint = tmp_path / "notes.pth"
  not_a_checkpoint.write_text("hello")
  with pytest.raises(ValueError, match="notes.pth is not a readable PyTorch checkpoint"):
    interop.read_state_dict(str(not_a_checkpoint))


# --------------------------------------------------------------------------------------------
# MMDetection: modules named as MMDetection and the SADH authors name them.


class SADHHeadMM(nn.Module):
  """The SADH authors' RPNHeadNwd layers (mmdet/models/dense_heads/rpn_head_nwd.py names)."""

  def __init__(self, channels, groups, anchors=3):
    super().__init__()
    self.cls_head = nn.Sequential(nn.Conv2d(channels, channels, 1), nn.GroupNorm(groups, channels), nn.ReLU())
    self.bbox_head = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.GroupNorm(groups, channels), nn.ReLU())
    self.rpn_cls = nn.Conv2d(channels, anchors, 1)
    self.rpn_nwd = nn.Conv2d(channels, anchors, 1)
    self.rpn_reg = nn.Conv2d(channels, anchors * 4, 1)

  def forward(self, x):
    c, r = self.cls_head(x), self.bbox_head(x)
    return self.rpn_cls(c), self.rpn_reg(r), self.rpn_nwd(r)


class ConvModule(nn.Module):
  def __init__(self, cin, cout, k):
    super().__init__()
    self.conv = nn.Conv2d(cin, cout, k, padding=k // 2)


class Shared2FCMM(nn.Module):
  def __init__(self, channels, roi, fc, classes):
    super().__init__()
    self.shared_fcs = nn.ModuleList([nn.Linear(channels * roi * roi, fc), nn.Linear(fc, fc)])
    self.fc_cls = nn.Linear(fc, classes + 1)
    self.fc_reg = nn.Linear(fc, classes * 4)

  def forward(self, x):
    x = x.flatten(1)
    for fc in self.shared_fcs:
      x = torch.relu(fc(x))
    return self.fc_cls(x), self.fc_reg(x)


class FCNMaskHeadMM(nn.Module):
  def __init__(self, channels, convs, classes):
    super().__init__()
    self.convs = nn.ModuleList([ConvModule(channels, channels, 3) for _ in range(convs)])
    self.upsample = nn.ConvTranspose2d(channels, channels, 2, stride=2)
    self.conv_logits = nn.Conv2d(channels, classes, 1)

  def forward(self, x):
    for module in self.convs:
      x = torch.relu(module.conv(x))
    return self.conv_logits(torch.relu(self.upsample(x)))


def _tiny_mask_sadh_config():
  from configs import mask_rcnn_sadh

  config = mask_rcnn_sadh.get_config("acne_scu")
  overrides = dict(tiny.TINY_MODEL)
  overrides.update({"backbone.depth": 50, "backbone.deformable_stages": (False, True, True, True), "backbone.norm": "eval_bn",
                    "roi_head.mask.num_convs": 4})
  return tiny.apply(config, overrides)


def _random_state(template, layout, roi_channels, seed=0):
  """A checkpoint with every key our model reads, drawn at random in PyTorch layouts."""
  rng = np.random.default_rng(seed)
  flat = {c: interop._flat(template[c]) for c in ("params", "batch_stats")}
  state = {}
  for leaf in interop.leaves(template, layout):
    value = rng.normal(size=flat[leaf.collection][leaf.path].shape).astype(np.float32) * 0.1
    if leaf.path[-1] == "var":
      value = np.abs(value) + 0.5
    state[leaf.key] = interop._from_flax(leaf.kind, value, roi_channels)
  return state


# Names copied from MMDetection 2.x / 3.x checkpoints and the SADH authors' code.
MMDET_KEYS = [
    "backbone.conv1.weight", "backbone.bn1.running_mean", "backbone.layer1.0.downsample.0.weight",
    "backbone.layer1.0.downsample.1.weight", "backbone.layer2.0.conv2.weight", "backbone.layer2.0.conv2.conv_offset.weight",
    "backbone.layer2.0.conv2.conv_offset.bias", "backbone.layer4.2.bn3.bias", "neck.lateral_convs.0.conv.weight",
    "neck.lateral_convs.3.conv.bias", "neck.fpn_convs.2.conv.weight", "rpn_head.cls_head.0.weight", "rpn_head.cls_head.1.weight",
    "rpn_head.bbox_head.0.weight", "rpn_head.bbox_head.1.bias", "rpn_head.rpn_cls.weight", "rpn_head.rpn_nwd.bias",
    "rpn_head.rpn_reg.weight", "roi_head.bbox_head.shared_fcs.0.weight", "roi_head.bbox_head.shared_fcs.1.bias",
    "roi_head.bbox_head.fc_cls.weight", "roi_head.bbox_head.fc_reg.weight", "roi_head.mask_head.convs.0.conv.weight",
    "roi_head.mask_head.convs.3.conv.bias", "roi_head.mask_head.upsample.weight", "roi_head.mask_head.conv_logits.weight",
]


@pytest.fixture(scope="module")
def mmdet_model(tv):
  from acne_jax.models.detector import TwoStageDetector, spec_from_config

  config = _tiny_mask_sadh_config()
  spec = spec_from_config(config.model)
  model = TwoStageDetector(spec)
  template = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3))))
  state = _random_state(template, "mmdet", spec.neck.channels)
  torch.manual_seed(0)
  channels, groups = spec.neck.channels, spec.rpn.gn_groups
  modules = {
      "rpn_head": SADHHeadMM(channels, groups),
      "roi_head.bbox_head": Shared2FCMM(channels, spec.roi_head.roi_size, spec.roi_head.box.fc_dim, spec.num_classes),
  }
  with torch.no_grad():
    for name, module in modules.items():
      for p in module.parameters():
        p.normal_(0, 0.1)
  return config, spec, template, state, modules


def test_mmdet_names(mmdet_model):
  _, _, _, state, _ = mmdet_model
  missing = [k for k in MMDET_KEYS if k not in state]
  assert not missing, missing


def test_mmdet_heads_equal_the_pytorch_layers(mmdet_model):
  from acne_jax.models.bbox_head import Shared2FCHead
  from acne_jax.models.rpn import SADHHead

  config, spec, template, state, modules = mmdet_model
  state = dict(state)
  for prefix, module in modules.items():
    for key, value in module.state_dict().items():
      state[f"{prefix}.{key}"] = value.numpy()
  variables = interop.from_state_dict(state, template, "mmdet")
  params = variables["params"]
  rng = np.random.default_rng(1)
  features = rng.normal(size=(2, 9, 11, spec.neck.channels)).astype(np.float32)
  with torch.no_grad():
    t = torch.from_numpy(features).permute(0, 3, 1, 2)
    cls, reg, nwd = modules["rpn_head"](t)
  r = spec.rpn
  head = SADHHead(3, spec.neck.channels, r.gn_groups, r.cls_kernel, r.reg_kernel, True)
  (ours,) = head.apply({"params": params["rpn"]}, [features])
  np.testing.assert_allclose(ours.cls_logits, cls.permute(0, 2, 3, 1).reshape(2, -1).numpy(), atol=1e-5)
  np.testing.assert_allclose(ours.nwd_logits, nwd.permute(0, 2, 3, 1).reshape(2, -1).numpy(), atol=1e-5)
  np.testing.assert_allclose(ours.deltas, reg.permute(0, 2, 3, 1).reshape(2, -1, 4).numpy(), atol=1e-5)

  rois = rng.normal(size=(5, 7, 7, spec.neck.channels)).astype(np.float32)
  with torch.no_grad():
    logits, deltas = modules["roi_head.bbox_head"](torch.from_numpy(rois).permute(0, 3, 1, 2))
  box = Shared2FCHead(spec.num_classes, spec.roi_head.box.fc_dim)
  ours_logits, ours_deltas = box.apply({"params": params["roi_head"]["box_head"]}, rois)
  np.testing.assert_allclose(ours_logits, logits.numpy(), atol=1e-5)
  np.testing.assert_allclose(np.asarray(ours_deltas).reshape(5, -1), deltas.numpy(), atol=1e-5)


def test_mmdet_mask_head_and_dcn_equal_the_pytorch_layers(tv, mmdet_model):
  from acne_jax.models.deform_conv import DeformConv
  from acne_jax.models.mask_head import FCNMaskHead

  config, spec, template, state, _ = mmdet_model
  torch.manual_seed(1)
  channels = spec.roi_head.mask.channels
  mask_head = FCNMaskHeadMM(channels, 4, spec.num_classes)
  offset_conv = nn.Conv2d(spec.backbone.width * 2, 18, 3, padding=1)
  with torch.no_grad():
    for p in list(mask_head.parameters()) + list(offset_conv.parameters()):
      p.normal_(0, 0.1)
    # The mask head reads RoIs of the neck's width: its first conv maps neck -> mask channels.
    mask_head.convs[0].conv = nn.Conv2d(spec.neck.channels, channels, 3, padding=1)
    mask_head.convs[0].conv.weight.normal_(0, 0.1)
  state = dict(state)
  for key, value in mask_head.state_dict().items():
    state[f"roi_head.mask_head.{key}"] = value.numpy()
  for key, value in offset_conv.state_dict().items():
    state[f"backbone.layer2.0.conv2.conv_offset.{key}"] = value.numpy()
  variables = interop.from_state_dict(state, template, "mmdet")
  rng = np.random.default_rng(2)
  rois = rng.normal(size=(3, 14, 14, spec.neck.channels)).astype(np.float32)
  with torch.no_grad():
    theirs = mask_head(torch.from_numpy(rois).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
  m = spec.roi_head.mask
  ours = FCNMaskHead(spec.num_classes, m.channels, m.num_convs).apply({"params": variables["params"]["roi_head"]["mask_head"]}, rois)
  np.testing.assert_allclose(ours, theirs, atol=1e-4)

  # DCN: layer2.0.conv2 (stride 2) of the checkpoint, run by torchvision's C++ deform_conv2d.
  dcn = variables["params"]["backbone"]["layer2_0"]["conv2"]
  x = rng.normal(size=(2, 12, 12, spec.backbone.width * 2)).astype(np.float32)
  weight = torch.from_numpy(state["backbone.layer2.0.conv2.weight"])
  with torch.no_grad():
    t = torch.from_numpy(x).permute(0, 3, 1, 2)
    expected = tv.ops.deform_conv2d(t, _strided_offsets(offset_conv, t), weight, stride=2, padding=1)
  layer = DeformConv(spec.backbone.width * 2, 3, 2, 1)
  ours = layer.apply({"params": dcn}, x)
  np.testing.assert_allclose(ours, expected.permute(0, 2, 3, 1).numpy(), atol=1e-4)


def _strided_offsets(offset_conv, t):
  """mmcv's DCN computes offsets with the main conv's stride (2 here)."""
  return nn.functional.conv2d(t, offset_conv.weight, offset_conv.bias, stride=2, padding=1)


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _overrides():
  overrides = dict(tiny.TINY_MODEL)
  overrides.update({"backbone.depth": 50, "backbone.deformable_stages": (False, True, True, True), "backbone.norm": "eval_bn",
                    "roi_head.mask.num_convs": 4})
  return tiny.flags(overrides)


def test_convert_cli_writes_a_workdir_evaluate_reads(mmdet_model, tmp_path):
  """``python -m acne_jax.convert --from=mmdet`` on an MMDetection-style file (``state_dict`` and
  ``meta``, DataParallel ``module.`` prefixes): ``evaluate`` restores exactly those weights."""
  from acne_jax import convert, evaluate

  config, spec, template, state, _ = mmdet_model
  path = tmp_path / "sadh_epoch_15.pth"
  torch.save({"meta": {"epoch": 15}, "state_dict": {f"module.{k}": torch.from_numpy(v) for k, v in state.items()}}, path)
  out = tmp_path / "converted"
  config_path = os.path.join(REPO, "configs", "mask_rcnn_sadh.py") + ":acne_scu"
  argv = ["convert", "--from=mmdet", f"--checkpoint={path}", f"--config={config_path}", *_overrides(), f"--out={out}"]
  assert convert.main(argv) == 0
  assert json.loads((out / "config.json").read_text())["model"]["backbone"]["deformable_stages"] == [False, True, True, True]
  restored, step, meta = evaluate.restore(config, str(out))
  assert step == 0 and meta["layout"] == "mmdet" and meta["converted_from"] == str(path)
  expected = interop.from_state_dict(state, template, "mmdet")
  for collection in ("params", "batch_stats"):
    ours, theirs = interop._flat(restored[collection]), interop._flat(expected[collection])
    assert ours.keys() == theirs.keys()
    for key in ours:
      np.testing.assert_array_equal(np.asarray(ours[key]), theirs[key], err_msg=str(key))
  assert convert.main(argv) == 1  # the workdir now holds a checkpoint: refused, nothing overwritten
  # A file of the wrong kind: a message naming the keys, exit code 1.
  torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, tmp_path / "resnet.pth")
  assert convert.main([*argv[:2], f"--checkpoint={tmp_path / 'resnet.pth'}", *argv[3:-1], f"--out={tmp_path / 'x'}"]) == 1


def test_sadh_acne_scu_trains_from_imagenet_weights(resnet50_file, tmp_path):
  """configs/sadh.py:acne_scu with backbone.pretrained: a generated AcneSCU release goes through
  the builder, the ImageNet ResNet-50 (with DCN c3-c5, eval-mode BN) loads, two steps train."""
  from acne_jax import train
  from acne_jax.data import synthetic
  from configs import sadh
  from tfds_builders.acne_scu import AcneScu, AcneScuConfig

  model, path = resnet50_file
  release = tmp_path / "release"
  synthetic.write_labelme_release(str(release), num_images=3, image_size=(300, 300), num_lesions=(3, 6))
  data_dir = tmp_path / "tfds"
  builder = AcneScu(config=AcneScuConfig(name="pretrained_crops_128", crop_size=128, test_fraction=0.0, validation_fraction=0.0),
                    data_dir=str(data_dir))
  builder.download_and_prepare(file_format="array_record", download_config=_download_config(release))
  config = sadh.get_config("acne_scu")
  assert config.model.backbone.deformable_stages == (False, True, True, True) and config.model.backbone.norm == "eval_bn"
  with config.unlocked():
    config.model.backbone.pretrained = path
    config.model.neck.channels = 32
    config.model.rpn.update(gn_groups=8, anchor_scales=(4.0,), train_nms_pre=100, train_max_proposals=32, test_nms_pre=100,
                            test_max_proposals=32)
    config.model.roi_head.box.update(fc_dim=32, num_samples=16, max_detections=20, pre_nms_top_k=64)
    config.data.update(builder_config="pretrained_crops_128", data_dir=str(data_dir), image_size=(128, 128), max_boxes=16,
                       worker_count=0, eval_split="train")
    config.train.update(batch_size=2, steps=2, epochs=0, log_every=1, checkpoint_every=2)
    config.optimizer.update(warmup_steps=0, decay_epochs=())
    config.eval.update(batch_size=2, calibration_split="")
  workdir = tmp_path / "run"
  train.train_and_evaluate(config, str(workdir), show_progress=False)
  losses = [json.loads(line)["loss"] for line in open(workdir / "metrics.jsonl") if '"loss"' in line]
  assert len(losses) == 2 and all(np.isfinite(losses))
  # The checkpoint's backbone is ImageNet's where training does not move it: frozen stem/stage 1
  # (frozen_stages=1) and the never-updated BN statistics.
  from acne_jax import evaluate

  variables, _ = evaluate.restore_variables(config, str(workdir))
  np.testing.assert_allclose(np.asarray(variables["params"]["backbone"]["stem_conv"]["kernel"]),
                             model.conv1.weight.detach().numpy().transpose(2, 3, 1, 0), rtol=1e-6)
  np.testing.assert_allclose(np.asarray(variables["batch_stats"]["backbone"]["layer3_0"]["bn2"]["var"]),
                             model.layer3[0].bn2.running_var.numpy(), rtol=1e-6)
  # A missing weight file stops the run at once, saying what to download.
  with config.unlocked():
    config.model.backbone.pretrained = str(tmp_path / "resnet50-0676ba61.pth")
  with pytest.raises(FileNotFoundError, match="download.pytorch.org"):
    train.train_and_evaluate(config, str(tmp_path / "run2"), show_progress=False)


def _download_config(release):
  import tensorflow_datasets as tfds

  return tfds.download.DownloadConfig(manual_dir=str(release))


def test_imagenet_resnet101_maps_every_key(tv):
  """torchvision's ResNet-101 layout fills our ResNet-101 (every key used, every shape right)."""
  from acne_jax.models.resnet import ResNet

  state = {k: v.numpy() for k, v in tv.models.resnet101(weights=None).state_dict().items()}
  template = jax.eval_shape(lambda: ResNet(101, 64).init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3))))
  variables = interop.from_state_dict(state, {"params": {"backbone": template["params"]},
                                              "batch_stats": {"backbone": template["batch_stats"]}}, "resnet")
  block = variables["params"]["backbone"]["layer3_22"]["conv2"]["kernel"]
  np.testing.assert_array_equal(block, state["layer3.22.conv2.weight"].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(variables["batch_stats"]["backbone"]["layer4_2"]["bn3"]["mean"], state["layer4.2.bn3.running_mean"])
