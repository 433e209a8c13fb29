"""Elastic resume: a checkpoint written on N devices / P processes continues on
M devices / Q processes with the losses of a run that never stopped (issue 10
item 3), while a changed global batch is still refused naming the field.
Every run is a real subprocess of the entry point, with fake CPU devices."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from cpu_processes import cpu_env, free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A smoke Sudoku run with a real puzzle table (num_puzzle_identifiers = 1,
# padded to 8/4/2/1 rows by the device count) and constant lr after warmup
# (lr_min_ratio 1), so stopping early by a smaller `steps` trains the same steps.
OVER = ["--config.log_every=1", "--config.eval_at_end=False",
        "--config.checkpoint_every=0", "--config.async_checkpointing=False"]


def _cmd(workdir, steps, *extra):
  return [sys.executable, "-m", "experiments.sudoku_trm",
          "--config=experiments/configs/sudoku_trm.py:smoke", f"--workdir={workdir}",
          f"--config.steps={steps}", *OVER, *extra]


def _run(workdir, steps, *extra, devices=1, check=True):
  out = subprocess.run(_cmd(workdir, steps, *extra), cwd=ROOT, env=cpu_env(devices),
                       capture_output=True, text=True, timeout=600)
  if check:
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
  return out


def _losses(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = [json.loads(l) for l in f if l.strip()]
  return {r["step"]: r["train/loss"] for r in rows if "train/loss" in r}


def _table_rows(workdir):
  return json.load(open(os.path.join(workdir, "model.json")))["model"]["num_puzzle_identifiers"]


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
  """The uninterrupted run (one device), shared by both tests."""
  wd = tmp_path_factory.mktemp("ref") / "run"
  _run(wd, 6, devices=1)
  return wd


def test_eight_then_four_then_one_device_matches_uninterrupted(tmp_path, ref):
  wd = tmp_path / "elastic"
  _run(wd, 2, "--config.table_sharding=rows", devices=8)
  assert _table_rows(wd) == 8
  out = _run(wd, 4, "--config.table_sharding=rows", devices=4)
  assert "Resumed from" in out.stdout and "step 2/4" in out.stdout
  assert _table_rows(wd) == 4
  out = _run(wd, 6, devices=1)
  assert "Resumed from" in out.stdout and "step 4/6" in out.stdout
  a, b = _losses(ref), _losses(wd)
  assert sorted(b) == sorted(a) == list(range(1, 7))
  np.testing.assert_allclose([b[s] for s in a], [a[s] for s in a], rtol=1e-4, atol=1e-4)

  # A changed global batch is still refused, naming the field.
  bad = _run(wd, 8, "--config.batch_size=16", devices=1, check=False)
  assert bad.returncode != 0 and "global_batch_size" in bad.stderr


def test_two_processes_then_one_matches_uninterrupted(tmp_path, ref):
  wd = tmp_path / "elastic"
  port = free_port()
  procs = [subprocess.Popen(
      _cmd(wd, 3, f"--coordinator_address=localhost:{port}", "--num_processes=2",
           f"--process_id={i}"),
      cwd=ROOT, env=cpu_env(1), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
      for i in range(2)]
  outs = [p.communicate(timeout=600) for p in procs]
  for p, (o, e) in zip(procs, outs):
    assert p.returncode == 0, o[-2000:] + e[-3000:]
  assert _table_rows(wd) == 2
  out = _run(wd, 6, devices=1)
  assert "Resumed from" in out.stdout and "step 3/6" in out.stdout
  a, b = _losses(ref), _losses(wd)
  assert sorted(b) == sorted(a) == list(range(1, 7))
  np.testing.assert_allclose([b[s] for s in a], [a[s] for s in a], rtol=1e-4, atol=1e-4)
