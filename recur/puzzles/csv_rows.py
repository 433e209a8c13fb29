"""The rows of a puzzle CSV in the public `source,q,a[,rating]` layout, and
the shared reporting of rows skipped by `skip_bad`."""
from __future__ import annotations

import csv
import logging
from typing import Sequence

from recur.data.base import DataError

__all__ = ["read_rows", "report_skipped", "require_rows", "SHOWN_REASONS"]

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
