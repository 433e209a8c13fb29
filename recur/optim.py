"""Optimisers of the HRM/TRM reference: AdamATan2, sparse sign-SGD, schedule, EMA.

Everything here is functional and jit-friendly and works on pytrees of float32
arrays; optimizer states are NamedTuples of arrays, so Orbax saves them as is.

* Dense parameters use AdamATan2 (betas 0.9/0.95, no epsilon, decoupled weight
  decay applied to the *old* parameter), exactly as the `adam-atan2` 0.0.3
  package that both references install computes it (its CUDA kernel and the
  pure-torch reference in its `adam_atan2_test.py` agree):

    p <- p * (1 - lr * wd)
    m <- b1 * m + (1 - b1) * g
    v <- b2 * v + (1 - b2) * g^2
    p <- p - (lr / (1 - b1^t)) * atan2(m, sqrt(v) / sqrt(1 - b2^t))   t = 1, 2, ...

  The first moment's bias correction sits *outside* the atan2, as a step size;
  this is not `atan2(m_hat, sqrt(v_hat))` (atan2 is not homogeneous in one
  argument), which an earlier version here computed. At t = 1 the update is
  `lr * atan(1 - b1) / (1 - b1) * sign(g)` (0.997 lr for b1 = 0.9), not
  `lr * pi/4 * sign(g)`.

* The puzzle-embedding table is not an optax parameter: its looked-up rows get a
  sign-SGD step with decoupled decay, once per unique id of the global batch
  (`sparse_sign_sgd_update`).
* Learning rates follow `warmup_cosine_schedule`, the reference's
  `cosine_schedule_with_warmup_lr_lambda`, evaluated at the 1-based update
  number (see its docstring for the step convention).
* Evaluation uses an EMA of the dense parameters (`ema_init`, `ema_update`).
"""
from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

__all__ = [
    "ScaleByAdamAtan2State",
    "scale_by_adam_atan2",
    "adam_atan2",
    "warmup_cosine_schedule",
    "sparse_sign_sgd_update",
    "ema_init",
    "ema_update",
]

PyTree = Any
ScalarOrSchedule = float | jax.Array | Callable[[jax.Array], jax.Array]


class ScaleByAdamAtan2State(NamedTuple):
  """State of `scale_by_adam_atan2`.

  Attributes:
    count: number of updates done so far (int32 scalar); the update being
      computed is number `count + 1`.
    mu: first moment m, same structure as the params.
    nu: second moment v, same structure as the params.
  """
  # The name shadows tuple.count; it stays, as it names the checkpointed field.
  count: jax.Array  # type: ignore[assignment]
  mu: PyTree
  nu: PyTree


def scale_by_adam_atan2(b1: float = 0.9,
                        b2: float = 0.95) -> optax.GradientTransformation:
  """Adam-atan2 direction without learning rate or weight decay.

  Returns `atan2(m, sqrt(v) / sqrt(1 - b2^t)) / (1 - b1^t)` per leaf, with the
  sign of a gradient (so it is later scaled by `-lr`): the `adam-atan2` 0.0.3
  package's step, whose step size is `lr / (1 - b1^t)`. atan2 replaces Adam's
  `m_hat / (sqrt(v_hat) + eps)`: it is bounded and needs no epsilon;
  atan2(0, 0) = 0, so a zero gradient gives a zero update, not NaN.

  Args:
    b1: decay of the first moment.
    b2: decay of the second moment.

  Returns:
    An optax GradientTransformation with state `ScaleByAdamAtan2State`.
  """

  def init_fn(params):
    zeros = lambda p: jnp.zeros_like(p)
    return ScaleByAdamAtan2State(
        count=jnp.zeros([], jnp.int32),
        mu=jax.tree.map(zeros, params),
        nu=jax.tree.map(zeros, params))

  def update_fn(updates, state, params=None):
    del params
    count = state.count + 1
    mu = jax.tree.map(lambda m, g: b1 * m + (1.0 - b1) * g, state.mu, updates)
    nu = jax.tree.map(lambda v, g: b2 * v + (1.0 - b2) * jnp.square(g),
                      state.nu, updates)
    # Bias corrections from the integer step t = count (the package computes
    # them in double and casts to float32; float32 here differs by <= 1 ulp).
    t = count.astype(jnp.float32)
    bc1 = 1.0 - jnp.power(jnp.float32(b1), t)
    bc2_sqrt = jnp.sqrt(1.0 - jnp.power(jnp.float32(b2), t))

    def direction(m, v):
      return (jnp.arctan2(m, jnp.sqrt(v) / bc2_sqrt) / bc1).astype(m.dtype)

    new_updates = jax.tree.map(direction, mu, nu)
    return new_updates, ScaleByAdamAtan2State(count=count, mu=mu, nu=nu)

  return optax.GradientTransformation(init_fn, update_fn)


