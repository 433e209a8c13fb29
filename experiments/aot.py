r"""Plan the train step for a GPU or TPU on a CPU: `python -m experiments.aot`.

Compiles `recur.train.train_step` exactly as a real run jits it (experiments/
loop.py: `NamedSharding`s over a data-parallel mesh, `donate_argnums=0`), for a
target accelerator that is not there (deviceless compilation: the CUDA plugin
or libtpu, `pip install -e ".[aot]"`), and prints XLA's own plan: one JSON line
per case.

  python -m experiments.aot --target=h200 --shapes=paper
  python -m experiments.aot --target=v5p --shapes=paper --batch=192
  python -m experiments.aot --target=v5e --case=trm_att_arc --remat=full
  python -m experiments.aot --target=h200 --shapes=paper --suggest
  python -m experiments.aot --target=v5p --topology=v5p:2x2x2 --chips=8 ...

Cases and per-device batches are experiments/bench.py's (`--shapes=tiny` for
the CPU-sized ones). `--batch` is per chip. The puzzle table is the real one
(ARC ~1M rows) unless `--table_rows` says otherwise.

Implementation choices are made for the target, never from the (CPU) backend
this runs on: attention `recur.attention.resolve_impl(..., platform)` (cuDNN on
GPUs, the Pallas flash kernel on TPUs), remat `recur.plans.resolve_remat(cfg, platform)`.

Fields: `case`, `target`, `batch` (per chip), `batch_per_device`,
`num_devices`, `peak_mem_gb` (per device, XLA's buffer plan:
`memory_analysis().peak_memory_in_bytes`), `memory_gb` and `fits`,
`temp_gb`/`args_gb`/`output_gb`/`alias_gb`, `flops_per_example` (analytic
matmul FLOPs, experiments/bench.py) and `xla_flops_per_example` (XLA's
cost analysis, per example), `bytes_accessed_per_step` (XLA's, per device),
`roofline_ms` = max(XLA FLOPs / peak FLOP/s, bytes / bandwidth) per device
(an ideal bound: perfect overlap, every op at peak), `roofline_examples_per_s`
(per chip), `compute_ms`, `memory_ms`, the knobs and the reference's H200
numbers for paper cases, `compile_s`. A program over a TPU's HBM fails to
compile (RESOURCE_EXHAUSTED): `fits: false` and the `error`.

`--suggest`: for each remat policy from cheapest to dearest (none,
dots_with_no_batch_dims_saveable, dots, full) the largest per-chip batch of
`SUGGEST_BATCHES` that fits (binary search); prints each, then the suggestion:
the cheapest policy whose largest batch reaches the case's batch (or the largest
batch overall when none does). With `--remat=POLICY`, only that policy.
"""
from __future__ import annotations

import os

# Before jax initialises: plan on the CPU process; Triton GEMM tiling needs a
# device to autotune, so XLA's own GEMMs (cuBLAS) are planned instead.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_gpu_enable_triton_gemm=false"
                           " --xla_gpu_autotune_level=0").strip()

import dataclasses  # pylint: disable=g-import-not-at-top,wrong-import-position
import functools
import json
import sys
import time
import traceback
from typing import Any

from absl import app
from absl import flags
import jax
import numpy as np
from jax.sharding import Mesh

from experiments import bench, cli, hlo_cost
from experiments.targets import TARGETS, Target, gpu_target_config
from recur import attention, plans, sharding, train

FLAGS = flags.FLAGS
flags.DEFINE_enum("target", "h200", sorted(TARGETS), "Accelerator to plan for.")
flags.DEFINE_string("topology", None, "TPU topology (libtpu name, e.g. "
                    "v5p:2x2x1); default the target's.")
flags.DEFINE_integer("chips", 1, "Chips the mesh spans (1 = per-chip plan).")
flags.DEFINE_list("case", None, "Case name(s) from experiments/bench.py.")
# --shapes (default paper here), --batch (rows per chip here), --remat, --unroll,
# --attention_impl, --fused_kernels, --fused_forward and --out are
# experiments/bench.py's flags, shared: the
# defaults of remat/attention_impl are the target's (recur.plans,
# recur.attention.resolve_impl).
flags.DEFINE_integer("table_rows", None, "Puzzle-table rows (default the "
                     "paper's: ARC 1M, Sudoku 1).")
