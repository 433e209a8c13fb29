"""The ARC tasks of a solve run (a user's files) as a puzzle source.

`experiments.solve` fits new puzzle-embedding rows on the demonstrations
(split "train") and predicts the test inputs (split "test") of tasks that were
never part of a training set; `ArcTaskSet` presents them to the pipeline and
to `ArcEvaluator`.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from recur.data.base import DatasetInfo
from recur.puzzles.arc import augment as aa
from recur.puzzles.arc.source import _Collector, encode_examples, load_path

__all__ = ["ArcTaskSet", "load_tasks"]


class ArcTaskSet:
  """Tasks to solve as a puzzle source: split "train" = demonstrations,
  "test" = test inputs (labels IGNORE when the output is unknown). Versions
  are planned from the task's inputs and demonstration outputs only. It
  implements `ArcTasks`, so `ArcEvaluator` scores predictions on it."""

  def __init__(self, tasks, canvas: int, num_versions: int, seed: int = 0):
    self.tasks = list(tasks)
    self.canvas = canvas
    self.translate = True
    self._augs = []
    for t in self.tasks:
      grids = [g for p in t.train for g in (p.input, p.output)] + [p.input for p in t.test]
      self._augs.append(aa.generate_augmentations(grids, t.task_id, seed, num_versions))
    first = np.cumsum([0] + [len(a) for a in self._augs]) + 1   # 0 = blank
    self._first = first[:-1].tolist()
    self.info = DatasetInfo(name="arc:solve", seq_len=canvas * canvas,
                            vocab_size=aa.VOCAB_SIZE, num_puzzle_identifiers=int(first[-1]),
                            family="arc")

  def num_groups(self, split: str) -> int:
    return len(self.tasks)

  def num_versions(self, split: str, group: int) -> int:
    return len(self._augs[group])

  def pairs(self, split: str, group: int):
    t = self.tasks[group]
    return t.train if split == "train" else t.test

  def augmentation(self, split: str, group: int, version: int):
    return self._augs[group][version]

  def task_id(self, split: str, group: int) -> str:
    return self.tasks[group].task_id

  def group_name(self, split: str, group: int) -> str:
    return self.task_id(split, group)

  def describe(self) -> dict[str, Any]:
    return {"name": self.info.name, "tasks": len(self.tasks)}

  def examples(self, split: str, group: int, version: int, rng):
    return encode_examples(
        self.pairs(split, group), self._augs[group][version], self.canvas, rng,
        translate=self.translate and split == "train",
        puzzle_identifier=self._first[group] + version, group=group,
        version=version)


def load_tasks(path: str, skipped: dict[str, str] | None = None) -> list:
  """The tasks of a user's file: a task JSON, a directory of them or a Kaggle
  `*_challenges.json` (`source.load_path`), each task id once. With a
  `skipped` dict, an invalid task is left out and noted there (id -> why)
  instead of failing the whole file."""
  col = None if skipped is None else _Collector(True)
  subsets = load_path(path, _col=col)
  if col is not None:
    skipped.update(col.skipped)
  tasks, seen = [], set()
  for subset in subsets.values():
    for tid, t in subset.items():
      if tid not in seen:
        seen.add(tid)
        tasks.append(t)
  return tasks
