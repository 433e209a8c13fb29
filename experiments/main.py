"""Shared absl entry point: flags, multi-host start-up, then `loop.run`.

    python -m experiments.<name> --config=experiments/configs/<name>.py:VARIANT \
        --workdir=DIR [--config.key=value ...]

Several hosts: on a Cloud TPU pod every worker runs the same command and
`jax.distributed.initialize()` discovers the others; elsewhere pass
`--coordinator_address=HOST:PORT --num_processes=N --process_id=I` on each host.
"""
from __future__ import annotations

import logging
import os
import sys

from absl import app, flags
from ml_collections import config_flags

from experiments import cli

__all__ = ["entry"]

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics, pictures.")
flags.DEFINE_string("coordinator_address", None, "HOST:PORT of process 0 (multi-host, non-TPU).")
flags.DEFINE_integer("num_processes", None, "Number of processes (multi-host, non-TPU).")
flags.DEFINE_integer("process_id", None, "This process's index (multi-host, non-TPU).")
flags.DEFINE_bool("verbose", False, "Full tracebacks on errors (also RECUR_VERBOSE=1); "
                  "by default a mistake prints one line.")

# A dead peer: the workdir lease watch (experiments.workdir_lock) stops the
# survivors within ~30 s with a message; jax's own heartbeat (default 100 s)
# is the backstop for a peer that dies before its lease is seen.
PEER_HEARTBEAT_TIMEOUT_S = 45

CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")


def initialize_distributed() -> None:
  import jax  # pylint: disable=g-import-not-at-top
  given = [FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id]
  if any(v is not None for v in given):
    if any(v is None for v in given):
      raise app.UsageError("--coordinator_address, --num_processes and --process_id "
                           "go together")
    # Cross-process collectives for CPU devices (local multi-process runs and
    # tests); it only concerns the CPU client, so GPU hosts are unaffected.
    # (Asking jax for its backend here would initialise it too early.)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes,
                               FLAGS.process_id,
                               heartbeat_timeout_seconds=PEER_HEARTBEAT_TIMEOUT_S)
  elif "," in os.environ.get("TPU_WORKER_HOSTNAMES", ""):
    # Cloud TPU pod: discovered automatically.
    jax.distributed.initialize(heartbeat_timeout_seconds=PEER_HEARTBEAT_TIMEOUT_S)


def entry(name: str, default_variant: str = "demo") -> None:
  """Defines --config for experiments/configs/<name>.py and runs the loop."""
  default = os.path.join(CONFIG_DIR, f"{name}.py:{default_variant}")
  try:
    # ml_collections applies `--config.KEY=...` overrides of the default file
    # right here (without --config=): a mistyped key already fails now.
    config_flags.DEFINE_config_file(
        "config", default,
        f"Config file and variant, e.g. experiments/configs/{name}.py:smoke",
        lock_config=True)
  except Exception as e:  # pylint: disable=broad-except
    cli.exit_with_one_line(e, sys.argv, default)

  def main(argv):
    del argv
    if not FLAGS.workdir:
      raise app.UsageError("--workdir is required")
    logging.getLogger("absl").setLevel(logging.WARNING)
    initialize_distributed()
    from experiments import loop, preemption, report  # pylint: disable=g-import-not-at-top
    from experiments.workdir_lock import LockHeld  # pylint: disable=g-import-not-at-top
    from recur.checkpoint import CheckpointError  # pylint: disable=g-import-not-at-top
    try:
      run = loop.run(FLAGS.config, FLAGS.workdir)
    except preemption.Preempted as e:
      # SIGTERM: a checkpoint of this step is committed; the same command resumes.
      print(str(e), flush=True)
      sys.exit(0)
    except (loop.RunError, CheckpointError, LockHeld, ValueError) as e:
      # Bad data (recur.data.DataError), a bad config, a busy workdir or a run
      # that cannot go on: one clear message, nothing already written is lost.
      if FLAGS.verbose or cli.verbose():
        raise
      print(f"error: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
      sys.exit(1)
    report.final_report(run)

  cli.run(main, default)
