"""The embedded synthetic acne data set: generator invariants, looks, splits and TFDS round trip."""

from __future__ import annotations

import numpy as np
import pytest

from acne_jax.data import records
from acne_jax.data import synthetic as S


def _all_lesions(records):
  boxes = np.concatenate([r["objects"]["bbox"] for r in records])
  labels = np.concatenate([r["objects"]["label"] for r in records])
  return boxes, labels


@pytest.fixture(scope="module")
def train_records():
  """40 default-size training images (~500 lesions)."""
  return list(S.generate_split("train", 40, seed=3))


def test_class_names():
  assert S.CLASS_NAMES == (
      "closed_comedo", "open_comedo", "papule", "pustule", "nodule",
      "atrophic_scar", "hypertrophic_scar", "melasma", "nevus", "other",
  )
  assert len(S.DEFAULT_CLASS_WEIGHTS) == 10


def _assert_records_equal(a, b):
  assert a["image"].dtype == np.uint8 and a["image"].tobytes() == b["image"].tobytes()
  for key in ("image_id", "file_name", "patient_id"):
    assert a[key] == b[key]
  np.testing.assert_array_equal(a["crop_origin"], b["crop_origin"])
  for key in ("bbox", "label", "area"):
    assert a["objects"][key].dtype == b["objects"][key].dtype
    np.testing.assert_array_equal(a["objects"][key], b["objects"][key])
  assert len(a["objects"]["polygon"]) == len(b["objects"]["polygon"])
  for p, q in zip(a["objects"]["polygon"], b["objects"]["polygon"]):
    np.testing.assert_array_equal(p, q)


def test_deterministic_for_a_seed():
  _assert_records_equal(S.generate_example(123, image_size=128), S.generate_example(123, image_size=128))
  other = S.generate_example(124, image_size=128)
  assert other["image"].tobytes() != S.generate_example(123, image_size=128)["image"].tobytes()
  first = list(S.generate_split("validation", 3, seed=7, image_size=64))
  again = list(S.generate_split("validation", 5, seed=7, image_size=64))[:3]  # prefix-stable
  for a, b in zip(first, again):
    _assert_records_equal(a, b)
  reseeded = list(S.generate_split("validation", 3, seed=8, image_size=64))
  assert first[0]["image"].tobytes() != reseeded[0]["image"].tobytes()


def test_record_layout_and_box_invariants(train_records):
  assert len(train_records) == 40
  for r in train_records:
    image, objects = r["image"], r["objects"]
    assert image.shape == (256, 256, 3) and image.dtype == np.uint8
    assert r["crop_origin"].dtype == np.int32 and tuple(r["crop_origin"]) == (0, 0)
    k = len(objects["label"])
    assert 1 <= k <= 20
    assert objects["bbox"].shape == (k, 4) and objects["bbox"].dtype == np.float32
    assert objects["label"].dtype == np.int64 and objects["area"].dtype == np.float32
    assert len(objects["polygon"]) == k
    assert objects["label"].min() >= 0 and objects["label"].max() < 10
    boxes = objects["bbox"]
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= 256).all() and (boxes[:, 3] <= 256).all()
    assert ((boxes[:, 2:] - boxes[:, :2]) >= S.MIN_BOX_SIDE).all()
    np.testing.assert_allclose(objects["area"], (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), rtol=1e-6)
    for box, polygon in zip(boxes, objects["polygon"]):
      assert polygon.dtype == np.float32 and polygon.ndim == 1 and polygon.size % 2 == 0
      xy = polygon.reshape(-1, 2)
      assert len(xy) >= 3
      np.testing.assert_array_equal(box, np.concatenate([xy.min(0), xy.max(0)]))


def test_lesion_counts_sizes_and_classes(train_records):
  boxes, labels = _all_lesions(train_records)
  assert len(labels) > 300
  side = np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
  in_range = np.mean((side >= 8) & (side <= 40))
  assert in_range >= 0.75, in_range
  assert np.mean(side > 40) > 0.02  # a few large lesions (melasma, nodules)
  counts = np.bincount(labels, minlength=10)
  assert (counts > 0).all(), counts
  # The common AcneSCU classes outnumber the rare ones.
  assert counts[S.CLASS_NAMES.index("closed_comedo")] > counts[S.CLASS_NAMES.index("nodule")]
  assert counts[S.CLASS_NAMES.index("papule")] > counts[S.CLASS_NAMES.index("hypertrophic_scar")]


