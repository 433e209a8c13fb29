"""The one training loop behind every entry point.

    run(config, workdir) -> Run (state, model config, source, final metrics)

* Builds the dataset (`recur.data.make_source`), the model config (vocab, length
  and puzzle-table size from the data), the mesh, and the jitted train step with
  `NamedSharding`s and donation. Several hosts: every process runs this same
  function; each loads only its share of every global batch.
* Holds the workdir lock (`experiments.workdir_lock`): a second run on the same
  workdir is refused naming the holder; a dead run's lock is taken over.
* Resumes from the newest good checkpoint in `workdir/checkpoints`
  (`recur.checkpoint.RunCheckpoints`: damaged ones are reported, skipped and
  moved aside; checksums catch flipped bits). A checkpoint holds everything for
  an exact resume: the train state (params, AdamATan2 state, EMA,
  puzzle-embedding table, ACT carry, RNG, step) and the data iterator position.
  Its fingerprint (`recur.fingerprint`: model, batch, data options, seed, data
  files' hashes) must match, else the run is refused naming what changed; the
  device and process counts may change (elastic resume: the state is restored
  into this mesh's shardings and the puzzle table, padded to a multiple of the
  device count, is re-padded; the data position is global);
  changed optimizer settings (a lower learning rate after a divergence) are
  allowed and printed. `steps` below the checkpoint's step is refused.
* Metrics are fetched one step late (the host never waits on the step it just
  dispatched, and never has more than two in flight, see docs/training.md on the
  fake-device all-reduce hang). The step also reports, computed on device,
  whether the updated parameters and optimizer state are finite and their
  largest magnitude: a non-finite loss or gradient norm, a non-finite update or
  parameters above `max_param_abs` (default 1e6; 0: no limit) stop the run
  naming the step and the last good checkpoint. Every state is checked before it
  is saved, so no checkpoint holds a non-finite or exploded state.
* Keeps the latest `keep_checkpoints` and, with `best_metric` (e.g.
  "eval/exact_accuracy", ARC "eval/pass@2"; `best_mode` max or min), the best
  checkpoint by that evaluation metric in workdir/best/ (`experiments.best`).
* Writes metrics.jsonl, TensorBoard events, config.json and a progress line
  (process 0 only).
"""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import sys
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from experiments import evaluation, paths, preemption
from experiments.best import BestCheckpoint
from experiments.workdir_lock import WorkdirLock
from experiments.writers import MetricsWriter, Progress, write_json_atomic
from recur import checkpoint, checks, fingerprint, models, sharding, train
from recur.data import make_source
from recur.data import source_names as data_source_names
from recur.data.pipeline import TrainIterator, make_global_batch

__all__ = ["run", "Run", "build_source", "build_model_config", "RunError"]

log = logging.getLogger("recur")


class RunError(RuntimeError):
  """A run that cannot go on (bad checkpoint, non-finite loss, ...)."""


def build_source(config: ml_collections.ConfigDict):
  d = config.data.to_dict()
  name = d.pop("name")
  for k in ("eval_batch_size", "eval_max_versions", "eval_max_batches"):
    d.pop(k, None)
  stored, data_dir = d.pop("source", "") or "", d.pop("data_dir", "") or ""
  if stored or data_dir:
    return _stored_source(name, stored, data_dir, d.get("path") or "")
  # `generated=False` (the paper variants): the run needs the published files.
  generated = d.pop("generated", None)
  d = {k: v for k, v in d.items() if v is not None}
  if not d.get("path"):
    d.pop("path", None)
    if generated is False:
      raise RunError(
          f"this config trains on the published {name} data: pass "
          "--config.data.path=DIR (train.csv and test.csv, columns source,q,a,rating), "
          "or --config.data.generated=True to train on the built-in generator instead")
  else:
    d["path"] = paths.local_copy(d["path"])  # gs://... is downloaded once
  return make_source(name, **d)


def _stored_source(name: str, stored: str, data_dir: str, path: str):
  """`--config.data.source=tfds`: `name` is a built TFDS dataset (e.g.
  recur_sudoku/smoke) in `data_dir`, or `path` is its directory (a `prepare`d
  one included); the source options of the config are not used."""
  if stored != "tfds":
    raise RunError(
        f"config.data.source={stored!r}: the only stored source is 'tfds' (leave "
        "it empty to build `config.data.name` itself)" if stored else
        f"config.data.data_dir={data_dir!r} is where built TFDS datasets are: add "
        "--config.data.source=tfds --config.data.name=BUILDER/CONFIG")
  # array_record reads local files only (without TensorFlow): a dataset in a
  # bucket is copied once into the cache (experiments.paths.local_copy).
  if path:
    return make_source("tfds", path=paths.local_copy(path))
  if not data_dir or "/" not in name and name in data_source_names():
    raise RunError(
        "config.data.source=tfds reads a built TFDS dataset: pass "
        "--config.data.name=BUILDER/CONFIG (e.g. recur_sudoku/smoke) and "
        "--config.data.data_dir=DIR (or --config.data.path=DATASET_DIR); build it "
        "with `python -m recur.tfds build BUILDER/CONFIG --data_dir=DIR`")
  if paths.is_url(data_dir):
    from recur.data.tfds_source import built_dir  # pylint: disable=g-import-not-at-top
    return make_source("tfds", path=paths.local_copy(built_dir(name, data_dir)))
  return make_source("tfds", builder=name, data_dir=data_dir)


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


