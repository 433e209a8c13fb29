"""tools/same_learning.py's recur half, for a few steps, without torch.

The reference half needs the torch venv and the reference checkout; here its
output (the initial weights in reference names) is stood in for by recur's own
init through `convert.to_reference`, so the data, recur and plot phases run as
the tool runs them and cannot rot.
"""
import copy
import json
import os
import shutil
import sys

import jax
import numpy as np

from recur import convert, models

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tools"))
import same_learning as sl  # pylint: disable=wrong-import-position


def _tiny_run():
  run = copy.deepcopy(sl.RUN)
  run.update(seeds=[0], steps=3, batch=8, eval_every=2)
  run["data"].update(num_train=16, num_test=10, num_aug=2)
  run["model"].update(hidden_size=16, puzzle_emb_ndim=16, H_cycles=1, L_cycles=1,
                      halt_max_steps=2, expansion=2)
  return run


def _stand_in_reference_init(run, out, seed):
  ref_cfg = dict(run["model"], batch_size=run["batch"])
  cfg = models.from_reference_config("trm", ref_cfg, compute_dtype="float32")
  params = jax.tree.map(np.asarray, cfg.init(jax.random.PRNGKey(seed)))
  sd = convert.to_reference(params, prefix="model.inner.")
  np.savez(os.path.join(out, f"init_seed{seed}.npz"),
           **{f"param/{k}": v for k, v in sd.items()})
  with open(os.path.join(out, f"init_seed{seed}.json"), "w") as f:
    json.dump({"model": "trm", "config": ref_cfg}, f)
  return params


def test_recur_half_runs_and_plots(tmp_path):
  out = str(tmp_path)
  run = _tiny_run()
  sl.make_data(run, out)
  loaded = sl._load_run(out)  # pylint: disable=protected-access
  assert loaded["steps"] == 3 and loaded["seeds"] == [0]
  with np.load(os.path.join(out, "batches_seed0.npz")) as z:
    assert z["inputs"].shape == (3, 8, 16) and z["labels"].shape == (3, 8, 16)
    assert z["puzzle_identifiers"].shape == (3, 8)
  held = sl._heldout(out)  # pylint: disable=protected-access
  assert held["inputs"].shape == (10, 16)
  assert not np.any(np.all(held["inputs"] == held["labels"], axis=1)), "no blanks?"

  _stand_in_reference_init(run, out, 0)
  sl.run_recur(loaded, out, 0)
  with np.load(os.path.join(out, "recur_seed0.npz")) as z:
    assert list(z["eval_steps"]) == [0, 2, 3]
    assert np.all((z["eval_exact"] >= 0) & (z["eval_exact"] <= 1))
    loss = z["train/lm_loss"]
    assert loss.shape == (3,) and np.all(np.isfinite(loss)) and np.all(loss > 0)
    # A fresh model on 6-token Sudoku: lm_loss near log(6) per token at step 1.
    assert 0.5 < loss[0] < 5.0

  shutil.copy(os.path.join(out, "recur_seed0.npz"),
              os.path.join(out, "reference_seed0.npz"))
  png = sl.plot(loaded, out, os.path.join(out, "img", "same.png"), smooth=2)
  assert os.path.getsize(png) > 1000
  md = sl.table(loaded, out)
  assert "| reference |" in md and "| recur |" in md


def test_exact_ignores_unlabelled_tokens():
  labels = np.array([[2, 3, -100], [2, 3, 4]])
  preds = np.array([[2, 3, 0], [2, 3, 5]])
  assert list(sl.exact(preds, labels)) == [True, False]
