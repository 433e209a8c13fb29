"""A workdir in a bucket: every output lands in gs:// (a local GCS emulator),
a SIGKILLed run resumes from it to identical metrics, nothing is written to a
local folder named 'gs:'. Plus the chunked metrics layout on its own."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gcs_emulator  # pylint: disable=g-import-not-at-top,wrong-import-position

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

needs_emulator = pytest.mark.skipif(not gcs_emulator.available(),
                                    reason="needs the .[gcp] and .[test] extras")


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
  """The emulator's client environment, also set in this process."""
  log = tmp_path_factory.mktemp("gcs") / "emulator.log"
  proc, env = gcs_emulator.start(str(log))
  saved = {k: os.environ.get(k) for k in env}
  os.environ.update(env)
  try:
    yield env
  finally:
    proc.terminate()
    proc.wait(timeout=10)
    for k, v in saved.items():
      if v is None:
        os.environ.pop(k, None)
      else:
        os.environ[k] = v


def _env(gcs_env, cache):
  env = dict(os.environ)
  env.update(gcs_env)
  env.update(XLA_FLAGS="--xla_force_host_platform_device_count=1", JAX_PLATFORMS="cpu",
             RECUR_CACHE=str(cache))
  return env


def _cmd(workdir, *over):
  return [sys.executable, "-m", "experiments.sudoku_trm",
          f"--config={ROOT}/experiments/configs/sudoku_trm.py:smoke", f"--workdir={workdir}",
          *over]


def _train(rows):
  return [{k: v for k, v in r.items() if k.startswith("train/") or k == "step"}
          for r in rows if "train/loss" in r]


def test_chunked_metrics_drop_rows_after_resume_step(tmp_path):
  from experiments import metrics_log
  # Given 10 rows in chunks of 3 (4 chunks)...
  log = metrics_log.ChunkedJsonlLog(str(tmp_path), resume_step=0, chunk_rows=3)
  for s in range(1, 11):
    log.write({"step": s, "x": s * 1.5})
  names = sorted(os.listdir(tmp_path / "metrics"))
  assert names == ["000000.jsonl", "000001.jsonl", "000002.jsonl", "000003.jsonl"]
  assert [r["step"] for r in metrics_log.read_metrics(str(tmp_path))] == list(range(1, 11))
  # ...a resume from step 4 drops steps 5..10 (chunks 2 and 3 deleted, chunk 1
  # cut to one row) and writing on continues in chunk 1.
  log = metrics_log.ChunkedJsonlLog(str(tmp_path), resume_step=4, chunk_rows=3)
  assert sorted(os.listdir(tmp_path / "metrics")) == ["000000.jsonl", "000001.jsonl"]
  for s in range(5, 8):
    log.write({"step": s, "x": s * 1.5})
  rows = metrics_log.read_metrics(str(tmp_path))
  assert rows == [{"step": s, "x": s * 1.5} for s in range(1, 8)]
  assert len((tmp_path / "metrics" / "000001.jsonl").read_text().splitlines()) == 3
  assert (tmp_path / "metrics" / "000002.jsonl").read_text().count("\n") == 1


