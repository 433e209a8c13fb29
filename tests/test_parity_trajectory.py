"""Training-trajectory parity: recur's train step replays the reference's train_batch.

The fixtures under tests/fixtures/trajectory are 12 real optimiser steps of the
reference's own pretrain.py `train_batch` (tools/make_trajectory_fixture.py).
"""
from __future__ import annotations

import glob
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from recur import optim, parity, parity_trajectory

FIXTURES = sorted(glob.glob(os.path.join(
    os.path.dirname(__file__), "fixtures", "trajectory", "*.npz")))
CASES = {os.path.basename(p)[:-4]: p for p in FIXTURES}


def test_the_three_model_families_are_shipped():
  assert set(CASES) == {"traj_trm_att", "traj_trm_mlp", "traj_hrm"}


@pytest.mark.parametrize("case", sorted(CASES))
def test_fixture_exercises_the_recipe(case):
  # Given a trajectory fixture.
  meta, fx = parity.load_fixture(CASES[case])
  steps = int(meta["steps"])
  # Then it has >= 10 optimiser steps, EMA on, a warmup then a cosine to a
  # floor below the peak, and duplicate puzzle ids in play at every step.
  assert steps >= 10 and meta["kind"] == "trajectory"
  o = meta["optim"]
  assert o["ema"] and 0 < o["lr_warmup_steps"] < steps and o["lr_min_ratio"] < 1
  for t in range(steps):
    ids = fx[f"step{t}/current_data/puzzle_identifiers"]
    assert len(np.unique(ids)) < len(ids), t
  # Rows halt after different numbers of segments.
  halted_at = set()
  for t in range(steps):
    h = fx[f"step{t}/carry_out/halted"]
    halted_at |= set(fx[f"step{t}/carry_out/steps"][h].tolist())
  assert len(halted_at) >= 2, halted_at
  # The lr really decays after the warmup (last step below the peak).
  lrs = [float(fx[f"step{t}/metric/lr"]) for t in range(steps)]
  assert max(lrs) == pytest.approx(o["lr"]) and lrs[-1] < 0.9 * o["lr"]


@pytest.mark.parametrize("case", sorted(CASES))
def test_trajectory_replays_within_tolerance(case):
  # When recur.train.train_step replays the reference's steps.
  report = parity_trajectory.run_trajectory_parity(CASES[case])
  # Then loss/metrics per step, final weights, table and EMA are within 1e-4,
  # Adam updates within 1e-3 (L2), and halting is exactly equal.
  assert report.ok, report.format()
  for q in ("loss", "final/dense", "final/puzzle_emb", "final/ema"):
    assert report.tolerance[q] == 1e-4
  assert report.tolerance["adam_update (L2)"] == 1e-3
  assert report.tolerance["halted"] == 0.0 and not report.mismatches


def _old_scale_by_adam_atan2(b1=0.9, b2=0.95):
  """The formula recur used before: atan2(m_hat, sqrt(v_hat))."""
  def init_fn(params):
    return optim.ScaleByAdamAtan2State(
        count=jnp.zeros([], jnp.int32),
        mu=jax.tree.map(jnp.zeros_like, params),
        nu=jax.tree.map(jnp.zeros_like, params))

  def update_fn(updates, state, params=None):
    del params
    count = state.count + 1
    mu = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, state.mu, updates)
    nu = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, state.nu, updates)
    t = count.astype(jnp.float32)
    bc1, bc2 = 1 - b1 ** t, 1 - b2 ** t
    out = jax.tree.map(lambda m, v: jnp.arctan2(m / bc1, jnp.sqrt(v / bc2)), mu, nu)
    return out, optim.ScaleByAdamAtan2State(count, mu, nu)
  return optax.GradientTransformation(init_fn, update_fn)


def test_old_adam_atan2_formula_is_caught(monkeypatch):
  # Given recur's AdamATan2 with the bias correction inside the atan2.
  monkeypatch.setattr(optim, "scale_by_adam_atan2", _old_scale_by_adam_atan2)
  # When the replay runs, then the final weights are far outside 1e-4.
  report = parity_trajectory.run_trajectory_parity(CASES["traj_trm_att"])
  assert not report.ok
  assert report.worst["final/dense"] > 1e-3


def test_parity_cli_dispatches_trajectory_fixtures(capsys):
  assert parity_trajectory.is_trajectory(CASES["traj_hrm"])
  assert parity.main([CASES["traj_hrm"]]) == 0
  assert "traj_hrm (trajectory)" in capsys.readouterr().out
