"""The AcneSCU data set (``acne_scu``), built from a manual download (LabelMe or COCO JSON)."""

from tfds_builders.acne_scu.acne_scu import (
    LAYOUT,
    MANUAL_DOWNLOAD_INSTRUCTIONS,
    AcneScu,
    AcneScuConfig,
    BuildSummary,
    ManualDataError,
    NoUsableDataError,
    load_build_summary,
    summary_path,
)

__all__ = [
    "LAYOUT",
    "MANUAL_DOWNLOAD_INSTRUCTIONS",
    "AcneScu",
    "AcneScuConfig",
    "BuildSummary",
    "ManualDataError",
    "NoUsableDataError",
    "load_build_summary",
    "summary_path",
]
