"""Training-trajectory parity: replays K optimiser steps of the reference.

    python -m recur.parity tests/fixtures/trajectory/*.npz

A trajectory fixture (json "kind": "trajectory"; written by
tools/make_trajectory_fixture.py from the reference's own `train_batch`) holds
the reference's initial state, K batches, and what its training did with them.
We start `recur.train.train_step` from the same state, with an `OptimConfig`
built from the fixture's optimiser settings, and feed it the same batches. The
run is free-running: our weights, optimiser moments, puzzle table, EMA and ACT
carry are ours from step 0 on, so this checks the whole recipe (AdamATan2, the
sparse sign-SGD, the lr schedule's step convention, EMA, ACT refill) and not
one step in isolation. Compared, with err = max|ours - ref| / max|ref| (the
`recur.parity` measure) unless said otherwise:

* per step: the loss and every metric `train_batch` returns, 1e-4; the carry's
  halted flags and step counts, and the puzzle ids in play, exactly;
* at the recorded steps, the change of the dense parameters (the Adam update
  with weight decay, all parameters as one vector):
  ||ours - ref||_2 / ||ref||_2 <= 1e-3. Not max-norm, and not per tensor: an
  update is measured as p_after - p_before in float32, so it is quantised to
  one ulp of p. On a tiny tensor that is visible: in traj_trm_att, q_head.bias
  (2 values, p = -1.5, update 7.2e-5 at step 11) differs by exactly one ulp of
  1.5 (1.2e-7), 1.7e-3 relative, while the parameter itself agrees to 1e-7.
  The worst per-tensor figure is printed as information;
* at the end: every dense parameter, the puzzle-embedding table and the EMA of
  every dense parameter, 1e-4.

Metric reduction: the reference divides every metric but the losses by the
count of halted rows, `count` included (so its `count` is 1 or 0); recur's
`reduce_metrics` keeps `count` raw, so `count` is compared as count/max(count, 1).
"""
from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from recur import act, convert, models, optim, train
from recur.parity import ParityReport, load_fixture, rel_err

__all__ = ["is_trajectory", "run_trajectory_parity", "optim_config"]

TOL = 1e-4
UPDATE_TOL = 1e-3


def is_trajectory(npz_path: str) -> bool:
  """Whether the fixture at `npz_path` is a training-trajectory fixture (its
  `.json` sidecar says so)."""
  json_path = os.path.splitext(npz_path)[0] + ".json"
  if not os.path.exists(json_path):
    return False
  with open(json_path) as f:
    return json.load(f).get("kind") == "trajectory"


def l2_rel(ours, ref) -> float:
  ours = np.asarray(ours, np.float64)
  ref = np.asarray(ref, np.float64)
  if ours.shape != ref.shape:
    return float("inf")
  scale = np.linalg.norm(ref)
  diff = np.linalg.norm(ours - ref)
  return float(diff / scale) if scale > 0 else float(diff)


def optim_config(meta: dict) -> train.OptimConfig:
  """The `OptimConfig` of a trajectory fixture's metadata (batch size, schedule,
  EMA and puzzle-embedding optimiser settings)."""
  o = meta["optim"]
  return train.OptimConfig(
      global_batch_size=int(meta["batch"]), total_steps=int(o["total_steps"]),
      lr=o["lr"], lr_min_ratio=o["lr_min_ratio"],
      lr_warmup_steps=int(o["lr_warmup_steps"]), beta1=o["beta1"],
      beta2=o["beta2"], weight_decay=o["weight_decay"],
      puzzle_emb_lr=o["puzzle_emb_lr"],
      puzzle_emb_weight_decay=o["puzzle_emb_weight_decay"], ema=bool(o["ema"]),
      ema_rate=o["ema_rate"],
      loss_type=meta.get("loss_type", "stablemax_cross_entropy"))


def _to_reference_names(net) -> dict[str, np.ndarray]:
  """Dense net pytree -> {canonical reference name: array}."""
  zeros = np.zeros((0,), np.float32)
  sd = convert.to_reference({"net": jax.tree.map(np.asarray, net),
                             "H_init": zeros, "L_init": zeros}, prefix="")
  return {k: v for k, v in sd.items() if k not in ("H_init", "L_init")}


def _compare_dense(report: ParityReport, quantity: str, ours: dict, fx: dict,
                   prefix: str, measure, tol: float):
  for key, ref in fx.items():
    if not key.startswith(prefix):
      continue
    name = convert._canonical(key[len(prefix):])  # pylint: disable=protected-access
    if name not in ours:
      report.mismatches.append(f"{quantity}: {name} missing")
      report.err(quantity, float("inf"), tol)
      continue
    report.err(quantity, measure(ours[name], ref), tol)


