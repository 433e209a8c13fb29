"""ARC scoring: voting over augmented versions, pass@K and the submission file.

Procedure (reference `evaluators/arc.py`): each predicted board is cropped to the
largest top-left rectangle of colour tokens, shifted back to colours 0..9, and
un-augmented (inverse colour permutation, inverse dihedral transform). Votes are
pooled per (task, test input) across all versions of the task. Candidates rank
by vote count, then by mean sigmoid(q_halt) over their votes, then by first
arrival (the reference's stable sort). A test input is solved at K when the true
output is among its top K candidates; a task scores the mean over its test
inputs; pass@K is the mean over all scored tasks (tasks or inputs without any
prediction count as 0).

Feeding: for every batch, pass the `group`, `version` and `index` of each row
(the fields of `recur.data.base.Example`), the predicted tokens, q_halt logits
and a mask of real (non-padding) rows:

  ev = ArcEvaluator(source)
  for batch, out in ...:
    ev.update(batch["group"], batch["version"], batch["index"], out["preds"],
              out["q_halt_logits"], batch["mask"])
  metrics = ev.result()            # {"pass@1": ..., "pass@2": ..., ...}
  ev.write_submission("submission.json")

Votes across evaluations: TRM's evaluator (`aggregated_voting=True`, its
default) never clears its votes, so each pass@K it logs, the final one
included, pools the votes of every evaluation of the run so far. `votes_state()`
/ `add_votes(state)` carry votes between evaluators (and, as JSON, through a
checkpoint); `experiments.evaluation` reports both that pooled score and the
current weights' own.

Task score: `task_score="mean"` (TRM's evaluator) scores a task by the fraction
of its test inputs solved; `"all"` (HRM's ARC notebook) scores it 1 only when
every test input is solved.

Submission: `{task_id: [{"attempt_1": grid, "attempt_2": grid}, ...]}`, one entry
per test input in order. With a single candidate both attempts are that
candidate (as the reference); with none, or an empty crop, the grid is [[0]]
(the reference drops the entry, which misaligns later test inputs).
"""
from __future__ import annotations

import json
import os
from typing import Any, Mapping, Protocol, Sequence

import numpy as np

from recur.data.base import DataError
from recur.files import write_json_atomic
from recur.puzzles.arc import augment as aa
from recur.puzzles.family import Evaluator
from recur.puzzles.scoring import sigmoid

__all__ = ["ArcTasks", "ArcEvaluator", "validate_submission",
           "SUBMISSION_ATTEMPTS", "EMPTY_GRID", "SUBMISSION_FILE", "VOTES_FORMAT",
           "TASK_SCORES"]

VOTES_FORMAT = "recur.arc.votes/1"
TASK_SCORES = ("mean", "all")

SUBMISSION_ATTEMPTS = 2
EMPTY_GRID = [[0]]
SUBMISSION_FILE = "submission.json"


class ArcTasks(Protocol):
  """What ARC scoring and drawing need from a source: the raw pairs of each
  group and the augmentation of each version, to un-augment predictions and
  compare them with the truth. `ArcSource`, a prepared ARC dataset
  (`recur.puzzles.arc.prepared.PreparedArcSource`) and the tasks of a solve
  run (`recur.puzzles.arc.tasks.ArcTaskSet`) implement it."""

  canvas: int

  def num_groups(self, split: str) -> int: ...

  def pairs(self, split: str, group: int) -> Sequence[Any]:
    """Raw `ArcPair`s (input, output or None) in example-index order."""
    ...

  def augmentation(self, split: str, group: int, version: int
                   ) -> aa.Augmentation: ...

  def task_id(self, split: str, group: int) -> str: ...


