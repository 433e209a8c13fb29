"""What a finished run prints and draws: a results table and PNG pictures.

`final_report(run)` runs after every training run (`experiments.loop.Run`) on
process 0. It prints the results table (pass@1/2 for ARC, exact accuracy per
supervision step, early exit, the last training metrics) and writes into the
workdir:

* curves.png: training loss / exact accuracy from metrics.jsonl;
* accuracy_vs_steps.png: exact accuracy after each supervision step on the
  evaluation split, plus the picture sample's run for `pictures_steps`
  (default twice the trained steps);
* the puzzle family's pictures (`PuzzleFamily.draw`; none for families
  without one): examples_<family>.png, test puzzles with their prediction
  (and target), and refinement_<family>.png, one test puzzle's prediction
  after step 1, 2, ...

The picture sample is bounded whatever the dataset size: the first
`config.pictures_max_examples` test puzzles (default 8; version 0, the
un-augmented one, of each), one batch of that many rows, run for
`config.pictures_steps` segments (0: twice halt_max_steps). Nothing else of
the test split is read, so its time and memory are those of one such batch.

The final weights, model config and data source come from the run the loop
returns (nothing is restored or rebuilt). Pictures are skipped with
`config.pictures = False`, and the model-based ones on multi-host runs
(evaluating there is a collective the other processes do not join). The report
runs that one small jitted evaluation: seconds on a CPU for tiny models (the
paper model's full width costs more per row: lower `pictures_max_examples` or
`pictures_steps` there, or `--config.pictures=False`).
"""
from __future__ import annotations

import os
import sys
import time
from typing import Any

import jax
import numpy as np

__all__ = ["final_report", "results_table", "write_pictures", "sample_predictions"]

PICTURES_MAX_EXAMPLES = 8   # default test puzzles run and drawn for the pictures


def results_table(final: dict, train: dict | None = None) -> str:
  rows = []
  for k in ("eval/pass@1", "eval/pass@2", "eval/exact_accuracy", "eval/accuracy",
            "eval/valid_rate", "eval/early_exit_exact_accuracy",
            "eval/early_exit_mean_steps"):
    if k in final:
      rows.append(f"| {k[5:]:<32} | {final[k]:8.4f} |")
  steps = sorted((int(k.split("@")[1]), v) for k, v in final.items()
                 if k.startswith("eval/exact_accuracy@"))
  for s, v in steps:
    rows.append(f"| {'exact_accuracy after step ' + str(s):<32} | {v:8.4f} |")
  for k, v in (train or {}).items():
    rows.append(f"| {k:<32} | {v:8.4f} |")
  if not rows:
    return ""
  return (f"| {'metric':<32} | {'value':>8} |\n|{'-' * 34}|{'-' * 10}|\n" +
          "\n".join(rows))


