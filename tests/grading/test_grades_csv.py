"""grades.csv: the user-folder layout is read, and every bad row or visit is named with its line."""

import os

import cv2
import numpy as np
import pytest

from acne_jax.data import grades_csv


def make_folder(tmp_path, lines, images=None, name="grades.csv"):
  """A folder with ``images`` (default: every ``images/...`` path named in ``lines``) as small
  JPEGs and ``grades.csv`` holding ``lines``."""
  folder = tmp_path / "user"
  (folder / "images").mkdir(parents=True, exist_ok=True)
  if images is None:
    images = sorted({cell for line in lines[1:] for cell in line.split(",") if cell.startswith("images/")})
  for image in images:
    cv2.imwrite(str(folder / image), np.full((16, 16, 3), 128, np.uint8))
  (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
  return str(folder)


HEADER = "image,patient,grade,visit,view"


def triplet(patient, visit, grade, views=("frontal", "left", "right")):
  return [f"images/{patient}_{visit}_{v}.jpg,{patient},{grade},{visit},{v}" for v in views]


def test_good_folder(tmp_path):
  folder = make_folder(tmp_path, [HEADER] + triplet("a", 1, 3) + triplet("a", 2, 2) + triplet("b", 1, 0))
  table = grades_csv.read_grades_csv(folder)
  assert table.skipped == [] and table.views == ("frontal", "left", "right")
  assert [(v.patient, v.visit, v.grade) for v in table.visits] == [("a", "1", 3), ("a", "2", 2), ("b", "1", 0)]
  assert table.visits[0].images["left"] == os.path.join(folder, "images", "a_1_left.jpg")
  assert table.visits[0].lines == (2, 3, 4)
  assert "3 visits of 2 patients" in table.summary()


def test_unknown_grade_is_a_named_skip_or_an_error(tmp_path):
  lines = [HEADER] + triplet("a", 1, 3) + triplet("b", 1, 7) + ["images/c_1_frontal.jpg,c,mild,1,frontal"]
  folder = make_folder(tmp_path, lines)
  table = grades_csv.read_grades_csv(folder)
  assert [v.patient for v in table.visits] == ["a"]
  unknown = [s for s in table.skipped if s.reason == "unknown_grade"]
  assert [(s.line, s.image) for s in unknown] == [(5, "images/b_1_frontal.jpg"), (6, "images/b_1_left.jpg"),
                                                  (7, "images/b_1_right.jpg"), (8, "images/c_1_frontal.jpg")]
  assert "grade '7' is not one of [0, 1, 2, 3, 4]" in unknown[0].message and "'mild'" in unknown[3].message
  assert "grades.csv line 5 (images/b_1_frontal.jpg, patient b): unknown_grade" in str(unknown[0])
  assert "unknown_grade: 4" in table.summary()
  with pytest.raises(ValueError, match=r"line 5 .*b_1_frontal.jpg.*unknown_grade"):
    grades_csv.read_grades_csv(folder, strict=True)
  # Another scale: Hayashi 0-3 makes 3 valid and 7 still unknown.
  assert [v.grade for v in grades_csv.read_grades_csv(folder, grades=(0, 1, 2, 3)).visits] == [3]


def test_missing_and_cut_images_are_named(tmp_path):
  lines = [HEADER] + triplet("a", 1, 3) + triplet("b", 1, 2) + triplet("c", 1, 2)
  images = [l.split(",")[0] for l in lines[1:] if not l.startswith("images/b_1_left")]
  folder = make_folder(tmp_path, lines, images=images)
  path = os.path.join(folder, "images", "c_1_right.jpg")
  with open(path, "rb") as f:
    data = f.read()
  with open(path, "wb") as f:
    f.write(data[: len(data) // 2])
  table = grades_csv.read_grades_csv(folder)
  assert [v.patient for v in table.visits] == ["a"]
  reasons = {(s.reason, s.image) for s in table.skipped}
  assert ("missing_image", "images/b_1_left.jpg") in reasons
  assert ("unreadable_image", "images/c_1_right.jpg") in reasons
  # ... and then their visits lack a view, named too.
  incomplete = {s.patient: s for s in table.skipped if s.reason == "incomplete_visit"}
  assert set(incomplete) == {"b", "c"}
  assert "lacks the left view (has frontal, right)" in incomplete["b"].message
  assert incomplete["b"].line == 5
  assert not any(s.reason == "unreadable_image" for s in grades_csv.read_grades_csv(folder, check_images=False).skipped)


def test_visit_problems(tmp_path):
  lines = ([HEADER] + triplet("a", 1, 3) +
           triplet("b", 1, 2, views=("frontal", "left")) +  # no right view
           triplet("c", 1, 2) + ["images/c_1_left2.jpg,c,2,1,left"] +  # a second left view
           ["images/d_1_frontal.jpg,d,2,1,frontal", "images/d_1_left.jpg,d,3,1,left", "images/d_1_right.jpg,d,2,1,right"] +
           ["images/e_1_top.jpg,e,2,1,top"] +  # unknown view
           ["images/a_1_left.jpg,f,2,1,left"] +  # the same image again
           [",g,2,1,frontal"] +  # no image
           triplet("h", 1, 1, views=("Front", "LEFT", "right")))  # spelled differently
  folder = make_folder(tmp_path, lines)
  table = grades_csv.read_grades_csv(folder)
  assert [v.patient for v in table.visits] == ["a", "c", "h"]
  by_reason = {}
  for s in table.skipped:
    by_reason.setdefault(s.reason, []).append(s)
  assert by_reason["incomplete_visit"][0].patient == "b" and "lacks the right view" in by_reason["incomplete_visit"][0].message
  assert by_reason["duplicate_view"][0].image == "images/c_1_left2.jpg" and "line 8" in by_reason["duplicate_view"][0].message
  mismatch = by_reason["grade_mismatch"][0]
  assert mismatch.patient == "d" and "left 3 (line 12)" in mismatch.message and mismatch.line == 11
  assert by_reason["unknown_view"][0].image == "images/e_1_top.jpg"
  assert by_reason["duplicate_image"][0].patient == "f" and "line 3" in by_reason["duplicate_image"][0].message
  assert by_reason["empty_field"][0].patient == "g" and "empty image" in by_reason["empty_field"][0].message


def test_single_photo_visits_without_view_columns(tmp_path):
  folder = make_folder(tmp_path, ["Image,Patient,Grade,Notes", "images/x.jpg,p1,0,ok", "images/y.jpg,p1,3,", "images/z.jpg,p2,9,"])
  table = grades_csv.read_grades_csv(folder, grades=(0, 1, 2, 3))
  assert table.views == ("frontal",)
  assert [(v.patient, v.grade, list(v.images)) for v in table.visits] == [("p1", 0, ["frontal"]), ("p1", 3, ["frontal"])]
  assert table.visits[0].visit != table.visits[1].visit
  assert [(s.line, s.reason) for s in table.skipped] == [(4, "unknown_grade")]


def test_file_level_errors(tmp_path):
  with pytest.raises(ValueError, match="does not exist; expected a folder with grades.csv"):
    grades_csv.read_grades_csv(str(tmp_path / "nowhere"))
  (tmp_path / "empty_folder").mkdir()
  with pytest.raises(ValueError, match=r"grades.csv not found; expected a folder with grades.csv \(header: image,patient,grade"):
    grades_csv.read_grades_csv(str(tmp_path / "empty_folder"))
  folder = make_folder(tmp_path, ["image,grade", "images/x.jpg,1"])
  with pytest.raises(ValueError, match=r"lacks column\(s\) \['patient'\]"):
    grades_csv.read_grades_csv(folder)
  folder = make_folder(tmp_path, ["image,patient,grade,view", "images/x.jpg,p,1,frontal"])
  with pytest.raises(ValueError, match="'visit' and 'view' go together"):
    grades_csv.read_grades_csv(folder)
  folder = make_folder(tmp_path, [HEADER, "images/x.jpg,p,8,1,frontal"])
  with pytest.raises(ValueError, match=r"(?s)no usable visit.*unknown_grade: 1"):
    grades_csv.read_grades_csv(folder)
  (tmp_path / "user" / "grades.csv").write_bytes("image,patient,grade\nimages/\xe9.jpg,p,1\n".encode("latin-1"))
  with pytest.raises(ValueError, match="is not UTF-8"):
    grades_csv.read_grades_csv(str(tmp_path / "user"))
  (tmp_path / "user" / "grades.csv").write_text("")
  with pytest.raises(ValueError, match="is empty"):
    grades_csv.read_grades_csv(str(tmp_path / "user"))


def test_write_then_read(tmp_path):
  folder = make_folder(tmp_path, [HEADER] + triplet("a", 1, 3))
  rows = [{"image": f"images/a_1_{v}.jpg", "patient": "a", "grade": 4, "visit": 1, "view": v, "extra": 0}
          for v in ("frontal", "left", "right")]
  grades_csv.write_grades_csv(os.path.join(folder, "grades.csv"), rows)
  assert [v.grade for v in grades_csv.read_grades_csv(folder).visits] == [4]
