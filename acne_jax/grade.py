"""Train and evaluate the IGA acne-severity grader (the grading paper), end to end.

    python -m acne_jax.grade --config=configs/iga_grader.py [--workdir=workdir/iga_grader]
    python -m acne_jax.grade --config=configs/count_grader.py  # grades from detected lesion counts

1. reads the graded visits (``grades.csv``: the embedded synthetic faces, written on first use,
   or your folder; :mod:`acne_jax.data.grades_csv`), naming every row or visit left out; or,
   with ``data.source="acne04"`` (``configs/acne04_grader.py``), ACNE04's photos and their four
   Hayashi grades (:func:`load_acne04`: whole photos, the fold's test list as the test split);
2. crops the face out of every photo (:mod:`acne_jax.grading.face_crop`; a photo without a face
   is named and its visit left out) to ``data.image_size`` px, cached beside the photos;
3. maps IGA grades to the paper's three groups (0-1, 2, 3-4) and splits the visits 80/10/10 by
   patient with the groups' proportions kept (:mod:`acne_jax.grading.split`);
4. for each of ``train.variants`` (``weighted``: the class-weighted cross-entropy of the paper's
   Table 3; ``unweighted``: Table 4), trains the grader (:mod:`acne_jax.models.grader`, the
   paper's augmentation, Adam 0.01 -> 0.001), keeps the epoch with the best balanced validation
   accuracy (early stopping), and scores the test split: accuracy, per-grade precision / recall /
   F1, quadratic kappa and the confusion matrix, printed and written to the workdir
   (``grading_<variant>.json``, ``grader_<variant>.msgpack``, ``grading_confusion.png``,
   ``split.json``).

``python -m acne_jax.grade --config=configs/count_grader.py`` is the other route to a grade, from
lesion counts (:func:`run_counts`): it trains the lesion detector on the same embedded visits'
faces, counts the inflammatory lesions of each test visit and grades them (Hayashi; IGA groups by
count cut points), scored the same way.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from typing import Any, Dict, List, Mapping, Sequence, Tuple

import numpy as np

from acne_jax.paths import resolve

VIEW_ORDER = ("frontal", "left", "right")


def grading_folder(data: Mapping[str, Any]) -> str:
  """The folder of ``grades.csv``: ``data.folder``, or for the embedded set its default place."""
  if data["source"] == "folder":
    if not data["folder"]:
      raise ValueError("data.source='folder' needs data.folder: the folder holding grades.csv and the photos.")
    return resolve(data["folder"])
  if data["source"] != "synthetic":
    raise ValueError(f"data.source={data['source']!r}: use 'synthetic' (the embedded faces), 'folder' (grades.csv) or "
                     "'acne04' (configs/acne04_grader.py).")
  from acne_jax import datasets
  from acne_jax.data import synthetic_faces

  folder = resolve(data["folder"]) if data["folder"] else os.path.join(
      datasets.default_data_dir(), f"synthetic_grading_faces_p{data['num_patients']}_s{data['seed']}")
  if not os.path.isdir(folder):
    print(f"Generating the embedded synthetic grading faces into {folder} (first use only, no download)...", flush=True)
  return synthetic_faces.ensure_grading_folder(folder, num_patients=int(data["num_patients"]), seed=int(data["seed"]))


def _read_rgb(path: str) -> np.ndarray:
  import cv2

  image = cv2.imread(path, cv2.IMREAD_COLOR)
  if image is None:
    raise ValueError(f"{path}: cannot be decoded as an image.")
  return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def crop_visits(table, size: int, margin: float) -> Tuple[np.ndarray, List[int], List[str]]:
  """Face crops of every visit's views.

  Returns:
    ``(views uint8 [N, V, size, size, 3], index of each kept visit in table.visits, messages naming
    each visit left out because a photo has no face)``. The crops are cached in the grading folder
    (``face_crops_<size>_<hash>.npz``, keyed by ``grades.csv``'s content, size and margin).
  """
  from acne_jax.grading import face_crop

  with open(os.path.join(table.folder, "grades.csv"), "rb") as f:
    key = hashlib.sha256(f.read() + f"{size}/{margin}/{table.views}".encode()).hexdigest()[:16]
  cache = os.path.join(table.folder, f"face_crops_{size}_{key}.npz")
  if os.path.exists(cache):
    with np.load(cache, allow_pickle=False) as saved:
      return saved["views"], saved["kept"].tolist(), [str(m) for m in saved["skipped"]]
  detector = face_crop.default_detector()
  views, kept, skipped = [], [], []
  for index, visit in enumerate(table.visits):
    crops = []
    for view in table.views:
      path = visit.images[view]
      try:
        crop, _ = face_crop.crop_face(_read_rgb(path), view=view, size=size, margin=margin, name=path, detector=detector)
      except face_crop.FaceNotFoundError as error:
        skipped.append(f"visit {visit.visit} of patient {visit.patient} left out: {error}")
        break
      crops.append(crop)
    else:
      views.append(np.stack(crops))
      kept.append(index)
  if not views:
    raise ValueError(f"no visit of {table.folder} has a face in every photo; see the messages above.")
  out = np.stack(views).astype(np.uint8)
  try:  # atomically: a cache cut short by a kill is never read
    partial = cache + ".partial.npz"
    np.savez(partial, views=out, kept=np.asarray(kept, np.int64), skipped=np.asarray(skipped, dtype=str))
    os.replace(partial, cache)
  except OSError:
    pass  # a read-only folder: crop again next time
  return out, kept, skipped


def acne04_view(image: np.ndarray, size: int) -> np.ndarray:
  """``uint8 [1, size, size, 3]``: one ACNE04 photo as the grader reads it, the whole photo resized
  to a square with area interpolation."""
  import cv2

  return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)[None]


def load_acne04(data: Mapping[str, Any]):
  """ACNE04's photos (one view each) and Hayashi grades, from the prepared ``acne04`` TFDS data set.

  Each photo is resized whole to ``data.image_size`` square (no face crop: ACNE04's photos are
  close-ups; the LDL reference resizes them whole too). Its official fold's test list stays the
  test split; the rest is split 90 / 10 into train / validation with the grades' proportions kept.

  Returns:
    ``(views uint8 [N, 1, S, S, 3], grades int [N] 0..3, names [N], test_rows bool [N])``.
  """
  from acne_jax import datasets
  from acne_jax.data.records import decode_record

  size = int(data["image_size"])
  spec = {"name": "acne04", "builder_config": data["builder_config"], "data_dir": data["data_dir"]}
  views, grades, names, test = [], [], [], []
  for split in ("train", "test"):
    source, _ = datasets.source(spec, split, "data.builder_config")
    for i in range(len(source)):
      record = source[i]
      decoded = decode_record(record)
      views.append(acne04_view(decoded["image"], size))
      grades.append(int(record["grade"]))
      names.append(decoded["file_name"])
      test.append(split == "test")
  if not views:
    raise ValueError(f"the acne04 data set ({data['builder_config']}) has no images.")
  return np.stack(views).astype(np.uint8), np.asarray(grades, np.int64), names, np.asarray(test, bool)


def _batches(rows: np.ndarray, batch_size: int, drop_last: bool):
  stop = len(rows) - len(rows) % batch_size if drop_last else len(rows)
  for start in range(0, stop, batch_size):
    yield rows[start:start + batch_size]


def predict_groups(eval_fn, variables, views: np.ndarray, batch_size: int) -> np.ndarray:
  """Predicted group of every visit of ``views [N, V, S, S, 3]`` (batches padded to ``batch_size``)."""
  out = []
  for start in range(0, len(views), batch_size):
    batch = views[start:start + batch_size]
    padded = np.concatenate([batch, np.zeros((batch_size - len(batch), *batch.shape[1:]), batch.dtype)])
    out.append(np.asarray(eval_fn(variables, padded))[:len(batch)].argmax(-1))
  return np.concatenate(out) if out else np.zeros((0,), np.int64)


def grader_model(config, num_classes: int):
  """The grader of ``config.model`` (preset, dropout, fusion) with ``num_classes`` outputs: the model
  :func:`train_variant` trains and ``scripts/compare_acne04_grading.py`` restores."""
  from acne_jax.models import grader

  preset = {"cpu": grader.CPU, "paper": grader.PAPER}[config.model.preset]
  return grader.Grader(num_classes=num_classes, dropout_rate=config.model.dropout_rate, fusion=config.model.fusion, **preset)


def train_variant(config, views: np.ndarray, groups: np.ndarray, split, weighted: bool, log=print, num_groups: int = 3):
  """Trains one grader; returns ``(best variables, best epoch, history)`` (early stopping on the
  validation split's balanced accuracy, the mean of the per-grade recalls)."""
  import jax
  import optax

  from acne_jax.grading import augment, metrics, train_step
  from acne_jax.ops import losses

  t = config.train
  model = grader_model(config, num_groups)
  train_rows, val_rows = split.rows("train"), split.rows("validation")
  if len(train_rows) < t.batch_size:
    raise ValueError(f"the training split has {len(train_rows)} visits, fewer than train.batch_size={t.batch_size}.")
  steps_per_epoch = len(train_rows) // t.batch_size
  optimizer = optax.adam(train_step.learning_rate_schedule(t.epochs, steps_per_epoch, t.learning_rate,
                                                           t.final_learning_rate, t.decay_fraction))
  key = jax.random.key(t.seed, impl="rbg")  # initialises in ~1 s on CPU (threefry: ~8 s of compile)
  state = train_step.create_state(model, key, (t.batch_size, *views.shape[1:]), optimizer)
  step, eval_fn = train_step.make_train_step(model, optimizer), train_step.make_eval_fn(model)
  weights = (losses.inverse_frequency_weights(groups[train_rows], num_groups) if weighted
             else np.ones((num_groups,), np.float32))
  best = (-1.0, 0, jax.device_get(state.variables))
  history = []
  for epoch in range(1, t.epochs + 1):
    rng = np.random.default_rng([t.seed, epoch])
    order = rng.permutation(train_rows)
    losses_seen = []
    for rows in _batches(order, t.batch_size, drop_last=True):
      batch = views[rows]
      if t.augment:
        batch = augment.augment_views(batch, rng)
      state, m = step(state, batch, groups[rows], weights, key)
      losses_seen.append(m["loss"])
    if epoch % config.eval.every_epochs == 0 or epoch == t.epochs:
      predicted = predict_groups(eval_fn, state.variables, views[val_rows], t.batch_size)
      recall = metrics.precision_recall_f1(metrics.confusion_matrix(groups[val_rows], predicted, num_groups))[1]
      balanced = float(np.mean(recall))
      loss = float(np.mean(jax.device_get(losses_seen)))
      history.append({"epoch": epoch, "loss": loss, "val_balanced_accuracy": balanced})
      log(f"  epoch {epoch}: loss {loss:.4f}, validation balanced accuracy {balanced:.3f}")
      if balanced > best[0]:
        best = (balanced, epoch, jax.device_get(state.variables))
  return best[2], best[1], history, eval_fn


def _save_variables(path: str, variables) -> None:
  from flax import serialization

  partial = path + ".partial"
  with open(partial, "wb") as f:
    f.write(serialization.to_bytes(variables))
  os.replace(partial, path)


def plot_confusions(reports: Mapping[str, Mapping[str, Any]], names, path: str,
                    title: str = "{name} loss: accuracy {accuracy:.2f}") -> None:
  """Row-normalised confusion matrices of each variant side by side (the paper's Fig. 5); each
  panel titled ``title.format(name=<its key>, accuracy=<its accuracy>)``. ``names``: the grade
  names of every panel, or ``{report key: its grade names}``."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, axes = plt.subplots(1, len(reports), figsize=(4.2 * len(reports), 3.8), squeeze=False)
  for ax, (variant, report) in zip(axes[0], reports.items()):
    labels = names[variant] if isinstance(names, Mapping) else names
    cm = np.asarray(report["confusion_matrix"], np.float64)
    share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(cm.shape[0]):
      for j in range(cm.shape[1]):
        ax.text(j, i, f"{100 * share[i, j]:.0f}%\n({int(cm[i, j])})", ha="center", va="center", fontsize=9,
                color="white" if share[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted grade")
    ax.set_ylabel("true grade")
    ax.set_title(title.format(name=variant, accuracy=report["accuracy"]))
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def run(config, workdir: str, log=print) -> Dict[str, Dict[str, Any]]:
  """Steps 1-4 of the module docstring; returns ``{variant: test report}`` (for the count-based
  route, ``configs/count_grader.py``, :func:`run_counts`'s reports)."""
  if config.get("route", "grader") == "counts":
    return run_counts(config, workdir, log)
  if config.get("route", "grader") != "grader":
    raise ValueError(f"route={config.route!r}: use 'grader' (configs/iga_grader.py) or 'counts' (configs/count_grader.py).")
  from acne_jax.data import grades_csv
  from acne_jax.grading import metrics, scales, split as split_lib

  unknown = [v for v in config.train.variants if v not in ("weighted", "unweighted")]
  if unknown or not config.train.variants:
    raise ValueError(f"train.variants={tuple(config.train.variants)!r}: use 'weighted' and/or 'unweighted'.")
  os.makedirs(workdir, exist_ok=True)
  if config.data.source == "acne04":  # one photo per "visit", Hayashi grades, the fold's test list kept
    views, groups, names, is_test = load_acne04(config.data)
    class_names = scales.HAYASHI_GRADE_NAMES
    test_share = float(is_test.mean())
    split = split_lib.split_by_patient(names, groups, num_grades=len(class_names),
                                       fractions=(0.9 * (1 - test_share), 0.1 * (1 - test_share), test_share),
                                       preassigned=["test" if t else None for t in is_test], row_names=names,
                                       seed=int(config.train.split_seed))
    patients = len(names)
  else:
    folder = grading_folder(config.data)
    table = grades_csv.read_grades_csv(folder)
    log(table.summary())
    views, kept, skipped = crop_visits(table, int(config.data.image_size), float(config.data.crop_margin))
    for message in skipped:
      log(message)
    visits = [table.visits[i] for i in kept]
    groups = scales.iga_groups([v.grade for v in visits])
    class_names = scales.IGA_GROUP_NAMES
    split = split_lib.split_by_patient([v.patient for v in visits], groups, num_grades=len(class_names),
                                       seed=int(config.train.split_seed))
    patients = len({v.patient for v in visits})
  split_table = split.table(class_names)
  with open(os.path.join(workdir, "split.json"), "w") as f:
    json.dump(split_table, f, indent=2)
  log(f"{len(views)} visits ({views.shape[1]} view{'s' if views.shape[1] > 1 else ''} of {views.shape[2]} px each) of "
      f"{patients} patients; split by patient: " + ", ".join(f"{name} {len(split.rows(name))}" for name in split.names))
  test_rows = split.rows("test")
  reports = {}
  for variant in config.train.variants:
    log(f"training the grader with the {variant} loss ({config.train.epochs} epochs)...")
    start = time.perf_counter()
    variables, best_epoch, history, eval_fn = train_variant(config, views, groups, split, variant == "weighted", log,
                                                            num_groups=len(class_names))
    predicted = predict_groups(eval_fn, variables, views[test_rows], config.train.batch_size)
    report = metrics.grading_report(groups[test_rows], predicted, class_names)
    report.update(variant=variant, best_epoch=best_epoch, history=history, train_seconds=time.perf_counter() - start,
                  test_visits=len(test_rows))
    reports[variant] = report
    _save_variables(os.path.join(workdir, f"grader_{variant}.msgpack"), variables)
    with open(os.path.join(workdir, f"grading_{variant}.json"), "w") as f:
      json.dump(report, f, indent=2)
    log(metrics.format_report(report, title=f"test split, {variant} loss (epoch {best_epoch} of {config.train.epochs}, "
                                             f"{len(test_rows)} visits)"))
  plot_confusions(reports, class_names, os.path.join(workdir, "grading_confusion.png"))
  log(f"wrote {workdir}/grading_*.json, grading_confusion.png, split.json and the graders' variables")
  return reports


# ------------------------------------------------------------------------------------------------
# The count-based route (configs/count_grader.py).

COUNT_REPORTS = ("iga_groups", "hayashi", "iga_groups_from_true_counts")


def _train_detector(detector_config, workdir: str, log) -> None:
  """Trains the detector into ``workdir`` unless its final checkpoint is there (an interrupted
  run resumes where it stopped)."""
  from acne_jax import train
  from acne_jax.training.checkpoint import Checkpointer

  directory = os.path.join(workdir, "checkpoints")
  latest = Checkpointer(directory).latest_step() if os.path.isdir(directory) else None
  steps = int(detector_config.train.steps)
  if steps and latest is not None and latest >= steps:
    log(f"the detector is trained: step {latest} in {workdir}")
    return
  log(f"training the lesion detector into {workdir} ({steps or detector_config.train.epochs} "
      f"{'steps' if steps else 'epochs'})...")
  metrics = train.train_and_evaluate(detector_config, workdir, show_progress=False)
  log("detector, test split: " + train.format_metrics(metrics))


def _visit_counts(counter, source, visits, log, what: str) -> Tuple[np.ndarray, np.ndarray, List[Dict[str, Any]]]:
  """``(counted inflammatory lesions of every visit, summed over its views; the absolute error of
  each view's count against the lesions annotated in that view; one row per visit)``."""
  from acne_jax.data.records import decode_record
  from acne_jax.grading import scales

  counted_mask = scales.hayashi_counted_mask(counter.class_names)
  sums, view_errors, rows = [], [], []
  start = time.perf_counter()
  for visit in visits:
    per_view = {}
    for view, row in sorted(visit["rows"].items()):
      record = decode_record(source[row])
      per_view[view] = scales.inflammatory_count(counter.count(record["image"]))
      annotated = int(np.sum(counted_mask[record["labels"]])) if len(record["labels"]) else 0
      view_errors.append(abs(per_view[view] - annotated))
    sums.append(sum(per_view.values()))
    rows.append({"patient": visit["patient"], "visit": visit["visit"], "iga_grade": visit["iga_grade"],
                 "true_inflammatory": visit["face_inflammatory"], "counted_per_view": per_view})
  log(f"  counted the lesions of {len(visits)} {what} visits in {time.perf_counter() - start:.0f} s")
  return np.asarray(sums, np.float64), np.asarray(view_errors, np.float64), rows


def run_counts(config, workdir: str, log=print) -> Dict[str, Dict[str, Any]]:
  """The count-based route on the embedded graded faces (``configs/count_grader.py``).

  1. trains the lesion detector ``config.detector`` (``configs/sadh.py:synthetic_faces``) on the
     face squares of the training visits (:mod:`acne_jax.data.synthetic_face_crops`: the same
     visits and patient split as the grader route), into ``<workdir>/detector``;
  2. counts its inflammatory lesions (papules, pustules, nodules) in each view of the validation
     and test visits, at the per-class thresholds stored with its checkpoint (as ``predict``);
  3. a visit's whole-face count is ``ratio * (sum of its views' counts)``: the three views overlap
     (a cheek shows in the frontal and one profile), and ``ratio`` is fitted on the validation
     visits (least squares through 0 against their true whole-face counts);
  4. grades the test visits: Hayashi's grade of the estimated count (scored against the Hayashi
     grade of the true count), and the IGA group by count cut points fitted on the training
     visits' true counts and IGA grades (scored against the IGA groups, like the grader route);
     ``iga_groups_from_true_counts``, the same cut points on the true counts, is what a perfect
     counter would reach.

  Returns ``{report name: report}`` for :data:`COUNT_REPORTS`; writes ``grading_counts.json`` and
  ``grading_counts_confusion.png``.
  """
  from acne_jax import datasets
  from acne_jax.data import synthetic_face_crops
  from acne_jax.grading import counting, metrics, scales

  detector_config = config.detector
  if not str(detector_config.data.builder_config).startswith("faces"):
    raise ValueError(f"the count route reads the graded faces' squares (detector.data.builder_config 'faces'); got "
                     f"{detector_config.data.builder_config!r}: use configs/count_grader.py's detector.")
  os.makedirs(workdir, exist_ok=True)
  start = time.perf_counter()
  detector_workdir = os.path.join(workdir, "detector")
  _train_detector(detector_config, detector_workdir, log)
  counter = counting.LesionCounter.from_workdir(detector_config, detector_workdir)
  log(f"counting with step {counter.step} of {detector_workdir}: {counter.threshold_report}")
  sources = {split: datasets.source(detector_config.data, split)[0] for split in synthetic_face_crops.SPLIT_NAMES}
  tables = {split: synthetic_face_crops.visit_table([sources[split][i] for i in range(len(sources[split]))])
            for split in synthetic_face_crops.SPLIT_NAMES}
  log("visits by patient split: " + ", ".join(f"{split} {len(table)}" for split, table in tables.items()))

  def truth(split):
    table = tables[split]
    return (np.asarray([v["face_inflammatory"] for v in table], np.float64),
            scales.iga_groups([v["iga_grade"] for v in table]))

  train_counts, train_groups = truth("train")
  cuts = counting.fit_cut_points(train_counts, train_groups, len(scales.IGA_GROUP_NAMES))
  val_true, _ = truth("validation")
  val_sums, _, _ = _visit_counts(counter, sources["validation"], tables["validation"], log, "validation")
  ratio = float(np.dot(val_sums, val_true) / np.dot(val_sums, val_sums)) if np.dot(val_sums, val_sums) > 0 else 1.0
  test_true, test_groups = truth("test")
  test_sums, view_errors, rows = _visit_counts(counter, sources["test"], tables["test"], log, "test")
  estimated = ratio * test_sums
  hayashi_true = scales.hayashi_grades(test_true.astype(np.int64))
  hayashi_predicted = scales.hayashi_grades(np.round(estimated).astype(np.int64))
  reports = {
      "iga_groups": metrics.grading_report(test_groups, counting.grades_from_cut_points(estimated, cuts), scales.IGA_GROUP_NAMES),
      "hayashi": metrics.grading_report(hayashi_true, hayashi_predicted, scales.HAYASHI_GRADE_NAMES),
      "iga_groups_from_true_counts": metrics.grading_report(test_groups, counting.grades_from_cut_points(test_true, cuts),
                                                            scales.IGA_GROUP_NAMES),
  }
  for row, value in zip(rows, estimated):
    row["estimated_inflammatory"] = float(value)
  summary = {
      "route": "counts", "detector_workdir": detector_workdir, "detector_step": counter.step,
      "counting_thresholds": counter.threshold_report, "view_to_face_ratio": ratio,
      "iga_group_cut_points": cuts.tolist(), "test_visits": len(rows),
      "view_count_mae": float(view_errors.mean()) if len(view_errors) else None,
      "face_count_mae": float(np.abs(estimated - test_true).mean()) if len(rows) else None,
      "seconds": time.perf_counter() - start, "reports": reports, "visits": rows,
  }
  with open(os.path.join(workdir, "grading_counts.json"), "w") as f:
    json.dump(summary, f, indent=2)
  log(f"whole-face count = {ratio:.3f} x (sum of the three views' counts), fitted on {len(val_true)} validation visits; "
      f"IGA group cut points on the training visits' true counts: {', '.join(f'{c:g}' for c in cuts)}")
  if rows:
    log(f"count error on the test split: {summary['view_count_mae']:.2f} lesions per view (vs the lesions annotated in "
        f"it), {summary['face_count_mae']:.2f} per visit (vs the whole face's)")
  names = {"iga_groups": scales.IGA_GROUP_NAMES, "hayashi": scales.HAYASHI_GRADE_NAMES,
           "iga_groups_from_true_counts": scales.IGA_GROUP_NAMES}
  titles = {"iga_groups": "IGA group from the detector's counts", "hayashi": "Hayashi grade from the detector's counts",
            "iga_groups_from_true_counts": "IGA group from the true counts (a perfect counter)"}
  for key in COUNT_REPORTS:
    log(metrics.format_report(reports[key], title=f"test split, {titles[key]} ({len(rows)} visits)"))
  plot_confusions(reports, names, os.path.join(workdir, "grading_counts_confusion.png"), title="{name}\naccuracy {accuracy:.2f}")
  log(f"wrote {workdir}/grading_counts.json and grading_counts_confusion.png ({summary['seconds']:.0f} s in all)")
  return reports


def default_workdir(config_argument: str) -> str:
  """``workdir/<config file stem>``: ``configs/iga_grader.py`` -> ``workdir/iga_grader``,
  ``configs/count_grader.py`` -> ``workdir/count_grader``."""
  return os.path.join("workdir", os.path.splitext(os.path.basename(config_argument.partition(":")[0]))[0])


def main(argv=None) -> int:
  from absl import flags
  from ml_collections import config_flags

  from acne_jax import cli

  flag_values = flags.FlagValues()
  config_flag = config_flags.DEFINE_config_file("config", None, "Grader config file (configs/iga_grader.py, "
                                                "configs/count_grader.py, configs/acne04_grader.py).",
                                                flag_values=flag_values, lock_config=True)
  flags.DEFINE_string("workdir", None, "Output folder (default workdir/<config file stem>, e.g. workdir/iga_grader).",
                      flag_values=flag_values)
  if cli.parse(flag_values, sys.argv if argv is None else argv) is None:
    return 2
  if config_flag.value is None:
    print("error: --config is required, e.g. --config=configs/iga_grader.py", file=sys.stderr)
    return 2
  workdir = resolve(flag_values.workdir or default_workdir(flag_values["config"].config_filename))
  try:
    run(config_flag.value, workdir)
  except (FileNotFoundError, ValueError, OSError, ImportError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
