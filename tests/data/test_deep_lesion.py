"""DeepLesion: CSV parsing, slice interpolation, windowing, and a build from a fixture in the release format."""

from __future__ import annotations

import csv
import logging
import math
import os
import sys

import cv2
import numpy as np
import pytest

from acne_jax.data import deep_lesion as dl
from acne_jax.testing import fixtures

tfds = pytest.importorskip("tensorflow_datasets")

from acne_jax.data.records import decode_record  # noqa: E402
from tfds_builders.deep_lesion import deep_lesion as D  # noqa: E402

SIZE = 16  # fixture slices are 16 x 16
HEADER = list(fixtures.DL_HEADER)


def _hu(base, s):
  """HU of slice ``s`` of a series: ``base + 50 s + 3 row + col``."""
  return fixtures.slice_hu(base, s, SIZE)


# Series: folder -> (HU base, slices written, corrupt slices).
SERIES = {
    "000001_01_01": (-500, range(1, 10), ()),  # z = 1.25 mm: +-2 mm = +-1.6 slices, interpolated
    "000002_01_01": (0, range(1, 4), ()),  # z = 2 mm, Slice_range 1-3: key 3's next neighbour is outside
    "000003_02_03": (200, [7, 8, 9, 10, 11, 13], (8,)),  # z = 1 mm: 8 corrupt, 12 missing
    "000004_01_01": (0, [4, 6], (5,)),  # the key slice 5 is corrupt
}


_row = fixtures.dl_row


ROWS = [
    _row("000001_01_01_005.png", 1, 1, 1, 5, "2.5, 3.0, 8.25, 9.5", 4, 0, "1, 9", "0.7, 0.7, 1.25", 1, window="-1350, 150"),
    _row("000001_01_01_005.png", 1, 1, 1, 5, "10, 12, 20, 15", -1, 1, "1, 9", "0.7, 0.7, 1.25", 1, window="-1350, 150",
         recist="11, 13, 19, 14, 15, 12.5, 15, 14.5"),
    _row("000002_01_01_003.png", 2, 1, 1, 3, "1, 1, 5, 6", 5, 0, "1, 3", "0.8, 0.8, 2", 2),
    _row("000002_01_01_003.png", 2, 1, 1, 3, "4, 4, 4, 10", 6, 0, "1, 3", "0.8, 0.8, 2", 2, window="-160, 240"),
    _row("000006_01_01_004.png", 6, 1, 1, 4, "1, 2, 3", 1, 0, "1, 9", "0.7, 0.7, 5", 1),  # malformed: 3 box values
    _row("000001_01_01_002.png", 1, 1, 1, 2, "0, 0, 4, 4", 2, 0, "1, 9", "0.7, 0.7, 1.25", 1),
    _row("000003_02_03_010.png", 3, 2, 3, 10, "3, 3, 9, 9", 8, 0, "7, 13", "0.6, 0.6, 1", 3, size="512, 512"),
    _row("000004_01_01_005.png", 4, 1, 1, 5, "3, 3, 9, 9", 3, 0, "4, 6", "0.6, 0.6, 5", 3),  # corrupt key slice
    _row("000005_01_01_007.png", 5, 1, 1, 7, "3, 3, 9, 9", 3, 0, "6, 8", "0.6, 0.6, 5", 1),  # no Images_png folder
    _row("000007_01_01_001.png", 7, 1, 1, 1, "3, 3, 9, 9", 3, 0, "1, 1", "0.6, 0.6, 5", 0),  # split code 0
]


def _write_release(root):
  fixtures.write_deep_lesion_release(root, ROWS, SERIES, SIZE)


