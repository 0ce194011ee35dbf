"""Every command parses its config overrides the same way (acne_jax/cli.py): a mistyped key is a
usage error (exit 2) naming the key and the closest real ones, before anything is read or built."""

import pytest

from acne_jax import cli, convert, evaluate, grade, predict, train


@pytest.mark.parametrize("main, argv, key, suggestion", [
    (train.main, ["--config=configs/sadh.py", "--config.train.stepz=3"], "train.stepz", "train.steps"),
    (evaluate.main, ["--config=configs/sadh.py", "--config.eval.iuo=0.3", "--workdir=w"], "eval.iuo", "eval.iou"),
    (predict.main, ["--config=configs/sadh.py", "--config.data.meen=1", "--workdir=w", "x.png"], "data.meen", "data.mean"),
    (grade.main, ["--config=configs/iga_grader.py", "--config.train.epoch=3"], "train.epoch", "train.epochs"),
    (grade.main, ["--config=configs/count_grader.py", "--config.detector.train.stepz=3"], "detector.train.stepz",
     "detector.train.steps"),
    (convert.main, ["--from=torchvision", "--checkpoint=c.pth", "--out=o", "--config=configs/torchvision_faster_rcnn.py",
                    "--config.model.rpn.nms_iuo=0.5"], "model.rpn.nms_iuo", "model.rpn.nms_iou"),
], ids=["train", "evaluate", "predict", "grade", "grade_counts", "convert"])
def test_a_mistyped_override_is_named_by_every_command(main, argv, key, suggestion, capsys):
  assert main(["prog", *argv]) == 2
  err = capsys.readouterr().err
  assert f"unknown config key '{key}'" in err and f"did you mean '{suggestion}'" in err, err


def test_parse_returns_the_positional_arguments_and_leaves_sys_argv_alone():
  import sys

  from absl import flags
  from ml_collections import config_flags

  flag_values = flags.FlagValues()
  config = config_flags.DEFINE_config_file("config", None, "", flag_values=flag_values)
  before = list(sys.argv)
  assert cli.parse(flag_values, ["prog", "--config=configs/sadh.py", "--config.train.steps=7", "a.png", "b.png"]) == ["a.png", "b.png"]
  assert config.value.train.steps == 7 and sys.argv == before


def test_unknown_override_checks_each_named_config():
  argv = ["--detector_config=configs/sadh.py", "--detector_config.train.stepz=1", "--grader_config=configs/iga_grader.py"]
  assert cli.unknown_override(argv) is None  # only --config is looked at by default
  assert "unknown config key 'train.stepz'" in cli.unknown_override(argv, ("grader_config", "detector_config"))
