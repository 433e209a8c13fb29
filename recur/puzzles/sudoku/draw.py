"""Drawing Sudoku: boards with givens, predictions and mistakes; run pictures.

`draw_run(source, sample, workdir)` is the family's drawer for
`experiments.report`: examples_sudoku.png and refinement_sudoku.png.
"""
from __future__ import annotations

import functools
import os
from typing import Sequence

import numpy as np

from recur import viz
from recur.puzzles.sudoku.source import decode_sudoku

__all__ = ["draw_sudoku", "draw_run"]


def draw_sudoku(ax, given: np.ndarray, pred: np.ndarray,
                answer: np.ndarray | None = None, box: Sequence[int] = (3, 3),
                title: str = "") -> None:
  """A board: givens in black, predicted digits in blue, wrong cells red."""
  given, pred = np.asarray(given), np.asarray(pred)
  n = given.shape[0]
  viz.frame(ax)
  ax.set_xlim(0, n)
  ax.set_ylim(n, 0)
  ax.set_aspect("equal")
  if title:
    ax.set_title(title, fontsize=8)
  wrong = np.zeros_like(pred, bool) if answer is None else pred != np.asarray(answer)
  for r in range(n):
    for c in range(n):
      if wrong[r, c]:
        ax.add_patch(viz.pyplot().Rectangle((c, r), 1, 1, color="#FFD0CC"))
      d = int(given[r, c]) or int(pred[r, c])
      colour = "black" if given[r, c] else (viz.WRONG_COLOUR if wrong[r, c] else "#0074D9")
      if d:
        ax.text(c + 0.5, r + 0.5, str(d), ha="center", va="center",
                fontsize=max(5, 60 // n), color=colour,
                fontweight="bold" if given[r, c] else "normal")
  br, bc = (int(b) for b in box)
  for i in range(n + 1):
    ax.axhline(i, color="black", linewidth=1.5 if i % br == 0 else 0.4)
    ax.axvline(i, color="black", linewidth=1.5 if i % bc == 0 else 0.4)


def draw_run(source, sample, workdir: str) -> list[str]:
  """examples_sudoku.png and refinement_sudoku.png of a `PredictionSample`;
  `source.box` is the box shape."""
  meta, out, trained = sample.meta, sample.out, sample.trained_steps
  preds = out["preds_per_step"]                     # [T, B, seq]
  side = int(round(np.sqrt(preds.shape[-1])))
  digits = lambda x: decode_sudoku(np.asarray(x).reshape(side, side))
  draw = functools.partial(draw_sudoku, box=source.box)
  order, pick = viz.choose_rows(sample)
  names = ["examples_sudoku.png", "refinement_sudoku.png"]
  viz.plot_puzzles(lambda ax, g, p, a, t: draw(ax, g, p, a, title=t),
                   [digits(meta["inputs"][r]) for r in order],
                   [digits(preds[trained - 1][r]) for r in order],
                   os.path.join(workdir, names[0]),
                   labels=[digits(meta["labels"][r]) for r in order],
                   titles=[f"#{int(meta['group'][r])}" for r in order],
                   title=f"test puzzles after {trained} steps")
  given, answer = digits(meta["inputs"][pick]), digits(meta["labels"][pick])
  viz.plot_refinement(
      lambda ax, p, t: draw(ax, given, p, answer, title=t),
      [digits(p[pick]) for p in preds], out["q_halt_per_step"][:, pick],
      os.path.join(workdir, names[1]),
      correct=out["exact_per_step"][:, pick].tolist(),
      first={"puzzle": (lambda ax, g, t: draw(ax, g, g, title=t), given)},
      title=f"puzzle #{int(meta['group'][pick])}: prediction per supervision "
            f"step (trained with {trained})")
  return names
