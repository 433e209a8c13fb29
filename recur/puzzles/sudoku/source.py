"""Sudoku puzzles: the Sudoku-Extreme CSV, a built-in generator, augmentation.

Boards are n x n with boxes of `box = (box_rows, box_cols)` cells, n = box_rows *
box_cols: 9x9 (3, 3) as in the paper, and the small 4x4 (2, 2) and 6x6 (2, 3).

Token encoding (as the reference, `build_sudoku_dataset.py`): PAD=0, blank=1,
digit d -> d + 1 (2..n+1), vocab n + 2 (11 for 9x9). Labels are the full solution,
givens included; no label is IGNORE. Like the reference, every Sudoku example
uses puzzle identifier 0 (the blank identifier) and `num_puzzle_identifiers` is 1.

Groups are puzzles. A train group has `1 + num_aug` versions (reference:
`--num_aug 1000`); version 0 is the puzzle itself and version v > 0 applies a
`SudokuTransform` drawn from `(seed, group, v)`: digit permutation, transpose with
p=0.5 (square boxes only: transposing 2x3 boxes would give 3x2 boxes), shuffle of
the bands and of the rows within each band, of the stacks and of the columns
within each stack. Test groups have one (unaugmented) version.

Generator: a random full grid is filled by a randomised backtracking search, then
givens are removed. With `num_blanks=k` k random cells are blanked at once and,
while a second solution exists, a cell where it differs from the intended one is
given back (fast, "easy" puzzles). With `num_blanks=None` every cell is tried in
random order and blanked when the puzzle keeps a unique solution (a minimal
puzzle). The difficulty rating is the number of dead ends met by a deterministic
minimum-remaining-values backtracking search counting solutions up to 2; the
hard split keeps puzzles with `rating >= min_rating`.
"""
from __future__ import annotations

import csv
import dataclasses
import functools
import os
import random
from typing import Any, Iterable, Sequence

import numpy as np

from recur.data import keys
from recur.data.base import DataError, DatasetInfo, Example, examples_from_rows
from recur.files import cached_npz
from recur.puzzles.csv_rows import report_skipped, require_rows

__all__ = [
    "BLANK_TOKEN", "SudokuPuzzles", "SudokuTransform", "SudokuSource",
    "encode_sudoku", "decode_sudoku", "random_transform", "apply_transform",
    "transform_arrays", "apply_transforms",
    "invert_transform", "count_solutions", "sudoku_rating", "is_valid_solution",
    "solved_mask",
    "generate_sudoku_puzzles", "read_sudoku_csv",
]

BLANK_TOKEN = 1
_GENERATOR_VERSION = 1  # bump when generated sets change; part of the cache key


# ----------------------------------------------------------------------------
# Encoding and geometry


def encode_sudoku(digits: np.ndarray) -> np.ndarray:
  """Digits (0 = blank, 1..n) -> tokens (blank 1, digit d -> d + 1), int32."""
  return np.asarray(digits, dtype=np.int32) + 1


def decode_sudoku(tokens: np.ndarray) -> np.ndarray:
  """Tokens -> digits (0 = blank or PAD)."""
  return np.maximum(np.asarray(tokens, dtype=np.int32) - 1, 0)


def _check_box(box: Sequence[int]) -> tuple[int, int]:
  box_rows, box_cols = (int(b) for b in box)
  if box_rows < 1 or box_cols < 1 or box_rows * box_cols < 2:
    raise ValueError(f"box must be two positive ints with product >= 2, got {box}")
  return box_rows, box_cols


@dataclasses.dataclass(frozen=True)
class _Geometry:
  n: int
  cells: int
  row: tuple[int, ...]
  col: tuple[int, ...]
  box: tuple[int, ...]
  full: int                    # bitmask of all n digits
  popcount: tuple[int, ...]    # popcount of every mask < 2**n
  digit: dict[int, int]        # single-bit mask -> digit


