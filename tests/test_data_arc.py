"""Tests for recur.puzzles.arc.source and recur.puzzles.arc.augment."""
import itertools
import json
import logging
import os
import shutil
import tempfile

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

from recur.puzzles.arc import source as arc
from recur.puzzles.arc import augment as aa
from recur.data.base import IGNORE_LABEL_ID, DataError
from recur.puzzles.dihedral import dihedral

SHAPES = [(1, 1), (1, 30), (30, 1), (3, 7), (13, 29), (30, 30)]


def _reference_crop(board: np.ndarray) -> np.ndarray:
  """The reference evaluator's crop loop, restated for comparison."""
  grid = board.reshape(30, 30)
  max_area, max_size, num_c = 0, (0, 0), 30
  for num_r in range(1, 31):
    for c in range(1, num_c + 1):
      if not 2 <= grid[num_r - 1, c - 1] <= 11:
        num_c = c - 1
        break
    if num_r * num_c > max_area:
      max_area, max_size = num_r * num_c, (num_r, num_c)
  return (grid[:max_size[0], :max_size[1]] - 2).astype(np.uint8)


def _random_aug(rng) -> aa.Augmentation:
  return aa.Augmentation(int(rng.integers(8)),
                         (0,) + tuple(int(c) for c in rng.permutation(9) + 1))


def _task_json(train=None, test=None):
  pair = {"input": [[1, 2], [3, 4]], "output": [[4, 3], [2, 1]]}
  return {"train": [dict(pair)] if train is None else train,
          "test": [dict(pair)] if test is None else test}


