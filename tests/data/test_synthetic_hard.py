"""The hard synthetic set's statistics against the targets it states (acne_jax/data/synthetic_hard.py).

Layouts are sampled without rendering (cheap); a few small faces are rendered to check that
their lesions are visible against the skin around them; the TFDS builder is built once with small faces.
"""

import math

import numpy as np
import pytest

from acne_jax.data import masked_crop, records, synthetic, synthetic_hard as hard

NUM_LAYOUTS = 240


@pytest.fixture(scope="module")
def layouts():
  rng = np.random.default_rng(0)
  skin = hard.face_skin_mask(np.random.default_rng(1), *hard.FACE_HW)
  return skin, [hard.sample_layout(rng, skin) for _ in range(NUM_LAYOUTS)]


def _sizes(lesions):
  boxes = np.stack([synthetic.polygon_box(l.polygon) for l in lesions])
  return np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])), boxes


def test_acnescu_constants_come_from_the_reference_counts():
  # reference_notes.md C3: 31,777 lesions in 276 VISIA images (the paper's section 4.1 totals).
  assert sum(hard.ACNESCU_CLASS_COUNTS) == 31777 and hard.ACNESCU_IMAGES == 276
  assert hard.LESIONS_PER_FRAME_PIXEL * 5184 * 3456 == pytest.approx(31777 / 276)
  assert hard.FACE_HW == (1944, 1296)
  top3 = set(np.argsort(hard.ACNESCU_CLASS_COUNTS)[-3:])
  assert top3 == {0, 2, 5}  # closed comedones, papules, atrophic scars dominate


def test_class_frequencies_match_acnescu(layouts):
  _, faces = layouts
  labels = np.concatenate([[l.label for l in face] for face in faces])
  n = len(labels)
  observed = np.bincount(labels, minlength=10) / n
  expected = np.asarray(hard.ACNESCU_CLASS_WEIGHTS)
  tolerance = 4 * np.sqrt(expected * (1 - expected) / n) + 0.005
  assert np.all(np.abs(observed - expected) <= tolerance), (observed.round(4), expected.round(4))
  assert 0.5 * np.abs(observed - expected).sum() < 0.03


def test_lesions_per_face_at_visia_density(layouts):
  skin, faces = layouts
  counts = np.array([len(face) for face in faces])
  target = hard.LESIONS_PER_FRAME_PIXEL * hard.FACE_HW[0] * hard.FACE_HW[1]  # 115.13 * 0.375**2 = 16.19
  assert target == pytest.approx(16.19, abs=0.01)
  assert counts.mean() == pytest.approx(target, rel=0.1)
  assert counts.var() > 2 * counts.mean()  # faces differ in severity (over-dispersed)
  assert 0.40 <= float(np.mean(skin >= 0.5)) <= 0.60


def test_sizes_are_mostly_6_to_32_px(layouts):
  _, faces = layouts
  sizes, boxes = _sizes([l for face in faces for l in face])
  for q in (10, 50, 90):
    low, high = hard.SIZE_TARGETS[f"p{q}"]
    assert low <= np.percentile(sizes, q) <= high, (q, np.percentile(sizes, q))
  assert np.mean((sizes >= 6) & (sizes <= 32)) >= hard.SIZE_TARGETS["share_6_32"]
  assert np.all(boxes[:, 2:] - boxes[:, :2] >= hard.MIN_BOX_SIDE)


def test_lesions_cluster_and_touch_but_do_not_stack(layouts):
  _, faces = layouts
  near, total, worst = 0, 0, 0.0
  for face in faces:
    if len(face) < 2:
      total += len(face)
      continue
    _, boxes = _sizes(face)
    gap_x = np.maximum(boxes[:, None, 0], boxes[None, :, 0]) - np.minimum(boxes[:, None, 2], boxes[None, :, 2])
    gap_y = np.maximum(boxes[:, None, 1], boxes[None, :, 1]) - np.minimum(boxes[:, None, 3], boxes[None, :, 3])
    gap = np.maximum(gap_x, gap_y)
    np.fill_diagonal(gap, np.inf)
    near += int(np.sum(gap.min(axis=1) <= 2.0))
    total += len(face)
    for i in range(len(boxes)):
      worst = max(worst, float(synthetic._box_iou(boxes[i], np.delete(boxes, i, axis=0)).max()))
  assert 0.2 <= near / total <= 0.5, near / total
  assert worst <= hard.MAX_BOX_IOU + 1e-6


