"""A grade classifier on ACNE04 (Hayashi grades 0-3 from the list files), the grader code of
``configs/iga_grader.py`` on one whole photo per sample.

    python -m acne_jax.grade --config=configs/acne04_grader.py

Needs the ``acne04`` data set built (``python -m tfds_builders.build --dataset=acne04
--config=fold0 --manual_dir=~/ACNE04``); the fold's test list is the test split, the rest is
split 90 / 10 into train / validation with the grades' proportions kept. Photos are resized whole
to ``data.image_size`` (no face crop: ACNE04's photos are close-ups), as the LDL reference does.
The weighted loss uses inverse frequencies of the four grades.
"""

import ml_collections

from configs import iga_grader


def get_config() -> ml_collections.ConfigDict:
  config = iga_grader.get_config()
  with config.unlocked():
    config.data = dict(source="acne04", builder_config="fold0", data_dir="", image_size=112)
  return config.lock()
