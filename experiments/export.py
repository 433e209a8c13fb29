"""Export a run's weights as a reference (PyTorch) state dict.

    python -m experiments.export --workdir=DIR --out=PATH.pt|PATH.npz [--step=N | --best]

Takes the evaluation weights of the latest (or `--step`) checkpoint (the EMA of
the dense net when the run kept one, plus the puzzle-embedding table and
H_init/L_init), renames them to the reference's state-dict names
(`recur.convert.to_reference`, `model.inner.` prefix; `--compiled` adds the
`_orig_mod.` prefix of a `torch.compile`d model: the reference's pretrain.py
compiles its model unless DISABLE_COMPILE is set, so loading there with
`load_checkpoint` needs `--compiled`) and writes `.pt` (needs
torch; without it the same tensors go to `PATH.npz`) or `.npz`. Beside it,
`PATH.json` holds our model config and the run's data config, so
`python -m experiments.solve --checkpoint=PATH.npz` needs no --model_config.
"""
from __future__ import annotations

import os
import sys

from absl import app, flags
import numpy as np

from experiments import cli

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command-line flags (defined only when run as a program, so the
  module imports alongside other absl programs)."""
  flags.DEFINE_string("workdir", None, "Run directory.")
  flags.DEFINE_string("out", None, "Output file: .pt or .npz.")
  flags.DEFINE_integer("step", None, "Checkpoint step (default: latest).")
  flags.DEFINE_bool("best", False, "The run's best checkpoint (WORKDIR/best, kept "
                    "with --config.best_metric) instead of the latest.")
  flags.DEFINE_bool(
      "compiled", False,
      "Prefix every name with '_orig_mod.', as a torch.compile'd model saves and "
      "loads them. Needed to load the file with the reference's pretrain.py "
      "(load_checkpoint): it torch.compiles the model unless DISABLE_COMPILE is "
      "set, then load_state_dict is strict. Leave it off for DISABLE_COMPILE=1 "
      "or an uncompiled model; recur (solve --checkpoint) reads both.")


__all__ = ["export", "main"]


def _has_torch() -> bool:
  try:
    import torch  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    return False
  return True


def export(workdir: str, out: str, step: int | None = None,
           compiled: bool = False, best: bool = False) -> tuple[str, str]:
  """Writes the state dict and its config sidecar; returns their paths."""
  import dataclasses  # pylint: disable=g-import-not-at-top
  from experiments import paths  # pylint: disable=g-import-not-at-top
  from recur import checkpoint, convert  # pylint: disable=g-import-not-at-top
  cfg, params, config, step = checkpoint.restore_for_inference(
      workdir, step=step, where="exporting", best=best)
  params = {k: np.asarray(v) if not isinstance(v, dict) else v
            for k, v in params.items()}
  root, ext = os.path.splitext(out)
  if ext not in (".pt", ".pth", ".npz"):
    raise app.UsageError(f"--out must end in .pt or .npz, got {out!r}")
  if ext in (".pt", ".pth") and not _has_torch():
    print(f"torch is not installed: writing {root}.npz instead of {out}",
          file=sys.stderr, flush=True)
    out, ext = root + ".npz", ".npz"
  with paths.local_output(out) as local:  # `out` may be gs://...
    if ext == ".npz":
      sd = convert.to_reference(params, convert.reference_prefix(compiled))
      np.savez(local, **sd)
    else:
      convert.save_torch_state_dict(params, local, compiled=compiled)
  side = root + ".json"
  meta = {"model": dataclasses.asdict(cfg), "data": config["data"],
          "step": int(step), "workdir": paths.normalize(workdir),
          "weights": "ema" if config.get("optim", {}).get("ema", True) else "raw"}
  paths.write_json_atomic(side, meta)
  return out, side


def main(argv) -> None:
  del argv
  if not FLAGS.workdir or not FLAGS.out:
    raise app.UsageError("--workdir and --out are required")
  out, side = export(FLAGS.workdir, FLAGS.out, FLAGS.step, FLAGS.compiled, FLAGS.best)
  print(f"wrote {out} (reference state dict) and {side} (model config)", flush=True)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
