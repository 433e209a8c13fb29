"""Bad data and bad disks: maze answers that are no path, clashing or
unsolvable Sudoku clues, mazes without a way, empty files and splits, skip_bad
(counted and logged; per puzzle at solve time, per task for ARC), and the
one-line errors of every CLI for a read-only or full workdir."""
import csv
import errno
import json
import logging
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from experiments import solve
from recur import cli_errors, models
from recur.data.base import DataError
from recur.puzzles.arc.tasks import load_tasks
from recur.puzzles.maze import read as maze_read
from recur.puzzles.maze import source as maze_lib
from recur.puzzles.sudoku import read as sudoku_read
from recur.puzzles.sudoku import source as sudoku_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MAZE_Q = ["#####",
          "#S  #",
          "# # #",
          "#  G#",
          "#####"]
MAZE_A = ["#####",
          "#Soo#",
          "# #o#",
          "#  G#",
          "#####"]


SOLVED_4 = "1234341221434321"


def _csv(path, rows, header=True):
  with open(path, "w", newline="") as f:
    w = csv.writer(f)
    if header:
      w.writerow(["source", "q", "a", "rating"])
    w.writerows(rows)
  return str(path)


def _maze_row(name, q, a, rating="1"):
  return [name, "".join(q), "".join(a), rating]


def _replace(grid, r, c, ch):
  g = [list(row) for row in grid]
  g[r][c] = ch
  return ["".join(row) for row in g]


# -- maze answers ------------------------------------------------------------------

def test_maze_answer_must_join_start_to_goal(tmp_path):
  good = _maze_row("ok", MAZE_Q, MAZE_A)
  broken = _maze_row("gap", MAZE_Q, _replace(MAZE_A, 1, 3, " "))   # o's stop short
  stray = _maze_row("stray", MAZE_Q, _replace(MAZE_A, 3, 1, "o"))  # an o off the path
  assert len(maze_lib.read_maze_csv(_csv(tmp_path / "ok.csv", [good]), size=5)) == 1
  path = _csv(tmp_path / "gap.csv", [good, broken])
  with pytest.raises(DataError, match=r"gap\.csv: row 3: field 'a': .*do not join 'S' to 'G'"):
    maze_lib.read_maze_csv(path, size=5)
  path = _csv(tmp_path / "stray.csv", [stray])
  with pytest.raises(DataError, match=r"row 2: field 'a': 'o' at row 3, column 1 is off"):
    maze_lib.read_maze_csv(path, size=5)


def test_maze_skip_bad_counts_and_logs_reasons(tmp_path, caplog):
  rows = [_maze_row("ok", MAZE_Q, MAZE_A)]
  rows += [_maze_row(f"gap{i}", MAZE_Q, _replace(MAZE_A, 1, 3, " ")) for i in range(5)]
  path = _csv(tmp_path / "m.csv", rows)
  with caplog.at_level(logging.WARNING, logger="recur.data"):
    m = maze_lib.read_maze_csv(path, size=5, skip_bad=True)
  assert len(m) == 1 and m.num_bad == 5
  assert "m.csv: skipped 5 bad row(s): row 3: field 'a'" in caplog.text
  assert "(and 2 more)" in caplog.text


def test_empty_csv_and_empty_split_are_errors_naming_the_file(tmp_path):
  empty = _csv(tmp_path / "test.csv", [])
  with pytest.raises(DataError, match=r"test\.csv: no maze rows \(empty file\)"):
    maze_lib.MazeSource.from_csv(_csv(tmp_path / "train.csv", [_maze_row(
        "ok", MAZE_Q, MAZE_A)]), test_path=empty, size=5)
  with pytest.raises(DataError, match=r"test\.csv: no Sudoku rows \(empty file\)"):
    sudoku_lib.read_sudoku_csv(empty)
  bad_only = _csv(tmp_path / "bad.csv", [_maze_row("gap", MAZE_Q, _replace(MAZE_A, 1, 3, " "))])
  with pytest.raises(DataError, match=r"bad\.csv: no valid maze rows \(1 bad row"):
    maze_lib.read_maze_csv(bad_only, size=5, skip_bad=True)
  path = _csv(tmp_path / "s.csv", [["s0", "." + SOLVED_4[1:], SOLVED_4, "0"]])
  assert len(sudoku_lib.read_sudoku_csv(path, box=(2, 2))) == 1
  with pytest.raises(DataError, match=r"s\.csv: no puzzle with rating >= min_difficulty"):
    sudoku_lib.read_sudoku_csv(path, box=(2, 2), min_difficulty=5)


# -- solve-time checks, per puzzle ----------------------------------------------


