"""recur.kernels.gemm_qkv: the q/k/v projection kernel (interpret mode on the
CPU) against its plain-JAX reference, and the reference against today's
unfused expressions (recur.layers.apply_rope, recur.attention._pad_seq)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recur import attention, layers
from recur.kernels import gemm_qkv

# Small blocks so the test shapes have several row tiles and K steps.
BLOCKS = dict(block_rows=16, block_k=32)


def _inputs(b, s, d, n, kd, dtype, seed=0, with_rope=True):
  k1, k2 = jax.random.split(jax.random.key(seed))
  x = jax.random.normal(k1, (b, s, d)).astype(dtype)
  w = (jax.random.normal(k2, (d, 3 * n * kd)) / np.sqrt(d)).astype(dtype)
  rope = layers.rope_tables(kd, s, 10000.0) if with_rope else None
  return x, w, rope


def _today(x, w, n, rope, seq_to):
  """The unfused path: projection, [B, S, 3N, K] split, RoPE on q and k,
  zero rows to seq_to (recur.attention.qkv_attention / padded_masked)."""
  b, s, _ = x.shape
  qkv = layers._dense(x, w).reshape(b, s, 3 * n, -1)  # pylint: disable=protected-access
  q, k, v = qkv[:, :, :n], qkv[:, :, n:2 * n], qkv[:, :, 2 * n:]
  if rope is not None:
    q, k = layers.apply_rope(q, *rope), layers.apply_rope(k, *rope)
  return tuple(attention._pad_seq(t, seq_to) for t in (q, k, v))  # pylint: disable=protected-access


# (S, seq_to) with 16-row tiles: a last tile past S and past seq_to (40 ->
# 48: rows 32..47, S ends at 40), seq_to == S with a partial last tile (40),
# whole tiles past S (20 -> 64: tiles 2 and 3 read no rows of x), both
# multiples of the tile (32 -> 32), HRM's odd length made even (9 -> 10).
SEQS = [(40, 48), (40, 40), (20, 64), (32, 32), (9, 10)]


@pytest.mark.parametrize("with_rope", [True, False])
@pytest.mark.parametrize("s,seq_to", SEQS)
def test_kernel_matches_reference_f32(s, seq_to, with_rope):
  # Given float32 inputs, when the kernel runs in interpret mode, then q, k,
  # v [B, seq_to, N, K] equal the plain reference to float32 rounding (the
  # K loop sums in another order), and rows >= S are exactly zero.
  x, w, rope = _inputs(2, s, 64, 2, 16, jnp.float32, with_rope=with_rope)
  got = gemm_qkv.qkv_rope(x, w, 2, rope, seq_to, "interpret", **BLOCKS)
  want = gemm_qkv.qkv_rope_reference(x, w, 2, rope, seq_to)
  for g, r in zip(got, want):
    assert g.shape == (2, seq_to, 2, 16) and g.dtype == jnp.float32
    np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5 * np.abs(r).max())
    np.testing.assert_array_equal(g[:, s:], 0.0)


def _ulp_bf16(a):
  """bf16's spacing at |a| (8 significant bits), for a != 0."""
  return 2.0 ** (np.floor(np.log2(np.abs(a))) - 7)


@pytest.mark.parametrize("s,seq_to", [(40, 48), (40, 40)])
def test_kernel_matches_reference_bf16(s, seq_to):
  # Given bf16 inputs, the kernel and the reference each round one float32
  # value once, so they are at most one bf16 ulp apart; and each is within
  # half an ulp (plus float32 rounding) of the exact float32 result: RoPE
  # applied before the one rounding, not after a rounded projection.
  x, w, rope = _inputs(3, s, 128, 2, 32, jnp.bfloat16, seed=1)
  got = gemm_qkv.qkv_rope(x, w, 2, rope, seq_to, "interpret", **BLOCKS)
  want = gemm_qkv.qkv_rope_reference(x, w, 2, rope, seq_to)
  exact = gemm_qkv.qkv_rope_reference(x.astype(jnp.float32),
                                      w.astype(jnp.float32), 2, rope, seq_to)
  for g, r, e in zip(got, want, exact):
    assert g.dtype == jnp.bfloat16
    g, r, e = np.float32(g), np.float32(r), np.float32(e)
    np.testing.assert_array_equal(g[:, s:], 0.0)
    nz = (g != 0) | (r != 0)
    assert np.all(g[~nz] == r[~nz])
    ulp = _ulp_bf16(np.maximum(np.abs(g), np.abs(r))[nz])
    assert np.all(np.abs(g - r)[nz] <= ulp)
    big = np.abs(e) > 1e-3   # away from cancellation, where f32's own error shows
    half_ulp = 0.5 * _ulp_bf16(e[big]) + 1e-5 * np.abs(e[big])
    assert np.all(np.abs(g[big] - e[big]) <= half_ulp)


@pytest.mark.parametrize("with_rope", [True, False])
@pytest.mark.parametrize("s,seq_to", [(40, 48), (40, 40), (9, 10)])
def test_reference_is_todays_expression_f32(s, seq_to, with_rope):
  # In float32 (nothing rounded in between) the reference is today's path:
  # the fused projection split into heads, apply_rope on q and k, _pad_seq.
  x, w, rope = _inputs(2, s, 64, 2, 16, jnp.float32, seed=2,
                       with_rope=with_rope)
  ref = jax.jit(lambda x, w, rope: gemm_qkv.qkv_rope_reference(
      x, w, 2, rope, seq_to))(x, w, rope)
  today = jax.jit(lambda x, w, rope: _today(x, w, 2, rope, seq_to))(x, w, rope)
  for r, t in zip(ref, today):
    np.testing.assert_array_equal(r, t)


