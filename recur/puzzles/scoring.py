"""Accuracy and validity of Sudoku and Maze predictions.

Accuracy follows the reference: a position is scored where the label is not
IGNORE_LABEL_ID (nor PAD, the reference's ignore id); token accuracy is the
mean over scored positions of all examples, exact accuracy the fraction of
examples with every scored position right.

Validity is reported beside accuracy, because a puzzle can have several right
answers the label does not list:

* Sudoku: the prediction is a filled grid (every cell a digit token) whose rows,
  columns and boxes each hold every digit once, and it keeps the givens of the
  input.
* Maze: the predicted PATH ('o') cells, which must be free cells of the input,
  together with the input's S and G form one simple 4-neighbour path from S to
  G (S and G with one path neighbour, every 'o' cell with two, all connected).
  `shortest` additionally requires the path to have the BFS length of the maze.
  Only the 'o' cells of the prediction matter here; exact accuracy covers the rest.

All functions take host arrays [B, seq_len] (jax arrays are converted).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from recur.data.base import IGNORE_LABEL_ID, PAD_ID
from recur.data import maze as maze_lib

__all__ = ["token_exact_accuracy", "sudoku_validity", "maze_validity",
           "GridEvaluator"]


def token_exact_accuracy(labels: np.ndarray, preds: np.ndarray
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Per example: (number correct, number scored, exact) over scored positions."""
  labels = np.asarray(labels)
  preds = np.asarray(preds)
  if labels.shape != preds.shape:
    raise ValueError(f"labels {labels.shape} and preds {preds.shape} differ")
  scored = (labels != IGNORE_LABEL_ID) & (labels != PAD_ID)
  correct = (preds == labels) & scored
  num_correct = correct.sum(-1)
  num_scored = scored.sum(-1)
  return num_correct, num_scored, num_correct == num_scored


def sudoku_validity(inputs: np.ndarray, preds: np.ndarray,
                    box: Sequence[int] = (3, 3)) -> np.ndarray:
  """bool [B]: the predicted tokens form a solved grid that keeps the givens."""
  box_rows, box_cols = (int(b) for b in box)
  n = box_rows * box_cols
  preds = np.asarray(preds).reshape(-1, n, n)
  inputs = np.asarray(inputs).reshape(-1, n, n)
  digits = preds.astype(np.int64) - 1                   # tokens 2..n+1 -> 1..n
  filled = ((digits >= 1) & (digits <= n)).all(axis=(1, 2))
  onehot = np.eye(n + 2, dtype=np.int32)[np.clip(digits, 0, n + 1)][..., 1:n + 1]
  rows_ok = (onehot.sum(axis=2) == 1).all(axis=(1, 2))  # [B, row, digit]
  cols_ok = (onehot.sum(axis=1) == 1).all(axis=(1, 2))
  boxes = onehot.reshape(-1, box_cols, box_rows, box_rows, box_cols, n)
  boxes_ok = (boxes.sum(axis=(2, 4)) == 1).all(axis=(1, 2, 3))
  givens = inputs > 1                                   # PAD 0, blank 1
  keeps = ((preds == inputs) | ~givens).all(axis=(1, 2))
  return filled & rows_ok & cols_ok & boxes_ok & keeps


def _maze_path_check(grid: np.ndarray, pred: np.ndarray) -> tuple[bool, bool]:
  """(valid, shortest) for one maze [N, N] and prediction [N, N]."""
  try:
    start = maze_lib.find_cell(grid, maze_lib.START)
    goal = maze_lib.find_cell(grid, maze_lib.GOAL)
  except ValueError:
    return False, False
  path = pred == maze_lib.PATH
  if np.any(path & (grid != maze_lib.FREE)):
    return False, False                      # 'o' on a wall, S or G
  on = path.copy()
  on[start] = on[goal] = True
  padded = np.pad(on, 1)
  degree = (padded[:-2, 1:-1].astype(np.int8) + padded[2:, 1:-1] +
            padded[1:-1, :-2] + padded[1:-1, 2:])
  if degree[start] != 1 or degree[goal] != 1 or np.any(degree[path] != 2):
    return False, False
  # Degrees 1, 1, 2, ..., 2: a path plus maybe cycles; connected means a path.
  h, w = on.shape
  seen = {start}
  stack = [start]
  while stack:
    r, c = stack.pop()
    for nb in maze_lib.neighbours(r, c, h, w):
      if on[nb] and nb not in seen:
        seen.add(nb)
        stack.append(nb)
  if len(seen) != int(on.sum()):
    return False, False
  length = int(path.sum()) + 1
  shortest = length == int(maze_lib.bfs_distances(grid, start)[goal])
  return True, shortest


def maze_validity(inputs: np.ndarray, preds: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
  """(valid bool [B], shortest bool [B]) for square mazes flattened to seq_len."""
  inputs = np.asarray(inputs)
  preds = np.asarray(preds)
  size = math.isqrt(inputs.shape[-1])
  inputs = inputs.reshape(-1, size, size)
  preds = preds.reshape(-1, size, size)
  out = np.array([_maze_path_check(g, p) for g, p in zip(inputs, preds)],
                 dtype=bool).reshape(-1, 2)
  return out[:, 0], out[:, 1]


class GridEvaluator:
  """Accumulates accuracy and validity over batches.

  Args:
    kind: "sudoku", "maze" or "tokens" (accuracy only, e.g. algorithmic tasks).
    box: Sudoku box shape (box_rows, box_cols).

  `update(inputs, labels, preds, mask=None)` takes [B, seq_len] arrays and an
  optional bool [B] mask of real (non-padding) examples; `result()` returns
  count, exact_accuracy, token_accuracy, plus valid_rate (Sudoku, Maze) and
  shortest_rate (Maze).
  """

  def __init__(self, kind: str, *, box: Sequence[int] = (3, 3)):
    if kind not in ("sudoku", "maze", "tokens"):
      raise ValueError(f"kind must be 'sudoku', 'maze' or 'tokens', got {kind!r}")
    self.kind = kind
    self.box = tuple(box)
    self.reset()

  def reset(self) -> None:
    self._count = 0
    self._exact = 0
    self._tokens_correct = 0
    self._tokens_scored = 0
    self._valid = 0
    self._shortest = 0

  def update(self, inputs: np.ndarray, labels: np.ndarray, preds: np.ndarray,
             mask: np.ndarray | None = None) -> None:
    inputs, labels, preds = (np.asarray(x) for x in (inputs, labels, preds))
    if mask is not None:
      keep = np.asarray(mask, bool).reshape(-1)
      inputs, labels, preds = inputs[keep], labels[keep], preds[keep]
    if len(labels) == 0:
      return
    correct, scored, exact = token_exact_accuracy(labels, preds)
    self._count += len(labels)
    self._exact += int(exact.sum())
    self._tokens_correct += int(correct.sum())
    self._tokens_scored += int(scored.sum())
    if self.kind == "sudoku":
      self._valid += int(sudoku_validity(inputs, preds, self.box).sum())
    elif self.kind == "maze":
      valid, shortest = maze_validity(inputs, preds)
      self._valid += int(valid.sum())
      self._shortest += int(shortest.sum())

  def result(self) -> dict[str, Any]:
    count = max(self._count, 1)
    out = {"count": self._count,
           "exact_accuracy": self._exact / count,
           "token_accuracy": self._tokens_correct / max(self._tokens_scored, 1)}
    if self.kind in ("sudoku", "maze"):
      out["valid_rate"] = self._valid / count
    if self.kind == "maze":
      out["shortest_rate"] = self._shortest / count
    return out
