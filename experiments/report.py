"""What a finished run prints and draws: a results table and PNG pictures.

`final_report(config, workdir, final)` runs after every training run on
process 0. It prints the results table (pass@1/2 for ARC, exact accuracy per
supervision step, early exit, the last training metrics) and writes into the
workdir:

* curves.png: training loss / exact accuracy from metrics.jsonl;
* accuracy_vs_steps.png: exact accuracy after each supervision step on the
  evaluation split, plus a sample of it run for twice the trained steps;
* examples_<kind>.png: test puzzles with their prediction (and target);
* refinement_<kind>.png: one test puzzle's prediction after step 1, 2, ...

The final weights come from the latest checkpoint (`loop.restore_params`), so
the training loop needs no hook. Pictures are skipped with `config.pictures =
False`, and the model-based ones on multi-host runs (restoring there is a
collective). The report runs one small jitted evaluation: a few seconds.
"""
from __future__ import annotations

import functools
import os
import sys
import time
from typing import Any

import jax
import numpy as np

__all__ = ["final_report", "results_table", "write_pictures", "sample_predictions"]

_SAMPLE_ROWS = 64        # rows of the test split run for the pictures
_EXAMPLES = 4            # puzzles per examples picture


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


def final_report(config, workdir: str, final: dict) -> None:
  if jax.process_index() != 0:
    return
  table = results_table(final, _train_summary(workdir))
  if table:
    print("\nResults (evaluation split):\n" + table, flush=True)
  if not config.get("pictures", True):
    return
  t0 = time.time()
  try:
    written = write_pictures(config, workdir, final)
  except Exception as e:  # pylint: disable=broad-except
    # Pictures must never turn a finished run into a failed one.
    print(f"warning: pictures not written: {type(e).__name__}: {e}",
          file=sys.stderr, flush=True)
    return
  if written:
    print(f"Pictures ({time.time() - t0:.1f}s): " +
          ", ".join(os.path.join(workdir, w) for w in written), flush=True)


