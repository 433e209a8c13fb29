"""ACT / deep supervision as pure functions over a carry pytree.

One optimizer step = one supervision segment for the whole batch. The carry
(z_H, z_L, steps, halted, current_data) persists across steps; rows that halted
are reset to H_init/L_init and refilled with the same row of the new batch
(`refill`), then one segment runs and the halting rule decides (`advance`).
Training: halted = steps >= halt_max_steps, or the Q head says halt
(halt_rule "q_halt", TRM: q_halt > 0; "compare", HRM and the baseline: q_halt >
q_continue), subject to exploration (with probability p a row must run at least
U{2..halt_max_steps} steps); with act_continue (HRM) q_continue learns a target
from one more no-grad segment.
Evaluation and test-time compute: `rollout`, the one loop that runs a fresh
batch for a fixed number of segments (every row runs them all) and reports
each segment's predictions, Q logits and correctness.

`params` is the model-params layout of `recur.config` throughout.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp

from recur import checks, losses
from recur.config import InnerCarry, ModelConfig, check_batch

__all__ = ["ActCarry", "empty_carry", "refill", "run_segment", "advance", "act_step",
           "supervised_loss", "lookup_rows", "rollout", "eval_rollout"]

Array = jax.Array
Params = dict[str, Any]


class ActCarry(NamedTuple):
  """The persistent ACT carry: latents z_H, z_L [B, S, D] (cfg.dtype; z_L [B, 0,
  D] for the transformer), segments run `steps` int32 [B], `halted` bool [B],
  and `current_data`, the batch rows being worked on."""
  z_H: Array                    # [B, S, D]
  z_L: Array                    # [B, S, D] ([B, 0, D] for the transformer)
  steps: Array                  # [B] int32
  halted: Array                 # [B] bool
  current_data: dict[str, Array]  # the rows being worked on


def empty_carry(cfg: ModelConfig, batch: dict[str, Any]) -> ActCarry:
  """All rows halted, so the first step fills every row from its batch."""
  b = batch["inputs"].shape[0]
  inner = cfg.init_carry(b)
  return ActCarry(
      z_H=inner.z_H,
      z_L=inner.z_L,
      steps=jnp.zeros((b,), jnp.int32),
      halted=jnp.ones((b,), bool),
      current_data={k: jnp.zeros(v.shape, v.dtype) for k, v in batch.items()},
  )


def refill(params: Params, carry: ActCarry, batch: dict[str, Array]) -> ActCarry:
  """Resets halted rows to the init states and swaps in the new batch's rows."""
  h = carry.halted
  dtype = carry.z_H.dtype
  z_H = jnp.where(h[:, None, None], params["H_init"].astype(dtype), carry.z_H)
  z_L = jnp.where(h[:, None, None], params["L_init"].astype(dtype), carry.z_L)
  data = {k: jnp.where(h.reshape((-1,) + (1,) * (v.ndim - 1)), batch[k], v)
          for k, v in carry.current_data.items()}
  return ActCarry(z_H, z_L, jnp.where(h, 0, carry.steps), jnp.zeros_like(h), data)


def run_segment(cfg: ModelConfig, params: Params, inner: InnerCarry,
                batch: dict[str, Array], puzzle_emb: Array | None = None):
  """One supervision segment of any registered model (`cfg.segment`): the one
  place the recursion is entered (the ACT step, HRM's Q-target pass, the
  rollout and `recur.flax` all come through here). `inner`: z_H, z_L [B, S, D];
  returns (new inner carry, SegmentOutput: logits float32 [B, seq_len, V],
  q_logits float32 [B, 2])."""
  return cfg.segment(params, inner, batch, puzzle_emb)


def advance(cfg: ModelConfig, params: Params, carry: ActCarry,
            key: Array | None = None, *, train: bool,
            puzzle_emb: Array | None = None) -> tuple[ActCarry, dict[str, Array]]:
  """Runs one segment on the (already refilled) carry and applies halting."""
  inner = InnerCarry(carry.z_H, carry.z_L)
  inner, out = run_segment(cfg, params, inner, carry.current_data, puzzle_emb)
  outputs = {"logits": out.logits, "q_halt_logits": out.q_logits[:, 0],
             "q_continue_logits": out.q_logits[:, 1]}
  steps = carry.steps + 1
  is_last = steps >= cfg.halt_max_steps
  halted = is_last
  adaptive = cfg.halt_max_steps > 1 and (cfg.act_train if train else cfg.act_eval)
  if adaptive:
    q_halt = jax.lax.stop_gradient(outputs["q_halt_logits"])
    q_cont = jax.lax.stop_gradient(outputs["q_continue_logits"])
    halted = halted | ((q_halt > q_cont) if cfg.halt_rule == "compare" else (q_halt > 0))
  if adaptive and train and cfg.halt_exploration_prob > 0:
    # Exploration: with probability p a row must run U{2..max} steps at least.
    if key is None:
      raise ValueError("training with halt_exploration_prob > 0 needs a PRNG key")
    k_explore, k_min = jax.random.split(key)
    explore = jax.random.uniform(k_explore, steps.shape) < cfg.halt_exploration_prob
    min_steps = explore * jax.random.randint(k_min, steps.shape, 2,
                                             cfg.halt_max_steps + 1)
    halted = halted & (steps >= min_steps)
  if adaptive and train and cfg.act_continue:
    # Q-learning target from one more no-grad segment on the new carry.
    sg = jax.lax.stop_gradient
    rows = None if puzzle_emb is None else sg(puzzle_emb)
    _, nxt = run_segment(cfg, sg(params), inner, carry.current_data, rows)
    nxt_halt, nxt_cont = nxt.q_logits[:, 0], nxt.q_logits[:, 1]
    outputs["target_q_continue"] = sg(jax.nn.sigmoid(
        jnp.where(is_last, nxt_halt, jnp.maximum(nxt_halt, nxt_cont))))
  new = ActCarry(inner.z_H, inner.z_L, steps, halted, carry.current_data)
  return new, outputs


