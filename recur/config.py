"""The model interface: `ModelConfig`, what every model declares and provides.

A model is a frozen, hashable dataclass (usable as a static jit argument) that
subclasses `ModelConfig`, holds the fields every model shares (below) plus its
own, and implements five methods:

* `init(key) -> params`: the model params, one layout for every model and the
  whole library (init, ACT, rollout, evaluation, export, conversion):
  `{"net": dense trainable weights, "H_init": [D], "L_init": [D],
  "puzzle_emb": [num_puzzle_identifiers, P]}`. Only `net` is trained by Adam and
  tracked by the EMA; `puzzle_emb` is the sparse table updated by sign-SGD;
  `H_init`/`L_init` are fixed buffers. Training keeps the table apart (see
  `recur.train.split_params`): that is the one split of this layout.
* `segment(params, inner, batch, puzzle_emb=None) -> (inner, SegmentOutput)`:
  one supervision segment (`puzzle_emb` [B, P]: the looked-up table rows, passed
  explicitly so training can differentiate w.r.t. them).
* `init_carry(batch_size) -> InnerCarry`: zero latents of the right shapes and
  dtype (the transformer has no z_L: [B, 0, D]).
* `depth_per_segment() -> int`: blocks between input and output in a segment.
* `layer_calls() -> LayerCalls`: block applications per example in a segment,
  all and the differentiated ones (FLOP counts, depth-vs-recursion tables).

The kind of a model is its `name` ("trm", "hrm", "transformer"): a field fixed
by the class (not an init argument), so `dataclasses.asdict(cfg)` carries it and
`recur.models.config_from_dict` rebuilds the config. `recur.models` is the one
registry from names to classes.
"""
from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp

from recur import layers

__all__ = ["ModelConfig", "InnerCarry", "SegmentOutput", "LayerCalls",
           "POS_ENCODINGS", "GRAD_MODES", "HALT_RULES", "check_batch",
           "check_inner"]

Array = jax.Array
Params = dict[str, Any]

POS_ENCODINGS = ("rope", "learned", "none")
GRAD_MODES = ("full", "one_step")
HALT_RULES = ("q_halt", "compare")


class InnerCarry(NamedTuple):
  """The latents carried from one segment to the next."""
  z_H: Array   # [B, S, D] compute dtype
  z_L: Array   # [B, S, D] (empty [B, 0, D] for the transformer, which has no z_L)


class SegmentOutput(NamedTuple):
  """What a segment's heads give: LM `logits` float32 [B, seq_len, V] (puzzle
  prefix dropped) and `q_logits` float32 [B, 2] (q_halt, q_continue)."""
  logits: Array          # [B, seq_len, V] float32, puzzle prefix dropped
  q_logits: Array        # [B, 2] float32: (q_halt, q_continue)


