"""The paper's Sudoku-Extreme and Maze-Hard runs from files (issue 10 item 5):
CSVs in the public layout (`source,q,a,rating`), written here independently of
the library's readers, train through `--config.data.path` with the paper
variant's data options; the paper variants without a path stop and say so."""
import csv
import json
import os
import subprocess
import sys

import pytest

from cpu_processes import cpu_env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The paper variants' data options (min_rating, num_blanks, min_path_length,
# num_test, ...) are kept; only the model, batch and length are made tiny.
TINY = ["--config.steps=2", "--config.batch_size=8", "--config.log_every=1",
        "--config.checkpoint_every=0", "--config.pictures=False",
        "--config.data.eval_max_batches=1", "--config.data.eval_batch_size=8",
        "--config.model.hidden_size=16", "--config.model.num_heads=2",
        "--config.model.puzzle_emb_ndim=16", "--config.model.puzzle_emb_len=1",
        "--config.model.H_cycles=1", "--config.model.L_cycles=1",
        "--config.model.halt_max_steps=2", "--config.model.compute_dtype=float32"]


def _run(name, variant, workdir, *over):
  env = cpu_env()
  return subprocess.run(
      [sys.executable, "-m", f"experiments.{name}",
       f"--config=experiments/configs/{name}.py:{variant}", f"--workdir={workdir}", *over],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def _write(path, rows):
  with open(path, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["source", "q", "a", "rating"])
    w.writerows(rows)


def _sudoku_rows(count, offset):
  # Solved 4x4 boards: a base solution with its digits relabelled; blanks
  # spelled '.' and '0' as in the public file.
  base = [[1, 2, 3, 4], [3, 4, 1, 2], [2, 1, 4, 3], [4, 3, 2, 1]]
  perms = [(1, 2, 3, 4), (2, 1, 4, 3), (3, 4, 1, 2), (4, 3, 2, 1), (2, 3, 4, 1),
           (4, 1, 2, 3), (1, 3, 2, 4), (3, 1, 4, 2)]
  rows = []
  for i in range(count):
    p = perms[(i + offset) % len(perms)]
    a = "".join(str(p[d - 1]) for row in base for d in row)
    q = "".join(("." if (k + i) % 2 else "0") if (k * 7 + i) % 3 == 0 else ch
                for k, ch in enumerate(a))
    rows.append([f"test-{offset + i}", q, a, str(i % 5)])
  return rows


def _maze_rows(count, size=6):
  # Corridor mazes: one free row between walls, S at its left end, G at a
  # column that varies, the cells between them on the path.
  rows = []
  for i in range(count):
    r, g = 1 + i % (size - 2), 2 + i % (size - 2)
    q = [["#"] * size for _ in range(size)]
    for c in range(g + 1):
      q[r][c] = " "
    q[r][0], q[r][g] = "S", "G"
    a = [row[:] for row in q]
    for c in range(1, g):
      a[r][c] = "o"
    rows.append([f"maze-{i}", "".join(map("".join, q)), "".join(map("".join, a)), "0"])
  return rows


def _train_rows(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [r for r in map(json.loads, f) if "train/loss" in r]


@pytest.mark.parametrize("variant", ["paper", "paper_att"])
def test_sudoku_extreme_csv_trains_in_paper_variants(tmp_path, variant):
  data = tmp_path / "sudoku-extreme"
  data.mkdir()
  _write(data / "train.csv", _sudoku_rows(12, 0))
  _write(data / "test.csv", _sudoku_rows(6, 3))
  wd = tmp_path / "run"
  out = _run("sudoku_trm", variant, wd, f"--config.data.path={data}",
             "--config.data.box=(2, 2)", "--config.data.min_rating=1", *TINY)
  assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
  assert [r["step"] for r in _train_rows(wd)] == [1, 2]
  source = json.load(open(wd / "model.json"))["data"]
  assert source["files"].keys() == {"train.csv", "test.csv"}
  final = [json.loads(l) for l in open(wd / "metrics.jsonl") if "eval/count" in l][-1]
  assert final["eval/count"] > 0


def test_maze_hard_csv_trains_in_paper_variant(tmp_path):
  data = tmp_path / "maze-hard"
  data.mkdir()
  _write(data / "train.csv", _maze_rows(8))
  _write(data / "test.csv", _maze_rows(4))
  wd = tmp_path / "run"
  out = _run("maze_trm", "paper", wd, f"--config.data.path={data}",
             "--config.data.size=6", *TINY)
  assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
  assert [r["step"] for r in _train_rows(wd)] == [1, 2]


@pytest.mark.parametrize("name", ["sudoku_trm", "maze_trm"])
def test_paper_variant_without_data_stops_and_says_so(tmp_path, name):
  out = _run(name, "paper", tmp_path / "run", *TINY)
  assert out.returncode == 1
  assert "--config.data.path" in out.stderr and "--config.data.generated=True" in out.stderr
  assert not (tmp_path / "run" / "checkpoints").exists()


def test_generator_options_with_files(tmp_path):
  """Generator-only options are dropped with a path; min_rating filters on the
  file's rating column."""
  from recur.data import make_source
  _write(tmp_path / "train.csv", _sudoku_rows(10, 0))   # ratings 0,1,2,3,4,0,...
  _write(tmp_path / "test.csv", _sudoku_rows(5, 0))
  s = make_source("sudoku", path=str(tmp_path), box=(2, 2), num_train=1000, num_test=3,
                  num_blanks=6, min_rating=2, num_aug=1, seed=0)
  assert len(s.puzzles("train")) == 6 and len(s.puzzles("test")) == 3
  assert sorted(s.puzzles("train").ratings.tolist()) == [2, 2, 3, 3, 4, 4]
  _write(tmp_path / "m.csv", _maze_rows(3))
  m = make_source("maze", path=str(tmp_path / "m.csv"), size=6, num_test=7,
                  min_path_length=111, augment=False)
  assert m.num_groups("train") == 3
