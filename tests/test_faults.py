"""What long runs meet: damaged checkpoints, torn logs, divergence, two runs on
one workdir, other data. Each fault is made on a copy of one finished smoke run
(checkpoints 2, 4, 6), then the same run is started again; the resumed run
must write the same metrics, value for value, as the run that never stopped."""
import importlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from experiments import loop
from experiments.workdir_lock import LockHeld, WorkdirLock

from cpu_processes import cpu_env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(**over):
  c = importlib.import_module("experiments.configs.sudoku_trm").get_config("smoke")
  c.update(steps=6, checkpoint_every=2, log_every=1, eval_at_end=False,
           async_checkpointing=False, pictures=False)
  for key, value in over.items():
    *parents, last = key.split(".")
    node = c
    for p in parents:
      node = node[p]
    node[last] = value
  return c


def _rows(wd):
  with open(os.path.join(wd, "metrics.jsonl")) as f:
    rows = [json.loads(l) for l in f if l.strip()]
  return [{k: v for k, v in r.items() if k.startswith("train/") or k == "step"}
          for r in rows if "train/loss" in r]


def _steps(wd):
  return sorted(int(s) for s in os.listdir(os.path.join(wd, "checkpoints")) if s.isdigit())


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  """A finished 6-step run and its metrics rows."""
  wd = str(tmp_path_factory.mktemp("faults") / "ref")
  loop.run(_config(), wd)
  assert _steps(wd) == [2, 4, 6]
  return wd, _rows(wd)


@pytest.fixture
def copy(finished, tmp_path):
  wd = str(tmp_path / "run")
  shutil.copytree(finished[0], wd)
  return wd


def _tb_steps(wd):
  from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
  acc = EventAccumulator(os.path.join(wd, "tensorboard"))
  acc.Reload()
  return [e.step for e in acc.Scalars("train/loss")]


def _largest_file(root):
  files = [os.path.join(r, f) for r, _, fs in os.walk(root) for f in fs]
  return max(files, key=os.path.getsize)


