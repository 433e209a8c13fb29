"""The rows of a puzzle CSV in the public `source,q,a[,rating]` layout, and
the shared reporting of rows skipped by `skip_bad`."""
from __future__ import annotations

import csv
import logging
from typing import Callable, Sequence

import numpy as np

from recur.data.base import DataError

__all__ = ["read_rows", "report_skipped", "require_rows", "row_reason",
           "read_questions", "SHOWN_REASONS"]

SHOWN_REASONS = 3   # reasons logged per file; the count covers all of them

_log = logging.getLogger("recur.data")


def read_rows(path: str) -> tuple[list[list[str]], bool]:
  """(rows without the header, whether every row has an answer `a`); an empty
  file is a DataError naming it."""
  try:
    with open(path, newline="", encoding="utf-8") as f:
      rows = [r for i, r in enumerate(csv.reader(f))
              if not (i == 0 and r and r[0] == "source")]
  except OSError as e:
    raise DataError(f"{path}: cannot open: {e}") from e
  rows = [r for r in rows if r]   # blank lines are no puzzles
  require_rows(path, len(rows), 0)
  return rows, all(len(r) >= 3 and r[2].strip() for r in rows)


def require_rows(path: str, num_good: int, num_bad: int, what: str = "puzzle") -> None:
  """An empty file (or one whose every row was skipped) is an error naming
  it: training or scoring on zero examples would report nonsense."""
  if num_good:
    return
  if num_bad:
    raise DataError(f"{path}: no valid {what} rows ({num_bad} bad row(s) skipped)")
  raise DataError(f"{path}: no {what} rows (empty file)")


def report_skipped(path: str, reasons: Sequence[str]) -> None:
  """Logs how many rows `skip_bad` dropped from `path` and the first few
  reasons (skipping silently hides a broken export)."""
  if not reasons:
    return
  shown = "; ".join(reasons[:SHOWN_REASONS])
  more = f" (and {len(reasons) - SHOWN_REASONS} more)" if len(reasons) > SHOWN_REASONS else ""
  _log.warning("%s: skipped %d bad row(s): %s%s", path, len(reasons), shown, more)


def row_reason(text: str) -> tuple[int, str]:
  """A skipped row's reason "row L: why" -> (L, why)."""
  head, _, why = text.partition(": ")
  return int(head.split()[1]), why


def read_questions(path: str, rows: Sequence[Sequence[str]], length: int,
                   encode: Callable[[str], tuple[np.ndarray | None, str | None]],
                   skip_bad: bool):
  """A `PuzzleFile` of answerless rows (source, q): `encode(q)` gives the
  tokens [length] or why the question is bad. A bad row raises DataError
  naming file, row and field, or with `skip_bad` is left out and listed in
  `rejected` (reported once with the first reasons)."""
  from recur.puzzles.family import PuzzleFile  # pylint: disable=g-import-not-at-top
  inputs: list[np.ndarray] = []
  names: list[str] = []
  rejected: list[tuple[int, str]] = []
  for line, r in enumerate(rows, start=2):
    tokens: np.ndarray | None = None
    if len(r) < 2 or len(r[1]) != length:
      why: str | None = f"expected {length} characters"
    else:
      tokens, why = encode(r[1])
    if why is None and tokens is not None:
      inputs.append(tokens)
      names.append(r[0])
    elif skip_bad:
      rejected.append((line, f"field 'q': {why}"))
    else:
      raise DataError(f"{path}: row {line}: field 'q': {why}")
  report_skipped(path, [f"row {line}: {why}" for line, why in rejected])
  return PuzzleFile(names, np.asarray(inputs, np.int32).reshape(len(names), -1),
                    None, rejected)

