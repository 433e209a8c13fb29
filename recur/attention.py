"""Non-causal multi-head attention kernels, chosen per platform before tracing.

`dot_product_attention(q, k, v, impl)` takes q/k/v as [B, S, N, K] and returns
[B, S, N, K]. Implementations:

* "xla": `jax.nn.dot_product_attention(implementation="xla")`; keeps the
  [B, N, S, S] scores (f32 on TPUs) alive for the backward pass.
* "cudnn": cuDNN's fused flash attention (GPU, bf16/fp16). cuDNN rejects some
  sequence lengths in training (odd ones: HRM's 900 + 1 = 901), and it says so
  only when the backward pass is traced, inside a scan, where no try/except
  around the forward call can catch it. So the sequence is padded *before*
  tracing to a multiple of `CUDNN_SEQ_MULTIPLE` and the padded keys are masked
  (`key_value_seq_lengths`); padded query rows are sliced off, so the result and
  its gradient are exactly those of the unpadded attention.
* "cudnn_even": the same kernel on the nearest even length: TRM's 916
  unpadded (no pad before the kernel, no slice after), HRM's 901 padded
  (as above, masked keys) to 902 instead of 960 (H200 plans with the
  fused-epilogue kernels: TRM-Att 311.3 -> 297.3 GB/step and 416.0 -> 406.7
  GFLOP/example, HRM 336.8 -> 331.3 and 521.4 -> 506.4).
  Odd lengths are what jax 0.10.2 itself refuses in training (in Python,
  while tracing); even ones pass it, but cuDNN's own support check runs only
  on a device, so this is not the default until a device run confirms 916
  and 902 (docs/benchmarks.md has the commands).
* "pallas_tpu": Pallas/Mosaic kernels that never materialise [S, S] scores in
  HBM. Sequences up to `attention_tpu.MAX_SEQ` (all of this project's) run
  recur's lane-dense kernel (recur/attention_tpu.py) on the projections'
  [B, S, N*K] layout, unpadded; longer ones the flash attention kernel that
  ships with jax (`jax.experimental.pallas.ops.tpu.flash_attention`), on a
  sequence padded to a multiple of `TPU_BLOCK`, the padding masked with
  segment ids (real positions are segment 1, padding segment 0, so a real
  query never sees a padded key).

`resolve_impl(requested, platform, ...)` turns None/"auto" into one of those
from an explicit platform ("gpu", "tpu", "cpu"), so an ahead-of-time plan for a
GPU or TPU compiled on a CPU (experiments/aot.py) is the program that device
runs; only when no platform is given does it ask `jax.default_backend()`.
"""
from __future__ import annotations

import functools
import math
from typing import Literal

import jax
from jax.ad_checkpoint import checkpoint_name
import jax.numpy as jnp

from recur import attention_tpu

__all__ = ["IMPLS", "resolve_impl", "dot_product_attention", "qkv_attention",
           "projected_attention", "projected_qkv", "padded_len",
           "padded_masked", "on_padded", "CUDNN_SEQ_MULTIPLE", "CUDNN_INPUT_NAME", "TPU_BLOCK"]

Array = jax.Array

IMPLS = ("xla", "cudnn", "cudnn_even", "pallas_tpu")
# cuDNN's flash attention runs in 64/128-row tiles; 64 also keeps every length
# even (its training kernels refuse odd ones). 901 -> 960.
CUDNN_SEQ_MULTIPLE = 64
# checkpoint_name of the q, k, v handed to cuDNN (RoPE applied, padded).
CUDNN_INPUT_NAME = "cudnn_attention_input"
# The Pallas TPU kernel's block along q and kv (its default tiling); 916 -> 1024.
TPU_BLOCK = 128


