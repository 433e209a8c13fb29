"""Direct-prediction transformer baseline (the reference's transformers_baseline).

One pass of `H_layers` post-norm blocks per segment: z_H = layers(z_H + x), the
same embeddings, heads and ACT wrapper as TRM/HRM. With halt_max_steps=1 it is a
plain depth-`H_layers` transformer predicting the answer in one shot.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from recur import core, layers

__all__ = ["TransformerConfig", "init", "segment"]

Params = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class TransformerConfig(core.ModelConfig):
  """8 layers, the size of HRM (27M parameters)."""
  model: str = "transformer"
  H_cycles: int = 1
  L_cycles: int = 1
  H_layers: int = 8
  L_layers: int = 0
  halt_rule: str = "compare"   # as the reference baseline (no q_continue target)

  def init(self, key) -> Params:
    return init(key, self)

  def segment(self, params, inner, batch, puzzle_emb=None):
    return segment(params, inner, batch, self, puzzle_emb)


def init(key: jax.Array, cfg: core.ModelConfig) -> Params:
  k_io, k_h = jax.random.split(key)
  net, buffers = core.init_io(k_io, cfg)
  net["H_level"] = layers.init_block_stack(k_h, cfg.layer_config, cfg.H_layers)
  buffers["L_init"] = jnp.zeros_like(buffers["L_init"])  # no z_L in this model
  return {"net": net, **buffers}


def segment(params: Params, inner: core.InnerCarry, batch: dict,
            cfg: core.ModelConfig, puzzle_emb: jax.Array | None = None
            ) -> tuple[core.InnerCarry, core.SegmentOutput]:
  net, x, level = core.segment_inputs(params, batch, cfg, puzzle_emb)
  z_H = level(net["H_level"], inner.z_H, x)
  heads = core.output_heads(cfg, net, z_H)
  return core.InnerCarry(jax.lax.stop_gradient(z_H), inner.z_L), heads
