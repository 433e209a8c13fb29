"""Pictures of training runs and predictions (matplotlib, Agg backend).

matplotlib is imported only when a function here is called, so `import recur`
stays light and head-less machines need no display. Every plot function writes
one PNG to `path` and returns the path. What a puzzle looks like is drawn by
its family (`recur.puzzles.<family>.draw`); this module holds what all
families share:

* `plot_puzzles`: puzzles side by side with their predictions, given the
  family's `draw(ax, input, pred, label, title)`.
* `plot_refinement`: one puzzle's prediction after supervision step 1, 2, ...
  with sigmoid(q_halt) and whether it is right.
* `choose_rows`: which rows of a prediction sample those two pictures show.
* `plot_training_curves`: loss and train exact accuracy from `metrics.jsonl`,
  with eval points when present.
* `plot_accuracy_vs_steps`: exact accuracy after each test-time step.
* `pyplot`, `save`, `frame`, `WRONG_COLOUR`: for the families' drawers.
"""
from __future__ import annotations

import math
import os
from typing import Any, Mapping, Sequence

import numpy as np

from recur import files

__all__ = ["plot_puzzles", "plot_refinement", "choose_rows",
           "plot_training_curves", "plot_accuracy_vs_steps", "pyplot", "save",
           "frame", "WRONG_COLOUR"]

WRONG_COLOUR = "#FF4136"


def pyplot():
  """matplotlib.pyplot on the non-interactive Agg backend (imported on first
  use, never at import of recur)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg", force=True)
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def save(fig, path: str) -> str:
  """Saves `fig` to `path` (creating its folder) at the figure's dpi, closes it
  and returns `path`."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=fig.dpi)
  pyplot().close(fig)
  return path


def frame(ax, colour: str | None = None, width: float = 3.0) -> None:
  """Hides an axis' ticks; draws its border in `colour` (width `width`) or hides
  it when colour is None."""
  ax.set_xticks([])
  ax.set_yticks([])
  for s in ax.spines.values():
    s.set_visible(colour is not None)
    if colour is not None:
      s.set_color(colour)
      s.set_linewidth(width)


def plot_puzzles(draw, inputs: Sequence[Any], preds: Sequence[Any], path: str,
                 labels: Sequence[Any] | None = None,
                 titles: Sequence[str] | None = None, title: str = "") -> str:
  """Puzzles side by side with their predictions, four to a row.

  `draw(ax, input, pred, label_or_None, title)` renders one puzzle (e.g.
  `recur.puzzles.sudoku.draw.draw_sudoku`); each title gains "right" or
  "wrong" when labels are given."""
  plt = pyplot()
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
    draw(ax, inputs[k], preds[k], lab, t)
  if title:
    fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  return save(fig, path)


def choose_rows(sample, num_examples: int | None = None) -> tuple[np.ndarray, int]:
  """Which rows of a `PredictionSample` to draw: (up to `num_examples` rows,
  default all (the sample is already as small as the pictures should be), for
  the examples picture, right ones first, one row per puzzle, since ARC rows
  repeat a test input under several augmented versions; the row for the
  refinement picture: one whose answer changes across steps and ends right if
  possible, else the first row)."""
  meta, out, trained = sample.meta, sample.out, sample.trained_steps
  preds, exact = out["preds_per_step"], out["exact_per_step"]   # [T, B, ..]
  order = np.argsort(~exact[trained - 1], kind="stable")
  seen, picked = set(), []
  for r in order:
    key = (int(meta["group"][r]), int(meta["index"][r]))
    if key not in seen:
      seen.add(key)
      picked.append(r)
  changes = (preds[1:] != preds[:-1]).any(-1).sum(0)
  pick = int(np.argmax(exact[trained - 1] * 100 + changes))
  return np.asarray(picked[:num_examples], int), pick


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
  plt = pyplot()
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
  return save(fig, path)


def plot_training_curves(metrics: str | Sequence[Mapping[str, Any]], path: str,
                         title: str = "") -> str:
  """Train loss and exact accuracy (and eval exact accuracy / pass@2 points)
  against the step, from a metrics.jsonl path or its rows."""
  rows = files.read_metrics(metrics) if isinstance(metrics, str) else list(metrics)
  plt = pyplot()
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
  return save(fig, path)


def plot_accuracy_vs_steps(curves: Mapping[str, Sequence[float]], path: str,
                           trained_steps: int | None = None,
                           title: str = "accuracy vs test-time steps") -> str:
  """One line per named curve: accuracy after test-time step 1, 2, ...;
  a dotted vertical line marks the number of steps used in training."""
  plt = pyplot()
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
  return save(fig, path)
