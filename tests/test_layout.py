"""The layout checks of the restructuring (issue 13) that read the source tree.

Model-kind sniffing and the segment call sites are checked in test_models.py
(`test_no_model_kind_sniffing_outside_the_registry`,
`test_segment_is_called_from_at_most_three_places`); here: no puzzle-family
sniffing outside the registry and the families' own folders, and solve stays a
thin command line over recur.inference."""
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAMILY_NAMES = r"(arc|sudoku|maze|algorithmic|sort|parity|prefix_sum|state_tracking)"

# What family sniffing looks like: guessing a source's family from its name,
# its class or helpers written for that purpose, instead of asking the
# registry (`recur.puzzles.registry.family_of`, `get_family`).
_SNIFF = [
    (re.compile(rf"[\"']{FAMILY_NAMES}[\"']\s+(not\s+)?in\b"), "family name substring test"),
    (re.compile(rf"[!=]=\s*[\"']{FAMILY_NAMES}[\"']"), "== family name"),
    (re.compile(rf"[\"']{FAMILY_NAMES}[\"']\s*[!=]="), "family name =="),
    (re.compile(rf"\bin\s*[(\[{{]\s*[\"']{FAMILY_NAMES}[\"']"), "in (family names)"),
    (re.compile(rf"startswith\(\s*[\"']{FAMILY_NAMES}"), "name prefix test"),
    (re.compile(r"\binfo\.name\s*[!=]="), "source name comparison"),
    (re.compile(r"isinstance\([^)]*\b(Arc|Sudoku|Maze|Algorithmic)\w*"), "isinstance of a family class"),
    (re.compile(r"\b(grid_kind|_detect_kind|_is_arc|_kind)\b"), "a family-guessing helper"),
]


def _allowed(rel: str) -> bool:
  """The registry and each family's own folder may name their families."""
  parts = rel.split(os.sep)
  if rel == os.path.join("recur", "puzzles", "registry.py"):
    return True
  return parts[:2] == ["recur", "puzzles"] and len(parts) > 3   # recur/puzzles/<family>/


def _python_files(*tops):
  for top in tops:
    for dirpath, _, files in os.walk(os.path.join(ROOT, top)):
      for f in sorted(files):
        if f.endswith(".py"):
          path = os.path.join(dirpath, f)
          yield path, os.path.relpath(path, ROOT)


def test_the_sniffing_patterns_catch_sniffing():
  # The patterns below would have caught what the restructuring removed.
  for line in ('if "arc" in source.info.name:', 'kind = _detect_kind(path, data)',
               'if family == "sudoku":', 'if isinstance(src, ArcSource):',
               'if _is_arc(source):', 'k = grid_kind(source)',
               'if name in ("sudoku", "maze"):', 'elif info.name == "x":'):
    assert any(p.search(line) for p, _ in _SNIFF), line
  # And a registry question is not sniffing.
  for line in ('family = registry.family_of(source)',
               'if family.solve_tasks is not None:',
               'registry.get_family(FLAGS.kind)'):
    assert not any(p.search(line) for p, _ in _SNIFF), line


def test_no_family_sniffing_outside_the_registry():
  found = []
  for path, rel in _python_files("recur", "experiments"):
    if _allowed(rel):
      continue
    with open(path, encoding="utf-8") as fh:
      for i, line in enumerate(fh, 1):
        code = line.split("#", 1)[0]
        for pattern, what in _SNIFF:
          if pattern.search(code):
            found.append(f"{rel}:{i}: {what}: {line.strip()}")
  assert not found, ("puzzle-family sniffing outside recur/puzzles (ask "
                     "recur.puzzles.registry):\n" + "\n".join(found))


def test_solve_is_a_thin_command_line():
  # experiments/solve.py: flags, loading, dispatch, writing; the test-time
  # compute lives in recur/inference.py (issue 13: at most ~300 lines).
  path = os.path.join(ROOT, "experiments", "solve.py")
  with open(path, encoding="utf-8") as f:
    lines = f.read().splitlines()
  assert len(lines) <= 300, f"experiments/solve.py has {len(lines)} lines (> 300)"
  text = "\n".join(lines)
  for moved in ("def fit_embeddings", "class _Choices", "class _Stats",
                "def _run_knobs", "TrainState("):
    assert moved not in text, f"{moved} belongs in recur/inference.py"


def test_inference_is_a_library_module():
  # No flags, no printing in recur/inference.py (the CLI prints).
  with open(os.path.join(ROOT, "recur", "inference.py"), encoding="utf-8") as f:
    text = f.read()
  assert "absl" not in text and not re.search(r"\bprint\(", text)
