"""Seeded fuzzer of the manual-download builders: mutated releases must build, name every bad item and keep every good record.

    python scripts/fuzz_builders.py --cases 1000 --seed 0 [--markdown BENCHMARKS.md]
    python scripts/fuzz_builders.py --seed 417 --cases 1 --keep /tmp/case417    # replay one case, keep its files

Case ``seed`` (``--seed``, ``--seed + 1``, ...): a ``numpy`` generator seeded with it picks one of
the four formats (AcneSCU LabelMe JSON + JPEG, AcneSCU COCO JSON, ACNE04 VOC XML + list files +
JPEG, DeepLesion ``DL_info.csv`` + uint16 PNG slices) and writes a small valid release with the
writers of ``acne_jax.testing.fixtures`` (2-5 images of at most 64 px with 1-3 lesions each, or
1-6 DeepLesion key slices of 12-32 px with 1-2 lesion rows each), builds
it with the real builder (Python API, ArrayRecord, as ``python -m tfds_builders.build``), applies
1-3 seeded mutations to the files (truncated, corrupt, missing or resized images and slices,
malformed JSON / XML / CSV / list lines, missing and extra fields, NaN, infinite and huge
coordinates, unknown labels, degenerate shapes, wrong types, bytes that are not UTF-8 in files
and file names, duplicates, bad split codes), builds the mutated release, and checks:

1. no exception, except the builders' own errors for a release with nothing usable left
   (``NoUsableDataError``, ``ManualDataError``, ``FileNotFoundError``), whose message must name
   a file and say what to do;
2. every mutated item is named in ``build_summary.json`` (its file, and the shape / object /
   line index where it has one), or its whole file or record is;
3. every record that no mutation touched is in the mutated build, in the same split, equal
   field by field (pixels, boxes, labels, polygons, ...; AcneSCU's ``image_id``, the image's
   position among the usable ones, excepted) to the unmutated build's; so are the records of
   harmless mutations (an extra field, an optional field removed); no record appears that the
   unmutated build does not have, except from a mutated item;
4. a split of the unmutated build missing from the mutated one is reported in ``empty_splits``;
   the summary's counters agree with its named items; the summary prints (the build CLI's
   text) and is valid UTF-8 JSON; the unmutated build names nothing but by-design drops.

A crash or a failed check prints the seed, the format and the mutations, and the command that
replays it. ``--markdown FILE`` appends a short section (machine, date, command, cases per
format and per mutation kind, crashes, failures, items named) to FILE.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import datetime
import io
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
import traceback
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import cv2
import numpy as np

from acne_jax.data import deep_lesion
from acne_jax.data import labelme as L
from acne_jax.data.records import ACNE_SCU_CLASS_NAMES
from acne_jax.testing import fixtures

FORMATS: Tuple[str, ...] = ("labelme", "coco", "acne04", "deep_lesion")
# Patient names (as AcneSCU's): with the default split some fall in test or validation.
PATIENTS: Tuple[str, ...] = ("王伟", "李芳", "张娜", "刘敏", "陈静", "杨丽", "赵强", "黄军")
# Mutation kinds that, when they expect no name, must leave their record unchanged too.
HARMLESS = {"extra_field", "missing_field"}
# Reasons a clean (unmutated) build may name: drops the builders make by design.
BY_DESIGN = {"under_min_size", "cut_by_every_window"}

# Builder counters that must equal the number of named items of these reasons.
COUNTED: Dict[str, Dict[str, Set[str]]] = {
    "acne_scu": {
        "skipped_files": {"unreadable_json", "not_labelme", "invalid_size", "image_not_found", "unreadable_image",
                          "corrupt_image", "image_size_mismatch", "duplicate_image", "non_utf8_name", "unusable_annotation",
                          L.MALFORMED_IMAGE_ENTRY, L.DUPLICATE_IMAGE_ID},
        "skipped_shapes": {L.TOO_FEW_POINTS, L.UNKNOWN_LABEL, L.UNSUPPORTED_SHAPE_TYPE, L.INVALID_POINTS, L.UNKNOWN_IMAGE_ID},
        "dropped_zero_area": {L.OUTSIDE_IMAGE, L.ZERO_AREA},
        "lesions_not_in_any_crop": {"under_min_size", "cut_by_every_window"},
    },
    "acne04": {
        "malformed_list_lines": {"malformed_list_line"},
        "duplicate_entries": {"duplicate_entry"},
        "missing_images": {"missing_image"},
        "corrupt_images": {"corrupt_image"},
        "corrupt_annotations": {"unreadable_annotation"},
        "annotations_without_image": {"annotation_without_image"},
        "unknown_class_boxes": {"unknown_class"},
        "invalid_boxes": {"invalid_box"},
        "clipped_boxes": {"clipped"},
        "dropped_empty_boxes": {"zero_area", "outside_image", "inverted_box"},
        "size_mismatches": {"size_mismatch"},
        "invalid_sizes": {"invalid_size"},
    },
    "deep_lesion": {
        "malformed_rows": {"malformed_row"},
        "missing_key_slices": {"missing_key_slice"},
        "missing_neighbour_files": {"missing_neighbour_slice"},
        "neighbour_size_mismatches": {"neighbour_size_mismatch"},
        "image_size_mismatches": {"image_size_mismatch"},
        "clipped_boxes": {"clipped"},
        "dropped_empty_boxes": {"zero_area", "outside_image", "inverted_box", "invalid_box"},
        "unusable_spacings": {"unusable_spacing"},
    },
}


# --------------------------------------------------------------------------------------------
# A release and what a mutation expects.


@dataclasses.dataclass
class Source:
  """One record source of a release: an image (its crops) or a DeepLesion key slice."""

  key: str  # record key: the file_name of its record(s) without extension / _crop<k>
  files: Dict[str, str]  # role ("image", "annotation", "xml", ...) -> absolute path
  n_shapes: int = 0  # shapes / objects / CSV rows
  line: int = 0  # ACNE04: its line in the list file; DeepLesion: unused
  list_file: str = ""  # ACNE04: the list file it is on
  shape_index: List[int] = dataclasses.field(default_factory=list)  # COCO: annotation indices of its shapes
  image_index: int = -1  # COCO: its entry in "images"
  rows: List[int] = dataclasses.field(default_factory=list)  # DeepLesion: CSV lines of its rows
  series: str = ""  # DeepLesion: the series folder
  slices: Set[int] = dataclasses.field(default_factory=set)  # DeepLesion: the slices its image is made of


@dataclasses.dataclass
class Release:
  format: str
  root: str
  sources: List[Source]
  config: Any  # the builder configuration (name or object)
  shared: Dict[str, str] = dataclasses.field(default_factory=dict)  # role -> path of release-wide files


@dataclasses.dataclass(frozen=True)
class Name:
  """An item the summary must name: ``file`` (relative to the release), the index in it and
  what the index counts (None: any), and the actions allowed (None: any)."""

  file: str
  index: Optional[int] = None
  actions: Optional[Tuple[str, ...]] = None
  item: Optional[str] = None
  reason: Optional[str] = None


@dataclasses.dataclass
class Mutation:
  kind: str  # the mutation kind (BENCHMARKS.md counts them)
  what: str  # what was done, for people (replays)
  names: List[Name]  # any one of these must be in the summary; [] for a harmless mutation
  keys: Set[str]  # record keys it may change or remove (or add)
  fatal_ok: bool = False  # the release may be unusable as a whole (a builder error is then right)
  whole_file: bool = False  # it rewrites or removes whole files (an earlier mutation of them is then gone)
  hides_size: Set[str] = dataclasses.field(default_factory=set)  # keys whose annotated image size it removes
  changed: Set[str] = dataclasses.field(default_factory=set)  # the files it changed (filled by run_case)


class CheckFailure(AssertionError):
  pass


def _rel(release: Release, path: str) -> str:
  from tfds_builders.build_summary import display_path

  return display_path(os.path.relpath(path, release.root).replace(os.sep, "/"))


def _whole(release: Release, *paths: str) -> List[Name]:
  """Names that cover an item when its whole file or record is skipped instead."""
  return [Name(_rel(release, p), None, ("skipped",)) for p in paths if p]


# --------------------------------------------------------------------------------------------
# Valid releases.


def _skin(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
  base = rng.integers(60, 200, 3)
  noise = rng.normal(0, 12, (height, width, 3))
  return np.clip(base + noise, 0, 255).astype(np.uint8)


def _random_shape(rng: np.random.Generator, width: int, height: int) -> Dict[str, Any]:
  label = ACNE_SCU_CLASS_NAMES[rng.integers(len(ACNE_SCU_CLASS_NAMES))]
  cx, cy = rng.uniform(5, width - 5), rng.uniform(5, height - 5)
  room = min(cx, cy, width - cx, height - cy) - 0.5
  if rng.random() < 0.3:
    return fixtures.circle_shape(label, round(cx, 2), round(cy, 2), round(rng.uniform(1.5, max(room, 1.6)), 2))
  n = int(rng.integers(3, 7))
  angles = np.sort(rng.uniform(0, 2 * np.pi, n))
  radii = rng.uniform(0.5, 1.0, n) * max(room, 2.0) * 0.95
  points = [(round(cx + r * np.cos(a), 2), round(cy + r * np.sin(a), 2)) for a, r in zip(angles, radii)]
  return fixtures.polygon_shape(label, points)


def make_acne_scu(rng: np.random.Generator, root: str, coco: bool) -> Release:
  from tfds_builders.acne_scu import AcneScuConfig

  sources = []
  images = []
  n = int(rng.integers(2, 6))
  for i in range(n):
    patient = PATIENTS[rng.integers(len(PATIENTS))]
    rel = f"J__{patient}_痤疮_2019{i:011d}_斑点.jpg"
    if not coco and rng.random() < 0.3:
      rel = "batch2/" + rel
    width, height = (int(v) for v in rng.integers(24, 65, 2))
    shapes = [_random_shape(rng, width, height) for _ in range(int(rng.integers(1, 4)))]
    data = fixtures.encode_jpeg(_skin(rng, height, width), int(rng.integers(70, 96)))
    key = os.path.splitext(rel if not coco else os.path.basename(rel))[0]
    if coco:
      path = os.path.join(root, "images", os.path.basename(rel))
      fixtures.write_bytes(path, data)
      images.append({"id": 100 + i, "file_name": os.path.basename(rel), "height": height, "width": width, "shapes": shapes})
      sources.append(Source(key, {"image": path}, len(shapes), image_index=i))
    else:
      image_file, json_file = fixtures.write_labelme_pair(root, rel, data, shapes, height, width)
      sources.append(Source(key, {"image": image_file, "annotation": json_file}, len(shapes)))
  shared = {}
  if coco:
    doc = fixtures.coco_document(images)
    fixtures.write_json(os.path.join(root, "annotations.json"), doc)
    shared["annotation"] = os.path.join(root, "annotations.json")
    for j, annotation in enumerate(doc["annotations"]):
      sources[annotation["image_id"] - 100].shape_index.append(j)
  if rng.random() < 0.3:
    config = AcneScuConfig(name="fuzz_crops32", crop_size=32, min_size=3.0)
  else:
    config = AcneScuConfig(name="fuzz_whole")
  return Release("coco" if coco else "labelme", root, sources, config, shared)


def make_acne04(rng: np.random.Generator, root: str) -> Release:
  from acne_jax.grading.scales import hayashi_grade

  specs: Dict[str, fixtures.Acne04Image] = {}
  n = int(rng.integers(2, 6))
  for i in range(n):
    width, height = (int(v) for v in rng.integers(24, 65, 2))
    objects = []
    for _ in range(int(rng.integers(1, 4))):
      x1, y1 = int(rng.integers(1, width - 4)), int(rng.integers(1, height - 4))
      x2, y2 = int(rng.integers(x1 + 1, width + 1)), int(rng.integers(y1 + 1, height + 1))
      objects.append(("fore", x1, y1, x2, y2, int(rng.random() < 0.2)))
    count = len(objects)
    name = f"levle{hayashi_grade(count)}_{i + 1}.jpg"
    specs[name] = fixtures.Acne04Image(hayashi_grade(count), count, objects, "cls", size=(width, height), seed=int(rng.integers(1 << 30)))
  names = list(specs)
  test = [nm for nm in names if rng.random() < 0.3]
  train = [nm for nm in names if nm not in test]
  fixtures.write_acne04_release(root, specs, {0: (train, test)})
  sources = []
  for names_, kind in ((train, "trainval"), (test, "test")):
    for line, name in enumerate(names_, start=1):
      stem = os.path.splitext(name)[0]
      sources.append(Source(stem, {"image": os.path.join(root, fixtures.ACNE04_CLASSIFICATION_IMAGES, name),
                                   "xml": os.path.join(root, fixtures.ACNE04_ANNOTATIONS, stem + ".xml")},
                            len(specs[name].objects), line=line,
                            list_file=os.path.join(root, fixtures.ACNE04_CLASSIFICATION, f"NNEW_{kind}_0.txt")))
  return Release("acne04", root, sources, "fold0")


def make_deep_lesion(rng: np.random.Generator, root: str) -> Release:
  size = int(rng.integers(12, 33))
  rows, series, sources = [], {}, []
  line = 2  # the header is line 1
  for p in range(int(rng.integers(1, 4))):
    patient, study, number = p + 1, int(rng.integers(1, 3)), int(rng.integers(1, 4))
    folder = f"{patient:06d}_{study:02d}_{number:02d}"
    first, last = 1, int(rng.integers(5, 12))
    series[folder] = (float(rng.integers(-800, 200)), range(first, last + 1), ())
    spacing = ["0.7, 0.7, 1", "0.8, 0.8, 2", "0.7, 0.7, 1.25", "0.6, 0.6, 5"][int(rng.integers(4))]
    spacing_z = float(spacing.split(",")[-1])
    keys = sorted(set(int(k) for k in rng.integers(first, last + 1, int(rng.integers(1, 3)))))
    split = int(rng.integers(1, 4))
    for key in keys:
      name = f"{folder}_{key:03d}.png"
      source = Source(name, {"key": os.path.join(root, "Images_png", folder, f"{key:03d}.png")}, series=folder)
      taps = deep_lesion.neighbour_slices(key, spacing_z, deep_lesion.DEFAULT_SLICE_INTERVAL_MM, 3)
      source.slices = {i for channel in taps for i, _ in channel if first <= i <= last}
      window = f"{int(rng.integers(-1400, -100))}, {int(rng.integers(100, 400))}"  # one per slice
      for _ in range(int(rng.integers(1, 3))):
        x1, y1 = int(rng.integers(0, size - 3)), int(rng.integers(0, size - 3))
        x2, y2 = int(rng.integers(x1 + 1, size + 1)), int(rng.integers(y1 + 1, size + 1))
        rows.append(fixtures.dl_row(name, patient, study, number, key, f"{x1}, {y1}, {x2}, {y2}", int(rng.integers(-1, 9)) or 1,
                                    int(rng.random() < 0.2), f"{first}, {last}", spacing, split, size=f"{size}, {size}",
                                    window=window))
        source.rows.append(line)
        source.n_shapes += 1
        line += 1
      sources.append(source)
  fixtures.write_deep_lesion_release(root, rows, series, size)
  config = ("default", "dicom_window", "hu")[int(rng.integers(3))]
  return Release("deep_lesion", root, sources, config, {"csv": os.path.join(root, "DL_info.csv")})


def make_release(fmt: str, rng: np.random.Generator, root: str) -> Release:
  if fmt in ("labelme", "coco"):
    return make_acne_scu(rng, root, fmt == "coco")
  if fmt == "acne04":
    return make_acne04(rng, root)
  return make_deep_lesion(rng, root)


# --------------------------------------------------------------------------------------------
# Mutations. Each takes (release, rng) and returns a Mutation, or None when it cannot apply
# (its target is gone after an earlier mutation).


def _read(path: str) -> Optional[bytes]:
  try:
    with open(path, "rb") as f:
      return f.read()
  except OSError:
    return None


def _pick(rng, items):
  items = list(items)
  return items[int(rng.integers(len(items)))] if items else None


def _image_sources(release: Release) -> List[Source]:
  role = "key" if release.format == "deep_lesion" else "image"
  return [s for s in release.sources if os.path.isfile(s.files.get(role, ""))]


def _image_names(release: Release, source: Source) -> List[Name]:
  """Where a bad image of ``source`` may be named: the image itself, or the whole record."""
  names = [Name(_rel(release, source.files["image"]), None, ("skipped", "noted"))]
  if release.format == "labelme":
    names.append(Name(_rel(release, source.files["annotation"]), None, ("skipped",)))
  if release.format == "acne04":
    names += _acne04_covers(release, source)
  if release.format == "coco":
    names.append(Name("annotations.json", source.image_index, ("skipped",), "image"))
  return names


def _acne04_covers(release: Release, source: Source) -> List[Name]:
  """An ACNE04 image's XML or image skipped, or its list line."""
  return [*_whole(release, source.files["xml"], source.files["image"]), Name(_rel(release, source.list_file), source.line, ("skipped",))]