flags.DEFINE_bool("suggest", False, "Search batch and remat policy that fit.")
flags.DEFINE_list("suggest_batches", None, "Per-chip batches --suggest searches "
                  "(default SUGGEST_BATCHES); a short list saves compiles.")
flags.DEFINE_string("dump_hlo", None, "Folder to write each compiled plan's "
                    "optimized HLO text to (<case>_<target>_<impl>_b<batch>.hlo"
                    ".txt), for experiments.tpu_breakdown.")

SUGGEST_POLICIES = ("none", "dots_with_no_batch_dims_saveable", "dots", "full")
SUGGEST_BATCHES = (16, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024,
                   1536, 2048, 3072, 4096)


@dataclasses.dataclass(frozen=True)
class Plan:
  """What to compile: one case, for one target, with these knobs."""
  case: str
  target: str
  batch: int | None = None          # per chip
  remat: str | None = None
  unroll: str | None = None
  attention_impl: str | None = None
  num_puzzle_ids: int | None = None
  topology: str | None = None
  chips: int = 1
  fused_kernels: str | None = None   # "auto"/None (the target's), "true", "false"
  fused_forward: str | None = None


def target_devices(target: Target, topology: str | None, chips: int):
  """Deviceless devices of `chips` chips of the target."""
  from jax.experimental import topologies  # pylint: disable=g-import-not-at-top
  if target.platform == "gpu":
    topo = topologies.get_topology_desc(
        platform="cuda", target_config=gpu_target_config(target.gpu),
        topology=topology or f"1x{chips}x1")
  else:
    # A deviceless topology owns no chip, so libtpu's one-process lock (which
    # guards the chips) only stops two plans from compiling at once (two
    # `experiments.aot` commands, or pytest workers).
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "true")
    topo = topologies.get_topology_desc(topology or target.topology, "tpu")
  devices = list(topo.devices)
  want = chips * target.devices_per_chip
  if len(devices) < want:
    raise ValueError(f"topology {topology or target.topology} has "
                     f"{len(devices)} devices, fewer than {chips} chips x "
                     f"{target.devices_per_chip}")
  return devices[:want]


