"""The embedded synthetic acne data set (``synthetic_acne``), generated locally."""

from tfds_builders.synthetic_acne.synthetic_acne import SyntheticAcne, SyntheticAcneConfig

__all__ = ["SyntheticAcne", "SyntheticAcneConfig"]
