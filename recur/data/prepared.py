"""Prepared datasets: any `PuzzleSource` stored as a TFDS dataset.

The sources in `recur.data` build and augment examples on the fly, which is the
default for training (ARC translations are redrawn every epoch). `prepare`
stores a source's splits on disk instead, as a TFDS dataset (array_record
shards, dataset_info.json, features.json, metadata.json) written by the
`recur_prepared` builder of `recur.tfds` into the directory given, so TFDS
does the writing (into a temp directory renamed into place when complete),
the shard layout and the reading (`tfds.builder_from_directory(DIR)`,
`tfds.data_source`, grain); no TensorFlow. The same dataset opens as a
`PuzzleSource` with `make_source("prepared", path=DIR)` or
`make_source("tfds", path=DIR)` (`recur.data.tfds_source.TfdsSource` in the
family's view), so the pipeline, training loop and evaluators run on it:

    prepare(make_source("arc", num_versions=8), "/data/arc1-v8")
    source = make_source("prepared", path="/data/arc1-v8")
    python -m recur.data.prepared --source=arc --out=DIR --max_versions=8 \\
        --kw num_versions=8 --kw max_grid_size=10
    python -m experiments.arc_trm ... --config.data.source=tfds \\
        --config.data.path=DIR

What the records and metadata.json hold is in `recur.tfds.builders`; what a
family keeps beside the examples (Sudoku `box`, ARC pairs and augmentations)
and how its stored source looks is its `PreparedHooks`
(`recur.puzzles.family`), whose `view` wraps the stored source (a
`PreparedView` subclass such as `PreparedArcSource`).

Versions: every version of each group, or the first `max_versions` (version 0
is the identity). The examples of (split, group, version) are
`source.examples(split, group, version, record_rng(seed, i, group, version))`
with i the split's index in `source.info.splits`. Sources whose examples do not
depend on the rng (Sudoku, Maze, the algorithmic tasks, ARC test) are stored
exactly; ARC *train* examples get a random translation from the rng, so a
prepared ARC dataset fixes one translation per record instead of a new one per
epoch. The stored source's `examples` ignores its rng.

Directories written by recur before datasets were TFDS datasets (format
`recur.prepared/1`) are refused with a message saying to prepare them again.
"""
from __future__ import annotations

import argparse
import ast
import json
import logging
import os
import sys
import tempfile
from typing import Any, Sequence

import numpy as np

from recur.data.base import Example

__all__ = ["prepare", "record_rng", "PreparedView", "PreparedRows",
           "open_prepared", "main"]

_log = logging.getLogger(__name__)

_RECORD_STREAM = 3               # keeps these rngs apart from the pipeline's


def record_rng(seed: int, split_index: int, group: int, version: int
               ) -> np.random.Generator:
  """The rng a stored copy hands to `source.examples` for one version."""
  return np.random.default_rng([seed, _RECORD_STREAM, split_index, group,
                                version])


def _config_name(name: str) -> str:
  """A TFDS config name (letters, digits, `_`, `-`, `.`) for a dataset name."""
  out = "".join(c if c.isalnum() or c in "_-." else "_" for c in name)
  return out or "source"


def prepare(source, out_dir: str, *, splits: Sequence[str] | None = None,
            max_versions: int | None = None, overwrite: bool = False,
            seed: int = 0) -> str:
  """Writes `source`'s splits as a TFDS dataset in `out_dir` (module docstring).

  Args:
    source: any `PuzzleSource`.
    out_dir: the dataset directory, local or a URL (gs://...: built in a local
      temp directory, then uploaded with dataset_info.json last, since
      array_record writes local files only).
    splits: the splits to write (default: all of `source.info.splits`).
    max_versions: store the first `max_versions` versions of each group
      (default: all).
    overwrite: replace an existing dataset at `out_dir` (it is deleted first).
    seed: seeds the rng handed to `source.examples` (see `record_rng`).

  Returns:
    The dataset directory, absolute when local.
  """
  from recur.data.tfds_source import import_tfds  # pylint: disable=g-import-not-at-top
  from etils import epath  # pylint: disable=g-import-not-at-top
  tfds = import_tfds()
  from recur.tfds.builders import PuzzleConfig, RecurPrepared  # pylint: disable=g-import-not-at-top
  remote = "://" in os.fspath(out_dir)
  out = epath.Path(out_dir if remote else os.path.abspath(out_dir))
  _check_target(out, overwrite)
  info = source.info
  config = PuzzleConfig(
      name=_config_name(info.name), description=f"{info.name} by recur.data.prepared",
      source_object=source, seed=seed, max_versions=max_versions,
      splits=None if splits is None else tuple(splits))
  mode = (tfds.download.GenerateMode.FORCE_REDOWNLOAD if overwrite else
          tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS)
  # Nothing is downloaded, but TFDS would leave an empty downloads/ folder
  # beside the dataset.
  with tempfile.TemporaryDirectory(prefix="recur-prepare-") as scratch:
    local = os.path.join(scratch, "dataset") if remote else os.fspath(out)
    RecurPrepared(config=config, data_dir=local).download_and_prepare(
        download_dir=os.path.join(scratch, "downloads"),
        download_config=tfds.download.DownloadConfig(download_mode=mode))
    if remote:
      _upload(epath.Path(local), out)
  return os.fspath(out)


