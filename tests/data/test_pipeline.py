"""The grain pipeline every data set trains through: static shapes, determinism, exact resume,
each augmentation option, balance, several processes, the RAM cache."""

import numpy as np
import pytest

from acne_jax import datasets
from acne_jax.data import pipeline


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("tfds"))


@pytest.fixture(scope="module")
def tiny_source(tiny_dir):
  return datasets.load_synthetic_source("train", tiny_dir, "tiny")


def _loader(source, **kwargs):
  transform = pipeline.ExampleTransform(image_size=(96, 96), max_boxes=8)
  defaults = dict(batch_size=2, transform=transform, seed=3, worker_count=0, shard_by_process=False)
  defaults.update(kwargs)
  return pipeline.StreamingLoader(source, **defaults)


def _take(loader, n):
  return [next(loader) for _ in range(n)]


def test_static_shapes_and_content(tiny_source):
  batch = next(_loader(tiny_source))
  assert batch["image"].shape == (2, 96, 96, 3) and batch["image"].dtype == np.uint8
  assert batch["boxes"].shape == (2, 8, 4) and batch["labels"].shape == (2, 8) and batch["valid"].shape == (2, 8)
  assert np.all(batch["labels"][~batch["valid"]] == -1) and np.all(batch["labels"][batch["valid"]] >= 0)
  valid_boxes = batch["boxes"][batch["valid"]]
  assert np.all(valid_boxes[:, 2] > valid_boxes[:, 0]) and np.all(valid_boxes >= 0) and np.all(valid_boxes <= 96)


def test_deterministic_and_resumes_exactly(tiny_source):
  first = _take(_loader(tiny_source), 5)
  again = _take(_loader(tiny_source), 5)
  for a, b in zip(first, again):
    for key in pipeline.BATCH_KEYS:
      np.testing.assert_array_equal(a[key], b[key])
  loader = _loader(tiny_source)
  _take(loader, 2)
  state = loader.get_state()
  resumed = _loader(tiny_source)
  resumed.set_state(state)
  for a, b in zip(first[2:], _take(resumed, 3)):
    for key in pipeline.BATCH_KEYS:
      np.testing.assert_array_equal(a[key], b[key])
  other_seed = _take(_loader(tiny_source, seed=4), 5)
  assert any(not np.array_equal(a["image_id"], b["image_id"]) or not np.array_equal(a["image"], b["image"]) for a, b in zip(first, other_seed))


def test_worker_processes_read_each_record_once_per_epoch_deterministically(tiny_source):
  # grain batches per worker, so batch composition depends on the worker count; the records of
  # an epoch and the sequence for a given worker count do not.
  def epoch(workers):
    loader = _loader(tiny_source, batch_size=1, worker_count=workers, num_epochs=1)
    return [int(b["image_id"][0]) for b in loader]

  with_workers = epoch(2)
  assert sorted(with_workers) == sorted(epoch(0)) and len(set(with_workers)) == len(tiny_source)
  assert epoch(2) == with_workers


