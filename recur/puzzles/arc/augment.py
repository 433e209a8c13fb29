"""ARC augmentations and the token encoding of grids on a fixed canvas.

An augmentation is a dihedral transform (ids of `recur.puzzles.dihedral`) plus a
permutation of the colours 1..9 (colour 0, the background, stays 0). Applied to a
grid it maps the colours first and then moves the cells; both commute.

Every task gets a deterministic list of up to `num_versions` distinct
augmentations drawn from `(seed, task id)`; version 0 is the identity. As in the
reference builder a candidate is rejected when the augmented task (all its grids,
in order) equals the task under an earlier version. Rather than hashing every
candidate, we compute the task's symmetry group once (the augmentations that
leave it unchanged) and compare candidates by a canonical key of their coset,
which is exact and vectorised; `task_key` gives the plain content hash used to
check this in the tests.

Encoding (vocabulary 12): PAD=0, EOS=1, colour c -> c + 2. The grid is written at a
top-left offset on a `canvas x canvas` board, an EOS row right under it (over the
grid's columns) and an EOS column right of it (over the grid's rows) when they fit
on the board; the corner cell stays PAD. `crop` inverts this for untranslated
boards exactly like the reference evaluator: the largest-area top-left rectangle
made only of colour tokens.
"""
from __future__ import annotations

import dataclasses
import hashlib
from typing import Sequence

import numpy as np

from recur.puzzles.dihedral import DIHEDRAL_INVERSE, NUM_DIHEDRAL, dihedral

__all__ = [
    "PAD", "EOS", "COLOUR_OFFSET", "NUM_COLOURS", "VOCAB_SIZE",
    "DEFAULT_CANVAS", "RETRIES_FACTOR", "Augmentation", "augment_grid",
    "inverse_augment_grid", "grid_key", "task_key", "plan_augmentations",
    "generate_augmentations",
    "random_offset", "encode_grid", "crop", "decode",
]

PAD = 0
EOS = 1
COLOUR_OFFSET = 2
NUM_COLOURS = 10
VOCAB_SIZE = NUM_COLOURS + COLOUR_OFFSET
DEFAULT_CANVAS = 30
# Candidates drawn per wanted version before giving up (reference: 5).
RETRIES_FACTOR = 5
_CHUNK = 1024  # candidates drawn per rng call (keeps prefixes stable)


def _compose_table() -> np.ndarray:
  """table[a, b] = id of (apply b, then a)."""
  probe = np.arange(6).reshape(2, 3)
  images = [dihedral(probe, t) for t in range(NUM_DIHEDRAL)]
  table = np.zeros((NUM_DIHEDRAL, NUM_DIHEDRAL), np.int64)
  for a in range(NUM_DIHEDRAL):
    for b in range(NUM_DIHEDRAL):
      both = dihedral(dihedral(probe, b), a)
      table[a, b] = next(c for c, im in enumerate(images)
                         if im.shape == both.shape and np.array_equal(im, both))
  return table


_COMPOSE = _compose_table()


@dataclasses.dataclass(frozen=True)
class Augmentation:
  """One augmented version: `grid -> dihedral(colours[grid], dihedral_id)`."""
  dihedral_id: int = 0
  colours: tuple[int, ...] = tuple(range(NUM_COLOURS))  # colours[c] = new colour

  def __post_init__(self):
    if not 0 <= self.dihedral_id < NUM_DIHEDRAL:
      raise ValueError(f"dihedral_id must be in 0..7, got {self.dihedral_id}")
    if (len(self.colours) != NUM_COLOURS or self.colours[0] != 0
        or sorted(self.colours) != list(range(NUM_COLOURS))):
      raise ValueError("colours must permute 0..9 with 0 fixed, got "
                       f"{self.colours}")

  @property
  def is_identity(self) -> bool:
    return self.dihedral_id == 0 and self.colours == tuple(range(NUM_COLOURS))

  def colour_table(self) -> np.ndarray:
    return np.asarray(self.colours, np.uint8)

  def inverse_colour_table(self) -> np.ndarray:
    return np.argsort(self.colour_table()).astype(np.uint8)

  def __str__(self) -> str:  # the reference's name suffix, e.g. "t3|0213..."
    return f"t{self.dihedral_id}|{''.join(map(str, self.colours))}"


def augment_grid(grid: np.ndarray, aug: Augmentation) -> np.ndarray:
  """Applies `aug` to a 2-D colour grid (values 0..9); returns a uint8 copy."""
  grid = np.asarray(grid)
  return np.ascontiguousarray(dihedral(aug.colour_table()[grid], aug.dihedral_id))


