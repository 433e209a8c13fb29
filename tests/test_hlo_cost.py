"""experiments.hlo_cost's breakdown: where a plan's bytes go, per instruction."""
from experiments import hlo_cost

_HLO = """HloModule m

%body (t: (s32[], f32[4,8])) -> (s32[], f32[4,8]) {
  %t = (s32[], f32[4,8]{1,0}) parameter(0)
  %x = f32[4,8]{1,0} get-tuple-element(%t), index=1
  %n = f32[4,8]{1,0} negate(%x), metadata={op_name="jit(f)/jvp()/Block/mlp/neg"}
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
  ROOT %g = (f32[4,3]{1,0}, s8[1024]{0}) custom-call(%a2, %b), custom_call_target="__cublas$lt$matmul", backend_config={"gemm_backend_config":{"dot_dimension_numbers":{"lhs_contracting_dimensions":["1"],"rhs_contracting_dimensions":["0"]}}}, metadata={op_name="jit(f)/transpose(jvp())/Block/mixer/dot_general"}
}
"""


def test_breakdown_adds_up_to_the_module_cost_dearest_first():
  # Given a loop body run 3 times and a cuBLAS call, the breakdown lists each
  # costed instruction once with its trips folded in, dearest first, labelled
  # by source (backward ops marked), and its sums are module_cost's.
  rows = hlo_cost.breakdown(_HLO)
  total = hlo_cost.module_cost(_HLO)
  assert [r[0] for r in rows] == ["n", "g"]   # 3 x 256 bytes, then 272
  assert sum(r[4].bytes for r in rows) == total.bytes
  assert sum(r[4].flops for r in rows) == total.flops == 2 * 4 * 3 * 8
  assert rows[0][4].bytes == 3 * 2 * 128
  assert rows[1][4].bytes == 128 + 96 + 48     # the s8 workspace is no traffic
  assert rows[0][3] == "Block/mlp/neg"
  assert rows[1][3] == "bwd Block/mixer/dot_general"


def test_breakdown_cli_groups_by_source(tmp_path, capsys):
  path = tmp_path / "plan.hlo"
  path.write_text(_HLO)
  hlo_cost.main([str(path), "--by=source"])
  out = capsys.readouterr().out
  assert out.startswith("total ")
  assert "Block/mlp/neg" in out and "bwd Block/mixer/dot_general" in out


_TRITON_HLO = r"""HloModule m

ENTRY %main (x: bf16[300,256], w: bf16[256,128]) -> bf16[300,128] {
  %x = bf16[300,256]{1,0} parameter(0)
  %w = bf16[256,128]{1,0} parameter(1)
  %o = bf16[300,128]{1,0} custom-call(%x, %w), custom_call_target="__gpu$xla.gpu.triton", api_version=API_VERSION_TYPED_FFI, backend_config={debug = false, grid_x = 3 : i32, grid_y = 1 : i32, grid_z = 1 : i32, ir = "ML\EFR\00", name = "gemm_test", num_stages = 3 : i32, num_warps = 8 : i32, serialized_metadata = "{\22flops\22: \2219660800\22}"}
  ROOT %p = bf16[300,128]{1,0} custom-call(%o), custom_call_target="__gpu$xla.gpu.triton", backend_config={debug = false, grid_x = 3 : i32, name = "no_metadata"}
}
"""


def test_triton_kernels_count_the_flops_they_declare():
  # Given a Pallas Triton kernel carrying recur.kernels.gemm's metadata
  # (2 x 300 x 256 x 128 matmul FLOPs) and one without metadata, the module's
  # FLOPs are the declared ones (the other kernel counts none) and both
  # kernels' bytes are operands plus result.
  c = hlo_cost.module_cost(_TRITON_HLO)
  assert c.flops == 2 * 300 * 256 * 128
  assert c.bytes == (300 * 256 + 256 * 128 + 300 * 128) * 2 + 2 * (300 * 128 * 2)
