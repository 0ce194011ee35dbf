"""torchvision's detector resize in NumPy (``acne_jax.data.resize``): pixels, sizes, boxes and
polygons against torch / torchvision, the streaming and in-memory pipelines, and evaluation in
the original images' pixels."""

import types

import numpy as np
import pytest
import torch

from acne_jax.data import pipeline, resize, synthetic
from acne_jax.data.records import decode_record
from acne_jax.data.loader import InMemoryDataset

# (height, width, min_size, max_size): up-scaling capped by max_size, down-scaling, odd sizes.
CASES = [(37, 53, 800, 1333), (600, 900, 320, 512), (101, 67, 50, 60), (48, 48, 64, 64), (9, 250, 40, 97)]


@pytest.fixture(scope="module")
def torchvision(tv):
  return tv


def _torch_resize(image: np.ndarray, scale: float) -> np.ndarray:
  """torchvision's call: ``interpolate(scale_factor, bilinear, recompute_scale_factor=True)``, HWC."""
  x = torch.from_numpy(np.ascontiguousarray(image, np.float32)).permute(2, 0, 1)[None]
  out = torch.nn.functional.interpolate(x, size=None, scale_factor=scale, mode="bilinear", recompute_scale_factor=True,
                                        align_corners=False)
  return out[0].permute(1, 2, 0).numpy()


@pytest.mark.parametrize("height,width,min_size,max_size", CASES)
def test_resize_bilinear_equals_torch_interpolate(height, width, min_size, max_size):
  image = np.random.default_rng(height * width).uniform(size=(height, width, 3)).astype(np.float32)
  scale = resize.torchvision_scale(height, width, min_size, max_size)
  expected = _torch_resize(image, scale)
  got = resize.resize_bilinear(image, resize.resized_size(height, width, scale))
  assert got.dtype == np.float32 and got.shape == expected.shape
  np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
  # A single-channel [H, W] image is resized the same way.
  np.testing.assert_allclose(resize.resize_bilinear(image[..., 0], got.shape[:2]), expected[..., 0], atol=1e-4, rtol=0)


def test_caps_and_short_side():
  assert resize.resized_size(37, 53, resize.torchvision_scale(37, 53, 800, 1333)) == (800, 1145)
  assert resize.resized_size(37, 74, resize.torchvision_scale(37, 74, 800, 1333)) == (666, 1333)  # max_size wins
  assert resize.resized_size(600, 900, resize.torchvision_scale(600, 900, 320, 512)) == (320, 480)
  # 97 * (800 / 97) is 799.999... in double precision; torch truncates it to 799, and so do we.
  meta = torch.empty(1, 1, 97, 120, device="meta")
  torch_size = torch.nn.functional.interpolate(meta, scale_factor=800 / 97, mode="bilinear", recompute_scale_factor=True,
                                               align_corners=False).shape[-2:]
  assert resize.resized_size(97, 120, resize.torchvision_scale(97, 120, 800, 1333)) == tuple(torch_size) == (799, 989)


def test_resized_sizes_equal_torch_output_sizes():
  rng = np.random.default_rng(0)
  for _ in range(500):
    height, width = (int(v) for v in rng.integers(1, 2000, size=2))
    min_size = int(rng.integers(1, 1500))
    max_size = int(rng.integers(min_size, 2500))
    scale = resize.torchvision_scale(height, width, min_size, max_size)
    meta = torch.empty(1, 1, height, width, device="meta")  # shapes only, no pixels
    try:
      expected = tuple(torch.nn.functional.interpolate(meta, scale_factor=scale, mode="bilinear", recompute_scale_factor=True,
                                                       align_corners=False).shape[-2:])
    except RuntimeError:  # torch refuses an empty output: so do we
      with pytest.raises(ValueError, match="raise data.resize_min_size"):
        resize.resized_size(height, width, scale)
      continue
    assert resize.resized_size(height, width, scale) == expected, (height, width, min_size, max_size)