def adam_atan2(learning_rate: ScalarOrSchedule,
               b1: float = 0.9,
               b2: float = 0.95,
               weight_decay: float = 0.0,
               weight_decay_mask: PyTree | Callable[[PyTree], PyTree] | None = None,
               ) -> optax.GradientTransformation:
  """AdamATan2 with decoupled weight decay, as the reference's `AdamATan2`.

  `optax.apply_updates(p, u)` gives
  `p * (1 - lr*wd) - (lr / (1 - b1^t)) * atan2(m, sqrt(v) / sqrt(1 - b2^t))`
  (the `adam-atan2` 0.0.3 package's formula, up to float32 rounding): the update
  is `-lr * (atan2(...) / (1 - b1^t) + wd * p)` with `p` the parameter *before*
  the step.

  Step convention: a schedule is called with the 1-based update number
  t = 1, 2, ... (the same t as in the bias corrections), i.e. the reference's
  `train_state.step` after its increment. So `warmup_cosine_schedule` can be
  passed directly and the first update uses `schedule(1)`, as in the reference.

  Args:
    learning_rate: a float, or a schedule `t -> lr` called with the 1-based
      update number.
    b1: decay of the first moment.
    b2: decay of the second moment.
    weight_decay: decoupled weight decay (multiplied by the learning rate).
    weight_decay_mask: optional mask (pytree of bools or a callable) restricting
      the decay; None decays every leaf, as the reference does.

  Returns:
    An optax GradientTransformation; its state is a tuple of NamedTuples of
    arrays (Orbax-serialisable).
  """
  lr: optax.ScalarOrSchedule
  if callable(learning_rate):
    schedule = learning_rate
    # optax counts updates from 0; the reference's step counter starts at 1.
    lr = lambda count: schedule(count + 1)
  else:
    lr = learning_rate
  return optax.chain(
      scale_by_adam_atan2(b1=b1, b2=b2),
      optax.add_decayed_weights(weight_decay, mask=weight_decay_mask),
      optax.scale_by_learning_rate(lr),
  )


def warmup_cosine_schedule(base_lr: float,
                           warmup_steps: int,
                           total_steps: int,
                           min_ratio: float = 1.0,
                           num_cycles: float = 0.5) -> optax.Schedule:
  """Linear warmup then cosine decay, the reference's lr lambda.

  Returns `schedule(step)` equal to the reference's
  `cosine_schedule_with_warmup_lr_lambda(step, ...)`:

    step < warmup:  base_lr * step / max(1, warmup_steps)
    otherwise:      base_lr * (min_ratio + max(0, (1 - min_ratio) * 0.5 *
                    (1 + cos(pi * num_cycles * 2 * progress))))
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)

  Step convention: the reference increments its step counter *before* the
  update, so its first update uses `step = 1` (lr = base_lr / warmup_steps,
  never 0) and update number `warmup_steps` is the first at full base_lr. A
  trainer whose counter `n` counts completed updates must call
  `schedule(n + 1)` for the next update; `adam_atan2` does this shift itself.

  Note: the reference lambda's default `min_ratio` is 0.0, but every published
  config sets `lr_min_ratio: 1.0` (constant lr after warmup); that is the
  default here.

  Args:
    base_lr: peak learning rate.
    warmup_steps: number of linear warmup steps (0: no warmup).
    total_steps: total number of updates.
    min_ratio: final lr as a fraction of base_lr.
    num_cycles: cosine cycles over the decay phase (0.5: a half cosine).

  Returns:
    A jit-safe function `step -> lr` (float32 scalar), step an int or array.
  """
  warmup_denom = float(max(1, warmup_steps))
  decay_denom = float(max(1, total_steps - warmup_steps))

  def schedule(step):
    s = jnp.asarray(step, jnp.float32)
    warm = base_lr * s / warmup_denom
    progress = (s - warmup_steps) / decay_denom
    cosine = 0.5 * (1.0 + jnp.cos(math.pi * float(num_cycles) * 2.0 * progress))
    decayed = base_lr * (min_ratio + jnp.maximum(0.0, (1.0 - min_ratio) * cosine))
    return jnp.where(s < warmup_steps, warm, decayed).astype(jnp.float32)

  return schedule


