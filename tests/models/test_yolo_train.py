"""YOLOv4 through the same training command as the two-stage detectors: ``configs/yolov4.py`` on the
tiny synthetic CT set, three steps, then the checkpoint evaluated and used by ``predict`` as any other."""

import json
import math
import os

import numpy as np
import pytest

from acne_jax import evaluate, predict, train
from acne_jax.models import factory, yolo
from configs import yolov4
from tfds_builders.synthetic_ct import __main__ as ct_cli
from tfds_builders.synthetic_ct import dataset_folder


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
  root = tmp_path_factory.mktemp("tfds")
  assert ct_cli.main(["--out", dataset_folder(str(root), "tiny"), "--set", "tiny"]) == 0
  return str(root)


def _tiny(data_root, variant="416"):
  config = yolov4.get_config(variant)
  with config.unlocked():
    config.data.update(ct_set="tiny", data_dir=data_root, image_size=(128, 128), resize_min_size=128, resize_max_size=128,
                       mosaic=1.0)  # every training image a mosaic of four slices
    config.model.update(width=2, max_detections=20, pre_nms_top_k=200, max_proposals=50)
    config.train.update(batch_size=2, steps=3, log_every=1, checkpoint_every=3, keep_checkpoints=1)
    config.optimizer.update(warmup_steps=0, decay_steps=())
    config.eval.update(batch_size=2, calibration_split="")
  return config


@pytest.mark.parametrize("variant", ["416"])  # stride4's layout: tests/models/test_yolo.py
def test_three_steps_evaluate_and_predict(data_root, tmp_path, variant):
  config = _tiny(data_root, variant)
  assert factory.model_type(config.model) == "yolov4"
  assert isinstance(factory.build(config.model, train=True), yolo.YOLOv4)
  workdir = str(tmp_path / "run")
  metrics = train.train_and_evaluate(config, workdir, show_progress=False)
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    logged = [json.loads(line) for line in f if '"loss"' in line]
  assert [m["step"] for m in logged] == [1, 2, 3]
  for m in logged:
    assert math.isfinite(m["loss"]) and m["loss"] == pytest.approx(m["yolo_box"] + m["yolo_obj"] + m["yolo_cls"], rel=1e-5)
  assert "AP@0.5" in metrics and "froc_sens@4FP" in metrics
  # The checkpoint reads back for evaluation and for predict's counting, as a two-stage model's.
  again = evaluate.evaluate_workdir(config, workdir)
  assert again["AP@0.5"] == pytest.approx(metrics["AP@0.5"], abs=1e-6)
  variables, step, _ = evaluate.restore(config, workdir)
  assert step == 3
  found = predict.predict_image(predict.make_predict_fn(config), variables, np.zeros((200, 150, 3), np.uint8), 128)
  assert set(found) >= {"boxes", "scores", "classes"} and found["boxes"].shape[1:] == (4,)
  assert predict.class_names_for(config)[3] == "liver"  # DeepLesion type 4, label 3
