"""Periodic and final evaluation shared by training, `solve` and the experiments.

Every row runs `eval.num_steps` supervision segments (default halt_max_steps, no
early halting, as the reference). Reported beside the final exact/token accuracy:
exact accuracy after each segment (test-time compute curve), the early-exit
variant (stop a row at the first segment whose q_halt > 0) with the segments it
saves, and what the source's puzzle family scores (`recur.puzzles`): ARC
pass@K with votes pooled across augmented versions (and submission.json),
Sudoku/Maze validity, token accuracy.

Switches (`config.eval`):
* `puzzle_ids`: "true" (default) feeds each row its own puzzle identifier;
  "blank" feeds identifier 0 (the reference's blank puzzle) and "random" a
  random real identifier (seeded), to see how much the model relies on the
  embedding learned for that puzzle. Scoring still uses the true group/version.
* `arc_task_score`: "mean" (TRM's evaluator) or "all" (HRM's notebook: a task
  counts only if all its test inputs are solved).

Limits (`config.data`; the paper variants evaluate everything, the paper's
number, which takes hours on a CPU): `eval_batch_size` rows per batch (0: the
training batch), `eval_max_batches` (first N batches; 0/None: all),
`eval_max_versions` (ARC: the first K augmented versions of each test input).
A long evaluation prints progress (batches done / total, examples/s, ETA) at
most every `config.eval.progress_every_s` seconds (0: never).

Not offered: several supervision segments per optimizer update. Neither
reference does it (TinyRecursiveModels and sapientinc/HRM have only a main
branch; their pretrain.py calls backward once per segment, and none of their
open pull requests changes that), so there is nothing to match.

Pooled votes (`VotePool`): TRM's ARC evaluator never clears its votes, so the
pass@K it logs pools every evaluation of the run. With a pool, `evaluate` also
reports that number as "eval/pooled/pass@K" (beside the current weights' own
"eval/pass@K") and adds this evaluation's votes to the pool; the training loop
keeps the pool in its checkpoints so a resumed run reports the same.
"""
from __future__ import annotations

import functools
import itertools
import sys
import time
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils

from experiments import paths
from recur import sharding, train
from recur.data.base import BLANK_PUZZLE_ID
from recur.data.pipeline import eval_batches, make_global_batch
from recur.puzzles import registry

__all__ = ["evaluate", "format_eval", "run_eval_batches", "eval_batch_count",
           "Progress", "VotePool", "PUZZLE_ID_MODES"]

PUZZLE_ID_MODES = ("true", "blank", "random")
POOL_FORMAT = "recur.eval.pool/1"


class VotePool:
  """Votes pooled over every evaluation of a run (families that vote: ARC).

  `state` is JSON (None before the first evaluation): what a checkpoint keeps.
  """

  def __init__(self, state: dict[str, Any] | None = None):
    if state is not None and state.get("format") != POOL_FORMAT:
      raise ValueError(f"not a {POOL_FORMAT} state: {str(state)[:80]}")
    self.state = state

  @property
  def evaluations(self) -> int:
    return 0 if self.state is None else int(self.state["evaluations"])


def _feed_ids(ids: np.ndarray, mode: str, num_ids: int, seed: int) -> np.ndarray:
  """The puzzle identifiers the model sees under `mode` (see module doc)."""
  if mode == "true":
    return ids
  if mode == "blank":
    return np.full_like(ids, BLANK_PUZZLE_ID)
  if mode == "random":
    if num_ids < 2:
      raise ValueError("eval.puzzle_ids='random' needs a dataset with puzzle "
                       f"identifiers besides the blank one (it has {num_ids})")
    rng = np.random.default_rng(seed)
    return rng.integers(1, num_ids, size=ids.shape).astype(ids.dtype)
  raise ValueError(f"eval.puzzle_ids must be one of {PUZZLE_ID_MODES}, got {mode!r}")


def _gather(tree):
  if jax.process_count() == 1:
    return jax.device_get(tree)
  return multihost_utils.process_allgather(tree, tiled=True)


@functools.lru_cache(maxsize=16)
def _eval_fn(cfg, num_steps: int, keep_steps: bool, mesh):
  rep, rows = sharding.replicated(mesh), sharding.batch_sharding(mesh)
  return sharding.jit_under_mesh(
      functools.partial(train.eval_step, cfg=cfg, num_steps=num_steps,
                        keep_steps=keep_steps), mesh, in_shardings=(rep, rows))


