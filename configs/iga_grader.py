"""The IGA acne-severity grader of the grading paper (``shared/papers/iga_acne_severity_grading.md``).

``python -m acne_jax.grade --config=configs/iga_grader.py`` trains a CIFAR-style ResNet
(:mod:`acne_jax.models.grader`) on face crops of each visit's three views (frontal, left, right),
224 x 224 px, to the paper's three grade groups (IGA 0-1, 2, 3-4), with and without the
class-weighted cross-entropy (the paper's Tables 3 and 4), and reports accuracy, per-grade
precision / recall / F1, quadratic kappa and the confusion matrices on the test split.

Data (``data.source``):
- ``"synthetic"`` (default): the embedded synthetic graded faces (:mod:`acne_jax.data.synthetic_faces`),
  written to ``data.folder`` (default ``$ACNE_JAX_DATA_DIR/synthetic_grading_faces``) on first use;
- ``"folder"``: your photos, ``data.folder`` holding ``grades.csv`` (:mod:`acne_jax.data.grades_csv`).

The default is CPU-sized: ``model.preset="cpu"`` (ResNet-20, 8 channels, a 4x pooled stem), 112 px
crops and 100 epochs, about 6 minutes per variant on 2 cores (BENCHMARKS.md); the paper's setting is
``--config.model.preset=paper --config.data.image_size=224 --config.train.epochs=1000`` (ResNet-110;
a GPU's work: a 224 px step of the CPU preset alone takes 0.76 s here).
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.data = dict(
      source="synthetic",  # "synthetic" or "folder"
      folder="",  # "": the embedded set's default folder; with source="folder", the folder of grades.csv
      num_patients=80,  # synthetic only
      seed=0,  # synthetic only: the generator's seed
      image_size=112,  # side of the face crops: 112 to fit 2 CPU cores (the paper's 224: a GPU's)
      crop_margin=0.12,  # context around the detected face box, fraction of its longer side
  )
  config.model = dict(preset="cpu", dropout_rate=0.5, fusion="mean")
  config.train = dict(
      epochs=100,
      batch_size=12,  # the paper's
      learning_rate=0.01,
      final_learning_rate=0.001,
      decay_fraction=0.8,  # 0.01 -> 0.001 after 80 % of the epochs (800 of the paper's 1000)
      seed=0,
      split_seed=0,
      augment=True,  # the paper's per-view augmentation (acne_jax.grading.augment)
      variants=("weighted", "unweighted"),  # the paper's Table 3 and Table 4 runs
  )
  config.eval = dict(every_epochs=2)  # validation accuracy for early stopping (the best epoch is kept)
  return config.lock()