@pytest.mark.parametrize("height,width,min_size,max_size", CASES[:3])
def test_resize_example_equals_torchvision_transform(torchvision, height, width, min_size, max_size):
  """Image, boxes and polygons (as keypoints) against ``GeneralizedRCNNTransform`` with the
  reference normalisation, and the mapping back against its ``postprocess``."""
  from torchvision.models.detection import transform as tv_transform

  rng = np.random.default_rng(1)
  image = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
  xy = rng.uniform(0, [width, height], size=(6, 2))
  boxes = np.concatenate([xy, np.minimum(xy + rng.uniform(1, 30, size=(6, 2)), [width, height])], axis=1).astype(np.float32)
  polygons = [rng.uniform(0, [width, height], size=(5, 2)).astype(np.float32).reshape(-1) for _ in range(6)]

  out_image, out_boxes, out_polygons, (ratio_h, ratio_w) = resize.resize_example(image, boxes, min_size, max_size, polygons)

  mean, std = [144.578, 107.304, 90.519], [78.271, 63.2, 56.992]
  transform = tv_transform.GeneralizedRCNNTransform(min_size, max_size, mean, std).eval()
  keypoints = torch.from_numpy(np.stack([np.concatenate([p.reshape(-1, 2), np.ones((5, 1), np.float32)], axis=1) for p in polygons]))
  target = {"boxes": torch.from_numpy(boxes), "labels": torch.zeros(6, dtype=torch.int64), "keypoints": keypoints}
  with torch.no_grad():
    images, targets = transform([torch.from_numpy(image).permute(2, 0, 1).float()], [target])
  new_h, new_w = images.image_sizes[0]
  assert out_image.shape == (new_h, new_w, 3) and out_image.dtype == np.uint8
  torch_ratios = [(torch.tensor(s, dtype=torch.float32) / torch.tensor(o, dtype=torch.float32)).item()
                  for s, o in zip((new_h, new_w), (height, width))]
  assert [float(ratio_h), float(ratio_w)] == torch_ratios
  # torchvision resizes the normalised image: undo the normalisation; we round to uint8.
  torch_pixels = images.tensors[0, :, :new_h, :new_w].permute(1, 2, 0).numpy() * np.float32(std) + np.float32(mean)
  assert np.abs(out_image.astype(np.float32) - torch_pixels).max() <= 0.5 + 1e-3
  np.testing.assert_array_equal(out_boxes, targets[0]["boxes"].numpy())
  np.testing.assert_array_equal(out_boxes, tv_transform.resize_boxes(torch.from_numpy(boxes), [height, width], [new_h, new_w]).numpy())
  for got, expected in zip(out_polygons, targets[0]["keypoints"].numpy()):
    assert got.shape == (10,)
    np.testing.assert_array_equal(got.reshape(-1, 2), expected[:, :2])

  # Detections map back exactly as postprocess maps them.
  detections = torch.from_numpy(out_boxes + np.float32(0.37))
  expected = transform.postprocess([{"boxes": detections.clone()}], images.image_sizes, [(height, width)])[0]["boxes"].numpy()
  got = resize.boxes_to_original(detections.numpy()[None], [[new_h, new_w]], [[height, width]])[0]
  np.testing.assert_array_equal(got, expected)


def test_uint8_result_is_within_half_a_grey_level_of_torch_float():
  image = np.random.default_rng(2).integers(0, 256, size=(37, 53, 3), dtype=np.uint8)
  out, _, polygons, _ = resize.resize_example(image, np.zeros((0, 4), np.float32), 800, 1333)
  expected = _torch_resize(image.astype(np.float32), resize.torchvision_scale(37, 53, 800, 1333))
  assert polygons is None and out.shape == expected.shape
  assert np.abs(out.astype(np.float32) - expected).max() <= 0.5 + 1e-3


def test_resize_settings_must_come_in_pairs():
  assert not resize.resize_enabled(0, 0) and resize.resize_enabled(800, 1333)
  with pytest.raises(ValueError, match="data.resize_min_size=800 and data.resize_max_size=0"):
    resize.resize_enabled(800, 0)
  with pytest.raises(ValueError, match="boxes \\[N, D, 4\\] and sizes \\[N, 2\\]"):
    resize.boxes_to_original(np.zeros((2, 3, 4)), [[1, 1]], [[1, 1]])


def _record(image_id=5):
  return synthetic.generate_example(image_id, image_size=(60, 90), num_lesions=(3, 5), image_id=image_id)


