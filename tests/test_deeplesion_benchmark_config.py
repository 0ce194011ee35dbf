"""configs/deeplesion_benchmark.py: each row of the DeepLesion benchmark's Table 2 as the paper
states it (section 3.1), and what the run builds from it."""

import importlib.util
import os

import pytest

from acne_jax import train
from acne_jax.data import pipeline

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _module():
  spec = importlib.util.spec_from_file_location("deeplesion_benchmark", os.path.join(ROOT, "configs", "deeplesion_benchmark.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


# The paper's Table 2: pretrained backbone (COCO), optimiser, balanced batches, augmentation.
PAPER = {1: (True, "adam", False, False), 2: (False, "adam", True, False), 3: (True, "adam", True, False),
         4: (False, "sgd", True, False), 5: (True, "sgd", True, False), 6: (True, "adam", True, True)}


@pytest.mark.parametrize("row", sorted(PAPER))
def test_each_row_has_the_papers_settings(row):
  config = _module().get_config(str(row))
  pretrained, optimizer, balanced, augmented = PAPER[row]
  assert config.optimizer.name == optimizer
  assert config.optimizer.lr == {"adam": 1e-4, "sgd": 2e-5}[optimizer] and config.optimizer.momentum == 0.9
  assert (config.optimizer.warmup_steps, tuple(config.optimizer.decay_steps), tuple(config.optimizer.decay_epochs)) == (0, (), ())
  assert (config.train.batch_size, config.train.epochs) == (32, 110)
  assert bool(config.train.init_from) == pretrained and bool(config.model.backbone.pretrained) == (not pretrained)
  assert config.data.class_balanced == balanced
  assert (config.data.rotate_degrees, config.data.zoom_crop) == ((30.0, 64) if augmented else (0.0, 0))
  assert not (config.data.hflip or config.data.vflip or config.data.rotate90)
  assert config.data.name == "deep_lesion" and config.model.rpn.head == "rpn" and config.model.backbone.norm == "frozen_bn"
  pipeline.check_options(config.data)
  settings = train.optimizer_config(config, per_epoch=10)
  assert settings["name"] == optimizer and settings["decay_steps"] == []


def test_the_data_set_follows_the_row_and_a_bad_row_is_named():
  assert _module().get_config("2,synthetic").data.name == "synthetic_acne"
  with pytest.raises(ValueError, match="Table 2 row 1-6"):
    _module().get_config("7")
