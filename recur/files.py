"""Small file helpers shared by the library and the experiments.

* `write_json_atomic`: JSON through a temp file in the same directory, fsync and
  `os.replace`, so a crash never leaves half a file (run configs, submissions,
  solve outputs, sweep results).
* `read_metrics`: the rows of a metrics.jsonl; a torn last line (a run killed
  while writing) is skipped rather than failing the reader.
* `cached_npz`: a generated data set stored once under a key of its
  parameters (Sudoku and Maze generators), written atomically.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from typing import Any, Callable, Mapping

import numpy as np

__all__ = ["write_json_atomic", "read_metrics", "cached_npz"]


def _atomic(path: str, suffix: str, write: Callable[[Any], None], mode: str) -> None:
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=directory)
  try:
    with os.fdopen(fd, mode) as f:
      write(f)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def write_json_atomic(path: str, obj: Any, *, indent: int | None = 1,
                      sort_keys: bool = False, default=None) -> None:
  """Writes `obj` as JSON to `path` via a temp file and `os.replace`."""
  _atomic(path, ".json", lambda f: json.dump(obj, f, indent=indent,
                                             sort_keys=sort_keys, default=default),
          "w")


def read_metrics(path: str) -> list[dict[str, Any]]:
  """Rows of a metrics.jsonl ([] if the file does not exist; bad lines skipped)."""
  rows = []
  if not os.path.exists(path):
    return rows
  with open(path, encoding="utf-8") as f:
    for line in f:
      if not line.strip():
        continue
      try:
        rows.append(json.loads(line))
      except json.JSONDecodeError:
        continue
  return rows


def cached_npz(cache_dir: str | None, prefix: str, params: Mapping[str, Any],
               make: Callable[[], Mapping[str, np.ndarray]]
               ) -> dict[str, np.ndarray]:
  """Arrays made by `make()`, stored in `cache_dir` under a hash of `params`.

  Without `cache_dir` this is just `make()`. Otherwise an existing
  `{prefix}_{hash}.npz` is loaded, or `make()`'s arrays are written atomically
  (with `params` beside them, for a human reading the cache) and returned.
  """
  if cache_dir is None:
    return dict(make())
  key = hashlib.sha256(json.dumps(dict(params), sort_keys=True).encode()).hexdigest()
  path = os.path.join(cache_dir, f"{prefix}_{key[:16]}.npz")
  if os.path.exists(path):
    with np.load(path) as z:
      return {k: z[k] for k in z.files if k != "params"}
  arrays = dict(make())
  _atomic(path, ".tmp.npz",
          lambda f: np.savez(f, **arrays, params=json.dumps(dict(params))), "wb")
  return arrays