class ArcEvaluator(Evaluator):
  """Accumulates predictions of one split of an `ArcSource` and scores them.

  Args:
    source: the `ArcTasks` (e.g. an `ArcSource`) the predictions were made on.
    split: which split's groups `update` refers to ("test": scored test inputs;
      "train": every example of each group is a target).
    pass_ks: the K of pass@K.
    task_score: "mean" (a task scores the fraction of its test inputs solved,
      TRM's evaluator) or "all" (1 only if all are solved, HRM's notebook).
  """

  def __init__(self, source, split: str = "test",
               pass_ks: Sequence[int] = (1, 2, 5, 10, 100, 1000),
               task_score: str = "mean"):
    if task_score not in TASK_SCORES:
      raise ValueError(f"task_score must be one of {TASK_SCORES}, got "
                       f"{task_score!r}")
    self.task_score = task_score
    self.source = source
    self.split = split
    self.pass_ks = tuple(int(k) for k in pass_ks)
    self.canvas = source.canvas
    self._num_groups = source.num_groups(split)
    self.reset()

  def reset(self) -> None:
    # (group, index) -> {grid key: [votes, sum of sigmoid(q)]}, arrival order.
    self._votes: dict[tuple[int, int], dict[bytes, list[float]]] = {}
    self._grids: dict[bytes, np.ndarray] = {}
    self.num_rows = 0

  def update(self, group, version, index, preds, q_halt_logits, mask=None
             ) -> None:
    """Adds one batch. All arguments are host arrays with leading axis B:
    group/version/index int [B], preds int [B, seq_len], q_halt_logits [B],
    mask bool [B] (False rows are padding and ignored)."""
    preds = np.asarray(preds)
    b = preds.shape[0]
    if preds.ndim != 2 or preds.shape[1] != self.canvas * self.canvas:
      raise ValueError(f"preds must be [B, {self.canvas ** 2}], got "
                       f"{preds.shape}")
    group = np.broadcast_to(np.asarray(group), (b,))
    version = np.broadcast_to(np.asarray(version), (b,))
    index = np.broadcast_to(np.asarray(index), (b,))
    q = np.broadcast_to(sigmoid(q_halt_logits), (b,))
    mask = np.ones(b, bool) if mask is None else np.broadcast_to(
        np.asarray(mask, bool), (b,))
    for r in np.flatnonzero(mask):
      g, v, i = int(group[r]), int(version[r]), int(index[r])
      if not 0 <= g < self._num_groups:
        raise ValueError(f"row {r}: group {g} outside [0, {self._num_groups})")
      num_targets = len(self.source.pairs(self.split, g))
      if not 0 <= i < num_targets:
        raise ValueError(f"row {r}: index {i} outside [0, {num_targets}) for "
                         f"group {g}")
      aug = self.source.augmentation(self.split, g, v)
      grid = aa.inverse_augment_grid(aa.crop(preds[r], self.canvas), aug)
      key = aa.grid_key(grid)
      self._grids.setdefault(key, grid)
      stats = self._votes.setdefault((g, i), {}).setdefault(key, [0, 0.0])
      stats[0] += 1
      stats[1] += float(q[r])
      self.num_rows += 1

  def ranked(self, group: int, index: int) -> list[tuple[np.ndarray, int, float]]:
    """Candidates of one target, best first: (grid, votes, mean sigmoid(q))."""
    cands = self._votes.get((group, index), {})
    order = sorted(cands.items(), key=lambda kv: (-kv[1][0],
                                                  -kv[1][1] / kv[1][0]))
    return [(self._grids[k], int(n), s / n) for k, (n, s) in order]

  def votes_state(self) -> dict[str, Any]:
    """Every vote so far as JSON: candidates in arrival order, each grid once
    ("HxW:" + its cells as digits)."""
    grids = {}
    votes = []
    for (g, i), cands in self._votes.items():
      row = []
      for key, (n, s) in cands.items():
        if key not in grids:
          grid = self._grids[key]
          grids[key] = (f"{grid.shape[0]}x{grid.shape[1]}:"
                        + "".join(str(int(x)) for x in grid.ravel()))
        row.append([grids[key], int(n), float(s)])
      votes.append([g, i, row])
    return {"format": VOTES_FORMAT, "split": self.split,
            "num_groups": self._num_groups, "num_rows": self.num_rows,
            "votes": votes}

  def add_votes(self, state: Mapping[str, Any]) -> None:
    """Adds the votes of `votes_state()` (of an evaluator of the same split
    and tasks) after the ones already here, as if they arrived now."""
    if not isinstance(state, Mapping) or state.get("format") != VOTES_FORMAT:
      raise ValueError(f"not a {VOTES_FORMAT} state")
    if (state.get("split"), state.get("num_groups")) != (self.split,
                                                         self._num_groups):
      raise ValueError(
          f"votes are of split {state.get('split')!r} with "
          f"{state.get('num_groups')} groups, this evaluator has "
          f"{self.split!r} with {self._num_groups}")
    for g, i, row in state["votes"]:
      here = self._votes.setdefault((int(g), int(i)), {})
      for text, n, s in row:
        shape, cells = text.split(":")
        h, w = (int(x) for x in shape.split("x"))
        grid = np.frombuffer(cells.encode(), np.uint8).reshape(h, w) - ord("0")
        key = aa.grid_key(grid)
        self._grids.setdefault(key, grid.astype(np.uint8))
        stats = here.setdefault(key, [0, 0.0])
        stats[0] += int(n)
        stats[1] += float(s)
    self.num_rows += int(state.get("num_rows", 0))

  def add_batch(self, batch, outputs) -> None:
    self.update(batch["group"], batch["version"], batch["index"], outputs["preds"],
                outputs["q_halt_logits"], batch.get("mask"))

  def pass_at(self, ks: Sequence[int]) -> dict[str, float] | None:
    """pass@K for each K over the targets whose output is known: per-task mean
    over those test inputs, mean over tasks with at least one. None when no
    output is known (e.g. a Kaggle test file without solutions)."""
    totals, num_tasks = np.zeros(len(ks)), 0
    for g in range(self._num_groups):
      known = [(i, p) for i, p in enumerate(self.source.pairs(self.split, g))
               if p.output is not None]
      if not known:
        continue
      num_tasks += 1
      solved = np.zeros(len(ks))
      for i, pair in known:
        order = [aa.grid_key(c[0]) for c in self.ranked(g, i)]
        truth = aa.grid_key(pair.output)
        if truth in order:
          solved += [order.index(truth) < k for k in ks]
      if self.task_score == "all":
        totals += solved == len(known)
      else:
        totals += solved / len(known)
    if not num_tasks:
      return None
    return {f"pass@{k}": float(t / num_tasks) for k, t in zip(ks, totals)}

  def result(self) -> dict[str, float]:
    """pass@K for each K: per-task mean over test inputs, mean over tasks."""
    res = self.pass_at(self.pass_ks)
    return res if res is not None else {f"pass@{k}": 0.0 for k in self.pass_ks}

  def submission(self) -> dict[str, list[dict[str, list[list[int]]]]]:
    """ARC Prize format: the top 2 candidates per test input, in order."""
    out = {}
    for g in range(self._num_groups):
      entries = []
      for i in range(len(self.source.pairs(self.split, g))):
        grids = [c[0] for c in self.ranked(g, i)[:SUBMISSION_ATTEMPTS]]
        grids = [x.tolist() if x.size else EMPTY_GRID for x in grids]
        while len(grids) < SUBMISSION_ATTEMPTS:
          grids.append(grids[0] if grids else EMPTY_GRID)
        entries.append({f"attempt_{a + 1}": grid for a, grid in enumerate(grids)})
      out[self.source.task_id(self.split, g)] = entries
    return out

  def write_files(self, workdir: str) -> list[str]:
    """Writes submission.json into `workdir`."""
    self.write_submission(os.path.join(workdir, SUBMISSION_FILE))
    return [SUBMISSION_FILE]

  def write_submission(self, path: str) -> dict[str, Any]:
    """Writes `submission()` to `path` atomically; returns it."""
    sub = self.submission()
    write_json_atomic(path, sub, indent=None)
    return sub


