"""ARC in a stored dataset (the `recur_arc` TFDS builder, `recur.data.prepared`).

Beside the examples, a stored ARC dataset keeps what scoring needs to undo an
augmentation, in each split's entry of metadata.json: `augmentations`, one row
[dihedral id, colour 0..9] per stored version in record order, and `pairs`,
the raw pairs of every group ([[input, output or null], ...]).
`PreparedArcSource` reads them back and implements `ArcTasks`, so
`ArcEvaluator` and the ARC drawer work on the stored copy as on the original.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from recur.data.base import DataError
from recur.data.prepared import PreparedRows
from recur.puzzles.arc import augment as aa
from recur.puzzles.arc.source import ArcPair
from recur.puzzles.family import PreparedHooks

__all__ = ["PreparedArcSource", "HOOKS"]


def _attributes(source) -> dict[str, Any]:
  return {"canvas": int(source.canvas)}


def _write(source, split: str, num_versions: Sequence[int]) -> dict[str, Any]:
  """Per stored version its augmentation; per group its raw pairs."""
  augs, pairs = [], []
  for g, n in enumerate(num_versions):
    for v in range(n):
      aug = source.augmentation(split, g, v)
      augs.append([int(aug.dihedral_id)] + [int(c) for c in aug.colours])
    pairs.append([[p.input.tolist(), None if p.output is None else
                   p.output.tolist()] for p in source.pairs(split, g)])
  return {"augmentations": augs, "pairs": pairs}


class PreparedArcSource(PreparedRows):
  """A stored ARC dataset as `ArcTasks` (canvas, pairs, augmentation,
  task_id, scored_task_ids). Read on the pipeline's vectorised path, as
  `ArcSource`, so a copy of a source with translation fixed per version gives
  its batches."""

  def __init__(self, stored):
    super().__init__(stored)
    if not isinstance(self.attributes.get("canvas"), int):
      raise DataError(f"{self.path}: metadata field 'attributes.canvas' missing")
    self.canvas = int(self.attributes["canvas"])
    self._cache: dict[tuple[str, int], tuple[ArcPair, ...]] = {}
    self._augs: dict[str, np.ndarray] = {}
    for split in self.info.splits:
      extras = stored.extras(split)
      groups, augs = extras.get("pairs"), extras.get("augmentations")
      if not isinstance(groups, list) or len(groups) != self.num_groups(split):
        raise DataError(f"{self.path}: metadata field 'splits.{split}.pairs' "
                        "missing or not one entry per group")
      rows = sum(self.num_versions(split, g) for g in range(self.num_groups(split)))
      augs = np.asarray(augs if augs is not None else [], np.int64)
      if augs.shape != (rows, 1 + aa.NUM_COLOURS):
        raise DataError(f"{self.path}: metadata field 'splits.{split}."
                        "augmentations' missing or not one row per version")
      self._augs[split] = augs

  def task_id(self, split: str, group: int) -> str:
    return self.group_name(split, group)

  def scored_task_ids(self, split: str = "test") -> list[str]:
    return [self.group_name(split, g) for g in range(self.num_groups(split))]

  def test_pairs(self, task_id: str) -> tuple[ArcPair, ...]:
    return self.pairs("test", self.scored_task_ids("test").index(task_id))

  def pairs(self, split: str, group: int) -> tuple[ArcPair, ...]:
    """Raw (un-augmented) `ArcPair`s of a group, in example-index order."""
    key = (split, group)
    if key not in self._cache:
      if not 0 <= group < self.num_groups(split):
        raise IndexError(f"group {group} out of range for split {split!r}")
      self._cache[key] = tuple(
          ArcPair(np.asarray(i, np.uint8),
                  None if o is None else np.asarray(o, np.uint8))
          for i, o in self.stored.extras(split)["pairs"][group])
    return self._cache[key]

  def augmentation(self, split: str, group: int, version: int
                   ) -> aa.Augmentation:
    row = self._augs[split][self.stored.row(split, group, version)]
    return aa.Augmentation(int(row[0]), tuple(int(c) for c in row[1:]))


HOOKS = PreparedHooks(attributes=_attributes, write=_write, view=PreparedArcSource)
