"""`python -m recur.tfds build DATASET[/CONFIG] --data_dir=DIR [--manual_dir=...]`

The `tfds build` command without TensorFlow: tensorflow-datasets' `tfds` entry
point (4.9.10) imports TensorFlow for its `convert_format` command, so it fails
where TensorFlow is not installed (tests/test_tfds.py checks this); this runs
the same `build` command (same options: --datasets, --data_dir, --manual_dir,
--config, --overwrite, --publish_dir, ...; see `tfds build --help` where TF is
installed) with `--imports=recur.tfds` added, so the recur builders are found. With TensorFlow installed, `tfds build --imports=recur.tfds
recur_sudoku/smoke --data_dir=DIR` is equivalent. To a bucket: a local
`--data_dir` plus `--publish_dir=gs://BUCKET/DIR` (TFDS copies the finished
dataset there; array_record writes local files only).
"""
from __future__ import annotations

import os
import sys
from typing import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> None:
  """`python -m recur.tfds build ...`: TFDS's own build command with recur's
  builders registered, without TensorFlow (the `tfds` script imports it)."""
  import simple_parsing  # pylint: disable=g-import-not-at-top
  from tensorflow_datasets.scripts.cli import build  # pylint: disable=g-import-not-at-top
  import recur.tfds  # pylint: disable=g-import-not-at-top,unused-import
  args = list(sys.argv[1:] if argv is None else argv)
  if not args or args[0] != "build":
    raise SystemExit("usage: python -m recur.tfds build DATASET[/CONFIG] "
                     "--data_dir=DIR [--manual_dir=DIR] [--overwrite]")
  build_args = simple_parsing.parse(build.Args, args=args[1:])
  if "://" in os.fspath(build_args.paths.data_dir):
    raise SystemExit(
        f"--data_dir={build_args.paths.data_dir}: array_record writes local files "
        "only (without TensorFlow); build into a local --data_dir and add "
        "--publish_dir=gs://... to copy the finished dataset there")
  build_args.execute()


if __name__ == "__main__":
  from recur import cli_errors  # pylint: disable=g-import-not-at-top
  cli_errors.guarded(main)()  # one-line storage/data errors
