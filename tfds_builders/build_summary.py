"""The build summary every manual-download builder (``acne_scu``, ``acne04``, ``deep_lesion``) writes.

``<data_dir>/<dataset>/<config>/<version>/build_summary.json`` records what a build wrote per
split, which splits came out empty, the builder's counters, and one entry per item it left out,
changed or found inconsistent, so nothing is lost silently; ``python -m tfds_builders.build``
prints it (:meth:`BuildSummary.format`).

Each entry of ``items`` names one thing::

  {"action": "skipped" | "dropped" | "clipped" | "noted",
   "file":   the file, relative to the manual folder (POSIX separators),
   "index":  where in that file (None for a whole file): the position of the shape in a
             LabelMe file's "shapes", of the annotation in a COCO file's "annotations" (or of
             the entry in its "images", item "image"), of the <object> in a VOC file (all
             0-based), or the line number in a list or CSV file (1-based, header = line 1),
   "item":   what the index counts: "shape", "annotation", "image", "object", "line" or "",
   "label":  the label as written in the file ("" when none applies),
   "reason": a short code (e.g. "unknown_label", "corrupt_image", "zero_area"),
   "detail": one human-readable sentence}

``skipped``: a whole file (or list / CSV line) left out, with every annotation it held;
``dropped``: one annotation left out of a record that was written; ``clipped``: one annotation
changed to fit its image, kept; ``noted``: kept, but inconsistent or substituted (e.g. a missing
neighbour slice replaced by the nearest one). The JSON keeps every entry; the printed summary
shows the first few of each reason.

An empty split cannot be written (TFDS refuses a split without records), so a split that gets no
record is left out of the data set and listed in ``empty_splits`` with the reason; a release
with no usable record at all raises :class:`NoUsableDataError`.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import os
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple, TypeVar

from etils import epath

SUMMARY_FILE = "build_summary.json"
ACTIONS: Tuple[str, ...] = ("skipped", "dropped", "clipped", "noted")
ACTION_TITLES = {
    "skipped": "skipped files and lines",
    "dropped": "dropped annotations",
    "clipped": "clipped annotations",
    "noted": "notes (kept)",
}
PRINTED_PER_REASON = 10  # entries printed per reason (all are in the JSON)

T = TypeVar("T")


class NoUsableDataError(ValueError):
  """A release in which every record was skipped (or none is listed); the message names the
  files, why each was skipped, and what to fix."""


def display_path(path: Any) -> str:
  """``path`` as text that can be written anywhere: a file name that is not valid UTF-8 (read
  from disk as surrogate escapes) gets its undecodable bytes as ``\\xNN``."""
  text = os.fspath(path) if not isinstance(path, str) else path
  if isinstance(text, bytes):
    return text.decode("utf-8", "backslashreplace")
  try:
    text.encode("utf-8")
    return text
  except UnicodeEncodeError:
    return os.fsencode(text).decode("utf-8", "backslashreplace")


@dataclasses.dataclass
class BuildSummary:
  """What a build wrote, left out, changed and found inconsistent.

  Attributes:
    dataset, config, version: which build ("acne04", "fold0", "1.0.0").
    manual_dir: the folder read; ``items`` name files relative to it.
    splits: per written split, counts of its records (``{"examples", "boxes", ...}``).
    empty_splits: split -> why it got no record (such a split is not in the data set).
    counts: the builder's counters (all its keys present, 0 when nothing happened).
    info: data-set specific facts that are not counters (input format, boxes per class).
    items: every skipped, dropped, clipped or noted item (see the module docstring).
  """

  dataset: str
  config: str
  version: str
  manual_dir: str = ""
  splits: Dict[str, Dict[str, int]] = dataclasses.field(default_factory=dict)
  empty_splits: Dict[str, str] = dataclasses.field(default_factory=dict)
  counts: Dict[str, int] = dataclasses.field(default_factory=dict)
  info: Dict[str, Any] = dataclasses.field(default_factory=dict)
  items: List[Dict[str, Any]] = dataclasses.field(default_factory=list)

  # ------------------------------------------------------------------------------------------
  # Recording.

  def add(self, key: str, n: int = 1) -> None:
    self.counts[key] = self.counts.get(key, 0) + int(n)

  def relative(self, path: Any) -> str:
    """``path`` relative to ``manual_dir`` when inside it (POSIX separators), as text."""
    text = os.fspath(path)
    if self.manual_dir and os.path.isabs(text):
      root = os.path.abspath(self.manual_dir)
      absolute = os.path.abspath(text)
      if absolute == root or absolute.startswith(root + os.sep):
        text = os.path.relpath(absolute, root)
    return display_path(text.replace(os.sep, "/"))

  def record(self, action: str, file: Any, reason: str, detail: str = "", index: Optional[int] = None,
             item: str = "", label: Any = "", level: int = logging.WARNING) -> Dict[str, Any]:
    """Adds one entry to ``items`` and logs it (on the builder module's logger).

    Args:
      action: "skipped", "dropped", "clipped" or "noted".
      file: the file (absolute, or relative to ``manual_dir``).
      reason: short code.
      detail: one sentence for people.
      index, item: where in the file (see the module docstring); None / "" for a whole file.
      label: the label as written ("" when none applies).
      level: logging level of the message.
    """
    if action not in ACTIONS:
      raise ValueError(f"action must be one of {ACTIONS}, got {action!r}")
    entry = {
        "action": action,
        "file": self.relative(file),
        "index": None if index is None else int(index),
        "item": item if index is not None else "",
        "label": display_path(label if isinstance(label, str) else repr(label)) if label not in ("", None) else "",
        "reason": reason,
        "detail": display_path(detail),
    }
    self.items.append(entry)
    logging.getLogger(f"tfds_builders.{self.dataset}.{self.dataset}").log(
        level, "%s: %s %s: %s", self.dataset, action, _where(entry), entry["detail"] or reason)  # escaped: UTF-8 safe
    return entry

  def empty_split(self, split: str, reason: str) -> None:
    """Reports ``split`` as empty (left out of the data set) and why."""
    self.splits.pop(split, None)
    self.empty_splits[split] = reason
    logging.getLogger(f"tfds_builders.{self.dataset}.{self.dataset}").warning(
        "%s: the %s split is empty and left out: %s", self.dataset, split, reason)

  # ------------------------------------------------------------------------------------------
  # Reading.

  def select(self, action: Optional[str] = None, reason: Optional[str] = None, file: Optional[str] = None) -> List[Dict[str, Any]]:
    """The entries of ``items`` with the given action / reason / file (None: any)."""
    return [i for i in self.items if (action is None or i["action"] == action) and (reason is None or i["reason"] == reason)
            and (file is None or i["file"] == file)]

  def reasons(self, action: Optional[str] = None) -> Dict[str, int]:
    """Number of entries per reason (of one action, or all)."""
    return dict(collections.Counter(i["reason"] for i in self.items if action is None or i["action"] == action))

  def to_dict(self) -> Dict[str, Any]:
    return dataclasses.asdict(self)

  def to_json(self) -> str:
    return json.dumps(self.to_dict(), indent=1, ensure_ascii=False)

  @classmethod
  def from_dict(cls, data: Dict[str, Any]) -> "BuildSummary":
    return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})

  def format(self, per_reason: int = PRINTED_PER_REASON, path: Optional[str] = None) -> str:
    """Human-readable lines (for the build CLI): splits, empty splits, counters, then the
    items grouped by action and reason, ``per_reason`` of each (the rest counted, all in the
    JSON file ``path``)."""
    where = path or SUMMARY_FILE
    lines = [f"{self.dataset}/{self.config} {self.version}" + (f" from {self.manual_dir}" if self.manual_dir else "")]
    for split, counts in self.splits.items():
      lines.append(f"  {split}: " + ", ".join(f"{v} {'records' if k == 'examples' else k}" for k, v in counts.items()))
    for split, reason in self.empty_splits.items():
      lines.append(f"  {split}: EMPTY, left out of the data set: {reason}")
    for key, value in self.info.items():
      if isinstance(value, dict):
        value = ", ".join(f"{k} {v}" for k, v in value.items())
      lines.append(f"  {key}: {value}")
    nonzero = {k: v for k, v in self.counts.items() if v}
    if nonzero:
      lines.append("  counts (the others are 0): " + ", ".join(f"{k} {v}" for k, v in nonzero.items()))
    for action in ACTIONS:
      entries = [i for i in self.items if i["action"] == action]
      if not entries:
        continue
      lines.append(f"  {ACTION_TITLES[action]} ({len(entries)}):")
      by_reason: Dict[str, List[Dict[str, Any]]] = collections.defaultdict(list)
      for entry in entries:
        by_reason[entry["reason"]].append(entry)
      for reason, group in by_reason.items():
        lines.append(f"    {reason} ({len(group)}):")
        lines.extend(f"      {_where(e)}" + (f": {e['detail']}" if e["detail"] else "") for e in group[:per_reason])
        if len(group) > per_reason:
          lines.append(f"      ... and {len(group) - per_reason} more, all in {where}")
    if not self.items:
      lines.append("  nothing skipped, dropped, clipped or noted")
    return "\n".join(lines)


def _where(entry: Dict[str, Any]) -> str:
  """``"a/b.json shape 3 'papule'"``: file, position and label of an entry."""
  text = entry["file"]
  if entry["index"] is not None:
    text += f" {entry['item'] or 'index'} {entry['index']}"
  if entry["label"]:
    text += f" {entry['label']!r}"
  return text


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
  return BuildSummary.from_dict(json.loads(path.read_text(encoding="utf-8")))


def write_build_summary(summary: BuildSummary, folder: os.PathLike) -> None:
  """Writes ``folder/build_summary.json`` (UTF-8)."""
  (epath.Path(folder) / SUMMARY_FILE).write_text(summary.to_json(), encoding="utf-8")


# --------------------------------------------------------------------------------------------
# Splits that may come out empty.


def first_usable(candidates: Iterable[T], make: Callable[[T], Optional[Any]]) -> Tuple[Optional[Any], List[T]]:
  """Runs ``make`` over ``candidates`` until one gives a record.

  TFDS refuses to write a split without records, and a split's generator cannot say so once
  started; so each split's first record is made before the split is handed to TFDS, and a split
  whose candidates all fail is reported empty instead. ``make`` records its own skips (it runs
  once per candidate: the later candidates are left for the generator).

  Returns:
    ``(first, rest)``: the first record made (None when every candidate failed) and the
    candidates after it.
  """
  candidates = list(candidates)
  for position, candidate in enumerate(candidates):
    made = make(candidate)
    if made is not None:
      return made, candidates[position + 1:]
  return None, []


def chain_first(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
  """``first`` then everything of ``rest`` (the generator of a split whose first record was
  made by :func:`first_usable`)."""
  yield first
  yield from rest


def no_usable_data(dataset: str, summary: BuildSummary, fix: str) -> NoUsableDataError:
  """The error of a build that wrote nothing: the empty splits and the first skipped items."""
  skipped = summary.select("skipped")
  listed = "; ".join(f"{_where(e)}: {e['detail'] or e['reason']}" for e in skipped[:10])
  more = f" (and {len(skipped) - 10} more)" if len(skipped) > 10 else ""
  splits = "; ".join(f"{s}: {r}" for s, r in summary.empty_splits.items())
  return NoUsableDataError(
      f"{dataset}: no usable record in {summary.manual_dir}, nothing was written. Splits: {splits}. "
      f"Skipped: {listed or 'nothing'}{more}. {fix}")
