r"""Throughput of the jitted ACT training step: `python -m experiments.bench`.

Times `recur.train.train_step` (one supervision segment of the whole batch:
refill, forward, backward, AdamATan2, sparse sign-SGD on the puzzle-embedding
rows, EMA) jitted exactly as a real run jits it: `NamedSharding`s over
`recur.sharding.make_mesh()`, `donate_argnums=0`, the state flowing from step to
step. Data are random tokens of the right shapes (one batch, placed on the
devices once, so host input is not timed). Prints ONE JSON line per case.

  python -m experiments.bench                       # tiny shapes on a CPU
  python -m experiments.bench --shapes=paper        # the three paper cases (H200)
  python -m experiments.bench --pipeline            # host input, per dataset
  python -m experiments.bench --shapes=paper --cases=trm_att_arc \
      --attention_impl=cudnn --unroll=1 --remat=dots --out=/tmp/bench.jsonl

Cases (`--shapes=paper`): `trm_att_arc` (TRM-Att, seq 900 + 16 prefix, hidden
512, 8 heads, H3 L4, 2 layers, 192 rows per device), `trm_mlp_sudoku` (TRM-MLP,
seq 81 + 16, H3 L6, pos none, 768 per device), `hrm_arc` (HRM 4+4 layers, H2 L2,
seq 900 + 1, 192 per device); `--shapes=tiny`: `tiny_trm_att`, `tiny_trm_mlp`,
`tiny_hrm` (hidden 64, seq 36, 16 rows), seconds on a CPU.

Fields: `case`, `batch` (global rows), `batch_per_device`, `compile_s` (lower +
compile), `step_ms_median/p10/p90/mean` (wall time of one step around
`jax.block_until_ready`), `examples_per_s` (batch / median step; one example =
one supervision segment of one row), `examples_per_s_per_device`,
`flops_per_example`, `mfu`, `peak_mem_gb` (the device's peak_bytes_in_use, null
where not reported, e.g. CPU; it is a process-wide peak, hence `--isolate`),
`compiled_temp_gb` / `compiled_args_gb` (XLA's buffer assignment),
`xla_flops_per_example` (XLA's own cost analysis, for cross-checking),
`device`, `jax_version`, the knobs (`unroll`, `remat`, `attention_impl`,
`dtype`), `params` (dense parameter count), `loss` (last step, finite?), and for
paper cases the reference's numbers (`ref_examples_per_s`, `ref_gflops_per_example`,
`speedup_vs_ref`). A failing case (OOM, compile error) prints a line with an
`error` field instead.

FLOPs per example (`flops_per_example`, analytic, matmuls only, 2 FLOPs per
multiply-add). One block application on S positions (prefix included), width
D, SwiGLU width I, token-mixing width I_t (TRM-MLP):
  attention  2*S*D*3D (qkv) + 2*S*S*D (q.k scores) + 2*S*S*D (p.v) + 2*S*D*D (o)
  mlp_t      2*D*S*2I_t + 2*D*I_t*S       (SwiGLU across the sequence axis)
  channel    2*S*D*2I + 2*S*I*D           (gate_up, down)
A level call is layers x block. Per segment, TRM (grad_mode full) makes T*n
L-calls and T H-calls, the last n+1 of them differentiated; HRM (one_step) makes
the same calls with only the very last L- and H-call differentiated; the
transformer makes one differentiated call of H_layers blocks. The block counts
come from the model (`cfg.layer_calls()`). The
differentiated calls cost 3x (forward + backward w.r.t. inputs and weights), the
no-grad ones 1x; the heads (lm_head on the seq_len token positions, Q head) are
differentiated (3x). HRM's training ACT also runs one more no-grad segment for
the Q-learning target (`q_target`): all its level calls at 1x (its lm_head is
dead code). Rematerialised recomputation is not counted, so `mfu` is model-FLOPs
utilisation. Paper cases: TRM-Att ARC 398.1 GFLOP, TRM-MLP Sudoku 42.7 GFLOP
(REFERENCE.md: ~398, ~43); HRM ARC 312.2 GFLOP for the segment + 187.3 for the
Q target = 499.5, while REFERENCE.md's ~319 is the segment counted at 916
positions (318.5; a 16-position prefix, HRM's is 1) without the Q target.

`mfu = flops_per_example * examples_per_s / (num_devices * peak_tflops * 1e12)`;
`--peak_tflops` is per device, default 790: the H200's measured dense bf16
matmul rate in REFERENCE.md (not the 989 datasheet number).
"""
from __future__ import annotations

