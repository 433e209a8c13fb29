"""Properties of the functional cores beyond parity."""
import os
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import recur
from recur import act, convert, core, layers, losses, models, parity
from tiny_models import batch, tiny


def test_swiglu_width_matches_reference():
  assert layers.swiglu_width(512, 4) == 1536
  assert layers.swiglu_width(32, 4) == 256
  assert layers.swiglu_width(97, 4) == 512


def test_trunc_normal_std():
  x = layers.trunc_normal(jax.random.key(0), (200_000,), 0.5)
  assert abs(float(x.std()) - 0.5) < 5e-3
  assert float(jnp.abs(x).max()) <= 2 * 0.5 / 0.8796 + 1e-6  # clipped at 2 sigma


@pytest.mark.parametrize("model,grad_mode", [("trm", "full"), ("trm", "one_step"),
                                             ("hrm", "one_step")])
def test_no_grad_part_gets_exactly_zero_gradient(model, grad_mode):
  # Given a segment, when we differentiate w.r.t. the incoming carry, then the
  # gradient is exactly zero (the carry only feeds the no-grad cycles and the
  # stop_gradient'ed tail inputs).
  cfg = tiny(model, grad_mode=grad_mode)
  params = cfg.init(jax.random.key(0))
  b = batch(cfg)
  carry = act.refill(params, act.empty_carry(cfg, b), b)

  def f(z_H, z_L):
    _, out = cfg.segment(params, core.InnerCarry(z_H, z_L), b)
    return jnp.sum(out.logits ** 2) + jnp.sum(out.q_logits)
  g_H, g_L = jax.grad(f, argnums=(0, 1))(carry.z_H, carry.z_L)
  assert float(jnp.abs(g_H).max()) == 0.0
  assert float(jnp.abs(g_L).max()) == 0.0

  # ...while the weights do get gradient (the tail is differentiated).
  def g(net):
    _, out = cfg.segment({**params, "net": net}, core.InnerCarry(carry.z_H, carry.z_L), b)
    return jnp.sum(out.logits ** 2)
  grads = jax.grad(g)(params["net"])
  assert float(jnp.abs(grads["L_level"]["gate_up"]).max()) > 0


def test_gradient_equals_manual_tail_only():
  # Given TRM "full" mode, the gradient equals that of running the no-grad cycles
  # separately, then differentiating only the last cycle.
  cfg = tiny("trm", H_cycles=3, L_cycles=2)
  params = cfg.init(jax.random.key(1))
  params["net"]["q_head"]["kernel"] = 0.1 * jnp.ones_like(params["net"]["q_head"]["kernel"])
  b = batch(cfg)
  carry = act.refill(params, act.empty_carry(cfg, b), b)
  inner = core.InnerCarry(carry.z_H, carry.z_L)

  def loss_ours(net):
    _, out = cfg.segment({**params, "net": net}, inner, b)
    return jnp.sum(out.logits ** 2)

  def loss_manual(net):
    p = {**params, "net": net}
    x = core.embed_inputs(cfg, net, b["inputs"], params["puzzle_emb"][b["puzzle_identifiers"]])
    f = layers.level_fn(cfg.layer_config, core.rope_for(cfg), cfg.dtype)
    sg = jax.lax.stop_gradient
    zh, zl = inner
    for _ in range(cfg.H_cycles - 1):
      for _ in range(cfg.L_cycles):
        zl = f(sg(net["L_level"]), zl, zh + sg(x))
      zh = f(sg(net["L_level"]), zh, zl)
    zh, zl = sg(zh), sg(zl)
    for _ in range(cfg.L_cycles):
      zl = f(net["L_level"], zl, zh + x)
    zh = f(net["L_level"], zh, zl)
    return jnp.sum(core.output_heads(cfg, net, zh).logits ** 2)

  g1 = jax.grad(loss_ours)(params["net"])
  g2 = jax.grad(loss_manual)(params["net"])
  # The project's error measure: max|a - b| / max|b| per array.
  for a, c in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
    assert parity.rel_err(a, c) < 1e-5


