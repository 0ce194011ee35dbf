"""AcneSCU: LabelMe / COCO parsing, patients and splits, and the TFDS builder end to end.

The fixtures are written in the real formats (LabelMe JSON beside JPEG files, or a COCO
instance JSON with images/): 4 usable images of 1300 x 1100 (so ``crops_1024`` gives 2 x 2
windows with origins x in {0, 276}, y in {0, 76}) from 3 patients, plus a corrupt JPEG and an
invalid JSON. JPEG is lossy: expected pixels are ``cv2.imdecode`` of the written file, never
the array that was drawn.
"""

from __future__ import annotations

import logging
import math
import os
import sys

import cv2
import numpy as np
import pytest

from acne_jax.data import labelme as L
from acne_jax.data import masked_crop as M
from acne_jax.data.records import ACNE_SCU_CLASS_NAMES as CLASS_NAMES, decode_record
from acne_jax.data.synthetic import clip_polygon
from acne_jax.testing import fixtures

tfds = pytest.importorskip("tensorflow_datasets")
from tfds_builders.acne_scu import AcneScu, AcneScuConfig, BuildSummary, ManualDataError, NoUsableDataError, load_build_summary, summary_path  # noqa: E402

H, W = 1100, 1300
IDX = {name: i for i, name in enumerate(CLASS_NAMES)}


_rect = fixtures.rect
_poly = fixtures.polygon_shape
_circle = fixtures.circle_shape


def _pick_names():
  """Patient names (Chinese, as AcneSCU's) that the default split puts in train (2), test, validation."""
  found = {"train": [], "test": [], "validation": []}
  for a in "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗":
    for b in "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平":
      split = L.split_of(a + b)
      if len(found[split]) < (2 if split == "train" else 1):
        found[split].append(a + b)
  return found["train"][0], found["test"][0], found["validation"][0]


PATIENT_A, PATIENT_B, PATIENT_C = _pick_names()

# Image 1 (patient A): every edge case. Lesion indices are referred to below.
SHAPES_1 = [
    _poly("papule", _rect(100, 100, 140, 130.5)),  # 0: windows 0 and 2 only (x < 276)
    _circle("pustule", 600, 500, 20),  # 1: inside all four windows
    _poly("Nodule", [(1000, 300), (1050, 305), (1045, 340), (1003, 338)]),  # 2: straddles x = 1024
    _poly("nevus", _rect(700, 700, 706, 706)),  # 3: under 10 px: whole only, never masked
    _poly("other", _rect(-20, 500, 30, 540)),  # 4: partly outside: clipped; touches x = 0
    _poly("acne_scar_typo", _rect(300, 300, 340, 340)),  # unknown label: skipped
    _poly("papule", [(400, 400), (420, 420)]),  # 2 points: skipped
    _poly("melasma", _rect(1400, 200, 1450, 260)),  # 5: outside the image: clipped to nothing, dropped
]
SHAPES_2 = [_poly("closed_comedo", [(450, 450), (480, 452), (470, 481)]), _poly("melasma", _rect(300.25, 600, 420, 700))]
SHAPES_3 = [_poly("open_comedo", _rect(500, 200, 530, 230)), _circle("atrophic_scar", 800, 800, 15.5)]
SHAPES_4 = [_poly("hypertrophic_scar", [(350, 350), (500, 360), (490, 420), (360, 410)])]


def _write_jpeg(path, image):
  fixtures.write_bytes(path, fixtures.encode_jpeg(image, 90))


