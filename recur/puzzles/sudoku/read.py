"""Sudoku puzzles from a user's CSV for inference (`experiments.solve`).

The public `source,q,a,rating` layout; `a` may be empty in every row, then
only the questions are read: checked for length and digits, clues that clash
(a digit twice in a row, column or box) and boards with no solution. A bad
puzzle is left out and reported per puzzle (`PuzzleFile.rejected`) when
options["skip_bad"] (solve's default), else it is a DataError naming file,
row and field.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from recur.puzzles.csv_rows import read_questions, read_rows, row_reason
from recur.puzzles.family import PuzzleFile
from recur.puzzles.sudoku.source import count_solutions, encode_sudoku, read_sudoku_csv

__all__ = ["default_box", "clue_error", "read_puzzles", "claims_file"]


def default_box(side: int) -> tuple[int, int]:
  """The usual box of an n x n board (n x 1 when n has no usual box)."""
  return {4: (2, 2), 6: (2, 3), 9: (3, 3)}.get(side, (side, 1))


def clue_error(digits: np.ndarray, box: tuple[int, int]) -> str | None:
  """Why a board of clues [n, n] (0 = blank) cannot be solved, else None."""
  n = digits.shape[0]
  units = [("row", i, digits[i]) for i in range(n)]
  units += [("column", i, digits[:, i]) for i in range(n)]
  bands = digits.reshape(n // box[0], box[0], n // box[1], box[1])
  units += [("box", i, bands[i // (n // box[1]), :, i % (n // box[1])].reshape(-1))
            for i in range(n)]
  for kind, i, cells in units:
    given = cells[cells > 0]
    values, counts = np.unique(given, return_counts=True)
    if (counts > 1).any():
      return f"clues clash: {int(values[counts > 1][0])} twice in {kind} {i}"
  if count_solutions(digits, box, limit=1) == 0:
    return "no solution (unsolvable clues)"
  return None


def read_puzzles(path: str, seq_len: int, options: Mapping[str, Any]) -> PuzzleFile:
  """Puzzles of a side x side model (seq_len = side^2); options["box"] is the
  box shape (default: `default_box`), options["skip_bad"] leaves bad puzzles
  out, reported in `rejected`."""
  side = math.isqrt(seq_len)
  b0, b1 = (int(b) for b in options.get("box") or default_box(side))
  box = (b0, b1)
  skip_bad = bool(options.get("skip_bad"))
  rows, has_answers = read_rows(path)
  if has_answers:
    p = read_sudoku_csv(path, box=box, skip_bad=skip_bad)
    assert p.sources is not None  # read_sudoku_csv keeps the source column
    return PuzzleFile(list(p.sources), encode_sudoku(p.questions).reshape(len(p), -1),
                      encode_sudoku(p.answers).reshape(len(p), -1),
                      [row_reason(r) for r in p.skipped])

  def question(text: str) -> tuple[np.ndarray | None, str | None]:
    try:
      digits = np.asarray([0 if ch in ".0" else int(ch, 36) for ch in text])
    except ValueError as e:
      return None, str(e)
    why = (f"digit above {side}" if digits.max() > side else
           clue_error(digits.reshape(side, side), box))
    return (None, why) if why else (encode_sudoku(digits), None)

  return read_questions(path, rows, side * side, question, skip_bad)


def claims_file(path: str) -> bool:
  """A CSV whose first question has no maze characters."""
  if not path.endswith(".csv"):
    return False
  rows, _ = read_rows(path)
  return not rows or (len(rows[0]) > 1 and "#" not in rows[0][1])
