"""Layers of HRM/TRM as pure functions over parameter arrays.

Everything here matches the PyTorch reference (models/layers.py of the public
HRM/TRM code) operation for operation:

* post-norm blocks `x = rms(x + mix(x)); x = rms(x + swiglu(x))`,
* RMSNorm without a learned scale, computed in float32, eps 1e-5,
* SwiGLU with a fused `gate_up` projection (gate first) and the reference's width
  rounding, non-causal multi-head attention with a fused qkv projection and
  rotate-half RoPE, and TRM-MLP's token-mixing SwiGLU across the sequence axis,
* truncated-normal init with the std correction of `jax.random.truncated_normal`.

Parameters are float32; every matmul casts its weight to the compute dtype of its
input (bf16 by default), like the reference's `CastedLinear`.

Shape suffixes: B batch, S sequence (puzzle prefix included), D hidden, N heads,
K head dim, I SwiGLU inner width, V vocabulary, P puzzle-embedding width.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from recur import attention as attention_lib

__all__ = [
    "LayerConfig", "swiglu_width", "trunc_normal", "rms_norm", "embedding_lookup",
    "rope_tables",
    "apply_rope", "attention", "swiglu", "block", "init_block_stack",
    "apply_stack",
]

Array = jax.Array
Params = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class LayerConfig:
  """What one transformer block needs to know."""
  hidden_size: int
  num_heads: int
  expansion: float
  seq_len: int                   # full sequence length, puzzle prefix included
  mlp_t: bool = False            # token-mixing SwiGLU instead of attention
  rms_norm_eps: float = 1e-5
  attention_impl: str | None = None  # None/"auto" (by platform), "xla", "cudnn", "pallas_tpu"

  @property
  def head_dim(self) -> int:
    return self.hidden_size // self.num_heads


def _find_multiple(a: int, b: int) -> int:
  return -(a // -b) * b


def swiglu_width(hidden_size: int, expansion: float) -> int:
  """Inner width of the reference's SwiGLU: round_up(round(e*d*2/3), 256)."""
  return _find_multiple(round(expansion * hidden_size * 2 / 3), 256)


def trunc_normal(key: Array, shape, std: float, lower: float = -2.0,
                 upper: float = 2.0) -> Array:
  """Truncated normal whose std is `std` (not the untruncated one)."""
  if std == 0:
    return jnp.zeros(shape, jnp.float32)
  # The reference divides by the std of the standard normal truncated to
  # [lower, upper], so the samples really have standard deviation `std`.
  sqrt2 = math.sqrt(2.0)
  a, b = math.erf(lower / sqrt2), math.erf(upper / sqrt2)
  z = (b - a) / 2
  c = (2 * math.pi) ** -0.5
  pdf_u, pdf_l = c * math.exp(-0.5 * lower**2), c * math.exp(-0.5 * upper**2)
  comp_std = std / math.sqrt(1 - (upper * pdf_u - lower * pdf_l) / z
                             - ((pdf_u - pdf_l) / z) ** 2)
  return comp_std * jax.random.truncated_normal(key, lower, upper, shape,
                                                jnp.float32)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def rms_norm(x: Array, eps: float, axis: int = -1) -> Array:
  """RMSNorm over `axis`, no scale, computed in float32."""
  return _rms_fwd(x, eps, axis)[0]


def _rms_fwd(x, eps, axis):
  x32 = x.astype(jnp.float32)
  r = jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=axis, keepdims=True) + eps)
  # Residuals: the input in its own (bf16) dtype and the f32 [.., 1] scale, not
  # f32 copies of the activations (autodiff would keep two per norm).
  return (x32 * r).astype(x.dtype), (x, r)


def _rms_bwd(eps, axis, res, g):
  del eps
  x, r = res
  y = x.astype(jnp.float32) * r
  g32 = g.astype(jnp.float32)
  # d/dx [x r(x)] with r = (mean x^2 + eps)^-1/2:  r (g - y mean(g y)).
  dx = r * (g32 - y * jnp.mean(g32 * y, axis=axis, keepdims=True))
  return (dx.astype(x.dtype),)


rms_norm.defvjp(_rms_fwd, _rms_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def embedding_lookup(table_VD: Array, ids: Array, dtype) -> Array:
  """`table[ids]` in `dtype`, with the table's gradient accumulated in float32.

  Plain `jnp.take(table.astype(bf16), ids)` differentiates into a bf16
  scatter-add: every one of the B x S looked-up rows is added into a table of
  a dozen rows (14,400 additions per row at the ARC batch), each addition
  rounded to bf16's 8 bits. Here the bf16 cotangents are summed in float32
  (`segment_sum`) and only the total is cast to the table's dtype.

  Args:
    table_VD: [V, D] embedding table (float32 parameters).
    ids: integer ids of any shape, in [0, V).
    dtype: compute dtype of the result (e.g. bfloat16).

  Returns:
    [*ids.shape, D] rows in `dtype`.
  """
  return jnp.take(table_VD.astype(dtype), ids.astype(jnp.int32), axis=0)


def _embedding_fwd(table_VD, ids, dtype):
  out = embedding_lookup(table_VD, ids, dtype)
  # Residuals: the ids and a zero-size stand-in carrying the table's shape/dtype.
  return out, (ids, jnp.zeros((table_VD.shape[0], 0), table_VD.dtype))


def _embedding_bwd(dtype, res, g):
  del dtype
  ids, shape_of_table = res
  num_rows, d = shape_of_table.shape[0], g.shape[-1]
  g32 = g.reshape(-1, d).astype(jnp.float32)
  grad = jax.ops.segment_sum(g32, ids.reshape(-1).astype(jnp.int32),
                             num_segments=num_rows)
  return grad.astype(shape_of_table.dtype), None


embedding_lookup.defvjp(_embedding_fwd, _embedding_bwd)


def rope_tables(head_dim: int, seq_len: int, theta: float) -> tuple[Array, Array]:
  """cos/sin tables [S, K] in the rotate-half layout (frequencies repeated)."""
  inv_freq = 1.0 / (theta ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32)
                              / head_dim))
  t = jnp.arange(seq_len, dtype=jnp.float32)
  freqs = jnp.outer(t, inv_freq)
  emb = jnp.concatenate([freqs, freqs], axis=-1)
  return jnp.cos(emb), jnp.sin(emb)


