"""The README's promises: the quickstart block and the tested JAX example."""
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _readme():
  with open(os.path.join(ROOT, "README.md")) as f:
    return f.read()


def test_quickstart_has_exactly_two_lines():
  text = _readme()
  block = re.search(r"^## Quickstart\n\n```bash\n(.*?)```", text, re.S | re.M)
  assert block, "README needs a Quickstart heading followed by a fenced block"
  lines = [l for l in block.group(1).splitlines() if l.strip()]
  assert len(lines) == 2
  assert "experiments.arc_trm" in lines[0] and "arc_trm.py:demo" in lines[0]
  assert lines[0].startswith("pip install") and lines[1].startswith("pip install")
  assert "pytest" in lines[1]
  # .ci/run runs that exact second line.
  with open(os.path.join(ROOT, ".ci", "run")) as f:
    assert "sed -n 2p" in f.read()


def test_python_example_runs():
  text = _readme()
  code = re.search(r"^## Using the cores.*?```python\n(.*?)```", text, re.S | re.M).group(1)
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=ROOT, check=False, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.startswith("(8, 16, 12)")


def test_flax_example_runs():
  text = _readme()
  code = re.search(r"^## Using recur from Flax.*?```python\n(.*?)```", text,
                   re.S | re.M).group(1)
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=ROOT, check=False, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.strip().endswith("(8, 16, 10)")


def test_tfds_commands_run(tmp_path):
  # The section's shell commands (but the pip line) and its Python reader, with
  # /tmp/recur_tfds* moved into a temporary directory.
  text = _readme()
  section = re.search(r"^## Datasets with TFDS\n(.*?)^## ", text, re.S | re.M).group(1)
  shell = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
  code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
  lines = [l for l in shell.splitlines() if l.strip()]
  assert lines[0].startswith("pip install") and "[tfds]" in lines[0]
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  for line in lines[1:] + [f"{sys.executable} -c '{code}'"]:
    line = line.replace("/tmp/recur_tfds", str(tmp_path / "recur_tfds"))
    line = re.sub(r"^python ", f"{sys.executable} ", line)
    out = subprocess.run(line, shell=True, capture_output=True, text=True, cwd=ROOT,
                         env=env, check=False, timeout=600)
    assert out.returncode == 0, line + "\n" + out.stdout[-2000:] + out.stderr[-2000:]
  assert out.stdout.strip().endswith("(8, 16)")
  with open(tmp_path / "recur_tfds_run" / "metrics.jsonl") as f:
    assert any('"train/loss"' in l for l in f)
  assert (tmp_path / "recur_tfds" / "maze8" / "dataset_info.json").is_file()