def plan_config(plan: Plan, target: Target):
  """The case's model config with every implementation choice made for the
  target (not for the CPU this runs on)."""
  case = bench.CASES[plan.case]
  cfg = bench.case_config(
      case, unroll=bench._parse_unroll(plan.unroll),  # pylint: disable=protected-access
      num_puzzle_ids=(plan.num_puzzle_ids if plan.num_puzzle_ids is not None
                      else case.full_table),
      fused_kernels=plan.fused_kernels, fused_forward=plan.fused_forward)
  impl = attention.resolve_impl(plan.attention_impl, target.platform,
                                dtype=cfg.dtype, head_dim=cfg.hidden_size // cfg.num_heads)
  remat = plan.remat
  if remat is None:
    remat = plans.resolve_remat(cfg, target.platform, target.description)
  remat = None if str(remat).lower() in ("", "none") else remat
  return cfg.replace(attention_impl=impl, remat=remat,
                     fused_kernels=plans.resolve_fused_kernels(cfg.fused_kernels,
                                                               target.platform),
                     fused_forward=plans.resolve_fused_forward(
                         cfg.fused_forward, cfg.fused_kernels, target.platform))


def compile_plan(plan: Plan) -> tuple[dict[str, Any], Any]:
  """Lowers and compiles the train step; returns (record, compiled)."""
  target = TARGETS[plan.target]
  case = bench.CASES[plan.case]
  cfg = plan_config(plan, target)
  per_chip = plan.batch or case.batch_per_device
  if per_chip % target.devices_per_chip:
    raise ValueError(f"batch {per_chip} per chip does not split over "
                     f"{target.devices_per_chip} devices per chip")
  devices = target_devices(target, plan.topology, plan.chips)
  mesh = Mesh(np.asarray(devices).reshape(-1), (sharding.DATA,))
  ndev = len(devices)
  rows = per_chip * plan.chips
  oc = train.OptimConfig(global_batch_size=rows, **case.optim)

  batch_sh = sharding.batch_sharding(mesh)
  host = bench.random_batch(cfg.replace(num_puzzle_identifiers=1), 1, 0)
  batch = {k: jax.ShapeDtypeStruct((rows,) + v.shape[1:], v.dtype, sharding=batch_sh)
           for k, v in host.items()}
  init = functools.partial(train.init_state, cfg=cfg, oc=oc, example_batch=batch)
  abstract = jax.eval_shape(init, jax.random.PRNGKey(0))
  state_sh = sharding.state_shardings(abstract, mesh)
  state = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                       abstract, state_sh)
  # As experiments/loop.py jits it (sharding.jit_under_mesh: traced under the mesh).
  step = jax.jit(functools.partial(train.train_step, cfg=cfg, oc=oc),
                 in_shardings=(state_sh, batch_sh), out_shardings=(state_sh, None),
                 donate_argnums=0)
  t0 = time.perf_counter()
  with jax.set_mesh(mesh):   # Pallas kernels run per shard (attention_tpu.over_batch)
    compiled = step.lower(state, batch).compile()
  compile_s = time.perf_counter() - t0

  mem = compiled.memory_analysis()
  xla_flops, bytes_acc, cost_source = step_cost(compiled)
  per_dev_rows = rows // ndev
  compute_ms = 1e3 * xla_flops / (target.peak_tflops * 1e12)
  memory_ms = 1e3 * bytes_acc / (target.hbm_gbps * 1e9)
  roof = max(compute_ms, memory_ms)
  peak = float(mem.peak_memory_in_bytes)
  rec = {
      "case": plan.case, "target": plan.target, "device": target.description,
      "batch": per_chip, "batch_per_device": per_dev_rows, "num_devices": ndev,
      "peak_mem_gb": round(peak / 1e9, 3),
      "memory_gb": round(target.memory_bytes / 1e9, 3),
      "fits": peak <= target.memory_bytes,
      "temp_gb": round(mem.temp_size_in_bytes / 1e9, 3),
      "args_gb": round(mem.argument_size_in_bytes / 1e9, 3),
      "output_gb": round(mem.output_size_in_bytes / 1e9, 3),
      "alias_gb": round(mem.alias_size_in_bytes / 1e9, 3),
      "flops_per_example": bench.flops_per_example(cfg),
      "xla_flops_per_example": round(xla_flops / per_dev_rows),
      "bytes_accessed_per_step": round(bytes_acc),
      "bytes_accessed_gb": round(bytes_acc / 1e9, 2),
      "cost_source": cost_source, "compute_ms": round(compute_ms, 2), "memory_ms": round(memory_ms, 2),
      "roofline_ms": round(roof, 2),
      "roofline_examples_per_s": round(per_dev_rows * target.devices_per_chip
                                       / (roof / 1e3), 1),
      "peak_tflops": target.peak_tflops, "hbm_gbps": target.hbm_gbps,
      "compile_s": round(compile_s, 2),
      "attention_impl": cfg.attention_impl, "remat": cfg.remat,
      "fused_kernels": cfg.fused_kernels, "fused_forward": cfg.fused_forward,
      "unroll": cfg.unroll, "num_puzzle_identifiers": cfg.num_puzzle_identifiers,
      "seq_len": cfg.full_seq_len, "jax_version": jax.__version__,
  }
  if case.ref:
    rec["ref_h200_peak_mem_gb"] = case.ref["peak_mem_gb"]
    rec["ref_h200_examples_per_s"] = case.ref["examples_per_s"]
  return rec, compiled


def step_cost(compiled) -> tuple[float, float, str]:
  """(FLOPs, bytes accessed, source) of one step on one device: XLA's cost
  analysis where the backend has one (TPU), else (deviceless GPU, which
  answers UNIMPLEMENTED) our count over the optimized HLO (experiments/hlo_cost)."""
  try:
    cost = compiled.cost_analysis()
  except Exception:  # pylint: disable=broad-except
    cost = None
  cost = cost[0] if isinstance(cost, (list, tuple)) and cost else cost
  if cost and cost.get("flops", -1) >= 0:
    return float(cost["flops"]), float(cost.get("bytes accessed", 0.0)), "xla"
  text = compiled.as_text()
  c = hlo_cost.module_cost(text)
  return c.flops, c.bytes, "hlo_text"


