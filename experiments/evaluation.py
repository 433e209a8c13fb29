"""Periodic and final evaluation shared by training, `solve` and the experiments.

Every row runs `eval.num_steps` supervision segments (default halt_max_steps, no
early halting, as the reference). Reported beside the final exact/token accuracy:
exact accuracy after each segment (test-time compute curve), the early-exit
variant (stop a row at the first segment whose q_halt > 0) with the segments it
saves, and what the source's puzzle family scores (`recur.puzzles`): ARC
pass@K with votes pooled across augmented versions (and submission.json),
Sudoku/Maze validity, token accuracy.
"""
from __future__ import annotations

import functools
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils

from experiments import paths
from recur import sharding, train
from recur.data.pipeline import eval_batches, make_global_batch
from recur.puzzles import registry

__all__ = ["evaluate", "format_eval", "run_eval_batches"]


def _gather(tree):
  if jax.process_count() == 1:
    return jax.device_get(tree)
  return multihost_utils.process_allgather(tree, tiled=True)


@functools.lru_cache(maxsize=16)
def _eval_fn(cfg, num_steps: int, keep_steps: bool, mesh):
  rep, rows = sharding.replicated(mesh), sharding.batch_sharding(mesh)
  return jax.jit(functools.partial(train.eval_step, cfg=cfg, num_steps=num_steps,
                                   keep_steps=keep_steps),
                 in_shardings=(rep, rows))


def run_eval_batches(cfg, params, source, mesh, *, batch_size: int,
                     num_steps: int | None = None, max_versions=None,
                     max_batches: int | None = None, keep_steps: bool = False,
                     split: str = "test"):
  """Yields (host batch incl. group/version/index/mask, host outputs)."""
  n = num_steps or cfg.halt_max_steps
  fn = _eval_fn(cfg, n, keep_steps, mesh)
  params = jax.device_put(params, sharding.replicated(mesh))
  for i, local in enumerate(eval_batches(source, batch_size, split=split,
                                         process_index=jax.process_index(),
                                         process_count=jax.process_count(),
                                         max_versions=max_versions)):
    if max_batches and i >= max_batches:
      break
    model_in = {k: local[k] for k in ("inputs", "labels", "puzzle_identifiers")}
    out = fn(params, make_global_batch(model_in, mesh))
    host = _gather(out)
    meta = _gather({k: np.asarray(v) for k, v in local.items()})
    yield meta, host


def evaluate(config, cfg, params, source, mesh, workdir: str | None = None,
             num_steps: int | None = None, max_versions=None) -> dict[str, Any]:
  """Evaluation metrics ("eval/..."); the family's files (ARC: submission.json)
  go to workdir."""
  data = config.data
  n = num_steps or config.get("eval", {}).get("num_steps", 0) or cfg.halt_max_steps
  bs = data.get("eval_batch_size", 0) or config.batch_size
  bs = -(-bs // mesh.devices.size) * mesh.devices.size
  family_eval = registry.family_of(source).evaluator(source, "test")
  exact_steps = np.zeros(n)
  acc_steps = np.zeros(n)
  count = 0
  early_exact = 0
  early_steps = 0
  for meta, out in run_eval_batches(
      cfg, params, source, mesh, batch_size=bs, num_steps=n,
      max_versions=max_versions or data.get("eval_max_versions") or None,
      max_batches=data.get("eval_max_batches") or None):
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
  if workdir is not None:
    with paths.local_dir(workdir) as local:   # workdir may be gs://...
      family_eval.write_files(local)
  return res


def format_eval(step: int, res: dict[str, Any]) -> str:
  keys = [k for k in ("eval/exact_accuracy", "eval/accuracy", "eval/pass@1", "eval/pass@2",
                      "eval/valid_rate", "eval/early_exit_exact_accuracy",
                      "eval/early_exit_mean_steps") if k in res]
  return f"eval @ step {step}: " + ", ".join(f"{k[5:]} {res[k]:.4f}" for k in keys) + \
      f" (n={res['eval/count']})"
