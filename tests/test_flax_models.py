"""recur.flax.TRM/HRM/Transformer: the pure cores as Linen/NNX modules, to the bit."""
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from recur import act, core, models
import recur.flax as rf
from tiny_models import batch as random_batch
from tiny_models import tiny


def batch(cfg, b=4, seed=0):
  # Puzzle ids from 1: id 0 is reserved for the blank puzzle in every dataset.
  return random_batch(cfg, b, seed, first_id=1)


MODULES = {"trm": rf.TRM, "hrm": rf.HRM, "transformer": rf.Transformer}


# Values, shapes and dtypes all equal (bit for bit).
assert_trees_equal = functools.partial(chex.assert_trees_all_equal, strict=True)


@pytest.mark.parametrize("model,dtype", [("trm", "bfloat16"), ("trm", "float32"),
                                         ("hrm", "float32"), ("transformer", "float32")])
def test_module_segment_equals_pure_core_bit_for_bit(model, dtype):
  # Given a config and a key, the module's variables are cfg.init(key) split
  # by collection, and one segment (eager and jitted) gives the core's outputs.
  cfg = tiny(model, compute_dtype=dtype)
  key = jax.random.key(3)
  params = cfg.init(key)
  variables = rf.init_variables(cfg, key)
  assert_trees_equal(rf.to_params(variables), params)
  assert set(variables) == {"params", rf.BUFFERS, rf.PUZZLE_EMB}
  assert set(variables["params"]) == {"net"}

  m, b = MODULES[model](cfg), batch(cfg)
  carry = m.apply(variables, b, method=m.initial_carry)
  ref_carry = act.refill(params, act.empty_carry(cfg, b), b)
  assert_trees_equal(tuple(carry), (ref_carry.z_H, ref_carry.z_L))
  # Make the second segment start from a non-trivial carry.
  carry, _ = m.apply(variables, carry, b)
  ref_inner, _ = cfg.segment(params, core.InnerCarry(ref_carry.z_H, ref_carry.z_L), b)

  got = m.apply(variables, carry, b)
  want = cfg.segment(params, ref_inner, b)
  assert_trees_equal(got, want)
  got_j = jax.jit(lambda v, c: m.apply(v, c, b))(variables, carry)
  want_j = jax.jit(lambda p, c: cfg.segment(p, c, b))(params, ref_inner)
  assert_trees_equal(got_j, want_j)


@pytest.mark.parametrize("model", sorted(MODULES))
def test_module_init_has_the_pure_layout(model):
  cfg = tiny(model, compute_dtype="float32")
  m, b = MODULES[model](cfg), batch(cfg)
  variables = m.init(jax.random.key(0), b, method=m.initial_carry)
  ref = jax.eval_shape(cfg.init, jax.random.key(0))
  got = rf.to_params(variables)
  chex.assert_trees_all_equal_shapes_and_dtypes(got, ref)
  chex.assert_type(jax.tree.leaves(got), jnp.float32)
  # The same key gives the same variables; another key other ones.
  again = m.init(jax.random.key(0), b, method=m.initial_carry)
  assert_trees_equal(again, variables)
  other = m.init(jax.random.key(1), b, method=m.initial_carry)
  assert not jnp.array_equal(other["buffers"]["H_init"], variables["buffers"]["H_init"])


@pytest.mark.parametrize("model", ["trm", "hrm"])
def test_rollout_and_act_step_equal_recur_act(model):
  cfg = tiny(model, compute_dtype="float32")
  key = jax.random.key(1)
  params, variables = cfg.init(key), rf.init_variables(cfg, key)
  m, b = MODULES[model](cfg), batch(cfg)
  assert_trees_equal(m.apply(variables, b, method=m.rollout),
                     act.eval_rollout(cfg, params, b))
  c0 = m.apply(variables, b, method=m.empty_act_carry)
  step_key = jax.random.key(7)
  got = m.apply(variables, c0, b, step_key, train=True, method=m.act_step)
  want = act.act_step(cfg, params, act.empty_carry(cfg, b), b, step_key, train=True)
  assert_trees_equal(got, want)


def test_adamw_on_params_leaves_buffers_and_table_alone():
  # Given a module's variables, weight decay built on "params" only cannot touch
  # H_init/L_init or the puzzle table (they are not in its tree).
  cfg = tiny("trm", compute_dtype="float32")
  variables = rf.init_variables(cfg, jax.random.key(0))
  m, b = rf.TRM(cfg), batch(cfg)
  carry = m.apply(variables, b, method=m.initial_carry)
  tx = optax.adamw(1e-2, weight_decay=0.5)
  state = tx.init(variables["params"])

  def loss(p):
    _, out = m.apply({**variables, "params": p}, carry, b)
    return jnp.mean(out.logits ** 2)

  grads = jax.grad(loss)(variables["params"])
  upd, _ = tx.update(grads, state, variables["params"])
  new = optax.apply_updates(variables["params"], upd)
  assert not jnp.array_equal(new["net"]["lm_head"], variables["params"]["net"]["lm_head"])
  assert "H_init" not in str(jax.tree_util.tree_structure(grads))


def test_nnx_model_trains_with_nnx_optimizer():
  # Given the TRM as an NNX model (Linen bridge), when a few nnx.Optimizer steps
  # run on a fixed batch, then the loss goes down and the buffers stay fixed.
  from flax import nnx
  cfg = tiny("trm", compute_dtype="float32")
  b = batch(cfg, b=8)
  model = rf.nnx_model(rf.TRM(cfg), b, seed=0)
  h_init = np.asarray(nnx.state(model)["H_init"].get_value())
  optimizer = nnx.Optimizer(model, optax.adam(3e-3), wrt=nnx.Param)

  def loss_fn(model):
    carry = model.initial_carry(b)
    _, out = model(carry, b)
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(
        out.logits, b["labels"]))

  @nnx.jit
  def step(model, optimizer):
    loss, grads = nnx.value_and_grad(loss_fn, argnums=nnx.DiffState(0, nnx.Param))(model)
    optimizer.update(model, grads)
    return loss

  losses = [float(step(model, optimizer)) for _ in range(8)]
  assert losses[-1] < losses[0] - 0.05, losses
  np.testing.assert_array_equal(np.asarray(nnx.state(model)["H_init"].get_value()),
                                h_init)
