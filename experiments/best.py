"""The best checkpoint of a run by a named evaluation metric.

    --config.best_metric=eval/exact_accuracy   (ARC: eval/pass@2)
    --config.best_mode=max                     (or min, e.g. for a loss)

The latest `keep_checkpoints` stay in `workdir/checkpoints/` (resume reads
only those); the best by `best_metric` is kept beside them in
`workdir/best/<step>/` (same layout, meta["best"] = {metric, mode, value}),
written whenever an evaluation improves on it strictly, so a late collapse
(TRM's final ARC-AGI-2 checkpoint at ~2% against 7-8% earlier) leaves the good
weights. `experiments.solve --checkpoint=WORKDIR/best`, `experiments.export
--best` and `recur.checkpoint.restore_for_inference(workdir, best=True)` load
it. A resumed run reads the best value back, so it keeps improving on it.
"""
from __future__ import annotations

import math
from typing import Any, Callable

from experiments import paths
from recur import checkpoint

__all__ = ["BestCheckpoint"]


class BestCheckpoint:
  """Saves a run's state into `workdir/best/` when `metric` improves."""

  def __init__(self, workdir: str, metric: str | None, mode: str = "max", *,
               async_save: bool = True, warn: Callable[[str], None] = print):
    if mode not in ("max", "min"):
      raise ValueError(f"best_mode must be 'max' or 'min', got {mode!r}")
    self.metric, self.mode, self._warn = metric or None, mode, warn
    self.value: float | None = None
    self.step: int | None = None
    self._ckpts = None
    self._warned = False
    if self.metric is None:
      return
    self._ckpts = checkpoint.RunCheckpoints(paths.join(workdir, checkpoint.BEST_DIR),
                                            keep=1, async_save=async_save)
    last = self._ckpts.latest_step()
    if last is not None:
      saved = self._ckpts.read_meta(last).get("best", {})
      if saved.get("metric") == self.metric and saved.get("mode") == self.mode:
        self.value, self.step = float(saved["value"]), last

  def _better(self, v: float) -> bool:
    if self.value is None:
      return True
    return v > self.value if self.mode == "max" else v < self.value

  def offer(self, step: int, results: dict[str, Any], state, data,
            meta: dict[str, Any]) -> bool:
    """Saves `state` as the best if `results[metric]` improves; True if saved."""
    if self._ckpts is None:
      return False
    if self.metric not in results:
      if not self._warned:
        self._warn(f"best_metric {self.metric!r} is not among the evaluation "
                   f"metrics ({', '.join(sorted(results))}); no best checkpoint kept")
        self._warned = True
      return False
    v = float(results[self.metric])
    if not math.isfinite(v) or not self._better(v) or step == self.step:
      return False
    self._ckpts.save(step, state, data, {**meta, "best": {
        "metric": self.metric, "mode": self.mode, "value": v}})
    self.value, self.step = v, step
    return True

  def wait(self) -> None:
    if self._ckpts is not None:
      self._ckpts.wait()

  def close(self) -> None:
    if self._ckpts is not None:
      self._ckpts.close()