def _truncate(wd):
  path = _largest_file(os.path.join(wd, "checkpoints", "6", "state"))
  with open(path, "r+b") as f:
    f.truncate(os.path.getsize(path) // 2)


def _flip(wd):
  path = _largest_file(os.path.join(wd, "checkpoints", "6", "state"))
  data = bytearray(open(path, "rb").read())
  data[len(data) // 3] ^= 0x10
  open(path, "wb").write(bytes(data))


def _missing_item(wd):
  shutil.rmtree(os.path.join(wd, "checkpoints", "6", "meta"))


def _empty_dir(wd):
  d = os.path.join(wd, "checkpoints", "6")
  shutil.rmtree(d)
  os.mkdir(d)


@pytest.mark.parametrize("damage", [_truncate, _flip, _missing_item, _empty_dir])
def test_damaged_latest_checkpoint_resumes_from_previous(finished, copy, damage, capsys):
  # Given the newest checkpoint damaged.
  damage(copy)
  # When the same run is started again.
  run = loop.run(_config(), copy)
  out = capsys.readouterr()
  # Then it reports the damaged step, resumes from step 4 and ends with the
  # metrics of the run that never stopped; TensorBoard shows each step once.
  assert "checkpoint 6 is damaged" in out.err, out.err[-2000:]
  assert "Resumed from" in out.out and "/checkpoints/4 (step 4/6)" in out.out
  assert _rows(copy) == finished[1]
  assert _tb_steps(copy) == list(range(1, 7))
  assert run.step == 6 and _steps(copy) == [2, 4, 6]
  assert os.listdir(copy + "/checkpoints.damaged")[0].startswith("6-")


def test_no_checkpoint_restores_names_every_step(copy):
  for s in _steps(copy):
    shutil.rmtree(os.path.join(copy, "checkpoints", str(s), "meta"))
  with pytest.raises(loop.RunError, match=r"no checkpoint .* restores \(steps \[2, 4, 6\]\)"):
    loop.run(_config(), copy)


def test_torn_metrics_line_is_dropped_and_run_resumes(finished, copy, capsys):
  # Given a run killed after checkpoint 4 while writing a metrics line.
  shutil.rmtree(os.path.join(copy, "checkpoints", "6"))
  with open(os.path.join(copy, "metrics.jsonl"), "a") as f:
    f.write('{"step": 7, "train/lo')
  loop.run(_config(), copy)
  out = capsys.readouterr()
  assert "dropping a torn last line" in out.err and "metrics.jsonl line 7" in out.err
  assert _rows(copy) == finished[1]
  assert _tb_steps(copy) == list(range(1, 7))


def test_unreadable_metrics_line_is_an_error_naming_file_and_line(copy):
  path = os.path.join(copy, "metrics.jsonl")
  lines = open(path).read().splitlines()
  lines[1] = "garbage"
  open(path, "w").write("\n".join(lines) + "\n")
  with pytest.raises(ValueError, match=r"metrics.jsonl line 2: not a JSON object"):
    loop.run(_config(), copy)


def test_divergence_keeps_a_good_checkpoint_and_resumes_with_sane_lr(finished, copy, capsys):
  # Given a run that goes on from checkpoint 4 with a learning rate of 1e30.
  shutil.rmtree(os.path.join(copy, "checkpoints", "6"))
  with pytest.raises(loop.RunError) as e:
    loop.run(_config(**{"optim.lr": 1e30}), copy)
  # Then it stops at the first bad update (the loss before it was still
  # finite), naming step 4 as the good checkpoint, and saves nothing after it.
  assert "at step 5" in str(e.value) and "last good checkpoint is step 4" in str(e.value)
  assert "exploded" in str(e.value) or "non-finite" in str(e.value)
  assert "optim.lr: 0.001 -> 1e+30" in capsys.readouterr().out
  assert _steps(copy) == [2, 4]
  # When it is resumed with the original learning rate, it trains to the end
  # with finite losses: the metrics of the run that never diverged.
  loop.run(_config(), copy)
  rows = _rows(copy)
  assert all(np.isfinite(r["train/loss"]) for r in rows)
  assert rows == finished[1]


def test_steps_below_latest_checkpoint_is_refused(copy):
  with pytest.raises(loop.RunError, match=r"steps=4 is below .* checkpoint to resume, 6"):
    loop.run(_config(steps=4), copy)
  assert _steps(copy) == [2, 4, 6]


def test_other_data_is_refused_naming_what_changed(copy):
  with pytest.raises(loop.RunError, match=r"data.options.seed: checkpoint 0 vs now 1"):
    loop.run(_config(**{"data.seed": 1}), copy)
  with pytest.raises(loop.RunError, match=r"seed: checkpoint 0 vs now 3"):
    loop.run(_config(seed=3), copy)


# -- the workdir lock --------------------------------------------------------------

def _cmd(wd, *over):
  return [sys.executable, "-m", "experiments.sudoku_trm",
          "--config=experiments/configs/sudoku_trm.py:smoke", f"--workdir={wd}",
          "--config.pictures=False", "--config.eval_at_end=False", *over]


def test_second_run_on_busy_workdir_is_refused(tmp_path):
  # Given two runs started together on one workdir.
  wd = tmp_path / "busy"
  over = ["--config.steps=12", "--config.checkpoint_every=4", "--config.log_every=1"]
  procs = [subprocess.Popen(_cmd(wd, *over), cwd=ROOT, env=cpu_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True) for _ in range(2)]
  outs = [p.communicate(timeout=600) for p in procs]
  codes = sorted(p.returncode for p in procs)
  # Then one is refused naming the holder, and the other finishes alone.
  assert codes[0] == 0 and codes[1] != 0, [o[1][-1500:] for o in outs]
  refused = [o for p, o in zip(procs, outs) if p.returncode != 0][0]
  assert "held by another run" in refused[1] and socket.gethostname() in refused[1]
  assert [r["step"] for r in _rows(wd)] == list(range(1, 13))


def _write_lock(wd, **fields):
  os.makedirs(wd / "locks", exist_ok=True)
  rec = {"host": socket.gethostname(), "pid": os.getpid(), "token": "t0",
         "started": time.time(), "heartbeat": time.time(), **fields}
  (wd / "locks" / "process_0.json").write_text(json.dumps(rec))


def test_stale_locks_are_taken_over_live_ones_are_not(tmp_path, capsys):
  dead = subprocess.Popen(["true"])
  dead.wait()
  # A dead process on this host: taken over at once.
  _write_lock(tmp_path, pid=dead.pid)
  WorkdirLock(tmp_path).acquire().release()
  assert "Took over the stale workdir lock" in capsys.readouterr().out
  # Another host with a fresh heartbeat: refused, naming it.
  _write_lock(tmp_path, host="tpu-worker-7", pid=123, token="t1")
  with pytest.raises(LockHeld, match="pid 123 on host tpu-worker-7"):
    WorkdirLock(tmp_path, stale_s=60).acquire()
  # The same, silent for longer than stale_s: taken over.
  _write_lock(tmp_path, host="tpu-worker-7", pid=123, token="t2",
              heartbeat=time.time() - 120)
  lock = WorkdirLock(tmp_path, stale_s=60).acquire()
  assert json.loads((tmp_path / "locks" / "process_0.json").read_text())["token"] == lock.token
  lock.release()
  assert not (tmp_path / "locks" / "process_0.json").exists()
  # This process holding it (a live pid here): refused.
  with WorkdirLock(tmp_path):
    with pytest.raises(LockHeld, match=f"pid {os.getpid()}"):
      WorkdirLock(tmp_path).acquire()