def sample_predictions(config, workdir: str, num_steps: int | None = None,
                       rows: int = _SAMPLE_ROWS) -> dict[str, Any]:
  """Runs the latest checkpoint on the first `rows` test examples (all their
  augmented versions, in evaluation order) for `num_steps` segments, keeping
  every step's predictions."""
  from experiments import evaluation, loop  # pylint: disable=g-import-not-at-top
  from recur import sharding  # pylint: disable=g-import-not-at-top
  cfg, params, _, _ = loop.restore_params(workdir, config)
  source = loop.build_source(config)
  mesh = sharding.make_mesh()
  n_dev = mesh.devices.size
  bs = -(-rows // n_dev) * n_dev
  n = num_steps or cfg.halt_max_steps
  meta, out = next(iter(evaluation.run_eval_batches(
      cfg, params, source, mesh, batch_size=bs, num_steps=n, max_batches=1,
      keep_steps=True)))
  keep = np.asarray(meta["mask"], bool)
  meta = {k: np.asarray(v)[keep] for k, v in meta.items()}
  out = {k: (np.asarray(v)[:, keep] if np.ndim(v) and np.shape(v)[0] == n
             and k.endswith("per_step") else np.asarray(v)[keep])
         for k, v in out.items()}
  return {"cfg": cfg, "source": source, "meta": meta, "out": out}


def _kind(source) -> str:
  from experiments.evaluation import grid_kind  # pylint: disable=g-import-not-at-top
  return "arc" if "arc" in source.info.name.lower() else grid_kind(source)


def write_pictures(config, workdir: str, final: dict) -> list[str]:
  """Writes the PNGs into `workdir` (a URL too); returns their file names."""
  from experiments import paths  # pylint: disable=g-import-not-at-top
  with paths.local_dir(workdir) as out:
    return _write_pictures(config, paths.normalize(workdir), final, out)


def _write_pictures(config, workdir: str, final: dict, pic_dir: str) -> list[str]:
  """Reads the run in `workdir`, draws into the local directory `pic_dir`."""
  from experiments import paths  # pylint: disable=g-import-not-at-top
  from experiments.writers import read_metrics  # pylint: disable=g-import-not-at-top
  from recur import viz  # pylint: disable=g-import-not-at-top
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
  trained = None
  try:
    import json  # pylint: disable=g-import-not-at-top
    trained = json.loads(paths.read_text(paths.join(workdir, "model.json")))[
        "model"]["halt_max_steps"]
  except (OSError, KeyError, ValueError):
    pass
  s = sample_predictions(config, workdir,
                         num_steps=2 * trained if trained else None)
  cfg, source, meta, out = s["cfg"], s["source"], s["meta"], s["out"]
  if len(meta["mask"]):
    curves[f"first {len(meta['mask'])} test rows (per row, no voting)"] = \
        out["exact_per_step"].mean(axis=1).tolist()
  if curves:
    viz.plot_accuracy_vs_steps(curves, os.path.join(pic_dir, "accuracy_vs_steps.png"),
                               trained_steps=cfg.halt_max_steps)
    written.append("accuracy_vs_steps.png")
  if not len(meta["mask"]):
    return written
  kind = _kind(source)
  written += _puzzle_pictures(kind, source, meta, out, cfg, pic_dir)
  return written


def _arc_rows(source, meta, preds):
  from recur.data import arc_augment as aa  # pylint: disable=g-import-not-at-top
  rows = []
  for r in range(len(preds)):
    g, v, i = int(meta["group"][r]), int(meta["version"][r]), int(meta["index"][r])
    aug = source.augmentation("test", g, v)
    pair = source.pairs("test", g)[i]
    rows.append({"input": pair.input,
                 "prediction": aa.inverse_augment_grid(aa.crop(preds[r], source.canvas), aug),
                 "target": pair.output,
                 "title": f"{source.task_id('test', g)}[{i}]"})
  return rows


def _puzzle_pictures(kind, source, meta, out, cfg, workdir) -> list[str]:
  # (`workdir` here is the local directory the PNGs are drawn into.)
  from recur import viz  # pylint: disable=g-import-not-at-top
  preds = out["preds_per_step"]                     # [T, B, seq]
  trained = cfg.halt_max_steps
  final = preds[trained - 1]                        # what evaluation reports
  exact = out["exact_per_step"]                     # [T, B]
  # Examples: right ones first (if any), then wrong ones; one row per puzzle
  # (ARC rows repeat a test input under several augmented versions).
  order = np.argsort(~exact[trained - 1], kind="stable")
  seen, picked = set(), []
  for r in order:
    key = (int(meta["group"][r]), int(meta["index"][r]))
    if key not in seen:
      seen.add(key)
      picked.append(r)
  order = np.asarray(picked[:_EXAMPLES])
  # Refinement: a row whose answer changes across steps and ends right if
  # possible, else the first row.
  changes = (preds[1:] != preds[:-1]).any(-1).sum(0)
  score = exact[trained - 1] * 100 + changes
  pick = int(np.argmax(score))
  q = out["q_halt_per_step"][:, pick]
  names = [f"examples_{kind}.png", f"refinement_{kind}.png"]
  if kind == "arc":
    from recur.data import arc_augment as aa  # pylint: disable=g-import-not-at-top
    rows = _arc_rows(source, {k: v[order] for k, v in meta.items()}, final[order])
    viz.plot_arc_examples(rows, os.path.join(workdir, names[0]),
                          title=f"ARC evaluation tasks after {trained} steps")
    sub = {k: v[pick:pick + 1] for k, v in meta.items()}
    steps = [_arc_rows(source, sub, p[pick:pick + 1])[0] for p in preds]
    target = steps[0]["target"]
    viz.plot_refinement(
        lambda ax, g, t: viz.draw_arc(ax, g, t), [r["prediction"] for r in steps], q,
        os.path.join(workdir, names[1]),
        correct=[aa.grid_key(r["prediction"]) == aa.grid_key(target) for r in steps],
        first={"input": (viz.draw_arc, steps[0]["input"]),
               "target": (viz.draw_arc, target)},
        title=f"{steps[0]['title']}: prediction per supervision step "
              f"(trained with {trained})")
    return names
  side = int(round(np.sqrt(preds.shape[-1])))
  grid = lambda x: np.asarray(x).reshape(side, side)
  if kind == "sudoku":
    from recur.data.sudoku import decode_sudoku  # pylint: disable=g-import-not-at-top
    box = source.box
    conv = lambda x: decode_sudoku(grid(x))
    draw = functools.partial(viz.draw_sudoku, box=box)
    draw_step = lambda ax, p, t: draw(ax, conv(meta["inputs"][pick]), p,
                                      conv(meta["labels"][pick]), title=t)
    first = {"puzzle": (lambda ax, g, t: draw(ax, g, g, title=t),
                        conv(meta["inputs"][pick]))}
  elif kind == "maze":
    box = (1, 1)
    conv = grid
    draw_step = lambda ax, p, t: viz.draw_maze(ax, grid(meta["inputs"][pick]), p,
                                               grid(meta["labels"][pick]), t)
    first = {"maze": (lambda ax, g, t: viz.draw_maze(ax, g, g, None, t),
                      grid(meta["inputs"][pick]))}
  else:
    return []
  viz.plot_grid_puzzles(kind, [conv(meta["inputs"][r]) for r in order],
                        [conv(final[r]) for r in order], os.path.join(workdir, names[0]),
                        labels=[conv(meta["labels"][r]) for r in order], box=box,
                        titles=[f"#{int(meta['group'][r])}" for r in order],
                        title=f"test puzzles after {trained} steps")
  viz.plot_refinement(draw_step, [conv(p[pick]) for p in preds], q,
                      os.path.join(workdir, names[1]),
                      correct=exact[:, pick].tolist(), first=first,
                      title=f"puzzle #{int(meta['group'][pick])}: prediction per "
                            f"supervision step (trained with {trained})")
  return names
