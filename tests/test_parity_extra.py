"""Parity against extra reference fixtures (tests/fixtures/extra).

Given a fixture made by tools/make_reference_fixture.py from the public PyTorch
reference (configurations beyond the three in shared/fixtures/reference), when
recur.parity replays it, then every gated quantity is within tolerance and every
discrete one (halting, steps, predictions) matches exactly.
"""
from __future__ import annotations

import glob
import os

import pytest

from recur import parity

FIXTURE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "extra")
FIXTURES = sorted(glob.glob(os.path.join(FIXTURE_DIR, "*.npz")))


def test_fixtures_present():
  assert FIXTURES, f"no fixtures in {FIXTURE_DIR}"
  for path in FIXTURES:
    assert os.path.exists(os.path.splitext(path)[0] + ".json"), path


@pytest.mark.parametrize("npz_path", FIXTURES,
                         ids=[os.path.splitext(os.path.basename(p))[0] for p in FIXTURES])
def test_parity(npz_path):
  report = parity.run_parity(npz_path)
  assert report.ok, report.format()