def run_plan(plan: Plan) -> dict[str, Any]:
  """compile_plan as a record; a failure (over HBM, unsupported) is a record."""
  try:
    rec, compiled = compile_plan(plan)
    if FLAGS.dump_hlo:
      os.makedirs(FLAGS.dump_hlo, exist_ok=True)
      path = os.path.join(FLAGS.dump_hlo, f"{plan.case}_{plan.target}_"
                          f"{rec['attention_impl']}_b{rec['batch']}.hlo.txt")
      with open(path, "w", encoding="utf-8") as f:
        f.write(compiled.as_text())
      rec["hlo_path"] = path
    return rec
  except Exception as e:  # pylint: disable=broad-except
    msg = f"{type(e).__name__}: {e}"
    over = "RESOURCE_EXHAUSTED" in msg or "exceeds available" in msg
    if not over:
      traceback.print_exc(file=sys.stderr)
    return {"case": plan.case, "target": plan.target, "batch": plan.batch,
            "remat": plan.remat, "attention_impl": plan.attention_impl,
            "fits": False if over else None, "error": msg[:1500]}


def suggest(plan: Plan) -> list[dict[str, Any]]:
  """Largest fitting per-chip batch for each remat policy, then the pick."""
  case = bench.CASES[plan.case]
  target = TARGETS[plan.target]
  want = plan.batch or case.batch_per_device
  batches = [b for b in (sorted(map(int, FLAGS.suggest_batches))
                         if FLAGS.suggest_batches else SUGGEST_BATCHES)
             if b % target.devices_per_chip == 0]
  out = []
  # --remat=POLICY searches only that policy's batch (4 compiles, not 16).
  for policy in (plan.remat,) if plan.remat else SUGGEST_POLICIES:
    lo, hi, best = 0, len(batches) - 1, None
    while lo <= hi:
      mid = (lo + hi) // 2
      rec = run_plan(dataclasses.replace(plan, batch=batches[mid], remat=policy))
      if rec.get("fits"):
        best, lo = rec, mid + 1
      else:
        hi = mid - 1
    row = {"case": plan.case, "target": plan.target, "remat": policy,
           "max_batch": None if best is None else best["batch"],
           "suggest_step": True}
    if best is not None:
      row.update({k: best[k] for k in ("peak_mem_gb", "roofline_examples_per_s",
                                        "xla_flops_per_example")})
    out.append(row)
  ok = [r for r in out if r["max_batch"] and r["max_batch"] >= want]
  pick = ok[0] if ok else max(out, key=lambda r: r["max_batch"] or 0)
  out.append({"case": plan.case, "target": plan.target, "suggestion": True,
              "remat": pick["remat"], "batch": pick["max_batch"],
              "case_batch": want})
  return out


def emit(rec: dict[str, Any], out: str | None) -> None:
  line = json.dumps(rec)
  print(line, flush=True)
  if out:
    with open(out, "a", encoding="utf-8") as f:
      f.write(line + "\n")


def main(argv):
  del argv
  names = FLAGS.case or bench.SHAPES[FLAGS.shapes or "paper"]
  unknown = [n for n in names if n not in bench.CASES]
  if unknown:
    raise app.UsageError(f"unknown cases {unknown}; known: {sorted(bench.CASES)}")
  for name in names:
    plan = Plan(case=name, target=FLAGS.target, batch=FLAGS.batch,
                remat=FLAGS.remat, unroll=FLAGS.unroll,
                attention_impl=FLAGS.attention_impl,
                num_puzzle_ids=FLAGS.table_rows, topology=FLAGS.topology,
                chips=FLAGS.chips, fused_kernels=FLAGS.fused_kernels,
                fused_forward=FLAGS.fused_forward)
    recs = suggest(plan) if FLAGS.suggest else [run_plan(plan)]
    for rec in recs:
      emit(rec, FLAGS.out)


if __name__ == "__main__":
  cli.run(main)
