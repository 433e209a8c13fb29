"""Tests of token accuracy (recur.puzzles.scoring) and Sudoku / Maze validity."""
from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

from recur.puzzles import scoring
from recur.puzzles.maze import evaluate as maze_eval
from recur.puzzles.sudoku import evaluate as sudoku_eval
from recur.puzzles.maze import source as maze
from recur.puzzles.sudoku import source as sudoku
from recur.data.base import IGNORE_LABEL_ID

# 3x3 free room, S top-left, G bottom-right: several shortest paths.
ROOM = ["S  ",
        "   ",
        "  G"]


def _flat(grids):
  return np.stack([np.asarray(g).reshape(-1) for g in grids]).astype(np.int32)


class AccuracyTest(absltest.TestCase):

  def test_token_and_exact(self):
    labels = np.array([[2, 3, 4, IGNORE_LABEL_ID], [2, 3, 4, 5]])
    preds = np.array([[2, 3, 4, 9], [2, 0, 4, 5]])
    correct, scored, exact = scoring.token_exact_accuracy(labels, preds)
    self.assertEqual(correct.tolist(), [3, 3])
    self.assertEqual(scored.tolist(), [3, 4])
    self.assertEqual(exact.tolist(), [True, False])
    ev = scoring.TokenEvaluator()
    ev.update(labels, labels, preds)
    self.assertEqual(ev.result(), {"count": 2, "exact_accuracy": 0.5,
                                   "token_accuracy": 6 / 7})


