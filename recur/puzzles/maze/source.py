"""Mazes: the Maze-Hard CSV, a built-in generator, dihedral augmentation.

Grids are N x N (Maze-Hard: 30 x 30). Characters "# SGo" map to tokens 1..5,
PAD=0, vocab 6 (reference `build_maze_dataset.py`): '#' wall, ' ' free, 'S'
start, 'G' goal, 'o' a path cell (labels only). The label is the input with the
cells of the shortest path strictly between S and G marked 'o'; every cell is
scored. All mazes use puzzle identifier 0 (`num_puzzle_identifiers` 1), as the
reference. A train group has 8 versions when `augment` (dihedral transform id =
version, see `recur.puzzles.dihedral`), else 1; test groups have 1.

Generator: a perfect maze (random depth-first spanning tree) on the cells of one
parity per axis (so even N works and the border is not always a wall), then a
fraction `extra_openings` of the remaining inner walls between two free cells
is knocked out to make loops. S and G are free cells with a shortest path of at
least `min_path_length` moves, drawn among the pairs whose BFS distance is
largest. A maze is kept only when its shortest S-G path is unique, so the label
is *the* shortest path and it stays the shortest path under every dihedral
transform. Path length = number of moves from S to G = number of 'o' cells + 1.
"""
from __future__ import annotations

import collections
import csv
import dataclasses
import math
import os
from typing import Any, Iterable, Sequence

import numpy as np

from recur.data.base import DataError, DatasetInfo, Example, examples_from_rows
from recur.files import cached_npz
from recur.puzzles.csv_rows import report_skipped, require_rows
from recur.puzzles.dihedral import (NUM_DIHEDRAL, dihedral, gather_dihedral,
                                    inverse_dihedral)

__all__ = [
    "CHARSET", "WALL", "FREE", "START", "GOAL", "PATH", "MazeSet", "MazeSource",
    "encode_maze", "decode_maze", "find_cell", "neighbours", "bfs_distances",
    "count_shortest_paths",
    "shortest_path_label", "generate_maze", "generate_mazes", "read_maze_csv",
    "path_error", "question_error",
]

CHARSET = "# SGo"
WALL, FREE, START, GOAL, PATH = 1, 2, 3, 4, 5
_GENERATOR_VERSION = 1  # bump when generated mazes change; part of the cache key
_LUT = np.zeros(256, np.int8)
_LUT[[ord(c) for c in CHARSET]] = np.arange(1, len(CHARSET) + 1)


def encode_maze(rows: Sequence[str] | str, size: int | None = None) -> np.ndarray:
  """Characters (one string of N*N, or N strings of N) -> int8 tokens [N, N]."""
  text = rows if isinstance(rows, str) else "".join(rows)
  size = size or math.isqrt(len(text))
  tokens = _LUT[np.frombuffer(text.encode("latin-1"), np.uint8)]
  if len(text) != size * size or tokens.min() == 0:
    raise ValueError(f"not an {size}x{size} maze over {CHARSET!r}: {text!r}")
  return tokens.reshape(size, size)


def decode_maze(tokens: np.ndarray) -> list[str]:
  """Tokens [N, N] -> N strings ('?' for PAD or unknown tokens)."""
  chars = np.array(list("?" + CHARSET + "?"))
  t = np.clip(np.asarray(tokens), 0, len(CHARSET) + 1)
  return ["".join(chars[row]) for row in t]


# ----------------------------------------------------------------------------
# Graph helpers (4-neighbour moves between non-wall cells)


def bfs_distances(grid: np.ndarray, source: tuple[int, int]) -> np.ndarray:
  """Moves from `source` to every cell through non-wall cells; -1 if unreachable."""
  h, w = grid.shape
  open_ = (np.asarray(grid) != WALL).tolist()
  dist = [[-1] * w for _ in range(h)]
  dist[source[0]][source[1]] = 0
  queue = collections.deque([source])
  while queue:
    r, c = queue.popleft()
    d = dist[r][c] + 1
    for rr, cc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
      if 0 <= rr < h and 0 <= cc < w and open_[rr][cc] and dist[rr][cc] < 0:
        dist[rr][cc] = d
        queue.append((rr, cc))
  return np.asarray(dist, np.int32)


