"""Maze scoring: accuracy plus path validity.

The predicted PATH ('o') cells, which must be free cells of the input, together
with the input's S and G must form one simple 4-neighbour path from S to G (S
and G with one path neighbour, every 'o' cell with two, all connected).
`shortest` additionally requires the path to have the BFS length of the maze.
Only the 'o' cells of the prediction matter here; exact accuracy covers the
rest.
"""
from __future__ import annotations

import math

import numpy as np

from recur.puzzles.maze import source as maze_lib
from recur.puzzles.scoring import TokenEvaluator

__all__ = ["maze_validity", "MazeEvaluator", "decode_answer"]


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


class MazeEvaluator(TokenEvaluator):
  """Accuracy, `valid_rate` and `shortest_rate` of maze predictions."""

  CHECKS = ("valid", "shortest")

  def checks(self, inputs, preds):
    valid, shortest = maze_validity(inputs, preds)
    return {"valid": valid, "shortest": shortest}


def decode_answer(source, tokens: np.ndarray) -> list[str]:
  """Tokens [size*size] -> the maze as rows of characters."""
  del source
  tokens = np.asarray(tokens).reshape(-1)
  side = math.isqrt(tokens.size)
  return maze_lib.decode_maze(tokens.reshape(side, side))