import dataclasses
import functools
import gc
import json
import os
import statistics
import subprocess
import sys
import time
import traceback
from typing import Any

from absl import app
from absl import flags
import jax
import numpy as np

from experiments import cli
from recur import core, layers, models, sharding, train

FLAGS = flags.FLAGS
flags.DEFINE_enum("shapes", None, ["tiny", "paper"],
                  "Case set; default tiny on a CPU, paper on an accelerator.")
flags.DEFINE_list("cases", None, "Comma list of cases (default: all of --shapes).")
flags.DEFINE_integer("steps", 10, "Timed steps.")
flags.DEFINE_integer("warmup", 2, "Untimed steps after compiling.")
flags.DEFINE_float("peak_tflops", 790.0,
                   "Peak matmul TFLOP/s per device for mfu (H200 bf16 measured).")
flags.DEFINE_string("unroll", None, "Scan unroll of the cycles: true, false or "
                    "an int (1 = rolled); default the config's (true).")
flags.DEFINE_string("remat", None, "Remat policy of the differentiated level "
                    "calls: none, full, dots or a jax.checkpoint_policies name.")
flags.DEFINE_string("attention_impl", None, "None (by platform: cuDNN on GPUs, "
                    "Pallas flash on TPUs, else XLA), xla, cudnn, cudnn_even or "
                    "pallas_tpu.")
flags.DEFINE_enum("fused_kernels", None, ["auto", "true", "false"],
                  "recur.kernels' one-pass backward kernels (ModelConfig."
                  "fused_kernels); default auto: by platform.")
flags.DEFINE_enum("fused_forward", None, ["auto", "true", "false"],
                  "Fused-epilogue matmul kernels where no gradient flows "
                  "(ModelConfig.fused_forward); default auto: by platform.")
flags.DEFINE_string("dtype", None, "Compute dtype (default the config's, bfloat16).")
flags.DEFINE_integer("batch", None, "Rows per device (overrides the case's).")
flags.DEFINE_integer("num_puzzle_ids", 1024, "Rows of the puzzle-embedding table.")
flags.DEFINE_bool("full_table", False, "Use the paper's table size instead "
                  "(ARC ~1M rows, Sudoku 1).")
flags.DEFINE_enum("table_sharding", "replicated", ["replicated", "rows"],
                  "Sharding of the puzzle-embedding table.")
flags.DEFINE_string("out", None, "Also append the JSON lines to this file.")
flags.DEFINE_bool("isolate", True, "With several cases, run each in a fresh "
                  "subprocess (per-case peak memory, OOM isolation).")
flags.DEFINE_integer("seed", 0, "PRNG seed of the weights and the data.")
flags.DEFINE_bool("pipeline", False, "Time host input (batch building) instead "
                  "of the training step: experiments/bench_pipeline.py.")
flags.DEFINE_list("pipeline_datasets", ["arc", "sudoku", "maze"],
                  "--pipeline: datasets (arc, sudoku, maze, maze_aug).")
flags.DEFINE_integer("pipeline_batches", 20, "--pipeline: timed global batches.")
flags.DEFINE_integer("pipeline_processes", 1, "--pipeline: time process 0 of "
                     "this many (its share of the global batch).")
flags.DEFINE_string("pipeline_cache", "", "--pipeline: cache of generated data.")
flags.DEFINE_string("pipeline_sudoku_csv", "", "--pipeline: Sudoku-Extreme dir.")
flags.DEFINE_string("pipeline_maze_csv", "", "--pipeline: Maze-Hard dir.")

_ARC = dict(vocab_size=12, seq_len=900, hidden_size=512, num_heads=8,
            expansion=4.0, pos_encodings="rope", puzzle_emb_ndim=512)
_ARC_OPT = dict(lr=1e-4, puzzle_emb_lr=1e-2, weight_decay=0.1,
                puzzle_emb_weight_decay=0.1)
