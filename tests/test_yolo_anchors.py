"""``scripts/yolo_anchors.py``: k-means with 1 - IoU recovers a known mixture of box shapes,
deterministically; boxes are measured in the pixels the network sees; the command reads a config's
data set (the tiny synthetic CT set)."""

import os
import pathlib

import numpy as np
import pytest

from acne_jax.testing.scripts import import_script

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def script():
  return import_script("yolo_anchors")


TRUE_SHAPES = np.asarray([[12.0, 10.0], [30.0, 60.0], [90.0, 45.0]])  # sorted by area: 120, 1800, 4050


def mixture(rng, per_cluster=300, spread=0.08):
  """Boxes around three shapes, each side scaled by exp(N(0, spread)), clusters unequal in size."""
  counts = (per_cluster, per_cluster // 2, 2 * per_cluster)
  wh = np.concatenate([shape * np.exp(rng.normal(scale=spread, size=(n, 2))) for shape, n in zip(TRUE_SHAPES, counts)])
  return wh[rng.permutation(len(wh))]


def test_kmeans_recovers_three_shape_clusters(script, rng):
  wh = mixture(rng)
  anchors, mean_iou = script.kmeans_anchors(wh, num_anchors=3, seed=0)
  assert anchors.shape == (3, 2)
  np.testing.assert_allclose(anchors, TRUE_SHAPES, rtol=0.03)  # the cluster means, sorted by area
  assert 0.85 < mean_iou < 1.0
  # mean best IoU is what it says.
  assert mean_iou == pytest.approx(script.shape_iou(wh, anchors).max(axis=1).mean())


def test_kmeans_is_deterministic_and_more_anchors_fit_better(script, rng):
  wh = mixture(rng)
  first = script.kmeans_anchors(wh, num_anchors=6, seed=3)
  again = script.kmeans_anchors(wh, num_anchors=6, seed=3)
  np.testing.assert_array_equal(first[0], again[0])
  assert first[1] == again[1]
  areas = first[0].prod(axis=1)
  assert (np.diff(areas) >= 0).all()
  assert first[1] > script.kmeans_anchors(wh, num_anchors=3, seed=3)[1]
  # Zero-area boxes are skipped; too few distinct shapes is an error naming the numbers.
  with_empty = np.concatenate([wh, [[0.0, 5.0], [4.0, 0.0]]])
  np.testing.assert_array_equal(script.kmeans_anchors(with_empty, 6, seed=3)[0], first[0])
  with pytest.raises(ValueError, match="at least 4 distinct box shapes for 4 anchors; got 3"):
    script.kmeans_anchors(TRUE_SHAPES, num_anchors=4)


def test_one_minus_iou_distance_is_scale_aware(script):
  """Unlike Euclidean k-means, small boxes get their own anchors: two clusters 4 px apart in width
  but a factor 2 apart in scale stay separate next to one of 150 px."""
  wh = np.concatenate([np.full((50, 2), 4.0), np.full((50, 2), 8.0), np.full((50, 2), 150.0)])
  wh = wh * np.exp(np.random.default_rng(0).normal(scale=0.01, size=wh.shape))
  anchors, mean_iou = script.kmeans_anchors(wh, num_anchors=3, seed=0)
  np.testing.assert_allclose(anchors[:, 0], [4.0, 8.0, 150.0], rtol=0.02)
  assert mean_iou > 0.95


def decoded(image_shape, boxes, labels):
  return {"image": np.zeros(image_shape, np.uint8), "boxes": np.asarray(boxes, np.float32),
          "labels": np.asarray(labels, np.int32)}


def test_box_shapes_in_the_networks_pixels(script):
  records = [decoded((100, 200, 3), [[0, 0, 10, 20], [5, 5, 45, 25], [1, 1, 3, 3]], [0, 2, -1]),
             decoded((50, 50, 3), [[10, 10, 20, 15]], [1])]
  np.testing.assert_allclose(script.box_shapes(records), [[10, 20], [40, 20], [10, 5]])
  np.testing.assert_allclose(script.box_shapes(records, drop_labels=(2,)), [[10, 20], [10, 5]])
  # darknet's resize to 416 x 416: each axis by its own factor.
  np.testing.assert_allclose(script.box_shapes(records, input_size=416),
                             [[10 * 416 / 200, 20 * 416 / 100], [40 * 416 / 200, 20 * 416 / 100], [10 * 416 / 50, 5 * 416 / 50]])
  # The config's torchvision resize (short side 100 -> 150 unless the long side passes 250).
  np.testing.assert_allclose(script.box_shapes(records[:1], resize=(150, 250, "torchvision")), [[12.5, 25], [50, 25]])
  assert script.format_anchors(np.asarray([[12.4, 15.6], [40.0, 28.2]])) == "anchors = 12,16, 40,28"


@pytest.fixture(scope="module")
def ct_root(tmp_path_factory):
  pytest.importorskip("tensorflow_datasets")
  from tfds_builders.synthetic_ct import __main__ as ct_cli
  from tfds_builders.synthetic_ct import dataset_folder

  root = tmp_path_factory.mktemp("tfds")
  assert ct_cli.main(["--out", dataset_folder(str(root), "tiny"), "--set", "tiny"]) == 0
  return str(root)


def test_command_on_the_tiny_synthetic_ct_set(script, ct_root, capsys):
  args = ["yolo_anchors.py", "--config=" + os.path.join(ROOT, "configs", "faster_rcnn.py") + ":synthetic_ct",
          "--config.data.ct_set=tiny", f"--config.data.data_dir={ct_root}"]
  assert script.main(args + ["--num_anchors=3", "--seed=1"]) == 0
  out = capsys.readouterr().out.splitlines()
  # The config's build of the set may be made now (TFDS announces it first): the report follows.
  out = out[next(i for i, line in enumerate(out) if line.startswith("8 boxes of ")):]
  assert out[0].startswith("8 boxes of synthetic_ct train (the config's pixels), 3 anchors, seed 1")
  assert out[1].startswith("anchors = ") and len(out[1].split(", ")) == 3
  assert out[2].startswith("mean best IoU: 0.")
  assert out[3].startswith("model.anchors: ((")
  # The library function gives the same anchors.
  from configs import faster_rcnn

  config = faster_rcnn.get_config("synthetic_ct")
  with config.unlocked():
    config.data.update(ct_set="tiny", data_dir=ct_root)
  anchors, mean_iou, count = script.anchors_for_config(config, "train", num_anchors=3, seed=1)
  assert count == 8 and out[2] == f"mean best IoU: {mean_iou:.4f}"
  assert out[1] == script.format_anchors(anchors)
  # More anchors than boxes: an error, status 1.
  assert script.main(args + ["--num_anchors=9"]) == 1
  assert "at least 9 distinct box shapes" in capsys.readouterr().err
  assert script.main(["yolo_anchors.py"]) == 2