def run_eval_batches(cfg, params, source, mesh, *, batch_size: int,
                     num_steps: int | None = None, max_versions=None,
                     max_batches: int | None = None, keep_steps: bool = False,
                     split: str = "test", puzzle_ids: str = "true",
                     seed: int = 0, prefetch: int = 2):
  """Yields (host batch incl. group/version/index/mask, host outputs).
  `puzzle_ids` ("true", "blank", "random") picks the identifiers the model is
  fed; the yielded batch keeps the true ones. With `max_batches` no batch
  beyond the first `max_batches` is built; `prefetch` batches are built ahead
  in a thread (0: none), and the input stops when the generator is closed."""
  if puzzle_ids not in PUZZLE_ID_MODES:
    raise ValueError(f"eval.puzzle_ids must be one of {PUZZLE_ID_MODES}, got "
                     f"{puzzle_ids!r}")
  n = num_steps or cfg.halt_max_steps
  fn = _eval_fn(cfg, n, keep_steps, mesh)
  params = jax.device_put(params, sharding.replicated(mesh))
  batches = eval_batches(source, batch_size, split=split,
                         process_index=jax.process_index(),
                         process_count=jax.process_count(),
                         max_versions=max_versions,
                         # a bounded loop builds no batch it will not use
                         prefetch=min(prefetch, max_batches - 1) if max_batches
                         else prefetch)
  try:
    yield from _run_batches(fn, params, batches, source, mesh, max_batches,
                            puzzle_ids, seed)
  finally:
    batches.close()   # stops the input thread of a loop left early


def _run_batches(fn, params, batches, source, mesh, max_batches, puzzle_ids,
                 seed):
  for i, local in enumerate(itertools.islice(batches, max_batches or None)):
    model_in = {k: local[k] for k in ("inputs", "labels", "puzzle_identifiers")}
    model_in["puzzle_identifiers"] = _feed_ids(
        local["puzzle_identifiers"], puzzle_ids,
        source.info.num_puzzle_identifiers,
        seed=(seed, i, jax.process_index()) if puzzle_ids == "random" else 0)
    out = fn(params, make_global_batch(model_in, mesh))
    host = _gather(out)
    meta = _gather({k: np.asarray(v) for k, v in local.items()})
    yield meta, host


