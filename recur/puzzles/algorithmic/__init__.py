"""The algorithmic tasks of the depth-versus-recursion experiments.

  source.py    SortSource, ParitySource, PrefixSumSource, StateTrackingSource

Their answer is the label sequence itself, so they are scored by token and
exact accuracy (`recur.puzzles.scoring.TokenEvaluator`) and decode to the list
of label tokens; they have no pictures.
"""
from __future__ import annotations

from recur.puzzles.family import PuzzleFamily
from recur.puzzles.scoring import TokenEvaluator, TOKENS_FAMILY
from recur.puzzles.algorithmic.source import (ParitySource, PrefixSumSource,
                                              SortSource, StateTrackingSource)

FAMILY = PuzzleFamily(
    name="algorithmic",
    sources={"sort": SortSource, "parity": ParitySource,
             "prefix_sum": PrefixSumSource, "state_tracking": StateTrackingSource},
    evaluator=lambda source, split: TokenEvaluator(),
    decode=TOKENS_FAMILY.decode,
    source_classes=("SortSource", "ParitySource", "PrefixSumSource",
                    "StateTrackingSource"))
