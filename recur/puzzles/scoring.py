"""Scoring shared by the families: token / exact accuracy and `TokenEvaluator`.

Accuracy follows the reference: a position is scored where the label is not
IGNORE_LABEL_ID (sources map the reference's ignore id, PAD, to it); token accuracy is the
mean over scored positions of all examples, exact accuracy the fraction of
examples with every scored position right.

`TokenEvaluator` is the `Evaluator` of every family whose answer is the token
sequence itself (the algorithmic tasks, sources declaring no family); Sudoku
and Maze extend it with per-row validity checks (`checks`), reported as rates
beside accuracy, because a puzzle can have several right answers the label
does not list.

All functions take host arrays [B, seq_len] (jax arrays are converted).
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from recur import losses
from recur.puzzles.family import Evaluator, PuzzleFamily

__all__ = ["token_exact_accuracy", "sigmoid", "TokenEvaluator", "TOKENS_FAMILY"]


def token_exact_accuracy(labels: np.ndarray, preds: np.ndarray
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Per example: (number correct, number scored, exact), the one definition
  of correctness (`recur.losses.correctness`) on host arrays."""
  labels = np.asarray(labels)
  preds = np.asarray(preds)
  if labels.shape != preds.shape:
    raise ValueError(f"labels {labels.shape} and preds {preds.shape} differ")
  c = losses.correctness(preds, labels)
  return c.correct.sum(-1), c.counts, c.exact


def sigmoid(x) -> np.ndarray:
  """float64 sigmoid, stable for large |x| (q_halt logits -> confidence)."""
  x = np.asarray(x, np.float64)
  return 0.5 * (1.0 + np.tanh(0.5 * x))


class TokenEvaluator(Evaluator):
  """Accumulates accuracy (and the rates of `checks`) over batches.

  `update(inputs, labels, preds, mask=None)` takes [B, seq_len] arrays and an
  optional bool [B] mask of real (non-padding) examples; `result()` returns
  count, exact_accuracy, token_accuracy and one `<check>_rate` per check.
  """

  CHECKS: tuple[str, ...] = ()   # the names `checks` returns

  def __init__(self):
    self.reset()

  def checks(self, inputs: np.ndarray, preds: np.ndarray
             ) -> Mapping[str, np.ndarray]:
    """{name in CHECKS: per-row bool [B]}, each reported as `<name>_rate`."""
    del inputs, preds
    return {}

  def reset(self) -> None:
    self._count = 0
    self._exact = 0
    self._tokens_correct = 0
    self._tokens_scored = 0
    self._passed = {name: 0 for name in self.CHECKS}

  def update(self, inputs: np.ndarray, labels: np.ndarray, preds: np.ndarray,
             mask: np.ndarray | None = None) -> None:
    inputs, labels, preds = (np.asarray(x) for x in (inputs, labels, preds))
    if mask is not None:
      keep = np.asarray(mask, bool).reshape(-1)
      inputs, labels, preds = inputs[keep], labels[keep], preds[keep]
    if len(labels) == 0:
      return
    correct, scored, exact = token_exact_accuracy(labels, preds)
    self._count += len(labels)
    self._exact += int(exact.sum())
    self._tokens_correct += int(correct.sum())
    self._tokens_scored += int(scored.sum())
    for name, ok in self.checks(inputs, preds).items():
      self._passed[name] += int(np.sum(ok))

  def add_batch(self, batch, outputs) -> None:
    self.update(batch["inputs"], batch["labels"], outputs["preds"],
                batch.get("mask"))

  def result(self) -> dict[str, Any]:
    count = max(self._count, 1)
    out = {"count": self._count,
           "exact_accuracy": self._exact / count,
           "token_accuracy": self._tokens_correct / max(self._tokens_scored, 1)}
    for name, passed in self._passed.items():
      out[f"{name}_rate"] = passed / count
    return out


def _decode_tokens(source, tokens: np.ndarray) -> list[int]:
  del source
  return np.asarray(tokens).reshape(-1).tolist()


# Sources that declare no family (e.g. a quick test source): accuracy only.
TOKENS_FAMILY = PuzzleFamily(name="tokens", sources={},
                             evaluator=lambda source, split: TokenEvaluator(),
                             decode=_decode_tokens)