def test_example_transform_resizes_then_pads():
  record = _record()
  transform = pipeline.ExampleTransform(image_size=(160, 224), max_boxes=8, augmentation=pipeline.Augmentation(hflip=False),
                                        resize_min_size=100, resize_max_size=140)
  example = transform(record, np.random.default_rng(0))
  decoded = decode_record(record)
  image, boxes, _, _ = resize.resize_example(decoded["image"], decoded["boxes"], 100, 140)
  assert image.shape == (93, 140, 3)  # 60 x 90 -> scale min(100 / 60, 140 / 90) = 1.556
  np.testing.assert_array_equal(example["image"][:93, :140], image)
  assert not example["image"][93:].any() and not example["image"][:, 140:].any()
  k = len(boxes)
  np.testing.assert_array_equal(example["boxes"][:k], boxes)
  assert example["valid"][:k].all() and not example["valid"][k:].any()
  # Masks are rasterised from the resized polygons.
  with_masks = pipeline.ExampleTransform(image_size=(160, 224), max_boxes=8, augmentation=pipeline.Augmentation(hflip=False),
                                         mask_size=28, resize_min_size=100, resize_max_size=140)(record, np.random.default_rng(0))
  np.testing.assert_array_equal(with_masks["boxes"], example["boxes"])
  assert with_masks["masks"][:k].any(axis=(1, 2)).all()
  # Without a resize the transform is unchanged.
  plain = pipeline.ExampleTransform(image_size=(160, 224), max_boxes=8, augmentation=pipeline.Augmentation(hflip=False))
  np.testing.assert_array_equal(plain(record, np.random.default_rng(0))["image"][:60, :90], decoded["image"])


def test_in_memory_dataset_keeps_ratios_and_originals():
  records = [_record(i + 1) for i in range(3)]
  records[1] = synthetic.generate_example(2, image_size=(75, 50), num_lesions=(3, 5), image_id=2)
  plain = InMemoryDataset.from_records(records, image_size=(160, 224), max_boxes=8, mask_size=28)
  data = InMemoryDataset.from_records(records, image_size=(160, 224), max_boxes=8, mask_size=28, resize_min_size=100,
                                      resize_max_size=140)
  assert plain.scale is None and not plain.resized and data.resized
  np.testing.assert_array_equal(data.original_sizes, plain.image_sizes)
  np.testing.assert_array_equal(data.image_sizes, [[93, 140], [140, 93], [93, 140]])
  np.testing.assert_array_equal(data.scale, [[np.float32(93) / np.float32(60), np.float32(140) / np.float32(90)],
                                             [np.float32(140) / np.float32(75), np.float32(93) / np.float32(50)],
                                             [np.float32(93) / np.float32(60), np.float32(140) / np.float32(90)]])
  sizes, boxes, masks, frames = data.ground_truth_geometry()
  np.testing.assert_array_equal(sizes, plain.image_sizes)
  np.testing.assert_array_equal(boxes, plain.boxes)
  np.testing.assert_array_equal(masks, plain.masks)
  np.testing.assert_array_equal(frames, plain.mask_frames)
  for n, record in enumerate(records):
    decoded = decode_record(record)
    image, resized_boxes, _, ratios = resize.resize_example(decoded["image"], decoded["boxes"], 100, 140)
    h, w = image.shape[:2]
    np.testing.assert_array_equal(data.images[n, :h, :w], image)
    np.testing.assert_array_equal(data.boxes[n, :len(resized_boxes)], resized_boxes)
    np.testing.assert_array_equal(data.scale[n], ratios)
  # Mapped back, the resized ground truth lands on the original (up to float rounding).
  np.testing.assert_allclose(data.boxes_to_original(data.boxes), plain.boxes, atol=1e-3)
  np.testing.assert_array_equal(plain.boxes_to_original(plain.boxes), plain.boxes)  # inside the images already
  with pytest.raises(ValueError, match=r"is 140x93 after the resize from 75x50 .*larger than data.image_size 120x224"):
    InMemoryDataset.from_records(records, image_size=(120, 224), max_boxes=8, resize_min_size=100, resize_max_size=140)


def test_evaluation_scores_in_original_pixels():
  """Detections equal to the resized ground truth score AP 1 against the original ground truth;
  the COCO files hold original sizes and boxes."""
  from acne_jax import train

  records = [_record(i + 1) for i in range(3)]
  plain = InMemoryDataset.from_records(records, image_size=(160, 224), max_boxes=8)
  data = InMemoryDataset.from_records(records, image_size=(160, 224), max_boxes=8, resize_min_size=100, resize_max_size=140)
  detections = types.SimpleNamespace(boxes=data.boxes, scores=np.where(data.valid, 0.9, 0.0).astype(np.float32),
                                     classes=np.maximum(data.labels, 0), valid=data.valid)
  outputs = train.ModelOutputs(data.image_ids, detections, None, None)
  config = types.SimpleNamespace(eval=types.SimpleNamespace(iou=0.5, max_dets=100))
  metrics, gt, results = train.coco_evaluation(outputs, data, config, synthetic.CLASS_NAMES)
  assert gt == train.ground_truth(plain, synthetic.CLASS_NAMES)  # original sizes and boxes
  assert [(im["height"], im["width"]) for im in gt["images"]] == [(60, 90)] * 3
  for result, annotation in zip(results, gt["annotations"]):
    np.testing.assert_allclose(result["bbox"], annotation["bbox"], atol=1e-3)
  assert metrics["AP@0.5"] == pytest.approx(1.0)
  # Without the mapping the same detections would be far off.
  unmapped = train.coco_evaluation(outputs, plain, config, synthetic.CLASS_NAMES)[0]
  assert unmapped["AP@0.5"] < 0.5


