"""One-line, actionable checks at the public boundaries.

A batch or params that do not fit the model config fail deep inside XLA with a
bare "incompatible shapes"; these checks run first (at trace time: shapes are
static, so they cost nothing inside jit) and name the field and both values.
Token and puzzle-id values are checked only where they are on the host
(numpy) or concrete (an eager call); under a trace they are abstract.
"""
from __future__ import annotations

from typing import Any, Mapping

import jax
import numpy as np

from recur.config import ModelConfig

__all__ = ["BatchMismatch", "check_batch", "check_params", "check_batch_fits_devices"]


class BatchMismatch(ValueError):
  """A batch, params or mesh that does not fit the model config (one line)."""


def _concrete(x: Any) -> np.ndarray | None:
  """`x` as a host array when its values are known without a trace, else None."""
  if isinstance(x, np.ndarray):
    return x
  if isinstance(x, jax.Array) and not isinstance(x, jax.core.Tracer) \
      and x.is_fully_addressable:
    return np.asarray(x)
  return None


def check_batch(cfg: ModelConfig, batch: Mapping[str, Any], where: str,
                rows: int | None = None) -> None:
  """Raises `BatchMismatch` when `batch` does not fit `cfg`.

  Args:
    cfg: the model config.
    batch: {"inputs": int [B, seq_len], "labels": int [B, seq_len] (optional),
      "puzzle_identifiers": int [B]} (any array type, or ShapeDtypeStructs).
    where: the public function being called (first word of the message).
    rows: the rows B the caller's carry holds (act_step, train_step), if any.
  """
  if "inputs" not in batch:
    raise BatchMismatch(f"{where}: the batch has no 'inputs' (keys: {sorted(batch)})")
  shape = tuple(batch["inputs"].shape)
  if len(shape) != 2:
    raise BatchMismatch(f"{where}: batch['inputs'] must be [batch, seq_len], got "
                        f"shape {shape}")
  b, n = shape
  if n != cfg.seq_len:
    raise BatchMismatch(
        f"{where}: batch['inputs'] has {n} positions but ModelConfig.seq_len is "
        f"{cfg.seq_len}: build the config with seq_len={n} (the data's) or "
        f"pad/crop the data to {cfg.seq_len}")
  if rows is not None and b != rows:
    raise BatchMismatch(
        f"{where}: the batch has {b} rows but the ACT carry has {rows}: make the "
        f"carry (empty_carry / init_state's example_batch) from a batch of {b} rows")
  for key, want in (("labels", shape), ("puzzle_identifiers", (b,))):
    if key in batch and tuple(batch[key].shape) != want:
      raise BatchMismatch(f"{where}: batch[{key!r}] has shape "
                          f"{tuple(batch[key].shape)}, expected {want} (inputs are {shape})")
  if cfg.prefix_len and "puzzle_identifiers" not in batch:
    raise BatchMismatch(f"{where}: puzzle_emb_ndim={cfg.puzzle_emb_ndim} needs "
                        f"batch['puzzle_identifiers'] [batch]")
  _check_range(batch, "inputs", cfg.vocab_size, "vocab_size", where)
  if cfg.prefix_len:
    _check_range(batch, "puzzle_identifiers", cfg.num_puzzle_identifiers,
                 "num_puzzle_identifiers", where)


def _check_range(batch: Mapping[str, Any], key: str, size: int, field: str,
                 where: str) -> None:
  x = _concrete(batch.get(key))
  if x is None or not x.size:
    return
  hi, lo = int(x.max()), int(x.min())
  if hi >= size or lo < 0:
    bad = hi if hi >= size else lo
    raise BatchMismatch(
        f"{where}: batch[{key!r}] holds {bad} but ModelConfig.{field} is {size} "
        f"(valid: 0..{size - 1}): build the config with {field}={max(hi + 1, size)} "
        f"(the data's) or fix the data")


def check_params(cfg: ModelConfig, params: Mapping[str, Any], where: str) -> None:
  """Raises `BatchMismatch` when `params` were made for another config: the
  token embedding's [vocab_size, hidden_size] and the puzzle table's
  [num_puzzle_identifiers, puzzle_emb_ndim] against `cfg`."""
  net = params.get("net", {})
  emb = net.get("embed_tokens") if isinstance(net, Mapping) else None
  if emb is not None:
    want = (cfg.vocab_size, cfg.hidden_size)
    if tuple(emb.shape) != want:
      raise BatchMismatch(
          f"{where}: params['net']['embed_tokens'] is {tuple(emb.shape)} but the config "
          f"wants (vocab_size, hidden_size) = {want}: the params come from another "
          f"config")
  table = params.get("puzzle_emb")
  if table is not None and cfg.prefix_len and \
      tuple(table.shape)[1:] != (cfg.puzzle_emb_ndim,):
    raise BatchMismatch(
        f"{where}: params['puzzle_emb'] is {tuple(table.shape)} but "
        f"ModelConfig.puzzle_emb_ndim is {cfg.puzzle_emb_ndim}")


def check_batch_fits_devices(batch_size: int, num_devices: int,
                             field: str = "batch_size") -> None:
  """Raises `BatchMismatch` unless `batch_size` splits evenly over the devices
  (the batch axis is sharded over every device of the mesh)."""
  if batch_size % num_devices:
    lower = batch_size // num_devices * num_devices
    raise BatchMismatch(
        f"{field}={batch_size} does not split over {num_devices} devices: use a "
        f"multiple of {num_devices} (e.g. {lower or num_devices} or "
        f"{lower + num_devices})")