def find_cell(grid: np.ndarray, token: int) -> tuple[int, int]:
  """(row, col) of the only cell holding `token`; ValueError unless exactly one."""
  where = np.argwhere(grid == token)
  if len(where) != 1:
    raise ValueError(f"expected exactly one {CHARSET[token - 1]!r}, got {len(where)}")
  return int(where[0, 0]), int(where[0, 1])


def neighbours(r: int, c: int, h: int, w: int) -> Iterable[tuple[int, int]]:
  """The 4-neighbours of (r, c) inside an h x w grid: up, down, left, right."""
  for rr, cc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
    if 0 <= rr < h and 0 <= cc < w:
      yield rr, cc


def count_shortest_paths(grid: np.ndarray, limit: int = 2) -> int:
  """Number of shortest S-G paths of a maze (tokens), capped at `limit`."""
  start, goal = find_cell(grid, START), find_cell(grid, GOAL)
  d_s, d_g = bfs_distances(grid, start), bfs_distances(grid, goal)
  total = d_s[goal]
  if total < 0:
    return 0
  h, w = grid.shape
  on = (d_s >= 0) & (d_g >= 0) & (d_s + d_g == total)
  layers: dict[int, list[tuple[int, int]]] = collections.defaultdict(list)
  for r, c in np.argwhere(on):
    layers[int(d_s[r, c])].append((int(r), int(c)))
  ways = {start: 1}
  for k in range(1, total + 1):
    for r, c in layers[k]:
      ways[(r, c)] = min(limit, sum(ways.get(nb, 0)
                                    for nb in neighbours(r, c, h, w)
                                    if on[nb] and d_s[nb] == k - 1))
  return ways[goal]


def shortest_path_label(grid: np.ndarray) -> np.ndarray:
  """Input maze (tokens) -> label with one shortest S-G path marked PATH.

  Where several shortest paths exist the one walking to the first neighbour in
  (up, down, left, right) order is marked; the generator only emits mazes whose
  shortest path is unique, where this choice never matters.
  """
  start, goal = find_cell(grid, START), find_cell(grid, GOAL)
  d_g = bfs_distances(grid, goal)
  if d_g[start] < 0:
    raise ValueError("goal is unreachable from start")
  label = np.array(grid, copy=True)
  h, w = grid.shape
  r, c = start
  while d_g[r, c] > 1:
    r, c = next(nb for nb in neighbours(r, c, h, w) if d_g[nb] == d_g[r, c] - 1)
    label[r, c] = PATH
  return label


# ----------------------------------------------------------------------------
# Generator


