"""SwiGLU's input projection and activation in one matmul kernel (forward).

`swiglu_in(x, w_gate_up)` = `silu(x @ w_gate) * (x @ w_up)`, gate the first
I columns of `w_gate_up` [D, 2I] and up the last I, as `recur.layers.SwiGLU`
computes it today in two passes: cuBLAS writes `gate_up` [M, 2I] to HBM and
an elementwise pass reads it back to write `h` [M, I]. The kernel here keeps
both halves of one output tile in float32 accumulators, applies the
activation to them and stores only `h`: per call it moves M * 2I fewer
elements written and M * 2I fewer read (TRM-Att ARC, H200, M = 192 x 916,
I = 1536, bf16: 1.08 GB + 1.08 GB less). It is forward-only (no VJP): the
no-grad and eval applications of a block use it, the differentiated ones
keep the matmul whose output the backward needs.

`swiglu_in_tokens(x, w_gate_up)` is TRM-MLP's token-mixing variant: x
[B, S, D], w_gate_up [S, 2I], h [B, D, I] = silu(x^T w_gate) * (x^T w_up)
per batch element (the layout of `recur.layers.TokenMixingMLP`'s gate_up,
[B, D, 2I] today), contracting over S (97 for Sudoku, not a power of two).

`impl`: "pallas" runs the kernel on `backends.KERNEL_PLATFORMS` (GPUs:
Triton), chosen when the program is lowered, and plain JAX elsewhere; "xla"
is plain JAX everywhere; "interpret" is the kernel in Pallas interpret mode
(CPU tests). Both compute in float32 and round once to x's dtype.

Partial row blocks: Pallas's Triton lowering does not mask loads and stores
of a block that overhangs its array, so the row blocks here are given by
element offsets (`pl.Element`) and the last one is moved back to end at row
M: it recomputes some rows of the block before it and stores the same values.
Shapes the kernel cannot tile (fewer than 16 rows, or D or I without a
power-of-two divisor of at least 16, Triton's smallest dot) take the plain
path.
"""
from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from recur.kernels import backends, gemm

__all__ = ["IMPLS", "swiglu_in", "swiglu_in_reference", "kernel_fits",
           "swiglu_in_with_gate_up", "swiglu_in_with_gate_up_reference",
           "swiglu_in_tokens", "swiglu_in_tokens_reference",
           "tokens_kernel_fits"]

Array = jax.Array
IMPLS = ("pallas", "xla", "interpret")

# Output tile [BLOCK_M, BLOCK_N] of h (two float32 accumulators of that size,
# gate and up: 32K elements per program), K walked in BLOCK_K steps: the
# usual Triton GEMM tile for H100/H200 (8 warps, 3 pipeline stages: 48 KiB of
# shared memory per stage in bf16).
BLOCK_M = 128
BLOCK_N = 128
BLOCK_K = 64
NUM_WARPS = 8
NUM_STAGES = 3
MIN_BLOCK = 16     # Triton's smallest dot dimension


def _pow2_divisor(n: int, cap: int) -> int:
  """The largest power of two dividing n, at most cap."""
  return min(n & -n, cap)


def _blocks(m: int, d: int, inner: int) -> tuple[int, int, int]:
  """(BM, BN, BK): rows a power of two <= m, columns and K powers of two
  dividing I and D."""
  rows = min(BLOCK_M, 1 << (m.bit_length() - 1)) if m > 0 else 0
  return rows, _pow2_divisor(inner, BLOCK_N), _pow2_divisor(d, BLOCK_K)


def row_block_start(i, m: int, block_m: int):
  """First row of row block i (of pl.cdiv(m, block_m)): i * block_m, the
  last block moved back to end at row m, so that no block overhangs (also
  the K steps over S of the token-mixing kernel)."""
  return jnp.minimum(i * block_m, m - block_m)


def kernel_fits(m: int, d: int, inner: int) -> bool:
  """Whether the kernel tiles m rows, width d, inner width I (else plain)."""
  return min(_blocks(m, d, inner)) >= MIN_BLOCK


def swiglu_in_reference(x: Array, w_gate_up: Array) -> Array:
  """`silu(x @ w_gate) * (x @ w_up)` in plain JAX: float32 products, rounded
  once to x's dtype (w cast to x's dtype first, as `recur.layers._dense`)."""
  gate_up = jnp.einsum("...i,io->...o", x, w_gate_up.astype(x.dtype),
                       preferred_element_type=jnp.float32)
  gate, up = jnp.split(gate_up, 2, axis=-1)
  return (jax.nn.silu(gate) * up).astype(x.dtype)


