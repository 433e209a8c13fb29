"""The one training loop behind every entry point.

    run(config, workdir) -> final metrics

* Builds the dataset (`recur.data.make_source`), the model config (vocab, length
  and puzzle-table size from the data), the mesh, and the jitted train step with
  `NamedSharding`s and donation. Several hosts: every process runs this same
  function; each loads only its share of every global batch.
* Resumes from the latest Orbax checkpoint in `workdir/checkpoints` when there is
  one. A checkpoint holds everything for an exact resume: the train state (params,
  AdamATan2 state, EMA, puzzle-embedding table, ACT carry, RNG, step) and the
  data iterator position; the model/data fingerprint is saved beside it and a
  checkpoint of an incompatible config is refused.
* Metrics are fetched one step late (the host never waits on the step it just
  dispatched, and never has more than two in flight, see docs/training.md on the
  fake-device all-reduce hang). A non-finite loss stops the run naming the step;
  no checkpoint is written from a non-finite state, so the last one is good.
* Writes metrics.jsonl, TensorBoard events, config.json and a progress line
  (process 0 only).
"""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from experiments import evaluation, paths, preemption
from experiments.writers import MetricsWriter, Progress, write_json_atomic
from recur import models, sharding, train
from recur.data import make_source
from recur.data.pipeline import TrainIterator, make_global_batch

__all__ = ["run", "build_source", "build_model_config", "RunError"]

log = logging.getLogger("recur")


class RunError(RuntimeError):
  """A run that cannot go on (bad checkpoint, non-finite loss, ...)."""


def build_source(config: ml_collections.ConfigDict):
  d = config.data.to_dict()
  name = d.pop("name")
  for k in ("eval_batch_size", "eval_max_versions", "eval_max_batches"):
    d.pop(k, None)
  d = {k: v for k, v in d.items() if v is not None}
  if not d.get("path"):
    d.pop("path", None)
  else:
    d["path"] = paths.local_copy(d["path"])  # gs://... is downloaded once
  return make_source(name, **d)