def test_placements_rarely_overlap(train_records):
  for r in train_records:
    boxes = r["objects"]["bbox"].astype(np.float64)
    for i in range(len(boxes)):
      ious = S._box_iou(boxes[i], np.delete(boxes, i, axis=0))
      assert ious.size == 0 or ious.max() <= S.MAX_BOX_IOU + 1e-6


def test_clip_polygon():
  square = np.array([[-5.0, -5.0], [5.0, -5.0], [5.0, 5.0], [-5.0, 5.0]])
  clipped = S.clip_polygon(square, 10, 10)
  np.testing.assert_allclose(S.polygon_box(clipped), [0, 0, 5, 5])
  assert len(S.clip_polygon(square - 20.0, 10, 10)) == 0
  np.testing.assert_allclose(S.clip_polygon(square + 5.0, 10, 10), square + 5.0)


def test_splits_are_disjoint_in_patients():
  patients = {}
  for split, n in (("train", 12), ("validation", 5), ("test", 6)):
    records = list(S.generate_split(split, n, seed=11, image_size=48, num_lesions=(1, 2)))
    assert len(records) == n
    patients[split] = {r["patient_id"] for r in records}
    assert all(S.patient(11, int(r["patient_id"][1:])).split == split for r in records)
    assert len({r["image_id"] for r in records}) == n
  assert not patients["train"] & patients["validation"]
  assert not patients["train"] & patients["test"]
  assert not patients["validation"] & patients["test"]
  # Several images per patient on average, and the split proportions are roughly the defaults.
  population = [S.patient(0, k) for k in range(2000)]
  assert 2.0 < np.mean([p.num_images for p in population]) < 3.0
  fractions = {s: np.mean([p.split == s for p in population]) for s in S.SPLITS}
  assert abs(fractions["train"] - 0.77) < 0.05 and abs(fractions["test"] - 0.15) < 0.04


def _class_examples(label, n, skin):
  weights = np.zeros(10)
  weights[label] = 1.0
  rng = np.random.default_rng(label)
  return [S.generate_example(rng, image_size=96, num_lesions=1, class_weights=weights, skin=skin) for _ in range(n)]


