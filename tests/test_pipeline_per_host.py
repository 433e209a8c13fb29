"""Per-host, vectorised input: gathers equal the per-example code; the global
batch is the same bytes for 1 and 2 jax.distributed processes."""
import os
import subprocess
import sys

import numpy as np
import pytest

from recur.data import keys, pipeline
from recur.puzzles import dihedral as dh
from recur.puzzles.maze.source import MazeSet, MazeSource
from recur.puzzles.sudoku import source as sudoku

from cpu_processes import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("box", [(3, 3), (2, 3), (2, 2)])
def test_sudoku_gathers_equal_apply_transform(box):
  n = box[0] * box[1]
  rng = np.random.default_rng(1)
  grids = rng.integers(0, n + 1, (64, n, n)).astype(np.int8)
  groups, versions = rng.integers(0, 500, 64), rng.integers(0, 1001, 64)
  arrays = sudoku.transform_arrays(5, 0, groups, versions, box)
  got = sudoku.apply_transforms(grids, *arrays)
  for k in range(64):  # the per-example code is the oracle
    t = sudoku.SudokuTransform(*(a[k] for a in arrays))
    np.testing.assert_array_equal(got[k], sudoku.apply_transform(grids[k], t).ravel())
  # Transforms are real symmetries: a valid solution stays valid.
  assert arrays[1].any() == (box[0] == box[1])


def test_sudoku_rows_equal_examples_and_preserve_validity():
  src = sudoku.SudokuSource.generated(box=(2, 2), num_train=6, num_test=2,
                                      num_blanks=6, num_aug=50)
  groups, versions = np.array([0, 5, 3, 3]), np.array([0, 7, 50, 1])
  rows = src.encode_rows("train", groups, versions, np.zeros(4, np.int64),
                         np.zeros(4, np.uint64))
  for k, (g, v) in enumerate(zip(groups, versions)):
    ex = src.examples("train", int(g), int(v))[0]
    np.testing.assert_array_equal(rows["inputs"][k], ex.inputs)
    np.testing.assert_array_equal(rows["labels"][k], ex.labels)
    t = src.transform("train", int(g), int(v))
    answer = src.puzzles("train").answers[g]
    np.testing.assert_array_equal(sudoku.decode_sudoku(ex.labels).reshape(4, 4),
                                  sudoku.apply_transform(answer, t))
    assert sudoku.is_valid_solution(sudoku.decode_sudoku(ex.labels).reshape(4, 4),
                                    (2, 2))
  with pytest.raises(IndexError, match="out of range"):
    src.encode_rows("train", np.array([6]), np.array([0]), np.zeros(1, np.int64),
                    np.zeros(1, np.uint64))


@pytest.mark.parametrize("shape", [(5, 5), (3, 7)])
def test_dihedral_maps_equal_dihedral(shape):
  g = np.random.default_rng(0).integers(0, 9, shape)
  maps = dh.dihedral_maps(*shape)
  for t in range(dh.NUM_DIHEDRAL):
    np.testing.assert_array_equal(g.ravel()[maps[t]], dh.dihedral(g, t).ravel())


@pytest.mark.parametrize("tids", [[0] * 12, [5] * 12, list(range(8)) + [1, 1, 7, 0]])
def test_gather_dihedral_equals_dihedral(tids):
  grids = np.random.default_rng(3).integers(0, 100, (4, 5, 5)).astype(np.int8)
  rows = np.arange(12) % 4
  got = dh.gather_dihedral(grids, rows, np.array(tids))
  assert got.dtype == np.int32 and got.shape == (12, 25)
  for k, (r, t) in enumerate(zip(rows, tids)):
    np.testing.assert_array_equal(got[k], dh.dihedral(grids[r], t).ravel())


def test_maze_rows_equal_dihedral():
  rng = np.random.default_rng(2)
  mazes = MazeSet(rng.integers(1, 6, (5, 6, 6)).astype(np.int8),
                  rng.integers(1, 6, (5, 6, 6)).astype(np.int8), np.zeros(5))
  src = MazeSource({"train": mazes, "test": mazes}, augment=True)
  groups, versions = rng.integers(0, 5, 40), rng.integers(0, 8, 40)
  rows = src.encode_rows("train", groups, versions, np.zeros(40, np.int64),
                         np.zeros(40, np.uint64))
  for k, (g, v) in enumerate(zip(groups, versions)):
    np.testing.assert_array_equal(rows["inputs"][k],
                                  dh.dihedral(mazes.inputs[g], v).ravel())
    np.testing.assert_array_equal(rows["labels"][k],
                                  dh.dihedral(mazes.labels[g], v).ravel())


