"""Sudoku scoring: accuracy plus validity.

A prediction is valid when it is a filled grid (every cell a digit token)
obeying the rules (`source.solved_mask`, the one definition of a solved board)
that keeps the givens of the input: a puzzle can have several right answers
the label does not list.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from recur.puzzles.scoring import TokenEvaluator
from recur.puzzles.sudoku.source import decode_sudoku, solved_mask

__all__ = ["sudoku_validity", "SudokuEvaluator"]


def sudoku_validity(inputs: np.ndarray, preds: np.ndarray,
                    box: Sequence[int] = (3, 3)) -> np.ndarray:
  """bool [B]: the predicted tokens form a solved grid that keeps the givens."""
  box_rows, box_cols = (int(b) for b in box)
  n = box_rows * box_cols
  preds = np.asarray(preds).reshape(-1, n, n)
  inputs = np.asarray(inputs).reshape(-1, n, n)
  givens = inputs > 1                                   # PAD 0, blank 1
  keeps = ((preds == inputs) | ~givens).all(axis=(1, 2))
  # Tokens outside the digits (PAD, blank) decode to 0 or above n: not solved.
  digits = np.where(preds >= 2, preds - 1, 0)
  return solved_mask(digits, box) & keeps


class SudokuEvaluator(TokenEvaluator):
  """Accuracy and `valid_rate` of Sudoku predictions with box `box`."""

  CHECKS = ("valid",)

  def __init__(self, box: Sequence[int] = (3, 3)):
    self.box = tuple(int(b) for b in box)
    super().__init__()

  def checks(self, inputs, preds):
    return {"valid": sudoku_validity(inputs, preds, self.box)}


def decode_answer(source, tokens: np.ndarray) -> list[list[int]]:
  """Tokens [n*n] -> the digit grid (0 = blank) as nested lists."""
  del source
  tokens = np.asarray(tokens).reshape(-1)
  side = int(round(np.sqrt(tokens.size)))
  return decode_sudoku(tokens.reshape(side, side)).tolist()