def test_torn_last_line_is_skipped_and_repaired(tmp_path):
  from experiments import metrics_log
  (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n{"step": 2}\n{"ste')
  assert [r["step"] for r in metrics_log.read_metrics(str(tmp_path))] == [1, 2]
  log = metrics_log.JsonlLog(str(tmp_path), resume_step=2)
  log.write({"step": 3})
  log.close()
  assert (tmp_path / "metrics.jsonl").read_text() == \
      '{"step": 1}\n{"step": 2}\n{"step": 3}\n'


@needs_emulator
def test_gs_workdir_sigkill_resume_matches_local_run(gcs, tmp_path):
  from etils import epath
  from experiments import metrics_log
  over = ["--config.steps=30", "--config.checkpoint_every=10", "--config.log_every=1",
          "--config.eval_at_end=False", "--config.async_checkpointing=False",
          "--config.model.hidden_size=128", "--config.model.H_cycles=3",
          "--config.model.L_cycles=4"]
  env = _env(gcs, tmp_path / "cache")
  cwd = tmp_path / "cwd"   # where a mistaken local 'gs:' folder would appear
  cwd.mkdir()
  env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
  ref = tmp_path / "ref"
  out = subprocess.run(_cmd(ref, *over), cwd=cwd, env=env, capture_output=True,
                       text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]

  # Given a gs:// run SIGKILLed after its second checkpoint...
  wd = f"gs://{gcs_emulator.BUCKET}/run"
  log = open(tmp_path / "killed.log", "w")  # pylint: disable=consider-using-with
  proc = subprocess.Popen(_cmd(wd, *over), cwd=cwd, env=env, stdout=log,
                          stderr=subprocess.STDOUT)
  done = epath.Path(wd) / "checkpoints" / "20" / "commit_success.txt"
  deadline = time.time() + 300
  while proc.poll() is None and time.time() < deadline and not done.exists():
    time.sleep(0.05)
  assert proc.poll() is None, ("run finished before it could be killed:\n" +
                               (tmp_path / "killed.log").read_text()[-3000:])
  os.kill(proc.pid, signal.SIGKILL)
  proc.wait()
  assert len(_train(metrics_log.read_metrics(wd))) < 30
  # ...the same command resumes from the bucket and ends with the same rows.
  out = subprocess.run(_cmd(wd, *over), cwd=cwd, env=env, capture_output=True,
                       text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  assert "Resumed from gs://" in out.stdout
  rows = _train(metrics_log.read_metrics(wd))
  assert len(rows) == 30
  assert rows == _train(metrics_log.read_metrics(str(ref)))
  # Everything landed in the bucket, nothing in a local 'gs:' folder.
  names = {p.name for p in epath.Path(wd).iterdir()}
  assert {"checkpoints", "metrics", "tensorboard", "config.json", "model.json",
          "curves.png"} <= names, names
  assert any(p.name.startswith("events.out.tfevents")
             for p in (epath.Path(wd) / "tensorboard").iterdir())
  steps = sorted(int(p.name) for p in (epath.Path(wd) / "checkpoints").iterdir()
                 if p.name.isdigit())
  assert steps == [10, 20, 30]
  assert not os.path.exists(cwd / "gs:") and not os.path.exists(os.path.join(ROOT, "gs:"))


@needs_emulator
def test_paths_on_the_emulator(gcs, tmp_path, monkeypatch):
  from experiments import paths
  monkeypatch.setenv("RECUR_CACHE", str(tmp_path / "cache"))
  base = f"gs://{gcs_emulator.BUCKET}/paths"
  assert paths.normalize(base + "/") == base
  paths.write_json_atomic(base + "/data/a.json", {"x": 1})
  paths.write_text_atomic(base + "/data/sub/b.csv", "q,a\n1,2\n")
  assert json.loads(paths.read_text(base + "/data/a.json")) == {"x": 1}
  with paths.local_output(base + "/out/c.txt") as local:
    assert not local.startswith("gs:")
    with open(local, "w") as f:
      f.write("c")
  assert paths.read_text(base + "/out/c.txt") == "c"
  # A data directory URL is downloaded once into the cache.
  local = paths.local_copy(base + "/data")
  assert local.startswith(str(tmp_path / "cache"))
  with open(os.path.join(local, "sub", "b.csv")) as f:
    assert f.read() == "q,a\n1,2\n"
  assert paths.local_copy(base + "/data") == local
  # Rewritten in the bucket (a dataset rebuilt in place), it is fetched again.
  paths.write_text_atomic(base + "/data/sub/b.csv", "q,a\n1,2\n3,4\n")
  assert paths.local_copy(base + "/data") == local
  with open(os.path.join(local, "sub", "b.csv")) as f:
    assert f.read() == "q,a\n1,2\n3,4\n"
  with pytest.raises(FileNotFoundError, match="paths/nope"):
    paths.local_copy(base + "/nope")


@needs_emulator
def test_tfds_datasets_in_a_bucket(gcs, tmp_path, monkeypatch):
  # array_record writes and reads local files only (without TensorFlow), so:
  # Given a builder's smoke built locally and published to the bucket, and a
  # source prepared straight to the bucket (built locally, then uploaded),
  from etils import epath
  from experiments import loop
  from experiments.configs import sudoku_trm
  from recur.data import make_source, prepared
  monkeypatch.setenv("RECUR_CACHE", str(tmp_path / "cache"))
  bucket = f"gs://{gcs_emulator.BUCKET}"
  env = _env(gcs, tmp_path / "cache")

  def build(*args):
    return subprocess.run([sys.executable, "-m", "recur.tfds", "build",
                           "recur_sudoku/smoke", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)

  out = build(f"--data_dir={tmp_path / 'local'}", f"--publish_dir={bucket}/tfds")
  assert out.returncode == 0, out.stderr[-3000:]
  src = make_source("sudoku", box=(2, 2), num_train=8, num_test=4, num_aug=3,
                    num_blanks=6, seed=1)
  path = prepared.prepare(src, f"{bucket}/prep/sx")
  assert (epath.Path(path) / "dataset_info.json").exists()
  # when a run's config names them, then it reads them (copied once into the
  # cache) with the examples of the original source;
  c = sudoku_trm.get_config("smoke")
  c.data.update(source="tfds", name="recur_sudoku/smoke", data_dir=f"{bucket}/tfds")
  published = loop.build_source(c)
  assert published.path.startswith(str(tmp_path / "cache"))
  assert published.box == (2, 2) and published.num_groups("train") == 32
  c = sudoku_trm.get_config("smoke")
  c.data.update(source="tfds", path=path)
  stored = loop.build_source(c)
  for v in range(4):
    np.testing.assert_array_equal(stored.examples("train", 1, v)[0].inputs,
                                  src.examples("train", 1, v, None)[0].inputs)
  # and building into the bucket directly is refused, naming --publish_dir.
  out = build(f"--data_dir={bucket}/direct")
  assert out.returncode != 0 and "--publish_dir" in out.stderr
