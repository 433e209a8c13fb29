"""Lane-dense Pallas TPU attention for short sequences (S <= `MAX_SEQ`).

Why not jax's bundled flash kernel (`pallas.ops.tpu.flash_attention`, which
recur.attention still uses for longer sequences): with head_dim 64 its
[B, N, S, 64] operands fill half of each 128-lane HBM tile (2x the bytes), they
are transposes of the projection's [B, S, N*K] output (a copy each way), the
sequence is padded to its block and masked with segment ids, its softmax
statistics are stored as [B, N, S, 128] f32 (4x the bytes of q) and read back
broadcast, its backward kernels give XLA no cost estimate, and at its 128-row
blocks every K/V block is re-read once per q block.

This kernel reads q, k, v as lane blocks of the fused projection's own
output [B, S, 3 N*K] and writes o as [B, S, N*K], the o projection's input
(lane-dense: a 128-lane block holds 128 // K heads), keeps a whole
(unpadded) sequence of K and V in VMEM, so the softmax is exact in one pass and
needs no statistics; the backward kernel recomputes it from q and k. Within a
128-lane block each head is selected by zeroing the other heads' lanes before
the contraction (the MXU contracts 128 lanes either way) and keeping only its
lanes of each product.

Rotate-half RoPE is applied inside both kernels when tables are given
(`rope=(cos [S, K], sin [S, K])`): q and k arrive as the projection wrote
them, so XLA does not write rotated copies (in the v5p TRM-Att plan, RoPE
on 32/64-lane slices and the layout copies around jax's kernel were over half
of the step's bytes: docs/benchmarks.md). The
rotation is a matmul with a signed permutation of each head's lanes (exact;
the MXU does it in the shadow of the attention matmuls), in f32 as
`recur.layers.apply_rope` does, rounded to q's dtype before the scores; the
backward pass rotates dQ and dK back. The tables are constants (no gradient).

Grid (B, lane blocks, q blocks): q/o/dq blocks of `Q_BLOCK` rows (the last one
ragged: its rows past S are zeroed before use, and their writes dropped), K/V
and the dK/dV accumulators whole. Each pallas_call passes XLA an exact
`CostEstimate` (every operand read once, every result written once).
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

__all__ = ["supported", "attention_qkv", "attention_bsd", "over_batch", "MAX_SEQ",
           "Q_BLOCK"]

Array = jax.Array
LANES = 128
# A whole sequence of K/V and [Q_BLOCK, S] f32 scores per head live in VMEM:
# at S = 2048 about 4 x 2 MB of scores in the backward pass (the deviceless
# plans compile it for S = 901/916 on v4, v5e, v5p and v6e).
MAX_SEQ = 2048
Q_BLOCK = 256


def lane_block(num_heads: int, head_dim: int) -> int | None:
  """Lanes per block (a whole number of heads), or None when none fits: the
  blocks tile the fused [B, S, 3 N*K] array, so Mosaic wants multiples of
  128 lanes (narrower models take jax's flash kernel)."""
  d = num_heads * head_dim
  if d % LANES == 0 and LANES % head_dim == 0:
    return LANES
  if head_dim % LANES == 0:
    return head_dim
  return None


def supported(seq_len: int, num_heads: int, head_dim: int) -> bool:
  """Whether this kernel takes the shape: the whole sequence's K/V fits VMEM
  (seq_len <= MAX_SEQ) and heads pack into 128-lane blocks."""
  return seq_len <= MAX_SEQ and lane_block(num_heads, head_dim) is not None


def _q_block(s: int) -> int:
  return s if s <= Q_BLOCK else Q_BLOCK


def _head_lanes(lanes: int, head_dim: int, h: int) -> Array:
  lane = jax.lax.broadcasted_iota(jnp.int32, (1, lanes), 1)
  return (lane >= h * head_dim) & (lane < (h + 1) * head_dim)


def _valid_rows(rows: int, seq_len: int) -> Array:
  from jax.experimental import pallas as pl  # pylint: disable=g-import-not-at-top
  first = pl.program_id(2) * rows
  return (first + jax.lax.broadcasted_iota(jnp.int32, (rows, 1), 0)) < seq_len


def _rotate_half_matrix(lanes: int, head_dim: int, dtype) -> Array:
  """R with x @ R = rotate_half(x) per head: out[j] = -x[j + K/2] in each
  head's first half, x[j - K/2] in its second."""
  i = jax.lax.broadcasted_iota(jnp.int32, (lanes, lanes), 0)
  j = jax.lax.broadcasted_iota(jnp.int32, (lanes, lanes), 1)
  half = head_dim // 2
  first = (j % head_dim) < half
  r = jnp.where(first & (i == j + half), -1.0,
                jnp.where(~first & (i == j - half), 1.0, 0.0))
  return r.astype(dtype)


_HI = jax.lax.Precision.HIGHEST
_NT = (((1,), (1,)), ((), ()))     # a b^T
_TN = (((0,), (0,)), ((), ()))     # a^T b


def _rope(x, cos, sin, r):
  """apply_rope's f32 math on a [rows, lanes] block, in x's dtype."""
  prec = _HI if x.dtype == jnp.float32 else None
  rot = jnp.dot(x, r, precision=prec, preferred_element_type=jnp.float32)
  return (x.astype(jnp.float32) * cos + rot * sin).astype(x.dtype)


def _rope_vjp(g, cos, sin, r):
  """Cotangent of the pre-RoPE input from that of the rotated one (f32)."""
  back = jax.lax.dot_general(g * sin, r.astype(jnp.float32), _NT, precision=_HI,
                             preferred_element_type=jnp.float32)
  return g * cos + back


def _rows(ref, rows):
  from jax.experimental import pallas as pl  # pylint: disable=g-import-not-at-top
  start = pl.multiple_of(pl.program_id(2) * rows, rows)
  return ref[pl.ds(start, rows), :]


def _softmax_rows(q, k, mask, scale):
  """Softmax over all keys of head `mask`'s scores, [rows, S] f32."""
  s = jax.lax.dot_general(jnp.where(mask, q, 0), k, _NT,
                          preferred_element_type=jnp.float32) * scale
  p = jnp.exp(s - jnp.max(s, axis=1, keepdims=True))
  return p / jnp.sum(p, axis=1, keepdims=True)


def _fwd_kernel(q_ref, k_ref, v_ref, *rest, head_dim, seq_len, scale, rope):
  from jax.experimental import pallas as pl  # pylint: disable=g-import-not-at-top
  if rope:
    cos_ref, sin_ref, o_ref, k_rot = rest
  else:
    (o_ref,) = rest
  rows, lanes = q_ref.shape[1:]
  ok = _valid_rows(rows, seq_len)
  q = jnp.where(ok, q_ref[0], 0)
  if rope:
    r = _rotate_half_matrix(lanes, head_dim, q.dtype)

    @pl.when(pl.program_id(2) == 0)
    def _():
      k_rot[...] = _rope(k_ref[0], cos_ref[:seq_len], sin_ref[:seq_len], r)

    q = _rope(q, _rows(cos_ref, rows), _rows(sin_ref, rows), r)
    k = k_rot[...]
  else:
    k = k_ref[0]
  v = v_ref[0]
  o = jnp.zeros((rows, lanes), jnp.float32)
  for h in range(lanes // head_dim):
    mask = _head_lanes(lanes, head_dim, h)
    p = _softmax_rows(q, k, mask, scale)
    pv = jnp.dot(p.astype(v.dtype), v, preferred_element_type=jnp.float32)
    o = jnp.where(mask, pv, o)
  o_ref[0] = o.astype(o_ref.dtype)


def _bwd_kernel(q_ref, k_ref, v_ref, o_ref, do_ref, *rest, head_dim, seq_len,
                scale, rope):
  from jax.experimental import pallas as pl  # pylint: disable=g-import-not-at-top
  if rope:
    cos_ref, sin_ref, dq_ref, dk_ref, dv_ref, dk_acc, dv_acc, k_rot = rest
  else:
    dq_ref, dk_ref, dv_ref, dk_acc, dv_acc = rest
  rows, lanes = q_ref.shape[1:]
  qi = pl.program_id(2)
  r = _rotate_half_matrix(lanes, head_dim, q_ref.dtype) if rope else None

  @pl.when(qi == 0)
  def _():
    dk_acc[...] = jnp.zeros_like(dk_acc)
    dv_acc[...] = jnp.zeros_like(dv_acc)
    if rope:
      k_rot[...] = _rope(k_ref[0], cos_ref[:seq_len], sin_ref[:seq_len], r)

  ok = _valid_rows(rows, seq_len)
  q = jnp.where(ok, q_ref[0], 0)
  do = jnp.where(ok, do_ref[0], 0)
  o = jnp.where(ok, o_ref[0], 0)
  if rope:
    q = _rope(q, _rows(cos_ref, rows), _rows(sin_ref, rows), r)
    k = k_rot[...]
  else:
    k = k_ref[0]
  v = v_ref[0]
  # rowsum(dO * O) per head: the softmax backward's correction term.
  do_o = do.astype(jnp.float32) * o.astype(jnp.float32)
  dq = jnp.zeros((rows, lanes), jnp.float32)
  for h in range(lanes // head_dim):
    mask = _head_lanes(lanes, head_dim, h)
    p = _softmax_rows(q, k, mask, scale)
    dp = jax.lax.dot_general(jnp.where(mask, do, 0), v, _NT,
                             preferred_element_type=jnp.float32)
    corr = jnp.sum(jnp.where(mask, do_o, 0.0), axis=1, keepdims=True)
    ds = (p * (dp - corr) * scale).astype(q.dtype)
    dq = jnp.where(mask, jnp.dot(ds, k, preferred_element_type=jnp.float32), dq)
    dk_h = jax.lax.dot_general(ds, q, _TN, preferred_element_type=jnp.float32)
    dv_h = jax.lax.dot_general(p.astype(do.dtype), do, _TN,
                               preferred_element_type=jnp.float32)
    dk_acc[...] += jnp.where(mask, dk_h, 0.0)
    dv_acc[...] += jnp.where(mask, dv_h, 0.0)
  if rope:
    dq = _rope_vjp(dq, _rows(cos_ref, rows), _rows(sin_ref, rows), r)
  dq_ref[0] = dq.astype(dq_ref.dtype)

  @pl.when(qi == pl.num_programs(2) - 1)
  def _():
    dk = dk_acc[...]
    if rope:
      dk = _rope_vjp(dk, cos_ref[:seq_len], sin_ref[:seq_len], r)
    dk_ref[0] = dk.astype(dk_ref.dtype)
    dv_ref[0] = dv_acc[...].astype(dv_ref.dtype)


def _specs(b, s, d, lanes):
  """Grid and the block specs of q rows, whole k and v (lane blocks of the
  fused [B, S, 3D] qkv array: q's at 0, k's at D, v's at 2D) and [B, S, D]
  row blocks (o, dO, dQ) and whole-sequence blocks (dK, dV)."""
  from jax.experimental import pallas as pl  # pylint: disable=g-import-not-at-top
  rows = _q_block(s)
  nl = d // lanes
  grid = (b, nl, pl.cdiv(s, rows))
  rows_at = lambda off: pl.BlockSpec((1, rows, lanes),
                                     lambda bi, li, qi: (bi, qi, off + li))
  seq_at = lambda off: pl.BlockSpec((1, s, lanes),
                                    lambda bi, li, qi: (bi, 0, off + li))
  return grid, (rows_at(0), seq_at(nl), seq_at(2 * nl)), rows_at(0), seq_at(0)


def _tables(rope, s, head_dim, lanes):
  """cos/sin [S, K] as [rows x q blocks, lanes] f32 (heads side by side, rows
  past S zero: the ragged q block reads them)."""
  from jax.experimental import pallas as pl  # pylint: disable=g-import-not-at-top
  rows = _q_block(s)
  padded = pl.cdiv(s, rows) * rows
  tabs = [jnp.pad(jnp.tile(jax.lax.stop_gradient(t).astype(jnp.float32),
                           (1, lanes // head_dim)), ((0, padded - s), (0, 0)))
          for t in rope]
  return tabs


def _table_spec(tab):
  """A table whole in VMEM (fetched once: its block never changes)."""
  from jax.experimental import pallas as pl  # pylint: disable=g-import-not-at-top
  return pl.BlockSpec(tab.shape, lambda bi, li, qi: (0, 0))


def over_batch(fn, in_batched: tuple[bool, ...], out_batched):
  """`fn` per batch shard when tracing under a mesh of several devices
  (`jax.set_mesh`, as experiments.aot and the train loop jit): XLA cannot
  partition a Mosaic kernel itself ("Mosaic kernels cannot be automatically
  partitioned"). The batch (dim 0) is split over every mesh axis, as recur's
  data-parallel mesh splits it; other arguments are replicated."""
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty or mesh.size == 1:
    return fn
  P = jax.sharding.PartitionSpec  # pylint: disable=invalid-name
  spec = lambda batched: P(tuple(mesh.axis_names)) if batched else P()
  return jax.shard_map(fn, mesh=mesh, in_specs=tuple(map(spec, in_batched)),
                       out_specs=jax.tree.map(spec, out_batched), check_vma=False)


def _nbytes(*xs) -> int:
  return sum(math.prod(x.shape) * jnp.dtype(x.dtype).itemsize for x in xs)


def _forward(qkv, rope, head_dim):
  tabs = [] if rope is None else _tables(rope, qkv.shape[1], head_dim,
                                         lane_block(qkv.shape[2] // 3 // head_dim,
                                                    head_dim))
  call = functools.partial(_forward_call, rope=rope is not None, head_dim=head_dim)
  return over_batch(call, (True,) + (False,) * len(tabs), True)(qkv, *tabs)


def _forward_call(qkv, *tabs, rope, head_dim):
  from jax.experimental import pallas as pl  # pylint: disable=g-import-not-at-top
  from jax.experimental.pallas import tpu as pltpu  # pylint: disable=g-import-not-at-top
  b, s, d3 = qkv.shape
  d = d3 // 3
  lanes = lane_block(d // head_dim, head_dim)
  grid, qkv_specs, rows_spec, _ = _specs(b, s, d, lanes)
  tab_specs, scratch = [], []
  if rope:
    tab_specs = [_table_spec(tabs[0])] * 2
    scratch = [pltpu.VMEM((s, lanes), qkv.dtype)]       # k rotated, per (b, lanes)
  kernel = functools.partial(_fwd_kernel, head_dim=head_dim, seq_len=s,
                             scale=1.0 / math.sqrt(head_dim), rope=rope)
  heads_scores = b * (d // head_dim) * s * s
  out = jax.ShapeDtypeStruct((b, s, d), qkv.dtype)
  return pl.pallas_call(
      kernel, grid=grid, in_specs=[*qkv_specs, *tab_specs],
      out_specs=rows_spec, out_shape=out, scratch_shapes=scratch,
      compiler_params=pltpu.CompilerParams(
          dimension_semantics=("parallel", "parallel", "arbitrary")),
      cost_estimate=pl.CostEstimate(
          flops=4 * heads_scores * head_dim, transcendentals=heads_scores,
          bytes_accessed=_nbytes(qkv, out, *tabs)),
      name="recur_attention_fwd",
  )(qkv, qkv, qkv, *tabs)


def _backward(qkv, o, do, rope, head_dim):
  tabs = [] if rope is None else _tables(rope, o.shape[1], head_dim,
                                         lane_block(o.shape[2] // head_dim,
                                                    head_dim))
  call = functools.partial(_backward_call, rope=rope is not None, head_dim=head_dim)
  return over_batch(call, (True,) * 3 + (False,) * len(tabs),
                    (True,) * 3)(qkv, o, do, *tabs)


def _backward_call(qkv, o, do, *tabs, rope, head_dim):
  from jax.experimental import pallas as pl  # pylint: disable=g-import-not-at-top
  from jax.experimental.pallas import tpu as pltpu  # pylint: disable=g-import-not-at-top
  b, s, d = o.shape
  lanes = lane_block(d // head_dim, head_dim)
  grid, qkv_specs, rows_spec, seq_spec = _specs(b, s, d, lanes)
  tab_specs = []
  scratch = [pltpu.VMEM((s, lanes), jnp.float32)] * 2   # dK, dV accumulators
  if rope:
    tab_specs = [_table_spec(tabs[0])] * 2
    scratch.append(pltpu.VMEM((s, lanes), qkv.dtype))
  kernel = functools.partial(_bwd_kernel, head_dim=head_dim, seq_len=s,
                             scale=1.0 / math.sqrt(head_dim), rope=rope)
  heads_scores = b * (d // head_dim) * s * s
  return pl.pallas_call(
      kernel, grid=grid,
      in_specs=[*qkv_specs, rows_spec, rows_spec, *tab_specs],
      out_specs=[rows_spec, seq_spec, seq_spec],
      out_shape=[jax.ShapeDtypeStruct(o.shape, o.dtype)] * 3,
      scratch_shapes=scratch,
      compiler_params=pltpu.CompilerParams(
          dimension_semantics=("parallel", "parallel", "arbitrary")),
      # Scores recomputed, dP, dQ, dK, dV: five [S, S] x K matmuls per head.
      cost_estimate=pl.CostEstimate(
          flops=10 * heads_scores * head_dim, transcendentals=heads_scores,
          bytes_accessed=_nbytes(qkv, o, do, *tabs) + 3 * _nbytes(o)),
      name="recur_attention_bwd",
  )(qkv, qkv, qkv, o, do, *tabs)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _attention(qkv, rope, head_dim):
  return _forward(qkv, rope, head_dim)


def _vjp_fwd(qkv, rope, head_dim):
  o = _forward(qkv, rope, head_dim)
  return o, (qkv, o, rope)


def _vjp_bwd(head_dim, res, do):
  qkv, o, rope = res
  dq, dk, dv = _backward(qkv, o, do, rope, head_dim)
  # The RoPE tables are constants (stop_gradient in _tables).
  return (jnp.concatenate([dq, dk, dv], axis=-1),
          jax.tree.map(jnp.zeros_like, rope))


_attention.defvjp(_vjp_fwd, _vjp_bwd)


def attention_qkv(qkv: Array, head_dim: int,
                  rope: tuple[Array, Array] | None = None) -> Array:
  """softmax(q_h k_h^T / sqrt(K)) v_h per head from the fused projection
  qkv [B, S, 3 N*K] ([q heads | k heads | v heads]), as [B, S, N*K]; with
  `rope` = (cos, sin) [S, K], q and k rotated first (rotate-half RoPE).

  The kernels read the projection's output itself: slicing it into q, k, v
  first costs XLA a slice and a layout copy per array (it does not fold a
  concatenation of the slices back; see `attention_bsd`)."""
  if rope is not None:
    rope = (jax.lax.stop_gradient(rope[0]), jax.lax.stop_gradient(rope[1]))
  return _attention(qkv, rope, head_dim)


def attention_bsd(q: Array, k: Array, v: Array, head_dim: int,
                  rope: tuple[Array, Array] | None = None) -> Array:
  """`attention_qkv` on separate q, k, v [B, S, N*K] (concatenated first)."""
  return attention_qkv(jnp.concatenate([q, k, v], axis=-1), head_dim, rope)
