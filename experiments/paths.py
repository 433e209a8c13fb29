"""Paths that may be URLs: a local directory or `gs://bucket/run` alike.

Every file a run reads or writes (workdir, data, solve/export inputs and
outputs) goes through here, as `etils.epath.Path`, the path type Orbax uses:
local paths use the OS, `gs://` (and other fsspec schemes, e.g. `s3://`) use
fsspec (`gcsfs` from the `.[gcp]` extra). Object stores differ from a disk in
two ways that matter here:

* No rename: GCS has no atomic rename (gcsfs copies then deletes), but a single
  object upload is atomic. So `write_*_atomic` renames a temp file locally and
  uploads the whole object in one request on a store; a reader never sees half
  a file either way.
* No append: see experiments/writers.py for how metrics.jsonl is kept there.

Tools that want a real file name (matplotlib, np.savez, data loaders reading a
directory) get one from `local_output` (written locally, uploaded on exit) and
`local_copy` (downloaded once into a cache).
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
from typing import Any, Iterator

from etils import epath

from recur import files

__all__ = ["is_url", "normalize", "as_path", "join", "exists", "read_text", "refresh",
           "write_text_atomic", "write_bytes_atomic", "write_json_atomic",
           "local_output", "local_dir", "local_copy", "cache_dir"]

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_url(path: str | os.PathLike) -> bool:
  """True for `scheme://...` (gs://, s3://, ...), False for local paths."""
  return bool(_URL.match(os.fspath(path)))


def normalize(path: str | os.PathLike) -> str:
  """A URL unchanged (minus a trailing '/'), a local path made absolute.

  (`os.path.abspath('gs://b/run')` would give '<cwd>/gs:/b/run'.)"""
  p = os.fspath(path)
  if is_url(p):
    return p.rstrip("/") if not p.endswith("://") else p
  return os.path.abspath(os.path.expanduser(p))


def as_path(path: str | os.PathLike) -> epath.Path:
  """`epath.Path` of `normalize(path)`."""
  return epath.Path(normalize(path))


def join(base: str | os.PathLike, *parts: str) -> str:
  """Joins with '/', for local paths and URLs alike (as a string)."""
  return os.fspath(as_path(base).joinpath(*parts))


def refresh(path: str | os.PathLike) -> None:
  """Forgets cached listings and sizes under a URL (gcsfs caches them per
  process; a reader following a run that rewrites objects needs fresh ones)."""
  p = normalize(path)
  if not is_url(p):
    return
  from etils.epath import backend  # pylint: disable=g-import-not-at-top
  try:
    backend.fsspec_backend.fs(p).invalidate_cache()
  except (ImportError, ValueError, NotImplementedError):
    pass


def exists(path: str | os.PathLike) -> bool:
  return as_path(path).exists()


def read_text(path: str | os.PathLike) -> str:
  return as_path(path).read_text()


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
  """Writes `data` so that a reader sees the old file or the new one, never
  half of one (`recur.files.write_bytes_atomic` on the normalized path)."""
  files.write_bytes_atomic(normalize(path), data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
  write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
  files.write_json_atomic(normalize(path), obj, indent=1, sort_keys=True)


@contextlib.contextmanager
def local_output(path: str | os.PathLike) -> Iterator[str]:
  """Yields a local file name to write `path` through.

  Local `path`: its own name (parent directory created). URL: a temp file,
  uploaded to `path` in one piece when the block ends without an error."""
  p = normalize(path)
  if not is_url(p):
    os.makedirs(os.path.dirname(p), exist_ok=True)
    yield p
    return
  with tempfile.TemporaryDirectory(prefix="recur-out-") as tmp:
    local = os.path.join(tmp, os.path.basename(p))
    yield local
    if os.path.exists(local):
      with open(local, "rb") as f:
        write_bytes_atomic(p, f.read())


@contextlib.contextmanager
def local_dir(path: str | os.PathLike) -> Iterator[str]:
  """Yields a local directory whose files end up in directory `path`.

  Local `path`: the directory itself. URL: a temp directory whose files are
  uploaded (one object each) into `path` when the block ends without an error."""
  p = normalize(path)
  if not is_url(p):
    os.makedirs(p, exist_ok=True)
    yield p
    return
  with tempfile.TemporaryDirectory(prefix="recur-out-") as tmp:
    yield tmp
    for name in sorted(os.listdir(tmp)):
      local = os.path.join(tmp, name)
      if os.path.isfile(local):
        with open(local, "rb") as f:
          write_bytes_atomic(f"{p}/{name}", f.read())


def cache_dir() -> str:
  """Where downloaded inputs are kept: $RECUR_CACHE or ~/.cache/recur."""
  return os.environ.get("RECUR_CACHE") or os.path.join(
      os.path.expanduser("~"), ".cache", "recur")


def _copy_file(src: epath.Path, dst: str) -> None:
  os.makedirs(os.path.dirname(dst), exist_ok=True)
  tmp = dst + ".part"
  with src.open("rb") as fin, open(tmp, "wb") as fout:
    shutil.copyfileobj(fin, fout, length=1 << 22)
  os.replace(tmp, dst)


def _copy_tree(src: epath.Path, dst: str) -> None:
  for child in src.iterdir():
    target = os.path.join(dst, child.name)
    if child.is_dir():
      _copy_tree(child, target)
    else:
      _copy_file(child, target)


def _stamp(src: epath.Path) -> str:
  """What changes when the file or any file under the directory `src` is
  rewritten: a hash of every file's relative name, size and mtime."""
  h = hashlib.sha256()

  def visit(p: epath.Path, rel: str) -> None:
    if p.is_dir():
      for child in sorted(p.iterdir(), key=lambda c: c.name):
        visit(child, f"{rel}/{child.name}")
    else:
      st = p.stat()
      h.update(f"{rel}\t{st.length}\t{st.mtime}\n".encode())

  visit(src, "")
  return h.hexdigest()


def local_copy(path: str | os.PathLike, refresh: bool = False) -> str:
  """A local path holding the file or directory `path`.

  Local paths are returned as they are. A URL is downloaded into
  `cache_dir()/inputs/<hash of the URL>/<name>`; a `.complete` marker beside
  it says the copy finished (an interrupted download is redone) and records
  the remote's listing stamp (names, sizes, mtimes), so the copy is reused
  while the remote is unchanged and downloaded again when it was rewritten
  (e.g. a dataset rebuilt in place in the bucket)."""
  p = normalize(path)
  if not is_url(p):
    return p
  src = epath.Path(p)
  key = hashlib.sha256(p.encode()).hexdigest()[:16]
  root = os.path.join(cache_dir(), "inputs", key)
  dst = os.path.join(root, src.name or "data")
  marker = os.path.join(root, ".complete")
  if not src.exists():
    raise FileNotFoundError(f"{p}: no such file or directory")
  stamp = f"{p}\n{_stamp(src)}\n"
  if os.path.exists(marker) and not refresh:
    with open(marker) as f:
      if f.read() == stamp:
        return dst
  shutil.rmtree(root, ignore_errors=True)
  if src.is_dir():
    _copy_tree(src, dst)
    os.makedirs(dst, exist_ok=True)
  else:
    _copy_file(src, dst)
  with open(marker, "w") as f:
    f.write(stamp)
  return dst
