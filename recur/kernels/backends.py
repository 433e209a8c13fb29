"""Which Pallas backend a kernel lowers to, and its compiler parameters."""
from __future__ import annotations

from typing import Any

__all__ = ["compiler_params"]


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
