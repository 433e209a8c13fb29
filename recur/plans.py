"""Defaults chosen from ahead-of-time plans (experiments/aot.py), per platform.

`resolve_remat(cfg, platform)`: the remat policy of the differentiated level
calls when the config says "auto" (the default). On GPUs and TPUs the policy
comes from XLA's buffer plans of the paper cases at the paper batches
(docs/benchmarks.md, "Ahead-of-time plans"): without remat the H200 plans peak
above the PyTorch reference's measured memory (TRM-Att ARC 36.5 GB vs 33.7,
TRM-MLP Sudoku 31.0 vs 29.5, HRM ARC 31.0 vs 28.7); saving only the matmul
outputs without batch dimensions (the weight-side products) and recomputing the
rest brings them under it for ~4% more FLOPs. A 16 GiB TPU v5e chip holds none
of the three at the paper batch with that policy (XLA's temporaries alone 23.9
/ 19.7 / 20.4 GB) but all three with full recomputation (9.1 / 4.1 / 13.0 GB),
so on a v5e "auto" is "full". On a CPU (tests, tiny runs) nothing is
rematerialised, as before. The platform and device kind are passed explicitly when planning for a
device this process does not have.
"""
from __future__ import annotations

import jax

__all__ = ["AUTO", "ACCELERATOR_REMAT", "SMALL_MEMORY_REMAT", "default_remat",
           "resolve_remat", "resolve_fused_kernels", "resolve_fused_forward"]

AUTO = "auto"
ACCELERATOR_REMAT = "dots_with_no_batch_dims_saveable"
SMALL_MEMORY_REMAT = "full"
# Device kinds (jax's `device_kind`, and experiments.targets' descriptions)
# whose memory needs full recomputation at the paper batches.
_SMALL_MEMORY_KINDS = ("tpu v5 lite", "tpu v5e", "tpu v5litepod")


def default_remat(cfg, platform: str, device_kind: str = "") -> str | None:
  """The policy "auto" stands for on `platform` ("cpu", "gpu", "tpu") and,
  when known, the device kind (e.g. "TPU v5 lite")."""
  del cfg  # one policy per device fits all three paper cases (module docstring)
  if platform in ("gpu", "cuda", "rocm", "tpu"):
    if device_kind.strip().lower() in _SMALL_MEMORY_KINDS:
      return SMALL_MEMORY_REMAT
    return ACCELERATOR_REMAT
  return None


def resolve_remat(cfg, platform: str | None = None,
                  device_kind: str | None = None) -> str | None:
  """The remat policy name `cfg.remat` stands for on `platform` and
  `device_kind` (default: this process's backend and first device): "auto" ->
  `default_remat`, anything else as it is."""
  if cfg.remat != AUTO:
    return cfg.remat
  if platform is None:
    platform = jax.default_backend()
    if device_kind is None:
      device_kind = jax.local_devices()[0].device_kind
  return default_remat(cfg, platform, device_kind or "")


def resolve_fused_kernels(flag: bool | None, platform: str | None = None) -> bool:
  """What `fused_kernels` stands for: an explicit True/False as it is; None
  (the default) on for GPUs and TPUs (the layouts and one-pass backward
  kernels of recur.kernels, chosen from the H200 plans) and off on a CPU, where
  the plain JAX expressions with their own layouts run faster (the token-mixing
  MLP's [B, D, 2I] layout cost the tiny CPU bench ~7%, docs/benchmarks.md)."""
  if flag is not None:
    return bool(flag)
  return (platform or jax.default_backend()) in ("gpu", "cuda", "rocm", "tpu")


def resolve_fused_forward(flag: bool | None, fused_kernels: bool | None,
                          platform: str | None = None) -> bool:
  """What `fused_forward` stands for: an explicit True/False as it is; None
  (the default) on for GPUs when `fused_kernels` resolves on there: the
  fused-epilogue kernels of recur.kernels.block_forward are Triton kernels
  (on other platforms they would run as their plain JAX expressions)."""
  if flag is not None:
    return bool(flag)
  platform = platform or jax.default_backend()
  return (platform in ("gpu", "cuda")
          and resolve_fused_kernels(fused_kernels, platform))
