"""experiments.export: our EMA params -> reference state dict, and back via solve."""
import csv
import importlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from experiments import export, loop, solve
from recur.puzzles.sudoku import source as sudoku_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def sudoku_workdir(tmp_path_factory):
  """The Sudoku smoke run (shared with test_solve within one session)."""
  wd = tmp_path_factory.getbasetemp() / "smoke_sudoku_trm"
  if not (wd / "DONE").exists():
    config = importlib.import_module("experiments.configs.sudoku_trm").get_config("smoke")
    config.update(steps=2, checkpoint_every=2, eval_at_end=False)
    loop.run(config, str(wd))
    (wd / "DONE").write_text("ok")
  return str(wd)


def _csv(path):
  p = sudoku_lib.generate_sudoku_puzzles(5, box=(2, 2), seed=7, stream=9, num_blanks=7)
  with open(path, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["source", "q", "a", "rating"])
    for i in range(len(p)):
      w.writerow([f"p{i}", "".join(str(d) if d else "." for d in p.questions[i].ravel()),
                  "".join(str(d) for d in p.answers[i].ravel()), 0])
  return str(path)


def test_export_npz_names_and_round_trip(sudoku_workdir, tmp_path):
  # Given a trained run, exported through the CLI.
  out = tmp_path / "exp" / "model.npz"
  proc = subprocess.run([sys.executable, "-m", "experiments.export",
                         f"--workdir={sudoku_workdir}", f"--out={out}"],
                        cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  # Then the 2-step run's EMA (rate 0.999) is flagged as too young, once.
  assert proc.stderr.count("EmaHorizonWarning: exporting EMA weights after 2 steps") == 1
  # And no backend-probe noise on this CPU run.
  assert "Unable to initialize backend" not in proc.stderr
  # And the file holds the reference's names and the sidecar our config.
  with np.load(out) as z:
    names = set(z.files)
  assert "model.inner.L_level.layers.0.self_attn.qkv_proj.weight" in names or \
      "model.inner.L_level.layers.0.mlp_t.gate_up_proj.weight" in names
  assert {"model.inner.H_init", "model.inner.lm_head.weight",
          "model.inner.q_head.bias", "model.inner.puzzle_emb.weights"} <= names
  side = json.loads((tmp_path / "exp" / "model.json").read_text())
  assert side["model"]["name"] == "trm" and side["data"]["name"] == "sudoku"
  # When solving with the exported file and with the workdir.
  path = _csv(tmp_path / "p.csv")
  cfg_a, params_a, _ = solve.load_model(workdir=sudoku_workdir)
  cfg_b, params_b, meta = solve.load_model(checkpoint=str(out))
  assert cfg_a == cfg_b and meta["data"]["name"] == "sudoku"
  kw = dict(box=(2, 2), steps=3, trajectories=2, noise=0.2, batch_size=8)
  a = solve.solve_grid(cfg_a, params_a, path, "sudoku", **kw)
  b = solve.solve_grid(cfg_b, params_b, path, "sudoku", **kw)
  # Then the predictions and confidences are the same.
  assert [p["grid"] for p in a["puzzles"]] == [p["grid"] for p in b["puzzles"]]
  np.testing.assert_allclose([p["confidence"] for p in a["puzzles"]],
                             [p["confidence"] for p in b["puzzles"]], rtol=1e-6)
  # And an explicit --model_config (the run's model.json) works as well.
  cfg_c, _, _ = solve.load_model(checkpoint=str(out), model_config=os.path.join(
      sudoku_workdir, "model.json"))
  assert cfg_c == cfg_a


def test_export_pt_without_torch_falls_back_to_npz(sudoku_workdir, tmp_path):
  try:
    import torch  # noqa: F401
    pytest.skip("torch installed: .pt is written")
  except ImportError:
    pass
  out, side = export.export(sudoku_workdir, str(tmp_path / "w.pt"))
  assert out.endswith("w.npz") and os.path.exists(out) and side.endswith("w.json")


def test_checkpoint_dir_forms(sudoku_workdir):
  # A run's checkpoints dir or one step of it loads like the workdir.
  cfg, params, meta = solve.load_model(
      checkpoint=os.path.join(sudoku_workdir, "checkpoints", "2"))
  assert "step 2" in meta["source"]
  cfg2, _, _ = solve.load_model(checkpoint=os.path.join(sudoku_workdir, "checkpoints"))
  assert cfg == cfg2
