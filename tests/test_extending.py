"""docs/extending.md, done: a new puzzle family in one folder and one registry
line trains through the real loop and is scored by its own evaluator."""
import dataclasses
import importlib
import json
import os
import sys

import pytest

from experiments import loop
from recur import data
from recur.puzzles import registry

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


@pytest.fixture()
def reverse_family(monkeypatch):
  monkeypatch.syspath_prepend(FIXTURES)
  # Leave the registry as it was after the test.
  monkeypatch.setattr(registry, "_modules", dict(registry._modules))
  monkeypatch.setattr(registry, "_loaded", dict(registry._loaded))
  monkeypatch.setattr(registry, "_source_to_family", dict(registry._source_to_family))
  yield
  for name in [m for m in sys.modules if m.startswith("reverse_family")]:
    del sys.modules[name]


def test_a_new_family_trains_and_evaluates(reverse_family, tmp_path):
  # Given the toy family registered with one line, as the doc says.
  registry.register_family("reverse", "reverse_family")
  assert "reverse" in data.source_names()
  # When it trains a few steps through the real loop with a smoke config.
  config = importlib.import_module("experiments.configs.sudoku_trm").get_config("smoke")
  config.data = loop.ml_collections.ConfigDict(
      dict(name="reverse", n=4, num_train=32, num_test=8, eval_batch_size=8))
  config.update(steps=2, checkpoint_every=2, pictures=False)
  final = loop.run(config, str(tmp_path)).metrics
  # Then its own evaluator scored the test split beside the common metrics.
  assert final["eval/count"] == 8
  assert 0.0 <= final["eval/same_digits_rate"] <= 1.0
  assert 0.0 <= final["eval/token_accuracy"] <= 1.0
  rows = [json.loads(l) for l in open(tmp_path / "metrics.jsonl")]
  assert any("eval/same_digits_rate" in r for r in rows)
  # And the family decodes answers (what solve writes).
  family = registry.family_of(data.make_source("reverse", n=3))
  assert family.decode(None, [3, 2, 1]) == [2, 1, 0]


def test_registration_refuses_taken_names(reverse_family):
  registry.register_family("reverse", "reverse_family")
  with pytest.raises(ValueError, match="already registered"):
    registry.register_family("reverse", "reverse_family")
  family = registry.get_family("reverse")
  with pytest.raises(ValueError, match="already registered"):
    registry.register_family(dataclasses.replace(family, name="sudoku"))
  with pytest.raises(ValueError, match=r"\['reverse'\] already belong"):
    registry.register_family(dataclasses.replace(family, name="reverse2"))
  with pytest.raises(ValueError, match="unknown puzzle family 'nope'"):
    registry.get_family("nope")
