"""Solve puzzles with a trained model, with test-time compute knobs.

    python -m experiments.solve --workdir=DIR --input=TASK.json|DIR --output=preds.json
    python -m experiments.solve --checkpoint=PATH.npz|PATH.pt|CKPT_DIR \
        [--model_config=JSON] --input=PUZZLES.csv --output=preds.json

Model: `--workdir` (latest checkpoint of a run), or `--checkpoint`: a checkpoint
directory of ours (`WORKDIR/checkpoints[/STEP]`), or a reference PyTorch
state dict (`.pt`, needs torch) or its `.npz` export (`experiments.export`).
For a state dict the model config comes from `--model_config` (a JSON string or
file: ours `{"model": "trm", ...}`, a workdir's `model.json`, or the
reference's config `{"name": "...trm@...", ...}`), else from the `PATH.json`
that `experiments.export` writes beside the weights.

ARC (`TASK.json`, a directory of them, or a Kaggle `*_challenges.json`): each
task gets new puzzle-embedding rows (one per augmented version), fitted on the
task's demonstration pairs under `--versions` augmentations (translated like
training) for `--fit_steps` sparse sign-SGD steps with the dense weights frozen,
then optionally `--finetune_all_steps` steps of everything. Every test input is
then predicted under every version; votes are pooled as in evaluation
(`recur.puzzles.arc.evaluate.ArcEvaluator`). `--output` gets the ARC Prize submission
`{task_id: [{"attempt_1": grid, "attempt_2": grid}, ...]}` (validated);
`<output>_details.json` the per-test-input confidence (mean sigmoid(q_halt) of
the winning candidate), whether each attempt is right when the task file has
test outputs, and the test-time compute table.

Sudoku / Maze (a CSV in the public `source,q,a,rating` layout; `a` may be
empty): straight inference; `--output` gets the filled grids with a confidence
per puzzle, exact accuracy when answers are given, and the knob table.

Test-time compute knobs (each reported per setting when labels exist):
  --steps=N           run N supervision steps (default: as trained); accuracy
                      after each step 1..N.
  --early_exit        a row stops at the first step with q_halt > 0: accuracy
                      and the steps saved.
  --trajectories=K --noise=S   K latent trajectories per puzzle: trajectory 0
                      starts from the usual H_init/L_init, the others from them
                      plus Gaussian noise of scale S (per position); per puzzle
                      the trajectory with the highest final sigmoid(q_halt)
                      wins (arXiv 2605.19943).
  --versions=V        ARC: augmented versions voted over (pass@1/2 reported for
                      1, 2, 4, ..., V versions).
"""
from __future__ import annotations

import functools
import json
import logging
import math
import os
import sys
import time
from typing import Any

