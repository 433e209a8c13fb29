"""A dead peer in a 2-process run: the survivor stops within ~30 s with a
message naming the peer (not ~90 s later on jax's heartbeat), and the same
command resumes from the last checkpoint."""
import os
import signal
import subprocess
import sys
import time

from experiments.workdir_lock import PEER_LOST_EXIT

from cpu_processes import cpu_env, free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OVER = ["--config.checkpoint_every=4", "--config.log_every=1", "--config.eval_at_end=False",
        "--config.pictures=False", "--config.async_checkpointing=False"]


def _start(wd, steps):
  port = free_port()
  return [subprocess.Popen(
      [sys.executable, "-m", "experiments.sudoku_trm",
       "--config=experiments/configs/sudoku_trm.py:smoke", f"--workdir={wd}",
       f"--config.steps={steps}", *OVER, f"--coordinator_address=localhost:{port}",
       "--num_processes=2", f"--process_id={i}"],
      cwd=ROOT, env=cpu_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
      for i in range(2)]


def _steps(wd):
  d = os.path.join(wd, "checkpoints")
  return sorted(int(s) for s in os.listdir(d) if s.isdigit()) if os.path.isdir(d) else []


def test_sigkilled_peer_stops_the_survivor_and_a_restart_resumes(tmp_path):
  wd = str(tmp_path / "run")
  procs = _start(wd, 100000)
  deadline = time.time() + 300
  while not _steps(wd):   # a checkpoint exists: training is under way
    assert all(p.poll() is None for p in procs), [p.communicate()[1][-2000:] for p in procs]
    assert time.time() < deadline, "run did not reach its first checkpoint"
    time.sleep(0.2)
  time.sleep(6)           # each process has seen the other's lease alive
  t0 = time.time()
  procs[1].send_signal(signal.SIGKILL)
  _, err = procs[0].communicate(timeout=90)
  took = time.time() - t0
  procs[1].wait()
  assert procs[0].returncode == PEER_LOST_EXIT, err[-3000:]
  assert took < 45, took
  assert "peer process 1 of this run died" in err and "its process is gone" in err
  # The same command resumes from the newest checkpoint (no lock to wait for).
  last = _steps(wd)[-1]
  procs = _start(wd, last + 2)
  outs = [p.communicate(timeout=300) for p in procs]
  for p, (_, e) in zip(procs, outs):
    assert p.returncode == 0, e[-3000:]
  assert f"checkpoints/{last}" in outs[0][0] + outs[0][1]
  assert _steps(wd)[-1] == last + 2
