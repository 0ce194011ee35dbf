"""Synthetic CT (acne_jax/data/synthetic_ct.py, tfds_builders/synthetic_ct): tissue densities in the
written PNGs, 3-D consistency between slices, lesion placement by type, RECIST annotations, the real
deep_lesion builder on the release, and two training steps of configs/faster_rcnn.py:synthetic_ct.

One tiny release (6 patients, 12 key slices, every lesion type) is written and built once, by the
command line, into ``<tmp>/synthetic_ct/tiny`` (the embedded set's place under a data dir), so the
training test finds it built.
"""

from __future__ import annotations

import math
import os

import cv2
import numpy as np
import pytest

from acne_jax.data import deep_lesion as dl
from acne_jax.data import synthetic_ct as S

tfds = pytest.importorskip("tensorflow_datasets")

from tfds_builders.synthetic_ct import __main__ as cli  # noqa: E402
from tfds_builders.synthetic_ct import dataset_folder, release_folder  # noqa: E402

CONFIG = S.SETS["tiny"]

# Median HU of each tissue's interior (eroded 2 px) on the written key slices, and why.
HU_RANGES = {
    "air": (-1010, -990),  # -1000 + noise
    "subcutaneous_fat": (-130, -70),  # fat -100 +- patient spread
    "abdominal_fat": (-130, -70), "mediastinal_fat": (-130, -70), "pelvic_fat": (-130, -70),
    "muscle": (30, 60),  # ~45
    "lung": (-900, -800),  # ~-850
    "liver": (45, 75),  # ~60
    "spleen": (35, 65),
    "kidney": (20, 55),  # unenhanced ~35
    "heart": (30, 60), "vessel": (30, 60),  # unenhanced blood ~45
    "bladder": (0, 20), "csf": (0, 30), "stomach": (0, 30),
    "disc": (60, 110),
    "marrow": (150, 350),  # cancellous bone ~250
    "gas": (-1000, -900),
    "table": (50, 70),
}
CORTICAL_P90 = (700, 1050)  # cortical shells are 1.6-3 mm (2-4 px): their 90th percentile reaches the cortex's 800-900 HU


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
  root = tmp_path_factory.mktemp("tfds")
  assert cli.main(["--out", dataset_folder(str(root), "tiny"), "--set", "tiny"]) == 0
  return str(root)


@pytest.fixture(scope="module")
def folder(data_root):
  return dataset_folder(data_root, "tiny")


@pytest.fixture(scope="module")
def release(folder):
  return release_folder(folder)


@pytest.fixture(scope="module")
def series():
  """Every series of the tiny set, rebuilt from the seed (the written files must agree)."""
  return [s for i in range(1, CONFIG.num_patients + 1) for s in S.patient_series(CONFIG, i)]


@pytest.fixture(scope="module")
def rows(release):
  return dl.parse_dl_info(os.path.join(release, dl.CSV_NAME))


def _read_hu(release, series, index):
  path = os.path.join(release, dl.IMAGES_DIR, series.folder, f"{index:03d}.png")
  image = cv2.imread(path, cv2.IMREAD_UNCHANGED)
  assert image is not None and image.dtype == np.uint16 and image.shape == (512, 512), path
  return image.astype(np.float32) - 32768.0


def _erode(mask, px):
  return cv2.erode(mask.astype(np.uint8), np.ones((2 * px + 1, 2 * px + 1), np.uint8)).astype(bool)


def _ellipse(series, lesion, z, grow_px=0.0):
  """Pixels whose centres lie in the lesion's cross-section at z (grown by grow_px)."""
  s = lesion.scale_at(z)
  mask = np.zeros((512, 512), bool)
  if s <= 0:
    return mask
  col, row = series.px(lesion.cx, lesion.cy)
  hit = S._ellipse_inside(mask.shape, col, row, lesion.a * s / series.spacing + grow_px, lesion.b * s / series.spacing + grow_px,
                          lesion.angle)
  if hit is not None:
    rs, cs, inside = hit
    mask[rs, cs] = inside
  return mask


# --------------------------------------------------------------------------------------------
# Files and densities.