@dataclasses.dataclass
class Run:
  """A finished run as the loop leaves it: what the report and the
  experiments draw from, without restoring the checkpoint or rebuilding data."""
  config: ml_collections.ConfigDict
  workdir: str
  cfg: Any                      # the model config (recur.models)
  source: Any                   # the data source (recur.data)
  mesh: jax.sharding.Mesh
  state: train.TrainState       # the final train state (sharded over mesh)
  metrics: dict[str, Any]       # last train metrics + final evaluation
  step: int

  @property
  def params(self) -> dict[str, Any]:
    """Eval params (EMA weights if the run keeps an EMA)."""
    return train.eval_params(self.state, _optim_config(self.config, self.step))


def _run_length(config: ml_collections.ConfigDict, it: TrainIterator,
                announce: bool) -> tuple[int, int]:
  """(steps to train, LR schedule horizon). `config.steps` sets both; else
  the reference's plan for `config.epochs` (`TrainIterator.plan`): the
  schedule spans pretrain.py's total_steps and the run ends when the epochs'
  blocks run out of full batches (65,100 of 65,104 for the 1k Sudoku/Maze
  sets at 50k epochs in blocks of 5000)."""
  if config.get("steps"):
    total = int(config.steps)
    if announce:
      print(f"Planned: {total} steps (config.steps; epochs not used).", flush=True)
    return total, total
  try:
    plan = it.plan(int(config.epochs))
  except ValueError as e:
    raise RunError(f"config.epochs / config.epochs_per_block: {e}") from e
  if plan.steps < 1:
    raise RunError(f"{config.epochs} epochs of {it.source.info.name} make no full "
                   f"batch of {config.batch_size}: {plan.describe()}")
  if announce:
    print(f"Planned: {plan.describe()}.", flush=True)
  return plan.steps, plan.schedule_steps


def _guarded_step(state, batch, *, cfg, oc):
  """train_step plus, on device, whether the new state is finite and the
  largest parameter magnitude (two scalars; the loss alone is computed before
  the update it would have to vouch for)."""
  new, sums = train.train_step(state, batch, cfg=cfg, oc=oc)
  floats = [x for x in jax.tree.leaves((new.params, new.puzzle_emb, new.ema,
                                        new.opt_state))
            if jnp.issubdtype(x.dtype, jnp.floating) and x.size]
  weights = [x for x in jax.tree.leaves((new.params, new.puzzle_emb))
             if jnp.issubdtype(x.dtype, jnp.floating) and x.size]
  finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in floats]))
  biggest = jnp.max(jnp.stack([jnp.max(jnp.abs(x)).astype(jnp.float32) for x in weights]))
  return new, {**sums, "_update_finite": finite, "_param_max_abs": biggest}


def _problem(m: dict[str, float], finite: bool, biggest: float, limit: float) -> str | None:
  if not math.isfinite(m["train/loss"]):
    return f"non-finite loss {m['train/loss']}"
  if not math.isfinite(m.get("train/grad_norm", 0.0)):
    return f"non-finite gradient norm {m['train/grad_norm']}"
  if not finite:
    return "non-finite parameters or optimizer state after the update"
  if limit and not biggest <= limit:
    return (f"parameters exploded: max |w| = {biggest:.3g} after the update "
            f"(above max_param_abs={limit:g})")
  return None


def run(config: ml_collections.ConfigDict, workdir: str) -> Run:
  workdir = paths.normalize(workdir)  # a URL (gs://...) stays one
  lock = WorkdirLock(workdir, jax.process_index(),  # also watches the peers' leases
                     stale_s=float(config.get("lock_stale_s", 120.0)),
                     num_processes=jax.process_count()).acquire()
  try:
    return _run(config, workdir, lock)
  finally:
    lock.release()


