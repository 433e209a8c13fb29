"""SIGTERM mid-run: every process agrees on a step, saves it, exits 0 within
30 s, and the same command resumes to the metrics of a run that never stopped
(1 and 2 processes). Plus the profiler window writing a trace."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from cpu_processes import cpu_env, free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The smoke model (quick to compile) for enough steps that SIGTERM lands
# mid-run; no checkpoint is due before the end.
STEPS = 400
OVER = [f"--config.steps={STEPS}", "--config.checkpoint_every=0", "--config.log_every=1",
        "--config.eval_at_end=False", "--config.pictures=False"]


def _cmd(workdir, *over):
  return [sys.executable, "-m", "experiments.sudoku_trm",
          "--config=experiments/configs/sudoku_trm.py:smoke", f"--workdir={workdir}", *over]


def _multi(workdir, port, i, *over):
  return _cmd(workdir, *over, f"--coordinator_address=localhost:{port}",
              "--num_processes=2", f"--process_id={i}")


def _rows(workdir):
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    lines = f.read().splitlines()
  rows = []
  for l in lines:
    try:
      rows.append(json.loads(l))
    except json.JSONDecodeError:
      pass  # a line being written
  return [{k: v for k, v in r.items() if k.startswith("train/") or k == "step"}
          for r in rows if "train/loss" in r]


def _steps(workdir):
  d = os.path.join(workdir, "checkpoints")
  return sorted(int(s) for s in os.listdir(d) if s.isdigit()) if os.path.isdir(d) else []


def _wait_rows(workdir, n, procs, timeout=300):
  deadline = time.time() + timeout
  while len(_rows(workdir)) < n and all(p.poll() is None for p in procs):
    assert time.time() < deadline, "run did not start training"
    time.sleep(0.05)
  assert all(p.poll() is None for p in procs), "run ended before the signal"


def test_sigterm_single_process_saves_exits_0_and_resumes(tmp_path):
  ref = tmp_path / "ref"
  out = subprocess.run(_cmd(ref, *OVER), cwd=ROOT, env=cpu_env(), capture_output=True,
                       text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  wd = tmp_path / "run"
  # Given a run signalled once it has logged 5 steps (no checkpoint due)...
  proc = subprocess.Popen(_cmd(wd, *OVER), cwd=ROOT, env=cpu_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  _wait_rows(wd, 5, [proc])
  t0 = time.time()
  proc.send_signal(signal.SIGTERM)
  stdout, stderr = proc.communicate(timeout=120)
  # ...it exits 0 within 30 s with a checkpoint at the step it stopped at.
  assert proc.returncode == 0, stderr[-3000:]
  assert time.time() - t0 < 30
  assert "preempted: checkpoint saved at step" in stdout
  saved = _steps(wd)
  assert len(saved) == 1 and 5 <= saved[0] < STEPS
  assert [r["step"] for r in _rows(wd)] == list(range(1, saved[0] + 1))
  # The same command resumes and ends with the uninterrupted run's metrics.
  out = subprocess.run(_cmd(wd, *OVER), cwd=ROOT, env=cpu_env(), capture_output=True,
                       text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  assert f"Resumed from {wd}/checkpoints/{saved[0]}" in out.stdout
  assert _rows(wd) == _rows(ref) and len(_rows(ref)) == STEPS


def test_sigterm_to_one_of_two_processes_both_save_the_same_step(tmp_path):
  # (Fewer steps: a step of two processes costs a cross-process all-reduce.)
  steps = 40
  over = [o for o in OVER if not o.startswith("--config.steps")] + [f"--config.steps={steps}"]
  port = free_port()
  ref = tmp_path / "ref"
  procs = [subprocess.Popen(_multi(ref, port, i, *over), cwd=ROOT, env=cpu_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for i in range(2)]
  for p in procs:
    _, e = p.communicate(timeout=600)
    assert p.returncode == 0, e[-3000:]

  wd = tmp_path / "run"
  port = free_port()
  procs = [subprocess.Popen(_multi(wd, port, i, *over), cwd=ROOT, env=cpu_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for i in range(2)]
  _wait_rows(wd, 3, procs)
  t0 = time.time()
  # Only process 1 is signalled: the notice reaches process 0 through JAX's
  # coordination service and both stop at the same step.
  procs[1].send_signal(signal.SIGTERM)
  outs = [p.communicate(timeout=120) for p in procs]
  for p, (_, e) in zip(procs, outs):
    assert p.returncode == 0, e[-3000:]
  assert time.time() - t0 < 30
  saved = _steps(wd)
  assert len(saved) == 1 and 3 <= saved[0] < steps
  assert "preempted: checkpoint saved at step" in outs[0][0] + outs[1][0]

  port = free_port()
  procs = [subprocess.Popen(_multi(wd, port, i, *over), cwd=ROOT, env=cpu_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for i in range(2)]
  outs = [p.communicate(timeout=600) for p in procs]
  for p, (_, e) in zip(procs, outs):
    assert p.returncode == 0, e[-3000:]
  assert f"checkpoints/{saved[0]}" in outs[0][0]
  assert _rows(wd) == _rows(ref) and len(_rows(ref)) == steps


def test_profile_steps_writes_a_trace(tmp_path):
  wd = tmp_path / "prof"
  out = subprocess.run(_cmd(wd, "--config.profile_steps=2:4", "--config.eval_at_end=False",
                            "--config.pictures=False"),
                       cwd=ROOT, env=cpu_env(), capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  found = [os.path.join(r, f) for r, _, fs in os.walk(wd / "tensorboard" / "plugins" / "profile")
           for f in fs if f.endswith(".xplane.pb")]
  assert len(found) == 1 and os.path.getsize(found[0]) > 0, found


def test_profile_steps_is_validated():
  from experiments.preemption import parse_profile_steps
  assert parse_profile_steps("") is None
  assert parse_profile_steps("10:15") == (10, 15)
  for bad in ("5", "5:5", "a:b", "-1:3"):
    with pytest.raises(ValueError, match="profile_steps"):
      parse_profile_steps(bad)