class AugmentTest(parameterized.TestCase):

  @parameterized.product(tid=list(range(8)), shape=SHAPES)
  def test_inverse_undoes_augment(self, tid, shape):
    rng = np.random.default_rng([tid, *shape])
    for _ in range(3):
      grid = rng.integers(0, 10, size=shape).astype(np.uint8)
      aug = aa.Augmentation(tid, (0,) + tuple(int(c) for c in
                                              rng.permutation(9) + 1))
      out = aa.augment_grid(grid, aug)
      # Then: colours are mapped cell-wise and cells moved like `dihedral`.
      np.testing.assert_array_equal(
          out, dihedral(np.asarray(aug.colours, np.uint8)[grid], tid))
      np.testing.assert_array_equal(aa.inverse_augment_grid(out, aug), grid)

  def test_colour_zero_fixed_and_validation(self):
    with self.assertRaises(ValueError):
      aa.Augmentation(0, (1, 0, 2, 3, 4, 5, 6, 7, 8, 9))
    with self.assertRaises(ValueError):
      aa.Augmentation(8)
    self.assertTrue(aa.Augmentation().is_identity)

  def test_encode_layout(self):
    grid = np.array([[0, 5, 9], [1, 2, 3]], np.uint8)
    board = aa.encode_grid(grid, 30, (4, 6)).reshape(30, 30)
    np.testing.assert_array_equal(board[4:6, 6:9], grid + 2)
    np.testing.assert_array_equal(board[6, 6:9], [1, 1, 1])   # EOS row
    np.testing.assert_array_equal(board[4:6, 9], [1, 1])      # EOS column
    self.assertEqual(board[6, 9], aa.PAD)                     # corner stays PAD
    self.assertEqual(int((board != 0).sum()), 6 + 3 + 2)
    full = aa.encode_grid(np.zeros((30, 30), np.uint8)).reshape(30, 30)
    self.assertTrue(np.all(full == 2))                        # no room for EOS
    tall = aa.encode_grid(np.zeros((30, 4), np.uint8)).reshape(30, 30)
    np.testing.assert_array_equal(tall[:, 4], np.ones(30))
    with self.assertRaises(ValueError):
      aa.encode_grid(grid, 30, (29, 0))

  @parameterized.parameters(*SHAPES)
  def test_encode_decode_round_trip_with_translation(self, rows, cols):
    rng = np.random.default_rng([rows, cols])
    for _ in range(10):
      grid = rng.integers(0, 10, size=(rows, cols)).astype(np.uint8)
      np.testing.assert_array_equal(aa.decode(aa.encode_grid(grid)), grid)
      offset = aa.random_offset(rng, [grid.shape], 30)
      board = aa.encode_grid(grid, 30, offset)
      np.testing.assert_array_equal(aa.decode(board, translated=True), grid)
    small = rng.integers(0, 10, size=(min(rows, 8), min(cols, 8)))
    np.testing.assert_array_equal(
        aa.decode(aa.encode_grid(small, 8), canvas=8), small)

  def test_crop_matches_reference_loop_on_noisy_boards(self):
    rng = np.random.default_rng(0)
    for _ in range(300):
      h, w = rng.integers(1, 31, size=2)
      board = aa.encode_grid(rng.integers(0, 10, size=(h, w))).reshape(30, 30)
      noise = rng.random((30, 30)) < rng.choice([0.0, 0.01, 0.1])
      board = np.where(noise, rng.integers(0, 12, size=(30, 30)), board)
      np.testing.assert_array_equal(aa.crop(board), _reference_crop(board))

  def test_versions_identity_first_unique_deterministic(self):
    rng = np.random.default_rng(1)
    grids = [rng.integers(0, 10, size=(5, 6)) for _ in range(4)]
    augs = aa.generate_augmentations(grids, "abc", 0, 300)
    self.assertLen(augs, 300)
    self.assertTrue(augs[0].is_identity)
    keys = {aa.task_key([aa.augment_grid(g, a) for g in grids]) for a in augs}
    self.assertLen(keys, 300)
    self.assertEqual(augs, aa.generate_augmentations(grids, "abc", 0, 300))
    self.assertNotEqual(augs, aa.generate_augmentations(grids, "abc", 1, 300))
    self.assertNotEqual(augs, aa.generate_augmentations(grids, "abd", 0, 300))
    self.assertEqual(augs[:20], aa.generate_augmentations(grids, "abc", 0, 20))
    self.assertEqual(aa.generate_augmentations(grids, "abc", 0, 1), augs[:1])

  @parameterized.named_parameters(
      ("two_colours", [[[1, 0], [0, 0]], [[2, 2], [0, 2]]]),
      ("symmetric", [[[1, 1], [1, 1]], [[3]]]),
      ("mirror_task", [[[1, 2, 1]], [[2, 1, 2]]]),
      ("swap_colours", [[[1, 2], [2, 1]], [[2, 1], [1, 2]]]),
  )
  def test_all_distinct_forms_found_and_no_duplicates(self, grids):
    grids = [np.asarray(g, np.uint8) for g in grids]
    used = sorted({int(c) for g in grids for c in g.ravel()} - {0})
    # Brute force: every (dihedral, map of used colours) on the whole task.
    forms = set()
    for t in range(8):
      for image in itertools.permutations(range(1, 10), len(used)):
        table = list(range(10))
        rest = [c for c in range(1, 10) if c not in image]
        for c in range(1, 10):
          table[c] = image[used.index(c)] if c in used else None
        free = iter(rest)
        table = [x if x is not None else next(free) for x in table]
        aug = aa.Augmentation(t, tuple(table))
        forms.add(aa.task_key([aa.augment_grid(g, aug) for g in grids]))
    augs = aa.generate_augmentations(grids, "t", 0, 10 * len(forms))
    got = [aa.task_key([aa.augment_grid(g, a) for g in grids]) for a in augs]
    self.assertLen(set(got), len(got))
    self.assertEqual(set(got), forms)