def _region_means(record, inner=(0.0, 1.01)):
  """Mean RGB inside each lesion (restricted to a depth band) and in a ring of skin around it."""
  import cv2

  image = record["image"].astype(np.float64)
  h, w = image.shape[:2]
  out = []
  for polygon in record["objects"]["polygon"]:
    mask = S.polygon_mask(polygon.reshape(-1, 2), h, w, antialias=False) > 0.5
    dist = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 3)
    depth = dist / max(dist.max(), 1e-6)
    band = mask & (depth >= inner[0]) & (depth < inner[1])
    ring = (cv2.dilate(mask.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0) & ~(cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0)
    if band.sum() and ring.sum():
      out.append((image[band].mean(0), image[ring].mean(0)))
  return out


@pytest.mark.parametrize("tone", [0.2, 0.8])
def test_class_looks_are_distinct(tone):
  skin = S.skin_tone(tone)
  idx = S.CLASS_NAMES.index

  def mean_luma(label, n=6, inner=(0.0, 1.01)):
    values = [lesion for r in _class_examples(label, n, skin) for lesion in _region_means(r, inner)]
    inside = np.mean([v[0] for v in values], axis=0)
    around = np.mean([v[1] for v in values], axis=0)
    return inside, around

  nevus, nevus_skin = mean_luma(idx("nevus"))
  comedo, comedo_skin = mean_luma(idx("closed_comedo"))
  assert nevus.mean() < 0.7 * comedo.mean()  # nevi are much darker than closed comedones
  assert nevus.mean() < 0.7 * nevus_skin.mean()
  assert comedo.mean() > comedo_skin.mean()  # whiteheads are paler than the skin around them
  papule, papule_skin = mean_luma(idx("papule"))
  assert papule[0] / papule[1] > 1.15 * papule_skin[0] / papule_skin[1]  # papules are redder
  blackhead_core, blackhead_skin = mean_luma(idx("open_comedo"), inner=(0.7, 1.01))
  assert blackhead_core.mean() < 0.7 * blackhead_skin.mean()
  centre, _ = mean_luma(idx("pustule"), inner=(0.7, 1.01))
  rim, _ = mean_luma(idx("pustule"), inner=(0.0, 0.25))
  assert centre.mean() > rim.mean() + 15  # pale pus head over a red rim
  assert rim[0] / rim[1] > centre[0] / centre[1]
  melasma, melasma_skin = mean_luma(idx("melasma"), n=4)
  assert melasma.mean() < 0.97 * melasma_skin.mean()  # brown, but low contrast
  assert melasma.mean() > 0.6 * melasma_skin.mean()


def test_decode_record_of_generator_record():
  record = S.generate_example(5, image_size=64, num_lesions=3)
  decoded = records.decode_record(records.to_tfds_example(record))
  np.testing.assert_array_equal(decoded["image"], record["image"])
  np.testing.assert_array_equal(decoded["boxes"], record["objects"]["bbox"])
  assert decoded["labels"].dtype == np.int32
  for p, q in zip(decoded["polygons"], record["objects"]["polygon"]):
    np.testing.assert_array_equal(p, q)
  empty = S.generate_example(5, image_size=64, num_lesions=0)
  decoded = records.decode_record(records.to_tfds_example(empty))
  assert decoded["boxes"].shape == (0, 4) and decoded["labels"].shape == (0,) and decoded["polygons"] == []


def test_tfds_builder_round_trip(tmp_path):
  tfds = pytest.importorskip("tensorflow_datasets")
  from acne_jax import datasets as sources
  from tfds_builders.synthetic_acne import SyntheticAcneConfig

  config = SyntheticAcneConfig(name="test_tiny", image_size=64, num_train=4, num_validation=2, num_test=2, num_lesions=(0, 4), seed=5)
  for split, n in (("train", 4), ("validation", 2), ("test", 2)):
    source = sources.load_synthetic_source(split, data_dir=str(tmp_path), config=config)
    assert len(source) == n
    expected = list(S.generate_split(split, n, seed=5, image_size=64, num_lesions=(0, 4)))
    for i, want in enumerate(expected):
      got = records.decode_record(source[i])
      assert got["image"].shape == (64, 64, 3) and got["image"].dtype == np.uint8
      np.testing.assert_array_equal(got["image"], want["image"])
      np.testing.assert_array_equal(got["boxes"], want["objects"]["bbox"])
      np.testing.assert_array_equal(got["labels"], want["objects"]["label"])
      np.testing.assert_array_equal(got["areas"], want["objects"]["area"])
      assert len(got["polygons"]) == len(want["objects"]["polygon"])
      for p, q in zip(got["polygons"], want["objects"]["polygon"]):
        np.testing.assert_array_equal(p, q)
      assert got["image_id"] == want["image_id"]
      assert got["file_name"] == want["file_name"] and got["patient_id"] == want["patient_id"]
      np.testing.assert_array_equal(got["crop_origin"], want["crop_origin"])
  builder = sources.synthetic_builder(str(tmp_path), config)
  assert builder.info.features["objects"]["label"].names == list(S.CLASS_NAMES)
  import sys

  assert "tensorflow" not in sys.modules  # built and read back without TensorFlow


def test_labelme_release_fills_every_split_of_the_acne_scu_builder(tmp_path):
  """Patients are named so that the builder's default patient split keeps the generated split:
  even three images give a train, a validation and a test image."""
  import collections

  from acne_jax.data import labelme

  for n, expected in ((3, {"train": 1, "validation": 1, "test": 1}), (20, {"train": 17, "validation": 1, "test": 2})):
    paths = S.write_labelme_release(str(tmp_path / str(n)), n, image_size=(48, 64), num_lesions=(1, 2))
    assert dict(collections.Counter(labelme.split_of(labelme.patient_of(p)) for p in paths)) == expected
