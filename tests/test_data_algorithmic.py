"""Tests for recur.data.algorithmic: labels, padding, splits, determinism."""
from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

from recur.data import algorithmic
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
