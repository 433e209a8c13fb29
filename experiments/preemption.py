"""Stopping cleanly on SIGTERM (Spot/preemptible TPU VMs, maintenance events,
`launch/tpu_vm.sh --stop`), and tracing a window of steps with jax.profiler.

The training loop polls two small objects once per step:

* `PreemptionWatch.reached(step)` is True at the one step at which every
  process saves a checkpoint and stops. One process: a SIGTERM handler sets a
  flag and the next step boundary is that step. Several processes
  (`jax.distributed`): JAX's preemption sync manager (its SIGTERM notifier in
  the coordination service) propagates the notice to every process and picks
  the step after the largest step any process has reached, so all of them save
  the same step even when only one was signalled
  (`multihost_utils.reached_preemption_sync_point`). The loop then saves that
  step, waits for the checkpoint to commit and raises `Preempted`; the entry
  point exits 0 and the same command resumes from that step.
* `ProfileWindow.poll(step, state)` starts a `jax.profiler` trace when `step`
  (completed steps) reaches A and stops it at B for `profile_steps="A:B"`; the
  trace lands in WORKDIR/tensorboard/plugins/profile/ (TensorBoard's profile
  tab; `pip install tensorboard-plugin-profile` or xprof to view it).
"""
from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time

import jax
from jax.experimental import multihost_utils

from experiments import paths

__all__ = ["Preempted", "PreemptionWatch", "ProfileWindow", "parse_profile_steps"]


class Preempted(Exception):
  """The run saved a checkpoint at `step` after SIGTERM and should exit 0."""

  def __init__(self, step: int, seconds: float | None = None):
    self.step = step
    self.seconds = seconds
    after = f" {seconds:.1f}s after the signal" if seconds is not None else ""
    super().__init__(f"preempted: checkpoint saved at step {step}{after}; "
                     "run the same command to resume")


def _distributed() -> bool:
  from jax._src import distributed  # pylint: disable=g-import-not-at-top
  return distributed.global_state.client is not None


class PreemptionWatch:
  """Polled once per step; see the module docstring. Use as a context manager
  (restores the previous SIGTERM handler)."""

  def __init__(self):
    self.signalled_at: float | None = None
    self._multi = _distributed()
    self._previous = None
    if not self._multi:
      # (With jax.distributed, JAX's own notifier owns SIGTERM.)
      self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)

  def _on_sigterm(self, signum, frame):
    del signum, frame
    if self.signalled_at is None:
      self.signalled_at = time.monotonic()

  def reached(self, step: int) -> bool:
    """True at the step where every process must save and stop."""
    if self._multi:
      hit = multihost_utils.reached_preemption_sync_point(step)
      if hit and self.signalled_at is None:
        self.signalled_at = time.monotonic()
      return hit
    return self.signalled_at is not None

  def seconds_since_signal(self) -> float | None:
    if self.signalled_at is None or self._multi:
      return None   # (multi-process: the notice time is not known here)
    return time.monotonic() - self.signalled_at

  def close(self) -> None:
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
      self._previous = None

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


def parse_profile_steps(spec: str | None) -> tuple[int, int] | None:
  """"A:B" -> (A, B) with 0 <= A < B; "" or None -> None."""
  if not spec:
    return None
  try:
    a, b = (int(x) for x in str(spec).split(":"))
  except ValueError:
    raise ValueError(f"config.profile_steps={spec!r}: expected 'A:B', e.g. '10:15'") from None
  if not 0 <= a < b:
    raise ValueError(f"config.profile_steps={spec!r}: needs 0 <= A < B")
  return a, b


class ProfileWindow:
  """Traces the steps after step A up to step B (see the module docstring)."""

  def __init__(self, spec: str | None, workdir: str):
    self.window = parse_profile_steps(spec)
    self._target = paths.join(workdir, "tensorboard")
    if jax.process_count() > 1:  # one trace folder per process (same host names)
      self._target = paths.join(self._target, f"process_{jax.process_index()}")
    self._local = None
    self.active = False
    self.done = False

  def poll(self, step: int, state=None) -> None:
    if self.window is None or self.done:
      return
    a, b = self.window
    if not self.active and a <= step < b:
      # jax.profiler writes through the local file system: trace into a
      # temporary folder for a URL workdir and upload it when the trace ends.
      self._local = (tempfile.mkdtemp(prefix="recur-profile-")
                     if paths.is_url(self._target) else self._target)
      jax.profiler.start_trace(self._local)
      self.active = True
    elif self.active and step >= b:
      if state is not None:
        jax.block_until_ready(state)  # the traced steps' device work included
      self.stop()

  def stop(self) -> None:
    if not self.active:
      return
    jax.profiler.stop_trace()
    self.active, self.done = False, True
    if self._local != self._target:
      for root, _, files in os.walk(self._local):
        rel = os.path.relpath(root, self._local)
        for name in files:
          with open(os.path.join(root, name), "rb") as f:
            dst = paths.join(self._target, *([] if rel == "." else rel.split(os.sep)), name)
            paths.write_bytes_atomic(dst, f.read())
      shutil.rmtree(self._local, ignore_errors=True)
