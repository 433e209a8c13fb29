"""experiments.tpu_breakdown: bytes per kind/source from optimized TPU HLO text."""
from experiments import tpu_breakdown as tb

_HLO = """HloModule m

%fused_dot (p0: bf16[16,64], p1: bf16[64,128]) -> bf16[16,128] {
  %p0 = bf16[16,64]{1,0:T(8,128)(2,1)} parameter(0)
  %p1 = bf16[64,128]{1,0:T(8,128)(2,1)} parameter(1)
  ROOT %d = bf16[16,128]{1,0:T(8,128)(2,1)} dot(%p0, %p1), lhs_contracting_dims={1}, rhs_contracting_dims={0}
}

%fused_neg (p0: f32[16,32]) -> f32[16,32] {
  %p0 = f32[16,32]{1,0:T(8,128)} parameter(0)
  ROOT %n = f32[16,32]{1,0:T(8,128)} negate(%p0)
}

%body (t: (s32[], f32[16,32])) -> (s32[], f32[16,32]) {
  %t = (s32[], f32[16,32]{1,0:T(8,128)}) parameter(0)
  %x = f32[16,32]{1,0:T(8,128)} get-tuple-element(%t), index=1
  %n = f32[16,32]{1,0:T(8,128)} fusion(%x), kind=kLoop, calls=%fused_neg, metadata={op_name="jit(f)/transpose(jvp())/checkpoint/rematted_computation/neg"}
  %i = s32[] get-tuple-element(%t), index=0
  ROOT %r = (s32[], f32[16,32]{1,0:T(8,128)}) tuple(%i, %n)
}

ENTRY %main (a: bf16[16,64], b: bf16[64,128], c: f32[16,32]) -> bf16[16,128] {
  %a = bf16[16,64]{1,0:T(8,128)(2,1)} parameter(0)
  %b = bf16[64,128]{1,0:T(8,128)(2,1)} parameter(1)
  %c = f32[16,32]{1,0:T(8,128)} parameter(2)
  %t0 = (s32[], f32[16,32]{1,0:T(8,128)}) tuple(%c, %c)
  %w = (s32[], f32[16,32]{1,0:T(8,128)}) while(%t0), condition=%cond, body=%body, backend_config={"known_trip_count":{"n":"3"}}
  %k.7 = bf16[16,128]{1,0:T(8,128)(2,1)} custom-call(%a, %b), custom_call_target="tpu_custom_call", metadata={op_name="jit(f)/jvp()/pallas_call"}, backend_config={"custom_call_config":{"body":"x","cost_estimate":{"flops":"10","transcendentals":"0","bytes_accessed":"1000","remote_bytes_transferred":"0"},"needs_layout_passes":true}}
  ROOT %f = bf16[16,128]{1,0:T(8,128)(2,1)} fusion(%k.7, %b), kind=kOutput, calls=%fused_dot, metadata={op_name="jit(f)/jvp()/dot_general"}
}
"""


def test_tiled_bytes_round_minor_dims_up_to_the_tile():
  # 64 lanes of bf16 fill half a 128-lane tile; 13 rows round up to 16.
  assert tb.tiled_bytes("bf16[16,64]{1,0:T(8,128)(2,1)}") == (2048, 4096)
  assert tb.tiled_bytes("f32[13,128]{1,0:T(8,128)}") == (13 * 512, 16 * 512)
  # Layout order decides which dimension is minor: here dim 0 (4 -> 128 lanes).
  assert tb.tiled_bytes("f32[4,128]{0,1:T(8,128)}") == (2048, 128 * 128 * 4)
  assert tb.tiled_bytes("(f32[2,2], s32[3])") == (28, 28)   # no layout: logical


def test_breakdown_by_kind_and_source():
  by_kind = {r["group"]: r for r in tb.breakdown(_HLO, "kind")}
  # The loop body's fusion runs 3 times: f32[16,32] in and out, 2 KiB each
  # logical, padded to 128 lanes 8 KiB each.
  assert by_kind["fusion:loop"]["count"] == 3
  assert by_kind["fusion:loop"]["logical_gb"] == round(3 * 2 * 2048 / 1e9, 2)
  kernel = by_kind["mosaic:k"]
  assert kernel["count"] == 1 and kernel["kernels_without_estimate"] == 0
  ins = {i["name"]: i for i in tb.instructions(_HLO)}
  assert ins["k.7"]["estimate"]["bytes_accessed"] == "1000"
  # a (2 KiB, tiled 4) + b (16 KiB) + result (4 KiB)
  assert (ins["k.7"]["logical"], ins["k.7"]["tiled"]) == (2048 + 16384 + 4096,
                                                           4096 + 16384 + 4096)
  assert by_kind["fusion:matmul"]["count"] == 1
  by_source = {r["group"] for r in tb.breakdown(_HLO, "source")}
  assert by_source == {"bwd+remat:neg", "fwd:pallas_call", "fwd:dot_general"}
