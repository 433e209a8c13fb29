"""recur.viz pictures and the end-of-run report (experiments.report)."""
import importlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from experiments import loop, report
from recur import viz
from recur.puzzles.arc import draw as arc_draw
from recur.puzzles.maze import draw as maze_draw
from recur.puzzles.sudoku import draw as sudoku_draw

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def read_png(path):
  """(height, width) of a PNG after checking its signature."""
  with open(path, "rb") as f:
    assert f.read(8) == PNG_SIGNATURE, path
  from PIL import Image
  with Image.open(path) as im:
    im.verify()
  import matplotlib.image as mpimg
  img = mpimg.imread(path)
  return img.shape[:2]


def test_import_recur_does_not_load_matplotlib():
  code = "import sys, recur, recur.viz; assert 'matplotlib' not in sys.modules"
  subprocess.run([sys.executable, "-c", code], check=True)


def test_arc_palette():
  assert arc_draw.ARC_COLOURS[1] == "#0074D9" and arc_draw.ARC_COLOURS[9] == "#870C25"
  assert len(arc_draw.ARC_COLOURS) == 10


def test_arc_examples_png(tmp_path):
  g = np.arange(12).reshape(3, 4) % 10
  rows = [{"input": g, "prediction": g, "target": g, "title": "t0[0]"},
          {"input": g, "prediction": g[:2], "target": g},
          {"input": g, "prediction": np.zeros((0, 0), np.uint8), "target": None}]
  h, w = read_png(arc_draw.plot_arc_examples(rows, str(tmp_path / "a.png"), title="x"))
  assert w == 600 and h > 3 * 150


def test_sudoku_and_maze_png(tmp_path):
  given = np.zeros((4, 4), int)
  given[0] = [1, 2, 3, 4]
  answer = np.array([[1, 2, 3, 4], [3, 4, 1, 2], [2, 1, 4, 3], [4, 3, 2, 1]])
  wrong = answer.copy()
  wrong[3, 3] = 2
  draw = lambda ax, g, p, a, t: sudoku_draw.draw_sudoku(ax, g, p, a, (2, 2), t)
  h, w = read_png(viz.plot_puzzles(draw, [given, given], [answer, wrong],
                                   str(tmp_path / "s.png"), labels=[answer, answer]))
  assert (h, w) == (280, 480)
  maze = np.full((5, 5), 2)
  maze[0, 0], maze[4, 4], maze[2, 1:4] = 3, 4, 1
  label = maze.copy()
  label[0, 1:5], label[1:4, 4] = 5, 5
  label[0, 0] = 3
  h, w = read_png(viz.plot_puzzles(maze_draw.draw_maze, [maze], [label],
                                   str(tmp_path / "m.png"), labels=[maze]))
  assert h > 100 and w > 100


def test_refinement_curves_and_steps_png(tmp_path):
  g = np.eye(3, dtype=int) * 2
  h, w = read_png(viz.plot_refinement(
      lambda ax, p, t: arc_draw.draw_arc(ax, p, t), [g, g + 1, g], [-3.0, 0.0, 2.0],
      str(tmp_path / "r.png"), correct=[False, False, True],
      first={"input": (arc_draw.draw_arc, g)}))
  assert w == 800
  rows = [{"step": s, "train/loss": 2.0 / s, "train/exact_accuracy": s / 10}
          for s in range(1, 11)] + [{"step": 10, "eval/exact_accuracy": 0.5}]
  metrics = tmp_path / "metrics.jsonl"
  metrics.write_text("\n".join(json.dumps(r) for r in rows) + "\nnot json\n")
  assert read_png(viz.plot_training_curves(str(metrics), str(tmp_path / "c.png"))) \
      == (340, 900)
  assert read_png(viz.plot_accuracy_vs_steps({"eval": [0.1, 0.3, 0.4]},
                                             str(tmp_path / "v.png"), trained_steps=2)) \
      == (340, 500)


@pytest.fixture(scope="module")
def arc_run(tmp_path_factory):
  """The ARC smoke run, as the training loop returns it."""
  config = importlib.import_module("experiments.configs.arc_trm").get_config("smoke")
  config.update(steps=2, checkpoint_every=2, eval_at_end=False)
  return loop.run(config, str(tmp_path_factory.mktemp("report_arc_trm")))


def test_final_report_writes_pictures(arc_run, capsys):
  # Given a finished run and its final metrics.
  arc_run.metrics = {"eval/pass@1": 0.0, "eval/pass@2": 0.5, "eval/exact_accuracy": 0.25,
                     "eval/exact_accuracy@1": 0.125, "eval/exact_accuracy@2": 0.25}
  arc_workdir = arc_run.workdir
  # When the report runs (from the run in memory: nothing restored).
  report.final_report(arc_run)
  # Then it prints the table and writes the four pictures.
  out = capsys.readouterr().out
  assert "| pass@2" in out and "exact_accuracy after step 2" in out
  for name in ("curves.png", "accuracy_vs_steps.png", "examples_arc.png",
               "refinement_arc.png"):
    h, w = read_png(os.path.join(arc_workdir, name))
    assert h > 100 and w > 100, name
