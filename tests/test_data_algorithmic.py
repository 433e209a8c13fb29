"""Tests for recur.puzzles.algorithmic: labels, padding, splits, determinism."""
import itertools
import math

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

from recur.puzzles.algorithmic import source as algorithmic
from recur.data.base import IGNORE_LABEL_ID, PAD_ID


def _values_and_answer(ex):
  n = int((ex.inputs != PAD_ID).sum())
  np.testing.assert_array_equal(ex.inputs[n:], PAD_ID)
  np.testing.assert_array_equal(ex.labels[n:], IGNORE_LABEL_ID)
  return ex.inputs[:n] - 1, ex.labels[:n] - 1


class LabelsTest(parameterized.TestCase):

  @parameterized.parameters(4, 17, 64)
  def test_sort(self, n):
    src = algorithmic.SortSource(n, num_values=7, num_train=20, num_test=5)
    self.assertEqual((src.info.seq_len, src.info.vocab_size), (n, 8))
    for group in range(20):
      (ex,) = src.examples("train", group, 0, np.random.default_rng(0))
      values, answer = _values_and_answer(ex)
      self.assertLen(values, n)
      self.assertTrue(values.min() >= 0 and values.max() < 7)
      self.assertEqual(list(answer), sorted(values.tolist()))

  def test_parity(self):
    src = algorithmic.ParitySource(12, num_train=30)
    self.assertEqual(src.info.vocab_size, 3)
    for group in range(30):
      bits, answer = _values_and_answer(src.examples("train", group, 0)[0])
      running = 0
      for i, bit in enumerate(bits):
        running ^= int(bit)
        self.assertEqual(int(answer[i]), running)

  def test_prefix_sum(self):
    src = algorithmic.PrefixSumSource(9, modulus=5, num_train=30)
    self.assertEqual(src.info.vocab_size, 6)
    for group in range(30):
      values, answer = _values_and_answer(src.examples("train", group, 0)[0])
      for i in range(len(values)):
        self.assertEqual(int(answer[i]), int(values[:i + 1].sum()) % 5)

  @parameterized.parameters(2, 3, 5)
  def test_state_tracking_matches_numpy_composition(self, k):
    # Labels are the running products g_1 o ... o g_i, recomputed here by
    # composing the permutation arrays directly (no shared table).
    perms = np.array(list(itertools.permutations(range(k))))
    src = algorithmic.StateTrackingSource(n_min=1, n_max=10, k=k, num_train=40,
                                          num_test=3)
    self.assertEqual((src.info.seq_len, src.info.vocab_size),
                     (10, math.factorial(k) + 1))
    self.assertEqual(src.info.num_puzzle_identifiers, 1)
    for group in range(40):
      (ex,) = src.examples("train", group, 0)
      self.assertEqual(ex.inputs.shape, (10,))
      self.assertEqual(ex.labels.shape, (10,))
      values, answer = _values_and_answer(ex)
      self.assertTrue(1 <= len(values) <= 10)
      self.assertTrue(values.min() >= 0 and values.max() < len(perms))
      state = np.arange(k)
      for i, v in enumerate(values):
        state = state[perms[v]]                    # (P o g)(x) = P(g(x))
        self.assertEqual(perms[answer[i]].tolist(), state.tolist())

  def test_state_tracking_by_hand_and_order_matters(self):
    # S3 in itertools order: 0=id, 1=(0 2 1), 2=(1 0 2), 3=(1 2 0), 4=(2 0 1),
    # 5=(2 1 0). (1 0 2) o (0 2 1) maps 0->1, 1->2, 2->0: (1 2 0) = value 3,
    # but (0 2 1) o (1 0 2) = (2 0 1) = value 4.
    src = algorithmic.StateTrackingSource(3, k=3)
    src._draw = lambda split, group: np.array([2, 1, 0])
    (ex,) = src.examples("train", 0, 0)
    self.assertEqual(ex.inputs.tolist(), [3, 2, 1])
    self.assertEqual(ex.labels.tolist(), [3, 4, 4])
    src._draw = lambda split, group: np.array([1, 2, 0])
    self.assertEqual(src.examples("train", 0, 0)[0].labels.tolist(), [2, 5, 5])

  def test_state_tracking_splits_and_determinism(self):
    a = algorithmic.StateTrackingSource(n_min=2, n_max=5, k=3, num_train=10,
                                        num_test=4, seed=1)
    b = algorithmic.StateTrackingSource(n_min=2, n_max=5, k=3, num_train=50,
                                        num_test=4, seed=1)
    c = algorithmic.StateTrackingSource(n_min=2, n_max=5, k=3, num_train=10,
                                        num_test=4, seed=2)
    self.assertEqual(a.info.splits, ("train", "test", "test_n2", "test_n3",
                                     "test_n4", "test_n5"))
    for group in range(10):
      ea, eb = (s.examples("train", group, 0)[0] for s in (a, b))
      np.testing.assert_array_equal(ea.inputs, eb.inputs)
      np.testing.assert_array_equal(ea.labels, eb.labels)
    self.assertFalse(all(
        np.array_equal(a.examples("train", g, 0)[0].inputs,
                       c.examples("train", g, 0)[0].inputs) for g in range(10)))
    for n in range(2, 6):
      for group in range(4):
        (ex,) = a.examples(f"test_n{n}", group, 0)
        self.assertLen(_values_and_answer(ex)[0], n)
        self.assertEqual(ex.puzzle_identifier, 0)
    self.assertEqual(a.describe()["k"], 3)

  def test_state_tracking_registered(self):
    from recur.data import make_source  # pylint: disable=g-import-not-at-top
    src = make_source("state_tracking", n=6, k=4, num_train=4, num_test=2)
    self.assertIsInstance(src, algorithmic.StateTrackingSource)
    self.assertEqual(src.info.vocab_size, 25)
    with self.assertRaises(ValueError):
      algorithmic.StateTrackingSource(4, k=1)

  def test_fixed_example_by_hand(self):
    # Tokens are value + 1: the parity of bits (1, 1, 0, 1) is (1, 0, 0, 1).
    src = algorithmic.ParitySource(4)
    src._draw = lambda split, group: np.array([1, 1, 0, 1])
    (ex,) = src.examples("train", 0, 0)
    self.assertEqual(ex.inputs.tolist(), [2, 2, 1, 2])
    self.assertEqual(ex.labels.tolist(), [2, 1, 1, 2])


