"""The contract every puzzle dataset in recur follows.

A dataset is a set of *groups* (an original puzzle or ARC task) per split. A group
has one or more *versions* (augmentations: version 0 is the identity) and each
version yields one or more *examples* already encoded as fixed-length token
sequences. Every version of every group has its own puzzle identifier (row of the
puzzle-embedding table); identifier 0 is reserved for "blank" (unknown puzzle).

The input pipeline (`recur.data.pipeline`) only talks to this interface, so ARC,
Sudoku, Maze and the algorithmic tasks share one loader, one epoch semantics and
one resumable iterator state.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Protocol, Sequence

import numpy as np

IGNORE_LABEL_ID = -100
PAD_ID = 0
BLANK_PUZZLE_ID = 0

__all__ = ["IGNORE_LABEL_ID", "PAD_ID", "BLANK_PUZZLE_ID", "DatasetInfo", "Example",
           "examples_from_rows", "PuzzleSource", "DataError"]


class DataError(ValueError):
  """Bad input data. The message names the file, the task/row and the field."""


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What a model needs to know about a dataset: name, seq_len, vocab_size
  (PAD=0 included), rows of the puzzle table, and the rest of its description."""
  name: str
  seq_len: int                 # tokens per example (inputs and labels)
  vocab_size: int              # including PAD=0
  num_puzzle_identifiers: int  # rows of the puzzle-embedding table, id 0 = blank
  splits: tuple[str, ...] = ("train", "test")
  # The puzzle family (`recur.puzzles.registry`) that scores, decodes and draws
  # these examples; "" = none declared: token accuracy only.
  family: str = ""


@dataclasses.dataclass(frozen=True)
class Example:
  """One example: `inputs` and `labels` int32 [seq_len] (labels IGNORE_LABEL_ID
  where not scored), its puzzle identifier and group."""
  inputs: np.ndarray           # int32 [seq_len]
  labels: np.ndarray           # int32 [seq_len], IGNORE_LABEL_ID where not scored
  puzzle_identifier: int
  group: int                   # index of the group within its split
  version: int                 # augmentation version (0 = identity)
  index: int                   # example index within the version


def examples_from_rows(rows: dict[str, np.ndarray], group: int,
                       version: int) -> list[Example]:
  """The rows of one version as `encode_rows` returns them (row i = example
  index i) as Examples: how sources with a vectorised path give `examples`."""
  return [Example(inputs=rows["inputs"][i], labels=rows["labels"][i],
                  puzzle_identifier=int(rows["puzzle_identifiers"][i]),
                  group=group, version=version, index=i)
          for i in range(len(rows["inputs"]))]


class PuzzleSource(Protocol):
  """What a dataset provides. Implementations must be deterministic: the same
  (split, group, version, rng state) always gives the same examples."""

  info: DatasetInfo

  def num_groups(self, split: str) -> int: ...

  def num_versions(self, split: str, group: int) -> int: ...

  def examples(self, split: str, group: int, version: int,
               rng: np.random.Generator) -> Sequence[Example]:
    """Encoded examples of one version of one group. `rng` drives per-epoch
    randomness that is not part of the version (e.g. ARC translation)."""
    ...

  def group_name(self, split: str, group: int) -> str: ...

  def describe(self) -> dict[str, Any]: ...
