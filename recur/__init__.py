"""recur: HRM and TRM recursive reasoning models in JAX.

Pure-functional cores: `init(key, cfg) -> params` and
`segment(params, inner_carry, batch) -> (inner_carry, outputs)` per model, the
ACT/deep-supervision step as pure functions (`recur.act`), losses, optimisers,
and conversion from the PyTorch reference. No flags, no I/O at import.
"""
from recur import act, core, layers, losses
from recur.act import ActCarry, act_step, advance, empty_carry, eval_rollout, refill
from recur.transformer import TransformerConfig
from recur.core import InnerCarry, ModelConfig, SegmentOutput
from recur.hrm import HRMConfig
from recur.models import make_config
from recur.trm import TRMConfig

__version__ = "0.1.0"

__all__ = [
    "act", "core", "layers", "losses", "ActCarry", "act_step", "advance",
    "empty_carry", "eval_rollout", "refill", "TransformerConfig", "InnerCarry",
    "ModelConfig", "SegmentOutput", "HRMConfig", "make_config", "TRMConfig",
]
