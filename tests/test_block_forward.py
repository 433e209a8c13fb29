"""recur.kernels.block_forward: a block's forward as fused-epilogue matmul
kernels where nothing differentiates it, the plain block wherever something
does."""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recur import attention, layers, plans, train
from recur.kernels import block_forward

import tiny_models


def _block(mlp_t=False, seq_len=13, hidden=128, heads=2, **kw):
  cfg = layers.LayerConfig(hidden_size=hidden, num_heads=heads, expansion=4.0,
                           seq_len=seq_len, attention_impl="xla", mlp_t=mlp_t,
                           fused_kernels=False, **kw)
  params = jax.tree.map(lambda p: p[0],
                        layers.init_stack(jax.random.key(3), cfg, 1))
  rope = layers.rope_tables(cfg.head_dim, seq_len, 10000.0)
  x = jax.random.normal(jax.random.key(2), (3, seq_len, hidden), jnp.float32)
  return cfg, params, rope, x


def _plain(cfg, dtype=None):
  def f(p, h, rope):
    return layers.Block(cfg, dtype=dtype).apply({"params": p}, h, rope)
  return f


_ON_PADDED = attention.on_padded


def _xla_on_padded(q, k, v, seq_len, implementation="cudnn"):
  del implementation   # the CPU has no cuDNN: the same masked call through XLA
  return _ON_PADDED(q, k, v, seq_len, "xla")


@pytest.mark.parametrize("kernel_impl", ["xla", "interpret"])
@pytest.mark.parametrize("mlp_t,attention_impl", [(False, "xla"), (False, "cudnn"),
                                                  (False, "cudnn_even"), (True, "xla")])
def test_block_forward_is_the_plain_block(kernel_impl, mlp_t, attention_impl,
                                          monkeypatch):
  # Given a block in float32 (attention, on the padded cuDNN layout (64 and
  # even: 13 -> 64, 14), or token mixing), when its forward runs as the fused
  # kernels (interpret mode) or their plain references, then it is the plain
  # block's output up to float32 rounding.
  monkeypatch.setattr(attention, "on_padded", _xla_on_padded)
  # 20 positions: the token-mixing kernel's K steps over S (16 + a moved-back
  # partial step) run; 13 for attention: a partial row tile.
  cfg, params, rope, x = _block(mlp_t, seq_len=20 if mlp_t else 13)
  want = _plain(cfg)(params, x, rope)
  got = block_forward.block_forward(params, x, rope, cfg, attention_impl,
                                    kernel_impl=kernel_impl)
  assert got.dtype == want.dtype and got.shape == want.shape
  np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)


def test_block_forward_in_bfloat16_is_as_precise_as_the_plain_block():
  # Given bfloat16 compute, the fused forward rounds once per kernel where the
  # plain block rounds every intermediate; both start from the same rounded
  # weights and inputs, which dominate the error: against the float32 block,
  # the fused forward's error is the plain bfloat16 block's size (within 25%,
  # mean and max), and the dtypes agree with the plain block's (bf16 in, bf16
  # out; f32 in, f32 out).
  cfg, params, rope, x = _block()
  exact = np.float32(_plain(cfg)(params, x, rope))
  for h in (x.astype(jnp.bfloat16), x):
    plain = _plain(cfg, jnp.bfloat16)(params, h, rope)
    fused = block_forward.block_forward(params, h, rope, cfg, "xla",
                                        jnp.bfloat16, "interpret")
    assert fused.dtype == plain.dtype
    err_fused = np.abs(np.float32(fused) - exact)
    err_plain = np.abs(np.float32(plain) - exact)
    assert err_fused.mean() <= 1.25 * err_plain.mean(), (err_fused.mean(),
                                                         err_plain.mean())
    assert err_fused.max() <= 1.25 * err_plain.max(), (err_fused.max(),
                                                       err_plain.max())


