"""Train and evaluate sudoku_trm. See experiments/configs/sudoku_trm.py."""
from experiments.main import entry

if __name__ == "__main__":
  entry("sudoku_trm")
