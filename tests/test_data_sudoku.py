"""Tests for recur.puzzles.sudoku: generator, solver, augmentation, CSV, source."""
import os
import tempfile

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

from recur.puzzles.sudoku import source as sudoku
from recur.data.base import DataError

BOXES = {"4x4": (2, 2), "6x6": (2, 3), "9x9": (3, 3)}

# A known 9x9 puzzle and its solution (unique).
Q9 = ("53..7....6..195....98....6.8...6...34..8.3..17...2...6.6....28...."
      "419..5....8..79")
A9 = ("534678912672195348198342567859761423426853791713924856961537284287"
      "419635345286179")


def _brute_force_count(question: np.ndarray, box, limit: int = 2) -> int:
  """Independent solver: sets of candidates, fewest-candidates cell first."""
  box_rows, box_cols = box
  n = box_rows * box_cols
  g = question.copy().reshape(n, n)
  count = 0

  def candidates(r, c):
    br, bc = r - r % box_rows, c - c % box_cols
    used = set(g[r]) | set(g[:, c]) | set(g[br:br + box_rows, bc:bc + box_cols].ravel())
    return [v for v in range(1, n + 1) if v not in used]

  def rec():
    nonlocal count
    empties = [(r, c) for r in range(n) for c in range(n) if g[r, c] == 0]
    if not empties:
      count += 1
      return
    options = {cell: candidates(*cell) for cell in empties}
    cell = min(empties, key=lambda e: len(options[e]))
    for v in options[cell]:
      g[cell] = v
      rec()
      g[cell] = 0
      if count >= limit:
        return

  rec()
  return count


def _write(path, rows):
  with open(path, "w", newline="", encoding="utf-8") as f:
    f.write("source,q,a,rating\n")
    for row in rows:
      f.write(",".join(row) + "\n")


