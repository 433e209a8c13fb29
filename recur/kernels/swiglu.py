"""SwiGLU's activation and down projection with a one-pass backward kernel.

`swiglu_down(gate_up, w_down)` = `(silu(gate) * up) @ w_down` (gate first in
the last axis of `gate_up`, as the reference's fused `gate_up` projection).
Its forward is plain JAX (XLA fuses the activation into one elementwise
kernel). Its backward needs two things from `gate_up` and `dh = dy @ w_down^T`:
the activation `h` again (for the down projection's weight gradient; remat
does not keep it) and `d gate_up`. XLA computes them in two kernels (`h`
[.., I] and a concatenation [.., 2I] cannot share one fusion), reading
`gate_up` twice; `swiglu_bwd` does it in one pass (H200 plan, TRM-Att ARC:
-1.08 GB per differentiated block; docs/benchmarks.md).

`impl`: "pallas" runs the Pallas kernel on the platforms of
`backends.KERNEL_PLATFORMS` (GPUs: Triton; TPUs' Mosaic lowering is there but
off by default), chosen when the program is lowered, so ahead-of-time plans
get the target's kernel, and plain JAX elsewhere (CPU); "xla" is plain JAX
everywhere; "interpret" is the kernel in Pallas interpret mode (CPU tests).

Both paths compute in float32 and round once; the forward is the same
expression either way, so only the gradient's rounding can differ (by at most
the ulp of its dtype).
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from recur.kernels import backends, gemm

__all__ = ["IMPLS", "swiglu_down", "swiglu_bwd", "swiglu_bwd_reference",
           "swiglu_mlp"]

Array = jax.Array
IMPLS = ("pallas", "xla", "interpret")

# Rows x inner columns per kernel instance: powers of two (Triton), the column
# block a multiple of 128 (TPU lanes); the inner width of every paper config
# (1536, 512x3) is a multiple of 512.
BLOCK_ROWS = 16
BLOCK_COLS = 512


def _act(gate_up: Array) -> Array:
  gate, up = jnp.split(gate_up, 2, axis=-1)
  return jax.nn.silu(gate) * up


def _bwd_math(gate, up, dh):
  """(h, d gate, d up) in float32 from gate, up, dh of any float dtype."""
  g, u, d = (a.astype(jnp.float32) for a in (gate, up, dh))
  sig = jax.nn.sigmoid(g)
  silu = g * sig
  dsilu = sig * (1.0 + g * (1.0 - sig))
  return silu * u, d * u * dsilu, d * silu


def swiglu_bwd_reference(gate_up: Array, dh: Array) -> tuple[Array, Array]:
  """(h, d gate_up) in plain JAX: the reference the kernel is tested against."""
  gate, up = jnp.split(gate_up, 2, axis=-1)
  h, dg, du = _bwd_math(gate, up, dh)
  return h.astype(dh.dtype), jnp.concatenate([dg, du], -1).astype(gate_up.dtype)


def _kernel(gu_ref, dh_ref, h_ref, dgu_ref, *, rows: int | None):
  # Blocks: gu/dgu [R, 2, C] (gate row 0, up row 1), dh/h [R, C]. Indexing
  # the refs (not values) lowers to strided loads/stores on Triton and Mosaic.
  # `rows`: the row count when the last block is partial on Triton, whose
  # loads and stores are then masked (recur.kernels.gemm); Mosaic pads
  # partial blocks itself.
  if rows is None:
    h, dg, du = _bwd_math(gu_ref[:, 0, :], gu_ref[:, 1, :], dh_ref[...])
    h_ref[...] = h.astype(h_ref.dtype)
    dgu_ref[:, 0, :] = dg.astype(dgu_ref.dtype)
    dgu_ref[:, 1, :] = du.astype(dgu_ref.dtype)
    return
  valid = gemm.row_ids(BLOCK_ROWS, 0) < rows
  gu = gemm.RowMasked(gu_ref, valid)
  h, dg, du = _bwd_math(gu[:, 0, :], gu[:, 1, :],
                        gemm.RowMasked(dh_ref, valid)[...])
  gemm.store_rows(h_ref, h.astype(h_ref.dtype), valid)
  gemm.store_rows(dgu_ref, dg.astype(dgu_ref.dtype), valid, (slice(None), 0))
  gemm.store_rows(dgu_ref, du.astype(dgu_ref.dtype), valid, (slice(None), 1))


def _pallas_bwd(gate_up: Array, dh: Array, backend: str) -> tuple[Array, Array]:
  """The one-pass kernel on [M, 2, I] / [M, I] views of the rows."""
  inner = dh.shape[-1]
  lead = dh.shape[:-1]
  m = math.prod(lead)
  cols = BLOCK_COLS if inner % BLOCK_COLS == 0 else inner
  gu3 = gate_up.reshape(m, 2, inner)
  dh2 = dh.reshape(m, inner)
  params = backends.compiler_params(backend, 2)
  partial = m % BLOCK_ROWS != 0 and backend in ("triton", "interpret")
  h, dgu = pl.pallas_call(
      functools.partial(_kernel, rows=m if partial else None),
      out_shape=(jax.ShapeDtypeStruct((m, inner), dh.dtype),
                 jax.ShapeDtypeStruct((m, 2, inner), gate_up.dtype)),
      grid=(pl.cdiv(m, BLOCK_ROWS), inner // cols),
      in_specs=[pl.BlockSpec((BLOCK_ROWS, 2, cols), lambda i, j: (i, 0, j)),
                pl.BlockSpec((BLOCK_ROWS, cols), lambda i, j: (i, j))],
      out_specs=(pl.BlockSpec((BLOCK_ROWS, cols), lambda i, j: (i, j)),
                 pl.BlockSpec((BLOCK_ROWS, 2, cols), lambda i, j: (i, 0, j))),
      compiler_params=params,
      interpret=backend == "interpret",
      name="swiglu_bwd",
  )(gu3, dh2)
  return h.reshape(dh.shape), dgu.reshape(gate_up.shape)


def swiglu_bwd(gate_up: Array, dh: Array, impl: str = "pallas"
               ) -> tuple[Array, Array]:
  """(h, d gate_up) of `h = silu(gate) * up` given `dh`; see module doc."""
  if impl not in IMPLS:
    raise ValueError(f"swiglu impl must be one of {IMPLS}, got {impl!r}")
  if impl == "xla":
    return swiglu_bwd_reference(gate_up, dh)
  if impl == "interpret":
    return _pallas_bwd(gate_up, dh, "interpret")
  return backends.by_platform(_pallas_bwd, swiglu_bwd_reference, gate_up, dh)


def _specs(ndim: int, token_mixing: bool) -> tuple[str, str, str]:
  """einsum specs (h @ w, dy -> dh, h & dy -> dw). Channel SwiGLU: w [I, D],
  `..i -> ..o`. Token mixing (TRM-MLP): gate_up laid out [B, D, 2I] (the
  halves along the last axis, as its matmul writes them), w [I, S], output
  [B, S, D]."""
  if token_mixing:
    return "bdi,is->bsd", "bsd,is->bdi", "bdi,bsd->is"
  lead = "".join(chr(ord("a") + i) for i in range(ndim - 1))
  return f"{lead}i,io->{lead}o", f"{lead}o,io->{lead}i", f"{lead}i,{lead}o->io"


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def swiglu_down(gate_up: Array, w_down: Array, impl: str = "pallas",
                token_mixing: bool = False) -> Array:
  """`(silu(gate) * up) @ w_down`, gate and up the halves of the last axis;
  w_down [I, D] in the compute dtype (token_mixing: gate_up [B, D, 2I],
  w_down [I, S], result [B, S, D]). Residuals: `gate_up` and `w_down` only
  (not the activation)."""
  return jnp.einsum(_specs(gate_up.ndim, token_mixing)[0], _act(gate_up), w_down)


def _fwd(gate_up, w_down, impl, token_mixing):
  return swiglu_down(gate_up, w_down, impl, token_mixing), (gate_up, w_down)


def _bwd(impl, token_mixing, res, dy):
  gate_up, w_down = res
  _, dh_spec, dw_spec = _specs(gate_up.ndim, token_mixing)
  h, dgu = swiglu_bwd(gate_up, jnp.einsum(dh_spec, dy, w_down), impl)
  return dgu, jnp.einsum(dw_spec, h, dy).astype(w_down.dtype)


swiglu_down.defvjp(_fwd, _bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def swiglu_mlp(x: Array, w_gate_up: Array, w_down: Array, impl: str = "pallas",
               gate_up_name: str | None = None) -> Array:
  """The whole channel SwiGLU, `(silu(x @ w_gate) * (x @ w_up)) @ w_down`,
  weights in x's dtype. Undifferentiated, the projection and activation are
  one kernel writing only the activation (recur.kernels.gemm_swiglu).
  Differentiated, the forward is one kernel writing `gate_up` and the
  activation (the residual the backward needs, named `gate_up_name` for remat
  policies) where it was a matmul and an activation pass reading it back; the
  backward is `swiglu_down`'s and the projection's, exactly as before."""
  from recur.kernels import gemm_swiglu  # pylint: disable=g-import-not-at-top
  h = gemm_swiglu.swiglu_in(x, w_gate_up, impl)
  return jnp.einsum(_specs(x.ndim, False)[0], h, w_down)


def _mlp_fwd(x, w_gate_up, w_down, impl, gate_up_name):
  from jax.ad_checkpoint import checkpoint_name  # pylint: disable=g-import-not-at-top
  from recur.kernels import gemm_swiglu  # pylint: disable=g-import-not-at-top
  h, gate_up = gemm_swiglu.swiglu_in_with_gate_up(x, w_gate_up, impl)
  if gate_up_name:
    gate_up = checkpoint_name(gate_up, gate_up_name)
  y = jnp.einsum(_specs(x.ndim, False)[0], h, w_down)
  return y, (x, w_gate_up, gate_up, w_down)


def _mlp_bwd(impl, gate_up_name, res, dy):
  del gate_up_name
  x, w_gate_up, gate_up, w_down = res
  # The backward of the two-step path: swiglu_down's (one-pass kernel), then
  # the projection's transpose (its forward product is dead code here).
  _, down_vjp = jax.vjp(lambda gu, w: swiglu_down(gu, w, impl), gate_up, w_down)
  dgu, dw_down = down_vjp(dy)
  _, in_vjp = jax.vjp(
      lambda a, w: jnp.einsum(_specs(x.ndim, False)[0], a, w), x, w_gate_up)
  dx, dw_gate_up = in_vjp(dgu)
  return dx, dw_gate_up, dw_down


swiglu_mlp.defvjp(_mlp_fwd, _mlp_bwd)
