"""Train and evaluate arc_hrm. See experiments/configs/arc_hrm.py."""
from experiments.main import entry

if __name__ == "__main__":
  entry("arc_hrm")