_SUDOKU_OPT = dict(lr=1e-4, puzzle_emb_lr=1e-4, weight_decay=1.0,
                   puzzle_emb_weight_decay=1.0)
_TINY = dict(vocab_size=12, seq_len=36, hidden_size=64, num_heads=4,
             expansion=4.0, puzzle_emb_ndim=64)
ARC_FULL_TABLE = 1_000_000   # ARC-AGI-1 + ConceptARC, ~1000 versions per task


@dataclasses.dataclass(frozen=True)
class Case:
  name: str
  model: str
  fields: dict[str, Any]
  batch_per_device: int
  full_table: int
  optim: dict[str, Any] = dataclasses.field(default_factory=dict)
  ref: dict[str, float] | None = None   # REFERENCE.md's measured H200 numbers


CASES = {c.name: c for c in [
    Case("trm_att_arc", "trm", dict(_ARC, puzzle_emb_len=16, H_cycles=3,
                                    L_cycles=4, L_layers=2),
         192, ARC_FULL_TABLE, _ARC_OPT,
         dict(examples_per_s=917, step_ms=209, peak_mem_gb=33.7, gflops=398)),
    Case("trm_mlp_sudoku", "trm",
         dict(_ARC, vocab_size=11, seq_len=81, pos_encodings="none", mlp_t=True,
              puzzle_emb_len=16, H_cycles=3, L_cycles=6, L_layers=2),
         768, 1, _SUDOKU_OPT,
         dict(examples_per_s=5704, step_ms=135, peak_mem_gb=29.5, gflops=43)),
    Case("hrm_arc", "hrm", dict(_ARC, H_cycles=2, L_cycles=2, H_layers=4,
                                L_layers=4),
         192, ARC_FULL_TABLE, _ARC_OPT,
         dict(examples_per_s=741, step_ms=259, peak_mem_gb=28.7, gflops=319)),
    Case("tiny_trm_att", "trm", dict(_TINY, puzzle_emb_len=4, H_cycles=3,
                                     L_cycles=4, L_layers=2), 16, 64, _ARC_OPT),
    Case("tiny_trm_mlp", "trm",
         dict(_TINY, vocab_size=11, pos_encodings="none", mlp_t=True,
              puzzle_emb_len=4, H_cycles=3, L_cycles=6, L_layers=2),
         16, 1, _SUDOKU_OPT),
    Case("tiny_hrm", "hrm", dict(_TINY, H_cycles=2, L_cycles=2, H_layers=2,
                                 L_layers=2), 16, 64, _ARC_OPT),
]}
SHAPES = {"paper": ["trm_att_arc", "trm_mlp_sudoku", "hrm_arc"],
          "tiny": ["tiny_trm_att", "tiny_trm_mlp", "tiny_hrm"]}


# --------------------------------------------------------------------------
# Analytic FLOPs.

def block_flops(cfg: core.ModelConfig) -> int:
  """Forward matmul FLOPs of one block on one example (see module docstring)."""
  s, d = cfg.full_seq_len, cfg.hidden_size
  inter = layers.swiglu_width(d, cfg.expansion)
  if cfg.mlp_t:
    inter_t = layers.swiglu_width(s, cfg.expansion)
    mix = 2 * d * s * 2 * inter_t + 2 * d * inter_t * s
  else:
    mix = 2 * s * d * 3 * d + 2 * s * s * d + 2 * s * s * d + 2 * s * d * d
  return mix + 2 * s * d * 2 * inter + 2 * s * inter * d


def flops_breakdown(cfg: core.ModelConfig) -> dict[str, int]:
  """Matmul FLOPs per example of one training step, by part; `total` sums them."""
  blk = block_flops(cfg)
  calls = cfg.layer_calls()
  grad_calls, all_calls = calls.grad * blk, calls.forward * blk
  d = cfg.hidden_size
  heads = 2 * cfg.seq_len * d * cfg.vocab_size + 2 * d * 2
  out = {"grad": 3 * grad_calls, "nograd": all_calls - grad_calls,
         "heads": 3 * heads, "q_target": 0}
  # As `recur.act.advance` in training: the bootstrapped target's extra segment.
  if cfg.act_continue and cfg.halt_max_steps > 1 and cfg.act_train:
    out["q_target"] = all_calls + 2 * d * 2
  out["segment"] = out["grad"] + out["nograd"] + out["heads"]
  out["total"] = out["segment"] + out["q_target"]
  return out