def inverse_augment_grid(grid: np.ndarray, aug: Augmentation) -> np.ndarray:
  """Undoes `augment_grid(., aug)`."""
  grid = np.asarray(grid)
  moved = dihedral(grid, DIHEDRAL_INVERSE[aug.dihedral_id])
  return np.ascontiguousarray(aug.inverse_colour_table()[moved])


def grid_key(grid: np.ndarray) -> bytes:
  """Exact identity of a grid (shape and cells) usable as a dict key."""
  grid = np.ascontiguousarray(grid, dtype=np.uint8)
  if grid.ndim != 2:
    raise ValueError(f"grid must be 2-D, got shape {grid.shape}")
  return np.asarray(grid.shape, ">u4").tobytes() + grid.tobytes()


def task_key(grids: Sequence[np.ndarray]) -> str:
  """SHA-256 of all the task's grids in order (shape and cells)."""
  h = hashlib.sha256()
  for g in grids:
    h.update(grid_key(g))
  return h.hexdigest()


def _stabiliser(grids: Sequence[np.ndarray]) -> list[tuple[int, np.ndarray]]:
  """Augmentations (dihedral id, colour table) that map the task onto itself.

  For each dihedral id the colour table is forced by the cells: it must send
  the colour at each moved cell to the colour at the same place originally.
  """
  found = []
  for t in range(NUM_DIHEDRAL):
    table = np.full(NUM_COLOURS, -1, np.int64)
    ok = True
    for g in grids:
      moved = dihedral(g, t)
      if moved.shape != g.shape:
        ok = False
        break
      pairs = np.unique(moved.ravel().astype(np.int64) * NUM_COLOURS + g.ravel())
      xs, ys = pairs // NUM_COLOURS, pairs % NUM_COLOURS
      if (len(np.unique(xs)) != len(xs) or np.any((xs == 0) != (ys == 0))
          or np.any((table[xs] >= 0) & (table[xs] != ys))):
        ok = False
        break
      table[xs] = ys
    defined = table[table >= 0]
    if ok and len(np.unique(defined)) == len(defined):
      found.append((t, table))
  return found


def plan_augmentations(grids: Sequence[np.ndarray], task_id: str, seed: int,
                       num_versions: int,
                       retries_factor: int = RETRIES_FACTOR
                       ) -> tuple[np.ndarray, np.ndarray]:
  """`generate_augmentations` as arrays: dihedral ids int8 [V], colour tables
  uint8 [V, 10] (row v maps colour c to table[v, c])."""
  if num_versions < 1:
    raise ValueError(f"num_versions must be >= 1, got {num_versions}")
  grids = [np.asarray(g, np.uint8) for g in grids]
  tids_out = [np.zeros(1, np.int64)]
  tables_out = [np.arange(NUM_COLOURS, dtype=np.int64)[None]]
  used = np.unique(np.concatenate([g.ravel() for g in grids]))
  used_nz = used[used != 0]
  stab = _stabiliser(grids)
  place = NUM_COLOURS ** np.arange(len(used_nz) - 1, -1, -1, dtype=np.int64)

  def canonical(tids: np.ndarray, tables: np.ndarray) -> np.ndarray:
    # Key of a candidate: (dihedral id, new colours of the used colours). The
    # candidates equal to it on this task are its compositions with the
    # stabiliser; the smallest key among them names the class.
    best = None
    for st, stable in stab:
      t = _COMPOSE[tids, st]
      cols = tables[:, stable[used_nz]]
      key = t * NUM_COLOURS ** len(used_nz) + cols.astype(np.int64) @ place
      best = key if best is None else np.minimum(best, key)
    return best

  digest = hashlib.sha256(f"{seed}/{task_id}".encode()).digest()
  rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
  accepted = canonical(tids_out[0], tables_out[0])
  have = 1
  budget = retries_factor * num_versions
  while budget > 0 and have < num_versions:
    n = min(_CHUNK, budget)
    budget -= n
    tids = rng.integers(0, NUM_DIHEDRAL, size=_CHUNK)[:n]
    perms = rng.permuted(np.tile(np.arange(1, NUM_COLOURS), (_CHUNK, 1)),
                         axis=1)[:n]
    tables = np.concatenate([np.zeros((n, 1), np.int64), perms], axis=1)
    keys = canonical(tids, tables)
    _, first = np.unique(keys, return_index=True)
    first = np.sort(first)  # first occurrence of each class, in draw order
    first = first[~np.isin(keys[first], accepted)][:num_versions - have]
    accepted = np.concatenate([accepted, keys[first]])
    tids_out.append(tids[first])
    tables_out.append(tables[first])
    have += len(first)
  return (np.concatenate(tids_out).astype(np.int8),
          np.concatenate(tables_out).astype(np.uint8))


