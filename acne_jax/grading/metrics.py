"""Grading metrics: accuracy, per-grade precision / recall / F1, confusion matrix, quadratic kappa.

The grading paper reports global accuracy, per-grade precision, recall and F1 (its Tables 3-4)
and row-normalised confusion matrices (its Figs. 5, 7-9); the issue adds Cohen's quadratically
weighted kappa, the usual agreement measure for ordinal grades. Conventions:

- confusion matrix rows are the true grade, columns the predicted grade (``cm[t, p]``);
- a ratio whose denominator is 0 (precision of a grade never predicted, recall of a grade absent
  from the truth, F1 where both are 0) is 0, as scikit-learn's ``zero_division=0``;
- kappa ``= 1 - sum(W O) / sum(W E)`` with ``W[i, j] = (i - j)^2 / (K - 1)^2``, ``O`` the
  confusion matrix and ``E`` the outer product of its row and column sums over ``N``; it is NaN
  where ``sum(W E) = 0`` (truth and predictions all one same grade), reported as ``null``.

NumPy only; every function takes plain integer labels.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np


def confusion_matrix(truth, predicted, num_classes: int) -> np.ndarray:
  """``[K, K]`` int64 counts, ``cm[t, p]`` = samples of true grade ``t`` predicted ``p``.

  Args:
    truth, predicted: ``[N]`` integer labels in ``[0, num_classes)``.

  Raises:
    ValueError: lengths differ, or a label is not an integer in range (naming its index).
  """
  truth = _labels(truth, num_classes, "truth")
  predicted = _labels(predicted, num_classes, "predicted")
  if truth.shape != predicted.shape:
    raise ValueError(f"confusion_matrix: truth has {truth.size} labels, predicted {predicted.size}.")
  cm = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(cm, (truth, predicted), 1)
  return cm


def _labels(labels, num_classes: int, name: str) -> np.ndarray:
  array = np.asarray(labels)
  if array.ndim != 1:
    raise ValueError(f"confusion_matrix: '{name}' must be a 1-D list of labels; got shape {list(array.shape)}.")
  if array.size == 0:
    return array.astype(np.int64)
  if not np.issubdtype(array.dtype, np.integer):
    if np.issubdtype(array.dtype, np.floating) and np.all(np.isfinite(array)) and np.all(array == np.round(array)):
      array = array.astype(np.int64)
    else:
      raise ValueError(f"confusion_matrix: '{name}' labels must be integers; got dtype {array.dtype}.")
  bad = np.flatnonzero((array < 0) | (array >= num_classes))
  if bad.size:
    raise ValueError(f"confusion_matrix: '{name}'[{bad[0]}] = {array[bad[0]]} is not a grade in [0, {num_classes}).")
  return array.astype(np.int64)


def _ratio(numerator, denominator) -> np.ndarray:
  numerator = np.asarray(numerator, np.float64)
  denominator = np.asarray(denominator, np.float64)
  return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)


def accuracy(cm: np.ndarray) -> float:
  """Fraction of correct grades (``trace / N``); 0 for no samples."""
  cm = np.asarray(cm)
  return float(_ratio(np.trace(cm), cm.sum()))


def precision_recall_f1(cm: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Per grade ``[K]`` float64 precision ``cm[k, k] / column k``, recall ``cm[k, k] / row k`` and
  their harmonic mean (0 where a denominator is 0)."""
  cm = np.asarray(cm, np.float64)
  hits = np.diag(cm)
  precision = _ratio(hits, cm.sum(axis=0))
  recall = _ratio(hits, cm.sum(axis=1))
  f1 = _ratio(2.0 * precision * recall, precision + recall)
  return precision, recall, f1


def quadratic_weighted_kappa(cm: np.ndarray) -> float:
  """Cohen's kappa with quadratic weights (see the module docstring); NaN when undefined."""
  cm = np.asarray(cm, np.float64)
  k = cm.shape[0]
  total = cm.sum()
  if total == 0 or k < 2:
    return math.nan
  index = np.arange(k)
  weights = (index[:, None] - index[None, :]) ** 2 / (k - 1) ** 2
  expected = np.outer(cm.sum(axis=1), cm.sum(axis=0)) / total
  denominator = float((weights * expected).sum())
  if denominator == 0.0:
    return math.nan
  return 1.0 - float((weights * cm).sum()) / denominator


def _json_float(value: float) -> Optional[float]:
  return None if not math.isfinite(value) else float(value)


def grading_report(truth, predicted, class_names: Sequence[str]) -> Dict[str, Any]:
  """Every metric of one set of grades as a JSON-serialisable dict.

  Args:
    truth, predicted: ``[N]`` integer grades in ``[0, K)``.
    class_names: ``K`` grade names (e.g. ``acne_jax.grading.scales.IGA_GROUP_NAMES``).

  Returns:
    ``{"num_samples", "accuracy", "quadratic_kappa" (None when undefined), "macro_f1",
    "per_grade": {name: {"precision", "recall", "f1", "support", "predicted"}},
    "class_names", "confusion_matrix" ([K][K] counts, rows = truth),
    "confusion_matrix_row_percent" ([K][K], each non-empty row sums to 100)}``.
  """
  names = list(class_names)
  cm = confusion_matrix(truth, predicted, len(names))
  precision, recall, f1 = precision_recall_f1(cm)
  rows = cm.sum(axis=1)
  return {
      "num_samples": int(cm.sum()),
      "accuracy": accuracy(cm),
      "quadratic_kappa": _json_float(quadratic_weighted_kappa(cm)),
      "macro_f1": float(f1.mean()) if names else 0.0,
      "per_grade": {
          name: {"precision": float(precision[k]), "recall": float(recall[k]), "f1": float(f1[k]),
                 "support": int(rows[k]), "predicted": int(cm[:, k].sum())}
          for k, name in enumerate(names)
      },
      "class_names": names,
      "confusion_matrix": cm.tolist(),
      "confusion_matrix_row_percent": (100.0 * _ratio(cm, rows[:, None] * np.ones_like(cm))).tolist(),
  }


def format_report(report: Dict[str, Any], title: str = "") -> str:
  """A printable table of :func:`grading_report`'s dict (per-grade rows as the paper's Table 3,
  then the confusion matrix with row percentages)."""
  names = report["class_names"]
  width = max([9] + [len(n) + 2 for n in names])
  kappa = report["quadratic_kappa"]
  lines = [title] if title else []
  lines.append(f"N {report['num_samples']}  accuracy {report['accuracy']:.4f}  macro F1 {report['macro_f1']:.4f}  "
               f"quadratic kappa {'undefined' if kappa is None else f'{kappa:.4f}'}")
  lines.append("grade".ljust(width) + "".join(h.rjust(11) for h in ("precision", "recall", "F1", "support")))
  for name in names:
    row = report["per_grade"][name]
    lines.append(name.ljust(width) + f"{row['precision']:11.2f}{row['recall']:11.2f}{row['f1']:11.2f}{row['support']:11d}")
  lines.append("confusion (rows = truth, columns = predicted; count (row %))")
  lines.append("".ljust(width) + "".join(n.rjust(14) for n in names))
  for name, counts, percents in zip(names, report["confusion_matrix"], report["confusion_matrix_row_percent"]):
    lines.append(name.ljust(width) + "".join(f"{c:6d} ({p:5.1f})".rjust(14) for c, p in zip(counts, percents)))
  return "\n".join(lines)