def _train_summary(workdir: str) -> dict[str, float]:
  """First and last logged train exact accuracy (the demo's "it learns")."""
  from experiments.writers import read_metrics  # pylint: disable=g-import-not-at-top
  rows = [r for r in read_metrics(workdir) if "train/exact_accuracy" in r]
  if not rows:
    return {}
  k = max(1, len(rows) // 10)   # mean over the first / last tenth of the logs
  first = float(np.mean([r["train/exact_accuracy"] for r in rows[:k]]))
  last = float(np.mean([r["train/exact_accuracy"] for r in rows[-k:]]))
  return {"train exact_accuracy (first 10%)": first,
          "train exact_accuracy (last 10%)": last}


def final_report(run) -> None:
  """Prints the results table and writes the pictures of a finished run."""
  if jax.process_index() != 0:
    return
  config, workdir = run.config, run.workdir
  table = results_table(run.metrics, _train_summary(workdir))
  if table:
    print("\nResults (evaluation split):\n" + table, flush=True)
  if not config.get("pictures", True):
    return
  t0 = time.time()
  try:
    written = write_pictures(run)
  except Exception as e:  # pylint: disable=broad-except
    # Pictures must never turn a finished run into a failed one.
    print(f"warning: pictures not written: {type(e).__name__}: {e}",
          file=sys.stderr, flush=True)
    return
  if written:
    print(f"Pictures ({time.time() - t0:.1f}s): " +
          ", ".join(os.path.join(workdir, w) for w in written), flush=True)


def sample_predictions(run, num_steps: int | None = None,
                       rows: int | None = None) -> dict[str, Any]:
  """Runs the run's final weights on the first `rows` test puzzles (default
  `config.pictures_max_examples`; version 0 of each, in evaluation order) for
  `num_steps` segments, keeping every step's predictions. One batch: only
  those rows are read from the source and run."""
  from experiments import evaluation  # pylint: disable=g-import-not-at-top
  cfg, params, source, mesh = run.cfg, run.params, run.source, run.mesh
  if rows is None:
    rows = int(run.config.get("pictures_max_examples", PICTURES_MAX_EXAMPLES))
  if rows < 1:
    raise ValueError(f"config.pictures_max_examples must be >= 1, got {rows}")
  n_dev = mesh.devices.size
  bs = -(-rows // n_dev) * n_dev
  n = num_steps or cfg.halt_max_steps
  batches = evaluation.run_eval_batches(
      cfg, params, source, mesh, batch_size=bs, num_steps=n, max_batches=1,
      max_versions=1, keep_steps=True, prefetch=0)
  try:
    meta, out = next(batches)
  finally:
    batches.close()
  keep = np.asarray(meta["mask"], bool)
  keep &= np.cumsum(keep) <= rows     # device padding rows beyond the limit
  meta = {k: np.asarray(v)[keep] for k, v in meta.items()}
  out = {k: (np.asarray(v)[:, keep] if np.ndim(v) and np.shape(v)[0] == n
             and k.endswith("per_step") else np.asarray(v)[keep])
         for k, v in out.items()}
  return {"cfg": cfg, "source": source, "meta": meta, "out": out}


def write_pictures(run) -> list[str]:
  """Writes the PNGs into the run's workdir (a URL too); returns their names."""
  from experiments import paths  # pylint: disable=g-import-not-at-top
  with paths.local_dir(run.workdir) as out:
    return _write_pictures(run, out)


def _write_pictures(run, pic_dir: str) -> list[str]:
  """Draws the run's pictures into the local directory `pic_dir`."""
  from experiments.writers import read_metrics  # pylint: disable=g-import-not-at-top
  from recur import viz  # pylint: disable=g-import-not-at-top
  workdir, final = run.workdir, run.metrics
  written = []
  rows = read_metrics(workdir)
  if rows:
    viz.plot_training_curves(rows, os.path.join(pic_dir, "curves.png"),
                             title=workdir.rstrip("/").rsplit("/", 1)[-1])
    written.append("curves.png")
  curves = {}
  per_step = [v for _, v in sorted((int(k.split("@")[1]), v) for k, v in final.items()
                                   if k.startswith("eval/exact_accuracy@"))]
  if per_step:
    curves["eval split"] = per_step
  if jax.process_count() > 1:
    if curves:
      viz.plot_accuracy_vs_steps(curves, os.path.join(pic_dir, "accuracy_vs_steps.png"),
                                 trained_steps=len(per_step))
      written.append("accuracy_vs_steps.png")
    return written
  steps = int(run.config.get("pictures_steps", 0) or 0) or 2 * run.cfg.halt_max_steps
  rows = int(run.config.get("pictures_max_examples", PICTURES_MAX_EXAMPLES))
  # Said first: on a CPU with a large model this one batch can take minutes.
  print(f"Pictures: running {rows} test puzzles for {steps} steps "
        "(--config.pictures_max_examples, --config.pictures_steps; "
        "--config.pictures=False skips)", flush=True)
  s = sample_predictions(run, num_steps=steps, rows=rows)
  cfg, source, meta, out = s["cfg"], s["source"], s["meta"], s["out"]
  if len(meta["mask"]):
    curves[f"first {len(meta['mask'])} test puzzles (un-augmented, no voting)"] = \
        out["exact_per_step"].mean(axis=1).tolist()
  if curves:
    viz.plot_accuracy_vs_steps(curves, os.path.join(pic_dir, "accuracy_vs_steps.png"),
                               trained_steps=cfg.halt_max_steps)
    written.append("accuracy_vs_steps.png")
  if not len(meta["mask"]):
    return written
  from recur.puzzles import PredictionSample, family_of  # pylint: disable=g-import-not-at-top
  draw = family_of(source).draw
  if draw is not None:
    # pictures_steps may stop before the trained steps: draw the last one run.
    trained = min(cfg.halt_max_steps, out["preds_per_step"].shape[0])
    written += draw(source, PredictionSample(meta, out, trained), pic_dir)
  return written