def generate_augmentations(grids: Sequence[np.ndarray], task_id: str,
                           seed: int, num_versions: int,
                           retries_factor: int = RETRIES_FACTOR
                           ) -> list[Augmentation]:
  """Up to `num_versions` distinct augmentations of a task, identity first.

  Args:
    grids: every grid of the task (demonstration and test inputs/outputs), in a
      fixed order. Two augmentations are duplicates when they turn this list
      into the same list of grids.
    task_id: names the task; with `seed` it seeds the draw.
    seed: global seed.
    num_versions: wanted number of versions including the identity.
    retries_factor: at most `retries_factor * num_versions` random candidates
      (dihedral id uniform in 0..7, colours 1..9 uniformly permuted) are drawn.

  Returns:
    The accepted augmentations in draw order; fewer than `num_versions` when
    the task has few distinct augmented forms (e.g. it uses few colours).
  """
  tids, tables = plan_augmentations(grids, task_id, seed, num_versions,
                                    retries_factor)
  return [Augmentation(int(t), tuple(int(c) for c in row))
          for t, row in zip(tids, tables)]


def random_offset(rng: np.random.Generator, shapes: Sequence[tuple[int, int]],
                  canvas: int = DEFAULT_CANVAS) -> tuple[int, int]:
  """Top-left offset shared by grids of `shapes` so all fit on the canvas."""
  rows = max(s[0] for s in shapes)
  cols = max(s[1] for s in shapes)
  return (int(rng.integers(0, canvas - rows + 1)),
          int(rng.integers(0, canvas - cols + 1)))


def encode_grid(grid: np.ndarray, canvas: int = DEFAULT_CANVAS,
                offset: tuple[int, int] = (0, 0)) -> np.ndarray:
  """Writes a colour grid onto the canvas; returns int32 [canvas * canvas]."""
  grid = np.asarray(grid)
  nrow, ncol = grid.shape
  r0, c0 = offset
  if r0 < 0 or c0 < 0 or r0 + nrow > canvas or c0 + ncol > canvas:
    raise ValueError(f"grid {grid.shape} at offset {offset} does not fit on a "
                     f"{canvas}x{canvas} canvas")
  board = np.full((canvas, canvas), PAD, np.int32)
  board[r0:r0 + nrow, c0:c0 + ncol] = grid.astype(np.int32) + COLOUR_OFFSET
  if r0 + nrow < canvas:
    board[r0 + nrow, c0:c0 + ncol] = EOS
  if c0 + ncol < canvas:
    board[r0:r0 + nrow, c0 + ncol] = EOS
  return board.reshape(-1)


def crop(tokens: np.ndarray, canvas: int = DEFAULT_CANVAS) -> np.ndarray:
  """Largest-area top-left rectangle of colour tokens, as colours (uint8).

  Row r may extend the rectangle only as far as every row above it has colour
  tokens from column 0; among the candidate heights the first one with the
  largest area wins (as the reference). Returns a 0x0 grid when cell (0, 0) is
  not a colour.
  """
  board = np.asarray(tokens).reshape(canvas, canvas)
  is_colour = (board >= COLOUR_OFFSET) & (board < VOCAB_SIZE)
  run = np.where(is_colour.all(axis=1), canvas, np.argmin(is_colour, axis=1))
  width = np.minimum.accumulate(run)
  area = np.arange(1, canvas + 1) * width
  best = int(np.argmax(area))
  if area[best] == 0:
    return np.zeros((0, 0), np.uint8)
  return (board[:best + 1, :width[best]] - COLOUR_OFFSET).astype(np.uint8)


def decode(tokens: np.ndarray, canvas: int = DEFAULT_CANVAS,
           translated: bool = False) -> np.ndarray:
  """Colour grid of an encoded board. With `translated`, the board's origin is
  first moved to the top-left-most non-PAD cell (row and column separately)."""
  board = np.asarray(tokens).reshape(canvas, canvas)
  if translated:
    rows = np.flatnonzero((board != PAD).any(axis=1))
    cols = np.flatnonzero((board != PAD).any(axis=0))
    if not len(rows):
      return np.zeros((0, 0), np.uint8)
    sub = board[rows[0]:, cols[0]:]
    padded = np.full((canvas, canvas), PAD, board.dtype)
    padded[:sub.shape[0], :sub.shape[1]] = sub
    board = padded
  return crop(board, canvas)
