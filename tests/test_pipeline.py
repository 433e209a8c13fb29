"""Tests for recur.data.pipeline with toy PuzzleSources."""
import os

# Fake CPU devices for the sharding test; only effective if JAX is not yet
# initialised by another test module in the same process.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import collections
import json
import subprocess
import sys
import threading
import time

import jax
import numpy as np
import pytest

from recur.data import base
from recur.data import pipeline

SEQ_LEN = 6


class ToySource:
  """Group g has `versions[g]` versions; version v has `sizes[g][v]` examples.

  Tokens encode what the example is: inputs = [g, v, i, r, 7, 7] where r is
  drawn from the rng the pipeline hands over (checks that rng is deterministic);
  labels = inputs + 1. Every (g, v) has its own puzzle identifier.
  """

  def __init__(self, sizes, name="toy", record=False):
    self.sizes = [list(s) for s in sizes]
    self.offsets = np.cumsum([0] + [len(s) for s in self.sizes])
    self.info = base.DatasetInfo(
        name=name, seq_len=SEQ_LEN, vocab_size=10_000,
        num_puzzle_identifiers=1 + int(self.offsets[-1]),
        splits=("train", "test"))
    self.calls = [] if record else None
    self._thread_ids = set()

  def num_groups(self, split):
    return len(self.sizes)

  def num_versions(self, split, group):
    return len(self.sizes[group])

  def puzzle_id(self, group, version):
    return 1 + int(self.offsets[group]) + version

  def examples(self, split, group, version, rng):
    if self.calls is not None:
      self.calls.append((group, version))
    out = []
    for i in range(self.sizes[group][version]):
      r = int(rng.integers(1000))
      inputs = np.array([group, version, i, r, 7, 7], np.int32)
      out.append(base.Example(inputs=inputs, labels=inputs + 1,
                              puzzle_identifier=self.puzzle_id(group, version),
                              group=group, version=version, index=i))
    return out

  def group_name(self, split, group):
    return f"g{group}"

  def describe(self):
    return {"name": self.info.name}


def uniform_source(num_groups=12, num_versions=3, size=2, **kw):
  return ToySource([[size] * num_versions] * num_groups, **kw)


def ragged_source(**kw):
  rng = np.random.default_rng(123)
  sizes = [list(rng.integers(1, 6, size=rng.integers(1, 5))) for _ in range(17)]
  return ToySource(sizes, **kw)


def take(it, n):
  return [next(it) for _ in range(n)]


