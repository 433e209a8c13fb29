"""Same learning: recur and the PyTorch reference trained side by side on 4x4 Sudoku.

The trajectory fixtures (tools/make_trajectory_fixture.py) show that recur's
train step replays the reference's `train_batch` for a dozen steps to 1e-4.
Float32 trajectories of two implementations part after enough steps, so this
tool checks the thing users care about: trained from the same initial weights
on the same batches for thousands of steps, both learn the same. Per seed:

1. `data` (recur venv): a 4x4 Sudoku source from recur's generator
   (`recur.data.make_source("sudoku", box=(2, 2), ...)`), the first `steps`
   batches recur's `TrainIterator` serves for that seed, and one held-out set
   (the test split, one version per puzzle).
2. `reference` (torch venv): the reference's TRM-MLP (TinyRecursiveModels,
   unmodified) built under `torch.manual_seed(seed)` with its own init; its
   initial weights are saved, then its own `pretrain.train_batch` runs every
   batch with the optimisers, lr schedule and EMA `pretrain.py` builds (shims as
   in make_trajectory_fixture.py, none touching the arithmetic). Every
   `eval_every` steps the EMA weights (`EMAHelper.ema_copy`, as `launch()`
   evaluates) run the held-out set for halt_max_steps segments.
3. `recur` (recur venv): `recur.convert.from_reference` of those initial
   weights, `recur.train.train_step` on the same batches, `act.rollout` of
   `train.eval_params` on the same held-out set at the same steps.
4. `plot`: both runs' curves in one PNG and a markdown table of final accuracy.

Exploration is off (halt_exploration_prob 0) in both: its random draws come
from each framework's own generator and cannot be shared.

    python tools/same_learning.py data --out /tmp/same_learning
    /work/venv-torch/bin/python tools/same_learning.py reference --out /tmp/same_learning \\
        --reference_dir /tmp/trmref --adam_atan2_dir /tmp/aa/adam_atan2-0.0.3
    python tools/same_learning.py recur --out /tmp/same_learning
    python tools/same_learning.py plot --out /tmp/same_learning --png docs/img/same_learning.png

(`data`, `recur`, `plot` need the recur venv; `reference` needs only torch and
numpy.) Run sizes are in RUN below; `--steps`/`--seeds` override them.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

# The run, sized for 2 shared CPU cores (the torch eager step dominates: ~0.1 s).
# Model: a TRM-MLP like docs/quickstart.ipynb's (hidden 48, one layer, T=2 H
# cycles of n=2 L updates, up to 4 segments) plus one puzzle-embedding position,
# so the reference's sparse sign-SGD on the puzzle table is in the recipe too.
RUN = {
    "seeds": [0, 1, 2], "steps": 2000, "batch": 32, "eval_every": 250,
    "data": {"box": [2, 2], "num_train": 200, "num_test": 256, "num_aug": 100,
             "num_blanks": 6, "seed": 0},
    "model": {"seq_len": 16, "vocab_size": 6, "num_puzzle_identifiers": 1,
              "hidden_size": 48, "num_heads": 2, "expansion": 4,
              "pos_encodings": "none", "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
              "puzzle_emb_ndim": 48, "puzzle_emb_len": 1, "H_cycles": 2,
              "L_cycles": 2, "H_layers": 0, "L_layers": 1, "halt_max_steps": 4,
              "halt_exploration_prob": 0.0, "mlp_t": True, "no_ACT_continue": True,
              "forward_dtype": "float32"},
    "optim": {"lr": 3e-3, "lr_min_ratio": 1.0, "lr_warmup_steps": 50,
              "weight_decay": 0.1, "beta1": 0.9, "beta2": 0.95,
              "puzzle_emb_lr": 3e-3, "puzzle_emb_weight_decay": 0.1,
              "ema": True, "ema_rate": 0.99},
    "loss_type": "stablemax_cross_entropy",
}
CURVES = ("lm_loss", "q_halt_loss", "accuracy", "exact_accuracy", "steps", "count")


def _path(out: str, name: str) -> str:
  return os.path.join(out, name)


def _load_run(out: str) -> dict:
  with open(_path(out, "run.json")) as f:
    return json.load(f)


# ---------------------------------------------------------------- data (recur)
def make_data(run: dict, out: str) -> None:
  """Writes run.json, heldout.npz and batches_seed<S>.npz (recur venv)."""
  from recur import data as rdata  # pylint: disable=import-outside-toplevel
  from recur.data import pipeline  # pylint: disable=import-outside-toplevel
  os.makedirs(out, exist_ok=True)
  d = run["data"]
  source = rdata.make_source("sudoku", box=tuple(d["box"]), num_train=d["num_train"],
                             num_test=d["num_test"], num_aug=d["num_aug"],
                             num_blanks=d["num_blanks"], seed=d["seed"])
  info = source.info
  for k in ("seq_len", "vocab_size", "num_puzzle_identifiers"):
    if run["model"][k] != getattr(info, k):
      raise ValueError(f"RUN model {k}={run['model'][k]} but the source has {getattr(info, k)}")
  rows = {"inputs": [], "labels": [], "puzzle_identifiers": []}
  for b in pipeline.eval_batches(source, run["batch"], split="test", max_versions=1,
                                 prefetch=0):
    for k, v in rows.items():
      v.append(b[k][b["mask"]])
  np.savez_compressed(_path(out, "heldout.npz"),
                      **{k: np.concatenate(v).astype(np.int32) for k, v in rows.items()})
  for seed in run["seeds"]:
    it = pipeline.TrainIterator(source, run["batch"], seed=seed, prefetch=0)
    batches = [next(it) for _ in range(run["steps"])]
    np.savez_compressed(_path(out, f"batches_seed{seed}.npz"), **{
        k: np.stack([b[k] for b in batches]).astype(np.int32) for k in rows})
  with open(_path(out, "run.json"), "w") as f:
    json.dump(run, f, indent=1)
  print(f"data: {len(np.concatenate(rows['inputs']))} held-out puzzles, "
        f"{run['steps']} batches of {run['batch']} per seed {run['seeds']} -> {out}")


def _batches(out: str, seed: int) -> dict[str, np.ndarray]:
  with np.load(_path(out, f"batches_seed{seed}.npz")) as z:
    return {k: z[k] for k in z.files}


def _heldout(out: str) -> dict[str, np.ndarray]:
  with np.load(_path(out, "heldout.npz")) as z:
    return {k: z[k] for k in z.files}


def exact(preds: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """Per row: every labelled token predicted (the reference's seq_is_correct)."""
  mask = labels != -100
  return ((preds == labels) | ~mask).all(-1)


def _eval_steps(run: dict) -> list[int]:
  return sorted(set(range(0, run["steps"] + 1, run["eval_every"])) | {run["steps"]})


# ----------------------------------------------------------- reference (torch)
def run_reference(run: dict, out: str, seed: int, reference_dir: str,
                  adam_atan2_dir: str) -> None:
  """The reference's own train_batch on the stored batches (torch venv)."""
  import torch  # pylint: disable=import-outside-toplevel
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  import make_reference_fixture as fwd  # pylint: disable=import-outside-toplevel
  import make_trajectory_fixture as traj  # pylint: disable=import-outside-toplevel
  traj._stub_unused_imports()  # pylint: disable=protected-access
  traj._install_adam_atan2(adam_atan2_dir)  # pylint: disable=protected-access
  torch.Tensor.cuda = lambda self, *a, **k: self
  torch.set_num_threads(1)
  model_mod, losses = fwd._import_reference(  # pylint: disable=protected-access
      reference_dir, "models.recursive_reasoning.trm")
  pretrain = __import__("pretrain")
  from models.ema import EMAHelper  # pylint: disable=import-outside-toplevel
  from models.sparse_embedding import CastedSparseEmbeddingSignSGD_Distributed  # pylint: disable=import-outside-toplevel

  oc, batch = run["optim"], run["batch"]
  cfg = dict(run["model"], batch_size=batch)
  torch.manual_seed(seed)
  model = model_mod.TinyRecursiveReasoningModel_ACTV1(cfg)
  init = {}
  for name, p in model.named_parameters(prefix="model"):
    init[f"param/{name}"] = p.detach().numpy().astype(np.float32)
  for name, buf in model.named_buffers(prefix="model"):
    if name.rsplit(".", 1)[-1] not in ("local_weights", "local_ids", "cos_cached", "sin_cached"):
      init[f"buffer/{name}"] = buf.detach().numpy().astype(np.float32)
  np.savez_compressed(_path(out, f"init_seed{seed}.npz"), **init)
  with open(_path(out, f"init_seed{seed}.json"), "w") as f:
    json.dump({"model": "trm", "config": model.config.model_dump()}, f, indent=1)

  head = losses.ACTLossHead(model, loss_type=run["loss_type"])
  config = pretrain.PretrainConfig(
      arch={"name": "unused", "loss": {"name": "unused"}}, data_paths=[],
      global_batch_size=batch, epochs=1, **{k: v for k, v in oc.items()})
  optimizers = [  # create_model's, puzzle_emb_ndim > 0
      CastedSparseEmbeddingSignSGD_Distributed(
          head.model.puzzle_emb.buffers(), lr=0,
          weight_decay=config.puzzle_emb_weight_decay, world_size=1),
      pretrain.AdamATan2(head.parameters(), lr=0, weight_decay=config.weight_decay,
                         betas=(config.beta1, config.beta2))]
  state = pretrain.TrainState(model=head, optimizers=optimizers,
                              optimizer_lrs=[config.puzzle_emb_lr, config.lr],
                              carry=None, step=0, total_steps=run["steps"])
  ema = EMAHelper(mu=config.ema_rate)
  ema.register(head)
  data, held = _batches(out, seed), _heldout(out)
  # What train_batch's torch.device("cuda") branch does on its first call.
  state.carry = head.initial_carry({k: torch.from_numpy(v[0]) for k, v in data.items()})

  def evaluate() -> float:
    ev = ema.ema_copy(head) if config.ema else head
    ev.eval()
    solved = []
    with torch.inference_mode():
      for i in range(0, len(held["inputs"]), batch):
        b = {k: torch.from_numpy(v[i:i + batch]) for k, v in held.items()}
        carry = ev.initial_carry(b)
        while True:  # pretrain.evaluate's loop
          carry, _, _, outs, finished = ev(carry=carry, batch=b, return_keys=["preds"])
          if finished:
            break
        solved.append(exact(outs["preds"].numpy(), held["labels"][i:i + batch]))
    return float(np.concatenate(solved).mean())

  curves = {k: [] for k in CURVES}
  evals = {0: evaluate()}
  t0 = time.time()
  head.train()
  for t in range(run["steps"]):
    b = {k: torch.from_numpy(v[t]) for k, v in data.items()}
    m = pretrain.train_batch(config, state, b, global_batch_size=batch, rank=0,
                             world_size=1)
    ema.update(head)
    for k in CURVES:
      curves[k].append(float(m[f"train/{k}"]))
    if t + 1 in _eval_steps(run):
      evals[t + 1] = evaluate()
      head.train()
      print(f"reference seed {seed} step {t + 1}: lm_loss {curves['lm_loss'][-1]:.4f} "
            f"held-out exact {evals[t + 1]:.3f} ({time.time() - t0:.0f}s)", flush=True)
  _save_curves(out, "reference", seed, curves, evals)


def _save_curves(out, impl, seed, curves, evals):
  np.savez_compressed(
      _path(out, f"{impl}_seed{seed}.npz"),
      **{f"train/{k}": np.asarray(v, np.float64) for k, v in curves.items()},
      eval_steps=np.asarray(sorted(evals), np.int64),
      eval_exact=np.asarray([evals[s] for s in sorted(evals)], np.float64))


# -------------------------------------------------------------- recur (jax)
def run_recur(run: dict, out: str, seed: int, steps: int | None = None) -> None:
  """recur's train_step from the reference's initial weights (recur venv)."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from recur import act, convert, models, optim, train  # pylint: disable=import-outside-toplevel
  from recur.parity_trajectory import optim_config  # pylint: disable=import-outside-toplevel

  steps = run["steps"] if steps is None else steps
  with open(_path(out, f"init_seed{seed}.json")) as f:
    ref_cfg = json.load(f)
  with np.load(_path(out, f"init_seed{seed}.npz")) as z:
    init = {k: z[k] for k in z.files}
  cfg = models.from_reference_config(ref_cfg["model"], ref_cfg["config"],
                                     compute_dtype="float32")
  oc = optim_config({"batch": run["batch"], "loss_type": run["loss_type"],
                     "optim": dict(run["optim"], total_steps=run["steps"])})
  initial = jax.tree.map(jnp.asarray, convert.from_reference(init))
  data, held = _batches(out, seed), _heldout(out)
  batch_at = lambda t: {k: jnp.asarray(v[t]) for k, v in data.items()}  # noqa: E731
  net = initial["net"]
  state = train.TrainState(
      step=jnp.zeros((), jnp.int32),
      params={"net": net, "H_init": initial["H_init"], "L_init": initial["L_init"]},
      puzzle_emb=initial["puzzle_emb"], opt_state=train.make_optimizer(oc).init(net),
      ema=optim.ema_init(net) if oc.ema else None,
      carry=act.empty_carry(cfg, batch_at(0)), key=jax.random.PRNGKey(seed))
  step_fn = jax.jit(lambda s, b: train.train_step(s, b, cfg=cfg, oc=oc))
  rollout = jax.jit(lambda p, b: act.rollout(cfg, p, b)["preds"])
  b_eval = run["batch"]

  def evaluate(state) -> float:
    params = train.model_params(state, ema=oc.ema)
    solved = []
    for i in range(0, len(held["inputs"]), b_eval):
      b = {k: jnp.asarray(v[i:i + b_eval]) for k, v in held.items()}
      solved.append(exact(np.asarray(rollout(params, b)), held["labels"][i:i + b_eval]))
    return float(np.concatenate(solved).mean())

  curves = {k: [] for k in CURVES}
  evals = {0: evaluate(state)}
  eval_at = set(_eval_steps(run)) | {steps}
  t0 = time.time()
  for t in range(steps):
    state, sums = step_fn(state, batch_at(t))
    m = train.reduce_metrics(jax.device_get(sums), run["batch"])
    m["count"] = m["count"] / max(m["count"], 1.0)  # the reference's count/count
    for k in CURVES:
      curves[k].append(float(m[k]))
    if t + 1 in eval_at:
      evals[t + 1] = evaluate(state)
      print(f"recur seed {seed} step {t + 1}: lm_loss {curves['lm_loss'][-1]:.4f} "
            f"held-out exact {evals[t + 1]:.3f} ({time.time() - t0:.0f}s)", flush=True)
  _save_curves(out, "recur", seed, curves, evals)


# ------------------------------------------------------------------- plot
def _smooth(x: np.ndarray, w: int) -> np.ndarray:
  if len(x) < w:
    return x
  return np.convolve(x, np.ones(w) / w, mode="valid")


def summarise(run: dict, out: str) -> dict:
  """{impl: {"final": [per seed], "mean", "spread"}} of final held-out exact."""
  res = {}
  for impl in ("reference", "recur"):
    final = []
    for seed in run["seeds"]:
      with np.load(_path(out, f"{impl}_seed{seed}.npz")) as z:
        final.append(float(z["eval_exact"][-1]))
    res[impl] = {"final": final, "mean": float(np.mean(final)),
                 "min": float(np.min(final)), "max": float(np.max(final))}
  return res


def plot(run: dict, out: str, png: str, smooth: int = 50) -> str:
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
  colors = {"reference": "tab:orange", "recur": "tab:blue"}
  styles = {"reference": "-", "recur": "--"}
  for impl in ("reference", "recur"):
    for i, seed in enumerate(run["seeds"]):
      with np.load(_path(out, f"{impl}_seed{seed}.npz")) as z:
        loss, ex = z["train/lm_loss"], z["train/exact_accuracy"]
        es, ee = z["eval_steps"], z["eval_exact"]
      label = f"{impl} (3 seeds)" if i == 0 else None
      x = np.arange(len(_smooth(loss, smooth))) + smooth
      kw = dict(color=colors[impl], ls=styles[impl], lw=1.2, alpha=0.8, label=label)
      axes[0].plot(x, _smooth(loss, smooth), **kw)
      axes[1].plot(x, _smooth(ex, smooth), **kw)
      axes[2].plot(es, ee, marker="o", ms=3, **kw)
  axes[0].set(title=f"train lm_loss ({smooth}-step mean)", xlabel="step", yscale="log")
  axes[1].set(title=f"train exact accuracy, halted rows ({smooth}-step mean)",
              xlabel="step", ylim=(-0.02, 1.02))
  axes[2].set(title="held-out exact accuracy (EMA weights)", xlabel="step",
              ylim=(-0.02, 1.02))
  for ax in axes:
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
  fig.suptitle("4x4 Sudoku, TRM-MLP: PyTorch reference vs recur, same initial "
               "weights and batches")
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(png)), exist_ok=True)
  fig.savefig(png, dpi=110)
  plt.close(fig)
  return png


def parting_step(out: str, seed: int, rel: float = 1e-3) -> int | None:
  """First step (1-based) where the two runs' train lm_loss differ by more than
  `rel` relative; None if they never do."""
  with np.load(_path(out, f"reference_seed{seed}.npz")) as a, \
       np.load(_path(out, f"recur_seed{seed}.npz")) as b:
    x, y = a["train/lm_loss"], b["train/lm_loss"]
  n = min(len(x), len(y))
  far = np.abs(x[:n] - y[:n]) > rel * np.abs(x[:n])
  return int(np.argmax(far)) + 1 if far.any() else None


def table(run: dict, out: str) -> str:
  s = summarise(run, out)
  lines = ["| held-out exact accuracy | " + " | ".join(f"seed {k}" for k in run["seeds"])
           + " | mean | range |", "|---|" + "---|" * (len(run["seeds"]) + 2)]
  for impl in ("reference", "recur"):
    r = s[impl]
    lines.append(f"| {impl} | " + " | ".join(f"{v:.3f}" for v in r["final"])
                 + f" | {r['mean']:.3f} | {r['min']:.3f}-{r['max']:.3f} |")
  for impl in ("reference", "recur"):
    tail = []
    for k in run["seeds"]:
      with np.load(_path(out, f"{impl}_seed{k}.npz")) as z:
        tail.append(float(np.mean(z["train/lm_loss"][-100:])))
    lines.append(f"| {impl}: train lm_loss, mean of the last 100 steps | "
                 + " | ".join(f"{v:.4f}" for v in tail)
                 + f" | {np.mean(tail):.4f} | {min(tail):.4f}-{max(tail):.4f} |")
  parts = [parting_step(out, k) for k in run["seeds"]]
  lines.append("| first step with train lm_loss apart by > 1e-3 relative | "
               + " | ".join("never" if p is None else str(p) for p in parts) + " | | |")
  return "\n".join(lines)


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("phase", choices=("data", "reference", "recur", "plot"))
  ap.add_argument("--out", required=True, help="run directory (data and curves)")
  ap.add_argument("--seeds", type=int, nargs="+")
  ap.add_argument("--steps", type=int, help="data: batches per seed (default RUN's)")
  ap.add_argument("--reference_dir", help="TinyRecursiveModels checkout (reference)")
  ap.add_argument("--adam_atan2_dir", help="extracted adam-atan2 0.0.3 sdist (reference)")
  ap.add_argument("--png", default="docs/img/same_learning.png")
  args = ap.parse_args(argv)
  if args.phase == "data":
    run = dict(RUN)
    if args.seeds:
      run["seeds"] = args.seeds
    if args.steps:
      run["steps"] = args.steps
    make_data(run, args.out)
    return 0
  run = _load_run(args.out)
  seeds = args.seeds or run["seeds"]
  if args.phase == "reference":
    if not (args.reference_dir and args.adam_atan2_dir):
      ap.error("reference needs --reference_dir and --adam_atan2_dir")
    for seed in seeds:
      run_reference(run, args.out, seed, args.reference_dir, args.adam_atan2_dir)
  elif args.phase == "recur":
    for seed in seeds:
      run_recur(run, args.out, seed)
  else:
    print(plot(run, args.out, args.png))
    print(table(run, args.out))
  return 0


if __name__ == "__main__":
  sys.exit(main())