@pytest.mark.parametrize("unroll", [True, 1, 2])
def test_unroll_does_not_change_results(unroll):
  cfg = tiny("trm", H_cycles=3, L_cycles=3)
  params = cfg.init(jax.random.key(2))
  b = batch(cfg)
  carry = act.refill(params, act.empty_carry(cfg, b), b)
  inner = core.InnerCarry(carry.z_H, carry.z_L)
  _, ref = cfg.segment(params, inner, b)
  _, out = cfg.replace(unroll=unroll, remat="dots").segment(params, inner, b)
  np.testing.assert_allclose(out.logits, ref.logits, rtol=1e-5, atol=1e-5)


def test_act_step_jits_once_and_runs_many_steps():
  cfg = tiny("trm", halt_exploration_prob=0.5)
  params = cfg.init(jax.random.key(0))

  @jax.jit
  @chex.assert_max_traces(n=1)
  def step(params, carry, b, key):
    return act.act_step(cfg, params, carry, b, key, train=True)

  carry = act.empty_carry(cfg, batch(cfg))
  for i in range(6):  # a second trace would raise
    carry, out = step(params, carry, batch(cfg, seed=i), jax.random.key(i))
  assert out["logits"].shape == (4, cfg.seq_len, cfg.vocab_size)
  assert int(carry.steps.max()) <= cfg.halt_max_steps


def test_act_halts_and_refills():
  cfg = tiny("trm", halt_max_steps=2, halt_exploration_prob=0.0)
  params = cfg.init(jax.random.key(0))
  b0, b1 = batch(cfg, seed=0), batch(cfg, seed=1)
  carry = act.empty_carry(cfg, b0)
  carry, _ = act.act_step(cfg, params, carry, b0, train=True)
  # q head starts at -5: nobody halts early, everyone at step 1.
  assert not bool(carry.halted.any()) and carry.steps.tolist() == [1] * 4
  carry, _ = act.act_step(cfg, params, carry, b1, train=True)
  # Still working on b0's rows (b1 discarded), now all halt at max steps.
  np.testing.assert_array_equal(carry.current_data["inputs"], b0["inputs"])
  assert bool(carry.halted.all())
  carry, _ = act.act_step(cfg, params, carry, b1, train=True)
  np.testing.assert_array_equal(carry.current_data["inputs"], b1["inputs"])
  assert carry.steps.tolist() == [1] * 4


def test_exploration_forces_min_steps():
  cfg = tiny("trm", halt_max_steps=5, halt_exploration_prob=1.0)
  params = cfg.init(jax.random.key(0))
  # A Q head that always says halt.
  params["net"]["q_head"]["bias"] = jnp.array([10.0, -10.0])
  b = batch(cfg, b=64)
  carry = act.empty_carry(cfg, b)
  carry, _ = act.act_step(cfg, params, carry, b, jax.random.key(3), train=True)
  # With exploration prob 1 every row must run >= 2 steps.
  assert not bool(carry.halted.any())


def test_eval_mode_runs_max_steps():
  cfg = tiny("hrm")
  params = cfg.init(jax.random.key(0))
  params["net"]["q_head"]["bias"] = jnp.array([10.0, -10.0])  # would halt at once
  b = batch(cfg)
  carry = act.empty_carry(cfg, b)
  for s in range(cfg.halt_max_steps):
    carry, out = act.act_step(cfg, params, carry, b, train=False)
    assert bool(carry.halted.all()) == (s == cfg.halt_max_steps - 1)
  assert "target_q_continue" not in out
  per = act.eval_rollout(cfg, params, b)
  np.testing.assert_allclose(per["logits"][-1], out["logits"], rtol=1e-5, atol=1e-5)


def test_vmap_over_independent_batches():
  cfg = tiny("trm")
  params = cfg.init(jax.random.key(0))
  bs = [batch(cfg, b=2, seed=s) for s in range(3)]
  stacked = jax.tree.map(lambda *x: jnp.stack(x), *bs)
  carries = jax.vmap(lambda b: act.empty_carry(cfg, b))(stacked)
  out_c, outs = jax.vmap(lambda c, b: act.act_step(cfg, params, c, b, train=False))(carries, stacked)
  for i, b in enumerate(bs):
    c1, o1 = act.act_step(cfg, params, act.empty_carry(cfg, b), b, train=False)
    np.testing.assert_allclose(outs["logits"][i], o1["logits"], rtol=1e-5, atol=1e-5)


