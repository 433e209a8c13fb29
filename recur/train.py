"""The train state and the pure train / eval steps.

One train step = one ACT supervision segment of the whole (global) batch:
refill halted rows, run the segment, loss/metrics, AdamATan2 on the dense
weights, sparse sign-SGD on the looked-up puzzle-embedding rows, EMA. The
persistent ACT carry lives in the state, so a checkpoint of the state is an exact
resume point. Jit it once with shardings and donation, as experiments/loop.py
does: `jax.jit(partial(train_step, cfg=cfg, oc=oc), in_shardings=...,
out_shardings=..., donate_argnums=0)`.

Params: the model params (`recur.config`: {"net", "H_init", "L_init",
"puzzle_emb"}) are the one layout outside this module. The train state keeps
them split in two, because the table has its own optimizer (sparse sign-SGD)
and its own sharding: `TrainState.params` = everything but the table,
`TrainState.puzzle_emb` = the table. `split_params` / `join_params` are the
only places that split and join; `model_params(state)` gives the model params
of a state (with the EMA weights for evaluation, `eval_params`). This layout is
what experiments/loop.py saves with Orbax; it is unchanged, so earlier
checkpoints restore.
"""
from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple
import warnings

import jax
import jax.numpy as jnp
import optax

from recur import act, checks, optim
from recur.config import ModelConfig, check_batch

__all__ = ["OptimConfig", "TrainState", "make_optimizer", "init_state",
           "train_step", "eval_step", "eval_params", "model_params",
           "split_params", "join_params", "reduce_metrics", "EmaHorizonWarning",
           "warn_if_ema_too_young"]

Array = jax.Array
Params = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class OptimConfig:
  """Optimisation hyperparameters (published ARC settings by default)."""
  global_batch_size: int = 768
  total_steps: int = 100_000
  lr: float = 1e-4
  lr_min_ratio: float = 1.0
  lr_warmup_steps: int = 2000
  beta1: float = 0.9
  beta2: float = 0.95
  weight_decay: float = 0.1
  puzzle_emb_lr: float = 1e-2
  puzzle_emb_weight_decay: float = 0.1
  ema: bool = True
  ema_rate: float = 0.999
  loss_type: str = "stablemax_cross_entropy"

  def schedule(self, base_lr: float):
    return optim.warmup_cosine_schedule(base_lr, self.lr_warmup_steps,
                                        self.total_steps, self.lr_min_ratio)


class TrainState(NamedTuple):
  """Everything a train step reads and writes (see the module docstring): step
  int32 [], dense params, puzzle table float32 [N, P], optimiser state, EMA of
  the net (or None), ACT carry, root PRNG key."""
  step: Array                 # int32 scalar: optimizer steps done
  params: Params              # {"net", "H_init", "L_init"}: dense weights + buffers
  puzzle_emb: Array           # [num_puzzle_identifiers, P] sparse sign-SGD table
  opt_state: Any              # optax state of params["net"]
  ema: Params | None          # EMA of params["net"]
  carry: act.ActCarry         # persistent ACT carry
  key: Array                  # root PRNG key (raw uint32[2]); step keys fold in step


def split_params(params: Params) -> tuple[Params, Array]:
  """Model params -> (dense part for `TrainState.params`, puzzle-emb table)."""
  dense = {k: v for k, v in params.items() if k != "puzzle_emb"}
  return dense, params["puzzle_emb"]


def join_params(dense: Params, table: Array) -> Params:
  """The inverse of `split_params`."""
  return {**dense, "puzzle_emb": table}


def make_optimizer(oc: OptimConfig) -> optax.GradientTransformation:
  """The dense-weight optimiser of `oc`: AdamATan2 with decoupled weight decay
  on the warmup-cosine schedule."""
  return optim.adam_atan2(oc.schedule(oc.lr), b1=oc.beta1, b2=oc.beta2,
                          weight_decay=oc.weight_decay)


def init_state(key: Array, cfg: ModelConfig, oc: OptimConfig,
               example_batch: dict[str, Any], params: Params | None = None
               ) -> TrainState:
  """Fresh state; `example_batch` only gives the global batch's shapes/dtypes.
  `params`: start from these model params instead of a random init (fresh
  optimizer, EMA and carry; test-time fitting, `recur.inference`)."""
  k_init, k_run = jax.random.split(key)
  params, table = split_params(cfg.init(k_init) if params is None else params)
  tx = make_optimizer(oc)
  spec = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in example_batch.items()}
  return TrainState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      puzzle_emb=table,
      opt_state=tx.init(params["net"]),
      ema=optim.ema_init(params["net"]) if oc.ema else None,
      carry=act.empty_carry(cfg, spec),
      key=k_run,
  )


