"""The Maze family (square mazes, shortest path from S to G).

  source.py    encoding, generator, BFS labels, augmentation, CSV; MazeSource
  evaluate.py  path validity; MazeEvaluator; decode_answer
  read.py      a user's CSV for experiments.solve
  draw.py      mazes and the run pictures
"""
from __future__ import annotations

from typing import Any

from recur.data.prepared import PreparedRows
from recur.puzzles.family import PreparedHooks, PuzzleFamily
from recur.puzzles.maze import draw, read
from recur.puzzles.maze.evaluate import MazeEvaluator, decode_answer
from recur.puzzles.maze.source import MazeSource


# Options of the built-in generator that mean nothing for files (the test file
# is read whole; its mazes have the path lengths they have). A config carries
# them for both ways of making data, so they are dropped with a `path`.
_GENERATOR_ONLY = ("num_test", "min_path_length", "extra_openings", "cache_dir")


def _source(**kwargs: Any) -> MazeSource:
  """From CSV files when `path` is given, else generated."""
  if "path" in kwargs:
    kwargs = {k: v for k, v in kwargs.items() if k not in _GENERATOR_ONLY}
    return MazeSource.from_csv(**kwargs)
  return MazeSource.generated(**kwargs)


class PreparedMazeSource(PreparedRows):
  """A prepared Maze dataset (read on the pipeline's vectorised path, as the
  generator's mazes are)."""


FAMILY = PuzzleFamily(
    name="maze", sources={"maze": _source},
    evaluator=lambda source, split: MazeEvaluator(),
    decode=decode_answer, draw=draw.draw_run, read_puzzles=read.read_puzzles,
    claims_file=read.claims_file,
    prepared=PreparedHooks(attributes=lambda source: {"size": source.size},
                           view=PreparedMazeSource),
    source_classes=("MazeSource",))
