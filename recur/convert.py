"""PyTorch reference state dicts <-> recur params, both ways.

The reference (HRM/TRM public code) names its tensors like
`model.inner.L_level.layers.0.self_attn.qkv_proj.weight` ([out, in], PyTorch's
Linear layout), `model.inner.H_init`, `model.inner.puzzle_emb.weights`. Checkpoints
saved from a `torch.compile`d model carry an extra `_orig_mod.` prefix. Ours are
`params["net"]["L_level"]["qkv"]` ([layers, in, out]), `params["H_init"]`,
`params["puzzle_emb"]`. torch is optional: `.pt` files load only when it is
installed.
"""
from __future__ import annotations

import re
from typing import Any, Mapping

import numpy as np

__all__ = ["from_reference", "to_reference", "load_torch_state_dict",
           "save_torch_state_dict", "reference_prefix"]

Params = dict[str, Any]

# (reference sub-name inside a layer, our name in the stacked level dict)
_LAYER_NAMES = {
    "self_attn.qkv_proj.weight": "qkv",
    "self_attn.o_proj.weight": "o",
    "mlp.gate_up_proj.weight": "gate_up",
    "mlp.down_proj.weight": "down",
    "mlp_t.gate_up_proj.weight": "mlp_t_gate_up",
    "mlp_t.down_proj.weight": "mlp_t_down",
}
_LAYER_RE = re.compile(r"^(H_level|L_level)\.layers\.(\d+)\.(.+)$")
_STRIP = ("param/", "buffer/", "_orig_mod.", "model.", "inner.")


def _canonical(name: str) -> str:
  changed = True
  while changed:
    changed = False
    for p in _STRIP:
      if name.startswith(p):
        name, changed = name[len(p):], True
  return name


def from_reference(state: Mapping[str, Any]) -> Params:
  """Builds recur params from a reference state dict (name -> array)."""
  net: dict[str, Any] = {}
  out: dict[str, Any] = {"net": net}
  levels: dict[str, dict[str, dict[int, np.ndarray]]] = {}
  for raw, value in state.items():
    name = _canonical(raw)
    v = np.asarray(value, dtype=np.float32)
    if name in ("H_init", "L_init"):
      out[name] = v
    elif name == "puzzle_emb.weights":
      out["puzzle_emb"] = v
    elif name == "embed_tokens.embedding_weight":
      net["embed_tokens"] = v
    elif name == "embed_pos.embedding_weight":
      net["embed_pos"] = v
    elif name == "lm_head.weight":
      net["lm_head"] = v.T
    elif name == "q_head.weight":
      net.setdefault("q_head", {})["kernel"] = v.T
    elif name == "q_head.bias":
      net.setdefault("q_head", {})["bias"] = v
    elif (m := _LAYER_RE.match(name)):
      level, idx, sub = m.group(1), int(m.group(2)), m.group(3)
      if sub not in _LAYER_NAMES:
        raise KeyError(f"unknown reference parameter {raw!r}")
      levels.setdefault(level, {}).setdefault(_LAYER_NAMES[sub], {})[idx] = v.T
    elif name.endswith(("cos_cached", "sin_cached", "local_weights", "local_ids")):
      continue  # derived buffers, not state
    else:
      raise KeyError(f"unknown reference parameter {raw!r}")
  for level, by_name in levels.items():
    stacked = {}
    for ours, per_layer in by_name.items():
      n = max(per_layer) + 1
      missing = [i for i in range(n) if i not in per_layer]
      if missing:
        raise KeyError(f"{level}: layers {missing} missing for {ours}")
      stacked[ours] = np.stack([per_layer[i] for i in range(n)])
    net[level] = stacked
  if "H_init" not in out:
    raise KeyError("reference state dict has no H_init")
  if "L_init" not in out:
    if "L_level" in net:
      raise KeyError("reference state dict has no L_init")
    # The direct-prediction baseline has no z_L and no L_init.
    out["L_init"] = np.zeros_like(out["H_init"])
  if "puzzle_emb" not in out:
    out["puzzle_emb"] = np.zeros((1, 0), np.float32)
  return out


def reference_prefix(compiled: bool = False) -> str:
  """The reference's state-dict name prefix: `model.inner.`, with `_orig_mod.`
  in front for a `torch.compile`d model (what the reference's pretrain.py loads
  unless DISABLE_COMPILE is set)."""
  return ("_orig_mod." if compiled else "") + "model.inner."


def to_reference(params: Params, prefix: str = "model.inner.") -> dict[str, np.ndarray]:
  """recur params -> reference state dict (numpy arrays, reference names)."""
  net = params["net"]
  sd = {
      prefix + "embed_tokens.embedding_weight": np.asarray(net["embed_tokens"]),
      prefix + "lm_head.weight": np.asarray(net["lm_head"]).T,
      prefix + "q_head.weight": np.asarray(net["q_head"]["kernel"]).T,
      prefix + "q_head.bias": np.asarray(net["q_head"]["bias"]),
      prefix + "H_init": np.asarray(params["H_init"]),
  }
  if "L_level" in net:  # the baseline has no L net and no L_init buffer
    sd[prefix + "L_init"] = np.asarray(params["L_init"])
  if "embed_pos" in net:
    sd[prefix + "embed_pos.embedding_weight"] = np.asarray(net["embed_pos"])
  pe = params.get("puzzle_emb")
  if pe is not None and np.asarray(pe).size:
    sd[prefix + "puzzle_emb.weights"] = np.asarray(pe)
  inverse = {v: k for k, v in _LAYER_NAMES.items()}
  for level in ("H_level", "L_level"):
    for ours, stacked in net.get(level, {}).items():
      for i, w in enumerate(np.asarray(stacked)):
        sd[f"{prefix}{level}.layers.{i}.{inverse[ours]}"] = np.ascontiguousarray(w.T)
  return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in sd.items()}


def _torch():
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError("reading/writing .pt files needs PyTorch "
                      "(`pip install torch`); recur itself does not") from e
  return torch


def load_torch_state_dict(path: str) -> dict[str, np.ndarray]:
  """Loads a reference `.pt` checkpoint into name -> float32 numpy arrays."""
  torch = _torch()
  sd = torch.load(path, map_location="cpu", weights_only=True)
  if isinstance(sd, dict) and "state_dict" in sd and not hasattr(sd["state_dict"], "shape"):
    sd = sd["state_dict"]
  return {k: v.detach().to(torch.float32).cpu().numpy() for k, v in sd.items()}


def save_torch_state_dict(params: Params, path: str, compiled: bool = False) -> None:
  """Writes `params` (recur layout) as a reference state dict of float tensors
  with torch.save (needs torch); `compiled` adds the `_orig_mod.` prefix."""
  torch = _torch()
  # np.asarray of a jax.Array is read-only, and torch.from_numpy warns about
  # (and would share) a non-writable buffer: hand it writable C-order copies.
  sd = {k: torch.from_numpy(np.array(v, order="C", copy=True)) for k, v in
        to_reference(params, reference_prefix(compiled)).items()}
  torch.save(sd, path)