def _round_up(a: int, b: int) -> int:
  return -(a // -b) * b


def padded_len(seq_len: int, impl: str) -> int:
  """The sequence length kernel `impl` runs on: a multiple of 64 for cuDNN
  (for "cudnn_even" a multiple of 2), of
  the Pallas block for TPU flash attention, `seq_len` itself for XLA."""
  if impl == "cudnn":
    return _round_up(seq_len, CUDNN_SEQ_MULTIPLE)
  if impl == "cudnn_even":
    return _round_up(seq_len, 2)
  if impl == "pallas_tpu":
    return _round_up(seq_len, TPU_BLOCK)
  return seq_len


def resolve_impl(requested: str | None, platform: str | None = None, *,
                 dtype=jnp.bfloat16, head_dim: int = 64) -> str:
  """The implementation to use; decided from shapes/dtype/platform, not by
  catching a failure (which cannot be caught inside a differentiated scan)."""
  if requested not in (None, "auto"):
    if requested not in IMPLS:
      raise ValueError(f"attention_impl must be None, 'auto' or one of {IMPLS}, "
                       f"got {requested!r}")
    return requested
  platform = platform or jax.default_backend()
  half = jnp.dtype(dtype) in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))
  if platform in ("gpu", "cuda") and half and head_dim % 8 == 0 and head_dim <= 128:
    return "cudnn"
  if platform == "tpu" and head_dim % 8 == 0:
    return "pallas_tpu"
  return "xla"


def dot_product_attention(q: Array, k: Array, v: Array, impl: str,
                          rope: tuple[Array, Array] | None = None) -> Array:
  """Non-causal softmax(q k^T / sqrt(K)) v over [B, S, N, K] inputs; with
  `rope` = (cos, sin) [S, K] tables, q and k get rotate-half RoPE first
  (`recur.layers.apply_rope`; inside the kernel where it can).

  "pallas_tpu" runs on a CPU inside `pltpu.force_tpu_interpret_mode()` (the
  context must cover the lowering of the forward and of the gradient)."""
  b, s, n, kd = q.shape
  if impl == "pallas_tpu" and attention_tpu.supported(s, n, kd):
    # Short sequences: recur's lane-dense kernel on the projections' own
    # [B, S, N*K] layout, RoPE inside (recur/attention_tpu.py says why).
    flat = lambda x: x.reshape(b, s, n * kd)
    return attention_tpu.attention_bsd(flat(q), flat(k), flat(v), kd,
                                       rope).reshape(q.shape)
  if rope is not None:
    from recur.layers import apply_rope  # pylint: disable=g-import-not-at-top  # layers imports this module
    q, k = apply_rope(q, *rope), apply_rope(k, *rope)
  if impl == "xla":
    return jax.nn.dot_product_attention(q, k, v, is_causal=False,
                                        implementation="xla")
  if impl in ("cudnn", "cudnn_even"):
    return padded_masked(q, k, v, padded_len(s, impl), "cudnn")
  if impl == "pallas_tpu":
    return _pallas_tpu(q, k, v)
  raise ValueError(f"unknown attention implementation {impl!r}; one of {IMPLS}")


def qkv_attention(qkv_BSE: Array, num_heads: int, impl: str,
                  rope: tuple[Array, Array] | None = None) -> Array:
  """`dot_product_attention` from the fused projection [B, S, 3 N*K]
  ([q heads | k heads | v heads]) to [B, S, N*K]. The lane-dense TPU kernel
  reads the projection's output itself (no q/k/v slices or layout copies)."""
  b, s, e = qkv_BSE.shape
  kd = e // (3 * num_heads)
  if impl == "pallas_tpu" and attention_tpu.supported(s, num_heads, kd):
    return attention_tpu.attention_qkv(qkv_BSE, kd, rope)
  qkv = qkv_BSE.reshape(b, s, 3 * num_heads, kd)
  n = num_heads
  out = dot_product_attention(qkv[:, :, :n], qkv[:, :, n:2 * n], qkv[:, :, 2 * n:],
                              impl, rope)
  return out.reshape(b, s, n * kd)


