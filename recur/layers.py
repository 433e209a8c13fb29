"""Layers of HRM/TRM: Flax Linen modules over small pure helpers.

Everything here matches the PyTorch reference (models/layers.py of the public
HRM/TRM code) operation for operation:

* post-norm blocks `x = rms(x + mix(x)); x = rms(x + swiglu(x))`,
* RMSNorm without a learned scale, computed in float32, eps 1e-5,
* SwiGLU with a fused `gate_up` projection (gate first) and the reference's width
  rounding, non-causal multi-head attention with a fused qkv projection and
  rotate-half RoPE, and TRM-MLP's token-mixing SwiGLU across the sequence axis,
* truncated-normal init with the std correction of `jax.random.truncated_normal`.

The modules (`Attention`, `SwiGLU`, `TokenMixingMLP`, `Block`,
`ReasoningModule`) keep float32 parameters (`param_dtype`) and cast each weight
to the compute `dtype` (bf16 by default) like the reference's `CastedLinear`.
The recursion over them stays a pure function (`recur.recursion`) that calls
`ReasoningModule.apply` as its `level` (`level_fn`); the pure helpers here
(RMSNorm with its own VJP, the embedding lookup, RoPE tables) are what the
modules call.

Shape suffixes: B batch, S sequence (puzzle prefix included), D hidden, N heads,
K head dim, I SwiGLU inner width, V vocabulary, P puzzle-embedding width.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jax.ad_checkpoint import checkpoint_name

from recur import attention as attention_lib
from recur import plans
from recur.kernels import add_rms_norm as add_rms_norm_lib
from recur.kernels import block_forward as block_forward_lib
from recur.kernels import swiglu as swiglu_lib

__all__ = [
    "LayerConfig", "swiglu_width", "trunc_normal", "fan_in_trunc_normal",
    "rms_norm", "embedding_lookup", "rope_tables", "apply_rope", "Attention",
    "SwiGLU", "TokenMixingMLP", "Block", "ReasoningModule", "init_stack",
    "level_fn", "num_params", "DOT_OUTPUT_NAME",
]

Array = jax.Array
Params = dict[str, Any]

# checkpoint_name of matmul outputs computed inside a custom VJP (where remat
# policies cannot see the dot): "dots" policies save these too.
DOT_OUTPUT_NAME = "matmul_in_custom_vjp"


@dataclasses.dataclass(frozen=True)
class LayerConfig:
  """What one transformer block needs to know."""
  hidden_size: int
  num_heads: int
  expansion: float
  seq_len: int                   # full sequence length, puzzle prefix included
  mlp_t: bool = False            # token-mixing SwiGLU instead of attention
  rms_norm_eps: float = 1e-5
  attention_impl: str | None = None  # None/"auto" (by platform), "xla", "cudnn", "cudnn_even", "pallas_tpu"
  fused_kernels: bool | None = None  # None: recur.plans.resolve_fused_kernels (by platform)
  fused_forward: bool | None = None  # None: recur.plans.resolve_fused_forward (by platform)

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


def apply_rope(x_BSNK: Array, cos_SK: Array, sin_SK: Array) -> Array:
  """Rotate-half RoPE of x [B, S, N, K] with tables cos/sin [S, K] (f32 math,
  returned in x's dtype)."""
  dtype = x_BSNK.dtype
  x = x_BSNK.astype(cos_SK.dtype)
  # rotate_half(x) = [-x2 | x1]; rotate_half(x) * sin is computed as
  # [x2 | x1] * [-sin1 | sin2]: the same products (a negation is exact), with
  # the halves swapped by a reverse over a size-2 axis instead of a
  # concatenate, an elementwise loop that XLA fuses with its siblings (the
  # q/k/v split of the fused projection) into one kernel; a concatenate is a
  # fusion root of its own (H200 plan, unpadded cuDNN: 450.4 -> 407.2 GB).
  *lead, kd = x.shape
  swapped = jnp.flip(x.reshape(*lead, 2, kd // 2), axis=-2).reshape(x.shape)
  sign = jnp.concatenate([-jnp.ones(kd // 2, sin_SK.dtype),
                          jnp.ones(kd // 2, sin_SK.dtype)])
  out = x * cos_SK[:, None, :] + swapped * (sin_SK * sign)[:, None, :]
  return out.astype(dtype)


# -- Flax modules ---------------------------------------------------------------
#
# Each module declares its weights with `param_dtype` (float32) and computes in
# `dtype` (None: the input's dtype), casting weights and input like the
# reference's CastedLinear. Weight names are those of the checkpoints: a block's
# submodules share its scope (`nn.share_scope`), so a block's variables are the
# flat {"qkv", "o", "gate_up", "down"} (TRM-MLP: "mlp_t_gate_up", "mlp_t_down"
# instead of "qkv", "o"), and a reasoning module's are the same names stacked
# on a leading layer axis (`nn.scan` with variable_axes {"params": 0}).

Initializer = Callable[..., Array]


def fan_in_trunc_normal(key: Array, shape, dtype=jnp.float32) -> Array:
  """The reference's weight init: truncated normal, std 1/sqrt(shape[0])."""
  return trunc_normal(key, shape, 1 / math.sqrt(shape[0])).astype(dtype)


def _keyed(key: Array) -> Initializer:
  """`fan_in_trunc_normal` on a fixed key (the rng Flax hands in is unused)."""
  return lambda _rng, shape, dtype=jnp.float32: fan_in_trunc_normal(key, shape,
                                                                    dtype)


def _compute_dtype(dtype, x: Array):
  return x.dtype if dtype is None else jnp.dtype(dtype)


def _dense(x: Array, w: Array) -> Array:
  return jnp.einsum("...i,io->...o", x, w.astype(x.dtype))


class Attention(nn.Module):
  """Non-causal MHA with rotate-half RoPE; `qkv` [D, 3NK] fused as
  [q heads | k heads | v heads], `o` [NK, D]. The kernel is chosen per
  platform (`recur.attention.resolve_impl`)."""
  num_heads: int
  head_dim: int
  attention_impl: str | None = None
  dtype: Any = None
  param_dtype: Any = jnp.float32
  qkv_init: Initializer = fan_in_trunc_normal
  o_init: Initializer = fan_in_trunc_normal
  kernel_impl: str = "xla"   # "pallas": cuDNN's q, k, v from one kernel (recur.attention.projected_attention)

  @nn.compact
  def __call__(self, x_BSD: Array, rope: tuple[Array, Array] | None = None
               ) -> Array:
    x_BSD = x_BSD.astype(_compute_dtype(self.dtype, x_BSD))
    d = x_BSD.shape[-1]
    n, k = self.num_heads, self.head_dim
    w_qkv = self.param("qkv", self.qkv_init, (d, 3 * n * k), self.param_dtype)
    w_o = self.param("o", self.o_init, (n * k, d), self.param_dtype)
    impl = attention_lib.resolve_impl(self.attention_impl, dtype=x_BSD.dtype,
                                      head_dim=k)
    if self.kernel_impl != "xla" and impl in ("cudnn", "cudnn_even"):
      out = attention_lib.projected_attention(
          x_BSD, w_qkv.astype(x_BSD.dtype), n, impl, rope, self.kernel_impl)
      return _dense(out, w_o)
    # The fused projection goes to the attention whole; RoPE (apply_rope) on
    # q and k happens inside the kernel where it can.
    out = attention_lib.qkv_attention(_dense(x_BSD, w_qkv), n, impl, rope)
    return _dense(out, w_o)


class SwiGLU(nn.Module):
  """Channel SwiGLU: `gate_up` [D, 2I] (gate first), `down` [I, D],
  I = swiglu_width(D, expansion)."""
  expansion: float
  dtype: Any = None
  param_dtype: Any = jnp.float32
  gate_up_init: Initializer = fan_in_trunc_normal
  down_init: Initializer = fan_in_trunc_normal
  kernel_impl: str = "pallas"    # recur.kernels.swiglu.IMPLS

  @nn.compact
  def __call__(self, x_BSD: Array) -> Array:
    x_BSD = x_BSD.astype(_compute_dtype(self.dtype, x_BSD))
    d = x_BSD.shape[-1]
    inner = swiglu_width(d, self.expansion)
    w_gate_up = self.param("gate_up", self.gate_up_init, (d, 2 * inner),
                           self.param_dtype)
    w_down = self.param("down", self.down_init, (inner, d), self.param_dtype)
    if self.kernel_impl == "xla":    # plain JAX, autodiff's backward
      gate, up = jnp.split(_dense(x_BSD, w_gate_up), 2, axis=-1)
      return _dense(jax.nn.silu(gate) * up, w_down)
    # Projection + activation in one kernel (writing the gate_up residual
    # when differentiated) and a one-pass backward kernel for the activation
    # (recur.kernels.swiglu). Named: remat policies that keep matmul outputs
    # keep gate_up and the down projection, as they kept the plain matmuls
    # (recur.recursion.remat_policy).
    return checkpoint_name(
        swiglu_lib.swiglu_mlp(x_BSD, w_gate_up.astype(x_BSD.dtype),
                              w_down.astype(x_BSD.dtype), self.kernel_impl,
                              DOT_OUTPUT_NAME),
        DOT_OUTPUT_NAME)


class TokenMixingMLP(nn.Module):
  """TRM-MLP's SwiGLU across the sequence axis: `mlp_t_gate_up` [S, 2I],
  `mlp_t_down` [I, S], I = swiglu_width(S, expansion)."""
  expansion: float
  dtype: Any = None
  param_dtype: Any = jnp.float32
  gate_up_init: Initializer = fan_in_trunc_normal
  down_init: Initializer = fan_in_trunc_normal
  kernel_impl: str = "pallas"    # recur.kernels.swiglu.IMPLS

  @nn.compact
  def __call__(self, x_BSD: Array) -> Array:
    x_BSD = x_BSD.astype(_compute_dtype(self.dtype, x_BSD))
    s = x_BSD.shape[1]
    inner = swiglu_width(s, self.expansion)
    w_gate_up = self.param("mlp_t_gate_up", self.gate_up_init, (s, 2 * inner),
                           self.param_dtype)
    w_down = self.param("mlp_t_down", self.down_init, (inner, s),
                        self.param_dtype)
    # The reference transposes to [B, D, S] and applies a SwiGLU over S; the
    # same maths as contractions over S, without explicit transposes.
    if self.kernel_impl == "xla":    # plain JAX: the inner axis in the middle
      gate, up = jnp.split(jnp.einsum("bsd,si->bid", x_BSD,
                                      w_gate_up.astype(x_BSD.dtype)), 2, axis=1)
      return jnp.einsum("bid,is->bsd", jax.nn.silu(gate) * up,
                        w_down.astype(x_BSD.dtype))
    # Kernels: the inner axis last ([B, D, 2I], as the matmul lays it out) for
    # the one-pass backward of recur.kernels.swiglu.
    gate_up = jnp.einsum("bsd,si->bdi", x_BSD, w_gate_up.astype(x_BSD.dtype))
    return checkpoint_name(
        swiglu_lib.swiglu_down(gate_up, w_down.astype(x_BSD.dtype),
                               self.kernel_impl, True),
        DOT_OUTPUT_NAME)


class Block(nn.Module):
  """One post-norm block: `h = rms(h + mix(h)); h = rms(h + swiglu(h))`, the
  mixer being attention or (mlp_t) the token-mixing MLP normed over S.

  `init_key`: when set, the weights are drawn from it on the reference's
  schedule (split in 4: mixer in/out, SwiGLU in/out), which is what
  `init_stack` and so every model's `init` use; None: from Flax's "params" rng.
  """
  config: LayerConfig
  dtype: Any = None
  param_dtype: Any = jnp.float32
  init_key: Array | None = None

  def setup(self):
    cfg = self.config
    inits: list[Initializer] = [fan_in_trunc_normal] * 4
    if self.is_initializing():
      key = self.init_key if self.init_key is not None else self.make_rng("params")
      inits = [_keyed(k) for k in jax.random.split(key, 4)]
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    impl = "pallas" if plans.resolve_fused_kernels(cfg.fused_kernels) else "xla"
    if cfg.mlp_t:
      self.mixer = TokenMixingMLP(cfg.expansion, gate_up_init=inits[0],
                                  down_init=inits[1], kernel_impl=impl, **kw)
    else:
      self.mixer = Attention(cfg.num_heads, cfg.head_dim, cfg.attention_impl,
                             qkv_init=inits[0], o_init=inits[1],
                             kernel_impl=impl, **kw)
    self.mlp = SwiGLU(cfg.expansion, gate_up_init=inits[2], down_init=inits[3],
                      kernel_impl=impl, **kw)
    nn.share_scope(self, self.mixer)
    nn.share_scope(self, self.mlp)

  def __call__(self, h_BSD: Array, rope: tuple[Array, Array] | None = None
               ) -> Array:
    eps = self.config.rms_norm_eps
    if self.config.mlp_t:
      h_BSD = rms_norm(h_BSD + self.mixer(h_BSD), eps, 1)
    else:
      h_BSD = self._add_norm(h_BSD, self.mixer(h_BSD, rope))
    return self._add_norm(h_BSD, self.mlp(h_BSD))

  def _add_norm(self, h_BSD: Array, mix_BSD: Array) -> Array:
    """rms(h + mix) over D; one-pass backward kernel when fused_kernels."""
    eps = self.config.rms_norm_eps
    if plans.resolve_fused_kernels(self.config.fused_kernels):
      dt = jnp.result_type(h_BSD, mix_BSD)   # the dtype `h + mix` would have
      return add_rms_norm_lib.add_rms_norm(h_BSD.astype(dt), mix_BSD.astype(dt),
                                           eps, "pallas")
    return rms_norm(h_BSD + mix_BSD, eps)


class _ScanBlock(Block):
  """A block as an `nn.scan` body: (h, rope) -> (h, None)."""

  def __call__(self, h_BSD, rope=None):  # type: ignore[override]
    return super().__call__(h_BSD, rope), None


class ReasoningModule(nn.Module):
  """A reasoning module, `layers(h + injection)`: `num_layers` blocks whose
  weights are stacked on a leading layer axis (declared by an `nn.scan` at
  init); applied as a Python loop over the layers (2-8), straight-line code."""
  config: LayerConfig
  num_layers: int
  dtype: Any = None
  param_dtype: Any = jnp.float32

  def setup(self):
    stack = nn.scan(_ScanBlock, variable_axes={"params": 0},
                    split_rngs={"params": True}, in_axes=nn.broadcast,
                    # unroll >= 2: a scan of length 1 with unroll 1 would
                    # still lower to a one-trip while loop.
                    length=self.num_layers, unroll=max(self.num_layers, 2))
    self.layers = stack(self.config, dtype=self.dtype,
                        param_dtype=self.param_dtype)
    nn.share_scope(self, self.layers)

  def __call__(self, h_BSD: Array, injection_BSD: Array,
               rope: tuple[Array, Array] | None = None) -> Array:
    h_BSD = h_BSD + injection_BSD
    if self.is_initializing():
      h_BSD, _ = self.layers(h_BSD, rope)
      return h_BSD
    # Applied as a Python loop over the layers' weight slices, not through the
    # scan: a scan, even unrolled, stacks what autodiff keeps of each layer
    # into [L, ...] buffers, and filling those is a copy of every saved
    # activation (~40 GB per TRM-Att ARC step on the H200 plan,
    # docs/benchmarks.md). Same weights, same maths.
    stack = self.variables["params"]
    cfg = self.config
    block = Block(cfg, dtype=self.dtype, param_dtype=self.param_dtype,
                  parent=None)

    def plain(layer: Params, h: Array, rope) -> Array:
      out: Array = block.apply({"params": layer}, h, rope)  # type: ignore[assignment]
      return out

    # Where nothing differentiates a block (no-grad cycles, evaluation), its
    # forward can run as fused-epilogue matmul kernels
    # (recur.kernels.block_forward); differentiated, it is `plain` exactly.
    fused = plans.resolve_fused_forward(cfg.fused_forward, cfg.fused_kernels)
    impl = attention_lib.resolve_impl(
        cfg.attention_impl, dtype=_compute_dtype(self.dtype, h_BSD),
        head_dim=cfg.head_dim)
    for i in range(self.num_layers):
      layer = jax.tree.map(lambda w, i=i: w[i], stack)
      if fused:
        h_BSD = block_forward_lib.apply_block(
            plain, cfg, layer, h_BSD, rope, impl,
            _compute_dtype(self.dtype, h_BSD))
      else:
        h_BSD = plain(layer, h_BSD, rope)
    return h_BSD


def init_stack(key: Array, cfg: LayerConfig, num_layers: int) -> Params:
  """A reasoning module's weights on the reference's schedule (block i from
  `split(key, num_layers)[i]`): the layout of `ReasoningModule`'s "params"."""
  h = jax.ShapeDtypeStruct((1, cfg.seq_len, cfg.hidden_size), jnp.float32)
  # The weights do not depend on the attention kernel; tracing the f32 init with
  # XLA attention keeps half-precision-only kernels (cuDNN) out of it.
  cfg = dataclasses.replace(cfg, attention_impl="xla")
  # Flax wants a "params" rng for every param; the keyed initializers ignore it.
  # parent=None: a standalone module even when called inside another module's
  # method (recur.flax), which Linen would otherwise make its parent.
  blocks = [Block(cfg, init_key=k, parent=None).lazy_init({"params": k}, h)["params"]
            for k in jax.random.split(key, num_layers)]
  return jax.tree.map(lambda *xs: jnp.stack(xs), *blocks)


def level_fn(cfg: LayerConfig, rope: tuple[Array, Array] | None, dtype=None
             ) -> Callable[[Params, Array, Array], Array]:
  """The reasoning module as the pure `level(stack, h, injection)` the
  recursion (`recur.recursion.recurse`) calls."""
  def level(stack: Params, h_BSD: Array, injection_BSD: Array) -> Array:
    n = jax.tree.leaves(stack)[0].shape[0]
    module = ReasoningModule(cfg, num_layers=n, dtype=dtype, parent=None)
    out: Array = module.apply({"params": stack}, h_BSD, injection_BSD, rope)  # type: ignore[assignment]  # apply's union covers mutable collections, unused here
    return out
  return level


def num_params(tree) -> int:
  """Number of scalars in a parameter pytree."""
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(tree)))
