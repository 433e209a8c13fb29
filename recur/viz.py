"""Pictures of puzzles, predictions and training runs (matplotlib, Agg backend).

matplotlib is imported only when a function here is called, so `import recur`
stays light and head-less machines need no display. Every function writes one
PNG to `path` and returns the path.

* `plot_arc_examples`: rows of ARC input / prediction / target grids in the
  standard ARC palette (`ARC_COLOURS`), a wrong prediction framed in red.
* `plot_grid_puzzles`: Sudoku boards (givens black, filled digits blue, wrong
  cells red) or mazes (walls, start, goal, predicted path; wrong cells marked).
* `plot_refinement`: one puzzle's prediction after supervision step 1, 2, ...
  with sigmoid(q_halt) and whether it is right.
* `plot_training_curves`: loss and train exact accuracy from `metrics.jsonl`,
  with eval points when present.
* `plot_accuracy_vs_steps`: exact accuracy after each test-time step.

Grids are numpy arrays: ARC colours 0..9, Sudoku digits 0..n (0 blank), maze
tokens of `recur.data.maze` (1 wall, 2 free, 3 start, 4 goal, 5 path).
"""
from __future__ import annotations

import json
import math
import os
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["ARC_COLOURS", "plot_arc_examples", "plot_grid_puzzles",
           "plot_refinement", "plot_training_curves", "plot_accuracy_vs_steps",
           "read_metrics"]

# The standard ARC palette, colour 0..9.
ARC_COLOURS = ("#000000", "#0074D9", "#FF4136", "#2ECC40", "#FFDC00",
               "#AAAAAA", "#F012BE", "#FF851B", "#7FDBFF", "#870C25")
# Maze tokens 0..5: PAD, wall, free, start, goal, path.
MAZE_COLOURS = ("#FFFFFF", "#222222", "#FFFFFF", "#2ECC40", "#FF4136", "#0074D9")
_WRONG = "#FF4136"


def _plt():
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg", force=True)
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def _save(fig, path: str) -> str:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=fig.dpi)
  _plt().close(fig)
  return path


def _frame(ax, colour: str | None = None, width: float = 3.0) -> None:
  ax.set_xticks([])
  ax.set_yticks([])
  for s in ax.spines.values():
    s.set_visible(colour is not None)
    if colour is not None:
      s.set_color(colour)
      s.set_linewidth(width)


def draw_arc(ax, grid: np.ndarray | None, title: str = "",
             wrong: bool | None = None) -> None:
  """One ARC grid (colours 0..9) with thin grey cell lines."""
  from matplotlib.colors import ListedColormap  # pylint: disable=g-import-not-at-top
  _frame(ax, _WRONG if wrong else ("#2ECC40" if wrong is False else None))
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