def _dl_covers(release: Release, keys: Set[str]) -> List[Name]:
  """DeepLesion key slices skipped, or any of their CSV rows."""
  names = []
  for s in release.sources:
    if s.key in keys:
      names.append(Name(_rel(release, s.files["key"]), None, ("skipped",)))
      names += [Name("DL_info.csv", line, ("skipped",)) for line in s.rows]
  return names


def _slice_target(release: Release, rng) -> Optional[Tuple[Source, str, Set[str]]]:
  """(source, slice path, keys affected): a DeepLesion key slice or one of the neighbours its
  image is made of (a slice no record reads cannot be named)."""
  source = _pick(rng, [s for s in release.sources if os.path.isdir(os.path.join(release.root, "Images_png", s.series))])
  if source is None:
    return None
  folder = os.path.join(release.root, "Images_png", source.series)
  path = source.files["key"] if rng.random() < 0.4 else os.path.join(folder, f"{_pick(rng, sorted(source.slices)):03d}.png")
  if not os.path.isfile(path):
    return None
  return source, path, {s.key for s in release.sources if s.series == source.series}


def _slice_names(release: Release, source: Source, path: str, keys: Set[str]) -> List[Name]:
  # (A key slice whose spacing is unusable is its own image in every channel: its neighbours are not read.)
  spacing = [Name("DL_info.csv", min(s.rows), ("noted",), "line", "unusable_spacing") for s in release.sources if s.key in keys and s.rows]
  return [Name(_rel(release, path), None, ("skipped", "noted")), *_dl_covers(release, keys), *spacing]