class GeneratorTest(parameterized.TestCase):

  @parameterized.named_parameters(("4x4", (2, 2), 12, None),
                                  ("6x6", (2, 3), 20, None),
                                  ("9x9_minimal", (3, 3), 3, None),
                                  ("9x9_easy", (3, 3), 6, 40))
  def test_generated_puzzles_have_exactly_one_solution(self, box, num, blanks):
    # Given generated puzzles, when solved by an independent brute force,
    # then each has exactly one solution, and it is the stored answer.
    p = sudoku.generate_sudoku_puzzles(num, box=box, seed=3, num_blanks=blanks)
    n = box[0] * box[1]
    self.assertEqual(p.questions.shape, (num, n, n))
    for q, a in zip(p.questions, p.answers):
      self.assertTrue(sudoku.is_valid_solution(a, box, question=q))
      self.assertGreater(int((q == 0).sum()), 0)
      self.assertEqual(_brute_force_count(q, box), 1)
      self.assertEqual(sudoku.count_solutions(q, box), 1)

  def test_minimal_puzzles_are_minimal(self):
    # Given minimal 6x6 puzzles, removing any given makes them ambiguous.
    p = sudoku.generate_sudoku_puzzles(3, box=(2, 3), seed=1)
    for q in p.questions:
      for r, c in zip(*np.nonzero(q)):
        q2 = q.copy()
        q2[r, c] = 0
        self.assertEqual(sudoku.count_solutions(q2, (2, 3)), 2)

  def test_solver_on_known_puzzle(self):
    q = np.array([0 if ch == "." else int(ch) for ch in Q9]).reshape(9, 9)
    a = np.array([int(ch) for ch in A9]).reshape(9, 9)
    self.assertEqual(sudoku.count_solutions(q), 1)
    self.assertEqual(_brute_force_count(q, (3, 3)), 1)
    self.assertTrue(sudoku.is_valid_solution(a, question=q))
    self.assertEqual(sudoku.count_solutions(np.zeros((4, 4), int), (2, 2)), 2)
    clash = q.copy()
    clash[0, 2] = 5  # second 5 in row 0
    self.assertEqual(sudoku.count_solutions(clash), 0)

  def test_hard_split_ratings_reach_threshold(self):
    # Given a rating threshold, every kept puzzle's recomputed rating reaches it,
    # and the threshold really filters (easy puzzles rate lower on average).
    hard = sudoku.generate_sudoku_puzzles(4, box=(3, 3), seed=0, min_rating=60)
    for q, rating in zip(hard.questions, hard.ratings):
      self.assertGreaterEqual(rating, 60)
      self.assertEqual(sudoku.sudoku_rating(q), rating)
      self.assertEqual(sudoku.count_solutions(q), 1)
    easy = sudoku.generate_sudoku_puzzles(20, box=(3, 3), seed=0, num_blanks=40)
    self.assertLess(easy.ratings.mean(), 60)

  def test_generation_is_deterministic_and_prefix_stable(self):
    a = sudoku.generate_sudoku_puzzles(5, box=(2, 2), seed=7, num_blanks=9)
    b = sudoku.generate_sudoku_puzzles(8, box=(2, 2), seed=7, num_blanks=9)
    c = sudoku.generate_sudoku_puzzles(5, box=(2, 2), seed=8, num_blanks=9)
    np.testing.assert_array_equal(a.questions, b.questions[:5])
    np.testing.assert_array_equal(a.answers, b.answers[:5])
    self.assertFalse(np.array_equal(a.questions, c.questions))
    self.assertEqual(len({q.tobytes() for q in b.questions}), 8)  # distinct

  def test_cache_round_trip(self):
    with tempfile.TemporaryDirectory() as d:
      s1 = sudoku.SudokuSource.generated(box=(2, 2), num_train=5, num_test=3,
                                         num_blanks=8, cache_dir=d, num_aug=2)
      files = sorted(os.listdir(d))
      self.assertLen(files, 2)
      self.assertFalse([f for f in files if "tmp" in f])
      s2 = sudoku.SudokuSource.generated(box=(2, 2), num_train=5, num_test=3,
                                         num_blanks=8, cache_dir=d, num_aug=2)
      for split in ("train", "test"):
        np.testing.assert_array_equal(s1.puzzles(split).questions,
                                      s2.puzzles(split).questions)


