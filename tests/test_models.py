"""The model interface and registry: every model implements it, nobody sniffs."""
import dataclasses
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recur import act, config, losses, models, train
from recur.config import InnerCarry, LayerCalls, ModelConfig
from tiny_models import batch as random_batch
from tiny_models import tiny

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INTERFACE = ("init", "segment", "init_carry", "depth_per_segment", "layer_calls")


def batch(cfg, b=3, seed=0):
  return random_batch(cfg, b, seed)


@pytest.mark.parametrize("name", sorted(models.MODEL_CONFIGS))
def test_every_registered_model_implements_the_interface(name):
  cls = models.MODEL_CONFIGS[name]
  # Given a registered model, then it is a ModelConfig that names itself and
  # overrides every method of the interface.
  assert issubclass(cls, ModelConfig) and cls.name == name
  for method in INTERFACE:
    assert getattr(cls, method) is not getattr(ModelConfig, method), (name, method)
  cfg = tiny(name)
  assert cfg.name == name and dataclasses.asdict(cfg)["name"] == name
  # When a segment runs from its declared carry, then the carry it returns has
  # the declared shapes and dtype.
  params = cfg.init(jax.random.key(0))
  assert set(params) == {"net", "H_init", "L_init", "puzzle_emb"}
  carry = cfg.init_carry(3)
  inner, out = cfg.segment(params, carry, batch(cfg))
  assert isinstance(inner, InnerCarry)
  for got, want in zip(inner, carry):
    assert got.shape == want.shape and got.dtype == want.dtype == cfg.dtype
  assert out.logits.shape == (3, cfg.seq_len, cfg.vocab_size)
  calls = cfg.layer_calls()
  assert isinstance(calls, LayerCalls)
  assert calls.forward == cfg.depth_per_segment() >= calls.grad > 0


def test_depth_and_layer_calls_per_model():
  # The published shapes: TRM T*(n+1)*layers, HRM T*(n*L + H), transformer H.
  assert tiny("trm", H_cycles=3, L_cycles=6, L_layers=2).layer_calls() == (42, 14)
  assert tiny("trm", grad_mode="one_step", L_layers=2).layer_calls() == (12, 4)
  assert tiny("trm", single_latent=True, grad_mode="one_step").layer_calls() == (6, 3)
  assert tiny("hrm", H_cycles=2, L_cycles=2, H_layers=4, L_layers=4).layer_calls() == (24, 8)
  assert tiny("transformer", H_layers=5).layer_calls() == (5, 5)
  assert tiny("transformer").init_carry(2).z_L.shape == (2, 0, 16)


def test_a_model_missing_a_method_is_refused_by_name():
  @dataclasses.dataclass(frozen=True)
  class Half(ModelConfig):
    name: str = dataclasses.field(default="half", init=False)

  with pytest.raises(NotImplementedError, match="Half does not implement init_carry"):
    Half(puzzle_emb_ndim=0).init_carry(2)


def test_config_round_trips_through_its_dict_and_old_spelling():
  cfg = tiny("hrm", halt_max_steps=5)
  d = dataclasses.asdict(cfg)
  assert models.config_from_dict(d) == cfg
  # Sidecars and checkpoint metadata written before the rename said "model".
  old = {("model" if k == "name" else k): v for k, v in d.items()}
  assert models.config_from_dict(old) == cfg
  with pytest.raises(ValueError, match="ckpt meta: no model name"):
    models.config_from_dict({"hidden_size": 8}, where="ckpt meta")
  with pytest.raises(ValueError, match="ckpt meta: unknown trm config fields"):
    models.config_from_dict({"name": "trm", "bogus": 1}, where="ckpt meta")
  # The kind is fixed by the class, not an argument.
  with pytest.raises(ValueError, match="unknown trm config fields: \\['name'\\]"):
    models.make_config("trm", name="hrm")


def test_rollout_is_eval_step_and_correctness_ignores_the_ignore_label():
  cfg = tiny("trm")
  params = cfg.init(jax.random.key(1))
  b = batch(cfg)
  out = act.rollout(cfg, params, b, 4, keep_steps=True)
  ev = train.eval_step(params, b, cfg=cfg, num_steps=4, keep_steps=True)
  for k, v in ev.items():
    np.testing.assert_array_equal(v, out[k])
  assert out["preds_per_step"].shape == (4, 3, cfg.seq_len)
  np.testing.assert_array_equal(out["preds"], out["preds_per_step"][-1])
  # Labelling every position the model got wrong as ignored makes every row exact.
  preds = out["preds"]
  labels = jnp.where(preds == b["labels"], b["labels"], losses.IGNORE_LABEL_ID)
  right = losses.correctness(preds, labels)
  assert bool(right.exact.all())
  np.testing.assert_allclose(right.accuracy, (right.counts > 0).astype(np.float32))
  # The same definition on host arrays gives the same answer.
  host = losses.correctness(np.asarray(preds), np.asarray(b["labels"]))
  dev = losses.correctness(preds, b["labels"])
  np.testing.assert_array_equal(host.exact, dev.exact)
  np.testing.assert_allclose(host.accuracy, dev.accuracy, rtol=1e-6)


