"""The one input pipeline every `PuzzleSource` goes through.

Training (`TrainIterator`) follows the reference sampler (`puzzle_dataset.py`):

* An epoch visits every group of the split once, in an order shuffled from
  `(seed, epoch)`.
* For each group it draws one version at random and takes that version's
  examples (in a random order) with an rng derived from `(seed, epoch, group)`;
  the same rng is handed to `source.examples` for per-epoch randomness such as
  ARC translation.
* Examples are packed into the global batch in that order. When a version has
  more examples than the batch has room left, a random subset that fills the
  batch is taken and the rest of that version is dropped: the next batch starts
  with the next group (no leftovers are carried over), as in the reference.
* The incomplete batch at the end of an epoch is dropped, so every batch is full
  and has a fixed shape; the iterator is infinite over epochs. (The reference
  packs `epochs_per_iter` epochs back to back before dropping; here that number
  is 1, which is what a step-based training loop needs.)

The global batch depends only on `(seed, batch number)`, never on
`process_count` or timing; process `p` receives rows `[p*B_local, (p+1)*B_local)`
of it and only copies those rows (it still calls `source.examples` for every
group of the batch, to know how many rows each group takes).

Resumable state (`TrainIterator.get_state`) is a small JSON-serialisable dict:

    {"format": "recur.pipeline.train/1", "split": "train", "seed": 0,
     "global_batch_size": 768, "num_groups": 960,
     "epoch": 3, "position": 412, "batches": 1234}

`epoch` is the epoch of the last batch handed out and `position` the number of
groups of that epoch's order already consumed; `batches` counts batches handed
out. Since no leftovers are carried over, (epoch, position) is the whole producer
state. The state is the same on every process and does not depend on
`process_count`, so a run can resume on a different number of hosts.

Prefetch: batches are built in a background thread by grain's
`grain.experimental.ThreadPrefetchDatasetIterator` wrapped around our own
checkpointable packer. We use grain's thread prefetcher rather than a
`MapDataset`/`IterDataset` graph because the reference semantics (variable-size
groups packed into a fixed batch, truncation, epoch-end drop) are a stateful
scan over groups that grain's `batch`/packing transforms do not express without
changing the batches; the prefetcher, on the other hand, stores the parent
state next to each prefetched element, so `get_state` describes the consumer's
position (batches handed out), not the producer's, which is exactly what an
exact resume needs. Sources must therefore tolerate being called from a
background thread (calls are never concurrent for one iterator).

Evaluation (`eval_batches`) walks every group, every version (or the first
`max_versions`), every example in order, in fixed-size batches whose last one is
padded (`mask` False, `group`/`version`/`index` -1 on padding rows).

`make_global_batch` turns each process's numpy share into global `jax.Array`s
sharded along the batch dimension.
"""
from __future__ import annotations

import atexit
import threading
import weakref
from typing import Any, Iterator, Mapping, Sequence

import jax
import numpy as np

from recur.data.base import (BLANK_PUZZLE_ID, IGNORE_LABEL_ID, PAD_ID, DataError,
                             Example, PuzzleSource)

__all__ = ["TrainIterator", "eval_batches", "make_global_batch", "STATE_FORMAT",
           "EVAL_PAD_INDEX"]

STATE_FORMAT = "recur.pipeline.train/1"
EVAL_PAD_INDEX = -1  # group/version/index of eval padding rows

# Domain tags keep the group-order stream and the per-group streams apart.
_ORDER_STREAM = 0
_GROUP_STREAM = 1
_EVAL_STREAM = 2
# Fields of the state that must match the iterator it is loaded into.
_CONFIG_KEYS = ("split", "seed", "global_batch_size", "num_groups")


def _group_order(seed: int, epoch: int, num_groups: int) -> np.ndarray:
  rng = np.random.default_rng([seed, epoch, _ORDER_STREAM])
  return rng.permutation(num_groups)