class SudokuTest(parameterized.TestCase):

  @parameterized.named_parameters(("4x4", (2, 2)), ("6x6", (2, 3)), ("9x9", (3, 3)))
  def test_validity(self, box):
    n = box[0] * box[1]
    p = sudoku.generate_sudoku_puzzles(4, box=box, seed=0, num_blanks=n * n // 2)
    inputs = _flat(sudoku.encode_sudoku(p.questions))
    labels = _flat(sudoku.encode_sudoku(p.answers))
    # True solutions are valid.
    self.assertTrue(sudoku_eval.sudoku_validity(inputs, labels, box).all())
    # Another valid grid that drops the givens is not a valid answer: a digit
    # permutation keeps all rules but changes the givens.
    perm = np.concatenate([[0, 1], np.roll(np.arange(2, n + 2), 1)])
    relabelled = perm[labels]
    self.assertFalse(sudoku_eval.sudoku_validity(inputs, relabelled, box).any())
    blank_inputs = np.ones_like(inputs)
    self.assertTrue(sudoku_eval.sudoku_validity(blank_inputs, relabelled, box).all())
    # A swap of two cells in a row breaks the columns (and maybe boxes).
    corrupted = labels.copy()
    corrupted[:, [0, 1]] = corrupted[:, [1, 0]]
    self.assertFalse(sudoku_eval.sudoku_validity(blank_inputs, corrupted, box).any())
    # A blank or PAD left in the prediction is not a filled grid.
    unfilled = labels.copy()
    unfilled[0, 3] = sudoku.BLANK_TOKEN
    unfilled[1, 3] = 0
    self.assertEqual(sudoku_eval.sudoku_validity(inputs, unfilled, box).tolist(),
                     [False, False, True, True])

  def test_shifted_rows_are_row_and_column_valid_but_not_box_valid(self):
    # Rows 1..9 shifted by one each: rows and columns are permutations, boxes not.
    grid = (np.arange(9)[:, None] + np.arange(9)[None, :]) % 9 + 1
    tokens = _flat([grid + 1])
    self.assertFalse(sudoku_eval.sudoku_validity(np.ones_like(tokens), tokens)[0])
    good = _flat([sudoku.encode_sudoku(
        sudoku.generate_sudoku_puzzles(1, num_blanks=30).answers[0])])
    self.assertTrue(sudoku_eval.sudoku_validity(np.ones_like(good), good)[0])

  def test_evaluator(self):
    p = sudoku.generate_sudoku_puzzles(3, box=(3, 3), seed=1, num_blanks=40)
    inputs = _flat(sudoku.encode_sudoku(p.questions))
    labels = _flat(sudoku.encode_sudoku(p.answers))
    preds = labels.copy()
    preds[1, :2] = preds[1, [1, 0]]   # two different digits of one row swapped
    ev = sudoku_eval.SudokuEvaluator()
    ev.update(inputs[:2], labels[:2], preds[:2])
    # The third row is masked out (padding of the last batch).
    ev.update(inputs[2:], labels[2:], preds[2:] * 0, mask=np.array([False]))
    r = ev.result()
    self.assertEqual(r["count"], 2)
    self.assertEqual(r["exact_accuracy"], 0.5)
    self.assertEqual(r["valid_rate"], 0.5)
    self.assertAlmostEqual(r["token_accuracy"], (81 + 79) / 162)


class MazeTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.mazes = maze.generate_mazes(3, size=12, min_path_length=12, seed=0)
    self.inputs = _flat(self.mazes.inputs)
    self.labels = _flat(self.mazes.labels)

  def test_true_paths_are_valid_and_shortest(self):
    valid, shortest = maze_eval.maze_validity(self.inputs, self.labels)
    self.assertTrue(valid.all())
    self.assertTrue(shortest.all())

  def test_corruptions(self):
    labels = self.labels.reshape(3, 12, 12)
    # A broken path (one 'o' removed) is invalid.
    broken = labels.copy()
    r, c = np.argwhere(broken[0] == maze.PATH)[0]
    broken[0, r, c] = maze.FREE
    # A path cell on a wall is invalid.
    walled = labels.copy()
    r, c = np.argwhere(walled[1] == maze.WALL)[0]
    walled[1, r, c] = maze.PATH
    # An extra, disconnected 'o' is invalid.
    extra = labels.copy()
    on_path = extra[2] == maze.PATH
    free = np.argwhere((extra[2] == maze.FREE))
    far = [tuple(f) for f in free
           if not any(on_path[nb] for nb in maze.neighbours(*f, 12, 12))]
    extra[2][far[0]] = maze.PATH
    preds = _flat([broken[0], walled[1], extra[2]])
    valid, shortest = maze_eval.maze_validity(self.inputs, preds)
    self.assertEqual(valid.tolist(), [False, False, False])
    self.assertEqual(shortest.tolist(), [False, False, False])
    # No path at all (S and G not adjacent) is invalid.
    valid, _ = maze_eval.maze_validity(self.inputs, self.inputs)
    self.assertFalse(valid.any())

  def test_valid_but_not_shortest_and_alternative_shortest(self):
    grid = maze.encode_maze(ROOM)
    inputs = _flat([grid, grid, grid, grid])
    label = maze.encode_maze(["Soo", "  o", "  G"])      # one shortest path
    other = maze.encode_maze(["S  ", "o  ", "ooG"])      # another shortest path
    branch = maze.encode_maze(["S o", "ooo", "  G"])     # (1,2) has 3 neighbours
    fork = maze.encode_maze(["S  ", "ooo", "o G"])       # (1,0) has 3 neighbours
    preds = _flat([label, other, branch, fork])
    valid, shortest = maze_eval.maze_validity(inputs, preds)
    self.assertEqual(valid.tolist(), [True, True, False, False])
    self.assertEqual(shortest.tolist(), [True, True, False, False])
    # A longer valid path in a bigger room: valid but not shortest.
    room = maze.encode_maze(["S   ", "    ", "   G", "    "])
    long_path = maze.encode_maze(["S   ", "o   ", "o  G", "oooo"])
    valid, shortest = maze_eval.maze_validity(_flat([room]), _flat([long_path]))
    self.assertEqual((bool(valid[0]), bool(shortest[0])), (True, False))
    ev = maze_eval.MazeEvaluator()
    ev.update(_flat([grid, grid]), _flat([label, label]), _flat([other, label]))
    r = ev.result()
    self.assertEqual((r["exact_accuracy"], r["valid_rate"], r["shortest_rate"]),
                     (0.5, 1.0, 1.0))


if __name__ == "__main__":
  absltest.main()