def test_paper_head_layout():
  # TRM's heads (N=8, K=64) and the default H200 blocks (128 rows, K steps
  # of 64): 130 -> 192 rows, the second tile partial.
  x, w, rope = _inputs(1, 130, 64, 8, 64, jnp.float32, seed=3)
  got = gemm_qkv.qkv_rope(x, w, 8, rope, 192, "interpret")
  want = gemm_qkv.qkv_rope_reference(x, w, 8, rope, 192)
  for g, r in zip(got, want):
    np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5 * np.abs(r).max())


@pytest.mark.parametrize("impl", ["pallas", "xla"])
def test_plain_paths_on_cpu_are_the_reference(impl):
  # On the CPU "pallas" lowers to the plain reference (backends.by_platform),
  # as "xla" always does.
  x, w, rope = _inputs(2, 40, 64, 2, 16, jnp.float32, seed=4)
  run = lambda f: jax.jit(lambda x, w, rope: f(x, w, 2, rope, 48))(x, w, rope)
  got = run(lambda *a: gemm_qkv.qkv_rope(*a, impl))
  want = run(gemm_qkv.qkv_rope_reference)
  for g, r in zip(got, want):
    np.testing.assert_array_equal(g, r)


def test_rejects_bad_arguments():
  x, w, rope = _inputs(1, 8, 32, 2, 8, jnp.float32)
  with pytest.raises(ValueError, match="impl"):
    gemm_qkv.qkv_rope(x, w, 2, rope, 8, "cuda")
  with pytest.raises(ValueError, match="seq_to"):
    gemm_qkv.qkv_rope(x, w, 2, rope, 7)
  with pytest.raises(ValueError, match="rope tables"):
    gemm_qkv.qkv_rope(x, w, 2, layers.rope_tables(8, 9, 1e4), 8)
  with pytest.raises(ValueError, match="w_qkv"):
    gemm_qkv.qkv_rope(x, w[:, :40], 2, rope, 8)


@pytest.mark.parametrize("kernel_impl", ["interpret", "xla"])
@pytest.mark.parametrize("with_rope", [True, False])
def test_projected_qkv_value_and_grads_are_the_plain_expressions(kernel_impl,
                                                                 with_rope):
  # Given the differentiable q/k/v projection (the kernel forward, the plain
  # expression's backward), in float32 with padding 40 -> 48 and a partial
  # last row tile, its value and its gradients (x and w) are those of the
  # plain split + RoPE + pad differentiated by JAX.
  kx, kw, kg = jax.random.split(jax.random.key(11), 3)
  b, s, d, n, kd = 2, 40, 64, 2, 32
  x = jax.random.normal(kx, (b, s, d))
  w = jax.random.normal(kw, (d, 3 * n * kd)) / 8
  rope = layers.rope_tables(kd, s, 1e4) if with_rope else None
  plain = lambda x, w: attention._plain_qkv(x, w, rope, n, 48)  # pylint: disable=protected-access
  f = lambda x, w: attention.projected_qkv(x, w, rope, n, 48, kernel_impl)
  want, vjp_ref = jax.vjp(plain, x, w)
  got, vjp = jax.vjp(f, x, w)
  for a, c in zip(got, want):
    assert a.shape == (b, 48, n, kd)
    np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-5)
  g = tuple(jax.random.normal(k, t.shape) for k, t in
            zip(jax.random.split(kg, 3), want))
  for a, c in zip(vjp(g), vjp_ref(g)):
    np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-5 * float(jnp.abs(c).max()))


@pytest.mark.parametrize("impl", ["cudnn", "cudnn_even"])
def test_projected_attention_is_qkv_attention_on_the_projection(impl,
                                                                monkeypatch):
  # Given the cuDNN layouts (40 -> 64 padded and masked; 40 even), run on the
  # CPU through XLA's masked attention, attention from x through the q/k/v
  # kernel equals qkv_attention on the plain projection: value and gradients.
  real = attention.on_padded
  monkeypatch.setattr(attention, "on_padded",
                      lambda q, k, v, s, implementation="cudnn": real(q, k, v, s, "xla"))
  monkeypatch.setattr(attention, "padded_masked",
                      lambda q, k, v, to, implementation: real(
                          *(attention._pad_seq(t, to) for t in (q, k, v)),  # pylint: disable=protected-access
                          q.shape[1], "xla")[:, :q.shape[1]])
  kx, kw = jax.random.split(jax.random.key(12))
  b, s, d, n, kd = 2, 40, 64, 2, 32
  x = jax.random.normal(kx, (b, s, d))
  w = jax.random.normal(kw, (d, 3 * n * kd)) / 8
  rope = layers.rope_tables(kd, s, 1e4)
  loss = lambda f: lambda x, w: jnp.sum(jnp.sin(f(x, w)))
  new = loss(lambda x, w: attention.projected_attention(x, w, n, impl, rope,
                                                        "interpret"))
  old = loss(lambda x, w: attention.qkv_attention(x @ w, n, impl, rope))
  (l_new, g_new), (l_old, g_old) = (jax.value_and_grad(f, (0, 1))(x, w)
                                    for f in (new, old))
  np.testing.assert_allclose(l_new, l_old, rtol=1e-5)
  for a, c in zip(g_new, g_old):
    np.testing.assert_allclose(a, c, rtol=1e-4, atol=1e-5 * float(jnp.abs(c).max()))
