"""Data sets by name, as the ``data`` config section asks for them.

``load(data_config)`` returns the training and evaluation splits as
:class:`acne_jax.data.loader.InMemoryDataset` plus the class names. The embedded synthetic
data set builds itself on first use; the real data sets need their TFDS builders run on the
manual download first, and say so when they are missing.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence, Tuple

from acne_jax.data import sources
from acne_jax.data.loader import InMemoryDataset
from acne_jax.data.synthetic import CLASS_NAMES


class DatasetNotFoundError(FileNotFoundError):
  """A data set that must be prepared from a manual download is not there."""


def load(data: Mapping[str, Any]) -> Tuple[InMemoryDataset, InMemoryDataset, Sequence[str]]:
  name = data["name"]
  data_dir = data["data_dir"] or sources.default_data_dir()
  if name == "synthetic_acne":
    train = sources.load_synthetic_source(data["train_split"], data_dir, data["builder_config"])
    test = sources.load_synthetic_source(data["eval_split"], data_dir, data["builder_config"])
    class_names = CLASS_NAMES
  elif name == "acne_scu":
    expected = os.path.join(data_dir, "acne_scu", data["builder_config"])
    raise DatasetNotFoundError(
        f"the AcneSCU data set is not prepared: no TFDS data at {expected}. Download AcneSCU (see "
        "https://github.com/pingguokiller/acnedetection), put the LabelMe JSON files and JPEGs in a folder, and build it with "
        f"`python -m acne_jax.data.build --dataset=acne_scu --manual_dir=FOLDER --data_dir={data_dir}` "
        "(the AcneSCU builder arrives with the TFDS builders of issue 4).")
  else:
    raise ValueError(f"unknown data.name {name!r}; known: 'synthetic_acne', 'acne_scu'.")
  common = dict(image_size=tuple(data["image_size"]), max_boxes=data["max_boxes"], drop_labels=tuple(data["drop_labels"]))
  return (
      InMemoryDataset.from_records(train, name=f"{name}/{data['train_split']}", **common),
      InMemoryDataset.from_records(test, name=f"{name}/{data['eval_split']}", **common),
      class_names,
  )
