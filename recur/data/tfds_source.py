"""A TFDS dataset built by `recur.tfds` as a `PuzzleSource`.

    make_source("tfds", builder="recur_sudoku/smoke", data_dir=DIR)
    make_source("tfds", path=DIR + "/recur_sudoku/smoke/1.0.0")   # or its parent
    make_source("tfds", path=PREPARED_DIR)      # recur.data.prepared.prepare's

reads the array_record files through `tfds` (`as_data_source`, random access,
no TensorFlow) and the dataset's metadata.json (version counts, record offsets,
group names, the family's attributes and extras, written by the builder), and
hands back the family's view of it (`PreparedHooks.view`: e.g. ARC's pairs and
augmentations for its evaluator, Sudoku/Maze read on the pipeline's vectorised
path), so the pipeline, its exact resume (the iterator state is a position in
the group order, as for every source), the training loop and the evaluators
run on it unchanged. From an experiment: `--config.data.source=tfds
--config.data.name=recur_sudoku/smoke --config.data.data_dir=DIR` (options
meant for the original source, e.g. the config's `box`, are ignored: the
dataset was fixed when it was built). `gs://` data dirs work wherever
tfds/etils can read them.

Examples of a version are the stored ones; `rng` is ignored (ARC train records
keep the translation drawn at build time, `recur.data.prepared.record_rng`).
"""
from __future__ import annotations

import json
import logging
from typing import Any, Sequence

import numpy as np

from recur.data.base import DataError, DatasetInfo, Example

__all__ = ["TfdsSource", "import_tfds", "built_dir"]

# What recur.data.prepared wrote before prepared datasets were TFDS datasets.
_LEGACY_FORMAT = "recur.prepared/1"

_log = logging.getLogger(__name__)


def import_tfds():
  """tensorflow_datasets, or an ImportError saying which extra installs it."""
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError("stored (TFDS) datasets need tensorflow-datasets: pip "
                      "install 'recur[tfds]' (TensorFlow is not needed)") from e
  return tfds


def built_dir(builder: str, data_dir: str | None) -> str:
  """The directory of built dataset `builder` (NAME/CONFIG[:VERSION]) in
  `data_dir`; DataError when it is not built there."""
  tfds = import_tfds()
  import recur.tfds  # pylint: disable=g-import-not-at-top,unused-import
  b = tfds.builder(builder, data_dir=data_dir)
  if not b.is_prepared():
    raise DataError(f"{builder} in {b.data_dir}: not built; run `python -m "
                    f"recur.tfds build {builder} --data_dir={data_dir}`")
  return str(b.data_dir)


def _resolve_dir(path: str):
  """A builder directory (with dataset_info.json), or a config directory whose
  newest version subdirectory is used."""
  from etils import epath  # pylint: disable=g-import-not-at-top
  p = epath.Path(path)
  if (p / "dataset_info.json").exists():
    return p
  if _legacy(p / "metadata.json"):
    raise DataError(f"{path}: a prepared dataset of format {_LEGACY_FORMAT} "
                    "(written by an older recur); prepare it again, e.g. "
                    "`python -m recur.data.prepared --source=NAME --out=DIR ...`, "
                    "which now writes a TFDS dataset")
  if not p.is_dir():
    raise DataError(f"{path}: no such directory")
  versions = sorted((d for d in p.iterdir() if (d / "dataset_info.json").exists()),
                    key=lambda d: tuple(int(x) for x in d.name.split(".")
                                        if x.isdigit()))
  if not versions:
    raise DataError(f"{path}: not a built TFDS dataset (no dataset_info.json "
                    "here or in a version subdirectory); build it with "
                    "`python -m recur.tfds build` or recur.data.prepared")
  return versions[-1]


def _legacy(metadata) -> bool:
  try:
    return json.loads(metadata.read_text()).get("format") == _LEGACY_FORMAT
  except (OSError, ValueError, AttributeError):
    return False


