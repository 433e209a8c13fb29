"""Attention kernels against XLA's plain attention, on the CPU.

* The padded + key-masked path (what the cuDNN implementation runs for lengths
  cuDNN refuses, e.g. HRM's 901) equals the unpadded attention, forward and
  gradient; run here with XLA as the kernel, since cuDNN needs a GPU.
* The Pallas TPU kernels, in Pallas's TPU interpret mode, equal XLA attention
  forward and gradient: recur's lane-dense kernel (ragged q blocks) and, for
  sequences over its limit, jax's flash kernel on an unaligned length (padded
  to 128 and masked with segment ids).
* The choice of implementation is explicit per platform.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recur import attention, layers

B, N, K = 2, 2, 16


def _qkv_ct(s, seed=0):
  ks = jax.random.split(jax.random.PRNGKey(seed), 4)
  q, k, v, ct = (jax.random.normal(x, (B, s, N, K), jnp.float32) for x in ks)
  return q, k, v, ct


def _value_and_grads(fn, q, k, v, ct):
  def loss(q, k, v):
    return jnp.sum(fn(q, k, v) * ct)
  out = fn(q, k, v)
  return out, jax.grad(loss, (0, 1, 2))(q, k, v)


def _xla(q, k, v):
  return attention.dot_product_attention(q, k, v, "xla")


def _assert_close(a, b, tol):
  a, b = np.asarray(a), np.asarray(b)
  assert np.abs(b).max() > 1e-3, "reference is (near) zero: test would be vacuous"
  np.testing.assert_allclose(a, b, atol=tol, rtol=tol)


@pytest.mark.parametrize("s,to", [(33, 64), (901 // 10, 96)])
def test_padded_masked_equals_unpadded(s, to):
  q, k, v, ct = _qkv_ct(s)
  padded = lambda q, k, v: attention.padded_masked(q, k, v, to, "xla")
  out, grads = _value_and_grads(padded, q, k, v, ct)
  ref_out, ref_grads = _value_and_grads(_xla, q, k, v, ct)
  assert out.shape == ref_out.shape
  _assert_close(out, ref_out, 1e-5)
  for g, r in zip(grads, ref_grads):
    _assert_close(g, r, 1e-5)


def test_padded_without_mask_would_differ():
  # The masking matters: plain zero padding changes the softmax denominators.
  q, k, v, _ = _qkv_ct(33)
  pad = lambda x: jnp.pad(x, ((0, 0), (0, 31), (0, 0), (0, 0)))
  unmasked = _xla(pad(q), pad(k), pad(v))[:, :33]
  assert np.abs(np.asarray(unmasked - _xla(q, k, v))).max() > 1e-3


def _pallas_parity(q, k, v, ct, tol, rope=None):
  from jax.experimental.pallas import tpu as pltpu
  flash = lambda q, k, v: attention.dot_product_attention(q, k, v, "pallas_tpu",
                                                          rope)
  with pltpu.force_tpu_interpret_mode():
    out, grads = _value_and_grads(jax.jit(flash), q, k, v, ct)
  if rope is None:
    ref = _xla
  else:
    ref = lambda q, k, v: _xla(layers.apply_rope(q, *rope),
                               layers.apply_rope(k, *rope), v)
  ref_out, ref_grads = _value_and_grads(ref, q, k, v, ct)
  _assert_close(out, ref_out, tol)
  for g, r in zip(grads, ref_grads):
    _assert_close(g, r, tol)


@pytest.mark.parametrize("n,kd", [(2, 64), (2, 128)])
def test_lane_dense_tpu_kernel_interpret_parity(monkeypatch, n, kd):
  # recur/attention_tpu.py on [B, S, N*K]: (2, 64) is one 128-lane block of
  # two heads, (2, 128) two blocks of one head. 16-row q blocks over 37 rows:
  # three blocks, the last ragged, dK/dV accumulated across them.
  from recur import attention_tpu
  monkeypatch.setattr(attention_tpu, "Q_BLOCK", 16)
  s = 37
  assert attention_tpu.supported(s, n, kd)
  ks = jax.random.split(jax.random.PRNGKey(2), 4)
  q, k, v, ct = (jax.random.normal(x, (1, s, n, kd), jnp.float32) for x in ks)
  _pallas_parity(q, k, v, ct, 2e-5)
  # RoPE inside the kernel equals layers.apply_rope before XLA attention.
  _pallas_parity(q, k, v, ct, 2e-5, rope=layers.rope_tables(kd, s, 1e4))


def test_pallas_tpu_flash_attention_interpret_parity(monkeypatch):
  # Sequences over attention_tpu.MAX_SEQ (and models narrower than 128 lanes,
  # as here: 2 x 16) run jax's flash kernel.
  from jax.experimental.pallas import tpu as pltpu
  from recur import attention_tpu
  monkeypatch.setattr(attention_tpu, "MAX_SEQ", 16)
  s = 37   # padded to 128 inside, the 91 padded keys masked by segment ids
  assert not attention_tpu.supported(s, N, K)
  q, k, v, ct = _qkv_ct(s, seed=1)
  flash = lambda q, k, v: attention.dot_product_attention(q, k, v, "pallas_tpu")
  with pltpu.force_tpu_interpret_mode():
    out, grads = _value_and_grads(jax.jit(flash), q, k, v, ct)
  ref_out, ref_grads = _value_and_grads(_xla, q, k, v, ct)
  _assert_close(out, ref_out, 2e-5)
  for g, r in zip(grads, ref_grads):
    _assert_close(g, r, 2e-5)


def test_resolve_impl_is_explicit_per_platform():
  r = attention.resolve_impl
  assert r(None, "gpu", dtype=jnp.bfloat16, head_dim=64) == "cudnn"
  assert r("auto", "tpu", dtype=jnp.bfloat16, head_dim=64) == "pallas_tpu"
  assert r(None, "cpu", dtype=jnp.bfloat16, head_dim=64) == "xla"
  # cuDNN's fused kernel is bf16/fp16 only: f32 on a GPU goes to XLA.
  assert r(None, "gpu", dtype=jnp.float32, head_dim=64) == "xla"
  assert r("xla", "tpu") == "xla"
  with pytest.raises(ValueError, match="attention_impl"):
    r("flash", "gpu")
  assert attention.padded_len(901, "cudnn") == 960
  assert attention.padded_len(916, "pallas_tpu") == 1024
  assert attention.padded_len(901, "xla") == 901


def test_layer_attention_uses_the_configured_kernel():
  # The block's attention with impl "pallas_tpu" (interpret mode) equals "xla".
  from jax.experimental.pallas import tpu as pltpu
  cfg = layers.LayerConfig(hidden_size=32, num_heads=2, expansion=4.0,
                           seq_len=21, attention_impl="xla")
  p = layers.init_stack(jax.random.PRNGKey(0), cfg, 1)
  p = {k: v[0] for k, v in p.items() if k in ("qkv", "o")}
  x = jax.random.normal(jax.random.PRNGKey(1), (2, 21, 32))
  rope = layers.rope_tables(16, 21, 1e4)
  attn = lambda impl: layers.Attention(2, 16, impl)
  ref = attn("xla").apply({"params": p}, x, rope)
  with pltpu.force_tpu_interpret_mode():
    got = jax.jit(lambda x: attn("pallas_tpu").apply({"params": p}, x, rope))(x)
  _assert_close(got, ref, 2e-5)


def test_apply_rope_equals_rotate_half_exactly():
  # apply_rope swaps the halves with a reverse (one fusable loop); it must be
  # bit for bit the reference's x * cos + rotate_half(x) * sin.
  s, kd = 7, 16
  cos, sin = layers.rope_tables(kd, s, 1e4)
  for dtype in (jnp.float32, jnp.bfloat16):
    x = jax.random.normal(jax.random.PRNGKey(3), (2, s, 3, kd), dtype)
    xf = x.astype(jnp.float32)
    x1, x2 = jnp.split(xf, 2, axis=-1)
    rotated = jnp.concatenate([-x2, x1], axis=-1)
    ref = (xf * cos[:, None] + rotated * sin[:, None]).astype(dtype)
    got = layers.apply_rope(x, cos, sin)
    assert got.dtype == dtype
    np.testing.assert_array_equal(np.asarray(got, np.float32),
                                  np.asarray(ref, np.float32))


@pytest.mark.parametrize("s,to,masked", [(46, 46, False), (45, 46, True)])
def test_cudnn_even_pads_only_odd_lengths(monkeypatch, s, to, masked):
  # "cudnn_even" hands cuDNN an even length as it is (no pad, no slice) and
  # pads an odd one by one masked key; jax's cuDNN call is stood in for by XLA
  # (cuDNN needs a GPU), recording the shapes and masks it is given.
  assert attention.padded_len(916, "cudnn_even") == 916
  assert attention.padded_len(901, "cudnn_even") == 902
  calls = []
  real = jax.nn.dot_product_attention

  def stand_in(q, k, v, **kw):
    assert kw.pop("implementation") == "cudnn"
    calls.append((q.shape[1], kw.get("key_value_seq_lengths") is not None))
    return real(q, k, v, implementation="xla", **kw)

  monkeypatch.setattr(jax.nn, "dot_product_attention", stand_in)
  q, k, v, ct = _qkv_ct(s)
  even = lambda q, k, v: attention.dot_product_attention(q, k, v, "cudnn_even")
  out, grads = _value_and_grads(even, q, k, v, ct)
  assert calls and set(calls) == {(to, masked)}
  monkeypatch.setattr(jax.nn, "dot_product_attention", real)
  ref_out, ref_grads = _value_and_grads(_xla, q, k, v, ct)
  _assert_close(out, ref_out, 1e-5)
  for g, r in zip(grads, ref_grads):
    _assert_close(g, r, 1e-5)


def test_dots_remat_keeps_cudnn_inputs(monkeypatch, capsys):
  # The q, k, v handed to cuDNN (padded) are named, and the `dots*` remat
  # policies keep them, so the backward does not redo RoPE, split and pad;
  # "full" keeps none. XLA stands in for cuDNN (no GPU here).
  from recur import recursion
  real = jax.nn.dot_product_attention

  def stand_in(q, k, v, **kw):
    assert kw.pop("implementation") == "cudnn"
    return real(q, k, v, implementation="xla", **kw)

  monkeypatch.setattr(jax.nn, "dot_product_attention", stand_in)
  q, k, v, _ = _qkv_ct(45)
  attn = lambda q, k, v: jnp.sum(attention.dot_product_attention(q, k, v, "cudnn"))
  for policy, kept in (("dots_with_no_batch_dims_saveable", 3), ("full", 0)):
    f = jax.checkpoint(attn, policy=recursion.remat_policy(policy))
    jax.ad_checkpoint.print_saved_residuals(f, q, k, v)
    saved = capsys.readouterr().out
    assert saved.count(f"named '{attention.CUDNN_INPUT_NAME}'") == kept, saved
    assert saved.count(f"[{B},64,{N},{K}]") == kept, saved
