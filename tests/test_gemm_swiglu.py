"""recur.kernels.gemm_swiglu: the matmul + SwiGLU activation kernels (channel
and TRM-MLP's token mixing) against their plain-JAX references (interpret
mode on the CPU), and the references against today's two-pass expressions of
recur.layers.SwiGLU and recur.layers.TokenMixingMLP."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recur import layers
from recur.kernels import gemm_swiglu


def _inputs(lead, d, inner, dtype, seed=0):
  kx, kw = jax.random.split(jax.random.key(seed))
  x = jax.random.normal(kx, lead + (d,)).astype(dtype)
  w = (jax.random.normal(kw, (d, 2 * inner)) / np.sqrt(d)).astype(dtype)
  return x, w


def _assert_within_rounding(got, want, dtype):
  # Same float32 products and activation, rounded once: a few float32 ulps
  # (the K loop's summation order), or one ulp of the result dtype.
  tol = 1e-5 if dtype == jnp.float32 else 2.0 ** -8
  got, want = np.float32(got), np.float32(want)
  np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("lead,d,inner", [
    ((3, 100), 128, 256),   # 300 rows: 2 full 128-row blocks + a partial one
    ((40,), 64, 48),        # 40 rows (32-row blocks), I = 3 x 16 columns
    ((2, 64), 32, 128),     # 128 rows: one full block, one K step
])
def test_swiglu_in_kernel_matches_plain_jax(dtype, lead, d, inner):
  # Given rows that are or are not a multiple of the row block, when the
  # kernel runs in interpret mode, then h equals the plain-JAX reference to
  # within its rounding, with x's leading dims and dtype.
  x, w = _inputs(lead, d, inner, dtype)
  assert gemm_swiglu.kernel_fits(int(np.prod(lead)), d, inner)
  got = gemm_swiglu.swiglu_in(x, w, "interpret")
  want = gemm_swiglu.swiglu_in_reference(x, w)
  assert got.dtype == dtype and got.shape == lead + (inner,)
  _assert_within_rounding(got, want, dtype)


def test_swiglu_in_last_block_rows_are_not_garbage():
  # Given 300 rows whose last block overlaps the one before it, every row of
  # h (the overlap and the tail included) is that row's own activation: a
  # row of x changed changes only that row of h.
  x, w = _inputs((300,), 64, 128, jnp.float32, seed=2)
  h = gemm_swiglu.swiglu_in(x, w, "interpret")
  x2 = x.at[299].set(-x[299])
  h2 = gemm_swiglu.swiglu_in(x2, w, "interpret")
  np.testing.assert_array_equal(h2[:299], h[:299])
  _assert_within_rounding(h2[299], gemm_swiglu.swiglu_in_reference(x2, w)[299],
                          jnp.float32)
  assert not np.allclose(h2[299], h[299])


@pytest.mark.parametrize("m,kind", [
    (300, "rows"), (40, "rows"), (128, "rows"), (16, "rows"),
    (192 * 916, "rows"), (192 * 901 + 5, "rows"), (97, "k"), (40, "k")])
def test_row_blocks_stay_inside_the_rows_and_cover_them(m, kind):
  # Pallas's Triton lowering does not mask a block that overhangs its array
  # (interpret mode clamps it, so the parity tests cannot see one): every row
  # block of the grid (kind "rows"; "k": every K step over S of the
  # token-mixing kernel) lies inside the m rows, and together they cover them.
  if kind == "rows":
    block = gemm_swiglu._blocks(m, 512, 1536)[0]
  else:
    block = gemm_swiglu._tokens_blocks(m, 512, 512)[2]
  covered = np.zeros(m, bool)
  for i in range(-(-m // block)):
    start = int(gemm_swiglu.row_block_start(i, m, block))
    assert 0 <= start and start + block <= m
    covered[start:start + block] = True
  assert covered.all()


def test_swiglu_in_reference_is_todays_swiglu_activation():
  # In float32 the reference is exactly today's layers.SwiGLU expression:
  # gate, up = split(x @ w); silu(gate) * up; and the module's output is the
  # down projection of it.
  x, _ = _inputs((2, 9), 64, 256, jnp.float32, seed=3)
  module = layers.SwiGLU(expansion=6.0, kernel_impl="xla")   # I = 256
  params = module.init(jax.random.key(4), x)["params"]
  w_gu, w_down = params["gate_up"], params["down"]
  assert w_gu.shape == (64, 512)
  gate, up = jnp.split(layers._dense(x, w_gu), 2, axis=-1)
  h = gemm_swiglu.swiglu_in_reference(x, w_gu)
  np.testing.assert_array_equal(h, jax.nn.silu(gate) * up)
  np.testing.assert_array_equal(layers._dense(h, w_down),
                                module.apply({"params": params}, x))


def test_swiglu_in_plain_paths():
  # "xla" is the reference; "pallas" off GPUs (the plain branch of
  # by_platform) is the model's own two-step expression in the compute dtype
  # (projection, then activation: what a TPU ran before the kernel, without
  # a float32 [M, 2I] projection); shapes the kernel cannot tile (8 rows,
  # I = 24) take the reference under "interpret" too; an unknown impl or a w
  # that is not [D, 2I] is refused.
  x, w = _inputs((3, 20), 32, 64, jnp.bfloat16, seed=5)
  np.testing.assert_array_equal(gemm_swiglu.swiglu_in(x, w, "xla"),
                                gemm_swiglu.swiglu_in_reference(x, w))
  gate, up = jnp.split(jnp.einsum("...i,io->...o", x, w), 2, axis=-1)
  np.testing.assert_array_equal(gemm_swiglu.swiglu_in(x, w, "pallas"),
                                jax.nn.silu(gate) * up)
  for lead, inner in (((8,), 64), ((40,), 24)):
    x, w = _inputs(lead, 32, inner, jnp.float32, seed=6)
    assert not gemm_swiglu.kernel_fits(int(np.prod(lead)), 32, inner)
    np.testing.assert_array_equal(gemm_swiglu.swiglu_in(x, w, "interpret"),
                                  gemm_swiglu.swiglu_in_reference(x, w))
  with pytest.raises(ValueError, match="impl"):
    gemm_swiglu.swiglu_in(x, w, "cuda")
  with pytest.raises(ValueError, match="2I"):
    gemm_swiglu.swiglu_in(x, w[:16], "xla")


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("b,s,d,inner", [
    (2, 97, 64, 128),    # Sudoku's S = 81 + 16: 3 K steps of 32 and a tail
    (2, 40, 256, 48),    # 2 D blocks, 3 I blocks of 16, a tail of 8 rows
    (1, 64, 32, 32),     # S a multiple of the K step
])
def test_swiglu_in_tokens_kernel_matches_plain_jax(dtype, b, s, d, inner):
  # Given S not a multiple of the K step (the last step moved back, its rows
  # summed already zeroed), h [B, D, I] equals the plain-JAX reference to
  # within its rounding.
  kx, kw = jax.random.split(jax.random.key(7))
  x = jax.random.normal(kx, (b, s, d)).astype(dtype)
  w = (jax.random.normal(kw, (s, 2 * inner)) / np.sqrt(s)).astype(dtype)
  assert gemm_swiglu.tokens_kernel_fits(s, d, inner)
  got = gemm_swiglu.swiglu_in_tokens(x, w, "interpret")
  want = gemm_swiglu.swiglu_in_tokens_reference(x, w)
  assert got.dtype == dtype and got.shape == (b, d, inner)
  _assert_within_rounding(got, want, dtype)


def test_swiglu_in_tokens_reference_is_todays_token_mixing_activation():
  # In float32 the reference is exactly today's layers.TokenMixingMLP
  # expression (gate_up = einsum("bsd,si->bdi"); silu(gate) * up), and the
  # module's output is the down projection of it.
  x = jax.random.normal(jax.random.key(8), (2, 36, 16))
  module = layers.TokenMixingMLP(expansion=4.0)     # I = swiglu_width(36) = 256
  params = module.init(jax.random.key(9), x)["params"]
  w_gu, w_down = params["mlp_t_gate_up"], params["mlp_t_down"]
  assert w_gu.shape == (36, 512)
  gate, up = jnp.split(jnp.einsum("bsd,si->bdi", x, w_gu), 2, axis=-1)
  h = gemm_swiglu.swiglu_in_tokens_reference(x, w_gu)
  np.testing.assert_array_equal(h, jax.nn.silu(gate) * up)
  np.testing.assert_array_equal(jnp.einsum("bdi,is->bsd", h, w_down),
                                module.apply({"params": params}, x))


def test_swiglu_in_tokens_plain_paths():
  # "xla" and "pallas" on the CPU are the reference; S < 16 takes the plain
  # path under "interpret" too; a w that is not [S, 2I] is refused.
  kx, kw = jax.random.split(jax.random.key(10))
  x = jax.random.normal(kx, (2, 20, 32)).astype(jnp.bfloat16)
  w = jax.random.normal(kw, (20, 64)).astype(jnp.bfloat16)
  want = gemm_swiglu.swiglu_in_tokens_reference(x, w)
  for impl in ("xla", "pallas"):
    np.testing.assert_array_equal(gemm_swiglu.swiglu_in_tokens(x, w, impl), want)
  assert not gemm_swiglu.tokens_kernel_fits(9, 32, 32)
  np.testing.assert_array_equal(
      gemm_swiglu.swiglu_in_tokens(x[:, :9], w[:9], "interpret"),
      gemm_swiglu.swiglu_in_tokens_reference(x[:, :9], w[:9]))
  with pytest.raises(ValueError, match="impl"):
    gemm_swiglu.swiglu_in_tokens(x, w, "cuda")
  with pytest.raises(ValueError, match=r"\[S, 2I\]"):
    gemm_swiglu.swiglu_in_tokens(x, w[:16], "xla")


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("rows", [300, 64])
def test_with_gate_up_kernel_matches_the_plain_two_step_path(dtype, rows):
  # Given rows with (300) and without (64) a partial last row block, the
  # kernel that also writes gate_up gives the plain path's gate_up (the
  # rounded projection: float32 accumulation either way) within a rounding,
  # and its activation rounded once from float32 of that gate_up, so within a
  # rounding of the exact activation and within two of the plain path's
  # (which rounds silu(gate) and the product each in the dtype).
  kx, kw = jax.random.split(jax.random.key(4))
  x = jax.random.normal(kx, (rows, 64), jnp.float32).astype(dtype)
  w = (jax.random.normal(kw, (64, 2 * 128)) / 8).astype(dtype)
  h_ref, gu_ref = gemm_swiglu.swiglu_in_with_gate_up(x, w, "xla")
  h, gu = gemm_swiglu.swiglu_in_with_gate_up(x, w, "interpret")
  assert h.dtype == gu.dtype == dtype
  assert h.shape == (rows, 128) and gu.shape == (rows, 256)
  tol = 1e-5 if dtype == jnp.float32 else 2.0 ** -8
  for got, want, t in ((gu, gu_ref, tol), (h, h_ref, 2 * tol)):
    got, want = np.float32(got), np.float32(want)
    np.testing.assert_allclose(got, want, rtol=t, atol=t * np.abs(want).max())
  # h is the activation of the returned gate_up (what the backward recomputes).
  gate, up = np.split(np.float32(gu), 2, axis=-1)
  act = gate / (1 + np.exp(-gate)) * up
  np.testing.assert_allclose(np.float32(h), act, rtol=tol, atol=tol * np.abs(act).max())
