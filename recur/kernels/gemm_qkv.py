"""The attention's q/k/v projection with RoPE, the head split and the cuDNN
sequence padding in the matmul's epilogue.

`qkv_rope(x, w_qkv, num_heads, rope, seq_to)` returns q, k, v [B, seq_to, N, K]
as the cuDNN attention takes them: today's `x @ w_qkv` ([q heads | k heads |
v heads], K columns a head) reshaped to [B, S, 3N, K], rotate-half RoPE
(`recur.layers.apply_rope`) on q and k, each padded with zero rows to `seq_to`
(`recur.attention.padded_masked`). Today cuBLAS writes the projection
[B, S, 3NK] to HBM and one elementwise pass reads it back and writes the
padded, rotated q, k, v (TRM-Att ARC on the H200, B=192, S=916 -> 960: 0.54 GB
written, 0.54 GB read, 0.57 GB written, after cuBLAS's 0.18 GB read of x).
The kernel computes each head's q, k and v tile in float32 and writes them
once, RoPE applied on the accumulator and rounded once (today rounds the
projection, then the rotation): its custom call moves 0.75 GB (x 0.18 GB in,
q, k, v 0.57 GB out; 916 -> 916: 0.72 GB), deviceless H200 compile.

Kernel layout: grid (N, cdiv(seq_to, BM), B), heads fastest so the programs
that share an x tile run together (x is read from HBM about once; w_qkv, 1.5
MB, stays in L2). A program accumulates six [BM, K/2] float32 windows (q, k, v,
each its low and high half) with `gemm.accumulate`, so rotate-half RoPE is
`lo * cos - hi * sin`, `hi * cos + lo * sin` with each half's own cos/sin
columns. Rows >= S read as zero (masked loads: the x block of a row tile that
runs past S, or lies wholly beyond it, touches no memory past the input), so
the padded rows come out exactly zero; rows >= seq_to are not stored (masked
stores: Pallas Triton does not mask a block that runs past an array's end, and
the next batch element's rows, or the end of the buffer, lie there).

`impl` as in `recur.kernels.swiglu`: "pallas" (the kernel on
`backends.KERNEL_PLATFORMS`, chosen at lowering; the plain reference
elsewhere), "xla" (the plain reference), "interpret" (the kernel in Pallas
interpret mode). Forward only: no VJP (the no-grad cycles and evaluation use
it; training's differentiated path is today's).
"""
from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pltriton

from recur.kernels import backends, gemm

__all__ = ["IMPLS", "qkv_rope", "qkv_rope_reference", "BLOCK_ROWS", "BLOCK_K"]

Array = jax.Array
Rope = tuple[Array, Array] | None
IMPLS = ("pallas", "xla", "interpret")

# Row tile and K step (H200): six [128, 32] float32 accumulators (24K
# elements, 96 registers a thread with 8 warps, two warpgroups of 64 rows);
# a K stage (x [128, 64] + six w [64, 32], bf16) is 40 KB of shared memory,
# three stages 120 KB of the 227 KB. 128 rows rather than 64 halve the L2
# reads of w_qkv (each program reads its head's 192 columns whole).
BLOCK_ROWS = 128
BLOCK_K = 64
NUM_WARPS = 8
NUM_STAGES = 3


def _rope_halves(lo: Array, hi: Array, cos_lo: Array, cos_hi: Array,
                 sin_lo: Array, sin_hi: Array) -> tuple[Array, Array]:
  """Rotate-half RoPE of x = [lo | hi]: [lo * cos - hi * sin | hi * cos +
  lo * sin], each half with its own table columns (`apply_rope`'s products)."""
  return lo * cos_lo - hi * sin_lo, hi * cos_hi + lo * sin_hi


def qkv_rope_reference(x: Array, w_qkv: Array, num_heads: int, rope: Rope,
                       seq_to: int) -> tuple[Array, Array, Array]:
  """q, k, v [B, seq_to, N, K] in plain JAX: the projection in float32, RoPE on
  float32, zero rows to `seq_to`, rounded once to x's dtype."""
  b, s, _ = x.shape
  kd = w_qkv.shape[1] // (3 * num_heads)
  half = kd // 2
  qkv = jnp.einsum("bsd,de->bse", x, w_qkv.astype(x.dtype),
                   preferred_element_type=jnp.float32)
  q, k, v = jnp.split(qkv.reshape(b, s, 3 * num_heads, kd), 3, axis=2)
  if rope is not None:
    cos, sin = (t.astype(jnp.float32)[:, None, :] for t in rope)

    def rotate(t):
      lo, hi = _rope_halves(t[..., :half], t[..., half:], cos[..., :half],
                            cos[..., half:], sin[..., :half], sin[..., half:])
      return jnp.concatenate([lo, hi], axis=-1)

    q, k = rotate(q), rotate(k)
  pad = ((0, 0), (0, seq_to - s), (0, 0), (0, 0))
  q, k, v = (jnp.pad(t, pad).astype(x.dtype) for t in (q, k, v))
  return q, k, v