class AugmentationTest(parameterized.TestCase):

  @parameterized.named_parameters(*BOXES.items())
  def test_transform_inverse_and_validity(self, box):
    p = sudoku.generate_sudoku_puzzles(3, box=box, seed=2, num_blanks=6)
    rng = np.random.default_rng(0)
    transposed = set()
    for q, a in zip(p.questions, p.answers):
      for _ in range(10):
        t = sudoku.random_transform(rng, box)
        transposed.add(t.transpose)
        q2, a2 = sudoku.apply_transform(q, t), sudoku.apply_transform(a, t)
        np.testing.assert_array_equal(sudoku.invert_transform(q2, t), q)
        np.testing.assert_array_equal(sudoku.invert_transform(a2, t), a)
        self.assertTrue(sudoku.is_valid_solution(a2, box, question=q2))
        self.assertEqual(int((q2 == 0).sum()), int((q == 0).sum()))
        self.assertEqual(sudoku.count_solutions(q2, box), 1)
    # Transpose is used for square boxes only.
    self.assertEqual(transposed, {False, True} if box[0] == box[1] else {False})

  def test_transform_moves_rows_within_bands_only(self):
    rng = np.random.default_rng(1)
    for _ in range(20):
      t = sudoku.random_transform(rng, (2, 3))  # 3 bands of 2 rows, 2 stacks of 3
      self.assertEqual(sorted(t.row_perm), list(range(6)))
      for band in range(3):
        self.assertLen(set(t.row_perm[2 * band:2 * band + 2] // 2), 1)
      for stack in range(2):
        self.assertLen(set(t.col_perm[3 * stack:3 * stack + 3] // 3), 1)
      self.assertEqual(t.digit_map[0], 0)


class CsvTest(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    tmp = tempfile.TemporaryDirectory()
    self.addCleanup(tmp.cleanup)
    self.dir = tmp.name
    self.q, self.a = Q9, A9

  def test_reads_and_encodes(self):
    path = os.path.join(self.dir, "train.csv")
    _write(path, [("src1", self.q, self.a, "7"),
                  ("src2", self.q.replace(".", "0"), self.a, "2")])
    p = sudoku.read_sudoku_csv(path)
    self.assertLen(p, 2)
    np.testing.assert_array_equal(p.questions[0], p.questions[1])
    self.assertEqual(list(p.ratings), [7, 2])
    self.assertEqual(p.sources, ("src1", "src2"))
    self.assertEqual(int(p.questions[0, 0, 0]), 5)
    self.assertEqual(int(p.questions[0, 0, 2]), 0)
    only_hard = sudoku.read_sudoku_csv(path, min_difficulty=5)
    self.assertLen(only_hard, 1)

  @parameterized.named_parameters(
      ("short_q", lambda q, a: ("s", q[:-1], a, "0"), "q", "81 characters"),
      ("long_a", lambda q, a: ("s", q, a + "1", "0"), "a", "81 characters"),
      ("bad_char_q", lambda q, a: ("s", "x" + q[1:], a, "0"), "q", "bad character"),
      ("bad_char_a", lambda q, a: ("s", q, "." + a[1:], "0"), "a", "bad character"),
      ("inconsistent", lambda q, a: ("s", q, "6" + a[1:], "0"), "a",
       "disagrees with the given"),
      ("invalid", lambda q, a: ("s", "." * 81, "1" * 81, "0"), "a",
       "not a valid solution"),
      ("rating", lambda q, a: ("s", q, a, "hard"), "rating", "not an integer"),
      ("fields", lambda q, a: ("s", q, a), "row", "expected 4 fields"))
  def test_bad_rows(self, make_row, field, why):
    # Given a CSV whose third line is bad, reading raises a DataError naming
    # the file, the row and the field; skip_bad skips and counts it.
    path = os.path.join(self.dir, "bad.csv")
    _write(path, [("ok", self.q, self.a, "1"), make_row(self.q, self.a),
                  ("ok", self.q, self.a, "1")])
    with self.assertRaises(DataError) as cm:
      sudoku.read_sudoku_csv(path)
    msg = str(cm.exception)
    self.assertIn(path, msg)
    self.assertIn("row 3", msg)
    self.assertIn(f"field '{field}'", msg)
    self.assertIn(why, msg)
    p = sudoku.read_sudoku_csv(path, skip_bad=True)
    self.assertLen(p, 2)
    self.assertEqual(p.num_bad, 1)

  def test_first_bad_row_is_reported_and_all_are_counted(self):
    # Given an invalid grid on line 2 and a short q on line 4, the error names
    # line 2 (file order, not check order) and skip_bad counts both.
    path = os.path.join(self.dir, "two_bad.csv")
    _write(path, [("s", "." * 81, "1" * 81, "0"), ("ok", self.q, self.a, "1"),
                  ("s", self.q[:5], self.a, "0"),
                  ("s", "\u00e9" + self.q[1:], self.a, "0")])
    with self.assertRaisesRegex(DataError, r"row 2: field 'a': not a valid"):
      sudoku.read_sudoku_csv(path)
    p = sudoku.read_sudoku_csv(path, skip_bad=True)
    self.assertLen(p, 1)
    self.assertEqual(p.num_bad, 3)

  def test_non_ascii_character(self):
    path = os.path.join(self.dir, "utf.csv")
    _write(path, [("s", "\u00e9" + self.q[1:], self.a, "0")])
    with self.assertRaisesRegex(DataError, r"row 2: field 'q': bad character"):
      sudoku.read_sudoku_csv(path)

  def test_missing_file(self):
    with self.assertRaisesRegex(DataError, "nope.csv"):
      sudoku.read_sudoku_csv(os.path.join(self.dir, "nope.csv"))

  def test_source_from_directory_subsamples_train(self):
    gen = sudoku.generate_sudoku_puzzles(6, box=(3, 3), seed=0, num_blanks=40)
    rows = [("gen", "".join(str(v) if v else "." for v in q.ravel()),
             "".join(str(v) for v in a.ravel()), str(i))
            for i, (q, a) in enumerate(zip(gen.questions, gen.answers))]
    _write(os.path.join(self.dir, "train.csv"), rows)
    _write(os.path.join(self.dir, "test.csv"), rows[:2])
    src = sudoku.SudokuSource.from_csv(self.dir, num_train=4, num_aug=3, seed=1)
    self.assertEqual(src.num_groups("train"), 4)
    self.assertEqual(src.num_groups("test"), 2)
    self.assertEqual(src.num_versions("train", 0), 4)
    self.assertEqual(src.num_versions("test", 0), 1)
    again = sudoku.SudokuSource.from_csv(self.dir, num_train=4, num_aug=3, seed=1)
    np.testing.assert_array_equal(src.puzzles("train").ratings,
                                  again.puzzles("train").ratings)


class SourceTest(parameterized.TestCase):

  @parameterized.named_parameters(*BOXES.items())
  def test_examples_encoding_and_versions(self, box):
    n = box[0] * box[1]
    src = sudoku.SudokuSource.generated(box=box, num_train=3, num_test=2,
                                        num_blanks=n * n // 3, num_aug=4, seed=5)
    info = src.info
    self.assertEqual(info.seq_len, n * n)
    self.assertEqual(info.vocab_size, n + 2)
    self.assertEqual(info.num_puzzle_identifiers, 1)
    train = src.puzzles("train")
    for group in range(3):
      (ex0,) = src.examples("train", group, 0, np.random.default_rng(0))
      # Version 0 is the puzzle itself: blank -> 1, digit d -> d + 1.
      np.testing.assert_array_equal(ex0.inputs, train.questions[group].ravel() + 1)
      np.testing.assert_array_equal(ex0.labels, train.answers[group].ravel() + 1)
      self.assertEqual(ex0.inputs.dtype, np.int32)
      self.assertEqual(ex0.puzzle_identifier, 0)
      for version in range(1, 5):
        (ex,) = src.examples("train", group, version, np.random.default_rng(9))
        self.assertTrue(ex.labels.min() >= 2 and ex.labels.max() <= n + 1)
        q, a = sudoku.decode_sudoku(ex.inputs), sudoku.decode_sudoku(ex.labels)
        self.assertTrue(sudoku.is_valid_solution(a, box, question=q))
        # Version -> inverse transform gives the original back.
        t = src.transform("train", group, version)
        np.testing.assert_array_equal(
            sudoku.invert_transform(q.reshape(n, n), t), train.questions[group])
        # Deterministic from (seed, group, version), rng argument ignored.
        (again,) = src.examples("train", group, version, np.random.default_rng(1))
        np.testing.assert_array_equal(ex.inputs, again.inputs)
    self.assertEqual(src.num_versions("test", 0), 1)
    test_keys = {q.tobytes() for q in src.puzzles("test").questions}
    self.assertFalse(test_keys & {q.tobytes() for q in train.questions})
    with self.assertRaises(IndexError):
      src.examples("train", 0, 5)

  def test_versions_differ(self):
    src = sudoku.SudokuSource.generated(box=(3, 3), num_train=1, num_test=1,
                                        num_blanks=40, num_aug=5)
    inputs = {src.examples("train", 0, v)[0].inputs.tobytes() for v in range(6)}
    self.assertLen(inputs, 6)


if __name__ == "__main__":
  absltest.main()
