"""Algorithmic tasks for the "recursion vs depth" experiments.

Each task is a `PuzzleSource` generated on the fly from seeds (no files):

* `SortSource(n, num_values)`: sort a list of n values in 0..num_values-1.
* `ParitySource(n)`: running parity, label i = xor of bits 0..i.
* `PrefixSumSource(n, modulus)`: prefix sums modulo m, label i = sum(x[:i+1]) % m.
* `StateTrackingSource(n, k)`: the word problem of the symmetric group S_k
  ("state tracking"): n permutations g_1..g_n, label i = g_1 o ... o g_i (a
  prefix scan over a non-commutative group; S_5 is the classic NC1-complete case).

Token encoding: PAD=0; a value v (a bit, a list value or a residue) is token
v + 1, for inputs and labels alike; vocab = num_values + 1 (sort), 3 (parity),
modulus + 1 (prefix sum), k! + 1 (state tracking: v indexes the k! permutations
in `itertools.permutations(range(k))` order, so v=0 is the identity). A source covers sizes `n_min..n_max` (default a
single size n): `seq_len = n_max`, an example of size k fills the first k
positions; the rest of the inputs are PAD and of the labels IGNORE_LABEL_ID.

Splits: "train" (`num_train` groups), "test" (`num_test` groups) with sizes
drawn uniformly from n_min..n_max, and one split per size, "test_n{k}"
(`num_test` groups of size k exactly), for accuracy vs problem size. Each group
has one version and one example; example (split, group) is drawn from
`default_rng([seed, split code, group])`, so it never changes with the number
of groups. All examples use puzzle identifier 0 (`num_puzzle_identifiers` 1).
Train and test are independent draws: at tiny sizes (e.g. 2**4 parity inputs)
the same list can appear in both.
"""
from __future__ import annotations

import itertools
import math
import zlib
from typing import Any, Sequence

import numpy as np

from recur.data.base import IGNORE_LABEL_ID, PAD_ID, DatasetInfo, Example

__all__ = ["AlgorithmicSource", "SortSource", "ParitySource", "PrefixSumSource",
           "StateTrackingSource"]


class AlgorithmicSource:
  """Shared machinery: sizes, splits, seeding, padding. Subclasses define
  `_values(rng, n)` (the input values) and `_answer(values)` (label values)."""

  task = "algorithmic"

  def __init__(self, n: int | None = None, *, n_min: int | None = None,
               n_max: int | None = None, num_values: int, num_train: int = 10000,
               num_test: int = 1000, seed: int = 0, name: str | None = None):
    if n is not None:
      if n_min is not None or n_max is not None:
        raise ValueError("give either n or n_min/n_max, not both")
      n_min = n_max = n
    if n_min is None or n_max is None:
      raise ValueError("give n, or both n_min and n_max")
    if not 1 <= n_min <= n_max:
      raise ValueError(f"need 1 <= n_min <= n_max, got {n_min}..{n_max}")
    if num_train < 0 or num_test < 0:
      raise ValueError("num_train and num_test must be >= 0")
    self.n_min, self.n_max = int(n_min), int(n_max)
    self.num_values = int(num_values)
    self.num_train, self.num_test = int(num_train), int(num_test)
    self.seed = int(seed)
    sizes = "" if self.n_min == self.n_max else f"{self.n_min}-"
    splits = ("train", "test") + tuple(
        f"test_n{k}" for k in range(self.n_min, self.n_max + 1))
    self.info = DatasetInfo(
        name=name or f"{self.task}-n{sizes}{self.n_max}", seq_len=self.n_max,
        vocab_size=self.num_values + 1, num_puzzle_identifiers=1, splits=splits,
        family="algorithmic")

  # -- subclass hooks ------------------------------------------------------

  def _values(self, rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, self.num_values, size=n)

  def _answer(self, values: np.ndarray) -> np.ndarray:
    raise NotImplementedError

  # -- PuzzleSource --------------------------------------------------------

  def num_groups(self, split: str) -> int:
    self._split_code(split)
    return self.num_train if split == "train" else self.num_test

  def num_versions(self, split: str, group: int) -> int:
    self._check_group(split, group)
    return 1

  def size_of(self, split: str, group: int) -> int:
    """Problem size n of one group."""
    return len(self._draw(split, group))

  def examples(self, split: str, group: int, version: int = 0,
               rng: np.random.Generator | None = None) -> Sequence[Example]:
    del rng  # fully determined by (seed, split, group)
    if version != 0:
      raise IndexError(f"algorithmic tasks have one version, got {version}")
    values = self._draw(split, group)
    n = len(values)
    inputs = np.full(self.n_max, PAD_ID, np.int32)
    labels = np.full(self.n_max, IGNORE_LABEL_ID, np.int32)
    inputs[:n] = values + 1
    labels[:n] = self._answer(values) + 1
    return [Example(inputs=inputs, labels=labels, puzzle_identifier=0,
                    group=group, version=0, index=0)]

  def group_name(self, split: str, group: int) -> str:
    return f"{split}/{group}:n{self.size_of(split, group)}"

  def describe(self) -> dict[str, Any]:
    return {"name": self.info.name, "task": self.task, "n_min": self.n_min,
            "n_max": self.n_max, "num_values": self.num_values,
            "num_train": self.num_train, "num_test": self.num_test,
            "seed": self.seed, "seq_len": self.info.seq_len,
            "vocab_size": self.info.vocab_size}

  # -- helpers -------------------------------------------------------------

  def _split_code(self, split: str) -> int:
    if split == "train":
      return 0
    if split == "test":
      return 1
    if split.startswith("test_n") and split in self.info.splits:
      return 2 + int(split[len("test_n"):])
    raise KeyError(f"unknown split {split!r}; have train, test, "
                   f"test_n{self.n_min}..test_n{self.n_max}")

  def _check_group(self, split: str, group: int) -> None:
    if not 0 <= group < self.num_groups(split):
      raise IndexError(f"group {group} out of range for split {split!r}")

  def _draw(self, split: str, group: int) -> np.ndarray:
    self._check_group(split, group)
    code = self._split_code(split)
    task = zlib.crc32(self.task.encode())
    rng = np.random.default_rng([self.seed, task, code, group])
    if code >= 2:
      n = code - 2
    else:
      n = int(rng.integers(self.n_min, self.n_max + 1))
    return np.asarray(self._values(rng, n), np.int64)


