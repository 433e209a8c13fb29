"""Best checkpoints (issue 10 item 6): the latest N stay in checkpoints/, the
best by a named evaluation metric is kept in best/, and solve/export load it."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from cpu_processes import cpu_env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _train(workdir, *over):
  out = subprocess.run(
      [sys.executable, "-m", "experiments.sudoku_trm",
       "--config=experiments/configs/sudoku_trm.py:smoke", f"--workdir={workdir}",
       "--config.steps=8", "--config.eval_every=2", "--config.checkpoint_every=2",
       "--config.keep_checkpoints=1", "--config.pictures=False", *over],
      cwd=ROOT, env=cpu_env(), capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
  return out


def _expected_best(workdir, metric, mode):
  rows = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
  evals = [(r["step"], r[metric]) for r in rows if metric in r]
  assert [s for s, _ in evals] == [2, 4, 6, 8]
  best_step, best_value = None, None
  for step, v in evals:      # strict improvement: the first of equal values
    if best_value is None or (v > best_value if mode == "max" else v < best_value):
      best_step, best_value = step, v
  return best_step, best_value


@pytest.mark.parametrize("mode", ["min"])
def test_best_checkpoint_kept_beside_latest_and_loaded(tmp_path, mode):
  # `min` of the eval accuracy picks an early step (accuracy rises while
  # training), so best and latest differ; the expectation is computed from
  # the run's own metrics either way.
  wd = tmp_path / "run"
  metric = "eval/accuracy"
  _train(wd, f"--config.best_metric={metric}", f"--config.best_mode={mode}")
  step, value = _expected_best(wd, metric, mode)
  latest = sorted(int(s) for s in os.listdir(wd / "checkpoints") if s.isdigit())
  assert latest == [8]                                   # keep_checkpoints=1
  assert sorted(int(s) for s in os.listdir(wd / "best") if s.isdigit()) == [step]

  from recur.checkpoint import RunCheckpoints, restore_for_inference
  best = RunCheckpoints(wd / "best", read_only=True)
  try:
    meta = best.read_meta(step)
  finally:
    best.close()
  assert meta["best"] == {"metric": metric, "mode": mode, "value": value}
  b = restore_for_inference(wd, best=True)
  last = restore_for_inference(wd)
  assert (b.step, last.step) == (step, 8)
  if step != 8:
    assert any(not np.array_equal(x, y) for x, y in
               zip(jax_leaves(b.params), jax_leaves(last.params)))

  # export --best writes the best weights.
  out = subprocess.run([sys.executable, "-m", "experiments.export", f"--workdir={wd}",
                        f"--out={tmp_path / 'best.npz'}", "--best"],
                       cwd=ROOT, env=cpu_env(), capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  side = json.load(open(tmp_path / "best.json"))
  assert side["step"] == step


def jax_leaves(tree):
  import jax
  return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_unknown_best_metric_warns_and_trains(tmp_path):
  out = _train(tmp_path / "run", "--config.best_metric=eval/no_such_metric")
  assert "best_metric 'eval/no_such_metric' is not among" in out.stderr
  assert not any(s.isdigit() for s in os.listdir(tmp_path / "run" / "best"))