def build_model_config(config: ml_collections.ConfigDict, info, num_devices: int = 1):
  fields = config.model.to_dict()
  name = fields.pop("name")
  # Row-sharded tables need rows divisible by the device count; extra rows are
  # never looked up.
  rows = info.num_puzzle_identifiers
  rows = -(-rows // num_devices) * num_devices
  return models.make_config(name, vocab_size=info.vocab_size, seq_len=info.seq_len,
                            num_puzzle_identifiers=rows, **fields)


def _optim_config(config, total_steps: int) -> train.OptimConfig:
  return train.OptimConfig(global_batch_size=config.batch_size,
                           total_steps=total_steps, **config.optim.to_dict())


def _fingerprint(cfg, oc: train.OptimConfig, source) -> dict[str, Any]:
  """What a checkpoint must agree with to be resumed."""
  model = {k: v for k, v in dataclasses.asdict(cfg).items()
           if k not in ("unroll", "remat", "attention_impl")}
  return {"model": model, "global_batch_size": oc.global_batch_size,
          "data": {"name": source.info.name, "seq_len": source.info.seq_len,
                   "vocab_size": source.info.vocab_size,
                   "num_puzzle_identifiers": source.info.num_puzzle_identifiers}}


def _diff(a: dict, b: dict, prefix="") -> list[str]:
  out = []
  for k in sorted(set(a) | set(b)):
    va, vb = a.get(k), b.get(k)
    if isinstance(va, dict) and isinstance(vb, dict):
      out += _diff(va, vb, f"{prefix}{k}.")
    elif va != vb:
      out.append(f"{prefix}{k}: checkpoint {va!r} vs now {vb!r}")
  return out


def _checkpoint_manager(workdir: str, config) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(
      max_to_keep=config.get("keep_checkpoints", 3),
      enable_async_checkpointing=config.get("async_checkpointing", True),
      create=True)
  return ocp.CheckpointManager(paths.join(workdir, "checkpoints"),
                               options=options, item_names=("state", "data", "meta"))


def restore_params(workdir: str, config=None, step: int | None = None):
  """Loads (model config, eval params) of a run's checkpoint for inference."""
  if config is None:
    config = ml_collections.ConfigDict(
        json.loads(paths.read_text(paths.join(workdir, "config.json"))))
  mngr = _checkpoint_manager(workdir, config)
  step = mngr.latest_step() if step is None else step
  if step is None:
    raise RunError(f"{workdir}: no checkpoint to load")
  meta = mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
  cfg = models.make_config(meta["model"]["model"], **{
      k: v for k, v in meta["model"].items() if k != "model"})
  restored = mngr.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore()))["state"]
  mngr.close()
  state = train.TrainState(*[restored[f] for f in train.TrainState._fields]) \
      if isinstance(restored, dict) else restored
  return cfg, jax.tree.map(jnp.asarray, train.eval_params(state)), config, step


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  workdir = paths.normalize(workdir)  # a URL (gs://...) stays one
  is_main = jax.process_index() == 0
  source = build_source(config)
  mesh = sharding.make_mesh()
  n_dev = mesh.devices.size
  cfg = build_model_config(config, source.info, n_dev)

  gb = config.batch_size
  if gb % n_dev:
    raise RunError(f"batch_size {gb} is not divisible by the {n_dev} devices")
  it = TrainIterator(source, gb, seed=config.seed,
                     process_index=jax.process_index(),
                     process_count=jax.process_count(),
                     prefetch=config.get("prefetch", 2))
  total = int(config.steps) if config.get("steps") else max(
      1, int(config.epochs * it.steps_per_epoch))
  oc = _optim_config(config, total)
  fp = _fingerprint(cfg, oc, source)

  # Abstract state -> shardings -> jitted init, so large tables are created
  # directly in their sharded layout.
  example = {k: jax.ShapeDtypeStruct((gb,) + v.shape[1:], v.dtype)
             for k, v in _example_batch(source).items()}
  init_fn = functools.partial(train.init_state, cfg=cfg, oc=oc, example_batch=example)
  abstract = jax.eval_shape(init_fn, jax.random.PRNGKey(config.seed))
  state_sh = sharding.state_shardings(abstract, mesh, config.get("table_sharding", "replicated"))
  batch_sh = sharding.batch_sharding(mesh)
  step_fn = jax.jit(functools.partial(train.train_step, cfg=cfg, oc=oc),
                    in_shardings=(state_sh, batch_sh), out_shardings=(state_sh, None),
                    donate_argnums=0)

  mngr = _checkpoint_manager(workdir, config)
  start = mngr.latest_step()
  if start is not None:
    meta = mngr.restore(start, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    diffs = _diff(meta, json.loads(json.dumps(fp)))
    if diffs:
      raise RunError(
          f"{workdir}/checkpoints/{start} was written by an incompatible config; "
          "refusing to resume. Differences:\n  " + "\n  ".join(diffs) +
          "\nUse a new --workdir or the original config.")
    target = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                          abstract, state_sh)
    restored = mngr.restore(start, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(_drop_empty(target)), data=ocp.args.JsonRestore()))
    state = _refill_empty(target, restored["state"])
    it.set_state(restored["data"])
    if is_main:
      print(f"Resumed from {workdir}/checkpoints/{start} (step {start}/{total}).", flush=True)
  else:
    start = 0
    state = jax.jit(init_fn, out_shardings=state_sh)(jax.random.PRNGKey(config.seed))
  if is_main:
    write_json_atomic(os.path.join(workdir, "config.json"), config.to_dict())
    write_json_atomic(os.path.join(workdir, "model.json"), fp)

  writer = MetricsWriter(workdir, enabled=is_main, resume_step=start)
  progress = Progress(total, start, gb, enabled=is_main)
  log_every = max(1, int(config.log_every))
  eval_every = int(config.get("eval_every", 0) or 0)
  ckpt_every = int(config.get("checkpoint_every", 0) or 0)
  last = {}

  def save(step, state):
    mngr.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(_drop_empty(state)), data=ocp.args.JsonSave(it.get_state()),
        meta=ocp.args.JsonSave(fp)), force=True)

  def handle(step, sums, ex_per_s=None):
    nonlocal last
    sums = jax.device_get(sums)
    m = {f"train/{k}": v for k, v in train.reduce_metrics(sums, gb).items()}
    if not math.isfinite(m["train/loss"]):
      mngr.wait_until_finished()
      good = mngr.latest_step()
      raise RunError(f"non-finite loss {m['train/loss']} at step {step}; stopping. "
                     f"The last good checkpoint is step {good} in {workdir}/checkpoints.")
    last = m
    if step % log_every == 0 or step == total:
      rate = progress.rate(step) if ex_per_s is None else ex_per_s
      m["examples_per_s"] = rate
      writer.write(step, m)
      progress.line(step, rate, m)

  pending = None
  step = start
  # Polled once per step: SIGTERM -> every process saves the same step and
  # stops (Preempted); config.profile_steps="A:B" -> a jax.profiler trace.
  watch = preemption.PreemptionWatch()
  profile = preemption.ProfileWindow(config.get("profile_steps"), workdir)
  try:
    while step < total:
      profile.poll(step, state)
      if watch.reached(step):
        if pending is not None:
          handle(*pending)  # never checkpoint a non-finite state
          pending = None
        if mngr.latest_step() != step:
          save(step, state)
        mngr.wait_until_finished()
        raise preemption.Preempted(step, watch.seconds_since_signal())
      batch = make_global_batch(next(it), mesh)
      state, sums = step_fn(state, batch)
      step += 1
      if pending is not None:
        handle(*pending)
      pending = (step, sums)
      want_ckpt = ckpt_every and step % ckpt_every == 0
      want_eval = eval_every and step % eval_every == 0 and step != total
      if want_ckpt or want_eval:
        handle(*pending)  # never checkpoint a non-finite state
        pending = None
      if want_ckpt:
        save(step, state)
      if want_eval:
        res = evaluation.evaluate(config, cfg, train.eval_params(state), source, mesh)
        writer.write(step, res)
        if is_main:
          print(evaluation.format_eval(step, res), flush=True)
    if pending is not None:
      handle(*pending)
    profile.poll(step, state)
    if mngr.latest_step() != total:
      save(total, state)
    mngr.wait_until_finished()
    final = dict(last)
    if config.get("eval_at_end", True):
      res = evaluation.evaluate(config, cfg, train.eval_params(state), source, mesh,
                                workdir=workdir if is_main else None)
      writer.write(total, res)
      final.update(res)
      if is_main:
        print(evaluation.format_eval(total, res), flush=True)
    return final
  finally:
    profile.stop()
    watch.close()
    writer.close()
    mngr.close()
    it.close()


def _drop_empty(tree):
  """Orbax refuses zero-size arrays (the baseline's carry.z_L is [B, 0, D])."""
  return jax.tree.map(lambda x: None if x.size == 0 else x, tree)


def _refill_empty(target, restored):
  """Puts the zero-size leaves dropped by `_drop_empty` back (same leaf order)."""
  kept = iter(jax.tree.leaves(restored))
  leaves, treedef = jax.tree.flatten(target)
  return treedef.unflatten([jnp.zeros(t.shape, t.dtype, device=t.sharding)
                            if t.size == 0 else next(kept) for t in leaves])


def _example_batch(source) -> dict[str, np.ndarray]:
  s = source.info.seq_len
  return {"inputs": np.zeros((1, s), np.int32), "labels": np.zeros((1, s), np.int32),
          "puzzle_identifiers": np.zeros((1,), np.int32)}
