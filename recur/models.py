"""The model registry: the one place that maps a model's name to its class.

Registering a model is one line in `MODEL_CONFIGS` (its class subclasses
`recur.config.ModelConfig`, declares its `name` and implements the interface).
Everything else asks the config itself (`cfg.init`, `cfg.segment`,
`cfg.init_carry`, `cfg.depth_per_segment`, `cfg.layer_calls`) and never checks
which model it holds. The kind is spelled `name` everywhere (run configs'
`model.name`, `dataclasses.asdict(cfg)["name"]`); sidecars and checkpoint
metadata written before that spelled it `model`, and `config_from_dict` still
reads them.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from recur.config import ModelConfig
from recur.hrm import HRMConfig
from recur.transformer import TransformerConfig
from recur.trm import TRMConfig

__all__ = ["MODEL_CONFIGS", "make_config", "config_from_dict", "canonical_fields",
           "from_reference_config", "reference_model_name"]

MODEL_CONFIGS: dict[str, type[ModelConfig]] = {cls.name: cls for cls in (
    TRMConfig,
    HRMConfig,
    TransformerConfig,
)}

# The key older sidecars / checkpoint metadata used for the model's name.
_LEGACY_NAME_KEY = "model"


def make_config(name: str, /, **fields) -> ModelConfig:
  """The config of model `name` with `fields` (unknown fields are refused)."""
  if name not in MODEL_CONFIGS:
    raise ValueError(f"model name must be one of {sorted(MODEL_CONFIGS)}, got {name!r}")
  cls = MODEL_CONFIGS[name]
  known = {f.name for f in dataclasses.fields(cls) if f.init}
  unknown = sorted(set(fields) - known)
  if unknown:
    raise ValueError(f"unknown {name} config fields: {unknown}")
  return cls(**fields)


def canonical_fields(d: dict[str, Any]) -> dict[str, Any]:
  """A model-config dict with the name under `name` (older ones: `model`)."""
  d = dict(d)
  if "name" not in d and isinstance(d.get(_LEGACY_NAME_KEY), str):
    d["name"] = d.pop(_LEGACY_NAME_KEY)
  return d


def config_from_dict(d: dict[str, Any], where: str = "model config") -> ModelConfig:
  """Rebuilds a config from `dataclasses.asdict(cfg)` (or an older dict that
  spelled the name `model`); `where` names the source in errors."""
  d = canonical_fields(d)
  if "name" not in d:
    raise ValueError(f"{where}: no model name (field 'name', or 'model' in files "
                     f"written before the rename); one of {sorted(MODEL_CONFIGS)}")
  name = d.pop("name")
  try:
    return make_config(name, **d)
  except ValueError as e:
    raise ValueError(f"{where}: {e}") from e


def reference_model_name(name: str) -> str:
  """Our model name from the reference's architecture name (`...trm@...`)."""
  low = name.lower()
  if "hrm" in low:
    return "hrm"
  if "trm" in low:
    return "trm"
  if "transformer" in low or "baseline" in low:
    return "transformer"
  raise ValueError(f"cannot tell the model from reference name {name!r}")


def from_reference_config(model: str, ref: dict, compute_dtype: str | None = None
                          ) -> ModelConfig:
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