def _image_target(release: Release, rng) -> Optional[Tuple[str, Set[str], List[Name]]]:
  """(image file, keys affected, the names its damage must get): a photo, or a DeepLesion slice."""
  if release.format == "deep_lesion":
    target = _slice_target(release, rng)
    if target is None:
      return None
    source, path, keys = target
    return path, keys, _slice_names(release, source, path, keys)
  source = _pick(rng, _image_sources(release))
  if source is None:
    return None
  return source.files["image"], {source.key}, _image_names(release, source)


def m_truncate_image(release, rng):
  target = _image_target(release, rng)
  if target is None:
    return None
  path, keys, names = target
  data = _read(path)
  if not data or len(data) < 8:
    return None
  cut = int(len(data) * rng.uniform(0.2, 0.95))
  fixtures.write_bytes(path, data[:cut])
  return Mutation("truncated_image", f"cut {_rel(release, path)} to {cut} of {len(data)} bytes", names, keys, whole_file=True)


def m_corrupt_image(release, rng):
  target = _image_target(release, rng)
  if target is None:
    return None
  path, keys, names = target
  data = _read(path) or b""
  how = int(rng.integers(3))
  if how == 0 and len(data) > 16:
    n = int(rng.integers(2, 16))
    data = bytes(rng.integers(0, 256, n, dtype=np.uint8)) + data[n:]
    what = f"random first {n} bytes"
  elif how == 1:
    data = bytes(rng.integers(0, 256, int(rng.integers(0, 200)), dtype=np.uint8))
    what = f"{len(data)} random bytes"
  else:
    data, what = b"", "empty"
  fixtures.write_bytes(path, data)
  return Mutation("corrupt_image", f"{_rel(release, path)}: {what}", names, keys, whole_file=True)


def m_wrong_image_size(release, rng):
  if release.format == "deep_lesion":
    target = _slice_target(release, rng)
    if target is None:
      return None
    source, path, keys = target
    image = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if image is None:
      return None
    folder = os.path.dirname(path)
    sizes = {im.shape[0] for im in (cv2.imread(os.path.join(folder, f), cv2.IMREAD_UNCHANGED) for f in os.listdir(folder)) if im is not None}
    side = _pick(rng, [n for n in range(8, 40) if n not in sizes])  # a size no slice of the series has
    fixtures.write_bytes(path, fixtures.encode_slice(fixtures.slice_hu(0, 1, side)))
    return Mutation("wrong_image_size", f"{_rel(release, path)}: another size", _slice_names(release, source, path, keys), keys, whole_file=True)
  source = _pick(rng, _image_sources(release))
  if source is None:
    return None
  data = _read(source.files["image"])
  image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
  if image is None:
    return None
  h, w = image.shape[:2]
  nh, nw = h + int(rng.integers(-5, 6)), w + int(rng.integers(1, 6))
  fixtures.write_bytes(source.files["image"], fixtures.encode_jpeg(_skin(rng, max(nh, 8), max(nw, 8))))
  names = _image_names(release, source)
  if release.format == "acne04":  # VOC <size> is informative: the record is kept, the mismatch noted
    names = [Name(_rel(release, source.files["xml"]), None, ("noted", "skipped")), *names]
  return Mutation("wrong_image_size", f"{_rel(release, source.files['image'])}: {w}x{h} -> {max(nw, 8)}x{max(nh, 8)}", names, {source.key},
                  whole_file=True)


def m_missing_image(release, rng):
  if release.format == "deep_lesion":
    target = _slice_target(release, rng)
    if target is None:
      return None
    source, path, keys = target
    if rng.random() < 0.2:  # the whole series folder
      folder = os.path.dirname(path)
      shutil.rmtree(folder)
      return Mutation("missing_slice", f"removed {_rel(release, folder)}/", _dl_covers(release, keys), keys, whole_file=True)
    os.remove(path)
    return Mutation("missing_slice", f"removed {_rel(release, path)}", _slice_names(release, source, path, keys), keys, whole_file=True)
  source = _pick(rng, _image_sources(release))
  if source is None:
    return None
  os.remove(source.files["image"])
  return Mutation("missing_image", f"removed {_rel(release, source.files['image'])}", _image_names(release, source), {source.key},
                  whole_file=True)


# ---- LabelMe JSON.


def _labelme_edit(release, rng, edit: Callable[[Any, Source], Optional[Tuple[str, List[Name], str]]], hidden: Optional[Set[str]] = None):
  """Loads a LabelMe JSON, lets ``edit`` change it (returns (kind, names, what) or None), writes it;
  ``hidden``: keys whose image size the edit removed."""
  source = _pick(rng, [s for s in release.sources if os.path.isfile(s.files["annotation"])])
  if source is None:
    return None
  try:
    doc = json.loads(_read(source.files["annotation"]).decode("utf-8"))
  except ValueError:
    return None
  if not isinstance(doc, dict) or not isinstance(doc.get("shapes"), list):
    return None
  out = edit(doc, source)
  if out is None:
    return None
  kind, names, what = out
  fixtures.write_bytes(source.files["annotation"], json.dumps(doc, ensure_ascii=False).encode("utf-8"))
  covers = _whole(release, source.files["annotation"], source.files["image"])
  return Mutation(kind, f"{_rel(release, source.files['annotation'])}: {what}", names + covers if names else [], {source.key},
                  whole_file="shapes" not in doc, hides_size=set(hidden or ()))


def _shape_edit(release, rng, kind: str, change: Callable[[Dict[str, Any]], Optional[str]], harmless: bool = False):
  def edit(doc, source):
    shapes = [k for k, s in enumerate(doc["shapes"]) if isinstance(s, dict)]
    k = _pick(rng, shapes)
    if k is None:
      return None
    what = change(doc["shapes"][k])
    if what is None:
      return None
    return kind, [] if harmless else [Name(_rel(release, source.files["annotation"]), k)], f"shape {k}: {what}"
  return _labelme_edit(release, rng, edit)


def _set_point(rng, shape, value) -> Optional[str]:
  points = shape.get("points")
  if not isinstance(points, list) or not points or not all(isinstance(p, list) and len(p) == 2 for p in points):
    return None
  v, c = int(rng.integers(len(points))), int(rng.integers(2))
  points[v][c] = value
  return f"point {v}[{c}] = {value!r}"


NAN_VALUES = (float("nan"), float("inf"), float("-inf"))
HUGE_VALUES = (1e6, -1e6, 3.5e12, -2e15, 1e300, -1e300, 1.7976931348623157e308)


def m_labelme_nan(release, rng):
  return _shape_edit(release, rng, "nan_coordinate", lambda s: _set_point(rng, s, _pick(rng, NAN_VALUES)))


def m_labelme_huge(release, rng):
  return _shape_edit(release, rng, "huge_coordinate", lambda s: _set_point(rng, s, _pick(rng, HUGE_VALUES)))


def m_labelme_unknown_label(release, rng):
  def change(shape):
    shape["label"] = _pick(rng, ("acne_scar_typo", "", "Papule!", "痘痘", "nevus nevus", "0"))
    return f"label {shape['label']!r}"
  return _shape_edit(release, rng, "unknown_label", change)


def m_labelme_degenerate(release, rng):
  def change(shape):
    points = shape.get("points")
    if not isinstance(points, list) or not points or not isinstance(points[0], list) or len(points[0]) != 2:
      return None
    if shape.get("shape_type") == "circle":
      shape["points"] = [points[0], list(points[0])]  # radius 0
      return "circle of radius 0"
    x, y = points[0]
    if rng.random() < 0.5:
      shape["points"] = [[x, y], [x, y], [x, y]]
      return "three equal points"
    shape["points"] = [[x, y], [x + 3, y], [x + 6, y]]
    return "three points on a horizontal line"
  return _shape_edit(release, rng, "degenerate_shape", change)


def m_labelme_wrong_type(release, rng):
  def change(shape):
    field, value = _pick(rng, (("label", 7), ("label", None), ("points", "12,34"), ("points", [[1, 2, 3], [4, 5, 6], [7, 8, 9]]),
                               ("points", [["a", 1], [2, 3], [4, 5]]), ("points", None), ("points", {"x": 1}),
                               ("shape_type", 5), ("shape_type", "rectangle"), ("points", [[True, 1], [2, 3], [4, 5]])))
    shape[field] = value
    return f"{field} = {value!r}"
  return _shape_edit(release, rng, "wrong_type", change)


def m_labelme_shape_not_object(release, rng):
  def edit(doc, source):
    if not doc["shapes"]:
      return None
    k = int(rng.integers(len(doc["shapes"])))
    doc["shapes"][k] = _pick(rng, ("papule", 12, None, [1, 2, 3]))
    return "wrong_type", [Name(_rel(release, source.files["annotation"]), k)], f"shape {k} = {doc['shapes'][k]!r}"
  return _labelme_edit(release, rng, edit)


