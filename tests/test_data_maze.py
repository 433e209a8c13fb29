"""Tests for recur.puzzles.maze: generator, BFS label, augmentation, CSV, source."""
import collections
import os
import tempfile

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

from recur.puzzles.maze import source as maze
from recur.data.base import DataError
from recur.puzzles.dihedral import NUM_DIHEDRAL

# 5x5: S top-left, G bottom-right, a single corridor (unique shortest path).
Q5 = ["S   #",
      "### #",
      "    #",
      " ####",
      "    G"]
A5 = ["Sooo#",
      "###o#",
      "oooo#",
      "o####",
      "ooooG"]


def _independent_bfs_length(grid: np.ndarray) -> int:
  """Shortest S-G moves by a separate BFS over a dict graph."""
  h, w = grid.shape
  start = tuple(np.argwhere(grid == maze.START)[0])
  goal = tuple(np.argwhere(grid == maze.GOAL)[0])
  dist = {start: 0}
  queue = collections.deque([start])
  while queue:
    cell = queue.popleft()
    if cell == goal:
      return dist[cell]
    r, c = cell
    for nb in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
      if (0 <= nb[0] < h and 0 <= nb[1] < w and grid[nb] != maze.WALL and
          nb not in dist):
        dist[nb] = dist[cell] + 1
        queue.append(nb)
  return -1


def _assert_path_label(test, grid, label):
  """Label = input + 'o' on a connected S-G path of BFS length."""
  test.assertTrue(np.all(
      (label == grid) | ((label == maze.PATH) & (grid == maze.FREE))))
  path = label == maze.PATH
  length = _independent_bfs_length(grid)
  test.assertEqual(int(path.sum()) + 1, length)
  # Walk from S along 'o' cells: each step has exactly one new neighbour.
  h, w = grid.shape
  cur = tuple(np.argwhere(grid == maze.START)[0])
  goal = tuple(np.argwhere(grid == maze.GOAL)[0])
  prev, steps = None, 0
  while cur != goal:
    r, c = cur
    nbs = [nb for nb in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1))
           if 0 <= nb[0] < h and 0 <= nb[1] < w and nb != prev and
           (path[nb] or nb == goal)]
    test.assertLen(nbs, 1)
    prev, cur = cur, nbs[0]
    steps += 1
  test.assertEqual(steps, length)


def _write(path, rows):
  with open(path, "w", newline="", encoding="utf-8") as f:
    f.write("source,q,a,rating\n")
    for row in rows:
      f.write(",".join(row) + "\n")


class GeneratorTest(parameterized.TestCase):

  def test_hard_30x30_mazes(self):
    # Given Maze-Hard settings, every maze has one S, one G, a shortest path of
    # at least 111 moves, and the label marks exactly that (unique) path.
    mazes = maze.generate_mazes(8, size=30, min_path_length=111, seed=0)
    self.assertEqual(mazes.inputs.shape, (8, 30, 30))
    for grid, label, rating in zip(mazes.inputs, mazes.labels, mazes.ratings):
      self.assertEqual(int((grid == maze.START).sum()), 1)
      self.assertEqual(int((grid == maze.GOAL).sum()), 1)
      self.assertFalse((grid == maze.PATH).any())
      length = _independent_bfs_length(grid)
      self.assertGreaterEqual(length, 111)
      self.assertEqual(rating, length)
      self.assertEqual(maze.count_shortest_paths(grid), 1)
      _assert_path_label(self, grid, label)

  @parameterized.parameters(9, 12, 15)
  def test_small_sizes(self, size):
    mazes = maze.generate_mazes(5, size=size, min_path_length=size, seed=1)
    for grid, label in zip(mazes.inputs, mazes.labels):
      self.assertGreaterEqual(_independent_bfs_length(grid), size)
      _assert_path_label(self, grid, label)

  def test_determinism(self):
    a = maze.generate_mazes(3, size=11, min_path_length=10, seed=4)
    b = maze.generate_mazes(3, size=11, min_path_length=10, seed=4)
    c = maze.generate_mazes(3, size=11, min_path_length=10, seed=5)
    np.testing.assert_array_equal(a.inputs, b.inputs)
    self.assertFalse(np.array_equal(a.inputs, c.inputs))

  def test_cache_round_trip(self):
    with tempfile.TemporaryDirectory() as d:
      kwargs = dict(size=10, num_train=4, num_test=2, min_path_length=8,
                    cache_dir=d)
      first = maze.MazeSource.generated(**kwargs)
      files = sorted(os.listdir(d))
      self.assertLen(files, 2)
      self.assertFalse([f for f in files if "tmp" in f])
      again = maze.MazeSource.generated(**kwargs)
      for split in ("train", "test"):
        np.testing.assert_array_equal(first.mazes(split).inputs,
                                      again.mazes(split).inputs)
        np.testing.assert_array_equal(first.mazes(split).labels,
                                      again.mazes(split).labels)

  def test_impossible_length_raises(self):
    with self.assertRaisesRegex(ValueError, "min_path_length"):
      maze.generate_maze(np.random.default_rng(0), size=6, min_path_length=100,
                         max_tries=5)

  def test_label_and_count_on_fixed_maze(self):
    grid = maze.encode_maze(Q5)
    self.assertEqual(maze.decode_maze(maze.shortest_path_label(grid)), A5)
    self.assertEqual(maze.count_shortest_paths(grid), 1)
    open_grid = maze.encode_maze(["S  ", "   ", "  G"])
    self.assertEqual(maze.count_shortest_paths(open_grid, limit=10), 6)


