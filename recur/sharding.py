"""Meshes and shardings: data parallel over every device of every host.

The batch, the ACT carry and the per-row outputs are split along a `data` mesh
axis; dense weights, optimizer state and EMA are replicated; the puzzle-embedding
table (about 1M x 512 floats for ARC) is replicated or split by rows across the
same axis (`table_sharding="rows"`). Everything goes through `jax.jit` with
`NamedSharding`s, no pmap; `jit_under_mesh` also traces under the mesh, so
Pallas kernels that XLA cannot partition (the TPU attention) run per shard.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from recur import train

__all__ = ["DATA", "make_mesh", "batch_sharding", "state_shardings",
           "replicated", "jit_under_mesh"]

DATA = "data"


def make_mesh(devices=None) -> Mesh:
  """A 1-D mesh with axis `data` over `devices` (default: every device of every
  process)."""
  devices = jax.devices() if devices is None else devices
  return Mesh(np.asarray(devices).reshape(-1), (DATA,))


def jit_under_mesh(fn: Callable, mesh: Mesh, **jit_kwargs) -> Callable:
  """`jax.jit(fn, **jit_kwargs)` called (and so traced) under
  `jax.set_mesh(mesh)`. Kernels XLA cannot partition itself (Mosaic: "cannot
  be automatically partitioned") read the mesh while tracing and run per
  batch shard (`recur.attention_tpu.over_batch`); without it a multi-device
  TPU step with the Pallas attention fails to compile."""
  jitted = jax.jit(fn, **jit_kwargs)

  @functools.wraps(fn)
  def call(*args, **kwargs):
    with jax.set_mesh(mesh):
      return jitted(*args, **kwargs)

  return call


def replicated(mesh: Mesh) -> NamedSharding:
  """The sharding that keeps a full copy of an array on every device of `mesh`."""
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over `data`; the rest replicated."""
  return NamedSharding(mesh, P(DATA))


def state_shardings(state_shape: train.TrainState, mesh: Mesh,
                    table_sharding: str = "replicated") -> train.TrainState:
  """A TrainState-shaped pytree of NamedShardings."""
  if table_sharding not in ("replicated", "rows"):
    raise ValueError("table_sharding must be 'replicated' or 'rows', got "
                     f"{table_sharding!r}")
  rep, rows = replicated(mesh), batch_sharding(mesh)
  n = mesh.devices.size

  def table_sh(x):
    if table_sharding == "rows" and x.shape[0] % n == 0:
      return rows
    return rep

  # A TrainState-shaped tree of shardings, not of the arrays its fields name.
  return train.TrainState(
      step=rep,  # type: ignore[arg-type]
      params=jax.tree.map(lambda _: rep, state_shape.params),
      puzzle_emb=table_sh(state_shape.puzzle_emb),
      opt_state=jax.tree.map(lambda _: rep, state_shape.opt_state),
      ema=jax.tree.map(lambda _: rep, state_shape.ema),
      carry=jax.tree.map(lambda _: rows, state_shape.carry),
      key=rep,  # type: ignore[arg-type]
  )


def tree_shardings(tree: Any, sharding: NamedSharding) -> Any:
  return jax.tree.map(lambda _: sharding, tree)
