"""End-to-end training on the tiny synthetic configuration: learning, exact resume, bad input.

Compiling a train step dominates these tests, so they share one tiny model and the run's
persistent compilation cache (conftest.py).
"""

import functools
import json
import math
import os
import stat

import jax
import numpy as np
import pytest

from acne_jax import train
from acne_jax.testing import tiny
from configs import sadh


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("tfds"))


def tiny_config(data_dir, **train_overrides):
  config = sadh.get_config()
  with config.unlocked():
    config.data.builder_config = "tiny"
    config.data.data_dir = data_dir
    config.data.image_size = (96, 96)
    config.data.max_boxes = 8
    config.model.roi_head.box.max_detections = 50
  tiny.apply(config)
  with config.unlocked():
    config.train.update(batch_size=2, steps=4, log_every=1, checkpoint_every=2, keep_checkpoints=5)
    config.optimizer.update(warmup_steps=0, decay_steps=())
    config.eval.batch_size = 2
    config.train.update(train_overrides)
  return config


def read_losses(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  return {r["step"]: r["loss"] for r in rows if "loss" in r}


def test_a_run_writes_its_files_and_evaluate_reproduces_its_numbers(data_dir, tmp_path, monkeypatch):
  straight = str(tmp_path / "straight")
  metrics = train.train_and_evaluate(tiny_config(data_dir), straight, show_progress=False)
  assert set(metrics) >= {"AP@0.5", "AR@0.5", "AP_s@0.5", "AP_m@0.5", "AP_l@0.5", "AR@100", "AR@300", "AR@1000"}
  for name in ("config.json", "metrics_test.json", "detections_test.json"):
    assert os.path.exists(os.path.join(straight, name))
  assert os.listdir(os.path.join(straight, "tensorboard"))

  # Re-evaluating the final checkpoint reproduces the training run's numbers.
  from acne_jax import evaluate

  from acne_jax import datasets

  monkeypatch.chdir(tmp_path)  # a relative workdir, as typed on a command line
  opened = []
  open_split = datasets.source
  monkeypatch.setattr(datasets, "source", lambda data, split, *args: opened.append(split) or open_split(data, split, *args))
  again = evaluate.evaluate_workdir(tiny_config(data_dir), "straight", proposal_limits=(10, 64, 100, 300, 1000))
  assert opened == ["test"]  # only the evaluation split is opened (and decoded)
  for name, value in metrics.items():
    assert again[name] == pytest.approx(value, abs=1e-9), name
  assert 0.0 <= again["AR@10"] <= again["AR@64"] <= 1.0
  assert os.path.exists(os.path.join(straight, "eval_test.json"))
  # The COCO files it writes give the same numbers through the files mode.
  from_files, _ = evaluate.evaluate_files(os.path.join("straight", "ground_truth_test.json"),
                                          os.path.join("straight", "detections_test.json"))
  assert from_files["AP@0.5"] == pytest.approx(metrics["AP@0.5"], abs=1e-12)

  # The final checkpoint carries the counting thresholds calibrated on the validation split.
  with open(os.path.join(straight, "operating_point.json")) as f:
    stored = json.load(f)
  assert stored["step"] == 4 and stored["split"] == "validation" and stored["images"] == 2
  _, step, meta = evaluate.restore(tiny_config(data_dir), "straight")
  assert step == 4 and meta["operating_point"]["per_class"] == stored["per_class"]
  # Resuming after an interruption: tests/test_preemption.py (SIGTERM and SIGKILL, bit for bit).


def test_streaming_pipeline_resumes_exactly(data_dir, tmp_path):
  """The grain pipeline's position is checkpointed with the state: resuming continues the stream."""

  def config(steps):
    c = tiny_config(data_dir, steps=steps)
    with c.unlocked():
      c.data.update(vflip=True)
    return c

  straight, interrupted = str(tmp_path / "straight"), str(tmp_path / "interrupted")
  train.train_and_evaluate(config(4), straight, show_progress=False)
  train.train_and_evaluate(config(2), interrupted, show_progress=False)
  train.train_and_evaluate(config(4), interrupted, show_progress=False)
  expected, resumed = read_losses(straight), read_losses(interrupted)
  for step in (3, 4):
    assert resumed[step] == pytest.approx(expected[step], rel=1e-6, abs=1e-6), step


def test_loss_falls_on_a_fixed_batch(data_dir):
  """~30 steps on one batch (the tiny model, plain SGD) must cut the loss clearly."""
  import jax.numpy as jnp

  from acne_jax import datasets
  from acne_jax.models.detector import TwoStageDetector, spec_from_config
  from acne_jax.training import optim

  config = tiny_config(data_dir)
  with config.unlocked():
    config.data.hflip = False
  train_source, _ = datasets.source(config.data, config.data.train_split)
  first = next(train.make_streaming_loader(config, train_source, 2))
  batch = {k: jnp.asarray(v) for k, v in first.items() if k in ("image", "boxes", "labels", "valid")}
  spec = spec_from_config(config.model)
  model = TwoStageDetector(spec, train=True)
  opt = dict(lr=0.02, momentum=0.9, weight_decay=0.0, warmup_steps=0, warmup_ratio=1.0, decay_steps=[], decay_factor=1.0, grad_clip_norm=10.0)
  tx, schedule = optim.make_optimizer(opt, None)
  state = train.initial_state(model, tx, jax.random.key(0), (96, 96), 8, 2)
  step = jax.jit(train.make_train_step(model, tx, schedule, config.data.mean, config.data.std, False))
  losses = []
  for _ in range(30):
    state, metrics = step(state, batch, jax.random.key(1))
    losses.append(float(metrics["loss"]))
  assert all(math.isfinite(l) for l in losses)
  assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:3]), losses


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(data_dir, tmp_path, monkeypatch):
  from acne_jax.data import pipeline
  from acne_jax.training.checkpoint import Checkpointer

  original = pipeline.StreamingLoader.__next__
  served = []

  def poisoned(self):
    batch = original(self)
    served.append(1)
    if len(served) >= 5:  # the 5th step's batch has NaN boxes: its loss is NaN
      batch["boxes"] = np.full_like(batch["boxes"], np.nan)
    return batch

  monkeypatch.setattr(pipeline.StreamingLoader, "__next__", poisoned)
  workdir = str(tmp_path / "nan")
  with pytest.raises(FloatingPointError, match=r"non-finite loss \(nan\) at step 5; .*checkpoint \(step 3\)"):
    train.train_and_evaluate(tiny_config(data_dir, steps=10, checkpoint_every=1), workdir, show_progress=False)
  # Step 5's loss is computed on the state after 4 updates, which therefore is not known to be good:
  # the newest checkpoint is the state after 3 updates, and nothing after it was written.
  assert Checkpointer(os.path.join(workdir, "checkpoints")).latest_step() == 3


