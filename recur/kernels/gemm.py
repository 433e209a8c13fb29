"""Shared pieces of the Pallas matmul kernels with fused epilogues.

XLA hands every matmul to cuBLAS, and cuBLAS writes its result to HBM before
the next elementwise pass (SwiGLU's activation, RoPE and the q/k/v split, the
residual add's RMSNorm) reads it back. The kernels built from these pieces
(`recur.kernels.fused_forward`) keep the matmul's float32 accumulator in
registers and apply that pass before the one store.

* `accumulate(x_ref, w_ref, block_k, ...)`: the K loop of one output tile,
  `x [BM, K] @ w[:, cols]` for one or more column windows of `w`, float32
  accumulators.
* `RowMasked(ref, valid)` / `store_rows(ref, value, valid)`: loads whose rows
  past the array's end read as 0, stores that skip them. Pallas Triton does
  not mask a block that runs past an array's end (its loads and stores are
  plain pointer arithmetic: a partial last row tile would read, and write,
  the next rows or past the buffer), so every kernel here whose row count is
  not a multiple of its row block masks by row (interpret mode pads and
  drops instead, so only the Triton IR shows a missing mask:
  tests/test_aot.py checks the stores).
* `call(...)`: `pl.pallas_call` with this project's compiler parameters and the
  kernel's matmul FLOPs attached: as a `pl.CostEstimate` (XLA's TPU cost
  analysis reads it) and as Triton kernel metadata (`{"flops": N}` in the
  custom call's backend config), which `experiments.hlo_cost` counts, so a
  plan's FLOPs stay the same whether cuBLAS or a kernel here does the matmul.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

__all__ = ["accumulate", "call", "matmul_flops", "RowMasked", "store_rows",
           "row_ids", "METADATA_FLOPS"]

Array = jax.Array
METADATA_FLOPS = "flops"   # key of the kernel metadata experiments.hlo_cost reads


def accumulate(x_ref, w_ref, block_k: int, cols: Sequence[tuple[int, int]],
               k_size: int | None = None) -> list[Array]:
  """float32 `x_ref[:, K] @ w_ref[K, c0:c0 + width]` for each (c0, width) in
  `cols`; K (`k_size`, default x_ref's last dimension) is walked in
  `block_k` steps (a loop Triton software-pipelines)."""
  k_size = x_ref.shape[-1] if k_size is None else k_size
  if k_size % block_k:
    raise ValueError(f"K = {k_size} is not a multiple of block_k = {block_k}")
  rows = x_ref.shape[0]

  def body(i, accs):
    ks = pl.ds(pl.multiple_of(i * block_k, block_k), block_k)
    x = x_ref[:, ks]
    return tuple(acc + jnp.dot(x, w_ref[ks, pl.ds(c0, width)],
                               preferred_element_type=jnp.float32)
                 for acc, (c0, width) in zip(accs, cols))

  init = tuple(jnp.zeros((rows, width), jnp.float32) for _, width in cols)
  return list(jax.lax.fori_loop(0, k_size // block_k, body, init))


def row_ids(block_rows: int, axis: int) -> Array:
  """The rows [block_rows] of this program's tile along grid axis `axis`."""
  return (pl.program_id(axis) * block_rows
          + jax.lax.broadcasted_iota(jnp.int32, (block_rows,), 0))


def _row_mask(valid: Array, shape) -> Array:
  return jnp.broadcast_to(valid.reshape(valid.shape + (1,) * (len(shape) - 1)),
                          shape)


def _as_slices(idx: Any, ndim: int) -> tuple[tuple[Any, ...], tuple[int, ...]]:
  """An index with its integers as size-1 slices (Triton's masked loads and
  stores take blocks, not squeezed dimensions), and the axes they were."""
  if idx is Ellipsis:
    idx = ()
  idx = idx if isinstance(idx, tuple) else (idx,)
  idx = idx + (slice(None),) * (ndim - len(idx))
  ints = tuple(a for a, i in enumerate(idx)
               if not isinstance(i, (slice, pl.Slice)))
  return tuple(pl.ds(i, 1) if a in ints else i
               for a, i in enumerate(idx)), ints


class RowMasked:
  """A ref whose first axis is rows: indexing it (the first index a full
  slice) loads with the rows where `valid` is False read as 0."""

  def __init__(self, ref: Any, valid: Array):
    self.ref, self.valid, self.shape = ref, valid, ref.shape

  def __getitem__(self, idx: Any) -> Array:
    from jax.experimental.pallas import triton as pltriton  # pylint: disable=g-import-not-at-top
    ints: tuple[int, ...] = ()
    if idx is Ellipsis:
      view = self.ref
    else:
      idx, ints = _as_slices(idx, len(self.shape))
      view = self.ref.at[idx]
    value = pltriton.load(view, mask=_row_mask(self.valid, view.shape), other=0)
    return value.reshape([n for a, n in enumerate(value.shape) if a not in ints])


def store_rows(ref: Any, value: Array, valid: Array, idx: Any = Ellipsis
               ) -> None:
  """`ref[idx] = value` for the rows where `valid` is True only."""
  from jax.experimental.pallas import triton as pltriton  # pylint: disable=g-import-not-at-top
  view = ref if idx is Ellipsis else ref.at[_as_slices(idx, len(ref.shape))[0]]
  pltriton.store(view, value.reshape(view.shape),
                 mask=_row_mask(valid, view.shape))


def matmul_flops(rows: int, k: int, n: int) -> int:
  """FLOPs of a [rows, k] @ [k, n] matmul (a multiply and an add each)."""
  return 2 * rows * k * n


def call(kernel: Callable[..., Any], *, out_shape, grid, in_specs, out_specs,
         backend: str, flops: int, bytes_accessed: int, name: str,
         num_warps: int = 4, num_stages: int = 3) -> Callable[..., Any]:
  """`pl.pallas_call` for `backend` ("triton", "mosaic_tpu" or "interpret")
  with the FLOPs attached (module doc)."""
  if backend == "triton":
    from jax.experimental.pallas import triton as pltriton  # pylint: disable=g-import-not-at-top
    params: Any = pltriton.CompilerParams(num_warps=num_warps,
                                          num_stages=num_stages)
  elif backend == "mosaic_tpu":
    from jax.experimental.pallas import tpu as pltpu  # pylint: disable=g-import-not-at-top
    params = pltpu.CompilerParams(
        dimension_semantics=["parallel"] * len(grid))
  elif backend == "interpret":
    params = None
  else:
    raise ValueError(f"unknown Pallas backend {backend!r}")
  return pl.pallas_call(
      kernel, out_shape=out_shape, grid=grid, in_specs=in_specs,
      out_specs=out_specs, compiler_params=params,
      interpret=backend == "interpret", name=name,
      cost_estimate=pl.CostEstimate(flops=int(flops), transcendentals=0,
                                    bytes_accessed=int(bytes_accessed)),
      metadata={METADATA_FLOPS: str(int(flops))})
