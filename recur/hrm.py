"""HRM: Hierarchical Reasoning Model (arXiv 2506.21734), separate H and L nets.

All H_cycles x L_cycles L-updates and H_cycles H-updates run without gradient
except the very last L-update and H-update ("1-step gradient"). HRM's ACT learns
a q_continue target from one extra no-grad segment (see `recur.act`).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax

from recur import embed, layers, recursion
from recur.config import (InnerCarry, LayerCalls, ModelConfig, SegmentOutput,
                          check_batch, check_inner)

__all__ = ["HRMConfig", "init", "segment"]

Params = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class HRMConfig(ModelConfig):
  """HRM on ARC by default (27M parameters)."""
  name: str = dataclasses.field(default="hrm", init=False)
  H_cycles: int = 2
  L_cycles: int = 2
  H_layers: int = 4
  L_layers: int = 4
  grad_mode: str = "one_step"
  halt_rule: str = "compare"
  act_continue: bool = True

  def init(self, key) -> Params:
    return init(key, self)

  def segment(self, params, inner, batch, puzzle_emb=None):
    return segment(params, inner, batch, self, puzzle_emb)

  def init_carry(self, batch_size: int) -> InnerCarry:
    return self.latents(batch_size)

  def depth_per_segment(self) -> int:
    return self.H_cycles * (self.L_cycles * self.L_layers + self.H_layers)

  def layer_calls(self) -> LayerCalls:
    grad = recursion.grad_L_updates(self) * self.L_layers + self.H_layers
    return LayerCalls(forward=self.depth_per_segment(), grad=grad)


def init(key: jax.Array, cfg: HRMConfig) -> Params:
  """Fresh HRM params: {"net": embeddings, heads, H_level and L_level block
  stacks, "H_init", "L_init": float32 [D], "puzzle_emb": float32
  [num_puzzle_identifiers, P]}."""
  k_io, k_h, k_l = jax.random.split(key, 3)
  net, buffers = embed.init_io(k_io, cfg)
  net["H_level"] = layers.init_stack(k_h, cfg.layer_config, cfg.H_layers)
  net["L_level"] = layers.init_stack(k_l, cfg.layer_config, cfg.L_layers)
  return {"net": net, **buffers}


def segment(params: Params, inner: InnerCarry, batch: dict,
            cfg: HRMConfig, puzzle_emb: jax.Array | None = None
            ) -> tuple[InnerCarry, SegmentOutput]:
  """One HRM supervision segment: z_L and z_H ([B, S, D], cfg.dtype) run the H/L
  cycles (one-step gradient); returns the stop_gradient'ed carry and the heads
  (logits float32 [B, seq_len, V], q_logits float32 [B, 2])."""
  # segment_inputs checks the batch first (recur.checks: errors that name the
  # field), then the chex shape/dtype checks of batch and carry.
  net, x, level = embed.segment_inputs(params, batch, cfg, puzzle_emb)
  check_inner(cfg, inner, check_batch(cfg, batch))
  out = recursion.recurse(level, net["L_level"], net["H_level"], inner, x, cfg)
  heads = embed.output_heads(cfg, net, out.z_H)
  return InnerCarry(*jax.lax.stop_gradient(tuple(out))), heads
