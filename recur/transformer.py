"""Direct-prediction transformer baseline (the reference's transformers_baseline).

One pass of `H_layers` post-norm blocks per segment: z_H = layers(z_H + x), the
same embeddings, heads and ACT wrapper as TRM/HRM. With halt_max_steps=1 it is a
plain depth-`H_layers` transformer predicting the answer in one shot. It has no
z_L: its carry's z_L is [B, 0, D] and its L_init is zero.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from recur import embed, layers
from recur.config import (InnerCarry, LayerCalls, ModelConfig, SegmentOutput,
                          check_batch, check_inner)

__all__ = ["TransformerConfig", "init", "segment"]

Params = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class TransformerConfig(ModelConfig):
  """8 layers, the size of HRM (27M parameters)."""
  name: str = dataclasses.field(default="transformer", init=False)
  H_cycles: int = 1
  L_cycles: int = 1
  H_layers: int = 8
  L_layers: int = 0
  halt_rule: str = "compare"   # as the reference baseline (no q_continue target)

  def init(self, key) -> Params:
    return init(key, self)

  def segment(self, params, inner, batch, puzzle_emb=None):
    return segment(params, inner, batch, self, puzzle_emb)

  def init_carry(self, batch_size: int) -> InnerCarry:
    return self.latents(batch_size, z_L_len=0)

  def depth_per_segment(self) -> int:
    return self.H_layers

  def layer_calls(self) -> LayerCalls:
    return LayerCalls(forward=self.H_layers, grad=self.H_layers)


def init(key: jax.Array, cfg: TransformerConfig) -> Params:
  """Fresh params of the plain-transformer baseline: embeddings, heads and one
  H_level block stack; `L_init` is zeros (no z_L)."""
  k_io, k_h = jax.random.split(key)
  net, buffers = embed.init_io(k_io, cfg)
  net["H_level"] = layers.init_stack(k_h, cfg.layer_config, cfg.H_layers)
  buffers["L_init"] = jnp.zeros_like(buffers["L_init"])  # no z_L in this model
  return {"net": net, **buffers}


def segment(params: Params, inner: InnerCarry, batch: dict,
            cfg: TransformerConfig, puzzle_emb: jax.Array | None = None
            ) -> tuple[InnerCarry, SegmentOutput]:
  """One segment of the baseline: the H_level stack once over z_H [B, S, D] plus
  the input injection; z_L stays empty [B, 0, D]; returns the carry and the
  heads (logits float32 [B, seq_len, V], q_logits float32 [B, 2])."""
  # segment_inputs checks the batch first (recur.checks: errors that name the
  # field), then the chex shape/dtype checks of batch and carry.
  net, x, level = embed.segment_inputs(params, batch, cfg, puzzle_emb)
  check_inner(cfg, inner, check_batch(cfg, batch))
  z_H = level(net["H_level"], inner.z_H, x)
  heads = embed.output_heads(cfg, net, z_H)
  return InnerCarry(jax.lax.stop_gradient(z_H), inner.z_L), heads