def m_labelme_missing_field(release, rng):
  hidden: Set[str] = set()

  def edit(doc, source):
    json_name = _rel(release, source.files["annotation"])
    choice = int(rng.integers(5))
    if choice == 0:
      del doc["shapes"]
      return "missing_field", [Name(json_name, None, ("skipped",))], "no 'shapes'"
    if choice == 1:  # harmless: the image is found by the JSON's name, the size is not checked
      fields = _pick(rng, (("imagePath",), ("imageHeight", "imageWidth"), ("version", "flags", "imageData")))
      for key in fields:
        doc.pop(key, None)
      if "imageWidth" in fields:
        hidden.add(source.key)
      return "missing_field", [], f"without {', '.join(fields)}"
    shapes = [k for k, s in enumerate(doc["shapes"]) if isinstance(s, dict)]
    k = _pick(rng, shapes)
    if k is None:
      return None
    shape = doc["shapes"][k]
    if choice == 2:
      shape.pop("points", None)
      return "missing_field", [Name(json_name, k)], f"shape {k} without 'points'"
    if choice == 3:
      shape.pop("label", None)
      return "missing_field", [Name(json_name, k)], f"shape {k} without 'label'"
    if shape.get("shape_type") == "circle":  # a circle without its type is a 2-point polygon
      shape.pop("shape_type")
      return "missing_field", [Name(json_name, k)], f"circle {k} without 'shape_type'"
    shape.pop("shape_type", None)
    return "missing_field", [], f"polygon {k} without 'shape_type' (polygon is the default)"
  return _labelme_edit(release, rng, edit, hidden)


def m_labelme_extra_field(release, rng):
  def edit(doc, source):
    extra = _pick(rng, ({"lineColor": [0, 255, 0, 128]}, {"comment": "重新标注"}, {"score": float("nan")}, {"x": {"y": [1, None]}}))
    if doc["shapes"] and rng.random() < 0.5 and isinstance(doc["shapes"][0], dict):
      k = int(rng.integers(len(doc["shapes"])))
      if not isinstance(doc["shapes"][k], dict):
        return None
      doc["shapes"][k].update(extra)
      return "extra_field", [], f"shape {k} + {extra!r}"
    doc.update(extra)
    return "extra_field", [], f"+ {extra!r}"
  return _labelme_edit(release, rng, edit)


def m_labelme_malformed_json(release, rng):
  source = _pick(rng, [s for s in release.sources if os.path.isfile(s.files["annotation"])])
  if source is None:
    return None
  data = _read(source.files["annotation"])
  how = int(rng.integers(4))
  if how == 0:
    data, what = data[:int(len(data) * rng.uniform(0.1, 0.95))], "truncated"
  elif how == 1:  # where it breaks the JSON (inside a string it would only change a value)
    for _ in range(20):
      at = int(rng.integers(1, len(data)))
      try:
        json.loads((data[:at] + b"}" + data[at:]).decode("utf-8"))
      except (ValueError, UnicodeDecodeError):
        break
    else:
      return None
    data, what = data[:at] + b"}" + data[at:], "a stray '}'"
  elif how == 2:
    data, what = b"", "empty"
  else:
    data, what = b"[" + data + b"]", "wrapped in a list"
  fixtures.write_bytes(source.files["annotation"], data)
  names = [Name(_rel(release, source.files["annotation"]), None, ("skipped",))]
  return Mutation("malformed_annotation", f"{_rel(release, source.files['annotation'])}: {what}", names, {source.key}, whole_file=True)


def m_labelme_non_utf8(release, rng):
  source = _pick(rng, [s for s in release.sources if os.path.isfile(s.files["annotation"]) and os.path.isfile(s.files["image"])])
  if source is None:
    return None
  if rng.random() < 0.5:  # a byte that is not UTF-8 inside the JSON text
    data = _read(source.files["annotation"])
    at = data.find(b'"label": "') + len(b'"label": "')
    if at < len(b'"label": "'):
      return None
    fixtures.write_bytes(source.files["annotation"], data[:at] + b"\xff\xfe" + data[at:])
    names = [Name(_rel(release, source.files["annotation"]), None, ("skipped",))]
    return Mutation("non_utf8", f"{_rel(release, source.files['annotation'])}: bytes ff fe in a label", names, {source.key}, whole_file=True)
  # The image and its JSON renamed with a name that is not UTF-8 (a GBK archive unzipped as is).
  folder, base = os.path.split(source.files["image"])
  stem = os.path.splitext(base)[0]
  new_stem = os.fsdecode(os.fsencode(stem).replace("痤疮".encode("utf-8"), "痤疮".encode("gbk")))
  if new_stem == stem:
    return None
  new_image, new_json = os.path.join(folder, new_stem + ".jpg"), os.path.join(folder, new_stem + ".json")
  os.rename(source.files["image"], new_image)
  os.rename(source.files["annotation"], new_json)
  try:
    doc = json.loads(_read(new_json).decode("utf-8"))
    if isinstance(doc, dict):
      doc.pop("imagePath", None)  # found by the JSON's own name
      fixtures.write_bytes(new_json, json.dumps(doc, ensure_ascii=False).encode("utf-8"))
  except ValueError:
    pass
  source.files = {"image": new_image, "annotation": new_json}
  names = [Name(_rel(release, new_json), None, ("skipped",)), Name(_rel(release, new_image), None, ("skipped",))]
  return Mutation("non_utf8", f"{_rel(release, new_json)}: file names in GBK", names, {source.key}, whole_file=True)


def m_labelme_duplicate(release, rng):
  source = _pick(rng, [s for s in release.sources if os.path.isfile(s.files["annotation"]) and os.path.isfile(s.files["image"])
                       and _rel(release, s.files["image"]) == os.path.relpath(s.files["image"], release.root)])
  if source is None:
    return None
  data = _read(source.files["annotation"])
  try:
    doc = json.loads(data.decode("utf-8"))
  except ValueError:
    return None
  if not isinstance(doc, dict):
    return None
  folder = os.path.dirname(source.files["annotation"])
  copy = os.path.join(folder, "zz_copy_" + os.path.basename(source.files["annotation"]))
  doc["imagePath"] = os.path.basename(source.files["image"])
  fixtures.write_bytes(copy, json.dumps(doc, ensure_ascii=False).encode("utf-8"))
  # (If a later mutation spoils the first JSON, the copy is the one used: that JSON is named then.)
  return Mutation("duplicate", f"{_rel(release, copy)}: a second JSON of {_rel(release, source.files['image'])}",
                  [Name(_rel(release, copy), None, ("skipped",)), *_whole(release, source.files["annotation"], source.files["image"])],
                  {source.key})


# ---- COCO JSON.


def _coco_edit(release, rng, edit):
  path = release.shared["annotation"]
  try:
    doc = json.loads(_read(path).decode("utf-8"))
  except (ValueError, AttributeError):
    return None
  if not isinstance(doc, dict) or not isinstance(doc.get("annotations"), list) or not isinstance(doc.get("images"), list):
    return None
  out = edit(doc)
  if out is None:
    return None
  kind, names, keys, what = out
  fixtures.write_bytes(path, json.dumps(doc, ensure_ascii=False).encode("utf-8"))
  return Mutation(kind, f"annotations.json: {what}", names, keys)


def _coco_annotation(release, rng, doc):
  """(index, annotation, its source) of a random well-formed annotation."""
  by_id = {100 + s.image_index: s for s in release.sources}
  usable = [j for j, a in enumerate(doc["annotations"]) if isinstance(a, dict) and a.get("image_id") in by_id]
  j = _pick(rng, usable)
  if j is None:
    return None
  annotation = doc["annotations"][j]
  return j, annotation, by_id[annotation["image_id"]]


def _coco_shape_edit(release, rng, kind, change):
  def edit(doc):
    picked = _coco_annotation(release, rng, doc)
    if picked is None:
      return None
    j, annotation, source = picked
    what = change(annotation)
    if what is None:
      return None
    names = [Name("annotations.json", j, None, "annotation"), *_image_names(release, source)[1:], *_whole(release, source.files["image"])]
    return kind, names, {source.key}, f"annotation {j}: {what}"
  return _coco_edit(release, rng, edit)


def _set_coco_value(rng, annotation, value):
  segmentation = annotation.get("segmentation")
  if not isinstance(segmentation, list) or not segmentation or not isinstance(segmentation[0], list) or not segmentation[0]:
    return None
  v = int(rng.integers(len(segmentation[0])))
  segmentation[0][v] = value
  return f"segmentation[0][{v}] = {value!r}"


def m_coco_nan(release, rng):
  return _coco_shape_edit(release, rng, "nan_coordinate", lambda a: _set_coco_value(rng, a, _pick(rng, NAN_VALUES)))


def m_coco_huge(release, rng):
  return _coco_shape_edit(release, rng, "huge_coordinate", lambda a: _set_coco_value(rng, a, _pick(rng, HUGE_VALUES)))


def m_coco_unknown_label(release, rng):
  def change(annotation):
    annotation["category_id"] = _pick(rng, (0, 11, 99, -1, "3", None))
    return f"category_id {annotation['category_id']!r}"
  return _coco_shape_edit(release, rng, "unknown_label", change)


def m_coco_wrong_type(release, rng):
  def change(annotation):
    value = _pick(rng, ("abc", {"counts": "xyz", "size": [10, 10]}, [[1, 2, 3]], [["a", "b", "c", "d", "e", "f"]], 5, [[True] * 6]))
    annotation["segmentation"] = value
    return f"segmentation = {value!r:.40}"
  return _coco_shape_edit(release, rng, "wrong_type", change)


def m_coco_degenerate(release, rng):
  def change(annotation):
    segmentation = annotation.get("segmentation")
    if not isinstance(segmentation, list) or not segmentation or not isinstance(segmentation[0], list) or len(segmentation[0]) < 2:
      return None
    x, y = segmentation[0][:2]
    annotation["segmentation"] = [[x, y, x, y, x, y]]
    return "three equal points"
  return _coco_shape_edit(release, rng, "degenerate_shape", change)


