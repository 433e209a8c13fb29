"""What TRM, HRM and the direct-prediction baseline share.

* `ModelConfig`: the frozen, hashable configuration (usable as a static jit arg).
* Parameter layout: `params = {"net": dense trainable weights, "H_init": [D],
  "L_init": [D], "puzzle_emb": [num_puzzle_identifiers, P]}`. Only `net` is
  trained by Adam and tracked by the EMA; `puzzle_emb` is the sparse table
  updated by sign-SGD; `H_init`/`L_init` are fixed buffers.
* `embed_inputs`, `output_heads` and the generic H/L recursion `recurse`, which
  runs the no-grad cycles and the differentiated tail with `jax.lax.scan`
  (configurable unroll), `jax.lax.stop_gradient` and optional remat.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from recur import layers, plans

__all__ = ["ModelConfig", "InnerCarry", "SegmentOutput", "embed_inputs", "segment_inputs",
           "output_heads", "init_io", "recurse", "remat_policy"]

Array = jax.Array
Params = dict[str, Any]

POS_ENCODINGS = ("rope", "learned", "none")
GRAD_MODES = ("full", "one_step")
HALT_RULES = ("q_halt", "compare")


class InnerCarry(NamedTuple):
  z_H: Array   # [B, S, D] compute dtype
  z_L: Array   # [B, S, D] (empty [B, 0, D] for the baseline, which has no z_L)


class SegmentOutput(NamedTuple):
  logits: Array          # [B, seq_len, V] float32, puzzle prefix dropped
  q_logits: Array        # [B, 2] float32: (q_halt, q_continue)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Fields common to every model. Defaults are the papers' ARC settings."""
  vocab_size: int = 12
  seq_len: int = 900
  hidden_size: int = 512
  num_heads: int = 8
  expansion: float = 4.0
  pos_encodings: str = "rope"
  rope_theta: float = 10000.0
  rms_norm_eps: float = 1e-5
  puzzle_emb_ndim: int = 512
  puzzle_emb_len: int = 0          # 0: ceil(puzzle_emb_ndim / hidden_size)
  num_puzzle_identifiers: int = 1
  H_cycles: int = 3
  L_cycles: int = 4
  H_layers: int = 0
  L_layers: int = 2
  mlp_t: bool = False
  grad_mode: str = "full"          # "full" (TRM) or "one_step" (HRM)
  halt_max_steps: int = 16
  halt_exploration_prob: float = 0.1
  halt_rule: str = "q_halt"        # halt when "q_halt" > 0, or "compare": q_halt > q_continue
  act_continue: bool = False       # learn q_continue from a bootstrapped target (HRM)
  act_train: bool = True           # Q-head halting while training
  act_eval: bool = False           # Q-head halting in act_step(train=False) too
  compute_dtype: str = "bfloat16"
  unroll: bool | int = True        # scan unroll of the cycles; 1 = rolled
  remat: str | None = "auto"       # "auto" (recur.plans: by platform), None, or a policy name
  attention_impl: str | None = None  # None/"xla"/"cudnn"

  def __post_init__(self):
    if self.pos_encodings not in POS_ENCODINGS:
      raise ValueError(f"pos_encodings must be one of {POS_ENCODINGS}, "
                       f"got {self.pos_encodings!r}")
    if self.grad_mode not in GRAD_MODES:
      raise ValueError(f"grad_mode must be one of {GRAD_MODES}, got "
                       f"{self.grad_mode!r}")
    if self.halt_rule not in HALT_RULES:
      raise ValueError(f"halt_rule must be one of {HALT_RULES}, got {self.halt_rule!r}")
    if self.hidden_size % self.num_heads:
      raise ValueError(f"hidden_size {self.hidden_size} is not divisible by "
                       f"num_heads {self.num_heads}")
    if self.puzzle_emb_ndim > self.prefix_len * self.hidden_size:
      raise ValueError(
          f"puzzle_emb_ndim {self.puzzle_emb_ndim} does not fit in "
          f"puzzle_emb_len {self.puzzle_emb_len} x hidden_size {self.hidden_size}")
    if self.H_cycles < 1 or self.L_cycles < 1 or self.halt_max_steps < 1:
      raise ValueError("H_cycles, L_cycles and halt_max_steps must be >= 1")

  @property
  def prefix_len(self) -> int:
    """Positions taken by the puzzle embedding in front of the tokens."""
    if self.puzzle_emb_ndim <= 0:
      return 0
    if self.puzzle_emb_len:
      return self.puzzle_emb_len
    return -(self.puzzle_emb_ndim // -self.hidden_size)

  @property
  def full_seq_len(self) -> int:
    return self.seq_len + self.prefix_len

  @property
  def dtype(self):
    return jnp.dtype(self.compute_dtype)

  @property
  def layer_config(self) -> layers.LayerConfig:
    return layers.LayerConfig(
        hidden_size=self.hidden_size, num_heads=self.num_heads,
        expansion=self.expansion, seq_len=self.full_seq_len, mlp_t=self.mlp_t,
        rms_norm_eps=self.rms_norm_eps, attention_impl=self.attention_impl)

  def replace(self, **kw) -> "ModelConfig":
    return dataclasses.replace(self, **kw)


def init_io(key: Array, cfg: ModelConfig) -> tuple[Params, Params]:
  """Embeddings, heads and init states: returns (net_io, buffers)."""
  d = cfg.hidden_size
  k_tok, k_lm, k_pos, k_h, k_l = jax.random.split(key, 5)
  net = {
      "embed_tokens": layers.trunc_normal(k_tok, (cfg.vocab_size, d), 1 / math.sqrt(d)),
      "lm_head": layers.trunc_normal(k_lm, (d, cfg.vocab_size), 1 / math.sqrt(d)),
      # Q head starts at (almost) "never halt": zero weight, bias -5.
      "q_head": {"kernel": jnp.zeros((d, 2), jnp.float32),
                 "bias": jnp.full((2,), -5.0, jnp.float32)},
  }
  if cfg.pos_encodings == "learned":
    net["embed_pos"] = layers.trunc_normal(k_pos, (cfg.full_seq_len, d),
                                           1 / math.sqrt(d))
  buffers = {
      "H_init": layers.trunc_normal(k_h, (d,), 1.0),
      "L_init": layers.trunc_normal(k_l, (d,), 1.0),
      "puzzle_emb": jnp.zeros((cfg.num_puzzle_identifiers,
                               max(cfg.puzzle_emb_ndim, 0)), jnp.float32),
  }
  return net, buffers


def embed_inputs(cfg: ModelConfig, net: Params, inputs_BT: Array,
                 puzzle_rows_BP: Array | None) -> Array:
  """Token (+ puzzle prefix) (+ learned position) embedding, times sqrt(D)."""
  dtype = cfg.dtype
  e = jnp.take(net["embed_tokens"].astype(dtype), inputs_BT.astype(jnp.int32),
               axis=0)
  if cfg.prefix_len:
    b = inputs_BT.shape[0]
    rows = puzzle_rows_BP.astype(dtype)
    pad = cfg.prefix_len * cfg.hidden_size - rows.shape[-1]
    if pad:
      rows = jnp.pad(rows, ((0, 0), (0, pad)))
    e = jnp.concatenate([rows.reshape(b, cfg.prefix_len, cfg.hidden_size), e],
                        axis=1)
  if cfg.pos_encodings == "learned":
    # 1/sqrt(2) keeps the variance of the sum of two unit-variance embeddings.
    e = 0.707106781 * (e + net["embed_pos"].astype(dtype))
  return math.sqrt(cfg.hidden_size) * e


def segment_inputs(params: Params, batch: dict, cfg: ModelConfig,
                   puzzle_emb: Array | None = None):
  """What every model's segment starts with: (dense weights, input embedding x,
  the reasoning-module function `level(stack, h, injection)`). `puzzle_emb`
  [B, P] are the looked-up rows (passed explicitly so training can differentiate
  w.r.t. them); default: looked up from `params["puzzle_emb"]`."""
  net = params["net"]
  if puzzle_emb is None and cfg.prefix_len:
    puzzle_emb = jnp.take(params["puzzle_emb"], batch["puzzle_identifiers"], axis=0)
  x = embed_inputs(cfg, net, batch["inputs"], puzzle_emb)
  lc, rope = cfg.layer_config, rope_for(cfg)
  return net, x, lambda p, h, inj: layers.apply_stack(p, h, inj, lc, rope)


def rope_for(cfg: ModelConfig):
  if cfg.pos_encodings != "rope" or cfg.mlp_t:
    return None
  return layers.rope_tables(cfg.hidden_size // cfg.num_heads, cfg.full_seq_len,
                            cfg.rope_theta)


def output_heads(cfg: ModelConfig, net: Params, z_H: Array) -> SegmentOutput:
  """LM logits of the token positions (f32) and the Q head on position 0 (f32)."""
  logits = jnp.einsum("bsd,dv->bsv", z_H[:, cfg.prefix_len:],
                      net["lm_head"].astype(z_H.dtype),
                      preferred_element_type=jnp.float32)
  q = z_H[:, 0].astype(jnp.float32) @ net["q_head"]["kernel"] + net["q_head"]["bias"]
  return SegmentOutput(logits=logits, q_logits=q)


def remat_policy(name: str | None):
  if name in (None, "", "none"):
    return None
  if name == "full":
    return jax.checkpoint_policies.nothing_saveable
  if name == "dots":
    return jax.checkpoint_policies.dots_saveable
  policy = getattr(jax.checkpoint_policies, name, None)
  if policy is None:
    raise ValueError(f"unknown remat policy {name!r}: use 'full', 'dots' or a "
                     "jax.checkpoint_policies name")
  return policy


def _repeat(fn: Callable[[Any], Any], init, n: int, unroll):
  """Applies `fn` n times with lax.scan (n static)."""
  if n <= 0:
    return init
  out, _ = jax.lax.scan(lambda c, _: (fn(c), None), init, None, length=n,
                        unroll=unroll)
  return out


def recurse(level: Callable[[Params, Array, Array], Array], p_L: Params,
            p_H: Params, carry: InnerCarry, x: Array, cfg: ModelConfig
            ) -> InnerCarry:
  """H_cycles x (L_cycles L-updates, one H-update); gradient only on the tail.

  L-update `z_L = level(p_L, z_L, z_H + x)`, H-update `z_H = level(p_H, z_H, z_L)`.
  grad_mode "full" (TRM): the last H-cycle (L_cycles+1 calls) is differentiated.
  grad_mode "one_step" (HRM): only the very last L- and H-update are.
  Everything before runs on stop_gradient'ed inputs, so autodiff keeps no
  residuals for it and its gradient is exactly zero.
  """
  sg = jax.lax.stop_gradient
  # Cast the weights to the compute dtype once per segment, not per layer call.
  p_L, p_H = jax.tree.map(lambda w: w.astype(x.dtype), (p_L, p_H))
  n = cfg.L_cycles
  grad_L = n if cfg.grad_mode == "full" else 1

  def cycle(pl, ph, xx, n_l):
    def run(c):
      z_H, z_L = c
      z_L = _repeat(lambda zl: level(pl, zl, z_H + xx), z_L, n_l, cfg.unroll)
      return (level(ph, z_H, z_L), z_L)
    return run

  # No-grad part.
  pl_s, ph_s, x_s = sg(p_L), sg(p_H), sg(x)
  z = (sg(carry.z_H), sg(carry.z_L))
  z = _repeat(cycle(pl_s, ph_s, x_s, n), z, cfg.H_cycles - 1, cfg.unroll)
  z_H, z_L = z
  z_L = _repeat(lambda zl: level(pl_s, zl, z_H + x_s), z_L, n - grad_L,
                cfg.unroll)
  z_H, z_L = sg(z_H), sg(z_L)

  # Differentiated tail.
  policy = remat_policy(plans.resolve_remat(cfg))
  lvl = jax.checkpoint(level, policy=policy) if policy is not None else level
  z_L = _repeat(lambda zl: lvl(p_L, zl, z_H + x), z_L, grad_L, cfg.unroll)
  z_H = lvl(p_H, z_H, z_L)
  return InnerCarry(z_H, z_L)
