"""Random-access data sources (TFDS ArrayRecord) for training and evaluation.

``load_synthetic_source`` builds the embedded synthetic acne data set on first use (about half
a minute on two CPU cores for the default ``s256`` configuration; nothing is downloaded) and
returns a ``tfds`` data source: ``len(source)`` records, ``source[i]`` a dict in the layout of
``tfds_builders.synthetic_acne`` (turn it into NumPy arrays with ``decode_record``). TensorFlow
is not needed.
"""

from __future__ import annotations

import os
from typing import Any, Optional, Union

from acne_jax.data.synthetic import decode_record  # noqa: F401  (re-exported)
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
