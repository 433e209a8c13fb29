"""Bounded pictures and evaluation limits (issue 10 item 9): the picture step
reads and runs only `pictures_max_examples` test puzzles whatever the dataset
size, a long evaluation prints its progress, and a paper variant with a tiny
model and the documented limits finishes on a CPU with its pictures."""
import dataclasses
import importlib
import io
import os
import subprocess
import sys

import numpy as np
import pytest

from cpu_processes import cpu_env
from experiments import evaluation, loop, report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HUGE = 10**6   # test groups the counting source claims


class CountingSource:
  """A source that claims `groups` test groups (the first ones real) and
  counts what is read of its test split, per example or per batch of rows."""

  def __init__(self, base, groups: int):
    self._base, self._groups = base, groups
    self._real = base.num_groups("test")
    self.calls = self.rows = 0
    self.groups_read = set()

  def __getattr__(self, name):
    return getattr(self._base, name)

  def num_groups(self, split):
    return self._groups if split == "test" else self._base.num_groups(split)

  def num_versions(self, split, group):
    if split == "test":
      group %= self._real
    return self._base.num_versions(split, group)

  def example_counts(self, split):
    counts = self._base.example_counts(split)
    return np.resize(counts, self._groups) if split == "test" else counts

  def encode_rows(self, split, group, version, index, hashes):
    # The vectorised path (training's and evaluation's): one call per batch.
    if split == "test":
      self.calls += 1
      self.groups_read.update(int(g) for g in group)
      assert (group < self._real).all(), f"the picture step read test groups {group}"
      self.rows += len(group)
    return self._base.encode_rows(split, group, version, index, hashes)

  def examples(self, split, group, version, rng):
    if split == "test":
      self.calls += 1
      self.groups_read.add(group)
      assert group < self._real, f"the picture step read test group {group}"
    out = self._base.examples(split, group, version, rng)
    if split == "test":
      self.rows += len(out)
    return out


@pytest.fixture(scope="module")
def arc_run(tmp_path_factory):
  """The ARC smoke run (no evaluation, no pictures), as the loop returns it."""
  config = importlib.import_module("experiments.configs.arc_trm").get_config("smoke")
  config.update(steps=2, checkpoint_every=2, eval_at_end=False, pictures=False)
  return loop.run(config, str(tmp_path_factory.mktemp("limits_arc_trm")))


def _pictures(run, groups, limit, workdir):
  config = run.config.copy_and_resolve_references()
  config.pictures_max_examples = limit
  source = CountingSource(run.source, groups)
  r = dataclasses.replace(run, config=config, source=source, workdir=str(workdir))
  written = report.write_pictures(r)
  return source, written


def test_pictures_read_only_the_limit_whatever_the_dataset(arc_run, tmp_path):
  # Given the same run over its real test split and over one a million groups long.
  real = arc_run.source.num_groups("test")
  per_version = max(len(arc_run.source.examples("test", g, 0, np.random.default_rng(0)))
                    for g in range(real))
  limit = 3
  small, written = _pictures(arc_run, real, limit, tmp_path / "small")
  # When the pictures are drawn with pictures_max_examples=3,
  # Then both family pictures are written,
  assert {"examples_arc.png", "refinement_arc.png"} <= set(written)
  for name in ("examples_arc.png", "refinement_arc.png"):
    assert os.path.getsize(tmp_path / "small" / name) > 1000
  # only the rows of the first puzzles' version 0 were read (no more than the
  # limit plus the rest of the last version it started),
  assert limit <= small.rows < limit + per_version
  # and the dataset's size changes nothing of what is read.
  huge, _ = _pictures(arc_run, HUGE, limit, tmp_path / "huge")
  assert (huge.calls, huge.rows, huge.groups_read) == \
      (small.calls, small.rows, small.groups_read)


def test_pictures_steps_below_the_trained_steps(arc_run, tmp_path):
  # Given pictures_steps=1 on a model trained with halt_max_steps=2,
  config = arc_run.config.copy_and_resolve_references()
  config.update(pictures_steps=1, pictures_max_examples=2)
  assert arc_run.cfg.halt_max_steps == 2
  run = dataclasses.replace(arc_run, config=config, workdir=str(tmp_path))
  # the pictures are drawn from that one step.
  written = report.write_pictures(run)
  assert {"examples_arc.png", "refinement_arc.png"} <= set(written)