def draw_sudoku(ax, given: np.ndarray, pred: np.ndarray,
                answer: np.ndarray | None = None, box: Sequence[int] = (3, 3),
                title: str = "") -> None:
  """A board: givens in black, predicted digits in blue, wrong cells red."""
  given, pred = np.asarray(given), np.asarray(pred)
  n = given.shape[0]
  _frame(ax)
  ax.set_xlim(0, n)
  ax.set_ylim(n, 0)
  ax.set_aspect("equal")
  if title:
    ax.set_title(title, fontsize=8)
  wrong = np.zeros_like(pred, bool) if answer is None else pred != np.asarray(answer)
  for r in range(n):
    for c in range(n):
      if wrong[r, c]:
        ax.add_patch(_plt().Rectangle((c, r), 1, 1, color="#FFD0CC"))
      d = int(given[r, c]) or int(pred[r, c])
      colour = "black" if given[r, c] else (_WRONG if wrong[r, c] else "#0074D9")
      if d:
        ax.text(c + 0.5, r + 0.5, str(d), ha="center", va="center",
                fontsize=max(5, 60 // n), color=colour,
                fontweight="bold" if given[r, c] else "normal")
  br, bc = (int(b) for b in box)
  for i in range(n + 1):
    ax.axhline(i, color="black", linewidth=1.5 if i % br == 0 else 0.4)
    ax.axvline(i, color="black", linewidth=1.5 if i % bc == 0 else 0.4)


def draw_maze(ax, maze: np.ndarray, pred: np.ndarray,
              label: np.ndarray | None = None, title: str = "") -> None:
  """A maze with the predicted path; wrong cells (missing or extra path) get
  a red cross."""
  from matplotlib.colors import ListedColormap  # pylint: disable=g-import-not-at-top
  maze, pred = np.asarray(maze), np.asarray(pred)
  shown = np.where((pred == 5) & (maze == 2), 5, maze)
  _frame(ax)
  if title:
    ax.set_title(title, fontsize=8)
  ax.imshow(shown, cmap=ListedColormap(MAZE_COLOURS), vmin=-0.5, vmax=5.5,
            interpolation="nearest")
  if label is not None:
    rr, cc = np.nonzero(pred != np.asarray(label))
    ax.scatter(cc, rr, marker="x", c=_WRONG, s=max(4, 400 // maze.shape[0]),
               linewidths=1)


def plot_arc_examples(rows: Sequence[Mapping[str, Any]], path: str,
                      title: str = "") -> str:
  """Rows of {"input", "prediction", "target" (optional), "title" (optional)}:
  one row per test input, three panels each."""
  plt = _plt()
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
  return _save(fig, path)


def plot_grid_puzzles(kind: str, inputs: Sequence[np.ndarray],
                      preds: Sequence[np.ndarray], path: str,
                      labels: Sequence[np.ndarray] | None = None,
                      box: Sequence[int] = (3, 3),
                      titles: Sequence[str] | None = None, title: str = "") -> str:
  """Sudoku (digit grids, 0 blank) or maze (token grids) puzzles side by side
  with the predicted solution; wrong cells marked when labels are given."""
  if kind not in ("sudoku", "maze"):
    raise ValueError(f"kind must be 'sudoku' or 'maze', got {kind!r}")
  plt = _plt()
  n = max(1, len(inputs))
  cols = min(n, 4)
  rws = math.ceil(n / cols)
  fig, axes = plt.subplots(rws, cols, figsize=(2.4 * cols, 2.5 * rws + 0.3),
                           squeeze=False, dpi=100)
  for ax in axes.ravel()[n:]:
    ax.axis("off")
  for k, ax in enumerate(axes.ravel()[:len(inputs)]):
    lab = None if labels is None else labels[k]
    t = titles[k] if titles else ""
    if lab is not None:
      t = f"{t} {'right' if np.array_equal(preds[k], lab) else 'wrong'}".strip()
    if kind == "sudoku":
      draw_sudoku(ax, inputs[k], preds[k], lab, box, t)
    else:
      draw_maze(ax, inputs[k], preds[k], lab, t)
  if title:
    fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  return _save(fig, path)


def plot_refinement(draw, preds: Sequence[Any], q_halt: Sequence[float],
                    path: str, correct: Sequence[bool] | None = None,
                    first: Mapping[str, Any] | None = None, title: str = "") -> str:
  """One puzzle across supervision steps.

  Args:
    draw: `draw(ax, pred, title)` renders one prediction (e.g. a closure over
      `draw_arc` / `draw_sudoku` / `draw_maze`).
    preds: the prediction after step 1, 2, ...
    q_halt: the q_halt logit after each step (shown as sigmoid).
    correct: whether each step's prediction is right (optional).
    first: optional panels drawn before the steps: {"input": grid, ...} with a
      `draw` for each, as {name: (draw_fn, grid)}.
  """
  plt = _plt()
  extra = list((first or {}).items())
  n = len(preds) + len(extra)
  cols = min(n, 8)
  rws = math.ceil(n / cols)
  fig, axes = plt.subplots(rws, cols, figsize=(2.0 * cols, 2.2 * rws + 0.4),
                           squeeze=False, dpi=100)
  flat = axes.ravel()
  for ax in flat[n:]:
    ax.axis("off")
  for ax, (name, (fn, grid)) in zip(flat, extra):
    fn(ax, grid, name)
  for s, (ax, pred) in enumerate(zip(flat[len(extra):], preds)):
    q = 1.0 / (1.0 + math.exp(-float(q_halt[s])))
    mark = "" if correct is None else (" ok" if correct[s] else " x")
    draw(ax, pred, f"step {s + 1}: q {q:.2f}{mark}")
  if title:
    fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  return _save(fig, path)


def read_metrics(path: str) -> list[dict[str, Any]]:
  """Rows of a metrics.jsonl (bad lines skipped)."""
  rows = []
  if not os.path.exists(path):
    return rows
  with open(path) as f:
    for line in f:
      try:
        rows.append(json.loads(line))
      except json.JSONDecodeError:
        continue
  return rows


def plot_training_curves(metrics: str | Sequence[Mapping[str, Any]], path: str,
                         title: str = "") -> str:
  """Train loss and exact accuracy (and eval exact accuracy / pass@2 points)
  against the step, from a metrics.jsonl path or its rows."""
  rows = read_metrics(metrics) if isinstance(metrics, str) else list(metrics)
  plt = _plt()
  fig, (ax_l, ax_a) = plt.subplots(1, 2, figsize=(9, 3.4), dpi=100)

  def series(key):
    # Train accuracies are over the rows that halted at that step: skip steps
    # where none did (they would read 0).
    pts = [(r["step"], r[key]) for r in rows if key in r and "step" in r
           and r[key] is not None and math.isfinite(float(r[key]))
           and not (key.startswith("train/") and "acc" in key
                    and r.get("train/count", 1) == 0)]
    return tuple(zip(*pts)) if pts else ((), ())

  def smooth(y, k=5):
    y = np.asarray(y, float)
    if len(y) < 2 * k:
      return y
    c = np.cumsum(np.concatenate([[0.0], y]))
    lo = np.maximum(np.arange(len(y)) - k + 1, 0)
    return (c[np.arange(len(y)) + 1] - c[lo]) / (np.arange(len(y)) + 1 - lo)

  for key, lab in (("train/loss", "loss"), ("train/lm_loss", "lm loss")):
    x, y = series(key)
    if x:
      ax_l.plot(x, y, label=lab)
  ax_l.set_xlabel("step")
  ax_l.set_title("training loss", fontsize=9)
  if ax_l.lines:
    ax_l.legend(fontsize=8)
  for key, lab, style in (("train/exact_accuracy", "train exact", "-"),
                          ("train/accuracy", "train token acc", "-"),
                          ("eval/exact_accuracy", "eval exact", "o--"),
                          ("eval/pass@2", "eval pass@2", "s--")):
    x, y = series(key)
    if x and key.startswith("train/"):
      line, = ax_a.plot(x, y, style, alpha=0.25, linewidth=0.8)
      ax_a.plot(x, smooth(y), style, color=line.get_color(),
                label=f"{lab} (mean of 5 logs)" if len(y) >= 10 else lab)
    elif x:
      ax_a.plot(x, y, style, label=lab, markersize=4)
  ax_a.set_xlabel("step")
  ax_a.set_ylim(-0.02, 1.02)
  ax_a.set_title("accuracy", fontsize=9)
  if ax_a.lines:
    ax_a.legend(fontsize=8)
  if title:
    fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  return _save(fig, path)


def plot_accuracy_vs_steps(curves: Mapping[str, Sequence[float]], path: str,
                           trained_steps: int | None = None,
                           title: str = "accuracy vs test-time steps") -> str:
  """One line per named curve: accuracy after test-time step 1, 2, ...;
  a dotted vertical line marks the number of steps used in training."""
  plt = _plt()
  fig, ax = plt.subplots(figsize=(5, 3.4), dpi=100)
  for name, ys in curves.items():
    ys = list(ys)
    ax.plot(range(1, len(ys) + 1), ys, "o-", label=name, markersize=4)
  if trained_steps:
    ax.axvline(trained_steps, color="grey", linestyle=":", label="trained steps")
  ax.set_xlabel("supervision steps at test time")
  ax.set_ylabel("accuracy")
  ax.set_ylim(-0.02, 1.02)
  ax.set_title(title, fontsize=9)
  ax.legend(fontsize=8)
  fig.tight_layout()
  return _save(fig, path)