class SplitsTest(parameterized.TestCase):

  def test_size_range_and_per_size_splits(self):
    src = algorithmic.SortSource(n_min=4, n_max=8, num_train=50, num_test=6)
    self.assertEqual(src.info.seq_len, 8)
    self.assertEqual(src.info.splits,
                     ("train", "test", "test_n4", "test_n5", "test_n6", "test_n7",
                      "test_n8"))
    sizes = {src.size_of("train", g) for g in range(50)}
    self.assertEqual(sizes, {4, 5, 6, 7, 8})
    for k in range(4, 9):
      split = f"test_n{k}"
      self.assertEqual(src.num_groups(split), 6)
      for group in range(6):
        (ex,) = src.examples(split, group, 0)
        values, answer = _values_and_answer(ex)
        self.assertLen(values, k)
        self.assertEqual(list(answer), sorted(values.tolist()))
        self.assertEqual(ex.puzzle_identifier, 0)
    with self.assertRaises(KeyError):
      src.num_groups("test_n9")
    with self.assertRaises(IndexError):
      src.examples("train", 50, 0)
    with self.assertRaises(IndexError):
      src.examples("train", 0, 1)

  def test_determinism_and_independence_of_counts(self):
    a = algorithmic.PrefixSumSource(16, modulus=10, num_train=10, seed=3)
    b = algorithmic.PrefixSumSource(16, modulus=10, num_train=100, seed=3)
    c = algorithmic.PrefixSumSource(16, modulus=10, num_train=10, seed=4)
    for group in range(10):
      ea, eb, ec = (s.examples("train", group, 0)[0] for s in (a, b, c))
      np.testing.assert_array_equal(ea.inputs, eb.inputs)
      np.testing.assert_array_equal(ea.labels, eb.labels)
      self.assertFalse(np.array_equal(ea.inputs, ec.inputs))
    # Train and test draw from different streams.
    self.assertFalse(np.array_equal(a.examples("train", 0, 0)[0].inputs,
                                    a.examples("test", 0, 0)[0].inputs))

  def test_bad_arguments(self):
    with self.assertRaises(ValueError):
      algorithmic.SortSource(4, n_min=2, n_max=8)
    with self.assertRaises(ValueError):
      algorithmic.SortSource(n_min=8, n_max=4)
    with self.assertRaises(ValueError):
      algorithmic.PrefixSumSource(4, modulus=1)


if __name__ == "__main__":
  absltest.main()
