"""``scripts/fuzz_builders.py``: 200 seeded cases over the four release formats build without a
crash, name every mutated item and keep every untouched record (about 15 s on 2 cores). The bugs
the fuzzer found have their own regression tests in test_acne_scu.py, test_acne04.py and
test_deep_lesion.py; ``python scripts/fuzz_builders.py --cases 1000`` is the longer run by hand
(BENCHMARKS.md)."""

from __future__ import annotations

import json
import os

import pytest

from acne_jax.testing.scripts import import_script

pytest.importorskip("tensorflow_datasets")


@pytest.fixture(scope="module")
def fuzz():
  return import_script("fuzz_builders")


def test_200_cases_no_crash_every_bad_item_named_every_good_record_intact(fuzz):
  failures = []
  results = fuzz.run(200, seed=0, log=failures.append)
  t = fuzz.tally(results)
  assert (t["crashes"], t["failures"]) == (0, 0), "\n".join(failures)
  assert set(t["per_format"]) == set(fuzz.FORMATS) and min(t["per_format"].values()) >= 30
  for kind in ("truncated_image", "corrupt_image", "wrong_image_size", "missing_image", "missing_slice", "malformed_annotation",
               "missing_field", "extra_field", "nan_coordinate", "huge_coordinate", "non_utf8", "unknown_label"):
    assert t["per_mutation"].get(kind, 0) >= 5, (kind, t["per_mutation"])
  assert t["named"] > 200 and t["intact"] > 200  # the checks ran on real builds
  assert t["outcomes"].get("ok", 0) > 150  # most mutated releases still build


def test_an_unnamed_drop_fails_with_its_seed_and_replay_command(fuzz, monkeypatch, tmp_path):
  """A mutation the builder cannot see (a shape removed from its file) stands in for a builder
  that drops silently: the case fails, printing the seed, the mutation and how to replay it."""
  def silent_drop(release, rng):
    source = release.sources[0]
    doc = json.loads(open(source.files["annotation"], encoding="utf-8").read())
    doc["shapes"].pop(0)
    fixtures = fuzz.fixtures
    fixtures.write_json(source.files["annotation"], doc)
    return fuzz.Mutation("silent_drop", "shape 0 removed", [fuzz.Name(fuzz._rel(release, source.files["annotation"]), 0)], {source.key})

  monkeypatch.setitem(fuzz.MUTATORS, "labelme", [silent_drop])
  lines = []
  (result,) = fuzz.run(1, seed=7, formats=("labelme",), log=lines.append, keep=str(tmp_path / "kept"))
  assert result.outcome == "failed" and "not named: silent_drop" in result.message
  assert "FAILED seed=7 format=labelme" in lines[0] and "replay: python scripts/fuzz_builders.py --seed 7 --cases 1" in lines[0]
  assert os.path.isdir(tmp_path / "kept" / "release")  # --keep copies the case's files


def test_the_markdown_section(fuzz, tmp_path):
  out = tmp_path / "BENCHMARKS.md"
  assert fuzz.main(["--cases", "4", "--seed", "3", "--markdown", str(out)]) == 0
  text = out.read_text()
  assert "### Builder fuzzing, " in text and "Command: `python scripts/fuzz_builders.py --cases 4 --seed 3`" in text
  assert "**0 crashes, 0 failed checks**" in text and "| labelme |" in text and "| mutation kind | applied |" in text
