"""recur.flax.Reasoner: TRM's recursion over any embedding, inside a Flax model."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recur import act, core, models
import recur.flax as rf


def test_reasoner_is_trms_recursion():
  # Given a TRM without puzzle table, when the Reasoner gets TRM's embedded
  # input and TRM's L_level/H_init/L_init, then lm_head(z) is TRM's logits.
  cfg = models.make_config("trm", vocab_size=7, seq_len=6, hidden_size=16,
                           num_heads=2, puzzle_emb_ndim=0, H_cycles=2, L_cycles=3,
                           L_layers=2, compute_dtype="float32")
  params = cfg.init(jax.random.key(0))
  b = {"inputs": jnp.asarray(np.random.default_rng(0).integers(1, 7, (3, 6)), jnp.int32)}
  x = core.embed_inputs(cfg, params["net"], b["inputs"], None)
  r = rf.Reasoner(hidden_size=16, num_heads=2, H_cycles=2, L_cycles=3, L_layers=2)
  variables = {"params": {"L_level": params["net"]["L_level"]},
               "buffers": {"H_init": params["H_init"], "L_init": params["L_init"]}}
  z = r.apply(variables, x)
  carry = act.refill(params, act.empty_carry(cfg, b), b)
  _, out = cfg.segment(params, core.InnerCarry(carry.z_H, carry.z_L), b)
  logits = jnp.einsum("bsd,dv->bsv", z, params["net"]["lm_head"],
                      preferred_element_type=jnp.float32)
  assert jnp.array_equal(logits, out.logits)


def test_shapes_carry_and_variables():
  r = rf.Reasoner(hidden_size=16, num_heads=4, H_cycles=2, L_cycles=2, L_layers=1)
  x = jax.random.normal(jax.random.key(0), (2, 5, 16))
  variables = r.init(jax.random.key(1), x)
  assert set(variables) == {"params", "buffers"}
  assert set(variables["buffers"]) == {"H_init", "L_init"}
  z = r.apply(variables, x)
  assert z.shape == x.shape and z.dtype == x.dtype
  z1, c1 = r.apply(variables, x, return_carry=True)
  assert jnp.array_equal(z, z1) and c1.z_H.shape == c1.z_L.shape == x.shape
  # Deep supervision: the next call refines from the carry, differently.
  z2, c2 = r.apply(variables, x, c1)
  assert not jnp.allclose(z2, z1)
  assert jnp.array_equal(z2, c2.z_H)
  zb = r.apply(variables, x.astype(jnp.bfloat16))
  assert zb.dtype == jnp.bfloat16
  with pytest.raises(ValueError, match=r"shape \[B, S, 16\]"):
    r.apply(variables, x[..., :8])


class _UserModel(nn.Module):
  @nn.compact
  def __call__(self, tokens, carry=None):
    x = nn.Embed(11, 32, name="embed")(tokens)
    z, carry = rf.Reasoner(hidden_size=32, num_heads=4, H_cycles=2, L_cycles=2,
                           L_layers=1)(x, carry, return_carry=True)
    return nn.Dense(11)(z), carry


def test_gradient_reaches_the_upstream_embedding():
  tokens = jnp.asarray(np.random.default_rng(0).integers(0, 11, (2, 7)))
  m = _UserModel()
  variables = m.init(jax.random.key(0), tokens)

  def loss(p, carry=None):
    logits, _ = m.apply({**variables, "params": p}, tokens, carry)
    return jnp.mean(logits ** 2)

  g = jax.jit(jax.grad(loss))(variables["params"])
  g_embed = g["embed"]["embedding"]
  used = np.unique(np.asarray(tokens))
  assert bool(jnp.all(jnp.isfinite(g_embed)))
  assert float(jnp.abs(g_embed[used]).sum()) > 0
  unused = np.setdiff1d(np.arange(11), used)
  assert float(jnp.abs(g_embed[unused]).sum()) == 0.0
  # With a carry from a previous call (stop-gradient'ed), the gradient still
  # reaches the embedding through the injection x.
  _, carry = m.apply(variables, tokens)
  g2 = jax.jit(jax.grad(loss))(variables["params"], carry)
  assert float(jnp.abs(g2["embed"]["embedding"][used]).sum()) > 0


def test_one_step_grad_mode_runs_and_differs():
  x = jax.random.normal(jax.random.key(0), (2, 5, 16))
  full = rf.Reasoner(hidden_size=16, num_heads=2, H_cycles=2, L_cycles=2, L_layers=1)
  one = full.clone(grad_mode="one_step")
  v = full.init(jax.random.key(1), x)
  # Same forward maths (the scans split differently: equal up to rounding),
  # different gradients w.r.t. x.
  np.testing.assert_allclose(full.apply(v, x), one.apply(v, x), rtol=1e-5, atol=1e-5)
  gf = jax.grad(lambda x: jnp.sum(full.apply(v, x) ** 2))(x)
  go = jax.grad(lambda x: jnp.sum(one.apply(v, x) ** 2))(x)
  assert not jnp.allclose(gf, go)


def test_example_learns_sorting():
  # experiments/flax_reasoner.py: Embed -> Reasoner -> Dense with optax learns
  # to sort 6 digits to >= 90% token accuracy on held-out lists.
  from experiments import flax_reasoner
  res = flax_reasoner.train(task="sort", n=6, steps=600, log_every=0)
  assert res["token_accuracy"] >= 0.9, res
