"""The `demo` variants: what a first-time user runs on a laptop. Training them
takes minutes (measured in the config docstrings); here we check they build
the data they promise, fast."""
import pytest

from experiments import loop
from experiments.configs import arc_trm, maze_trm, sudoku_trm


def test_arc_demo_scores_evaluation_tasks_it_trains_on():
  c = arc_trm.get_config("demo")
  src = loop.build_source(c)
  scored = src.scored_task_ids("test")
  # Given the ARC protocol: evaluation tasks' demonstrations are trained on and
  # their test inputs scored.
  assert len(scored) >= 3
  assert set(scored) <= set(src.scored_task_ids("train"))
  assert src.canvas == c.data.canvas and all(
      t.max_side() <= c.data.max_grid_size for t in src.tasks)
  assert c.steps * c.batch_size >= 50_000 and c.model.hidden_size <= 128


@pytest.mark.parametrize("module", [sudoku_trm, maze_trm])
def test_grid_demos_build(module):
  c = module.get_config("demo")
  src = loop.build_source(c)
  assert src.num_groups("test") >= 100 and src.num_groups("train") >= 100
  assert c.steps <= 2000 and c.model.compute_dtype == "float32"