def _rotate_half(x: Array) -> Array:
  x1, x2 = jnp.split(x, 2, axis=-1)
  return jnp.concatenate([-x2, x1], axis=-1)


def apply_rope(x_BSNK: Array, cos_SK: Array, sin_SK: Array) -> Array:
  """Rotary position embedding of `x_BSNK` [B, S, N, K] with tables cos/sin [S,
  K]; computed in the tables' dtype, returned in x's dtype."""
  dtype = x_BSNK.dtype
  x = x_BSNK.astype(cos_SK.dtype)
  out = x * cos_SK[:, None, :] + _rotate_half(x) * sin_SK[:, None, :]
  return out.astype(dtype)


def _dense(x: Array, w: Array) -> Array:
  return jnp.einsum("...i,io->...o", x, w.astype(x.dtype))


def attention(x_BSD: Array, qkv_DX: Array, o_XD: Array, cfg: LayerConfig,
              rope: tuple[Array, Array] | None) -> Array:
  """Non-causal MHA; qkv fused as [q heads | k heads | v heads] on the output."""
  b, s, _ = x_BSD.shape
  n, k = cfg.num_heads, cfg.head_dim
  qkv = _dense(x_BSD, qkv_DX).reshape(b, s, 3 * n, k)
  q, key, v = qkv[:, :, :n], qkv[:, :, n:2 * n], qkv[:, :, 2 * n:]
  if rope is not None:
    q = apply_rope(q, *rope)
    key = apply_rope(key, *rope)
  impl = attention_lib.resolve_impl(cfg.attention_impl, dtype=q.dtype,
                                    head_dim=k)
  out = attention_lib.dot_product_attention(q, key, v, impl)
  return _dense(out.reshape(b, s, n * k), o_XD)


def swiglu(x: Array, gate_up: Array, down: Array) -> Array:
  """SwiGLU MLP: `x` [..., D] @ `gate_up` [D, 2F] -> silu(gate) * up [..., F] @
  `down` [F, D] -> [..., D], in x's dtype."""
  gate, up = jnp.split(_dense(x, gate_up), 2, axis=-1)
  return _dense(jax.nn.silu(gate) * up, down)


def block(h_BSD: Array, p: Params, cfg: LayerConfig,
          rope: tuple[Array, Array] | None) -> Array:
  """One post-norm block (attention or token-mixing MLP, then channel SwiGLU)."""
  eps = cfg.rms_norm_eps
  if cfg.mlp_t:
    # The reference transposes to [B, D, S], applies a SwiGLU over S and norms
    # over S; the same maths as contractions over axis 1, without transposes.
    gate, up = jnp.split(jnp.einsum("bsd,si->bid", h_BSD,
                                    p["mlp_t_gate_up"].astype(h_BSD.dtype)), 2, axis=1)
    mixed = jnp.einsum("bid,is->bsd", jax.nn.silu(gate) * up,
                       p["mlp_t_down"].astype(h_BSD.dtype))
    h_BSD = rms_norm(h_BSD + mixed, eps, 1)
  else:
    h_BSD = rms_norm(h_BSD + attention(h_BSD, p["qkv"], p["o"], cfg, rope), eps)
  return rms_norm(h_BSD + swiglu(h_BSD, p["gate_up"], p["down"]), eps)


def init_block_stack(key: Array, cfg: LayerConfig, num_layers: int) -> Params:
  """Parameters of `num_layers` blocks, stacked on a leading layer axis."""
  d = cfg.hidden_size
  inter = swiglu_width(d, cfg.expansion)

  def one(k):
    ks = jax.random.split(k, 4)
    p = {
        "gate_up": trunc_normal(ks[2], (d, 2 * inter), 1 / math.sqrt(d)),
        "down": trunc_normal(ks[3], (inter, d), 1 / math.sqrt(inter)),
    }
    if cfg.mlp_t:
      s = cfg.seq_len
      inter_t = swiglu_width(s, cfg.expansion)
      p["mlp_t_gate_up"] = trunc_normal(ks[0], (s, 2 * inter_t), 1 / math.sqrt(s))
      p["mlp_t_down"] = trunc_normal(ks[1], (inter_t, s), 1 / math.sqrt(inter_t))
    else:
      nk = cfg.num_heads * cfg.head_dim
      p["qkv"] = trunc_normal(ks[0], (d, 3 * nk), 1 / math.sqrt(d))
      p["o"] = trunc_normal(ks[1], (nk, d), 1 / math.sqrt(nk))
    return p

  layers = [one(k) for k in jax.random.split(key, num_layers)]
  return jax.tree.map(lambda *xs: jnp.stack(xs), *layers)


def apply_stack(stack: Params, h_BSD: Array, injection_BSD: Array,
                cfg: LayerConfig, rope: tuple[Array, Array] | None) -> Array:
  """A reasoning module: `layers(h + injection)`; layers unrolled (2-8 of them)."""
  h = h_BSD + injection_BSD
  num_layers = jax.tree.leaves(stack)[0].shape[0]
  for i in range(num_layers):
    h = block(h, jax.tree.map(lambda x, i=i: x[i], stack), cfg, rope)
  return h


def num_params(tree) -> int:
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(tree)))
