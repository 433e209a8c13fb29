"""Tests for recur.optim against hand-computed and NumPy reference values."""
from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from recur import optim

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _numpy_adam_atan2(p, grads, lrs, b1, b2, wd):
  """Float64 transcription of the `adam-atan2` 0.0.3 step, one lr per step.

  As the package's pure-torch reference (`_adam_atan2_reference_impl` in its
  adam_atan2_test.py): step_size = lr / (1 - b1^t) outside the atan2, and
  sqrt(1 - b2^t) divides sqrt(v) inside it.
  """
  p = np.asarray(p, np.float64)
  m = np.zeros_like(p)
  v = np.zeros_like(p)
  for t, (g, lr) in enumerate(zip(grads, lrs), start=1):
    g = np.asarray(g, np.float64)
    p = p * (1.0 - lr * wd)
    m = b1 * m + (1.0 - b1) * g
    v = b2 * v + (1.0 - b2) * g * g
    step_size = lr / (1.0 - b1**t)
    denom = np.sqrt(v) / math.sqrt(1.0 - b2**t)
    p = p - step_size * np.arctan2(m, denom)
  return p


_P0 = np.array([[0.5, -1.0, 2.0], [0.0, 0.25, -0.75]], np.float32)
_GRADS = [
    np.array([[0.1, -0.2, 0.0], [1.0, -3.0, 0.5]], np.float32),
    np.array([[-0.3, 0.1, 0.0], [0.5, 2.0, -0.5]], np.float32),
    np.array([[0.2, 0.4, 0.0], [-2.0, 1.0, 0.25]], np.float32),
]


def _run_optax(tx, params, grads, jit):
  state = tx.init(params)
  update = jax.jit(tx.update) if jit else tx.update
  for g in grads:
    updates, state = update(g, state, params)
    params = optax.apply_updates(params, updates)
  return params, state


@pytest.mark.parametrize("jit", [False, True])
def test_adam_atan2_first_step_is_sign_times_atan_ratio(jit):
  # Given t = 1: m = 0.1 g and sqrt(v) / sqrt(1 - b2) = |g|, so the package's
  # step is (lr / 0.1) * atan2(0.1 g, |g|) = lr * sign(g) * atan(0.1) / 0.1
  # (0.9967 lr; the old atan2(m_hat, sqrt(v_hat)) gave lr * pi/4).
  lr, wd = 0.1, 0.5
  tx = optim.adam_atan2(lr, weight_decay=wd)
  # When one step is taken.
  params, _ = _run_optax(tx, {"w": jnp.asarray(_P0)}, [{"w": _GRADS[0]}], jit)
  # Then p1 = p0 * (1 - lr*wd) - lr * sign(g) * atan(0.1) / 0.1, zero grad ->
  # decay only.
  expected = _P0 * 0.95 - 0.1 * np.sign(_GRADS[0]) * (math.atan(0.1) / 0.1)
  np.testing.assert_allclose(params["w"], expected, rtol=1e-6, atol=1e-7)
  assert float(params["w"][0, 2]) == pytest.approx(2.0 * 0.95, rel=1e-7)