class SortSource(AlgorithmicSource):
  """Sort n values from 0..num_values-1 (duplicates allowed), ascending."""

  task = "sort"

  def __init__(self, n: int | None = None, num_values: int = 10, **kwargs):
    if num_values < 2:
      raise ValueError(f"num_values must be >= 2, got {num_values}")
    super().__init__(n, num_values=num_values, **kwargs)

  def _answer(self, values: np.ndarray) -> np.ndarray:
    return np.sort(values)


class ParitySource(AlgorithmicSource):
  """Running parity of n random bits: label i = bits[0] ^ ... ^ bits[i]."""

  task = "parity"

  def __init__(self, n: int | None = None, **kwargs):
    super().__init__(n, num_values=2, **kwargs)

  def _answer(self, values: np.ndarray) -> np.ndarray:
    return np.bitwise_xor.accumulate(values)


class PrefixSumSource(AlgorithmicSource):
  """Prefix sums modulo `modulus` of n values from 0..modulus-1."""

  task = "prefix_sum"

  def __init__(self, n: int | None = None, modulus: int = 10, **kwargs):
    if modulus < 2:
      raise ValueError(f"modulus must be >= 2, got {modulus}")
    self.modulus = int(modulus)
    super().__init__(n, num_values=modulus, **kwargs)

  def _answer(self, values: np.ndarray) -> np.ndarray:
    return np.cumsum(values) % self.modulus


class StateTrackingSource(AlgorithmicSource):
  """The word problem of S_k: running products of n random permutations.

  The k! permutations of 0..k-1 are enumerated in `itertools.permutations`
  order (value v is `perms[v]`, a tuple with p[x] the image of x; v=0 is the
  identity). Input i is a uniformly random element g_i; label i is the value of
  g_1 o g_2 o ... o g_i, with (f o g)(x) = f(g(x)). For k >= 3 the group is not
  commutative, so the order matters; k=2 is running parity.
  """

  task = "state_tracking"

  def __init__(self, n: int | None = None, *, k: int = 3, **kwargs):
    if not 2 <= k <= 6:
      raise ValueError(f"k must be in 2..6 (vocab k! + 1), got {k}")
    self.k = int(k)
    self.perms = np.array(list(itertools.permutations(range(self.k))), np.int64)
    # Row-major index of a permutation: the inverse of the enumeration.
    self._index = {tuple(p): v for v, p in enumerate(self.perms.tolist())}
    # table[a, b] = index of perms[a] o perms[b].
    m = len(self.perms)
    comp = self.perms[np.arange(m)[:, None, None], self.perms[None]]  # pa[pb[x]]
    self.table = np.array([[self._index[tuple(r)] for r in row] for row in comp],
                          np.int64)
    super().__init__(n, num_values=math.factorial(self.k), **kwargs)

  def _answer(self, values: np.ndarray) -> np.ndarray:
    out = np.empty_like(values)
    state = 0  # identity
    for i, v in enumerate(values):
      state = self.table[state, v]
      out[i] = state
    return out

  def describe(self) -> dict[str, Any]:
    return dict(super().describe(), k=self.k)
