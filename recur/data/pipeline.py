"""The one input pipeline every `PuzzleSource` goes through.

Training (`TrainIterator`) follows the reference sampler (`puzzle_dataset.py`):

* An epoch visits every group of the split once, in an order shuffled from
  `(seed, epoch)`.
* For each group it draws one version at random and takes that version's
  examples (in a random order) with an rng derived from `(seed, epoch, group)`;
  the same rng is handed to `source.examples` for per-epoch randomness such as
  ARC translation.
* `epochs_per_block` epochs (the reference's `eval_interval`, its loader's
  `epochs_per_iter`) are concatenated into one *block*: their group orders are
  put back to back before packing, so batches run across epoch boundaries.
* Examples are packed into the global batch in that order. When a version has
  more examples than the batch has room left, a random subset that fills the
  batch is taken and the rest of that version is dropped: the next batch starts
  with the next group (no leftovers are carried over), as in the reference.
* Only the incomplete batch at the end of a block is dropped, so every batch is
  full and has a fixed shape; the iterator is infinite over blocks. With
  1000 one-example groups and a batch of 768, a block of 5000 epochs gives
  6510 batches (1.302 per epoch; every group in every epoch), where one-epoch
  blocks would give 1 batch per epoch and skip 232 groups each time.

`plan(epochs)` says how long a run of `epochs` epochs is in the reference's
terms (`RunPlan`): the schedule horizon `total_steps = int(epochs * groups *
mean examples per version / global batch)` (pretrain.py) and the number of
batches the blocks actually yield (the reference's loop ends when its loader
does; its `train_batch` also ignores batches past total_steps).

The global batch depends only on `(seed, batch number)`, never on
`process_count` or timing; process `p` receives rows `[p*B_local, (p+1)*B_local)`
of it and only copies those rows (it still calls `source.examples` for every
group of the batch, to know how many rows each group takes).

Resumable state (`TrainIterator.get_state`) is a small JSON-serialisable dict:

    {"format": "recur.pipeline.train/2", "split": "train", "seed": 0,
     "global_batch_size": 768, "num_groups": 960, "epochs_per_block": 1,
     "block": 3, "position": 412, "epoch": 3, "batches": 1234}

`position` is the number of groups of block `block`'s concatenated order
already consumed; `epoch` (derived, for display) is the epoch of the last group
consumed; `batches` counts batches handed out. Since no leftovers are carried
over, (block, position) is the whole producer state. A `train/1` state (from
before blocks, one epoch each) loads into an iterator with epochs_per_block=1. The state is the same on every process and does not depend on
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
padded (`mask` False, `group`/`version`/`index` -1 on padding rows). Sources
with `encode_rows` get the same rows from one `encode_rows` call per batch for
this process's share (the rng of `examples` becomes a hash of (seed, group,
version) there: only ARC's per-epoch translation of the train split uses it).

`make_global_batch` turns each process's numpy share into global `jax.Array`s
sharded along the batch dimension.
"""
from __future__ import annotations

import atexit
import dataclasses
import threading
import weakref
from typing import Any, Iterator, Mapping, Sequence

import jax
import numpy as np

from recur.data import keys
from recur.data.base import (BLANK_PUZZLE_ID, IGNORE_LABEL_ID, PAD_ID, DataError,
                             Example, PuzzleSource)

__all__ = ["TrainIterator", "RunPlan", "plan_run", "eval_batches",
           "make_global_batch", "STATE_FORMAT", "EVAL_PAD_INDEX"]

STATE_FORMAT = "recur.pipeline.train/2"
_STATE_FORMAT_V1 = "recur.pipeline.train/1"  # one epoch per block
EVAL_PAD_INDEX = -1  # group/version/index of eval padding rows