def _kernel(*refs, num_heads: int, seq_len: int, seq_to: int, block_k: int,
            has_rope: bool):
  # Blocks: x [BM, D] (rows i*BM.. of batch element b), w_qkv whole [D, 3NK],
  # cos/sin [BM, K], q/k/v [BM, K] (one head of batch element b).
  if has_rope:
    x_ref, w_ref, cos_ref, sin_ref, *out_refs = refs
  else:
    (x_ref, w_ref, *out_refs), cos_ref, sin_ref = refs, None, None
  bm, kd = out_refs[0].shape
  half = kd // 2
  head, tile = pl.program_id(0), pl.program_id(1)
  rows = tile * bm + jax.lax.broadcasted_iota(jnp.int32, (bm,), 0)
  in_seq = rows < seq_len
  width = num_heads * kd
  cols = [(part * width + head * kd + h * half, half)
          for part in range(3) for h in range(2)]
  accs = gemm.accumulate(gemm.RowMasked(x_ref, in_seq), w_ref, block_k, cols)
  if has_rope:
    table = lambda ref, h: gemm.RowMasked(ref, in_seq)[:, pl.ds(h * half, half)]
    cos_lo, cos_hi, sin_lo, sin_hi = (table(ref, h) for ref in (cos_ref, sin_ref)
                                      for h in range(2))
    for part in range(2):   # q, k
      accs[2 * part], accs[2 * part + 1] = _rope_halves(
          accs[2 * part], accs[2 * part + 1], cos_lo, cos_hi, sin_lo, sin_hi)
  for part, o_ref in enumerate(out_refs):
    for h in range(2):
      gemm.store_rows(o_ref.at[:, pl.ds(h * half, half)],
                      accs[2 * part + h].astype(o_ref.dtype), rows < seq_to)


def _pallas_qkv(x: Array, w_qkv: Array, rope: Rope, *, num_heads: int,
                seq_to: int, block_rows: int, block_k: int, backend: str
                ) -> tuple[Array, Array, Array]:
  b, s, d = x.shape
  e = w_qkv.shape[1]
  kd = e // (3 * num_heads)
  w = w_qkv.astype(x.dtype)
  grid = (num_heads, pl.cdiv(seq_to, block_rows), b)
  in_specs = [pl.BlockSpec((None, block_rows, d), lambda h, i, j: (j, i, 0)),
              pl.BlockSpec((d, e), lambda h, i, j: (0, 0))]
  operands = [x, w]
  if rope is not None:
    in_specs += [pl.BlockSpec((block_rows, kd), lambda h, i, j: (i, 0))] * 2
    operands += [t.astype(jnp.float32) for t in rope]
  out = jax.ShapeDtypeStruct((b, seq_to, num_heads, kd), x.dtype)
  out_spec = pl.BlockSpec((None, block_rows, None, kd),
                          lambda h, i, j: (j, i, h, 0))
  nbytes = lambda a: a.size * a.dtype.itemsize
  moved = sum(map(nbytes, operands)) + 3 * nbytes(out)
  kernel = functools.partial(_kernel, num_heads=num_heads, seq_len=s,
                             seq_to=seq_to, block_k=block_k,
                             has_rope=rope is not None)
  q, k, v = gemm.call(
      kernel, out_shape=(out,) * 3, grid=grid, in_specs=in_specs,
      out_specs=(out_spec,) * 3, backend=backend,
      flops=gemm.matmul_flops(b * s, d, e), bytes_accessed=moved,
      name="qkv_rope", num_warps=NUM_WARPS, num_stages=NUM_STAGES)(*operands)
  return q, k, v


def qkv_rope(x: Array, w_qkv: Array, num_heads: int, rope: Rope, seq_to: int,
             impl: str = "pallas", *, block_rows: int = BLOCK_ROWS,
             block_k: int = BLOCK_K) -> tuple[Array, Array, Array]:
  """q, k, v [B, seq_to, N, K] in x's dtype from x [B, S, D] and w_qkv
  [D, 3NK] ([q heads | k heads | v heads]); `rope` = (cos, sin) [S, K]
  float32 rotate-half tables (`recur.layers.rope_tables`) or None; rows >=
  S are zero. See the module doc. The kernel needs K/2, `block_rows` and
  `block_k` powers of two (Triton) and D a multiple of `block_k`."""
  if impl not in IMPLS:
    raise ValueError(f"qkv_rope impl must be one of {IMPLS}, got {impl!r}")
  b, s, d = x.shape
  if w_qkv.shape[0] != d or w_qkv.shape[1] % (3 * num_heads):
    raise ValueError(f"w_qkv {w_qkv.shape} is not [{d}, 3 * {num_heads} * K]")
  kd = w_qkv.shape[1] // (3 * num_heads)
  if kd % 2:
    raise ValueError(f"head dim {kd} is odd (rotate-half RoPE splits it)")
  if seq_to < s:
    raise ValueError(f"seq_to = {seq_to} < S = {s}")
  if rope is not None and any(t.shape != (s, kd) for t in rope):
    raise ValueError(f"rope tables {[t.shape for t in rope]} are not [{s}, {kd}]")
  plain = lambda x, w, rope: qkv_rope_reference(x, w, num_heads, rope, seq_to)
  if impl == "xla":
    return plain(x, w_qkv, rope)
  kernel = functools.partial(_pallas_qkv, num_heads=num_heads, seq_to=seq_to,
                             block_rows=block_rows, block_k=block_k)
  if impl == "interpret":
    return kernel(x, w_qkv, rope, backend="interpret")
  return backends.by_platform(kernel, plain, x, w_qkv, rope)