def test_the_loop_waits_for_the_device_only_at_its_syncs(data_dir, tmp_path, monkeypatch):
  """Steps run ahead of the host: metrics are fetched after the first step, every log_every
  steps and at the end, several steps at once; nothing else pulls a value back while training."""
  fetches = []
  original = train.fetch_metrics

  def counted(pending):
    fetches.append([step for step, _ in pending])
    return original(pending)

  monkeypatch.setattr(train, "fetch_metrics", counted)
  workdir = str(tmp_path / "run")
  with jax.transfer_guard_device_to_host("disallow"):  # an implicit pull (float(loss)) would raise
    train.train_and_evaluate(tiny_config(data_dir, steps=7, log_every=3, checkpoint_every=100), workdir, show_progress=False)
  assert fetches == [[1], [2, 3], [4, 5, 6], [7]]
  assert sorted(read_losses(workdir)) == [3, 6, 7]  # the logged steps, from the fetched metrics


def test_unwritable_workdir_fails_before_training(tmp_path):
  locked = tmp_path / "locked"
  locked.mkdir()
  locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
  if os.access(locked, os.W_OK):  # running as root: permissions do not bind, use a file as the parent
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    target = str(blocker / "workdir")
  else:
    target = str(locked / "workdir")
  with pytest.raises(train.WorkdirError, match="not writable.*--workdir"):
    train.check_workdir(target)