def test_crops_of_the_grid(layouts):
  skin, faces = layouts
  origins = masked_crop.crop_origins(*hard.FACE_HW, hard.CROP_SIZE)
  assert len(origins) == 24  # 4 x 6 windows, as 1024 windows on a whole VISIA frame
  assert sorted({int(x) for x, _ in origins}) == [0, 304, 608, 912]
  fractions = hard.skin_fractions(skin)
  blank = np.zeros(hard.FACE_HW + (3,), np.uint8)
  kept, masked, plain = [], 0, 0
  for face in faces[:40]:
    polygons, labels = [l.polygon for l in face], [l.label for l in face]
    crops = masked_crop.masked_crops(blank, polygons, labels, crop_size=hard.CROP_SIZE, min_size=hard.MIN_BOX_SIDE)
    plains = hard.plain_crops(blank, polygons, labels)
    for crop, unmasked, fraction in zip(crops, plains, fractions):
      if fraction < hard.MIN_SKIN_FRACTION:
        continue
      kept.append(len(crop.boxes))
      masked += len(crop.masked_index)
      plain += len(unmasked.boxes)
      # Plain crops keep every lesion a masked crop keeps, plus the cut ones; boxes inside the window.
      assert set(crop.source_index) <= set(unmasked.source_index)
      assert np.all(unmasked.boxes >= 0) and np.all(unmasked.boxes <= hard.CROP_SIZE)
  kept = np.asarray(kept)
  assert 1.0 <= kept.mean() <= 3.0 and kept.max() <= 32  # data.max_boxes
  # Cut (masked) lesion instances: about 2 (w + h) / S of those a window touches, ~0.2 for 384
  # windows (~0.07 for AcneSCU's 1024 ones), each whole in a neighbouring window.
  assert 0.1 <= masked / (kept.sum() + masked) <= 0.3
  assert plain > kept.sum()


