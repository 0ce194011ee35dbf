"""The build summary every manual-download builder writes, and how the build CLI prints it."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("tensorflow_datasets")

from tfds_builders import build_summary as B  # noqa: E402


def _summary(n):
  summary = B.BuildSummary(dataset="acne_scu", config="whole", version="1.0.0", manual_dir="/data/AcneSCU")
  summary.splits["train"] = {"examples": 3, "boxes": 7}
  summary.empty_split("test", "no patient falls in it")
  for k in range(n):
    summary.record("dropped", f"/data/AcneSCU/a{k}.json", "unknown_label", "not one of the 10 classes", index=k, item="shape", label="acne")
  summary.record("skipped", "/elsewhere/b.jpg", "corrupt_image", "cv2.imdecode could not decode the image")
  return summary


def test_every_item_is_kept_and_the_print_is_grouped_and_capped(tmp_path):
  summary = _summary(B.PRINTED_PER_REASON + 5)
  lines = summary.format(path="/out/build_summary.json").splitlines()
  assert lines[:3] == ["acne_scu/whole 1.0.0 from /data/AcneSCU", "  train: 3 records, 7 boxes",
                       "  test: EMPTY, left out of the data set: no patient falls in it"]
  assert "  skipped files and lines (1):" in lines and "      /elsewhere/b.jpg: cv2.imdecode could not decode the image" in lines
  start = lines.index(f"    unknown_label ({B.PRINTED_PER_REASON + 5}):")
  assert lines[start + 1] == "      a0.json shape 0 'acne': not one of the 10 classes"  # relative to manual_dir
  assert lines[start + B.PRINTED_PER_REASON + 1] == "      ... and 5 more, all in /out/build_summary.json"
  B.write_build_summary(summary, tmp_path)
  data = json.loads((tmp_path / B.SUMMARY_FILE).read_text(encoding="utf-8"))
  assert len(data["items"]) == B.PRINTED_PER_REASON + 6  # the JSON keeps them all
  assert data["items"][0] == {"action": "dropped", "file": "a0.json", "index": 0, "item": "shape", "label": "acne",
                              "reason": "unknown_label", "detail": "not one of the 10 classes"}
  assert B.BuildSummary.from_dict(data) == summary
  assert summary.reasons("dropped") == {"unknown_label": B.PRINTED_PER_REASON + 5}
  with pytest.raises(ValueError, match="action"):
    summary.record("lost", "x", "y")


def test_names_that_are_not_utf8_are_written_escaped(tmp_path, caplog):
  summary = B.BuildSummary(dataset="acne04", config="fold0", version="1.0.0", manual_dir=str(tmp_path))
  name = (tmp_path / "levle0_\udcff.jpg")  # the surrogate escape Python gives byte 0xff of a file name
  summary.record("skipped", name, "corrupt_image", f"{name.name} does not decode")
  caplog.text.encode("utf-8")  # the log line too (pytest-xdist cannot send a report holding a surrogate)
  assert summary.items[0]["file"] == "levle0_\\xff.jpg" and summary.items[0]["detail"] == "levle0_\\xff.jpg does not decode"
  B.write_build_summary(summary, tmp_path)  # UTF-8, no surrogate left
  assert "levle0_\\\\xff.jpg" in (tmp_path / B.SUMMARY_FILE).read_text(encoding="utf-8")
  summary.format().encode("utf-8")
