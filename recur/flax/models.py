"""TRM, HRM and the transformer baseline as Flax Linen modules.

The modules are thin: `__call__` runs one supervision segment by calling the
pure core (`cfg.segment`) on a parameter tree assembled from the module's
variables, so the outputs are the pure core's to the bit. What the modules add
is Flax's bookkeeping, with each kind of state in its own collection:

  "params"      {"net": ...}: the dense trainable weights (what Adam, weight
                decay and the EMA see);
  "buffers"     {"H_init", "L_init"}: the fixed [D] start states, never trained;
  "puzzle_emb"  {"table"}: the puzzle-embedding table [num_ids, P], trained
                with sparse sign-SGD in recur (`recur.optim`), not Adam.

So `optax.adamw(...).init(variables["params"])` never decays the init states
or the puzzle table. `init_variables(cfg, key)` gives exactly the variables of
`cfg.init(key)`; `to_params(variables)` goes back to the pure tree.

    model = recur.flax.TRM(cfg)
    variables = model.init(key, batch, method=model.initial_carry)
    carry = model.apply(variables, batch, method=model.initial_carry)
    carry, out = model.apply(variables, carry, batch)          # one segment
    per_step = model.apply(variables, batch, method=model.rollout)

NNX: `nnx_model(cfg, batch)` wraps the module with `nnx.bridge.ToNNX`; the
collections become NNX variable types (nnx.Param for "params"), so
`nnx.Optimizer(model, tx, wrt=nnx.Param)` trains the dense weights only.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax

from recur import act, core
from recur.transformer import TransformerConfig
from recur.hrm import HRMConfig
from recur.trm import TRMConfig

__all__ = ["RecurModel", "TRM", "HRM", "Transformer", "init_variables",
           "to_params", "BUFFERS", "PUZZLE_EMB", "nnx_model"]

Array = jax.Array
Params = dict[str, Any]

BUFFERS = "buffers"
PUZZLE_EMB = "puzzle_emb"


def init_variables(cfg: core.ModelConfig, key: Array) -> dict[str, Params]:
  """The Linen variables of `cfg.init(key)` (same values, split by collection)."""
  return _split(cfg.init(key))


def _split(params: Params) -> dict[str, Params]:
  return {"params": {"net": params["net"]},
          BUFFERS: {"H_init": params["H_init"], "L_init": params["L_init"]},
          PUZZLE_EMB: {"table": params["puzzle_emb"]}}


def to_params(variables) -> Params:
  """The pure-core parameter tree of a module's variables (inverse of
  `init_variables`)."""
  try:
    return {"net": variables["params"]["net"],
            "H_init": variables[BUFFERS]["H_init"],
            "L_init": variables[BUFFERS]["L_init"],
            "puzzle_emb": variables[PUZZLE_EMB]["table"]}
  except KeyError as e:
    raise KeyError(f"recur.flax variables need collections 'params' (net), "
                   f"'{BUFFERS}' (H_init, L_init) and '{PUZZLE_EMB}' (table); "
                   f"missing {e}") from e


class RecurModel(nn.Module):
  """One of recur's models (its config says which) as a Linen module."""
  config: core.ModelConfig

  def setup(self):
    cache: dict[str, Params] = {}

    def full(rng=None) -> Params:
      # One pure init for all three collections, so the values are exactly
      # `cfg.init(k)` for the key k Flax hands to the "params" stream.
      if "tree" not in cache:
        cache["tree"] = self.config.init(rng)
      return cache["tree"]

    self.net = self.param("net", lambda rng: full(rng)["net"])
    self.H_init = self.variable(BUFFERS, "H_init", lambda: full()["H_init"])
    self.L_init = self.variable(BUFFERS, "L_init", lambda: full()["L_init"])
    self.puzzle_table = self.variable(PUZZLE_EMB, "table",
                                      lambda: full()["puzzle_emb"])

  def params_tree(self) -> Params:
    return {"net": self.net, "H_init": self.H_init.value,
            "L_init": self.L_init.value, "puzzle_emb": self.puzzle_table.value}

  def __call__(self, carry: core.InnerCarry, batch: dict[str, Array],
               puzzle_emb: Array | None = None
               ) -> tuple[core.InnerCarry, core.SegmentOutput]:
    """One supervision segment: (inner carry, batch) -> (carry, logits/q).
    `puzzle_emb` [B, P]: rows to use instead of looking them up in the table
    (pass them to differentiate w.r.t. the rows)."""
    return act.run_segment(self.config, self.params_tree(), carry, batch, puzzle_emb)

  def initial_carry(self, batch: dict[str, Array]) -> core.InnerCarry:
    """Every row at its start state (H_init / L_init broadcast)."""
    c = act.refill(self.params_tree(), act.empty_carry(self.config, batch), batch)
    return core.InnerCarry(c.z_H, c.z_L)

  def empty_act_carry(self, batch: dict[str, Array]) -> act.ActCarry:
    """The ACT carry before the first step: every row halted."""
    return act.empty_carry(self.config, batch)

  def act_step(self, carry: act.ActCarry, batch: dict[str, Array],
               key: Array | None = None, *, train: bool = False
               ) -> tuple[act.ActCarry, dict[str, Array]]:
    """One deep-supervision step (`recur.act.act_step`): refill halted rows,
    one segment, halting."""
    return act.act_step(self.config, self.params_tree(), carry, batch, key,
                        train=train)

  def rollout(self, batch: dict[str, Array], num_steps: int | None = None
              ) -> dict[str, Array]:
    """Evaluation rollout (`recur.act.eval_rollout`): per-step logits/q."""
    return act.eval_rollout(self.config, self.params_tree(), batch, num_steps)


class TRM(RecurModel):
  """TRM (one shared net, full gradient through the last H-cycle)."""
  config: core.ModelConfig = TRMConfig()


class HRM(RecurModel):
  """HRM (separate H and L nets, 1-step gradient)."""
  config: core.ModelConfig = HRMConfig()


class Transformer(RecurModel):
  """The direct-prediction transformer baseline."""
  config: core.ModelConfig = TransformerConfig()


def nnx_model(module: RecurModel, batch: dict[str, Array], seed: int = 0):
  """The module as an initialised `flax.nnx` model (via `nnx.bridge.ToNNX`).
  Call it as `model(carry, batch)`; `model.initial_carry(batch)` etc. work too
  (ToNNX forwards methods)."""
  from flax import nnx  # pylint: disable=g-import-not-at-top
  model = nnx.bridge.ToNNX(module, rngs=nnx.Rngs(params=seed))
  nnx.bridge.lazy_init(model, batch, method=module.initial_carry)
  return model