def test_release_files_match_the_generator(release, series, rows):
  assert sum(len(s.lesions) for s in series) == len(rows) == 12
  assert sorted({r.file_name for r in rows}) == sorted(f"{s.folder}_{k:03d}.png" for s in series for k in s.key_slices)
  for s in series:  # exactly the slices within 2 mm of a key slice, and every row's Slice_range covers them
    on_disk = sorted(int(f[:-4]) for f in os.listdir(os.path.join(release, dl.IMAGES_DIR, s.folder)))
    assert on_disk == s.written_slices()
    for k in s.key_slices:
      lo, hi = s.slice_range(k)
      assert lo <= k - math.ceil(2.0 / s.interval - 1e-9) and hi >= k + math.ceil(2.0 / s.interval - 1e-9)
  assert {r.coarse_lesion_type for r in rows} == set(range(1, 9))  # the tiny set cycles through every type
  assert {r.train_val_test for r in rows} == {1, 2, 3}
  for r in rows:
    assert r.image_size == (512, 512) and not r.possibly_noisy and 0.6 <= r.spacing_mm_px[0] <= 0.98
    assert r.dicom_windows == S.WINDOWS["lung" if r.coarse_lesion_type == 5 else "bone" if r.coarse_lesion_type == 1 else "soft_tissue"]
    assert r.patient_gender in ("F", "M") and 18 <= r.patient_age < 90


def test_tissue_densities_in_the_written_pngs(release, series):
  medians = {name: [] for name in HU_RANGES}
  cortical = []
  for s in series:
    for k in s.key_slices:
      hu = _read_hu(release, s, k)
      labels = S.render_labels(s, s.z(k), with_lesions=True)
      assert np.all(hu[labels == S.T["outside"]] == S.OUTSIDE_FOV_HU)  # outside the field of view, no noise
      air = _erode(labels == S.T["air"], 2)
      assert 9.0 <= float(np.std(hu[air])) <= 19.0  # the series' noise, 10-18 HU
      for name in HU_RANGES:
        interior = _erode(labels == S.T[name], 2)
        if interior.sum() >= 30:
          medians[name].append(float(np.median(hu[interior])))
      bone = _erode(labels == S.T["cortical_bone"], 1)
      if bone.sum() >= 30:
        cortical.append(float(np.percentile(hu[bone], 90)))
  for name, (lo, hi) in HU_RANGES.items():
    assert medians[name], f"no key slice shows {name}"
    assert lo <= min(medians[name]) and max(medians[name]) <= hi, (name, medians[name])
  assert cortical and CORTICAL_P90[0] <= min(cortical) and max(cortical) <= CORTICAL_P90[1], cortical


# --------------------------------------------------------------------------------------------
# 3-D consistency.


def test_a_lesion_shrinks_away_from_its_centre(series):
  for s in series:
    for lesion in s.lesions:
      areas = [_ellipse(s, lesion, lesion.cz + t * lesion.c).sum() for t in (0.0, 0.3, 0.6, 0.9, 1.05)]
      assert areas[0] > areas[1] > areas[2] > areas[3] > areas[4] == 0, areas
      assert areas == [_ellipse(s, lesion, lesion.cz - t * lesion.c).sum() for t in (0.0, 0.3, 0.6, 0.9, 1.05)]
      labels = S.render_labels(s, lesion.cz, with_lesions=True)  # the renderer paints the same cross-section
      assert np.all(labels[_ellipse(s, lesion, lesion.cz)] == S.T["lesion"])


def test_the_written_neighbour_slices_show_the_lesion_smaller(release, series):
  """Lesions >= 100 HU from their tissue: on each written slice, the pixels near the lesion that
  are closer to its density than to the tissue's match its cross-section there, so the count
  falls away from the key slice as the ellipsoid says."""
  checked = 0
  for s in series:
    for lesion in s.lesions:
      if abs(lesion.hu - lesion.host_hu) < 100:
        continue
      around = _ellipse(s, lesion, lesion.cz, grow_px=4.0)
      lo, hi = s.slice_range(lesion.key_slice)
      counts, expected = [], []
      for index in range(lo, hi + 1):
        hu = _read_hu(release, s, index)
        side = np.abs(hu - lesion.hu) < np.abs(hu - lesion.host_hu)
        counts.append(int(np.sum(side & around)))
        expected.append(int(_ellipse(s, lesion, s.z(index)).sum()))
      for count, want in zip(counts, expected):
        assert abs(count - want) <= 0.25 * want + 8, (lesion.type, counts, expected)
      key = lesion.key_slice - lo
      assert counts[key] == max(counts) and expected[key] == max(expected)
      checked += 1
  assert checked >= 4