def _kernel(x_ref, w_ref, h_ref, gu_ref=None, *, inner: int, block_n: int,
            block_k: int):
  # x_ref [BM, D] rows of this program; w_ref the whole [D, 2I]; h_ref
  # [BM, BN]. Gate columns j*BN.., up columns I + j*BN.. (traced offsets:
  # accumulate's pl.ds takes them, though its annotation says int).
  # gu_ref [BM, 2, BN] (with_gate_up): the rounded gate and up, and h from
  # them, as the differentiated path's matmul + activation compute them.
  c0 = pl.multiple_of(pl.program_id(1) * block_n, block_n)
  cols: Any = [(c0, block_n), (pl.multiple_of(inner + c0, block_n), block_n)]
  gate, up = gemm.accumulate(x_ref, w_ref, block_k, cols)
  if gu_ref is not None:
    gate, up = gate.astype(gu_ref.dtype), up.astype(gu_ref.dtype)
    gu_ref[:, 0, :] = gate
    gu_ref[:, 1, :] = up
    gate, up = gate.astype(jnp.float32), up.astype(jnp.float32)
  h_ref[...] = (jax.nn.silu(gate) * up).astype(h_ref.dtype)


def _pallas(x: Array, w_gate_up: Array, backend: str,
            with_gate_up: bool = False) -> Any:
  """The kernel on the [M, D] view of x's rows (with_gate_up: (h, gate_up))."""
  d = x.shape[-1]
  inner = w_gate_up.shape[-1] // 2
  m = math.prod(x.shape[:-1])
  bm, bn, bk = _blocks(m, d, inner)
  w = w_gate_up.astype(x.dtype)
  itemsize = jnp.dtype(x.dtype).itemsize
  h_spec = pl.BlockSpec((pl.Element(bm), bn),
                        lambda i, j: (row_block_start(i, m, bm), j))
  out_shape: Any = jax.ShapeDtypeStruct((m, inner), x.dtype)
  out_specs: Any = h_spec
  if with_gate_up:   # [M, 2, I] is [M, 2I] (gate first) in memory
    out_shape = (out_shape, jax.ShapeDtypeStruct((m, 2, inner), x.dtype))
    out_specs = (h_spec, pl.BlockSpec(
        (pl.Element(bm), 2, bn), lambda i, j: (row_block_start(i, m, bm), 0, j)))
  out = gemm.call(
      functools.partial(_kernel, inner=inner, block_n=bn, block_k=bk),
      out_shape=out_shape,
      grid=(pl.cdiv(m, bm), inner // bn),
      in_specs=[pl.BlockSpec((pl.Element(bm), d),
                             lambda i, j: (row_block_start(i, m, bm), 0)),
                pl.BlockSpec((d, 2 * inner), lambda i, j: (0, 0))],
      out_specs=out_specs,
      backend=backend,
      flops=gemm.matmul_flops(m, d, 2 * inner),
      bytes_accessed=(m * d + d * 2 * inner + m * inner * (3 if with_gate_up else 1)
                      ) * itemsize,
      name="swiglu_in", num_warps=NUM_WARPS, num_stages=NUM_STAGES,
  )(x.reshape(m, d), w)
  lead = x.shape[:-1]
  if with_gate_up:
    return out[0].reshape(lead + (inner,)), out[1].reshape(lead + (2 * inner,))
  return out.reshape(lead + (inner,))


def swiglu_in_with_gate_up_reference(x: Array, w_gate_up: Array
                                     ) -> tuple[Array, Array]:
  """(h, gate_up) as the differentiated path computed them before the
  kernel, and still does off GPUs: `gate_up = x @ w` in x's dtype, then
  `h = silu(gate) * up` (recur.layers.SwiGLU's plain expression)."""
  gate_up = jnp.einsum("...i,io->...o", x, w_gate_up.astype(x.dtype))
  gate, up = jnp.split(gate_up, 2, axis=-1)
  return jax.nn.silu(gate) * up, gate_up


def swiglu_in_with_gate_up(x: Array, w_gate_up: Array, impl: str = "pallas"
                           ) -> tuple[Array, Array]:
  """(h, gate_up): `swiglu_in` that also writes the projection `gate_up`
  [..., 2I] (rounded to x's dtype; h computed from the rounded values), the
  residual the SwiGLU backward (recur.kernels.swiglu) reads: one kernel where
  the differentiated forward had a matmul and an activation pass reading its
  output back."""
  _check(x, w_gate_up, impl)
  fits = kernel_fits(math.prod(x.shape[:-1]), x.shape[-1],
                     w_gate_up.shape[-1] // 2)
  if impl == "xla" or not fits:
    return swiglu_in_with_gate_up_reference(x, w_gate_up)
  kernel = functools.partial(_pallas, with_gate_up=True)
  if impl == "interpret":
    return kernel(x, w_gate_up, "interpret")
  return backends.by_platform(kernel, swiglu_in_with_gate_up_reference, x,
                             w_gate_up)


def _check(x: Array, w_gate_up: Array, impl: str) -> None:
  if impl not in IMPLS:
    raise ValueError(f"swiglu_in impl must be one of {IMPLS}, got {impl!r}")
  d2 = w_gate_up.shape[-1]
  if w_gate_up.ndim != 2 or w_gate_up.shape[0] != x.shape[-1] or d2 % 2:
    raise ValueError(f"w_gate_up {w_gate_up.shape} is not [D, 2I] for x "
                     f"{x.shape}")


def swiglu_in(x: Array, w_gate_up: Array, impl: str = "pallas") -> Array:
  """`silu(x @ w_gate) * (x @ w_up)` for x [..., D], w_gate_up [D, 2I] (gate
  first): h [..., I] in x's dtype; see the module doc. Forward only."""
  _check(x, w_gate_up, impl)
  fits = kernel_fits(math.prod(x.shape[:-1]), x.shape[-1],
                     w_gate_up.shape[-1] // 2)
  if impl == "xla" or not fits:
    return swiglu_in_reference(x, w_gate_up)
  if impl == "interpret":
    return _pallas(x, w_gate_up, "interpret")
  # Off GPUs the model's own two-step expression (the projection in x's
  # dtype, then the activation), not the float32 reference: on a TPU, the
  # reference's float32 [M, 2I] projection cost the v5p TRM-Att plan 43 GB
  # per step (357.2 vs 313.8).
  plain = lambda x, w: swiglu_in_with_gate_up_reference(x, w)[0]
  return backends.by_platform(_pallas, plain, x, w_gate_up)


# ---------------------------------------------------------------------------
# TRM-MLP's token-mixing SwiGLU: the same activation over the sequence axis.

# Output tile [TOKENS_BLOCK_M (over D), TOKENS_BLOCK_N (over I)] per batch
# element; K = S (97 for Sudoku: 81 + 16) walked in TOKENS_BLOCK_K steps: 32
# wastes 31 of 128 rows' products at S = 97 (64: 31 too, in 2 steps; 16:
# 15 of 112 in 7), and the kernel is bound by its h store, not by the dots.
TOKENS_BLOCK_M = 128
TOKENS_BLOCK_N = 128
TOKENS_BLOCK_K = 32


def _tokens_blocks(s: int, d: int, inner: int) -> tuple[int, int, int]:
  """(BM, BN, BK): powers of two dividing D and I; K a power of two <= S."""
  k = min(TOKENS_BLOCK_K, 1 << (s.bit_length() - 1)) if s > 0 else 0
  return (_pow2_divisor(d, TOKENS_BLOCK_M), _pow2_divisor(inner, TOKENS_BLOCK_N),
          k)


def tokens_kernel_fits(s: int, d: int, inner: int) -> bool:
  """Whether the token-mixing kernel tiles sequence s, width d, inner I."""
  return min(_tokens_blocks(s, d, inner)) >= MIN_BLOCK


def swiglu_in_tokens_reference(x: Array, w_gate_up: Array) -> Array:
  """`silu(x^T w_gate) * (x^T w_up)` per batch element in plain JAX: x
  [B, S, D], w_gate_up [S, 2I] (gate first), h [B, D, I]; float32 products,
  rounded once to x's dtype."""
  gate_up = jnp.einsum("bsd,si->bdi", x, w_gate_up.astype(x.dtype),
                       preferred_element_type=jnp.float32)
  gate, up = jnp.split(gate_up, 2, axis=-1)
  return (jax.nn.silu(gate) * up).astype(x.dtype)


def _tokens_kernel(x_ref, w_ref, h_ref, *, inner: int, block_n: int,
                   block_k: int):
  # x_ref [S, BM] (this batch element, D columns i*BM..); w_ref the whole
  # [S, 2I]; h_ref [BM, BN]. The K loop is gemm.accumulate's with x
  # transposed and S not a multiple of BK: the last step is moved back to
  # end at row S (every load in bounds; Triton does not mask) and its rows
  # that the step before already summed are zeroed in x.
  s = x_ref.shape[0]
  c0 = pl.multiple_of(pl.program_id(2) * block_n, block_n)
  u0 = pl.multiple_of(inner + c0, block_n)
  dims = (((0,), (0,)), ((), ()))     # x^T @ w: contract both first axes

  def body(t, accs):
    start = row_block_start(t, s, block_k)
    ks = pl.ds(start, block_k)
    rows = start + jax.lax.broadcasted_iota(jnp.int32, (block_k, 1), 0)
    x = x_ref[ks, :]
    x = jnp.where(rows >= t * block_k, x, jnp.zeros_like(x))
    return tuple(
        acc + jax.lax.dot_general(x, w_ref[ks, pl.ds(col, block_n)], dims,
                                  preferred_element_type=jnp.float32)
        for acc, col in zip(accs, (c0, u0)))

  init = tuple(jnp.zeros((x_ref.shape[1], block_n), jnp.float32)
               for _ in range(2))
  gate, up = jax.lax.fori_loop(0, pl.cdiv(s, block_k), body, init)
  h_ref[...] = (jax.nn.silu(gate) * up).astype(h_ref.dtype)


def _pallas_tokens(x: Array, w_gate_up: Array, backend: str) -> Array:
  """The token-mixing kernel: grid (batch, D blocks, I blocks)."""
  b, s, d = x.shape
  inner = w_gate_up.shape[-1] // 2
  bm, bn, bk = _tokens_blocks(s, d, inner)
  w = w_gate_up.astype(x.dtype)
  itemsize = jnp.dtype(x.dtype).itemsize
  return gemm.call(
      functools.partial(_tokens_kernel, inner=inner, block_n=bn, block_k=bk),
      out_shape=jax.ShapeDtypeStruct((b, d, inner), x.dtype),
      grid=(b, d // bm, inner // bn),
      in_specs=[pl.BlockSpec((None, s, bm), lambda n, i, j: (n, 0, i)),
                pl.BlockSpec((s, 2 * inner), lambda n, i, j: (0, 0))],
      out_specs=pl.BlockSpec((None, bm, bn), lambda n, i, j: (n, i, j)),
      backend=backend,
      flops=b * gemm.matmul_flops(d, s, 2 * inner),
      bytes_accessed=(b * s * d + s * 2 * inner + b * d * inner) * itemsize,
      name="swiglu_in_tokens", num_warps=NUM_WARPS, num_stages=NUM_STAGES,
  )(x, w)


def swiglu_in_tokens(x: Array, w_gate_up: Array, impl: str = "pallas"
                     ) -> Array:
  """TRM-MLP's token-mixing `silu(x^T w_gate) * (x^T w_up)` per batch element:
  x [B, S, D], w_gate_up [S, 2I] (gate first), h [B, D, I] in x's dtype
  (the layout of `recur.layers.TokenMixingMLP`'s gate_up). Forward only."""
  if impl not in IMPLS:
    raise ValueError(f"swiglu_in_tokens impl must be one of {IMPLS}, got "
                     f"{impl!r}")
  d2 = w_gate_up.shape[-1]
  if (x.ndim != 3 or w_gate_up.ndim != 2 or w_gate_up.shape[0] != x.shape[1]
      or d2 % 2):
    raise ValueError(f"w_gate_up {w_gate_up.shape} is not [S, 2I] for x "
                     f"{x.shape} [B, S, D]")
  fits = tokens_kernel_fits(x.shape[1], x.shape[2], d2 // 2)
  if impl == "xla" or not fits:
    return swiglu_in_tokens_reference(x, w_gate_up)
  if impl == "interpret":
    return _pallas_tokens(x, w_gate_up, "interpret")
  return backends.by_platform(_pallas_tokens, swiglu_in_tokens_reference, x,
                              w_gate_up)
