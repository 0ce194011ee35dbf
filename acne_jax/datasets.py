"""Data sets by name, as the ``data`` config section asks for them.

This is the one module of ``acne_jax`` that imports the TFDS builders (``tfds_builders/``), to
open a prepared data set or build the embedded one; the builders import ``acne_jax.data``
(formats, the record schema of :mod:`acne_jax.data.records`), which never imports them.

The embedded synthetic data sets build themselves on first use: ``synthetic_acne`` through its
TFDS builder, ``synthetic_ct`` by writing a DeepLesion-format release and building it with the
real ``deep_lesion`` builder (:mod:`tfds_builders.synthetic_ct`). The real ones (``acne_scu``,
``acne04``, ``deep_lesion``) must first be built from their manual downloads with
``python -m tfds_builders.build``; when they are missing the error says where the data must be
and how to build it.

- :func:`load_sources` returns random-access TFDS sources (training streams them through the
  grain pipeline, :mod:`acne_jax.data.pipeline`);
- :func:`load_eval_split` returns the evaluation split decoded into memory (and only it), resized
  like torchvision's detectors when ``data.resize_min_size`` / ``data.resize_max_size`` are set,
  at ``data.test_size`` when that is set (:func:`acne_jax.data.resize.at_test_size`).
"""

from __future__ import annotations

import importlib
import os
from typing import Any, Mapping, Optional, Sequence, Tuple, Union

from acne_jax.data import records
from acne_jax.data import resize as resize_lib
from acne_jax.data.loader import InMemoryDataset
from acne_jax.paths import resolve

DATA_DIR_ENV = "ACNE_JAX_DATA_DIR"


def default_data_dir() -> str:
  """``$ACNE_JAX_DATA_DIR`` if set, else ``~/tensorflow_datasets``."""
  return resolve(os.environ.get(DATA_DIR_ENV) or os.path.join("~", "tensorflow_datasets"))


def synthetic_builder(data_dir: Optional[str] = None, config: Union[str, Any] = "s256"):
  """The ``synthetic_acne`` TFDS builder for ``config`` (a name or a ``SyntheticAcneConfig``)."""
  from tfds_builders.synthetic_acne import SyntheticAcne  # imports tensorflow_datasets

  return SyntheticAcne(config=config, data_dir=resolve(data_dir or default_data_dir()))


def load_synthetic_source(split: str, data_dir: Optional[str] = None, config: Union[str, Any] = "s256"):
  """Data source of one split of the synthetic acne data set, built on first use.

  Args:
    split: "train", "validation" or "test" (or any TFDS split expression, e.g. "train[:10]").
    data_dir: where TFDS data sets live (default ``default_data_dir()``).
    config: builder configuration name ("s256", "s512", "tiny") or a ``SyntheticAcneConfig``.

  Returns:
    A random-access ``tfds`` data source (``len()``, ``[i]``) of records; ``source[i]["image"]``
    is a decoded uint8 ``[H, W, 3]`` array, sequence features are Python lists.
  """
  builder = synthetic_builder(data_dir, config)
  if not os.path.isdir(builder.data_dir):
    # TFDS's own message says "Downloading and preparing"; nothing is downloaded here.
    print(f"Generating the embedded synthetic acne data set into {builder.data_dir} (first use only, no download)...", flush=True)
  builder.download_and_prepare(file_format="array_record")
  return builder.as_data_source(split=split)

# name -> (module that registers the TFDS builder, class names or None to read them from the builder)
REAL_DATASETS = {
    "acne_scu": "tfds_builders.acne_scu",
    "acne04": "tfds_builders.acne04",
    "deep_lesion": "tfds_builders.deep_lesion",
}
DOWNLOAD_PAGES = {
    "acne_scu": "https://github.com/pingguokiller/acnedetection",
    "acne04": "https://github.com/xpwu95/LDL",
    "deep_lesion": "https://nihcc.app.box.com/v/DeepLesion",
}


def synthetic_ct_builder(data: Mapping[str, Any]):
  """The ``deep_lesion`` builder of the embedded synthetic CT set ``data.ct_set`` under
  ``<data.data_dir>/synthetic_ct/<ct_set>``, the release written and built on first use."""
  from tfds_builders.synthetic_ct import ensure_built  # imports tensorflow_datasets

  return ensure_built(resolve(data["data_dir"] or default_data_dir()), data["ct_set"], data["builder_config"])


class DatasetNotFoundError(FileNotFoundError):
  """A data set that must be prepared from a manual download is not there."""