def _group_rng(seed: int, epoch: int, group: int) -> np.random.Generator:
  return np.random.default_rng([seed, epoch, _GROUP_STREAM, group])


def _check_shares(global_batch_size: int, process_index: int,
                  process_count: int) -> int:
  """Validates the process layout and returns the local batch size."""
  if global_batch_size < 1:
    raise ValueError(f"global_batch_size must be >= 1, got {global_batch_size}")
  if process_count < 1 or not 0 <= process_index < process_count:
    raise ValueError(f"process_index {process_index} is not in "
                     f"[0, process_count={process_count})")
  if global_batch_size % process_count:
    raise ValueError(f"global_batch_size {global_batch_size} is not divisible "
                     f"by process_count {process_count}")
  return global_batch_size // process_count


class _RowWriter:
  """Copies validated examples into preallocated local batch arrays."""

  def __init__(self, source: PuzzleSource, split: str, rows: int):
    self._info = source.info
    self._name = f"{source.info.name}/{split}"
    seq_len = source.info.seq_len
    self.inputs = np.full((rows, seq_len), PAD_ID, np.int32)
    self.labels = np.full((rows, seq_len), IGNORE_LABEL_ID, np.int32)
    self.puzzle_identifiers = np.full((rows,), BLANK_PUZZLE_ID, np.int32)

  def write(self, row: int, examples: Sequence[Example], group: int,
            version: int) -> None:
    """Writes `examples` (all of one version) to rows row, row + 1, ..."""
    seq_len, end = self._info.seq_len, row + len(examples)
    try:
      inputs = np.stack([ex.inputs for ex in examples])
      labels = np.stack([ex.labels for ex in examples])
    except ValueError:
      inputs = labels = None  # ragged: reported below
    expected = (len(examples), seq_len)
    if inputs is None or inputs.shape != expected or labels.shape != expected:
      shapes = sorted({(np.shape(ex.inputs), np.shape(ex.labels))
                       for ex in examples})
      raise DataError(
          f"{self._name} group {group} version {version}: example "
          f"(inputs, labels) shapes {shapes}, expected ({seq_len},)")
    ids = np.array([ex.puzzle_identifier for ex in examples], np.int64)
    bad = (ids < 0) | (ids >= self._info.num_puzzle_identifiers)
    if bad.any():
      raise DataError(
          f"{self._name} group {group} version {version}: puzzle_identifier "
          f"{ids[bad][0]} outside [0, {self._info.num_puzzle_identifiers})")
    self.inputs[row:end] = inputs
    self.labels[row:end] = labels
    self.puzzle_identifiers[row:end] = ids

  def batch(self) -> dict[str, np.ndarray]:
    return {"inputs": self.inputs, "labels": self.labels,
            "puzzle_identifiers": self.puzzle_identifiers}


