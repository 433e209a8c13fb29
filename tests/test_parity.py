"""Golden parity against the PyTorch reference fixtures (tests/fixtures/reference).

Given the reference's weights and the batches it saw, when we run the same ACT
steps in float32, then every per-step output, carry, loss, metric and gradient
agrees within 1e-4 (5e-4 for gradients) and every discrete decision is equal.
"""
import os
import subprocess
import sys

import pytest

from recur import parity

HERE = os.path.dirname(__file__)
FIXTURES = os.path.join(HERE, "fixtures", "reference")
CASES = ["trm_att", "trm_mlp", "hrm"]


@pytest.mark.parametrize("case", CASES)
def test_reference_parity(case):
  report = parity.run_parity(os.path.join(FIXTURES, case + ".npz"))
  print(report.format())
  assert report.ok, report.format()
  # Every quantity the fixture holds was actually compared.
  for q in ("logits", "q_halt_logits", "q_continue_logits", "z_H", "z_L", "loss",
            "grad/dense", "grad/puzzle_emb_rows", "eval/logits@step0",
            "metric/lm_loss", "metric/count", "halted", "current_data"):
    assert q in report.worst, q
  if case == "hrm":
    assert "target_q_continue" in report.worst
    assert "metric/q_continue_loss" in report.worst


def test_parity_detects_a_wrong_weight(tmp_path):
  # Given a fixture whose lm_head was perturbed, the tool reports a failure.
  import numpy as np
  src = os.path.join(FIXTURES, "hrm.npz")
  data = dict(np.load(src))
  key = "param/model.inner.lm_head.weight"
  data[key] = data[key] * 1.01
  np.savez(tmp_path / "bad.npz", **data)
  with open(os.path.join(FIXTURES, "hrm.json")) as f:
    (tmp_path / "bad.json").write_text(f.read())
  report = parity.run_parity(str(tmp_path / "bad.npz"))
  assert not report.ok
  assert "logits" in report.failures


def test_cli_exit_status(tmp_path):
  out = subprocess.run([sys.executable, "-m", "recur.parity",
                        os.path.join(FIXTURES, "hrm.npz")],
                       capture_output=True, text=True, check=False)
  assert out.returncode == 0, out.stdout + out.stderr
  assert "PASS" in out.stdout and "grad/dense" in out.stdout