@functools.lru_cache(maxsize=None)
def _geometry(box_rows: int, box_cols: int) -> _Geometry:
  n = box_rows * box_cols
  cells = range(n * n)
  return _Geometry(
      n=n, cells=n * n,
      row=tuple(i // n for i in cells),
      col=tuple(i % n for i in cells),
      box=tuple((i // n) // box_rows * box_rows + (i % n) // box_cols
                for i in cells),
      full=(1 << n) - 1,
      popcount=tuple(bin(m).count("1") for m in range(1 << n)),
      digit={1 << d: d + 1 for d in range(n)})


# ----------------------------------------------------------------------------
# Solver


def _search(geo: _Geometry, grid: list[int], limit: int,
            shuffle: random.Random | None = None,
            forbid: tuple[int, int] | None = None) -> tuple[list[list[int]], int]:
  """Backtracking with minimum remaining values over row/col/box bitmasks.

  Returns (up to `limit` solutions, number of dead ends). `shuffle` randomises
  the order in which candidate digits are tried; `forbid=(cell, digit)` removes
  one candidate (used to ask "is there a solution other than this one?").
  """
  n, full, pop, dig = geo.n, geo.full, geo.popcount, geo.digit
  row_of, col_of, box_of = geo.row, geo.col, geo.box
  rows, cols, boxes = [0] * n, [0] * n, [0] * n
  empties = []
  grid = list(grid)
  for i, v in enumerate(grid):
    if v:
      bit = 1 << (v - 1)
      r, c, b = row_of[i], col_of[i], box_of[i]
      if (rows[r] | cols[c] | boxes[b]) & bit:
        return [], 0                                # givens already clash
      rows[r] |= bit
      cols[c] |= bit
      boxes[b] |= bit
    else:
      empties.append(i)
  forbid_cell, forbid_bit = (-1, 0) if forbid is None else (
      forbid[0], 1 << (forbid[1] - 1))
  solutions: list[list[int]] = []
  dead_ends = 0
  num_empty = len(empties)

  def recurse(k: int) -> bool:
    nonlocal dead_ends
    if k == num_empty:
      solutions.append(list(grid))
      return len(solutions) >= limit
    best, best_count, best_mask = k, n + 1, 0
    for j in range(k, num_empty):
      i = empties[j]
      mask = full & ~(rows[row_of[i]] | cols[col_of[i]] | boxes[box_of[i]])
      if i == forbid_cell:
        mask &= ~forbid_bit
      count = pop[mask]
      if count < best_count:
        best, best_count, best_mask = j, count, mask
        if count <= 1:
          break
    if best_count == 0:
      dead_ends += 1
      return False
    empties[k], empties[best] = empties[best], empties[k]
    i = empties[k]
    r, c, b = row_of[i], col_of[i], box_of[i]
    bits = []
    mask = best_mask
    while mask:
      bit = mask & -mask
      bits.append(bit)
      mask ^= bit
    if shuffle is not None and len(bits) > 1:
      shuffle.shuffle(bits)
    for bit in bits:
      rows[r] |= bit
      cols[c] |= bit
      boxes[b] |= bit
      grid[i] = dig[bit]
      stop = recurse(k + 1)
      rows[r] ^= bit
      cols[c] ^= bit
      boxes[b] ^= bit
      if stop:
        grid[i] = 0
        empties[k], empties[best] = empties[best], empties[k]
        return True
    grid[i] = 0
    empties[k], empties[best] = empties[best], empties[k]
    return False

  recurse(0)
  return solutions, dead_ends


def _flat(grid: np.ndarray | Sequence[int], geo: _Geometry) -> list[int]:
  flat = [int(v) for v in np.asarray(grid).reshape(-1)]
  if len(flat) != geo.cells:
    raise ValueError(f"expected {geo.cells} cells, got {len(flat)}")
  return flat


def count_solutions(grid: np.ndarray, box: Sequence[int] = (3, 3),
                    limit: int = 2) -> int:
  """Number of solutions of a digit grid (0 = blank), counted up to `limit`."""
  geo = _geometry(*_check_box(box))
  return len(_search(geo, _flat(grid, geo), limit)[0])


def sudoku_rating(grid: np.ndarray, box: Sequence[int] = (3, 3)) -> int:
  """Difficulty rating: dead ends of the deterministic solver counting to 2."""
  geo = _geometry(*_check_box(box))
  return _search(geo, _flat(grid, geo), 2)[1]


def solved_mask(digits: np.ndarray, box: Sequence[int] = (3, 3)) -> np.ndarray:
  """bool [B]: each grid of digits [B, n, n] obeys the rules: every row, column
  and box holds 1..n once each (any other value, e.g. a blank 0, fails). The one
  definition of a solved board, used by the generator checks, the CSV reader
  and the evaluator."""
  box_rows, box_cols = _check_box(box)
  n = box_rows * box_cols
  d = np.asarray(digits).reshape(-1, n, n)
  want = np.arange(1, n + 1)
  boxes = d.reshape(-1, box_cols, box_rows, box_rows, box_cols).swapaxes(2, 3)
  ok = np.ones(len(d), bool)
  for groups in (d, d.swapaxes(1, 2), boxes.reshape(-1, n, n)):
    ok &= (np.sort(groups, axis=-1) == want).all(axis=(1, 2))
  return ok


def is_valid_solution(solution: np.ndarray, box: Sequence[int] = (3, 3),
                      question: np.ndarray | None = None) -> bool:
  """True when `solution` obeys all row/column/box rules (and keeps the givens)."""
  if not solved_mask(solution, box)[0]:
    return False
  if question is not None:
    q = np.asarray(question).reshape(np.shape(solution))
    if np.any((q != 0) & (q != np.asarray(solution))):
      return False
  return True


# ----------------------------------------------------------------------------
# Augmentation


@dataclasses.dataclass(frozen=True)
class SudokuTransform:
  """A validity-preserving Sudoku symmetry.

  Applied as: transpose (if set), then `out[i, j] = x[row_perm[i], col_perm[j]]`,
  then `digit_map[out]` (digit_map[0] == 0 keeps blanks).
  """
  digit_map: np.ndarray   # int [n + 1]
  transpose: bool
  row_perm: np.ndarray    # int [n]
  col_perm: np.ndarray    # int [n]


def _identity_transform(n: int) -> SudokuTransform:
  return SudokuTransform(np.arange(n + 1), False, np.arange(n), np.arange(n))


def random_transform(rng: np.random.Generator,
                     box: Sequence[int] = (3, 3)) -> SudokuTransform:
  """Draws a transform: digits, transpose (square boxes), bands/rows, stacks/cols."""
  box_rows, box_cols = _check_box(box)
  n = box_rows * box_cols
  digit_map = np.concatenate([[0], rng.permutation(np.arange(1, n + 1))])
  transpose = bool(rng.random() < 0.5) if box_rows == box_cols else False
  # box_cols bands of box_rows rows; box_rows stacks of box_cols columns.
  row_perm = np.concatenate([band * box_rows + rng.permutation(box_rows)
                             for band in rng.permutation(box_cols)])
  col_perm = np.concatenate([stack * box_cols + rng.permutation(box_cols)
                             for stack in rng.permutation(box_rows)])
  return SudokuTransform(digit_map, transpose, row_perm, col_perm)


def apply_transform(grid: np.ndarray, t: SudokuTransform) -> np.ndarray:
  """Applies `t` to digit grids [..., n, n]."""
  x = np.asarray(grid)
  if t.transpose:
    x = np.swapaxes(x, -2, -1)
  x = x[..., t.row_perm, :][..., :, t.col_perm]
  return t.digit_map[x].astype(np.asarray(grid).dtype)


def invert_transform(grid: np.ndarray, t: SudokuTransform) -> np.ndarray:
  """Inverse of `apply_transform`: `invert_transform(apply_transform(g, t), t) == g`."""
  x = np.asarray(grid)
  x = np.argsort(t.digit_map)[x]
  x = x[..., np.argsort(t.row_perm), :][..., :, np.argsort(t.col_perm)]
  if t.transpose:
    x = np.swapaxes(x, -2, -1)
  return x.astype(np.asarray(grid).dtype)


_TRANSFORM_STREAM = 0x5D0C  # keeps the transform hashes apart from others


def transform_arrays(seed: int, split_code: int, groups: np.ndarray,
                     versions: np.ndarray, box: Sequence[int] = (3, 3)
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """The transforms of many (group, version)s at once, as arrays.

  Returns digit_map int64 [B, n + 1], transpose bool [B], row_perm and
  col_perm int64 [B, n]. Each is a hash of (seed, split, group, version)
  (`recur.data.keys`), so a version's transform does not depend on the batch
  it is drawn in; version 0 is the identity. The same kinds of transforms as
  `random_transform` (digits, transpose for square boxes, bands and the rows
  in each band, stacks and the columns in each stack).
  """
  box_rows, box_cols = _check_box(box)
  n = box_rows * box_cols
  g = np.asarray(groups, np.int64)[:, None]
  v = np.asarray(versions, np.int64)[:, None]
  # Slots: n digit keys, 1 transpose, box_cols band keys, n row keys,
  # box_rows stack keys, n column keys.
  h = keys.hash_ints(seed, _TRANSFORM_STREAM, split_code, g, v,
                     np.arange(3 * n + box_rows + box_cols + 1)[None])
  at = 0
  def take(k):
    nonlocal at
    at += k
    return h[:, at - k:at]
  digits = keys.permutations(take(n)) + 1
  flip = keys.uniform(take(1)[:, 0]) < 0.5
  bands = keys.permutations(take(box_cols))
  rows = keys.permutations(take(n).reshape(-1, box_cols, box_rows))
  stacks = keys.permutations(take(box_rows))
  cols = keys.permutations(take(n).reshape(-1, box_rows, box_cols))
  row_perm = (bands[:, :, None] * box_rows + np.take_along_axis(
      rows, bands[:, :, None], axis=1)).reshape(-1, n)
  col_perm = (stacks[:, :, None] * box_cols + np.take_along_axis(
      cols, stacks[:, :, None], axis=1)).reshape(-1, n)
  digit_map = np.concatenate([np.zeros((len(digits), 1), np.int64), digits], 1)
  flip &= box_rows == box_cols
  ident = v[:, 0] == 0
  digit_map[ident] = np.arange(n + 1)
  flip[ident] = False
  row_perm[ident] = np.arange(n)
  col_perm[ident] = np.arange(n)
  return digit_map, flip, row_perm, col_perm


def apply_transforms(grids: np.ndarray, digit_map: np.ndarray,
                     transpose: np.ndarray, row_perm: np.ndarray,
                     col_perm: np.ndarray) -> np.ndarray:
  """`apply_transform` row by row on [B, n, n] grids, as one gather each.

  Cell (i, j) of the result is digit_map[x[c, r]] with r = row_perm[i] and
  c = col_perm[j] if transposed, else digit_map[x[r, c]]; returns [B, n * n].
  """
  grids = np.asarray(grids)
  b, n = grids.shape[0], grids.shape[-1]
  r = row_perm[:, :, None]
  c = col_perm[:, None, :]
  src = np.where(np.asarray(transpose)[:, None, None], c * n + r, r * n + c)
  cells = np.take_along_axis(grids.reshape(b, n * n), src.reshape(b, n * n), 1)
  return np.take_along_axis(digit_map, cells.astype(np.int64), 1)


# ----------------------------------------------------------------------------
# Puzzle sets


@dataclasses.dataclass(frozen=True)
class SudokuPuzzles:
  """A set of puzzles as digit grids (0 = blank)."""
  questions: np.ndarray   # int8 [N, n, n]
  answers: np.ndarray     # int8 [N, n, n]
  ratings: np.ndarray     # int64 [N]
  box: tuple[int, int] = (3, 3)
  sources: tuple[str, ...] | None = None   # CSV "source" column, if any
  num_bad: int = 0                          # rows skipped by skip_bad
  skipped: tuple[str, ...] = ()             # why each was bad ("row L: ...")

  def __len__(self) -> int:
    return len(self.questions)

  def subset(self, indices: Iterable[int]) -> "SudokuPuzzles":
    idx = np.asarray(list(indices), dtype=np.int64)
    return dataclasses.replace(
        self, questions=self.questions[idx], answers=self.answers[idx],
        ratings=self.ratings[idx],
        sources=None if self.sources is None else tuple(
            self.sources[i] for i in idx))


def _generate_one(geo: _Geometry, rng: np.random.Generator,
                  num_blanks: int | None) -> tuple[list[int], list[int]]:
  """One (question, solution) pair with a unique solution."""
  shuffle = random.Random(int(rng.integers(2**63)))
  solution = _search(geo, [0] * geo.cells, 1, shuffle=shuffle)[0][0]
  order = list(range(geo.cells))
  shuffle.shuffle(order)
  if num_blanks is None:
    puzzle = list(solution)
    for cell in order:
      value = puzzle[cell]
      puzzle[cell] = 0
      if _search(geo, puzzle, 1, forbid=(cell, value))[0]:
        puzzle[cell] = value       # another digit fits here: keep the given
    return puzzle, solution
  puzzle = list(solution)
  blanked = order[:min(num_blanks, geo.cells)]
  for cell in blanked:
    puzzle[cell] = 0
  while True:
    solutions = _search(geo, puzzle, 2, shuffle=shuffle)[0]
    other = [s for s in solutions if s != solution]
    if not other:
      return puzzle, solution
    differ = [c for c in blanked if puzzle[c] == 0 and other[0][c] != solution[c]]
    cell = differ[shuffle.randrange(len(differ))]
    puzzle[cell] = solution[cell]


def generate_sudoku_puzzles(num: int, *, box: Sequence[int] = (3, 3),
                            seed: int = 0, stream: int = 0,
                            num_blanks: int | None = None, min_rating: int = 0,
                            exclude: Iterable[bytes] = (),
                            max_attempts: int | None = None) -> SudokuPuzzles:
  """Generates `num` distinct puzzles with exactly one solution.

  Attempt i draws from `np.random.default_rng([seed, stream, i])`, so a set is
  reproducible and a longer set extends a shorter one. Puzzles with a rating
  below `min_rating`, duplicates and puzzles whose question bytes are in
  `exclude` (e.g. the train split, when making the test split) are skipped.

  Args:
    num: number of puzzles.
    box: (box_rows, box_cols); the board is n x n with n = box_rows * box_cols.
    seed, stream: random stream (e.g. stream 0 for train, 1 for test).
    num_blanks: blank this many cells, giving some back for uniqueness (fast);
      None for minimal puzzles (every remaining given is needed).
    min_rating: keep puzzles with `sudoku_rating >= min_rating` (hard split).
    exclude: question bytes (`q.astype(np.int8).tobytes()`) to avoid.
    max_attempts: give up (ValueError) after this many attempts; default
      `100 * num + 1000`.
  """
  geo = _geometry(*_check_box(box))
  seen = set(exclude)
  questions: list[list[int]] = []
  answers: list[list[int]] = []
  ratings: list[int] = []
  max_attempts = 100 * num + 1000 if max_attempts is None else max_attempts
  attempt = 0
  while len(questions) < num:
    if attempt >= max_attempts:
      raise ValueError(
          f"only {len(questions)} of {num} distinct puzzles with rating >= "
          f"{min_rating} after {attempt} attempts (box={tuple(box)})")
    rng = np.random.default_rng([seed, stream, attempt])
    attempt += 1
    puzzle, solution = _generate_one(geo, rng, num_blanks)
    rating = _search(geo, puzzle, 2)[1]
    key = np.asarray(puzzle, np.int8).tobytes()
    if rating < min_rating or key in seen:
      continue
    seen.add(key)
    questions.append(puzzle)
    answers.append(solution)
    ratings.append(rating)
  shape = (len(questions), geo.n, geo.n)
  return SudokuPuzzles(
      questions=np.asarray(questions, np.int8).reshape(shape),
      answers=np.asarray(answers, np.int8).reshape(shape),
      ratings=np.asarray(ratings, np.int64), box=_check_box(box))


def _cached(cache_dir: str | None, params: dict[str, Any], make) -> SudokuPuzzles:
  """Loads a generated set from `cache_dir` or makes and stores it atomically."""
  def arrays():
    p = make()
    return {"questions": p.questions, "answers": p.answers, "ratings": p.ratings}
  z = cached_npz(cache_dir, "sudoku", params, arrays)
  return SudokuPuzzles(questions=z["questions"], answers=z["answers"],
                       ratings=z["ratings"], box=tuple(params["box"]))


# ----------------------------------------------------------------------------
# CSV


_CSV_HEADER = ["source", "q", "a", "rating"]


def _grid_errors(q: np.ndarray, a: np.ndarray, box: tuple[int, int],
                 texts: dict[str, list[str]]) -> list[tuple[int, str, str]]:
  """Per-row checks of parsed grids [N, n, n] (-1 = bad character), vectorised.

  Returns (row index, field, why) for each bad row, the first error of the row.
  """
  errors: dict[int, tuple[str, str]] = {}

  def note(bad: np.ndarray | np.bool_, field: str, why) -> None:
    for i in np.flatnonzero(bad):
      errors.setdefault(int(i), (field, why(int(i))))

  def first(mask: np.ndarray) -> tuple[int, int]:
    r, c = np.unravel_index(np.argmax(mask), mask.shape)
    return int(r), int(c)

  def bad_char(field: str, grid: np.ndarray, i: int) -> str:
    pos = int(np.argmax(grid[i].reshape(-1) < 0))
    return f"bad character {texts[field][i][pos]!r} at position {pos}"

  note((q < 0).any(axis=(1, 2)), "q", lambda i: bad_char("q", q, i))
  note((a < 0).any(axis=(1, 2)), "a", lambda i: bad_char("a", a, i))
  clash = (q > 0) & (q != a)
  note(clash.any(axis=(1, 2)), "a", lambda i: (
      "disagrees with the given in q at row {}, column {}".format(*first(clash[i]))))
  note(~solved_mask(a, box), "a", lambda i: "not a valid solution (a row, "
       "column or box repeats a digit)")
  return [(i, field, why) for i, (field, why) in sorted(errors.items())]


def read_sudoku_csv(path: str, *, box: Sequence[int] = (3, 3),
                    min_difficulty: int | None = None,
                    skip_bad: bool = False) -> SudokuPuzzles:
  """Reads the Sudoku-Extreme layout `source,q,a,rating` ('.' or '0' = blank).

  Every row is checked: four fields, `q` and `a` of n*n characters, digits
  1..n in `a` (and '.'/'0' too in `q`), an integer rating, `a` keeps the givens
  of `q` and `a` is a valid solution. The first bad row raises DataError naming
  the file, the row (line number, header = 1) and the field; with `skip_bad`
  bad rows are skipped and counted in `num_bad`. `min_difficulty` keeps rows
  with `rating >= min_difficulty`, as the reference. The grid checks are
  vectorised (the 423k-row Sudoku-Extreme test split reads in seconds).
  """
  box = _check_box(box)
  n = box[0] * box[1]
  cells = n * n
  digits = "".join(str(d) if d < 10 else chr(ord("A") + d - 10)
                   for d in range(1, n + 1))
  lut_q = np.full(256, -1, np.int8)
  lut_a = np.full(256, -1, np.int8)
  for value, ch in enumerate(digits, start=1):
    lut_q[ord(ch)] = lut_a[ord(ch)] = value
  lut_q[ord(".")] = lut_q[ord("0")] = 0
  errors: list[tuple[int, str, str]] = []     # (line, field, why)
  lines, sources, q_texts, a_texts, ratings = [], [], [], [], []
  try:
    f = open(path, newline="", encoding="utf-8")
  except OSError as e:
    raise DataError(f"{path}: cannot open: {e}") from e
  with f:
    reader = csv.reader(f)
    for fields in reader:
      line = reader.line_num
      if line == 1 and fields == _CSV_HEADER:
        continue
      if len(fields) != 4:
        errors.append((line, "row", "expected 4 fields (source,q,a,rating), "
                       f"got {len(fields)}"))
        if not skip_bad:
          break
        continue
      source, q_text, a_text, rating_text = fields
      why = None
      try:
        rating = int(rating_text)
      except ValueError:
        why = ("rating", f"not an integer: {rating_text!r}")
      for field, text in (("q", q_text), ("a", a_text)):
        if why is None and len(text) != cells:
          why = (field, f"expected {cells} characters, got {len(text)}")
        elif why is None and not text.isascii():
          pos = next(i for i, ch in enumerate(text) if not ch.isascii())
          why = (field, f"bad character {text[pos]!r} at position {pos}")
      if why is not None:
        errors.append((line, *why))
        if not skip_bad:
          break
        continue
      lines.append(line)
      sources.append(source)
      q_texts.append(q_text)
      a_texts.append(a_text)
      ratings.append(rating)
  num = len(lines)
  q = lut_q[np.frombuffer("".join(q_texts).encode("ascii"), np.uint8)]
  a = lut_a[np.frombuffer("".join(a_texts).encode("ascii"), np.uint8)]
  q, a = q.reshape(num, n, n), a.reshape(num, n, n)
  grid_errors = _grid_errors(q, a, box, {"q": q_texts, "a": a_texts})
  errors.extend((lines[i], field, why) for i, field, why in grid_errors)
  if errors and not skip_bad:
    line, field, reason = min(errors)
    raise DataError(f"{path}: row {line}: field '{field}': {reason}")
  reasons = [f"row {ln}: field '{fd}': {r}" for ln, fd, r in sorted(errors)]
  report_skipped(path, reasons)
  require_rows(path, num - len(grid_errors), len(errors), "Sudoku")
  keep = np.ones(num, bool)
  keep[[i for i, _, _ in grid_errors]] = False
  rating_array = np.asarray(ratings, np.int64).reshape(num)
  if min_difficulty is not None:
    keep &= rating_array >= min_difficulty
    if not keep.any():
      raise DataError(f"{path}: no puzzle with rating >= min_difficulty "
                      f"{min_difficulty} (empty split)")
  idx = np.flatnonzero(keep)
  return SudokuPuzzles(questions=q[idx], answers=a[idx], ratings=rating_array[idx],
                       box=box, sources=tuple(sources[i] for i in idx),
                       num_bad=len(errors), skipped=tuple(reasons))


# ----------------------------------------------------------------------------
# Source


class SudokuSource:
  """Sudoku as a `PuzzleSource` (see the module docstring for the encoding).

  Build with `SudokuSource.from_csv(...)`, `SudokuSource.generated(...)` or
  directly from `SudokuPuzzles` per split.
  """

  def __init__(self, splits: dict[str, SudokuPuzzles], *, num_aug: int = 1000,
               seed: int = 0, name: str = "sudoku",
               details: dict[str, Any] | None = None):
    if not splits:
      raise ValueError("at least one split is needed")
    boxes = {p.box for p in splits.values()}
    if len(boxes) != 1:
      raise ValueError(f"all splits must share one box shape, got {boxes}")
    if num_aug < 0:
      raise ValueError(f"num_aug must be >= 0, got {num_aug}")
    self.box = boxes.pop()
    self.n = self.box[0] * self.box[1]
    self._splits = dict(splits)
    self.num_aug = num_aug
    self.seed = seed
    self._details = dict(details or {})
    self.info = DatasetInfo(name=name, seq_len=self.n * self.n,
                            vocab_size=self.n + 2, num_puzzle_identifiers=1,
                            splits=tuple(splits), family="sudoku")

  @classmethod
  def from_csv(cls, path: str, *, test_path: str | None = None,
               box: Sequence[int] = (3, 3), num_train: int | None = 1000,
               min_difficulty: int | None = None, skip_bad: bool = False,
               num_aug: int = 1000, seed: int = 0,
               name: str = "sudoku-extreme") -> "SudokuSource":
    """Reads `path/train.csv` and `path/test.csv`, or the file `path` as train
    (and `test_path` as test, if given).

    `num_train` puzzles are sampled from the train file without replacement
    (None: all), with a generator seeded by `seed`; the test split is kept whole.
    """
    if os.path.isdir(path):
      files = {"train": os.path.join(path, "train.csv"),
               "test": os.path.join(path, "test.csv")}
    else:
      files = {"train": path}
      if test_path is not None:
        files["test"] = test_path
    splits = {split: read_sudoku_csv(file, box=box, min_difficulty=min_difficulty,
                                     skip_bad=skip_bad)
              for split, file in files.items()}
    train = splits["train"]
    if num_train is not None and num_train < len(train):
      rng = np.random.default_rng([seed, 0x5D])
      splits["train"] = train.subset(
          np.sort(rng.choice(len(train), size=num_train, replace=False)))
    details = {"files": files, "num_train_file_rows": len(train),
               "min_difficulty": min_difficulty,
               "num_bad": {s: p.num_bad for s, p in splits.items()}}
    return cls(splits, num_aug=num_aug, seed=seed, name=name, details=details)

  @classmethod
  def generated(cls, *, box: Sequence[int] = (3, 3), num_train: int = 1000,
                num_test: int = 1000, num_blanks: int | None = None,
                min_rating: int = 0, num_aug: int = 1000, seed: int = 0,
                cache_dir: str | None = None,
                name: str | None = None) -> "SudokuSource":
    """Built-in generator; train and test are disjoint (test excludes train).

    Easy 9x9: `num_blanks=45`; hard: `num_blanks=None, min_rating=...`
    (minimal puzzles, slow: pass `cache_dir` to keep them).
    """
    box = _check_box(box)
    params = {"box": list(box), "num_blanks": num_blanks, "min_rating": min_rating,
              "seed": seed, "version": _GENERATOR_VERSION}
    train = _cached(cache_dir, {**params, "split": "train", "num": num_train},
                    lambda: generate_sudoku_puzzles(
                        num_train, box=box, seed=seed, stream=0,
                        num_blanks=num_blanks, min_rating=min_rating))
    exclude = {q.tobytes() for q in train.questions.astype(np.int8)}
    test = _cached(cache_dir, {**params, "split": "test", "num": num_test},
                   lambda: generate_sudoku_puzzles(
                       num_test, box=box, seed=seed, stream=1,
                       num_blanks=num_blanks, min_rating=min_rating,
                       exclude=exclude))
    n = box[0] * box[1]
    name = name or f"sudoku-gen-{n}x{n}"
    return cls({"train": train, "test": test}, num_aug=num_aug, seed=seed,
               name=name, details={"generator": params})

  def puzzles(self, split: str) -> SudokuPuzzles:
    try:
      return self._splits[split]
    except KeyError:
      raise KeyError(f"unknown split {split!r}; have {self.info.splits}") from None

  def num_groups(self, split: str) -> int:
    return len(self.puzzles(split))

  def num_versions(self, split: str, group: int) -> int:
    self._check_group(split, group)
    return 1 + self.num_aug if split == "train" else 1

  def transform(self, split: str, group: int, version: int) -> SudokuTransform:
    """The transform of one version (identity for version 0)."""
    if not 0 <= version < self.num_versions(split, group):
      raise IndexError(f"version {version} out of range for {split}/{group}")
    if version == 0:
      return _identity_transform(self.n)
    d, t, r, c = transform_arrays(self.seed, self.info.splits.index(split),
                                  np.array([group]), np.array([version]),
                                  self.box)
    return SudokuTransform(d[0], bool(t[0]), r[0], c[0])

  def example_counts(self, split: str) -> np.ndarray:
    """Examples per version of each group (one puzzle each)."""
    return np.ones(self.num_groups(split), np.int64)

  def encode_rows(self, split: str, groups: np.ndarray, versions: np.ndarray,
                  indices: np.ndarray, epoch_keys: np.ndarray
                  ) -> dict[str, np.ndarray]:
    """Many examples at once (the pipeline's fast path): row k is example
    indices[k] of version versions[k] of group groups[k]."""
    del epoch_keys  # Sudoku has no per-epoch randomness beyond the version.
    groups = np.asarray(groups, np.int64)
    versions = np.asarray(versions, np.int64)
    num = self.num_groups(split)
    top = 1 + self.num_aug if split == "train" else 1
    bad = ((groups < 0) | (groups >= num) | (versions < 0) | (versions >= top)
           | (np.asarray(indices) != 0))
    if bad.any():
      k = int(np.argmax(bad))
      raise IndexError(f"{self.info.name}/{split}: group {groups[k]} version "
                       f"{versions[k]} example {indices[k]} out of range")
    p = self.puzzles(split)
    arrays = transform_arrays(self.seed, self.info.splits.index(split), groups,
                              versions, self.box)
    q = apply_transforms(p.questions[groups], *arrays)
    a = apply_transforms(p.answers[groups], *arrays)
    return {"inputs": (q + 1).astype(np.int32),
            "labels": (a + 1).astype(np.int32),
            "puzzle_identifiers": np.zeros(len(groups), np.int32)}

  def examples(self, split: str, group: int, version: int,
               rng: np.random.Generator | None = None) -> Sequence[Example]:
    del rng  # Sudoku has no per-epoch randomness beyond the version.
    if not 0 <= version < self.num_versions(split, group):
      raise IndexError(f"version {version} out of range for {split}/{group}")
    rows = self.encode_rows(split, np.array([group]), np.array([version]),
                            np.zeros(1, np.int64), np.zeros(1, np.uint64))
    return examples_from_rows(rows, group, version)

  def group_name(self, split: str, group: int) -> str:
    self._check_group(split, group)
    sources = self.puzzles(split).sources
    prefix = sources[group] if sources else self.info.name
    return f"{split}/{group}:{prefix}"

  def describe(self) -> dict[str, Any]:
    return {"name": self.info.name, "box": list(self.box),
            "seq_len": self.info.seq_len, "vocab_size": self.info.vocab_size,
            "num_aug": self.num_aug, "seed": self.seed,
            "num_groups": {s: len(p) for s, p in self._splits.items()},
            "mean_rating": {s: float(p.ratings.mean()) if len(p) else None
                            for s, p in self._splits.items()},
            **self._details}

  def _check_group(self, split: str, group: int) -> None:
    if not 0 <= group < self.num_groups(split):
      raise IndexError(f"group {group} out of range for split {split!r}")