def flops_per_example(cfg: core.ModelConfig) -> int:
  return flops_breakdown(cfg)["total"]


# --------------------------------------------------------------------------
# One case.

def _parse_unroll(text: str | None):
  if text is None:
    return None
  low = text.strip().lower()
  if low in ("true", "yes"):
    return True
  if low in ("false", "no"):
    return False
  return int(low)


def _tristate(flag: str | None) -> bool | None:
  """"true"/"false" -> True/False; None/"auto" -> None (by platform)."""
  if flag in (None, "", "auto"):
    return None
  return {"true": True, "false": False}[flag.lower()]


def case_config(case: Case, *, unroll=None, remat=None, attention_impl=None,
                dtype=None, num_puzzle_ids=1024, full_table=False,
                fused_kernels=None, fused_forward=None) -> core.ModelConfig:
  fields = dict(case.fields)
  for name, flag in (("fused_kernels", fused_kernels),
                     ("fused_forward", fused_forward)):
    if _tristate(flag) is not None:
      fields[name] = _tristate(flag)
  fields["num_puzzle_identifiers"] = case.full_table if full_table else num_puzzle_ids
  if unroll is not None:
    fields["unroll"] = unroll
  if remat is not None:
    fields["remat"] = None if remat.lower() in ("", "none") else remat
  if attention_impl is not None:
    fields["attention_impl"] = (None if attention_impl.lower() in ("", "none")
                                else attention_impl)
  if dtype is not None:
    fields["compute_dtype"] = dtype
  return models.make_config(case.model, **fields)


def random_batch(cfg: core.ModelConfig, rows: int, seed: int) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(seed)
  shape = (rows, cfg.seq_len)
  return {
      "inputs": rng.integers(0, cfg.vocab_size, shape, dtype=np.int32),
      "labels": rng.integers(0, cfg.vocab_size, shape, dtype=np.int32),
      "puzzle_identifiers": rng.integers(0, cfg.num_puzzle_identifiers, (rows,),
                                         dtype=np.int32),
  }


def _gb(x) -> float | None:
  return None if x is None else round(float(x) / 1e9, 3)


def _memory_analysis(compiled) -> dict[str, float | None]:
  try:
    m = compiled.memory_analysis()
    return {"compiled_temp_gb": _gb(m.temp_size_in_bytes),
            "compiled_args_gb": _gb(m.argument_size_in_bytes)}
  except Exception:  # pylint: disable=broad-except
    return {"compiled_temp_gb": None, "compiled_args_gb": None}


def _xla_flops(compiled) -> float | None:
  try:
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):
      cost = cost[0]
    return float(cost["flops"])
  except Exception:  # pylint: disable=broad-except
    return None


def _peak_mem_gb() -> float | None:
  try:
    stats = jax.devices()[0].memory_stats()
  except Exception:  # pylint: disable=broad-except
    return None
  if not stats or "peak_bytes_in_use" not in stats:
    return None
  return _gb(stats["peak_bytes_in_use"])