@pytest.mark.parametrize("jit", [False, True])
def test_adam_atan2_three_steps_matches_numpy(jit):
  # Given three steps with weight decay and non-default betas.
  lr, b1, b2, wd = 0.05, 0.8, 0.9, 0.3
  tx = optim.adam_atan2(lr, b1=b1, b2=b2, weight_decay=wd)
  params = {"a": jnp.asarray(_P0), "b": jnp.asarray(_P0[0] * 2)}
  grads = [{"a": g, "b": g[1] * 0.1} for g in _GRADS]
  # When the optimizer runs.
  out, state = _run_optax(tx, params, grads, jit)
  # Then both leaves match the float64 transcription of the reference.
  exp_a = _numpy_adam_atan2(_P0, _GRADS, [lr] * 3, b1, b2, wd)
  exp_b = _numpy_adam_atan2(_P0[0] * 2, [g[1] * 0.1 for g in _GRADS],
                            [lr] * 3, b1, b2, wd)
  np.testing.assert_allclose(out["a"], exp_a, rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(out["b"], exp_b, rtol=1e-6, atol=1e-7)
  assert int(state[0].count) == 3
  # First moment after 3 steps, by hand for element [1, 0]: 1.0, 0.5, -2.0.
  m = ((1 - b1) * 1.0 * b1 + (1 - b1) * 0.5) * b1 + (1 - b1) * -2.0
  assert float(state[0].mu["a"][1, 0]) == pytest.approx(m, rel=1e-6)


def test_adam_atan2_schedule_is_called_with_one_based_step():
  # Given a warmup of 10 steps to lr 1.0, i.e. lr(t) = t / 10 for the t-th update.
  sched = optim.warmup_cosine_schedule(1.0, warmup_steps=10, total_steps=100)
  tx = optim.adam_atan2(sched, b1=0.9, b2=0.95, weight_decay=0.2)
  # When three updates are applied.
  out, _ = _run_optax(tx, {"w": jnp.asarray(_P0)},
                      [{"w": g} for g in _GRADS], jit=True)
  # Then they used lr 0.1, 0.2, 0.3 (the reference's step after increment).
  expected = _numpy_adam_atan2(_P0, _GRADS, [0.1, 0.2, 0.3], 0.9, 0.95, 0.2)
  np.testing.assert_allclose(out["w"], expected, rtol=1e-6, atol=1e-7)


def test_adam_atan2_weight_decay_mask():
  # Given a mask that exempts leaf "b" from decay and a zero gradient.
  tx = optim.adam_atan2(0.1, weight_decay=0.5,
                        weight_decay_mask={"a": True, "b": False})
  params = {"a": jnp.ones(2), "b": jnp.ones(2)}
  zeros = {"a": jnp.zeros(2), "b": jnp.zeros(2)}
  out, _ = _run_optax(tx, params, [zeros], jit=True)
  # Then only "a" decays, and atan2(0, 0) = 0 adds nothing (no NaN).
  np.testing.assert_array_equal(out["a"], np.full(2, 0.95, np.float32))
  np.testing.assert_array_equal(out["b"], np.ones(2, np.float32))


def test_adam_atan2_state_roundtrips_through_orbax(tmp_path):
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  tx = optim.adam_atan2(0.1, weight_decay=0.1)
  _, state = _run_optax(tx, {"w": jnp.asarray(_P0)},
                        [{"w": g} for g in _GRADS[:2]], jit=True)
  ckpt = ocp.StandardCheckpointer()
  ckpt.save(tmp_path / "opt", state)
  ckpt.wait_until_finished()
  target = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
  restored = ckpt.restore(tmp_path / "opt", target)
  assert int(restored[0].count) == 2
  np.testing.assert_array_equal(restored[0].mu["w"], state[0].mu["w"])
  np.testing.assert_array_equal(restored[0].nu["w"], state[0].nu["w"])


@pytest.mark.parametrize("jit", [False, True])
def test_warmup_cosine_schedule_min_ratio_0_1(jit):
  # Given base 2.0, 10 warmup steps, 110 total: progress = (s - 10) / 100.
  sched = optim.warmup_cosine_schedule(2.0, 10, 110, min_ratio=0.1)
  fn = jax.jit(sched) if jit else sched
  cos_quarter = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 4))
  expected = {
      0: 0.0,                     # warmup start
      1: 0.2,                     # first reference update
      5: 1.0,                     # warmup middle
      9: 1.8,
      10: 2.0,                    # warmup end, progress 0
      35: 2.0 * cos_quarter,      # progress 0.25
      60: 2.0 * 0.55,             # progress 0.5: 0.1 + 0.9 * 0.5
      110: 0.2,                   # progress 1: base * min_ratio
  }
  for step, lr in expected.items():
    assert float(fn(step)) == pytest.approx(lr, rel=1e-6, abs=1e-7), step
  # Works on a traced int32 step too.
  assert float(fn(jnp.int32(60))) == pytest.approx(1.1, rel=1e-6)


