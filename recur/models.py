"""Builds a model config from a name and keyword fields (TRM, HRM, baseline)."""
from __future__ import annotations

from recur import core
from recur.transformer import TransformerConfig
from recur.hrm import HRMConfig
from recur.trm import TRMConfig

__all__ = ["MODEL_CONFIGS", "make_config", "from_reference_config"]

MODEL_CONFIGS = {"trm": TRMConfig, "hrm": HRMConfig, "transformer": TransformerConfig}


def make_config(model: str, **fields) -> core.ModelConfig:
  if model not in MODEL_CONFIGS:
    raise ValueError(f"model must be one of {sorted(MODEL_CONFIGS)}, got {model!r}")
  cls = MODEL_CONFIGS[model]
  known = set(cls.__dataclass_fields__)
  unknown = sorted(set(fields) - known)
  if unknown:
    raise ValueError(f"unknown {model} config fields: {unknown}")
  return cls(**fields)


def from_reference_config(model: str, ref: dict, compute_dtype: str | None = None
                          ) -> core.ModelConfig:
  """Maps the reference's pydantic model config (as in its YAML/fixture JSON)."""
  names = ("vocab_size", "seq_len", "hidden_size", "num_heads", "expansion",
           "pos_encodings", "rope_theta", "rms_norm_eps", "puzzle_emb_ndim",
           "num_puzzle_identifiers", "H_cycles", "L_cycles", "H_layers",
           "L_layers", "halt_max_steps", "halt_exploration_prob", "mlp_t")
  fields = {k: ref[k] for k in names if k in ref}
  if model == "trm":
    # TRM's own default puzzle_emb_len is 16; HRM and the baseline use ceil(P/D).
    fields["puzzle_emb_len"] = ref.get("puzzle_emb_len", 16)
    cont = not ref.get("no_ACT_continue", True)
    fields["act_continue"] = cont
    fields["halt_rule"] = "compare" if cont else "q_halt"
  elif model == "hrm":
    fields["act_continue"] = True
    fields["halt_rule"] = "compare"
  elif model in ("transformer", "transformers_baseline"):
    model = "transformer"
    fields["halt_rule"] = "compare"
    fields["act_continue"] = False
    fields["act_train"] = ref.get("act_enabled", True)
    fields["act_eval"] = ref.get("act_inference", False)
  fields["compute_dtype"] = compute_dtype or ref.get("forward_dtype", "bfloat16")
  return make_config(model, **fields)