def _build(manual_dir, data_dir, config):
  builder = D.DeepLesion(config=config, data_dir=str(data_dir))
  builder.download_and_prepare(file_format="array_record", download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
  return builder


def _text(value):
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


@pytest.fixture(scope="module")
def release(tmp_path_factory):
  root = tmp_path_factory.mktemp("deep_lesion_release")
  _write_release(root)
  return root


@pytest.fixture(scope="module")
def built(release, tmp_path_factory):
  """The release built in the three configurations (warnings of the default build captured)."""
  data_dir = tmp_path_factory.mktemp("deep_lesion_data")
  messages = []
  handler = logging.Handler()
  handler.emit = lambda record: messages.append(record.getMessage())
  logger = logging.getLogger(D.__name__)
  logger.addHandler(handler)
  try:
    builders = {"default": _build(release, data_dir, "default")}
  finally:
    logger.removeHandler(handler)
  for config in ("dicom_window", "hu"):
    builders[config] = _build(release, data_dir, config)
  return builders, data_dir, messages


# --------------------------------------------------------------------------------------------
# Pure helpers.


def test_parse_dl_info(release, tmp_path):
  bad = []
  rows = dl.parse_dl_info(release / "DL_info.csv", bad_rows=bad)
  assert len(rows) == 9 and [line for line, _ in bad] == [6]  # header = line 1
  assert "DL_info.csv, line 6" in bad[0][1] and "Bounding_boxes" in bad[0][1]
  r = rows[1]
  assert r.line == 3 and r.file_name == "000001_01_01_005.png" and r.series_dir == "000001_01_01"
  assert (r.patient_index, r.study_index, r.series_id, r.key_slice_index) == (1, 1, 1, 5)
  assert r.measurement_coordinates == (11, 13, 19, 14, 15, 12.5, 15, 14.5)
  assert r.bounding_box == (10, 12, 20, 15) and r.lesion_diameters_pixel == (8.48, 7.07)
  assert r.normalized_lesion_location == (0.4, 0.5, 0.6)
  assert (r.coarse_lesion_type, r.label, r.possibly_noisy) == (-1, -1, True)
  assert rows[0].label == 3 and not rows[0].possibly_noisy  # type 4 (liver) -> label 3
  assert r.slice_range == (1, 9) and r.spacing_mm_px == (0.7, 0.7, 1.25) and r.image_size == (16, 16)
  assert r.dicom_windows == (-1350, 150) and (r.patient_gender, r.patient_age, r.train_val_test) == ("F", 62, 1)
  with pytest.raises(ValueError, match="DL_info.csv, line 6: Bounding_boxes: expected 4 values"):
    dl.parse_dl_info(release / "DL_info.csv")
  odd = tmp_path / "odd.csv"
  odd.write_text('000001_01_01_007.png,1,1,1,8,"1, 2, 3, 4, 5, 6, 7, 8","1, 2, 3, 4","1, 2","0.1, 0.2, 0.3",3,0,"1, 9",'
                 '"0.7, 0.7, 5","512, 512","-175, 275",M,NaN,1\n')  # no header, key slice != file name
  bad = []
  assert dl.parse_dl_info(odd, bad_rows=bad) == [] and "differs from the slice of File_name" in bad[0][1]
  assert dl.split_file_name("004432_01_01_072.png") == ("004432_01_01", 72)
  assert dl.slice_path("/data", "004432_01_01_072.png", 70) == os.path.join("/data", "Images_png", "004432_01_01", "070.png")
  assert dl.image_id(4432, 1, 1, 72) == 4432_01_01_072


def test_neighbour_slices():
  (p, k, n) = dl.neighbour_slices(5, 1.25)  # +-2 mm = +-1.6 slices
  assert k == [(5, 1.0)]
  assert [i for i, _ in p] == [3, 4] and np.allclose([w for _, w in p], [0.6, 0.4])
  assert [i for i, _ in n] == [6, 7] and np.allclose([w for _, w in n], [0.4, 0.6])
  assert dl.neighbour_slices(5, 0.5) == [[(1, 1.0)], [(5, 1.0)], [(9, 1.0)]]  # exact multiple: no interpolation
  assert dl.neighbour_slices(5, 2.0, num_slices=5) == [[(3, 1.0)], [(4, 1.0)], [(5, 1.0)], [(6, 1.0)], [(7, 1.0)]]
  assert dl.neighbour_slices(5, math.nan) == [[(5, 1.0)]] * 3  # unknown spacing: key slice only
  # Unavailable slices step towards the key; taps landing on one slice merge.
  available = lambda i: i in (4, 5, 7)
  (p, k, n) = dl.neighbour_slices(5, 1.25, is_available=available)
  assert p == [(4, pytest.approx(1.0))] and n == [(5, pytest.approx(0.4)), (7, pytest.approx(0.6))]
  with pytest.raises(ValueError, match="odd"):
    dl.neighbour_slices(5, 1.0, num_slices=2)


def test_three_slice_image_and_window(tmp_path):
  slices = {s: _hu(-500, s).astype(np.float32) for s in range(1, 10)}
  calls = []

  def load(i):
    calls.append(i)
    return slices.get(i)

  hu, taps = dl.three_slice_image(load, 2, 1.25, slice_range=(1, 9))
  assert hu.shape == (SIZE, SIZE, 3) and hu.dtype == np.float32
  # (row 2, col 5): slice s = -489 + 50 s. Previous channel: slice 0 is outside the range -> slice 1.
  np.testing.assert_allclose(hu[2, 5], [-439.0, -389.0, 0.4 * -339 + 0.6 * -289], atol=1e-4)
  assert taps[0] == [(1, 1.0)] and 0 not in calls and len(calls) == len(set(calls))  # each slice read once
  assert dl.window(np.array([-1024, 3071, -2000, 5000, 1023.5, 1023.4]), -1024, 3071).tolist() == [0, 255, 0, 255, 128, 127]
  assert dl.window(np.array([[-319.0]]), -1024, 3071).dtype == np.uint8
  with pytest.raises(ValueError, match="invalid window"):
    dl.window(np.zeros(2), 10, 10)
  with pytest.raises(ValueError, match="key slice 3"):
    dl.three_slice_image(lambda i: None, 3, 1.0)
  # load_hu: offset 32768, missing / corrupt / wrong dtype files.
  path = tmp_path / "001.png"
  cv2.imwrite(str(path), np.array([[0, 32768, 65535]], np.uint16))
  np.testing.assert_array_equal(dl.load_hu(path), [[-32768, 0, 32767]])
  with pytest.raises(FileNotFoundError, match="002.png"):
    dl.load_hu(tmp_path / "002.png")
  (tmp_path / "003.png").write_bytes(b"garbage")
  with pytest.raises(ValueError, match="003.png.*decode"):
    dl.load_hu(tmp_path / "003.png")
  cv2.imwrite(str(tmp_path / "004.png"), np.zeros((2, 2), np.uint8))
  with pytest.raises(ValueError, match="uint16"):
    dl.load_hu(tmp_path / "004.png")
  np.testing.assert_array_equal(dl.hu_to_uint16(np.array([-319.0, -308.6, 0.5, -40000.0])), [32449, 32459, 32769, 0])


# --------------------------------------------------------------------------------------------
# Build from the fixture release.


def _records(builder, split):
  source = builder.as_data_source(split=split)
  return [source[i] for i in range(len(source))]


def test_build_default_reads_back_exactly(built):
  builder = built[0]["default"]
  assert builder.info.features["objects"]["label"].names == list(dl.LESION_TYPES)
  train, val, test = (_records(builder, s) for s in ("train", "validation", "test"))
  assert [_text(r["file_name"]) for r in train] == ["000001_01_01_002.png", "000001_01_01_005.png"]  # by image_id
  assert [_text(r["file_name"]) for r in val] == ["000002_01_01_003.png"]
  assert [_text(r["file_name"]) for r in test] == ["000003_02_03_010.png"]  # 000004 (corrupt key) skipped

  # Window [-1024, 3071]: u8 = floor((HU + 1024) / 4095 * 255 + 0.5).
  a2, a5 = train
  img = a2["image"]
  assert img.shape == (SIZE, SIZE, 3) and img.dtype == np.uint8
  # key 2, (row 2, col 5): R = slice 1 (slice 0 outside Slice_range) -439 HU -> 36.43 -> 36,
  # G = slice 2 -389 -> 39.54 -> 40, B = 0.4 * slice 3 + 0.6 * slice 4 = -309 -> 44.52 -> 45.
  assert img[2, 5].tolist() == [36, 40, 45]
  np.testing.assert_allclose(a2["slice_positions"], [1.0, 2.0, 3.6], atol=1e-5)
  # key 5: R = 0.6 * slice 3 + 0.4 * slice 4 = -319 -> 43.90 -> 44, G = -239 -> 48.88 -> 49,
  # B = 0.4 * slice 6 + 0.6 * slice 7 = -159 -> 53.86 -> 54.
  assert a5["image"][2, 5].tolist() == [44, 49, 54]
  # (row 0, col 0): -500 + 50 s -> R = 0.6 * -350 + 0.4 * -300 = -330 -> 43.22 -> 43.
  assert a5["image"][0, 0, 0] == 43
  np.testing.assert_allclose(a5["slice_positions"], [3.4, 5.0, 6.6], atol=1e-5)
  got = decode_record(a5)
  np.testing.assert_array_equal(got["boxes"], [[2.5, 3.0, 8.25, 9.5], [10, 12, 16, 15]])  # x2 20 clipped to 16
  np.testing.assert_array_equal(got["labels"], [3, -1])
  np.testing.assert_array_equal(got["areas"], [5.75 * 6.5, 6 * 3])
  np.testing.assert_array_equal(got["polygons"][1], [10, 12, 16, 12, 16, 15, 10, 15])
  objects = a5["objects"]
  np.testing.assert_array_equal(objects["coarse_type"], [4, -1])
  np.testing.assert_array_equal(objects["noisy"], [False, True])
  np.testing.assert_array_equal(objects["recist"], [[1.5, 2.5, 7.5, 8.5, 2.0, 8.0, 7.0, 3.0], [11, 13, 19, 14, 15, 12.5, 15, 14.5]])
  np.testing.assert_array_equal(objects["diameters"], np.float32([[8.48, 7.07]] * 2))
  np.testing.assert_array_equal(objects["location"], np.float32([[0.4, 0.5, 0.6]] * 2))
  np.testing.assert_array_equal(objects["csv_line"], [2, 3])
  assert int(a5["image_id"]) == 10101005 and _text(a5["patient_id"]) == "000001"
  assert (int(a5["study_index"]), int(a5["series_id"]), int(a5["key_slice"]), int(a5["split_code"])) == (1, 1, 5, 1)
  np.testing.assert_array_equal(a5["spacing"], np.float32([0.7, 0.7, 1.25]))
  np.testing.assert_array_equal(a5["slice_range"], [1, 9])
  np.testing.assert_array_equal(a5["window"], [-1024, 3071])
  np.testing.assert_array_equal(a5["dicom_window"], [-1350, 150])
  np.testing.assert_array_equal(a5["crop_origin"], [0, 0])
  assert _text(a5["patient_gender"]) == "F" and int(a5["patient_age"]) == 62

  # Validation, key 3 (z = 2 mm): next neighbour 4 is outside Slice_range 1-3 -> the key slice.
  # (0, 0): slice 2 = 100 HU -> 69.99 -> 70, slice 3 = 150 -> 73.10 -> 73. The 4-4 box is dropped.
  (b,) = val
  assert b["image"][0, 0].tolist() == [70, 73, 73]
  np.testing.assert_array_equal(decode_record(b)["boxes"], [[1, 1, 5, 6]])
  np.testing.assert_array_equal(b["objects"]["label"], [4])
  np.testing.assert_array_equal(b["slice_positions"], [2, 3, 3])
  assert int(b["split_code"]) == 2

  # Test, key 10 (z = 1 mm): slice 8 is corrupt -> 9, slice 12 is missing -> 11.
  # (4, 4): 216 + 50 s -> 666 -> 105.24 -> 105, 716 -> 108.35 -> 108, 766 -> 111.46 -> 111.
  (c,) = test
  assert c["image"][4, 4].tolist() == [105, 108, 111]
  np.testing.assert_array_equal(c["slice_positions"], [9, 10, 11])
  assert int(c["image_id"]) == 30203010 and _text(c["patient_id"]) == "000003"
  np.testing.assert_array_equal(c["objects"]["label"], [7])
  assert "tensorflow" not in sys.modules  # built and read back without TensorFlow


def test_build_default_summary(built):
  _, data_dir, messages = built
  path = D.summary_path(data_dir, "default")
  assert path == data_dir / "deep_lesion" / "default" / "1.0.0" / "build_summary.json" and path.exists()
  summary = D.read_build_summary(data_dir)
  assert (summary.dataset, summary.config, summary.version) == ("deep_lesion", "default", "1.0.0")
  assert summary.splits == {
      "train": {"examples": 2, "boxes": 3},
      "validation": {"examples": 1, "boxes": 1},
      "test": {"examples": 1, "boxes": 1},
  }
  assert summary.counts == {
      "csv_rows": 9,
      "malformed_rows": 1,
      "key_slices": 7,
      "bad_split_codes": 1,
      "split_conflicts": 0,
      "window_conflicts": 1,  # 000002: -175..275 and -160..240
      "row_conflicts": 0,
      "invalid_dicom_windows": 0,
      "missing_key_slices": 1,  # 000005
      "corrupt_images": 2,  # 000004/005.png (key), 000003_02_03/008.png (neighbour)
      "missing_neighbour_files": 1,  # 000003_02_03/012.png
      "neighbour_fallbacks": 4,  # slice 0 of key 2, slice 4 of 000002, slices 8 and 12 of 000003
      "interpolated_channels": 4,  # 2 per key slice of 000001
      "neighbour_size_mismatches": 0,
      "unusable_spacings": 0,
      "image_size_mismatches": 1,  # 000003 says 512 x 512
      "clipped_boxes": 1,
      "dropped_empty_boxes": 1,
      "unknown_type_boxes": 1,
      "noisy_boxes": 1,
  }
  # Every skipped line and slice, dropped or clipped box and substitution, by name (CSV lines: header = 1).
  assert _items(summary) == sorted([
      ("skipped", "DL_info.csv", 6, "", "malformed_row"),  # 3 box values
      ("skipped", "DL_info.csv", 11, "mediastinum", "bad_split_code"),  # Train_Val_Test 0
      ("skipped", "Images_png/000004_01_01/005.png", None, "", "corrupt_image"),  # the key slice
      ("skipped", "Images_png/000005_01_01/007.png", None, "", "missing_key_slice"),
      ("dropped", "DL_info.csv", 5, "kidney", "zero_area"),  # x1 = x2 = 4
      ("clipped", "DL_info.csv", 3, "unknown", "clipped"),  # x2 20 > 16
      ("noted", "DL_info.csv", 5, "kidney", "window_conflict"),
      ("noted", "Images_png/000003_02_03/008.png", None, "", "corrupt_neighbour_slice"),
      ("noted", "Images_png/000003_02_03/012.png", None, "", "missing_neighbour_slice"),
      ("noted", "Images_png/000003_02_03/010.png", None, "", "image_size_mismatch"),  # Image_size 512, 512
  ])
  for needle in ("000004_01_01", "008.png", "012.png", "000005_01_01", "line 6"):
    assert any(needle in m for m in messages), needle  # warned, naming the file
  assert D.BuildSummary.from_dict(summary.to_dict()) == summary
  text = summary.format()
  assert "deep_lesion/default 1.0.0" in text
  assert "      DL_info.csv line 5 'kidney': 000002_01_01_003.png: box (4, 4, 4, 10) px has zero width or height inside the 16x16 image" in text.splitlines()


def _items(summary):
  return sorted((i["action"], i["file"], i["index"], i["label"], i["reason"]) for i in summary.items)


def test_a_one_patient_release_builds_reporting_the_empty_splits(tmp_path, release):
  """One patient's slices, all in train: validation and test are reported empty; a split whose
  only key slice is missing is reported empty too; a release with nothing usable names its files."""
  root = tmp_path / "one"
  fixtures.write_deep_lesion_release(root, ROWS[:2] + [ROWS[5]], {"000001_01_01": SERIES["000001_01_01"]}, SIZE)
  builder = _build(root, tmp_path / "d1", "default")
  assert set(builder.info.splits.keys()) == {"train"} and len(builder.as_data_source(split="train")) == 2
  summary = D.read_build_summary(tmp_path / "d1")
  assert summary.empty_splits == {"validation": "no usable row of DL_info.csv has Train_Val_Test 2",
                                  "test": "no usable row of DL_info.csv has Train_Val_Test 3"}
  assert summary.splits == {"train": {"examples": 2, "boxes": 3}}
  assert "  test: EMPTY, left out of the data set: no usable row of DL_info.csv has Train_Val_Test 3" in summary.format().splitlines()

  # 000005 (validation here) has no slice at all: the validation split is left out.
  rows = ROWS[:2] + [_row("000005_01_01_007.png", 5, 1, 1, 7, "3, 3, 9, 9", 3, 0, "6, 8", "0.6, 0.6, 5", 2)]
  root = tmp_path / "two"
  fixtures.write_deep_lesion_release(root, rows, {"000001_01_01": SERIES["000001_01_01"]}, SIZE)
  builder = _build(root, tmp_path / "d2", "default")
  assert set(builder.info.splits.keys()) == {"train"}
  summary = D.read_build_summary(tmp_path / "d2")
  assert summary.empty_splits["validation"] == "all 1 key slices of the split were skipped"
  assert ("skipped", "Images_png/000005_01_01/007.png", None, "", "missing_key_slice") in _items(summary)

  root = tmp_path / "none"
  fixtures.write_deep_lesion_release(root, rows[2:], {"000005_01_01": (0, [6], ())}, SIZE)
  with pytest.raises(D.NoUsableDataError, match="Images_png/000005_01_01/007.png"):
    _build(root, tmp_path / "d3", "default")


def test_build_dicom_window_and_hu(built):
  builders, data_dir, _ = built
  a5 = _records(builders["dicom_window"], "train")[1]
  # Window [-1350, 150] (x 255 / 1500 = 0.17): -319 -> 175.27 -> 175, -239 -> 188.87 -> 189, -159 -> 202.47 -> 202.
  assert a5["image"][2, 5].tolist() == [175, 189, 202]
  np.testing.assert_array_equal(a5["window"], [-1350, 150])
  (b,) = _records(builders["dicom_window"], "validation")
  # First row's window [-175, 275]: 100 -> 155.83 -> 156, 150 -> 184.17 -> 184.
  assert b["image"][0, 0].tolist() == [156, 184, 184]
  hu = _records(builders["hu"], "train")[1]
  assert hu["image"].dtype == np.uint16 and hu["image"].shape == (SIZE, SIZE, 3)
  assert hu["image"][2, 5].tolist() == [-319 + 32768, -239 + 32768, -159 + 32768]
  assert np.isnan(hu["window"]).all()
  assert D.read_build_summary(data_dir, "hu").splits["train"] == {"examples": 2, "boxes": 3}


def test_missing_inputs_are_named(tmp_path, release):
  with pytest.raises(FileNotFoundError, match="nowhere"):
    _build(tmp_path / "nowhere", tmp_path / "d0", "default")
  partial = tmp_path / "partial"
  partial.mkdir()
  (partial / "DL_info.csv").write_text(",".join(HEADER) + "\n")
  with pytest.raises(FileNotFoundError) as info:
    _build(partial, tmp_path / "d1", "default")
  message = str(info.value)
  assert os.path.join(str(partial), "Images_png") in message and "<slice:03d>.png" in message and "DL_info.csv" in message
  with pytest.raises(FileNotFoundError, match="no build summary"):
    D.read_build_summary(tmp_path / "d1", "dicom_window")
  # A release with training rows only: the empty splits are omitted, not an error.
  (partial / "Images_png").mkdir()
  os.symlink(release / "Images_png" / "000001_01_01", partial / "Images_png" / "000001_01_01")
  with open(partial / "DL_info.csv", "a", newline="") as f:
    csv.writer(f).writerows(ROWS[:2])
  builder = _build(partial, tmp_path / "d2", "default")
  assert set(builder.info.splits.keys()) == {"train"} and len(builder.as_data_source(split="train")) == 1
  assert set(D.read_build_summary(tmp_path / "d2").splits) == {"train"}


# --------------------------------------------------------------------------------------------
# Regressions found by scripts/fuzz_builders.py.


def test_dl_info_lines_that_are_not_utf8_quoted_wrong_or_huge_are_named_one_by_one(tmp_path):
  """Each physical line is one row: a byte that is not UTF-8 (a crash before), a stray quote
  (which made the csv module swallow the lines after it) or a number too large for its field
  (an OverflowError before) spoils that line only."""
  good = _row("000001_01_01_005.png", 1, 1, 1, 5, "2.5, 3.0, 8.25, 9.5", 4, 0, "1, 9", "0.7, 0.7, 1.25", 1)
  lines = [",".join(HEADER).encode()]
  for row in (good,
              good,  # line 3 gets a byte 0xff
              good,  # line 4 gets a stray quote
              good[:11] + ["1, 1e400"] + good[12:],
              good[:13] + ["1e400, 1e400"] + good[14:],
              good[:16] + ["99999999999999999999"] + good[17:],  # an age no int32 holds: unknown (-1)
              good[:1] + ["99999999999999999999"] + good[2:]):
    text = ",".join(f'"{c}"' if "," in str(c) else str(c) for c in row)
    lines.append(text.encode())
  lines[2] = lines[2].replace(b"000001_01", b"000001\xff_01", 1)
  lines[3] = lines[3][:20] + b'"' + lines[3][20:]
  (tmp_path / "DL_info.csv").write_bytes(b"\r\n".join(lines) + b"\r\n")
  bad = []
  rows = dl.parse_dl_info(tmp_path / "DL_info.csv", bad_rows=bad)
  assert [r.line for r in rows] == [2, 7] and [r.patient_age for r in rows] == [62, -1]
  assert [line for line, _ in bad] == [3, 4, 5, 6, 8]
  assert "not UTF-8" in bad[0][1] and "Slice_range" in bad[2][1] and "Image_size" in bad[3][1] and "Patient_index" in bad[4][1]


def test_rows_of_one_slice_that_disagree_are_named_and_bad_windows_fall_back(tmp_path):
  """The first row of a key slice gives its spacing, Slice_range, Image_size and window: a later
  row that says otherwise is named (it was silently ignored); a DICOM window that is not finite
  falls back to the default window (dl.window raised before)."""
  rows = [ROWS[0], list(ROWS[1])]
  rows[1][12] = "0.7, 0.7, -2"
  rows[0] = list(rows[0])
  rows[0][14] = "-1e400, 1e400"
  root = tmp_path / "release"
  fixtures.write_deep_lesion_release(root, rows, {"000001_01_01": SERIES["000001_01_01"]}, SIZE)
  builder = _build(root, tmp_path / "data", "dicom_window")
  (record,) = _records(builder, "train")
  np.testing.assert_array_equal(record["window"], [-1024, 3071])
  summary = D.read_build_summary(tmp_path / "data", "dicom_window")
  assert _items(summary) == sorted([
      ("noted", "DL_info.csv", 2, "liver", "invalid_dicom_window"),
      ("noted", "DL_info.csv", 3, "unknown", "row_conflict"),
      ("noted", "DL_info.csv", 3, "unknown", "window_conflict"),
      ("clipped", "DL_info.csv", 3, "unknown", "clipped"),  # as in the fixture
  ])
  assert "Spacing_mm_px_" in summary.select(reason="row_conflict")[0]["detail"]
