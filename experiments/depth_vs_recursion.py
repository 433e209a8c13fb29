"""Recursion versus depth: what recursion buys at matched parameters and steps.

    python -m experiments.depth_vs_recursion \
        --config=experiments/configs/depth_vs_recursion.py:quick --workdir=DIR

For every seed and every arm of the config (a direct-prediction transformer,
TRM, HRM, or the TRM ablations), trains with `experiments.loop.run` in
DIR/runs/<arm>_s<seed> (same optimizer steps x batch for all arms), then
evaluates the saved weights with `train.eval_step` for 1 .. eval_step_factor x
halt_max_steps supervision steps, on every problem size of the task (the
algorithmic sources' `test_n{k}` splits) or on the test split. A finished run
leaves `done.json`; a restarted experiment skips finished runs and resumes the
unfinished one from its checkpoint. After every run DIR/results.md and the PNG
plots are rewritten from all finished runs (mean and min/max over seeds).

Matched parameters: arms with `match_params=<arm>` get the width (and if
needed the head count) whose parameter count is closest to that arm's; the run
stops if the two differ by more than `param_tolerance`. Parameters counted: the
trained dense weights plus the puzzle-embedding table (one row here).
"""
from __future__ import annotations

import copy
import json
import logging
import math
import os
import sys
import time
from typing import Any

from absl import app, flags
from ml_collections import config_flags
import ml_collections
import numpy as np

from experiments import cli
from recur.files import write_json_atomic

__all__ = ["plan_arms", "count_params", "depth_per_segment", "run_experiment",
           "write_report"]

_CONFIG = config_flags.DEFINE_config_file(
    "config", os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs",
                           "depth_vs_recursion.py:quick"),
    "Config file and variant, e.g. experiments/configs/depth_vs_recursion.py:smoke",
    lock_config=False)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for runs, results.md and plots.")

DONE = "done.json"


# -- model bookkeeping --------------------------------------------------------

def _model_fields(model: dict) -> dict:
  m = dict(model)
  m["puzzle_emb_ndim"] = m["hidden_size"]   # one prefix position of width D
  return m


def _make_model_config(model: dict, info):
  from recur import models  # pylint: disable=g-import-not-at-top
  fields = _model_fields(model)
  name = fields.pop("name")
  return models.make_config(name, vocab_size=info.vocab_size, seq_len=info.seq_len,
                            num_puzzle_identifiers=info.num_puzzle_identifiers, **fields)


def count_params(cfg) -> int:
  """Trained parameters: dense weights + puzzle-embedding table (not H/L_init)."""
  import jax  # pylint: disable=g-import-not-at-top
  shapes = jax.eval_shape(cfg.init, jax.random.PRNGKey(0))
  leaves = jax.tree.leaves(shapes["net"]) + [shapes["puzzle_emb"]]
  return int(sum(math.prod(x.shape) for x in leaves))


def depth_per_segment(cfg) -> int:
  """Layers between input and output in one supervision segment."""
  return cfg.depth_per_segment()


def layer_passes(cfg) -> tuple[int, int]:
  """(forward layer passes, of them differentiated) per optimizer step."""
  calls = cfg.layer_calls()
  fwd = calls.forward
  if cfg.act_continue and cfg.halt_max_steps > 1:
    fwd *= 2  # HRM's Q-target segment
  return fwd, calls.grad


def _layer_params(cfg) -> int:
  from recur import layers  # pylint: disable=g-import-not-at-top
  d, i = cfg.hidden_size, layers.swiglu_width(cfg.hidden_size, cfg.expansion)
  return 4 * d * d + 3 * d * i


def _io_params(info, d: int) -> int:
  """Embeddings, heads and a width-d puzzle table (see _model_fields)."""
  return 2 * info.vocab_size * d + 2 * d + 2 + info.num_puzzle_identifiers * d


def _stored_blocks(model: dict, info) -> int:
  """Blocks the model stores (TRM shares one net across levels): from one exact
  count at the model's own width, as the block count does not depend on it."""
  cfg = _make_model_config(model, info)
  return round((count_params(cfg) - _io_params(info, cfg.hidden_size))
               / _layer_params(cfg))