class LayerCalls(NamedTuple):
  """Block applications per example in one forward segment."""
  forward: int   # all of them
  grad: int      # of them, the ones the gradient flows through


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Fields common to every model. Defaults are the papers' ARC settings."""
  name: str = dataclasses.field(default="", init=False)  # set by each model class
  vocab_size: int = 12
  seq_len: int = 900
  hidden_size: int = 512
  num_heads: int = 8
  expansion: float = 4.0
  pos_encodings: str = "rope"
  rope_theta: float = 10000.0
  rms_norm_eps: float = 1e-5
  puzzle_emb_ndim: int = 512
  puzzle_emb_len: int = 0          # 0: ceil(puzzle_emb_ndim / hidden_size)
  num_puzzle_identifiers: int = 1
  H_cycles: int = 3
  L_cycles: int = 4
  H_layers: int = 0
  L_layers: int = 2
  mlp_t: bool = False
  grad_mode: str = "full"          # "full" (TRM) or "one_step" (HRM)
  halt_max_steps: int = 16
  halt_exploration_prob: float = 0.1
  halt_rule: str = "q_halt"        # halt when "q_halt" > 0, or "compare": q_halt > q_continue
  act_continue: bool = False       # learn q_continue from a bootstrapped target (HRM)
  act_train: bool = True           # Q-head halting while training
  act_eval: bool = False           # Q-head halting in act_step(train=False) too
  compute_dtype: str = "bfloat16"
  unroll: bool | int = True        # scan unroll of the cycles; 1 = rolled
  remat: str | None = "auto"       # "auto" (recur.plans: by platform), None, or a policy name
  attention_impl: str | None = None  # None/"auto" (by platform), "xla", "cudnn", "cudnn_even", "pallas_tpu"
  # recur.kernels where XLA does not fuse: None = by platform (recur.plans: on
  # for GPUs/TPUs, off on a CPU); True/False forces it.
  fused_kernels: bool | None = None
  # Blocks nothing differentiates (no-grad cycles, evaluation) as matmul
  # kernels with fused epilogues (recur.kernels.block_forward): None = by
  # platform (recur.plans: GPUs, where fused_kernels is on); True/False forces.
  fused_forward: bool | None = None

  def __post_init__(self):
    if self.pos_encodings not in POS_ENCODINGS:
      raise ValueError(f"pos_encodings must be one of {POS_ENCODINGS}, "
                       f"got {self.pos_encodings!r}")
    if self.grad_mode not in GRAD_MODES:
      raise ValueError(f"grad_mode must be one of {GRAD_MODES}, got "
                       f"{self.grad_mode!r}")
    if self.halt_rule not in HALT_RULES:
      raise ValueError(f"halt_rule must be one of {HALT_RULES}, got {self.halt_rule!r}")
    if self.hidden_size % self.num_heads:
      raise ValueError(f"hidden_size {self.hidden_size} is not divisible by "
                       f"num_heads {self.num_heads}")
    if self.puzzle_emb_ndim > self.prefix_len * self.hidden_size:
      raise ValueError(
          f"puzzle_emb_ndim {self.puzzle_emb_ndim} does not fit in "
          f"puzzle_emb_len {self.puzzle_emb_len} x hidden_size {self.hidden_size}")
    if self.H_cycles < 1 or self.L_cycles < 1 or self.halt_max_steps < 1:
      raise ValueError("H_cycles, L_cycles and halt_max_steps must be >= 1")

  # -- the interface every model implements --------------------------------

  def init(self, key: Array) -> Params:
    """Fresh model params (layout in the module docstring)."""
    raise NotImplementedError(f"{type(self).__name__} does not implement init")

  def segment(self, params: Params, inner: InnerCarry, batch: dict,
              puzzle_emb: Array | None = None) -> tuple[InnerCarry, SegmentOutput]:
    """One supervision segment; the returned carry is stop_gradient'ed."""
    raise NotImplementedError(f"{type(self).__name__} does not implement segment")

  def init_carry(self, batch_size: int) -> InnerCarry:
    """Zero latents of this model's carry shapes for `batch_size` rows."""
    raise NotImplementedError(f"{type(self).__name__} does not implement init_carry")

  def depth_per_segment(self) -> int:
    """Blocks between input and output in one supervision segment."""
    raise NotImplementedError(
        f"{type(self).__name__} does not implement depth_per_segment")

  def layer_calls(self) -> LayerCalls:
    """Block applications per example in one forward segment."""
    raise NotImplementedError(f"{type(self).__name__} does not implement layer_calls")

  # -- shared helpers --------------------------------------------------------

  def latents(self, batch_size: int, z_L_len: int | None = None) -> InnerCarry:
    """Zero [B, S, D] latents; z_L gets `z_L_len` positions (default S)."""
    s, d = self.full_seq_len, self.hidden_size
    s_l = s if z_L_len is None else z_L_len
    return InnerCarry(jnp.zeros((batch_size, s, d), self.dtype),
                      jnp.zeros((batch_size, s_l, d), self.dtype))

  @property
  def prefix_len(self) -> int:
    """Positions taken by the puzzle embedding in front of the tokens."""
    if self.puzzle_emb_ndim <= 0:
      return 0
    if self.puzzle_emb_len:
      return self.puzzle_emb_len
    return -(self.puzzle_emb_ndim // -self.hidden_size)

  @property
  def full_seq_len(self) -> int:
    return self.seq_len + self.prefix_len

  @property
  def dtype(self):
    return jnp.dtype(self.compute_dtype)

  @property
  def layer_config(self) -> layers.LayerConfig:
    return layers.LayerConfig(
        hidden_size=self.hidden_size, num_heads=self.num_heads,
        expansion=self.expansion, seq_len=self.full_seq_len, mlp_t=self.mlp_t,
        rms_norm_eps=self.rms_norm_eps, attention_impl=self.attention_impl,
        fused_kernels=self.fused_kernels, fused_forward=self.fused_forward)

  def replace(self, **kw) -> "ModelConfig":
    return dataclasses.replace(self, **kw)


# -- boundary checks ----------------------------------------------------------
# chex assertions on static shapes/dtypes: they run while jax traces (once per
# compilation) and leave nothing in the compiled program.


def check_batch(cfg: ModelConfig, batch: dict) -> int:
  """Checks a batch against `cfg` (inputs [B, seq_len] integer ids; labels
  like inputs; puzzle_identifiers [B]); returns B."""
  inputs = batch["inputs"]
  chex.assert_rank(inputs, 2)
  b = inputs.shape[0]
  chex.assert_shape(inputs, (b, cfg.seq_len))
  chex.assert_type(inputs, int)
  if "labels" in batch:
    chex.assert_shape(batch["labels"], (b, cfg.seq_len))
    chex.assert_type(batch["labels"], int)
  if cfg.prefix_len:
    chex.assert_shape(batch["puzzle_identifiers"], (b,))
    chex.assert_type(batch["puzzle_identifiers"], int)
  return b


def check_inner(cfg: ModelConfig, inner: InnerCarry, batch_size: int) -> None:
  """Checks the latents: z_H [B, S, D], z_L [B, S or 0, D], floating."""
  s, d = cfg.full_seq_len, cfg.hidden_size
  chex.assert_shape(inner.z_H, (batch_size, s, d))
  chex.assert_shape(inner.z_L, (batch_size, None, d))
  chex.assert_type([inner.z_H, inner.z_L], float)
