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

from recur import core, layers

__all__ = ["TRMConfig", "init", "segment"]

Params = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class TRMConfig(core.ModelConfig):
  """TRM-Att on ARC by default (7M parameters)."""
  model: str = "trm"
  puzzle_emb_len: int = 16
  H_cycles: int = 3
  L_cycles: int = 4
  L_layers: int = 2
  single_latent: bool = False      # ablation "single z": one state, no separate z_L

  def init(self, key) -> Params:
    return init(key, self)

  def segment(self, params, inner, batch, puzzle_emb=None):
    return segment(params, inner, batch, self, puzzle_emb)


def init(key: jax.Array, cfg: core.ModelConfig) -> Params:
  k_io, k_l = jax.random.split(key)
  net, buffers = core.init_io(k_io, cfg)
  net["L_level"] = layers.init_block_stack(k_l, cfg.layer_config, cfg.L_layers)
  return {"net": net, **buffers}


def segment(params: Params, inner: core.InnerCarry, batch: dict,
            cfg: core.ModelConfig, puzzle_emb: jax.Array | None = None
            ) -> tuple[core.InnerCarry, core.SegmentOutput]:
  """One supervision segment (see core.segment_inputs for `puzzle_emb`)."""
  net, x, level = core.segment_inputs(params, batch, cfg, puzzle_emb)
  if getattr(cfg, "single_latent", False):
    out = _single_latent(level, net["L_level"], inner, x, cfg)
  else:
    out = core.recurse(level, net["L_level"], net["L_level"], inner, x, cfg)
  heads = core.output_heads(cfg, net, out.z_H)
  return core.InnerCarry(*jax.lax.stop_gradient(tuple(out))), heads


def _single_latent(level, p, inner, x, cfg):
  """Ablation "single z" (TRM paper, Table 1): one latent z (kept in z_H; z_L is
  carried untouched) takes all T x (n+1) updates z = f(z, x); the gradient runs
  through the last n+1 of them, as in full TRM."""
  sg = jax.lax.stop_gradient
  k = cfg.L_cycles + 1
  z = core._repeat(lambda z: level(sg(p), z, sg(x)), sg(inner.z_H),  # pylint: disable=protected-access
                   (cfg.H_cycles - 1) * k, cfg.unroll)
  z = core._repeat(lambda z: level(p, z, x), sg(z), k, cfg.unroll)  # pylint: disable=protected-access
  return core.InnerCarry(z, inner.z_L)
