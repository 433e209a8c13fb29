"""What a checkpoint must agree with to be resumed, and how to say what changed.

A run's fingerprint (saved in every checkpoint's meta and as model.json):

* "model": the model config (minus execution-only fields: unroll, remat,
  attention implementation, fused kernels), "global_batch_size";
* "data": the source's name, shapes and puzzle-table size; "options": the data
  options the source was built from (e.g. Sudoku's generator seed, number of
  augmentations; a file path is not compared, its content is); "seed": the
  run's seed (it orders the training data); "files": for data read from
  `path`, each file's size and SHA-256 (files over 64 MiB: size plus the hash
  of three 1 MiB samples, start/middle/end, so startup stays fast); "source":
  the source's own `describe()` (counts, statistics). A stored dataset
  (`data.source=tfds`, or the `tfds`/`prepared` source names) was fixed when
  it was built: its options are only the ones that choose it (name, source),
  since the config's generator options are not used, and its `describe()`
  carries the original source's.

`diff(saved, now)` lists differing fields. `resume_view(fp)` is what a resume
compares: the model's `num_puzzle_identifiers` is left out, because it is the
puzzle table's row count padded to a multiple of the device count (for row
sharding) and so changes with the slice size; the real count is compared as
`data.num_puzzle_identifiers`, and the loop re-pads the restored table
(elastic resume: 8 devices -> 4 -> 1, 2 processes -> 1). A field the checkpoint does not
record (written by an older version) is not a difference, so older
checkpoints still resume; `describe()` entries are compared only where both
sides have them (a source may add statistics). The optimizer settings are not
part of the fingerprint: changing the learning rate on resume (the usual answer
to a divergence) is allowed and reported by `optim_changes`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from etils import epath

__all__ = ["run_fingerprint", "data_options_compared", "data_files", "diff",
           "resume_view", "optim_changes"]

_SAMPLE = 1 << 20
_WHOLE_FILE_LIMIT = 64 << 20
_EXECUTION_ONLY = ("unroll", "remat", "attention_impl", "fused_kernels",
                   "fused_forward")
# Where the data is (not what it is: `files` and `source` compare that), and
# evaluation knobs.
_NOT_DATA = ("eval_batch_size", "eval_max_versions", "eval_max_batches", "path",
             "data_dir", "generated")
_STORED_NAMES = ("tfds", "prepared")


def data_options_compared(data_options: dict[str, Any]) -> dict[str, Any]:
  """The data options a resume compares (see the module docstring)."""
  if data_options.get("source") or data_options.get("name") in _STORED_NAMES:
    return {k: data_options[k] for k in ("name", "source") if data_options.get(k)}
  return {k: v for k, v in data_options.items() if k not in _NOT_DATA}


def _jsonable(obj):
  return json.loads(json.dumps(obj, sort_keys=True, default=_default))


def _default(o):
  if hasattr(o, "tolist"):
    return o.tolist()
  if isinstance(o, (set, frozenset)):
    return sorted(o)
  return str(o)


def _file_digest(p: epath.Path) -> dict[str, Any]:
  size = p.stat().length
  h = hashlib.sha256()
  with p.open("rb") as f:
    if size <= _WHOLE_FILE_LIMIT:
      for chunk in iter(lambda: f.read(_SAMPLE), b""):
        h.update(chunk)
      return {"size": size, "sha256": h.hexdigest()}
    for off in (0, size // 2, size - _SAMPLE):
      f.seek(off)
      h.update(f.read(_SAMPLE))
  return {"size": size, "sha256_sampled": h.hexdigest()}


def data_files(path: str | None) -> dict[str, Any]:
  """{relative file name: size and hash} of a data file or directory."""
  if not path:
    return {}
  root = epath.Path(path)
  if not root.exists():
    return {}          # the source reports a missing path itself
  if not root.is_dir():
    return {root.name: _file_digest(root)}
  out = {}
  todo = [root]
  while todo:                      # (epath has no recursive glob on gs://)
    for p in sorted(todo.pop().iterdir()):
      if p.name.startswith("."):
        continue
      if p.is_dir():
        todo.append(p)
      else:
        out[str(p.relative_to(root))] = _file_digest(p)
  return dict(sorted(out.items()))


def run_fingerprint(cfg, global_batch_size: int, source, data_options: dict[str, Any],
                    seed: int) -> dict[str, Any]:
  """The fingerprint of a run (see the module docstring)."""
  model = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in _EXECUTION_ONLY}
  info = source.info
  describe = {}
  if hasattr(source, "describe"):
    describe = {k: v for k, v in source.describe().items() if k != "path"}
  return _jsonable({
      "model": model, "global_batch_size": global_batch_size, "seed": int(seed),
      "data": {"name": info.name, "seq_len": info.seq_len, "vocab_size": info.vocab_size,
               "num_puzzle_identifiers": info.num_puzzle_identifiers,
               "options": data_options_compared(data_options),
               "files": data_files(data_options.get("path")),
               "source": describe}})


def resume_view(fp: dict[str, Any]) -> dict[str, Any]:
  """The fingerprint minus what depends on the device count (see module doc)."""
  out = dict(fp)
  if isinstance(out.get("model"), dict):
    out["model"] = {k: v for k, v in out["model"].items() if k != "num_puzzle_identifiers"}
  return out


def diff(saved: dict, now: dict, prefix: str = "") -> list[str]:
  """'field: checkpoint X vs now Y' for each difference (see module doc)."""
  out = []
  # data.source: a source may add statistics. data.options: an option the
  # current code does not record no longer chooses the data (a stored
  # dataset ignores the generator's options), so a checkpoint that recorded
  # it still resumes.
  lenient = prefix in ("data.source.", "data.options.")
  strict = prefix == "data.files."     # a file added to the data is a change
  for k in sorted(set(saved) | set(now)):
    if (k not in saved and not strict) or (lenient and k not in now):
      continue
    a, b = saved.get(k), now.get(k)
    if isinstance(a, dict) and isinstance(b, dict):
      out += diff(a, b, f"{prefix}{k}.")
    elif a != b:
      out.append(f"{prefix}{k}: checkpoint {_short(a)} vs now {_short(b)}")
  return out


def _short(v) -> str:
  s = repr(v)
  return s if len(s) <= 80 else s[:77] + "..."


def optim_changes(saved: dict | None, now: dict) -> list[str]:
  """Optimizer settings that differ from the checkpoint's (allowed)."""
  if not saved:
    return []
  return [f"optim.{k}: {saved[k]!r} -> {now.get(k)!r}" for k in sorted(saved)
          if k in now and saved[k] != now[k]]