def test_sudoku_clues_checked_per_puzzle(tmp_path):
  ok = "1..." + "..1." + "...." + "...."
  clash = "11.." + "...." + "...." + "...."           # two 1s in row 0
  box_clash = "1..." + ".1.." + "...." + "...."       # two 1s in box 0
  # No clash, yet no solution: row 0 needs a 4 where column 3 already has one.
  unsolvable = "123." + "...4" + "...." + "...."
  path = _csv(tmp_path / "q.csv", [["a", ok, "", ""], ["b", clash, "", ""],
                                   ["c", box_clash, "", ""], ["d", unsolvable, "", ""]])
  read = sudoku_read.read_puzzles(path, 16, {"skip_bad": True})
  assert list(read.names) == ["a"]
  assert [r for r, _ in read.rejected] == [3, 4, 5]
  assert "1 twice in row 0" in read.rejected[0][1]
  assert "1 twice in box 0" in read.rejected[1][1]
  assert "unsolvable" in read.rejected[2][1]
  with pytest.raises(DataError, match=r"q\.csv: row 3: field 'q': clues clash"):
    sudoku_read.read_puzzles(path, 16, {})


def test_maze_without_start_or_way_rejected_per_puzzle_and_solved_otherwise(tmp_path):
  no_start = _replace(MAZE_Q, 1, 1, " ")
  walled = _replace(_replace(MAZE_Q, 1, 2, "#"), 2, 1, "#")  # S boxed in
  path = _csv(tmp_path / "m.csv", [_maze_row("ok", MAZE_Q, [""] * 5, ""),
                                   _maze_row("nostart", no_start, [""] * 5, ""),
                                   _maze_row("walled", walled, [""] * 5, "")])
  cfg = models.make_config("trm", vocab_size=6, seq_len=25, hidden_size=16, num_heads=2,
                           puzzle_emb_ndim=16, puzzle_emb_len=1, H_cycles=1, L_cycles=1,
                           L_layers=1, halt_max_steps=2, compute_dtype="float32")
  params = cfg.init(jax.random.PRNGKey(0))
  res = solve.solve_grid(cfg, params, path, "maze", batch_size=4, skip_bad=True)
  assert res["count"] == 1 and [p["source"] for p in res["puzzles"]] == ["ok"]
  assert [r["row"] for r in res["rejected"]] == [3, 4]
  assert "exactly one 'S'" in res["rejected"][0]["error"]
  assert "unsolvable" in res["rejected"][1]["error"]


def test_one_bad_arc_task_is_skipped_not_fatal(tmp_path):
  task = {"train": [{"input": [[1, 2]], "output": [[2, 1]]}],
          "test": [{"input": [[3, 4]]}]}
  (tmp_path / "good.json").write_text(json.dumps(task))
  (tmp_path / "bad.json").write_text(json.dumps({"train": [{"input": [[1, 99]]}]}))
  with pytest.raises(DataError):
    load_tasks(str(tmp_path))
  skipped = {}
  tasks = load_tasks(str(tmp_path), skipped)
  assert [t.task_id for t in tasks] == ["good"] and list(skipped) == ["bad"]


# -- one-line errors for storage faults ------------------------------------------

@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_storage_fault_is_one_line_naming_the_path(code, capsys, monkeypatch):
  monkeypatch.delenv(cli_errors.VERBOSE_ENV, raising=False)

  def main():
    try:
      raise OSError(code, os.strerror(code), "/runs/x/metrics.jsonl")
    except OSError as e:   # wrapped, as the checkpoint writers do
      raise RuntimeError("save failed") from e

  with pytest.raises(SystemExit) as exit_info:
    cli_errors.guarded(main)()
  assert exit_info.value.code == 1
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and "/runs/x/metrics.jsonl" in err
  assert errno.errorcode[code] in err
  monkeypatch.setenv(cli_errors.VERBOSE_ENV, "1")   # the traceback on demand
  with pytest.raises(RuntimeError):
    cli_errors.guarded(main)()


def _one_line_failure(cmd, blocker):
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  env.pop(cli_errors.VERBOSE_ENV, None)
  p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert p.returncode != 0
  lines = [l for l in p.stderr.splitlines() if l.strip()]
  assert "Traceback" not in p.stderr, p.stderr[-2000:]
  assert lines and lines[-1].startswith("error: ") and str(blocker) in lines[-1], p.stderr
  return lines[-1]


def test_cli_workdir_under_a_file_is_one_line(tmp_path):
  # A file where the workdir's parent directory should be (root ignores
  # chmod, not this): the training CLI and the prepared-data CLI.
  blocker = tmp_path / "not_a_dir"
  blocker.write_text("x")
  _one_line_failure([sys.executable, "-m", "experiments.sudoku_trm",
                     "--config=experiments/configs/sudoku_trm.py:smoke",
                     f"--workdir={blocker}/run"], blocker)
  _one_line_failure([sys.executable, "-m", "recur.data.prepared", "--source=sudoku",
                     f"--out={blocker}/data", "--kw=num_train=4", "--kw=num_test=4",
                     "--kw=box=(2,2)", "--kw=num_blanks=4", "--kw=num_aug=0"], blocker)
