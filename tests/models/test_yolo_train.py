"""YOLOv4 through the same training command as the two-stage detectors: ``configs/yolov4.py`` on the
tiny synthetic CT set, three steps, then the checkpoint evaluated and used by ``predict`` as any other."""

import json
import math
import os

import numpy as np
import pytest

from acne_jax import datasets, evaluate, predict, train
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
  # data.test_size: trained at 128 px, evaluated at 160 (the seed's YOLO trains at 869 and infers
  # at 1024); checked below on the written detections.
  config.data.test_size = 160
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
  # The evaluation ran at data.test_size: the slices went in at 160 x 160 and the written boxes
  # are the model's 160-px boxes times 512 / 160.
  eval_data, _ = datasets.load_eval_split(config.data)
  assert eval_data.image_sizes.tolist() == [[160, 160]] * len(eval_data.image_sizes)
  assert eval_data.original_sizes.tolist() == [[512, 512]] * len(eval_data.image_sizes)
  outputs = train.run_model(predict.make_predict_fn(config), variables, eval_data, 2)
  d = outputs.detections
  assert d.boxes.shape[0] == len(eval_data.image_sizes) and d.valid.any()
  on_input = np.clip(np.concatenate([d.boxes[i][d.valid[i]] for i in range(len(d.valid))]), 0, 160)
  with open(os.path.join(workdir, "detections_test.json")) as f:
    written = np.asarray([r["bbox"] for r in json.load(f)], np.float64)
  written[:, 2:] += written[:, :2]  # COCO xywh -> x1y1x2y2
  np.testing.assert_allclose(np.sort(written, axis=0), np.sort(on_input * 512 / 160, axis=0), rtol=1e-5, atol=1e-3)
  # predict's default tile and resize follow it: a 512 slice goes in as one 160 px tile.
  assert predict.default_tile(config) == 160 and predict.inference_resize(config) == (160, 160, "torchvision")


def test_the_test_size_resizes_the_evaluation_input_and_refuses_a_negative_side():
  from acne_jax.data import resize

  data = yolov4.get_config("416").data
  assert resize.at_test_size(data) is data  # 0: the training size
  data.test_size = 640
  sized = resize.at_test_size(data)
  assert (sized["image_size"], sized["resize_min_size"], sized["resize_max_size"]) == ((640, 640), 640, 640)
  assert sized["eval_split"] == data.eval_split and tuple(data.image_size) == (416, 416)  # the config is untouched
  assert yolov4.get_config("stride4").data.test_size == 640 and yolov4.get_config("stride4,deep_lesion").data.test_size == 1024
  data.test_size = -1
  with pytest.raises(ValueError, match="data.test_size=-1"):
    resize.at_test_size(data)
  # A side YOLOv4 cannot read (not a multiple of 32) is refused before training, naming the fix.
  config = yolov4.get_config("stride4")
  train.check_input_sides(config)  # 512, tested at 640
  config.data.test_size = 1000
  with pytest.raises(ValueError, match=r"data.test_size=1000: .* multiples of 32 .* use 992 or 1024\."):
    train.check_input_sides(config)
  config.data.update(test_size=0, image_size=(500, 512))
  with pytest.raises(ValueError, match=r"data.image_size=\(500, 512\): .* use 480 or 512\."):
    train.check_input_sides(config)