def assert_batches_equal(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert x.keys() == y.keys()
    for k in x:
      np.testing.assert_array_equal(x[k], y[k], err_msg=k)


def rows(batch):
  """(group, version, index) of every row of a batch."""
  return [tuple(int(t) for t in r[:3]) for r in batch["inputs"]]


class TestTrainIterator:

  def test_uniform_epochs_visit_every_group_once(self):
    # Given 12 groups x 2 examples and a batch of 8: 3 batches per epoch, no
    # truncation, no drop.
    src = uniform_source()
    it = pipeline.TrainIterator(src, 8, seed=0, prefetch=0)
    assert it.steps_per_epoch == 3
    for epoch in range(3):
      # When one epoch is drawn
      batches = take(it, 3)
      assert it.epoch == epoch
      seen = collections.defaultdict(set)
      for b in batches:
        assert b["inputs"].shape == (8, SEQ_LEN)
        assert b["inputs"].dtype == np.int32
        assert b["labels"].dtype == np.int32
        assert b["puzzle_identifiers"].shape == (8,)
        assert b["puzzle_identifiers"].dtype == np.int32
        np.testing.assert_array_equal(b["labels"], b["inputs"] + 1)
        for (g, v, i), pid in zip(rows(b), b["puzzle_identifiers"]):
          assert pid == src.puzzle_id(g, v)
          seen[g].add((v, i))
      # Then every group appears once, with one version and all its examples.
      assert sorted(seen) == list(range(12))
      for g, vi in seen.items():
        assert len({v for v, _ in vi}) == 1
        assert {i for _, i in vi} == {0, 1}
    assert it.examples_seen == 9 * 8
    assert it.batches_seen == 9

  def test_ragged_follows_reference_packing(self):
    # Given groups of 1..5 examples per version and a batch of 7.
    src = ragged_source(record=True)
    g_count = src.num_groups("train")
    it = pipeline.TrainIterator(src, 7, seed=3, prefetch=0)
    batches, epochs = [], []
    while len(src.calls) < 3 * g_count:
      batches.append(next(it))
      epochs.append(it.epoch)
    # Then each epoch asks for every group exactly once, in a shuffled order.
    calls = src.calls[:3 * g_count]
    orders = [[g for g, _ in calls[e * g_count:(e + 1) * g_count]]
              for e in range(3)]
    for order in orders:
      assert sorted(order) == list(range(g_count))
    assert orders[0] != orders[1] != orders[2]
    # And batches are exactly the reference packing of that call sequence:
    # contiguous runs per group, only the last run of a batch truncated, no
    # leftovers carried over, and the incomplete end-of-epoch batch dropped.
    expected = []
    for e in range(3):
      current = []
      for g, v in calls[e * g_count:(e + 1) * g_count]:
        n = min(src.sizes[g][v], 7 - len(current))
        current += [(g, v)] * n
        if len(current) == 7:
          expected.append((e, current))
          current = []
    got = [(e, [(g, v) for g, v, _ in rows(b)])
           for e, b in zip(epochs, batches)]
    assert got[:len(expected)] == expected
    for b in batches:
      counts = collections.Counter((g, v) for g, v, _ in rows(b))
      for (g, v), n in counts.items():
        # Indices are distinct and come from that version.
        idx = [i for gg, vv, i in rows(b) if (gg, vv) == (g, v)]
        assert len(set(idx)) == n
        assert all(0 <= i < src.sizes[g][v] for i in idx)

  def test_versions_are_drawn_at_random(self):
    src = uniform_source(num_groups=4, num_versions=5, size=2)
    it = pipeline.TrainIterator(src, 8, seed=0, prefetch=0)
    versions = {rows(b)[0][1] for b in take(it, 40)}
    assert len(versions) > 1

  def test_examples_shuffled_and_truncated_at_random(self):
    # Given versions of 4 examples: a batch of 4 holds one group, a batch of 3
    # truncates each group to a random subset, as the reference's
    # np.random.choice(size, n, replace=False) does.
    src = uniform_source(num_groups=8, num_versions=1, size=4)
    full = take(pipeline.TrainIterator(src, 4, seed=0, prefetch=0), 16)
    orders = {tuple(i for _, _, i in rows(b)) for b in full}
    assert all(sorted(o) == [0, 1, 2, 3] for o in orders)
    assert len(orders) > 1
    cut = take(pipeline.TrainIterator(src, 3, seed=0, prefetch=0), 16)
    subsets = {frozenset(i for _, _, i in rows(b)) for b in cut}
    assert all(len(s) == 3 for s in subsets)
    assert len(subsets) > 1

  @pytest.mark.parametrize("process_count", [2, 3, 4])
  def test_global_batch_independent_of_process_count(self, process_count):
    src = ragged_source()
    single = take(pipeline.TrainIterator(src, 12, seed=5, prefetch=0), 10)
    shares = [take(pipeline.TrainIterator(src, 12, seed=5, process_index=p,
                                          process_count=process_count,
                                          prefetch=0), 10)
              for p in range(process_count)]
    for k in range(10):
      for key in single[k]:
        assert shares[0][k][key].shape[0] == 12 // process_count
        joined = np.concatenate([s[k][key] for s in shares])
        np.testing.assert_array_equal(joined, single[k][key], err_msg=key)

  def test_deterministic_from_seed(self):
    src = ragged_source()
    a = take(pipeline.TrainIterator(src, 7, seed=11, prefetch=0), 12)
    b = take(pipeline.TrainIterator(src, 7, seed=11, prefetch=3), 12)
    c = take(pipeline.TrainIterator(src, 7, seed=12, prefetch=0), 12)
    assert_batches_equal(a, b)
    assert any(not np.array_equal(x["inputs"], y["inputs"])
               for x, y in zip(a, c))

  @pytest.mark.parametrize("prefetch", [0, 2])
  @pytest.mark.parametrize("k", [1, 2, 3, 4, 7])
  def test_resume_mid_epoch_and_across_epochs(self, prefetch, k):
    # Given a ragged source with 3-4 batches per epoch, k spans mid-epoch and
    # epoch-boundary positions.
    src = ragged_source()
    reference = take(pipeline.TrainIterator(src, 7, seed=2, prefetch=0), k + 6)
    it = pipeline.TrainIterator(src, 7, seed=2, prefetch=prefetch)
    assert_batches_equal(take(it, k), reference[:k])
    if prefetch:
      time.sleep(0.05)  # let the producer run ahead of the consumer
    # When the state is saved through JSON and loaded into a new iterator
    state = json.loads(json.dumps(it.get_state()))
    assert state["batches"] == k
    it.close()
    resumed = pipeline.TrainIterator(src, 7, seed=2, prefetch=prefetch)
    resumed.set_state(state)
    assert resumed.get_state() == state
    # Then it continues with exactly the batches that came next.
    assert_batches_equal(take(resumed, 6), reference[k:])
    assert resumed.batches_seen == k + 6
    resumed.close()

  def test_resume_crosses_epoch_boundary(self):
    src = ragged_source()
    ref_it = pipeline.TrainIterator(src, 7, seed=2, prefetch=0)
    epochs = []
    for _ in range(12):
      next(ref_it)
      epochs.append(ref_it.epoch)
    # The batch right before an epoch change.
    k = next(i for i in range(1, 12) if epochs[i] != epochs[i - 1])
    assert epochs[k] == epochs[k - 1] + 1
    reference = take(pipeline.TrainIterator(src, 7, seed=2, prefetch=0), k + 3)
    it = pipeline.TrainIterator(src, 7, seed=2, prefetch=2)
    take(it, k)
    state = json.loads(json.dumps(it.get_state()))
    assert state["epoch"] == epochs[k - 1]
    resumed = pipeline.TrainIterator(src, 7, seed=2, prefetch=2)
    resumed.set_state(state)
    assert_batches_equal(take(resumed, 3), reference[k:])
    assert resumed.epoch == epochs[k + 2]
    it.close()
    resumed.close()

  def test_set_state_on_running_prefetcher_and_other_process_count(self):
    src = ragged_source()
    reference = take(pipeline.TrainIterator(src, 8, seed=9, prefetch=0), 10)
    it = pipeline.TrainIterator(src, 8, seed=9, prefetch=2)
    take(it, 5)
    state = it.get_state()
    # Rewinding a running prefetching iterator replays the same batches.
    take(it, 3)
    it.set_state(state)
    assert_batches_equal(take(it, 5), reference[5:])
    it.close()
    # The state does not depend on process_count: resume on 2 processes.
    shares = []
    for p in range(2):
      r = pipeline.TrainIterator(src, 8, seed=9, process_index=p,
                                 process_count=2, prefetch=0)
      r.set_state(state)
      shares.append(take(r, 5))
    for k in range(5):
      np.testing.assert_array_equal(
          np.concatenate([s[k]["inputs"] for s in shares]),
          reference[5 + k]["inputs"])

  def test_state_is_small_and_checked(self):
    src = ragged_source()
    it = pipeline.TrainIterator(src, 7, seed=2, prefetch=0)
    take(it, 3)
    state = it.get_state()
    assert len(json.dumps(state)) < 300
    assert state["format"] == pipeline.STATE_FORMAT
    with pytest.raises(ValueError, match="seed"):
      pipeline.TrainIterator(src, 7, seed=3, prefetch=0).set_state(state)
    with pytest.raises(ValueError, match="global_batch_size"):
      pipeline.TrainIterator(src, 14, seed=2, prefetch=0).set_state(state)

  def test_thread_prefetch_runs_in_background(self):
    src = ragged_source()
    it = pipeline.TrainIterator(src, 7, seed=0, prefetch=2)
    main = threading.get_ident()
    original = src.examples
    threads = set()

    def spy(*args):
      threads.add(threading.get_ident())
      return original(*args)

    src.examples = spy
    take(it, 3)
    it.close()
    assert threads and main not in threads

  def test_numpy_seed_gives_json_state(self):
    it = pipeline.TrainIterator(uniform_source(), np.int64(8), np.int64(4),
                                prefetch=0)
    next(it)
    assert json.loads(json.dumps(it.get_state()))["seed"] == 4

  def test_unclosed_iterators_exit_quietly(self):
    # Given prefetching iterators left open at interpreter exit.
    script = (
        "from tests.test_pipeline import ragged_source\n"
        "from recur.data import pipeline\n"
        "it = pipeline.TrainIterator(ragged_source(), 7, seed=0); next(it)\n"
        "ev = pipeline.eval_batches(ragged_source(), 4); next(ev)\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    # When the process ends, then it ends cleanly, with nothing on stderr.
    out = subprocess.run([sys.executable, "-c", script], cwd=root,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""

  def test_errors(self):
    src = uniform_source()
    with pytest.raises(ValueError, match="divisible"):
      pipeline.TrainIterator(src, 7, seed=0, process_count=2)
    with pytest.raises(ValueError, match="process_index"):
      pipeline.TrainIterator(src, 8, seed=0, process_index=2, process_count=2)
    with pytest.raises(ValueError, match="fewer than"):
      next(pipeline.TrainIterator(uniform_source(num_groups=2), 8, seed=0,
                                  prefetch=0))
    # An error in the background thread reaches the consumer.
    with pytest.raises(ValueError, match="fewer than"):
      next(pipeline.TrainIterator(uniform_source(num_groups=2), 8, seed=0,
                                  prefetch=2))

    class BadSource(ToySource):
      def examples(self, split, group, version, rng):
        exs = super().examples(split, group, version, rng)
        return [base.Example(e.inputs[:3], e.labels[:3], e.puzzle_identifier,
                             e.group, e.version, e.index) for e in exs]

    with pytest.raises(base.DataError, match="expected"):
      next(pipeline.TrainIterator(BadSource([[2]] * 8), 4, seed=0, prefetch=0))


class TestEvalBatches:

  @pytest.mark.parametrize("batch,max_versions", [(5, None), (4, None),
                                                  (6, 2), (40, None)])
  def test_covers_every_example_once(self, batch, max_versions):
    src = ragged_source()
    expected = [(g, v, i) for g in range(src.num_groups("test"))
                for v in range(len(src.sizes[g]))
                if max_versions is None or v < max_versions
                for i in range(src.sizes[g][v])]
    batches = list(pipeline.eval_batches(src, batch, max_versions=max_versions))
    assert len(batches) == -(-len(expected) // batch)
    got = []
    for b in batches:
      for key, shape in [("inputs", (batch, SEQ_LEN)), ("labels",
                                                        (batch, SEQ_LEN))]:
        assert b[key].shape == shape and b[key].dtype == np.int32
      for key in ("puzzle_identifiers", "group", "version", "index"):
        assert b[key].shape == (batch,) and b[key].dtype == np.int32
      assert b["mask"].dtype == bool
      for r in np.flatnonzero(b["mask"]):
        g, v, i = (int(b["group"][r]), int(b["version"][r]),
                   int(b["index"][r]))
        assert rows(b)[r] == (g, v, i)
        assert b["puzzle_identifiers"][r] == src.puzzle_id(g, v)
        got.append((g, v, i))
      pad = ~b["mask"]
      assert (b["inputs"][pad] == base.PAD_ID).all()
      assert (b["labels"][pad] == base.IGNORE_LABEL_ID).all()
      assert (b["puzzle_identifiers"][pad] == base.BLANK_PUZZLE_ID).all()
      assert (b["group"][pad] == pipeline.EVAL_PAD_INDEX).all()
    # Every (group, version, example) exactly once, in order; padding only at
    # the end.
    assert got == expected
    masks = np.concatenate([b["mask"] for b in batches])
    assert masks.sum() == len(expected) and masks[:len(expected)].all()

  def test_process_shares_and_determinism(self):
    src = ragged_source()
    single = list(pipeline.eval_batches(src, 12, prefetch=0))
    shares = [list(pipeline.eval_batches(src, 12, process_index=p,
                                         process_count=3))
              for p in range(3)]
    assert all(len(s) == len(single) for s in shares)
    for k, b in enumerate(single):
      for key in b:
        np.testing.assert_array_equal(
            np.concatenate([s[k][key] for s in shares]), b[key], err_msg=key)

  def test_abandoned_eval_stops_its_thread(self):
    src = ragged_source()
    before = threading.active_count()
    gen = pipeline.eval_batches(src, 4)
    next(gen)
    gen.close()
    assert threading.active_count() == before


class TestMakeGlobalBatch:

  def test_single_device(self):
    mesh = jax.make_mesh((1,), ("data",), devices=jax.devices()[:1])
    src = uniform_source()
    batch = next(pipeline.TrainIterator(src, 8, seed=0, prefetch=0))
    arrays = pipeline.make_global_batch(batch, mesh)
    for key, x in arrays.items():
      assert isinstance(x, jax.Array)
      assert x.sharding.spec[0] == "data"
      np.testing.assert_array_equal(np.asarray(x), batch[key])

  def test_all_devices_with_eval_batch(self):
    n = len(jax.devices())
    mesh = jax.make_mesh((n,), ("data",))
    batch = next(pipeline.eval_batches(ragged_source(), 2 * n))
    arrays = pipeline.make_global_batch(batch, mesh)
    assert arrays["mask"].dtype == bool
    assert arrays["inputs"].shape == (2 * n, SEQ_LEN)
    assert len(arrays["inputs"].addressable_shards) == n
    for shard in arrays["inputs"].addressable_shards:
      assert shard.data.shape == (2, SEQ_LEN)
    for key, x in arrays.items():
      np.testing.assert_array_equal(np.asarray(x), batch[key])


class TestRegistry:

  def test_make_source_builds_a_registered_source(self):
    from recur import data
    assert set(data.source_names()) == {"arc", "sudoku", "maze", "sort", "parity",
                                        "prefix_sum", "state_tracking", "prepared", "tfds"}
    src = data.make_source("parity", n=8, num_train=64, num_test=8)
    assert type(src).__name__ == "ParitySource"
    assert src.info.family == "algorithmic"
    batch = next(pipeline.TrainIterator(src, 16, seed=0, prefetch=0))
    assert batch["inputs"].shape == (16, 8)
    assert data.DatasetInfo is base.DatasetInfo

  def test_unknown_and_missing_sources_are_clear_errors(self, monkeypatch):
    from recur import data
    from recur.puzzles import registry
    with pytest.raises(ValueError, match="unknown data source 'tetris'"):
      data.make_source("tetris")
    monkeypatch.setitem(registry._modules, "ghost", "recur.puzzles.no_such_module")
    monkeypatch.setitem(registry._source_to_family, "ghost_source", "ghost")
    with pytest.raises(ImportError, match="'ghost' needs recur.puzzles.no_such"):
      data.make_source("ghost_source")
