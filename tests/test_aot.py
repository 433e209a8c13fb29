"""experiments.aot: deviceless plans of the train step for GPUs and TPUs.

The implementation choices and the HLO cost count are tested everywhere; the
compiles themselves need the `aot` extra (CUDA plugin + cuDNN, libtpu) and skip
with the reason when it is not installed (the README's `.[test]` install does
not include it: docs/benchmarks.md, "Ahead-of-time plans", runs them).
"""
import importlib.util

import pytest

from experiments import aot, hlo_cost
from experiments.targets import TARGETS
from recur import plans

def _installed(module: str) -> bool:
  try:
    return importlib.util.find_spec(module) is not None
  except ModuleNotFoundError:   # its parent package is missing
    return False


_HAS_CUDA = _installed("jax_plugins.xla_cuda12")
_HAS_TPU = _installed("libtpu")
needs_cuda = pytest.mark.skipif(not _HAS_CUDA, reason="deviceless GPU compile "
                                "needs the CUDA plugin: pip install -e '.[aot]'")
needs_tpu = pytest.mark.skipif(not _HAS_TPU, reason="deviceless TPU compile "
                               "needs libtpu: pip install -e '.[aot]'")


def test_choices_are_made_for_the_target_not_the_cpu():
  # This runs on a CPU; the plans must still be the GPU's / TPU's programs.
  gpu = aot.plan_config(aot.Plan("tiny_hrm", "h200"), TARGETS["h200"])
  tpu = aot.plan_config(aot.Plan("tiny_trm_att", "v5p"), TARGETS["v5p"])
  assert gpu.attention_impl == "cudnn"
  assert tpu.attention_impl == "pallas_tpu"
  forced = aot.plan_config(aot.Plan("tiny_trm_att", "v5p", attention_impl="xla",
                                    remat="full"), TARGETS["v5p"])
  assert forced.attention_impl == "xla" and forced.remat == "full"
  none = aot.plan_config(aot.Plan("tiny_trm_att", "h200", remat="none"),
                         TARGETS["h200"])
  assert none.remat is None
  # "auto" on a 16 GiB v5e chip is full recomputation (the default policy's
  # plans do not fit it at the paper batch), the saveable-dots policy elsewhere.
  v5e = aot.plan_config(aot.Plan("tiny_trm_att", "v5e"), TARGETS["v5e"])
  assert v5e.remat == "full" and tpu.remat == gpu.remat == plans.ACCELERATOR_REMAT
  assert plans.resolve_remat(tpu.replace(remat="auto"), "tpu", "TPU v5 lite") == "full"
  assert plans.resolve_remat(tpu.replace(remat="auto"), "tpu", "TPU v5") == plans.ACCELERATOR_REMAT
  assert plans.resolve_remat(tpu.replace(remat="auto"), "cpu", "cpu") is None
  # recur.kernels on for the GPU/TPU plans (fused_kernels None = by platform),
  # off on a CPU unless forced.
  assert gpu.fused_kernels is True and tpu.fused_kernels is True
  assert plans.resolve_fused_kernels(None, "cpu") is False
  assert plans.resolve_fused_kernels(True, "cpu") is True
  assert plans.resolve_fused_kernels(False, "cuda") is False


_HLO = """HloModule m

%fused_dot (p0: f32[4,8], p1: f32[8,3]) -> f32[4,3] {
  %p0 = f32[4,8]{1,0} parameter(0)
  %p1 = f32[8,3]{1,0} parameter(1)
  ROOT %d = f32[4,3]{1,0} dot(%p0, %p1), lhs_contracting_dims={1}, rhs_contracting_dims={0}
}

%body (t: (s32[], f32[4,8])) -> (s32[], f32[4,8]) {
  %t = (s32[], f32[4,8]{1,0}) parameter(0)
  %x = f32[4,8]{1,0} get-tuple-element(%t), index=1
  %n = f32[4,8]{1,0} negate(%x)
  %i = s32[] get-tuple-element(%t), index=0
  ROOT %r = (s32[], f32[4,8]{1,0}) tuple(%i, %n)
}

ENTRY %main (a: f32[4,8], b: f32[8,3]) -> f32[4,3] {
  %a = f32[4,8]{1,0} parameter(0)
  %b = f32[8,3]{1,0} parameter(1)
  %c = s32[] constant(0)
  %t0 = (s32[], f32[4,8]{1,0}) tuple(%c, %a)
  %w = (s32[], f32[4,8]{1,0}) while(%t0), condition=%cond, body=%body, backend_config={"known_trip_count":{"n":"3"}}
  %a2 = f32[4,8]{1,0} get-tuple-element(%w), index=1
  %g = (f32[4,3]{1,0}, s8[1024]{0}) custom-call(%a2, %b), custom_call_target="__cublas$lt$matmul", backend_config={"gemm_backend_config":{"dot_dimension_numbers":{"lhs_contracting_dimensions":["1"],"rhs_contracting_dimensions":["0"]}}}
  ROOT %f = f32[4,3]{1,0} fusion(%a2, %b), kind=kOutput, calls=%fused_dot
}
"""


