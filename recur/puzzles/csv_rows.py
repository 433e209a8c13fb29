"""The rows of a puzzle CSV in the public `source,q,a[,rating]` layout."""
from __future__ import annotations

import csv

__all__ = ["read_rows"]


def read_rows(path: str) -> tuple[list[list[str]], bool]:
  """(rows without the header, whether every row has an answer `a`)."""
  with open(path, newline="", encoding="utf-8") as f:
    rows = [r for i, r in enumerate(csv.reader(f))
            if not (i == 0 and r and r[0] == "source")]
  return rows, bool(rows) and all(len(r) >= 3 and r[2].strip() for r in rows)
