"""ARC in a prepared dataset (`recur.data.prepared`).

Beside the examples, a prepared ARC dataset keeps what scoring needs to undo
an augmentation: each stored version's augmentation (`aug_dihedral` int8 [V]
and `aug_colours` uint8 [V, 10] in `{split}.index.npz`) and the raw pairs of
every group (arc_pairs.json, {split: [[[input, output or null], ...], ...]}).
`PreparedArcSource` reads them back and implements `ArcTasks`, so
`ArcEvaluator` and the ARC drawer work on the prepared copy as on the original.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from recur.data.base import DataError
from recur.data.pipeline import StoredRows
from recur.data.prepared import PreparedView
from recur.puzzles.arc import augment as aa
from recur.puzzles.arc.source import ArcPair
from recur.puzzles.family import PreparedHooks

__all__ = ["PreparedArcSource", "HOOKS", "PAIRS_FILE"]

PAIRS_FILE = "arc_pairs.json"


def _attributes(source) -> dict[str, Any]:
  return {"canvas": int(source.canvas)}


def _write(source, split: str, num_versions: Sequence[int]):
  """Per stored version its augmentation; per group its raw pairs."""
  dihedrals, colours, pairs = [], [], []
  for g, n in enumerate(num_versions):
    for v in range(n):
      aug = source.augmentation(split, g, v)
      dihedrals.append(aug.dihedral_id)
      colours.append(aug.colours)
    pairs.append([[p.input.tolist(), None if p.output is None else
                   p.output.tolist()] for p in source.pairs(split, g)])
  arrays = {"aug_dihedral": np.asarray(dihedrals, np.int8),
            "aug_colours": np.asarray(colours, np.uint8).reshape(-1, aa.NUM_COLOURS)}
  return arrays, pairs


class PreparedArcSource(StoredRows, PreparedView):
  """A prepared ARC dataset as `ArcTasks` (canvas, pairs, augmentation,
  task_id, scored_task_ids). Read on the pipeline's vectorised path, as
  `ArcSource`, so a copy of a source with translation fixed per version gives
  its batches."""

  def __init__(self, prepared):
    super().__init__(prepared)
    if not isinstance(self.attributes.get("canvas"), int):
      raise DataError(f"{self.path}: metadata field 'attributes.canvas' missing")
    self.canvas = int(self.attributes["canvas"])
    self._cache: dict[tuple[str, int], tuple[ArcPair, ...]] = {}
    for split in self.info.splits:
      groups = prepared.extras(split)
      if not isinstance(groups, list) or len(groups) != self.num_groups(split):
        raise DataError(f"{prepared.extras_file or PAIRS_FILE}: field '{split}' "
                        "missing or not one entry per group")
      arrays = prepared.index_arrays(split)
      rows = len(arrays["record_offsets"]) - 1
      for k in ("aug_dihedral", "aug_colours"):
        if arrays.get(k, np.zeros(0)).shape[:1] != (rows,):
          raise DataError(f"{prepared.index_file(split)}: field '{k}' missing "
                          "or not one row per version")

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
          for i, o in self.prepared.extras(split)[group])
    return self._cache[key]

  def augmentation(self, split: str, group: int, version: int
                   ) -> aa.Augmentation:
    row = self.prepared.row(split, group, version)
    arrays = self.prepared.index_arrays(split)
    return aa.Augmentation(int(arrays["aug_dihedral"][row]),
                           tuple(int(c) for c in arrays["aug_colours"][row]))


HOOKS = PreparedHooks(attributes=_attributes, write=_write,
                      extras_file=PAIRS_FILE, view=PreparedArcSource)
