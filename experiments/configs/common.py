"""Pieces shared by the experiment configs."""
from __future__ import annotations

import ml_collections
from ml_collections import config_dict

__all__ = ["base", "eval_limits", "trm_model", "hrm_model", "optim", "placeholder", "tiny", "smoke"]

placeholder = config_dict.placeholder


def base() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.batch_size = 768           # global batch (all devices, all hosts)
  c.steps = 0                  # total optimizer steps; 0 = derive from epochs
  c.epochs = 1
  # Epochs concatenated before packing into batches (the reference's
  # eval_interval); only a block's last incomplete batch is dropped.
  c.epochs_per_block = 1
  c.log_every = 100
  c.eval_every = 0             # steps; 0 = only at the end
  c.eval_at_end = True
  c.checkpoint_every = 1000
  c.keep_checkpoints = 3        # the latest N in workdir/checkpoints/
  c.best_metric = ""           # e.g. "eval/exact_accuracy", "eval/pass@2": best in workdir/best/
  c.best_mode = "max"          # or "min"
  c.async_checkpointing = True
  c.table_sharding = "replicated"   # or "rows": puzzle table split over devices
  c.prefetch = 2
  # PNGs (curves, examples, refinement) after the run. Their cost is bounded
  # whatever the dataset: one batch of the first `pictures_max_examples` test
  # puzzles run for `pictures_steps` segments (0: twice halt_max_steps).
  c.pictures = True
  c.pictures_max_examples = 8
  c.pictures_steps = 0
  c.max_param_abs = 1e6        # stop if any weight exceeds this (0: no limit)
  c.lock_stale_s = 120.0       # a workdir lock without heartbeat this long is taken over
  c.eval = ml_collections.ConfigDict({
      "num_steps": 0,              # 0 = halt_max_steps
      "puzzle_ids": "true",        # or "blank" / "random": is the model using its id?
      "arc_task_score": "mean",    # TRM's evaluator; "all": HRM's notebook
      "progress_every_s": 30.0,    # a long evaluation's progress line (0: none)
  })
  c.profile_steps = ""         # "A:B": jax.profiler trace of steps A+1..B into tensorboard/
  return c


def eval_limits(**kw) -> dict:
  """The evaluation limits every data config has (`experiments.evaluation`).

  The defaults evaluate the whole test split, the number a paper reports (ARC:
  every test input in all its augmented versions, ~385k rows; Sudoku-Extreme:
  423k puzzles): right on accelerators, hours on a CPU. For a CPU check:
  `--config.data.eval_max_batches=1 --config.data.eval_batch_size=8`
  (docs/training.md, "Paper variants on a CPU").
  """
  d = dict(
      eval_batch_size=0,                    # rows per batch; 0: batch_size
      eval_max_batches=placeholder(int),    # the first N batches; None/0: all
      eval_max_versions=placeholder(int))   # ARC: first K versions per input
  d.update(kw)
  return d


def trm_model(**kw) -> ml_collections.ConfigDict:
  m = dict(name="trm", hidden_size=512, num_heads=8, expansion=4.0, L_layers=2,
           H_cycles=3, L_cycles=4, pos_encodings="rope", puzzle_emb_ndim=512,
           puzzle_emb_len=16, halt_max_steps=16, halt_exploration_prob=0.1,
           mlp_t=False, grad_mode="full", act_continue=False,
           compute_dtype="bfloat16", unroll=True, remat="auto",
           attention_impl=placeholder(str))
  m.update(kw)
  return ml_collections.ConfigDict(m)


def hrm_model(**kw) -> ml_collections.ConfigDict:
  m = dict(name="hrm", hidden_size=512, num_heads=8, expansion=4.0, H_layers=4,
           L_layers=4, H_cycles=2, L_cycles=2, pos_encodings="rope",
           puzzle_emb_ndim=512, halt_max_steps=16, halt_exploration_prob=0.1,
           grad_mode="one_step", act_continue=True, compute_dtype="bfloat16",
           unroll=True, remat="auto", attention_impl=placeholder(str))
  m.update(kw)
  return ml_collections.ConfigDict(m)


def optim(**kw) -> ml_collections.ConfigDict:
  o = dict(lr=1e-4, lr_min_ratio=1.0, lr_warmup_steps=2000, beta1=0.9, beta2=0.95,
           weight_decay=0.1, puzzle_emb_lr=1e-2, puzzle_emb_weight_decay=0.1,
           ema=True, ema_rate=0.999, loss_type="stablemax_cross_entropy")
  o.update(kw)
  return ml_collections.ConfigDict(o)


def tiny(c: ml_collections.ConfigDict, **model) -> None:
  """Shrinks the model for CPU variants (same code paths)."""
  c.model.update(dict(hidden_size=32, num_heads=2, compute_dtype="float32"), **model)
  if "puzzle_emb_ndim" in c.model and c.model.puzzle_emb_ndim:
    c.model.puzzle_emb_ndim = c.model.hidden_size


def smoke(c: ml_collections.ConfigDict) -> None:
  """The `smoke` variants: a few steps of a tiny model, checkpoints every 3."""
  c.batch_size = 8
  c.steps = 6
  c.log_every = 1
  c.checkpoint_every = 3
  tiny(c, H_cycles=2, L_cycles=1, halt_max_steps=2, puzzle_emb_len=1)
  c.optim.update(lr=1e-3, lr_warmup_steps=2)