def test_lesions_of_rendered_faces_are_visible():
  """No lesion is hard for a silly reason: each differs from the skin ring around it in colour
  (CIELAB distance of the means over 2.3, the just-noticeable difference) or in texture (RMS luma
  difference over the ring's own standard deviation); the larger of the two is its visibility."""
  import cv2

  visibility = []
  for seed in range(6):
    rng = np.random.default_rng(seed)
    # Small faces at 12 times the VISIA density, so that each holds about a dozen lesions.
    image, skin, lesions = hard.generate_face(rng, synthetic.skin_tone(rng.uniform(0.1, 0.8)), 480, 360, severity=12.0)
    luma = image.astype(np.float32) @ np.float32([0.299, 0.587, 0.114])
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(np.float32)
    masks = [synthetic.polygon_mask(l.polygon, *luma.shape, antialias=False) >= 0.5 for l in lesions]
    for i, mask in enumerate(masks):
      if mask.sum() < 9:
        continue
      grown = cv2.dilate(mask.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
      ring = cv2.dilate(mask.astype(np.uint8), np.ones((17, 17), np.uint8)).astype(bool) & ~grown & (skin >= 0.5)
      for j, other in enumerate(masks):
        if j != i:
          ring &= ~other
      if ring.sum() < 20:
        continue
      texture = math.sqrt(float(np.mean((luma[mask] - luma[ring].mean()) ** 2))) / max(float(luma[ring].std()), 1.0)
      colour = float(np.linalg.norm(lab[mask].mean(axis=0) - lab[ring].mean(axis=0))) / 2.3
      visibility.append(max(texture, colour))
  visibility = np.asarray(visibility)
  assert len(visibility) >= 40
  assert visibility.min() >= 0.6 and np.mean(visibility >= 1.0) >= 0.95, np.sort(visibility)[:5]


def test_the_builder_makes_masked_and_plain_crops_of_the_same_faces(tmp_path):
  from tfds_builders.synthetic_acne import SyntheticAcne

  builder = SyntheticAcne(config="hard_tiny", data_dir=str(tmp_path))  # 128 x 128 crops of 384 x 256 faces
  builder.download_and_prepare(file_format="array_record")
  assert set(builder.info.splits) == {"train", "train_plain", "validation", "test"}
  masked = builder.as_data_source(split="train")
  plain = builder.as_data_source(split="train_plain")
  masked_records = [records.decode_record(masked[i]) for i in range(len(masked))]
  plain_records = [records.decode_record(plain[i]) for i in range(len(plain))]
  assert [r["image_id"] for r in masked_records] == [r["image_id"] for r in plain_records]
  assert all(r["image"].shape == (128, 128, 3) for r in masked_records)
  assert sum(len(r["boxes"]) for r in plain_records) >= sum(len(r["boxes"]) for r in masked_records)
  patients = {split: {records.decode_record(s[i])["patient_id"] for i in range(len(s))}
              for split, s in ((k, builder.as_data_source(split=k)) for k in ("train", "validation", "test"))}
  assert not (patients["train"] & patients["test"]) and not (patients["validation"] & patients["test"])


def test_the_hard_data_configs():
  from configs import common, faster_rcnn, sadh

  hard_config = faster_rcnn.get_config("synthetic_hard")
  assert (hard_config.data.builder_config, hard_config.data.train_split, tuple(hard_config.data.image_size)) == (
      "hard", "train", (384, 384))
  assert tuple(hard_config.data.drop_labels) == (9,) and hard_config.train.batch_size == 2
  plain = sadh.get_config("synthetic_hard_plain")
  assert plain.data.train_split == "train_plain" and plain.data.eval_split == "test"
  # The same thin model as the easy set; the easy set stays the default.
  assert hard_config.model.backbone.to_dict() == faster_rcnn.get_config().model.backbone.to_dict()
  assert sadh.get_config().data.builder_config == "s256" and common.is_synthetic("synthetic_hard")


def test_the_experiment_density_keeps_the_other_statistics():
  """The builder's ``hard`` config multiplies the lesion count (the experiments' calibration,
  docs/decisions.md); classes, sizes and the crop grid keep their targets, and no stored crop
  holds more lesions than the synthetic_hard config's data.max_boxes."""
  from configs import faster_rcnn
  from tfds_builders.synthetic_acne import SyntheticAcne

  density = next(c.density_scale for c in SyntheticAcne.BUILDER_CONFIGS if c.name == "hard")
  max_boxes = faster_rcnn.get_config("synthetic_hard").data.max_boxes
  rng = np.random.default_rng(3)
  skin = hard.face_skin_mask(np.random.default_rng(4), *hard.FACE_HW)
  faces = [hard.sample_layout(rng, skin, severity=density) for _ in range(12)]
  counts = np.array([len(face) for face in faces])
  assert counts.mean() == pytest.approx(density * 16.19, rel=0.1)
  labels = np.concatenate([[l.label for l in face] for face in faces])
  observed = np.bincount(labels, minlength=10) / len(labels)
  assert 0.5 * np.abs(observed - np.asarray(hard.ACNESCU_CLASS_WEIGHTS)).sum() < 0.04
  sizes, _ = _sizes([l for face in faces for l in face])
  for q in (10, 50, 90):
    low, high = hard.SIZE_TARGETS[f"p{q}"]
    assert low <= np.percentile(sizes, q) <= high, (q, np.percentile(sizes, q))
  blank = np.zeros(hard.FACE_HW + (3,), np.uint8)
  fractions = hard.skin_fractions(skin)
  per_crop = [len(crop.boxes) for face in faces
              for crop, fraction in zip(masked_crop.masked_crops(blank, [l.polygon for l in face], [l.label for l in face],
                                                                 crop_size=hard.CROP_SIZE, min_size=hard.MIN_BOX_SIDE), fractions)
              if fraction >= hard.MIN_SKIN_FRACTION]
  assert max(per_crop) <= max_boxes
  assert np.mean(per_crop) == pytest.approx(density * 1.36, rel=0.25)  # 1.36 per crop at VISIA density
