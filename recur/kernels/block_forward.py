"""A post-norm block's forward pass with fused-epilogue matmul kernels.

Most block applications are never differentiated: TRM runs two of its three
H-cycles under `stop_gradient`, HRM all but its last L- and H-update, and
evaluation differentiates nothing. There no activation has to be kept for a
backward pass, so every matmul can finish the elementwise work that follows
it before its one store (recur.kernels.gemm):

    q, k, v = qkv_rope(h @ W_qkv)          RoPE, q/k/v split, cuDNN padding
    a       = attention(q, k, v)           cuDNN, padded keys masked
    h       = rms(h + a[:S] @ W_o)         padded rows never read
    h       = rms(h + swiglu(h @ W_gu) @ W_down)

against today's cuBLAS call, HBM round trip and elementwise kernel after each
matmul (recur.layers.Block). TRM-MLP's token mixing runs its projection over
the sequence and activation as one kernel too (down projection and norm in
XLA); its channel SwiGLU runs as above.

`apply_block(block_fn, cfg, params, h, rope)` wraps a block as a
`jax.custom_vjp` whose primal (what runs when nothing differentiates it) is
this forward, and whose forward/backward under autodiff are the plain block's
own (`jax.vjp` of `block_fn`), so gradients, remat and the differentiated
tail's plan are exactly as without it. The forward rounds each kernel's result
once from float32 where the plain block rounds every intermediate to the
compute dtype, so the two forwards agree to the compute dtype's precision,
not bit for bit.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from recur import attention

__all__ = ["block_forward", "apply_block"]

Array = jax.Array
Params = dict[str, Any]


def block_forward(params: Params, h_BSD: Array,
                  rope: tuple[Array, Array] | None, cfg, attention_impl: str,
                  dtype=None, kernel_impl: str = "pallas") -> Array:
  """The block's forward (module doc) for a `recur.layers.LayerConfig` cfg,
  computing in `dtype` (None: h's) like the plain block, and returning the
  dtype it returns; `kernel_impl` as in recur.kernels ("pallas", "xla",
  "interpret")."""
  # Imported here: recur.layers imports this module.
  from recur import layers  # pylint: disable=g-import-not-at-top
  from recur.kernels import gemm_norm, gemm_qkv, gemm_swiglu  # pylint: disable=g-import-not-at-top
  dt = jnp.dtype(dtype or h_BSD.dtype)
  out_dtype = jnp.result_type(h_BSD.dtype, dt)
  h_BSD = h_BSD.astype(dt)
  w = {name: p.astype(dt) for name, p in params.items()}
  eps = cfg.rms_norm_eps
  if cfg.mlp_t:
    # Token mixing: projection over S + activation in one kernel (h [B, D, I]),
    # the down projection and the norm over S (layers.Block) in XLA.
    h_BDI = gemm_swiglu.swiglu_in_tokens(h_BSD, w["mlp_t_gate_up"], kernel_impl)
    mixed = jnp.einsum("bdi,is->bsd", h_BDI, w["mlp_t_down"])
    h_BSD = layers.rms_norm(h_BSD + mixed, eps, 1)
  else:
    b, s, _ = h_BSD.shape
    n, kd = cfg.num_heads, cfg.head_dim
    cudnn = attention_impl in ("cudnn", "cudnn_even")
    sp = attention.padded_len(s, attention_impl) if cudnn else s
    q, k, v = gemm_qkv.qkv_rope(h_BSD, w["qkv"], n, rope, sp, kernel_impl)
    if cudnn:
      out = attention.on_padded(q, k, v, s, "cudnn")
    else:
      out = attention.dot_product_attention(q, k, v, attention_impl)
    h_BSD = gemm_norm.proj_add_norm(out.reshape(b, sp, n * kd), w["o"], h_BSD,
                                    eps, kernel_impl)
  a = gemm_swiglu.swiglu_in(h_BSD, w["gate_up"], kernel_impl)
  return gemm_norm.proj_add_norm(a, w["down"], h_BSD, eps,
                                 kernel_impl).astype(out_dtype)


def apply_block(block_fn: Callable[[Params, Array, Any], Array], cfg,
                params: Params, h_BSD: Array, rope: tuple[Array, Array] | None,
                attention_impl: str, dtype=None, kernel_impl: str = "pallas"
                ) -> Array:
  """`block_fn(params, h, rope)` with `block_forward` as its primal (module
  doc): the plain block's value and gradient wherever it is differentiated."""

  @jax.custom_vjp
  def block(params, h, rope):
    return block_forward(params, h, rope, cfg, attention_impl, dtype,
                         kernel_impl)

  def fwd(params, h, rope):
    return jax.vjp(block_fn, params, h, rope)

  def bwd(vjp, g):
    return vjp(g)

  block.defvjp(fwd, bwd)
  return block(params, h_BSD, rope)