from absl import app, flags
import numpy as np

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command-line flags (defined only when run as a program, so the
  module imports alongside other absl programs)."""
  flags.DEFINE_string("workdir", None, "Run directory (latest checkpoint is used).")
  flags.DEFINE_string("checkpoint", None, "Checkpoint dir of ours, or a .pt/.npz "
                      "reference state dict.")
  flags.DEFINE_string("model_config", None, "JSON string or file: model config for a "
                      ".pt/.npz state dict.")
  flags.DEFINE_string("input", None, "ARC task JSON / directory, or puzzles CSV.")
  flags.DEFINE_string("output", None, "Where to write the predictions (JSON).")
  flags.DEFINE_string("kind", "auto", "Puzzle family (recur.puzzles registry, e.g. "
                      "arc, sudoku, maze), or auto: the run's, else the family "
                      "claiming the input file.")
  flags.DEFINE_list("box", None, "Sudoku box rows,cols (default from the run or "
                    "the board size).")
  flags.DEFINE_integer("steps", 0, "Supervision steps at test time (0: as trained).")
  flags.DEFINE_bool("early_exit", False, "Stop a row at the first q_halt > 0.")
  flags.DEFINE_integer("trajectories", 1, "Latent trajectories per puzzle.")
  flags.DEFINE_float("noise", 0.1, "Noise scale of trajectories 1..K-1.")
  flags.DEFINE_integer("versions", 8, "ARC: augmented versions to fit and vote over.")
  flags.DEFINE_integer("fit_steps", 100, "ARC: embedding-only fitting steps.")
  flags.DEFINE_float("fit_lr", 1e-2, "ARC: sign-SGD lr of the new embedding rows.")
  flags.DEFINE_integer("fit_batch_size", 32, "ARC: rows per fitting step.")
  flags.DEFINE_integer("finetune_all_steps", 0, "ARC: then steps of all weights.")
  flags.DEFINE_float("finetune_lr", 1e-4, "ARC: lr of the dense weights when "
                     "finetuning all.")
  flags.DEFINE_integer("batch_size", 128, "Rows per inference batch.")
  flags.DEFINE_integer("seed", 0, "Seed of augmentations, fitting and noise.")


__all__ = ["load_model", "solve_arc", "solve_grid", "rollout", "main"]


# ------------------------------------------------------------------ the model


def _read_json_arg(text: str) -> Any:
  text = text.strip()
  if text.startswith("{"):
    return json.loads(text)
  with open(text) as f:
    return json.load(f)


def model_config_from_json(d: dict, params: dict | None = None):
  """Our config from: {"model": {ours...}, ...} (model.json / export sidecar),
  {"name": "trm", ...ours}, {"model": "hrm", "config": {reference}} or the
  reference's own {"name": "...@...", ...} (or {"arch": {...}}). Files written
  before the kind was spelled `name` (`"model": "trm"`) still read."""
  from recur import models  # pylint: disable=g-import-not-at-top
  if isinstance(d.get("model"), dict):
    return models.config_from_dict(d["model"], where="model config field 'model'")
  flat = models.canonical_fields(d)
  if "config" not in flat and flat.get("name") in models.MODEL_CONFIGS:
    return models.config_from_dict(flat)
  if "arch" in d:
    d = d["arch"]
  if isinstance(d.get("model"), str):
    name, ref = d["model"], dict(d["config"])
  else:
    name, ref = models.reference_model_name(d.get("name", "")), dict(d)
  if params is not None:   # the data-derived fields, if the config lacks them
    ref.setdefault("vocab_size", int(np.shape(params["net"]["embed_tokens"])[0]))
    ref.setdefault("num_puzzle_identifiers", int(np.shape(params["puzzle_emb"])[0]))
    if "embed_pos" in params["net"] and "seq_len" not in ref:
      raise ValueError("model config needs seq_len")
  if "seq_len" not in ref:
    raise ValueError("model config needs seq_len (e.g. 900 for ARC, 81 for Sudoku)")
  return models.from_reference_config(name, ref, ref.get("forward_dtype", "float32"))


def _sidecar(path: str) -> str:
  return os.path.splitext(path)[0] + ".json"


def load_model(workdir: str | None = None, checkpoint: str | None = None,
               model_config: str | None = None):
  """Returns (cfg, params, meta); meta has "data" (the run's data config, if
  known) and "source" (what was loaded)."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from recur import convert  # pylint: disable=g-import-not-at-top
  from recur.checkpoint import restore_for_inference  # pylint: disable=g-import-not-at-top
  if bool(workdir) == bool(checkpoint):
    raise app.UsageError("give exactly one of --workdir and --checkpoint")
  if checkpoint and checkpoint.endswith((".npz", ".pt", ".pth")):
    if checkpoint.endswith(".npz"):
      with np.load(checkpoint) as z:
        state = {k: z[k] for k in z.files}
    else:
      state = convert.load_torch_state_dict(checkpoint)
    params = convert.from_reference(state)
    side = None
    if model_config:
      side = _read_json_arg(model_config)
    elif os.path.exists(_sidecar(checkpoint)):
      side = _read_json_arg(_sidecar(checkpoint))
    else:
      raise app.UsageError(f"{checkpoint}: a state dict needs --model_config "
                           f"(or {_sidecar(checkpoint)})")
    cfg = model_config_from_json(side, params)
    params = jax.tree.map(jnp.asarray, params)
    return cfg, params, {"data": side.get("data") if isinstance(side, dict) else None,
                         "source": checkpoint}
  step = None
  if checkpoint:
    path = os.path.abspath(checkpoint.rstrip("/"))
    base = os.path.basename(path)
    if base.isdigit() and os.path.basename(os.path.dirname(path)) == "checkpoints":
      workdir, step = os.path.dirname(os.path.dirname(path)), int(base)
    elif base == "checkpoints":
      workdir = os.path.dirname(path)
    else:
      workdir = path
  cfg, params, config, step = restore_for_inference(workdir, step=step)
  # One device, plain placement: jitted outputs then match their inputs and
  # the fitting loop compiles once.
  params = jax.device_put(params, jax.devices()[0])
  return cfg, params, {"data": config["data"], "source": f"{workdir} step {step}"}