class _Packer:
  """The checkpointable producer: packs one global batch per `__next__`.

  Works on local copies of (epoch, position) and commits them only once a
  batch is complete, so `get_state` is always at a batch boundary.
  """

  def __init__(self, source: PuzzleSource, split: str, global_batch_size: int,
               seed: int, process_index: int, process_count: int,
               lock: threading.Lock):
    self._source = source
    self._split = split
    self._global = global_batch_size
    self._local = global_batch_size // process_count
    self._lo = process_index * self._local
    self._seed = seed
    self._lock = lock
    self._num_groups = source.num_groups(split)
    if self._num_groups < 1:
      raise ValueError(f"{source.info.name}/{split} has no groups")
    self._epoch = 0
    self._position = 0
    self._batches = 0
    self._order_cache: tuple[int, np.ndarray] | None = None

  def _order(self, epoch: int) -> np.ndarray:
    if self._order_cache is None or self._order_cache[0] != epoch:
      self._order_cache = (epoch, _group_order(self._seed, epoch,
                                               self._num_groups))
    return self._order_cache[1]

  def __iter__(self) -> "_Packer":
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    with self._lock:
      return self._next_locked()

  def _next_locked(self) -> dict[str, np.ndarray]:
    source, split = self._source, self._split
    lo, hi = self._lo, self._lo + self._local
    epoch, position = self._epoch, self._position
    while True:
      order = self._order(epoch)
      writer = _RowWriter(source, split, self._local)
      started_at, filled = position, 0
      while filled < self._global and position < self._num_groups:
        group = int(order[position])
        position += 1
        rng = _group_rng(self._seed, epoch, group)
        num_versions = source.num_versions(split, group)
        if num_versions < 1:
          raise DataError(f"{source.info.name}/{split} group {group} has no "
                          "versions")
        version = int(rng.integers(num_versions))
        examples = source.examples(split, group, version, rng)
        take = min(len(examples), self._global - filled)
        if take == 0:
          continue
        picked = rng.permutation(len(examples))[:take]
        first, last = max(filled, lo), min(filled + take, hi)
        if first < last:  # some of these rows are this process's share
          writer.write(first - lo, [examples[i] for i in
                                    picked[first - filled:last - filled]],
                       group, version)
        filled += take
      if filled == self._global:
        self._epoch, self._position = epoch, position
        self._batches += 1
        return writer.batch()
      # Ran out of groups: drop the incomplete batch, as the reference does.
      if started_at == 0:
        raise ValueError(
            f"{source.info.name}/{split}: a whole epoch packs fewer than "
            f"global_batch_size={self._global} examples")
      epoch, position = epoch + 1, 0

  def get_state(self) -> dict[str, Any]:
    return {"format": STATE_FORMAT, "split": self._split, "seed": self._seed,
            "global_batch_size": self._global, "num_groups": self._num_groups,
            "epoch": self._epoch, "position": self._position,
            "batches": self._batches}

  def set_state(self, state: Mapping[str, Any]) -> None:
    if state.get("format") != STATE_FORMAT:
      raise ValueError(f"not a {STATE_FORMAT} state: format="
                       f"{state.get('format')!r}")
    mine = self.get_state()
    for key in _CONFIG_KEYS:
      if state[key] != mine[key]:
        raise ValueError(f"data state was saved with {key}={state[key]!r}, this "
                         f"iterator has {key}={mine[key]!r}")
    epoch, position, batches = (int(state["epoch"]), int(state["position"]),
                                int(state["batches"]))
    if epoch < 0 or batches < 0 or not 0 <= position <= self._num_groups:
      raise ValueError(f"invalid data state position: {state}")
    self._epoch, self._position, self._batches = epoch, position, batches


# Live prefetchers are closed before interpreter teardown: grain's iterator
# otherwise tries to close itself while its modules are being torn down.
_LIVE = weakref.WeakSet()


@atexit.register
def _close_live_iterators() -> None:
  for it in list(_LIVE):
    it.close()


def _prefetched(parent, prefetch: int):
  """Wraps a checkpointable iterator in grain's background-thread prefetcher."""
  from grain import experimental as grain_experimental  # pylint: disable=g-import-not-at-top
  return grain_experimental.ThreadPrefetchDatasetIterator(parent, prefetch)


