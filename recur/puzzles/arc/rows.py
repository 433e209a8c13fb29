"""ARC examples as batch rows: the pipeline's vectorised path for `ArcSource`.

A row is (group, version, example index): the example's input and output
grids, augmented by the version (dihedral transform, colour permutation),
written on the canvas at the row's translation offset (`augment.encode_grid`).
Per-row Python would cost ~80 us a row; here a batch is a handful of numpy
operations:

* `BoardStore` holds, once per split, every grid already transformed by each
  of the 8 dihedral maps and laid out on a board with its EOS row and column,
  as *codes* (colours 0..9, `EOS_CODE`, `PAD_CODE`). Boards are `(canvas + 1)`
  columns wide with a PAD row under them, so a board translated by (r0, c0)
  is, row by row, one contiguous window of `canvas` codes of the flat store
  starting `c0` cells before the source row: the cells left of the grid are
  the previous row's tail, always PAD (a grid of width w has c0 <= canvas - w,
  so the tail starts past its EOS column), and rows above the grid read a
  PAD zone. Translation is therefore index arithmetic on [rows, canvas]
  window starts; the cells are moved by one gather of windows.
* The colour permutation and the token encoding (colour c -> table[c] + 2,
  EOS, PAD or, for labels, IGNORE) are one lookup per cell in a per-row table
  of `NUM_CODES` entries.

Translation offsets (`translation`) are counter-based hashes
(`recur.data.keys`) of (seed, task, version, example) for translation fixed per
version (the reference), or of the pipeline's per-epoch key; one example per
version (drawn the same way) stays at the origin.

ARC batches are not byte-identical to those of the per-example path before
this module: (1) with `encode_rows` the packer draws each group's version and
the order of its examples from `recur.data.keys` hashes instead of the
per-group numpy Generator, for every source (Sudoku and Maze changed the same
way), so the rows of a batch are other (group, version, example)s; (2) the
reference-style fixed offsets were draws of a numpy Generator seeded per
(seed, task, version): reproducing them needs one Generator per row (tens of
microseconds each, the per-row Python this module removes), so they are
hashes now, with the same rules. Every row equals `augment.encode_grid(
augment.augment_grid(...), offset)` of its (group, version, example).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from recur.data import keys
from recur.data.base import IGNORE_LABEL_ID
from recur.puzzles.arc import augment as aa
from recur.puzzles.dihedral import NUM_DIHEDRAL, dihedral

__all__ = ["EOS_CODE", "PAD_CODE", "NUM_CODES", "TRANSLATE_STREAM", "BoardStore",
           "ArcRows", "translation", "token_tables", "lookup"]

EOS_CODE = aa.NUM_COLOURS
PAD_CODE = aa.NUM_COLOURS + 1
NUM_CODES = aa.NUM_COLOURS + 2
# Keeps the translation draws apart from the pipeline's other hashes.
TRANSLATE_STREAM = 7
_AXIS_ROW, _AXIS_COL = 0, 1


class BoardStore:
  """Grids pre-transformed and laid out for window gathers.

  Board 0 is blank (all PAD: a pair without output); grid j of `grids` is
  board j + 1. `shapes[b, d]` is (rows, cols) of board b under dihedral d.
  """

  def __init__(self, grids: Sequence[np.ndarray], canvas: int):
    self.canvas = c = int(canvas)
    self._width = c + 1
    self._board = (c + 2) * (c + 1)
    n = len(grids) + 1
    boards = np.full((n, NUM_DIHEDRAL, c + 2, c + 1), PAD_CODE, np.uint8)
    self.shapes = np.zeros((n, NUM_DIHEDRAL, 2), np.int64)
    by_shape: dict[tuple[int, int], list[int]] = {}
    for j, g in enumerate(grids):
      by_shape.setdefault(tuple(np.shape(g)), []).append(j + 1)
    for (h, w), ids in by_shape.items():
      if not (0 < h <= c and 0 < w <= c):
        raise ValueError(f"grid {h}x{w} does not fit on a {c}x{c} canvas")
      idx = np.asarray(ids)
      stack = np.stack([np.asarray(grids[j - 1], np.uint8) for j in ids])
      for d in range(NUM_DIHEDRAL):
        moved = dihedral(stack, d)
        h2, w2 = moved.shape[1:]
        boards[idx, d, :h2, :w2] = moved
        boards[idx, d, h2, :w2] = EOS_CODE   # row h2 <= c exists (c + 2 rows)
        boards[idx, d, :h2, w2] = EOS_CODE   # column w2 <= c exists
        self.shapes[idx, d] = (h2, w2)
    # A PAD zone first: rows above a translated grid read window 0.
    self._flat = np.concatenate([np.full(self._width, PAD_CODE, np.uint8),
                                 boards.reshape(-1)])
    self._windows = np.lib.stride_tricks.sliding_window_view(self._flat, c)
    self.nbytes = self._flat.nbytes

  def codes(self, boards: np.ndarray, dihedrals: np.ndarray, r0: np.ndarray,
            c0: np.ndarray) -> np.ndarray:
    """uint8 [rows, canvas, canvas]: board boards[k] under dihedral
    dihedrals[k], its top-left corner moved to (r0[k], c0[k])."""
    c = self.canvas
    base = self._width + (boards * NUM_DIHEDRAL + dihedrals) * self._board
    src = np.arange(c)[None, :] - r0[:, None]           # source row per row
    start = base[:, None] + src * self._width - c0[:, None]
    start[src < 0] = 0                                  # above the grid: PAD
    return self._windows[start]


def translation(vkeys: np.ndarray, indices: np.ndarray, counts: np.ndarray,
                rows: np.ndarray, cols: np.ndarray, canvas: int
                ) -> tuple[np.ndarray, np.ndarray]:
  """Top-left offsets (r0, c0) int64 [n] of examples `indices` of versions
  keyed `vkeys` (versions of `counts` examples), for grids spanning `rows` x
  `cols` (max over input and output): uniform over the offsets that fit, and
  (0, 0) for the one example per version `below(vkey, count)` picks."""
  r0 = keys.below(keys.hash_ints(vkeys, indices, _AXIS_ROW), canvas - rows + 1)
  c0 = keys.below(keys.hash_ints(vkeys, indices, _AXIS_COL), canvas - cols + 1)
  kept = keys.below(vkeys, counts) == indices
  return np.where(kept, 0, r0), np.where(kept, 0, c0)


def token_tables(colour_tables: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Per-row code -> token tables int32 [n, NUM_CODES] for inputs and labels,
  from colour tables uint8 [n, 10] (colour c -> table[c], then + 2)."""
  n = len(colour_tables)
  inputs = np.empty((n, NUM_CODES), np.int32)
  inputs[:, :aa.NUM_COLOURS] = colour_tables.astype(np.int32) + aa.COLOUR_OFFSET
  inputs[:, EOS_CODE] = aa.EOS
  inputs[:, PAD_CODE] = aa.PAD
  labels = inputs.copy()
  labels[:, PAD_CODE] = IGNORE_LABEL_ID
  return inputs, labels


