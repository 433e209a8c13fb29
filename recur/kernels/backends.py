"""Which Pallas backend a kernel lowers to, and its compiler parameters."""
from __future__ import annotations

import functools
from typing import Any, Callable

import jax

__all__ = ["KERNEL_PLATFORMS", "compiler_params", "by_platform"]

# Where recur.kernels run their Pallas kernel (fused_kernels on); elsewhere
# the plain JAX expression. GPUs: the H200 plans move fewer bytes with them
# (docs/benchmarks.md). TPUs: the Mosaic kernels lower and compile at the
# paper shapes, but the v5p plan of TRM-Att moved more bytes with them
# (XLA's cost analysis: 1330 vs 1291 GB per step, peak 33.0 vs 32.3 GB), so
# they are off there until a plan or a device run says otherwise; add "tpu"
# here to turn them on.
KERNEL_PLATFORMS: tuple[str, ...] = ("cuda",)
_BACKEND = {"cuda": "triton", "tpu": "mosaic_tpu"}


def compiler_params(backend: str, grid_dims: int) -> Any:
  """Pallas compiler parameters for "triton" (GPUs), "mosaic_tpu" or
  "interpret" (None). Imported lazily: CPU runs never load either backend."""
  if backend == "triton":
    from jax.experimental.pallas import triton as pltriton  # pylint: disable=g-import-not-at-top
    # One stage: the kernels here stream each block once (no K loop to pipeline).
    return pltriton.CompilerParams(num_warps=4, num_stages=1)
  if backend == "mosaic_tpu":
    from jax.experimental.pallas import tpu as pltpu  # pylint: disable=g-import-not-at-top
    parallel: list[Any] = ["parallel"] * grid_dims   # every block independent
    return pltpu.CompilerParams(dimension_semantics=parallel)
  if backend == "interpret":
    return None
  raise ValueError(f"unknown Pallas backend {backend!r}")


def by_platform(kernel: Callable[..., Any], plain: Callable[..., Any],
                *args: Any) -> Any:
  """`kernel(*args, backend=...)` on the platforms of KERNEL_PLATFORMS, else
  `plain(*args)`; decided when the program is lowered
  (`jax.lax.platform_dependent`), so ahead-of-time plans get the target's."""
  per_platform = {p: functools.partial(kernel, backend=_BACKEND[p])
                  for p in KERNEL_PLATFORMS}
  return jax.lax.platform_dependent(*args, default=plain, **per_platform)