def run_case(case: Case, cfg: core.ModelConfig, *, batch_per_device: int,
             steps: int, warmup: int, peak_tflops: float, seed: int = 0,
             table_sharding: str = "replicated") -> dict[str, Any]:
  """Compiles and times the train step of one case; returns its JSON record."""
  mesh = sharding.make_mesh()
  ndev = mesh.devices.size
  rows = batch_per_device * ndev
  oc = train.OptimConfig(global_batch_size=rows, **case.optim)

  host_batch = random_batch(cfg, rows, seed)
  batch_sh = sharding.batch_sharding(mesh)
  batch = jax.device_put(host_batch, batch_sh)
  spec = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in host_batch.items()}

  init = functools.partial(train.init_state, cfg=cfg, oc=oc, example_batch=spec)
  key = jax.random.PRNGKey(seed)
  state_sh = sharding.state_shardings(jax.eval_shape(init, key), mesh,
                                      table_sharding)
  state = jax.jit(init, out_shardings=state_sh)(key)
  num_params = layers.num_params(state.params["net"])

  step_fn = jax.jit(functools.partial(train.train_step, cfg=cfg, oc=oc),
                    in_shardings=(state_sh, batch_sh),
                    out_shardings=(state_sh, sharding.replicated(mesh)),
                    donate_argnums=0)
  t0 = time.perf_counter()
  compiled = step_fn.lower(state, batch).compile()
  compile_s = time.perf_counter() - t0

  metrics = None
  for _ in range(warmup):
    state, metrics = compiled(state, batch)
  jax.block_until_ready((state, metrics))
  times = []
  for _ in range(steps):
    t0 = time.perf_counter()
    state, metrics = compiled(state, batch)
    jax.block_until_ready((state, metrics))
    times.append(time.perf_counter() - t0)
  loss = None if metrics is None else float(metrics["loss"]) / rows

  med = statistics.median(times)
  eps = rows / med
  fb = flops_breakdown(cfg)
  xla_flops = _xla_flops(compiled)
  dev = jax.devices()[0]
  rec = {
      "case": case.name, "model": case.model, "batch": rows,
      "batch_per_device": batch_per_device, "num_devices": ndev,
      "seq_len": cfg.full_seq_len, "hidden_size": cfg.hidden_size,
      "params": num_params, "compile_s": round(compile_s, 2),
      "steps": steps, "warmup": warmup,
      "step_ms_median": round(1e3 * med, 3),
      "step_ms_p10": round(1e3 * float(np.percentile(times, 10)), 3),
      "step_ms_p90": round(1e3 * float(np.percentile(times, 90)), 3),
      "step_ms_mean": round(1e3 * statistics.fmean(times), 3),
      "examples_per_s": round(eps, 2),
      "examples_per_s_per_device": round(eps / ndev, 2),
      "flops_per_example": fb["total"],
      "gflops_per_example": round(fb["total"] / 1e9, 3),
      "gflops_breakdown": {k: round(v / 1e9, 3) for k, v in fb.items()},
      "mfu": round(fb["total"] * eps / (ndev * peak_tflops * 1e12), 5),
      "peak_tflops": peak_tflops,
      "xla_flops_per_example": (None if xla_flops is None
                                else round(xla_flops / batch_per_device)),
      "peak_mem_gb": _peak_mem_gb(),
      **_memory_analysis(compiled),
      "loss": loss,
  }
  if case.ref:
    rec["ref_examples_per_s"] = case.ref["examples_per_s"]
    rec["ref_peak_mem_gb"] = case.ref["peak_mem_gb"]
    rec["ref_gflops_per_example"] = case.ref["gflops"]
    rec["speedup_vs_ref"] = round(eps / ndev / case.ref["examples_per_s"], 3)
  rec["device"] = dev.device_kind
  rec["platform"] = dev.platform
  del state, metrics, batch, compiled
  gc.collect()
  return rec


def knobs(cfg: core.ModelConfig | None, opts: "Options") -> dict[str, Any]:
  if cfg is None:   # the config itself failed: echo what was asked for
    return {"unroll": opts.unroll, "remat": opts.remat,
            "attention_impl": opts.attention_impl, "dtype": opts.dtype,
            "jax_version": jax.__version__}
  return {"unroll": cfg.unroll, "remat": cfg.remat,
          "attention_impl": cfg.attention_impl, "dtype": cfg.compute_dtype,
          "fused_kernels": cfg.fused_kernels, "fused_forward": cfg.fused_forward,
          "num_puzzle_identifiers": cfg.num_puzzle_identifiers,
          "jax_version": jax.__version__}


def emit(rec: dict[str, Any], out: str | None) -> None:
  line = json.dumps(rec)
  print(line, flush=True)
  if out:
    with open(out, "a", encoding="utf-8") as f:
      f.write(line + "\n")


