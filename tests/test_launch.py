"""Dry-run tests of the launch scripts: the commands they would run."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCH = os.path.join(REPO_ROOT, "launch")

pytestmark = pytest.mark.skipif(shutil.which("bash") is None,
                                reason="needs bash")


def _run(script, *args):
  # Another test module may have set XLA_FLAGS for its own fake devices.
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  return subprocess.run(["bash", os.path.join(LAUNCH, script), *args],
                        capture_output=True, text=True, timeout=30,
                        check=False, env=env)


@pytest.mark.parametrize("script", ["tpu_vm.sh", "gpu.sh", "local.sh"])
def test_scripts_parse_and_print_help(script):
  assert subprocess.run(["bash", "-n", os.path.join(LAUNCH, script)],
                        check=False).returncode == 0
  proc = _run(script, "--help")
  assert proc.returncode == 0
  assert "--dry-run" in proc.stdout and "--experiment" in proc.stdout


@pytest.mark.parametrize("script", ["tpu_vm.sh", "gpu.sh", "local.sh"])
def test_scripts_reject_unknown_experiment(script):
  tpu_only = ["--name=x", "--zone=z"] if script == "tpu_vm.sh" else []
  proc = _run(script, *tpu_only, "--experiment=nope", "--workdir=/tmp/w",
              "--dry-run")
  assert proc.returncode == 2
  assert "unknown experiment 'nope'" in proc.stderr


def test_tpu_vm_dry_run():
  # Given a v4-32 pod run of arc_trm with one forwarded flag.
  proc = _run("tpu_vm.sh", "--name=trm-arc", "--zone=us-central2-b",
              "--accelerator=v4-32", "--project=proj", "--experiment=arc_trm",
              "--variant=paper", "--workdir=gs://bucket/run", "--dry-run",
              "--", "--config.seed=7")
  assert proc.returncode == 0, proc.stderr
  lines = proc.stdout.splitlines()
  # Then it describes, creates, copies, installs, starts on all, tails worker 0.
  assert any(l.startswith("gcloud compute tpus tpu-vm describe trm-arc "
                          "--zone=us-central2-b --project=proj") for l in lines)
  create = [l for l in lines if "queued-resources create" in l]
  assert create == ["gcloud compute tpus queued-resources create trm-arc --node-id=trm-arc "
                    "--zone=us-central2-b --project=proj --accelerator-type=v4-32 "
                    "--runtime-version=tpu-ubuntu2204-base"]
  assert "tpu-vm create" not in proc.stdout
  assert ("gcloud compute tpus queued-resources describe trm-arc --zone=us-central2-b "
          "--project=proj '--format=value(state.state)'") in lines
  assert any("tpu-vm scp" in l and "--worker=all" in l for l in lines)
  install = [l for l in lines if "pip install" in l]
  assert len(install) == 1 and "--worker=all" in install[0]
  assert "-e '\\''.[tpu]'\\''" in install[0]
  start = [l for l in lines if "-m experiments.arc_trm" in l]
  assert len(start) == 1
  assert "--worker=all" in start[0]
  assert ("-m experiments.arc_trm --config=experiments/configs/arc_trm.py:paper"
          " --workdir=gs://bucket/run --config.seed=7") in start[0]
  assert "nohup" in start[0] and "$(hostname).log" in start[0]
  assert lines[-1].startswith("gcloud compute tpus tpu-vm ssh trm-arc "
                              "--worker=0")
  assert "tail" in lines[-1]


@pytest.mark.parametrize("accelerator,runtime", [
    ("v4-8", "tpu-ubuntu2204-base"), ("v5litepod-16", "v2-alpha-tpuv5-lite"),
    ("v5p-32", "v2-alpha-tpuv5"), ("v6e-8", "v2-alpha-tpuv6e")])
@pytest.mark.parametrize("spot", [False, True])
def test_tpu_vm_runtime_per_generation_and_spot(accelerator, runtime, spot):
  proc = _run("tpu_vm.sh", "--name=n", "--zone=z", f"--accelerator={accelerator}",
              "--experiment=sudoku_trm", "--workdir=gs://b/s", "--no_tail", "--dry-run",
              *(["--spot"] if spot else []))
  assert proc.returncode == 0, proc.stderr
  create = [l for l in proc.stdout.splitlines() if "queued-resources create" in l]
  assert create == ["gcloud compute tpus queued-resources create n --node-id=n --zone=z "
                    f"--accelerator-type={accelerator} --runtime-version={runtime}"
                    + (" --spot" if spot else "")]


def test_tpu_vm_direct_create_version_override_and_unknown_generation():
  proc = _run("tpu_vm.sh", "--name=n", "--zone=z", "--accelerator=v6e-8",
              "--version=v2-alpha-tpuv6e-custom", "--direct_create", "--spot",
              "--experiment=sudoku_trm", "--workdir=gs://b/s", "--no_tail", "--dry-run")
  assert proc.returncode == 0, proc.stderr
  assert ("gcloud compute tpus tpu-vm create n --zone=z --accelerator-type=v6e-8 "
          "--version=v2-alpha-tpuv6e-custom --spot") in proc.stdout.splitlines()
  assert "queued-resources" not in proc.stdout
  bad = _run("tpu_vm.sh", "--name=n", "--zone=z", "--accelerator=v9-8",
             "--experiment=sudoku_trm", "--workdir=gs://b/s", "--dry-run")
  assert bad.returncode == 2 and "no default runtime for accelerator 'v9-8'" in bad.stderr


def test_tpu_vm_delete_and_stop():
  proc = _run("tpu_vm.sh", "--name=n", "--zone=z", "--project=p", "--delete", "--dry-run")
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.splitlines() == [
      "gcloud compute tpus queued-resources delete n --zone=z --project=p --force --quiet"]
  stop = _run("tpu_vm.sh", "--name=n", "--zone=z", "--stop", "--dry-run")
  assert stop.returncode == 0, stop.stderr
  # SIGTERM to the run's process group: the run checkpoints and exits 0.
  assert "kill -- -" in stop.stdout and "--worker=all" in stop.stdout


def test_tpu_vm_dry_run_git_clone_and_skip_create():
  proc = _run("tpu_vm.sh", "--name=n", "--zone=z", "--experiment=sudoku_trm",
              "--workdir=gs://b/s", "--repo_url=https://example.com/recur.git",
              "--branch=dev", "--skip_create", "--no_tail", "--dry-run")
  assert proc.returncode == 0, proc.stderr
  assert "tpu-vm create" not in proc.stdout
  assert "tpu-vm scp" not in proc.stdout
  assert ("git clone --depth=1 --branch=dev https://example.com/recur.git"
          in proc.stdout)
  # No variant: the config path has no ':VARIANT'.
  assert ("--config=experiments/configs/sudoku_trm.py --workdir=gs://b/s"
          in proc.stdout)
  assert "tail" not in proc.stdout


def test_gpu_dry_run_multi_host(tmp_path):
  venv = str(tmp_path / "venv")
  proc = _run("gpu.sh", "--experiment=maze_trm", "--variant=paper",
              "--workdir=/runs/maze", f"--venv={venv}", "--cuda=13",
              "--coordinator_address=10.0.0.1:1234", "--num_processes=2",
              "--process_id=1", "--dry-run", "--", "--config.seed=3")
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.splitlines() == [
      f"python3 -m venv {venv}",
      f"{venv}/bin/pip install --upgrade pip",
      f"{venv}/bin/pip install -e '.[cuda13]'",
      f"{venv}/bin/python -m experiments.maze_trm"
      " --config=experiments/configs/maze_trm.py:paper --workdir=/runs/maze"
      " --coordinator_address=10.0.0.1:1234 --num_processes=2 --process_id=1"
      " --config.seed=3",
  ]
  assert not os.path.exists(venv)  # dry-run created nothing


def test_gpu_rejects_partial_multi_host_flags():
  proc = _run("gpu.sh", "--experiment=arc_hrm", "--workdir=/w",
              "--num_processes=2", "--dry-run")
  assert proc.returncode == 2
  assert "go together" in proc.stderr


def test_local_dry_run_processes_and_fake_devices(tmp_path):
  venv = str(tmp_path / "venv")
  proc = _run("local.sh", "--experiment=depth_vs_recursion", "--variant=smoke",
              f"--workdir={tmp_path}/w", f"--venv={venv}", "--fake_devices=4",
              "--processes=2", "--port=4000", "--dry-run")
  assert proc.returncode == 0, proc.stderr
  lines = proc.stdout.splitlines()
  assert f"{venv}/bin/pip install -e ." in lines
  runs = [l for l in lines if "-m experiments.depth_vs_recursion" in l]
  assert len(runs) == 2
  for i, line in enumerate(runs):
    assert line.startswith(
        "env JAX_PLATFORMS=cpu "
        "XLA_FLAGS=--xla_force_host_platform_device_count=4 ")
    assert ("--config=experiments/configs/depth_vs_recursion.py:smoke"
            f" --workdir={tmp_path}/w --coordinator_address=localhost:4000"
            f" --num_processes=2 --process_id={i}") in line
    assert line.endswith(f"> {tmp_path}/w/logs/process_{i}.log 2>&1 &")
  assert lines[-1] == "wait"


def test_local_dry_run_single_process_existing_venv(tmp_path):
  # Given an existing venv: no venv creation; --skip_install: no pip.
  venv = tmp_path / "venv"
  (venv / "bin").mkdir(parents=True)
  (venv / "bin" / "python").touch(mode=0o755)
  proc = _run("local.sh", "--experiment=sudoku_trm", "--workdir=/tmp/w",
              f"--venv={venv}", "--skip_install", "--dry-run")
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.splitlines() == [
      f"env JAX_PLATFORMS=cpu {venv}/bin/python -m experiments.sudoku_trm"
      " --config=experiments/configs/sudoku_trm.py --workdir=/tmp/w"]