class TfdsSource:
  """A `recur.tfds` dataset (recur_arc, recur_sudoku, recur_maze, a prepared
  one) as a source; `open` wraps it in its family's view."""

  def __init__(self, tfds_builder, where: str):
    self.where = where
    self.path = str(tfds_builder.data_dir)
    self._builder = tfds_builder
    meta = tfds_builder.info.metadata
    if not meta or "info" not in meta or "splits" not in meta:
      raise DataError(f"{where}: metadata.json has no recur 'info'/'splits' "
                      "(not built by recur.tfds)")
    info = meta["info"]
    try:
      self.info = DatasetInfo(name=info["name"], seq_len=int(info["seq_len"]),
                              vocab_size=int(info["vocab_size"]),
                              num_puzzle_identifiers=int(info["num_puzzle_identifiers"]),
                              splits=tuple(info["splits"]),
                              family=str(info.get("family", "")))
    except (KeyError, TypeError) as e:
      raise DataError(f"{where}: metadata.json field 'info': {e}") from e
    self.attributes: dict[str, Any] = {
        k: tuple(v) if isinstance(v, list) else v
        for k, v in dict(meta.get("attributes", {})).items()}
    self.metadata = meta
    self._splits: dict[str, dict[str, Any]] = {}
    self._sources: dict[str, Any] = {}
    for split in self.info.splits:
      m = meta["splits"].get(split)
      try:
        versions = [int(n) for n in m["num_versions"]]
        offsets = np.asarray(m["record_offsets"], np.int64)
        names = list(m["group_names"])
      except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"{where}: metadata.json field 'splits.{split}' missing "
                        f"or malformed: {e!r}") from e
      first = np.concatenate([[0], np.cumsum(versions)]).astype(np.int64)
      if len(offsets) != first[-1] + 1:
        raise DataError(f"{where}: metadata.json splits.{split}: "
                        f"{len(offsets)} record_offsets for {first[-1]} versions")
      n_records = tfds_builder.info.splits[split].num_examples
      if offsets[-1] != n_records:
        raise DataError(f"{where}: split {split} has {n_records} records, "
                        f"metadata.json says {int(offsets[-1])}")
      self._splits[split] = {"versions": versions, "offsets": offsets,
                             "first": first, "names": names,
                             "entry": m}

  @classmethod
  def open(cls, path: str | None = None, *, builder: str | None = None,
           data_dir: str | None = None, **ignored: Any) -> Any:
    """`make_source("tfds", builder=NAME/CONFIG, data_dir=DIR)` or
    `make_source("tfds", path=BUILT_DIR)`, in its family's view
    (`PreparedHooks.view`); other options are logged and ignored."""
    tfds = import_tfds()
    if ignored:
      _log.warning("tfds dataset ignores source options %s", sorted(ignored))
    if builder:
      d = built_dir(builder, data_dir)
      b = tfds.builder_from_directory(d)
      where = f"{builder} in {d}"
    elif path:
      d = _resolve_dir(path)
      b = tfds.builder_from_directory(d)
      where = str(d)
    else:
      raise ValueError("the tfds source needs builder=NAME/CONFIG (with "
                       "data_dir) or path=<built dataset directory>")
    src = cls(b, where)
    from recur.puzzles import registry  # pylint: disable=g-import-not-at-top
    view = registry.family_of(src).prepared.view
    return src if view is None else view(src)

  # -- PuzzleSource ---------------------------------------------------------

  def _split(self, split: str) -> dict[str, Any]:
    if split not in self._splits:
      raise KeyError(f"{self.where}: no split {split!r} ({list(self._splits)})")
    return self._splits[split]

  def _records(self, split: str):
    if split not in self._sources:
      try:
        self._sources[split] = self._builder.as_data_source(split=split)
      except (OSError, RuntimeError, ValueError) as e:
        raise DataError(f"{self.where}: split {split} unreadable: {e}") from e
    return self._sources[split]

  def num_groups(self, split: str) -> int:
    return len(self._split(split)["versions"])

  def num_versions(self, split: str, group: int) -> int:
    return self._split(split)["versions"][group]

  def _row(self, split: str, group: int, version: int) -> int:
    s = self._split(split)
    if not 0 <= version < s["versions"][group]:
      raise IndexError(f"{self.where}: {split} group {group} has "
                       f"{s['versions'][group]} versions, asked for {version}")
    return int(s["first"][group]) + version

  def examples(self, split: str, group: int, version: int,
               rng: np.random.Generator | None = None) -> Sequence[Example]:
    del rng  # fixed at build time
    s = self._split(split)
    r = self._row(split, group, version)
    lo, hi = int(s["offsets"][r]), int(s["offsets"][r + 1])
    recs = self._read(split, list(range(lo, hi)))
    out = []
    for rec in recs:
      if (int(rec["group"]), int(rec["version"])) != (group, version):
        raise DataError(f"{self.where}: {split} record for group {group} "
                        f"version {version} says group {int(rec['group'])} "
                        f"version {int(rec['version'])}")
      out.append(Example(inputs=np.asarray(rec["inputs"], np.int32),
                         labels=np.asarray(rec["labels"], np.int32),
                         puzzle_identifier=int(rec["puzzle_identifier"]),
                         group=group, version=version, index=int(rec["index"])))
    return out

  def example_counts(self, split: str) -> np.ndarray:
    """Examples of version 0 of each group, from the record offsets (no reads;
    `recur.data.prepared.PreparedRows` serves it where every version of a group
    holds as many)."""
    s = self._split(split)
    return np.diff(s["offsets"])[s["first"][:-1]]

  def read_rows(self, split: str, groups: np.ndarray, versions: np.ndarray,
                indices: np.ndarray) -> dict[str, np.ndarray]:
    """Rows k = stored example indices[k] of (groups[k], versions[k]), read in
    one batch (inputs, labels [K, seq_len] and puzzle_identifiers [K])."""
    s = self._split(split)
    groups, versions, indices = (np.asarray(a, np.int64)
                                 for a in (groups, versions, indices))
    if len(groups) and ((versions < 0).any() or (versions >= np.asarray(
        s["versions"], np.int64)[groups]).any()):
      raise IndexError(f"{self.where}: {split} version out of range")
    rows = s["first"][groups] + versions
    keys = s["offsets"][rows] + indices
    if len(keys) and ((indices < 0).any() or (keys >= s["offsets"][rows + 1]).any()):
      raise IndexError(f"{self.where}: {split} example index out of range")
    recs = self._read(split, keys.tolist())
    got = np.array([[r["group"], r["version"]] for r in recs], np.int64).reshape(-1, 2)
    if not np.array_equal(got, np.stack([groups, versions], 1)):
      raise DataError(f"{self.where}: {split} records {keys.tolist()} are not "
                      "the (group, version)s metadata.json files them under")
    seq = self.info.seq_len
    return {"inputs": np.stack([r["inputs"] for r in recs]).astype(np.int32)
                      if recs else np.zeros((0, seq), np.int32),
            "labels": np.stack([r["labels"] for r in recs]).astype(np.int32)
                      if recs else np.zeros((0, seq), np.int32),
            "puzzle_identifiers": np.array([r["puzzle_identifier"] for r in recs],
                                           np.int32)}

  def _read(self, split: str, keys: list[int]) -> list[Any]:
    ds = self._records(split)
    try:
      return ds.__getitems__(keys) if hasattr(ds, "__getitems__") else [ds[k] for k in keys]
    except (OSError, RuntimeError, ValueError) as e:
      span = f"{keys[0]}..{keys[-1]}" if keys else "none"
      raise DataError(f"{self.where}: {split} records {span} unreadable: "
                      f"{e or 'corrupt'}") from e

  def group_name(self, split: str, group: int) -> str:
    return self._split(split)["names"][group]

  def describe(self) -> dict[str, Any]:
    info = self._builder.info
    return {"name": self.info.name, "path": self.path,
            "tfds": f"{info.full_name}",
            "source": dict(self.metadata.get("describe", {})),
            "seed": self.metadata.get("seed"),
            "max_versions": self.metadata.get("max_versions"),
            "splits": {s: {"groups": self.num_groups(s),
                           "versions": int(d["first"][-1]),
                           "records": int(d["offsets"][-1])}
                       for s, d in self._splits.items()}}

  def close(self) -> None:
    self._sources.clear()

  # -- what the family stored beside the examples (its PreparedHooks) -------

  def row(self, split: str, group: int, version: int) -> int:
    """The stored version's row, in record order (per-version extras)."""
    return self._row(split, group, version)

  def extras(self, split: str) -> dict[str, Any]:
    """The split's entry of metadata.json (what `PreparedHooks.write` added,
    beside num_versions, record_offsets and group_names)."""
    return self._split(split)["entry"]