def test_keys_are_deterministic_and_spread():
  h = keys.hash_ints(0, 1, np.arange(10_000))
  np.testing.assert_array_equal(h, keys.hash_ints(0, 1, np.arange(10_000)))
  assert len(np.unique(h)) == 10_000
  counts = np.bincount(keys.below(h, 10), minlength=10)
  assert counts.min() > 850 and counts.max() < 1150
  p = keys.permutations(keys.hash_ints(3, np.arange(100)[:, None], np.arange(9)))
  assert (np.sort(p, axis=1) == np.arange(9)).all()
  assert len({tuple(r) for r in p}) > 90


def _sudoku_source():
  return sudoku.SudokuSource.generated(box=(2, 2), num_train=20, num_test=2,
                                       num_blanks=6, num_aug=30)


@pytest.mark.parametrize("process_count", [2, 4])
def test_fast_path_shares_concatenate_to_the_global_batch(process_count):
  src = _sudoku_source()
  whole = pipeline.TrainIterator(src, 8, seed=3, prefetch=0)
  parts = [pipeline.TrainIterator(src, 8, seed=3, process_index=p,
                                  process_count=process_count, prefetch=0)
           for p in range(process_count)]
  for _ in range(7):  # crosses epoch boundaries (20 groups, 8 a batch)
    want = next(whole)
    got = [next(it) for it in parts]
    for key in want:
      np.testing.assert_array_equal(np.concatenate([g[key] for g in got]), want[key])
  assert whole.get_state() == parts[0].get_state()


_SCRIPT = r"""
import sys, numpy as np, jax
port, pid, nproc, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
if nproc > 1:
  jax.distributed.initialize(f"localhost:{port}", nproc, pid)
from jax.experimental import multihost_utils
from recur import sharding
from recur.data import pipeline
from recur.puzzles.arc.source import ArcSource
from recur.puzzles.sudoku.source import SudokuSource
sources = {
    "sudoku": SudokuSource.generated(box=(2, 2), num_train=20, num_test=2,
                                     num_blanks=6, num_aug=30),
    # Groups of 2-6 examples: versions cut at batch ends, translated rows.
    "arc": ArcSource("arc1", num_versions=5, max_tasks=4, max_grid_size=8,
                     canvas=8)}
mesh = jax.sharding.Mesh(np.array(jax.devices()), ("data",))
dump = {}
for name, src in sources.items():
  it = pipeline.TrainIterator(src, 8, seed=3, process_index=jax.process_index(),
                              process_count=jax.process_count(), prefetch=1)
  for step in range(6):
    if step == 3:  # exact resume from the state, on a fresh iterator
      state = it.get_state(); it.close()
      it = pipeline.TrainIterator(src, 8, seed=3,
                                  process_index=jax.process_index(),
                                  process_count=jax.process_count(), prefetch=1)
      it.set_state(state)
    batch = pipeline.make_global_batch(next(it), mesh)
    for k, v in batch.items():
      dump[f"{name}/{step}/{k}"] = np.asarray(
          multihost_utils.process_allgather(v, tiled=True))
  it.close()
if jax.process_index() == 0:
  np.savez(out, **dump)
"""


def test_global_batches_equal_for_one_and_two_processes(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS="--xla_force_host_platform_device_count=1")
  one = tmp_path / "one.npz"
  subprocess.run([sys.executable, "-c", _SCRIPT, "0", "0", "1", str(one)],
                 cwd=ROOT, env=env, check=True, timeout=300)
  two = tmp_path / "two.npz"
  port = str(free_port())
  procs = [subprocess.Popen([sys.executable, "-c", _SCRIPT, port, str(i), "2",
                             str(two)], cwd=ROOT, env=env,
                            stderr=subprocess.PIPE, text=True) for i in range(2)]
  errs = [p.communicate(timeout=300)[1] for p in procs]
  for p, e in zip(procs, errs):
    assert p.returncode == 0, e[-3000:]
  a, b = np.load(one), np.load(two)
  assert sorted(a.files) == sorted(b.files) and len(a.files) == 36
  for k in a.files:
    assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape
    assert a[k].tobytes() == b[k].tobytes(), k
