"""A folder of graded photos: ``grades.csv`` beside the images (the graders' user-folder input).

Layout (the embedded synthetic set, :func:`acne_jax.data.synthetic_faces.write_grading_folder`,
is written the same way)::

  folder/
    grades.csv          image,patient,grade[,visit,view]   (UTF-8, a header line, comma separated)
    images/...          the photos, JPEG or PNG, paths in ``image`` relative to the folder

- ``image``: the photo's path relative to the folder (or absolute);
- ``patient``: any non-empty id; one patient's visits never go to two splits;
- ``grade``: an integer of the scale (IGA 0-4 by default; ``grades=`` for another scale, e.g.
  Hayashi 0-3);
- ``visit`` and ``view`` (optional, together): the paper's triplets. Rows with the same patient
  and visit are one visit whose ``view`` values must be ``frontal``, ``left`` and ``right``
  (``front`` is read as ``frontal``), each once, all with one grade. Without these columns every
  row is a visit of one photo (view ``frontal``), as ACNE04 is.

Other columns are ignored. :func:`read_grades_csv` returns the usable visits and names every row
or visit it had to leave out, with the line (the header is line 1) and the reason
(:class:`Skip`): an unknown grade, a missing or cut-short image file, an unknown or repeated view,
a visit without all three views, views of one visit with different grades, an image listed
twice. A file that cannot be read as such a table (missing, not UTF-8, without the required
columns, nothing usable left) raises ``ValueError`` saying what to fix.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import io
import os
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from acne_jax.data import image_bytes

CSV_NAME = "grades.csv"
REQUIRED_COLUMNS: Tuple[str, ...] = ("image", "patient", "grade")
VIEWS: Tuple[str, ...] = ("frontal", "left", "right")
SINGLE_VIEW: Tuple[str, ...] = ("frontal",)
IGA_GRADES: Tuple[int, ...] = (0, 1, 2, 3, 4)
_VIEW_ALIASES = {"front": "frontal", "frontal": "frontal", "left": "left", "right": "right"}
LAYOUT = ("a folder with grades.csv (header: image,patient,grade and optionally visit,view; one row per photo, "
          "image paths relative to the folder) and the photos it names")


@dataclasses.dataclass(frozen=True)
class GradedVisit:
  """One graded visit: its photos by view."""

  patient: str
  visit: str  # the CSV's visit value; the row's line number when the CSV has no visit column
  grade: int
  images: Mapping[str, str]  # view -> absolute path
  lines: Tuple[int, ...]  # the rows' lines in grades.csv, in view order


@dataclasses.dataclass(frozen=True)
class Skip:
  """A row or a visit left out, and why."""

  line: int  # the row's line in grades.csv (header: 1); a visit's first row for a visit-level skip
  image: str  # the row's image as written; the visit's images joined by ", " for a visit-level skip
  patient: str
  reason: str  # a code: unknown_grade, missing_image, unreadable_image, empty_field, unknown_view,
  # duplicate_view, duplicate_image, grade_mismatch, incomplete_visit
  message: str

  def __str__(self) -> str:
    return f"grades.csv line {self.line} ({self.image or '-'}, patient {self.patient or '-'}): {self.reason}: {self.message}"


@dataclasses.dataclass(frozen=True)
class GradesTable:
  """What :func:`read_grades_csv` read."""

  folder: str
  views: Tuple[str, ...]  # the views of every visit: VIEWS, or ("frontal",) without view columns
  visits: List[GradedVisit]
  skipped: List[Skip]

  def summary(self, limit: int = 10) -> str:
    """A few lines: visits kept, and the skipped rows grouped by reason (``limit`` per reason)."""
    lines = [f"{self.folder}: {len(self.visits)} visits of {len({v.patient for v in self.visits})} patients "
             f"({len(self.views)} view{'s' if len(self.views) > 1 else ''} each), {len(self.skipped)} left out"]
    groups: Dict[str, List[Skip]] = collections.defaultdict(list)
    for skip in self.skipped:
      groups[skip.reason].append(skip)
    for reason, items in sorted(groups.items()):
      lines.append(f"  {reason}: {len(items)}")
      lines.extend(f"    {item}" for item in items[:limit])
      if len(items) > limit:
        lines.append(f"    ... and {len(items) - limit} more")
    return "\n".join(lines)


def _parse_grade(text: str, grades: Sequence[int]) -> Optional[int]:
  text = text.strip()
  try:
    value = float(text)
  except ValueError:
    return None
  if not value.is_integer() or int(value) not in grades:
    return None
  return int(value)


def read_grades_csv(folder: str, grades: Sequence[int] = IGA_GRADES, csv_name: str = CSV_NAME,
                    check_images: bool = True, strict: bool = False) -> GradesTable:
  """Reads and checks ``folder/grades.csv`` (layout: the module docstring).

  Args:
    folder: the folder holding ``grades.csv`` and the photos.
    grades: the scale's grades (default IGA 0-4).
    csv_name: the table's file name inside ``folder``.
    check_images: check that each photo exists and is a whole JPEG / PNG (reads its bytes, no
      decoding); ``False`` only checks that the file exists.
    strict: raise on the first problem row instead of skipping it.

  Returns:
    The visits in the order of their first row, and every row or visit left out (:class:`Skip`).

  Raises:
    ValueError: the folder or the table is missing, is not UTF-8, lacks a required column, has
      ``view`` without ``visit`` (or the reverse), or leaves no usable visit; with ``strict``, any
      skip.
  """
  folder = os.path.abspath(folder)
  path = os.path.join(folder, csv_name)
  if not os.path.isdir(folder):
    raise ValueError(f"grades folder {folder} does not exist; expected {LAYOUT}.")
  if not os.path.isfile(path):
    raise ValueError(f"{path} not found; expected {LAYOUT}.")
  with open(path, "rb") as f:
    raw = f.read()
  try:
    text = raw.decode("utf-8-sig")
  except UnicodeDecodeError as error:
    raise ValueError(f"{path} is not UTF-8 (byte {error.start}); save it as UTF-8 CSV.") from None
  reader = csv.reader(io.StringIO(text, newline=""))
  try:
    header = [h.strip().lower() for h in next(reader)]
  except StopIteration:
    raise ValueError(f"{path} is empty; expected a header line image,patient,grade[,visit,view] and one row per photo.") from None
  missing = [c for c in REQUIRED_COLUMNS if c not in header]
  if missing:
    raise ValueError(f"{path}: header {header} lacks column(s) {missing}; expected image,patient,grade[,visit,view].")
  has_view, has_visit = "view" in header, "visit" in header
  if has_view != has_visit:
    raise ValueError(f"{path}: the columns 'visit' and 'view' go together (a visit is a patient's frontal, left and right "
                     f"photos); the header has only {'view' if has_view else 'visit'}.")
  column = {name: header.index(name) for name in header if name}
  views = VIEWS if has_view else SINGLE_VIEW
  skipped: List[Skip] = []

  def skip(line: int, image: str, patient: str, reason: str, message: str) -> None:
    item = Skip(line, image, patient, reason, message)
    if strict:
      raise ValueError(f"{path}: {item}")
    skipped.append(item)

  Row = collections.namedtuple("Row", "line image path patient visit view grade")
  rows: List[Row] = []
  seen_images: Dict[str, int] = {}
  for line, record in enumerate(reader, start=2):
    if not record or all(not cell.strip() for cell in record):
      continue
    record = record + [""] * (len(header) - len(record))
    field = {name: record[index].strip() for name, index in column.items()}
    image, patient = field["image"], field["patient"]
    empty = [name for name in (("image", "patient", "grade", "visit", "view") if has_view else REQUIRED_COLUMNS) if not field[name]]
    if empty:
      skip(line, image, patient, "empty_field", f"empty {', '.join(empty)}")
      continue
    grade = _parse_grade(field["grade"], grades)
    if grade is None:
      skip(line, image, patient, "unknown_grade", f"grade {field['grade']!r} is not one of {list(grades)}")
      continue
    view = "frontal"
    if has_view:
      view = _VIEW_ALIASES.get(field["view"].lower(), "")
      if not view:
        skip(line, image, patient, "unknown_view", f"view {field['view']!r} is not one of {list(VIEWS)}")
        continue
    image_path = os.path.normpath(image if os.path.isabs(image) else os.path.join(folder, image))
    if image_path in seen_images:
      skip(line, image, patient, "duplicate_image", f"already listed on line {seen_images[image_path]}")
      continue
    seen_images[image_path] = line
    if not os.path.isfile(image_path):
      skip(line, image, patient, "missing_image", f"no file {image_path}")
      continue
    if check_images:
      with open(image_path, "rb") as f:
        problem = image_bytes.incomplete(f.read())
      if problem:
        skip(line, image, patient, "unreadable_image", problem)
        continue
    rows.append(Row(line, image, image_path, patient, field.get("visit", str(line)), view, grade))

  # Group rows into visits.
  groups: Dict[Tuple[str, str], List[Row]] = collections.OrderedDict()
  for row in rows:
    groups.setdefault((row.patient, row.visit), []).append(row)
  visits: List[GradedVisit] = []
  for (patient, visit), members in groups.items():
    by_view: Dict[str, Row] = {}
    for row in members:
      if row.view in by_view:
        skip(row.line, row.image, patient, "duplicate_view",
             f"visit {visit!r} already has a {row.view} photo on line {by_view[row.view].line}")
        continue
      by_view[row.view] = row
    names = ", ".join(r.image for r in by_view.values())
    first = min(r.line for r in by_view.values())
    if len({r.grade for r in by_view.values()}) > 1:
      detail = ", ".join(f"{r.view} {r.grade} (line {r.line})" for r in by_view.values())
      skip(first, names, patient, "grade_mismatch", f"visit {visit!r} has photos with different grades: {detail}")
      continue
    absent = [v for v in views if v not in by_view]
    if absent:
      skip(first, names, patient, "incomplete_visit",
           f"visit {visit!r} lacks the {', '.join(absent)} view{'s' if len(absent) > 1 else ''} (has {', '.join(sorted(by_view)) or 'none'})")
      continue
    visits.append(GradedVisit(patient=patient, visit=visit, grade=by_view[views[0]].grade,
                              images={v: by_view[v].path for v in views}, lines=tuple(by_view[v].line for v in views)))
  table = GradesTable(folder=folder, views=views, visits=visits, skipped=skipped)
  if not visits:
    raise ValueError(f"{path}: no usable visit.\n{table.summary()}")
  return table


def write_grades_csv(path: str, rows: Iterable[Mapping[str, object]], with_views: bool = True) -> None:
  """Writes ``grades.csv`` rows (``image``, ``patient``, ``grade`` and, ``with_views``, ``visit``, ``view``)."""
  columns = list(REQUIRED_COLUMNS) + (["visit", "view"] if with_views else [])
  with open(path, "w", newline="", encoding="utf-8") as f:
    writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
      writer.writerow(row)