def _check_grid(grid: Any, where: str) -> None:
  if not isinstance(grid, list) or not grid:
    raise DataError(f"{where}: expected a non-empty list of rows")
  width = None
  for r, row in enumerate(grid):
    if not isinstance(row, list) or not row:
      raise DataError(f"{where}: row {r} is not a non-empty list")
    if width is None:
      width = len(row)
    elif len(row) != width:
      raise DataError(f"{where}: ragged rows: row {r} has {len(row)} cells, "
                      f"row 0 has {width}")
    for c, x in enumerate(row):
      if type(x) is not int or not 0 <= x <= 9:
        raise DataError(f"{where}: cell ({r}, {c}) = {x!r} is not a colour 0-9")
  if len(grid) > aa.DEFAULT_CANVAS or width > aa.DEFAULT_CANVAS:
    raise DataError(f"{where}: grid {len(grid)}x{width} exceeds 30x30")


def validate_submission(obj_or_path: Any, tasks: Any) -> dict[str, Any]:
  """Checks an ARC Prize submission; raises DataError naming task and field.

  Args:
    obj_or_path: the submission object or the path of its JSON file.
    tasks: what it must answer: an `ArcSource` (its scored tasks), or a
      mapping task id -> number of test inputs (or a sequence of test pairs).

  Returns:
    The submission object.
  """
  where = "submission"
  if isinstance(obj_or_path, (str, os.PathLike)):
    where = os.fspath(obj_or_path)
    try:
      with open(obj_or_path, encoding="utf-8") as f:
        obj = json.load(f)
    except json.JSONDecodeError as e:
      raise DataError(f"{where}: malformed JSON at line {e.lineno}, column "
                      f"{e.colno}: {e.msg}") from e
  else:
    obj = obj_or_path
  if not isinstance(tasks, Mapping):        # an ArcSource
    tasks = {t: len(tasks.test_pairs(t)) for t in tasks.scored_task_ids()}
  counts = {t: n if isinstance(n, int) else len(n) for t, n in tasks.items()}
  if not isinstance(obj, dict):
    raise DataError(f"{where}: expected an object mapping task ids to lists, "
                    f"got {type(obj).__name__}")
  missing = sorted(set(counts) - set(obj))
  if missing:
    raise DataError(f"{where}: {len(missing)} task(s) missing, e.g. "
                    f"{missing[:5]}")
  extra = sorted(set(obj) - set(counts))
  if extra:
    raise DataError(f"{where}: unknown task(s) {extra[:5]}")
  names = {f"attempt_{a + 1}" for a in range(SUBMISSION_ATTEMPTS)}
  for task_id, entries in obj.items():
    here = f"{where}: task {task_id!r}"
    if not isinstance(entries, list):
      raise DataError(f"{here}: expected a list, got {type(entries).__name__}")
    if len(entries) != counts[task_id]:
      raise DataError(f"{here}: {len(entries)} entries for {counts[task_id]} "
                      "test inputs")
    for i, entry in enumerate(entries):
      if not isinstance(entry, dict) or set(entry) != names:
        raise DataError(f"{here}[{i}]: expected an object with keys "
                        f"{sorted(names)}")
      for name in sorted(names):
        _check_grid(entry[name], f"{here}[{i}].{name}")
  return obj
