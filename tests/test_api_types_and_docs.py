"""The public API is documented and typed: every name a `recur` module exports
(its __all__, and the package's own exports) has a docstring of its own, the
package ships py.typed, and mypy passes on recur/ (config in setup.cfg)."""
import importlib
import inspect
import os
import pkgutil
import subprocess
import sys
import tempfile

import recur

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _public_objects():
  names = ["recur"] + [m.name for m in pkgutil.walk_packages(recur.__path__, "recur.")]
  for name in names:
    mod = importlib.import_module(name)
    for attr in getattr(mod, "__all__", []):
      obj = getattr(mod, attr)
      if inspect.isfunction(obj) or inspect.isclass(obj):
        yield f"{name}.{attr}", attr, obj


def _own_doc(attr, obj):
  doc = (obj.__doc__ or "").strip()
  # NamedTuples and dataclasses without a docstring get "Name(field, ...)".
  return bool(doc) and not doc.startswith(f"{attr}(") and not (
      inspect.isclass(obj) and doc == (obj.__mro__[1].__doc__ or "").strip())


def test_every_public_name_has_a_docstring():
  missing = sorted({full for full, attr, obj in _public_objects()
                    if not _own_doc(attr, obj)})
  assert not missing, f"public names without a docstring: {missing}"


def test_py_typed_is_shipped():
  assert os.path.exists(os.path.join(ROOT, "recur", "py.typed"))
  with open(os.path.join(ROOT, "setup.cfg")) as f:
    cfg = f.read()
  assert "[options.package_data]\nrecur = py.typed" in cfg


def test_mypy_passes_on_recur():
  cache = os.path.join(tempfile.gettempdir(), "recur-tests-mypy-cache")
  proc = subprocess.run([sys.executable, "-m", "mypy", "recur", f"--cache-dir={cache}"],
                        cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
