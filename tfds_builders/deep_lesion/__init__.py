"""NIH DeepLesion (manual download): 3-slice CT key-slice images with lesion boxes (``deep_lesion``)."""

from tfds_builders.deep_lesion.deep_lesion import (
    BuildSummary,
    DeepLesion,
    DeepLesionConfig,
    NoUsableDataError,
    read_build_summary,
    summary_path,
)

__all__ = ["BuildSummary", "DeepLesion", "DeepLesionConfig", "NoUsableDataError", "read_build_summary", "summary_path"]