def _run(config: ml_collections.ConfigDict, workdir: str, lock: WorkdirLock) -> Run:
  is_main = jax.process_index() == 0
  source = build_source(config)
  notice = getattr(source, "notice", None)
  notice = notice() if callable(notice) else None
  if notice and is_main:
    print(notice, flush=True)
  mesh = sharding.make_mesh()
  n_dev = mesh.devices.size
  cfg = build_model_config(config, source.info, n_dev)

  gb = config.batch_size
  checks.check_batch_fits_devices(gb, n_dev, "config.batch_size")
  it = TrainIterator(source, gb, seed=config.seed,
                     process_index=jax.process_index(),
                     process_count=jax.process_count(),
                     prefetch=config.get("prefetch", 2),
                     epochs_per_block=int(config.get("epochs_per_block", 1) or 1))
  total, schedule = _run_length(config, it, is_main)
  oc = _optim_config(config, schedule)
  fp = fingerprint.run_fingerprint(cfg, oc.global_batch_size, source,
                                   config.data.to_dict(), config.seed)
  optim_now = json_safe(dataclasses.asdict(oc))

  # Abstract state -> shardings -> jitted init, so large tables are created
  # directly in their sharded layout.
  example = {k: jax.ShapeDtypeStruct((gb,) + v.shape[1:], v.dtype)
             for k, v in _example_batch(source).items()}
  init_fn = functools.partial(train.init_state, cfg=cfg, oc=oc, example_batch=example)
  abstract = jax.eval_shape(init_fn, jax.random.PRNGKey(config.seed))
  state_sh = sharding.state_shardings(abstract, mesh, config.get("table_sharding", "replicated"))
  batch_sh = sharding.batch_sharding(mesh)
  step_fn = sharding.jit_under_mesh(
      functools.partial(_guarded_step, cfg=cfg, oc=oc), mesh,
      in_shardings=(state_sh, batch_sh), out_shardings=(state_sh, None),
      donate_argnums=0)

  ckpt_dir = paths.join(workdir, "checkpoints")
  ckpts = checkpoint.RunCheckpoints(ckpt_dir, keep=config.get("keep_checkpoints", 3),
                                    async_save=config.get("async_checkpointing", True))

  def check_meta(meta):
    saved = dict(meta.get("fingerprint", meta))
    # Checkpoints written before the model kind was spelled `name` say `model`.
    saved["model"] = models.canonical_fields(saved.get("model", {}))
    diffs = fingerprint.diff(fingerprint.resume_view(saved), fingerprint.resume_view(fp))
    if diffs:
      raise RunError(
          f"{ckpt_dir} was written by an incompatible config or other data; "
          "refusing to resume. Differences:\n  " + "\n  ".join(diffs) +
          "\nUse a new --workdir or the original config and data.")

  warn = (lambda m: print(f"warning: {m}", file=sys.stderr, flush=True)) if is_main \
      else (lambda m: None)
  target = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                        abstract, state_sh)

  def target_for(meta):
    # Elastic resume: the checkpoint's table has the rows its device count
    # padded to; restore those (replicated) and re-pad below.
    rows = _saved_table_rows(meta)
    if rows is None or rows == abstract.puzzle_emb.shape[0]:
      return target
    t = abstract.puzzle_emb
    return target._replace(puzzle_emb=jax.ShapeDtypeStruct(
        (rows,) + t.shape[1:], t.dtype, sharding=sharding.replicated(mesh)))

  try:
    found = ckpts.restore_newest(target_for, check_meta, warn=warn)
  except checkpoint.CheckpointError as e:
    ckpts.close()
    raise RunError(str(e)) from e
  except BaseException:
    ckpts.close()
    raise
  pool = evaluation.VotePool()
  if found is not None:
    start, state = found.step, found.state
    try:
      pool = evaluation.VotePool(ckpts.read_evaluation(start))
    except (checkpoint.CheckpointError, ValueError) as e:
      ckpts.close()
      raise RunError(f"{ckpt_dir}/{start}: pooled evaluation votes: {e}") from e
    if state.puzzle_emb.shape != abstract.puzzle_emb.shape:
      state = state._replace(puzzle_emb=_repad_table(
          state.puzzle_emb, abstract.puzzle_emb.shape[0], source.info.num_puzzle_identifiers,
          state_sh.puzzle_emb))
    if total < start:
      ckpts.close()
      raise RunError(
          f"steps={total} is below the step of the checkpoint to resume, {start} "
          f"({ckpt_dir}/{start}); nothing to train and the checkpoint is not rewound. "
          f"Use --config.steps >= {start} (or more epochs), or a new --workdir.")
    it.set_state(found.data)
    for change in fingerprint.optim_changes(found.meta.get("optim"), optim_now):
      if is_main:
        print(f"Resuming with a changed optimizer setting (allowed): {change}", flush=True)
    if is_main:
      print(f"Resumed from {ckpt_dir}/{start} (step {start}/{total}).", flush=True)
  else:
    start = 0
    state = jax.jit(init_fn, out_shardings=state_sh)(jax.random.PRNGKey(config.seed))
  if is_main:
    write_json_atomic(paths.join(workdir, "config.json"), config.to_dict())
    write_json_atomic(paths.join(workdir, "model.json"), fp)

  try:
    writer = MetricsWriter(workdir, enabled=is_main, resume_step=start)
    best = BestCheckpoint(workdir, config.get("best_metric") or None,
                          config.get("best_mode", "max"),
                          async_save=config.get("async_checkpointing", True), warn=warn)
  except BaseException:
    ckpts.close()
    raise
  progress = Progress(total, start, gb, enabled=is_main)
  log_every = max(1, int(config.log_every))
  eval_every = int(config.get("eval_every", 0) or 0)
  ckpt_every = int(config.get("checkpoint_every", 0) or 0)
  limit = float(config.get("max_param_abs", 1e6) or 0.0)
  last = {}

  def save(step, state):
    ckpts.save(step, state, it.get_state(), {"fingerprint": fp, "optim": optim_now},
               evaluation=pool.state)

  def offer_best(step, state, res):
    if best.offer(step, res, state, it.get_state(), {"fingerprint": fp, "optim": optim_now}) \
        and is_main:
      print(f"best {best.metric} {best.value:.4f} at step {step}: saved to "
            f"{paths.join(workdir, checkpoint.BEST_DIR)}", flush=True)

  def handle(step, sums, ex_per_s=None):
    nonlocal last
    lock.check()
    sums = dict(jax.device_get(sums))
    finite, biggest = bool(sums.pop("_update_finite")), float(sums.pop("_param_max_abs"))
    m = {f"train/{k}": v for k, v in train.reduce_metrics(sums, gb).items()}
    problem = _problem(m, finite, biggest, limit)
    if problem:
      ckpts.wait()
      good = ckpts.latest_step()
      where = (f"The last good checkpoint is step {good} ({ckpt_dir}/{good}); "
               "resume from it with the same command (a lower --config.optim.lr is "
               "allowed)." if good is not None else "No checkpoint was written.")
      raise RunError(f"{problem} at step {step}; stopping. {where}")
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
        if ckpts.latest_step() != step:
          save(step, state)
        ckpts.wait()
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
        handle(*pending)  # never checkpoint an unchecked state
        pending = None
      # Evaluate before saving: the checkpoint then holds this evaluation's
      # votes in the pool, so a run resumed from it reports the same.
      if want_eval:
        res = evaluation.evaluate(config, cfg, train.eval_params(state, oc), source, mesh,
                                  pool=pool)
        writer.write(step, res)
        if is_main:
          print(evaluation.format_eval(step, res), flush=True)
        offer_best(step, state, res)
      if want_ckpt:
        save(step, state)
    if pending is not None:
      handle(*pending)
    profile.poll(step, state)
    if ckpts.latest_step() != total:
      save(total, state)
    ckpts.wait()
    final = dict(last)
    if config.get("eval_at_end", True):
      res = evaluation.evaluate(config, cfg, train.eval_params(state, oc), source, mesh,
                                workdir=workdir if is_main else None, pool=pool)
      writer.write(total, res)
      final.update(res)
      if is_main:
        print(evaluation.format_eval(total, res), flush=True)
      offer_best(total, state, res)
    best.wait()
    return Run(config=config, workdir=workdir, cfg=cfg, source=source, mesh=mesh,
               state=state, metrics=final, step=total)
  finally:
    profile.stop()
    watch.close()
    writer.close()
    best.close()
    ckpts.close()
    it.close()


