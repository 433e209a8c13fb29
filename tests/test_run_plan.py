"""Blocks of epochs and the run length, as the reference's loader and pretrain.py.

The reference (TinyRecursiveModels puzzle_dataset.py) concatenates the group
orders of `eval_interval` epochs before packing, drops only the last incomplete
batch of that block, and sets total_steps = int(epochs * total_groups *
mean_puzzle_examples / global_batch_size).
"""
import collections
import json

import numpy as np
import pytest

from experiments.configs import maze_trm, sudoku_trm
from recur.data import pipeline
from test_pipeline import ToySource, take


def one_example_groups(num_groups, num_versions=3):
  """Sudoku/Maze shape: every version of every group is one example."""
  return ToySource([[1] * num_versions] * num_groups)


def version_uniform_ragged(num_groups=17, seed=5):
  """Groups of 1..5 examples, the same count in each of a group's versions."""
  rng = np.random.default_rng(seed)
  return ToySource([[int(rng.integers(1, 6))] * int(rng.integers(1, 5))
                    for _ in range(num_groups)])


def batches_until_block(it, block):
  """Batches handed out before the iterator's first batch of `block`."""
  n = 0
  while True:
    next(it)
    if it.get_state()["block"] >= block:
      return n
    n += 1


class TestBlocks:

  def test_block_packs_epochs_back_to_back(self):
    # Given 10 one-example groups, a batch of 4, blocks of 3 epochs.
    src = one_example_groups(10)
    it = pipeline.TrainIterator(src, 4, seed=1, prefetch=0, epochs_per_block=3)
    # When the first block is drawn: 30 groups -> 7 full batches, 2 dropped.
    groups = [int(g) for b in take(it, 7) for g in b["inputs"][:, 0]]
    assert it.get_state()["block"] == 0
    assert it.get_state()["epoch"] == 2
    # Then rows follow the three epochs' orders concatenated: batch 3 (rows
    # 8..11) holds the end of epoch 0 and the start of epoch 1.
    orders = np.concatenate([pipeline._group_order(1, e, 10) for e in range(3)])
    assert groups == [int(g) for g in orders[:28]]
    assert sorted(groups[:10]) == list(range(10))
    assert sorted(groups[10:20]) == list(range(10))
    # And the next batch starts block 1 (epochs 3..5), dropping orders[28:30].
    nxt = next(it)
    assert it.get_state()["block"] == 1
    np.testing.assert_array_equal(nxt["inputs"][:, 0],
                                  pipeline._group_order(1, 3, 10)[:4])

  def test_one_epoch_blocks_are_the_old_iterator(self):
    # epochs_per_block=1 drops the incomplete batch of every epoch, as before.
    src = one_example_groups(10)
    it = pipeline.TrainIterator(src, 4, seed=1, prefetch=0)
    first = take(it, 3)
    assert it.epoch == 1
    np.testing.assert_array_equal(first[2]["inputs"][:, 0],
                                  pipeline._group_order(1, 1, 10)[:4])

  @pytest.mark.parametrize("prefetch", [0, 2])
  def test_resume_inside_and_across_blocks(self, prefetch):
    src = version_uniform_ragged()
    make = lambda: pipeline.TrainIterator(src, 7, seed=2, prefetch=prefetch,
                                          epochs_per_block=2)
    reference = take(make(), 30)
    for k in (5, 12, 13, 20):  # block 0 holds 14 batches with this seed
      it = make()
      take(it, k)
      state = json.loads(json.dumps(it.get_state()))
      it.close()
      resumed = make()
      resumed.set_state(state)
      got = take(resumed, 30 - k)
      resumed.close()
      for x, y in zip(got, reference[k:]):
        np.testing.assert_array_equal(x["inputs"], y["inputs"])

  def test_state_checks_block_length_and_reads_v1(self):
    src = version_uniform_ragged()
    it = pipeline.TrainIterator(src, 7, seed=2, prefetch=0, epochs_per_block=2)
    take(it, 3)
    with pytest.raises(ValueError, match="epochs_per_block"):
      pipeline.TrainIterator(src, 7, seed=2, prefetch=0).set_state(
          it.get_state())
    # A state written before blocks existed resumes a one-epoch-block iterator.
    old = pipeline.TrainIterator(src, 7, seed=2, prefetch=0)
    reference = take(old, 6)
    v1 = {"format": "recur.pipeline.train/1", "split": "train", "seed": 2,
          "global_batch_size": 7, "num_groups": 17, "epoch": 0, "position": 0,
          "batches": 0}
    fresh = pipeline.TrainIterator(src, 7, seed=2, prefetch=0)
    fresh.set_state(v1)
    np.testing.assert_array_equal(next(fresh)["inputs"], reference[0]["inputs"])
    with pytest.raises(ValueError, match="epochs_per_block"):
      pipeline.TrainIterator(src, 7, seed=2, prefetch=0,
                             epochs_per_block=2).set_state(v1)


