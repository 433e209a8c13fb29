"""Defaults chosen from ahead-of-time plans (experiments/aot.py), per platform.

`resolve_remat(cfg, platform)`: the remat policy of the differentiated level
calls when the config says "auto" (the default). On GPUs and TPUs the policy
comes from XLA's buffer plans of the paper cases at the paper batches
(docs/benchmarks.md, "Ahead-of-time plans"): without remat the H200 plans peak
above the PyTorch reference's measured memory (TRM-Att ARC 36.5 GB vs 33.7,
TRM-MLP Sudoku 31.0 vs 29.5, HRM ARC 31.0 vs 28.7); saving only the matmul
outputs without batch dimensions (the weight-side products) and recomputing the
rest brings them under it for ~4% more FLOPs. On a CPU (tests, tiny runs)
nothing is rematerialised, as before. The platform is passed explicitly when
planning for a device this process does not have.
"""
from __future__ import annotations

import jax

__all__ = ["AUTO", "ACCELERATOR_REMAT", "default_remat", "resolve_remat"]

AUTO = "auto"
ACCELERATOR_REMAT = "dots_with_no_batch_dims_saveable"


def default_remat(cfg, platform: str) -> str | None:
  """The policy "auto" stands for on `platform` ("cpu", "gpu", "tpu")."""
  del cfg  # one policy fits all three paper cases today (see module docstring)
  if platform in ("gpu", "cuda", "rocm", "tpu"):
    return ACCELERATOR_REMAT
  return None


def resolve_remat(cfg, platform: str | None = None) -> str | None:
  """The remat policy name `cfg.remat` stands for on `platform` (default: this
  process's backend): "auto" -> `default_remat`, anything else as it is."""
  if cfg.remat != AUTO:
    return cfg.remat
  return default_remat(cfg, platform or jax.default_backend())
