"""Run outputs: metrics.jsonl, TensorBoard event files, the progress line.

Only process 0 writes. After a resume from step s, rows of metrics.jsonl for
steps > s (written by the killed run after its last checkpoint) are dropped, so
the rows of a resumed run equal those of a run that never stopped, and the
TensorBoard events are rewritten to hold the steps <= s, so TensorBoard shows no
step twice. The workdir may be a URL (gs://...): experiments/metrics_log.py
keeps the rows there in whole-object chunks, and `read_metrics(workdir)` reads
either layout. A torn last line (a crash or a full disk mid-write) is dropped
with a warning; any other line that is not JSON is an error naming the file
and line.
"""
from __future__ import annotations

import math
import sys
import time
from typing import Any

from experiments import metrics_log
from experiments.paths import write_json_atomic

from recur.files import MetricsFileError

__all__ = ["MetricsWriter", "Progress", "write_json_atomic", "read_metrics",
           "MetricsFileError"]

read_metrics = metrics_log.read_metrics


def _clean(v):
  if isinstance(v, float) and not math.isfinite(v):
    return str(v)
  return v


class MetricsWriter:
  """metrics.jsonl + TensorBoard scalars in `workdir` (no-op off process 0)."""

  def __init__(self, workdir: str, enabled: bool = True, resume_step: int = 0):
    self.enabled = enabled
    if not enabled:
      return
    self._log = metrics_log.open_log(workdir, resume_step)
    self._tb = metrics_log.TensorBoardEvents(workdir, resume_step)

  def write(self, step: int, scalars: dict[str, Any]) -> None:
    if not self.enabled:
      return
    self._log.write({"step": int(step), **{k: _clean(v) for k, v in scalars.items()}})
    self._tb.add_scalars(step, scalars)

  def flush(self) -> None:
    if self.enabled:
      self._tb.flush()

  def close(self) -> None:
    if self.enabled:
      self._log.close()
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
