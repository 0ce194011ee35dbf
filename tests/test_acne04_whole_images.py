"""Whole ACNE04 photos of any size train and evaluate through MMDetection's keep-ratio resize,
and evaluation and predict report detections in the original photo's pixels.

A fixture release in the real format (VOC XML + list files) with 3000 x 2000 and 2000 x 3000
photos is built with the real builder, then a tiny model trains on it at a 256 px long side.
"""

import json
import os

import numpy as np
import pytest

pytest.importorskip("tensorflow_datasets")

from acne_jax import datasets, evaluate, predict, train  # noqa: E402
from acne_jax.data import resize  # noqa: E402
from acne_jax.testing import fixtures, tiny  # noqa: E402
from configs import sadh  # noqa: E402

PHOTOS = {  # name -> ((width, height), VOC objects (1-based inclusive corners))
    "levle1_1.jpg": ((3000, 2000), [("fore", 301, 201, 420, 330, 0), ("fore", 2500, 1700, 2620, 1810, 0)]),
    "levle1_2.jpg": ((2000, 3000), [("fore", 1001, 2501, 1090, 2600, 0)]),
    "levle2_1.jpg": ((3000, 2000), [("fore", 2801, 101, 2950, 260, 0), ("fore", 11, 1801, 140, 1990, 0)]),
}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  root = tmp_path_factory.mktemp("acne04_whole")
  images = {name: fixtures.Acne04Image(grade=1, lesion_count=len(objects), objects=objects, size=size, seed=i)
            for i, (name, (size, objects)) in enumerate(PHOTOS.items())}
  train_names, test_names = ["levle1_1.jpg", "levle1_2.jpg"], ["levle2_1.jpg"]
  fixtures.write_acne04_release(root / "release", images, {0: (train_names, test_names)})
  import tensorflow_datasets as tfds

  from tfds_builders.acne04 import Acne04

  data_dir = str(root / "tfds")
  Acne04(config="fold0", data_dir=data_dir).download_and_prepare(
      file_format="array_record", download_config=tfds.download.DownloadConfig(manual_dir=str(root / "release")))
  return root, data_dir


def _config(data_dir):
  config = sadh.get_config("acne04")
  tiny.apply(config)
  with config.unlocked():
    config.data.update(data_dir=data_dir, image_size=(256, 256), resize_min_size=256, resize_max_size=256, max_boxes=8,
                       worker_count=0)
    config.train.update(batch_size=1, steps=2, log_every=1, checkpoint_every=2)
    config.optimizer.update(warmup_steps=0, decay_steps=())
    config.eval.update(batch_size=1, calibration_split="")
  return config


def test_the_default_acne04_config_resizes_a_3000_by_2000_photo_to_a_1024_long_side():
  data = sadh.get_config("acne04").data
  out, boxes, _, _ = resize.resize_example(np.zeros((2000, 3000, 3), np.uint8), np.asarray([[300, 200, 420, 330]], np.float32),
                                           data.resize_min_size, data.resize_max_size, style=data.resize_style)
  assert out.shape == (683, 1024, 3)  # MMDetection: int(2000 * 1024 / 3000 + 0.5)
  np.testing.assert_allclose(boxes, [[300 * 1024 / 3000, 200 * 683 / 2000, 420 * 1024 / 3000, 330 * 683 / 2000]], rtol=1e-6)


def test_whole_photos_train_and_detections_come_back_in_original_pixels(built, tmp_path):
  root, data_dir = built
  config = _config(data_dir)
  workdir = str(tmp_path / "run")
  metrics = train.train_and_evaluate(config, workdir, show_progress=False)
  assert np.isfinite(metrics["AR@100"])

  # Ground truth is scored in the photo's own pixels: its VOC boxes, (xmin - 1, ymin - 1, xmax, ymax).
  with open(os.path.join(workdir, "ground_truth_test.json")) as f:
    gt = json.load(f)
  assert [(im["width"], im["height"]) for im in gt["images"]] == [(3000, 2000)]
  expected = sorted([[2800, 100, 150, 160], [10, 1800, 130, 190]])
  assert sorted([[round(v, 3) for v in a["bbox"]] for a in gt["annotations"]]) == expected

  # Detections: the model's boxes on the 256 x 171 input (clipped to it: the rest is padding),
  # times 3000 / 256 and 2000 / 171.
  eval_data, _ = datasets.load_eval_split(config.data)
  assert eval_data.image_sizes.tolist() == [[171, 256]] and eval_data.original_sizes.tolist() == [[2000, 3000]]
  variables, _, _ = evaluate.restore(config, workdir)
  predict_fn = predict.make_predict_fn(config)
  outputs = train.run_model(predict_fn, variables, eval_data, 1)
  d = outputs.detections
  on_input = np.clip(d.boxes[0][d.valid[0]], 0, [256, 171, 256, 171])
  assert len(on_input) > 0
  with open(os.path.join(workdir, "detections_test.json")) as f:
    results = json.load(f)
  mapped = np.asarray([r["bbox"] for r in results], np.float64)
  mapped[:, 2:] += mapped[:, :2]  # COCO xywh -> x1y1x2y2
  factors = np.asarray([3000 / 256, 2000 / 171] * 2)
  np.testing.assert_allclose(np.sort(mapped, axis=0), np.sort(on_input * factors, axis=0), rtol=1e-5, atol=1e-3)
  assert mapped[:, 2].max() <= 3000 + 1e-3 and mapped[:, 3].max() <= 2000 + 1e-3 and mapped[:, 2].max() > 256
  assert (d.boxes[0][d.valid[0]][:, 3] > 171).any()  # the clip mattered: some boxes reached into the padding

  # predict on the original photo: resized the same way, one tile, boxes in the photo's pixels.
  photo = fixtures.decode_rgb(open(root / "release" / fixtures.ACNE04_CLASSIFICATION_IMAGES / "levle2_1.jpg", "rb").read())
  assert photo.shape == (2000, 3000, 3)
  found = predict.predict_image(predict_fn, variables, photo, tile=256, batch=1,
                                resize_min_size=256, resize_max_size=256, resize_style="mmdetection")
  # The builder stored the same JPEG bytes, so predict sees the evaluation's input image.
  top = np.argsort(-found["scores"])[:5]
  for box in found["boxes"][top]:
    assert np.abs(mapped - box).max(axis=1).min() < 1e-2, box
