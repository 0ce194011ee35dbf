"""The embedded synthetic CT data set: a DeepLesion-format release generated locally, built by the
real ``deep_lesion`` builder (one DeepLesion code path)."""

from tfds_builders.synthetic_ct.synthetic_ct import build_synthetic_ct, dataset_folder, ensure_built, release_folder

__all__ = ["build_synthetic_ct", "dataset_folder", "ensure_built", "release_folder"]