def test_augmentations_move_boxes_with_pixels():
  image = np.zeros((40, 60, 3), np.uint8)
  image[5:15, 10:30] = 255  # a box x 10..30, y 5..15
  boxes = np.array([[10, 5, 30, 15]], np.float32)
  rng = np.random.default_rng(0)
  for settings in (pipeline.Augmentation(hflip=True, vflip=True, rotate90=True),):
    for _ in range(20):
      out, out_boxes = pipeline.augment(image, boxes, rng, settings)
      ys, xs = np.nonzero(out[..., 0])
      np.testing.assert_array_equal(out_boxes[0], [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
  bright, _ = pipeline.augment(np.full((4, 4, 3), 100, np.uint8), boxes, np.random.default_rng(1), pipeline.Augmentation(hflip=False, brightness=0.5))
  assert 50 <= bright[0, 0, 0] <= 150


def test_rotation_turns_a_square_lesion_and_its_box_encloses_it():
  image = np.zeros((101, 101, 3), np.uint8)
  image[40:61, 40:61] = 255  # a 21 px square about the centre pixel (50, 50)
  boxes = np.array([[40, 40, 61, 61]], np.float32)
  for degrees in (30.0, -30.0, 45.0):
    turned, moved, shapes = pipeline._rotate(image, boxes, [np.array([[40, 40], [61, 40], [61, 61], [40, 61]], np.float32)], degrees)
    ys, xs = np.nonzero(turned[..., 0] > 127)
    # The turned square's pixels lie inside the box of its turned corners, which is tight to a pixel.
    x1, y1, x2, y2 = moved[0]
    assert x1 <= xs.min() and y1 <= ys.min() and xs.max() + 1 <= x2 and ys.max() + 1 <= y2
    assert max(xs.min() - x1, ys.min() - y1, x2 - xs.max() - 1, y2 - ys.max() - 1) <= 1.5
    side = 21 * (abs(np.cos(np.radians(degrees))) + abs(np.sin(np.radians(degrees))))
    np.testing.assert_allclose([x2 - x1, y2 - y1], [side, side], atol=1e-3)
    np.testing.assert_allclose(shapes[0].mean(axis=0), [50.5, 50.5], atol=1e-4)  # turned about the image centre


def test_zoom_crop_scales_boxes_with_the_pixels_and_drops_lesions_pushed_out():
  image = np.zeros((100, 100, 3), np.uint8)
  image[40:60, 30:50] = 255
  boxes = np.array([[30, 40, 50, 60], [0, 0, 5, 5]], np.float32)  # the second lies in the cut border
  zoomed, moved, _ = pipeline._zoom_crop(image, boxes, None, 10)
  np.testing.assert_allclose(moved[0], [(30 - 10) * 1.25, (40 - 10) * 1.25, (50 - 10) * 1.25, (60 - 10) * 1.25])
  ys, xs = np.nonzero(zoomed[..., 0] > 127)
  assert abs(xs.min() - moved[0, 0]) <= 1 and abs(xs.max() + 1 - moved[0, 2]) <= 1
  assert moved[1, 2] - moved[1, 0] == 0  # clipped to nothing
  transform = pipeline.ExampleTransform(image_size=(100, 100), max_boxes=4,
                                        augmentation=pipeline.Augmentation(hflip=False, zoom_crop=10))
  record = {"image": image, "boxes": boxes, "labels": np.array([3, 5], np.int32), "areas": np.zeros(2, np.float32),
            "polygons": [], "image_id": 1, "file_name": "x", "patient_id": "", "crop_origin": np.zeros(2, np.int32)}
  seen = set()
  for seed in range(12):
    out = transform(record, np.random.default_rng(seed))
    seen.add(int(out["valid"].sum()))
    assert out["labels"][0] == 3 and (out["valid"].sum() == 1 or out["labels"][1] == 5)
  assert seen == {1, 2}  # a cut of 5 px or more removes the corner lesion, a smaller one keeps it


def _square_record(image_id, size, box, label):
  image = np.zeros((size, size, 3), np.uint8)
  x1, y1, x2, y2 = box
  image[y1:y2, x1:x2] = 60 * (label + 1)  # each record's lesion in its own grey
  return {"image": image, "boxes": np.array([box], np.float32), "labels": np.array([label], np.int32),
          "areas": np.zeros(1, np.float32), "polygons": [], "image_id": image_id, "file_name": str(image_id),
          "patient_id": "", "crop_origin": np.zeros(2, np.int32)}


def test_mosaic_places_four_records_and_their_boxes_on_the_pixels():
  records = [_square_record(i, 64, (20 + 4 * i, 24, 40 + 4 * i, 44), i) for i in range(4)]
  transform = pipeline.ExampleTransform(image_size=(96, 96), max_boxes=8, augmentation=pipeline.Augmentation(hflip=False),
                                        mosaic=1.0, mosaic_source=records)
  kept_counts = set()
  for seed in range(20):
    rng = np.random.default_rng(seed)
    examples = [transform.prepare(records[0])] + [transform.prepare(records[j]) for j in (1, 2, 3)]
    out = transform.mosaic_of(examples, rng)
    assert out["image"].shape == (96, 96, 3) and out["image_id"] == 0
    for box, label in zip(out["boxes"], out["labels"]):
      x1, y1, x2, y2 = np.round(box).astype(int)
      inside = out["image"][y1:y2, x1:x2, 0]
      assert inside.size and np.all(inside == 60 * (label + 1)), (seed, box, label)  # the box covers its lesion's pixels
      visible = np.sum(out["image"][..., 0] == 60 * (label + 1))
      assert visible == (x2 - x1) * (y2 - y1)  # and all of them that the mosaic shows
    for label in range(4):  # a lesion shown over at least a quarter of its area is kept, a smaller part dropped
      visible = np.sum(out["image"][..., 0] == 60 * (label + 1))
      assert (label in out["labels"]) == (visible >= 0.25 * 400), (seed, label, visible)
    kept_counts.add(len(out["labels"]))
  assert len(kept_counts) > 1  # centres differ between draws
  batch = transform(records[0], np.random.default_rng(0))  # through __call__: partners drawn from the source
  assert batch["image"].shape == (96, 96, 3) and batch["valid"].sum() >= 1


def test_mosaic_with_masks_is_refused():
  with pytest.raises(ValueError, match="data.mosaic with lesion masks"):
    pipeline.check_options({"image_size": (64, 64), "mosaic": 1.0, "with_masks": True})
  with pytest.raises(ValueError, match="data.mosaic=1.5"):
    pipeline.check_options({"image_size": (64, 64), "mosaic": 1.5})


def test_class_balanced_sampler_gives_each_class_an_equal_share():
  record_classes = [[0]] * 50 + [[1]] * 5 + [[2, 0]] * 2 + [[]] * 3
  sampler = pipeline.ClassBalancedSampler(record_classes, num_classes=3, seed=0)
  drawn = [sampler[i].record_key for i in range(300)]
  for i, key in enumerate(drawn):
    assert (i % 3) in record_classes[key]
  assert len({sampler[i].record_key for i in range(1, 300, 3)}) == 5  # every class-1 record gets drawn
  assert [sampler[i].record_key for i in range(10)] == drawn[:10]  # deterministic


def test_too_many_boxes_names_the_record():
  with pytest.raises(ValueError, match="record face_7: 3 boxes, more than data.max_boxes=2"):
    pipeline.pad_example(np.zeros((4, 4, 3), np.uint8), np.zeros((3, 4)), np.zeros(3), 7, (8, 8), 2, "face_7")


def _placed(example, g):
  from acne_jax.evaluation import masks

  height, width = example["image"].shape[:2]
  return masks.place(example["masks"][g], example["mask_frames"][g], height, width)


@pytest.mark.parametrize("settings", [dict(hflip=True), dict(hflip=False, vflip=True), dict(hflip=False, rotate90=True)])
def test_lesion_masks_move_with_the_image(settings):
  """The bitmaps, placed in the image, are the polygons' masks moved by the same flip or rotation
  as the image (compared with the augmented full-image mask; rasterising after the move may
  differ from moving the raster only where a pixel centre lies on an edge)."""
  from acne_jax.data import pipeline, synthetic
  from acne_jax.ops import mask_targets

  record = synthetic.generate_example(3, image_size=(90, 90), num_lesions=(6, 9))
  polygons = [np.asarray(p, np.float64).reshape(-1, 2) for p in record["objects"]["polygon"]]
  for seed in range(4):
    transform = pipeline.ExampleTransform(image_size=(96, 96), max_boxes=12, augmentation=pipeline.Augmentation(**settings),
                                          mask_size=56)
    example = transform(record, np.random.default_rng(seed))
    # Replay the image's augmentation on each full-image mask with the same generator.
    for g, polygon in enumerate(polygons):
      full = mask_targets.rasterize_full(polygon, 90, 90)
      moved, _ = pipeline.augment(np.repeat(full[..., None], 3, axis=2), record["objects"]["bbox"][:1], np.random.default_rng(seed),
                                  pipeline.Augmentation(**settings))
      expected = np.zeros((96, 96), np.uint8)
      expected[:90, :90] = moved[..., 0]
      got = _placed(example, g)
      # Rasterising the moved polygon and moving the raster may differ only on the outline.
      import cv2

      kernel = np.ones((3, 3), np.uint8)
      outline = cv2.dilate(expected, kernel) != cv2.erode(expected, kernel)
      assert not np.any((got != expected) & ~outline), (seed, g)
      assert np.sum(got != expected) <= 0.2 * expected.sum() + 2, (seed, g, np.sum(got != expected), expected.sum())
    assert not example["masks"][len(polygons):].any()


def test_mask_configs_refuse_data_sets_without_outlines():
  from configs import mask_rcnn_sadh

  with pytest.raises(ValueError, match="acne04 data set has box annotations only"):
    mask_rcnn_sadh.get_config("acne04")
  assert mask_rcnn_sadh.get_config("acne_scu").data.with_masks


def test_a_record_without_polygons_is_named():
  from acne_jax.data import pipeline

  with pytest.raises(ValueError, match="record face_7: 2 boxes but 0 polygons"):
    pipeline.lesion_masks([], np.zeros((2, 4), np.float32), 56, "face_7")


def _tiny_config(data_dir, **data):
  from configs import sadh

  config = sadh.get_config()
  with config.unlocked():
    config.data.update(builder_config="tiny", data_dir=data_dir, image_size=(96, 96), max_boxes=8, **data)
    config.train.batch_size = 4
  return config


def _batches(config, n=6):
  from acne_jax import train

  pipeline.check_options(config.data)
  source, _ = datasets.source(config.data, config.data.train_split)
  loader = train.make_streaming_loader(config, source, config.train.batch_size)
  return [next(loader) for _ in range(n)]


def test_the_embedded_default_trains_through_the_pipeline_real_data_sets_use(tiny_source, tiny_dir, monkeypatch):
  """The embedded set's training batches come from grain's StreamingLoader like AcneSCU's: the
  RAM cache (its only difference) serves the same batches as reading the records each time."""
  from configs import sadh

  default, acne_scu = sadh.get_config().data, sadh.get_config("acne_scu").data
  assert default.cache_in_memory and default.worker_count == 0 and not acne_scu.cache_in_memory
  made = []
  real = pipeline.StreamingLoader

  def spy(*args, **kwargs):
    made.append(args[0])
    return real(*args, **kwargs)

  monkeypatch.setattr(pipeline, "StreamingLoader", spy)
  cached = _batches(_tiny_config(tiny_dir))
  read_each_time = _batches(_tiny_config(tiny_dir, cache_in_memory=False))
  assert isinstance(made[0], pipeline.DecodedCache) and not isinstance(made[1], pipeline.DecodedCache)
  for a, b in zip(cached, read_each_time):
    for key in pipeline.BATCH_KEYS:
      np.testing.assert_array_equal(a[key], b[key])


@pytest.mark.parametrize("option, value", [("hflip", False), ("vflip", True), ("rotate90", True), ("brightness", 0.3),
                                           ("crop_size", 48), ("class_balanced", True), ("drop_labels", (0, 2)),
                                           ("resize_min_size", 64), ("rotate_degrees", 30.0), ("zoom_crop", 16),
                                           ("mosaic", 1.0)])
def test_each_augmentation_and_sampling_option_changes_the_batches(tiny_source, tiny_dir, option, value):
  """Through the config, as a run sets it: every option acts on what the model sees."""
  data = {option: value}
  if option == "resize_min_size":
    data["resize_max_size"] = 80
  changed = _batches(_tiny_config(tiny_dir, **data))
  plain = _batches(_tiny_config(tiny_dir))
  differs = lambda key: any(not np.array_equal(a[key], b[key]) for a, b in zip(plain, changed))
  assert differs("boxes") != (option == "brightness")  # brightness scales pixels only
  assert differs("image") != (option == "drop_labels")  # dropping classes changes the ground truth only
  if option == "drop_labels":
    assert not any(np.isin(b["labels"], value).any() for b in changed) and any(np.isin(a["labels"], value).any() for a in plain)
  if option == "crop_size":
    assert all(not b["image"][:, 48:].any() and not b["image"][:, :, 48:].any() for b in changed)


def test_two_processes_read_slices_of_the_single_process_batches(tiny_source):
  """Each of two processes reads its half of every global batch: side by side they are the one
  process's batches, records and augmentation alike."""
  import grain.python as grain

  transform = pipeline.ExampleTransform(image_size=(96, 96), max_boxes=8, augmentation=pipeline.Augmentation(vflip=True))

  def stream(batch_size, process=None):
    sampler = grain.IndexSampler(len(tiny_source), shard_options=grain.NoSharding(), shuffle=True, seed=5)
    if process is not None:
      sampler = pipeline.ProcessSliceSampler(sampler, 2 * batch_size, batch_size, process)
    loader = grain.DataLoader(data_source=tiny_source, sampler=sampler, shard_options=grain.NoSharding(),
                              operations=[pipeline.RandomExampleMap(transform), grain.Batch(batch_size)])
    it = iter(loader)
    return [next(it) for _ in range(4)]

  whole, first, second = stream(4), stream(2, 0), stream(2, 1)
  for w, a, b in zip(whole, first, second):
    for key in pipeline.BATCH_KEYS:
      np.testing.assert_array_equal(w[key], np.concatenate([a[key], b[key]]))