@dataclasses.dataclass(frozen=True)
class Options:
  """What the flags set for one case (testable without absl)."""
  steps: int = 10
  warmup: int = 2
  peak_tflops: float = 790.0
  unroll: str | None = None
  remat: str | None = None
  attention_impl: str | None = None
  dtype: str | None = None
  fused_kernels: str | None = None
  fused_forward: str | None = None
  batch: int | None = None
  num_puzzle_ids: int = 1024
  full_table: bool = False
  table_sharding: str = "replicated"
  seed: int = 0

  @classmethod
  def from_flags(cls) -> "Options":
    return cls(**{f.name: FLAGS[f.name].value for f in dataclasses.fields(cls)})


def bench_one(name: str, opts: Options) -> dict[str, Any]:
  """Runs one case in this process; a failure becomes an `error` record."""
  case = CASES[name]
  cfg = None
  rows = opts.batch or case.batch_per_device
  try:
    cfg = case_config(case, unroll=_parse_unroll(opts.unroll), remat=opts.remat,
                      attention_impl=opts.attention_impl, dtype=opts.dtype,
                      num_puzzle_ids=opts.num_puzzle_ids,
                      full_table=opts.full_table,
                      fused_kernels=opts.fused_kernels,
                      fused_forward=opts.fused_forward)
    rec = run_case(case, cfg, batch_per_device=rows, steps=opts.steps,
                   warmup=opts.warmup, peak_tflops=opts.peak_tflops,
                   seed=opts.seed, table_sharding=opts.table_sharding)
  except Exception as e:  # pylint: disable=broad-except
    traceback.print_exc(file=sys.stderr)
    msg = f"{type(e).__name__}: {e}"
    rec = {"case": name, "batch_per_device": rows, "error": msg[:2000],
           "peak_mem_gb": _peak_mem_gb()}
    if cfg is not None:
      rec["flops_per_example"] = flops_per_example(cfg)
    try:
      rec["device"] = jax.devices()[0].device_kind
    except Exception:  # pylint: disable=broad-except
      pass
  rec.update(knobs(cfg, opts))
  return rec


def _resolve_shapes(isolating: bool) -> str:
  if FLAGS.shapes:
    return FLAGS.shapes
  if isolating:  # keep the parent off the accelerator: probe in a subprocess
    probe = subprocess.run(
        [sys.executable, "-c", "import jax; print(jax.default_backend())"],
        capture_output=True, text=True, check=False)
    backend = probe.stdout.strip().splitlines()[-1] if probe.stdout.strip() else "cpu"
  else:
    backend = jax.default_backend()
  return "tiny" if backend == "cpu" else "paper"


def main(argv):
  del argv
  if FLAGS.pipeline:
    from experiments import bench_pipeline  # pylint: disable=g-import-not-at-top
    bench_pipeline.run(FLAGS.pipeline_datasets, batches=FLAGS.pipeline_batches,
                       process_count=FLAGS.pipeline_processes,
                       cache=FLAGS.pipeline_cache,
                       sudoku_csv=FLAGS.pipeline_sudoku_csv,
                       maze_csv=FLAGS.pipeline_maze_csv, out=FLAGS.out)
    return
  names = FLAGS.cases
  isolating = FLAGS.isolate and (names is None or len(names) > 1)
  if names is None:
    names = SHAPES[_resolve_shapes(isolating)]
  unknown = [n for n in names if n not in CASES]
  if unknown:
    raise app.UsageError(f"unknown cases {unknown}; known: {sorted(CASES)}")
  if not (isolating and len(names) > 1):
    opts = Options.from_flags()
    for name in names:
      emit(bench_one(name, opts), FLAGS.out)
    return
  # One subprocess per case: the device's peak memory is per process, and an
  # OOM or a crashed compile must not take the other cases down.
  passed = [f.serialize() for f in FLAGS.get_key_flags_for_module(
      sys.modules[__name__])
            if f.present and f.name not in ("cases", "shapes", "isolate")]
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  for name in names:
    cmd = [sys.executable, "-m", "experiments.bench", f"--cases={name}",
           "--noisolate", *passed]
    proc = subprocess.run(cmd, cwd=root, stdout=subprocess.PIPE, text=True,
                          check=False)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
    if lines:
      print("\n".join(lines), flush=True)   # the child appended to --out itself
    else:
      emit({"case": name, "error": f"subprocess exited with {proc.returncode} "
            "and printed no result", "jax_version": jax.__version__}, FLAGS.out)


if __name__ == "__main__":
  cli.run(main)
