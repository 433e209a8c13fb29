"""The Sudoku family (any n x n board with a rectangular box).

  source.py    encoding, generator + solver, the rules (solved_mask),
               augmentation, CSV reading; SudokuSource
  evaluate.py  validity; SudokuEvaluator; decode_answer
  read.py      a user's CSV for experiments.solve
  draw.py      boards and the run pictures
"""
from __future__ import annotations

from typing import Any

from recur.data.prepared import PreparedView
from recur.puzzles.family import PreparedHooks, PuzzleFamily
from recur.puzzles.sudoku import draw, read
from recur.puzzles.sudoku.evaluate import SudokuEvaluator, decode_answer
from recur.puzzles.sudoku.source import SudokuSource


def _source(**kwargs: Any) -> SudokuSource:
  """From CSV files when `path` is given, else generated."""
  if "path" in kwargs:
    return SudokuSource.from_csv(**kwargs)
  return SudokuSource.generated(**kwargs)


class PreparedSudokuSource(PreparedView):
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
