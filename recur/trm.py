"""TRM: Tiny Recursive Model (arXiv 2510.04871), one shared 2-layer net.

Per segment, with T = H_cycles and n = L_cycles:
  T-1 times without gradient: n x (z_L = f(z_L, z_H + x)); z_H = f(z_H, z_L)
  once with gradient through all n+1 calls (grad_mode "full", the default)
  carry_out = stop_gradient(z_H, z_L); logits = lm_head(z_H); q = q_head(z_H[:, 0])
`mlp_t=True` is TRM-MLP (token-mixing SwiGLU instead of attention).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax

from recur import embed, layers, recursion
from recur.config import (InnerCarry, LayerCalls, ModelConfig, SegmentOutput,
                          check_batch, check_inner)

__all__ = ["TRMConfig", "init", "segment"]

Params = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class TRMConfig(ModelConfig):
  """TRM-Att on ARC by default (7M parameters)."""
  name: str = dataclasses.field(default="trm", init=False)
  puzzle_emb_len: int = 16
  H_cycles: int = 3
  L_cycles: int = 4
  L_layers: int = 2
  single_latent: bool = False      # ablation "single z": one state, no separate z_L

  def init(self, key) -> Params:
    return init(key, self)

  def segment(self, params, inner, batch, puzzle_emb=None):
    return segment(params, inner, batch, self, puzzle_emb)

  def init_carry(self, batch_size: int) -> InnerCarry:
    # With single_latent, z_L is carried untouched; it keeps its shape so the
    # carry (and checkpoints) look the same with and without the ablation.
    return self.latents(batch_size)

  def depth_per_segment(self) -> int:
    return self.H_cycles * (self.L_cycles + 1) * self.L_layers

  def layer_calls(self) -> LayerCalls:
    if self.single_latent:
      grad = (self.L_cycles + 1) * self.L_layers
    else:  # the differentiated L-updates and the last H-update, one shared net
      grad = (recursion.grad_L_updates(self) + 1) * self.L_layers
    return LayerCalls(forward=self.depth_per_segment(), grad=grad)


def init(key: jax.Array, cfg: TRMConfig) -> Params:
  """Fresh TRM params: {"net": embeddings, heads, one shared L_level block
  stack, "H_init", "L_init": float32 [D], "puzzle_emb": float32
  [num_puzzle_identifiers, P]}."""
  k_io, k_l = jax.random.split(key)
  net, buffers = embed.init_io(k_io, cfg)
  net["L_level"] = layers.init_stack(k_l, cfg.layer_config, cfg.L_layers)
  return {"net": net, **buffers}


def segment(params: Params, inner: InnerCarry, batch: dict,
            cfg: TRMConfig, puzzle_emb: jax.Array | None = None
            ) -> tuple[InnerCarry, SegmentOutput]:
  """One supervision segment (see embed.segment_inputs for `puzzle_emb`)."""
  # segment_inputs checks the batch first (recur.checks: errors that name the
  # field), then the chex shape/dtype checks of batch and carry.
  net, x, level = embed.segment_inputs(params, batch, cfg, puzzle_emb)
  check_inner(cfg, inner, check_batch(cfg, batch))
  if cfg.single_latent:
    out = _single_latent(level, net["L_level"], inner, x, cfg)
  else:
    out = recursion.recurse(level, net["L_level"], net["L_level"], inner, x, cfg)
  heads = embed.output_heads(cfg, net, out.z_H)
  return InnerCarry(*jax.lax.stop_gradient(tuple(out))), heads


def _single_latent(level, p, inner, x, cfg):
  """Ablation "single z" (TRM paper, Table 1): one latent z (kept in z_H; z_L is
  carried untouched) takes all T x (n+1) updates z = f(z, x); the gradient runs
  through the last n+1 of them, as in full TRM."""
  sg = jax.lax.stop_gradient
  k = cfg.L_cycles + 1
  z = recursion.repeat(lambda z: level(sg(p), z, sg(x)), sg(inner.z_H),
                       (cfg.H_cycles - 1) * k, cfg.unroll)
  z = recursion.repeat(lambda z: level(p, z, x), sg(z), k, cfg.unroll)
  return InnerCarry(z, inner.z_L)