def m_coco_missing_field(release, rng):
  hidden: Set[str] = set()

  def edit(doc):
    choice = int(rng.integers(4))
    if choice == 0:  # harmless
      field = _pick(rng, ("categories", "iscrowd"))
      if field == "categories":
        doc.pop("categories", None)
      else:
        for a in doc["annotations"]:
          if isinstance(a, dict):
            a.pop("iscrowd", None)
      return "missing_field", [], set(), f"without '{field}'"
    if choice == 1:  # an image entry without its size: harmless (the size is not checked then)
      i = _pick(rng, [i for i, e in enumerate(doc["images"]) if isinstance(e, dict)])
      if i is None:
        return None
      doc["images"][i].pop("height", None)
      doc["images"][i].pop("width", None)
      hidden.update(s.key for s in release.sources if 100 + s.image_index == doc["images"][i].get("id"))
      return "missing_field", [], set(), f"image entry {i} without height and width"
    if choice == 2:  # an image entry without file_name: the entry and its annotations are left out
      i = _pick(rng, [i for i, e in enumerate(doc["images"]) if isinstance(e, dict) and "file_name" in e])
      if i is None:
        return None
      entry = doc["images"][i]
      entry.pop("file_name")
      keys = {s.key for s in release.sources if 100 + s.image_index == entry.get("id")}
      return "missing_field", [Name("annotations.json", i, None, "image")], keys, f"image entry {i} without file_name"
    picked = _coco_annotation(release, rng, doc)
    if picked is None:
      return None
    j, annotation, source = picked
    field = _pick(rng, ("segmentation", "category_id", "image_id"))
    annotation.pop(field, None)
    return "missing_field", [Name("annotations.json", j, None, "annotation"), *_whole(release, source.files["image"]),
                             *_image_names(release, source)[1:]], {source.key}, f"annotation {j} without '{field}'"
  mutation = _coco_edit(release, rng, edit)
  if mutation is not None:
    mutation.hides_size = hidden
  return mutation


def m_coco_extra_field(release, rng):
  def edit(doc):
    extra = _pick(rng, ({"area": 12.5}, {"attributes": {"occluded": False}}, {"score": None}, {"注释": "x"}))
    where = int(rng.integers(3))
    if where == 0:
      doc.update(extra)
    else:
      entries = doc["annotations"] if where == 1 else doc["images"]
      k = _pick(rng, [k for k, e in enumerate(entries) if isinstance(e, dict)])
      if k is None:
        return None
      entries[k].update(extra)
    return "extra_field", [], set(), f"+ {extra!r}"
  return _coco_edit(release, rng, edit)


def m_coco_wrong_image_id(release, rng):
  def edit(doc):
    picked = _coco_annotation(release, rng, doc)
    if picked is None:
      return None
    j, annotation, source = picked
    annotation["image_id"] = _pick(rng, (99999, -1, "100", None))
    return "wrong_type", [Name("annotations.json", j, None, "annotation"), *_whole(release, source.files["image"]),
                          *_image_names(release, source)[1:]], {source.key}, f"annotation {j}: image_id {annotation['image_id']!r}"
  return _coco_edit(release, rng, edit)


def m_coco_image_size(release, rng):
  def edit(doc):
    i = _pick(rng, [i for i, e in enumerate(doc["images"]) if isinstance(e, dict) and isinstance(e.get("height"), int)])
    if i is None:
      return None
    entry = doc["images"][i]
    entry["height"] += int(rng.integers(1, 9))
    keys = {s.key for s in release.sources if 100 + s.image_index == entry.get("id")}
    names = [Name(_rel(release, os.path.join(release.root, "images", entry.get("file_name", ""))), None, ("skipped",)),
             Name("annotations.json", i, None, "image")]
    return "wrong_image_size", names, keys, f"image entry {i}: height {entry['height']}"
  return _coco_edit(release, rng, edit)


def m_coco_malformed_json(release, rng):
  path = release.shared["annotation"]
  data = _read(path)
  if data is None:
    return None
  if rng.random() < 0.5:
    fixtures.write_bytes(path, data[:int(len(data) * rng.uniform(0.1, 0.95))])
    what, kind = "truncated", "malformed_annotation"
  else:
    at = data.find(b'"file_name": "') + len(b'"file_name": "')
    fixtures.write_bytes(path, data[:at] + b"\xff" + data[at:])
    what, kind = "byte ff (not UTF-8) in a file name", "non_utf8"
  return Mutation(kind, f"annotations.json: {what}", [Name("annotations.json", None, ("skipped",))],
                  {s.key for s in release.sources}, fatal_ok=True, whole_file=True)


# ---- ACNE04.


def _xml_edit(release, rng, kind, change, harmless=False):
  source = _pick(rng, [s for s in release.sources if os.path.isfile(s.files["xml"])])
  if source is None:
    return None
  try:
    text = (_read(source.files["xml"]) or b"").decode("utf-8")
  except UnicodeDecodeError:
    return None  # (an earlier mutation made it unreadable: rewriting it would repair it)
  objects = list(re.finditer(r"<object>.*?</object>", text))
  out = change(text, objects)
  if out is None:
    return None
  text, index, what = out
  fixtures.write_bytes(source.files["xml"], text.encode("utf-8"))
  names = [] if harmless else [Name(_rel(release, source.files["xml"]), index), *_acne04_covers(release, source)]
  return Mutation(kind, f"{_rel(release, source.files['xml'])}: {what}", names, {source.key})


def _replace_in_object(rng, text, objects, tag, value):
  if not objects:
    return None
  k = int(rng.integers(len(objects)))
  obj = objects[k]
  body = re.sub(f"<{tag}>[^<]*</{tag}>", f"<{tag}>{value}</{tag}>", obj.group(0), count=1)
  return text[:obj.start()] + body + text[obj.end():], k, f"object {k}: <{tag}>{value}</{tag}>"


def m_voc_nan(release, rng):
  return _xml_edit(release, rng, "nan_coordinate", lambda t, o: _replace_in_object(
      rng, t, o, _pick(rng, ("xmin", "ymin", "xmax", "ymax")), _pick(rng, ("nan", "NaN", "inf", "-inf", "1e400"))))


def m_voc_huge(release, rng):
  if rng.random() < 0.7:  # a box coordinate: clipped, or dropped when nothing is left
    return _xml_edit(release, rng, "huge_coordinate", lambda t, o: _replace_in_object(
        rng, t, o, _pick(rng, ("xmin", "ymin", "xmax", "ymax")), _pick(rng, ("1e6", "-1e6", "3.5e12", "1e300", "-1e300"))))
  tag = _pick(rng, ("width", "height", "depth", "difficult", "truncated"))
  value = _pick(rng, ("1e400", "-1e400", "1e30", "99999999999999999999"))

  def change(text, objects):
    if tag in ("width", "height", "depth"):
      return re.sub(f"<{tag}>[^<]*</{tag}>", f"<{tag}>{value}</{tag}>", text, count=1), None, f"<{tag}>{value}</{tag}>"
    return _replace_in_object(rng, text, objects, tag, value)
  mutation = _xml_edit(release, rng, "huge_coordinate", change)
  if mutation is not None:
    if tag in ("width", "height"):  # <size> that is not the image's: noted (the record is kept)
      mutation.names = [Name(mutation.names[0].file, None, ("noted",)), *mutation.names[1:]]
    else:  # <depth> is not used; a <difficult> / <truncated> number is a flag that is not 0
      mutation.names = []
  return mutation


def m_voc_unknown_label(release, rng):
  return _xml_edit(release, rng, "unknown_label", lambda t, o: _replace_in_object(rng, t, o, "name", _pick(rng, ("back", "Fore", "", "acne", "痘"))))


def m_voc_degenerate(release, rng):
  def change(text, objects):
    if not objects:
      return None
    k = int(rng.integers(len(objects)))
    obj = objects[k].group(0)
    xmin = re.search(r"<xmin>([^<]*)</xmin>", obj)
    if xmin is None:
      return None
    try:
      x = float(xmin.group(1))
    except ValueError:
      return None
    value = _pick(rng, (f"{x - 1:g}", f"{x - 5:g}", "0"))  # VOC pixels are inclusive: xmax = xmin - 1 is empty
    body = re.sub(r"<xmax>[^<]*</xmax>", f"<xmax>{value}</xmax>", obj, count=1)
    return text[:objects[k].start()] + body + text[objects[k].end():], k, f"object {k}: xmax {value} < xmin {x:g}"
  return _xml_edit(release, rng, "degenerate_shape", change)


def m_voc_missing_field(release, rng):
  def change(text, objects):
    if not objects:
      return None
    k = int(rng.integers(len(objects)))
    obj = objects[k].group(0)
    tag = _pick(rng, ("bndbox", "xmin", "ymax", "name"))
    body = re.sub(f"<{tag}>.*?</{tag}>", "", obj, count=1)
    return text[:objects[k].start()] + body + text[objects[k].end():], k, f"object {k} without <{tag}>"
  return _xml_edit(release, rng, "missing_field", change)


