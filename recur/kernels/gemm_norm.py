"""A mixer's output projection, the residual add and RMSNorm in one kernel.

`proj_add_norm(a, w, res, eps)` = `rms(res + a[:, :S] @ w)` over the hidden
size D (no scale), the post-norm block's `h = rms(h + mix)` with the mixer's
last matmul (attention's `o` [NK, D] on its output, SwiGLU's `down` [I, D] on
its activation) inside. Today cuBLAS writes the projection to HBM (the
residual add in its epilogue), the attention path first copies the padded
cuDNN output [B, Sa, NK] to its S rows, and a Triton row kernel reads the sum
back to write the norm. The kernel here reads `a` (its first S rows only), `w`
and `res`, adds the residual to the matmul's float32 accumulator, norms each
row there and writes `y` once: no projection, no slice copy in HBM.

Forward only (no VJP): the blocks' custom_vjp runs it in their primal (no-grad
cycles, eval) and today's path under differentiation.

Each program owns BM full rows of one batch element ([BM, D] float32
accumulator; the norm needs all D columns) and walks the contraction E in
`gemm.accumulate` steps. The grid is (B, cdiv(S, BM)): the last row tile of a
batch element may run past S; its rows past S are computed from whatever `a`
holds there (its padding, or masked loads past Sa) and never stored (y has S
rows), and rows never mix, so padding (even NaN) cannot reach the stored rows.
At the paper's attention shapes (S = 916, Sa = 960, BM = 64) that last tile
reads padding rows 916..959 (4.6% of `a`); all other padding is never read.

`impl` as in `recur.kernels.swiglu`: "pallas" (the kernel on
`backends.KERNEL_PLATFORMS`, chosen at lowering; plain JAX elsewhere), "xla",
"interpret". Shapes the kernel does not take (`kernel_fits`) take the plain
path.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from recur.kernels import backends, gemm

__all__ = ["IMPLS", "proj_add_norm", "proj_add_norm_reference", "kernel_fits",
           "block_sizes"]

Array = jax.Array
IMPLS = ("pallas", "xla", "interpret")

# float32 accumulator elements per program: BM x D <= 32K (BM = 64 at D = 512:
# at 8 warps, 128 registers a thread; ptxas: 224 registers, no spills).
ACC_ELEMENTS = 32 * 1024
MAX_BLOCK_ROWS = 64
MIN_BLOCK_ROWS = 16          # tt.dot's smallest M
MAX_BLOCK_K = 64
MIN_BLOCK_K = 16
NUM_WARPS = 8                # two warp groups, each a 64 x 256 wgmma
# Shared memory for the software pipeline: stages x BK x (BM + D) elements of
# a and w. H200: 232448 bytes a block; 3 x 64 x (64 + 512) bf16 = 216 KiB.
SHARED_BYTES = 232448
STAGES = (3, 2)              # preferred first


def _norm_rows(x32: Array, eps: float) -> Array:
  r = jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + eps)
  return x32 * r


def proj_add_norm_reference(a: Array, w: Array, res: Array, eps: float) -> Array:
  """`rms(res + a[:, :S] @ w)` in plain JAX: the float32 matmul plus the
  float32 residual, normed over the last axis, rounded once to res.dtype."""
  s = res.shape[1]
  mix = jnp.einsum("bse,ed->bsd", a[:, :s], w,
                   preferred_element_type=jnp.float32)
  return _norm_rows(mix + res.astype(jnp.float32), eps).astype(res.dtype)


def block_sizes(e: int, d: int, itemsize: int) -> tuple[int, int, int] | None:
  """(BM, BK, stages) for contraction e, width d and input element size
  `itemsize` (module constants), or None if no configuration fits: the most
  rows up to MAX_BLOCK_ROWS within ACC_ELEMENTS, then the most pipeline stages
  and the widest K step dividing e whose buffers fit in SHARED_BYTES."""
  bm = min(MAX_BLOCK_ROWS, ACC_ELEMENTS // d)
  if bm < MIN_BLOCK_ROWS:
    return None
  for stages in STAGES:
    bk = MAX_BLOCK_K
    while bk >= MIN_BLOCK_K:
      if e % bk == 0 and stages * bk * (bm + d) * itemsize <= SHARED_BYTES:
        return bm, bk, stages
      bk //= 2
  return None


def kernel_fits(e: int, d: int, itemsize: int = 2) -> bool:
  """Whether the kernel takes contraction e, width d and inputs of
  `itemsize` bytes (else the plain path): d a power of two (Triton blocks)
  and at least 128 (TPU lanes), and a block configuration that fits."""
  return (d >= 128 and d & (d - 1) == 0
          and block_sizes(e, d, itemsize) is not None)


def _kernel(a_ref, w_ref, res_ref, y_ref, *, eps, block_k, seq_len):
  # Rows past S (a partial last tile) are masked: Pallas Triton would read
  # and write the next batch element's rows there (recur.kernels.gemm).
  valid = gemm.row_ids(y_ref.shape[0], 1) < seq_len
  acc, = gemm.accumulate(gemm.RowMasked(a_ref, valid), w_ref, block_k,
                         [(0, w_ref.shape[1])])
  res = gemm.RowMasked(res_ref, valid)[...]
  y = _norm_rows(acc + res.astype(jnp.float32), eps)
  gemm.store_rows(y_ref, y.astype(y_ref.dtype), valid)


def _pallas(a: Array, w: Array, res: Array, eps: float, backend: str) -> Array:
  b, s, d = res.shape
  e = a.shape[-1]
  cfg = block_sizes(e, d, a.dtype.itemsize)
  if cfg is None:
    raise ValueError(f"proj_add_norm: no kernel configuration for E = {e}, D = {d}")
  bm, bk, stages = cfg
  row_spec = lambda width: pl.BlockSpec((None, bm, width),
                                        lambda i, j: (i, j, 0))
  nbytes = lambda x, rows: rows * x.shape[-1] * x.dtype.itemsize
  # What the kernel moves: a's first S rows, w, res and y once each.
  moved = (nbytes(a, b * s) + nbytes(w, e) + 2 * nbytes(res, b * s))
  return gemm.call(
      functools.partial(_kernel, eps=eps, block_k=bk, seq_len=s),
      out_shape=jax.ShapeDtypeStruct(res.shape, res.dtype),
      grid=(b, pl.cdiv(s, bm)),
      in_specs=[row_spec(e), pl.BlockSpec((e, d), lambda i, j: (0, 0)),
                row_spec(d)],
      out_specs=row_spec(d), backend=backend,
      flops=gemm.matmul_flops(b * s, e, d), bytes_accessed=moved,
      name="proj_add_norm", num_warps=NUM_WARPS, num_stages=stages,
  )(a, w, res)


def proj_add_norm(a: Array, w: Array, res: Array, eps: float,
                  impl: str = "pallas") -> Array:
  """`rms(res + a[:, :S] @ w)` over D, float32 maths, rounded once to
  res.dtype; a [B, Sa, E] with Sa >= S (rows past S unused), w [E, D] (cast
  to a's dtype, as the model's projections), res [B, S, D]. See the module
  doc."""
  if impl not in IMPLS:
    raise ValueError(f"proj_add_norm impl must be one of {IMPLS}, got {impl!r}")
  (b, sa, e), (e_w, d), (b_r, s, d_r) = a.shape, w.shape, res.shape
  if e != e_w or d != d_r or b != b_r or sa < s:
    raise ValueError(f"proj_add_norm: a {a.shape}, w {w.shape}, res "
                     f"{res.shape} (want [B, Sa >= S, E], [E, D], [B, S, D])")
  w = w.astype(a.dtype)   # as recur.layers._dense: the compute dtype
  if impl == "xla" or not kernel_fits(e, d, a.dtype.itemsize):
    return proj_add_norm_reference(a, w, res, eps)
  if impl == "interpret":
    return _pallas(a, w, res, eps, "interpret")
  return backends.by_platform(functools.partial(_pallas, eps=eps),
                              functools.partial(proj_add_norm_reference, eps=eps),
                              a, w, res)