def _estimate(model: dict, info, d: int, blocks: int) -> int:
  """Parameter count of `model` at width d without tracing (ranks candidates)."""
  from recur import layers  # pylint: disable=g-import-not-at-top
  i = layers.swiglu_width(d, model.get("expansion", 4.0))
  return blocks * (4 * d * d + 3 * d * i) + _io_params(info, d)


def _match_width(model: dict, info, target: int) -> tuple[dict, int]:
  """Width (and head count) whose parameter count is closest to `target`:
  ranked by a closed form, the best few counted exactly."""
  cands = []
  blocks = _stored_blocks(model, info)
  for d in range(8, 4 * model["hidden_size"] + 1, 2):
    heads = next((h for h in (model["num_heads"], 4, 2)
                  if d % h == 0 and (d // h) % 2 == 0), None)
    if heads is not None:
      cands.append((abs(_estimate(model, info, d, blocks) - target), d, heads))
  best = None
  for _, d, heads in sorted(cands)[:3]:
    cand = dict(model, hidden_size=d, num_heads=heads)
    n = count_params(_make_model_config(cand, info))
    if best is None or abs(n - target) < abs(best[1] - target):
      best = (cand, n)
  return best


def plan_arms(config: ml_collections.ConfigDict, info) -> dict[str, dict[str, Any]]:
  """Arm name -> {label, model (fields), cfg, params, matched_to, ...}."""
  arms = config.arms.to_dict()
  plan = {}
  for name in sorted(arms, key=lambda a: bool(arms[a]["match_params"])):
    arm = arms[name]
    model = dict(arm["model"])
    target = arm["match_params"]
    if target:
      if target not in plan:
        raise ValueError(f"arm {name}: match_params {target!r} is not an unmatched arm")
      model, _ = _match_width(model, info, plan[target]["params"])
    cfg = _make_model_config(model, info)
    n = count_params(cfg)
    if target:
      ref = plan[target]["params"]
      if abs(n - ref) > config.param_tolerance * ref:
        raise ValueError(f"arm {name}: {n} parameters vs {ref} of {target}: no width "
                         f"within {config.param_tolerance:.0%}")
    plan[name] = dict(label=arm["label"], model=model, cfg=cfg, params=n,
                      matched_to=target, optim=arm["optim"], paper=arm["paper"],
                      depth=depth_per_segment(cfg), passes=layer_passes(cfg),
                      layer_params=_layer_params(cfg))
  order = list(config.get("order", ())) or list(arms)
  return {k: plan[k] for k in order + [a for a in arms if a not in order]}


def run_config(config, arm: dict, seed: int) -> ml_collections.ConfigDict:
  """The `loop.run` config of one (arm, seed)."""
  c = ml_collections.ConfigDict()
  for k in ("batch_size", "steps", "epochs", "log_every", "eval_every", "checkpoint_every",
            "keep_checkpoints", "async_checkpointing", "table_sharding", "prefetch"):
    c[k] = config[k]
  c.seed = int(seed)
  c.eval_at_end = False
  c.eval = ml_collections.ConfigDict({"num_steps": 0})
  c.data = copy.deepcopy(config.data)
  c.model = ml_collections.ConfigDict(_model_fields(arm["model"]))
  c.optim = copy.deepcopy(config.optim)
  c.optim.update(arm["optim"])
  return c


# -- evaluation ---------------------------------------------------------------

def _eval_splits(source) -> list[str]:
  sized = [s for s in source.info.splits if s.startswith("test_n")]
  return sorted(sized, key=lambda s: int(s[6:])) or ["test"]


def evaluate_run(run, num_steps: int, batch_size: int) -> dict[str, Any]:
  """Exact accuracy after each of `num_steps` segments, per evaluation split,
  of a finished `loop.Run` (its final weights, source and mesh)."""
  from experiments import evaluation  # pylint: disable=g-import-not-at-top
  cfg, params, source, mesh = run.cfg, run.params, run.source, run.mesh
  exact, count = {}, {}
  for split in _eval_splits(source):
    hits, n = np.zeros(num_steps), 0
    for meta, out in evaluation.run_eval_batches(cfg, params, source, mesh,
                                                 batch_size=batch_size,
                                                 num_steps=num_steps, split=split):
      mask = meta["mask"].astype(bool)
      hits += (np.asarray(out["exact_per_step"]) & mask).sum(-1)
      n += int(mask.sum())
    exact[split], count[split] = (hits / max(n, 1)).tolist(), n
  return {"exact": exact, "count": count}


# -- the experiment -----------------------------------------------------------

def run_experiment(config: ml_collections.ConfigDict, workdir: str) -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  from experiments import loop  # pylint: disable=g-import-not-at-top
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  if config.get("compilation_cache", False) and not jax.config.jax_compilation_cache_dir:
    # The seeds of an arm compile the same programs: compile them once.
    jax.config.update("jax_compilation_cache_dir", os.path.join(workdir, "xla_cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  info = loop.build_source(config).info
  plan = plan_arms(config, info)
  num_steps = config.eval_step_factor * max(a["cfg"].halt_max_steps for a in plan.values())
  for seed in config.seeds:
    for name, arm in plan.items():
      rdir = os.path.join(workdir, "runs", f"{name}_s{seed}")
      if os.path.exists(os.path.join(rdir, DONE)):
        continue
      print(f"== {name} seed {seed}: {arm['params']} params, width "
            f"{arm['cfg'].hidden_size}, depth/segment {arm['depth']} -> {rdir}", flush=True)
      rc = run_config(config, arm, seed)
      t0 = time.time()
      run = loop.run(rc, rdir)
      t1 = time.time()
      res = evaluate_run(run, num_steps, config.eval_batch_size)
      res.update(arm=name, seed=int(seed), params=arm["params"],
                 train_seconds=t1 - t0, eval_seconds=time.time() - t1,
                 final_train={k: float(v) for k, v in run.metrics.items()
                              if isinstance(v, (int, float))})
      write_json_atomic(os.path.join(rdir, DONE), res)
      write_report(config, plan, workdir, num_steps)
  return write_report(config, plan, workdir, num_steps)


def _load(plan, workdir):
  out = {}
  for name in plan:
    runs = []
    for seed_dir in sorted(os.listdir(os.path.join(workdir, "runs"))) \
        if os.path.isdir(os.path.join(workdir, "runs")) else []:
      p = os.path.join(workdir, "runs", seed_dir, DONE)
      if seed_dir.rsplit("_s", 1)[0] == name and os.path.exists(p):
        with open(p) as f:
          runs.append(json.load(f))
    if runs:
      out[name] = runs
  return out


def _stats(values) -> tuple[float, float, float, float]:
  v = 100 * np.asarray(values, float)
  return v.mean(), v.min(), v.max(), v.std()


def _cell(values) -> str:
  mean, lo, hi, _ = _stats(values)
  return f"{mean:.1f} ({lo:.1f}-{hi:.1f})" if len(values) > 1 else f"{mean:.1f}"


def _overall(run) -> np.ndarray:
  """Exact accuracy per step over all evaluation examples."""
  tot = sum(run["count"].values())
  return sum(np.asarray(run["exact"][s]) * run["count"][s] for s in run["exact"]) / tot


def write_report(config, plan, workdir: str, num_steps: int) -> dict:
  """results.md and the PNGs from every finished run; returns the summary."""
  runs = _load(plan, workdir)
  ablation = config.get("experiment", "") == "ablation"
  cmd = (f"python -m experiments.depth_vs_recursion --config=experiments/configs/"
         f"depth_vs_recursion.py:{config.get('variant_name', 'VARIANT')} --workdir={workdir}")
  lines = [f"# {'TRM ablation' if ablation else 'Recursion versus depth'}: "
           f"{config.data.name}", "", f"Command: `{cmd}`", "",
           f"Matched training: every run takes {config.steps} optimizer steps of batch "
           f"{config.batch_size} (one supervision segment per step). Seeds: "
           f"{list(config.seeds)}; cells are mean (min-max) over the finished seeds "
           "(column `seeds`). Exact accuracy in %.", ""]
  lines += ["## Models", "",
            "| arm | model | params | width/heads | depth per segment | train segments |"
            " effective depth | layer passes per step (fwd/backprop) | MFLOP per token"
            " per step | seeds | train s per seed |", "|" + "---|" * 11]
  summary = {}
  for name, arm in plan.items():
    cfg = arm["cfg"]
    fwd, grad = arm["passes"]
    flop = (2 * fwd + 4 * grad) * arm["layer_params"] / 1e6
    rs = runs.get(name, [])
    secs = np.mean([r["train_seconds"] for r in rs]) if rs else float("nan")
    matched = f" (matched to {arm['matched_to']})" if arm["matched_to"] else ""
    lines.append(
        f"| {name} | {arm['label']} | {arm['params']:,}{matched} | {cfg.hidden_size}/"
        f"{cfg.num_heads} | {arm['depth']} | {cfg.halt_max_steps} | "
        f"{arm['depth'] * cfg.halt_max_steps} | {fwd}/{grad} | {flop:.2f} | {len(rs)} | "
        f"{secs:.0f} |")
  lines.append("")
  lines.append("Effective depth = layers applied between input and output over the "
               "training number of supervision segments (layers x recursions x "
               "segments). FLOPs per step are not matched: the recursive models "
               "spend more compute per step on the same data.")
  lines.append("")

  def per_step(name):
    return np.stack([_overall(r) for r in runs[name]])  # [seeds, steps]

  train_steps = {n: plan[n]["cfg"].halt_max_steps for n in plan}
  if ablation:
    lines += ["## Exact accuracy beside the paper", "",
              "| arm | variant | seeds | exact accuracy (ours, at the training "
              "number of segments) | best over test-time segments | paper (Sudoku-Extreme) |",
              "|---|---|---|---|---|---|"]
    for name in plan:
      if name not in runs:
        continue
      a = per_step(name)
      at = a[:, train_steps[name] - 1]
      paper = plan[name]["paper"]
      lines.append(f"| {name} | {plan[name]['label']} | {len(a)} | {_cell(at)} | "
                   f"{_cell(a.max(1))} | {paper if paper >= 0 else '-'} |")
      summary[name] = dict(exact=float(at.mean()), seeds=len(a))
    lines.append("")
  else:
    splits = _eval_splits_of(runs)
    sizes = [s[6:] for s in splits]
    lines += ["## Exact accuracy vs problem size n (at the training number of segments)",
              "", "| arm | seeds | " + " | ".join(f"n={s}" for s in sizes) + " | all |",
              "|" + "---|" * (len(sizes) + 3)]
    for name in plan:
      if name not in runs:
        continue
      rs = runs[name]
      t = train_steps[name] - 1
      cells = [_cell([r["exact"][s][t] for r in rs]) for s in splits]
      allc = _cell(per_step(name)[:, t])
      lines.append(f"| {name} | {len(rs)} | " + " | ".join(cells) + f" | {allc} |")
      summary[name] = {s: float(np.mean([r["exact"][s][t] for r in rs])) for s in splits}
      summary[name]["seeds"] = len(rs)
    lines.append("")

  show = _steps_to_show(num_steps)
  lines += [f"## Exact accuracy vs test-time supervision segments (all {'test puzzles' if ablation else 'sizes'})",
            "", "Trained with `train segments` segments (table above); evaluated with "
            f"1..{num_steps} (`train.eval_step(num_steps=...)`, `exact_per_step`).", "",
            "| arm | seeds | " + " | ".join(f"{s}" for s in show) + " |",
            "|" + "---|" * (len(show) + 2)]
  for name in plan:
    if name in runs:
      a = per_step(name)
      lines.append(f"| {name} | {len(a)} | " +
                   " | ".join(_cell(a[:, s - 1]) for s in show) + " |")
  lines.append("")
  lines += ["## Exact accuracy vs effective depth", "",
            "| arm | segments | effective depth | exact accuracy | seeds |",
            "|---|---|---|---|---|"]
  for name in plan:
    if name in runs:
      a = per_step(name)
      for s in show:
        lines.append(f"| {name} | {s} | {s * plan[name]['depth']} | {_cell(a[:, s - 1])} "
                     f"| {len(a)} |")
  lines.append("")
  pngs = _plots(plan, runs, workdir, num_steps, ablation)
  lines += ["## Plots", ""] + [f"![{p}]({p})" for p in pngs] + [""]
  with open(os.path.join(workdir, "results.md"), "w") as f:
    f.write("\n".join(lines))
  return summary


def _eval_splits_of(runs) -> list[str]:
  splits = set()
  for rs in runs.values():
    for r in rs:
      splits |= set(r["exact"])
  return sorted(splits, key=lambda s: int(s[6:]) if s.startswith("test_n") else -1)


def _steps_to_show(n: int) -> list[int]:
  if n <= 16:
    return list(range(1, n + 1))
  return sorted({1, 2, 4, 8, 12, 16, 24, 32, 48, 64, n} & set(range(1, n + 1)))


def _plots(plan, runs, workdir, num_steps, ablation) -> list[str]:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  out = []

  def band(ax, x, a, label, **kw):
    a = 100 * np.asarray(a)
    line, = ax.plot(x, a.mean(0), marker="o", ms=3, label=f"{label} ({len(a)} seeds)", **kw)
    if len(a) > 1:
      ax.fill_between(x, a.min(0), a.max(0), alpha=0.2, color=line.get_color())

  def save(fig, name):
    fig.tight_layout()
    fig.savefig(os.path.join(workdir, name), dpi=110)
    plt.close(fig)
    out.append(name)

  names = [n for n in plan if n in runs]
  if not ablation and names:
    splits = _eval_splits_of(runs)
    sizes = [int(s[6:]) for s in splits]
    fig, ax = plt.subplots(figsize=(6, 4))
    for n in names:
      t = plan[n]["cfg"].halt_max_steps - 1
      band(ax, sizes, [[r["exact"][s][t] for s in splits] for r in runs[n]], n)
    ax.set(xlabel="problem size n", ylabel="exact accuracy (%)", ylim=(-2, 102),
           title="Exact accuracy vs problem size (min-max band over seeds)")
    ax.legend(fontsize=8)
    save(fig, "acc_vs_size.png")
  if names:
    fig, ax = plt.subplots(figsize=(6, 4))
    x = np.arange(1, num_steps + 1)
    for n in names:
      band(ax, x, [_overall(r) for r in runs[n]], n)
    for n in names:
      ax.axvline(plan[n]["cfg"].halt_max_steps, color="grey", ls=":", lw=0.8)
    ax.set(xlabel="supervision segments at test time (dotted: training numbers)",
           ylabel="exact accuracy (%)", ylim=(-2, 102),
           title="Exact accuracy vs test-time segments")
    ax.legend(fontsize=8)
    save(fig, "acc_vs_steps.png")
    fig, ax = plt.subplots(figsize=(6, 4))
    for n in names:
      d = plan[n]["depth"]
      band(ax, x * d, [_overall(r) for r in runs[n]], n)
    ax.set_xscale("log", base=2)
    ax.set(xlabel="effective depth (layers x recursions x segments)",
           ylabel="exact accuracy (%)", ylim=(-2, 102),
           title="Exact accuracy vs effective depth")
    ax.legend(fontsize=8)
    save(fig, "acc_vs_depth.png")
  if ablation and names:
    fig, ax = plt.subplots(figsize=(7, 4))
    xs = np.arange(len(names))
    ours = [100 * np.mean([_overall(r)[plan[n]["cfg"].halt_max_steps - 1] for r in runs[n]])
            for n in names]
    lo = [100 * np.min([_overall(r)[plan[n]["cfg"].halt_max_steps - 1] for r in runs[n]])
          for n in names]
    hi = [100 * np.max([_overall(r)[plan[n]["cfg"].halt_max_steps - 1] for r in runs[n]])
          for n in names]
    paper = [max(plan[n]["paper"], 0) for n in names]
    ax.bar(xs - 0.2, ours, 0.4, yerr=[np.subtract(ours, lo), np.subtract(hi, ours)],
           label="ours (min-max over seeds)")
    ax.bar(xs + 0.2, paper, 0.4, label="paper (Sudoku-Extreme)")
    ax.set_xticks(xs, names, rotation=20)
    ax.set(ylabel="exact accuracy (%)", ylim=(0, 105), title="TRM ablation")
    ax.legend(fontsize=8)
    save(fig, "ablation.png")
  return out


def main(argv):
  del argv
  if not _WORKDIR.value:
    raise app.UsageError("--workdir is required")
  logging.getLogger("absl").setLevel(logging.WARNING)
  config = _CONFIG.value
  # The variant name, for the command line printed in results.md.
  arg = sys.argv[[i for i, a in enumerate(sys.argv) if a.startswith("--config=")][0]] \
      if any(a.startswith("--config=") for a in sys.argv) else ":quick"
  with config.unlocked():
    config.variant_name = arg.rsplit(":", 1)[-1] if ":" in arg else "quick"
  t0 = time.time()
  run_experiment(config, _WORKDIR.value)
  print(f"results: {os.path.join(os.path.abspath(_WORKDIR.value), 'results.md')} "
        f"({time.time() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
  cli.run(main)