def m_voc_harmless(release, rng):
  def change(text, objects):
    choice = int(rng.integers(3))
    if choice == 0:
      return re.sub(r"<size>.*?</size>", "", text, count=1), None, "without <size>"
    if choice == 1:
      return text.replace("</annotation>", "<source><database>ACNE04</database><extra a='1'/></source></annotation>"), None, "extra <source>"
    if not objects:
      return None
    k = int(rng.integers(len(objects)))
    body = objects[k].group(0).replace("</object>", "<occluded>0</occluded><comment>ok</comment></object>")
    return text[:objects[k].start()] + body + text[objects[k].end():], k, f"object {k}: extra elements"
  mutation = _xml_edit(release, rng, "extra_field", change, harmless=True)
  if mutation is not None and "without" in mutation.what:
    mutation.kind = "missing_field"
    mutation.hides_size = set(mutation.keys)
  return mutation


def m_voc_malformed(release, rng):
  source = _pick(rng, [s for s in release.sources if os.path.isfile(s.files["xml"])])
  if source is None:
    return None
  data = _read(source.files["xml"])
  how = int(rng.integers(3))
  if how == 0:
    data, what, kind = data[:int(len(data) * rng.uniform(0.1, 0.95))], "truncated", "malformed_annotation"
  elif how == 1:
    data, what, kind = data.replace(b"<name>fore</name>", b"<name>fore\xff\xfe</name>", 1), "bytes ff fe (not UTF-8) in a <name>", "non_utf8"
  else:
    data, what, kind = data.replace(b"<annotation>", b"<annotations>", 1), "root element renamed", "malformed_annotation"
  fixtures.write_bytes(source.files["xml"], data)
  names = [Name(_rel(release, source.files["xml"]), None, ("skipped",)), *_acne04_covers(release, source)]
  return Mutation(kind, f"{_rel(release, source.files['xml'])}: {what}", names, {source.key}, whole_file=True)


def m_acne04_missing_xml(release, rng):
  source = _pick(rng, [s for s in release.sources if os.path.isfile(s.files["xml"])])
  if source is None:
    return None
  os.remove(source.files["xml"])
  names = [Name(_rel(release, source.files["image"]), None, ("noted", "skipped")), *_acne04_covers(release, source)]
  return Mutation("missing_annotation", f"removed {_rel(release, source.files['xml'])}", names, {source.key}, whole_file=True)


def _list_line_edit(release, rng, kind, change):
  source = _pick(rng, [s for s in release.sources if os.path.isfile(s.list_file)])
  if source is None:
    return None
  lines = (_read(source.list_file) or b"").split(b"\n")
  index = source.line - 1
  if index >= len(lines) or not lines[index].strip():
    return None
  new, what = change(lines[index])
  lines[index] = new
  fixtures.write_bytes(source.list_file, b"\n".join(lines))
  names = [Name(_rel(release, source.list_file), source.line)]
  return Mutation(kind, f"{_rel(release, source.list_file)} line {source.line}: {what}", names, {source.key})


def m_list_malformed(release, rng):
  def change(line):
    parts = line.split()
    choice = int(rng.integers(5))
    if choice == 0:
      return b" ".join(parts[:2]), "missing lesion count"
    if choice == 1:
      return line + b" 7", "an extra field"
    if choice == 2:
      return b" ".join([parts[0], b"x", parts[-1]]), "grade 'x'"
    if choice == 3:
      return b" ".join([parts[0], b"9", parts[-1]]), "grade 9"
    return b" ".join([parts[0], parts[1], b"-3"]), "lesion count -3"
  mutation = _list_line_edit(release, rng, "malformed_annotation", change)
  if mutation is not None and "extra field" in mutation.what:
    mutation.kind = "extra_field"
  elif mutation is not None and "missing" in mutation.what:
    mutation.kind = "missing_field"
  return mutation


def m_list_non_utf8(release, rng):
  return _list_line_edit(release, rng, "non_utf8", lambda line: (line.replace(b"levle", b"levle\xff", 1), "byte ff in the name"))


def m_list_duplicate(release, rng):
  source = _pick(rng, [s for s in release.sources if os.path.isfile(s.list_file)])
  if source is None:
    return None
  lines = (_read(source.list_file) or b"").split(b"\n")
  if source.line - 1 >= len(lines) or not lines[source.line - 1].strip():
    return None
  body = [ln for ln in lines if ln.strip()]
  number = len(body) + 1
  fixtures.write_bytes(source.list_file, b"\n".join(body + [lines[source.line - 1]]) + b"\n")
  # (If a later mutation spoils the first line, the repeat is the one kept: that line is named then.)
  return Mutation("duplicate", f"{_rel(release, source.list_file)}: line {source.line} repeated as line {number}",
                  [Name(_rel(release, source.list_file), number), Name(_rel(release, source.list_file), source.line, ("skipped",))],
                  {source.key})


# ---- DeepLesion.


def _csv_lines(release) -> Optional[List[bytes]]:
  data = _read(release.shared["csv"])
  return None if data is None else data.split(b"\n")


def _csv_row_edit(release, rng, kind, change, harmless=False):
  lines = _csv_lines(release)
  if lines is None:
    return None
  source = _pick(rng, [s for s in release.sources if s.rows])
  if source is None:
    return None
  line = _pick(rng, source.rows)
  if line - 1 >= len(lines) or not lines[line - 1].strip():
    return None
  out = change(lines[line - 1])
  if out is None:
    return None
  lines[line - 1], what = out
  fixtures.write_bytes(release.shared["csv"], b"\n".join(lines))
  names = [] if harmless else [Name("DL_info.csv", line), *_dl_covers(release, {source.key})]
  return Mutation(kind, f"DL_info.csv line {line}: {what}", names, {source.key})


def _cells(line: bytes) -> List[str]:
  import csv as csv_module

  return next(csv_module.reader([line.decode("utf-8").rstrip("\r")]))


def _join(cells: List[str]) -> bytes:
  import csv as csv_module
  import io

  out = io.StringIO()
  csv_module.writer(out, lineterminator="\r").writerow(cells)
  return out.getvalue().encode("utf-8")


def _cell_edit(rng, line, column, value, what):
  try:
    cells = _cells(line)
  except (UnicodeDecodeError, StopIteration, ValueError):
    return None
  if len(cells) <= column:
    return None
  if callable(value):
    value = value(cells[column])
    if value is None:
      return None
  cells[column] = value
  return _join(cells), what.format(value=value)


def _box_value(rng, cell, value):
  parts = [p.strip() for p in cell.split(",")]
  if len(parts) != 4:
    return None
  parts[int(rng.integers(4))] = value
  return ", ".join(parts)


def m_dl_nan(release, rng):
  if rng.random() < 0.7:
    value = _pick(rng, ("nan", "inf", "-inf"))
    return _csv_row_edit(release, rng, "nan_coordinate", lambda line: _cell_edit(
        rng, line, 6, lambda c: _box_value(rng, c, value), "Bounding_boxes {value}"))
  value = _pick(rng, ("0.7, 0.7, nan", "0.7, 0.7, 0", "0.7, 0.7, -2", "0.7, 0.7"))
  mutation = _csv_row_edit(release, rng, "nan_coordinate", lambda line: _cell_edit(rng, line, 12, value, "Spacing_mm_px_ {value}"))
  return mutation


def m_dl_huge(release, rng):
  # (column, value, must it be named?) "row": the row (or its whole key slice); "key": the row or a
  # note on its key slice; "": harmless (the record keeps the value, or an unknown one).
  column, value, named = _pick(rng, (
      (6, "1e6", "row"), (6, "-1e6", "row"), (6, "1e300", "row"), (6, "-1e300", "row"), (6, "1e400", "row"),
      (11, "1, 1e400", "row"), (11, "-1e400, 5", "row"), (11, "1, 99999999999999999999", ""),
      (13, "1e400, 1e400", "row"), (13, "99999999999999999999, 16", "key"),
      (16, "1e400", ""), (16, "99999999999999999999", ""),
      (14, "-1e400, 1e400", ""), (14, "1e300, -1e300", ""),
      (8, "1e400, 0.5, 0.5", ""),
  ))
  fn = (lambda c: _box_value(rng, c, value)) if column == 6 else value
  what = {6: "Bounding_boxes", 8: "Normalized_lesion_location", 11: "Slice_range", 13: "Image_size", 14: "DICOM_windows",
          16: "Patient_age"}[column] + " {value}"
  mutation = _csv_row_edit(release, rng, "huge_coordinate", lambda line: _cell_edit(rng, line, column, fn, what))
  if mutation is None:
    return None
  if not named:
    mutation.names = []
  elif named == "key":
    source = next(s for s in release.sources if s.key in mutation.keys)
    mutation.names.append(Name(_rel(release, source.files["key"]), None, ("noted",)))
  return mutation


def m_dl_malformed(release, rng):
  def change(line):
    choice = int(rng.integers(4))
    try:
      cells = _cells(line)
    except (UnicodeDecodeError, StopIteration, ValueError):
      return None
    if choice == 0:
      del cells[int(rng.integers(len(cells)))]
      return _join(cells), "a column missing"
    if choice == 1:
      cells[5] = "1, 2, 3"
      return _join(cells), "Measurement_coordinates with 3 values"
    if choice == 2:  # opening a cell that never closes (elsewhere in a cell a quote is only a character)
      text = line.decode("utf-8")
      commas = [k for k, c in enumerate(text) if c == "," and text[k + 1:k + 2] != '"']
      if not commas:
        return None
      at = _pick(rng, commas) + 1
      return (text[:at] + '"' + text[at:]).encode("utf-8"), "a stray double quote"
    cells[4] = str(int(cells[4]) + 1) if cells[4].strip().isdigit() else "x"
    return _join(cells), "Key_slice_index that differs from File_name"
  mutation = _csv_row_edit(release, rng, "malformed_annotation", change)
  if mutation is not None and "column missing" in mutation.what:
    mutation.kind = "missing_field"
  return mutation