def test_hlo_cost_counts_matmuls_loops_and_traffic():
  c = hlo_cost.module_cost(_HLO)
  # Two [4,8]x[8,3] matmuls (cuBLAS call and fused dot): 2*4*3*8 each.
  assert c.flops == 2 * (2 * 4 * 3 * 8)
  # Bytes: negate 2x128 per trip x 3 trips; cuBLAS reads 128+96, writes 48
  # (its s8 workspace is not traffic); the fusion the same.
  assert c.bytes == 3 * 256 + 2 * (128 + 96 + 48)
  assert hlo_cost.shape_bytes("(bf16[2,3]{1,0}, f32[5])") == 12 + 20


def _check_plan(rec, impl):
  assert "error" not in rec, rec.get("error")
  assert rec["attention_impl"] == impl
  assert rec["fits"] is True
  assert 0 < rec["peak_mem_gb"] < rec["memory_gb"]
  # XLA's (or our) FLOP count is close to the analytic one: the same program.
  ratio = rec["xla_flops_per_example"] / rec["flops_per_example"]
  assert 0.9 < ratio < 2.0, ratio
  assert rec["bytes_accessed_per_step"] > 0 and rec["roofline_ms"] > 0


@needs_cuda
def test_h200_plan_of_hrm_with_odd_sequence_uses_cudnn():
  # tiny HRM: 36 + 1 = 37 positions, an odd length cuDNN refuses in training;
  # padded to 64 and masked, so the default GPU plan compiles with cuDNN.
  rec, compiled = aot.compile_plan(aot.Plan("tiny_hrm", "h200", batch=8))
  _check_plan(rec, "cudnn")
  assert rec["cost_source"] == "hlo_text"
  text = compiled.as_text()
  assert "__cudnn$fmhaSoftmax" in text and "__cudnn$fmhaSoftmaxBackward" in text


@needs_tpu
def test_v5p_plan_uses_the_pallas_flash_kernel():
  rec, compiled = aot.compile_plan(aot.Plan("tiny_trm_att", "v5p", batch=8))
  _check_plan(rec, "pallas_tpu")
  assert "tpu_custom_call" in compiled.as_text()


@needs_tpu
def test_lane_dense_attention_kernel_lowers_for_v5p():
  # Interpret mode (tests/test_attention.py) checks the math, not Mosaic's
  # rules (block shapes, layouts, VMEM): compile recur's kernel, forward and
  # backward with RoPE inside, for a v5p, on two 128-lane blocks and 300
  # positions (two q blocks, the second ragged), the batch split over two
  # chips (XLA cannot partition a Mosaic kernel: it runs per shard).
  import jax
  import jax.numpy as jnp
  from jax.sharding import NamedSharding, PartitionSpec
  from recur import attention, attention_tpu, layers
  b, s, n, kd = 4, 300, 4, 64
  assert attention_tpu.supported(s, n, kd) and s > attention_tpu.Q_BLOCK
  mesh = jax.sharding.Mesh(aot.target_devices(TARGETS["v5p"], None, 2), ("data",))
  rope = layers.rope_tables(kd, s, 1e4)
  loss = lambda qkv: jnp.sum(attention.qkv_attention(qkv, n, "pallas_tpu", rope)
                             .astype(jnp.float32) ** 2)
  arg = jax.ShapeDtypeStruct((b, s, 3 * n * kd), jnp.bfloat16,
                             sharding=NamedSharding(mesh, PartitionSpec("data")))
  with jax.set_mesh(mesh):
    text = jax.jit(jax.grad(loss)).lower(arg).compile().as_text()
  assert "recur_attention_fwd" in text and "recur_attention_bwd" in text
  assert "bf16[2,300,256]" in text    # each device's kernel sees its 2 rows