@pytest.mark.parametrize("mlp_t", [False, True])
def test_apply_block_differentiates_the_plain_block(mlp_t):
  # Given apply_block over the plain block, its value undifferentiated is the
  # fused forward's, and under jax.vjp its value and its gradients (weights and
  # input) are exactly the plain block's.
  cfg, params, rope, x = _block(mlp_t)
  plain = _plain(cfg)
  f = functools.partial(block_forward.apply_block, plain, cfg,
                        attention_impl="xla", kernel_impl="interpret")
  fused = block_forward.block_forward(params, x, rope, cfg, "xla",
                                      kernel_impl="interpret")
  np.testing.assert_array_equal(f(params, x, rope), fused)
  y, vjp = jax.vjp(lambda p, h: f(p, h, rope), params, x)
  y_ref, vjp_ref = jax.vjp(lambda p, h: plain(p, h, rope), params, x)
  np.testing.assert_array_equal(y, y_ref)
  g = jax.random.normal(jax.random.key(9), y.shape)
  for a, b in zip(jax.tree.leaves(vjp(g)), jax.tree.leaves(vjp_ref(g))):
    np.testing.assert_array_equal(a, b)


def _count_fused(monkeypatch):
  """Counts the fused forwards that run (a debug callback inside each: it
  fires when the program executes that block, not when it is traced)."""
  calls = []
  real = block_forward.block_forward

  def counting(*a, **kw):
    jax.debug.callback(lambda: calls.append(1))
    return real(*a, **kw)

  monkeypatch.setattr(block_forward, "block_forward", counting)
  return calls


@pytest.mark.parametrize("model", ["trm", "hrm"])
def test_only_blocks_outside_the_gradient_run_the_fused_forward(model,
                                                                monkeypatch):
  # Given a model with fused_forward on, when a segment's gradient is computed,
  # the fused forward runs for exactly the block applications no gradient
  # flows through (TRM: the H_cycles - 1 no-grad cycles; HRM: all but the last
  # L- and H-update), and with no gradient for every block application; with
  # fused_forward off it never runs.
  calls = _count_fused(monkeypatch)
  cfg = tiny_models.tiny(model, hidden_size=128, num_heads=2,
                         puzzle_emb_ndim=128, attention_impl="xla",
                         fused_forward=True, H_cycles=3, L_cycles=2)
  batch = tiny_models.batch(cfg)
  params = cfg.init(jax.random.PRNGKey(0))
  carry = cfg.init_carry(4)

  def loss(p, c=cfg):
    heads = c.segment(p, carry, batch)[1]
    return heads.logits.sum() + heads.q_logits.sum()

  h, l = cfg.H_cycles, cfg.L_cycles
  nl = cfg.L_layers
  nh = nl if model == "trm" else cfg.H_layers   # TRM: one net for both
  every = h * (l * nl + nh)
  if model == "trm":
    no_grad = (h - 1) * (l * nl + nh)
  else:
    no_grad = every - nl - nh
  jax.block_until_ready(jax.grad(loss)(params))
  assert len(calls) == no_grad
  calls.clear()
  jax.block_until_ready(loss(params))
  assert len(calls) == every
  calls.clear()
  jax.block_until_ready(jax.grad(functools.partial(
      loss, c=cfg.replace(fused_forward=False)))(params))
  assert not calls


def test_fused_forward_switch_keeps_the_training_step(monkeypatch):
  # Given a float32 TRM with attention, the training step with fused_forward on
  # (on a CPU the kernels' plain references run) and off gives the same loss
  # and gradients up to float32 rounding: only the no-grad cycles' forward
  # changes, and it computes the same function.
  cfg = tiny_models.tiny("trm", hidden_size=128, num_heads=2,
                         puzzle_emb_ndim=128, attention_impl="xla")
  oc = train.OptimConfig(global_batch_size=4)
  batch = tiny_models.batch(cfg)
  state = train.init_state(jax.random.PRNGKey(0), cfg, oc, batch)
  outs = []
  for flag in (True, False):
    c = cfg.replace(fused_forward=flag)
    new, metrics = jax.jit(functools.partial(train.train_step, cfg=c, oc=oc))(
        state, batch)
    outs.append((new, metrics))
  (on, m_on), (off, m_off) = outs
  np.testing.assert_allclose(m_on["loss"], m_off["loss"], rtol=1e-5)
  for a, b in zip(jax.tree.leaves(on.params), jax.tree.leaves(off.params)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_fused_forward_defaults_to_gpus_with_the_kernels_on():
  assert plans.resolve_fused_forward(None, None, "gpu")
  assert not plans.resolve_fused_forward(None, False, "gpu")
  assert not plans.resolve_fused_forward(None, None, "tpu")
  assert not plans.resolve_fused_forward(None, None, "cpu")
  assert plans.resolve_fused_forward(True, False, "cpu")
  assert dataclasses.fields(layers.LayerConfig)  # the field exists on both configs
  assert tiny_models.tiny("trm").layer_config.fused_forward is None
