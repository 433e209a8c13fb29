"""Prepared datasets: any `PuzzleSource` materialised as ArrayRecord files.

The sources in `recur.data` build and augment examples on the fly, which is the
default for training (ARC translations are redrawn every epoch). `prepare`
writes a source's splits to disk in a standard format instead, and
`PreparedSource` reads them back as a `PuzzleSource` through grain's
`grain.sources.ArrayRecordDataSource` (random access; no TensorFlow), so the
same pipeline, training loop and evaluators run on it:

    prepare(make_source("arc", num_versions=8), "/data/arc1-v8")
    source = make_source("prepared", path="/data/arc1-v8")   # open_prepared
    python -m recur.data.prepared --source=arc --out=DIR --max_versions=8 \
        --kw num_versions=8 --kw max_grid_size=10

Layout of a prepared directory (format `recur.prepared/1`):

  metadata.json          written last; its presence marks a complete dataset:
                         format, DatasetInfo fields (the puzzle family
                         included), the source's class and describe(), the
                         family's attributes (Sudoku `box`, Maze `size`, ARC
                         `canvas`), seed and max_versions, and per split: file
                         names, num_groups, num_records, the version count of
                         every group, group names, the file's size and sha256.
  {split}.array_record   one record per example, in (group, version, index)
                         order, written with options `group_size:1` (random
                         access). A record is 4 + 2 * seq_len little-endian
                         int32: puzzle_identifier, group, version, index,
                         inputs[seq_len], labels[seq_len].
  {split}.index.npz      `record_offsets` int64 [V + 1], V = sum of the version
                         counts: the examples of (group g, version v) are records
                         record_offsets[r] .. record_offsets[r + 1] - 1 with
                         r = (versions of groups < g) + v. A family may add
                         per-version arrays (ARC: each row's augmentation,
                         `aug_dihedral` int8 [V] and `aug_colours` uint8 [V, 10]).
  extras file            a family's JSON per split, named in metadata field
                         `extras` (ARC: arc_pairs.json, the raw pairs of every
                         group, so `ArcEvaluator` can un-augment and score).

What a family keeps and how its prepared source looks is its `PreparedHooks`
(`recur.puzzles.family`): `open_prepared` hands back the family's view of the
stored dataset (e.g. a `PreparedArcSource`), so its evaluator and drawer work.

Versions: every version of each group, or the first `max_versions` (version 0
is the identity). The examples of (split, group, version) are
`source.examples(split, group, version, record_rng(seed, i, group, version))`
with i the split's index in `source.info.splits`. Sources whose examples do not
depend on the rng (Sudoku, Maze, the algorithmic tasks, ARC test) are stored
exactly; ARC *train* examples get a random translation from the rng, so a
prepared ARC dataset fixes one translation per record instead of a new one per
epoch. `PreparedSource.examples` ignores its rng.

Atomicity: everything is written and fsynced in a temp directory beside the
target (`.{name}.tmp-*`, held under an flock while the build runs), which is
renamed into place only when complete. An interrupted build leaves at most that
temp directory: it has no metadata.json, so it never loads, and the next
`prepare` beside it removes it once no build holds its lock. An existing
dataset is replaced only with `overwrite=True`; a non-empty directory that is
not a prepared dataset is never replaced.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import shutil
import sys
import uuid
from typing import Any, Sequence

import numpy as np

from recur.data.base import DataError, DatasetInfo, Example
from recur.files import write_json_atomic
from recur.puzzles import registry

__all__ = ["FORMAT", "METADATA", "prepare", "record_rng", "encode_example",
           "decode_example", "PreparedSource", "PreparedView", "open_prepared",
           "main"]

_log = logging.getLogger(__name__)

FORMAT = "recur.prepared/1"
METADATA = "metadata.json"
_HEADER = 4                      # puzzle_identifier, group, version, index
_WRITER_OPTIONS = "group_size:1"
_RECORD_STREAM = 3               # keeps these rngs apart from the pipeline's


def record_rng(seed: int, split_index: int, group: int, version: int
               ) -> np.random.Generator:
  """The rng `prepare` hands to `source.examples` for one version."""
  return np.random.default_rng([seed, _RECORD_STREAM, split_index, group,
                                version])


def encode_example(ex: Example) -> bytes:
  """One record: 4 + 2 * seq_len little-endian int32 (module docstring)."""
  header = np.array([ex.puzzle_identifier, ex.group, ex.version, ex.index],
                    np.int64)
  row = np.concatenate([header, np.asarray(ex.inputs).reshape(-1),
                        np.asarray(ex.labels).reshape(-1)])
  return row.astype("<i4").tobytes()


def decode_example(record: bytes, seq_len: int) -> Example:
  """Inverse of `encode_example`; ValueError on a record of the wrong size."""
  if len(record) != 4 * (_HEADER + 2 * seq_len):
    raise ValueError(f"record of {len(record)} bytes, expected "
                     f"{4 * (_HEADER + 2 * seq_len)} for seq_len {seq_len}")
  row = np.frombuffer(record, "<i4").astype(np.int32)
  pid, group, version, index = (int(x) for x in row[:_HEADER])
  return Example(inputs=row[_HEADER:_HEADER + seq_len],
                 labels=row[_HEADER + seq_len:], puzzle_identifier=pid,
                 group=group, version=version, index=index)


# ------------------------------------------------------------------ writing


def _open_writer(path: str):
  from array_record.python.array_record_module import ArrayRecordWriter  # pylint: disable=g-import-not-at-top
  return ArrayRecordWriter(path, _WRITER_OPTIONS)


def _fsync_file(path: str) -> None:
  fd = os.open(path, os.O_RDONLY)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)


_fsync_dir = _fsync_file


def _sha256(path: str) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      h.update(chunk)
  return h.hexdigest()


def _json_default(x: Any) -> Any:
  if isinstance(x, np.generic):
    return x.item()
  if isinstance(x, np.ndarray):
    return x.tolist()
  if isinstance(x, (set, frozenset)):
    return sorted(x)
  return str(x)


def _write_json(path: str, obj: Any) -> None:
  write_json_atomic(path, obj, default=_json_default)


def _write_split(source, split: str, split_index: int, directory: str,
                 seed: int, max_versions: int | None, hooks
                 ) -> tuple[dict[str, Any], Any]:
  info = source.info
  where = f"{info.name}/{split}"
  num_groups = source.num_groups(split)
  num_versions, offsets, names = [], [0], []
  file = f"{split}.array_record"
  writer = _open_writer(os.path.join(directory, file))
  try:
    for g in range(num_groups):
      n = source.num_versions(split, g)
      if n < 1:
        raise DataError(f"{where} group {g} has no versions")
      n = n if max_versions is None else min(n, max_versions)
      num_versions.append(n)
      names.append(source.group_name(split, g))
      for v in range(n):
        exs = source.examples(split, g, v, record_rng(seed, split_index, g, v))
        for ex in exs:
          shapes = (np.shape(ex.inputs), np.shape(ex.labels))
          if shapes != ((info.seq_len,), (info.seq_len,)):
            raise DataError(f"{where} group {g} version {v}: example (inputs, "
                            f"labels) shapes {shapes}, expected "
                            f"({info.seq_len},)")
          if (ex.group, ex.version) != (g, v):
            raise DataError(f"{where} group {g} version {v}: example says "
                            f"group {ex.group} version {ex.version}")
          if not 0 <= ex.puzzle_identifier < info.num_puzzle_identifiers:
            raise DataError(f"{where} group {g} version {v}: puzzle_identifier "
                            f"{ex.puzzle_identifier} outside "
                            f"[0, {info.num_puzzle_identifiers})")
          writer.write(encode_example(ex))
        offsets.append(offsets[-1] + len(exs))
  finally:
    writer.close()
  path = os.path.join(directory, file)
  _fsync_file(path)
  index = f"{split}.index.npz"
  extra_arrays, extras = ({}, None) if hooks.write is None else hooks.write(
      source, split, num_versions)
  arrays = {**extra_arrays, "record_offsets": np.asarray(offsets, np.int64)}
  with open(os.path.join(directory, index), "wb") as f:
    np.savez(f, **arrays)
    f.flush()
    os.fsync(f.fileno())
  meta = {"file": file, "index": index, "num_groups": num_groups,
          "num_records": offsets[-1], "file_bytes": os.path.getsize(path),
          "sha256": _sha256(path), "num_versions": num_versions,
          "group_names": names}
  _log.info("prepared %s: %d groups, %d versions, %d records", where,
            num_groups, len(offsets) - 1, offsets[-1])
  return meta, extras


def _is_prepared(path: str) -> bool:
  try:
    with open(os.path.join(path, METADATA), encoding="utf-8") as f:
      return json.load(f).get("format") == FORMAT
  except (OSError, ValueError, AttributeError):
    return False


def _check_target(out_dir: str, overwrite: bool) -> None:
  if not os.path.lexists(out_dir):
    return
  if not os.path.isdir(out_dir) or os.path.islink(out_dir):
    raise FileExistsError(f"{out_dir}: exists and is not a directory")
  if not os.listdir(out_dir):
    return
  if not _is_prepared(out_dir):
    raise FileExistsError(f"{out_dir}: a non-empty directory that is not a "
                          "prepared dataset; refusing to replace it")
  if not overwrite:
    raise FileExistsError(f"{out_dir}: a prepared dataset already exists "
                          "(pass overwrite=True to replace it)")


def _try_lock(path: str) -> int | None:
  """An fd holding an exclusive flock on directory `path`, or None if held."""
  fd = os.open(path, os.O_RDONLY)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError:
    os.close(fd)
    return None
  return fd


def _clean_stale(parent: str, base: str) -> None:
  """Removes temp/old directories of interrupted builds of `base`."""
  for name in os.listdir(parent):
    if not (name.startswith(f".{base}.tmp-") or name.startswith(f".{base}.old-")):
      continue
    path = os.path.join(parent, name)
    try:
      fd = _try_lock(path)
    except OSError:
      continue
    if fd is None:
      continue  # a build in progress holds it
    try:
      _log.info("removing %s, left by an interrupted build", path)
      shutil.rmtree(path, ignore_errors=True)
    finally:
      os.close(fd)


def _commit(tmp: str, out_dir: str, overwrite: bool) -> None:
  parent, base = os.path.split(out_dir)
  _check_target(out_dir, overwrite)  # again: another build may have finished
  old = None
  if os.path.lexists(out_dir):
    old = os.path.join(parent, f".{base}.old-{uuid.uuid4().hex[:8]}")
    os.rename(out_dir, old)
  try:
    os.rename(tmp, out_dir)
  except BaseException:
    if old is not None:
      os.rename(old, out_dir)
    raise
  _fsync_dir(parent)
  if old is not None:
    shutil.rmtree(old, ignore_errors=True)


def prepare(source, out_dir: str, *, splits: Sequence[str] | None = None,
            max_versions: int | None = None, overwrite: bool = False,
            seed: int = 0) -> str:
  """Writes `source`'s splits to `out_dir` (format in the module docstring).

  Args:
    source: any `PuzzleSource`.
    out_dir: the dataset directory; created atomically.
    splits: the splits to write (default: all of `source.info.splits`).
    max_versions: store the first `max_versions` versions of each group
      (default: all).
    overwrite: replace an existing prepared dataset at `out_dir`.
    seed: seeds the rng handed to `source.examples` (see `record_rng`).

  Returns:
    The absolute path of the dataset.
  """
  info = source.info
  splits = tuple(info.splits if splits is None else splits)
  unknown = [s for s in splits if s not in info.splits]
  if unknown or not splits:
    raise ValueError(f"splits {list(splits)}: {info.name} has splits "
                     f"{list(info.splits)}")
  if max_versions is not None and max_versions < 1:
    raise ValueError(f"max_versions must be >= 1, got {max_versions}")
  out_dir = os.path.abspath(out_dir)
  parent, base = os.path.split(out_dir)
  os.makedirs(parent, exist_ok=True)
  _check_target(out_dir, overwrite)
  _clean_stale(parent, base)
  tmp = os.path.join(parent, f".{base}.tmp-{uuid.uuid4().hex[:12]}")
  os.mkdir(tmp)  # not mkdtemp: the dataset gets the umask's permissions
  lock = _try_lock(tmp)
  try:
    family = registry.family_of(source)
    hooks = family.prepared
    meta: dict[str, Any] = {
        "format": FORMAT,
        "info": {**dataclasses.asdict(info), "splits": list(splits)},
        "source": {"class": f"{type(source).__module__}."
                            f"{type(source).__qualname__}",
                   "describe": source.describe()},
        "attributes": hooks.attributes(source),
        "record_layout": "little-endian int32: puzzle_identifier, group, "
                         "version, index, inputs[seq_len], labels[seq_len]",
        "seed": seed, "max_versions": max_versions,
        "extras": hooks.extras_file,
        "splits": {}}
    extras = {}
    for split in splits:
      meta["splits"][split], extras[split] = _write_split(
          source, split, info.splits.index(split), tmp, seed, max_versions,
          hooks)
    if hooks.extras_file:
      _write_json(os.path.join(tmp, hooks.extras_file), extras)
    _write_json(os.path.join(tmp, METADATA), meta)  # last: marks completeness
    _fsync_dir(tmp)
    _commit(tmp, out_dir, overwrite)
  except BaseException:
    _remove_tree(tmp)
    raise
  finally:
    if lock is not None:
      os.close(lock)
  return out_dir


def _remove_tree(path: str) -> None:
  shutil.rmtree(path, ignore_errors=True)


# ------------------------------------------------------------------ reading


def _need(obj: Any, key: str, kind, where: str) -> Any:
  if not isinstance(obj, dict) or key not in obj:
    raise DataError(f"{where}: field '{key}' missing")
  value = obj[key]
  if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
    raise DataError(f"{where}: field '{key}' is {type(value).__name__}, "
                    f"expected {getattr(kind, '__name__', kind)}")
  return value


class PreparedSource:
  """A dataset written by `prepare`, as a `PuzzleSource`.

  Validates the metadata, the index and each split file on open (DataError
  naming the file and field); `verify=True` also checks each file's sha256.
  `examples(split, group, version, rng)` returns the stored examples; `rng` is
  ignored. What the family stored beside them is in `attributes`,
  `extras(split)` and `index_arrays(split)`; `open_prepared` wraps this in the
  family's view (`PreparedHooks.view`), which is what evaluators get.
  """

  def __init__(self, path: str, *, verify: bool = False):
    self.path = os.path.abspath(path)
    if not os.path.isdir(self.path):
      raise DataError(f"{self.path}: no such directory")
    mfile = os.path.join(self.path, METADATA)
    if not os.path.isfile(mfile):
      raise DataError(f"{mfile}: missing (not a prepared dataset, or an "
                      "interrupted build)")
    try:
      with open(mfile, encoding="utf-8") as f:
        meta = json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
      raise DataError(f"{mfile}: not valid JSON: {e}") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
      raise DataError(f"{mfile}: field 'format' is "
                      f"{meta.get('format') if isinstance(meta, dict) else meta!r}"
                      f", expected {FORMAT!r}")
    self.metadata = meta
    info = _need(meta, "info", dict, mfile)
    splits = tuple(_need(info, "splits", list, f"{mfile} info"))
    try:
      self.info = DatasetInfo(
          name=_need(info, "name", str, f"{mfile} info"),
          seq_len=_need(info, "seq_len", int, f"{mfile} info"),
          vocab_size=_need(info, "vocab_size", int, f"{mfile} info"),
          num_puzzle_identifiers=_need(info, "num_puzzle_identifiers", int,
                                       f"{mfile} info"),
          splits=splits, family=self._family_name(meta, mfile))
    except TypeError as e:
      raise DataError(f"{mfile}: field 'info': {e}") from e
    self.attributes: dict[str, Any] = {
        k: tuple(v) if isinstance(v, list) else v
        for k, v in _need(meta, "attributes", dict, mfile).items()}
    self._splits: dict[str, dict[str, Any]] = {}
    for split in splits:
      self._splits[split] = self._open_split(
          split, _need(_need(meta, "splits", dict, mfile), split, dict, mfile),
          verify)
    self._extras = None
    # "extras" names the family's JSON; datasets written before families
    # existed name ARC's as arc.pairs.
    extras_file = meta.get("extras") or (meta.get("arc") or {}).get("pairs")
    if extras_file:
      self._load_extras(extras_file)

  @staticmethod
  def _family_name(meta: dict[str, Any], mfile: str) -> str:
    info = meta["info"]
    if "family" in info:
      return _need(info, "family", str, f"{mfile} info")
    # Written before DatasetInfo.family: the family declaring the class.
    cls = (meta.get("source") or {}).get("class", "")
    family = registry.family_of_class(cls) if isinstance(cls, str) else None
    return family.name if family is not None else ""


  def _open_split(self, split: str, m: dict[str, Any], verify: bool
                  ) -> dict[str, Any]:
    where = f"{os.path.join(self.path, METADATA)} splits.{split}"
    file = os.path.join(self.path, _need(m, "file", str, where))
    index = os.path.join(self.path, _need(m, "index", str, where))
    num_groups = _need(m, "num_groups", int, where)
    num_records = _need(m, "num_records", int, where)
    versions = np.asarray(_need(m, "num_versions", list, where), np.int64)
    names = _need(m, "group_names", list, where)
    if len(versions) != num_groups or len(names) != num_groups:
      raise DataError(f"{where}: {len(versions)} num_versions and {len(names)} "
                      f"group_names for num_groups {num_groups}")
    if (versions < 1).any():
      raise DataError(f"{where}: field 'num_versions' has a count < 1")
    if not os.path.isfile(file):
      raise DataError(f"{file}: missing")
    size = os.path.getsize(file)
    if size != _need(m, "file_bytes", int, where):
      raise DataError(f"{file}: {size} bytes, metadata field 'file_bytes' says "
                      f"{m['file_bytes']}")
    if verify and _sha256(file) != _need(m, "sha256", str, where):
      raise DataError(f"{file}: sha256 differs from metadata field 'sha256'")
    try:
      with np.load(index, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError) as e:
      raise DataError(f"{index}: unreadable: {e}") from e
    if "record_offsets" not in arrays:
      raise DataError(f"{index}: field 'record_offsets' missing")
    offsets = arrays["record_offsets"].astype(np.int64)
    if (offsets.shape != (versions.sum() + 1,) or offsets[0] != 0
        or (np.diff(offsets) < 0).any() or offsets[-1] != num_records):
      raise DataError(f"{index}: field 'record_offsets' does not match "
                      f"num_versions / num_records {num_records} in {where}")
    import grain  # pylint: disable=g-import-not-at-top  (no I/O at import)
    try:
      reader = grain.sources.ArrayRecordDataSource(file)
      count = len(reader)
    except RuntimeError as e:
      raise DataError(f"{file}: not a readable ArrayRecord file: "
                      f"{e or 'truncated or corrupt'}") from e
    if count != num_records:
      raise DataError(f"{file}: {count} records, metadata field "
                      f"'num_records' says {num_records}")
    return {"file": file, "reader": reader, "offsets": offsets,
            "first_row": np.concatenate([[0], np.cumsum(versions)]),
            "versions": versions, "names": names, "arrays": arrays}

  def _load_extras(self, name: str) -> None:
    file = os.path.join(self.path, name)
    try:
      with open(file, encoding="utf-8") as f:
        extras = json.load(f)
    except OSError as e:
      raise DataError(f"{file}: missing or unreadable: {e}") from e
    except ValueError as e:
      raise DataError(f"{file}: not valid JSON: {e}") from e
    for split, s in self._splits.items():
      if not isinstance(extras, dict) or split not in extras:
        raise DataError(f"{file}: field '{split}' missing")
    self._extras_file = file
    self._extras = extras

  # ------------------------------------------------------- PuzzleSource API

  def _split(self, split: str) -> dict[str, Any]:
    if split not in self._splits:
      raise ValueError(f"unknown split {split!r}; have {self.info.splits}")
    return self._splits[split]

  def num_groups(self, split: str) -> int:
    return len(self._split(split)["names"])

  def num_versions(self, split: str, group: int) -> int:
    if not 0 <= group < self.num_groups(split):
      raise IndexError(f"group {group} out of range for split {split!r}")
    return int(self._split(split)["versions"][group])

  def _row(self, split: str, group: int, version: int) -> int:
    if not 0 <= version < self.num_versions(split, group):
      raise IndexError(f"version {version} out of range for {split}/{group}")
    return int(self._split(split)["first_row"][group]) + version

  def examples(self, split: str, group: int, version: int,
               rng: np.random.Generator | None = None) -> list[Example]:
    del rng  # stored examples; see the module docstring for ARC translation
    s = self._split(split)
    row = self._row(split, group, version)
    lo, hi = int(s["offsets"][row]), int(s["offsets"][row + 1])
    try:
      # One __getitem__ per record: __getitems__ starts a thread pool per call
      # (~0.7 ms against ~10 us for a record).
      records = [s["reader"][i] for i in range(lo, hi)]
    except RuntimeError as e:
      raise DataError(f"{s['file']}: records {lo}..{hi - 1} unreadable: "
                      f"{e or 'corrupt'}") from e
    out = []
    for i, rec in zip(range(lo, hi), records):
      try:
        ex = decode_example(rec, self.info.seq_len)
      except ValueError as e:
        raise DataError(f"{s['file']}: record {i}: {e}") from e
      if (ex.group, ex.version) != (group, version):
        raise DataError(f"{s['file']}: record {i} is group {ex.group} version "
                        f"{ex.version}, the index says {group}/{version}")
      out.append(ex)
    return out

  def group_name(self, split: str, group: int) -> str:
    return self._split(split)["names"][group]

  def describe(self) -> dict[str, Any]:
    return {"name": self.info.name, "format": FORMAT, "path": self.path,
            "seq_len": self.info.seq_len, "vocab_size": self.info.vocab_size,
            "num_puzzle_identifiers": self.info.num_puzzle_identifiers,
            "splits": {s: {"groups": len(d["names"]),
                           "versions": int(d["versions"].sum()),
                           "records": int(d["offsets"][-1])}
                       for s, d in self._splits.items()},
            "seed": self.metadata.get("seed"),
            "max_versions": self.metadata.get("max_versions"),
            "prepared_from": self.metadata["source"]}

  def close(self) -> None:
    for s in self._splits.values():
      close = getattr(s["reader"], "close", None)
      if close is not None:
        close()

  # ------------------------------------------ what the family stored

  def row(self, split: str, group: int, version: int) -> int:
    """The stored version's row in `index_arrays(split)` (record order)."""
    return self._row(split, group, version)

  def index_arrays(self, split: str) -> dict[str, np.ndarray]:
    """The arrays of `{split}.index.npz` (record_offsets and the family's)."""
    return self._split(split)["arrays"]

  def index_file(self, split: str) -> str:
    return os.path.join(self.path, f"{split}.index.npz")

  def extras(self, split: str) -> Any:
    """The family's JSON object for `split` (None if it stores none)."""
    self._split(split)
    return None if self._extras is None else self._extras[split]

  @property
  def extras_file(self) -> str | None:
    return None if self._extras is None else self._extras_file


