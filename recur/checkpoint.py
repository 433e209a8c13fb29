"""Saving and restoring pytrees and whole runs with Orbax, verified.

Two layers share the same three rules:

* **Zero-size leaves.** Orbax refuses arrays with a zero dimension (the
  baseline's carry `z_L` is [B, 0, D]; a model without a puzzle table,
  `puzzle_emb_ndim=0`, has a [N, 0] table). They are saved as `None` and their
  shapes/dtypes recorded in a small JSON "layout" beside the arrays, so they
  come back with or without a restore target.
* **Checksums.** Every saved leaf gets a 64-bit position-weighted checksum
  computed on device (one cheap jitted reduction, sharded arrays included). A
  restore recomputes it, so a flipped bit in a weight file (which Orbax and
  tensorstore restore silently) is detected and named.
* **Errors name what is wrong**: `CheckpointDamaged` (step, what) for a
  checkpoint that does not restore or does not verify.

`save(path, tree)` / `restore(path, target=None)` are the library's own
save/restore of params or a `TrainState`. `RunCheckpoints` is the layout of a
training run (`workdir/checkpoints/<step>/{state,data,meta}`): saving, and
restoring newest first, skipping (and moving aside) damaged checkpoints.
A run may keep a JSON `evaluation` item beside them (the ARC votes pooled over
every evaluation of the run, as TRM's evaluator keeps them), read back with
`read_evaluation`.
`restore_for_inference(workdir)` loads (model config, eval params) of a run
(`best=True`: its best checkpoint, `workdir/best/`, kept by the loop when
`config.best_metric` names an evaluation metric).
Fingerprints (what a checkpoint must agree with to be resumed) are in
`recur.fingerprint`.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

__all__ = ["CheckpointError", "CheckpointDamaged", "save", "restore", "tree_checksums",
           "drop_empty", "refill_empty", "layout_of", "verify", "RunCheckpoints",
           "RunRestore", "restore_for_inference", "InferenceCheckpoint", "BEST_DIR"]

log = logging.getLogger("recur")

FORMAT = 2   # meta["format"]: 2 = fingerprint + layout (checksums) in meta


class CheckpointError(RuntimeError):
  """A checkpoint that cannot be used (none restores, wrong config, ...)."""


class CheckpointDamaged(CheckpointError):
  """One checkpoint does not restore or does not match its checksums."""

  def __init__(self, where: str, what: str):
    super().__init__(f"{where}: {what}")
    self.where, self.what = where, what


# -- paths, zero-size leaves ---------------------------------------------------

def _key_name(k) -> str:
  for attr in ("name", "key", "idx"):
    if hasattr(k, attr):
      return str(getattr(k, attr))
  return str(k)


def leaf_path(path) -> str:
  """"params/net/w" for both a TrainState and the dicts Orbax restores it as
  without a target (attribute, dict and sequence keys spelled alike)."""
  return "/".join(_key_name(k) for k in path)


def _leaves(tree) -> list[tuple[str, Any]]:
  return [(leaf_path(p), x) for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]]


def drop_empty(tree):
  """Zero-size leaves -> None (Orbax cannot save them)."""
  return jax.tree.map(lambda x: None if x.size == 0 else x, tree)


def refill_empty(target, restored):
  """Puts the zero-size leaves of `target` (arrays or ShapeDtypeStructs,
  sharded or not) back into `restored` (same structure, those leaves None)."""
  kept = iter(jax.tree.leaves(restored))
  leaves, treedef = jax.tree.flatten(target)
  out = []
  for t in leaves:
    if t.size:
      out.append(next(kept))
    else:
      sh = getattr(t, "sharding", None)
      out.append(jnp.zeros(t.shape, t.dtype, device=sh) if sh is not None
                 else jnp.zeros(t.shape, t.dtype))
  return treedef.unflatten(out)


def _refill_from_layout(restored, empty: dict[str, list]):
  """Without a target: puts the recorded zero-size leaves back by path."""
  for path, (shape, dtype) in empty.items():
    node, keys = restored, path.split("/")
    for k in keys[:-1]:
      node = node[int(k)] if isinstance(node, list) else node[k]
    last = int(keys[-1]) if isinstance(node, list) else keys[-1]
    node[last] = jnp.zeros(tuple(shape), jnp.dtype(dtype))
  return restored


# -- checksums -------------------------------------------------------------------

# Even multipliers (2 * odd constants, mod 2^32): w = idx * K + 1 is odd.
_K1, _K2 = np.uint32((2 * 0x9E3779B1) % 2**32), np.uint32((2 * 0x85EBCA77) % 2**32)


def _as_uint32(x):
  if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
    x = jax.random.key_data(x)
  if x.dtype == jnp.bool_:
    return x.astype(jnp.uint32)
  size = jnp.dtype(x.dtype).itemsize
  if size == 4:
    return jax.lax.bitcast_convert_type(x, jnp.uint32)
  if size in (1, 2):
    u = {1: jnp.uint8, 2: jnp.uint16}[size]
    return jax.lax.bitcast_convert_type(x, u).astype(jnp.uint32)
  return jax.lax.bitcast_convert_type(x, jnp.uint32)   # 8 bytes -> [..., 2]


def _leaf_checksum(x):
  # sum(bits * w) mod 2^32 with odd weights w: flipping bit k of one element
  # changes the sum by +-2^k * w != 0 (mod 2^32), so every single-bit flip is
  # caught; modular sums do not depend on the reduction order (any sharding).
  y = _as_uint32(x)
  idx = jnp.zeros(y.shape, jnp.uint32)
  for d in range(y.ndim):
    idx = idx * np.uint32(y.shape[d]) + jax.lax.broadcasted_iota(jnp.uint32, y.shape, d)
  w1 = idx * _K1 + np.uint32(1)
  w2 = (idx ^ np.uint32(0x5BD1E995)) * _K2 + np.uint32(1)
  rot = (y << np.uint32(13)) | (y >> np.uint32(19))
  return jnp.stack([jnp.sum(y * w1, dtype=jnp.uint32), jnp.sum(rot * w2, dtype=jnp.uint32)])


@jax.jit
def _checksums(leaves):
  return jnp.stack([_leaf_checksum(x) for x in leaves]) if leaves \
      else jnp.zeros((0, 2), jnp.uint32)


def tree_checksums(tree) -> dict[str, str]:
  """{leaf path: 16 hex digits} of the non-empty array leaves (on device)."""
  named = [(p, x) for p, x in _leaves(tree) if x is not None and x.size]
  if not named:
    return {}
  out = _checksums([x for _, x in named])
  # Replicated result: every process reads its own copy (works multi-host).
  host = np.asarray(out.addressable_data(0)) if isinstance(out, jax.Array) else out
  return {p: f"{int(a):08x}{int(b):08x}" for (p, _), (a, b) in zip(named, host)}


def layout_of(tree) -> dict[str, Any]:
  """What `verify` and a target-free restore need: checksums, empty leaves."""
  empty = {p: [list(x.shape), jnp.dtype(x.dtype).name]
           for p, x in _leaves(tree) if x is not None and x.size == 0}
  return {"checksums": tree_checksums(tree), "empty": empty}


def verify(tree, layout: dict[str, Any], where: str) -> None:
  """Raises CheckpointDamaged naming the leaves whose checksum differs."""
  want = layout.get("checksums")
  if want is None:
    return   # written before checksums existed: nothing to compare
  got = tree_checksums(tree)
  bad = [p for p in want if got.get(p) != want[p]]
  if bad:
    more = f" (and {len(bad) - 3} more)" if len(bad) > 3 else ""
    raise CheckpointDamaged(where, "checksum mismatch in " + ", ".join(bad[:3]) + more +
                            ": the saved files were changed or corrupted")


# -- the library's save / restore --------------------------------------------------

def save(path, tree) -> None:
  """Saves a pytree (params, a TrainState, ...) with Orbax into directory
  `path` (created; must not exist), zero-size leaves and checksums included."""
  ck = ocp.Checkpointer(ocp.CompositeCheckpointHandler())
  ck.save(epath.Path(path), ocp.args.Composite(
      tree=ocp.args.StandardSave(drop_empty(tree)),
      layout=ocp.args.JsonSave(layout_of(tree))))
  ck.close()


def restore(path, target=None):
  """Restores what `save` wrote. With `target` (the same structure; arrays or
  `jax.ShapeDtypeStruct`s, with shardings if wanted) the result has its
  structure and placement; without, nested dicts/lists of arrays (a NamedTuple
  such as TrainState comes back as a dict). Raises CheckpointDamaged if the
  files do not restore or do not match their checksums."""
  path = epath.Path(path)
  ck = ocp.Checkpointer(ocp.CompositeCheckpointHandler())
  try:
    layout = ck.restore(path, ocp.args.Composite(layout=ocp.args.JsonRestore()))["layout"]
    arg = ocp.args.StandardRestore(None if target is None else drop_empty(target))
    tree = ck.restore(path, ocp.args.Composite(tree=arg))["tree"]
  except Exception as e:  # pylint: disable=broad-except
    raise CheckpointDamaged(str(path), f"does not restore: {type(e).__name__}: {e}") from e
  finally:
    ck.close()
  tree = _refill_from_layout(tree, layout.get("empty", {})) if target is None \
      else refill_empty(target, tree)
  verify(tree, layout, str(path))
  return tree


# -- a training run's checkpoints ------------------------------------------------------

class RunRestore(NamedTuple):
  """A restored checkpoint of a run: its step, train state, input-pipeline
  position (JSON) and metadata."""
  step: int
  state: Any
  data: Any                       # the input pipeline position (JSON)
  meta: dict[str, Any]
  skipped: list[CheckpointDamaged]


def _sha(obj) -> str:
  return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


class RunCheckpoints:
  """`directory/<step>/{state, data, meta[, evaluation]}`: Orbax
  CheckpointManager (async, keep-N). meta = {"format", "fingerprint", "optim",
  "layout", "data_sha256"[, "evaluation_sha256"]}; `evaluation` is optional
  JSON that must survive a resume (pooled ARC votes)."""

  def __init__(self, directory, *, keep: int | None = 3, async_save: bool = True,
               read_only: bool = False):
    self.directory = epath.Path(directory)
    self._keep, self._async, self._read_only = keep, async_save, read_only
    self._mngr = self._open()

  def _open(self) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(
        max_to_keep=None if self._read_only else self._keep,
        enable_async_checkpointing=self._async and not self._read_only,
        create=not self._read_only, read_only=self._read_only)
    return ocp.CheckpointManager(self.directory, options=options,
                                 item_names=("state", "data", "meta", "evaluation"))

  def steps(self) -> list[int]:
    return sorted(self._mngr.all_steps())

  def latest_step(self) -> int | None:
    return self._mngr.latest_step()

  def save(self, step: int, state, data, meta: dict[str, Any],
           evaluation: dict[str, Any] | None = None) -> None:
    meta = {**meta, "format": FORMAT, "layout": layout_of(state), "data_sha256": _sha(data)}
    items = dict(state=ocp.args.StandardSave(drop_empty(state)),
                 data=ocp.args.JsonSave(data))
    if evaluation is not None:
      meta["evaluation_sha256"] = _sha(evaluation)
      items["evaluation"] = ocp.args.JsonSave(evaluation)
    items["meta"] = ocp.args.JsonSave(meta)
    self._mngr.save(step, args=ocp.args.Composite(**items), force=True)

  def read_evaluation(self, step: int) -> dict[str, Any] | None:
    """The `evaluation` JSON saved with `step`, None if it was saved without;
    CheckpointDamaged if it does not restore or match its checksum."""
    where = str(self.directory / str(step))
    meta = self.read_meta(step)
    if "evaluation_sha256" not in meta:
      return None
    try:
      value = self._mngr.restore(step, args=ocp.args.Composite(
          evaluation=ocp.args.JsonRestore()))["evaluation"]
    except Exception as e:  # pylint: disable=broad-except
      raise CheckpointDamaged(where, f"evaluation does not restore: "
                              f"{type(e).__name__}: {e}") from e
    if _sha(value) != meta["evaluation_sha256"]:
      raise CheckpointDamaged(where, "evaluation (pooled votes) checksum mismatch")
    return value

  def read_meta(self, step: int) -> dict[str, Any]:
    where = str(self.directory / str(step))
    try:
      meta = self._mngr.restore(step, args=ocp.args.Composite(
          meta=ocp.args.JsonRestore()))["meta"]
    except Exception as e:  # pylint: disable=broad-except
      raise CheckpointDamaged(where, f"meta does not restore: {type(e).__name__}: {e}") from e
    if not isinstance(meta, dict):
      raise CheckpointDamaged(where, f"meta is {type(meta).__name__}, not a JSON object")
    return meta

  def restore(self, step: int, target=None, check_meta: Callable | None = None):
    """(state, data, meta) of one step; CheckpointDamaged if it does not
    restore or verify. `check_meta(meta)` may refuse before the arrays load.
    `target` may be a function of the meta (the shapes the checkpoint holds may
    differ from the run's, e.g. a puzzle table padded for another device count)."""
    where = str(self.directory / str(step))
    meta = self.read_meta(step)
    if check_meta is not None:
      check_meta(meta)
    if callable(target):
      target = target(meta)
    layout = meta.get("layout", {})
    try:
      arg = ocp.args.StandardRestore(None if target is None else drop_empty(target))
      r = self._mngr.restore(step, args=ocp.args.Composite(
          state=arg, data=ocp.args.JsonRestore()))
      state, data = r["state"], r["data"]
    except Exception as e:  # pylint: disable=broad-except
      raise CheckpointDamaged(where, f"does not restore: {type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''}") from e
    state = _refill_from_layout(state, layout.get("empty", {})) if target is None \
        else refill_empty(target, state)
    verify(state, layout, where)
    if "data_sha256" in meta and _sha(data) != meta["data_sha256"]:
      raise CheckpointDamaged(where, "data (input pipeline position) checksum mismatch")
    return state, data, meta

  def restore_newest(self, target=None, check_meta: Callable | None = None,
                     warn: Callable[[str], None] = log.warning) -> RunRestore | None:
    """Tries the checkpoints newest first. Damaged ones are reported through
    `warn` (step and what is wrong), skipped, and moved aside to
    `<directory>.damaged/` so the run can save those steps again. None if there
    are no checkpoints; CheckpointError naming every step if none restores."""
    steps = self.steps()
    skipped: list[CheckpointDamaged] = []
    found = None
    for step in reversed(steps):
      try:
        state, data, meta = self.restore(step, target, check_meta)
      except CheckpointDamaged as e:
        warn(f"checkpoint {step} is damaged, skipping it: {e.what}")
        skipped.append(e)
        continue
      found = RunRestore(step, state, data, meta, skipped)
      break
    if skipped:
      self._move_aside([int(epath.Path(e.where).name) for e in skipped], warn)
    if found is None and steps:
      raise CheckpointError(
          f"no checkpoint in {self.directory} restores (steps {steps}):\n  " +
          "\n  ".join(str(e) for e in skipped))
    return found

  def _move_aside(self, steps: list[int], warn) -> None:
    if self._read_only:
      return
    self.close()
    if jax.process_index() == 0:
      dest = epath.Path(str(self.directory) + ".damaged")
      dest.mkdir(parents=True, exist_ok=True)
      for s in steps:
        to = dest / f"{s}-{time.strftime('%Y%m%d-%H%M%S')}"
        (self.directory / str(s)).rename(to)
        warn(f"moved damaged checkpoint {s} to {to}")
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      multihost_utils.sync_global_devices("recur-checkpoint-moved-aside")
    self._mngr = self._open()

  def wait(self) -> None:
    self._mngr.wait_until_finished()

  def close(self) -> None:
    self._mngr.wait_until_finished()
    self._mngr.close()


# -- inference -------------------------------------------------------------------------

class InferenceCheckpoint(NamedTuple):
  """A run's checkpoint ready for inference: the model config, its eval params
  (EMA weights if kept), the run's config.json and the step."""
  cfg: Any                 # the model config (recur.models)
  params: dict[str, Any]   # eval params (EMA weights if the run kept an EMA)
  config: dict[str, Any]   # the run's config.json
  step: int


def model_fields(meta: dict[str, Any]) -> dict[str, Any]:
  """The model config fields of a checkpoint's meta (both formats)."""
  fp = meta["fingerprint"] if "fingerprint" in meta else meta
  return dict(fp["model"])


BEST_DIR = "best"   # workdir/best/<step>: the best checkpoint by config.best_metric


def restore_for_inference(workdir, step: int | None = None,
                          warn: Callable[[str], None] = log.warning,
                          where: str = "evaluating",
                          best: bool = False) -> InferenceCheckpoint:
  """(model config, eval params, run config, step) of a run's checkpoint:
  the given step, else the newest one that restores and verifies. `best`:
  from `workdir/best/` (the best by the run's `best_metric`) instead of
  `workdir/checkpoints/`. EMA weights younger than their horizon warn once
  (`recur.train.eval_params`; `where` says what they are for)."""
  from recur import models, train  # pylint: disable=g-import-not-at-top
  workdir = epath.Path(workdir)
  cfile = workdir / "config.json"
  try:
    config = json.loads(cfile.read_text())
  except (OSError, ValueError) as e:
    raise CheckpointError(f"{cfile}: cannot read the run's config: {e}") from e
  ckpt_dir = workdir / (BEST_DIR if best else "checkpoints")
  if best and not ckpt_dir.exists():
    raise CheckpointError(f"{ckpt_dir}: no best checkpoint (the run keeps one only "
                          "with --config.best_metric, e.g. eval/exact_accuracy)")
  ckpts = RunCheckpoints(ckpt_dir, read_only=True)
  try:
    if step is None:
      found = ckpts.restore_newest(warn=warn)
      if found is None:
        raise CheckpointError(f"{workdir}: no checkpoint to load")
      step, state, meta = found.step, found.state, found.meta
    else:
      if step not in ckpts.steps():
        raise CheckpointError(f"{ckpt_dir}: no step {step} "
                              f"(there are {ckpts.steps()})")
      state, _, meta = ckpts.restore(step)
  finally:
    ckpts.close()
  cfg = models.config_from_dict(model_fields(meta), where=f"{ckpt_dir}/{step} meta")
  if isinstance(state, dict):
    state = train.TrainState(*[state[f] for f in train.TrainState._fields])
  rate = (config.get("optim") or {}).get("ema_rate", train.OptimConfig.ema_rate)
  params = jax.tree.map(jnp.asarray, train.eval_params(
      state, train.OptimConfig(ema_rate=rate), where=where))
  return InferenceCheckpoint(cfg, params, config, int(step))

