r"""Do grain worker processes help host input? A measurement, not a feature.

    python -m experiments.bench_pipeline_workers --datasets=arc,maze_aug,sudoku \
        --batches=40 --workers=0,1,2

The training iterator builds batches in one background thread
(`recur.data.pipeline`). This script asks what grain's worker processes
(`IterDataset.mp_prefetch`) would add: batch n's packer state is planned up
front (cheap), then `MapDataset.range(N).map(build batch n)` runs either in
this process (workers=0) or in grain worker processes, and the consumer times
N batches. One JSON line per (dataset, workers): `wall_s`, `batches_per_s`,
`consumer_cpu_ms_per_batch` (CPU of this process only: what the training
process itself pays per batch; with workers it is receiving the batch), and
`load_avg_1m`. Batches are checked equal to the in-process ones (digests).
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
import time

from absl import app, flags
import numpy as np

from experiments import bench_pipeline
from recur.data import pipeline

FLAGS = flags.FLAGS
flags.DEFINE_list("datasets", ["arc", "maze_aug", "sudoku"], "Datasets "
                  "(experiments/bench_pipeline.py names).")
flags.DEFINE_integer("batches", 40, "Timed global batches.")
flags.DEFINE_list("workers", ["0", "1", "2"], "Grain worker processes (0: none).")
flags.DEFINE_integer("global_batch", 768, "Global batch size.")
flags.DEFINE_string("cache", "", "Cache of generated data.")


def _states(source, global_batch: int, n: int) -> list[dict]:
  """The packer state before each of the first n batches (planning only)."""
  it = pipeline.TrainIterator(source, global_batch, 0, prefetch=0)
  packer, states = it._packer, []  # pylint: disable=protected-access
  block, position = 0, 0
  for _ in range(n):
    packer._block, packer._position = block, position  # pylint: disable=protected-access
    states.append(packer.get_state())
    plan = packer._plan_batch(block, position)  # pylint: disable=protected-access
    while plan is None:
      block, position = block + 1, 0
      plan = packer._plan_batch(block, position)  # pylint: disable=protected-access
    position = plan[1]
  it.close()
  return states


class _BuildBatch:
  """Batch n from its planned state (picklable: sent to grain's workers)."""

  def __init__(self, name: str, cache: str, global_batch: int, states):
    self.name, self.cache, self.global_batch = name, cache, global_batch
    self.states = states
    self._it = None
    # Grain may call the map from several threads of a worker, and the one
    # iterator is repositioned per batch: one batch at a time.
    self._lock = threading.Lock()

  def __getstate__(self):
    return {**self.__dict__, "_it": None, "_lock": None}

  def __setstate__(self, state):
    self.__dict__.update(state, _lock=threading.Lock())

  def __call__(self, n: int) -> dict[str, np.ndarray]:
    with self._lock:
      if self._it is None:
        source = bench_pipeline.make_source(self.name, self.cache)
        self._it = pipeline.TrainIterator(source, self.global_batch, 0,
                                          prefetch=0)
      self._it.set_state(self.states[n])
      return next(self._it)


def _digest(batch: dict[str, np.ndarray]) -> str:
  h = hashlib.sha1()
  for k in sorted(batch):
    h.update(np.ascontiguousarray(batch[k]).tobytes())
  return h.hexdigest()


def measure(name: str, workers: int, batches: int, global_batch: int,
            cache: str, reference=None) -> tuple[dict, list]:
  import grain  # pylint: disable=g-import-not-at-top
  source = bench_pipeline.make_source(name, cache)
  build = _BuildBatch(name, cache, global_batch,
                      _states(source, global_batch, batches + 1))
  ds = grain.MapDataset.range(batches + 1).map(build).to_iter_dataset()
  if workers:
    ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))
  it = iter(ds)
  digests = [_digest(next(it))]  # untimed: starts the workers, warms caches
  wall = cpu = 0.0
  for _ in range(batches):  # only next() is timed; the digest is not
    t0, c0 = time.perf_counter(), time.process_time()
    batch = next(it)
    wall, cpu = wall + time.perf_counter() - t0, cpu + time.process_time() - c0
    digests.append(_digest(batch))
  if reference is not None and digests != reference:
    raise AssertionError(f"{name}: batches with {workers} workers differ")
  rec = {"dataset": name, "workers": workers, "batches": batches,
         "wall_s": round(wall, 3), "batches_per_s": round(batches / wall, 1),
         "examples_per_s": round(batches * global_batch / wall),
         "consumer_cpu_ms_per_batch": round(1e3 * cpu / batches, 2),
         "load_avg_1m": round(os.getloadavg()[0], 2)}
  return rec, digests


def main(argv):
  del argv
  cache = FLAGS.cache or os.path.join(os.path.expanduser("~"), ".cache",
                                      "recur", "bench_pipeline")
  for name in FLAGS.datasets:
    reference = None
    for w in (int(x) for x in FLAGS.workers):
      rec, got = measure(name, w, FLAGS.batches, FLAGS.global_batch, cache,
                         reference)
      reference = reference or got
      print(json.dumps(rec), flush=True)


if __name__ == "__main__":
  app.run(main)
