"""ARC's vectorised rows (recur/puzzles/arc/rows.py): each row is, byte for byte,
the per-example encoding (`augment_grid` then `encode_grid`) of its (group,
version, example) at its offset; offsets follow the reference's translation
rules; the pipeline's shares concatenate to the global batch."""
import numpy as np
import pytest

from recur.data import pipeline
from recur.data.base import IGNORE_LABEL_ID
from recur.puzzles.arc import augment as aa
from recur.puzzles.arc import rows as arc_rows
from recur.puzzles.arc.source import ArcSource


@pytest.fixture(scope="module")
def small():
  # canvas == max grid side: grids that fill the canvas (no EOS row/column),
  # offsets up to the edge, every dihedral id among 40 versions.
  return ArcSource("arc1", num_versions=40, max_tasks=12, max_grid_size=10,
                   canvas=10)


def _per_example(src, split, g, v, i, offset):
  """The oracle: one example built by the per-example helpers."""
  pair = src.pairs(split, g)[i]
  aug = src.augmentation(split, g, v)
  inputs = aa.encode_grid(aa.augment_grid(pair.input, aug), src.canvas, offset)
  if pair.output is None:
    return inputs, np.full_like(inputs, IGNORE_LABEL_ID)
  labels = aa.encode_grid(aa.augment_grid(pair.output, aug), src.canvas, offset)
  labels[labels == aa.PAD] = IGNORE_LABEL_ID
  return inputs, labels


@pytest.mark.parametrize("split", ["train", "test"])
def test_rows_equal_the_per_example_encoding(small, split):
  rng = np.random.default_rng(0)
  counts = small.example_counts(split)
  groups = rng.integers(0, small.num_groups(split), 300)
  versions = np.array([rng.integers(small.num_versions(split, g)) for g in groups])
  indices = np.array([rng.integers(counts[g]) for g in groups])
  rows = small.encode_rows(split, groups, versions, indices,
                           np.zeros(300, np.uint64))
  dihedrals, moved = set(), 0
  for k, (g, v, i) in enumerate(zip(groups, versions, indices)):
    offset = tuple(small.offsets(split, g, v)[i])
    moved += offset != (0, 0)
    dihedrals.add(small.augmentation(split, g, v).dihedral_id)
    inputs, labels = _per_example(small, split, g, v, i, offset)
    assert rows["inputs"][k].tobytes() == inputs.tobytes(), (g, v, i)
    assert rows["labels"][k].tobytes() == labels.tobytes(), (g, v, i)
    assert rows["puzzle_identifiers"][k] == small.puzzle_identifier(split, g, v)
  assert dihedrals == set(range(8))
  assert (moved > 100) == (split == "train")  # the test split is never moved
  for key, dtype in (("inputs", np.int32), ("labels", np.int32),
                     ("puzzle_identifiers", np.int32)):
    assert rows[key].dtype == dtype


def test_offsets_follow_the_reference_rules(small):
  for g in range(small.num_groups("train")):
    pairs = small.pairs("train", g)
    for v in range(0, small.num_versions("train", g), 7):
      off = small.offsets("train", g, v, np.random.default_rng(1))
      # Fixed per version whatever rng the pipeline passes.
      np.testing.assert_array_equal(off, small.offsets("train", g, v, None))
      assert (off == 0).all(axis=1).any()  # one example left at the origin
      aug = small.augmentation("train", g, v)
      for (r0, c0), p in zip(off, pairs):
        shapes = [aa.augment_grid(p.input, aug).shape,
                  aa.augment_grid(p.output, aug).shape]
        assert 0 <= r0 <= small.canvas - max(s[0] for s in shapes)
        assert 0 <= c0 <= small.canvas - max(s[1] for s in shapes)


