"""Residual add + RMSNorm, `rms(a + b)`, with a one-pass backward kernel.

The post-norm block's `h = rms(h + mix(h))`. Forward: plain JAX, the same
expression as `recur.layers.rms_norm(a + b)` (on GPUs XLA already adds in the
matmul's epilogue and norms in one Triton row kernel). Backward: under remat
XLA recomputes the sum and its scale in one kernel, reduces `sum(g * y)` in a
second and writes dx in a third, reading the activations three times; the
kernel here reads `a`, `b` and `g` once, recomputes the sum and scale per row
and writes dx (H200 plan, TRM-Att ARC: docs/benchmarks.md). Residuals: `a`
and `b` only (the matmul output `b` is what remat keeps anyway).

Rows are normalised over the last axis (the hidden size). `impl` as in
`recur.kernels.swiglu`: "pallas" (the kernel on `backends.KERNEL_PLATFORMS`,
chosen at lowering; plain JAX elsewhere), "xla", "interpret". The kernel needs the hidden size to
be a power of two (Triton blocks) and a multiple of 128 (TPU lanes); other
sizes take the plain path.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from recur.kernels import backends, gemm

__all__ = ["IMPLS", "add_rms_norm", "add_rms_norm_bwd", "add_rms_norm_bwd_reference"]

Array = jax.Array
IMPLS = ("pallas", "xla", "interpret")
BLOCK_ROWS = 16


def _norm(x, eps):
  x32 = x.astype(jnp.float32)
  r = jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + eps)
  return x32 * r, r


def _bwd_math(a, b, g, eps):
  # The sum rounded to the activations' dtype first, as the forward sees it.
  y, r = _norm((a + b).astype(a.dtype), eps)
  g32 = g.astype(jnp.float32)
  return r * (g32 - y * jnp.mean(g32 * y, axis=-1, keepdims=True))


def add_rms_norm_bwd_reference(a: Array, b: Array, g: Array, eps: float) -> Array:
  """d(a + b) of `rms(a + b)` given the cotangent g, in plain JAX."""
  return _bwd_math(a, b, g, eps).astype(a.dtype)


def _kernel(a_ref, b_ref, g_ref, dx_ref, *, eps, rows: int | None):
  # `rows`: the row count when the last block is partial on Triton (masked
  # loads and stores, recur.kernels.gemm; Mosaic pads partial blocks itself).
  if rows is None:
    dx = _bwd_math(a_ref[...], b_ref[...], g_ref[...], eps)
    dx_ref[...] = dx.astype(dx_ref.dtype)
    return
  valid = gemm.row_ids(BLOCK_ROWS, 0) < rows
  a, b, g = (gemm.RowMasked(r, valid)[...] for r in (a_ref, b_ref, g_ref))
  gemm.store_rows(dx_ref, _bwd_math(a, b, g, eps).astype(dx_ref.dtype), valid)


def _pallas_bwd(a: Array, b: Array, g: Array, eps: float, backend: str) -> Array:
  d = a.shape[-1]
  m = math.prod(a.shape[:-1])
  params = backends.compiler_params(backend, 1)
  spec = pl.BlockSpec((BLOCK_ROWS, d), lambda i: (i, 0))
  partial = m % BLOCK_ROWS != 0 and backend in ("triton", "interpret")
  dx = pl.pallas_call(
      functools.partial(_kernel, eps=eps, rows=m if partial else None),
      out_shape=jax.ShapeDtypeStruct((m, d), a.dtype),
      grid=(pl.cdiv(m, BLOCK_ROWS),),
      in_specs=[spec, spec, spec], out_specs=spec,
      compiler_params=params, interpret=backend == "interpret",
      name="add_rms_norm_bwd",
  )(a.reshape(m, d), b.reshape(m, d), g.reshape(m, d))
  return dx.reshape(a.shape)


def kernel_fits(d: int) -> bool:
  """Whether the kernel takes rows of width d (else the plain path)."""
  return d >= 128 and d & (d - 1) == 0


def add_rms_norm_bwd(a: Array, b: Array, g: Array, eps: float,
                     impl: str = "pallas") -> Array:
  """d(a + b) of `rms(a + b)` given g; see the module doc."""
  if impl not in IMPLS:
    raise ValueError(f"add_rms_norm impl must be one of {IMPLS}, got {impl!r}")
  if impl == "xla" or not kernel_fits(a.shape[-1]):
    return add_rms_norm_bwd_reference(a, b, g, eps)
  if impl == "interpret":
    return _pallas_bwd(a, b, g, eps, "interpret")
  return backends.by_platform(functools.partial(_pallas_bwd, eps=eps),
                             functools.partial(add_rms_norm_bwd_reference, eps=eps),
                             a, b, g)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def add_rms_norm(a: Array, b: Array, eps: float, impl: str = "pallas") -> Array:
  """`rms(a + b)` over the last axis, no scale, float32 maths, a's dtype."""
  x = a + b
  return _norm(x, eps)[0].astype(x.dtype)


def _fwd(a, b, eps, impl):
  return add_rms_norm(a, b, eps, impl), (a, b)


def _bwd(eps, impl, res, g):
  a, b = res
  dx = add_rms_norm_bwd(a, b, g, eps, impl)
  return dx, dx.astype(b.dtype)


add_rms_norm.defvjp(_fwd, _bwd)
