"""ACNE04 builder: VOC parsing, list files, Hayashi grades and a build from a fixture in the release format."""

from __future__ import annotations

import logging
import os
import sys

import cv2
import numpy as np
import pytest

from acne_jax.data import voc
from acne_jax.testing import fixtures

tfds = pytest.importorskip("tensorflow_datasets")

from acne_jax.data.records import decode_record  # noqa: E402
from tfds_builders.acne04 import acne04 as A  # noqa: E402

W, H = 40, 30  # size of the fixture photos (width, height)

# name -> (grade in the list files, lesion count, VOC objects or None for no XML, image state)
# objects: (name, xmin, ymin, xmax, ymax, difficult); image: "cls" (Classification/JPEGImages),
# "det" (only Detection/VOC2007/JPEGImages, 20 x 24), "corrupt", "missing".
FIXTURE = {
    "levle0_1.jpg": (0, 2, [("fore", 5, 6, 14, 15, 0), ("fore", 30, 20, 45, 30, 1)], "cls"),
    "levle0_2.jpg": (0, 0, None, "cls"),
    "levle1_1.jpg": (1, 8, [("fore", 1, 1, 10, 10, 0), ("fore", 20, 5, 19, 9, 0), ("fore", 50, 5, 60, 9, 0), ("other", 3, 3, 8, 8, 0)], "cls"),
    "levle1_2.jpg": (1, 30, None, "det"),
    "levle2_1.jpg": (2, 25, "corrupt", "cls"),
    "levle2_2.jpg": (1, 22, [("fore", 2, 3, 12, 9, 0)], "cls"),
    "levle3_1.jpg": (3, 60, None, "corrupt"),
    "levle3_2.jpg": (3, 55, None, "missing"),
}
NAMES = list(FIXTURE)


def _voc_xml(name, objects, width=W, height=H):
  return fixtures.voc_xml(name, objects, width, height)


def _fold_lists(k):
  test = [NAMES[i] for i in (k, k + 5) if i < len(NAMES)]
  train = [n for n in NAMES if n not in test]
  return train, test


def _write_release(root):
  """The FIXTURE release (the README test writes it too), plus an XML without image and, in
  fold 0's train list, a malformed line and a repeated one."""
  images = {
      name: fixtures.Acne04Image(grade, count, objects, state, size=(20, 24) if state == "det" else (W, H),
                                 xml_size=(80, 60) if name == "levle2_2.jpg" else None, seed=i)
      for i, (name, (grade, count, objects, state)) in enumerate(FIXTURE.items())
  }
  fixtures.write_acne04_release(root, images, {k: _fold_lists(k) for k in range(5)})
  (root / fixtures.ACNE04_ANNOTATIONS / "levle9_9.xml").write_text(_voc_xml("levle9_9.jpg", [("fore", 1, 1, 5, 5, 0)]))
  with open(root / "Classification" / "NNEW_trainval_0.txt", "a") as f:
    f.write("levle9_1.jpg two 3\nlevle0_2.jpg 0 0\n")  # a malformed line, a duplicate
  for k in range(5):  # the test lists separate their fields with two spaces and a tab
    path = root / "Classification" / f"NNEW_test_{k}.txt"
    path.write_text("".join(f"{n}  {g}\t{c}\n" for n, g, c in (line.split() for line in path.read_text().splitlines())))


