"""Run outputs: metrics.jsonl, TensorBoard event files, the progress line.

Only process 0 writes. After a resume from step s, lines of metrics.jsonl for
steps > s (written by the killed run after its last checkpoint) are dropped, so
the file of a resumed run equals the file of a run that never stopped; the same
is done to the TensorBoard events (rewritten into one file holding the steps
<= s), so TensorBoard shows no step twice.

A torn last line of metrics.jsonl (a crash or a full disk mid-write) is
dropped with a warning; any other line that is not JSON is an error naming
the file and line.
"""
from __future__ import annotations

import glob
import json
import math
import os
import sys
import time
from typing import Any

from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter

from recur.files import MetricsFileError, read_metrics, write_json_atomic

__all__ = ["MetricsWriter", "Progress", "write_json_atomic", "read_metrics",
           "MetricsFileError"]


def _truncate_events(tb_dir: str, step: int) -> tuple[list, list[str]]:
  """(events with step <= `step`, the existing event files): the caller
  writes the events into a new file and deletes the old files."""
  from tensorboard.backend.event_processing import event_file_loader  # pylint: disable=g-import-not-at-top
  kept = []
  paths = sorted(glob.glob(os.path.join(tb_dir, "events.out.tfevents.*")))
  for path in paths:
    # Raw records: the parsing loader would turn simple_value into tensors.
    for record in event_file_loader.RawEventFileLoader(path).Load():
      event = event_pb2.Event.FromString(record)
      if event.HasField("summary") and event.step <= step:
        kept.append(event)
  return kept, paths


def _clean(v):
  if isinstance(v, float) and not math.isfinite(v):
    return str(v)
  return v


class MetricsWriter:
  """metrics.jsonl + TensorBoard scalars in `workdir` (no-op off process 0)."""

  def __init__(self, workdir: str, enabled: bool = True, resume_step: int = 0):
    self.enabled = enabled
    self.path = os.path.join(workdir, "metrics.jsonl")
    if not enabled:
      return
    os.makedirs(workdir, exist_ok=True)
    self._truncate_after(resume_step)
    self._jsonl = open(self.path, "a")
    tb_dir = os.path.join(workdir, "tensorboard")
    kept, old_files = _truncate_events(tb_dir, resume_step)
    self._tb = EventFileWriter(tb_dir)
    for event in kept:
      self._tb.add_event(event)
    self._tb.flush()
    for old in old_files:     # (a new file never reuses a name: pid, time)
      os.remove(old)

  def _truncate_after(self, step: int) -> None:
    """Keeps the rows up to `step`; rewrites the file (so a torn last line
    goes too) unless it is already exactly that."""
    if not os.path.exists(self.path):
      return
    rows = read_metrics(self.path)
    keep = [r for r in rows if r.get("step", 0) <= step]
    text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in keep)
    with open(self.path) as f:
      if f.read() == text:
        return
    tmp = self.path + ".tmp"
    with open(tmp, "w") as f:
      f.write(text)
    os.replace(tmp, self.path)

  def write(self, step: int, scalars: dict[str, Any]) -> None:
    if not self.enabled:
      return
    row = {"step": int(step), **{k: _clean(v) for k, v in scalars.items()}}
    self._jsonl.write(json.dumps(row, sort_keys=True) + "\n")
    self._jsonl.flush()
    values = [summary_pb2.Summary.Value(tag=k, simple_value=float(v))
              for k, v in scalars.items() if isinstance(v, (int, float))]
    self._tb.add_event(event_pb2.Event(wall_time=time.time(), step=int(step),
                                       summary=summary_pb2.Summary(value=values)))

  def flush(self) -> None:
    if self.enabled:
      self._jsonl.flush()
      self._tb.flush()

  def close(self) -> None:
    if self.enabled:
      self._jsonl.close()
      self._tb.close()


def _fmt_time(s: float) -> str:
  if not math.isfinite(s):
    return "?"
  s = int(s)
  h, rem = divmod(s, 3600)
  m, sec = divmod(rem, 60)
  return f"{h}h{m:02d}m" if h else f"{m}m{sec:02d}s"


class Progress:
  """A live one-line status: step, examples/s, ETA, loss."""

  def __init__(self, total_steps: int, start_step: int, global_batch: int,
               enabled: bool = True, stream=sys.stdout):
    self.total, self.batch, self.enabled, self.stream = total_steps, global_batch, enabled, stream
    self._t0, self._s0 = time.time(), start_step
    self._last_t, self._last_s = self._t0, start_step

  def rate(self, step: int) -> float:
    """Examples/s since the previous call."""
    now = time.time()
    dt, ds = now - self._last_t, step - self._last_s
    self._last_t, self._last_s = now, step
    return ds * self.batch / dt if dt > 0 and ds > 0 else 0.0

  def line(self, step: int, ex_per_s: float, metrics: dict[str, float]) -> None:
    if not self.enabled:
      return
    steps_per_s = ex_per_s / self.batch if self.batch else 0.0
    eta = (self.total - step) / steps_per_s if steps_per_s > 0 else float("inf")
    msg = (f"step {step}/{self.total} | {ex_per_s:8.1f} ex/s | "
           f"loss {metrics.get('train/loss', float('nan')):.4f} | "
           f"exact {metrics.get('train/exact_accuracy', float('nan')):.3f} | "
           f"ETA {_fmt_time(eta)}")
    print(msg, file=self.stream, flush=True)
