"""docs/quickstart.ipynb runs top to bottom (nbclient) and is stored clean."""
import os
import time

import nbformat
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, "docs", "quickstart.ipynb")


def test_notebook_is_stored_without_outputs():
  nb = nbformat.read(NOTEBOOK, as_version=4)
  code = [c for c in nb.cells if c.cell_type == "code"]
  assert code and all(not c.outputs and c.execution_count is None for c in code)


def test_quickstart_notebook_runs():
  nbclient = pytest.importorskip("nbclient")
  nb = nbformat.read(NOTEBOOK, as_version=4)
  start = time.time()
  # Generous per-cell limit for a loaded test machine; alone it runs in well under a minute.
  nbclient.NotebookClient(nb, timeout=240, kernel_name="python3",
                          resources={"metadata": {"path": ROOT}}).execute()
  text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                 for o in c.outputs)
  # It trained, showed each segment, solved a new puzzle and tried more steps.
  assert "step 300: loss" in text
  assert "segment 4: q_halt" in text
  assert "matches the unique solution:" in text
  assert "16 segments:" in text
  # And it learned: most held-out grids solved after the trained segments, and
  # the new puzzle solved (the run reaches 1.0 on the 64 test grids).
  solved = text.split("solved per segment:")[1].split("]")[0].strip(" [\n").split()
  assert float(solved[-1]) >= 0.9, solved
  assert "matches the unique solution: True" in text
  print(f"notebook ran in {time.time() - start:.1f}s")