def lookup(tables: np.ndarray, codes: np.ndarray) -> np.ndarray:
  """tables[k, codes[k, ...]] for every row k, int32 [n, cells]."""
  n = len(codes)
  # One pass: uint8 codes + intp row offsets promote to intp indices.
  flat = codes.reshape(n, -1) + (np.arange(n, dtype=np.intp) * NUM_CODES)[:, None]
  return np.take(tables.reshape(-1), flat)


class ArcRows:
  """One split's examples, encoded as rows (see the module docstring).

  Args:
    pairs: per group, its `ArcPair`s (example index order).
    tasks: per group, the index of its task in `augmentations`/`first_ids`.
    augmentations: per task, (dihedral ids int8 [V], colour tables uint8
      [V, 10]) as `augment.plan_augmentations` returns them.
    first_ids: per task, the puzzle identifier of its version 0.
    canvas: board side.
    name: names the split in errors.
  """

  def __init__(self, pairs, tasks: Sequence[int], augmentations,
               first_ids: Sequence[int], canvas: int, name: str):
    self.name = name
    self.canvas = canvas
    self.counts = np.array([len(p) for p in pairs], np.int64)
    self._first_example = np.concatenate([[0], np.cumsum(self.counts)])
    flat = [p for group in pairs for p in group]
    outputs = [p.output for p in flat if p.output is not None]
    self.store = BoardStore([p.input for p in flat] + outputs, canvas)
    has_out = np.array([p.output is not None for p in flat], bool)
    self._out_board = np.zeros(len(flat), np.int64)
    self._out_board[has_out] = 1 + len(flat) + np.arange(len(outputs))
    self._task = np.asarray(tasks, np.int64).reshape(len(pairs))
    sizes = np.array([len(a[0]) for a in augmentations], np.int64)
    self._num_versions = sizes
    self._aug_first = np.concatenate([[0], np.cumsum(sizes)])[:-1]
    self._dihedral = np.concatenate([np.asarray(a[0], np.int64)
                                     for a in augmentations])
    self._colours = np.concatenate([np.asarray(a[1], np.uint8)
                                    for a in augmentations])
    self._first_id = np.asarray(first_ids, np.int64)

  def tasks(self, groups: np.ndarray) -> np.ndarray:
    return self._task[groups]

  def check(self, groups: np.ndarray, versions: np.ndarray,
            indices: np.ndarray) -> None:
    """IndexError naming the first row outside the split."""
    bad = (groups < 0) | (groups >= len(self.counts))
    g = np.where(bad, 0, groups)
    bad |= ((versions < 0) | (versions >= self._num_versions[self._task[g]])
            | (indices < 0) | (indices >= self.counts[g]))
    if bad.any():
      k = int(np.argmax(bad))
      raise IndexError(f"{self.name}: group {groups[k]} version {versions[k]} "
                       f"example {indices[k]} out of range")

  def _locate(self, groups, versions, indices):
    """(task, augmentation, dihedral, input board, output board) per row."""
    task = self._task[groups]
    aug = self._aug_first[task] + versions
    example = self._first_example[groups] + indices
    return (task, aug, self._dihedral[aug], 1 + example,
            self._out_board[example])

  def _offsets(self, groups, indices, d, board_in, board_out, vkeys):
    if vkeys is None:
      zeros = np.zeros(len(groups), np.int64)
      return zeros, zeros
    span = np.maximum(self.store.shapes[board_in, d],
                      self.store.shapes[board_out, d])
    return translation(vkeys, indices, self.counts[groups], span[:, 0],
                       span[:, 1], self.canvas)

  def offsets(self, groups: np.ndarray, versions: np.ndarray,
              indices: np.ndarray, vkeys: np.ndarray | None) -> np.ndarray:
    """int64 [rows, 2]: the (r0, c0) at which `encode` writes each row."""
    groups, versions, indices = (np.asarray(x, np.int64).reshape(-1)
                                 for x in (groups, versions, indices))
    self.check(groups, versions, indices)
    _, _, d, board_in, board_out = self._locate(groups, versions, indices)
    return np.stack(self._offsets(groups, indices, d, board_in, board_out,
                                  vkeys), axis=1)

  def encode(self, groups: np.ndarray, versions: np.ndarray,
             indices: np.ndarray, vkeys: np.ndarray | None
             ) -> dict[str, np.ndarray]:
    """Rows k = example indices[k] of version versions[k] of group groups[k];
    translated by `translation` of `vkeys` (uint64 per row), or not (None).
    int64 arrays of rows that passed `check`."""
    task, aug, d, board_in, board_out = self._locate(groups, versions, indices)
    r0, c0 = self._offsets(groups, indices, d, board_in, board_out, vkeys)
    t_in, t_out = token_tables(self._colours[aug])
    return {"inputs": lookup(t_in, self.store.codes(board_in, d, r0, c0)),
            "labels": lookup(t_out, self.store.codes(board_out, d, r0, c0)),
            "puzzle_identifiers": (self._first_id[task] + versions
                                   ).astype(np.int32)}
