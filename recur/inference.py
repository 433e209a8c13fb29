"""Test-time compute: more steps than trained, early exit, noisy trajectories,
picking by q_halt, and fitting puzzle-embedding rows for unseen tasks.

Every function takes (cfg, params, batch or source, ...) and returns arrays or
dicts on the host; nothing here reads flags or prints. `experiments.solve` is
the command line over it; `recur.puzzles.arc.solve` uses it for ARC tasks.

  rollout          `recur.act.rollout` with every step kept, optionally from
                   noisy initial latents (one trajectory).
  first_halt_step  per row, the first step with q_halt > 0 (else the last).
  run_knobs        K trajectories of one batch -> `Choices`: the row picks of
                   every knob setting (per step, early exit, best q_halt).
  KnobStats        exact accuracy per knob setting over batches.
  fit_puzzle_embeddings   new puzzle-embedding rows fitted on a source's
                   demonstrations with the training step itself
                   (`recur.train.init_state` / `train_step`).
  solve_puzzle_file  a family's puzzle file (Sudoku/Maze CSV) -> answers,
                   confidences and, with answers given, accuracy per knob.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from recur import act, losses, sharding, train
from recur.config import ModelConfig
from recur.puzzles.scoring import sigmoid

__all__ = ["rollout", "first_halt_step", "Choices", "run_knobs", "KnobStats",
           "sample_demonstrations", "fit_puzzle_embeddings", "solve_puzzle_file"]

Params = dict[str, Any]
_BATCH_KEYS = ("inputs", "labels", "puzzle_identifiers")


@functools.lru_cache(maxsize=16)
def _rollout_fn(cfg: ModelConfig, num_steps: int, noisy: bool):
  if noisy:
    return jax.jit(lambda p, b, noise, key: act.rollout(
        cfg, p, b, num_steps, keep_steps=True, noise=noise, key=key))
  return jax.jit(lambda p, b: act.rollout(cfg, p, b, num_steps, keep_steps=True))


def rollout(cfg: ModelConfig, params: Params, batch: dict[str, np.ndarray],
            num_steps: int | None = None, *, noise: float = 0.0,
            key: jax.Array | None = None) -> dict[str, np.ndarray]:
  """`recur.act.rollout` for `num_steps` (default: as trained; more is fine)
  with every step kept (`preds_per_step` [T, B, seq], `q_halt_per_step`
  [T, B], ...), fetched to the host. With `key` the rows start from
  H_init/L_init plus N(0, noise^2) per row and position."""
  n = num_steps or cfg.halt_max_steps
  b = {k: jnp.asarray(batch[k]) for k in _BATCH_KEYS if k in batch}
  if key is None:
    out = _rollout_fn(cfg, n, False)(params, b)
  else:
    out = _rollout_fn(cfg, n, True)(params, b, jnp.float32(noise), key)
  return jax.device_get(out)


def first_halt_step(q_halt_per_step: np.ndarray) -> np.ndarray:
  """Per row (axis 1), the index of the first step with q_halt > 0, or the
  last step when the row never halts (early exit)."""
  halt = np.asarray(q_halt_per_step) > 0
  return np.where(halt.any(0), halt.argmax(0), halt.shape[0] - 1)


class Choices:
  """The per-row picks of every knob setting for one batch (host arrays),
  from the rollouts of K trajectories (`outs[0]` the clean one).

    per_step:   [(preds, q_halt)] after each step 1..T of the clean trajectory
    early:      (preds, q_halt) at the clean trajectory's first q_halt > 0
    exit_steps: [B] steps run under early exit (1-based)
    cand_p, cand_q: [K, B, seq], [K, B] each trajectory's answer (at its exit
                step with early_exit, else after the last step)
    best_traj:  [B] the trajectory with the highest q_halt
    final:      (preds, q_halt) of the best trajectory; final_steps [B]
  """

  def __init__(self, outs: list[dict[str, np.ndarray]], early_exit: bool):
    base = outs[0]
    self.num_steps = n = base["q_halt_per_step"].shape[0]
    rows = np.arange(base["q_halt_per_step"].shape[1])
    self.per_step = [(base["preds_per_step"][t], base["q_halt_per_step"][t])
                     for t in range(n)]
    first = first_halt_step(base["q_halt_per_step"])
    self.exit_steps = first + 1
    self.early = (base["preds_per_step"][first, rows],
                  base["q_halt_per_step"][first, rows])
    at = [first_halt_step(o["q_halt_per_step"]) if early_exit
          else np.full(len(rows), n - 1) for o in outs]
    self.cand_p = np.stack([o["preds_per_step"][a, rows] for o, a in zip(outs, at)])
    self.cand_q = np.stack([o["q_halt_per_step"][a, rows] for o, a in zip(outs, at)])
    self.best_traj = best = np.argmax(self.cand_q, axis=0)
    self.final = (self.cand_p[best, rows], self.cand_q[best, rows])
    self.final_steps = np.stack(at)[best, rows] + 1


def run_knobs(cfg: ModelConfig, params: Params, batch: dict[str, np.ndarray],
              num_steps: int | None = None, *, trajectories: int = 1,
              noise: float = 0.0, early_exit: bool = False,
              key: jax.Array | None = None) -> Choices:
  """`trajectories` rollouts of one batch: trajectory 0 from the usual
  H_init/L_init, trajectory k > 0 from them plus noise of scale `noise`
  (key folded with k; `key` defaults to PRNGKey(0)); per row the trajectory
  with the highest final sigmoid(q_halt) wins (arXiv 2605.19943)."""
  outs = [rollout(cfg, params, batch, num_steps)]
  key = jax.random.PRNGKey(0) if key is None else key
  for k in range(1, max(1, trajectories)):
    outs.append(rollout(cfg, params, batch, num_steps, noise=noise,
                        key=jax.random.fold_in(key, k)))
  return Choices(outs, early_exit)


class KnobStats:
  """Exact accuracy per knob setting, accumulated over batches; `right(preds)`
  gives the exact correctness [rows] of the real rows, or None without
  labels."""

  def __init__(self, num_steps: int):
    self.n, self.count = num_steps, 0
    self.per_step = np.zeros(num_steps)
    self.early = self.early_steps = 0
    self.final = self.final_steps = 0
    self.clean = self.oracle = 0

  def add(self, ch: Choices, real: slice, right: Callable[[np.ndarray], Any]) -> None:
    ok = right(ch.final[0])
    self.final_steps += int(ch.final_steps[real].sum())
    self.early_steps += int(ch.exit_steps[real].sum())
    if ok is None:
      return
    self.count += len(ok)
    self.per_step += [right(p).sum() for p, _ in ch.per_step]
    self.early += int(right(ch.early[0]).sum())
    self.final += int(ok.sum())
    cand = np.stack([right(p) for p in ch.cand_p])
    self.clean += int(cand[0].sum())
    self.oracle += int(cand.any(0).sum())

  def metrics(self, trajectories: int, trained: int) -> dict[str, Any]:
    c = max(self.count, 1)
    out = {"exact_accuracy": self.final / c,
           "exact_accuracy_per_step": {str(t + 1): float(v / c)
                                       for t, v in enumerate(self.per_step)},
           "trained_steps": trained,
           "early_exit": {"exact_accuracy": self.early / c,
                          "mean_steps": self.early_steps / c,
                          "steps_saved": 1.0 - self.early_steps / (c * self.n)}}
    if trajectories > 1:
      out["trajectories"] = {"k": trajectories,
                             "clean_exact_accuracy": self.clean / c,
                             "best_q_exact_accuracy": self.final / c,
                             "oracle_exact_accuracy": self.oracle / c}
    return out


def sample_demonstrations(source, batch_size: int, rng: np.random.Generator,
                          split: str = "train") -> dict[str, np.ndarray]:
  """A batch of random examples of `split`: a random group, version and
  example per row (the demonstrations of tasks to solve)."""
  rows = []
  for _ in range(batch_size):
    g = int(rng.integers(source.num_groups(split)))
    v = int(rng.integers(source.num_versions(split, g)))
    exs = source.examples(split, g, v, rng)
    rows.append(exs[int(rng.integers(len(exs)))])
  return {"inputs": np.stack([e.inputs for e in rows]).astype(np.int32),
          "labels": np.stack([e.labels for e in rows]).astype(np.int32),
          "puzzle_identifiers": np.asarray([e.puzzle_identifier for e in rows],
                                           np.int32)}


def fit_puzzle_embeddings(cfg: ModelConfig, params: Params, source, *, steps: int,
                          lr: float = 1e-2, batch_size: int = 32, seed: int = 0,
                          finetune_all_steps: int = 0, finetune_lr: float = 1e-4,
                          on_progress: Callable[[str, int, int, dict], None] | None = None
                          ) -> tuple[ModelConfig, Params, list[dict[str, Any]]]:
  """New puzzle-embedding rows for `source` (a table of
  `source.info.num_puzzle_identifiers` zero rows), fitted on its split
  "train" (the demonstrations) with the training step itself: phase "fit",
  `steps` steps of `recur.train.train_step` with the dense weights' lr 0 and
  sparse sign-SGD of lr `lr` on the rows; then phase "finetune",
  `finetune_all_steps` steps of everything (dense lr `finetune_lr`). Each
  phase starts from `recur.train.init_state(params=...)` (fresh optimizer and
  ACT carry, no EMA, no weight decay).

  Returns (cfg with the new table size, the fitted model params, history: per
  step {"phase", "step", **reduced train metrics}). `on_progress(phase, step,
  total, metrics)` is called at each quarter of a phase (it syncs there)."""
  cfg = cfg.replace(num_puzzle_identifiers=source.info.num_puzzle_identifiers)
  table = jnp.zeros((cfg.num_puzzle_identifiers, params["puzzle_emb"].shape[-1]),
                    jnp.float32)
  params = train.join_params(train.split_params(params)[0], table)
  history: list[dict[str, Any]] = []
  if not cfg.prefix_len:     # no puzzle embedding to fit
    return cfg, params, history
  rng = np.random.default_rng([seed, 0x50])
  rows = jax.ShapeDtypeStruct((batch_size, cfg.seq_len), jnp.int32)
  spec = {"inputs": rows, "labels": rows,
          "puzzle_identifiers": jax.ShapeDtypeStruct((batch_size,), jnp.int32)}
  # Explicit placement in and out, so every step reuses one executable.
  rep = sharding.replicated(sharding.make_mesh(jax.devices()[:1]))
  for phase, n, dense_lr in (("fit", steps, 0.0), ("finetune", finetune_all_steps,
                                                  finetune_lr)):
    if n <= 0:
      continue
    oc = train.OptimConfig(global_batch_size=batch_size, total_steps=n, lr=dense_lr,
                           lr_warmup_steps=0, weight_decay=0.0, puzzle_emb_lr=lr,
                           puzzle_emb_weight_decay=0.0, ema=False)
    # may_alias=False: the step donates its state, never the caller's params.
    state = jax.device_put(train.init_state(jax.random.PRNGKey(seed), cfg, oc, spec,
                                            params=params), rep, may_alias=False)
    step = jax.jit(functools.partial(train.train_step, cfg=cfg, oc=oc),
                   in_shardings=(rep, rep), out_shardings=(rep, rep),
                   donate_argnums=0)
    sums = []
    for i in range(n):
      state, s = step(state, sample_demonstrations(source, batch_size, rng))
      sums.append(s)
      if on_progress is not None and ((i + 1) % max(1, n // 4) == 0 or i + 1 == n):
        on_progress(phase, i + 1, n, train.reduce_metrics(jax.device_get(s),
                                                          batch_size))
    history += [{"phase": phase, "step": i + 1,
                 **train.reduce_metrics(s, batch_size)}
                for i, s in enumerate(jax.device_get(sums))]
    params = train.model_params(state, ema=False)
  return cfg, params, history


def solve_puzzle_file(cfg: ModelConfig, params: Params, path: str, family, *,
                      options: dict[str, Any] | None = None, steps: int = 0,
                      early_exit: bool = False, trajectories: int = 1,
                      noise: float = 0.0, batch_size: int = 128, seed: int = 0
                      ) -> dict[str, Any]:
  """Straight inference on a puzzle file of `family` (a `PuzzleFamily` with
  `read_puzzles`, e.g. a Sudoku/Maze CSV; `options` for the reader, e.g.
  Sudoku's {"box": ...}). Returns {"kind", "count", "puzzles": [{"source",
  "grid", "confidence", "steps"[, "correct"]}], "settings"[, "metrics"]
  ][, "rejected": [{"row", "error"}]: puzzles left out as invalid]}; the
  metrics (with answers in the file) are `KnobStats.metrics`."""
  if family.read_puzzles is None:
    raise ValueError(f"puzzle family {family.name!r} reads no puzzle files")
  read = family.read_puzzles(path, cfg.seq_len, dict(options or {}))
  inputs, labels = read.inputs, read.labels
  if len(inputs) and inputs.shape[1] != cfg.seq_len:
    raise ValueError(f"{path}: puzzles of {inputs.shape[1]} cells, model expects "
                     f"{cfg.seq_len}")
  n = steps or cfg.halt_max_steps
  stats, puzzles = KnobStats(n), []
  for bi, lo in enumerate(range(0, len(inputs), batch_size)):
    hi = min(lo + batch_size, len(inputs))
    pad = ((0, batch_size - (hi - lo)), (0, 0))
    x = np.pad(inputs[lo:hi], pad)
    y = (np.full_like(x, losses.IGNORE_LABEL_ID) if labels is None else
         np.pad(labels[lo:hi], pad, constant_values=losses.IGNORE_LABEL_ID))
    batch = {"inputs": x, "labels": y,
             "puzzle_identifiers": np.zeros((batch_size,), np.int32)}
    key = jax.random.fold_in(jax.random.PRNGKey(seed), bi)
    ch = run_knobs(cfg, params, batch, n, trajectories=trajectories, noise=noise,
                   early_exit=early_exit, key=key)
    real = slice(0, hi - lo)
    truth = None if labels is None else labels[lo:hi]
    stats.add(ch, real, lambda p: (None if truth is None else
                                   losses.correctness(p[real], truth).exact))
    fp, fq = ch.final
    for r in range(hi - lo):
      item = {"source": read.names[lo + r], "grid": family.decode(None, fp[r]),
              "confidence": float(sigmoid(fq[r])),
              "steps": int(ch.final_steps[r])}
      if truth is not None:
        item["correct"] = bool(losses.correctness(fp[r], truth[r]).exact)
      puzzles.append(item)
  res = {"kind": family.name, "count": len(inputs), "puzzles": puzzles,
         "settings": {"steps": n, "early_exit": early_exit,
                      "trajectories": trajectories, "noise": noise}}
  if read.rejected:  # invalid / unsolvable puzzles, left out (options skip_bad)
    res["rejected"] = [{"row": row, "error": why} for row, why in read.rejected]
  if labels is not None and len(inputs):
    res["metrics"] = stats.metrics(trajectories, cfg.halt_max_steps)
  return res
