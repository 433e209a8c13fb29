"""Train and evaluate maze_trm. See experiments/configs/maze_trm.py."""
from experiments.main import entry

if __name__ == "__main__":
  entry("maze_trm")
