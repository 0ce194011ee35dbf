"""The build summary the ``acne04`` and ``deep_lesion`` builders write beside their records.

``<data_dir>/<dataset>/<config>/<version>/build_summary.json`` records what a build kept,
skipped, clipped or found inconsistent, so nothing is lost silently; ``python -m
tfds_builders.build`` prints it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Any, Dict, List

from etils import epath

SUMMARY_FILE = "build_summary.json"
MAX_ISSUES = 1000  # issues listed in the summary (all are counted)


@dataclasses.dataclass
class BuildSummary:
  """What a build kept, skipped, clipped and found inconsistent.

  Attributes:
    dataset, config, version: which build ("acne04", "fold0", "1.0.0").
    splits: per split, counts of written records (``{"examples", "boxes", ...}``).
    counts: the builder's counters (all its keys present, 0 when nothing happened).
    issues: up to ``MAX_ISSUES`` ``{"file", "problem"}`` entries, in build order.
    issues_truncated: issues counted but not listed.
  """

  dataset: str
  config: str
  version: str
  splits: Dict[str, Dict[str, int]] = dataclasses.field(default_factory=dict)
  counts: Dict[str, int] = dataclasses.field(default_factory=dict)
  issues: List[Dict[str, str]] = dataclasses.field(default_factory=list)
  issues_truncated: int = 0

  def add(self, key: str, n: int = 1) -> None:
    self.counts[key] = self.counts.get(key, 0) + n

  def issue(self, file: str, problem: str) -> None:
    """Logs a warning naming the file (on the builder module's logger) and records it."""
    logging.getLogger(f"tfds_builders.{self.dataset}.{self.dataset}").warning("%s: %s: %s", self.dataset, file, problem)
    if len(self.issues) < MAX_ISSUES:
      self.issues.append({"file": str(file), "problem": problem})
    else:
      self.issues_truncated += 1

  def to_dict(self) -> Dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, data: Dict[str, Any]) -> "BuildSummary":
    return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})

  def format(self) -> str:
    """Human-readable multi-line text (for a CLI)."""
    lines = [f"{self.dataset}/{self.config}/{self.version}"]
    for split, counts in self.splits.items():
      lines.append(f"  {split}: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    for key, value in self.counts.items():
      lines.append(f"  {key}: {value}")
    if self.issues:
      lines.append(f"  issues ({len(self.issues) + self.issues_truncated}):")
      lines.extend(f"    {i['file']}: {i['problem']}" for i in self.issues)
      if self.issues_truncated:
        lines.append(f"    ... and {self.issues_truncated} more")
    return "\n".join(lines)


def summary_path(data_dir: os.PathLike, dataset: str, config: str, version: str) -> epath.Path:
  """``<data_dir>/<dataset>/<config>/<version>/build_summary.json``."""
  return epath.Path(data_dir) / dataset / config / str(version) / SUMMARY_FILE


def read_build_summary(data_dir: os.PathLike, dataset: str, config: str, version: str) -> BuildSummary:
  """The summary a build of ``dataset/config`` wrote into ``data_dir``.

  Raises:
    FileNotFoundError: that configuration was not built there.
  """
  path = summary_path(data_dir, dataset, config, version)
  if not path.exists():
    raise FileNotFoundError(f"no build summary at {path}: build {dataset}/{config} into {data_dir} first.")
  return BuildSummary.from_dict(json.loads(path.read_text()))
