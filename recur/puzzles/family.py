"""What a puzzle family provides: `PuzzleFamily` and the `Evaluator` contract.

A family (ARC, Sudoku, Maze, the algorithmic tasks, or one of yours) is one
folder holding its sources, augmentation, reading, scoring, decoding and
drawing, and one `PuzzleFamily` value that names them; `recur.puzzles.registry`
maps names to families. Code outside the family (evaluation, the report,
`experiments.solve`, prepared datasets) only talks to these fields, so it never
has to guess which family a source belongs to: a source says so in
`DatasetInfo.family`.

The hooks, all but `name`, `sources` and `evaluator` optional:

  sources      {source name: factory(**kwargs) -> PuzzleSource}; the names
               `recur.data.make_source` knows.
  evaluator    evaluator(source, split) -> Evaluator: scores predictions made
               on that split of that source.
  decode       decode(source_or_None, tokens [seq_len]) -> a JSON-able answer
               (a grid as nested lists, a sequence) for `experiments.solve`.
  draw         draw(source, sample, workdir) -> [file names]: the family's
               pictures of a finished run (`experiments.report`); `sample`
               is a `PredictionSample`.
  read_puzzles read_puzzles(path, seq_len, options) -> `PuzzleFile`: the
               puzzles of a user's file for `experiments.solve`.
  claims_file  claims_file(path) -> bool: whether a file of unknown family
               holds this family's puzzles (solve with --kind=auto).
  solve_tasks  solve_tasks(cfg, params, path, **knobs) -> (outputs, details):
               for families whose files hold tasks with demonstrations
               (ARC) rather than puzzles to read (`read_puzzles`): fit, then
               predict; `experiments.solve` writes both (ARC:
               `recur.puzzles.arc.solve.solve_tasks`).
  prepared     a `PreparedHooks`: what a stored (TFDS / prepared) copy
               keeps beyond the examples so the evaluator and drawer work on it.
"""
from __future__ import annotations

import abc
import dataclasses
from typing import Any, Callable, Mapping, Sequence

import numpy as np

__all__ = ["Evaluator", "PuzzleFamily", "PreparedHooks", "PredictionSample",
           "PuzzleFile"]


class Evaluator(abc.ABC):
  """Accumulates the predictions of one split and turns them into metrics.

  `add_batch` gets host arrays of one evaluation batch:
    batch:   inputs, labels [B, seq_len]; group, version, index, mask [B]
             (mask False = a padding row, to be ignored)
    outputs: preds [B, seq_len]; q_halt_logits [B]
  `result()` returns scalar metrics (names without the "eval/" prefix).
  `write_files(workdir)` writes what the family produces beside the metrics
  (ARC: submission.json) and returns the file names.
  """

  @abc.abstractmethod
  def add_batch(self, batch: Mapping[str, np.ndarray],
                outputs: Mapping[str, np.ndarray]) -> None:
    """Adds one batch of predictions."""

  @abc.abstractmethod
  def result(self) -> dict[str, Any]:
    """The metrics so far."""

  def write_files(self, workdir: str) -> list[str]:
    del workdir
    return []


@dataclasses.dataclass(frozen=True)
class PredictionSample:
  """A model's predictions on the first rows of a test split, every step kept
  (what `experiments.report` draws from).

    meta: inputs, labels [B, seq_len]; group, version, index [B] (real rows only)
    out: preds_per_step [T, B, seq_len], exact_per_step [T, B],
         q_halt_per_step [T, B]
    trained_steps: the supervision steps the model was trained with (<= T).
  """
  meta: Mapping[str, np.ndarray]
  out: Mapping[str, np.ndarray]
  trained_steps: int


@dataclasses.dataclass(frozen=True)
class PuzzleFile:
  """Puzzles read from a user's file for inference (`experiments.solve`).

    names: one name per puzzle (the CSV `source` column, a task id, ...)
    inputs: int32 [N, seq_len] encoded inputs
    labels: int32 [N, seq_len] encoded answers, or None when the file has none
    rejected: (row, reason) of each puzzle left out as invalid or unsolvable
      (options["skip_bad"], solve's default), reported per puzzle
  """
  names: Sequence[str]
  inputs: np.ndarray
  labels: np.ndarray | None
  rejected: Sequence[tuple[int, str]] = ()


@dataclasses.dataclass(frozen=True)
class PreparedHooks:
  """What a stored copy of a family's source (a TFDS dataset written by the
  `recur.tfds` builders, `recur.data.prepared.prepare` included) keeps beyond
  the examples, and how it is served back.

    attributes(source) -> JSON-able dict kept in the dataset's metadata.json
      (e.g. Sudoku's box), read back as the stored source's `attributes`.
    write(source, split, num_versions) -> JSON-able dict (or None) merged into
      the split's entry of metadata.json, read back as `extras(split)`; e.g.
      ARC's per-version augmentations (one row per stored version, in record
      order) and per-group raw pairs. `num_versions[g]` versions are stored
      for group g.
    view(stored) -> the PuzzleSource handed to users: the stored source
      (`recur.data.tfds_source.TfdsSource`) wrapped so the family's evaluator
      and drawer work on it (e.g. `recur.puzzles.arc.prepared.PreparedArcSource`).
  """
  attributes: Callable[[Any], dict[str, Any]] = lambda source: {}
  write: Callable[[Any, str, Sequence[int]], dict[str, Any] | None] | None = None
  view: Callable[[Any], Any] | None = None


@dataclasses.dataclass(frozen=True)
class PuzzleFamily:
  """One puzzle family; see the module docstring for each hook."""
  name: str
  sources: Mapping[str, Callable[..., Any]]
  evaluator: Callable[[Any, str], Evaluator]
  decode: Callable[[Any, np.ndarray], Any] | None = None
  draw: Callable[[Any, PredictionSample, str], list[str]] | None = None
  read_puzzles: Callable[[str, int, Mapping[str, Any]], PuzzleFile] | None = None
  claims_file: Callable[[str], bool] | None = None
  solve_tasks: Callable[..., tuple[Any, Any]] | None = None
  prepared: PreparedHooks = PreparedHooks()
  # Source classes of this family (`registry.family_of_class`).
  source_classes: tuple[str, ...] = ()