def train_step(state: TrainState, batch: dict[str, Array], *,
               cfg: ModelConfig, oc: OptimConfig
               ) -> tuple[TrainState, dict[str, Array]]:
  """One supervision segment + optimizer update. Pure; jit with donation.

  `batch`: {"inputs", "labels": int32 [B, seq_len], "puzzle_identifiers":
  int32 [B]}, B the rows of `state.carry` (init_state's example_batch).
  Returns the new state and the metric sums (f32 scalars; `reduce_metrics`).
  """
  checks.check_batch(cfg, batch, "train_step", rows=state.carry.halted.shape[0])
  check_batch(cfg, batch)   # chex: dtypes and shapes at trace time
  params = model_params(state, ema=False)
  carry = act.refill(params, state.carry, batch)
  ids = carry.current_data["puzzle_identifiers"]
  rows = act.lookup_rows(cfg, params, carry)
  step_key = jax.random.fold_in(state.key, state.step)

  def loss_fn(net, rows):
    return act.supervised_loss(cfg, net, rows, params, carry, step_key,
                               loss_type=oc.loss_type,
                               global_batch_size=oc.global_batch_size)

  (loss, (carry, _, sums)), (g_net, g_rows) = jax.value_and_grad(
      loss_fn, argnums=(0, 1), has_aux=True)(params["net"], rows)

  tx = make_optimizer(oc)
  updates, opt_state = tx.update(g_net, state.opt_state, params["net"])
  net = optax.apply_updates(params["net"], updates)

  # The reference's schedules see the step counter after its increment.
  emb_lr = oc.schedule(oc.puzzle_emb_lr)(state.step + 1)
  table = state.puzzle_emb
  if cfg.prefix_len:
    table = optim.sparse_sign_sgd_update(table, ids, g_rows, emb_lr,
                                         oc.puzzle_emb_weight_decay)
  ema = state.ema
  if ema is not None:
    ema = optim.ema_update(ema, net, oc.ema_rate)

  sums = dict(sums)
  sums["loss"] = loss * oc.global_batch_size
  sums["lr"] = oc.schedule(oc.lr)(state.step + 1)
  sums["grad_norm"] = jnp.sqrt(sum(jnp.sum(jnp.square(g)) for g in jax.tree.leaves(g_net)))
  new_state = TrainState(step=state.step + 1, params={**state.params, "net": net},
                         puzzle_emb=table, opt_state=opt_state, ema=ema,
                         carry=carry, key=state.key)
  return new_state, sums


def reduce_metrics(sums: dict[str, Any], global_batch_size: int) -> dict[str, float]:
  """The reference's reduction: losses / global batch, the rest / halted count."""
  count = max(float(sums["count"]), 1.0)
  out = {}
  for k, v in sums.items():
    if k == "count":
      out[k] = float(v)
    elif k in ("lr", "grad_norm"):
      out[k] = float(v)
    elif k.endswith("loss"):
      out[k] = float(v) / global_batch_size
    else:
      out[k] = float(v) / count
  return out


def model_params(state: TrainState, ema: bool = True) -> Params:
  """The model params of a state; `ema`: the EMA of the dense net if kept."""
  net = state.ema if ema and state.ema is not None else state.params["net"]
  return join_params({**state.params, "net": net}, state.puzzle_emb)


class EmaHorizonWarning(UserWarning):
  """EMA weights evaluated before the EMA had time to forget its start."""


# (rate, where) pairs already warned about: the warning is once per process.
_EMA_WARNED: set[tuple[float, str]] = set()


def warn_if_ema_too_young(step: Any, ema_rate: float, *, assumed: bool = False,
                          where: str = "evaluating") -> bool:
  """Warns once (per process and rate) when EMA weights at `step` are mostly
  their initial value: the EMA's horizon 1/(1-ema_rate) exceeds the steps
  trained (rate 0.999 before ~1000 steps). Host-side: `step` is a Python int
  or a concrete int scalar array; under a trace (jit) nothing is checked.
  The reference's undebiased EMA stays as it is; this only says so.
  Returns whether it warned."""
  if isinstance(step, jax.core.Tracer) or not 0.0 < ema_rate < 1.0:
    return False
  step = int(step)
  horizon = round(1.0 / (1.0 - ema_rate))
  if step >= horizon or (ema_rate, where) in _EMA_WARNED:
    return False
  _EMA_WARNED.add((ema_rate, where))
  rate = f"ema_rate={ema_rate:g}" + (" (the default; pass oc= to check yours)"
                                     if assumed else "")
  warnings.warn(
      f"{where} EMA weights after {step} steps, but {rate} averages over "
      f"~{horizon} steps, so they are still mostly the initial weights and can "
      f"score far below the trained ones: train longer, lower "
      f"OptimConfig.ema_rate (--config.optim.ema_rate=0.99), turn the EMA off "
      f"(OptimConfig(ema=False) / --config.optim.ema=False), or use "
      f"model_params(state, ema=False)", EmaHorizonWarning, stacklevel=3)
  return True


def eval_params(state: TrainState, oc: OptimConfig | None = None, *,
                where: str = "evaluating") -> Params:
  """Weights used for evaluation and export: EMA of the dense net if enabled.

  Warns once (`EmaHorizonWarning`) when the EMA is younger than its horizon
  (`warn_if_ema_too_young`); `oc` gives the rate (default: OptimConfig's).
  Call it outside jit: under a trace the step is abstract and nothing is
  checked. Returns the model params (see `recur.config`).
  """
  if state.ema is not None:
    rate = oc.ema_rate if oc is not None else OptimConfig.ema_rate
    warn_if_ema_too_young(state.step, rate, assumed=oc is None, where=where)
  return model_params(state, ema=True)


def eval_step(params: Params, batch: dict[str, Array], *, cfg: ModelConfig,
              num_steps: int | None = None, keep_steps: bool = False
              ) -> dict[str, Array]:
  """Evaluation: every row runs `num_steps` (default halt_max_steps) segments.

  Returns final `preds` [B, seq] and `q_halt_logits` [B]; per segment the exact
  correctness `exact_per_step` [T, B], token accuracy `acc_per_step` [T, B] and
  `q_halt_per_step` [T, B] (for accuracy vs test-time steps and early exit), and
  with keep_steps the predictions of every segment `preds_per_step` [T, B, seq].
  (`recur.act.rollout` with labels; see it for noisy trajectories.)
  """
  out = act.rollout(cfg, params, batch, num_steps, keep_steps=keep_steps)
  out.pop("q_continue_per_step")
  return out
