"""recur for Flax users: Linen (and NNX) modules over the pure cores.

* `TRM`, `HRM`, `Transformer`: recur's models as Linen modules; `__call__` runs
  one supervision segment on a carry, bit-identical to the pure core. Trainable
  weights in "params", H_init/L_init in "buffers", the puzzle table in
  "puzzle_emb" (see `recur.flax.models`). `nnx_model` wraps one for flax.nnx.
* `Reasoner`: TRM's recursion over any input embedding x [B, S, D] (no
  vocabulary, no puzzle table), to put inside your own model.
"""
from recur.flax.models import (BUFFERS, HRM, PUZZLE_EMB, TRM, RecurModel,
                               Transformer, init_variables, nnx_model, to_params)
from recur.flax.reasoner import Reasoner

__all__ = ["TRM", "HRM", "Transformer", "RecurModel", "Reasoner",
           "init_variables", "to_params", "nnx_model", "BUFFERS", "PUZZLE_EMB"]