def _check_target(out, overwrite: bool) -> None:
  """Refuses a dataset without `overwrite` and any other non-empty directory;
  removes what will be replaced."""
  if not out.exists():
    return
  if not out.is_dir():
    raise FileExistsError(f"{out}: exists and is not a directory")
  if (out / "dataset_info.json").exists():
    if not overwrite:
      raise FileExistsError(f"{out}: a prepared dataset already exists "
                            "(pass overwrite=True to replace it)")
  elif any(out.iterdir()):
    raise FileExistsError(f"{out}: a non-empty directory that is not a "
                          "prepared dataset; refusing to replace it")
  else:
    out.rmdir()  # TFDS would take an empty directory for a built dataset


def _upload(local, out) -> None:
  """Copies a built dataset directory to `out`, dataset_info.json last (its
  presence is what makes a directory a dataset, so a partial upload never
  loads)."""
  if out.exists():
    out.rmtree()
  out.mkdir(parents=True, exist_ok=True)
  files = sorted(local.iterdir(), key=lambda p: p.name == "dataset_info.json")
  for f in files:
    f.copy(out / f.name)


class PreparedView:
  """A family's view of a stored dataset (`recur.data.tfds_source.TfdsSource`):
  the PuzzleSource calls go to the stored source (`self.stored`); subclasses
  add what the family's evaluator and drawer need (`PreparedHooks.view`)."""

  def __init__(self, stored):
    self.stored = stored
    self.info = stored.info
    self.path = stored.path
    self.metadata = stored.metadata
    self.attributes = stored.attributes

  def num_groups(self, split: str) -> int:
    return self.stored.num_groups(split)

  def num_versions(self, split: str, group: int) -> int:
    return self.stored.num_versions(split, group)

  def examples(self, split: str, group: int, version: int,
               rng: np.random.Generator | None = None) -> list[Example]:
    return self.stored.examples(split, group, version, rng)

  def group_name(self, split: str, group: int) -> str:
    return self.stored.group_name(split, group)

  def describe(self) -> dict[str, Any]:
    return self.stored.describe()

  def close(self) -> None:
    self.stored.close()


class PreparedRows(PreparedView):
  """The vectorised input path (`example_counts`, `encode_rows`) for the view
  of a family whose original takes it (Sudoku, Maze): the pipeline then plans
  the same rows for the stored copy as for the original, so the copy gives
  the original's batches; a batch's rows are read in one call."""

  def example_counts(self, split: str) -> np.ndarray:
    """Examples of version 0 of each group (every version stores as many)."""
    return self.stored.example_counts(split)

  def encode_rows(self, split: str, groups: np.ndarray, versions: np.ndarray,
                  indices: np.ndarray, epoch_keys: np.ndarray
                  ) -> dict[str, np.ndarray]:
    """Rows k = stored example indices[k] of (groups[k], versions[k])."""
    del epoch_keys  # stored examples carry no per-epoch randomness
    return self.stored.read_rows(split, groups, versions, indices)


def open_prepared(path: str | None = None, **ignored: Any):
  """A prepared dataset as its family's source (`make_source("prepared",
  path=...)`, the same as `make_source("tfds", path=...)`). Options meant for
  the original source (e.g. from an experiment config) are logged and
  ignored, since the dataset was fixed when it was prepared."""
  if not path:
    raise ValueError("the prepared source needs path=<prepared directory>")
  from recur.data.tfds_source import TfdsSource  # pylint: disable=g-import-not-at-top
  return TfdsSource.open(path=path, **ignored)


# ---------------------------------------------------------------------- CLI


def _parse_kw(items: Sequence[str]) -> dict[str, Any]:
  out = {}
  for item in items:
    key, sep, value = item.partition("=")
    if not sep or not key:
      raise SystemExit(f"--kw expects key=value, got {item!r}")
    try:
      out[key] = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      out[key] = value
  return out


def main(argv: Sequence[str] | None = None) -> str:
  """`python -m recur.data.prepared --source=arc --out=DIR [...]`."""
  from recur.data import make_source  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser(
      prog="python -m recur.data.prepared",
      description="Store a recur data source as a TFDS dataset in --out.")
  parser.add_argument("--source", required=True,
                      help="registered source name (arc, sudoku, maze, ...)")
  parser.add_argument("--out", required=True, help="dataset directory")
  parser.add_argument("--splits", default=None,
                      help="comma-separated splits (default: all)")
  parser.add_argument("--max_versions", type=int, default=None)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--overwrite", action="store_true")
  parser.add_argument("--kw", action="append", default=[],
                      metavar="KEY=VALUE",
                      help="source option (Python literal or string); repeat")
  args = parser.parse_args(argv)
  logging.basicConfig(level=logging.INFO, format="%(message)s")
  source = make_source(args.source, **_parse_kw(args.kw))
  path = prepare(source, args.out,
                 splits=args.splits.split(",") if args.splits else None,
                 max_versions=args.max_versions, overwrite=args.overwrite,
                 seed=args.seed)
  print(json.dumps(open_prepared(path).describe()["splits"]))
  print(path)
  return path


if __name__ == "__main__":
  from recur import cli_errors  # pylint: disable=g-import-not-at-top
  cli_errors.guarded(main)(sys.argv[1:])  # one-line storage/data errors
