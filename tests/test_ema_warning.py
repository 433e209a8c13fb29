"""The EMA trap: EMA weights evaluated before the EMA's horizon warn once,
naming the knob; evaluating a long enough or EMA-free run stays silent."""
import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recur import models, train

STEPS = 200


@pytest.fixture(autouse=True)
def _fresh_warning_registry():
  train._EMA_WARNED.clear()  # once per process: each test starts afresh
  yield
  train._EMA_WARNED.clear()


def _tiny_run(oc, steps=STEPS):
  """A real tiny TRM trained `steps` steps on a fixed toy batch."""
  cfg = models.make_config("trm", vocab_size=5, seq_len=4, hidden_size=16, num_heads=2,
                           puzzle_emb_ndim=0, num_puzzle_identifiers=1, halt_max_steps=2,
                           compute_dtype="float32", H_cycles=1, L_cycles=1, L_layers=1,
                           H_layers=0)
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.integers(1, 5, (4, 4)), jnp.int32)
  b = {"inputs": x, "labels": x, "puzzle_identifiers": jnp.zeros((4,), jnp.int32)}
  state = train.init_state(jax.random.key(0), cfg, oc, b)
  step = jax.jit(functools.partial(train.train_step, cfg=cfg, oc=oc))
  for _ in range(steps):
    state, _ = step(state, b)
  return state


def _caught(fn):
  with warnings.catch_warnings(record=True) as got:
    warnings.simplefilter("always")
    out = fn()
  return out, [w for w in got if issubclass(w.category, train.EmaHorizonWarning)]


def test_young_ema_warns_once_naming_the_knob():
  # Given 200 steps with the default EMA rate 0.999 (horizon ~1000 steps).
  oc = train.OptimConfig(global_batch_size=4, total_steps=STEPS, lr_warmup_steps=1)
  state = _tiny_run(oc)
  assert int(state.step) == STEPS
  # When evaluating its EMA weights, then one warning names steps, horizon, knobs.
  _, got = _caught(lambda: train.eval_params(state, oc))
  assert len(got) == 1
  msg = str(got[0].message)
  for part in ("after 200 steps", "ema_rate=0.999", "~1000 steps",
               "OptimConfig.ema_rate", "--config.optim.ema_rate", "ema=False"):
    assert part in msg, (part, msg)
  # And a second evaluation in the same process stays quiet.
  _, again = _caught(lambda: train.eval_params(state, oc))
  assert again == []
  # And without oc the default rate is assumed, and said to be.
  train._EMA_WARNED.clear()
  _, assumed = _caught(lambda: train.eval_params(state))
  assert len(assumed) == 1 and "the default" in str(assumed[0].message)


def test_enough_steps_or_no_ema_is_silent():
  # A rate whose horizon (10 steps) the run exceeds: no warning.
  oc = train.OptimConfig(global_batch_size=4, total_steps=STEPS, lr_warmup_steps=1,
                         ema_rate=0.9)
  _, got = _caught(lambda: train.eval_params(_tiny_run(oc, steps=20), oc))
  assert got == []
  # The EMA off: nothing to warn about.
  off = train.OptimConfig(global_batch_size=4, total_steps=STEPS, lr_warmup_steps=1,
                          ema=False)
  state = _tiny_run(off, steps=3)
  assert state.ema is None
  _, got = _caught(lambda: train.eval_params(state, off))
  assert got == []
  # The same check at the boundary: warn below the horizon, not at it.
  assert _caught(lambda: train.warn_if_ema_too_young(999, 0.999))[0]
  assert not train.warn_if_ema_too_young(1000, 0.999)


def test_no_check_and_no_error_under_jit():
  oc = train.OptimConfig(global_batch_size=4, total_steps=STEPS, lr_warmup_steps=1)
  state = _tiny_run(oc, steps=2)
  # Inside jit the step is abstract: eval_params traces without warning...
  params, got = _caught(lambda: jax.jit(lambda s: train.eval_params(s, oc))(state))
  assert got == []
  same = jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), params,
                      train.model_params(state))
  assert all(jax.tree.leaves(same))
  # ...and the host-side call on the same state does.
  _, got = _caught(lambda: train.eval_params(state, oc))
  assert len(got) == 1