def _perfect_maze(size: int, rng: np.random.Generator, extra_openings: float
                  ) -> np.ndarray:
  """Walls/free tokens [size, size]: a DFS spanning tree plus some loops."""
  grid = np.full((size, size), WALL, np.int8)
  parity = rng.integers(0, 2, size=2)
  rows = list(range(int(parity[0]), size, 2))
  cols = list(range(int(parity[1]), size, 2))
  nr, nc = len(rows), len(cols)
  visited = np.zeros((nr, nc), bool)
  start = (int(rng.integers(nr)), int(rng.integers(nc)))
  visited[start] = True
  stack = [start]
  grid[rows[start[0]], cols[start[1]]] = FREE
  moves = ((-1, 0), (1, 0), (0, -1), (0, 1))
  while stack:
    i, j = stack[-1]
    options = [(i + di, j + dj) for di, dj in moves
               if 0 <= i + di < nr and 0 <= j + dj < nc and not visited[i + di, j + dj]]
    if not options:
      stack.pop()
      continue
    ni, nj = options[int(rng.integers(len(options)))]
    visited[ni, nj] = True
    grid[rows[ni], cols[nj]] = FREE
    grid[(rows[i] + rows[ni]) // 2, (cols[j] + cols[nj]) // 2] = FREE
    stack.append((ni, nj))
  if extra_openings > 0:
    # Inner walls between two free cells on a line: knocking one out joins two
    # corridors and makes a loop.
    walls = []
    for r in range(size):
      for c in range(size):
        if grid[r, c] != WALL:
          continue
        vertical = (0 < r < size - 1 and (c - parity[1]) % 2 == 0 and
                    grid[r - 1, c] == FREE and grid[r + 1, c] == FREE)
        horizontal = (0 < c < size - 1 and (r - parity[0]) % 2 == 0 and
                      grid[r, c - 1] == FREE and grid[r, c + 1] == FREE)
        if vertical or horizontal:
          walls.append((r, c))
    count = int(round(extra_openings * len(walls)))
    for k in rng.permutation(len(walls))[:count]:
      grid[walls[k]] = FREE
  return grid


def generate_maze(rng: np.random.Generator, *, size: int = 30,
                  min_path_length: int = 111, extra_openings: float = 0.05,
                  max_tries: int = 200) -> tuple[np.ndarray, np.ndarray]:
  """One (input, label) pair of token grids [size, size] with a unique shortest
  S-G path of at least `min_path_length` moves."""
  if size < 2 or min_path_length < 1:
    raise ValueError(f"need size >= 2 and min_path_length >= 1, got {size}, "
                     f"{min_path_length}")
  for _ in range(max_tries):
    grid = _perfect_maze(size, rng, extra_openings)
    free = np.argwhere(grid == FREE)
    # Far pairs: from a random cell go to the farthest cell, and back (a
    # double sweep finds a near-diameter pair), then pick G among the cells at
    # least min_path_length away from S.
    probe = tuple(free[rng.integers(len(free))])
    d = bfs_distances(grid, probe)
    r, c = np.unravel_index(np.argmax(d), d.shape)
    start = (int(r), int(c))
    d_s = bfs_distances(grid, start)
    far = np.argwhere(d_s >= min_path_length)
    if len(far) == 0:
      continue
    for k in rng.permutation(len(far))[:8]:
      goal = (int(far[k, 0]), int(far[k, 1]))
      maze = grid.copy()
      maze[start] = START
      maze[goal] = GOAL
      if count_shortest_paths(maze) == 1:
        return maze, shortest_path_label(maze)
  raise ValueError(f"no {size}x{size} maze with a unique shortest path of >= "
                   f"{min_path_length} moves in {max_tries} tries; lower "
                   "min_path_length or extra_openings")


@dataclasses.dataclass(frozen=True)
class MazeSet:
  """Mazes as token grids."""
  inputs: np.ndarray     # int8 [M, N, N]
  labels: np.ndarray     # int8 [M, N, N]
  ratings: np.ndarray    # float64 [M] (path length for generated mazes)
  sources: tuple[str, ...] | None = None
  num_bad: int = 0
  skipped: tuple[str, ...] = ()   # why each skipped row was bad ("row L: ...")

  def __len__(self) -> int:
    return len(self.inputs)

  def subset(self, indices: Iterable[int]) -> "MazeSet":
    idx = np.asarray(list(indices), dtype=np.int64)
    return dataclasses.replace(
        self, inputs=self.inputs[idx], labels=self.labels[idx],
        ratings=self.ratings[idx],
        sources=None if self.sources is None else tuple(self.sources[i] for i in idx))


def generate_mazes(num: int, *, size: int = 30, min_path_length: int = 111,
                   extra_openings: float = 0.05, seed: int = 0, stream: int = 0,
                   exclude: Iterable[bytes] = ()) -> MazeSet:
  """`num` distinct mazes; maze i draws from `default_rng([seed, stream, i])`."""
  seen = set(exclude)
  inputs: list[np.ndarray] = []
  labels: list[np.ndarray] = []
  ratings: list[float] = []
  attempt = 0
  while len(inputs) < num:
    if attempt > 10 * num + 100:
      raise ValueError(f"only {len(inputs)} distinct mazes of {num}")
    rng = np.random.default_rng([seed, stream, attempt])
    attempt += 1
    maze, label = generate_maze(rng, size=size, min_path_length=min_path_length,
                                extra_openings=extra_openings)
    key = maze.tobytes()
    if key in seen:
      continue
    seen.add(key)
    inputs.append(maze)
    labels.append(label)
    ratings.append(float(np.sum(label == PATH) + 1))
  shape = (len(inputs), size, size)
  return MazeSet(np.asarray(inputs, np.int8).reshape(shape),
                 np.asarray(labels, np.int8).reshape(shape),
                 np.asarray(ratings, np.float64))


def _cached(cache_dir: str | None, params: dict[str, Any], make) -> MazeSet:
  """Loads a generated split from `cache_dir`, or makes and stores it atomically."""
  def arrays():
    m = make()
    return {"inputs": m.inputs, "labels": m.labels, "ratings": m.ratings}
  z = cached_npz(cache_dir, "maze", {**params, "version": _GENERATOR_VERSION}, arrays)
  return MazeSet(z["inputs"], z["labels"], z["ratings"])


def _reach(grid: np.ndarray, open_cells: np.ndarray, start: tuple[int, int]
           ) -> np.ndarray:
  """bool [N, N]: the cells of `open_cells` reachable from `start` (4-moves)."""
  h, w = grid.shape
  seen = np.zeros_like(open_cells)
  seen[start] = True
  todo = collections.deque([start])
  while todo:
    r, c = todo.popleft()
    for nb in neighbours(r, c, h, w):
      if open_cells[nb] and not seen[nb]:
        seen[nb] = True
        todo.append(nb)
  return seen


def question_error(q: np.ndarray) -> str | None:
  """Why a maze question [N, N] has no answer (None: it has one): one 'S',
  one 'G', no 'o', and G reachable from S through non-wall cells."""
  if (q == PATH).any():
    return "path cell 'o' in the question"
  if (q == START).sum() != 1 or (q == GOAL).sum() != 1:
    return (f"needs exactly one 'S' and one 'G', got {int((q == START).sum())} "
            f"and {int((q == GOAL).sum())}")
  if not _reach(q, q != WALL, find_cell(q, START))[find_cell(q, GOAL)]:
    return "no path from 'S' to 'G' (unsolvable)"
  return None


def path_error(q: np.ndarray, a: np.ndarray) -> str | None:
  """Why `a` is not a path answer of the valid question `q` (None: it is):
  `a` equals `q` except 'o' on free cells, and the 'o' cells join S to G
  (4-moves) with no stray 'o' off that path."""
  wrong = (a != q) & ~((a == PATH) & (q == FREE))
  if wrong.any():
    r, c = (int(v) for v in np.argwhere(wrong)[0])
    return (f"differs from q at row {r}, column {c} "
            "(only free cells may become 'o')")
  on_path = (a == PATH) | (a == START) | (a == GOAL)
  seen = _reach(a, on_path, find_cell(q, START))
  if not seen[find_cell(q, GOAL)]:
    return "the 'o' cells do not join 'S' to 'G'"
  stray = on_path & ~seen
  if stray.any():
    r, c = (int(v) for v in np.argwhere(stray)[0])
    return f"'o' at row {r}, column {c} is off the path from 'S' to 'G'"
  return None


def read_maze_csv(path: str, *, size: int = 30, skip_bad: bool = False) -> MazeSet:
  """Reads the Maze-Hard layout `source,q,a,rating` (q, a: N*N chars, row-major).

  Checks: four fields; q and a of N*N characters from "# SGo"; no 'o' in q;
  exactly one 'S' and one 'G' in q; a equal to q except 'o' on free cells,
  the 'o' cells a path from S to G (`path_error`); rating a number (empty
  allowed, read as NaN). A bad row raises DataError naming file, row (line
  number, header = 1) and field, or with `skip_bad` is skipped, counted and
  logged (the first few reasons); a file with no good row is an error.
  """
  cells = size * size
  inputs, labels, ratings, sources = [], [], [], []
  reasons: list[str] = []

  def bad(line: int, field: str, why: str) -> None:
    if not skip_bad:
      raise DataError(f"{path}: row {line}: field '{field}': {why}")
    reasons.append(f"row {line}: field '{field}': {why}")

  def parse(text: str, line: int, field: str):
    if len(text) != cells:
      return bad(line, field, f"expected {cells} characters ({size}x{size}), "
                 f"got {len(text)}")
    raw = np.frombuffer(text.encode("latin-1", "replace"), np.uint8)
    tokens = _LUT[raw]
    if len(raw) != cells or tokens.min() == 0:
      pos = int(np.argmax(tokens == 0)) if len(raw) == cells else 0
      return bad(line, field, f"bad character {text[pos]!r} at position {pos}; "
                 f"allowed {CHARSET!r}")
    return tokens.reshape(size, size)

  try:
    f = open(path, newline="", encoding="utf-8")
  except OSError as e:
    raise DataError(f"{path}: cannot open: {e}") from e
  with f:
    reader = csv.reader(f)
    for fields in reader:
      line = reader.line_num
      if line == 1 and fields == ["source", "q", "a", "rating"]:
        continue
      if len(fields) != 4:
        bad(line, "row", f"expected 4 fields (source,q,a,rating), got {len(fields)}")
        continue
      source, q_text, a_text, rating_text = fields
      try:
        rating = float(rating_text) if rating_text.strip() else math.nan
      except ValueError:
        bad(line, "rating", f"not a number: {rating_text!r}")
        continue
      q = parse(q_text, line, "q")
      if q is None:
        continue
      a = parse(a_text, line, "a")
      if a is None:
        continue
      why = question_error(q)
      if why is not None:
        bad(line, "q", why)
        continue
      why = path_error(q, a)
      if why is not None:
        bad(line, "a", why)
        continue
      inputs.append(q)
      labels.append(a)
      ratings.append(rating)
      sources.append(source)
  report_skipped(path, reasons)
  require_rows(path, len(inputs), len(reasons), "maze")
  shape = (len(inputs), size, size)
  return MazeSet(np.asarray(inputs, np.int8).reshape(shape),
                 np.asarray(labels, np.int8).reshape(shape),
                 np.asarray(ratings, np.float64), tuple(sources), len(reasons),
                 tuple(reasons))


# ----------------------------------------------------------------------------
# Source


class MazeSource:
  """Mazes as a `PuzzleSource` (encoding in the module docstring)."""

  def __init__(self, splits: dict[str, MazeSet], *, augment: bool = True,
               name: str = "maze", details: dict[str, Any] | None = None):
    if not splits:
      raise ValueError("at least one split is needed")
    sizes = {m.inputs.shape[-1] for m in splits.values()}
    if len(sizes) != 1:
      raise ValueError(f"all splits must share one grid size, got {sizes}")
    self.size = sizes.pop()
    self._splits = dict(splits)
    self.augment = augment
    self._details = dict(details or {})
    self.info = DatasetInfo(name=name, seq_len=self.size * self.size,
                            vocab_size=len(CHARSET) + 1, num_puzzle_identifiers=1,
                            splits=tuple(splits), family="maze")

  @classmethod
  def from_csv(cls, path: str, *, test_path: str | None = None, size: int = 30,
               num_train: int | None = None, skip_bad: bool = False,
               augment: bool = True, seed: int = 0,
               name: str = "maze-30x30-hard-1k") -> "MazeSource":
    """Reads `path/train.csv` and `path/test.csv`, or the file `path` as train
    (and `test_path` as test). `num_train` subsamples train (seeded by `seed`)."""
    if os.path.isdir(path):
      files = {"train": os.path.join(path, "train.csv"),
               "test": os.path.join(path, "test.csv")}
    else:
      files = {"train": path}
      if test_path is not None:
        files["test"] = test_path
    splits = {s: read_maze_csv(f, size=size, skip_bad=skip_bad)
              for s, f in files.items()}
    if num_train is not None and num_train < len(splits["train"]):
      rng = np.random.default_rng([seed, 0x3A])
      splits["train"] = splits["train"].subset(np.sort(rng.choice(
          len(splits["train"]), size=num_train, replace=False)))
    return cls(splits, augment=augment, name=name,
               details={"files": files,
                        "num_bad": {s: m.num_bad for s, m in splits.items()}})

  @classmethod
  def generated(cls, *, size: int = 30, num_train: int = 1000,
                num_test: int = 1000, min_path_length: int = 111,
                extra_openings: float = 0.05, augment: bool = True,
                seed: int = 0, cache_dir: str | None = None,
                name: str | None = None) -> "MazeSource":
    """Built-in generator; test mazes never repeat a train maze.

    30x30 hard mazes take ~30 ms each; `cache_dir` keeps generated splits
    (written atomically, keyed by every generation parameter).
    """
    params: dict[str, Any] = dict(size=size, min_path_length=min_path_length,
                                  extra_openings=extra_openings, seed=seed)
    train = _cached(cache_dir, {**params, "split": "train", "num": num_train},
                    lambda: generate_mazes(num_train, stream=0, **params))
    exclude = {m.tobytes() for m in train.inputs}
    test = _cached(cache_dir, {**params, "split": "test", "num": num_test},
                   lambda: generate_mazes(num_test, stream=1, exclude=exclude,
                                          **params))
    return cls({"train": train, "test": test}, augment=augment,
               name=name or f"maze-gen-{size}x{size}",
               details={"generator": params})

  def mazes(self, split: str) -> MazeSet:
    try:
      return self._splits[split]
    except KeyError:
      raise KeyError(f"unknown split {split!r}; have {self.info.splits}") from None

  def num_groups(self, split: str) -> int:
    return len(self.mazes(split))

  def num_versions(self, split: str, group: int) -> int:
    if not 0 <= group < self.num_groups(split):
      raise IndexError(f"group {group} out of range for split {split!r}")
    return NUM_DIHEDRAL if (split == "train" and self.augment) else 1

  def example_counts(self, split: str) -> np.ndarray:
    """Examples per version of each group (one maze each)."""
    return np.ones(self.num_groups(split), np.int64)

  def encode_rows(self, split: str, groups: np.ndarray, versions: np.ndarray,
                  indices: np.ndarray, epoch_keys: np.ndarray
                  ) -> dict[str, np.ndarray]:
    """Many examples at once (the pipeline's fast path): row k is version
    versions[k] (a dihedral transform: one strided copy per transform id) of
    maze groups[k]."""
    del epoch_keys  # no per-epoch randomness
    groups = np.asarray(groups, np.int64)
    versions = np.asarray(versions, np.int64)
    top = NUM_DIHEDRAL if (split == "train" and self.augment) else 1
    bad = ((groups < 0) | (groups >= self.num_groups(split)) | (versions < 0)
           | (versions >= top) | (np.asarray(indices) != 0))
    if bad.any():
      k = int(np.argmax(bad))
      raise IndexError(f"{self.info.name}/{split}: group {groups[k]} version "
                       f"{versions[k]} example {indices[k]} out of range")
    m = self.mazes(split)
    return {"inputs": gather_dihedral(m.inputs, groups, versions),
            "labels": gather_dihedral(m.labels, groups, versions),
            "puzzle_identifiers": np.zeros(len(groups), np.int32)}

  def examples(self, split: str, group: int, version: int,
               rng: np.random.Generator | None = None) -> Sequence[Example]:
    del rng  # no per-epoch randomness
    if not 0 <= version < self.num_versions(split, group):
      raise IndexError(f"version {version} out of range for {split}/{group}")
    rows = self.encode_rows(split, np.array([group]), np.array([version]),
                            np.zeros(1, np.int64), np.zeros(1, np.uint64))
    return examples_from_rows(rows, group, version)

  @staticmethod
  def invert(grid: np.ndarray, version: int) -> np.ndarray:
    """Undoes the augmentation of `version` on a grid [..., N, N]."""
    return inverse_dihedral(grid, version)

  def group_name(self, split: str, group: int) -> str:
    sources = self.mazes(split).sources
    return f"{split}/{group}:{sources[group] if sources else self.info.name}"

  def describe(self) -> dict[str, Any]:
    return {"name": self.info.name, "size": self.size, "augment": self.augment,
            "seq_len": self.info.seq_len, "vocab_size": self.info.vocab_size,
            "num_groups": {s: len(m) for s, m in self._splits.items()},
            **self._details}
