"""Drawing ARC: grids in the standard palette and the pictures of a run.

`draw_run(source, sample, workdir)` is the family's drawer for
`experiments.report`: examples_arc.png (test inputs, the un-augmented
prediction and the target) and refinement_arc.png (one test input's
prediction after each supervision step).
"""
from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import numpy as np

from recur import viz
from recur.puzzles.arc import augment as aa

__all__ = ["ARC_COLOURS", "draw_arc", "plot_arc_examples", "draw_run"]

# The standard ARC palette, colour 0..9.
ARC_COLOURS = ("#000000", "#0074D9", "#FF4136", "#2ECC40", "#FFDC00",
               "#AAAAAA", "#F012BE", "#FF851B", "#7FDBFF", "#870C25")


def draw_arc(ax, grid: np.ndarray | None, title: str = "",
             wrong: bool | None = None) -> None:
  """One ARC grid (colours 0..9) with thin grey cell lines."""
  from matplotlib.colors import ListedColormap  # pylint: disable=g-import-not-at-top
  viz.frame(ax, viz.WRONG_COLOUR if wrong else ("#2ECC40" if wrong is False else None))
  if title:
    ax.set_title(title, fontsize=8)
  if grid is None or np.asarray(grid).size == 0:
    ax.text(0.5, 0.5, "(none)", ha="center", va="center", fontsize=8,
            transform=ax.transAxes)
    return
  g = np.asarray(grid)
  ax.imshow(g, cmap=ListedColormap(ARC_COLOURS), vmin=-0.5, vmax=9.5,
            interpolation="nearest")
  h, w = g.shape
  ax.set_xticks(np.arange(-0.5, w, 1), minor=True)
  ax.set_yticks(np.arange(-0.5, h, 1), minor=True)
  ax.grid(which="minor", color="#555555", linewidth=0.5)
  ax.tick_params(which="minor", length=0)


def plot_arc_examples(rows: Sequence[Mapping[str, Any]], path: str,
                      title: str = "") -> str:
  """Rows of {"input", "prediction", "target" (optional), "title" (optional)}:
  one row per test input, three panels each."""
  plt = viz.pyplot()
  n = max(1, len(rows))
  fig, axes = plt.subplots(n, 3, figsize=(6, 2.1 * n + 0.4), squeeze=False,
                           dpi=100)
  for ax_row, row in zip(axes, rows):
    target = row.get("target")
    pred = row.get("prediction")
    right = None
    if target is not None and pred is not None:
      right = (np.asarray(pred).shape == np.asarray(target).shape and
               bool(np.array_equal(pred, target)))
    draw_arc(ax_row[0], row.get("input"), f"{row.get('title', '')} input".strip())
    draw_arc(ax_row[1], pred, "prediction" + (
        "" if right is None else (" (right)" if right else " (wrong)")),
             None if right is None else not right)
    draw_arc(ax_row[2], target, "target")
  if title:
    fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  return viz.save(fig, path)


def _rows(source, meta, preds, split: str = "test") -> list[dict[str, Any]]:
  """Un-augmented predictions of `source` (`ArcTasks`) with their pairs."""
  rows = []
  for r in range(len(preds)):
    g, v, i = int(meta["group"][r]), int(meta["version"][r]), int(meta["index"][r])
    aug = source.augmentation(split, g, v)
    pair = source.pairs(split, g)[i]
    rows.append({"input": pair.input,
                 "prediction": aa.inverse_augment_grid(
                     aa.crop(preds[r], source.canvas), aug),
                 "target": pair.output,
                 "title": f"{source.task_id(split, g)}[{i}]"})
  return rows


def draw_run(source, sample, workdir: str) -> list[str]:
  """examples_arc.png and refinement_arc.png of a `PredictionSample`."""
  meta, out, trained = sample.meta, sample.out, sample.trained_steps
  preds = out["preds_per_step"]                     # [T, B, seq]
  order, pick = viz.choose_rows(sample)
  names = ["examples_arc.png", "refinement_arc.png"]
  rows = _rows(source, {k: v[order] for k, v in meta.items()},
               preds[trained - 1][order])
  plot_arc_examples(rows, os.path.join(workdir, names[0]),
                    title=f"ARC evaluation tasks after {trained} steps")
  sub = {k: v[pick:pick + 1] for k, v in meta.items()}
  steps = [_rows(source, sub, p[pick:pick + 1])[0] for p in preds]
  target = steps[0]["target"]
  viz.plot_refinement(
      lambda ax, g, t: draw_arc(ax, g, t), [r["prediction"] for r in steps],
      out["q_halt_per_step"][:, pick], os.path.join(workdir, names[1]),
      correct=[target is not None and
               aa.grid_key(r["prediction"]) == aa.grid_key(target) for r in steps],
      first={"input": (draw_arc, steps[0]["input"]),
             "target": (draw_arc, target)},
      title=f"{steps[0]['title']}: prediction per supervision step "
            f"(trained with {trained})")
  return names