class LoadTest(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self.dir = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)

  def _write(self, rel, obj, raw=None):
    path = os.path.join(self.dir, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
      f.write(raw if raw is not None else json.dumps(obj, indent=1))
    return path

  def _expect_error(self, path, *needles, **kwargs):
    with self.assertRaises(DataError) as ctx:
      arc.ArcSource(path=path, num_versions=2, **kwargs)
    for n in needles:
      self.assertIn(n, str(ctx.exception))
    return str(ctx.exception)

  def test_task_directory_recursive_subsets(self):
    self._write("training/a.json", _task_json())
    self._write("training/deep/b.json", _task_json())
    self._write("evaluation/c.json", _task_json())
    src = arc.ArcSource(path=self.dir, num_versions=3)
    self.assertEqual(src.subsets, ("evaluation", "training"))
    self.assertEqual(src.test_subsets, ("evaluation",))
    self.assertEqual([t.task_id for t in src.tasks], ["c", "a", "b"])
    self.assertEqual(src.num_groups("test"), 1)
    self.assertEqual(src.num_groups("train"), 3)
    flat = arc.load_task_dir(os.path.join(self.dir, "training"),
                             recursive=False)
    self.assertEqual(list(flat), ["a"])

  def test_kaggle_pairs(self):
    ch = {"t1": _task_json(test=[{"input": [[1]]}, {"input": [[2, 2]]}]),
          "t2": _task_json(test=[{"input": [[3]]}])}
    sol = {"t1": [[[5]], [[6, 6]]], "t2": [[[7]]]}
    path = self._write("arc-agi_evaluation_challenges.json", ch)
    self._write("arc-agi_evaluation_solutions.json", sol)
    for where in (path, self.dir):
      src = arc.ArcSource(path=where, num_versions=2)
      self.assertEqual(src.test_subsets, ("evaluation",))
      np.testing.assert_array_equal(src.test_pairs("t1")[1].output, [[6, 6]])
      np.testing.assert_array_equal(src.test_pairs("t2")[0].output, [[7]])
    self._write("arc-agi_evaluation_solutions.json", {"t1": [[[5]]],
                                                      "t2": [[[7]]]})
    self._expect_error(path, "arc-agi_evaluation_solutions.json", "'t1'",
                       "1 solutions for 2 test inputs")

  @parameterized.named_parameters(
      ("ragged", {"input": [[1, 2], [3]], "output": [[1]]}, "train[0].input",
       "ragged"),
      ("colour_high", {"input": [[1, 10]], "output": [[1]]}, "train[0].input",
       "10"),
      ("colour_negative", {"input": [[1]], "output": [[-1]]}, "train[0].output",
       "-1"),
      ("float", {"input": [[1.5]], "output": [[1]]}, "train[0].input", "1.5"),
      ("bool", {"input": [[True]], "output": [[1]]}, "train[0].input", "True"),
      ("too_big", {"input": [[1] * 31], "output": [[1]]}, "train[0].input",
       "canvas"),
      ("not_list", {"input": "1,2", "output": [[1]]}, "train[0].input", "str"),
      ("row_not_list", {"input": [1, 2], "output": [[1]]}, "train[0].input",
       "row 0"),
      ("no_output", {"input": [[1]]}, "train[0].output", "missing"),
  )
  def test_bad_grid_names_file_task_field(self, pair, field, detail):
    path = self._write("evaluation/bad1.json", _task_json(train=[pair]))
    msg = self._expect_error(self.dir, path, "'bad1'", field, detail)
    self.assertIn("train[0]", msg)

  def test_bad_structure(self):
    path = self._write("evaluation/t9.json", {"train": {"a": 1}, "test": []})
    self._expect_error(self.dir, path, "'t9'", "train", "list")
    self._write("evaluation/t9.json", ["not", "a", "task"])
    self._expect_error(self.dir, path, "'t9'", "object")
    self._write("evaluation/t9.json", {"train": [], "test": []})
    self._expect_error(self.dir, path, "'t9'", "train")

  def test_malformed_json_reports_line_and_column(self):
    path = self._write("evaluation/x1.json", None,
                       raw='{"train": [\n  {"input": [[1]],, }\n]}')
    self._expect_error(self.dir, path, "'x1'", "malformed JSON", "line 2",
                       "column 19")

  def test_scored_task_needs_test_outputs(self):
    path = self._write("evaluation/e1.json", _task_json(test=[{"input": [[1]]}]))
    self._expect_error(self.dir, path, "'e1'", "test[0].output")
    # The same task outside the scored split only loses its test pair.
    src = arc.ArcSource(path=self.dir, num_versions=1, test_subsets=())
    self.assertLen(src.pairs("train", 0), 1)

  def test_skip_bad_counts_and_warns(self):
    for i in range(3):
      self._write(f"evaluation/good{i}.json", _task_json())
    self._write("evaluation/bad1.json", _task_json(train=[{"input": [[11]],
                                                           "output": [[1]]}]))
    self._write("evaluation/bad2.json", None, raw="{")
    with self.assertLogs("recur.puzzles.arc.source", logging.WARNING) as logs:
      src = arc.ArcSource(path=self.dir, num_versions=2, skip_bad=True)
    self.assertEqual(sorted(src.skipped), ["bad1", "bad2"])
    self.assertEqual(src.describe()["skipped"], 2)
    self.assertEqual(src.num_groups("test"), 3)
    self.assertIn("skipped 2", logs.output[0])

  def test_extra_subsets_join_the_train_split(self):
    self._write("concept/Above/Above1.json", _task_json())
    self._write("concept/Below/Below1.json", _task_json())
    src = arc.ArcSource("arc1", num_versions=1, max_tasks=2,
                        extra_subsets={"concept": os.path.join(self.dir,
                                                               "concept")})
    self.assertEqual(src.subsets, ("training", "evaluation", "concept"))
    self.assertEqual([t.task_id for t in src.tasks[-2:]], ["Above1", "Below1"])
    self.assertEqual(src.num_groups("train"), 6)
    self.assertEqual(src.num_groups("test"), 2)
    self.assertEqual(src.pairs("train", 5), src.tasks[5].train + src.tasks[5].test)

  def test_duplicate_task_ids_across_subsets(self):
    self._write("training/a.json", _task_json())
    self._write("evaluation/a.json", _task_json())
    self._expect_error(self.dir, "'a'", "also in")


class ArcSourceTest(parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.src = arc.ArcSource("arc1", num_versions=6, max_tasks=12, seed=3)

  def test_info_and_counts(self):
    src = self.src
    self.assertEqual(src.info.vocab_size, 12)
    self.assertEqual(src.info.seq_len, 900)
    d = src.describe()
    self.assertEqual(d["tasks_per_subset"], {"training": 12, "evaluation": 12})
    self.assertEqual(d["train"]["groups"], 24)
    self.assertEqual(d["test"]["groups"], 12)
    self.assertEqual(src.info.num_puzzle_identifiers,
                     1 + sum(len(src.augmentations(t.task_id))
                             for t in src.tasks))

  def test_split_protocol_and_shared_puzzle_ids(self):
    src = self.src
    train_ids = [src.task_id("train", g) for g in range(24)]
    test_ids = [src.task_id("test", g) for g in range(12)]
    eval_ids = [t.task_id for t in src.tasks if t.subset == "evaluation"]
    self.assertEqual(test_ids, eval_ids)
    self.assertTrue(set(eval_ids) <= set(train_ids))
    for g, tid in enumerate(train_ids):
      task = src.task(tid)
      expect = task.train if tid in eval_ids else task.train + task.test
      self.assertEqual(len(src.pairs("train", g)), len(expect))
      for got, want in zip(src.pairs("train", g), expect):
        self.assertIs(got, want)
    for g, tid in enumerate(test_ids):
      self.assertEqual(src.pairs("test", g), src.task(tid).test)
      tg = train_ids.index(tid)
      self.assertEqual(src.num_versions("test", g), src.num_versions("train", tg))
      for v in range(src.num_versions("test", g)):
        self.assertEqual(src.puzzle_identifier("test", g, v),
                         src.puzzle_identifier("train", tg, v))
        self.assertEqual(src.augmentation("test", g, v),
                         src.augmentation("train", tg, v))
    ids = [src.puzzle_identifier("train", g, v) for g in range(24)
           for v in range(src.num_versions("train", g))]
    self.assertLen(set(ids), len(ids))
    self.assertEqual(min(ids), 1)
    self.assertEqual(max(ids), src.info.num_puzzle_identifiers - 1)

  def test_examples_decode_to_the_augmented_task(self):
    src = self.src
    for split in ("train", "test"):
      for g in (0, 5):
        for v in range(src.num_versions(split, g)):
          exs = src.examples(split, g, v, np.random.default_rng(v))
          aug = src.augmentation(split, g, v)
          at_origin = 0
          for ex, pair in zip(exs, src.pairs(split, g)):
            self.assertEqual(ex.inputs.dtype, np.int32)
            self.assertEqual(ex.puzzle_identifier,
                             src.puzzle_identifier(split, g, v))
            board = ex.inputs.reshape(30, 30)
            at_origin += board[0, 0] >= 2
            self.assertNotIn(aa.PAD, ex.labels)          # PAD -> ignored
            labels = np.where(ex.labels == IGNORE_LABEL_ID, 0, ex.labels)
            for tokens, grid in ((ex.inputs, pair.input), (labels, pair.output)):
              got = aa.decode(tokens, translated=(split == "train"))
              np.testing.assert_array_equal(
                  aa.inverse_augment_grid(got, aug), grid)
          if split == "test":
            self.assertEqual(at_origin, len(exs))          # never translated
          else:
            self.assertGreaterEqual(at_origin, 1)          # one kept in place

  def test_examples_deterministic_given_rng(self):
    a = self.src.examples("train", 3, 2, np.random.default_rng(7))
    b = self.src.examples("train", 3, 2, np.random.default_rng(7))
    for x, y in zip(a, b):
      np.testing.assert_array_equal(x.inputs, y.inputs)
    again = arc.ArcSource("arc1", num_versions=6, max_tasks=12, seed=3)
    self.assertEqual(again.augmentations(self.src.tasks[4].task_id),
                     self.src.augmentations(self.src.tasks[4].task_id))
    other = arc.ArcSource("arc1", num_versions=6, max_tasks=12, seed=4)
    self.assertNotEqual(other.augmentations(self.src.tasks[4].task_id),
                        self.src.augmentations(self.src.tasks[4].task_id))

  def test_translation_off(self):
    src = arc.ArcSource("arc1", num_versions=2, max_tasks=2, translate=False)
    for ex in src.examples("train", 0, 1, np.random.default_rng(0)):
      self.assertGreaterEqual(ex.inputs[0], 2)

  def test_selection_options(self):
    small = arc.ArcSource("arc1", num_versions=1, max_grid_size=5)
    self.assertTrue(all(t.max_side() <= 5 for t in small.tasks))
    self.assertGreater(small.num_filtered, 0)
    self.assertGreater(len(small.tasks), 0)
    picked = arc.ArcSource("arc1", num_versions=1,
                           task_ids=["007bbfb7", "00576224"])
    self.assertEqual([t.task_id for t in picked.tasks], ["007bbfb7", "00576224"])
    self.assertEqual(picked.scored_task_ids(), ["00576224"])
    with self.assertRaises(ValueError):
      arc.ArcSource("arc1", num_versions=1, task_ids=["nope"])

  def test_versions_never_mixed_by_default(self):
    with self.assertRaisesRegex(ValueError, "never mixed"):
      arc.ArcSource("arc1", train_subsets=("training", "training2"))
    src = arc.ArcSource("arc2", num_versions=1, max_tasks=3)
    self.assertEqual(src.subsets, ("training2", "evaluation2"))
    self.assertEqual(src.num_groups("test"), 3)


if __name__ == "__main__":
  absltest.main()
