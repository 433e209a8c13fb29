"""One-line errors for the command-line programs.

A read-only or full workdir (EACCES, EROFS, ENOSPC, ... while writing
checkpoints, metrics, configs or outputs) or bad input data (`DataError`) is
a fault of the environment, not a bug: the user gets one line naming the path
and exit status 1 instead of a traceback. `--verbose` (absl programs) or the
environment variable RECUR_VERBOSE=1 keeps the full traceback.

    if __name__ == "__main__":
      cli_errors.run_absl(main)          # absl programs (experiments.*)
      cli_errors.guarded(main)(argv)     # argparse programs (recur.data.prepared)
"""
from __future__ import annotations

import errno
import functools
import os
import sys
from typing import Any, Callable

__all__ = ["VERBOSE_ENV", "storage_error", "describe", "guarded", "run_absl"]

VERBOSE_ENV = "RECUR_VERBOSE"

# What a full disk, a read-only mount, missing permissions or a file where a
# directory is expected look like while writing.
_STORAGE_ERRNOS = {errno.EACCES, errno.EROFS, errno.ENOSPC, errno.EDQUOT,
                   errno.EPERM, errno.ENOTDIR, errno.EEXIST, errno.EISDIR,
                   errno.EFBIG}
_WHAT = {errno.ENOSPC: "no space left on the device (disk full)",
         errno.EDQUOT: "disk quota exceeded",
         errno.EROFS: "read-only file system",
         errno.EACCES: "permission denied",
         errno.EPERM: "operation not permitted",
         errno.ENOTDIR: "a path component is a file, not a directory",
         errno.EEXIST: "a file is in the way",
         errno.EISDIR: "is a directory",
         errno.EFBIG: "file too large"}


def storage_error(e: BaseException) -> OSError | None:
  """The OSError of a storage fault behind `e` (itself, its cause or context:
  checkpoint and metrics writers re-raise), else None."""
  seen = set()
  cur: BaseException | None = e
  while cur is not None and id(cur) not in seen:
    seen.add(id(cur))
    if isinstance(cur, OSError) and cur.errno in _STORAGE_ERRNOS:
      return cur
    cur = cur.__cause__ or cur.__context__
  return None


def describe(e: OSError) -> str:
  """'error: cannot write PATH: what (ERRNO)' in one line."""
  path = e.filename if e.filename is not None else "(a file of the output)"
  if e.filename2 is not None:
    path = f"{path} -> {e.filename2}"
  code = e.errno if e.errno is not None else -1
  name = errno.errorcode.get(code, str(e.errno))
  return (f"error: cannot write {path}: {_WHAT.get(code, e.strerror)} ({name}); "
          f"nothing committed before it is lost (set {VERBOSE_ENV}=1 for the "
          "traceback)")


def _data_error(e: BaseException) -> BaseException | None:
  from recur.data.base import DataError  # pylint: disable=g-import-not-at-top
  return e if isinstance(e, DataError) else None


def guarded(main: Callable[..., Any],
            verbose: Callable[[], bool] | None = None) -> Callable[..., Any]:
  """`main` with storage faults and data errors turned into one line on
  stderr and exit status 1 (unless `verbose()` or RECUR_VERBOSE=1)."""

  @functools.wraps(main)
  def wrapper(*args, **kwargs):
    try:
      return main(*args, **kwargs)
    except Exception as e:  # pylint: disable=broad-except
      if os.environ.get(VERBOSE_ENV, "") not in ("", "0") or (verbose and verbose()):
        raise
      storage, data = storage_error(e), _data_error(e)
      if storage is not None:
        line = describe(storage)
      elif data is not None:
        line = f"error: {data}"
      else:
        raise
      print(line, file=sys.stderr, flush=True)
      sys.exit(1)

  return wrapper


def run_absl(main: Callable[[list[str]], Any]) -> None:
  """`absl.app.run(main)` with `guarded` errors and a --verbose flag."""
  from absl import app, flags  # pylint: disable=g-import-not-at-top
  if "verbose" not in flags.FLAGS:
    flags.DEFINE_bool("verbose", False, "Full tracebacks for storage and data "
                      "errors (default: one line).")
  app.run(guarded(main, lambda: bool(flags.FLAGS["verbose"].value)))
