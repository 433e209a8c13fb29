"""The tiny model configs and random batches that the core, model and Flax
tests share (one copy, so a change of the interface is made once)."""
import jax.numpy as jnp
import numpy as np

from recur import models


def tiny(model="trm", **kw):
  """A 16-wide, 6-position config of a registered model; kw override."""
  base = dict(vocab_size=7, seq_len=6, hidden_size=16, num_heads=2,
              puzzle_emb_ndim=16, num_puzzle_identifiers=5, halt_max_steps=3,
              compute_dtype="float32", H_cycles=2, L_cycles=2, L_layers=1)
  if model == "trm":
    base["puzzle_emb_len"] = 2
  if model in ("hrm", "transformer"):
    base["H_layers"] = 1
  base.update(kw)
  return models.make_config(model, **base)


def batch(cfg, b=4, seed=0, first_id=0):
  """Random inputs/labels over the vocabulary; puzzle ids in [first_id, n)."""
  rng = np.random.default_rng(seed)
  return {
      "inputs": jnp.asarray(rng.integers(1, cfg.vocab_size, (b, cfg.seq_len)), jnp.int32),
      "labels": jnp.asarray(rng.integers(1, cfg.vocab_size, (b, cfg.seq_len)), jnp.int32),
      "puzzle_identifiers": jnp.asarray(
          rng.integers(first_id, cfg.num_puzzle_identifiers, (b,)), jnp.int32),
  }