def _plain_qkv(x: Array, w_qkv: Array, rope, num_heads: int, seq_to: int):
  """q, k, v [B, seq_to, N, K] from x [B, S, D] the plain way: the fused
  projection in x's dtype, split by heads, RoPE on q and k, zero padding."""
  from recur.layers import apply_rope  # pylint: disable=g-import-not-at-top  # layers imports this module
  b, s, _ = x.shape
  n = num_heads
  qkv = jnp.einsum("...i,io->...o", x, w_qkv)
  qkv = qkv.reshape(b, s, 3 * n, qkv.shape[-1] // (3 * n))
  q, k, v = qkv[:, :, :n], qkv[:, :, n:2 * n], qkv[:, :, 2 * n:]
  if rope is not None:
    q, k = apply_rope(q, *rope), apply_rope(k, *rope)
  return tuple(_pad_seq(t, seq_to) for t in (q, k, v))


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5))
def projected_qkv(x: Array, w_qkv: Array, rope, num_heads: int, seq_to: int,
                  kernel_impl: str = "pallas") -> tuple[Array, Array, Array]:
  """`_plain_qkv` (x [B, S, D], w_qkv [D, 3NK] in x's dtype) as one kernel on
  GPUs (recur.kernels.gemm_qkv: RoPE, head split and padding in the matmul's
  epilogue, no [B, S, 3NK] projection in HBM); elsewhere, and with
  `kernel_impl` "xla", the plain expression. Its backward is the plain
  expression's (autodiff's)."""
  from recur.kernels import backends, gemm_qkv  # pylint: disable=g-import-not-at-top
  plain = lambda x, w, rope: _plain_qkv(x, w, rope, num_heads, seq_to)
  if kernel_impl == "xla":
    return plain(x, w_qkv, rope)
  if kernel_impl == "interpret":
    return gemm_qkv.qkv_rope(x, w_qkv, num_heads, rope, seq_to, "interpret")
  kernel = lambda x, w, rope, backend: gemm_qkv._pallas_qkv(  # pylint: disable=protected-access
      x, w, rope, num_heads=num_heads, seq_to=seq_to,
      block_rows=gemm_qkv.BLOCK_ROWS, block_k=gemm_qkv.BLOCK_K, backend=backend)
  return backends.by_platform(kernel, plain, x, w_qkv, rope)


def _projected_qkv_fwd(x, w_qkv, rope, num_heads, seq_to, kernel_impl):
  return (projected_qkv(x, w_qkv, rope, num_heads, seq_to, kernel_impl),
          (x, w_qkv, rope))


def _projected_qkv_bwd(num_heads, seq_to, kernel_impl, res, g):
  del kernel_impl
  x, w_qkv, rope = res
  # The plain expression's backward (its forward product is dead code here).
  _, vjp = jax.vjp(lambda x, w, r: _plain_qkv(x, w, r, num_heads, seq_to),
                   x, w_qkv, rope)
  return vjp(tuple(g))


projected_qkv.defvjp(_projected_qkv_fwd, _projected_qkv_bwd)


def projected_attention(x: Array, w_qkv: Array, num_heads: int, impl: str,
                        rope: tuple[Array, Array] | None = None,
                        kernel_impl: str = "pallas") -> Array:
  """`qkv_attention(x @ w_qkv, ...)` for the cuDNN implementations, the
  projection, RoPE, head split and padding in one kernel (`projected_qkv`):
  [B, S, N*K]. The q, k, v handed to cuDNN are named as in `padded_masked`."""
  if impl not in ("cudnn", "cudnn_even"):
    raise ValueError(f"projected_attention runs the cuDNN kernels, not {impl!r}")
  b, s, _ = x.shape
  q, k, v = projected_qkv(x, w_qkv, rope, num_heads, padded_len(s, impl),
                          kernel_impl)
  q, k, v = (checkpoint_name(t, CUDNN_INPUT_NAME) for t in (q, k, v))
  return on_padded(q, k, v, s, "cudnn")[:, :s].reshape(b, s, -1)