def test_cli_reports_mistyped_config_key(capsys, tmp_path):
  code = train.main(["train", "--config=configs/sadh.py", "--config.train.stepz=3", f"--workdir={tmp_path}"])
  assert code == 2
  err = capsys.readouterr().err
  assert "unknown config key 'train.stepz'" in err and "did you mean 'train.steps'" in err


def test_unknown_model_key_is_named():
  from acne_jax.models.detector import spec_from_config

  with pytest.raises(ValueError, match=r"unknown config key\(s\) 'model.rpn.haed' \(did you mean 'model.rpn.head'\?\); "
                                       r"section 'model.rpn' has"):
    spec_from_config({"rpn": {"haed": "sadh"}})
  with pytest.raises(ValueError, match=r"'model.rpn_head'"):  # the old flat layout names the section it is not in
    spec_from_config({"rpn_head": "sadh"})


def test_cli_names_a_mistyped_nested_key_with_its_section(capsys, tmp_path):
  code = train.main(["train", "--config=configs/sadh.py", "--config.model.roi_head.box.fc_dimm=3", f"--workdir={tmp_path}"])
  assert code == 2
  err = capsys.readouterr().err
  assert "unknown config key 'model.roi_head.box.fc_dimm'" in err and "did you mean 'model.roi_head.box.fc_dim'" in err


def test_acne_scu_without_data_says_where_and_how(tmp_path, capsys):
  code = train.main(["train", "--config=configs/sadh.py:acne_scu", f"--workdir={tmp_path / 'w'}", f"--config.data.data_dir={tmp_path}",
                     "--config.model.backbone.pretrained="])
  assert code == 1
  err = capsys.readouterr().err
  assert "acne_scu" in err and "--manual_dir" in err and str(tmp_path) in err and "pingguokiller/acnedetection" in err


def test_default_workdirs_differ_per_data_set():
  assert train.default_workdir("configs/sadh.py") == os.path.join("workdir", "sadh")
  assert train.default_workdir("configs/sadh.py:synthetic") == os.path.join("workdir", "sadh")
  assert train.default_workdir("configs/faster_rcnn.py:acne_scu") == os.path.join("workdir", "faster_rcnn_acne_scu")


def test_a_workdir_of_another_model_is_refused_before_training(tmp_path, data_dir):
  workdir = tmp_path / "run"
  (workdir / "checkpoints" / "2").mkdir(parents=True)
  config = tiny_config(data_dir)
  (workdir / "config.json").write_text(config.to_json_best_effort())
  train.check_resumable(str(workdir), config)  # the same model: resumable
  with config.unlocked():
    config.model.neck.channels = 32
  with pytest.raises(train.WorkdirError, match=r"different model \(model.neck.channels: 16 there, 32 now\).*--workdir"):
    train.check_resumable(str(workdir), config)


