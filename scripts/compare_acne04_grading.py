"""ACNE04 severity grades two ways, scored against ACNE04's own labels (issue 14, point 2).

    python scripts/compare_acne04_grading.py --detector_config=configs/sadh.py:acne04 \\
        --grader_config=configs/acne04_grader.py [--detector_workdir=workdir/sadh_acne04] \\
        [--grader_workdir=workdir/acne04_grader] [--variant=weighted,unweighted] [--out=FILE.json]

Needs the ``acne04`` data set built (``python -m tfds_builders.build --dataset=acne04
--config=fold0 --manual_dir=~/ACNE04``), a detector trained on it (``python -m acne_jax.train
--config=configs/sadh.py:acne04``, workdir ``workdir/sadh_acne04``) and the grade classifier
trained on it (``python -m acne_jax.grade --config=configs/acne04_grader.py
--workdir=workdir/acne04_grader``). Every photo of the fold's ``test`` split (the list
``NNEW_test_k.txt``: the test split of both trainings) is graded

- **by counting**: the detector's lesions counted as ``python -m acne_jax.predict`` counts them
  (:class:`acne_jax.grading.counting.LesionCounter`: the whole photo, its thresholds), and the
  count's Hayashi grade (:mod:`acne_jax.grading.scales`; ACNE04's one class ``acne`` counts
  every lesion, as ACNE04's grades were computed);
- **by the grade classifier** of each loss variant (``grader_<variant>.msgpack``), on the photo
  resized whole to ``data.image_size`` as in its training (:func:`acne_jax.grade.load_acne04`);

and both are scored against ACNE04's Hayashi grade labels (0 mild .. 3 very severe, the list
files'): accuracy, per-grade F1 and Cohen's quadratic kappa
(:func:`acne_jax.grading.metrics.grading_report`). As a reference row, the Hayashi grade of the
number of *annotated* boxes is scored too (what a perfect counter would reach on these labels).
The detector's count error is its mean absolute difference from the annotated boxes of each
photo and from the list file's lesion count.

Prints one comparison table and writes ``--out`` (default
``<grader_workdir>/acne04_grading_comparison.json``: every report, the count errors and each
photo's counts and grades) and the confusion matrices side by side beside it (``.png``).
``--detector_config.*`` and ``--grader_config.*`` override config fields (e.g.
``--detector_config.data.data_dir=DIR``; the photos are read from the one data directory the two
configs name).
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, Dict, Iterator, List, Optional, Sequence

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from acne_jax.paths import resolve  # noqa: E402

VARIANTS = ("weighted", "unweighted")
DETECTOR_METHOD = "detector_count"
REFERENCE_METHOD = "annotated_box_count"
GRADE_COMMAND = "python -m acne_jax.grade --config=configs/acne04_grader.py"
TRAIN_COMMAND = "python -m acne_jax.train --config=configs/sadh.py:acne04"


def grader_method(variant: str) -> str:
  return f"grader_{variant}"


def method_title(method: str) -> str:
  if method == DETECTOR_METHOD:
    return "detector count -> Hayashi"
  if method == REFERENCE_METHOD:
    return "annotated boxes -> Hayashi (reference)"
  return f"grader, {method[len('grader_'):]} loss"


# ----------------------------------------------------------------------------------------
# The two routes' inputs.


def grader_view(image: np.ndarray, size: int) -> np.ndarray:
  """One photo as the grader saw it in training (:func:`acne_jax.grade.acne04_view`)."""
  from acne_jax import grade

  return grade.acne04_view(image, size)


def data_spec(detector_config, grader_config) -> Dict[str, str]:
  """The ``acne04`` data set both configs name: ``{"name", "builder_config", "data_dir"}``.

  Raises:
    ValueError: a config that is not an ACNE04 one, two different folds, or two different
      (non-empty) data directories.
  """
  if detector_config.data.name != "acne04":
    raise ValueError(f"--detector_config trains on data.name={detector_config.data.name!r}; the comparison needs a "
                     "detector trained on ACNE04 (--detector_config=configs/sadh.py:acne04).")
  if grader_config.data.get("source") != "acne04":
    raise ValueError(f"--grader_config reads data.source={grader_config.data.get('source')!r}; the comparison needs the "
                     "ACNE04 grader (--grader_config=configs/acne04_grader.py).")
  fold, grader_fold = detector_config.data.builder_config, grader_config.data.builder_config
  if fold != grader_fold:
    raise ValueError(f"the detector config's fold (data.builder_config={fold!r}) is not the grader config's "
                     f"({grader_fold!r}): both must be trained and tested on the same fold's lists.")
  dirs = {d for d in (detector_config.data.data_dir, grader_config.data.data_dir) if d}
  if len({resolve(d) for d in dirs}) > 1:
    raise ValueError(f"--detector_config.data.data_dir={detector_config.data.data_dir!r} and "
                     f"--grader_config.data.data_dir={grader_config.data.data_dir!r} differ: the photos are read once, "
                     "from one data directory; set one of them, or both the same.")
  return {"name": "acne04", "builder_config": fold, "data_dir": dirs.pop() if dirs else ""}


def read_test_photos(data: Dict[str, str], split: str = "test") -> Iterator[Dict[str, Any]]:
  """Each record of ``split``: ``{"file_name", "image" (uint8 RGB, original size), "grade" (the
  list file's 0..3), "lesion_count" (the list file's), "annotated_boxes" (boxes in the record)}``."""
  from acne_jax import datasets
  from acne_jax.data.records import decode_record

  source, _ = datasets.source(data, split, "data.builder_config")
  for i in range(len(source)):
    record = source[i]
    decoded = decode_record(record)
    yield {"file_name": decoded["file_name"], "image": decoded["image"], "grade": int(record["grade"]),
           "lesion_count": int(record["lesion_count"]), "annotated_boxes": int(len(decoded["boxes"]))}


def grader_variants(workdir: str, requested: Optional[Sequence[str]]) -> List[str]:
  """The variants to score: ``requested`` (each must have its ``grader_<variant>.msgpack``), or
  every variant whose file is in ``workdir``."""
  command = f"{GRADE_COMMAND} --workdir={workdir}"
  if not os.path.isdir(workdir):
    raise FileNotFoundError(f"no grader workdir {workdir}; train the ACNE04 grader first: {command}")
  unknown = [v for v in requested or () if v not in VARIANTS]
  if unknown:
    raise ValueError(f"--variant={','.join(requested)}: unknown {unknown}; use {' and/or '.join(VARIANTS)}.")
  if requested:
    for variant in requested:
      path = os.path.join(workdir, f"grader_{variant}.msgpack")
      if not os.path.isfile(path):
        raise FileNotFoundError(f"no grader variables {path}; train the ACNE04 grader first: {command}")
    return list(dict.fromkeys(requested))
  found = [v for v in VARIANTS if os.path.isfile(os.path.join(workdir, f"grader_{v}.msgpack"))]
  if not found:
    raise FileNotFoundError(f"no grader variables in {workdir} (grader_weighted.msgpack or grader_unweighted.msgpack); "
                            f"train the ACNE04 grader first: {command}")
  return found


def restore_grader(config, workdir: str, variant: str):
  """``(eval_fn, variables)`` of ``<workdir>/grader_<variant>.msgpack``: the model of ``config``
  (:func:`acne_jax.grade.grader_model`, four Hayashi grades) with the saved variables."""
  import jax
  import jax.numpy as jnp
  from flax import serialization

  from acne_jax import grade
  from acne_jax.grading import scales, train_step

  path = os.path.join(workdir, f"grader_{variant}.msgpack")
  model = grade.grader_model(config, len(scales.HAYASHI_GRADE_NAMES))
  size = int(config.data.image_size)
  template = jax.eval_shape(lambda key: model.init(key, jnp.zeros((1, 1, size, size, 3), jnp.uint8)), jax.random.key(0))
  template = {"params": template["params"], "batch_stats": template.get("batch_stats", {})}
  mismatch = (f"{path} does not hold the variables of --grader_config's model (model.preset={config.model.preset!r}, "
              f"model.fusion={config.model.fusion!r}, 4 Hayashi grades): pass the config (and overrides) it was "
              f"trained with, or train it again: {GRADE_COMMAND} --workdir={workdir}")
  with open(path, "rb") as f:
    data = f.read()
  try:
    variables = serialization.from_bytes(template, data)
  except (ValueError, KeyError, TypeError) as error:
    raise ValueError(f"{mismatch} ({error})") from None
  shapes = jax.tree_util.tree_map(lambda t, v: tuple(t.shape) == tuple(np.shape(v)), template, variables)
  if not all(jax.tree_util.tree_leaves(shapes)):
    raise ValueError(mismatch)
  return train_step.make_eval_fn(model), variables


def check_grader_split(workdir: str, truth: np.ndarray) -> Optional[str]:
  """Compares the grader's test split (``split.json``, per-grade counts) with the photos graded
  here; a difference raises ``ValueError`` (the grader would be scored on photos it may have
  trained on). Returns a note when there is no ``split.json`` to compare with."""
  from acne_jax.grading import scales

  path = os.path.join(workdir, "split.json")
  if not os.path.isfile(path):
    return f"note: no {path}; the grader's test split is not checked against the fold's test list"
  with open(path) as f:
    test = json.load(f).get("test", {})
  theirs = [int(test.get("grades", {}).get(name, {}).get("count", -1)) for name in scales.HAYASHI_GRADE_NAMES]
  ours = np.bincount(truth, minlength=len(scales.HAYASHI_GRADE_NAMES)).tolist()
  if theirs != ours:
    raise ValueError(f"the grader in {workdir} was tested on other photos than this fold's test list (per grade "
                     f"{dict(zip(scales.HAYASHI_GRADE_NAMES, theirs))} in its split.json, "
                     f"{dict(zip(scales.HAYASHI_GRADE_NAMES, ours))} here): train it on the same fold "
                     "(--grader_config.data.builder_config) as the detector.")
  return None


# ----------------------------------------------------------------------------------------
# The comparison.


def count_errors(counted: np.ndarray, reference: np.ndarray) -> Dict[str, float]:
  """``{"mae", "mean_signed"}`` (float64) of ``counted - reference`` over the photos."""
  difference = np.asarray(counted, np.float64) - np.asarray(reference, np.float64)
  if difference.size == 0:
    return {"mae": float("nan"), "mean_signed": float("nan")}
  return {"mae": float(np.abs(difference).mean()), "mean_signed": float(difference.mean())}


def compare(detector_config, detector_workdir: str, grader_config, grader_workdir: str,
            variants: Optional[Sequence[str]] = None, score_threshold: Optional[float] = None,
            detector_step: Optional[int] = None, log=print) -> Dict[str, Any]:
  """Grades the fold's test photos both ways and scores them (module docstring); returns the
  JSON-serialisable result (``methods``: ``{method: grading_report}``, ``count_errors``,
  ``photos``: per photo its counts and every method's grade)."""
  import jax

  from acne_jax import grade
  from acne_jax.grading import counting, metrics, scales

  detector_workdir, grader_workdir = resolve(detector_workdir), resolve(grader_workdir)
  data = data_spec(detector_config, grader_config)
  chosen = grader_variants(grader_workdir, variants)  # checked before the long detector pass
  if not os.path.isdir(os.path.join(detector_workdir, "checkpoints")):
    raise FileNotFoundError(f"no detector checkpoint in {detector_workdir}/checkpoints; train the ACNE04 detector "
                            f"first: {TRAIN_COMMAND} --workdir={detector_workdir}")
  graders = {v: restore_grader(grader_config, grader_workdir, v) for v in chosen}
  counter = counting.LesionCounter.from_workdir(detector_config, detector_workdir, detector_step, score_threshold)
  scales.hayashi_counted_mask(counter.class_names)  # ACNE04's "acne" counts; a model of no counted class raises
  log(f"detector: checkpoint step {counter.step} of {detector_workdir}; {counter.threshold_report}")
  log(f"grader: {', '.join(f'grader_{v}.msgpack' for v in chosen)} of {grader_workdir}")

  size = int(grader_config.data.image_size)
  names, truth, list_counts, boxes, detected, views = [], [], [], [], [], []
  start = time.perf_counter()
  for photo in read_test_photos(data):
    counts = counter.count(photo["image"])
    names.append(photo["file_name"])
    truth.append(photo["grade"])
    list_counts.append(photo["lesion_count"])
    boxes.append(photo["annotated_boxes"])
    detected.append(scales.inflammatory_count(counts))
    views.append(grader_view(photo["image"], size))
    if len(names) % 25 == 0:
      log(f"  {len(names)} photos counted ({time.perf_counter() - start:.0f} s)")
  if not names:
    raise ValueError(f"the acne04 data set ({data['builder_config']}) has no test photos.")
  detector_seconds = time.perf_counter() - start
  truth_array = np.asarray(truth, np.int64)
  note = check_grader_split(grader_workdir, truth_array)
  if note:
    log(note)

  predicted = {DETECTOR_METHOD: scales.hayashi_grades(detected)}
  batch_size = int(grader_config.train.batch_size)
  view_array = np.stack(views)  # [N, 1, size, size, 3]: one view per photo
  grader_seconds = {}
  for variant, (eval_fn, variables) in graders.items():
    started = time.perf_counter()
    predicted[grader_method(variant)] = grade.predict_groups(eval_fn, jax.device_put(variables), view_array, batch_size)
    grader_seconds[variant] = time.perf_counter() - started
  predicted[REFERENCE_METHOD] = scales.hayashi_grades(boxes)

  methods = {m: metrics.grading_report(truth_array, p, scales.HAYASHI_GRADE_NAMES) for m, p in predicted.items()}
  photos = []
  for i, name in enumerate(names):
    photos.append({"file_name": name, "grade": truth[i], "lesion_count": list_counts[i], "annotated_boxes": boxes[i],
                   "detector_count": int(detected[i]), "grades": {m: int(p[i]) for m, p in predicted.items()}})
  return {
      "data": {**data, "split": "test", "photos": len(names)},
      "detector": {"workdir": detector_workdir, "step": counter.step, "class_names": list(counter.class_names),
                   "thresholds": counter.thresholds.tolist(), "threshold_report": counter.threshold_report,
                   "seconds": detector_seconds},
      "grader": {"workdir": grader_workdir, "variants": chosen, "image_size": size,
                 "files": {v: os.path.join(grader_workdir, f"grader_{v}.msgpack") for v in chosen},
                 "seconds": grader_seconds},
      "grade_names": list(scales.HAYASHI_GRADE_NAMES),
      "methods": methods,
      "count_errors": {"vs_annotated_boxes": count_errors(detected, boxes),
                       "vs_list_lesion_count": count_errors(detected, list_counts)},
      "photos": photos,
  }


def format_comparison(result: Dict[str, Any]) -> str:
  """One table: a row per method, accuracy, macro F1, quadratic kappa and each grade's F1."""
  names = result["grade_names"]
  width = max(len(method_title(m)) for m in result["methods"]) + 2
  header = "method".ljust(width) + "".join(h.rjust(10) for h in ("accuracy", "macro F1", "kappa")) + "".join(
      f"F1 {n}".rjust(max(12, len(n) + 5)) for n in names)
  lines = [f"ACNE04 {result['data']['builder_config']} test split, {result['data']['photos']} photos, against the list "
           "files' Hayashi grades (kappa: Cohen's, quadratic weights)", header, "-" * len(header)]
  for method, report in result["methods"].items():
    kappa = report["quadratic_kappa"]
    lines.append(method_title(method).ljust(width) + f"{report['accuracy']:10.4f}{report['macro_f1']:10.4f}"
                 + ("undefined".rjust(10) if kappa is None else f"{kappa:10.4f}")
                 + "".join(f"{report['per_grade'][n]['f1']:.4f}".rjust(max(12, len(n) + 5)) for n in names))
  errors = result["count_errors"]
  lines.append(f"detector count error per photo: mean |counted - annotated boxes| {errors['vs_annotated_boxes']['mae']:.2f} "
               f"(signed {errors['vs_annotated_boxes']['mean_signed']:+.2f}); mean |counted - list lesion count| "
               f"{errors['vs_list_lesion_count']['mae']:.2f} (signed {errors['vs_list_lesion_count']['mean_signed']:+.2f})")
  return "\n".join(lines)


def write_outputs(result: Dict[str, Any], out: str) -> List[str]:
  """``out`` (the JSON) and the confusion matrices beside it (``<out stem>.png``)."""
  from acne_jax import grade

  os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
  partial = out + ".partial"
  with open(partial, "w") as f:
    json.dump(result, f, indent=2)
  os.replace(partial, out)
  figure = os.path.splitext(out)[0] + ".png"
  short = {DETECTOR_METHOD: "detector count -> Hayashi", REFERENCE_METHOD: "annotated boxes -> Hayashi\n(reference)"}
  reports = {short.get(m, method_title(m)): r for m, r in result["methods"].items()}
  grade.plot_confusions(reports, [n.replace("_", "\n") for n in result["grade_names"]], figure,
                        title="{name}\naccuracy {accuracy:.2f}")
  return [out, figure]


# ----------------------------------------------------------------------------------------
# Command line.

CONFIG_FLAGS = ("detector_config", "grader_config")


def main(argv=None) -> int:
  from absl import flags
  from ml_collections import config_flags

  from acne_jax import cli, grade, train
  from acne_jax.training.checkpoint import CheckpointError

  flag_values = flags.FlagValues()
  detector_flag = config_flags.DEFINE_config_file(
      "detector_config", None, "The detector's config, as trained (configs/sadh.py:acne04).", flag_values=flag_values,
      lock_config=True)
  grader_flag = config_flags.DEFINE_config_file(
      "grader_config", None, "The grader's config, as trained (configs/acne04_grader.py).", flag_values=flag_values,
      lock_config=True)
  flags.DEFINE_string("detector_workdir", None, "The detector's workdir (default: train's, workdir/<config>_acne04).",
                      flag_values=flag_values)
  flags.DEFINE_integer("detector_step", None, "Detector checkpoint step (default: the newest).", flag_values=flag_values)
  flags.DEFINE_float("score_threshold", None, "Count the detections scoring at least this, whatever their class "
                     "(default: the thresholds predict counts at).", flag_values=flag_values)
  flags.DEFINE_string("grader_workdir", None, "The grader's workdir (default workdir/<grader config file stem>, "
                      "workdir/acne04_grader).", flag_values=flag_values)
  flags.DEFINE_list("variant", None, f"Grader variants to score, of {', '.join(VARIANTS)} (default: every "
                    "grader_<variant>.msgpack in the grader workdir).", flag_values=flag_values)
  flags.DEFINE_string("out", None, "JSON output (default <grader_workdir>/acne04_grading_comparison.json); the "
                      "confusion PNG goes beside it.", flag_values=flag_values)
  if cli.parse(flag_values, sys.argv if argv is None else argv, CONFIG_FLAGS) is None:
    return 2
  if detector_flag.value is None or grader_flag.value is None:
    print("error: --detector_config and --grader_config are required, e.g. --detector_config=configs/sadh.py:acne04 "
          "--grader_config=configs/acne04_grader.py", file=sys.stderr)
    return 2
  detector_workdir = resolve(flag_values.detector_workdir
                             or train.default_workdir(flag_values["detector_config"].config_filename))
  grader_workdir = resolve(flag_values.grader_workdir or grade.default_workdir(flag_values["grader_config"].config_filename))
  out = resolve(flag_values.out or os.path.join(grader_workdir, "acne04_grading_comparison.json"))
  try:
    result = compare(detector_flag.value, detector_workdir, grader_flag.value, grader_workdir, flag_values.variant,
                     flag_values.score_threshold, flag_values.detector_step)
    print(format_comparison(result), flush=True)
    print(f"wrote {', '.join(write_outputs(result, out))}")
  except (FileNotFoundError, ValueError, OSError, ImportError, CheckpointError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
