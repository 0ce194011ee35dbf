"""The grader on ACNE04-format data (configs/acne04_grader.py): the fold's test list stays the
test split, the four Hayashi grades are the classes, both loss variants run and report."""

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from acne_jax import grade  # noqa: E402
from acne_jax.testing import fixtures  # noqa: E402
from configs import acne04_grader  # noqa: E402


@pytest.fixture(scope="module")
def acne04_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("acne04_grading")
  counts = {0: 3, 1: 12, 2: 30, 3: 60}
  images = {f"levle{g}_{i}.jpg": fixtures.Acne04Image(grade=g, lesion_count=counts[g], objects=[("fore", 2, 2, 9, 9, 0)],
                                                      size=(40, 30), seed=10 * g + i)
            for g in range(4) for i in range(8)}
  test = [f"levle{g}_{i}.jpg" for g in range(4) for i in (0, 1)]
  fixtures.write_acne04_release(root / "release", images, {0: ([n for n in images if n not in test], test)})
  from tfds_builders.acne04 import Acne04

  Acne04(config="fold0", data_dir=str(root / "tfds")).download_and_prepare(
      file_format="array_record", download_config=tfds.download.DownloadConfig(manual_dir=str(root / "release")))
  return str(root / "tfds"), test


def test_acne04_grades_train_on_the_fold_and_score_its_test_list(acne04_dir, tmp_path):
  data_dir, test_names = acne04_dir
  config = acne04_grader.get_config()
  with config.unlocked():
    config.data.update(data_dir=data_dir, image_size=32)
    config.train.update(epochs=2, batch_size=4)
    config.eval.every_epochs = 1
  views, grades, names, is_test = grade.load_acne04(config.data)
  assert views.shape == (32, 1, 32, 32, 3) and sorted(np.asarray(names)[is_test]) == sorted(test_names)
  assert np.bincount(grades, minlength=4).tolist() == [8, 8, 8, 8]
  reports = grade.run(config, str(tmp_path / "work"), log=lambda *_: None)
  for report in reports.values():
    cm = np.asarray(report["confusion_matrix"])
    assert cm.shape == (4, 4) and cm.sum(axis=1).tolist() == [2, 2, 2, 2]  # the fold's 8 test photos, 2 per grade
    assert list(report["per_grade"]) == report["class_names"] == ["mild", "moderate", "severe", "very_severe"]