# ------------------------------------------------------------------ inference


@functools.lru_cache(maxsize=16)
def _rollout_fn(cfg, num_steps: int, noisy: bool):
  import jax  # pylint: disable=g-import-not-at-top
  from recur import act  # pylint: disable=g-import-not-at-top
  if noisy:
    return jax.jit(lambda p, b, noise, key: act.rollout(
        cfg, p, b, num_steps, keep_steps=True, noise=noise, key=key))
  return jax.jit(lambda p, b: act.rollout(cfg, p, b, num_steps, keep_steps=True))


def rollout(cfg, params, batch: dict[str, np.ndarray], num_steps: int,
            noise: float = 0.0, key=None) -> dict[str, np.ndarray]:
  """`recur.act.rollout` with every step kept, on the host; with `key`, the
  rows start from H_init/L_init plus N(0, noise^2) per row and position."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  b = {k: jnp.asarray(batch[k]) for k in ("inputs", "labels", "puzzle_identifiers")}
  if key is None:
    out = _rollout_fn(cfg, num_steps, False)(params, b)
  else:
    out = _rollout_fn(cfg, num_steps, True)(params, b, jnp.float32(noise), key)
  return jax.device_get(out)


class _Choices:
  """Per-row picks of every knob setting for one batch (host arrays)."""

  def __init__(self, outs: list[dict[str, np.ndarray]], early_exit: bool):
    base = outs[0]
    self.num_steps = n = base["q_halt_per_step"].shape[0]
    rows = np.arange(base["q_halt_per_step"].shape[1])
    self.per_step = [(base["preds_per_step"][t], base["q_halt_per_step"][t])
                     for t in range(n)]
    halt = base["q_halt_per_step"] > 0
    first = np.where(halt.any(0), halt.argmax(0), n - 1)
    self.exit_steps = first + 1
    self.early = (base["preds_per_step"][first, rows], base["q_halt_per_step"][first, rows])
    # Each trajectory's answer (at its exit step with early_exit), best q wins.
    cand_p, cand_q, cand_s = [], [], []
    for o in outs:
      h = o["q_halt_per_step"] > 0
      at = (np.where(h.any(0), h.argmax(0), n - 1) if early_exit
            else np.full(len(rows), n - 1))
      cand_p.append(o["preds_per_step"][at, rows])
      cand_q.append(o["q_halt_per_step"][at, rows])
      cand_s.append(at + 1)
    self.cand_p, self.cand_q = np.stack(cand_p), np.stack(cand_q)   # [K, B, ..]
    best = np.argmax(self.cand_q, axis=0)
    self.best_traj = best
    self.final = (self.cand_p[best, rows], self.cand_q[best, rows])
    self.final_steps = np.stack(cand_s)[best, rows]


def _run_knobs(cfg, params, batch, num_steps, trajectories, noise, early_exit, seed,
               batch_index):
  import jax  # pylint: disable=g-import-not-at-top
  outs = []
  for k in range(max(1, trajectories)):
    key = None
    if trajectories > 1:
      key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), batch_index), k)
    outs.append(rollout(cfg, params, batch, num_steps,
                        noise=0.0 if k == 0 else noise, key=key))
  return _Choices(outs, early_exit)


# ------------------------------------------------------------------ Sudoku / Maze


def solve_grid(cfg, params, path: str, kind: str, *, box=None, steps: int = 0,
               early_exit: bool = False, trajectories: int = 1, noise: float = 0.0,
               batch_size: int = 128, seed: int = 0) -> dict[str, Any]:
  """Straight inference on a puzzle file of family `kind` (its `read_puzzles`,
  e.g. a Sudoku/Maze CSV; `box`: Sudoku's box); returns the output JSON."""
  from recur import losses  # pylint: disable=g-import-not-at-top
  from recur.data.base import IGNORE_LABEL_ID  # pylint: disable=g-import-not-at-top
  from recur.puzzles import registry  # pylint: disable=g-import-not-at-top
  from recur.puzzles.scoring import sigmoid  # pylint: disable=g-import-not-at-top
  family = registry.get_family(kind)
  if family.read_puzzles is None:
    raise ValueError(f"puzzle family {kind!r} reads no puzzle files")
  read = family.read_puzzles(path, cfg.seq_len, {"box": box})
  sources, inputs, labels = read.names, read.inputs, read.labels
  if inputs.shape[1] != cfg.seq_len:
    raise ValueError(f"{path}: puzzles of {inputs.shape[1]} cells, model expects "
                     f"{cfg.seq_len}")
  n = steps or cfg.halt_max_steps
  num = len(inputs)
  stats = _Stats(n)
  puzzles = []
  for bi, lo in enumerate(range(0, num, batch_size)):
    hi = min(lo + batch_size, num)
    pad = batch_size - (hi - lo)
    x = np.pad(inputs[lo:hi], ((0, pad), (0, 0)))
    y = (np.full_like(x, IGNORE_LABEL_ID) if labels is None else
         np.pad(labels[lo:hi], ((0, pad), (0, 0)), constant_values=IGNORE_LABEL_ID))
    batch = {"inputs": x, "labels": y,
             "puzzle_identifiers": np.zeros((batch_size,), np.int32)}
    ch = _run_knobs(cfg, params, batch, n, trajectories, noise, early_exit, seed, bi)
    real = slice(0, hi - lo)
    truth = None if labels is None else labels[lo:hi]
    stats.add(ch, real, lambda p: (None if truth is None else
                                   losses.correctness(p[real], truth).exact))
    fp, fq = ch.final
    for r in range(hi - lo):
      item = {"source": sources[lo + r], "grid": family.decode(None, fp[r]),
              "confidence": float(sigmoid(fq[r])), "steps": int(ch.final_steps[r])}
      if truth is not None:
        item["correct"] = bool(losses.correctness(fp[r], truth[r]).exact)
      puzzles.append(item)
  res = {"kind": kind, "count": num, "puzzles": puzzles,
         "settings": {"steps": n, "early_exit": early_exit,
                      "trajectories": trajectories, "noise": noise}}
  if labels is not None:
    res["metrics"] = stats.metrics(trajectories, cfg.halt_max_steps)
  return res


class _Stats:
  """Accuracy per knob setting, accumulated over batches (exact per row)."""

  def __init__(self, n: int):
    self.n, self.count = n, 0
    self.per_step = np.zeros(n)
    self.early = self.early_steps = 0
    self.final = self.final_steps = 0
    self.clean = self.oracle = 0

  def add(self, ch: _Choices, real: slice, right) -> None:
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


# ------------------------------------------------------------------ ARC


def fit_embeddings(cfg, params, tasks, *, steps: int, lr: float,
                   batch_size: int, seed: int = 0, finetune_all_steps: int = 0,
                   finetune_lr: float = 1e-4, log=print):
  """New puzzle-embedding rows for `tasks`, fitted on their demonstrations with
  the training step itself (`train.train_step`: ACT carry, sign-SGD rows), the
  dense weights frozen (lr 0), then optionally everything. Returns (cfg, params)
  with the new table."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from recur import act, sharding, train  # pylint: disable=g-import-not-at-top
  cfg = cfg.replace(num_puzzle_identifiers=tasks.info.num_puzzle_identifiers)
  table = jnp.zeros((cfg.num_puzzle_identifiers, params["puzzle_emb"].shape[-1]),
                    jnp.float32)
  if not cfg.prefix_len:
    return cfg, {**params, "puzzle_emb": table}
  dense, _ = train.split_params(params)
  rng = np.random.default_rng([seed, 0x50])
  g_count = tasks.num_groups("train")
  spec = {"inputs": jax.ShapeDtypeStruct((batch_size, cfg.seq_len), jnp.int32),
          "labels": jax.ShapeDtypeStruct((batch_size, cfg.seq_len), jnp.int32),
          "puzzle_identifiers": jax.ShapeDtypeStruct((batch_size,), jnp.int32)}

  def sample():
    rows = []
    for _ in range(batch_size):
      g = int(rng.integers(g_count))
      v = int(rng.integers(tasks.num_versions("train", g)))
      exs = tasks.examples("train", g, v, rng)
      rows.append(exs[int(rng.integers(len(exs)))])
    return {"inputs": np.stack([e.inputs for e in rows]).astype(np.int32),
            "labels": np.stack([e.labels for e in rows]).astype(np.int32),
            "puzzle_identifiers": np.asarray([e.puzzle_identifier for e in rows],
                                             np.int32)}

  state = None
  for phase, (n, dense_lr) in enumerate(((steps, 0.0),
                                         (finetune_all_steps, finetune_lr))):
    if n <= 0:
      continue
    oc = train.OptimConfig(global_batch_size=batch_size, total_steps=n, lr=dense_lr,
                           lr_warmup_steps=0, weight_decay=0.0, puzzle_emb_lr=lr,
                           puzzle_emb_weight_decay=0.0, ema=False)
    if state is None:
      state = train.TrainState(
          step=jnp.zeros((), jnp.int32), params=dense, puzzle_emb=table,
          opt_state=train.make_optimizer(oc).init(dense["net"]), ema=None,
          carry=act.empty_carry(cfg, spec), key=jax.random.PRNGKey(seed))
    else:
      state = state._replace(step=jnp.zeros((), jnp.int32))
    # Explicit placement in and out, so every step reuses one executable.
    rep = sharding.replicated(sharding.make_mesh(jax.devices()[:1]))
    state = jax.device_put(state, rep)
    fn = jax.jit(functools.partial(train.train_step, cfg=cfg, oc=oc),
                 in_shardings=(rep, rep), out_shardings=(rep, rep), donate_argnums=0)
    t0 = time.time()
    for i in range(n):
      state, sums = fn(state, sample())
      if (i + 1) % max(1, n // 4) == 0 or i + 1 == n:
        m = train.reduce_metrics(jax.device_get(sums), batch_size)
        log(f"  {'fit embeddings' if phase == 0 else 'finetune all'} step {i + 1}/{n}: "
            f"loss {m['loss']:.4f}, train exact {m['exact_accuracy']:.3f} "
            f"({time.time() - t0:.0f}s)")
  if state is not None:
    return cfg, train.model_params(state, ema=False)
  return cfg, train.join_params(dense, table)


def _load_tasks(path: str):
  from recur.puzzles.arc import source as arc  # pylint: disable=g-import-not-at-top
  found = arc.load_path(path)
  tasks, seen = [], set()
  for subset in found.values():
    for tid, t in subset.items():
      if tid not in seen:
        seen.add(tid)
        tasks.append(t)
  return tasks


def solve_arc(cfg, params, path: str, *, versions: int = 8, fit_steps: int = 100,
              fit_lr: float = 1e-2, fit_batch_size: int = 32,
              finetune_all_steps: int = 0, finetune_lr: float = 1e-4,
              steps: int = 0, early_exit: bool = False, trajectories: int = 1,
              noise: float = 0.0, batch_size: int = 128, seed: int = 0, log=print
              ) -> tuple[dict, dict]:
  """Returns (submission, details)."""
  from recur.puzzles.arc import augment as aa  # pylint: disable=g-import-not-at-top
  from recur.data.pipeline import eval_batches  # pylint: disable=g-import-not-at-top
  from recur.puzzles.arc.evaluate import EMPTY_GRID, ArcEvaluator  # pylint: disable=g-import-not-at-top
  from recur.puzzles.arc.tasks import ArcTaskSet  # pylint: disable=g-import-not-at-top
  arc_pass = lambda ev: ev.pass_at((1, 2))   # over test inputs with known outputs
  canvas = math.isqrt(cfg.seq_len)
  if canvas * canvas != cfg.seq_len:
    raise ValueError(f"model seq_len {cfg.seq_len} is not a square ARC canvas")
  all_tasks = _load_tasks(path)
  fits = [t for t in all_tasks if t.max_side() <= canvas]
  too_big = [t for t in all_tasks if t.max_side() > canvas]
  for t in too_big:
    log(f"warning: task {t.task_id}: a grid side of {t.max_side()} does not fit the "
        f"model's {canvas}x{canvas} canvas; answering {EMPTY_GRID}")
  submission: dict[str, Any] = {}
  details: dict[str, Any] = {"tasks": {}}
  n = steps or cfg.halt_max_steps
  if fits:
    tasks = ArcTaskSet(fits, canvas, versions, seed)
    log(f"fitting puzzle embeddings of {len(fits)} task(s) x <= {versions} versions "
        f"on their demonstrations ({fit_steps} steps)")
    cfg_f, params_f = fit_embeddings(
        cfg, params, tasks, steps=fit_steps, lr=fit_lr, batch_size=fit_batch_size,
        seed=seed, finetune_all_steps=finetune_all_steps, finetune_lr=finetune_lr,
        log=log)
    v_max = max(tasks.num_versions("test", g) for g in range(len(fits)))
    v_settings = sorted({min(2 ** i, v_max) for i in range(v_max.bit_length() + 1)})
    evs = {"final": ArcEvaluator(tasks), "early_exit": ArcEvaluator(tasks),
           "clean": ArcEvaluator(tasks), "oracle_any": None}
    step_evs = [ArcEvaluator(tasks) for _ in range(n)]
    version_evs = {v: ArcEvaluator(tasks) for v in v_settings}
    exit_steps, rows_seen = 0, 0
    for bi, b in enumerate(eval_batches(tasks, batch_size, split="test",
                                        max_versions=versions, prefetch=0)):
      ch = _run_knobs(cfg_f, params_f, b, n, trajectories, noise, early_exit, seed, bi)
      meta = (b["group"], b["version"], b["index"])
      mask = b["mask"]
      evs["final"].update(*meta, *ch.final, mask)
      evs["early_exit"].update(*meta, *ch.early, mask)
      evs["clean"].update(*meta, ch.cand_p[0], ch.cand_q[0], mask)
      for t, (p, q) in enumerate(ch.per_step):
        step_evs[t].update(*meta, p, q, mask)
      for v, ev in version_evs.items():
        ev.update(*meta, *ch.final, mask & (b["version"] < v))
      exit_steps += int(ch.exit_steps[mask].sum())
      rows_seen += int(mask.sum())
    sub = evs["final"].submission()
    submission.update(sub)
    for g, t in enumerate(fits):
      entries = []
      for i, pair in enumerate(t.test):
        ranked = evs["final"].ranked(g, i)
        e = {"confidence": float(ranked[0][2]) if ranked else 0.0,
             "votes": [int(c[1]) for c in ranked[:2]],
             "num_candidates": len(ranked)}
        if pair.output is not None:
          truth = aa.grid_key(pair.output)
          for a in (1, 2):
            e[f"attempt_{a}_correct"] = aa.grid_key(np.asarray(
                sub[t.task_id][i][f"attempt_{a}"], np.uint8)) == truth
        entries.append(e)
      details["tasks"][t.task_id] = entries
    metrics = {}
    final = arc_pass(evs["final"])
    if final is not None:
      metrics = {"final": final, "early_exit": arc_pass(evs["early_exit"]),
                 "per_step": {str(t + 1): arc_pass(e)
                              for t, e in enumerate(step_evs)},
                 "per_versions": {str(v): arc_pass(e)
                                  for v, e in version_evs.items()},
                 "trained_steps": cfg.halt_max_steps}
      if trajectories > 1:
        metrics["trajectories"] = {"k": trajectories, "noise": noise,
                                   "clean": arc_pass(evs["clean"]),
                                   "best_q": final}
    metrics["early_exit_mean_steps"] = exit_steps / max(rows_seen, 1)
    metrics["early_exit_steps_saved"] = 1.0 - exit_steps / max(rows_seen * n, 1)
    details["metrics"] = metrics
  for t in too_big:
    submission[t.task_id] = [{"attempt_1": EMPTY_GRID, "attempt_2": EMPTY_GRID}
                             for _ in t.test]
    details["tasks"][t.task_id] = [{"confidence": 0.0, "skipped": "too large"}
                                   for _ in t.test]
  details["settings"] = {"versions": versions, "fit_steps": fit_steps,
                         "finetune_all_steps": finetune_all_steps, "steps": n,
                         "early_exit": early_exit, "trajectories": trajectories,
                         "noise": noise}
  details["task_counts"] = {t.task_id: len(t.test) for t in all_tasks}
  return submission, details


# ------------------------------------------------------------------ CLI


def _detect_kind(path: str, data: dict | None) -> str:
  """The family of the run's source, else the family claiming the file."""
  from recur.puzzles import registry  # pylint: disable=g-import-not-at-top
  name = (data or {}).get("name")
  if name in registry.source_names():
    return registry.family_of_source_name(name).name
  for family in map(registry.get_family, registry.family_names()):
    if family.claims_file is not None and family.claims_file(path):
      return family.name
  raise app.UsageError(f"{path}: no puzzle family reads this file; pass --kind")


def _solved_as_tasks(kind: str) -> bool:
  """Families without a puzzle-file reader are solved as tasks with
  demonstrations (ARC): embeddings fitted, votes over versions, pass@K."""
  from recur.puzzles import registry  # pylint: disable=g-import-not-at-top
  return registry.get_family(kind).read_puzzles is None


def _fmt(v) -> str:
  return "-" if v is None else f"{v:.4f}"


def knob_table(kind: str, metrics: dict) -> str:
  """The test-time compute table (markdown) from the output's metrics."""
  tasks = _solved_as_tasks(kind)
  lines = ["| setting | " + ("pass@1 | pass@2 |" if tasks else "exact acc |"),
           "|---|" + ("---|---|" if tasks else "---|")]

  def row(name, v):
    if tasks:
      v = v or {}
      lines.append(f"| {name} | {_fmt(v.get('pass@1'))} | {_fmt(v.get('pass@2'))} |")
    else:
      lines.append(f"| {name} | {_fmt(v)} |")

  trained = metrics.get("trained_steps")
  per_step = metrics.get("per_step") or metrics.get("exact_accuracy_per_step") or {}
  for s, v in per_step.items():
    row(f"after step {s}" + (" (trained)" if trained and int(s) == trained else ""), v)
  if tasks:
    for v, r in (metrics.get("per_versions") or {}).items():
      row(f"{v} version(s) voting", r)
    row(f"early exit (mean steps {metrics.get('early_exit_mean_steps', 0):.2f})",
        metrics.get("early_exit"))
    tr = metrics.get("trajectories")
    if tr:
      row(f"trajectories k={tr['k']}: clean", tr["clean"])
      row(f"trajectories k={tr['k']}: best q_halt", tr["best_q"])
    row("final (as output)", metrics.get("final"))
  else:
    ee = metrics.get("early_exit", {})
    row(f"early exit (mean steps {ee.get('mean_steps', 0):.2f}, saved "
        f"{100 * ee.get('steps_saved', 0):.0f}%)", ee.get("exact_accuracy"))
    tr = metrics.get("trajectories")
    if tr:
      row(f"trajectories k={tr['k']}: clean", tr["clean_exact_accuracy"])
      row(f"trajectories k={tr['k']}: best q_halt", tr["best_q_exact_accuracy"])
      row(f"trajectories k={tr['k']}: oracle (any right)", tr["oracle_exact_accuracy"])
    row("final (as output)", metrics.get("exact_accuracy"))
  return "\n".join(lines)


def main(argv) -> None:
  del argv
  if not FLAGS.input or not FLAGS.output:
    raise app.UsageError("--input and --output are required")
  logging.getLogger("absl").setLevel(logging.WARNING)
  from recur.files import write_json_atomic  # pylint: disable=g-import-not-at-top
  from recur.puzzles.arc.evaluate import validate_submission  # pylint: disable=g-import-not-at-top
  cfg, params, meta = load_model(FLAGS.workdir, FLAGS.checkpoint, FLAGS.model_config)
  data = meta.get("data") or {}
  kind = FLAGS.kind if FLAGS.kind != "auto" else _detect_kind(FLAGS.input, data)
  print(f"model: {cfg.name} from {meta['source']} ({kind})", flush=True)
  t0 = time.time()
  if _solved_as_tasks(kind):
    sub, details = solve_arc(
        cfg, params, FLAGS.input, versions=FLAGS.versions, fit_steps=FLAGS.fit_steps,
        fit_lr=FLAGS.fit_lr, fit_batch_size=FLAGS.fit_batch_size,
        finetune_all_steps=FLAGS.finetune_all_steps, finetune_lr=FLAGS.finetune_lr,
        steps=FLAGS.steps, early_exit=FLAGS.early_exit,
        trajectories=FLAGS.trajectories, noise=FLAGS.noise,
        batch_size=FLAGS.batch_size, seed=FLAGS.seed)
    validate_submission(sub, details.pop("task_counts"))
    write_json_atomic(FLAGS.output, sub)
    side = os.path.splitext(FLAGS.output)[0] + "_details.json"
    write_json_atomic(side, details)
    print(f"wrote {FLAGS.output} ({len(sub)} task(s), ARC Prize format) and {side} "
          f"in {time.time() - t0:.1f}s", flush=True)
    for tid, entries in details["tasks"].items():
      for i, e in enumerate(entries):
        right = ""
        if "attempt_1_correct" in e:
          right = (f", attempt_1 {'right' if e['attempt_1_correct'] else 'wrong'}, "
                   f"attempt_2 {'right' if e['attempt_2_correct'] else 'wrong'}")
        print(f"  {tid}[{i}]: confidence {e['confidence']:.3f}{right}")
    metrics = details.get("metrics", {})
    if "final" in metrics:
      print(knob_table("arc", metrics), flush=True)
    return
  box = tuple(int(b) for b in FLAGS.box) if FLAGS.box else data.get("box")
  res = solve_grid(cfg, params, FLAGS.input, kind, box=box, steps=FLAGS.steps,
                   early_exit=FLAGS.early_exit, trajectories=FLAGS.trajectories,
                   noise=FLAGS.noise, batch_size=FLAGS.batch_size, seed=FLAGS.seed)
  write_json_atomic(FLAGS.output, res)
  print(f"wrote {FLAGS.output} ({res['count']} puzzles) in {time.time() - t0:.1f}s",
        flush=True)
  if "metrics" in res:
    print(knob_table(kind, res["metrics"]), flush=True)


if __name__ == "__main__":
  define_flags()
  from experiments import cli  # pylint: disable=g-import-not-at-top
  cli.quiet_backend_probe()
  app.run(main, flags_parser=cli.flags_parser())
