"""Maze augmentation: off by default as in the reference builder, switchable on."""
from __future__ import annotations

from experiments.configs import maze_trm
from recur.puzzles.maze.source import MazeSource


def test_paper_and_smoke_default_to_no_augmentation():
  # The reference's build_maze_dataset.py has `aug: bool = False`.
  for variant in ("paper", "smoke"):
    assert maze_trm.get_config(variant).data.augment is False, variant
  # The demo's quoted numbers were measured with the 8 dihedral versions.
  assert maze_trm.get_config("demo").data.augment is True


def test_augment_switch_gives_eight_train_versions():
  kw = dict(size=6, num_train=4, num_test=2, min_path_length=4, seed=0)
  off = MazeSource.generated(augment=False, **kw)
  on = MazeSource.generated(augment=True, **kw)
  assert off.num_versions("train", 0) == 1
  assert on.num_versions("train", 0) == 8
  assert on.num_versions("test", 0) == 1
