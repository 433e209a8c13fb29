"""Recursion versus depth, and a reduced-scale TRM ablation (paper Table 1).

    python -m experiments.depth_vs_recursion \
        --config=experiments/configs/depth_vs_recursion.py:VARIANT --workdir=DIR

Every arm is trained by `experiments.loop.run` in DIR/runs/<arm>_s<seed> with
the same number of optimizer steps and the same batch (matched training data
and steps; the FLOPs per step are not matched and are reported). Parameter
counts are matched by width: an arm with `match_params` gets the hidden size
(and, if needed, head count) whose total parameter count is closest to that
arm's, and the run refuses to start if it is off by more than
`param_tolerance`. Results: DIR/results.md and DIR/*.png.

Depth versus recursion (default task: sorting lists of n = n_min..n_max values):
  quick:  a direct transformer of depth 4 (width matched to TRM), TRM (2 layers,
          T=2, n=2, 4 supervision steps) and HRM (1+1 layers, same width as
          TRM), 3 seeds; <= 10 min on 2 CPU cores (see docs/results.md).
  full:   transformers of depth 2, 4 and 8 (each width-matched), TRM and HRM at
          width 64, longer lists and 4x the steps, 3 seeds; about an hour on
          2 CPU cores (estimate in docs/results.md).
  quick_state: the quick arms on a serial task, the S_3 word problem
          ("state tracking", `StateTrackingSource`: label i = g_1 o ... o g_i,
          n = 2..12; data.k sets the group S_k), 3 seeds; <= 10 min on 2 CPU cores.
  smoke:  seconds, for tests.
Ablation on the built-in Sudoku generator (4x4 boards):
  ablation_quick: full TRM, 1-step gradient, single z, no EMA, HRM, direct
          prediction; <= 10 min on 2 CPU cores.
  ablation_gpu: 6x6 boards, width 256, 20k steps, 3 seeds: sized for one GPU.
  ablation_smoke: seconds, for tests.
Any field can be overridden, e.g. --config.data.name=parity.
"""
from __future__ import annotations

import ml_collections

from experiments.configs import common

__all__ = ["get_config", "VARIANTS"]

VARIANTS = ("quick", "quick_state", "full", "smoke", "ablation_quick", "ablation_gpu", "ablation_smoke")

# TRM paper, Table 1 (Sudoku-Extreme, exact accuracy %), for the ablation table.
PAPER_TABLE1 = {"trm": 87.4, "no_ema": 79.9, "one_step_grad": 56.5, "single_z": 71.9,
                "hrm": 55.0, "direct": 0.0}


# Per model: the experiment's defaults (a table keyed by the registry's names).
_MODEL_DEFAULTS = {
    "transformer": dict(H_layers=4, halt_max_steps=1),
    "trm": dict(L_layers=2, H_cycles=2, L_cycles=2, halt_max_steps=4, grad_mode="full",
                act_continue=False),
    "hrm": dict(H_layers=1, L_layers=1, H_cycles=2, L_cycles=2, halt_max_steps=4,
                grad_mode="one_step", act_continue=True),
}


def _model(name: str, **kw) -> dict:
  """A model block; puzzle_emb_ndim is set to the arm's width by the driver
  (one learned prefix position: the tasks have a single puzzle identifier)."""
  m = dict(name=name, hidden_size=64, num_heads=4, expansion=4.0,
           pos_encodings="rope", puzzle_emb_len=1, halt_exploration_prob=0.1,
           compute_dtype="float32", unroll=True)
  m.update(_MODEL_DEFAULTS[name])
  m.update(kw)
  return m


def _arm(label: str, model: dict, match_params: str = "", optim: dict | None = None,
         paper: float | None = None) -> dict:
  return dict(label=label, model=model, match_params=match_params, optim=optim or {},
              paper=-1.0 if paper is None else paper)


def _depth_arms(depths, width: int, **trm_kw) -> dict:
  arms = {
      "trm": _arm("TRM (2 layers, recursion, deep supervision)",
                  _model("trm", hidden_size=width, **trm_kw)),
      "hrm": _arm("HRM (1+1 layers, 1-step gradient)",
                  _model("hrm", hidden_size=width, H_cycles=trm_kw.get("H_cycles", 2),
                         L_cycles=trm_kw.get("L_cycles", 2),
                         halt_max_steps=trm_kw.get("halt_max_steps", 4))),
  }
  for d in depths:
    arms[f"transformer_L{d}"] = _arm(f"direct transformer, depth {d}",
                                     _model("transformer", hidden_size=width, H_layers=d),
                                     match_params="trm")
  return arms


