"""Mazes from a user's CSV for inference (`experiments.solve`).

The public `source,q,a,rating` layout ('#' wall, ' ' free, 'S' start, 'G'
goal, 'o' path in `a`); `a` may be empty in every row, then only the mazes
are read.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from recur.data.base import DataError
from recur.puzzles.csv_rows import read_rows
from recur.puzzles.family import PuzzleFile
from recur.puzzles.maze.source import encode_maze, read_maze_csv

__all__ = ["read_puzzles", "claims_file"]


def read_puzzles(path: str, seq_len: int, options: Mapping[str, Any]) -> PuzzleFile:
  """Mazes of a side x side model (seq_len = side^2)."""
  del options
  side = math.isqrt(seq_len)
  rows, has_answers = read_rows(path)
  if has_answers:
    m = read_maze_csv(path, size=side)
    assert m.sources is not None  # read_maze_csv keeps the source column
    return PuzzleFile(list(m.sources), m.inputs.reshape(len(m), -1).astype(np.int32),
                      m.labels.reshape(len(m), -1).astype(np.int32))
  inputs = []
  for line, r in enumerate(rows, start=2):
    if len(r) < 2 or len(r[1]) != side * side:
      raise DataError(f"{path}: row {line}: field 'q': expected {side * side} "
                      "characters")
    try:
      inputs.append(encode_maze(r[1], side).reshape(-1).astype(np.int32))
    except ValueError as e:
      raise DataError(f"{path}: row {line}: field 'q': {e}") from e
  return PuzzleFile([r[0] for r in rows],
                    np.asarray(inputs, np.int32).reshape(len(rows), -1), None)


def claims_file(path: str) -> bool:
  """A CSV whose first question draws walls ('#')."""
  if not path.endswith(".csv"):
    return False
  rows, _ = read_rows(path)
  return bool(rows) and len(rows[0]) > 1 and "#" in rows[0][1]
