"""Pallas kernels of recur.kernels against their plain-JAX paths (interpret
mode on the CPU), and the switch that turns them off."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recur import layers
from recur.kernels import add_rms_norm, swiglu


def _inputs(shape, inner, dtype, seed=0):
  k1, k2, k3, k4 = jax.random.split(jax.random.key(seed), 4)
  gu = (2 * jax.random.normal(k1, shape + (2 * inner,))).astype(dtype)
  dh = jax.random.normal(k2, shape + (inner,)).astype(dtype)
  w = (jax.random.normal(k3, (inner, 24)) / np.sqrt(inner)).astype(dtype)
  dy = jax.random.normal(k4, shape + (24,)).astype(dtype)
  return gu, dh, w, dy


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("shape,inner", [((2, 37), 512), ((5,), 256)])
def test_swiglu_bwd_kernel_matches_plain_jax(dtype, shape, inner):
  # Given rows not a multiple of the kernel's row block (37 x 2, 5) and an
  # inner width that is (512) or is not (256) a multiple of its column block,
  # when the one-pass kernel runs in interpret mode, then h and d gate_up
  # equal the plain-JAX expressions.
  gu, dh, _, _ = _inputs(shape, inner, dtype)
  h_ref, dgu_ref = swiglu.swiglu_bwd(gu, dh, "xla")
  h, dgu = swiglu.swiglu_bwd(gu, dh, "interpret")
  assert h.dtype == dtype and dgu.dtype == dtype
  assert h.shape == dh.shape and dgu.shape == gu.shape
  # Same float32 maths, so at most a rounding apart: a few float32 ulps, or
  # one ulp of the result dtype.
  tol = 1e-5 if dtype == jnp.float32 else 2.0 ** -8
  for got, want in ((h, h_ref), (dgu, dgu_ref)):
    got, want = np.float32(got), np.float32(want)
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())


def test_swiglu_bwd_is_the_derivative_of_the_activation():
  # The plain-JAX backward (what the kernel is held to) is autodiff's: h is
  # silu(gate) * up and d gate_up its vector-Jacobian product, in float32.
  gu, dh, _, _ = _inputs((3, 4), 256, jnp.float32)
  act = lambda x: jax.nn.silu(x[..., :256]) * x[..., 256:]
  h, vjp = jax.vjp(act, gu)
  h_k, dgu_k = swiglu.swiglu_bwd(gu, dh, "xla")
  np.testing.assert_allclose(h_k, h, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(dgu_k, vjp(dh)[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("impl", ["interpret", "pallas", "xla"])
def test_swiglu_down_value_and_grads_match_autodiff(impl):
  # Given swiglu_down with each backward, its value and gradients (gate_up
  # and w_down) are those of the plain expression differentiated by JAX.
  gu, _, w, dy = _inputs((2, 19), 512, jnp.float32, seed=1)

  def plain(gu, w):
    gate, up = jnp.split(gu, 2, axis=-1)
    return jnp.einsum("...i,io->...o", jax.nn.silu(gate) * up, w)

  y_ref, vjp_ref = jax.vjp(plain, gu, w)
  y, vjp = jax.vjp(lambda a, b: swiglu.swiglu_down(a, b, impl), gu, w)
  np.testing.assert_array_equal(y, y_ref)
  for got, want in zip(vjp(dy), vjp_ref(dy)):
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("impl", ["interpret", "xla"])
def test_token_mixing_swiglu_down_matches_autodiff(impl):
  # Given TRM-MLP's token mixing (gate_up [B, D, 2I], down projection [I, S],
  # result [B, S, D]), value and gradients are autodiff's.
  k1, k2, k3 = jax.random.split(jax.random.key(6), 3)
  gu = jax.random.normal(k1, (3, 8, 2 * 256))
  w = jax.random.normal(k2, (256, 11)) / 16
  dy = jax.random.normal(k3, (3, 11, 8))

  def plain(gu, w):
    gate, up = jnp.split(gu, 2, axis=-1)
    return jnp.einsum("bdi,is->bsd", jax.nn.silu(gate) * up, w)

  y_ref, vjp_ref = jax.vjp(plain, gu, w)
  y, vjp = jax.vjp(lambda a, b: swiglu.swiglu_down(a, b, impl, True), gu, w)
  np.testing.assert_array_equal(y, y_ref)
  for got, want in zip(vjp(dy), vjp_ref(dy)):
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)


def test_swiglu_bwd_rejects_unknown_impl():
  gu, dh, _, _ = _inputs((2,), 256, jnp.float32)
  with pytest.raises(ValueError, match="swiglu impl must be one of"):
    swiglu.swiglu_bwd(gu, dh, "triton")


@pytest.mark.parametrize("mlp_t", [False, True])
def test_fused_kernels_switch_keeps_the_block_and_its_gradient(mlp_t):
  # Given a block (attention or token mixing) with fused_kernels on and off,
  # the outputs are identical (the forward is the same expression) and the
  # parameter gradients agree.
  cfg = layers.LayerConfig(hidden_size=128, num_heads=2, expansion=4.0,
                           seq_len=10, attention_impl="xla", mlp_t=mlp_t,
                           fused_kernels=True)
  x = jax.random.normal(jax.random.key(2), (3, 10, 128), jnp.bfloat16)
  params = layers.init_stack(jax.random.key(3), cfg, 1)
  params = jax.tree.map(lambda p: p[0], params)
  rope = layers.rope_tables(cfg.head_dim, cfg.seq_len, 10000.0)

  def loss(p, c):
    y = layers.Block(c, dtype=jnp.bfloat16).apply({"params": p}, x, rope)
    return jnp.sum(jnp.square(y.astype(jnp.float32)))

  off = dataclasses.replace(cfg, fused_kernels=False)
  l_on, g_on = jax.value_and_grad(loss)(params, cfg)
  l_off, g_off = jax.value_and_grad(loss)(params, off)
  assert l_on == l_off
  for a, b in zip(jax.tree.leaves(g_on), jax.tree.leaves(g_off)):
    np.testing.assert_allclose(a, b, rtol=2e-2, atol=2e-2 * float(jnp.abs(b).max()))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_add_rms_norm_bwd_kernel_matches_plain_jax(dtype):
  # Given 2 x 21 rows (not a multiple of the row block) of width 256, when
  # the one-pass backward kernel runs in interpret mode, then d(a + b) equals
  # the plain-JAX expression up to rounding.
  k1, k2, k3 = jax.random.split(jax.random.key(4), 3)
  a, b, g = (jax.random.normal(k, (2, 21, 256)).astype(dtype) for k in (k1, k2, k3))
  want = np.float32(add_rms_norm.add_rms_norm_bwd(a, b, g, 1e-5, "xla"))
  got = add_rms_norm.add_rms_norm_bwd(a, b, g, 1e-5, "interpret")
  assert got.dtype == dtype and got.shape == a.shape
  tol = 1e-5 if dtype == jnp.float32 else 2.0 ** -8
  np.testing.assert_allclose(np.float32(got), want, rtol=tol,
                             atol=tol * np.abs(want).max())


@pytest.mark.parametrize("impl", ["interpret", "pallas", "xla"])
def test_add_rms_norm_value_and_grads_match_the_plain_norm(impl):
  # Given rms(a + b) through the fused op, its value is layers.rms_norm's of
  # the sum, bit for bit, and both gradients are autodiff's of the plain
  # expression (rms_norm's own VJP).
  k1, k2, k3 = jax.random.split(jax.random.key(5), 3)
  a, b, g = (jax.random.normal(k, (3, 7, 128)) for k in (k1, k2, k3))
  y_ref, vjp_ref = jax.vjp(lambda a, b: layers.rms_norm(a + b, 1e-5), a, b)
  y, vjp = jax.vjp(lambda a, b: add_rms_norm.add_rms_norm(a, b, 1e-5, impl), a, b)
  np.testing.assert_array_equal(y, y_ref)
  for got, want in zip(vjp(g), vjp_ref(g)):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_add_rms_norm_takes_the_plain_path_for_widths_the_kernel_cannot_tile():
  # A width that is no power of two (96) is normalised by the plain path,
  # whatever the impl; an unknown impl is refused by name.
  assert not add_rms_norm.kernel_fits(96) and add_rms_norm.kernel_fits(512)
  a = jnp.ones((2, 96))
  np.testing.assert_array_equal(
      add_rms_norm.add_rms_norm_bwd(a, a, a, 1e-5, "interpret"),
      add_rms_norm.add_rms_norm_bwd(a, a, a, 1e-5, "xla"))
  with pytest.raises(ValueError, match="add_rms_norm impl must be one of"):
    add_rms_norm.add_rms_norm_bwd(a, a, a, 1e-5, "cuda")


def test_dots_remat_policy_keeps_the_matmul_inside_the_swiglu_vjp(capsys):
  # Given a block under jax.checkpoint with the accelerators' default policy,
  # the SwiGLU's projections gate_up and down (inside a custom VJP, so not
  # visible dots) are saved by name like the other matmul outputs, and the
  # activation is not.
  from recur import recursion  # pylint: disable=g-import-not-at-top
  cfg = layers.LayerConfig(hidden_size=128, num_heads=2, expansion=4.0,
                           seq_len=10, attention_impl="xla", fused_kernels=True)
  params = jax.tree.map(lambda p: p[0], layers.init_stack(jax.random.key(3), cfg, 1))
  x = jnp.ones((2, 10, 128), jnp.bfloat16)
  f = jax.checkpoint(
      lambda p, x: layers.Block(cfg, dtype=jnp.bfloat16).apply({"params": p}, x),
      policy=recursion.remat_policy("dots_with_no_batch_dims_saveable"))
  jax.ad_checkpoint.print_saved_residuals(f, params, x)
  saved = capsys.readouterr().out
  assert f"bf16[2,10,128] named '{layers.DOT_OUTPUT_NAME}'" in saved
  inner = layers.swiglu_width(128, 4.0)
  assert f"bf16[2,10,{2 * inner}] named '{layers.DOT_OUTPUT_NAME}'" in saved
  assert f"bf16[2,10,{inner}]" not in saved      # silu(gate) * up: recomputed
  assert saved.count("output of dot_general") == 2   # qkv, o


@pytest.mark.parametrize("impl", ["interpret", "pallas", "xla"])
def test_swiglu_mlp_value_and_grads_match_autodiff(impl):
  # Given the whole channel SwiGLU through its custom VJP (projection +
  # activation kernel writing gate_up under differentiation, the activation
  # only without), in float32 on rows with a partial last kernel block, its
  # value (both ways) and its gradients (x and both weights) are those of the
  # plain expression differentiated by JAX.
  k1, k2, k3, k4 = jax.random.split(jax.random.key(7), 4)
  x = jax.random.normal(k1, (3, 50, 64))
  w_gu = jax.random.normal(k2, (64, 2 * 128)) / 8
  w_down = jax.random.normal(k3, (128, 64)) / 11
  dy = jax.random.normal(k4, (3, 50, 64))

  def plain(x, w_gu, w_down):
    gate, up = jnp.split(x @ w_gu, 2, axis=-1)
    return (jax.nn.silu(gate) * up) @ w_down

  y_ref, vjp_ref = jax.vjp(plain, x, w_gu, w_down)
  f = lambda *a: swiglu.swiglu_mlp(*a, impl)
  np.testing.assert_allclose(f(x, w_gu, w_down), y_ref, rtol=2e-5, atol=2e-5)
  y, vjp = jax.vjp(f, x, w_gu, w_down)
  np.testing.assert_allclose(y, y_ref, rtol=2e-5, atol=2e-5)
  for got, want in zip(vjp(dy), vjp_ref(dy)):
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5 * float(jnp.abs(want).max()))
