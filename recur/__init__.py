"""recur: HRM and TRM recursive reasoning models in JAX.

Every model is a frozen config (`recur.config.ModelConfig`, registered by name
in `recur.models`) providing `init(key) -> params`,
`segment(params, inner_carry, batch) -> (inner_carry, outputs)`, its carry
shapes and its depth. Around them: the ACT/deep-supervision step and the one
evaluation rollout as pure functions (`recur.act`), losses and correctness,
optimisers, and conversion from the PyTorch reference. No flags, no I/O at
import.
"""
from recur import act, config, core, embed, layers, losses, recursion
from recur.act import (ActCarry, act_step, advance, empty_carry, eval_rollout, refill,
                       rollout)
from recur.config import InnerCarry, LayerCalls, ModelConfig, SegmentOutput
from recur.hrm import HRMConfig
from recur.models import MODEL_CONFIGS, config_from_dict, make_config
from recur.transformer import TransformerConfig
from recur.trm import TRMConfig

__version__ = "0.1.0"

__all__ = [
    "act", "config", "core", "embed", "layers", "losses", "recursion", "ActCarry",
    "act_step", "advance", "empty_carry", "eval_rollout", "refill", "rollout",
    "TransformerConfig", "InnerCarry", "LayerCalls", "ModelConfig", "SegmentOutput",
    "HRMConfig", "MODEL_CONFIGS", "config_from_dict", "make_config", "TRMConfig",
]