def act_step(cfg: ModelConfig, params: Params, carry: ActCarry,
             batch: dict[str, Array], key: Array | None = None, *, train: bool
             ) -> tuple[ActCarry, dict[str, Array]]:
  """`refill` then `advance`, puzzle-embedding rows looked up from params."""
  checks.check_batch(cfg, batch, "act_step", rows=carry.halted.shape[0])
  chex.assert_shape(carry.steps, (check_batch(cfg, batch),))
  return advance(cfg, params, refill(params, carry, batch), key, train=train)


def rollout(cfg: ModelConfig, params: Params, batch: dict[str, Array],
            num_steps: int | None = None, *, keep_steps: bool = False,
            keep_logits: bool = False, noise: float | Array = 0.0,
            key: Array | None = None) -> dict[str, Array]:
  """A fresh batch run for `num_steps` (default halt_max_steps) segments.

  Every row runs every segment (no halting: callers pick a step, e.g. the first
  with q_halt > 0, from the per-step outputs). Returns the final `preds`
  [B, seq] and `q_halt_logits` [B], and per segment `q_halt_per_step` and
  `q_continue_per_step` [T, B]; with labels in the batch the exact correctness
  `exact_per_step` [T, B] and token accuracy `acc_per_step` [T, B]
  (`recur.losses.correctness`); with keep_steps each segment's predictions
  `preds_per_step` [T, B, seq]; with keep_logits its logits `logits_per_step`
  [T, B, seq, V] (large: parity checks).

  With `key`, the rows start from H_init/L_init plus N(0, noise^2) per row and
  position (noisy latent trajectories for test-time compute); the transformer's
  empty z_L stays empty.
  """
  checks.check_batch(cfg, batch, "rollout")
  n = cfg.halt_max_steps if num_steps is None else num_steps
  carry = refill(params, empty_carry(cfg, batch), batch)
  if key is not None:
    carry = _perturbed(params, carry, noise, key)
  labels = batch.get("labels")

  def body(state, _):
    c, _ = state
    inner, out = run_segment(cfg, params, InnerCarry(c.z_H, c.z_L), c.current_data)
    preds = jnp.argmax(out.logits, -1).astype(jnp.int32)
    ys = {"q_halt_per_step": out.q_logits[:, 0],
          "q_continue_per_step": out.q_logits[:, 1]}
    if labels is not None:
      right = losses.correctness(preds, labels)
      ys["exact_per_step"], ys["acc_per_step"] = right.exact, right.accuracy
    if keep_steps:
      ys["preds_per_step"] = preds
    if keep_logits:
      ys["logits_per_step"] = out.logits
    c = c._replace(z_H=inner.z_H, z_L=inner.z_L, steps=c.steps + 1)
    return (c, preds), ys

  init = (carry, jnp.zeros(batch["inputs"].shape, jnp.int32))
  (_, preds), per_step = jax.lax.scan(body, init, None, length=n)
  return {"preds": preds, "q_halt_logits": per_step["q_halt_per_step"][-1], **per_step}


def _perturbed(params: Params, carry: ActCarry, noise, key: Array) -> ActCarry:
  """The refilled carry with its init states moved by per-position noise
  (added in float32 to H_init/L_init, then cast to the compute dtype)."""
  k_h, k_l = jax.random.split(key)
  dtype = carry.z_H.dtype

  def move(init, z, k):
    if z.size == 0:
      return z
    return (init + noise * jax.random.normal(k, z.shape)).astype(dtype)
  return carry._replace(z_H=move(params["H_init"], carry.z_H, k_h),
                        z_L=move(params["L_init"], carry.z_L, k_l))


def eval_rollout(cfg: ModelConfig, params: Params, batch: dict[str, Array],
                 num_steps: int | None = None) -> dict[str, Array]:
  """`rollout` with every segment's outputs, under their segment names:
  logits [T, B, seq, V] and q_halt_logits/q_continue_logits [T, B]."""
  out = rollout(cfg, params, batch, num_steps, keep_logits=True)
  return {"logits": out["logits_per_step"], "q_halt_logits": out["q_halt_per_step"],
          "q_continue_logits": out["q_continue_per_step"]}


def supervised_loss(cfg: ModelConfig, net: Params, puzzle_rows: Array | None,
                    params: Params, carry: ActCarry, key: Array | None, *,
                    loss_type: str, global_batch_size: int, train: bool = True):
  """Loss of one segment on a refilled carry, differentiable w.r.t. the dense
  weights `net` and the looked-up puzzle-embedding rows `puzzle_rows`, which
  stand in for `params["net"]` and the table rows (`lookup_rows`).

  Returns (total / global_batch_size, (new_carry, outputs, metrics))."""
  new, outputs = advance(cfg, {**params, "net": net}, carry, key, train=train,
                         puzzle_emb=puzzle_rows)
  total, metrics = losses.act_loss(outputs, new.current_data["labels"],
                                   new.halted, new.steps, loss_type)
  return total / global_batch_size, (new, outputs, metrics)


def lookup_rows(cfg: ModelConfig, params: Params, carry: ActCarry):
  """Puzzle-embedding rows of the carry's current puzzles ([B, P] or None)."""
  if not cfg.prefix_len:
    return None
  return jnp.take(params["puzzle_emb"], carry.current_data["puzzle_identifiers"],
                  axis=0)
