"""Counter-based random draws, vectorised over a batch.

The input pipeline needs, for every row of a batch, random numbers that depend
only on *what* the row is (seed, epoch, group, version, example, ...), never on
the batch it lands in, the process that builds it or the order of the calls:
that is what makes the global batch the same for any process count and lets a
process build only its own rows. A numpy `Generator` per row gives that but
costs tens of microseconds to seed; here a row's numbers are a hash
(SplitMix64's finaliser) of its integer coordinates, computed for the whole
batch with a handful of uint64 array operations.

`hash_ints(a, b, c, ...)` broadcasts its arguments and hashes them in order;
`uniform` maps hashes to [0, 1) (53 bits), `below(h, n)` to [0, n), and
`permutations(h)` turns [..., k] independent hashes into permutations of k
(argsort: ties have probability ~k^2/2^64).
"""
from __future__ import annotations

import numpy as np

__all__ = ["hash_ints", "uniform", "below", "permutations"]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _mix(x: np.ndarray) -> np.ndarray:
  x = x ^ (x >> np.uint64(30))
  x = x * _M1
  x = x ^ (x >> np.uint64(27))
  x = x * _M2
  return x ^ (x >> np.uint64(31))


def hash_ints(*parts) -> np.ndarray:
  """uint64 hash of integer coordinates (broadcast together), in order."""
  with np.errstate(over="ignore"):
    h = np.full(np.broadcast_shapes(*(np.shape(p) for p in parts)),
                0x6A09E667F3BCC909, np.uint64)
    for p in parts:
      v = np.asarray(p)
      if v.dtype.kind not in "iub":
        raise TypeError(f"hash_ints takes integers, got {v.dtype}")
      h = _mix((h ^ v.astype(np.int64).astype(np.uint64)) + _GOLDEN)
  return h


def uniform(h: np.ndarray) -> np.ndarray:
  """Floats in [0, 1) from hashes (the top 53 bits)."""
  return (np.asarray(h, np.uint64) >> np.uint64(11)).astype(np.float64) * 2.0**-53


def below(h: np.ndarray, n) -> np.ndarray:
  """int64 in [0, n) (n >= 1, broadcast) from hashes."""
  n = np.asarray(n, np.int64)
  return np.minimum((uniform(h) * n).astype(np.int64), n - 1)


def permutations(h: np.ndarray) -> np.ndarray:
  """Permutations of range(k) along the last axis of [..., k] hashes."""
  return np.argsort(h, axis=-1, kind="stable")