def test_sample_is_the_limit_of_distinct_puzzles(arc_run):
  # Given a limit of 2 (fewer than the test inputs of the smoke split).
  run = dataclasses.replace(arc_run, source=CountingSource(arc_run.source, HUGE))
  s = report.sample_predictions(run, num_steps=3, rows=2)
  meta, out = s["meta"], s["out"]
  # Then exactly 2 rows were run, both the un-augmented version of distinct
  # test inputs, every one of the 3 steps kept.
  assert len(meta["mask"]) == 2 and meta["mask"].all()
  assert (meta["version"] == 0).all()
  assert len({(int(g), int(i)) for g, i in zip(meta["group"], meta["index"])}) == 2
  assert out["preds_per_step"].shape[:2] == (3, 2)
  with pytest.raises(ValueError, match="pictures_max_examples"):
    report.sample_predictions(run, rows=0)


class FakeSource:
  """3 groups with 2, 1, 3 examples per version and 4, 1, 2 versions."""
  counts, versions = (2, 1, 3), (4, 1, 2)

  def num_groups(self, split):
    return 3

  def num_versions(self, split, group):
    return self.versions[group]

  def examples(self, split, group, version, rng):
    return [None] * self.counts[group]


def test_eval_batch_count_applies_the_limits():
  src = FakeSource()
  # 2*4 + 1*1 + 3*2 = 15 rows.
  assert evaluation.eval_batch_count(src, 4) == 4
  assert evaluation.eval_batch_count(src, 5) == 3
  # max_versions=1: 2 + 1 + 3 = 6 rows.
  assert evaluation.eval_batch_count(src, 4, max_versions=1) == 2
  assert evaluation.eval_batch_count(src, 4, max_batches=3) == 3
  assert evaluation.eval_batch_count(src, 4, max_batches=9) == 4
  # Too many groups to count without `example_counts`: no total.
  assert evaluation.eval_batch_count(src, 4, max_groups=2) is None


def test_progress_lines():
  out = io.StringIO()
  p = evaluation.Progress(total=4, every_s=1e-9, out=out)
  for _ in range(2):
    p.update(8)
  p.done()
  lines = out.getvalue().splitlines()
  assert lines[0].startswith("eval: 1/4 batches (25%), ") and "ETA " in lines[0]
  assert lines[1].startswith("eval: 2/4 batches (50%), ")
  assert lines[2].startswith("eval: 2 batches, 16 examples in ")
  quiet = io.StringIO()
  p = evaluation.Progress(total=4, every_s=0, out=quiet)
  p.update(8)
  p.done()
  assert quiet.getvalue() == ""


# The command docs/training.md gives ("Paper variants on a CPU"), with a
# progress line every evaluation batch so the test sees one.
PAPER_ON_CPU = [
    "--config=experiments/configs/arc_trm.py:paper",
    "--config.steps=2", "--config.batch_size=8", "--config.checkpoint_every=0",
    "--config.data.eval_max_batches=1", "--config.data.eval_batch_size=8",
    "--config.model.hidden_size=16", "--config.model.num_heads=2",
    "--config.model.puzzle_emb_ndim=16", "--config.model.puzzle_emb_len=1",
    "--config.model.H_cycles=1", "--config.model.L_cycles=1",
    "--config.model.halt_max_steps=2", "--config.model.compute_dtype=float32"]


def test_docs_give_the_command():
  with open(os.path.join(ROOT, "docs", "training.md")) as f:
    text = " ".join(f.read().replace("\\\n", " ").split())
  assert " ".join(PAPER_ON_CPU) in text


def test_arc_paper_variant_finishes_on_a_cpu_with_pictures(tmp_path):
  env = cpu_env()
  p = subprocess.run(
      [sys.executable, "-m", "experiments.arc_trm", *PAPER_ON_CPU,
       f"--workdir={tmp_path}", "--config.eval.progress_every_s=1e-9"],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert p.returncode == 0, p.stderr[-3000:]
  assert "eval: 1/1 batches (100%)" in p.stdout
  assert "| pass@2" in p.stdout
  for name in ("curves.png", "accuracy_vs_steps.png", "examples_arc.png",
               "refinement_arc.png"):
    assert os.path.getsize(tmp_path / name) > 1000, name
