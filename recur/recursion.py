"""The H/L recursion: how the latents evolve inside one segment.

`recurse` runs the no-grad cycles and the differentiated tail with
`jax.lax.scan` (configurable unroll), `jax.lax.stop_gradient` and optional
remat; `repeat` is the scan-based loop it (and TRM's single-latent ablation) is
built from.
"""
from __future__ import annotations

from typing import Any, Callable

import jax

from recur import attention, layers, plans
from recur.config import InnerCarry, ModelConfig

__all__ = ["recurse", "repeat", "remat_policy", "grad_L_updates"]

Array = jax.Array
Params = dict[str, Any]


def remat_policy(name: str | None):
  """A `jax.checkpoint` policy by name: None/""/"none" (no remat), "full" (save
  nothing) or any `jax.checkpoint_policies` attribute."""
  if name in (None, "", "none"):
    return None
  if name == "full":
    return jax.checkpoint_policies.nothing_saveable
  if name == "dots":
    name = "dots_saveable"
  policy = getattr(jax.checkpoint_policies, name, None)
  if policy is None:
    raise ValueError(f"unknown remat policy {name!r}: use 'full', 'dots' or a "
                     "jax.checkpoint_policies name")
  if name.startswith("dots"):
    # Matmuls inside custom VJPs (recur.kernels) are named, not seen as dots;
    # cuDNN attention's output and softmax statistics (what its backward
    # needs besides q, k, v) are matmul results too: keeping them (~0.2 GB per
    # layer at the ARC batch) spares re-running the attention forward; its
    # q, k, v (named in recur.attention) spare re-running RoPE and the split.
    cp = jax.checkpoint_policies
    policy = cp.save_from_both_policies(
        policy, cp.save_only_these_names(layers.DOT_OUTPUT_NAME,
                                         attention.CUDNN_INPUT_NAME))
    policy = cp.save_from_both_policies(policy, _fused_attention_saveable)
  return policy


def _fused_attention_saveable(prim, *_, **__) -> bool:
  return prim.name.startswith("dot_product_attention_fwd")


def repeat(fn: Callable[[Any], Any], init, n: int, unroll):
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
  grad_L = grad_L_updates(cfg)

  def cycle(pl, ph, xx, n_l):
    def run(c):
      z_H, z_L = c
      z_L = repeat(lambda zl: level(pl, zl, z_H + xx), z_L, n_l, cfg.unroll)
      return (level(ph, z_H, z_L), z_L)
    return run

  # No-grad part.
  pl_s, ph_s, x_s = sg(p_L), sg(p_H), sg(x)
  z = (sg(carry.z_H), sg(carry.z_L))
  z = repeat(cycle(pl_s, ph_s, x_s, n), z, cfg.H_cycles - 1, cfg.unroll)
  z_H, z_L = z
  z_L = repeat(lambda zl: level(pl_s, zl, z_H + x_s), z_L, n - grad_L,
               cfg.unroll)
  z_H, z_L = sg(z_H), sg(z_L)

  # Differentiated tail.
  policy = remat_policy(plans.resolve_remat(cfg))
  lvl = jax.checkpoint(level, policy=policy) if policy is not None else level
  z_L = repeat(lambda zl: lvl(p_L, zl, z_H + x), z_L, grad_L, cfg.unroll)
  z_H = lvl(p_H, z_H, z_L)
  return InnerCarry(z_H, z_L)


def grad_L_updates(cfg: ModelConfig) -> int:
  """L-updates of the last H-cycle that the gradient flows through."""
  return cfg.L_cycles if cfg.grad_mode == "full" else 1
