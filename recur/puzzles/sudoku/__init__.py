"""The Sudoku family (any n x n board with a rectangular box).

  source.py    encoding, generator + solver, the rules (solved_mask),
               augmentation, CSV reading; SudokuSource
  evaluate.py  validity; SudokuEvaluator; decode_answer
  read.py      a user's CSV for experiments.solve
  draw.py      boards and the run pictures
"""
from __future__ import annotations

from typing import Any

from recur.data.prepared import PreparedRows
from recur.puzzles.family import PreparedHooks, PuzzleFamily
from recur.puzzles.sudoku import draw, read
from recur.puzzles.sudoku.evaluate import SudokuEvaluator, decode_answer
from recur.puzzles.sudoku.source import SudokuSource


# Options of the built-in generator that mean nothing for files (the test file
# is read whole; its puzzles have their own blanks). A config carries them for
# both ways of making data, so they are dropped, not refused, with a `path`.
_GENERATOR_ONLY = ("num_test", "num_blanks", "cache_dir")


def _source(**kwargs: Any) -> SudokuSource:
  """From CSV files when `path` is given, else generated. With files,
  `min_rating` keeps rows whose `rating` column is >= it (the reference's
  `min_difficulty`; 0 keeps every row)."""
  if "path" in kwargs:
    kwargs = {k: v for k, v in kwargs.items() if k not in _GENERATOR_ONLY}
    min_rating = kwargs.pop("min_rating", None)
    if min_rating and "min_difficulty" not in kwargs:
      kwargs["min_difficulty"] = int(min_rating)
    return SudokuSource.from_csv(**kwargs)
  return SudokuSource.generated(**kwargs)


class PreparedSudokuSource(PreparedRows):
  """A prepared Sudoku dataset; `box` as on the original."""

  @property
  def box(self) -> tuple[int, int]:
    rows, cols = (int(b) for b in self.attributes["box"])
    return rows, cols


FAMILY = PuzzleFamily(
    name="sudoku", sources={"sudoku": _source},
    evaluator=lambda source, split: SudokuEvaluator(box=source.box),
    decode=decode_answer, draw=draw.draw_run, read_puzzles=read.read_puzzles,
    claims_file=read.claims_file,
    prepared=PreparedHooks(
        attributes=lambda source: {"box": list(source.box), "n": source.n},
        view=PreparedSudokuSource),
    source_classes=("SudokuSource",))
