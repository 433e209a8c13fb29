"""The training system end to end: resume after SIGKILL, sharding, multi-process,
checkpoints, outputs. Every run is a real subprocess of the entry point."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from cpu_processes import cpu_env, free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cmd(name, workdir, *overrides, variant="smoke"):
  return [sys.executable, "-m", f"experiments.{name}",
          f"--config=experiments/configs/{name}.py:{variant}", f"--workdir={workdir}",
          *overrides]


def run_exp(name, workdir, *overrides, devices=1, check=True):
  out = subprocess.run(_cmd(name, workdir, *overrides), cwd=ROOT, env=cpu_env(devices),
                       capture_output=True, text=True, timeout=600)
  if check:
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
  return out


def train_rows(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = [json.loads(l) for l in f if l.strip()]
  return [r for r in rows if "train/loss" in r]


def comparable(rows):
  return [{k: v for k, v in r.items() if k.startswith("train/") or k == "step"} for r in rows]


@pytest.mark.parametrize("name", ["sudoku_trm", "arc_trm"])
def test_sigkill_resume_matches_uninterrupted(tmp_path, name):
  check_sigkill_resume(tmp_path, name)


def check_sigkill_resume(tmp_path, name, *data_over, ref_data_over=None):
  """A run of `name` killed after its second checkpoint and started again with
  the same command ends with the metrics of a run that never stopped (that
  run with `ref_data_over` instead of `data_over` when given: e.g. the
  generator as the reference of a stored copy)."""
  # (The check uses 60 steps / checkpoints every 20; half of it here to
  # keep CI short.) A wider model so that the 10 steps after the second
  # checkpoint take long enough (seconds) to kill the run between them;
  # synchronous checkpoints so checkpoint 20 is committed before step 21 starts.
  over = ["--config.steps=30", "--config.checkpoint_every=10", "--config.log_every=1",
          "--config.eval_at_end=False", "--config.async_checkpointing=False",
          "--config.model.hidden_size=128", "--config.model.H_cycles=3",
          "--config.model.L_cycles=4"]
  ref = tmp_path / "ref"
  run_exp(name, ref, *over, *(data_over if ref_data_over is None else ref_data_over))
  over += list(data_over)

  # Given a run killed with SIGKILL after its second checkpoint...
  killed = tmp_path / "killed"
  proc = subprocess.Popen(_cmd(name, killed, *over), cwd=ROOT, env=cpu_env(),
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  done = killed / "checkpoints" / "20" / "commit_success.txt"
  deadline = time.time() + 300
  while not done.exists() and proc.poll() is None and time.time() < deadline:
    time.sleep(0.01)
  assert proc.poll() is None, "run finished before it could be killed"
  os.kill(proc.pid, signal.SIGKILL)
  proc.wait()
  assert len(train_rows(killed)) < 30
  # ...when started again with the same command, it resumes and ends with the
  # same metrics, value for value, as the run that never stopped.
  out = run_exp(name, killed, *over)
  assert "Resumed from" in out.stdout
  assert comparable(train_rows(killed)) == comparable(train_rows(ref))
  assert len(train_rows(ref)) == 30


def test_outputs_tensorboard_and_refusal(tmp_path):
  wd = tmp_path / "run"
  out = run_exp("sudoku_trm", wd)
  assert "ex/s" in out.stdout and "ETA" in out.stdout and "loss" in out.stdout
  rows = [json.loads(l) for l in open(wd / "metrics.jsonl")]
  first = rows[0]
  for k in ("step", "train/loss", "train/lm_loss", "train/exact_accuracy", "train/lr",
            "examples_per_s"):
    assert k in first, k
  assert any("eval/exact_accuracy" in r for r in rows)
  cfg = json.load(open(wd / "config.json"))
  assert cfg["batch_size"] == 8
  assert sorted(os.listdir(wd / "checkpoints")) == ["3", "6"]

  from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
  acc = EventAccumulator(str(wd / "tensorboard"))
  acc.Reload()
  losses = [e.value for e in acc.Scalars("train/loss")]
  assert len(losses) == 6
  np.testing.assert_allclose(losses, [r["train/loss"] for r in train_rows(wd)], rtol=1e-6)

  # A checkpoint of an incompatible config is refused, naming the difference.
  bad = run_exp("sudoku_trm", wd, "--config.model.L_cycles=3", check=False)
  assert bad.returncode != 0
  assert "incompatible" in bad.stderr and "L_cycles" in bad.stderr
  # Longer training on the same workdir resumes instead.
  more = run_exp("sudoku_trm", wd, "--config.steps=8", "--config.eval_at_end=False")
  assert "Resumed from" in more.stdout and "step 6/8" in more.stdout
  assert [r["step"] for r in train_rows(wd)] == list(range(1, 9))


def test_nonfinite_loss_stops_and_keeps_good_checkpoint(tmp_path):
  wd = tmp_path / "nan"
  out = run_exp("sudoku_trm", wd, "--config.optim.lr=1e30", "--config.optim.lr_warmup_steps=0",
                "--config.checkpoint_every=1", "--config.steps=20", check=False)
  assert out.returncode == 1, out.stdout[-2000:] + out.stderr[-2000:]
  # (Caught at the first update: its parameters explode before any loss is
  # non-finite.)
  assert ("exploded" in out.stderr or "non-finite" in out.stderr) and "at step" in out.stderr
  bad_step = int(out.stderr.split("at step ")[1].split(";")[0])
  kept = [int(s) for s in os.listdir(wd / "checkpoints") if s.isdigit()]
  assert all(s < bad_step for s in kept)


def test_eight_fake_devices_match_one_device(tmp_path):
  over = ["--config.steps=10", "--config.log_every=1", "--config.eval_at_end=False",
          "--config.checkpoint_every=0"]
  run_exp("sudoku_trm", tmp_path / "one", *over, devices=1)
  run_exp("sudoku_trm", tmp_path / "eight", *over, "--config.table_sharding=rows", devices=8)
  a = [r["train/loss"] for r in train_rows(tmp_path / "one")]
  b = [r["train/loss"] for r in train_rows(tmp_path / "eight")]
  assert len(a) == len(b) == 10
  np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4)


def test_two_processes_match_one_process_with_two_devices(tmp_path):
  over = ["--config.steps=8", "--config.log_every=1", "--config.checkpoint_every=4",
          "--config.eval_at_end=False"]
  run_exp("sudoku_trm", tmp_path / "single", *over, devices=2)
  port = free_port()
  wd = tmp_path / "multi"
  procs = [subprocess.Popen(
      _cmd("sudoku_trm", wd, *over, f"--coordinator_address=localhost:{port}",
           "--num_processes=2", f"--process_id={i}"),
      cwd=ROOT, env=cpu_env(1), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
      for i in range(2)]
  outs = [p.communicate(timeout=600) for p in procs]
  for p, (o, e) in zip(procs, outs):
    assert p.returncode == 0, o[-2000:] + e[-3000:]
  a = [r["train/loss"] for r in train_rows(tmp_path / "single")]
  b = [r["train/loss"] for r in train_rows(wd)]
  assert len(a) == len(b) == 8
  np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4)
  # Only process 0 printed progress.
  assert "step 8/8" in outs[0][0] and "step 8/8" not in outs[1][0]


def _write_tasks(d, n=4):
  rng = np.random.default_rng(0)
  d.mkdir()
  for t in range(n):
    pairs = []
    for _ in range(5):
      g = rng.integers(0, 3, (3, 3))
      pairs.append({"input": g.tolist(), "output": np.where(g == 1, 2 + t, g).tolist()})
    (d / f"task{t}.json").write_text(json.dumps({"train": pairs[:4], "test": pairs[4:]}))


def test_bad_task_file_is_named_and_can_be_skipped(tmp_path):
  data = tmp_path / "tasks"
  _write_tasks(data)
  (data / "broken.json").write_text('{"train": [{"input": [[1, 2], [3]], "output": [[1]]}], '
                                    '"test": [{"input": [[1]], "output": [[1]]}]}')
  over = [f"--config.data.path={data}", "--config.data.max_tasks=10"]
  bad = run_exp("arc_trm", tmp_path / "a", *over, check=False)
  assert bad.returncode != 0
  assert "broken.json" in bad.stderr and "'broken'" in bad.stderr and "train[0].input" in bad.stderr
  assert not (tmp_path / "a" / "checkpoints").exists()
  ok = run_exp("arc_trm", tmp_path / "b", *over, "--config.data.skip_bad=True")
  assert "skipped 1 bad task" in ok.stderr + ok.stdout
  rows = [json.loads(l) for l in open(tmp_path / "b" / "metrics.jsonl")]
  assert any(r.get("eval/count", 0) > 0 for r in rows)  # the tasks' test pairs were scored


def test_steps_are_traced_under_the_run_mesh(tmp_path, monkeypatch):
  # Given the loop's train and eval steps, recording the mesh they are traced
  # under (what the TPU attention kernel reads to run per batch shard),
  import importlib  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  from experiments import loop  # pylint: disable=g-import-not-at-top
  from recur import train as rtrain  # pylint: disable=g-import-not-at-top
  seen = {}

  def recording(name, fn):
    def wrapped(*args, **kwargs):
      seen[name] = jax.sharding.get_abstract_mesh()
      return fn(*args, **kwargs)
    return wrapped

  monkeypatch.setattr(rtrain, "train_step", recording("train", rtrain.train_step))
  monkeypatch.setattr(rtrain, "eval_step", recording("eval", rtrain.eval_step))
  config = importlib.import_module("experiments.configs.sudoku_trm").get_config("smoke")
  config.update(steps=1, checkpoint_every=1, pictures=False)
  # when a run trains and evaluates,
  loop.run(config, str(tmp_path))
  # then both were traced under the run's data mesh, not outside any mesh.
  for name in ("train", "eval"):
    assert not seen[name].empty, name
    assert seen[name].axis_names == ("data",), name