def test_epoch_mode_draws_from_the_epoch_key():
  src = ArcSource("arc1", num_versions=3, max_tasks=6, max_grid_size=10,
                  canvas=10, translate="epoch")
  n = src.example_counts("train")[2]
  first = src.offsets("train", 2, 1, np.random.default_rng(1))
  np.testing.assert_array_equal(first, src.offsets("train", 2, 1,
                                                   np.random.default_rng(1)))
  assert any(not np.array_equal(first, src.offsets(
      "train", 2, 1, np.random.default_rng(s))) for s in range(2, 6))
  # encode_rows: the same key gives the same rows, another key moves them.
  args = ("train", np.full(n, 2), np.full(n, 1), np.arange(n))
  a = src.encode_rows(*args, np.full(n, 5, np.uint64))
  b = src.encode_rows(*args, np.full(n, 5, np.uint64))
  c = src.encode_rows(*args, np.full(n, 6, np.uint64))
  np.testing.assert_array_equal(a["inputs"], b["inputs"])
  assert not np.array_equal(a["inputs"], c["inputs"])
  none = ArcSource("arc1", num_versions=3, max_tasks=6, max_grid_size=10,
                   canvas=10, translate="none")
  assert not none.offsets("train", 2, 1).any()


def test_bad_rows_name_the_row(small):
  g = small.num_groups("train")
  with pytest.raises(IndexError, match=f"group {g} version 0 example 0"):
    small.encode_rows("train", np.array([0, g]), np.array([0, 0]),
                      np.array([0, 0]), np.zeros(2, np.uint64))
  n = small.example_counts("train")[1]
  with pytest.raises(IndexError, match=f"group 1 version 0 example {n} out"):
    small.encode_rows("train", np.array([1]), np.array([0]), np.array([n]),
                      np.zeros(1, np.uint64))
  with pytest.raises(IndexError, match="version 40 example 0 out of range"):
    small.examples("train", 0, 40)


def test_board_store_windows_never_leak_between_boards():
  # Full-size grids of one colour next to each other in the store: any cell a
  # translation shows outside the grid must be PAD (never the neighbour's).
  c = 4
  grids = [np.full((4, 4), 9, np.uint8), np.full((1, 4), 3, np.uint8),
           np.full((4, 1), 5, np.uint8), np.full((4, 4), 7, np.uint8)]
  store = arc_rows.BoardStore(grids, c)
  for b, g in enumerate(grids, start=1):
    for d in range(8):
      h, w = store.shapes[b, d]
      for r0 in range(c - h + 1):
        for c0 in range(c - w + 1):
          got = store.codes(np.array([b]), np.array([d]), np.array([r0]),
                            np.array([c0]))[0]
          want = np.full((c, c), arc_rows.PAD_CODE, np.uint8)
          want[r0:r0 + h, c0:c0 + w] = g[0, 0]
          if r0 + h < c:
            want[r0 + h, c0:c0 + w] = arc_rows.EOS_CODE
          if c0 + w < c:
            want[r0:r0 + h, c0 + w] = arc_rows.EOS_CODE
          np.testing.assert_array_equal(got, want, err_msg=f"{b} {d} {r0} {c0}")


@pytest.mark.parametrize("process_count", [2, 4])
def test_shares_concatenate_to_the_global_batch(small, process_count):
  whole = pipeline.TrainIterator(small, 16, seed=3, prefetch=0)
  parts = [pipeline.TrainIterator(small, 16, seed=3, process_index=p,
                                  process_count=process_count, prefetch=0)
           for p in range(process_count)]
  for _ in range(6):  # crosses epochs and cuts versions at batch ends
    want = next(whole)
    got = [next(it) for it in parts]
    for key in want:
      assert np.concatenate([x[key] for x in got]).tobytes() == want[key].tobytes()
  assert whole.get_state() == parts[-1].get_state()


class _PerExample:
  """A source without `encode_rows`: the pipeline's per-example path."""

  def __init__(self, source):
    self._source = source
    self.info = source.info

  def __getattr__(self, name):
    if name in ("encode_rows", "example_counts"):
      raise AttributeError(name)
    return getattr(self._source, name)


@pytest.mark.parametrize("split,max_versions", [("test", None), ("train", 2)])
def test_eval_batches_equal_the_per_example_path(small, split, max_versions):
  for process_count in (1, 2):
    for p in range(process_count):
      kw = dict(split=split, process_index=p, process_count=process_count,
                max_versions=max_versions, prefetch=0)
      fast = list(pipeline.eval_batches(small, 16, **kw))
      slow = list(pipeline.eval_batches(_PerExample(small), 16, **kw))
      assert len(fast) == len(slow) > 2
      for a, b in zip(fast, slow):
        assert sorted(a) == sorted(b)
        for key in a:
          assert a[key].dtype == b[key].dtype, key
          assert a[key].tobytes() == b[key].tobytes(), key