def sparse_sign_sgd_update(table: jax.Array,
                           ids: jax.Array,
                           row_grads: jax.Array,
                           lr: float | jax.Array,
                           weight_decay: float | jax.Array) -> jax.Array:
  """Sign-SGD with decoupled decay on the rows of an embedding table.

  Gradients of batch rows sharing an id are summed first; then each distinct
  id's row is updated once:

    table[i] <- table[i] * (1 - lr * wd) - lr * sign(sum_{b: ids[b] = i} g[b])

  Rows whose id is not in `ids` are returned bit-for-bit unchanged. No dense
  [N, D] gradient is built: the B ids are deduplicated with a fixed-size
  (sort-based) unique, the gradients summed per unique id with `segment_sum`,
  and B rows are scattered back; the padding slots of the unique use the
  out-of-range index N and are dropped by the scatter.

  `ids` must span the *global* batch: call it under `jax.jit` on global
  (possibly sharded) arrays and the partitioner gathers what it needs. A table
  sharded by rows (e.g. `P('data', None)`) works the same way; donate `table`
  to update it in place.

  Args:
    table: [N, D] embedding table.
    ids: [B] int row ids in [0, N).
    row_grads: [B, D] gradient w.r.t. the looked-up rows `table[ids]`.
    lr: learning rate (float or traced scalar).
    weight_decay: decoupled weight decay.

  Returns:
    The updated [N, D] table, same dtype.
  """
  num_rows = table.shape[0]
  batch = ids.shape[0]
  ids = ids.astype(jnp.int32)
  unique_ids, inverse = jnp.unique(
      ids, size=batch, fill_value=num_rows, return_inverse=True)
  grad_sum = jax.ops.segment_sum(
      row_grads.astype(jnp.float32), inverse.reshape(-1), num_segments=batch)
  # Padding slots read a clipped (valid) row, but their write is dropped.
  rows = jnp.take(table, unique_ids, axis=0, mode="clip")
  lr = jnp.asarray(lr, jnp.float32)
  decay = 1.0 - lr * jnp.asarray(weight_decay, jnp.float32)
  new_rows = (rows.astype(jnp.float32) * decay - lr * jnp.sign(grad_sum))
  return table.at[unique_ids].set(new_rows.astype(table.dtype), mode="drop")


def ema_init(params: PyTree) -> PyTree:
  """Starts the EMA at a copy of the parameters (the reference's `register`)."""
  return jax.tree.map(lambda p: jnp.array(p, copy=True), params)


def ema_update(ema_params: PyTree, params: PyTree,
               rate: float = 0.999) -> PyTree:
  """One EMA step, the reference's `EMAHelper.update`: the old EMA keeps `rate`.

    ema <- (1 - rate) * params + rate * ema

  Args:
    ema_params: current EMA pytree.
    params: parameters after this step's update.
    rate: weight of the old EMA (the reference's `mu`, 0.999).

  Returns:
    The new EMA pytree, same dtypes as `ema_params`.
  """
  return jax.tree.map(
      lambda e, p: ((1.0 - rate) * p + rate * e).astype(e.dtype),
      ema_params, params)
