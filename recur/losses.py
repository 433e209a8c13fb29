"""Losses and metrics of the ACT loss head (the reference's `ACTLossHead`).

Per step, on every row: lm_loss = sum over rows of (sum of token CE) / max(1,
valid tokens); q_halt_loss = sum BCE(q_halt, row exactly correct); HRM adds
q_continue_loss = sum BCE(q_continue, target). total = lm + 0.5 (q_halt + q_cont);
the trainer divides by the global batch size. Metrics are sums over rows that
halted this step and have at least one valid label.

`correctness` is the one definition of token and row (exact) correctness that
the loss, evaluation (`recur.act.rollout`) and inference use.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from recur.data.base import IGNORE_LABEL_ID

__all__ = ["stablemax_cross_entropy", "softmax_cross_entropy", "act_loss",
           "LOSSES", "Correctness", "correctness", "IGNORE_LABEL_ID"]

Array = jax.Array


class Correctness(NamedTuple):
  """Per-token and per-row correctness of predictions against labels."""
  valid: Any      # [..., S] bool: the label is not IGNORE_LABEL_ID
  correct: Any    # [..., S] bool: valid and predicted right
  counts: Any     # [...] int: valid tokens of the row
  exact: Any      # [...] bool: every valid token right (also for rows with none)
  accuracy: Any   # [...] float32: fraction of the valid tokens right (0 if none)


def correctness(preds, labels) -> Correctness:
  """Token and exact (row) correctness; positions labelled IGNORE_LABEL_ID do
  not count. Works on jax and numpy arrays alike (returns the same kind)."""
  valid = labels != IGNORE_LABEL_ID
  correct = valid & (preds == labels)
  counts = valid.sum(-1)
  divisor = counts.clip(min=1)[..., None]
  # Summing per-token fractions (not correct / count) is the reference's
  # rounding, which the parity fixtures check.
  accuracy = (correct.astype("float32") / divisor).sum(-1)
  return Correctness(valid, correct, counts, correct.sum(-1) == counts, accuracy)


def _wide(x: Array) -> Array:
  """float64 when x64 is enabled (as the reference), else float32."""
  return x.astype(jax.dtypes.canonicalize_dtype(jnp.float64))


def log_stablemax(x: Array, axis: int = -1) -> Array:
  # s(x) = 1/(1-x) for x < 0, x + 1 otherwise. Each branch is evaluated on a
  # clamped input so the unused one is finite and its zero cotangent stays 0.
  s = jnp.where(x < 0, 1.0 / (1.0 - jnp.minimum(x, 0.0) + 1e-30),
                jnp.maximum(x, 0.0) + 1.0)
  return jnp.log(s) - jnp.log(jnp.sum(s, axis=axis, keepdims=True))


def stablemax_cross_entropy(logits: Array, labels: Array, valid: Array) -> Array:
  """Per-token CE under stablemax; 0 where `valid` is False."""
  logp = log_stablemax(_wide(logits))
  safe = jnp.where(valid, labels, 0)
  picked = jnp.take_along_axis(logp, safe[..., None].astype(jnp.int32), axis=-1)[..., 0]
  return -jnp.where(valid, picked, 0.0)


def softmax_cross_entropy(logits: Array, labels: Array, valid: Array) -> Array:
  """Per-token softmax cross entropy: logits [..., V] (computed in float32), int
  labels [...], bool `valid` [...]; float32 [...], 0 where not valid."""
  safe = jnp.where(valid, labels, 0)
  ce = optax.softmax_cross_entropy_with_integer_labels(
      logits.astype(jnp.float32), safe.astype(jnp.int32))
  return jnp.where(valid, ce, 0.0)


LOSSES = {
    "stablemax_cross_entropy": stablemax_cross_entropy,
    "softmax_cross_entropy": softmax_cross_entropy,
}


def act_loss(outputs: dict[str, Array], labels: Array, halted: Array,
             steps: Array, loss_type: str = "stablemax_cross_entropy"
             ) -> tuple[Array, dict[str, Array]]:
  """Returns (total loss summed over rows, metric sums)."""
  if loss_type not in LOSSES:
    raise ValueError(f"loss_type must be one of {sorted(LOSSES)}, got {loss_type!r}")
  logits = outputs["logits"]
  q_halt = outputs["q_halt_logits"]
  right = correctness(jnp.argmax(logits, axis=-1), labels)
  mask, counts, seq_correct = right.valid, right.counts, right.exact
  divisor = jnp.maximum(counts, 1)[:, None]
  valid = halted & (counts > 0)

  metrics = {
      "count": valid.sum(),
      "accuracy": jnp.where(valid, right.accuracy, 0.0).sum(),
      "exact_accuracy": (valid & seq_correct).sum(),
      "q_halt_accuracy": (valid & ((q_halt >= 0) == seq_correct)).sum(),
      "steps": jnp.where(valid, steps, 0).sum(),
  }

  ce = LOSSES[loss_type](logits, labels, mask)
  lm_loss = (ce / divisor).sum()
  q_halt_loss = optax.sigmoid_binary_cross_entropy(
      q_halt, seq_correct.astype(q_halt.dtype)).sum()
  total = lm_loss + 0.5 * q_halt_loss
  metrics["lm_loss"] = jax.lax.stop_gradient(lm_loss)
  metrics["q_halt_loss"] = jax.lax.stop_gradient(q_halt_loss)
  if "target_q_continue" in outputs:
    q_cont_loss = optax.sigmoid_binary_cross_entropy(
        outputs["q_continue_logits"], outputs["target_q_continue"]).sum()
    total = total + 0.5 * q_cont_loss
    metrics["q_continue_loss"] = jax.lax.stop_gradient(q_cont_loss)
  return total, metrics
