"""Solving ARC tasks never trained on: fit, predict under every version, vote.

Each task gets new puzzle-embedding rows (one per augmented version), fitted on
its demonstration pairs (`recur.inference.fit_puzzle_embeddings`, the dense
weights frozen, then optionally everything); every test input is then
predicted under every version with the test-time compute knobs
(`recur.inference.run_knobs`), and votes are pooled as in evaluation
(`ArcEvaluator`). This is the family's `PuzzleFamily.solve_tasks` hook, which
`experiments.solve` calls for ARC inputs.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import jax
import numpy as np

from recur import inference
from recur.config import ModelConfig
from recur.data.pipeline import eval_batches
from recur.puzzles.arc import augment as aa
from recur.puzzles.arc.evaluate import EMPTY_GRID, ArcEvaluator, validate_submission
from recur.puzzles.arc.tasks import ArcTaskSet, load_tasks

__all__ = ["solve_tasks"]


def _pass_at(ev: ArcEvaluator):
  return ev.pass_at((1, 2))   # over the test inputs with known outputs


def _details_of(fits, ev: ArcEvaluator, sub: dict) -> dict[str, list]:
  """Per test input: the winner's confidence, the top votes and, with the
  output known, whether each attempt is right."""
  out = {}
  for g, t in enumerate(fits):
    entries = []
    for i, pair in enumerate(t.test):
      ranked = ev.ranked(g, i)
      e = {"confidence": float(ranked[0][2]) if ranked else 0.0,
           "votes": [int(c[1]) for c in ranked[:2]], "num_candidates": len(ranked)}
      if pair.output is not None:
        truth = aa.grid_key(pair.output)
        for a in (1, 2):
          e[f"attempt_{a}_correct"] = aa.grid_key(np.asarray(
              sub[t.task_id][i][f"attempt_{a}"], np.uint8)) == truth
      entries.append(e)
    out[t.task_id] = entries
  return out


def _predict(cfg, params, tasks: ArcTaskSet, n: int, *, versions, steps_trained,
             early_exit, trajectories, noise, batch_size, seed):
  """Every test input under every version with the knobs; returns
  (submission, details per task, metrics)."""
  v_max = max(tasks.num_versions("test", g) for g in range(len(tasks.tasks)))
  v_settings = sorted({min(2 ** i, v_max) for i in range(v_max.bit_length() + 1)})
  final, early, clean = ArcEvaluator(tasks), ArcEvaluator(tasks), ArcEvaluator(tasks)
  step_evs = [ArcEvaluator(tasks) for _ in range(n)]
  version_evs = {v: ArcEvaluator(tasks) for v in v_settings}
  exit_steps, rows_seen = 0, 0
  for bi, b in enumerate(eval_batches(tasks, batch_size, split="test",
                                      max_versions=versions, prefetch=0)):
    key = jax.random.fold_in(jax.random.PRNGKey(seed), bi)
    ch = inference.run_knobs(cfg, params, b, n, trajectories=trajectories,
                             noise=noise, early_exit=early_exit, key=key)
    meta, mask = (b["group"], b["version"], b["index"]), b["mask"]
    final.update(*meta, *ch.final, mask)
    early.update(*meta, *ch.early, mask)
    clean.update(*meta, ch.cand_p[0], ch.cand_q[0], mask)
    for t, (p, q) in enumerate(ch.per_step):
      step_evs[t].update(*meta, p, q, mask)
    for v, ev in version_evs.items():
      ev.update(*meta, *ch.final, mask & (b["version"] < v))
    exit_steps += int(ch.exit_steps[mask].sum())
    rows_seen += int(mask.sum())
  sub = final.submission()
  metrics: dict[str, Any] = {}
  if _pass_at(final) is not None:
    metrics = {"final": _pass_at(final), "early_exit": _pass_at(early),
               "per_step": {str(t + 1): _pass_at(e) for t, e in enumerate(step_evs)},
               "per_versions": {str(v): _pass_at(e) for v, e in version_evs.items()},
               "trained_steps": steps_trained}
    if trajectories > 1:
      metrics["trajectories"] = {"k": trajectories, "noise": noise,
                                 "clean": _pass_at(clean), "best_q": metrics["final"]}
  metrics["early_exit_mean_steps"] = exit_steps / max(rows_seen, 1)
  metrics["early_exit_steps_saved"] = 1.0 - exit_steps / max(rows_seen * n, 1)
  return sub, _details_of(tasks.tasks, final, sub), metrics


def solve_tasks(cfg: ModelConfig, params: dict, path: str, *, versions: int = 8,
                fit_steps: int = 100, fit_lr: float = 1e-2, fit_batch_size: int = 32,
                finetune_all_steps: int = 0, finetune_lr: float = 1e-4,
                steps: int = 0, early_exit: bool = False, trajectories: int = 1,
                noise: float = 0.0, batch_size: int = 128, seed: int = 0,
                log: Callable[[str], None] | None = None, skip_bad: bool = True
                ) -> tuple[dict, dict]:
  """The tasks of `path` (a task JSON, a directory of them, a Kaggle
  challenges file). Returns (submission, details): the ARC Prize submission
  `{task_id: [{"attempt_1": grid, "attempt_2": grid}, ...]}` (validated;
  [[0]] for a task too large for the model's canvas) and
  {"tasks": {task_id: [per test input]}, "metrics": pass@1/2 per knob
  setting when test outputs are known, "settings", "fit": the fitting
  history[, "skipped": {task_id: why}]}. `log(line)`: progress and warnings,
  if given. `skip_bad`: an invalid task is reported and left out rather than
  aborting the submission."""
  log = log or (lambda line: None)
  canvas = math.isqrt(cfg.seq_len)
  if canvas * canvas != cfg.seq_len:
    raise ValueError(f"model seq_len {cfg.seq_len} is not a square ARC canvas")
  skipped: dict[str, str] | None = {} if skip_bad else None
  all_tasks = load_tasks(path, skipped)
  for tid, why in (skipped or {}).items():
    log(f"warning: task {tid} skipped: {why}")
  fits = [t for t in all_tasks if t.max_side() <= canvas]
  too_big = [t for t in all_tasks if t.max_side() > canvas]
  for t in too_big:
    log(f"warning: task {t.task_id}: a grid side of {t.max_side()} does not fit the "
        f"model's {canvas}x{canvas} canvas; answering {EMPTY_GRID}")
  n = steps or cfg.halt_max_steps
  submission: dict[str, Any] = {}
  details: dict[str, Any] = {"tasks": {}}
  if fits:
    tasks = ArcTaskSet(fits, canvas, versions, seed)
    log(f"fitting puzzle embeddings of {len(fits)} task(s) x <= {versions} versions "
        f"on their demonstrations ({fit_steps} steps)")
    cfg_f, params_f, history = inference.fit_puzzle_embeddings(
        cfg, params, tasks, steps=fit_steps, lr=fit_lr, batch_size=fit_batch_size,
        seed=seed, finetune_all_steps=finetune_all_steps, finetune_lr=finetune_lr,
        on_progress=lambda phase, i, total, m: log(
            f"  {'fit embeddings' if phase == 'fit' else 'finetune all'} step "
            f"{i}/{total}: loss {m['loss']:.4f}, train exact "
            f"{m['exact_accuracy']:.3f}"))
    sub, details["tasks"], details["metrics"] = _predict(
        cfg_f, params_f, tasks, n, versions=versions,
        steps_trained=cfg.halt_max_steps, early_exit=early_exit,
        trajectories=trajectories, noise=noise, batch_size=batch_size, seed=seed)
    submission.update(sub)
    details["fit"] = [{k: h[k] for k in ("phase", "step", "loss", "exact_accuracy")}
                      for h in history]
  for t in too_big:
    submission[t.task_id] = [{"attempt_1": EMPTY_GRID, "attempt_2": EMPTY_GRID}
                             for _ in t.test]
    details["tasks"][t.task_id] = [{"confidence": 0.0, "skipped": "too large"}
                                   for _ in t.test]
  if skipped:
    details["skipped"] = skipped
  details["settings"] = {"versions": versions, "fit_steps": fit_steps,
                         "finetune_all_steps": finetune_all_steps, "steps": n,
                         "early_exit": early_exit, "trajectories": trajectories,
                         "noise": noise}
  validate_submission(submission, {t.task_id: len(t.test) for t in all_tasks})
  return submission, details