@pytest.mark.parametrize("name", ["trm", "transformer"])
def test_rollout_noise_moves_the_start_and_zero_noise_does_not(name):
  cfg = tiny(name)
  params = cfg.init(jax.random.key(2))
  b = batch(cfg)
  clean = act.rollout(cfg, params, b, 2, keep_logits=True)
  zero = act.rollout(cfg, params, b, 2, keep_logits=True, noise=0.0, key=jax.random.key(3))
  noisy = act.rollout(cfg, params, b, 2, keep_logits=True, noise=1.0, key=jax.random.key(3))
  np.testing.assert_array_equal(zero["logits_per_step"], clean["logits_per_step"])
  assert not np.allclose(noisy["logits_per_step"], clean["logits_per_step"])


def test_params_split_in_one_place():
  cfg = tiny("trm")
  state = train.init_state(jax.random.key(0), cfg, train.OptimConfig(global_batch_size=3),
                           {k: jax.ShapeDtypeStruct(v.shape, v.dtype)
                            for k, v in batch(cfg).items()})
  full = train.model_params(state)
  assert set(full) == {"net", "H_init", "L_init", "puzzle_emb"}
  dense, table = train.split_params(full)
  assert set(dense) == set(state.params) and table is state.puzzle_emb
  assert train.join_params(dense, table).keys() == full.keys()


# What model-kind sniffing looks like: asking a config which model it is.
_SNIFF = [
    (re.compile(r"getattr\(\s*cfg\b"), "getattr(cfg, ...)"),
    (re.compile(r"\bcfg\.model\b"), "cfg.model (old spelling of the kind)"),
    (re.compile(r"\.name\s*[!=]=\s*[\"'](trm|hrm|transformer)"), "cfg.name == ..."),
    (re.compile(r"[!=]=\s*[\"'](trm|hrm|transformer)[\"']"), "== model name"),
    (re.compile(r"\bin\s*\(\s*[\"'](trm|hrm|transformer)[\"']"), "in (model names)"),
    (re.compile(r"[\"'](trm|hrm|transformer)[\"']\s+in\b"), "name substring test"),
]
_REGISTRY = {os.path.join("recur", "models.py")}


def test_no_model_kind_sniffing_outside_the_registry():
  found = []
  for top in ("recur", "experiments"):
    for dirpath, _, files in os.walk(os.path.join(ROOT, top)):
      for f in files:
        if not f.endswith(".py"):
          continue
        path = os.path.join(dirpath, f)
        rel = os.path.relpath(path, ROOT)
        if rel in _REGISTRY:
          continue
        with open(path, encoding="utf-8") as fh:
          for i, line in enumerate(fh, 1):
            for pattern, what in _SNIFF:
              if pattern.search(line):
                found.append(f"{rel}:{i}: {what}: {line.strip()}")
  assert not found, "model-kind sniffing outside recur/models.py:\n" + "\n".join(found)


def test_segment_is_called_from_at_most_three_places():
  # The ACT step, HRM's Q-target pass and the rollout all enter the recursion
  # through act.run_segment (so does recur.flax): one call site, in recur/act.py.
  calls = []
  for top in ("recur", "experiments"):
    for dirpath, _, files in os.walk(os.path.join(ROOT, top)):
      for f in (f for f in files if f.endswith(".py")):
        path = os.path.join(dirpath, f)
        with open(path, encoding="utf-8") as fh:
          calls += [f"{os.path.relpath(path, ROOT)}:{i}" for i, line in enumerate(fh, 1)
                    if re.search(r"\.segment\(", line)]
  assert len(calls) <= 3 and all(c.startswith(os.path.join("recur", "act.py")) for c in calls), calls


def test_core_keeps_its_old_names():
  from recur import core  # pylint: disable=g-import-not-at-top
  assert core.ModelConfig is config.ModelConfig
  for name in ("InnerCarry", "SegmentOutput", "embed_inputs", "segment_inputs",
               "output_heads", "init_io", "recurse", "remat_policy", "rope_for"):
    assert hasattr(core, name), name