def test_anatomy_changes_smoothly_along_z(release, series):
  def corr(a, b, body):
    return float(np.corrcoef(np.clip(a[body], -200, 300), np.clip(b[body], -200, 300))[0, 1])

  for s in series[:3]:
    z0 = s.z(s.key_slices[0])
    ref, labels = S.render_slice(s, z=z0)
    body = ~np.isin(labels, [S.T["outside"], S.T["air"], S.T["table"]])
    c = {dz: corr(ref, S.render_slice(s, z=z0 + dz)[0], body) for dz in (1.0, 10.0, 80.0)}
    assert c[1.0] > 0.95 and c[1.0] > c[10.0] > c[80.0] and c[80.0] < 0.8, c
    # The written neighbours of a key slice correlate strongly with it.
    k = s.key_slices[0]
    key_hu = _read_hu(release, s, k)
    for index in (k - 1, k + 1):
      assert corr(key_hu, _read_hu(release, s, index), body) > 0.85


# --------------------------------------------------------------------------------------------
# Placement and annotations.


def _check_placement(s, lesion):
  hosts = [S.T[name] for name in S.TYPE_HOSTS[lesion.type]]
  for z in (s.z(lesion.key_slice), lesion.cz - 0.6 * lesion.c, lesion.cz + 0.6 * lesion.c):
    labels = S.render_labels(s, z)  # anatomy only
    inside = _ellipse(s, lesion, z)
    assert inside.any() and np.all(np.isin(labels[inside], hosts)), (S.LESION_TYPES[lesion.type], z)


def test_every_lesion_lies_in_the_tissue_of_its_type(series):
  for s in series:
    for lesion in s.lesions:
      _check_placement(s, lesion)


def test_placement_and_density_on_the_deeplesion_type_mix():
  import dataclasses

  config = dataclasses.replace(S.SETS["default"], num_patients=8)
  lesions = 0
  for i in range(1, 9):
    for s in S.patient_series(config, i):
      for lesion in s.lesions:
        _check_placement(s, lesion)
        lesions += 1
        if lesion.type == 4:  # liver lesions are hypo- or hyperdense against the liver
          assert abs(lesion.hu - lesion.host_hu) >= 20
        if lesion.type == 5:
          assert lesion.hu > -600  # a nodule or ground glass in -850 HU lung
  assert lesions >= 10


def test_recist_and_boxes_as_deeplesion_gives_them(series, rows):
  by_name = {}
  for s in series:
    for lesion in s.lesions:
      by_name.setdefault(f"{s.folder}_{lesion.key_slice:03d}.png", []).append((s, lesion))
  for r in rows:
    s, lesion = by_name[r.file_name].pop(0)
    x1, y1, x2, y2, x3, y3, x4, y4 = r.measurement_coordinates
    long_axis, short_axis = np.array([x2 - x1, y2 - y1]), np.array([x4 - x3, y4 - y3])
    assert np.linalg.norm(long_axis) == pytest.approx(r.lesion_diameters_pixel[0], abs=0.01)
    assert np.linalg.norm(short_axis) == pytest.approx(r.lesion_diameters_pixel[1], abs=0.01)
    assert r.lesion_diameters_pixel[0] >= r.lesion_diameters_pixel[1]
    assert abs(float(np.dot(long_axis, short_axis))) <= 0.02 * np.linalg.norm(long_axis) * np.linalg.norm(short_axis)
    scale = lesion.scale_at(s.z(r.key_slice_index))  # the cross-section's axes on the key slice
    assert r.lesion_diameters_pixel[0] == pytest.approx(2 * lesion.a * scale / s.spacing, abs=0.01)
    col, row = s.px(lesion.cx, lesion.cy)
    assert ((x1 + x2) / 2, (y1 + y2) / 2) == (pytest.approx(col, abs=0.01), pytest.approx(row, abs=0.01))
    xs, ys = np.array([x1, x2, x3, x4]), np.array([y1, y2, y3, y4])
    want = np.clip([xs.min() - 5, ys.min() - 5, xs.max() + 5, ys.max() + 5], 0, 511)
    np.testing.assert_allclose(r.bounding_box, want, atol=0.002)
    assert abs(s.z(r.key_slice_index) - lesion.cz) <= 0.2 * s.interval + 1e-6