def test_baseline_segment_shapes():
  cfg = tiny("transformer", halt_max_steps=1)
  params = cfg.init(jax.random.key(0))
  b = batch(cfg)
  carry, out = act.act_step(cfg, params, act.empty_carry(cfg, b), b, train=True)
  assert carry.z_L.shape[1] == 0 and bool(carry.halted.all())
  assert out["logits"].shape == (4, cfg.seq_len, cfg.vocab_size)


@pytest.mark.parametrize("model,kw", [("trm", {}), ("trm", {"mlp_t": True, "pos_encodings": "none"}),
                                      ("trm", {"pos_encodings": "learned"}), ("hrm", {}),
                                      ("transformer", {})])
def test_conversion_round_trip(model, kw):
  cfg = tiny(model, **kw)
  params = jax.tree.map(np.asarray, cfg.init(jax.random.key(0)))
  sd = convert.to_reference(params)
  assert all(k.startswith("model.inner.") for k in sd)
  back = convert.from_reference(sd)
  jax.tree.map(np.testing.assert_array_equal, back, params)
  # torch.compile'd checkpoints carry `_orig_mod.`: still understood.
  back2 = convert.from_reference({"_orig_mod." + k: v for k, v in sd.items()})
  jax.tree.map(np.testing.assert_array_equal, back2, params)


def test_conversion_rejects_unknown_names():
  with pytest.raises(KeyError, match="unknown reference parameter"):
    convert.from_reference({"model.inner.H_init": np.zeros(4), "model.inner.L_init": np.zeros(4),
                            "model.inner.foo.weight": np.zeros(3)})


def test_stablemax_is_finite_and_matches_float64():
  x = jnp.array([[-1e4, -3.0, 0.0, 2.5, 1e4]], jnp.float32)
  labels = jnp.array([3])
  ce = losses.stablemax_cross_entropy(x[:, None], labels[:, None], jnp.ones((1, 1), bool))
  g = jax.grad(lambda z: losses.stablemax_cross_entropy(z, labels[:, None], jnp.ones((1, 1), bool)).sum())(x[:, None])
  assert bool(jnp.isfinite(ce).all()) and bool(jnp.isfinite(g).all())
  xs = np.array([-1e4, -3.0, 0.0, 2.5, 1e4], np.float64)
  s = np.where(xs < 0, 1 / (1 - xs), xs + 1)
  np.testing.assert_allclose(float(ce[0, 0]), -np.log(s[3] / s.sum()), rtol=1e-5)


def test_softmax_loss_path():
  logits = jnp.array([[[2.0, 0.0, -1.0]]])
  labels = jnp.array([[0]])
  ce = losses.softmax_cross_entropy(logits, labels, labels >= 0)
  np.testing.assert_allclose(float(ce[0, 0]), -np.log(np.exp(2) / (np.exp(2) + 1 + np.exp(-1))), rtol=1e-6)


def test_bad_config_is_refused():
  with pytest.raises(ValueError, match="pos_encodings"):
    tiny("trm", pos_encodings="alibi")
  with pytest.raises(ValueError, match="unknown trm config fields"):
    models.make_config("trm", hidden=3)


def test_library_imports_without_absl_or_ml_collections():
  # optax/chex import absl.flags themselves; what matters is that recur defines
  # no flags, never needs them parsed, and does not touch ml_collections.
  code = ("import sys, jax, recur, recur.act, recur.parity, recur.convert, recur.optim\n"
          "assert not [m for m in sys.modules if m.startswith('ml_collections')]\n"
          "from absl import flags\n"
          "mods = [m for m in flags.FLAGS.flags_by_module_dict() if 'recur' in m]\n"
          "assert not mods, mods\n"
          "cfg = recur.TRMConfig(vocab_size=5, seq_len=4, hidden_size=8, num_heads=2,"
          " puzzle_emb_ndim=0, H_cycles=1, L_cycles=1, compute_dtype='float32')\n"
          "p = cfg.init(jax.random.key(0))\n"
          "b = {'inputs': jax.numpy.ones((2, 4), 'int32'), 'labels': jax.numpy.ones((2, 4), 'int32'),"
          " 'puzzle_identifiers': jax.numpy.zeros((2,), 'int32')}\n"
          "c, o = recur.act_step(cfg, p, recur.empty_carry(cfg, b), b, train=False)\n"
          "print('clean', o['logits'].shape)")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
  assert out.returncode == 0 and "clean (2, 4, 5)" in out.stdout, out.stderr


