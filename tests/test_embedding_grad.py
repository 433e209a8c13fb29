"""The token-embedding gradient is accumulated in float32 (recur.layers.embedding_lookup)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recur import layers


def _case(batch=64, seq=225, vocab=12, d=32, seed=0):
  # An ARC-like lookup: B x S ids into a 12-row table, bf16 cotangents with a
  # common offset per (token, channel) so sums do not cancel to ~0.
  rng = np.random.default_rng(seed)
  table = rng.normal(size=(vocab, d)).astype(np.float32)
  ids = rng.integers(0, vocab, (batch, seq)).astype(np.int32)
  cot = (rng.normal(size=(batch, seq, d)) * 0.1 + 0.05).astype(jnp.bfloat16)
  return table, ids, cot


def _grad(lookup, table, ids, cot):
  return jax.jit(jax.grad(lambda t: jnp.sum(
      lookup(t, ids).astype(jnp.float32) * cot.astype(jnp.float32))))(table)


def _exact(table, ids, cot):
  out = np.zeros(table.shape, np.float64)
  np.add.at(out, ids.reshape(-1), np.asarray(cot, np.float64).reshape(-1, table.shape[1]))
  return out


def test_forward_equals_take():
  table, ids, _ = _case(batch=2, seq=5)
  for dtype in (jnp.float32, jnp.bfloat16):
    out = layers.embedding_lookup(jnp.asarray(table), jnp.asarray(ids), dtype)
    ref = jnp.take(jnp.asarray(table).astype(dtype), ids, axis=0)
    assert out.dtype == dtype
    np.testing.assert_array_equal(np.asarray(out, np.float32), np.asarray(ref, np.float32))


def test_bf16_gradient_is_the_float32_sum():
  # Given 14,400 bf16 cotangent rows summed into a 12-row table.
  table, ids, cot = _case()
  exact = _exact(table, ids, cot)
  # When differentiated the old way (bf16 scatter-add) and the new way.
  old = _grad(lambda t, i: jnp.take(t.astype(jnp.bfloat16), i, axis=0), table, ids, cot)
  new = _grad(lambda t, i: layers.embedding_lookup(t, i, jnp.bfloat16), table, ids, cot)
  err = lambda g: float(np.max(np.abs(np.asarray(g, np.float64) - exact)) / np.max(np.abs(exact)))
  # Then the new gradient is float32-accurate, the old one is not.
  assert new.dtype == jnp.float32
  assert err(new) < 1e-6, err(new)
  assert err(old) > 100 * err(new), (err(old), err(new))
  print(f"max-norm relative error vs exact: bf16 scatter-add {err(old):.2e}, "
        f"float32 accumulation {err(new):.2e}")


@pytest.mark.parametrize("jit", [False, True])
def test_float32_gradient_unchanged(jit):
  # In float32 the new lookup's gradient is the plain take's (up to order).
  table, ids, cot = _case(batch=4, seq=9)
  cot = cot.astype(jnp.float32)
  f_old = lambda t: jnp.sum(jnp.take(t, ids, axis=0) * cot)
  f_new = lambda t: jnp.sum(layers.embedding_lookup(t, jnp.asarray(ids), jnp.float32) * cot)
  g = jax.jit(jax.grad(f_new)) if jit else jax.grad(f_new)
  np.testing.assert_allclose(g(table), jax.grad(f_old)(table), rtol=1e-6, atol=1e-6)