# MMDetection's Resize(img_scale=(max, min), keep_ratio=True): the rounded sizes worked by hand
# from mmcv's rescale_size (scale = min(long_max / long, short_max / short); int(side * scale + 0.5)).
@pytest.mark.parametrize("height, width, short_max, long_max, expected", [
    (2000, 3000, 1024, 1024, (683, 1024)),  # 2000 * 1024 / 3000 = 682.67 -> 683 (torchvision: 682)
    (1365, 2048, 1024, 1024, (683, 1024)),  # 682.5 rounds up (torchvision truncates to 682)
    (3000, 2000, 1024, 1024, (1024, 683)),
    (600, 800, 800, 1333, (800, 1067)),  # short side to 800: 800 * 800 / 600 = 1066.67 -> 1067
    (100, 130, 800, 1333, (800, 1040)),  # upscaled: 130 * 8 = 1040
])
def test_mmdetection_keep_ratio_sizes(height, width, short_max, long_max, expected):
  scale = resize.torchvision_scale(height, width, short_max, long_max)
  assert resize.resized_size(height, width, scale, "mmdetection") == expected
  image = np.zeros((height, width, 3), np.uint8)
  box = np.asarray([[0, 0, width, height]], np.float32)
  out, boxes, _, ratios = resize.resize_example(image, box, short_max, long_max, style="mmdetection")
  assert out.shape == (*expected, 3)
  np.testing.assert_allclose(boxes, [[0, 0, expected[1], expected[0]]], rtol=1e-6)
  np.testing.assert_allclose(ratios, (expected[0] / height, expected[1] / width), rtol=1e-6)


def test_mmdetection_pixels_are_bilinear_with_half_pixel_centres_and_boxes_are_clipped():
  """OpenCV's INTER_LINEAR (what mmcv.imresize calls) samples like torch's bilinear at the same
  output size: within one grey level (OpenCV's fixed-point weights)."""
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, size=(75, 110, 3), dtype=np.uint8)
  out, boxes, polygons, _ = resize.resize_example(image, np.asarray([[-4, 2, 120, 70]], np.float32), 40, 60,
                                                  polygons=[np.asarray([0, 0, 110, 0, 110, 75], np.float32)], style="mmdetection")
  # scale = min(60 / 110, 40 / 75) = 0.5333: 75 -> 40, 110 -> int(58.67 + 0.5) = 59
  assert out.shape == (40, 59, 3) and out.dtype == np.uint8
  reference = resize.resize_bilinear(image, (40, 59))
  assert np.abs(out.astype(np.float32) - reference).max() <= 1.0
  np.testing.assert_allclose(boxes, [[0, 2 * 40 / 75, 59, 70 * 40 / 75]], rtol=1e-5)  # x clipped to [0, 59]
  np.testing.assert_allclose(polygons[0], [0, 0, 59, 0, 59, 40], rtol=1e-5)


def test_resize_style_and_fit_are_checked_with_the_config():
  from acne_jax.data import pipeline
  from configs import sadh

  data = sadh.get_config("acne04").data
  assert (data.resize_style, data.resize_min_size, data.resize_max_size, tuple(data.image_size)) == ("mmdetection", 1024, 1024, (1024, 1024))
  pipeline.check_options(data)
  with data.unlocked():
    data.resize_style = "detectron2"
  with pytest.raises(ValueError, match="data.resize_style='detectron2'"):
    pipeline.check_options(data)
  with data.unlocked():
    data.update(resize_style="mmdetection", resize_max_size=1333)
  with pytest.raises(ValueError, match="data.resize_max_size=1333: .* must fit in data.image_size 1024x1024"):
    pipeline.check_options(data)
