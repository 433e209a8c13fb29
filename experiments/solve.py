"""Solve puzzles with a trained model: the command line (flags, loading the
model, dispatch by the puzzle registry, outputs) of `recur.inference`.

    python -m experiments.solve --workdir=DIR --input=TASK.json|DIR --output=preds.json
    python -m experiments.solve --checkpoint=PATH.npz|PATH.pt|CKPT_DIR \
        [--model_config=JSON] --input=PUZZLES.csv --output=preds.json

Model: `--workdir` (latest checkpoint of a run), or `--checkpoint`: a checkpoint
directory of ours (`WORKDIR/checkpoints[/STEP]`, `WORKDIR/best`: the best
checkpoint by the run's `best_metric`), or a reference PyTorch
state dict (`.pt`, needs torch) or its `.npz` export (`experiments.export`).
For a state dict the model config comes from `--model_config` (a JSON string or
file: ours `{"model": "trm", ...}`, a workdir's `model.json`, or the
reference's config `{"name": "...trm@...", ...}`), else from the `PATH.json`
that `experiments.export` writes beside the weights.

ARC (`TASK.json`, a directory of them, or a Kaggle `*_challenges.json`): each
task gets new puzzle-embedding rows (one per augmented version), fitted on the
task's demonstration pairs under `--versions` augmentations (translated like
training) for `--fit_steps` sparse sign-SGD steps with the dense weights frozen,
then optionally `--finetune_all_steps` steps of everything. Every test input is
then predicted under every version; votes are pooled as in evaluation
(`recur.puzzles.arc.evaluate.ArcEvaluator`). `--output` gets the ARC Prize submission
`{task_id: [{"attempt_1": grid, "attempt_2": grid}, ...]}` (validated);
`<output>_details.json` the per-test-input confidence (mean sigmoid(q_halt) of
the winning candidate), whether each attempt is right when the task file has
test outputs, the test-time compute table and the fitting losses
(`recur.puzzles.arc.solve`).

Sudoku / Maze (a CSV in the public `source,q,a,rating` layout; `a` may be
empty): straight inference (`recur.inference.solve_puzzle_file`); `--output`
gets the filled grids with a confidence per puzzle, exact accuracy when answers
are given, and the knob table. Invalid or unsolvable puzzles (clashing clues,
no start/goal) and invalid ARC tasks are reported (`rejected` / `skipped` in the
output) and left out; `--noskip_bad` makes the first one an error instead.

Test-time compute knobs (each reported per setting when labels exist):
  --steps=N           run N supervision steps (default: as trained); accuracy
                      after each step 1..N.
  --early_exit        a row stops at the first step with q_halt > 0: accuracy
                      and the steps saved.
  --trajectories=K --noise=S   K latent trajectories per puzzle: trajectory 0
                      starts from the usual H_init/L_init, the others from them
                      plus Gaussian noise of scale S (per position); per puzzle
                      the trajectory with the highest final sigmoid(q_halt)
                      wins (arXiv 2605.19943).
  --versions=V        ARC: augmented versions voted over (pass@1/2 reported for
                      1, 2, 4, ..., V versions).
"""
from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np