def test_backbone_and_neck_pretrained_from_an_acne_jax_run(tmp_path):
  """``model.backbone.pretrained`` naming a workdir loads only its backbone (``model.neck.pretrained``
  only its neck); a different backbone, or a missing part, is named."""
  from acne_jax.training.checkpoint import Checkpointer

  rng = np.random.default_rng(0)
  saved = {"params": {"backbone": {"stem": {"kernel": rng.normal(size=(3, 3, 3, 8)).astype(np.float32)}},
                      "rpn": {"kernel": np.ones((2,), np.float32)}},
           "batch_stats": {"backbone": {"stem": {"mean": rng.normal(size=(8,)).astype(np.float32)}}},
           "step": np.int32(7)}
  checkpointer = Checkpointer(str(tmp_path / "run" / "checkpoints"))
  checkpointer.save(7, saved, {})
  checkpointer.close()

  ours = {"params": {"backbone": {"stem": {"kernel": np.zeros((3, 3, 3, 8), np.float32)}},
                     "rpn": {"kernel": np.full((2,), 5.0, np.float32)}, "neck": {"bias": np.zeros((4,), np.float32)}},
          "batch_stats": {"backbone": {"stem": {"mean": np.zeros((8,), np.float32)}}}}
  loaded = train.part_from_run(ours, str(tmp_path / "run"))
  np.testing.assert_array_equal(loaded["params"]["backbone"]["stem"]["kernel"], saved["params"]["backbone"]["stem"]["kernel"])
  np.testing.assert_array_equal(loaded["batch_stats"]["backbone"]["stem"]["mean"], saved["batch_stats"]["backbone"]["stem"]["mean"])
  np.testing.assert_array_equal(loaded["params"]["rpn"]["kernel"], np.full((2,), 5.0))  # the heads keep their own
  assert set(loaded["params"]) == {"backbone", "rpn", "neck"}

  wider = {"params": {"backbone": {"stem": {"kernel": np.zeros((3, 3, 3, 16), np.float32)}}}, "batch_stats": {}}
  with pytest.raises(ValueError, match=r"params/backbone/stem/kernel is shape \(3, 3, 3, 8\), this model needs \(3, 3, 3, 16\)"):
    train.part_from_run(wider, str(tmp_path / "run"))
  with pytest.raises(FileNotFoundError, match="holds no acne_jax checkpoint"):
    train.part_from_run(ours, str(tmp_path))
  # model.neck.pretrained: the neck alone (this run saved none).
  with pytest.raises(ValueError, match="model.neck.pretrained: the neck of .* params/neck/bias is missing"):
    train.part_from_run(ours, str(tmp_path / "run"), "neck")

  # model.roi_head.box.pretrained: layers of the box head by their paths, read in one restore; their
  # class-specific sibling untouched.
  fc1, fc2 = rng.normal(size=(12, 4)).astype(np.float32), rng.normal(size=(4, 4)).astype(np.float32)
  checkpointer = Checkpointer(str(tmp_path / "detector" / "checkpoints"))
  checkpointer.save(3, {"params": {"roi_head": {"box_head": {"fc1": {"kernel": fc1}, "fc2": {"kernel": fc2},
                                                             "cls": {"kernel": np.ones((4, 3), np.float32)}}}},
                        "batch_stats": {}, "step": np.int32(3)}, {})
  checkpointer.close()
  heads = {"params": {"roi_head": {"box_head": {"fc1": {"kernel": np.zeros((12, 4), np.float32)},
                                                "fc2": {"kernel": np.zeros((4, 4), np.float32)},
                                                "cls": {"kernel": np.zeros((4, 5), np.float32)}}}}, "batch_stats": {}}
  loaded = train.part_from_run(heads, str(tmp_path / "detector"), train.BOX_HEAD_SHARED_LAYERS)
  np.testing.assert_array_equal(loaded["params"]["roi_head"]["box_head"]["fc1"]["kernel"], fc1)
  np.testing.assert_array_equal(loaded["params"]["roi_head"]["box_head"]["fc2"]["kernel"], fc2)
  np.testing.assert_array_equal(loaded["params"]["roi_head"]["box_head"]["cls"]["kernel"], np.zeros((4, 5)))  # other classes
  del heads["params"]["roi_head"]["box_head"]["fc2"]
  with pytest.raises(ValueError, match="model.roi_head.box.pretrained: this model has no roi_head/box_head/fc2"):
    train.part_from_run(heads, str(tmp_path / "detector"), train.BOX_HEAD_SHARED_LAYERS)


