"""Sudoku puzzles from a user's CSV for inference (`experiments.solve`).

The public `source,q,a,rating` layout; `a` may be empty in every row, then
only the questions are read (checked for length and digits).
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from recur.data.base import DataError
from recur.puzzles.csv_rows import read_rows
from recur.puzzles.family import PuzzleFile
from recur.puzzles.sudoku.source import encode_sudoku, read_sudoku_csv

__all__ = ["default_box", "read_puzzles", "claims_file"]


def default_box(side: int) -> tuple[int, int]:
  """The usual box of an n x n board (n x 1 when n has no usual box)."""
  return {4: (2, 2), 6: (2, 3), 9: (3, 3)}.get(side, (side, 1))


def read_puzzles(path: str, seq_len: int, options: Mapping[str, Any]) -> PuzzleFile:
  """Puzzles of a side x side model (seq_len = side^2); options["box"] is the
  box shape (default: `default_box`)."""
  side = math.isqrt(seq_len)
  box = tuple(int(b) for b in options.get("box") or default_box(side))
  rows, has_answers = read_rows(path)
  if has_answers:
    p = read_sudoku_csv(path, box=box)
    assert p.sources is not None  # read_sudoku_csv keeps the source column
    return PuzzleFile(list(p.sources), encode_sudoku(p.questions).reshape(len(p), -1),
                      encode_sudoku(p.answers).reshape(len(p), -1))
  inputs = []
  for line, r in enumerate(rows, start=2):
    if len(r) < 2 or len(r[1]) != side * side:
      raise DataError(f"{path}: row {line}: field 'q': expected {side * side} "
                      "characters")
    try:
      digits = [0 if ch in ".0" else int(ch, 36) for ch in r[1]]
    except ValueError as e:
      raise DataError(f"{path}: row {line}: field 'q': {e}") from e
    if max(digits) > side:
      raise DataError(f"{path}: row {line}: field 'q': digit above {side}")
    inputs.append(encode_sudoku(np.asarray(digits)))
  return PuzzleFile([r[0] for r in rows],
                    np.asarray(inputs, np.int32).reshape(len(rows), -1), None)


def claims_file(path: str) -> bool:
  """A CSV whose first question has no maze characters."""
  if not path.endswith(".csv"):
    return False
  rows, _ = read_rows(path)
  return not rows or (len(rows[0]) > 1 and "#" not in rows[0][1])
