"""Synthetic CT (``acne_jax.data.synthetic_ct``) written as a DeepLesion release, then built by
the real ``deep_lesion`` builder, unchanged.

A set's folder (``--out``, or ``<data_dir>/synthetic_ct/<set>`` for the embedded default)::

  <folder>/release/                   DL_info.csv, Images_png/<patient>_<study>_<series>/<slice>.png,
                                      synthetic_ct.json (generator version, settings, true lesions)
  <folder>/deep_lesion/<config>/1.0.0/  the built data set (TFDS data_dir = <folder>)

so ``configs/*.py:deep_lesion`` trains on it with ``--config.data.data_dir=<folder>``, and
``configs/*.py:synthetic_ct`` builds the embedded one on first use (``acne_jax.datasets``).

    python -m tfds_builders.synthetic_ct --out=DIR [--set=default|tiny] [--config=default|dicom_window|hu]
"""

from __future__ import annotations

import os
from typing import Optional

from acne_jax.data import synthetic_ct
from acne_jax.paths import resolve

RELEASE = "release"


def dataset_folder(data_dir: str, ct_set: str = "default") -> str:
  """Where the embedded set ``ct_set`` lives under a TFDS data dir: ``<data_dir>/synthetic_ct/<ct_set>``."""
  return os.path.join(resolve(data_dir), "synthetic_ct", ct_set)


def release_folder(folder: str) -> str:
  """The release (``DL_info.csv``, ``Images_png/``) inside a set's folder."""
  return os.path.join(resolve(folder), RELEASE)


def _set_config(ct_set: str) -> synthetic_ct.SyntheticCTConfig:
  if ct_set not in synthetic_ct.SETS:
    raise ValueError(f"unknown synthetic CT set {ct_set!r}; choose one of {', '.join(sorted(synthetic_ct.SETS))}.")
  return synthetic_ct.SETS[ct_set]


def _is_built(builder) -> bool:
  return os.path.exists(os.path.join(builder.data_dir, "dataset_info.json"))


def build_synthetic_ct(folder: str, ct_set: str = "default", builder_config: str = "default", workers: Optional[int] = None,
                       progress: bool = False):
  """Writes the release into ``<folder>/release`` (unless this very release is there) and builds it
  with the ``deep_lesion`` builder into ``folder`` (unless built); returns the builder.

  Args:
    folder: the set's folder (created).
    ct_set: a name of ``acne_jax.data.synthetic_ct.SETS`` ("default", "tiny").
    builder_config: the deep_lesion configuration ("default": window [-1024, 3071] HU -> uint8;
      "dicom_window"; "hu").
    workers: processes writing the release (default: 2 for the default set, 0 for small ones).
    progress: print progress lines.

  Raises:
    ValueError: ``<folder>/release`` holds another release (``synthetic_ct.ensure_release``).
  """
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

  from tfds_builders.deep_lesion import DeepLesion  # pylint: disable=import-outside-toplevel

  folder = resolve(folder)
  config = _set_config(ct_set)
  builder = DeepLesion(config=builder_config, data_dir=folder)
  release = release_folder(folder)
  if _is_built(builder) and os.path.isdir(release):
    synthetic_ct.ensure_release(release, config)  # only checks: refuses a folder of another release
    return builder
  if workers is None:
    workers = min(2, os.cpu_count() or 1) if config.num_patients > 20 else 0
  if progress and not os.path.isdir(release):
    print(f"Generating the synthetic CT set {ct_set!r} into {release} (first use only, no download)...", flush=True)
  synthetic_ct.ensure_release(release, config, workers=workers, progress=progress)
  builder.download_and_prepare(file_format="array_record", download_config=tfds.download.DownloadConfig(manual_dir=release))
  return builder


def ensure_built(data_dir: str, ct_set: str = "default", builder_config: str = "default"):
  """The built embedded set ``ct_set`` under ``data_dir`` (generated and built on first use)."""
  return build_synthetic_ct(dataset_folder(data_dir, ct_set), ct_set, builder_config, progress=True)