def _build(manual_dir, data_dir, config):
  builder = A.Acne04(config=config, data_dir=str(data_dir))
  builder.download_and_prepare(file_format="array_record", download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
  return builder


def _text(value):
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


@pytest.fixture(scope="module")
def release(tmp_path_factory):
  root = tmp_path_factory.mktemp("acne04_release")
  _write_release(root)
  return root


@pytest.fixture(scope="module")
def built_fold0(release, tmp_path_factory):
  data_dir = tmp_path_factory.mktemp("acne04_data")
  logger = logging.getLogger(A.__name__)
  records = []
  handler = logging.Handler()
  handler.emit = lambda record: records.append(record.getMessage())
  logger.addHandler(handler)
  try:
    builder = _build(release, data_dir, "fold0")
  finally:
    logger.removeHandler(handler)
  return builder, data_dir, records


# --------------------------------------------------------------------------------------------
# Pure helpers.


def test_voc_parse_and_convert(tmp_path):
  path = tmp_path / "a.xml"
  path.write_text(_voc_xml("a.jpg", [("fore", 1, 1, 40, 30, 0), (" fore ", 2.5, 3, 7, 9.0, 1)]))
  ann = voc.parse_voc_xml(path)
  assert (ann.filename, ann.width, ann.height, ann.depth) == ("a.jpg", W, H, 3)
  assert [o.name for o in ann.objects] == ["fore", "fore"]
  assert ann.objects[1].bndbox == (2.5, 3.0, 7.0, 9.0) and ann.objects[1].difficult and not ann.objects[0].difficult
  boxes = voc.voc_to_xyxy([o.bndbox for o in ann.objects])
  assert boxes.dtype == np.float32
  np.testing.assert_array_equal(boxes, [[0, 0, 40, 30], [1.5, 2, 7, 9]])  # whole image -> (0, 0, W, H)
  assert voc.voc_to_xyxy([]).shape == (0, 4)
  with pytest.raises(voc.VocParseError, match="bad.xml.*malformed"):
    voc.parse_voc_xml(b"<annotation><object>", name="bad.xml")
  with pytest.raises(voc.VocParseError, match="object 0 .*<ymin>"):
    voc.parse_voc_xml(b"<annotation><object><name>fore</name><bndbox><xmin>1</xmin><ymin>x</ymin>"
                      b"<xmax>3</xmax><ymax>4</ymax></bndbox></object></annotation>", name="c.xml")
  with pytest.raises(voc.VocParseError, match="no <bndbox>"):
    voc.parse_voc_xml(b"<annotation><object><name>fore</name></object></annotation>")


def test_clip_boxes_and_polygons():
  boxes = np.array([[-2, 1, 5, 5], [1, 1, 3, 3], [5, 5, 5, 9], [12, 1, 15, 4], [4, 6, 2, 8]], np.float32)
  clipped, changed, keep = voc.clip_boxes(boxes, 10, 8)
  np.testing.assert_array_equal(clipped[:2], [[0, 1, 5, 5], [1, 1, 3, 3]])
  np.testing.assert_array_equal(changed, [True, False, True, True, False])
  np.testing.assert_array_equal(keep, [True, True, False, False, False])
  np.testing.assert_array_equal(voc.box_polygons([[1, 2, 3, 4]]), [[1, 2, 3, 2, 3, 4, 1, 4]])


def test_hayashi_grades_and_names(tmp_path):
  assert [A.hayashi_grade(n) for n in (0, 5, 6, 20, 21, 50, 51, 200)] == [0, 0, 1, 1, 2, 2, 3, 3]
  assert A.image_id_of("levle3_17.jpg") == 300017 and A.grade_in_file_name("levle3_17.jpg") == 3
  assert A.image_id_of("other.jpg") >= 10**6 and A.grade_in_file_name("other.jpg") is None
  path = tmp_path / "list.txt"
  path.write_text("levle0_1.jpg 0 3\n\nlevle1_4 1 12\nbad 5 1\nx y\n")
  bad = []
  entries = A.parse_list_file(path, bad_lines=bad)
  assert [(e.file_name, e.grade, e.lesion_count, e.line) for e in entries] == [("levle0_1.jpg", 0, 3, 1), ("levle1_4.jpg", 1, 12, 3)]
  assert [line for line, _ in bad] == [4, 5] and "list.txt, line 4" in bad[0][1]
  with pytest.raises(ValueError, match="list.txt, line 4"):
    A.parse_list_file(path)


# --------------------------------------------------------------------------------------------
# Build from the fixture release.


def _expected_image(release, name):
  for sub in ("Detection/VOC2007/JPEGImages", "Classification/JPEGImages"):
    path = release / sub / name
    if path.exists():
      return cv2.cvtColor(cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
  raise AssertionError(name)


# split -> [(name, grade, lesion_count, boxes, difficult)]
EXPECTED_FOLD0 = {
    "train": [
        ("levle0_2.jpg", 0, 0, np.zeros((0, 4)), []),
        ("levle1_1.jpg", 1, 8, [[0, 0, 10, 10]], [False]),
        ("levle1_2.jpg", 1, 30, np.zeros((0, 4)), []),
    ],
    "test": [
        ("levle0_1.jpg", 0, 2, [[4, 5, 14, 15], [29, 19, 40, 30]], [False, True]),  # 2nd: xmax 45 clipped to W = 40
        ("levle2_2.jpg", 1, 22, [[1, 2, 12, 9]], [False]),
    ],
}


def test_build_fold0_reads_back_exactly(built_fold0, release):
  builder, _, _ = built_fold0
  assert builder.info.features["objects"]["label"].names == ["acne"]
  assert builder.info.features["grade"].names == list(A.GRADE_NAMES)
  assert set(builder.info.splits.keys()) == {"train", "test"}
  for split, expected in EXPECTED_FOLD0.items():
    source = builder.as_data_source(split=split)
    assert len(source) == len(expected)
    for i, (name, grade, count, boxes, difficult) in enumerate(expected):
      raw = source[i]
      got = decode_record(raw)
      assert got["file_name"] == name and _text(raw["file_name"]) == name
      assert got["image_id"] == A.image_id_of(name)
      assert int(raw["grade"]) == grade and int(raw["lesion_count"]) == count
      np.testing.assert_array_equal(got["image"], _expected_image(release, name))  # JPEG bytes kept as is
      boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
      np.testing.assert_array_equal(got["boxes"], boxes)
      assert got["boxes"].dtype == np.float32
      np.testing.assert_array_equal(got["labels"], np.zeros(len(boxes), np.int32))
      np.testing.assert_array_equal(got["areas"], (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
      np.testing.assert_array_equal(np.asarray(raw["objects"]["difficult"], bool).reshape(-1), difficult)
      np.testing.assert_array_equal(got["crop_origin"], [0, 0])
      assert len(got["polygons"]) == len(boxes)
      for p, b in zip(got["polygons"], boxes):
        np.testing.assert_array_equal(p, [b[0], b[1], b[2], b[1], b[2], b[3], b[0], b[3]])
  assert "tensorflow" not in sys.modules  # built and read back without TensorFlow


def test_build_fold0_summary(built_fold0):
  _, data_dir, messages = built_fold0
  path = A.summary_path(data_dir, "fold0")
  assert path == data_dir / "acne04" / "fold0" / "1.0.0" / "build_summary.json" and path.exists()
  summary = A.read_build_summary(data_dir, "fold0")
  assert (summary.dataset, summary.config, summary.version) == ("acne04", "fold0", "1.0.0")
  assert summary.splits == {
      "train": {"examples": 3, "boxes": 1, "grade_0": 1, "grade_1": 2, "grade_2": 0, "grade_3": 0},
      "test": {"examples": 2, "boxes": 3, "grade_0": 1, "grade_1": 1, "grade_2": 0, "grade_3": 0},
  }
  assert summary.counts == {
      "listed_images": 8,
      "malformed_list_lines": 1,
      "duplicate_entries": 1,
      "train_test_overlap": 0,
      "missing_images": 1,
      "corrupt_images": 1,
      "corrupt_annotations": 1,
      "images_without_annotation": 2,
      "unannotated_with_lesions": 1,
      "annotations_without_image": 1,
      "unknown_class_boxes": 1,
      "invalid_boxes": 0,
      "clipped_boxes": 1,
      "dropped_empty_boxes": 2,
      "size_mismatches": 1,
      "invalid_sizes": 0,
      "grade_count_mismatches": 2,  # levle1_2 (30 lesions, grade 1), levle2_2 (22, grade 1)
      "file_grade_mismatches": 1,  # levle2_2 listed as grade 1
      "box_count_mismatches": 2,  # levle1_1 (1 box, 8 lesions), levle2_2 (1 box, 22)
  }
  # Every skipped file and line, dropped or clipped box and inconsistency, by name.
  ann, lists, jpegs = "Detection/VOC2007/Annotations/", "Classification/", "Classification/JPEGImages/"
  assert _items(summary) == sorted([
      ("skipped", lists + "NNEW_trainval_0.txt", 7, "", "malformed_list_line"),  # "levle9_1.jpg two 3"
      ("skipped", lists + "NNEW_trainval_0.txt", 8, "", "duplicate_entry"),  # levle0_2.jpg again
      ("skipped", ann + "levle9_9.xml", None, "", "annotation_without_image"),
      ("skipped", ann + "levle2_1.xml", None, "", "unreadable_annotation"),  # truncated XML: image skipped
      ("skipped", jpegs + "levle3_1.jpg", None, "", "corrupt_image"),
      ("skipped", jpegs + "levle3_2.jpg", None, "", "missing_image"),
      ("dropped", ann + "levle1_1.xml", 1, "fore", "zero_area"),  # xmin 20 > xmax 19
      ("dropped", ann + "levle1_1.xml", 2, "fore", "outside_image"),  # x from 50, the image is 40 wide
      ("dropped", ann + "levle1_1.xml", 3, "other", "unknown_class"),
      ("clipped", ann + "levle0_1.xml", 1, "fore", "clipped"),  # xmax 45 > 40
      ("noted", ann + "levle2_2.xml", None, "", "size_mismatch"),  # <size> 80 x 60
      ("noted", ann + "levle1_1.xml", None, "", "box_count_mismatch"),  # 1 box, 8 lesions
      ("noted", ann + "levle2_2.xml", None, "", "box_count_mismatch"),  # 1 box, 22 lesions
      ("noted", "Detection/VOC2007/JPEGImages/levle1_2.jpg", None, "", "no_annotation"),  # 30 lesions, no XML
      ("noted", lists + "NNEW_trainval_0.txt", 3, "", "grade_count_mismatch"),  # levle1_2: 30 lesions, grade 1
      ("noted", lists + "NNEW_test_0.txt", 2, "", "grade_count_mismatch"),  # levle2_2: 22 lesions, grade 1
      ("noted", lists + "NNEW_test_0.txt", 2, "", "file_grade_mismatch"),  # levle2_2 listed as grade 1
  ])
  assert summary.empty_splits == {}
  for needle in ("levle3_2.jpg", "levle3_1.jpg", "levle2_1.xml", "levle9_9.xml", "NNEW_trainval_0.txt"):
    assert any(needle in m for m in messages), needle  # warned, naming the file
  text = summary.format()
  assert "acne04/fold0 1.0.0" in text and "corrupt_images 1" in text
  assert f"      {ann}levle1_1.xml object 3 'other': class 'other' is not 'fore'" in text.splitlines()
  assert f"      {lists}NNEW_trainval_0.txt line 8: levle0_2.jpg is listed again (first on line 1): repeat skipped" in text.splitlines()
  assert A.BuildSummary.from_dict(summary.to_dict()) == summary
  with pytest.raises(FileNotFoundError, match="fold4"):
    A.read_build_summary(data_dir, "fold4")


def _items(summary):
  return sorted((i["action"], i["file"], i["index"], i["label"], i["reason"]) for i in summary.items)


def test_a_split_whose_images_are_all_skipped_is_reported_empty(release, tmp_path):
  """Fold 4 lists one test image, whose XML is truncated: the test split is left out and
  reported, the train split builds."""
  builder = _build(release, tmp_path, "fold4")
  assert set(builder.info.splits.keys()) == {"train"}
  summary = A.read_build_summary(tmp_path, "fold4")
  assert summary.empty_splits == {"test": "all 1 images listed in NNEW_test_4.txt were skipped"}
  assert set(summary.splits) == {"train"}
  assert ("skipped", "Detection/VOC2007/Annotations/levle2_1.xml", None, "", "unreadable_annotation") in _items(summary)
  assert "  test: EMPTY, left out of the data set: all 1 images listed in NNEW_test_4.txt were skipped" in summary.format().splitlines()


def test_a_one_image_release_builds_and_a_wholly_unusable_one_names_its_files(tmp_path):
  one = tmp_path / "one"
  fixtures.write_acne04_release(one, {"levle0_1.jpg": fixtures.Acne04Image(0, 1, [("fore", 2, 3, 12, 9, 0)])},
                                {0: (["levle0_1.jpg"], [])})
  builder = _build(one, tmp_path / "d1", "fold0")
  assert set(builder.info.splits.keys()) == {"train"} and len(builder.as_data_source(split="train")) == 1
  summary = A.read_build_summary(tmp_path / "d1", "fold0")
  assert summary.empty_splits == {"test": "NNEW_test_0.txt lists no image"}
  assert summary.splits["train"]["examples"] == 1 and summary.items == []

  bad = tmp_path / "bad"
  fixtures.write_acne04_release(bad, {"levle1_1.jpg": fixtures.Acne04Image(1, 7, None, "corrupt"),
                                      "levle1_2.jpg": fixtures.Acne04Image(1, 7, None, "missing")},
                                {0: (["levle1_1.jpg"], ["levle1_2.jpg"])})
  with pytest.raises(A.NoUsableDataError) as info:
    _build(bad, tmp_path / "d2", "fold0")
  message = str(info.value)
  assert "Classification/JPEGImages/levle1_1.jpg" in message and "Classification/JPEGImages/levle1_2.jpg" in message
  assert "Fix or replace the files named above" in message


def test_build_other_fold(release, tmp_path):
  builder = _build(release, tmp_path, "fold3")
  test = builder.as_data_source(split="test")
  assert [_text(test[i]["file_name"]) for i in range(len(test))] == ["levle1_2.jpg"]
  assert decode_record(test[0])["image"].shape == (24, 20, 3)  # from Detection/VOC2007/JPEGImages
  train = builder.as_data_source(split="train")
  assert [_text(train[i]["file_name"]) for i in range(len(train))] == ["levle0_1.jpg", "levle0_2.jpg", "levle1_1.jpg", "levle2_2.jpg"]
  summary = A.read_build_summary(tmp_path, "fold3")
  assert summary.counts["malformed_list_lines"] == 0 and summary.counts["listed_images"] == 8


def test_missing_inputs_are_named(release, tmp_path):
  missing = tmp_path / "nowhere"
  with pytest.raises(FileNotFoundError, match="nowhere"):
    _build(missing, tmp_path / "d1", "fold0")
  partial = tmp_path / "partial"
  (partial / "Classification").mkdir(parents=True)
  (partial / "Classification" / "NNEW_trainval_1.txt").write_text("levle0_1.jpg 0 1\n")
  with pytest.raises(FileNotFoundError) as info:
    _build(partial, tmp_path / "d2", "fold1")
  message = str(info.value)
  assert os.path.join(str(partial), "Classification", "NNEW_test_1.txt") in message
  assert "Detection/VOC2007/" in message and "NNEW_trainval_{0..4}.txt" in message  # the layout


# --------------------------------------------------------------------------------------------
# The build CLI (python -m tfds_builders.build) on the same fixture.


def test_build_cli_prints_a_summary_with_the_skips(release, tmp_path, capsys):
  from tfds_builders import build

  code = build.main(["--dataset=acne04", "--config=fold1", f"--manual_dir={release}", f"--data_dir={tmp_path}"])
  out = capsys.readouterr().out
  assert code == 0, out
  assert "train:" in out and "test:" in out and "records" in out and "boxes" in out
  # Every skipped file and dropped box is printed under its reason, with the file, the object's
  # index and its label.
  lines = out.splitlines()
  assert "  skipped files and lines (4):" in lines and "    annotation_without_image (1):" in lines
  assert any(line.startswith("      Detection/VOC2007/Annotations/levle9_9.xml: ") for line in lines)
  assert any(line.startswith("      Classification/JPEGImages/levle3_1.jpg: ") for line in lines)  # the corrupt JPEG
  assert "      Detection/VOC2007/Annotations/levle1_1.xml object 3 'other': class 'other' is not 'fore'" in lines
  summary = A.read_build_summary(str(tmp_path), "fold1")
  assert sum(summary.counts.values()) > 0


def test_build_cli_missing_manual_dir_names_it(tmp_path, capsys):
  from tfds_builders import build

  missing = tmp_path / "nowhere"
  assert build.main(["--dataset=acne04", f"--manual_dir={missing}", f"--data_dir={tmp_path}"]) == 1
  assert str(missing) in capsys.readouterr().err
  empty = tmp_path / "empty"
  empty.mkdir()
  assert build.main(["--dataset=acne04", "--config=fold0", f"--manual_dir={empty}", f"--data_dir={tmp_path / 'd'}"]) == 1
  err = capsys.readouterr().err
  assert str(empty) in err and "NNEW_trainval" in err


# --------------------------------------------------------------------------------------------
# Regressions found by scripts/fuzz_builders.py.


def test_voc_numbers_beyond_float_and_int_range():
  """<width>1e400</width> or <difficult>1e400</difficult> raised OverflowError (int(inf))."""
  xml = _voc_xml("a.jpg", [("fore", 1, 1, 5, 5, "1e400"), ("fore", 2, 2, 6, 6, "nan")], width="1e400", height="99999999999999999999")
  ann = voc.parse_voc_xml(xml.encode(), name="a.xml")
  assert (ann.width, ann.height) == (0, 0)  # unreadable sizes are 0 (informative only), and listed
  assert ann.bad_size == ("<width>1e400</width>", "<height>99999999999999999999</height>")
  assert [o.difficult for o in ann.objects] == [True, False]
  assert voc.degenerate_reason([5, 1, -1e300, 5], 40, 30)[0] == "inverted_box"


def test_list_lines_that_are_not_utf8_are_malformed_lines(tmp_path):
  """A byte that is not UTF-8 in a list file raised UnicodeDecodeError for the whole fold."""
  path = tmp_path / "NNEW_test_0.txt"
  path.write_bytes(b"levle0_1.jpg 0 1\nlevle\xff0_2.jpg 0 1\nlevle0_3.jpg 0 2\n")
  bad = []
  entries = A.parse_list_file(path, bad_lines=bad)
  assert [e.file_name for e in entries] == ["levle0_1.jpg", "levle0_3.jpg"]
  assert [line for line, _ in bad] == [2] and "not UTF-8" in bad[0][1]


def test_empty_images_and_boxes_beyond_float32_are_named(tmp_path):
  """An empty image file made cv2.imdecode raise; a coordinate beyond float32 (-1e300) was
  named "invalid_box" (a reason of the parser's counter) instead of the inverted box it is."""
  release = tmp_path / "release"
  images = {"levle0_1.jpg": fixtures.Acne04Image(0, 2, [("fore", 5, 6, 14, 15, 0), ("fore", 20, 5, -1e300, 9, 0)]),
            "levle0_2.jpg": fixtures.Acne04Image(0, 1, [("fore", 5, 6, 14, 15, 0)])}
  fixtures.write_acne04_release(release, images, {0: (["levle0_1.jpg", "levle0_2.jpg"], [])})
  (release / "Classification" / "JPEGImages" / "levle0_2.jpg").write_bytes(b"")
  _build(release, tmp_path / "data", "fold0")
  summary = A.read_build_summary(tmp_path / "data", "fold0")
  assert _items(summary) == sorted([
      ("dropped", "Detection/VOC2007/Annotations/levle0_1.xml", 1, "fore", "inverted_box"),
      ("noted", "Detection/VOC2007/Annotations/levle0_1.xml", None, "", "box_count_mismatch"),
      ("skipped", "Classification/JPEGImages/levle0_2.jpg", None, "", "corrupt_image"),
  ])
  assert summary.counts["dropped_empty_boxes"] == 1 and summary.counts["invalid_boxes"] == 0