def m_dl_extra_column(release, rng):
  def change(line):
    row = line.rstrip(b"\r")
    return row + b",extra" + line[len(row):], "an extra column at the end"
  return _csv_row_edit(release, rng, "extra_field", change, harmless=True)


def m_dl_truncated_csv(release, rng):
  """DL_info.csv cut inside its last row (a download cut short)."""
  lines = _csv_lines(release)
  if lines is None:
    return None
  while lines and not lines[-1].strip():
    lines.pop()
  line = len(lines)
  source = next((s for s in release.sources if line in s.rows), None)
  row = lines[-1].rstrip(b"\r") if lines else b""
  if source is None or len(row) < 3:
    return None
  cut = int(rng.integers(1, len(row) - 1))  # before the row's last character: the split code is lost
  fixtures.write_bytes(release.shared["csv"], b"\n".join(lines[:-1] + [row[:cut]]))
  names = [Name("DL_info.csv", line), *_dl_covers(release, {source.key})]
  return Mutation("malformed_annotation", f"DL_info.csv cut inside its last line {line} (after {cut} bytes)", names, {source.key})


def m_dl_non_utf8(release, rng):
  return _csv_row_edit(release, rng, "non_utf8", lambda line: (line.replace(b"_", b"_\xff", 1), "byte ff in File_name"))


def m_dl_split_code(release, rng):
  return _csv_row_edit(release, rng, "bad_split_code", lambda line: _cell_edit(rng, line, 17, _pick(rng, ("0", "4", "-1", "x", "")), "Train_Val_Test {value!r}"))


def m_dl_unknown_type(release, rng):
  # DeepLesion's own "unknown" type is -1: any other value is read as unknown (the record changes, nothing is bad).
  return _csv_row_edit(release, rng, "unknown_label", lambda line: _cell_edit(
      rng, line, 9, _pick(rng, ("9", "0", "-5", "x", "")), "Coarse_lesion_type {value!r}"), harmless=True)


def m_dl_8bit(release, rng):
  target = _slice_target(release, rng)
  if target is None:
    return None
  source, path, keys = target
  ok, buffer = cv2.imencode(".png", np.full((8, 8), 100, np.uint8))
  fixtures.write_bytes(path, buffer.tobytes())
  return Mutation("corrupt_image", f"{_rel(release, path)}: an 8-bit PNG", _slice_names(release, source, path, keys), keys, whole_file=True)


MUTATORS: Dict[str, List[Callable]] = {
    "labelme": [m_truncate_image, m_corrupt_image, m_wrong_image_size, m_missing_image, m_labelme_nan, m_labelme_huge,
                m_labelme_unknown_label, m_labelme_degenerate, m_labelme_wrong_type, m_labelme_shape_not_object,
                m_labelme_missing_field, m_labelme_extra_field, m_labelme_malformed_json, m_labelme_non_utf8, m_labelme_duplicate],
    "coco": [m_truncate_image, m_corrupt_image, m_wrong_image_size, m_missing_image, m_coco_nan, m_coco_huge, m_coco_unknown_label,
             m_coco_wrong_type, m_coco_degenerate, m_coco_missing_field, m_coco_extra_field, m_coco_wrong_image_id, m_coco_image_size,
             m_coco_malformed_json],
    "acne04": [m_truncate_image, m_corrupt_image, m_wrong_image_size, m_missing_image, m_voc_nan, m_voc_huge, m_voc_unknown_label,
               m_voc_degenerate, m_voc_missing_field, m_voc_harmless, m_voc_malformed, m_acne04_missing_xml, m_list_malformed,
               m_list_non_utf8, m_list_duplicate],
    "deep_lesion": [m_truncate_image, m_corrupt_image, m_wrong_image_size, m_missing_image, m_dl_nan, m_dl_huge, m_dl_malformed,
                    m_dl_extra_column, m_dl_truncated_csv, m_dl_non_utf8, m_dl_split_code, m_dl_unknown_type, m_dl_8bit],
}


# --------------------------------------------------------------------------------------------
# Building and checking.


def _builder(release: Release, data_dir: str):
  import tensorflow_datasets as tfds

  if release.format in ("labelme", "coco"):
    from tfds_builders.acne_scu import AcneScu as cls
  elif release.format == "acne04":
    from tfds_builders.acne04 import Acne04 as cls
  else:
    from tfds_builders.deep_lesion import DeepLesion as cls
  builder = cls(config=release.config, data_dir=data_dir)
  with contextlib.redirect_stdout(io.StringIO()):  # TFDS prints "Downloading and preparing dataset ..."
    builder.download_and_prepare(file_format="array_record", download_config=tfds.download.DownloadConfig(manual_dir=release.root))
  return builder


def _records(builder) -> Dict[str, Dict[str, List[Dict[str, Any]]]]:
  """split -> record key -> that key's records (one, or the crops of an image)."""
  out: Dict[str, Dict[str, List[Dict[str, Any]]]] = {}
  for split in builder.info.splits:
    source = builder.as_data_source(split=split)
    for i in range(len(source)):
      record = source[i]
      name = record["file_name"]
      name = name.decode("utf-8") if isinstance(name, bytes) else str(name)
      key = re.sub(r"_crop\d+$", "", os.path.splitext(name)[0]) if not name.endswith(".png") else name
      out.setdefault(split, {}).setdefault(key, []).append(record)
  return out


def _equal(a: Any, b: Any, skip=("image_id",), path="") -> Optional[str]:
  """None when ``a`` and ``b`` (records read back) are equal field by field, else where not."""
  if isinstance(a, dict):
    if set(a) != set(b):
      return f"{path}: fields {sorted(set(a) ^ set(b))}"
    for k in a:
      if k in skip:
        continue
      diff = _equal(a[k], b[k], skip, f"{path}/{k}")
      if diff:
        return diff
    return None
  if isinstance(a, (bytes, str)) or isinstance(b, (bytes, str)):
    return None if a == b else f"{path}: {a!r:.60} != {b!r:.60}"
  x, y = np.asarray(a), np.asarray(b)
  if x.shape != y.shape or x.dtype != y.dtype and not (x.size == 0 and y.size == 0):
    return f"{path}: shape/dtype {x.shape} {x.dtype} != {y.shape} {y.dtype}"
  equal = np.array_equal(x, y, equal_nan=True) if x.dtype.kind in "fc" else np.array_equal(x, y)
  return None if equal else f"{path}: values differ"


def _matches(item: Dict[str, Any], name: Name) -> bool:
  return (item["file"] == name.file and (name.index is None or item["index"] == name.index)
          and (name.actions is None or item["action"] in name.actions) and (name.item is None or item["item"] == name.item)
          and (name.reason is None or item["reason"] == name.reason))


def _check_summary(summary, dataset: str, allowed=None) -> None:
  from tfds_builders import build

  for key, reasons in COUNTED.get(dataset, {}).items():
    named = sum(1 for i in summary.items if i["reason"] in reasons and (key != "clipped_boxes" or i["action"] == "clipped"))
    if summary.counts.get(key, 0) != named:
      raise CheckFailure(f"counter {key} = {summary.counts.get(key, 0)} but {named} items of reasons {sorted(reasons)} are named")
  text = build.format_summary({"data_dir": "<data_dir>", "splits": {}, "build": summary.to_dict()})
  text.encode("utf-8")  # printable as UTF-8 (no surrogates)
  json.dumps(summary.to_dict(), ensure_ascii=False).encode("utf-8")
  if allowed is not None:
    unexpected = [i for i in summary.items if i["reason"] not in allowed]
    if unexpected:
      raise CheckFailure(f"the unmutated release names {unexpected[:3]}")


@dataclasses.dataclass
class CaseResult:
  seed: int
  format: str
  mutations: List[Mutation]
  outcome: str  # "ok", "unusable" (an accepted builder error), "crash", "failed"
  message: str = ""
  named: int = 0  # items named by the mutated build
  intact: int = 0  # untouched records found equal
  seconds: float = 0.0


def _digests(root: str) -> Dict[str, int]:
  """Path -> hash of the content of every file under ``root`` (to see what a mutation changed)."""
  out = {}
  for folder, _, files in os.walk(root):
    for name in files:
      path = os.path.join(folder, name)
      out[path] = hash(_read(path))
  return out


def _read_summary(release: Release, data_dir: str):
  from tfds_builders import build_summary

  dataset = "acne_scu" if release.format in ("labelme", "coco") else release.format
  config = release.config if isinstance(release.config, str) else release.config.name
  folder = os.path.join(data_dir, dataset, config)
  versions = os.listdir(folder)
  return dataset, build_summary.read_build_summary(data_dir, dataset, config, versions[0])