def _saved_table_rows(meta) -> int | None:
  """The puzzle-table rows of a checkpoint (its model config's padded count)."""
  model = dict(meta.get("fingerprint", meta)).get("model", {})
  rows = model.get("num_puzzle_identifiers")
  return None if rows is None else int(rows)


def _repad_table(table, rows: int, used: int, out_sharding):
  """A restored puzzle table cut or zero-padded to `rows` (this mesh's padding).
  Rows from `used` on are never looked up, so they are zero in any run (the
  sparse update leaves rows outside the batch bit-for-bit unchanged)."""
  def fit(t):
    if t.shape[0] >= rows:
      return t[:rows]
    return jnp.pad(t, [(0, rows - t.shape[0])] + [(0, 0)] * (t.ndim - 1))
  if rows < used:
    raise RunError(f"puzzle table of {rows} rows cannot hold {used} identifiers")
  return jax.jit(fit, out_shardings=out_sharding)(table)


def json_safe(obj):
  """A JSON round trip (tuples -> lists), so saved and current values compare."""
  return json.loads(json.dumps(obj))


def _example_batch(source) -> dict[str, np.ndarray]:
  s = source.info.seq_len
  return {"inputs": np.zeros((1, s), np.int32), "labels": np.zeros((1, s), np.int32),
          "puzzle_identifiers": np.zeros((1,), np.int32)}
