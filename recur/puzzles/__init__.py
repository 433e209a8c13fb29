"""Puzzle families and their registry.

Each family is one folder (arc/, sudoku/, maze/, algorithmic/) holding its
sources, augmentation, reading, scoring, decoding and drawing, described by a
`PuzzleFamily` (`recur.puzzles.family`); `recur.puzzles.registry` maps names to
families. docs/extending.md shows how to add one.
"""
from __future__ import annotations

from recur.puzzles.family import (Evaluator, PredictionSample, PreparedHooks,
                                  PuzzleFamily, PuzzleFile)
from recur.puzzles.registry import (family_names, family_of, get_family,
                                    register_family, source_names)

__all__ = ["Evaluator", "PredictionSample", "PreparedHooks", "PuzzleFamily",
           "PuzzleFile", "family_names", "family_of", "get_family",
           "register_family", "source_names"]
