"""ACNE04 (manual download): acne boxes and severity grades, 5 official folds (``acne04``)."""

from tfds_builders.acne04.acne04 import (
    Acne04,
    Acne04Config,
    BuildSummary,
    NoUsableDataError,
    hayashi_grade,
    parse_list_file,
    read_build_summary,
    summary_path,
)

__all__ = [
    "Acne04",
    "Acne04Config",
    "BuildSummary",
    "NoUsableDataError",
    "hayashi_grade",
    "parse_list_file",
    "read_build_summary",
    "summary_path",
]
