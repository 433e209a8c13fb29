"""The training-step benchmark: its analytic FLOP count and its JSON output."""
import json
import math
import os
import subprocess
import sys

import pytest

from experiments import bench
from recur import models

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

REQUIRED = ("case", "batch", "compile_s", "step_ms_median", "step_ms_p10",
            "step_ms_p90", "examples_per_s", "flops_per_example", "mfu",
            "peak_mem_gb", "device", "jax_version", "unroll", "remat",
            "attention_impl", "dtype")


def one_layer(model="trm", **kw):
  # S=4 positions (no puzzle prefix), D=8, 2 heads, SwiGLU width 256, vocab 12.
  base = dict(vocab_size=12, seq_len=4, hidden_size=8, num_heads=2,
              expansion=4.0, puzzle_emb_ndim=0, H_cycles=1, L_cycles=1,
              L_layers=1)
  if model == "hrm":
    base["H_layers"] = 1
  if model == "transformer":
    base["L_layers"] = 0
  base.update(kw)
  return models.make_config(model, **base)


# One attention block by hand: qkv 2*4*8*24 = 1536, scores 2*4*4*8 = 256,
# p.v 256, o 2*4*8*8 = 512, gate_up 2*4*8*512 = 32768, down 2*4*256*8 = 16384.
ATT_BLOCK = 1536 + 256 + 256 + 512 + 32768 + 16384          # 51712
# Heads: lm_head 2*4*8*12 = 768, Q head 2*8*2 = 32; differentiated, so x3.
HEADS = 3 * (768 + 32)


def test_flops_one_layer_trm_by_hand():
  # Given TRM with one layer, T=1, n=1: one L-call and one H-call, both
  # differentiated (x3), nothing without gradient.
  cfg = one_layer()
  # Then
  assert bench.block_flops(cfg) == ATT_BLOCK
  assert bench.flops_per_example(cfg) == 2 * 3 * ATT_BLOCK + HEADS == 312672


def test_flops_one_layer_hrm_by_hand():
  # Given HRM with one layer per level, T=2, n=2: 4 L-calls + 2 H-calls; only
  # the last of each is differentiated; the Q target reruns all 6 without grad.
  cfg = one_layer("hrm", H_cycles=2, L_cycles=2)
  fb = bench.flops_breakdown(cfg)
  # Then
  assert fb["grad"] == 2 * 3 * ATT_BLOCK
  assert fb["nograd"] == 4 * ATT_BLOCK
  assert fb["q_target"] == 6 * ATT_BLOCK + 32
  assert fb["total"] == 16 * ATT_BLOCK + HEADS + 32 == 829824


def test_flops_transformer_by_hand():
  # Given the transformer baseline with 3 blocks: one pass of all 3 per segment,
  # all differentiated (x3), and no Q-target segment.
  cfg = one_layer("transformer", H_layers=3)
  fb = bench.flops_breakdown(cfg)
  assert fb["grad"] == 3 * 3 * ATT_BLOCK and fb["nograd"] == fb["q_target"] == 0
  assert fb["total"] == 9 * ATT_BLOCK + HEADS


def test_flops_one_layer_mlp_t_by_hand():
  # Given TRM-MLP: token mixing over S=4 positions, width swiglu_width(4)=256:
  # gate_up 2*8*4*512 = 32768, down 2*8*256*4 = 16384; channel SwiGLU as above.
  cfg = one_layer(mlp_t=True, pos_encodings="none")
  assert bench.block_flops(cfg) == 32768 + 16384 + 32768 + 16384


def test_flops_paper_cases_match_reference():
  # REFERENCE.md: TRM-Att ARC ~398, TRM-MLP Sudoku ~43 GFLOP per example.
  trm = bench.case_config(bench.CASES["trm_att_arc"])
  mlp = bench.case_config(bench.CASES["trm_mlp_sudoku"])
  assert bench.flops_per_example(trm) / 1e9 == pytest.approx(398, rel=0.005)
  assert bench.flops_per_example(mlp) / 1e9 == pytest.approx(43, rel=0.01)
  # HRM's ~319 is the segment counted at 916 positions (no Q-target segment).
  hrm = bench.case_config(bench.CASES["hrm_arc"]).replace(puzzle_emb_len=16)
  assert bench.flops_breakdown(hrm)["segment"] / 1e9 == pytest.approx(319, rel=0.005)


def test_failing_case_becomes_error_record():
  # Given a compute dtype that does not exist
  opts = bench.Options(steps=1, warmup=0, dtype="float7")
  # When the case runs
  rec = bench.bench_one("tiny_trm_att", opts)
  # Then it reports the error instead of raising
  assert "error" in rec and "float7" in rec["error"]
  assert rec["case"] == "tiny_trm_att" and rec["dtype"] == "float7"


def test_cli_prints_one_json_line_per_case(tmp_path):
  # Given the CLI on the tiny TRM-Att case
  out = tmp_path / "bench.jsonl"
  cmd = [sys.executable, "-m", "experiments.bench", "--shapes=tiny",
         "--cases=tiny_trm_att", "--steps=2", "--warmup=1", f"--out={out}"]
  # When it runs
  # One device whatever another test module set XLA_FLAGS to.
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, env=env,
                        timeout=300, check=False)
  # Then it prints exactly one JSON line with every field, and appends it
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
  assert len(lines) == 1, proc.stdout
  rec = json.loads(lines[0])
  assert "error" not in rec, rec
  missing = [k for k in REQUIRED if k not in rec]
  assert not missing, missing
  assert rec["case"] == "tiny_trm_att" and rec["batch"] == 16
  assert rec["examples_per_s"] > 0 and rec["compile_s"] > 0
  assert rec["step_ms_p10"] <= rec["step_ms_median"] <= rec["step_ms_p90"]
  assert rec["examples_per_s"] == pytest.approx(
      rec["batch"] / rec["step_ms_median"] * 1e3, rel=1e-3)
  # By hand: S=40, D=64, I=256: block 2*40*64*(4*64+3*256) + 4*40*40*64 =
  # 5652480, level = 2 blocks; T=3, n=4: 10 no-grad + 3*5 grad level calls;
  # heads 3*(2*36*64*12 + 2*64*2) = 166656.
  cfg = bench.case_config(bench.CASES["tiny_trm_att"])
  assert 25 * 2 * 5652480 + 166656 == 282790656
  assert rec["flops_per_example"] == bench.flops_per_example(cfg) == 282790656
  assert rec["mfu"] == pytest.approx(
      rec["flops_per_example"] * rec["examples_per_s"] / 790e12, rel=1e-2,
      abs=1e-5)
  assert rec["unroll"] is True and rec["dtype"] == "bfloat16"
  assert math.isfinite(rec["loss"])
  assert json.loads(out.read_text().strip()) == rec