def run_trajectory_parity(npz_path: str, json_path: str | None = None,
                          optimizer: train.OptimConfig | None = None
                          ) -> ParityReport:
  """Replays a trajectory fixture with `recur.train.train_step`."""
  meta, fx = load_fixture(npz_path, json_path)
  if meta.get("kind") != "trajectory":
    raise ValueError(f"{npz_path}: json 'kind' is {meta.get('kind')!r}, not 'trajectory'")
  cfg = models.from_reference_config(meta["model"], meta["config"],
                                     compute_dtype="float32")
  oc = optimizer or optim_config(meta)
  report = ParityReport(case=meta.get("case", os.path.basename(npz_path)) + " (trajectory)")
  initial = convert.from_reference(
      {k: v for k, v in fx.items() if k.startswith(("param/", "buffer/"))})
  initial = jax.tree.map(jnp.asarray, initial)
  num_steps = int(meta["steps"])

  def batch_at(t):
    prefix = f"step{t}/batch/"
    return {k[len(prefix):]: jnp.asarray(v) for k, v in fx.items() if k.startswith(prefix)}

  net = initial["net"]
  state = train.TrainState(
      step=jnp.zeros((), jnp.int32),
      params={"net": net, "H_init": initial["H_init"], "L_init": initial["L_init"]},
      puzzle_emb=initial["puzzle_emb"],
      opt_state=train.make_optimizer(oc).init(net),
      ema=optim.ema_init(net) if oc.ema else None,
      carry=act.empty_carry(cfg, batch_at(0)),
      key=jax.random.PRNGKey(0))
  step_fn = jax.jit(lambda s, b: train.train_step(s, b, cfg=cfg, oc=oc))

  for t in range(num_steps):
    p = f"step{t}"
    before = state.params["net"]
    state, sums = step_fn(state, batch_at(t))
    carry = state.carry
    report.exact(f"halted@{p}", carry.halted, fx[f"{p}/carry_out/halted"])
    report.exact(f"steps@{p}", carry.steps, fx[f"{p}/carry_out/steps"])
    report.exact(f"puzzle_ids@{p}", carry.current_data["puzzle_identifiers"],
                 fx[f"{p}/current_data/puzzle_identifiers"])
    report.err("loss", rel_err(sums["loss"], fx[f"{p}/loss"]), TOL)
    ours = train.reduce_metrics(jax.device_get(sums), oc.global_batch_size)
    ours["count"] = ours["count"] / max(ours["count"], 1.0)
    for key, ref in fx.items():
      if not key.startswith(f"{p}/metric/"):
        continue
      name = key.rsplit("/", 1)[1]
      if name not in ours:
        report.mismatches.append(f"metric {name}@{p} missing")
        report.err(f"metric/{name}", float("inf"), TOL)
        continue
      report.err(f"metric/{name}", rel_err(ours[name], ref), TOL)
    if any(k.startswith(f"{p}/update/") for k in fx):
      update = jax.tree.map(lambda a, b: np.asarray(a) - np.asarray(b),
                            state.params["net"], before)
      ours_u = _to_reference_names(update)
      names = sorted(k for k in fx if k.startswith(f"{p}/update/"))
      canon = [convert._canonical(k[len(f"{p}/update/"):]) for k in names]  # pylint: disable=protected-access
      missing = [c for c in canon if c not in ours_u]
      if missing:
        report.mismatches.append(f"adam_update: {missing} missing")
        report.err("adam_update (L2)", float("inf"), UPDATE_TOL)
        continue
      report.err("adam_update (L2)", l2_rel(
          np.concatenate([ours_u[c].ravel() for c in canon]),
          np.concatenate([fx[k].ravel() for k in names])), UPDATE_TOL)
      for c, k in zip(canon, names):
        report.drift("adam_update per tensor (L2)", l2_rel(ours_u[c], fx[k]))

  _compare_dense(report, "final/dense", _to_reference_names(state.params["net"]),
                 fx, "final/param/", rel_err, TOL)
  report.err("final/puzzle_emb", rel_err(state.puzzle_emb, fx["final/puzzle_emb"]), TOL)
  if any(k.startswith("final/ema/") for k in fx):
    if state.ema is None:
      report.mismatches.append("EMA off but the fixture has one")
      report.err("final/ema", float("inf"), TOL)
    else:
      _compare_dense(report, "final/ema", _to_reference_names(state.ema), fx,
                     "final/ema/", rel_err, TOL)
  return report
