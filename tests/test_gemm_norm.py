"""recur.kernels.gemm_norm: the output projection + residual add + RMSNorm
kernel (interpret mode on the CPU) against its plain-JAX reference, and the
reference against the model's unfused expression."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recur import layers
from recur.kernels import gemm_norm

EPS = 1e-5


def _inputs(b, s, sa, e, d, dtype, seed=0):
  """a [b, sa, e] (rows past s zero), w [e, d], res [b, s, d]."""
  k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
  a = jax.random.normal(k1, (b, sa, e)).at[:, s:].set(0.0)
  w = jax.random.normal(k2, (e, d)) / np.sqrt(e)
  res = jax.random.normal(k3, (b, s, d))
  return a.astype(dtype), w.astype(dtype), res.astype(dtype)


def _assert_close(got, want, dtype):
  # Same float32 maths rounded once: a few float32 ulps apart, or one ulp of
  # bf16 (relative 2^-8 of the largest magnitude covers the rounding step).
  tol = 1e-5 if dtype == jnp.float32 else 2.0 ** -8
  got, want = np.float32(got), np.float32(want)
  np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())


# (b, s, sa, e, d): the row block is 64 at these widths, so S = 100 is one
# full and one partial row tile; Sa = 100 (the SwiGLU activation), 160 (the
# last tile inside a's padding) or 110 (the last tile past a's end too);
# E = 64 (one K step), 192 (three: SwiGLU's 1536 scaled down).
SHAPES = [(2, 100, 100, 192, 128), (2, 100, 160, 64, 256),
          (1, 100, 110, 192, 128), (3, 37, 64, 64, 128)]


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("b,s,sa,e,d", SHAPES)
def test_kernel_matches_reference(dtype, b, s, sa, e, d):
  # Given a (possibly padded) mixer output, a projection and the residual,
  # when the kernel runs in interpret mode, then y equals the plain-JAX
  # reference, in res's dtype and shape.
  a, w, res = _inputs(b, s, sa, e, d, dtype)
  assert gemm_norm.kernel_fits(e, d, jnp.dtype(dtype).itemsize)
  want = gemm_norm.proj_add_norm_reference(a, w, res, EPS)
  got = gemm_norm.proj_add_norm(a, w, res, EPS, "interpret")
  assert got.dtype == dtype and got.shape == (b, s, d)
  _assert_close(got, want, dtype)
  # The rows are normalised: mean square 1 (within the rounding).
  ms = np.mean(np.square(np.float32(got)), axis=-1)
  np.testing.assert_allclose(ms, 1.0, rtol=1e-2 if dtype == jnp.bfloat16 else 1e-4)


@pytest.mark.parametrize("fill", [3.0e4, np.nan])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_padding_rows_do_not_reach_the_result(fill, dtype):
  # Given a padded a whose rows past S hold large values or NaN (the last row
  # tile, rows 64..127, reads rows 100..127 of them), then the kernel's y is
  # exactly what it is with zero padding, and matches the reference.
  b, s, sa, e, d = 2, 100, 160, 192, 128
  a, w, res = _inputs(b, s, sa, e, d, dtype, seed=1)
  dirty = a.at[:, s:].set(jnp.asarray(fill, dtype))
  clean = gemm_norm.proj_add_norm(a, w, res, EPS, "interpret")
  got = gemm_norm.proj_add_norm(dirty, w, res, EPS, "interpret")
  assert np.all(np.isfinite(np.float32(got)))
  np.testing.assert_array_equal(np.float32(got), np.float32(clean))
  _assert_close(got, gemm_norm.proj_add_norm_reference(dirty, w, res, EPS), dtype)


@pytest.mark.parametrize("sa", [100, 128])
def test_reference_is_the_model_expression(sa):
  # In float32 the reference is today's unfused block expression,
  # rms_norm(res + a[:, :S] @ w).
  s = 100
  a, w, res = _inputs(2, s, sa, 192, 128, jnp.float32, seed=2)
  a = a.at[:, s:].set(7.0)
  model = layers.rms_norm(res + a[:, :s] @ w, EPS)
  ref = gemm_norm.proj_add_norm_reference(a, w, res, EPS)
  np.testing.assert_allclose(ref, model, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("e,d", [(64, 96), (24, 128), (64, 64)])
def test_shapes_the_kernel_does_not_take_use_the_reference(e, d):
  # Given a width that is not a power of two >= 128, or a contraction with no
  # K step that divides it, the kernel is not used and every impl returns
  # the reference.
  assert not gemm_norm.kernel_fits(e, d)
  a, w, res = _inputs(2, 20, 24, e, d, jnp.float32, seed=3)
  want = gemm_norm.proj_add_norm_reference(a, w, res, EPS)
  for impl in gemm_norm.IMPLS:
    np.testing.assert_array_equal(gemm_norm.proj_add_norm(a, w, res, EPS, impl),
                                  want)


def test_pallas_impl_is_plain_jax_off_gpu_and_casts_the_weight():
  # impl "pallas" runs the kernel only on GPUs (chosen at lowering): on the
  # CPU, under jit, it is the reference. A float32 weight is cast to a's
  # dtype first, as the model's projections do.
  a, w, res = _inputs(2, 100, 128, 64, 128, jnp.bfloat16, seed=4)
  w32 = w.astype(jnp.float32)
  got = jax.jit(lambda a, w, r: gemm_norm.proj_add_norm(a, w, r, EPS))(a, w32, res)
  np.testing.assert_array_equal(got, gemm_norm.proj_add_norm_reference(a, w, res, EPS))
  assert got.dtype == jnp.bfloat16


def test_paper_shapes_block_configuration():
  # TRM-Att ARC (D = 512; E = 512 for attention's o, 1536 for SwiGLU's down),
  # bf16: 64 rows x 512 float32 accumulators, K steps of 64, three pipeline
  # stages in 216 KiB of shared memory; float32 inputs halve the K step.
  for e in (512, 1536):
    assert gemm_norm.block_sizes(e, 512, 2) == (64, 64, 3)
    assert gemm_norm.block_sizes(e, 512, 4) == (64, 32, 3)
  for e, d, size in ((512, 512, 2), (512, 512, 4), (1536, 1024, 2), (64, 2048, 4)):
    cfg = gemm_norm.block_sizes(e, d, size)
    if cfg is not None:
      bm, bk, stages = cfg
      assert bm * d <= gemm_norm.ACC_ELEMENTS and e % bk == 0
      assert stages * bk * (bm + d) * size <= gemm_norm.SHARED_BYTES


def test_rejects_inconsistent_shapes():
  a, w, res = _inputs(1, 20, 20, 64, 128, jnp.float32)
  with pytest.raises(ValueError, match="Sa >= S"):
    gemm_norm.proj_add_norm(a[:, :10], w, res, EPS, "interpret")
  with pytest.raises(ValueError, match="impl"):
    gemm_norm.proj_add_norm(a, w, res, EPS, "cuda")
