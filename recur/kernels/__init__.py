"""Pallas kernels for the memory-bound steps XLA does not fuse (recur.layers
uses them; each has a plain-JAX path and an interpret-mode parity test)."""
from recur.kernels.swiglu import swiglu_bwd, swiglu_down

__all__ = ["swiglu_bwd", "swiglu_down"]