def test_generation_is_deterministic_and_a_folder_of_another_release_is_refused(release, series):
  again = S.patient_series(CONFIG, 1)
  assert [l.__dict__ for l in again[0].lesions] == [l.__dict__ for l in series[0].lesions]
  k = series[0].key_slices[0]
  np.testing.assert_array_equal(dl.hu_to_uint16(S.render_slice(again[0], k)[0]), _read_hu(release, series[0], k) + 32768)
  assert S.ensure_release(release, CONFIG) == os.path.abspath(release)
  with pytest.raises(ValueError, match="another synthetic CT release"):
    S.ensure_release(release, S.SETS["default"])


# --------------------------------------------------------------------------------------------
# The real builder and training.


def test_the_deep_lesion_builder_builds_it_unchanged(folder, release, rows):
  from tfds_builders.deep_lesion import DeepLesion, read_build_summary

  summary = read_build_summary(folder)
  assert summary.items == [] and summary.empty_splits == {}  # nothing skipped, dropped, clipped or noted
  assert all(v == 0 for k, v in summary.counts.items() if k not in ("csv_rows", "key_slices", "interpolated_channels"))
  builder = DeepLesion(config="default", data_dir=folder)
  by_file = {}
  for r in rows:
    by_file.setdefault(r.file_name, []).append(r)
  seen = 0
  for split, code in (("train", 1), ("validation", 2), ("test", 3)):
    source = builder.as_data_source(split=split)
    assert len(source) == len({r.file_name for r in rows if r.train_val_test == code})
    for i in range(len(source)):
      record = source[i]
      name = record["file_name"].decode() if isinstance(record["file_name"], bytes) else record["file_name"]
      want = by_file[name]
      np.testing.assert_allclose(np.asarray(record["objects"]["bbox"]).reshape(-1, 4), [r.bounding_box for r in want], atol=1e-3)
      assert list(np.asarray(record["objects"]["label"]).reshape(-1)) == [r.coarse_lesion_type - 1 for r in want]
      np.testing.assert_allclose(np.asarray(record["objects"]["recist"]).reshape(-1, 8), [r.measurement_coordinates for r in want], atol=1e-3)
      assert int(record["split_code"]) == code and int(record["key_slice"]) == want[0].key_slice_index
      key_hu = dl.load_hu(dl.slice_path(release, name, want[0].key_slice_index))
      np.testing.assert_array_equal(record["image"][..., 1], dl.window(key_hu, *dl.DEFAULT_WINDOW))  # key slice = green
      seen += 1
  assert seen == len(by_file)


def test_deep_lesion_configs_read_it_with_data_dir(folder):
  from acne_jax import datasets
  from configs import faster_rcnn

  config = faster_rcnn.get_config("deep_lesion")
  with config.unlocked():
    config.data.data_dir = folder
  train_source, eval_source, names = datasets.load_sources(config.data)
  assert len(train_source) >= 1 and len(eval_source) >= 1 and names == dl.LESION_TYPES


def test_two_training_steps_on_the_embedded_tiny_set(data_root, tmp_path):
  import json

  from acne_jax import train
  from acne_jax.testing import tiny
  from configs import faster_rcnn

  config = faster_rcnn.get_config("synthetic_ct")
  assert config.data.name == "synthetic_ct" and config.model.roi_head.num_classes == 8
  with config.unlocked():
    config.data.update(ct_set="tiny", data_dir=data_root)
    config.model.roi_head.box.max_detections = 50
  tiny.apply(config)
  with config.unlocked():
    config.train.update(batch_size=2, steps=2, log_every=1, checkpoint_every=2, keep_checkpoints=1)
    config.optimizer.update(warmup_steps=0, decay_steps=())
    config.eval.update(batch_size=2, calibration_split="")
  workdir = str(tmp_path / "run")
  metrics = train.train_and_evaluate(config, workdir, show_progress=False)
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    losses = [json.loads(line)["loss"] for line in f if '"loss"' in line]
  assert len(losses) == 2 and all(math.isfinite(v) for v in losses)
  assert "AP@0.5" in metrics and "froc_sens@4FP" in metrics