def run_case(seed: int, work: str, formats: Sequence[str] = FORMATS) -> CaseResult:
  """One fuzz case (see the module docstring)."""
  from tfds_builders.acne_scu import ManualDataError
  from tfds_builders.build_summary import NoUsableDataError

  start = time.perf_counter()
  rng = np.random.default_rng(seed)
  fmt = formats[int(rng.integers(len(formats)))]
  root = os.path.join(work, "release")
  release = make_release(fmt, rng, root)
  mutations: List[Mutation] = []
  result = CaseResult(seed, fmt, mutations, "ok")
  stage = "the unmutated build"
  try:
    clean_builder = _builder(release, os.path.join(work, "clean"))
    dataset, clean_summary = _read_summary(release, os.path.join(work, "clean"))
    _check_summary(clean_summary, dataset, allowed=BY_DESIGN)
    clean = _records(clean_builder)

    stage = "mutating"
    wanted = int(rng.integers(1, 4))
    before = _digests(root)
    for _ in range(20):
      if len(mutations) == wanted:
        break
      mutation = _pick(rng, MUTATORS[fmt])(release, rng)
      after = _digests(root)
      if mutation is not None:
        mutation.changed = {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}
        if not mutation.names and mutation.kind in HARMLESS:
          mutation.keys = set()  # an extra or optional field: its record must come out the same
        mutations.append(mutation)
      before = after

    stage = "the mutated build"
    data_dir = os.path.join(work, "mutated")
    try:
      builder = _builder(release, data_dir)
    except (NoUsableDataError, ManualDataError, FileNotFoundError) as e:
      _check_unusable(release, mutations, clean, e)
      result.outcome, result.message = "unusable", f"{type(e).__name__}: {str(e)[:200]}"
      return result
    stage = "checking"
    _, summary = _read_summary(release, data_dir)
    _check_summary(summary, dataset)
    result.named = len(summary.items)
    hidden = set().union(*(m.hides_size for m in mutations))
    for position, mutation in enumerate(mutations):
      if any(later.whole_file and later.changed & mutation.changed for later in mutations[position + 1:]):
        continue  # a later mutation rewrote or removed its files: what it did is gone
      if mutation.kind == "wrong_image_size" and fmt != "deep_lesion" and mutation.keys & hidden:
        continue  # its annotated size was removed: nothing says the image has the wrong size
      if mutation.names and not any(_matches(item, name) for item in summary.items for name in mutation.names):
        raise CheckFailure(f"not named: {mutation.kind} ({mutation.what}); expected one of "
                           f"{[(n.file, n.index, n.actions) for n in mutation.names]}; the summary names "
                           f"{[(i['file'], i['index'], i['action'], i['reason']) for i in summary.items]}")
    touched = set().union(*(m.keys for m in mutations)) if mutations else set()
    mutated = _records(builder)
    for split, keys in clean.items():
      if split not in mutated and split not in summary.empty_splits:
        raise CheckFailure(f"the {split} split is missing and not reported in empty_splits {summary.empty_splits}")
      for key, records in keys.items():
        if key in touched:
          continue
        got = mutated.get(split, {}).get(key)
        if got is None:
          raise CheckFailure(f"untouched record {key} ({split}) is missing from the mutated build")
        if len(got) != len(records):
          raise CheckFailure(f"untouched record {key} ({split}): {len(got)} records instead of {len(records)}")
        for a, b in zip(records, got):
          diff = _equal(a, b, skip=("image_id",) if dataset == "acne_scu" else ())
          if diff:
            raise CheckFailure(f"untouched record {key} ({split}) differs: {diff}")
        result.intact += 1
    for split, keys in mutated.items():
      for key in keys:
        if key not in clean.get(split, {}) and key not in touched:
          raise CheckFailure(f"record {key} ({split}) appeared in the mutated build from no mutation")
  except CheckFailure as e:
    result.outcome, result.message = "failed", f"{stage}: {e}"
  except Exception as e:  # noqa: BLE001 - a crash is what the fuzzer looks for
    result.outcome = "crash"
    result.message = f"{stage}: {type(e).__name__}: {e}\n{traceback.format_exc(limit=-6)}"
  finally:
    result.seconds = time.perf_counter() - start
  return result


def _check_unusable(release: Release, mutations: List[Mutation], clean, error: Exception) -> None:
  """A builder error is right when a mutation may make the release unusable, or when every
  record of the release was touched; its message must name a file and what to do."""
  all_keys = {key for keys in clean.values() for key in keys}
  touched = set().union(*(m.keys for m in mutations)) if mutations else set()
  if not any(m.fatal_ok for m in mutations) and not all_keys <= touched:
    raise CheckFailure(f"{type(error).__name__} though records {sorted(all_keys - touched)} were not touched: {error}")
  message = str(error)
  files = {name.file for m in mutations for name in m.names} | {"annotations.json", "DL_info.csv"}
  if not any(f and f in message for f in files) and release.root not in message:
    raise CheckFailure(f"{type(error).__name__} names none of the mutated files: {message[:300]}")
  if not any(hint in message for hint in ("Fix", "fix", "Lay the data out", "Expected layout", "expected layout")):
    raise CheckFailure(f"{type(error).__name__} does not say what to do: {message[:300]}")


@contextlib.contextmanager
def quiet():
  """Silences TFDS's progress bars and the builders' (expected) warnings during a run."""
  import tensorflow_datasets as tfds

  tfds.disable_progress_bar()
  loggers = [logging.getLogger(n) for n in ("tfds_builders", "absl", "tensorflow_datasets", "acne_jax")]
  levels = [lg.level for lg in loggers]
  for lg in loggers:
    lg.setLevel(logging.ERROR)
  previous = cv2.utils.logging.getLogLevel()
  cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
  try:
    yield
  finally:
    cv2.utils.logging.setLogLevel(previous)
    for lg, level in zip(loggers, levels):
      lg.setLevel(level)


def run(cases: int, seed: int = 0, formats: Sequence[str] = FORMATS, keep: Optional[str] = None,
        log: Callable[[str], None] = print) -> List[CaseResult]:
  """Runs ``cases`` cases with seeds ``seed .. seed + cases - 1``; prints each failure."""
  results = []
  with quiet():
    for case in range(cases):
      work = tempfile.mkdtemp(prefix=f"fuzz_builders_{seed + case}_")
      result = run_case(seed + case, work, formats)
      results.append(result)
      if result.outcome in ("crash", "failed"):
        log(f"{result.outcome.upper()} seed={result.seed} format={result.format} mutations="
            f"{[f'{m.kind}: {m.what}' for m in result.mutations]}\n  {result.message}\n"
            f"  replay: python scripts/fuzz_builders.py --seed {result.seed} --cases 1 --keep /tmp/case{result.seed}")
      if keep:
        target = os.path.join(keep, f"case{seed + case}") if cases > 1 else keep
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(work, target, symlinks=True)
      shutil.rmtree(work, ignore_errors=True)
  return results


def tally(results: List[CaseResult]) -> Dict[str, Any]:
  return {
      "cases": len(results),
      "per_format": dict(collections.Counter(r.format for r in results)),
      "per_mutation": dict(sorted(collections.Counter(m.kind for r in results for m in r.mutations).items())),
      "mutations": sum(len(r.mutations) for r in results),
      "outcomes": dict(collections.Counter(r.outcome for r in results)),
      "crashes": sum(r.outcome == "crash" for r in results),
      "failures": sum(r.outcome == "failed" for r in results),
      "named": sum(r.named for r in results),
      "intact": sum(r.intact for r in results),
      "seconds": sum(r.seconds for r in results),
  }


def markdown(t: Dict[str, Any], command: str) -> str:
  from acne_jax.testing import report

  lines = [
      f"### Builder fuzzing, {datetime.date.today().isoformat()} — {report.machine_description()}",
      "",
      f"Command: `{command}`: {t['cases']} cases in {t['seconds']:.0f} s, {t['mutations']} mutations; "
      f"**{t['crashes']} crashes, {t['failures']} failed checks**. {t['outcomes'].get('unusable', 0)} mutated releases had "
      f"nothing usable left and were refused with a builder error naming the file; the others built, naming "
      f"{t['named']} items in their summaries, and {t['intact']} untouched records were found equal to the unmutated "
      "build's.",
      "",
      "| format | cases |",
      "|---|---:|",
  ]
  lines += [f"| {fmt} | {t['per_format'].get(fmt, 0)} |" for fmt in FORMATS]
  lines += ["", "| mutation kind | applied |", "|---|---:|"]
  lines += [f"| {kind} | {n} |" for kind, n in t["per_mutation"].items()]
  return "\n".join(lines) + "\n"


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--cases", type=int, default=200)
  parser.add_argument("--seed", type=int, default=0, help="seed of the first case (case i uses seed + i)")
  parser.add_argument("--formats", default=",".join(FORMATS), help=f"comma-separated subset of {','.join(FORMATS)}")
  parser.add_argument("--keep", default=None, help="copy each case's files (release, builds) here")
  parser.add_argument("--markdown", default=None, help="append the results section to this file")
  args = parser.parse_args(argv)
  formats = tuple(f for f in args.formats.split(",") if f)
  unknown = set(formats) - set(FORMATS)
  if unknown:
    parser.error(f"unknown formats {sorted(unknown)}")
  results = run(args.cases, args.seed, formats, args.keep)
  t = tally(results)
  print(json.dumps({k: v for k, v in t.items()}, ensure_ascii=False, indent=1))
  if args.markdown:
    command = f"python scripts/fuzz_builders.py --cases {args.cases} --seed {args.seed}"
    if args.formats != ",".join(FORMATS):
      command += f" --formats {args.formats}"
    from acne_jax.testing import report

    report.emit(markdown(t, command), args.markdown)
  return 1 if t["crashes"] or t["failures"] else 0


if __name__ == "__main__":
  sys.exit(main())
