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

__all__ = ["IMPLS", "swiglu_in", "swiglu_in_reference", "kernel_fits"]

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
  last block moved back to end at row m, so that no block overhangs."""
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


def _kernel(x_ref, w_ref, h_ref, *, inner: int, block_n: int, block_k: int):
  # x_ref [BM, D] rows of this program; w_ref the whole [D, 2I]; h_ref
  # [BM, BN]. Gate columns j*BN.., up columns I + j*BN.. (traced offsets:
  # accumulate's pl.ds takes them, though its annotation says int).
  c0 = pl.multiple_of(pl.program_id(1) * block_n, block_n)
  cols: Any = [(c0, block_n), (pl.multiple_of(inner + c0, block_n), block_n)]
  gate, up = gemm.accumulate(x_ref, w_ref, block_k, cols)
  h_ref[...] = (jax.nn.silu(gate) * up).astype(h_ref.dtype)


def _pallas(x: Array, w_gate_up: Array, backend: str) -> Array:
  """The kernel on the [M, D] view of x's rows."""
  d = x.shape[-1]
  inner = w_gate_up.shape[-1] // 2
  m = math.prod(x.shape[:-1])
  bm, bn, bk = _blocks(m, d, inner)
  w = w_gate_up.astype(x.dtype)
  itemsize = jnp.dtype(x.dtype).itemsize
  h = gemm.call(
      functools.partial(_kernel, inner=inner, block_n=bn, block_k=bk),
      out_shape=jax.ShapeDtypeStruct((m, inner), x.dtype),
      grid=(pl.cdiv(m, bm), inner // bn),
      in_specs=[pl.BlockSpec((pl.Element(bm), d),
                             lambda i, j: (row_block_start(i, m, bm), 0)),
                pl.BlockSpec((d, 2 * inner), lambda i, j: (0, 0))],
      out_specs=pl.BlockSpec((pl.Element(bm), bn),
                             lambda i, j: (row_block_start(i, m, bm), j)),
      backend=backend,
      flops=gemm.matmul_flops(m, d, 2 * inner),
      bytes_accessed=(m * d + d * 2 * inner + m * inner) * itemsize,
      name="swiglu_in", num_warps=NUM_WARPS, num_stages=NUM_STAGES,
  )(x.reshape(m, d), w)
  return h.reshape(x.shape[:-1] + (inner,))


def swiglu_in(x: Array, w_gate_up: Array, impl: str = "pallas") -> Array:
  """`silu(x @ w_gate) * (x @ w_up)` for x [..., D], w_gate_up [D, 2I] (gate
  first): h [..., I] in x's dtype; see the module doc. Forward only."""
  if impl not in IMPLS:
    raise ValueError(f"swiglu_in impl must be one of {IMPLS}, got {impl!r}")
  d2 = w_gate_up.shape[-1]
  if w_gate_up.ndim != 2 or w_gate_up.shape[0] != x.shape[-1] or d2 % 2:
    raise ValueError(f"w_gate_up {w_gate_up.shape} is not [D, 2I] for x "
                     f"{x.shape}")
  fits = kernel_fits(math.prod(x.shape[:-1]), x.shape[-1], d2 // 2)
  if impl == "xla" or not fits:
    return swiglu_in_reference(x, w_gate_up)
  if impl == "interpret":
    return _pallas(x, w_gate_up, "interpret")
  return backends.by_platform(_pallas, swiglu_in_reference, x, w_gate_up)