@pytest.mark.parametrize("axis", [-1, 1])
def test_rms_norm_custom_gradient_matches_autodiff(axis):
  # The memory-lean custom VJP gives the gradient of the plain formula.
  x = jax.random.normal(jax.random.key(0), (3, 5, 8), jnp.float32) * 3
  w = jax.random.normal(jax.random.key(1), (3, 5, 8), jnp.float32)

  def plain(x):
    r = jax.lax.rsqrt(jnp.mean(x * x, axis=axis, keepdims=True) + 1e-5)
    return jnp.sum(jnp.sin(x * r) * w)
  ours = lambda x: jnp.sum(jnp.sin(layers.rms_norm(x, 1e-5, axis)) * w)
  np.testing.assert_allclose(ours(x), plain(x), rtol=1e-6)
  assert parity.rel_err(jax.grad(ours)(x), jax.grad(plain)(x)) < 1e-6
  # bf16 inputs keep bf16 cotangents.
  g = jax.grad(lambda x: ours(x.astype(jnp.bfloat16)).astype(jnp.float32))(x.astype(jnp.bfloat16))
  assert g.dtype == jnp.bfloat16


def test_rolled_loops_keep_the_program_size_independent_of_depth():
  # Given unroll=1 (rolled scans), when the recursion gets 8x deeper, then the
  # compiled program does not grow: compile time stays bounded for deep recursion.
  def lowered(H, L, unroll):
    cfg = tiny("trm", H_cycles=H, L_cycles=L, unroll=unroll)
    params = cfg.init(jax.random.key(0))
    b = batch(cfg)
    f = jax.jit(lambda p, c, b: act.act_step(cfg, p, c, b, train=False))
    return f.lower(params, act.empty_carry(cfg, b), b)
  shallow = len(lowered(2, 2, 1).compile().as_text())
  deep = len(lowered(16, 16, 1).compile().as_text())
  assert deep <= shallow * 1.05
  # The default (full unroll, fastest at the published depths) has no loops left
  # and one call site per layer application, so it grows with depth instead.
  text = lowered(16, 16, True).as_text()
  assert "stablehlo.while" not in text
  assert text.count("call @") > 2 * lowered(2, 2, True).as_text().count("call @")


def test_segment_checks_shapes_at_trace_time():
  # A batch of the wrong length fails while tracing with the error that names
  # the field and both values (recur.checks, before the chex checks); a carry
  # of the wrong width fails in chex, naming the shapes; both before compute.
  from recur import checks  # pylint: disable=g-import-not-at-top
  cfg = tiny("trm")
  params = cfg.init(jax.random.key(0))
  b = batch(cfg)
  inner = cfg.init_carry(4)
  short = {**b, "inputs": b["inputs"][:, :-1]}
  with pytest.raises(checks.BatchMismatch,
                     match=f"{cfg.seq_len - 1} positions but ModelConfig.seq_len is {cfg.seq_len}"):
    jax.eval_shape(cfg.segment, params, inner, short)
  wide = core.InnerCarry(inner.z_H, jnp.zeros((4, cfg.full_seq_len, 3), inner.z_L.dtype))
  with pytest.raises(AssertionError, match="shape"):
    jax.eval_shape(cfg.segment, params, wide, b)


def test_reasoning_module_flax_init_has_the_stacked_layout():
  # Given the Linen ReasoningModule, when Flax initializes it, then its params
  # are the checkpoint layout of init_stack (names, [L, ...] stacking, f32),
  # and init_stack's layers come from split(key, L) through Block.init_key.
  for mlp_t in (False, True):
    cfg = tiny("trm", mlp_t=mlp_t, L_layers=3)
    lc = cfg.layer_config
    h = jnp.zeros((2, cfg.full_seq_len, cfg.hidden_size), jnp.float32)
    module = layers.ReasoningModule(lc, num_layers=3)
    got = module.init(jax.random.key(0), h, h)["params"]
    want = layers.init_stack(jax.random.key(0), lc, 3)
    chex.assert_trees_all_equal_shapes_and_dtypes(got, want)
    k1 = jax.random.split(jax.random.key(0), 3)[1]
    one = layers.Block(lc, init_key=k1).init(jax.random.key(5), h[0:1])["params"]
    chex.assert_trees_all_equal(one, jax.tree.map(lambda x: x[1], want), strict=True)
