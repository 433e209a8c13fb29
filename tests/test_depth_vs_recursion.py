"""Tests for experiments.depth_vs_recursion: the smoke variant end to end, the
resume/skip of finished runs, and matched parameter counts of every variant."""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

from absl.testing import absltest
from absl.testing import parameterized
import jax

from experiments import depth_vs_recursion as dvr
from experiments import loop
from experiments.configs import depth_vs_recursion as configs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class SmokeTest(absltest.TestCase):

  def test_smoke_variant_writes_table_and_plots(self):
    # Given the smoke variant (3 models x 2 seeds x sizes 2..4, a few steps)
    workdir = tempfile.mkdtemp(prefix="dvr_smoke_")
    self.addCleanup(shutil.rmtree, workdir, ignore_errors=True)
    cmd = [sys.executable, "-m", "experiments.depth_vs_recursion",
           "--config=experiments/configs/depth_vs_recursion.py:smoke",
           f"--workdir={workdir}"]
    # When it runs
    t0 = time.time()
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    self.assertEqual(out.returncode, 0, out.stderr[-3000:])
    first = time.time() - t0
    # Then results.md has every model and size with its seed count, and the PNGs
    with open(os.path.join(workdir, "results.md")) as f:
      md = f.read()
    config = configs.get_config("smoke")
    sizes = range(config.data.n_min, config.data.n_max + 1)
    header = next(l for l in md.splitlines() if l.startswith("| arm | seeds | n="))
    self.assertEqual(re.findall(r"n=(\d+)", header), [str(n) for n in sizes])
    section = md.split("## Exact accuracy vs problem size")[1].split("##")[0]
    for arm in config.arms:
      row = next(l for l in section.splitlines() if l.startswith(f"| {arm} |"))
      cells = [c.strip() for c in row.strip("|").split("|")]
      self.assertEqual(cells[1], str(len(config.seeds)), row)   # seed count
      self.assertLen(cells, 2 + len(sizes) + 1)                  # every size + all
    for png in ("acc_vs_size.png", "acc_vs_steps.png", "acc_vs_depth.png"):
      path = os.path.join(workdir, png)
      self.assertTrue(os.path.exists(path), png)
      with open(path, "rb") as f:
        self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
    for arm in config.arms:
      for seed in config.seeds:
        self.assertTrue(os.path.exists(
            os.path.join(workdir, "runs", f"{arm}_s{seed}", dvr.DONE)))
    # And a restart on the same workdir skips every finished run
    t0 = time.time()
    again = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    self.assertEqual(again.returncode, 0, again.stderr[-3000:])
    self.assertNotIn("== ", again.stdout)
    self.assertLess(time.time() - t0, first)


class MatchedParamsTest(parameterized.TestCase):

  @parameterized.parameters("smoke", "quick", "quick_state", "full", "ablation_quick", "ablation_gpu")
  def test_matched_arms_within_tolerance(self, variant):
    # Given a variant's arms and its data
    config = configs.get_config(variant)
    info = loop.build_source(config).info
    # When the widths are matched
    plan = dvr.plan_arms(config, info)
    # Then every matched arm is within the stated tolerance of its reference,
    # counted from the real initialised parameter tree
    matched = [a for a in plan.values() if a["matched_to"]]
    self.assertNotEmpty(matched)
    for arm in plan.values():
      ref = plan[arm["matched_to"]]["params"] if arm["matched_to"] else arm["params"]
      self.assertLessEqual(abs(arm["params"] - ref), config.param_tolerance * ref)
      tree = arm["cfg"].init(jax.random.PRNGKey(0)) if variant == "smoke" else None
      if tree is not None:
        n = sum(x.size for x in jax.tree.leaves(tree["net"])) + tree["puzzle_emb"].size
        self.assertEqual(n, arm["params"])
    # And TRM and HRM have the same parameters (2 layers vs 1+1 layers, same width)
    if "trm" in plan and "hrm" in plan:
      self.assertEqual(plan["trm"]["params"], plan["hrm"]["params"])

  def test_unmatchable_tolerance_raises(self):
    config = configs.get_config("smoke")
    config.param_tolerance = 0.0
    info = loop.build_source(config).info
    with self.assertRaisesRegex(ValueError, "no width"):
      dvr.plan_arms(config, info)


if __name__ == "__main__":
  absltest.main()
