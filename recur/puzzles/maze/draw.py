"""Drawing mazes: walls, start, goal and the predicted path; run pictures.

`draw_run(source, sample, workdir)` is the family's drawer for
`experiments.report`: examples_maze.png and refinement_maze.png.
"""
from __future__ import annotations

import os

import numpy as np

from recur import viz

__all__ = ["MAZE_COLOURS", "draw_maze", "draw_run"]

# Maze tokens 0..5: PAD, wall, free, start, goal, path.
MAZE_COLOURS = ("#FFFFFF", "#222222", "#FFFFFF", "#2ECC40", "#FF4136", "#0074D9")


def draw_maze(ax, maze: np.ndarray, pred: np.ndarray,
              label: np.ndarray | None = None, title: str = "") -> None:
  """A maze with the predicted path; wrong cells (missing or extra path) get
  a red cross."""
  from matplotlib.colors import ListedColormap  # pylint: disable=g-import-not-at-top
  maze, pred = np.asarray(maze), np.asarray(pred)
  shown = np.where((pred == 5) & (maze == 2), 5, maze)
  viz.frame(ax)
  if title:
    ax.set_title(title, fontsize=8)
  ax.imshow(shown, cmap=ListedColormap(MAZE_COLOURS), vmin=-0.5, vmax=5.5,
            interpolation="nearest")
  if label is not None:
    rr, cc = np.nonzero(pred != np.asarray(label))
    ax.scatter(cc, rr, marker="x", c=viz.WRONG_COLOUR, s=max(4, 400 // maze.shape[0]),
               linewidths=1)



def draw_run(source, sample, workdir: str) -> list[str]:
  """examples_maze.png and refinement_maze.png of a `PredictionSample`."""
  del source
  meta, out, trained = sample.meta, sample.out, sample.trained_steps
  preds = out["preds_per_step"]                     # [T, B, seq]
  side = int(round(np.sqrt(preds.shape[-1])))
  grid = lambda x: np.asarray(x).reshape(side, side)
  order, pick = viz.choose_rows(sample)
  names = ["examples_maze.png", "refinement_maze.png"]
  viz.plot_puzzles(draw_maze, [grid(meta["inputs"][r]) for r in order],
                   [grid(preds[trained - 1][r]) for r in order],
                   os.path.join(workdir, names[0]),
                   labels=[grid(meta["labels"][r]) for r in order],
                   titles=[f"#{int(meta['group'][r])}" for r in order],
                   title=f"test puzzles after {trained} steps")
  maze, label = grid(meta["inputs"][pick]), grid(meta["labels"][pick])
  viz.plot_refinement(
      lambda ax, p, t: draw_maze(ax, maze, p, label, t),
      [grid(p[pick]) for p in preds], out["q_halt_per_step"][:, pick],
      os.path.join(workdir, names[1]),
      correct=out["exact_per_step"][:, pick].tolist(),
      first={"maze": (lambda ax, g, t: draw_maze(ax, g, g, None, t), maze)},
      title=f"puzzle #{int(meta['group'][pick])}: prediction per supervision "
            f"step (trained with {trained})")
  return names