class TestPlan:

  @pytest.mark.parametrize("gb,per_block", [(7, 3), (5, 1), (9, 2), (40, 2)])
  def test_plan_counts_the_batches_the_iterator_yields(self, gb, per_block):
    # Given groups of different sizes (the same in each version), so the
    # number of batches depends on the order and on truncation.
    src = version_uniform_ragged()
    plan = pipeline.plan_run(src, 4 * per_block, gb, per_block, seed=4)
    it = pipeline.TrainIterator(src, gb, seed=4, prefetch=0,
                                epochs_per_block=per_block)
    counted = [batches_until_block(it, b + 1) for b in range(1)]
    for b in range(1, 4):
      counted.append(batches_until_block(it, b + 1) + 1)
    # The first call stops on block 1's first batch, so later blocks count it.
    assert tuple(counted) == plan.batches_per_block
    assert plan.steps == min(plan.schedule_steps, sum(counted))

  def test_schedule_is_the_reference_formula(self):
    # Given 17 groups with (versions, examples) known: mean examples per
    # version is over every version (pretrain.py's mean_puzzle_examples).
    src = version_uniform_ragged()
    counts = np.array([s[0] for s in src.sizes])
    versions = np.array([len(s) for s in src.sizes])
    mean = (counts * versions).sum() / versions.sum()
    plan = pipeline.plan_run(src, 6, 7, 3)
    assert plan.schedule_steps == int(6 * 17 * mean / 7)
    assert plan.mean_examples == pytest.approx(mean)

  @pytest.mark.parametrize("config_module", [sudoku_trm, maze_trm])
  def test_paper_sudoku_and_maze_run_65100_steps(self, config_module):
    # Given the paper config and a stand-in with the 1k sets' counts (1000
    # groups x 1001 one-example versions), without generating 1000 puzzles.
    c = config_module.get_config("paper")
    assert (c.epochs, c.epochs_per_block, c.batch_size) == (50_000, 5_000, 768)
    src = one_example_groups(1000, num_versions=1001)
    plan = pipeline.plan_run(src, c.epochs, c.batch_size, c.epochs_per_block)
    # Then 10 blocks of floor(5e6 / 768) = 6510 batches: 65,100 steps,
    # 1.302 per epoch, under pretrain.py's horizon int(5e7 / 768) = 65,104.
    assert plan.batches_per_block == (6510,) * 10
    assert plan.steps == 65_100
    assert plan.schedule_steps == 65_104
    assert round(plan.batches_per_epoch, 3) == 1.302
    assert "65100 steps" in plan.describe()

  def test_every_puzzle_every_epoch_in_a_block(self):
    # 100 one-example groups, batch 77, 5-epoch block: 6 batches (462 rows),
    # so epochs 0..3 are seen whole and only the tail of epoch 4 is dropped.
    src = one_example_groups(100, num_versions=1)
    it = pipeline.TrainIterator(src, 77, seed=0, prefetch=0, epochs_per_block=5)
    assert it.plan(5).batches_per_block == (6,)
    rows = np.concatenate([b["inputs"][:, 0] for b in take(it, 6)])
    seen = collections.Counter(int(g) for g in rows[:400])
    assert set(seen.values()) == {4} and len(seen) == 100

  def test_errors(self):
    src = one_example_groups(10)
    with pytest.raises(ValueError, match="multiple of epochs_per_block"):
      pipeline.plan_run(src, 5, 4, 2)
    with pytest.raises(ValueError, match="epochs_per_block"):
      pipeline.TrainIterator(src, 4, seed=0, prefetch=0, epochs_per_block=0)