# Domain tags keep the group-order stream and the per-group streams apart.
_ORDER_STREAM = 0
_GROUP_STREAM = 1
_EVAL_STREAM = 2
_VERSION_STREAM = 3   # the version drawn for a group in an epoch
_PICK_STREAM = 4      # the order of a group's examples in an epoch
_EPOCH_STREAM = 5     # per-epoch randomness handed to sources (encode_rows)
# Fields of the state that must match the iterator it is loaded into.
_CONFIG_KEYS = ("split", "seed", "global_batch_size", "num_groups",
                "epochs_per_block")


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

  Works on local copies of (block, position) and commits them only once a
  batch is complete, so `get_state` is always at a batch boundary.
  """

  def __init__(self, source: PuzzleSource, split: str, global_batch_size: int,
               seed: int, process_index: int, process_count: int,
               lock: threading.Lock, epochs_per_block: int = 1):
    self._source = source
    self._split = split
    self._global = global_batch_size
    self._local = global_batch_size // process_count
    self._lo = process_index * self._local
    self._seed = seed
    self._lock = lock
    self._per_block = epochs_per_block
    self._num_groups = source.num_groups(split)
    if self._num_groups < 1:
      raise ValueError(f"{source.info.name}/{split} has no groups")
    self._block_len = self._per_block * self._num_groups
    self._block = 0
    self._position = 0
    self._batches = 0
    self._order_cache: tuple[int, np.ndarray] | None = None
    # Sources with `encode_rows` and `example_counts` (every version of a
    # group has as many examples) take the vectorised path.
    self._fast = (hasattr(source, "encode_rows")
                  and hasattr(source, "example_counts"))
    if self._fast:
      self._counts, self._versions = _group_counts(source, split)
    if self._fast and (self._versions < 1).any():
      raise DataError(f"{source.info.name}/{split} group "
                      f"{int(np.argmax(self._versions < 1))} has no versions")

  def _order(self, epoch: int) -> np.ndarray:
    if self._order_cache is None or self._order_cache[0] != epoch:
      self._order_cache = (epoch, _group_order(self._seed, epoch,
                                               self._num_groups))
    return self._order_cache[1]

  def _at(self, block: int, position: int) -> tuple[int, int]:
    """(epoch, group) at `position` of `block`'s concatenated order."""
    epoch = block * self._per_block + position // self._num_groups
    return epoch, int(self._order(epoch)[position % self._num_groups])

  def __iter__(self) -> "_Packer":
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    with self._lock:
      return self._next_locked()

  def _next_generic(self) -> dict[str, np.ndarray]:
    """Sources without `encode_rows`: a Generator per group, every group's
    examples asked for (to know their number), only this process's copied."""
    source, split = self._source, self._split
    lo, hi = self._lo, self._lo + self._local
    block, position = self._block, self._position
    while True:
      writer = _RowWriter(source, split, self._local)
      started_at, filled = position, 0
      while filled < self._global and position < self._block_len:
        epoch, group = self._at(block, position)
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
        self._block, self._position = block, position
        self._batches += 1
        return writer.batch()
      if started_at == 0:
        raise ValueError(
            f"{source.info.name}/{split}: a whole block of {self._per_block} "
            f"epoch(s) packs fewer than global_batch_size={self._global} "
            "examples")
      block, position = block + 1, 0

  def _next_locked(self) -> dict[str, np.ndarray]:
    if not self._fast:
      return self._next_generic()
    block, position = self._block, self._position
    while True:
      plan = self._plan_batch(block, position)
      if plan is not None:
        rows, position = plan
        batch = self._encode(rows)
        self._block, self._position = block, position
        self._batches += 1
        return batch
      # Ran out of groups: drop the block's incomplete last batch, as the
      # reference does.
      if position == 0:
        raise ValueError(
            f"{self._source.info.name}/{self._split}: a whole block of "
            f"{self._per_block} epoch(s) packs fewer than global_batch_size="
            f"{self._global} examples")
      block, position = block + 1, 0

  def _plan_batch(self, block: int, position: int):
    """The rows of the global batch starting at `position` of `block`:
    ((epoch, group, version, index) int64 arrays of global_batch_size rows,
    position after it), or None when the block runs out first. Vectorised:
    the only per-group work is in numpy."""
    epochs, groups, takes = [], [], []
    filled = 0
    while filled < self._global:
      if position >= self._block_len:
        return None
      stop = min(position + self._global - filled, self._block_len)
      pos = np.arange(position, stop)
      ep = self._block_first_epoch(block) + pos // self._num_groups
      grp = np.empty_like(pos)
      for e in np.unique(ep):
        at = ep == e
        grp[at] = self._order(int(e))[pos[at] % self._num_groups]
      cnt = np.minimum(self._counts[grp], self._global)
      ends = filled + np.cumsum(cnt)
      j = int(np.searchsorted(ends, self._global, side="left"))
      if j < len(pos):  # group j fills the batch: its surplus is dropped
        cnt = cnt[:j + 1].copy()
        cnt[j] -= ends[j] - self._global
        pos, ep, grp = pos[:j + 1], ep[:j + 1], grp[:j + 1]
      epochs.append(ep)
      groups.append(grp)
      takes.append(cnt)
      filled += int(cnt.sum())
      position = int(pos[-1]) + 1
    ep, grp, take = (np.concatenate(x) for x in (epochs, groups, takes))
    versions = keys.below(
        keys.hash_ints(self._seed, _VERSION_STREAM, ep, grp),
        self._versions[grp])
    full = self._counts[grp]
    row_ep, row_grp, row_ver = (np.repeat(x, take) for x in (ep, grp, versions))
    if (full == 1).all():
      index = np.zeros(self._global, np.int64)
    else:
      # Each group's examples in a random order (a hash per example); the
      # first `take` of them are used.
      owner = np.repeat(np.arange(len(grp)), full)
      j = np.arange(len(owner)) - np.repeat(np.cumsum(full) - full, full)
      h = keys.hash_ints(self._seed, _PICK_STREAM, np.repeat(ep, full),
                         np.repeat(grp, full), j)
      order = np.lexsort((h, owner))
      rank = np.empty_like(order)
      rank[order] = j
      keep = rank < np.repeat(take, full)
      index = j[order][keep[order]]
    return (row_ep, row_grp, row_ver, index), position

  def _block_first_epoch(self, block: int) -> int:
    return block * self._per_block

  def _encode(self, rows) -> dict[str, np.ndarray]:
    """This process's rows of the planned global batch."""
    ep, grp, ver, idx = (x[self._lo:self._lo + self._local] for x in rows)
    source, split = self._source, self._split
    epoch_keys = keys.hash_ints(self._seed, _EPOCH_STREAM, ep, grp)
    batch = source.encode_rows(split, grp, ver, idx, epoch_keys)
    _check_rows(source, split, batch, len(grp), grp, ver)
    return batch

  def get_state(self) -> dict[str, Any]:
    epoch = (self._block * self._per_block
             + max(self._position - 1, 0) // self._num_groups)
    return {"format": STATE_FORMAT, "split": self._split, "seed": self._seed,
            "global_batch_size": self._global, "num_groups": self._num_groups,
            "epochs_per_block": self._per_block, "block": self._block,
            "position": self._position, "epoch": epoch,
            "batches": self._batches}

  def set_state(self, state: Mapping[str, Any]) -> None:
    state = dict(state)
    if state.get("format") == _STATE_FORMAT_V1:
      # Written before blocks: one epoch per block, `epoch` was the block.
      state.update(format=STATE_FORMAT, epochs_per_block=1,
                   block=state.get("epoch"))
    if state.get("format") != STATE_FORMAT:
      raise ValueError(f"not a {STATE_FORMAT} state: format="
                       f"{state.get('format')!r}")
    mine = self.get_state()
    for key in _CONFIG_KEYS:
      if state.get(key) != mine[key]:
        raise ValueError(f"data state was saved with {key}={state.get(key)!r}, "
                         f"this iterator has {key}={mine[key]!r}")
    block, position, batches = (int(state["block"]), int(state["position"]),
                                int(state["batches"]))
    if block < 0 or batches < 0 or not 0 <= position <= self._block_len:
      raise ValueError(f"invalid data state position: {state}")
    self._block, self._position, self._batches = block, position, batches


@dataclasses.dataclass(frozen=True)
class RunPlan:
  """The length of a run of `epochs` epochs, as the reference computes it.

  `schedule_steps` is pretrain.py's `total_steps` (the LR schedule's horizon);
  `steps` the batches the run trains on: those the `epochs / epochs_per_block`
  blocks yield, at most `schedule_steps` (the reference's loop ends with its
  loader and skips batches past total_steps).
  """
  epochs: int
  epochs_per_block: int
  num_groups: int
  mean_examples: float          # per version, over every version of the split
  schedule_steps: int
  steps: int
  batches_per_block: tuple[int, ...]

  @property
  def batches_per_epoch(self) -> float:
    return sum(self.batches_per_block) / max(self.epochs, 1)

  def describe(self) -> str:
    return (f"{self.epochs} epochs in {len(self.batches_per_block)} block(s) of "
            f"{self.epochs_per_block}: {self.batches_per_epoch:.4g} batches per "
            f"epoch, {self.steps} steps (LR schedule over {self.schedule_steps}; "
            f"{self.num_groups} groups x {self.mean_examples:.4g} examples per "
            "version)")


def _group_counts(source: PuzzleSource, split: str
                  ) -> tuple[np.ndarray, np.ndarray]:
  """Examples of version 0 and number of versions, per group."""
  n = source.num_groups(split)
  versions = np.array([source.num_versions(split, g) for g in range(n)],
                      np.int64).reshape(n)
  if hasattr(source, "example_counts"):
    return np.asarray(source.example_counts(split), np.int64), versions
  counts = np.zeros(n, np.int64)
  for g in range(n):
    counts[g] = len(source.examples(split, g, 0, _group_rng(0, 0, g)))
  return counts, versions


def _check_rows(source: PuzzleSource, split: str, batch: Mapping[str, Any],
                rows: int, groups: np.ndarray, versions: np.ndarray) -> None:
  """What `encode_rows` returned has the promised shapes, dtypes and ids."""
  info = source.info
  for key, shape in (("inputs", (rows, info.seq_len)),
                     ("labels", (rows, info.seq_len)),
                     ("puzzle_identifiers", (rows,))):
    x = batch.get(key)
    if x is None or x.shape != shape or x.dtype != np.int32:
      raise DataError(
          f"{info.name}/{split}: encode_rows gave {key} "
          f"{None if x is None else (x.shape, str(x.dtype))}, expected "
          f"int32 {shape}")
  ids = batch["puzzle_identifiers"]
  bad = (ids < 0) | (ids >= info.num_puzzle_identifiers)
  if bad.any():
    k = int(np.argmax(bad))
    raise DataError(
        f"{info.name}/{split} group {groups[k]} version {versions[k]}: "
        f"puzzle_identifier {ids[k]} outside [0, {info.num_puzzle_identifiers})")


def _examples_per_epoch(counts: np.ndarray, versions: np.ndarray) -> float:
  """total_groups * mean_puzzle_examples, the reference's metadata product."""
  mean = float((counts * versions).sum()) / max(int(versions.sum()), 1)
  return len(counts) * mean


def _batches_in_block(counts_in_order: np.ndarray, global_batch_size: int) -> int:
  """Full batches the packer makes from groups of these sizes, in this order:
  a batch ends with the group that fills it (its surplus dropped)."""
  sizes = np.minimum(counts_in_order, global_batch_size)
  if sizes.size and (sizes == sizes[0]).all():
    k = int(sizes[0])
    if k == 0:
      return 0
    return sizes.size // -(-global_batch_size // k)
  ends = np.cumsum(sizes)
  batches, base, n = 0, 0, sizes.size
  while True:
    j = int(np.searchsorted(ends, base + global_batch_size, side="left"))
    if j >= n:
      return batches
    batches, base = batches + 1, int(ends[j])


def plan_run(source: PuzzleSource, epochs: int, global_batch_size: int,
             epochs_per_block: int = 1, seed: int = 0,
             split: str = "train") -> RunPlan:
  """The `RunPlan` of `epochs` epochs of `TrainIterator`s with these settings.

  Every version of a group must have the same number of examples (true of
  every family here: a version is a transform of the same puzzle); the
  batches of a block then depend only on its group order, which is known from
  the seed, so the count is exact. Blocks of groups all of one size need no
  order at all (Sudoku, Maze: 1000 * epochs_per_block // 768 per block).
  """
  if epochs < 1:
    raise ValueError(f"epochs must be >= 1, got {epochs}")
  if epochs % epochs_per_block:
    raise ValueError(
        f"epochs={epochs} is not a multiple of epochs_per_block="
        f"{epochs_per_block} (the reference asserts the same of eval_interval)")
  counts, versions = _group_counts(source, split)
  n = len(counts)
  per_epoch = _examples_per_epoch(counts, versions)
  schedule = int(epochs * per_epoch / global_batch_size)
  blocks = []
  uniform = bool((np.minimum(counts, global_batch_size) == min(
      int(counts[0]), global_batch_size)).all())
  for b in range(epochs // epochs_per_block):
    if uniform and blocks:
      blocks.append(blocks[0])
      continue
    first = b * epochs_per_block
    order = (np.zeros(n * epochs_per_block, np.int64) if uniform else
             np.concatenate([_group_order(seed, first + e, n)
                             for e in range(epochs_per_block)]))
    blocks.append(_batches_in_block(counts[order], global_batch_size))
  return RunPlan(epochs=epochs, epochs_per_block=epochs_per_block,
                 num_groups=n, mean_examples=per_epoch / n,
                 schedule_steps=schedule,
                 steps=min(schedule, sum(blocks)),
                 batches_per_block=tuple(blocks))


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
               prefetch: int = 2, split: str = "train",
               epochs_per_block: int = 1):
    if epochs_per_block < 1:
      raise ValueError(f"epochs_per_block must be >= 1, got {epochs_per_block}")
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
    self.epochs_per_block = int(epochs_per_block)
    self._packer = _Packer(source, split, self.global_batch_size, self.seed,
                           process_index, process_count, self._lock,
                           self.epochs_per_block)
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
    """Reference estimate: examples per epoch // global batch size (>= 1)."""
    with self._lock:
      counts, versions = _group_counts(self.source, self.split)
    return max(1, int(_examples_per_epoch(counts, versions))
               // self.global_batch_size)

  def plan(self, epochs: int) -> "RunPlan":
    """How many steps `epochs` epochs are, in the reference's terms."""
    with self._lock:
      return plan_run(self.source, epochs, self.global_batch_size,
                      self.epochs_per_block, self.seed, self.split)

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
    # Sources with `encode_rows` (as in training): each batch's rows are
    # computed in numpy and only this process's are encoded, in one call.
    self._fast = (hasattr(source, "encode_rows")
                  and hasattr(source, "example_counts"))
    if self._fast:
      counts, versions = _group_counts(source, split)
      if max_versions is not None:
        versions = np.minimum(versions, max_versions)
      self._counts = counts
      self._group_rows = counts * versions
      self._group_end = np.cumsum(self._group_rows)
      self._row = 0  # next global row

  def _next_fast(self) -> dict[str, np.ndarray]:
    total = int(self._group_end[-1]) if len(self._group_end) else 0
    if self._row >= total:
      raise StopIteration
    start = self._row
    self._row = min(start + self._global, total)
    source, split = self._source, self._split
    local = np.arange(start + self._lo, start + self._lo + self._local)
    local = local[local < self._row]
    group = np.searchsorted(self._group_end, local, side="right")
    within = local - (self._group_end[group] - self._group_rows[group])
    version, index = within // self._counts[group], within % self._counts[group]
    writer = _RowWriter(source, split, self._local)
    meta = {k: np.full((self._local,), EVAL_PAD_INDEX, np.int32)
            for k in ("group", "version", "index")}
    mask = np.zeros((self._local,), bool)
    n = len(local)
    if n:
      rows = source.encode_rows(split, group, version, index, keys.hash_ints(
          self._seed, _EVAL_STREAM, group, version))
      _check_rows(source, split, rows, n, group, version)
      writer.inputs[:n] = rows["inputs"]
      writer.labels[:n] = rows["labels"]
      writer.puzzle_identifiers[:n] = rows["puzzle_identifiers"]
      meta["group"][:n], meta["version"][:n], meta["index"][:n] = (
          group, version, index)
      mask[:n] = True
    self._batches += 1
    return {**writer.batch(), **meta, "mask": mask}

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
    if self._fast:
      return self._next_fast()
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