def _draw(seed, shapes):
  """A bright skin-like image (every channel >= 80) with each lesion filled in a dark red."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
  base = np.stack([190 - 0.02 * yy, 150 - 0.01 * xx, 130 + 0.01 * yy], -1)
  image = np.clip(base + rng.normal(0, 4, (H, W, 3)), 80, 255).astype(np.uint8)
  for shape in shapes:
    points = fixtures.shape_points(shape)
    if len(points) >= 3:
      cv2.fillPoly(image, [np.round(points).astype(np.int32)], (150, 60, 50))
  return image


def _labelme(image_path, shapes):
  return fixtures.labelme_document(image_path, shapes, H, W)


# (relative image path, seed, shapes); names as AcneSCU's: <operator>__<name>_<diagnosis>_<time>_<view>.
IMAGES = [
    (f"J__{PATIENT_A}_痤疮_20190123090437000_斑点.jpg", 1, SHAPES_1),
    (f"CXM__{PATIENT_A}痤疮_20190305102113000_标准照片.jpg", 2, SHAPES_2),  # same patient, glued diagnosis
    (f"batch2/J__{PATIENT_B}_痤疮_20200721082108000_斑点.jpg", 3, SHAPES_3),
    (f"batch2/deeper/JX__{PATIENT_C}_20200519090132000_斑点.jpg", 4, SHAPES_4),
]
CORRUPT = f"J__{PATIENT_A}_痤疮_20191111104524000_斑点.jpg"


@pytest.fixture(scope="module")
def labelme_dir(tmp_path_factory):
  """LabelMe + JPEG pairs (some in sub-folders), a corrupt JPEG and an invalid JSON."""
  root = str(tmp_path_factory.mktemp("acne_scu_labelme"))
  for rel, seed, shapes in IMAGES:
    # Image 3 keeps the Windows path LabelMe wrote on the annotator's machine: found by base name.
    image_path = "C:\\labelme\\" + os.path.basename(rel) if "deeper" not in rel and "batch2" in rel else os.path.basename(rel)
    fixtures.write_labelme_pair(root, rel, fixtures.encode_jpeg(_draw(seed, shapes)), shapes, H, W, image_path=image_path)
  fixtures.write_labelme_pair(root, CORRUPT, b"\xff\xd8\xff\xe0 this is not a JPEG", [_poly("papule", _rect(10, 10, 40, 40))], H, W)
  with open(os.path.join(root, "broken.json"), "w") as f:
    f.write('{"shapes": [ {"label": "papule", ')
  return root


def _expected_image(root, rel):
  return cv2.cvtColor(cv2.imdecode(np.fromfile(os.path.join(root, rel), np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _expected_lesions(shapes):
  """Hand-rolled expectations: kept shapes clipped to the image, reference-rounded boxes."""
  polygons, labels = [], []
  for shape in shapes:
    name = shape["label"].lower()
    points = np.asarray(shape["points"], np.float64)
    if name not in IDX or len(points) <= 2 and shape["shape_type"] == "polygon":
      continue
    if shape["shape_type"] == "circle":
      points = M.circle_to_polygon(points[0], points[1])
    if (points < 0).any() or (points[:, 0] > W).any() or (points[:, 1] > H).any():
      points = clip_polygon(points, W, H)
    if len(points) < 3:
      continue
    polygons.append(points)
    labels.append(IDX[name])
  boxes = []
  for p in polygons:
    x1, y1 = math.floor(p[:, 0].min()), math.floor(p[:, 1].min())
    boxes.append([x1, y1, x1 + math.ceil(p[:, 0].max() - p[:, 0].min()), y1 + math.ceil(p[:, 1].max() - p[:, 1].min())])
  return polygons, np.asarray(labels, np.int64), np.asarray(boxes, np.float32).reshape(-1, 4)


def _items(summary):
  return sorted((i["action"], i["file"], i["index"], i["label"], i["reason"]) for i in summary.items)


def _labelme_items():
  """The shapes of image 1 (SHAPES_1) that are dropped or clipped, as the summary names them."""
  json_1 = os.path.splitext(IMAGES[0][0])[0] + ".json"
  return sorted([
      ("clipped", json_1, 4, "other", "clipped"),  # x from -20
      ("dropped", json_1, 5, "acne_scar_typo", "unknown_label"),
      ("dropped", json_1, 6, "papule", "too_few_points"),
      ("dropped", json_1, 7, "melasma", "outside_image"),  # x from 1400, the image is 1300 wide
  ])


def _build(config, data_dir, manual_dir):
  builder = AcneScu(config=config, data_dir=str(data_dir))
  builder.download_and_prepare(file_format="array_record", download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
  return builder


def _read_all(builder):
  return {split: [decode_record(r) for r in builder.as_data_source(split=split)] for split in L.SPLITS}


def _check_split_and_patients(records):
  owners = {}
  for split, recs in records.items():
    for r in recs:
      assert r["patient_id"] == L.patient_of(r["file_name"])
      assert L.split_of(r["patient_id"]) == split
      owners.setdefault(r["patient_id"], set()).add(split)
  assert all(len(s) == 1 for s in owners.values()), owners  # no patient in two splits
  assert {next(iter(owners[p])) for p in (PATIENT_A, PATIENT_B, PATIENT_C)} == {"train", "test", "validation"}


# --------------------------------------------------------------------------------------------
# Parsing, patients and splits.


def test_patient_of():
  assert L.patient_of("J__王伟_痤疮_20190123090437000_斑点.jpg") == "王伟"
  assert L.patient_of("some/folder/CXM__王伟痤疮_20190305102113000_标准照片.JPG") == "王伟"
  assert L.patient_of("J__宋嵌怡__痤疮_20200513085008000_斑点") == "宋嵌怡"
  assert L.patient_of("JX__刘钺尧_20190515153508000_斑点.json") == "刘钺尧"
  assert L.patient_of("J__王伟_痤疮_20190123090437000_斑点_crop3") == "王伟"
  assert L.patient_of("p012_left_2.jpg") == "p012"
  assert L.patient_of("p7-front-view2.png") == "p7"
  assert L.patient_of("patient_7_2.jpg") == "patient"  # a bare number is an index: name patients p7
  assert L.patient_of("anna.jpg") == "anna"


def test_split_of_is_a_salted_hash_of_the_patient():
  assert L.split_of("王伟") == L.split_of("王伟")
  assert L.split_fraction("王伟") != L.split_fraction("王伟", salt="other")
  splits = [L.split_of(f"p{i:04d}") for i in range(4000)]
  assert abs(splits.count("test") / 4000 - 0.10) < 0.02
  assert abs(splits.count("validation") / 4000 - 0.05) < 0.015
  assert L.split_of("x", test_fraction=1.0, validation_fraction=0.0) == "test"
  with pytest.raises(ValueError):
    L.split_of("x", test_fraction=0.7, validation_fraction=0.5)


def test_parse_labelme_shapes_and_skips(labelme_dir, caplog):
  rel = IMAGES[0][0]
  with caplog.at_level(logging.WARNING):
    image = L.parse_labelme_file(os.path.join(labelme_dir, os.path.splitext(rel)[0] + ".json"), root=labelme_dir)
  assert image.file_name == rel and (image.height, image.width) == (H, W)
  assert image.image_path == os.path.join(labelme_dir, rel)
  assert image.patient_id == PATIENT_A
  np.testing.assert_array_equal(image.labels, [IDX[n] for n in ("papule", "pustule", "nodule", "nevus", "other", "melasma")])
  assert image.shape_types == ["polygon", "circle", "polygon", "polygon", "polygon", "polygon"]
  octagon = image.polygons[1]
  assert octagon.shape == (8, 2)
  np.testing.assert_allclose(np.hypot(octagon[:, 0] - 600, octagon[:, 1] - 500), 20.0)
  assert [(s.label, s.reason) for s in image.skipped_shapes] == [("acne_scar_typo", L.UNKNOWN_LABEL), ("papule", L.TOO_FEW_POINTS)]
  assert "acne_scar_typo" in caplog.text and os.path.basename(rel).replace(".jpg", ".json") in caplog.text

  # Other shape types and malformed points are skipped too; a null shape_type is a polygon.
  obj = _labelme("none.jpg", [
      {"label": "papule", "points": [[0, 0], [5, 5]], "shape_type": "rectangle"},
      {"label": "papule", "points": [[0, 0], ["a", 5], [3, 3]], "shape_type": "polygon"},
      {"label": "papule", "points": [[0, 0], [5, 5], [9, 9]], "shape_type": "circle"},
      {"label": " Open comedo ", "points": [[0, 0], [5, 0], [5, 5]], "shape_type": None},
  ])
  obj["imageData"] = "aGVsbG8="  # no image file: the embedded data is used
  image = L.parse_labelme(obj, os.path.join(labelme_dir, "none.json"), root=labelme_dir)
  assert [s.reason for s in image.skipped_shapes] == [L.UNSUPPORTED_SHAPE_TYPE, L.INVALID_POINTS, L.INVALID_POINTS]
  np.testing.assert_array_equal(image.labels, [IDX["open_comedo"]])
  assert image.image_data == b"hello" and image.image_path == ""

  with pytest.raises(L.AnnotationError, match="broken.json"):
    L.parse_labelme_file(os.path.join(labelme_dir, "broken.json"))
  with pytest.raises(L.AnnotationError, match="not found beside it"):
    L.parse_labelme(_labelme("missing.jpg", []), os.path.join(labelme_dir, "missing.json"))
  with pytest.raises(L.AnnotationError, match="JPEG without image data"):
    L.read_image(L.parse_labelme_file(os.path.join(labelme_dir, os.path.splitext(CORRUPT)[0] + ".json")))


def test_read_image_checks_the_annotated_size(labelme_dir):
  rel = IMAGES[2][0]
  image = L.parse_labelme_file(os.path.join(labelme_dir, os.path.splitext(rel)[0] + ".json"), root=labelme_dir)
  pixels, encoded = L.read_image(image)
  np.testing.assert_array_equal(pixels, _expected_image(labelme_dir, rel))
  assert L.stored_image_bytes(pixels, encoded) is encoded
  image.height = H + 1
  with pytest.raises(L.AnnotationError, match="differs from the annotated"):
    L.read_image(image)


def test_clip_lesions_counts():
  polygons = [np.array(_rect(-5, 2, 10, 8), float), np.array(_rect(20, 20, 30, 20), float), np.array(_rect(200, 0, 210, 5), float), np.array(_rect(1.5, 1.5, 7.2, 3.9))]
  out = L.clip_lesions(polygons, np.array([1, 2, 3, 4]), width=100, height=50)
  assert (out.num_clipped, out.num_dropped) == (2, 2)  # 0 clipped & kept, 1 a line, 2 outside
  np.testing.assert_array_equal(out.labels, [1, 4])
  np.testing.assert_array_equal(out.boxes, [[0, 2, 10, 8], [1, 1, 7, 4]])  # reference rounding
  tight = L.clip_lesions(polygons[3:], np.array([4]), 100, 50, reference_rounding=False)
  np.testing.assert_array_equal(tight.boxes, np.array([[1.5, 1.5, 7.2, 3.9]], np.float32))


# --------------------------------------------------------------------------------------------
# The builder.


@pytest.fixture(scope="module")
def built(labelme_dir, tmp_path_factory):
  data_dir = tmp_path_factory.mktemp("acne_scu_data")
  return data_dir, {config: _read_all(_build(config, data_dir, labelme_dir)) for config in ("whole", "crops_1024")}


def test_whole_records_read_back_exactly(built, labelme_dir):
  data_dir, records = built
  records = records["whole"]
  _check_split_and_patients(records)
  by_name = {r["file_name"]: (split, r) for split, recs in records.items() for r in recs}
  assert sorted(by_name) == sorted(rel for rel, _, _ in IMAGES)
  names = sorted(rel for rel, _, _ in IMAGES + [(CORRUPT, 0, 0)])
  for rel, _, shapes in IMAGES:
    _, r = by_name[rel]
    np.testing.assert_array_equal(r["image"], _expected_image(labelme_dir, rel))  # the JPEG's own pixels
    polygons, labels, boxes = _expected_lesions(shapes)
    np.testing.assert_array_equal(r["labels"], labels)
    np.testing.assert_array_equal(r["boxes"], boxes)
    np.testing.assert_array_equal(r["areas"], (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    assert len(r["polygons"]) == len(polygons)
    for got, want in zip(r["polygons"], polygons):
      np.testing.assert_array_equal(got, want.astype(np.float32).reshape(-1))
    np.testing.assert_array_equal(r["crop_origin"], [0, 0])
    assert r["image_id"] == names.index(rel)  # sorted position among annotated images
  # Image 1: the lesion partly outside is clipped to x >= 0, the one fully outside is gone.
  r = by_name[IMAGES[0][0]][1]
  assert r["labels"].tolist() == [IDX[n] for n in ("papule", "pustule", "nodule", "nevus", "other")]
  np.testing.assert_array_equal(r["boxes"][4], [0, 500, 30, 540])
  np.testing.assert_array_equal(r["boxes"][3], [700, 700, 706, 706])  # small lesions stay in whole

  summary = load_build_summary(data_dir, "whole")
  assert isinstance(summary, BuildSummary) and summary.info["input_format"] == "labelme"
  assert summary.counts["annotation_files"] == 6 and summary.counts["images"] == 5
  assert {s: c["examples"] for s, c in summary.splits.items()} == {s: len(records[s]) for s in L.SPLITS}
  assert {s: c["examples"] for s, c in summary.splits.items()} == {"train": 2, "validation": 1, "test": 1}
  assert sum(c["boxes"] for c in summary.splits.values()) == 5 + 2 + 2 + 1
  assert summary.info["boxes_per_class"]["papule"] == 1 and summary.info["boxes_per_class"]["other"] == 1
  assert {s: c["patients"] for s, c in summary.splits.items()} == {"train": 1, "validation": 1, "test": 1}
  assert summary.empty_splits == {}
  counts = summary.counts
  assert (counts["skipped_files"], counts["skipped_shapes"], counts["clipped"], counts["dropped_zero_area"], counts["reencoded_images"]) == (2, 2, 2, 1, 0)
  # Every skipped file and every dropped or clipped shape, by name: file, shape index, label, reason.
  assert _items(summary) == _labelme_items() + sorted([
      ("skipped", "broken.json", None, "", "unreadable_json"),
      ("skipped", CORRUPT, None, "", "corrupt_image"),
  ])
  skipped = {os.path.basename(f["file"]): f["detail"] for f in summary.select("skipped")}
  assert set(skipped) == {"broken.json", CORRUPT}
  assert "JSON" in skipped["broken.json"] and "JPEG without image data" in skipped[CORRUPT]
  assert os.path.isfile(summary_path(data_dir, "whole", "1.0.0"))
  text = summary.format().splitlines()
  json_1 = os.path.splitext(IMAGES[0][0])[0] + ".json"
  assert f"      {json_1} shape 5 'acne_scar_typo': not one of the 10 classes" in text
  assert f"      {json_1} shape 7 'melasma': lies outside the 1300x1100 image" in text
  assert "  skipped files and lines (2):" in text
  assert "tensorflow" not in sys.modules  # built and read back without TensorFlow


def test_crops_1024_records_read_back_exactly(built, labelme_dir):
  data_dir, records = built
  records = records["crops_1024"]
  _check_split_and_patients(records)
  by_name = {r["file_name"]: r for recs in records.values() for r in recs}
  assert len(by_name) == 4 * len(IMAGES)
  names = sorted(rel for rel, _, _ in IMAGES + [(CORRUPT, 0, 0)])
  masked = lost = 0
  for rel, _, shapes in IMAGES:
    source = _expected_image(labelme_dir, rel)
    polygons, labels, _ = _expected_lesions(shapes)
    oracle = M.masked_crops(source, polygons, labels, crop_size=1024, min_size=10)
    assert [c.origin for c in oracle] == [(0, 0), (276, 0), (0, 76), (276, 76)]
    kept = set()
    for k, want in enumerate(oracle):
      r = by_name[f"{os.path.splitext(rel)[0]}_crop{k}"]
      assert r["image"].shape == (1024, 1024, 3)
      np.testing.assert_array_equal(r["image"], want.image)  # PNG: exact, masked pixels exactly 0
      np.testing.assert_array_equal(r["crop_origin"], want.origin)
      np.testing.assert_array_equal(r["boxes"], want.boxes)
      np.testing.assert_array_equal(r["labels"], want.labels)
      np.testing.assert_array_equal(r["areas"], want.areas)
      assert len(r["polygons"]) == len(want.polygons)
      for got, p in zip(r["polygons"], want.polygons):
        np.testing.assert_array_equal(got, p.reshape(-1))
      assert r["image_id"] == 10_000 * names.index(rel) + k
      masked += len(want.masked_index)
      kept.update(want.source_index.tolist())
    lost += len(labels) - len(kept)

  # Image 1 by hand: windows 0 and 2 (x0 = 0) cut the nodule at x = 1024 and the clipped
  # "other" lesion at x = 0, and black them out; windows 1 and 3 (x0 = 276) hold the nodule.
  stem = os.path.splitext(IMAGES[0][0])[0]
  crops = [by_name[f"{stem}_crop{k}"] for k in range(4)]
  source = _expected_image(labelme_dir, IMAGES[0][0])
  for k, (x0, y0) in enumerate([(0, 0), (276, 0), (0, 76), (276, 76)]):
    names_k = [CLASS_NAMES[i] for i in crops[k]["labels"]]
    if x0 == 0:
      assert names_k == ["papule", "pustule"]
      assert (crops[k]["image"][320 - y0, 1010] == 0).all() and (source[320, 1010] > 0).all()  # nodule masked
      assert (crops[k]["image"][520 - y0, 15] == 0).all()  # "other" masked
      assert (crops[k]["image"][703 - y0, 703] > 0).all()  # the small nevus is not masked
    else:
      assert names_k == ["pustule", "nodule"]
      np.testing.assert_array_equal(crops[k]["boxes"][1], [1000 - 276, 300 - y0, 1050 - 276, 340 - y0])
      assert (crops[k]["image"][320 - y0, 1010 - 276] > 0).all()
  zeros = [int((c["image"] == 0).all(-1).sum()) for c in crops]
  assert zeros[0] > 2000 and zeros[1] == 0 and zeros[3] == 0

  summary = load_build_summary(data_dir, "crops_1024")
  assert {s: c["examples"] for s, c in summary.splits.items()} == {s: len(records[s]) for s in L.SPLITS}
  assert sum(c["examples"] for c in summary.splits.values()) == 16
  assert {s: c["images"] for s, c in summary.splits.items()} == {"train": 2, "validation": 1, "test": 1}
  assert sum(c["boxes"] for c in summary.splits.values()) == sum(len(r["labels"]) for r in by_name.values())
  assert summary.counts["masked"] == masked == 4
  assert summary.counts["lesions_not_in_any_crop"] == lost == 2  # the small nevus and the "other" at x = 0
  assert (summary.counts["clipped"], summary.counts["dropped_zero_area"]) == (2, 1)
  json_1 = os.path.splitext(IMAGES[0][0])[0] + ".json"
  assert _items(summary) == sorted(_labelme_items() + [
      ("skipped", "broken.json", None, "", "unreadable_json"),
      ("skipped", CORRUPT, None, "", "corrupt_image"),
      ("dropped", json_1, 3, "nevus", "under_min_size"),  # 6 x 6 px
      ("dropped", json_1, 4, "other", "cut_by_every_window"),  # clipped to x >= 0: cut at x = 0 by windows 0 and 2
  ])


def test_missing_or_empty_manual_dir_says_where_and_how(tmp_path):
  missing = tmp_path / "no_such_folder"
  with pytest.raises(ManualDataError) as info:
    _build("whole", tmp_path / "data", missing)
  message = str(info.value)
  assert str(missing) in message and "LabelMe" in message and "annotations.json" in message and "imagePath" in message
  empty = tmp_path / "empty"
  empty.mkdir()
  (empty / "readme.txt").write_text("nothing here")
  with pytest.raises(ManualDataError) as info:
    _build("whole", tmp_path / "data", empty)
  assert str(empty) in str(info.value) and "no annotation file" in str(info.value) and "images/" in str(info.value)
  assert not os.path.exists(summary_path(tmp_path / "data", "whole"))


def test_coco_input(labelme_dir, tmp_path):
  """The same images as one COCO instance file (ids 1..10, circles already octagons)."""
  root = tmp_path / "coco"
  images = []
  for i, (rel, _, shapes) in enumerate(IMAGES):
    name = os.path.basename(rel)
    fixtures.write_bytes(root / "images" / name, open(os.path.join(labelme_dir, rel), "rb").read())
    images.append({"id": 100 + i, "file_name": name, "height": H, "width": W, "shapes": shapes})
  fixtures.write_json(root / "annotations.json", fixtures.coco_document(images))  # unknown labels: category 99
  with open(root / "images" / "ignored.json", "w") as f:  # other JSON files are ignored in COCO mode
    f.write("{")

  parsed = L.parse_coco_file(str(root / "annotations.json"), str(root / "images"))
  assert [p.file_name for p in parsed] == [os.path.basename(rel) for rel, _, _ in IMAGES]
  assert [(s.label, s.reason) for s in parsed[0].skipped_shapes] == [("category_id=99", L.UNKNOWN_LABEL), ("papule", L.TOO_FEW_POINTS)]

  data_dir = tmp_path / "data"
  records = _read_all(_build("whole", data_dir, root))
  _check_split_and_patients(records)
  by_name = {r["file_name"]: r for recs in records.values() for r in recs}
  assert sorted(by_name) == sorted(os.path.basename(rel) for rel, _, _ in IMAGES)
  for rel, _, shapes in IMAGES:
    r = by_name[os.path.basename(rel)]
    np.testing.assert_array_equal(r["image"], _expected_image(labelme_dir, rel))
    polygons, labels, boxes = _expected_lesions(shapes)
    np.testing.assert_array_equal(r["labels"], labels)
    np.testing.assert_array_equal(r["boxes"], boxes)
    for got, want in zip(r["polygons"], polygons):
      np.testing.assert_array_equal(got, want.astype(np.float32).reshape(-1))
  summary = load_build_summary(data_dir, "whole")
  assert summary.info["input_format"] == "coco" and summary.counts["annotation_files"] == 1 and summary.counts["images"] == 4
  # The first image's 8 shapes are annotations 0-7 of the COCO file.
  assert _items(summary) == sorted([
      ("dropped", "annotations.json", 5, "category_id=99", "unknown_label"),
      ("dropped", "annotations.json", 6, "papule", "too_few_points"),
      ("clipped", "annotations.json", 4, "other", "clipped"),
      ("dropped", "annotations.json", 7, "melasma", "outside_image"),
  ])
  assert all(i["item"] == "annotation" for i in summary.items)


def test_custom_configs(labelme_dir, tmp_path):
  """256 crops with every patient in train (splits of fraction 0 are left out, and reported)."""
  config = AcneScuConfig(name="test_crops_256", crop_size=256, test_fraction=0.0, validation_fraction=0.0)
  builder = _build(config, tmp_path / "data", labelme_dir)
  assert set(builder.info.splits) == {"train"}
  records = [decode_record(r) for r in builder.as_data_source(split="train")]
  assert len(records) == 4 * 5 * 6  # 1100 / 256 -> 5 rows, 1300 / 256 -> 6 columns
  assert all(r["image"].shape == (256, 256, 3) for r in records)
  summary = load_build_summary(tmp_path / "data", "test_crops_256")
  assert summary.splits["train"]["examples"] == 120 and summary.splits["train"]["patients"] == 3
  assert summary.splits["train"]["boxes"] == sum(len(r["labels"]) for r in records) > 0
  assert summary.empty_splits == {"validation": "its fraction is 0 in the configuration", "test": "its fraction is 0 in the configuration"}
  assert AcneScu(config="crops_256").builder_config.crop_size == 256
  assert AcneScu.BUILDER_CONFIGS[1].name == "crops_1024" and AcneScu.DEFAULT_CONFIG_NAME == "crops_1024"


def test_a_one_patient_release_builds_reporting_the_empty_splits(tmp_path):
  """One patient: every image in one split, the other two reported empty (not an error); a
  split whose only image is corrupt is reported empty; nothing usable names the files."""
  shapes = [_poly("papule", _rect(5, 6, 20, 18))]
  one = tmp_path / "one"
  for k in range(2):
    fixtures.write_labelme_pair(one, f"J__{PATIENT_A}_痤疮_2019012309043700{k}_斑点.jpg", fixtures.noise_jpeg(k, 48, 40), shapes, 40, 48)
  builder = _build("whole", tmp_path / "d1", one)
  assert set(builder.info.splits) == {"train"} and len(builder.as_data_source(split="train")) == 2
  summary = load_build_summary(tmp_path / "d1", "whole")
  why = "no patient falls in it (2 usable annotated images of 1 patients; test_fraction=0.1, validation_fraction=0.05)"
  assert summary.empty_splits == {"validation": why, "test": why}
  assert summary.splits == {"train": {"examples": 2, "boxes": 2, "images": 2, "patients": 1}} and summary.items == []
  assert f"  test: EMPTY, left out of the data set: {why}" in summary.format().splitlines()

  # Patient B (test) has one image, and it is corrupt: test is reported empty, naming it.
  corrupt = f"J__{PATIENT_B}_痤疮_20200721082108000_斑点.jpg"
  fixtures.write_labelme_pair(one, corrupt, b"\xff\xd8\xff garbage", shapes, 40, 48)
  _build("whole", tmp_path / "d2", one)
  summary = load_build_summary(tmp_path / "d2", "whole")
  assert summary.empty_splits["test"] == "all 1 images of its patients were skipped"
  assert _items(summary) == [("skipped", corrupt, None, "", "corrupt_image")]

  for k in range(2):
    fixtures.write_bytes(one / f"J__{PATIENT_A}_痤疮_2019012309043700{k}_斑点.jpg", b"")
  with pytest.raises(NoUsableDataError) as info:
    _build("whole", tmp_path / "d3", one)
  assert corrupt in str(info.value) and f"J__{PATIENT_A}_痤疮_20190123090437000_斑点.jpg" in str(info.value)


def test_synthetic_release_goes_through_the_acne_scu_builder(tmp_path):
  """synthetic.write_labelme_release + the acne_scu builder: generated data on the AcneSCU path."""
  from acne_jax.data import masked_crop, synthetic

  release = tmp_path / "fake_scu"
  written = synthetic.write_labelme_release(str(release), num_images=4, image_size=(300, 420), num_lesions=(4, 8))
  assert len(written) == 4
  from tfds_builders.acne_scu import AcneScuConfig

  # Four images are too few patients for the default 10 % / 5 % split: keep them all in train.
  config = AcneScuConfig(name="synthetic_crops_256", crop_size=256, test_fraction=0.0, validation_fraction=0.0)
  builder = _build(config, tmp_path / "tfds", release)
  records = [decode_record(r) for r in builder.as_data_source(split="train")]
  # ceil(300/256) x ceil(420/256) = 2 x 2 windows per image.
  assert len(records) == 4 * 4
  # Every crop equals masked_crops of the decoded JPEG with the generated polygons.
  by_name = {r["file_name"]: r for r in records}
  for json_path in written:
    image_file = json_path[:-5] + ".jpg"
    parsed = L.parse_labelme_file(json_path, str(release))
    pixels = _expected_image(str(release), os.path.basename(image_file))
    lesions = L.clip_lesions(parsed.polygons, parsed.labels, pixels.shape[1], pixels.shape[0])
    crops = masked_crop.masked_crops(pixels, lesions.polygons, lesions.labels, crop_size=256)
    stem = os.path.splitext(os.path.basename(image_file))[0]
    for k, crop in enumerate(crops):
      record = by_name[f"{stem}_crop{k}"]
      np.testing.assert_array_equal(record["image"], crop.image)
      np.testing.assert_array_equal(record["boxes"], crop.boxes)
      np.testing.assert_array_equal(record["labels"], crop.labels)
      assert record["patient_id"] == L.patient_of(stem)


# --------------------------------------------------------------------------------------------
# Regressions found by scripts/fuzz_builders.py.


def test_points_must_be_numbers_of_pixel_range():
  """A circle whose rim is at 1.8e308 raised OverflowError (math.sqrt of an overflowing
  square); true/false and numeric strings were read as coordinates; a vertex at 1e300 turned
  into NaN when clipped. All are invalid points now, named with their shape."""
  shapes = [
      _circle("papule", 10, 10, 3), {"label": "papule", "points": [[10, 10], [1.7976931348623157e308, 10]], "shape_type": "circle"},
      _poly("papule", [(1, 1), (5, 1), (5, 5)]), _poly("papule", [(1, 1), (5, 1), (5, 5)]),
      _poly("papule", [(1, 1), (1e300, 1), (5, 5)]), _poly("papule", [(1, 1), (5, 1), (5, 2**31)]),
  ]
  shapes[2]["points"][0] = [True, 1]
  shapes[3]["points"][0] = ["1", "1"]
  image = L.parse_labelme(dict(fixtures.labelme_document("a.jpg", shapes, 20, 20), imageData="aGVsbG8="), "a.json")
  assert image.shape_indices == [0]
  assert [(s.index, s.reason) for s in image.skipped_shapes] == [(k, L.INVALID_POINTS) for k in range(1, 6)]
  coco = fixtures.coco_document([{"id": 1, "file_name": "a.jpg", "height": 20, "width": 20, "shapes": [_poly("papule", _rect(1, 1, 5, 5))] * 2}])
  coco["annotations"][1]["segmentation"] = [[1, 1, 5, 1, 1e300, 5]]
  (image,) = L.parse_coco(coco, "annotations.json", "images")
  assert [(s.index, s.reason) for s in image.skipped_shapes] == [(1, L.INVALID_POINTS)]


def test_coco_entries_that_refer_to_nothing_are_named_not_fatal(tmp_path):
  """An annotation whose image_id is no image, or an image entry without file_name, made the
  whole COCO file unusable (ManualDataError); a missing image was named as annotations.json.
  Now each is left out and named, and the rest builds."""
  root = tmp_path / "coco"
  shapes = [_poly("papule", _rect(5, 6, 20, 18)), _poly("nevus", _rect(22, 6, 30, 18))]
  entries = [{"id": 100 + k, "file_name": f"J__{PATIENT_A}_痤疮_2019012309043700{k}_斑点.jpg", "height": 40, "width": 48, "shapes": shapes}
             for k in range(3)]
  for k, entry in enumerate(entries[:2]):
    fixtures.write_bytes(root / "images" / entry["file_name"], fixtures.noise_jpeg(k, 48, 40))
  doc = fixtures.coco_document(entries)
  doc["annotations"][1]["image_id"] = 99999
  doc["images"][1] = {"id": 101, "height": 40, "width": 48}  # no file_name
  fixtures.write_json(root / "annotations.json", doc)
  builder = _build("whole", tmp_path / "data", root)
  (record,) = [decode_record(r) for r in builder.as_data_source(split="train")]
  assert record["file_name"] == entries[0]["file_name"] and record["labels"].tolist() == [IDX["papule"]]
  summary = load_build_summary(tmp_path / "data", "whole")
  assert sorted((i["action"], i["file"], i["index"], i["item"], i["reason"]) for i in summary.items) == sorted([
      ("dropped", "annotations.json", 1, "annotation", "unknown_image_id"),
      ("skipped", "annotations.json", 1, "image", "malformed_image_entry"),
      ("dropped", "annotations.json", 2, "annotation", "unknown_image_id"),  # the lesions of the entry left out
      ("dropped", "annotations.json", 3, "annotation", "unknown_image_id"),
      ("skipped", "images/" + entries[2]["file_name"], None, "", "image_not_found"),
  ])


def test_file_names_that_are_not_utf8_are_skipped_and_named(tmp_path):
  """A release unzipped without its archive's encoding has names that are not UTF-8: TFDS
  could not store them (a crash). Such files are skipped, named with the bytes escaped."""
  root = tmp_path / "release"
  shapes = [_poly("papule", _rect(5, 6, 20, 18))]
  good = f"J__{PATIENT_A}_痤疮_20190123090437000_斑点.jpg"
  fixtures.write_labelme_pair(root, good, fixtures.noise_jpeg(0, 48, 40), shapes, 40, 48)
  gbk = os.fsdecode(f"J__{PATIENT_A}_".encode() + "痤疮".encode("gbk") + b"_20190123090437001.jpg")
  fixtures.write_labelme_pair(root, gbk, fixtures.noise_jpeg(1, 48, 40), shapes, 40, 48, image_path="")
  builder = _build("whole", tmp_path / "data", root)
  assert [decode_record(r)["file_name"] for r in builder.as_data_source(split="train")] == [good]
  summary = load_build_summary(tmp_path / "data", "whole")
  (item,) = summary.items
  escaped = os.fsencode(os.path.splitext(gbk)[0] + ".json").decode("utf-8", "backslashreplace")
  assert "\\x" in escaped
  assert (item["action"], item["file"], item["reason"]) == ("skipped", escaped, "non_utf8_name")
  assert "unzip -O" in item["detail"]
  summary.format().encode("utf-8")


def test_a_jpeg_cut_short_is_corrupt_whatever_the_decoder(tmp_path):
  """OpenCV 4 decodes a JPEG cut short with grey rows (OpenCV 5 refuses it): the builders check
  the end-of-image marker (JPEG) and the IEND chunk (PNG) themselves."""
  from acne_jax.data import image_bytes

  jpeg = fixtures.noise_jpeg(0, 48, 40)
  thumbnail = jpeg[:2] + b"\xff\xe1\x00\x10Exif\x00\x00\xff\xd8\xff\xda\x00\xff\xd9" + jpeg[2:]  # markers of an EXIF thumbnail first
  assert image_bytes.incomplete(jpeg) is None and image_bytes.incomplete(jpeg + b"trailer") is None
  assert image_bytes.incomplete(thumbnail[:-2]) == "a truncated JPEG (no end-of-image marker after its last scan)"
  assert "no start-of-scan" in image_bytes.incomplete(jpeg[:100])
  png = L.encode_png(np.zeros((4, 4, 3), np.uint8))
  assert image_bytes.incomplete(png) is None and image_bytes.incomplete(png[:-12]) == "a truncated PNG (no IEND chunk)"
  assert image_bytes.incomplete(b"BM...") is None  # other formats: left to the decoder
  fixtures.write_labelme_pair(tmp_path, "a.jpg", jpeg[:-2], [_poly("papule", _rect(5, 6, 20, 18))], 40, 48)
  with pytest.raises(L.AnnotationError, match="truncated JPEG") as info:
    L.read_image(L.parse_labelme_file(str(tmp_path / "a.json")))
  assert info.value.reason == "corrupt_image"