from recur import convert, inference, models
from recur.checkpoint import restore_for_inference
from experiments import paths  # every path may be a URL (gs://...)
from recur.puzzles import registry

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command-line flags (defined only when run as a program, so the
  module imports alongside other absl programs)."""
  flags.DEFINE_string("workdir", None, "Run directory (latest checkpoint is used).")
  flags.DEFINE_string("checkpoint", None, "Checkpoint dir of ours, or a .pt/.npz "
                      "reference state dict.")
  flags.DEFINE_string("model_config", None, "JSON string or file: model config for a "
                      ".pt/.npz state dict.")
  flags.DEFINE_string("input", None, "ARC task JSON / directory, or puzzles CSV.")
  flags.DEFINE_string("output", None, "Where to write the predictions (JSON).")
  flags.DEFINE_string("kind", "auto", "Puzzle family (recur.puzzles registry, e.g. "
                      "arc, sudoku, maze), or auto: the run's, else the family "
                      "claiming the input file.")
  flags.DEFINE_list("box", None, "Sudoku box rows,cols (default from the run or "
                    "the board size).")
  flags.DEFINE_integer("steps", 0, "Supervision steps at test time (0: as trained).")
  flags.DEFINE_bool("early_exit", False, "Stop a row at the first q_halt > 0.")
  flags.DEFINE_integer("trajectories", 1, "Latent trajectories per puzzle.")
  flags.DEFINE_float("noise", 0.1, "Noise scale of trajectories 1..K-1.")
  flags.DEFINE_integer("versions", 8, "ARC: augmented versions to fit and vote over.")
  flags.DEFINE_integer("fit_steps", 100, "ARC: embedding-only fitting steps.")
  flags.DEFINE_float("fit_lr", 1e-2, "ARC: sign-SGD lr of the new embedding rows.")
  flags.DEFINE_integer("fit_batch_size", 32, "ARC: rows per fitting step.")
  flags.DEFINE_integer("finetune_all_steps", 0, "ARC: then steps of all weights.")
  flags.DEFINE_float("finetune_lr", 1e-4, "ARC: lr of the dense weights when "
                     "finetuning all.")
  flags.DEFINE_integer("batch_size", 128, "Rows per inference batch.")
  flags.DEFINE_integer("seed", 0, "Seed of augmentations, fitting and noise.")
  flags.DEFINE_bool("skip_bad", True, "Report and leave out invalid puzzles / "
                    "ARC tasks (else the first one is an error).")


__all__ = ["load_model", "model_config_from_json", "family_for_input", "solve_grid",
           "knob_table", "main"]


def _read_json_arg(text: str) -> Any:
  text = text.strip()
  if text.startswith("{"):
    return json.loads(text)
  return json.loads(paths.read_text(text))


def model_config_from_json(d: dict, params: dict | None = None):
  """Our config from: {"model": {ours...}, ...} (model.json / export sidecar),
  {"name": "trm", ...ours}, {"model": "hrm", "config": {reference}} or the
  reference's own {"name": "...@...", ...} (or {"arch": {...}}). Files written
  before the kind was spelled `name` (`"model": "trm"`) still read."""
  if isinstance(d.get("model"), dict):
    return models.config_from_dict(d["model"], where="model config field 'model'")
  flat = models.canonical_fields(d)
  if "config" not in flat and flat.get("name") in models.MODEL_CONFIGS:
    return models.config_from_dict(flat)
  if "arch" in d:
    d = d["arch"]
  if isinstance(d.get("model"), str):
    name, ref = d["model"], dict(d["config"])
  else:
    name, ref = models.reference_model_name(d.get("name", "")), dict(d)
  if params is not None:   # the data-derived fields, if the config lacks them
    ref.setdefault("vocab_size", int(np.shape(params["net"]["embed_tokens"])[0]))
    ref.setdefault("num_puzzle_identifiers", int(np.shape(params["puzzle_emb"])[0]))
    if "embed_pos" in params["net"] and "seq_len" not in ref:
      raise ValueError("model config needs seq_len")
  if "seq_len" not in ref:
    raise ValueError("model config needs seq_len (e.g. 900 for ARC, 81 for Sudoku)")
  return models.from_reference_config(name, ref, ref.get("forward_dtype", "float32"))


def _sidecar(path: str) -> str:
  return os.path.splitext(path)[0] + ".json"


def load_model(workdir: str | None = None, checkpoint: str | None = None,
               model_config: str | None = None):
  """Returns (cfg, params, meta); meta has "data" (the run's data config, if
  known) and "source" (what was loaded)."""
  if bool(workdir) == bool(checkpoint):
    raise app.UsageError("give exactly one of --workdir and --checkpoint")
  if checkpoint and checkpoint.endswith((".npz", ".pt", ".pth")):
    local = paths.local_copy(checkpoint)  # gs://... is downloaded once
    if checkpoint.endswith(".npz"):
      with np.load(local) as z:
        state = {k: z[k] for k in z.files}
    else:
      state = convert.load_torch_state_dict(local)
    params = convert.from_reference(state)
    if not model_config and not paths.exists(_sidecar(checkpoint)):
      raise app.UsageError(f"{checkpoint}: a state dict needs --model_config "
                           f"(or {_sidecar(checkpoint)})")
    side = _read_json_arg(model_config or _sidecar(checkpoint))
    cfg = model_config_from_json(side, params)
    params = jax.tree.map(jnp.asarray, params)
    return cfg, params, {"data": side.get("data") if isinstance(side, dict) else None,
                         "source": checkpoint}
  step = None
  best = False   # WORKDIR/best[/STEP]: the run's best checkpoint (experiments.best)
  if checkpoint:
    path = paths.normalize(checkpoint.rstrip("/"))  # a URL stays one
    base = os.path.basename(path)
    parent = os.path.basename(os.path.dirname(path))
    if base.isdigit() and parent in ("checkpoints", "best"):
      workdir, step, best = os.path.dirname(os.path.dirname(path)), int(base), parent == "best"
    elif base in ("checkpoints", "best"):
      workdir, best = os.path.dirname(path), base == "best"
    else:
      workdir = path
  cfg, params, config, step = restore_for_inference(workdir, step=step, best=best)
  # One device, plain placement: jitted outputs then match their inputs and
  # the fitting loop compiles once.
  params = jax.device_put(params, jax.devices()[0])
  return cfg, params, {"data": config["data"], "source": f"{workdir} step {step}"}


def family_for_input(path: str, data: dict | None):
  """The puzzle family of the run's source, else the family claiming the file
  (both answered by the registry)."""
  name = (data or {}).get("name")
  if name in registry.source_names():
    return registry.family_of_source_name(name)
  for family in map(registry.get_family, registry.family_names()):
    if family.claims_file is not None and family.claims_file(path):
      return family
  raise app.UsageError(f"{path}: no puzzle family reads this file; pass --kind")


def solve_grid(cfg, params, path: str, kind: str, *, box=None, skip_bad=True,
               **knobs) -> dict:
  """`recur.inference.solve_puzzle_file` for the family named `kind` (reader
  options: `box`, Sudoku's box; `skip_bad`, leave out invalid puzzles)."""
  return inference.solve_puzzle_file(cfg, params, path, registry.get_family(kind),
                                     options={"box": box, "skip_bad": skip_bad}, **knobs)


def knob_table(kind: str, metrics: dict) -> str:
  """The test-time compute table (markdown) from the output's metrics: pass@K
  for families solved as tasks (`solve_tasks`), else exact accuracy."""
  tasks = registry.get_family(kind).solve_tasks is not None
  lines = ["| setting | " + ("pass@1 | pass@2 |" if tasks else "exact acc |"),
           "|---|" + ("---|---|" if tasks else "---|")]

  def row(name, v):
    fmt = lambda x: "-" if x is None else f"{x:.4f}"  # pylint: disable=unnecessary-lambda-assignment
    if tasks:
      v = v or {}
      lines.append(f"| {name} | {fmt(v.get('pass@1'))} | {fmt(v.get('pass@2'))} |")
    else:
      lines.append(f"| {name} | {fmt(v)} |")

  trained = metrics.get("trained_steps")
  per_step = metrics.get("per_step") or metrics.get("exact_accuracy_per_step") or {}
  for s, v in per_step.items():
    row(f"after step {s}" + (" (trained)" if trained and int(s) == trained else ""), v)
  tr = metrics.get("trajectories")
  if tasks:
    for v, r in (metrics.get("per_versions") or {}).items():
      row(f"{v} version(s) voting", r)
    row(f"early exit (mean steps {metrics.get('early_exit_mean_steps', 0):.2f})",
        metrics.get("early_exit"))
    if tr:
      row(f"trajectories k={tr['k']}: clean", tr["clean"])
      row(f"trajectories k={tr['k']}: best q_halt", tr["best_q"])
    row("final (as output)", metrics.get("final"))
  else:
    ee = metrics.get("early_exit", {})
    row(f"early exit (mean steps {ee.get('mean_steps', 0):.2f}, saved "
        f"{100 * ee.get('steps_saved', 0):.0f}%)", ee.get("exact_accuracy"))
    if tr:
      row(f"trajectories k={tr['k']}: clean", tr["clean_exact_accuracy"])
      row(f"trajectories k={tr['k']}: best q_halt", tr["best_q_exact_accuracy"])
      row(f"trajectories k={tr['k']}: oracle (any right)", tr["oracle_exact_accuracy"])
    row("final (as output)", metrics.get("exact_accuracy"))
  return "\n".join(lines)


def _print_tasks(details: dict) -> None:
  for tid, entries in details["tasks"].items():
    for i, e in enumerate(entries):
      right = ""
      if "attempt_1_correct" in e:
        right = (f", attempt_1 {'right' if e['attempt_1_correct'] else 'wrong'}, "
                 f"attempt_2 {'right' if e['attempt_2_correct'] else 'wrong'}")
      print(f"  {tid}[{i}]: confidence {e['confidence']:.3f}{right}")


def main(argv) -> None:
  del argv
  if not FLAGS.input or not FLAGS.output:
    raise app.UsageError("--input and --output are required")
  logging.getLogger("absl").setLevel(logging.WARNING)
  cfg, params, meta = load_model(FLAGS.workdir, FLAGS.checkpoint, FLAGS.model_config)
  data = meta.get("data") or {}
  input_path = paths.local_copy(FLAGS.input)  # the outputs may be URLs too
  family = (registry.get_family(FLAGS.kind) if FLAGS.kind != "auto"
            else family_for_input(input_path, data))
  print(f"model: {cfg.name} from {meta['source']} ({family.name})", flush=True)
  t0 = time.time()
  knobs = dict(steps=FLAGS.steps, early_exit=FLAGS.early_exit,
               trajectories=FLAGS.trajectories, noise=FLAGS.noise,
               batch_size=FLAGS.batch_size, seed=FLAGS.seed)
  if family.solve_tasks is not None:
    sub, details = family.solve_tasks(
        cfg, params, input_path, versions=FLAGS.versions, fit_steps=FLAGS.fit_steps,
        fit_lr=FLAGS.fit_lr, fit_batch_size=FLAGS.fit_batch_size,
        finetune_all_steps=FLAGS.finetune_all_steps, finetune_lr=FLAGS.finetune_lr,
        log=lambda line: print(line, flush=True), skip_bad=FLAGS.skip_bad, **knobs)
    paths.write_json_atomic(FLAGS.output, sub)
    side = os.path.splitext(FLAGS.output)[0] + "_details.json"
    paths.write_json_atomic(side, details)
    print(f"wrote {FLAGS.output} ({len(sub)} task(s), {family.name} submission "
          f"format) and {side} in {time.time() - t0:.1f}s", flush=True)
    _print_tasks(details)
    if "final" in details.get("metrics", {}):
      print(knob_table(family.name, details["metrics"]), flush=True)
    return
  box = tuple(int(b) for b in FLAGS.box) if FLAGS.box else data.get("box")
  res = inference.solve_puzzle_file(cfg, params, input_path, family, options={
      "box": box, "skip_bad": FLAGS.skip_bad}, **knobs)
  paths.write_json_atomic(FLAGS.output, res)
  bad = f", {len(res['rejected'])} invalid left out" if res.get("rejected") else ""
  print(f"wrote {FLAGS.output} ({res['count']} puzzles{bad}) in "
        f"{time.time() - t0:.1f}s", flush=True)
  if "metrics" in res:
    print(knob_table(family.name, res["metrics"]), flush=True)


if __name__ == "__main__":
  define_flags()
  from experiments import cli  # pylint: disable=g-import-not-at-top
  cli.run(main)
