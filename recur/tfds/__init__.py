"""TFDS datasets of recur (array_record; TensorFlow not needed).

Importing this package registers the builders `recur_arc`, `recur_sudoku` and
`recur_maze` (see `recur.tfds.builders`), so `tfds.builder`,
`tfds.data_source` and `tfds build` find them by name:

    import recur.tfds, tensorflow_datasets as tfds
    recur.tfds.builder("recur_sudoku/smoke", data_dir=DIR).download_and_prepare()
    train = tfds.data_source("recur_sudoku/smoke", data_dir=DIR)["train"]

Experiments train on a built dataset with `--config.data.source=tfds
--config.data.name=recur_sudoku/smoke --config.data.data_dir=DIR`
(`recur.data.make_source("tfds", builder=..., data_dir=...)`,
`recur.data.tfds_source.TfdsSource`). `recur_prepared` writes any source object
(`recur.data.prepared.prepare`). Needs `pip install recur[tfds]`.
"""
from __future__ import annotations

import tensorflow_datasets as tfds

from recur.tfds.builders import (PuzzleBuilder, PuzzleConfig, RecurArc, RecurMaze,
                                 RecurPrepared, RecurSudoku)

__all__ = ["PuzzleBuilder", "PuzzleConfig", "RecurArc", "RecurMaze", "RecurPrepared",
           "RecurSudoku", "builder"]


def builder(name: str, *, data_dir: str | None = None, **kwargs):
  """`tfds.builder(name, data_dir=...)` for one of recur's builders."""
  return tfds.builder(name, data_dir=data_dir, **kwargs)