def test_warmup_cosine_schedule_min_ratio_1_is_constant_after_warmup():
  sched = jax.jit(optim.warmup_cosine_schedule(1e-4, 2000, 50000))
  assert float(sched(1)) == pytest.approx(1e-4 / 2000, rel=1e-6)
  assert float(sched(1000)) == pytest.approx(5e-5, rel=1e-6)
  for step in (2000, 2001, 26000, 50000):
    assert float(sched(step)) == pytest.approx(1e-4, rel=1e-6)


def test_warmup_cosine_schedule_no_warmup():
  sched = optim.warmup_cosine_schedule(1.0, 0, 4, min_ratio=0.0)
  # progress = s / 4: cos(pi * s / 4) half-cosine.
  for step, lr in {0: 1.0, 2: 0.5, 4: 0.0}.items():
    assert float(sched(step)) == pytest.approx(lr, abs=1e-7)


def _numpy_sparse_sign_sgd(table, ids, grads, lr, wd):
  table = np.array(table, np.float64)
  for i in np.unique(ids):
    g = grads[ids == i].sum(axis=0)
    table[i] = table[i] * (1 - lr * wd) - lr * np.sign(g)
  return table


@pytest.mark.parametrize("jit", [False, True])
def test_sparse_sign_sgd_duplicates_and_untouched_rows(jit):
  # Given 6 rows; id 2 appears twice with gradients summing to [0, -3, 1].
  table = np.arange(18, dtype=np.float32).reshape(6, 3) / 4 - 1
  ids = np.array([2, 4, 2, 5, 0], np.int32)
  grads = np.array([[1.0, -1.0, 0.5],
                    [0.3, 0.0, -0.2],
                    [-1.0, -2.0, 0.5],
                    [-4.0, 1.0, 0.0],
                    [0.0, 0.0, 0.0]], np.float32)
  lr, wd = 0.1, 0.5
  fn = jax.jit(optim.sparse_sign_sgd_update) if jit else (
      optim.sparse_sign_sgd_update)
  # When one update is applied.
  out = np.asarray(fn(jnp.asarray(table), jnp.asarray(ids),
                      jnp.asarray(grads), lr, wd))
  # Then rows 1 and 3 are bit-for-bit unchanged.
  np.testing.assert_array_equal(out[[1, 3]], table[[1, 3]])
  # Row 2 decays once (x0.95, not 0.9025) and moves by -lr * sign([0, -3, 1]).
  np.testing.assert_allclose(
      out[2], table[2] * 0.95 - 0.1 * np.array([0.0, -1.0, 1.0]), rtol=1e-6)
  np.testing.assert_allclose(
      out[4], table[4] * 0.95 - 0.1 * np.array([1.0, 0.0, -1.0]), rtol=1e-6)
  np.testing.assert_allclose(
      out[5], table[5] * 0.95 - 0.1 * np.array([-1.0, 1.0, 0.0]), rtol=1e-6)
  # Row 0 is in the batch with a zero gradient: decay only.
  np.testing.assert_allclose(out[0], table[0] * 0.95, rtol=1e-6)
  np.testing.assert_allclose(out, _numpy_sparse_sign_sgd(table, ids, grads,
                                                         lr, wd), rtol=1e-6)


def test_sparse_sign_sgd_single_id_and_last_row():
  # Given every batch slot on the last row (B - 1 padding slots in the unique).
  table = np.ones((4, 2), np.float32)
  ids = np.full((5,), 3, np.int32)
  grads = np.array([[1.0, -1.0]] * 3 + [[-1.0, 1.0]] * 2, np.float32)
  out = np.asarray(jax.jit(optim.sparse_sign_sgd_update)(
      table, ids, grads, jnp.float32(0.25), 1.0))
  # Then the padding writes are dropped; only row 3 changes, once.
  np.testing.assert_array_equal(out[:3], table[:3])
  np.testing.assert_allclose(out[3], [0.75 - 0.25, 0.75 + 0.25], rtol=1e-6)