def _base(steps: int, batch: int) -> ml_collections.ConfigDict:
  c = common.base()
  c.batch_size = batch
  c.steps = steps
  c.log_every = max(1, steps // 4)
  c.checkpoint_every = max(1, steps // 4)
  c.async_checkpointing = False
  c.eval_at_end = False          # the driver evaluates (per size, per step)
  c.prefetch = 2
  c.optim = common.optim(lr=1e-3, lr_warmup_steps=max(1, steps // 10), weight_decay=0.1,
                         puzzle_emb_lr=1e-3, puzzle_emb_weight_decay=0.1, ema=True,
                         ema_rate=0.99)
  c.seeds = (0, 1, 2)
  c.param_tolerance = 0.10
  c.eval_step_factor = 3         # test-time steps: 1 .. factor x halt_max_steps
  c.eval_batch_size = 256
  c.compilation_cache = True     # share XLA programs between the seeds of an arm
  return c


def get_config(variant: str = "quick") -> ml_collections.ConfigDict:
  if variant not in VARIANTS:
    raise ValueError(f"unknown variant {variant!r}: {', '.join(VARIANTS)}")
  if variant.startswith("ablation"):
    return _ablation(variant)
  if variant == "quick":
    c = _base(steps=400, batch=64)
    arms = _depth_arms((4,), width=64)
    data = dict(n_min=2, n_max=8, num_train=20000, num_test=200)
  elif variant == "quick_state":
    c = _base(steps=1200, batch=64)  # 400/600 steps: every arm still far from trained
    arms = _depth_arms((4,), width=64)
    data = dict(name="state_tracking", k=3, n_min=2, n_max=12, num_train=20000,
                num_test=200)
  elif variant == "full":
    c = _base(steps=1600, batch=64)
    arms = _depth_arms((2, 4, 8), width=64)
    data = dict(n_min=2, n_max=12, num_train=100000, num_test=300)
  else:  # smoke
    c = _base(steps=4, batch=8)
    c.checkpoint_every = 4
    c.seeds = (0, 1)
    c.eval_step_factor = 2
    c.eval_batch_size = 16
    arms = _depth_arms((4,), width=32, H_cycles=1, L_cycles=1, halt_max_steps=2)
    data = dict(n_min=2, n_max=4, num_train=64, num_test=8)
  c.experiment = "depth_vs_recursion"
  data = dict(name="sort", num_values=10, seed=0, **data) if "name" not in data \
      else dict(seed=0, **data)
  c.data = ml_collections.ConfigDict(data)
  c.arms = ml_collections.ConfigDict(arms)
  c.order = tuple(sorted(a for a in arms if a.startswith("transformer"))) + ("trm", "hrm")
  return c


def _ablation(variant: str) -> ml_collections.ConfigDict:
  """TRM Table 1 at toy scale: every arm TRM-Att on small generated Sudoku."""
  if variant == "ablation_quick":
    c = _base(steps=400, batch=64)
    c.seeds = (0, 1)
    width, box, blanks, n_train = 32, (2, 2), 6, 2000
    trm = dict(H_cycles=2, L_cycles=2, halt_max_steps=4)
  elif variant == "ablation_gpu":
    c = _base(steps=20000, batch=256)
    c.log_every = 500
    c.checkpoint_every = 2000
    c.optim.update(lr=3e-4, lr_warmup_steps=1000, ema_rate=0.999)
    c.eval_batch_size = 1024
    width, box, blanks, n_train = 256, (2, 3), 22, 1000
    trm = dict(H_cycles=3, L_cycles=6, halt_max_steps=16, num_heads=8,
               compute_dtype="bfloat16")
  else:  # ablation_smoke
    c = _base(steps=4, batch=8)
    c.checkpoint_every = 4
    c.seeds = (0,)
    c.eval_step_factor = 1
    c.eval_batch_size = 16
    width, box, blanks, n_train = 32, (2, 2), 6, 32
    trm = dict(H_cycles=1, L_cycles=1, halt_max_steps=2)
  hrm = dict(trm, H_layers=1, L_layers=1)
  c.experiment = "ablation"
  c.eval_step_factor = 1 if variant == "ablation_smoke" else 2
  c.data = ml_collections.ConfigDict(dict(
      name="sudoku", box=box, num_train=n_train, num_test=300 if variant != "ablation_smoke"
      else 16, num_aug=100, num_blanks=blanks, min_rating=0, seed=0))
  P = PAPER_TABLE1
  c.arms = ml_collections.ConfigDict({
      "trm": _arm("full TRM", _model("trm", hidden_size=width, **trm), paper=P["trm"]),
      "no_ema": _arm("no EMA", _model("trm", hidden_size=width, **trm),
                     optim=dict(ema=False), paper=P["no_ema"]),
      "one_step_grad": _arm("1-step gradient (HRM-style)",
                            _model("trm", hidden_size=width, grad_mode="one_step", **trm),
                            paper=P["one_step_grad"]),
      "single_z": _arm("single latent z",
                       _model("trm", hidden_size=width, single_latent=True, **trm),
                       paper=P["single_z"]),
      "hrm": _arm("HRM (1+1 layers, same params)",
                  _model("hrm", hidden_size=width, act_continue=True, **hrm), paper=P["hrm"]),
      "direct": _arm("direct prediction (depth 4, params matched)",
                     _model("transformer", hidden_size=width, H_layers=4,
                            **{k: v for k, v in trm.items()
                               if k in ("num_heads", "compute_dtype")}),
                     match_params="trm", paper=P["direct"]),
  })
  c.order = ("trm", "no_ema", "one_step_grad", "single_z", "hrm", "direct")
  return c