class PreparedView:
  """A family's view of a `PreparedSource`: the PuzzleSource calls go to the
  stored dataset (`self.prepared`); subclasses add what the family's
  evaluator and drawer need (`PreparedHooks.view`)."""

  def __init__(self, prepared: PreparedSource):
    self.prepared = prepared
    self.info = prepared.info
    self.path = prepared.path
    self.metadata = prepared.metadata
    self.attributes = prepared.attributes

  def num_groups(self, split: str) -> int:
    return self.prepared.num_groups(split)

  def num_versions(self, split: str, group: int) -> int:
    return self.prepared.num_versions(split, group)

  def examples(self, split: str, group: int, version: int,
               rng: np.random.Generator | None = None) -> list[Example]:
    return self.prepared.examples(split, group, version, rng)

  def group_name(self, split: str, group: int) -> str:
    return self.prepared.group_name(split, group)

  def describe(self) -> dict[str, Any]:
    return self.prepared.describe()

  def close(self) -> None:
    self.prepared.close()


def open_prepared(path: str | None = None, *, verify: bool = False,
                  **ignored: Any):
  """A prepared dataset as its family's source (`make_source("prepared",
  path=...)`). Options meant for the original source (e.g. from an experiment
  config) are logged and ignored, since the dataset was fixed when it was
  prepared."""
  if not path:
    raise ValueError("the prepared source needs path=<prepared directory>")
  if ignored:
    _log.warning("prepared dataset %s ignores source options %s", path,
                 sorted(ignored))
  base = PreparedSource(path, verify=verify)
  view = registry.family_of(base).prepared.view
  return base if view is None else view(base)


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
      description="Materialise a recur data source as ArrayRecord files.")
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
