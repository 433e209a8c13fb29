"""Small file helpers shared by the library and the experiments.

* `write_bytes_atomic` / `write_json_atomic`: a temp file in the same
  directory, fsync and `os.replace` (a URL: one whole-object upload), so a
  crash never leaves half a file (run configs, submissions, solve outputs,
  sweep results).
* `read_metrics`: the rows of a metrics.jsonl; a torn last line (a run killed
  while writing, a full disk) is dropped with a warning, any other bad line is
  an error naming file and line.
* `cached_npz`: a generated data set stored once under a key of its
  parameters (Sudoku and Maze generators), written atomically.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from typing import Any, Callable, Mapping

import numpy as np
from etils import epath

__all__ = ["write_bytes_atomic", "write_json_atomic", "read_metrics", "parse_metrics", "MetricsFileError",
           "cached_npz"]


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


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
  """Writes `data` so that a reader sees the old file or the new one, never
  half of one: a local path through a temp file, fsync and `os.replace`; a URL
  (gs://..., through `etils.epath`) as one whole-object upload, which object
  stores make atomic (they have no rename)."""
  p = os.fspath(path)
  if "://" in p:
    dst = epath.Path(p)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(data)
    return
  _atomic(p, ".tmp", lambda f: f.write(data), "wb")


def write_json_atomic(path: str | os.PathLike, obj: Any, *, indent: int | None = 1,
                      sort_keys: bool = False, default=None) -> None:
  """Writes `obj` as JSON to `path` (a URL too) with `write_bytes_atomic`."""
  text = json.dumps(obj, indent=indent, sort_keys=sort_keys, default=default)
  write_bytes_atomic(path, text.encode("utf-8"))


class MetricsFileError(ValueError):
  """A metrics.jsonl line that is not JSON (not a torn last line)."""


def parse_metrics(text: str, where: str, warn=None) -> list[dict[str, Any]]:
  """Rows of metrics JSON lines read from `where`. A torn last line is dropped
  (reported via `warn`, default stderr); any other bad line raises
  MetricsFileError naming `where` and the line."""
  lines = text.split("\n")
  numbered = [(i + 1, l) for i, l in enumerate(lines) if l.strip().strip("\x00")]
  rows = []
  for j, (num, line) in enumerate(numbered):
    try:
      row = json.loads(line)
      if not isinstance(row, dict):
        raise ValueError(f"a {type(row).__name__}, not an object")
    except ValueError as e:
      if j == len(numbered) - 1:
        msg = (f"warning: {where} line {num}: dropping a torn last line "
               f"({len(line)} characters; a crash or full disk mid-write)")
        (warn or (lambda m: print(m, file=sys.stderr, flush=True)))(msg)
        break
      raise MetricsFileError(f"{where} line {num}: not a JSON object ({e}): "
                             f"{line[:80]!r}") from e
    rows.append(row)
  return rows


def read_metrics(path: str, warn=None) -> list[dict[str, Any]]:
  """The rows of a metrics.jsonl file ([] if it does not exist), as
  `parse_metrics` reads them."""
  if not os.path.exists(path):
    return []
  with open(path, encoding="utf-8", errors="replace") as f:
    return parse_metrics(f.read(), path, warn)


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
          # numpy's stub reserves **kwds names for allow_pickle; ours are arrays.
          lambda f: np.savez(f, **arrays,  # type: ignore[arg-type]
                             params=json.dumps(dict(params))), "wb")
  return arrays
