"""metrics.jsonl and TensorBoard events in a workdir that may be a bucket.

A local workdir keeps one `metrics.jsonl`, appended one line per row and
flushed at once (as before). Object stores (gs://, s3://) cannot append, and
rewriting one ever-growing object per row would cost O(rows) per write, so a
URL workdir keeps the same rows in **rolling chunks**:

    WORKDIR/metrics/000000.jsonl   rows 1..1000 (full: never written again)
    WORKDIR/metrics/000001.jsonl   rows 1001.. (the open chunk)

Each `write` uploads the open chunk whole (at most `CHUNK_ROWS` lines; one
object upload is atomic), so a reader, also one reading while the run writes,
sees every chunk either before or after a row was added, never a torn line.
`read_metrics(workdir)` merges `metrics.jsonl` and the chunks in name order.
After a resume from step s, rows for steps > s are dropped from the end (the
last chunks are rewritten or deleted), so the rows of a resumed run equal
those of a run that never stopped, for both layouts.

TensorBoard's event writer needs TensorFlow for gs:// and appends, so for a URL
workdir the events are written to a local temporary directory and the event
files uploaded whole to WORKDIR/tensorboard/ every `sync_every_s` seconds and
on flush/close (TensorBoard reads gs:// event files with or without TF, via
fsspec). After a SIGKILL the uploaded events may lag by up to `sync_every_s`;
metrics.jsonl (the chunks) never lags.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from typing import Any

from etils import epath
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter

from experiments import paths
from recur import files

__all__ = ["read_metrics", "JsonlLog", "ChunkedJsonlLog", "open_log", "TensorBoardEvents",
           "CHUNK_ROWS"]

CHUNK_ROWS = 1000


def _parse(text: str, where: str) -> list[dict[str, Any]]:
  """Rows of JSON lines: a torn last line (a killed writer, a full disk) is
  dropped with a warning, any other bad line is an error naming file and line."""
  return files.parse_metrics(text, where)


def _truncate_events(tb_dir: str, step: int) -> tuple[list, list[str]]:
  """(events with step <= `step`, the existing event files): the caller
  writes the events into a new file and deletes the old files."""
  from tensorboard.backend.event_processing import event_file_loader  # pylint: disable=g-import-not-at-top
  kept = []
  old = sorted(os.path.join(tb_dir, n) for n in os.listdir(tb_dir)
               if n.startswith("events.out.tfevents.")) if os.path.isdir(tb_dir) else []
  for path in old:
    # Raw records: the parsing loader would turn simple_value into tensors.
    for record in event_file_loader.RawEventFileLoader(path).Load():
      event = event_pb2.Event.FromString(record)
      if event.HasField("summary") and event.step <= step:
        kept.append(event)
  return kept, old


def _chunk_files(workdir: str) -> list[epath.Path]:
  d = paths.as_path(workdir) / "metrics"
  if not d.exists():
    return []
  return sorted((p for p in d.iterdir() if p.name.endswith(".jsonl")
                 and p.name[:-6].isdigit()), key=lambda p: p.name)


def _read_chunk(p: epath.Path) -> list[dict[str, Any]]:
  try:
    return _parse(p.read_text(), os.fspath(p))
  except FileNotFoundError:
    return []  # deleted by a resuming run between listing and reading


def read_metrics(workdir: str) -> list[dict[str, Any]]:
  """All rows of a run, local or URL workdir, also while it is being written."""
  paths.refresh(workdir)
  rows = []
  jsonl = paths.as_path(workdir) / "metrics.jsonl"
  if jsonl.exists():
    rows += _parse(jsonl.read_text(), os.fspath(jsonl))
  for p in _chunk_files(workdir):
    rows += _read_chunk(p)
  return rows


def _line(row: dict[str, Any]) -> str:
  return json.dumps(row, sort_keys=True) + "\n"


class JsonlLog:
  """WORKDIR/metrics.jsonl on a local disk: appended and flushed per row."""

  def __init__(self, workdir: str, resume_step: int):
    self.path = os.path.join(paths.normalize(workdir), "metrics.jsonl")
    os.makedirs(os.path.dirname(self.path), exist_ok=True)
    if os.path.exists(self.path):
      with open(self.path) as f:
        text = f.read()
      rows = _parse(text, self.path)
      keep = [r for r in rows if r.get("step", 0) <= resume_step]
      if len(keep) != len(rows) or (text and not text.endswith("\n")):
        paths.write_text_atomic(self.path, "".join(_line(r) for r in keep))
    self._f = open(self.path, "a")

  def write(self, row: dict[str, Any]) -> None:
    self._f.write(_line(row))
    self._f.flush()

  def close(self) -> None:
    self._f.close()


class ChunkedJsonlLog:
  """WORKDIR/metrics/NNNNNN.jsonl: chunks of at most `chunk_rows` rows, each
  uploaded whole on every write (for stores that cannot append)."""

  def __init__(self, workdir: str, resume_step: int, chunk_rows: int = CHUNK_ROWS):
    self.dir = paths.as_path(workdir) / "metrics"
    self.dir.mkdir(parents=True, exist_ok=True)
    self.chunk_rows = chunk_rows
    paths.refresh(workdir)
    chunks = _chunk_files(workdir)
    self._index, self._lines = 0, []
    # Walk back from the last chunk, dropping rows of steps > resume_step.
    while chunks:
      last = chunks.pop()
      rows = _read_chunk(last)
      keep = [r for r in rows if r.get("step", 0) <= resume_step]
      if not keep:
        last.unlink(missing_ok=True)
        continue
      self._index = int(last.name[:-6])
      self._lines = [_line(r) for r in keep]
      if len(keep) != len(rows):
        self._upload()
      if len(self._lines) >= chunk_rows:
        self._index, self._lines = self._index + 1, []
      break

  def _upload(self) -> None:
    paths.write_text_atomic(self.dir / f"{self._index:06d}.jsonl", "".join(self._lines))

  def write(self, row: dict[str, Any]) -> None:
    self._lines.append(_line(row))
    self._upload()
    if len(self._lines) >= self.chunk_rows:
      self._index, self._lines = self._index + 1, []

  def close(self) -> None:
    pass  # every row is already uploaded


def open_log(workdir: str, resume_step: int, chunked: bool | None = None):
  """The layout for `workdir`: chunks for URLs, metrics.jsonl on a disk."""
  if chunked is None:
    chunked = paths.is_url(workdir)
  return (ChunkedJsonlLog if chunked else JsonlLog)(workdir, resume_step)


class TensorBoardEvents:
  """Scalar events in WORKDIR/tensorboard (written locally and uploaded for a
  URL workdir, see the module docstring)."""

  def __init__(self, workdir: str, resume_step: int = 0, sync_every_s: float = 30.0):
    self._remote = paths.as_path(workdir) / "tensorboard" if paths.is_url(workdir) else None
    self._remote_old: list[epath.Path] = []
    if self._remote is None:
      self._local = os.path.join(paths.normalize(workdir), "tensorboard")
    else:
      self._local = tempfile.mkdtemp(prefix="recur-tb-")
      if self._remote.exists():      # the events of the run being resumed
        for p in sorted(self._remote.iterdir()):
          if p.name.startswith("events.out.tfevents."):
            with open(os.path.join(self._local, p.name), "wb") as f:
              f.write(p.read_bytes())
            self._remote_old.append(p)
    # After a resume from step s the events are rewritten into one new file
    # holding the steps <= s, so TensorBoard shows no step twice.
    kept, old_files = _truncate_events(self._local, resume_step)
    self._writer = EventFileWriter(self._local)
    for event in kept:
      self._writer.add_event(event)
    self._writer.flush()
    for old in old_files:     # (a new file never reuses a name: pid, time)
      os.remove(old)
    self._sync_every_s = sync_every_s
    self._synced_at = time.monotonic()
    if self._remote is not None and self._remote_old:
      self.flush()

  def add_scalars(self, step: int, scalars: dict[str, Any]) -> None:
    values = [summary_pb2.Summary.Value(tag=k, simple_value=float(v))
              for k, v in scalars.items()
              if isinstance(v, (int, float))]
    self._writer.add_event(event_pb2.Event(wall_time=time.time(), step=int(step),
                                           summary=summary_pb2.Summary(value=values)))
    if self._remote is not None and time.monotonic() - self._synced_at >= self._sync_every_s:
      self.flush()

  def flush(self) -> None:
    self._writer.flush()
    if self._remote is not None:
      self._remote.mkdir(parents=True, exist_ok=True)
      for name in os.listdir(self._local):
        with open(os.path.join(self._local, name), "rb") as f:
          paths.write_bytes_atomic(self._remote / name, f.read())
      for p in self._remote_old:   # replaced by the rewritten file above
        p.unlink(missing_ok=True)
      self._remote_old = []
      self._synced_at = time.monotonic()

  def close(self) -> None:
    self.flush()
    self._writer.close()
    if self._remote is not None:
      shutil.rmtree(self._local, ignore_errors=True)