def eval_batch_count(source, batch_size: int, max_versions: int | None = None,
                     max_batches: int | None = None, split: str = "test",
                     max_groups: int = 20_000) -> int | None:
  """Batches of `batch_size` rows an evaluation of `split` runs (the limits
  applied), or None when counting would cost more than a progress line is
  worth (more than `max_groups` groups and no `example_counts`)."""
  n = source.num_groups(split)
  if hasattr(source, "example_counts"):
    counts = np.asarray(source.example_counts(split), np.int64)
  elif n <= max_groups:
    # Every version of a group has as many examples as its first one.
    counts = np.array([len(source.examples(split, g, 0, np.random.default_rng(0)))
                       for g in range(n)], np.int64)
  else:
    return None if not max_batches else int(max_batches)
  versions = np.array([source.num_versions(split, g) for g in range(n)], np.int64)
  if max_versions:
    versions = np.minimum(versions, max_versions)
  total = -(-int((counts * versions).sum()) // batch_size)
  return min(total, max_batches) if max_batches else total


class Progress:
  """Progress lines of a long evaluation on process 0, at most one every
  `every_s` seconds (0: none): batches done / total, examples/s, ETA."""

  def __init__(self, total: int | None, every_s: float = 30.0, out=None):
    self.total, self.every_s = total, every_s
    self.out = out or sys.stdout
    self.batches = self.rows = 0
    self.lines = 0
    self._t0 = self._last = time.monotonic()

  def update(self, rows: int) -> None:
    self.batches += 1
    self.rows += rows
    now = time.monotonic()
    if self.every_s > 0 and now - self._last >= self.every_s:
      self._last = now
      self._print(now)

  def done(self) -> None:
    """A closing line, only after progress lines (short evaluations stay quiet)."""
    if self.lines:
      self._print(time.monotonic(), final=True)

  def _print(self, now: float, final: bool = False) -> None:
    if jax.process_index() != 0:
      return
    self.lines += 1
    elapsed = max(now - self._t0, 1e-9)
    rate = self.rows / elapsed
    if final:
      line = (f"eval: {self.batches} batches, {self.rows} examples in "
              f"{_clock(elapsed)} ({rate:.1f} examples/s)")
    elif self.total:
      left = elapsed / self.batches * max(self.total - self.batches, 0)
      line = (f"eval: {self.batches}/{self.total} batches "
              f"({100 * self.batches / self.total:.0f}%), {rate:.1f} examples/s, "
              f"ETA {_clock(left)}")
    else:
      line = f"eval: {self.batches} batches, {rate:.1f} examples/s"
    print(line, file=self.out, flush=True)


def _clock(seconds: float) -> str:
  s = int(round(seconds))
  return f"{s // 3600}h{s // 60 % 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _family_evaluator(source, task_score: str):
  ev = registry.family_of(source).evaluator(source, "test")
  if hasattr(ev, "task_score"):
    ev.task_score = task_score
  return ev


def evaluate(config, cfg, params, source, mesh, workdir: str | None = None,
             num_steps: int | None = None, max_versions=None,
             pool: VotePool | None = None) -> dict[str, Any]:
  """Evaluation metrics ("eval/..."); the family's files (ARC: submission.json)
  go to workdir. With `pool`, also the pooled votes' scores ("eval/pooled/...")
  and this evaluation's votes join the pool."""
  data = config.data
  opts = config.get("eval", {})
  n = num_steps or opts.get("num_steps", 0) or cfg.halt_max_steps
  bs = data.get("eval_batch_size", 0) or config.batch_size
  bs = -(-bs // mesh.devices.size) * mesh.devices.size
  task_score = opts.get("arc_task_score", "mean") or "mean"
  family_eval = _family_evaluator(source, task_score)
  exact_steps = np.zeros(n)
  acc_steps = np.zeros(n)
  count = 0
  early_exact = 0
  early_steps = 0
  max_versions = max_versions or data.get("eval_max_versions") or None
  max_batches = data.get("eval_max_batches") or None
  progress = Progress(eval_batch_count(source, bs, max_versions, max_batches),
                      float(opts.get("progress_every_s", 30.0) or 0.0))
  for meta, out in run_eval_batches(
      cfg, params, source, mesh, batch_size=bs, num_steps=n,
      max_versions=max_versions, max_batches=max_batches,
      puzzle_ids=opts.get("puzzle_ids", "true") or "true",
      seed=int(config.get("seed", 0))):
    mask = meta["mask"].astype(bool)
    count += int(mask.sum())
    exact_steps += (out["exact_per_step"] & mask).sum(-1)
    acc_steps += (out["acc_per_step"] * mask).sum(-1)
    # Early exit: first segment whose q_halt > 0 (else the last one).
    halt = out["q_halt_per_step"] > 0
    first = np.where(halt.any(0), halt.argmax(0), n - 1)
    early_exact += int((out["exact_per_step"][first, np.arange(len(first))] & mask).sum())
    early_steps += int(((first + 1) * mask).sum())
    family_eval.add_batch(meta, out)
    progress.update(int(mask.sum()))
  progress.done()
  c = max(count, 1)
  res: dict[str, Any] = {
      "eval/count": count,
      "eval/exact_accuracy": exact_steps[-1] / c,
      "eval/accuracy": acc_steps[-1] / c,
      "eval/num_steps": n,
      "eval/early_exit_exact_accuracy": early_exact / c,
      "eval/early_exit_mean_steps": early_steps / c,
  }
  for k in range(n):
    res[f"eval/exact_accuracy@{k + 1}"] = exact_steps[k] / c
  # count and exact accuracy come from the rollout above, for every family.
  res.update({f"eval/{k}": v for k, v in family_eval.result().items()
              if k not in ("count", "exact_accuracy")})
  if pool is not None and hasattr(family_eval, "votes_state"):
    pooled = _family_evaluator(source, task_score)
    if pool.state is not None:
      pooled.add_votes(pool.state["votes"])
    pooled.add_votes(family_eval.votes_state())
    pool.state = {"format": POOL_FORMAT, "evaluations": pool.evaluations + 1,
                  "votes": pooled.votes_state()}
    res.update({f"eval/pooled/{k}": v for k, v in pooled.result().items()
                if k.startswith("pass@")})
    res["eval/pooled/evaluations"] = pool.evaluations
  if workdir is not None:
    with paths.local_dir(workdir) as local:   # workdir may be gs://...
      family_eval.write_files(local)
  return res


def format_eval(step: int, res: dict[str, Any]) -> str:
  keys = [k for k in ("eval/exact_accuracy", "eval/accuracy", "eval/pass@1", "eval/pass@2",
                      "eval/pooled/pass@2",
                      "eval/valid_rate", "eval/early_exit_exact_accuracy",
                      "eval/early_exit_mean_steps") if k in res]
  return f"eval @ step {step}: " + ", ".join(f"{k[5:]} {res[k]:.4f}" for k in keys) + \
      f" (n={res['eval/count']})"
