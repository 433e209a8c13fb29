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

from recur.data.base import DataError
from recur.puzzles.csv_rows import read_rows, report_skipped
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
    skipped = []
    for text in m.skipped:
      head, _, reason = text.partition(": ")
      skipped.append((int(head.split()[1]), reason))
    return PuzzleFile(list(m.sources), m.inputs.reshape(len(m), -1).astype(np.int32),
                      m.labels.reshape(len(m), -1).astype(np.int32), skipped)
  inputs: list[np.ndarray] = []
  names: list[str] = []
  rejected: list[tuple[int, str]] = []
  for line, r in enumerate(rows, start=2):
    why: str | None
    if len(r) < 2 or len(r[1]) != side * side:
      why = f"expected {side * side} characters"
    else:
      try:
        grid = encode_maze(r[1], side)
      except ValueError as e:
        why = str(e)
      else:
        why = question_error(grid)
    if why is None:
      inputs.append(grid.reshape(-1).astype(np.int32))
      names.append(r[0])
    elif skip_bad:
      rejected.append((line, f"field 'q': {why}"))
    else:
      raise DataError(f"{path}: row {line}: field 'q': {why}")
  report_skipped(path, [f"row {line}: {why}" for line, why in rejected])
  return PuzzleFile(names, np.asarray(inputs, np.int32).reshape(len(names), -1),
                    None, rejected)


def claims_file(path: str) -> bool:
  """A CSV whose first question draws walls ('#')."""
  if not path.endswith(".csv"):
    return False
  rows, _ = read_rows(path)
  return bool(rows) and len(rows[0]) > 1 and "#" in rows[0][1]