def test_sparse_sign_sgd_random_matches_numpy():
  rng = np.random.default_rng(0)
  table = rng.normal(size=(50, 4)).astype(np.float32)
  ids = rng.integers(0, 50, size=32).astype(np.int32)
  grads = rng.normal(size=(32, 4)).astype(np.float32)
  out = jax.jit(optim.sparse_sign_sgd_update)(table, ids, grads, 0.01, 0.1)
  np.testing.assert_allclose(
      out, _numpy_sparse_sign_sgd(table, ids, grads, 0.01, 0.1), rtol=1e-6)


_SHARDED_SCRIPT = textwrap.dedent("""
    import numpy as np
    import jax
    import jax.numpy as jnp
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    from recur import optim

    assert jax.device_count() == 8, jax.devices()
    mesh = Mesh(np.array(jax.devices()), ("data",))
    rows = NamedSharding(mesh, P("data", None))
    batch = NamedSharding(mesh, P("data"))
    rng = np.random.default_rng(1)
    table = rng.normal(size=(64, 4)).astype(np.float32)
    # Duplicates that straddle devices: ids 7 and 60 on several shards.
    ids = rng.integers(0, 64, size=16).astype(np.int32)
    ids[[0, 5, 13]] = 7
    ids[[2, 11]] = 60
    grads = rng.normal(size=(16, 4)).astype(np.float32)
    expected = np.array(table, np.float64)
    for i in np.unique(ids):
      g = grads[ids == i].sum(axis=0)
      expected[i] = expected[i] * (1 - 0.01 * 0.1) - 0.01 * np.sign(g)
    step = jax.jit(optim.sparse_sign_sgd_update, donate_argnums=0,
                   out_shardings=rows)
    out = step(jax.device_put(table, rows),
               jax.device_put(ids, batch),
               jax.device_put(grads, NamedSharding(mesh, P("data", None))),
               0.01, 0.1)
    assert out.sharding.is_equivalent_to(rows, 2), out.sharding
    np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-6)
    untouched = np.setdiff1d(np.arange(64), ids)
    np.testing.assert_array_equal(np.asarray(out)[untouched], table[untouched])
    print("SHARDED_OK", len(untouched))
""")


def test_sparse_sign_sgd_on_row_sharded_table_8_devices():
  # Given 8 fake CPU devices (the flag must be set before JAX starts).
  env = dict(os.environ)
  env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                      " --xla_force_host_platform_device_count=8").strip()
  env["JAX_PLATFORMS"] = "cpu"
  env["PYTHONPATH"] = REPO_ROOT + os.pathsep + env.get("PYTHONPATH", "")
  # When the update runs under jit on a row-sharded table and sharded batch.
  proc = subprocess.run([sys.executable, "-c", _SHARDED_SCRIPT], env=env,
                        capture_output=True, text=True, timeout=120,
                        check=False)
  # Then it matches NumPy and keeps the row sharding.
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "SHARDED_OK" in proc.stdout


@pytest.mark.parametrize("jit", [False, True])
def test_ema_formula(jit):
  # Given EMA 1.0 and params 3.0 with rate 0.9: 0.1 * 3 + 0.9 * 1 = 1.2.
  params = {"w": jnp.full((2,), 3.0), "b": jnp.array([-1.0, 0.0])}
  ema = optim.ema_init({"w": jnp.ones(2), "b": jnp.zeros(2)})
  fn = jax.jit(optim.ema_update, static_argnames="rate") if jit else (
      optim.ema_update)
  ema = fn(ema, params, rate=0.9)
  np.testing.assert_allclose(ema["w"], [1.2, 1.2], rtol=1e-6)
  np.testing.assert_allclose(ema["b"], [-0.1, 0.0], rtol=1e-6, atol=1e-7)
  # A second step with the default rate 0.999: the old EMA keeps 0.999.
  ema = fn(ema, params)
  np.testing.assert_allclose(ema["w"], [0.001 * 3.0 + 0.999 * 1.2] * 2,
                             rtol=1e-6)
  assert ema["w"].dtype == jnp.float32


def test_ema_init_is_a_copy():
  params = {"w": jnp.arange(3.0)}
  ema = optim.ema_init(params)
  np.testing.assert_array_equal(ema["w"], params["w"])
  assert ema["w"] is not params["w"]