class SourceTest(parameterized.TestCase):

  def test_dihedral_versions_and_inverse(self):
    src = maze.MazeSource.generated(size=12, num_train=3, num_test=2,
                                    min_path_length=12, seed=0)
    info = src.info
    self.assertEqual((info.seq_len, info.vocab_size, info.num_puzzle_identifiers),
                     (144, 6, 1))
    self.assertEqual(src.num_versions("train", 0), NUM_DIHEDRAL)
    self.assertEqual(src.num_versions("test", 0), 1)
    m = src.mazes("train")
    for group in range(3):
      seen = set()
      for version in range(NUM_DIHEDRAL):
        (ex,) = src.examples("train", group, version, np.random.default_rng(0))
        self.assertEqual(ex.inputs.dtype, np.int32)
        grid = ex.inputs.reshape(12, 12)
        label = ex.labels.reshape(12, 12)
        np.testing.assert_array_equal(src.invert(grid, version), m.inputs[group])
        np.testing.assert_array_equal(src.invert(label, version), m.labels[group])
        # The transformed label is still the shortest path of the transformed maze.
        _assert_path_label(self, grid, label)
        seen.add(grid.tobytes())
      self.assertLen(seen, NUM_DIHEDRAL)
    test_keys = {g.tobytes() for g in src.mazes("test").inputs}
    self.assertFalse(test_keys & {g.tobytes() for g in m.inputs})
    no_aug = maze.MazeSource.generated(size=12, num_train=1, num_test=1,
                                       min_path_length=12, augment=False)
    self.assertEqual(no_aug.num_versions("train", 0), 1)


class CsvTest(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    tmp = tempfile.TemporaryDirectory()
    self.addCleanup(tmp.cleanup)
    self.dir = tmp.name
    self.q, self.a = "".join(Q5), "".join(A5)

  def test_reads_directory(self):
    _write(os.path.join(self.dir, "train.csv"), [("m1", self.q, self.a, "12"),
                                                 ("m2", self.q, self.a, "")])
    _write(os.path.join(self.dir, "test.csv"), [("m3", self.q, self.a, "12")])
    src = maze.MazeSource.from_csv(self.dir, size=5)
    self.assertEqual(src.num_groups("train"), 2)
    self.assertEqual(src.num_groups("test"), 1)
    (ex,) = src.examples("test", 0, 0)
    self.assertEqual(list(ex.inputs[:5]), [3, 2, 2, 2, 1])   # "S   #"
    self.assertEqual(list(ex.labels[:5]), [3, 5, 5, 5, 1])   # "Sooo#"
    self.assertTrue(np.isnan(src.mazes("train").ratings[1]))

  @parameterized.named_parameters(
      ("short_q", lambda q, a: ("s", q[:-1], a, "1"), "q", "25 characters"),
      ("bad_char", lambda q, a: ("s", q, "x" + a[1:], "1"), "a", "bad character"),
      ("path_in_q", lambda q, a: ("s", q[:1] + "o" + q[2:], a, "1"), "q", "'o'"),
      ("two_starts", lambda q, a: ("s", q[:1] + "S" + q[2:], a, "1"), "q",
       "exactly one"),
      ("path_on_wall", lambda q, a: ("s", q, a[:4] + "o" + a[5:], "1"), "a",
       "differs from q"),
      ("rating", lambda q, a: ("s", q, a, "x"), "rating", "not a number"),
      ("fields", lambda q, a: ("s", q), "row", "expected 4 fields"))
  def test_bad_rows(self, make_row, field, why):
    path = os.path.join(self.dir, "bad.csv")
    _write(path, [("ok", self.q, self.a, "1"), make_row(self.q, self.a)])
    with self.assertRaises(DataError) as cm:
      maze.read_maze_csv(path, size=5)
    msg = str(cm.exception)
    for part in (path, "row 3", f"field '{field}'", why):
      self.assertIn(part, msg)
    skipped = maze.read_maze_csv(path, size=5, skip_bad=True)
    self.assertLen(skipped, 1)
    self.assertEqual(skipped.num_bad, 1)


if __name__ == "__main__":
  absltest.main()
