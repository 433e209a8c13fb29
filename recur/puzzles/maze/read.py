"""Mazes from a user's CSV for inference (`experiments.solve`).

The public `source,q,a,rating` layout ('#' wall, ' ' free, 'S' start, 'G'
goal, 'o' path in `a`); `a` may be empty in every row, then only the mazes
are read (checked: one 'S', one 'G', a way from S to G). A bad maze is left
out and reported per puzzle (`PuzzleFile.rejected`) when options["skip_bad"]
(solve's default), else it is a DataError naming file, row and field.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from recur.puzzles.csv_rows import read_questions, read_rows, row_reason
from recur.puzzles.family import PuzzleFile
from recur.puzzles.maze.source import encode_maze, question_error, read_maze_csv

__all__ = ["read_puzzles", "claims_file"]


def read_puzzles(path: str, seq_len: int, options: Mapping[str, Any]) -> PuzzleFile:
  """Mazes of a side x side model (seq_len = side^2)."""
  side = math.isqrt(seq_len)
  skip_bad = bool(options.get("skip_bad"))
  rows, has_answers = read_rows(path)
  if has_answers:
    m = read_maze_csv(path, size=side, skip_bad=skip_bad)
    assert m.sources is not None  # read_maze_csv keeps the source column
    return PuzzleFile(list(m.sources), m.inputs.reshape(len(m), -1).astype(np.int32),
                      m.labels.reshape(len(m), -1).astype(np.int32),
                      [row_reason(t) for t in m.skipped])

  def question(text: str) -> tuple[np.ndarray | None, str | None]:
    try:
      grid = encode_maze(text, side)
    except ValueError as e:
      return None, str(e)
    why = question_error(grid)
    return (None, why) if why else (grid.reshape(-1).astype(np.int32), None)

  return read_questions(path, rows, side * side, question, skip_bad)


def claims_file(path: str) -> bool:
  """A CSV whose first question draws walls ('#')."""
  if not path.endswith(".csv"):
    return False
  rows, _ = read_rows(path)
  return bool(rows) and len(rows[0]) > 1 and "#" in rows[0][1]
