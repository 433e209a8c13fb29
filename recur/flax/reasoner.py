"""`Reasoner`: TRM's recursion as a Linen module over any input embedding.

    z_BSD = Reasoner(hidden_size=64, num_heads=4, H_cycles=3, L_cycles=4,
                     L_layers=2)(x_BSD)

runs TRM's segment without a vocabulary, puzzle table or heads: with z_H, z_L
starting at the fixed H_init / L_init states, H_cycles x (L_cycles updates
z_L = f(z_L, z_H + x), one update z_H = f(z_H, z_L)), gradient through the last
H-cycle only (grad_mode "full"; "one_step" is HRM's 1-step gradient), and
returns the refined z_H [B, S, D]. The recursion is the pure
`recur.core.recurse` (lax.scan + stop_gradient + optional remat) called with
the block stack of `recur.layers` as its level, so it is TRM's maths exactly.

`x` is the injection of every L-update, so gradients flow into whatever
produced it (an nn.Embed, an encoder, another model's hidden states).

Deep supervision across calls: pass `carry` (the `core.InnerCarry` returned by
a previous call, gradient-stopped as in TRM) and get `(z, new_carry)` back;
`return_carry=True` on the first call gives the carry without passing one.
Variables: the block stack in "params" (float32), H_init/L_init in "buffers"
(fixed, so weight decay never touches them).
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from recur import core, layers

__all__ = ["Reasoner"]

Array = jax.Array


class Reasoner(nn.Module):
  """TRM recursion over x [B, S, D] -> refined z [B, S, D].

  Defaults are TRM's (paper, ARC): 2 layers, H_cycles 3, L_cycles 4,
  expansion 4, RoPE, full gradient through the last cycle, unrolled scans.
  `dtype`: compute dtype (default: x's dtype); weights are float32 and cast.
  """
  hidden_size: int
  num_heads: int
  H_cycles: int = 3
  L_cycles: int = 4
  L_layers: int = 2
  expansion: float = 4.0
  pos_encodings: str = "rope"      # "rope" or "none" (add your own positions to x)
  rope_theta: float = 10000.0
  rms_norm_eps: float = 1e-5
  mlp_t: bool = False              # TRM-MLP: token-mixing SwiGLU (fixed S)
  grad_mode: str = "full"          # "full" (TRM) or "one_step" (HRM-style)
  unroll: bool | int = True
  remat: str | None = None         # None or a jax.checkpoint_policies name
  dtype: jnp.dtype | None = None

  def model_config(self, seq_len: int) -> core.ModelConfig:
    """The core config this Reasoner runs (no vocabulary, no puzzle table)."""
    if self.pos_encodings not in ("rope", "none"):
      raise ValueError(f"Reasoner.pos_encodings must be 'rope' or 'none', got "
                       f"{self.pos_encodings!r} (add learned positions to x)")
    return core.ModelConfig(
        vocab_size=1, seq_len=seq_len, hidden_size=self.hidden_size,
        num_heads=self.num_heads, expansion=self.expansion,
        pos_encodings=self.pos_encodings, rope_theta=self.rope_theta,
        rms_norm_eps=self.rms_norm_eps, puzzle_emb_ndim=0,
        H_cycles=self.H_cycles, L_cycles=self.L_cycles, L_layers=self.L_layers,
        mlp_t=self.mlp_t, grad_mode=self.grad_mode, unroll=self.unroll,
        remat=self.remat)

  @nn.compact
  def __call__(self, x: Array, carry: core.InnerCarry | None = None, *,
               return_carry: bool = False):
    if x.ndim != 3 or x.shape[-1] != self.hidden_size:
      raise ValueError(f"Reasoner expects x of shape [B, S, {self.hidden_size}], "
                       f"got {x.shape}")
    b, s, d = x.shape
    cfg = self.model_config(s)
    dtype = jnp.dtype(self.dtype) if self.dtype is not None else x.dtype
    x = x.astype(dtype)
    stack = self.param(
        "L_level", lambda key: layers.init_stack(key, cfg.layer_config,
                                                       self.L_layers))
    h_init = self.variable("buffers", "H_init",
                           lambda: layers.trunc_normal(self.make_rng("params"),
                                                       (d,), 1.0))
    l_init = self.variable("buffers", "L_init",
                           lambda: layers.trunc_normal(self.make_rng("params"),
                                                       (d,), 1.0))
    if carry is None:
      carry = core.InnerCarry(
          jnp.broadcast_to(h_init.value.astype(dtype), (b, s, d)),
          jnp.broadcast_to(l_init.value.astype(dtype), (b, s, d)))
      given = False
    else:
      given = True
      if carry.z_H.shape != x.shape or carry.z_L.shape != x.shape:
        raise ValueError(f"Reasoner carry shapes {carry.z_H.shape}/"
                         f"{carry.z_L.shape} do not match x {x.shape}")
      carry = core.InnerCarry(carry.z_H.astype(dtype), carry.z_L.astype(dtype))
    rope = None
    if cfg.pos_encodings == "rope" and not cfg.mlp_t:
      rope = layers.rope_tables(d // self.num_heads, s, self.rope_theta)
    level = layers.level_fn(cfg.layer_config, rope, dtype)
    out = core.recurse(level, stack, stack, carry, x, cfg)
    if given or return_carry:
      return out.z_H, core.InnerCarry(*jax.lax.stop_gradient(tuple(out)))
    return out.z_H