def _prepared_builder(data: Mapping[str, Any]):
  import tensorflow_datasets as tfds

  name, config = data["name"], data["builder_config"]
  data_dir = resolve(data["data_dir"] or default_data_dir())
  importlib.import_module(REAL_DATASETS[name])  # registers the builder
  builder = tfds.builder(f"{name}/{config}", data_dir=data_dir)
  if not os.path.exists(os.path.join(builder.data_dir, "dataset_info.json")):
    raise DatasetNotFoundError(
        f"the {name} data set ({config}) is not prepared: nothing at {builder.data_dir}. Download it "
        f"(see {DOWNLOAD_PAGES[name]}), then build it with `python -m tfds_builders.build --dataset={name} "
        f"--config={config} --manual_dir=FOLDER --data_dir={data_dir}`; the builder's instructions give FOLDER's layout.")
  return builder


def source(data: Mapping[str, Any], split: str, config_key: str = "data.train_split / data.eval_split"):
  """``(random-access TFDS source of split, class names)``; the embedded data set builds itself.

  Raises:
    DatasetNotFoundError: a real data set that is not built yet (saying how to build it).
    ValueError: an unknown data set, or a split it does not have (naming the ones it has).
  """
  name = data["name"]
  if name == "synthetic_acne":
    data_dir = resolve(data["data_dir"] or default_data_dir())
    return load_synthetic_source(split, data_dir, data["builder_config"]), records.CLASS_NAMES["synthetic_acne"]
  if name in REAL_DATASETS or name == "synthetic_ct":
    builder = synthetic_ct_builder(data) if name == "synthetic_ct" else _prepared_builder(data)
    if split not in builder.info.splits:
      raise ValueError(f"the {name} data set ({data['builder_config']}) has no {split!r} split (it has "
                       f"{', '.join(sorted(builder.info.splits))}); set {config_key} to one of them.")
    return builder.as_data_source(split=split), tuple(builder.info.features["objects"]["label"].names)
  raise ValueError(f"unknown data.name {name!r}; known: 'synthetic_acne', 'synthetic_ct', {', '.join(map(repr, REAL_DATASETS))}.")


def load_sources(data: Mapping[str, Any]):
  """``(train source, eval source, class names)`` as random-access TFDS data sources."""
  train, class_names = source(data, data["train_split"])
  evaluation, _ = source(data, data["eval_split"])
  return train, evaluation, class_names


def load_split_by_name(data: Mapping[str, Any], split: str, config_key: str = "eval.calibration_split") -> InMemoryDataset:
  """Any split of the data set (e.g. ``"validation"`` for calibration) decoded into memory at the
  test-time size (:func:`acne_jax.data.resize.at_test_size`); ``config_key`` is the setting a missing split's error tells
  the user to change."""
  return _decode(resize_lib.at_test_size(data), source(data, split, config_key)[0], split)


def load_eval_split(data: Mapping[str, Any]) -> Tuple[InMemoryDataset, Sequence[str]]:
  """``(the split named by data.eval_split decoded into memory, class names)``; nothing of the
  training split is opened or read."""
  records, class_names = source(data, data["eval_split"], "data.eval_split")
  return load_split(resize_lib.at_test_size(data), records, "eval_split"), class_names


def mask_size(data: Mapping[str, Any]) -> int:
  """Side of the lesion mask bitmaps the batches carry (``data.mask_size``), 0 without masks."""
  return int(data["mask_size"]) if data.get("with_masks") else 0


def load_split(data: Mapping[str, Any], records, split_key: str) -> InMemoryDataset:
  """The records of the split named by ``data[split_key]`` decoded into memory."""
  return _decode(data, records, data[split_key])


def resize_sizes(data: Mapping[str, Any]) -> Tuple[int, int]:
  """``(data.resize_min_size, data.resize_max_size)``: torchvision's detector resize, ``(0, 0)``
  for none (also for configs written before these settings existed)."""
  from acne_jax.data.resize import configured_sizes

  return configured_sizes(data)


def configured_style(data: Mapping[str, Any]) -> str:
  """``data.resize_style``: "torchvision" or "mmdetection" (:mod:`acne_jax.data.resize`)."""
  from acne_jax.data.resize import configured_style as style

  return style(data)


def _decode(data: Mapping[str, Any], records, split: str) -> InMemoryDataset:
  """Decodes ``records`` into memory, resized when the config asks (the dataset then keeps the
  ratios and the original ground truth for evaluation: ``InMemoryDataset.scale``)."""
  resize_min_size, resize_max_size = resize_sizes(data)
  return InMemoryDataset.from_records(
      records, image_size=tuple(data["image_size"]), max_boxes=data["max_boxes"], drop_labels=tuple(data["drop_labels"]),
      name=f"{data['name']}/{split}", mask_size=mask_size(data), resize_min_size=resize_min_size,
      resize_max_size=resize_max_size, resize_style=configured_style(data))