def _pad_seq(x: Array, to: int) -> Array:
  s = x.shape[1]
  return x if to == s else jnp.pad(x, ((0, 0), (0, to - s), (0, 0), (0, 0)))


def padded_masked(q, k, v, to: int, implementation: Literal["xla", "cudnn"]) -> Array:
  """`jax.nn.dot_product_attention` on a sequence zero-padded to `to`, the
  padded keys masked (`key_value_seq_lengths`) and the padded query rows
  dropped: exactly the unpadded attention, forward and gradient (the padded
  rows receive no cotangent, the padded keys no probability mass)."""
  s = q.shape[1]
  q, k, v = (_pad_seq(x, to) for x in (q, k, v))
  if implementation == "cudnn":
    # Named for the `dots*` remat policies (recur.recursion.remat_policy):
    # kept, the backward reads them instead of re-running RoPE, split and pad
    # from the projection (which is then no residual of its own): H200
    # TRM-Att plan 428.7 -> 417.6 GB/step (cudnn_even 407.2 -> 396.4), peak
    # +0.2 GB (0).
    q, k, v = (checkpoint_name(x, CUDNN_INPUT_NAME) for x in (q, k, v))
  return on_padded(q, k, v, s, implementation)[:, :s]


def on_padded(q: Array, k: Array, v: Array, seq_len: int,
              implementation: Literal["xla", "cudnn"] = "cudnn") -> Array:
  """Attention over q, k, v [B, Sp, N, K] already padded past `seq_len` rows:
  keys from `seq_len` on are masked; returns [B, Sp, N, K] whose rows from
  `seq_len` on are not attention outputs (callers read the first `seq_len`)."""
  b, sp = q.shape[:2]
  if sp == seq_len:
    return jax.nn.dot_product_attention(q, k, v, is_causal=False,
                                        implementation=implementation)
  lengths = jnp.full((b,), seq_len, jnp.int32)
  return jax.nn.dot_product_attention(
      q, k, v, is_causal=False,
      query_seq_lengths=lengths, key_value_seq_lengths=lengths,
      implementation=implementation)


def _pallas_tpu(q, k, v):
  # Sequences over attention_tpu.MAX_SEQ: jax's flash kernel.
  # Imported lazily: the Pallas TPU ops pull in Mosaic, which CPU/GPU runs
  # never need.
  from jax.experimental.pallas.ops.tpu import flash_attention as fa  # pylint: disable=g-import-not-at-top
  b, s, _, kd = q.shape
  sp = padded_len(s, "pallas_tpu")
  to_bnsk = lambda x: jnp.swapaxes(_pad_seq(x, sp), 1, 2)
  seg = (jnp.arange(sp) < s).astype(jnp.int32)
  seg = jnp.broadcast_to(seg[None], (b, sp))
  call = functools.partial(
      fa.flash_attention, causal=False, sm_scale=1.0 / math.sqrt(kd),
      block_sizes=_tpu_blocks(sp))
  seg_ids = lambda q, k, v, seg: call(q, k, v, segment_ids=fa.SegmentIds(q=seg, kv=seg))
  out = attention_tpu.over_batch(seg_ids, (True,) * 4, True)(
      to_bnsk(q), to_bnsk(k), to_bnsk(v), seg)
  return jnp.swapaxes(out, 1, 2)[:, :s]


def _tpu_blocks(sp: int):
  from jax.experimental.pallas.ops.tpu import flash_attention as fa  # pylint: disable=g-import-not-at-top
  t = TPU_BLOCK
  return fa.BlockSizes(block_q=t, block_k_major=t, block_k=t, block_b=1,
                       block_q_major_dkv=t, block_k_major_dkv=t, block_k_dkv=t,
                       block_q_dkv=t, block_k_major_dq=t, block_k_dq=t,
                       block_q_dq=t)
