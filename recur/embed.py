"""Embeddings and heads every model shares.

`init_io` creates the token (+ learned position) embeddings, the LM and Q heads
and the fixed init states; `segment_inputs` is what every model's segment
starts with (input embedding x and the reasoning-module function), and
`output_heads` what it ends with (LM logits of the token positions, Q logits of
position 0).
"""
from __future__ import annotations

import math
from typing import Any

import chex
import jax
import jax.numpy as jnp

from recur import checks, layers
from recur.config import ModelConfig, SegmentOutput

__all__ = ["init_io", "embed_inputs", "segment_inputs", "rope_for", "output_heads"]

Array = jax.Array
Params = dict[str, Any]


def init_io(key: Array, cfg: ModelConfig) -> tuple[Params, Params]:
  """Embeddings, heads and init states: returns (net_io, buffers)."""
  d = cfg.hidden_size
  k_tok, k_lm, k_pos, k_h, k_l = jax.random.split(key, 5)
  net = {
      "embed_tokens": layers.trunc_normal(k_tok, (cfg.vocab_size, d), 1 / math.sqrt(d)),
      "lm_head": layers.trunc_normal(k_lm, (d, cfg.vocab_size), 1 / math.sqrt(d)),
      # Q head starts at (almost) "never halt": zero weight, bias -5.
      "q_head": {"kernel": jnp.zeros((d, 2), jnp.float32),
                 "bias": jnp.full((2,), -5.0, jnp.float32)},
  }
  if cfg.pos_encodings == "learned":
    net["embed_pos"] = layers.trunc_normal(k_pos, (cfg.full_seq_len, d),
                                           1 / math.sqrt(d))
  buffers = {
      "H_init": layers.trunc_normal(k_h, (d,), 1.0),
      "L_init": layers.trunc_normal(k_l, (d,), 1.0),
      "puzzle_emb": jnp.zeros((cfg.num_puzzle_identifiers,
                               max(cfg.puzzle_emb_ndim, 0)), jnp.float32),
  }
  return net, buffers


def embed_inputs(cfg: ModelConfig, net: Params, inputs_BT: Array,
                 puzzle_rows_BP: Array | None) -> Array:
  """Token (+ puzzle prefix) (+ learned position) embedding, times sqrt(D)."""
  dtype = cfg.dtype
  e = layers.embedding_lookup(net["embed_tokens"], inputs_BT, dtype)  # f32 grad sum
  if cfg.prefix_len:
    if puzzle_rows_BP is None:
      raise ValueError(f"puzzle_emb_ndim={cfg.puzzle_emb_ndim}: embed_inputs needs "
                       f"the puzzle rows [B, {cfg.puzzle_emb_ndim}]")
    b = inputs_BT.shape[0]
    rows = puzzle_rows_BP.astype(dtype)
    pad = cfg.prefix_len * cfg.hidden_size - rows.shape[-1]
    if pad:
      rows = jnp.pad(rows, ((0, 0), (0, pad)))
    e = jnp.concatenate([rows.reshape(b, cfg.prefix_len, cfg.hidden_size), e],
                        axis=1)
  if cfg.pos_encodings == "learned":
    # 1/sqrt(2) keeps the variance of the sum of two unit-variance embeddings.
    e = 0.707106781 * (e + net["embed_pos"].astype(dtype))
  return math.sqrt(cfg.hidden_size) * e


def segment_inputs(params: Params, batch: dict, cfg: ModelConfig,
                   puzzle_emb: Array | None = None):
  """What every model's segment starts with: (dense weights, input embedding x,
  the reasoning-module function `level(stack, h, injection)`). `puzzle_emb`
  [B, P] are the looked-up rows (passed explicitly so training can differentiate
  w.r.t. them); default: looked up from `params["puzzle_emb"]`."""
  checks.check_batch(cfg, batch, "segment")
  checks.check_params(cfg, params, "segment")
  net = params["net"]
  if puzzle_emb is None and cfg.prefix_len:
    puzzle_emb = jnp.take(params["puzzle_emb"], batch["puzzle_identifiers"], axis=0)
  x = embed_inputs(cfg, net, batch["inputs"], puzzle_emb)
  return net, x, layers.level_fn(cfg.layer_config, rope_for(cfg), cfg.dtype)


def rope_for(cfg: ModelConfig):
  """RoPE (cos, sin) tables, each float32 [full_seq_len, head_dim], for `cfg`;
  None when the model uses no RoPE (learned/no positions, or mlp_t)."""
  if cfg.pos_encodings != "rope" or cfg.mlp_t:
    return None
  return layers.rope_tables(cfg.hidden_size // cfg.num_heads, cfg.full_seq_len,
                            cfg.rope_theta)


def output_heads(cfg: ModelConfig, net: Params, z_H: Array) -> SegmentOutput:
  """LM logits of the token positions (f32) and the Q head on position 0 (f32)."""
  logits = jnp.einsum("bsd,dv->bsv", z_H[:, cfg.prefix_len:],
                      net["lm_head"].astype(z_H.dtype),
                      preferred_element_type=jnp.float32)
  q = z_H[:, 0].astype(jnp.float32) @ net["q_head"]["kernel"] + net["q_head"]["bias"]
  chex.assert_type([logits, q], jnp.float32)
  chex.assert_shape(q, (z_H.shape[0], 2))
  return SegmentOutput(logits=logits, q_logits=q)