def test_init_from_loads_every_class_independent_layer_of_a_detector(tmp_path):
  """``train.init_from``: backbone, neck, RPN and the box head's shared layers of another run (a
  COCO detector with 90 classes), the class-specific predictor of this model untouched."""
  from acne_jax.training.checkpoint import Checkpointer

  rng = np.random.default_rng(1)
  draw = lambda *shape: rng.normal(size=shape).astype(np.float32)  # noqa: E731
  coco = {"backbone": {"stem": {"kernel": draw(3, 3, 3, 4)}}, "neck": {"lateral": {"kernel": draw(1, 1, 4, 4)}},
          "rpn": {"rpn_conv": {"kernel": draw(3, 3, 4, 4)}},
          "roi_head": {"box_head": {"fc1": {"kernel": draw(8, 4)}, "fc2": {"kernel": draw(4, 4)}, "cls": {"kernel": draw(4, 91)}}}}
  checkpointer = Checkpointer(str(tmp_path / "coco" / "checkpoints"))
  checkpointer.save(1, {"params": coco, "batch_stats": {}, "step": np.int32(1)}, {})
  checkpointer.close()
  ours = jax.tree_util.tree_map(np.zeros_like, coco)
  ours["roi_head"]["box_head"]["cls"]["kernel"] = np.zeros((4, 9), np.float32)  # 8 lesion types + background
  loaded = train.part_from_run({"params": ours, "batch_stats": {}}, str(tmp_path / "coco"), train.INIT_FROM_PARTS,
                               "train.init_from")["params"]
  for path in ("backbone/stem/kernel", "neck/lateral/kernel", "rpn/rpn_conv/kernel", "roi_head/box_head/fc1/kernel",
               "roi_head/box_head/fc2/kernel"):
    keys = path.split("/")
    np.testing.assert_array_equal(functools.reduce(dict.__getitem__, keys, loaded), functools.reduce(dict.__getitem__, keys, coco))
  np.testing.assert_array_equal(loaded["roi_head"]["box_head"]["cls"]["kernel"], np.zeros((4, 9)))
  del ours["rpn"]
  with pytest.raises(ValueError, match="train.init_from: this model has no rpn"):
    train.part_from_run({"params": ours, "batch_stats": {}}, str(tmp_path / "coco"), train.INIT_FROM_PARTS, "train.init_from")


@pytest.mark.parametrize("key", ["model.neck.pretrained", "model.roi_head.box.pretrained", "train.init_from"])
def test_a_missing_pretrained_workdir_is_named_before_any_data_is_read(tmp_path, key):
  config = tiny_config(str(tmp_path / "never_built"))
  tiny.override(config, {key: str(tmp_path / "no_such_run")})
  with pytest.raises(FileNotFoundError, match=f"{key}: .*no_such_run is not a directory"):
    train.train_and_evaluate(config, str(tmp_path / "workdir"), show_progress=False)
  assert not (tmp_path / "never_built").exists()


@pytest.mark.parametrize("option, value, message", [
    ("crop_size", 128, "data.crop_size=128: a masked crop must fit in data.image_size 96x96"),
    ("brightness", 1.5, r"data.brightness=1.5: .* use 0 <= b < 1"),
    ("worker_count", 2, "data.cache_in_memory=True with data.worker_count=2"),
])
def test_a_data_option_the_pipeline_cannot_carry_out_is_refused(tmp_path, option, value, message):
  config = tiny_config(str(tmp_path / "tfds"))
  with config.unlocked():
    config.data[option] = value
  with pytest.raises(ValueError, match=message):
    train.train_and_evaluate(config, str(tmp_path / "work"), show_progress=False)
  assert not os.path.exists(tmp_path / "tfds")  # refused before any data is built or read


def test_rotate90_needs_a_square_image_size_or_a_crop():
  from acne_jax.data import pipeline

  data = tiny_config("/unused").data
  with data.unlocked():
    data.update(rotate90=True, image_size=(96, 128))
  with pytest.raises(ValueError, match="data.rotate90=True with data.image_size 96x128"):
    pipeline.check_options(data)
  with data.unlocked():
    data.crop_size = 64
  pipeline.check_options(data)  # square crops turn in place