class TrainIterator:
  """Infinite, resumable training batches of one process, reference semantics.

  Yields dicts of numpy arrays: `inputs` and `labels` int32 [B_local, seq_len],
  `puzzle_identifiers` int32 [B_local], where B_local = global_batch_size /
  process_count. `process_index`/`process_count` are this process's place among
  the processes that share the data (for a mesh whose data axis spans every host:
  `jax.process_index()`, `jax.process_count()`).
  """

  def __init__(self, source: PuzzleSource, global_batch_size: int, seed: int,
               process_index: int = 0, process_count: int = 1,
               prefetch: int = 2, split: str = "train"):
    self.local_batch_size = _check_shares(global_batch_size, process_index,
                                          process_count)
    if seed < 0:
      raise ValueError(f"seed must be >= 0, got {seed}")
    if prefetch < 0:
      raise ValueError(f"prefetch must be >= 0, got {prefetch}")
    if split not in source.info.splits:
      raise ValueError(f"{source.info.name} has no split {split!r} "
                       f"(splits: {source.info.splits})")
    self.source = source
    self.split = split
    self.seed = int(seed)
    self.global_batch_size = int(global_batch_size)
    self.process_index = process_index
    self.process_count = process_count
    self._lock = threading.Lock()  # one caller of `source` at a time
    self._packer = _Packer(source, split, self.global_batch_size, self.seed,
                           process_index, process_count, self._lock)
    self._steps_per_epoch: int | None = None
    if prefetch:
      self._it = _prefetched(self._packer, prefetch)
      _LIVE.add(self)
    else:
      self._it = self._packer

  def __iter__(self) -> "TrainIterator":
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    if self._it is None:
      raise ValueError("TrainIterator is closed")
    return next(self._it)

  def get_state(self) -> dict[str, Any]:
    """The consumer's position: JSON-serialisable, the same on every process."""
    return dict(self._it.get_state())

  def set_state(self, state: Mapping[str, Any]) -> None:
    """Continues exactly after the batch at which `state` was taken."""
    self._it.set_state(dict(state))

  @property
  def epoch(self) -> int:
    """Epoch (from 0) of the last batch handed out (0 before the first)."""
    return self.get_state()["epoch"]

  @property
  def batches_seen(self) -> int:
    return self.get_state()["batches"]

  @property
  def examples_seen(self) -> int:
    """Examples in all global batches handed out (every batch is full)."""
    return self.batches_seen * self.global_batch_size

  @property
  def steps_per_epoch(self) -> int:
    """Estimate as in the reference: examples per epoch // global batch size.

    Counts the examples of version 0 of every group (one pass over the split,
    computed once). Truncated versions and the dropped end-of-epoch batch make
    the true number of batches in an epoch at most this.
    """
    if self._steps_per_epoch is None:
      with self._lock:
        total = 0
        for group in range(self.source.num_groups(self.split)):
          rng = _group_rng(self.seed, 0, group)
          total += len(self.source.examples(self.split, group, 0, rng))
      self._steps_per_epoch = max(1, total // self.global_batch_size)
    return self._steps_per_epoch

  def close(self) -> None:
    """Stops the background thread; the iterator can no longer be used."""
    it, self._it = self._it, None
    if it is not None and it is not self._packer:
      it.close()

  def __enter__(self) -> "TrainIterator":
    return self

  def __exit__(self, *exc) -> None:
    self.close()


class _EvalProducer:
  """Fixed-size, padded batches over every (group, version, example)."""

  def __init__(self, source: PuzzleSource, split: str, global_batch_size: int,
               process_index: int, process_count: int,
               max_versions: int | None, seed: int):
    self._source, self._split = source, split
    self._global = global_batch_size
    self._local = global_batch_size // process_count
    self._lo = process_index * self._local
    self._max_versions = max_versions
    self._seed = seed
    self._stream = self._examples()
    self._done = False
    self._batches = 0

  def _examples(self) -> Iterator[tuple[Example, int, int]]:
    source, split = self._source, self._split
    for group in range(source.num_groups(split)):
      num_versions = source.num_versions(split, group)
      if self._max_versions is not None:
        num_versions = min(num_versions, self._max_versions)
      for version in range(num_versions):
        rng = np.random.default_rng([self._seed, _EVAL_STREAM, group, version])
        for ex in source.examples(split, group, version, rng):
          if (ex.group, ex.version) != (group, version):
            raise DataError(
                f"{source.info.name}/{split} group {group} version {version}: "
                f"example says group {ex.group} version {ex.version}")
          yield ex, group, version

  def __iter__(self) -> "_EvalProducer":
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    if self._done:
      raise StopIteration
    lo, hi = self._lo, self._lo + self._local
    writer = _RowWriter(self._source, self._split, self._local)
    meta = {k: np.full((self._local,), EVAL_PAD_INDEX, np.int32)
            for k in ("group", "version", "index")}
    mask = np.zeros((self._local,), bool)
    filled = 0
    for ex, group, version in self._stream:
      if lo <= filled < hi:
        row = filled - lo
        writer.write(row, [ex], group, version)
        meta["group"][row], meta["version"][row] = group, version
        meta["index"][row] = ex.index
        mask[row] = True
      filled += 1
      if filled == self._global:
        break
    else:
      self._done = True
      if filled == 0:
        raise StopIteration
    self._batches += 1
    return {**writer.batch(), **meta, "mask": mask}

  def get_state(self) -> dict[str, Any]:
    return {"batches": self._batches}

  def set_state(self, state: Mapping[str, Any]) -> None:
    raise NotImplementedError("evaluation batches are not resumable")


def eval_batches(source: PuzzleSource, global_batch_size: int,
                 split: str = "test", process_index: int = 0,
                 process_count: int = 1, max_versions: int | None = None,
                 seed: int = 0, prefetch: int = 2
                 ) -> Iterator[dict[str, np.ndarray]]:
  """Every example of every version of every group of `split`, in order.

  Order: group, then version (the first `max_versions` if given), then the
  examples as the source returns them. Batches are global_batch_size /
  process_count rows of this process's share, always the same shape; the last
  global batch is padded. Besides `inputs`, `labels`, `puzzle_identifiers`,
  each batch has int32 `group`, `version`, `index` (EVAL_PAD_INDEX on padding)
  and bool `mask` (False on padding). Every process yields the same number of
  batches. `seed` only feeds the rng handed to `source.examples`. Batches are
  built `prefetch` ahead in a background thread; `close()` on the returned
  iterator stops it early.
  """
  _check_shares(global_batch_size, process_index, process_count)
  if max_versions is not None and max_versions < 1:
    raise ValueError(f"max_versions must be >= 1, got {max_versions}")
  if split not in source.info.splits:
    raise ValueError(f"{source.info.name} has no split {split!r} "
                     f"(splits: {source.info.splits})")
  producer = _EvalProducer(source, split, global_batch_size, process_index,
                           process_count, max_versions, seed)
  return _EvalIterator(producer, prefetch)


class _EvalIterator:
  """The iterator `eval_batches` returns; `close()` stops its thread early."""

  def __init__(self, producer: _EvalProducer, prefetch: int):
    if prefetch < 0:
      raise ValueError(f"prefetch must be >= 0, got {prefetch}")
    self._producer = producer
    self._it = _prefetched(producer, prefetch) if prefetch else producer
    if prefetch:
      _LIVE.add(self)

  def __iter__(self) -> "_EvalIterator":
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    if self._it is None:
      raise StopIteration
    try:
      return next(self._it)
    except StopIteration:
      self.close()
      raise

  def close(self) -> None:
    it, self._it = self._it, None
    if it is not None and it is not self._producer:
      it.close()


def make_global_batch(local_batch: Mapping[str, np.ndarray] | Any,
                      mesh: jax.sharding.Mesh,
                      data_axis: str | Sequence[str] = "data") -> Any:
  """Global jax.Arrays, sharded on the leading (batch) dim over `data_axis`.

  Each process passes its own share (what `TrainIterator`/`eval_batches` yield
  with process_index=jax.process_index(), process_count=jax.process_count());
  the global batch dimension is the concatenation of the shares in process
  order. Works unchanged in a single process. `data_axis` may be a tuple of mesh
  axis names to shard the batch over several axes.
  """
  axes = data_axis if isinstance(data_axis, str) else tuple(data_axis)

  def put(x):
    x = np.asarray(x)
    spec = jax.sharding.PartitionSpec(axes, *([None] * (x.ndim - 1)))
    sharding = jax.sharding.NamedSharding(mesh, spec)
    return jax.make_array_from_process_local_data(sharding, x)

  return jax.tree.map(put, local_batch)