@needs_cuda
def test_h200_plan_with_the_fused_forward_keeps_flops_and_moves_fewer_bytes():
  # TRM-Att ARC at the paper shapes (small batch and table to keep the
  # compiles short), with recur's kernels as by default on GPUs, with the
  # fused forward off, and with both switches off (plain JAX): the kernels run
  # in the default plan; all three count the same matmul FLOPs (the kernels
  # declare theirs, experiments.hlo_cost); each switch moves fewer bytes
  # (together <= 0.75x plain JAX: 0.714x here, 0.715x at the paper batch),
  # and the fused forward adds no peak memory.
  plan = lambda **kw: aot.compile_plan(aot.Plan("trm_att_arc", "h200", batch=16,
                                                num_puzzle_ids=1024, **kw))
  on, compiled = plan()
  no_forward, _ = plan(fused_forward="false")
  plain, _ = plan(fused_kernels="false", fused_forward="false")
  assert on["fused_forward"] is True and no_forward["fused_forward"] is False
  assert plain["fused_kernels"] is False
  text = compiled.as_text()
  for kernel in ("qkv_rope", "proj_add_norm", "swiglu_in", "swiglu_bwd"):
    assert f'name = "{kernel}' in text, kernel
  assert (on["xla_flops_per_example"] == no_forward["xla_flops_per_example"]
          == plain["xla_flops_per_example"])
  bytes_ = [r["bytes_accessed_per_step"] for r in (on, no_forward, plain)]
  assert bytes_[0] < bytes_[1] < bytes_[2]
  assert bytes_[0] <= 0.75 * bytes_[2], bytes_
  assert on["peak_mem_gb"] <= no_forward["peak_mem_gb"]


@needs_cuda
def test_triton_kernels_mask_the_rows_past_a_partial_last_tile(capsys,
                                                               monkeypatch):
  # Pallas Triton does not mask a block that runs past an array's end, and
  # interpret mode (the parity tests) pads such blocks, so only the Triton IR
  # shows it: lowered for an H200 on row counts that leave a partial last
  # tile, every store of recur's row kernels is masked, and so are their
  # loads of row tiles (weights are read whole, unmasked). (swiglu_in keeps
  # every block inside its rows instead: tests/test_gemm_swiglu.py.)
  import functools
  import re
  import jax
  import jax.numpy as jnp
  from jax.experimental import pallas as pl
  from jax.sharding import SingleDeviceSharding
  from recur.kernels import add_rms_norm, gemm_norm, gemm_qkv, swiglu
  monkeypatch.setattr(pl, "pallas_call", functools.partial(pl.pallas_call,
                                                           debug=True))
  sh = SingleDeviceSharding(aot.target_devices(TARGETS["h200"], None, 1)[0])
  arg = lambda *shape: jax.ShapeDtypeStruct(shape, jnp.bfloat16, sharding=sh)
  table = jax.ShapeDtypeStruct((40, 64), jnp.float32, sharding=sh)
  cases = {
      "swiglu_bwd": (lambda gu, dh: swiglu.swiglu_bwd(gu, dh),
                     (arg(3, 37, 1024), arg(3, 37, 512))),
      "add_rms_norm_bwd": (lambda a, b, g: add_rms_norm.add_rms_norm_bwd(
          a, b, g, 1e-5), (arg(3, 37, 512),) * 3),
      "qkv_rope": (lambda x, w, c, s: gemm_qkv.qkv_rope(x, w, 2, (c, s), 48),
                   (arg(3, 40, 512), arg(512, 384), table, table)),
      "proj_add_norm": (lambda a, w, r: gemm_norm.proj_add_norm(a, w, r, 1e-5),
                        (arg(3, 48, 512), arg(512, 512), arg(3, 40, 512))),
  }
  for name, (fn, args) in cases.items():
    capsys.readouterr()
    jax.jit(fn).lower(*args).compile()
    ir = capsys.readouterr().out
    stores = re.findall(r"tt\.store ([^:]*):", ir)
    assert stores, (name, ir[-2000:])
    unmasked = [s for s in stores if s.count("%") < 3]
    assert not unmasked, (name, unmasked)
    assert "masked_load" in ir, name
