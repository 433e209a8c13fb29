"""Train and evaluate TRM on ARC-AGI. See experiments/configs/arc_trm.py."""
from experiments.main import entry

if __name__ == "__main__":
  entry("arc_trm")
