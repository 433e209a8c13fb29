"""Tests for recur.data.prepared: sources stored as TFDS datasets (round trips,
the generator's batches, evaluators, interrupted builds, errors)."""
import json
import os
import shutil
import tempfile
from unittest import mock

from absl.testing import absltest
import numpy as np

from recur import data
from recur.puzzles.arc import evaluate as eval_arc
from recur.puzzles.arc import augment as aa
from recur.data import pipeline
from recur.data import prepared
from recur.puzzles.sudoku import source as sudoku
from recur.data.base import IGNORE_LABEL_ID, DataError


def _sudoku():
  return sudoku.SudokuSource.generated(box=(2, 2), num_train=8, num_test=4,
                                       num_aug=3, num_blanks=6, seed=1)


def _arc():
  return data.make_source("arc", max_grid_size=5, canvas=6, max_tasks=3,
                          num_versions=3)


def _assert_same_example(test, a, b):
  np.testing.assert_array_equal(a.inputs, b.inputs)
  np.testing.assert_array_equal(a.labels, b.labels)
  test.assertEqual((a.puzzle_identifier, a.group, a.version, a.index),
                   (b.puzzle_identifier, b.group, b.version, b.index))


class PreparedTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tmp = tempfile.mkdtemp()
    cls.sudoku = _sudoku()
    cls.arc = _arc()
    cls.sudoku_dir = prepared.prepare(cls.sudoku,
                                      os.path.join(cls.tmp, "sudoku"))
    cls.arc_dir = prepared.prepare(cls.arc, os.path.join(cls.tmp, "arc"))

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls.tmp, ignore_errors=True)
    super().tearDownClass()

  def _copy(self, src_dir):
    dst = tempfile.mkdtemp(dir=self.tmp)
    shutil.rmtree(dst)
    shutil.copytree(src_dir, dst)
    return dst

  # ------------------------------------------------------------ round trips

  def test_sudoku_round_trip_is_exact(self):
    # Given a prepared generated 4x4 Sudoku (every version of every group),
    # When it is reopened,
    # Then info, groups, versions, names and every example equal the source's.
    src, ds = self.sudoku, prepared.open_prepared(self.sudoku_dir)
    self.assertEqual(ds.info, src.info)
    self.assertEqual(ds.box, (2, 2))
    for split in src.info.splits:
      self.assertEqual(ds.num_groups(split), src.num_groups(split))
      for g in range(src.num_groups(split)):
        self.assertEqual(ds.group_name(split, g), src.group_name(split, g))
        self.assertEqual(ds.num_versions(split, g), src.num_versions(split, g))
        for v in range(src.num_versions(split, g)):
          got = ds.examples(split, g, v, np.random.default_rng(123))
          want = src.examples(split, g, v, None)
          self.assertLen(got, len(want))
          for a, b in zip(got, want):
            _assert_same_example(self, a, b)
    self.assertEqual(ds.describe()["splits"]["train"],
                     {"groups": 8, "versions": 32, "records": 32})

  def test_arc_round_trip_fixes_one_translation_per_record(self):
    # Given a prepared small ARC source (train examples are translated at random),
    # Then every stored example is the source's for `record_rng`, and the
    # evaluator helpers (pairs, augmentation, task id, canvas) match the source.
    src, ds = self.arc, prepared.open_prepared(self.arc_dir)
    self.assertEqual(ds.info, src.info)
    self.assertEqual(ds.canvas, 6)
    for s, split in enumerate(src.info.splits):
      self.assertEqual(ds.scored_task_ids(split), src.scored_task_ids(split))
      for g in range(src.num_groups(split)):
        self.assertEqual(ds.task_id(split, g), src.task_id(split, g))
        for p, q in zip(ds.pairs(split, g), src.pairs(split, g), strict=True):
          np.testing.assert_array_equal(p.input, q.input)
          np.testing.assert_array_equal(p.output, q.output)
        for v in range(src.num_versions(split, g)):
          self.assertEqual(ds.augmentation(split, g, v),
                           src.augmentation(split, g, v))
          want = src.examples(split, g, v, prepared.record_rng(0, s, g, v))
          got = ds.examples(split, g, v, np.random.default_rng(7))
          self.assertLen(got, len(want))
          for a, b in zip(got, want):
            _assert_same_example(self, a, b)

  def test_splits_and_max_versions(self):
    out = prepared.prepare(self.sudoku, os.path.join(self.tmp, "sub"),
                           splits=["train"], max_versions=2)
    ds = prepared.open_prepared(out)
    self.assertEqual(ds.info.splits, ("train",))
    self.assertEqual({ds.num_versions("train", g) for g in range(8)}, {2})
    with self.assertRaisesRegex(IndexError, "has 2 versions, asked for 2"):
      ds.examples("train", 0, 2, None)
    meta = json.load(open(os.path.join(out, "metadata.json")))
    self.assertEqual(meta["splits"]["train"]["num_versions"], [2] * 8)
    self.assertEqual(meta["describe"]["num_aug"], 3)

  def test_make_source_opens_a_prepared_directory(self):
    # Options meant for the original source (from an experiment config) are
    # ignored, so --config.data.name=prepared --config.data.path=DIR works; the
    # directory is a TFDS dataset, so tfds and make_source("tfds") read it too.
    import tensorflow_datasets as tfds
    ds = data.make_source("prepared", path=self.sudoku_dir, num_aug=1000,
                          box=(3, 3))
    self.assertIsInstance(ds, prepared.PreparedView)
    self.assertEqual(ds.info.family, "sudoku")
    self.assertEqual(ds.box, (2, 2))
    self.assertEqual(data.make_source("tfds", path=self.sudoku_dir).box, (2, 2))
    records = tfds.builder_from_directory(self.sudoku_dir).as_data_source("train")
    self.assertLen(records, 32)
    np.testing.assert_array_equal(records[5]["inputs"],
                                  self.sudoku.examples("train", 1, 1, None)[0].inputs)
    with self.assertRaisesRegex(ValueError, "needs path"):
      data.make_source("prepared")

  # ---------------------------------------------------- pipeline, evaluators

  def test_pipeline_batches_equal_the_sources(self):
    # The prepared copy, as make_source("prepared") opens it (the Sudoku view,
    # read on the same vectorised path as the generator), gives its batches.
    ds = prepared.open_prepared(self.sudoku_dir)
    with pipeline.TrainIterator(self.sudoku, 4, seed=3, prefetch=0) as a, \
         pipeline.TrainIterator(ds, 4, seed=3, prefetch=2) as b:
      for _ in range(5):
        x, y = next(a), next(b)
        for k in x:
          np.testing.assert_array_equal(x[k], y[k])
      self.assertEqual(b.steps_per_epoch, a.steps_per_epoch)
    # ARC (translation fixed per version: the stored records are the source's).
    with pipeline.TrainIterator(self.arc, 4, seed=3, prefetch=0) as a, \
         pipeline.TrainIterator(prepared.open_prepared(self.arc_dir), 4, seed=3,
                                prefetch=0) as b:
      for _ in range(5):
        x, y = next(a), next(b)
        for k in x:
          np.testing.assert_array_equal(x[k], y[k])
    for src, prep in ((self.sudoku, ds),
                      (self.arc, prepared.open_prepared(self.arc_dir))):
      got = list(pipeline.eval_batches(prep, 8, split="test"))
      want = list(pipeline.eval_batches(src, 8, split="test"))
      self.assertLen(got, len(want))
      for x, y in zip(got, want):
        for k in x:
          np.testing.assert_array_equal(x[k], y[k])

  def test_rows_of_a_batch_are_read_in_one_call_and_checked(self):
    # The Sudoku view's encode_rows (one batched read) gives the rows that
    # examples() gives one version at a time, and refuses rows not stored.
    ds = prepared.open_prepared(self.sudoku_dir)
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 8, 20)
    versions = rng.integers(0, 4, 20)
    got = ds.encode_rows("train", groups, versions, np.zeros(20, np.int64), None)
    for k, (g, v) in enumerate(zip(groups, versions)):
      want = self.sudoku.examples("train", int(g), int(v), None)[0]
      np.testing.assert_array_equal(got["inputs"][k], want.inputs)
      np.testing.assert_array_equal(got["labels"][k], want.labels)
      self.assertEqual(got["puzzle_identifiers"][k], want.puzzle_identifier)
    np.testing.assert_array_equal(ds.example_counts("test"), np.ones(4))
    for bad in ((0, 4, 0), (0, 0, 1), (0, -1, 0)):
      with self.subTest(bad=bad), self.assertRaises(IndexError):
        ds.encode_rows("train", *(np.array([x]) for x in bad), None)

  def test_arc_evaluator_scores_a_prepared_source(self):
    # Given oracle predictions from the prepared ARC test split,
    # Then ArcEvaluator on the prepared source solves everything and writes the
    # same submission as on the original source.
    ds = prepared.open_prepared(self.arc_dir)
    evs = [eval_arc.ArcEvaluator(ds), eval_arc.ArcEvaluator(self.arc)]
    for batch in pipeline.eval_batches(ds, 8, split="test", prefetch=0):
      preds = np.where(batch["labels"] == IGNORE_LABEL_ID, aa.PAD,
                       batch["labels"])
      for ev in evs:
        ev.update(batch["group"], batch["version"], batch["index"], preds,
                  np.zeros(len(preds)), batch["mask"])
    self.assertEqual(evs[0].result()["pass@1"], 1.0)
    self.assertEqual(evs[0].submission(), evs[1].submission())

  # ---------------------------------------------------------------- atomicity

  def test_interrupted_build_leaves_nothing_loadable(self):
    # Given a build interrupted midway (the source raises on its 5th version),
    out = os.path.join(self.tmp, "interrupted")
    calls = {"n": 0}
    real = self.sudoku.examples

    def failing(*args):
      calls["n"] += 1
      if calls["n"] == 5:
        raise KeyboardInterrupt("simulated interruption")
      return real(*args)

    with mock.patch.object(self.sudoku, "examples", failing):
      with self.assertRaises(KeyboardInterrupt):
        prepared.prepare(self.sudoku, out)
    # Then neither the target nor TFDS's temp directory is left, nothing
    # loads, and the next build succeeds.
    self.assertFalse(os.path.exists(out))
    self.assertEqual([n for n in os.listdir(self.tmp) if "interrupted" in n], [])
    with self.assertRaisesRegex(DataError, "no such directory"):
      prepared.open_prepared(out)
    self.assertEqual(prepared.open_prepared(prepared.prepare(self.sudoku, out)).info,
                     self.sudoku.info)

  def test_existing_dataset_is_replaced_only_with_overwrite(self):
    out = prepared.prepare(self.sudoku, os.path.join(self.tmp, "again"),
                           splits=["test"])
    with self.assertRaisesRegex(FileExistsError, "overwrite=True"):
      prepared.prepare(self.sudoku, out)
    prepared.prepare(self.sudoku, out, overwrite=True)
    self.assertEqual(prepared.open_prepared(out).info.splits, ("train", "test"))
    other = os.path.join(self.tmp, "not_a_dataset")
    os.makedirs(other)
    open(os.path.join(other, "notes.txt"), "w").close()
    with self.assertRaisesRegex(FileExistsError, "not a prepared dataset"):
      prepared.prepare(self.sudoku, other, overwrite=True)
    self.assertTrue(os.path.exists(os.path.join(other, "notes.txt")))
    empty = os.path.join(self.tmp, "empty")
    os.makedirs(empty)
    self.assertEqual(prepared.open_prepared(prepared.prepare(self.sudoku, empty)).info,
                     self.sudoku.info)

  # ------------------------------------------------------------------ errors

  def _edit_metadata(self, path, edit):
    file = os.path.join(path, "metadata.json")
    meta = json.load(open(file))
    edit(meta)
    json.dump(meta, open(file, "w"))

  def test_missing_or_corrupt_files_raise_data_error_naming_them(self):
    shard = "recur_prepared-train.array_record-00000-of-00001"
    cases = {
        "missing split file": (lambda d: os.remove(f"{d}/{shard}"),
                               f"{shard}"),
        "truncated split file": (lambda d: os.truncate(f"{d}/{shard}", 1000),
                                 r"train records 0\.\.0 unreadable"),
        "garbage split file": (
            lambda d: open(f"{d}/{shard}", "r+b").write(
                np.random.default_rng(0).bytes(os.path.getsize(f"{d}/{shard}"))),
            r"train records 0\.\.0 unreadable"),
        "record count": (
            lambda d: self._edit_metadata(
                d, lambda m: m["splits"]["train"]["record_offsets"].__setitem__(-1, 31)),
            r"split train has 32 records, metadata.json says 31"),
        "missing field": (lambda d: self._edit_metadata(
            d, lambda m: m["info"].pop("seq_len")),
                          r"metadata\.json field 'info': 'seq_len'"),
        "half-written dir": (lambda d: os.remove(f"{d}/dataset_info.json"),
                             r"not a built TFDS dataset"),
    }
    for name, (damage, message) in cases.items():
      with self.subTest(name):
        d = self._copy(self.sudoku_dir)
        damage(d)
        with self.assertRaisesRegex(DataError, message):
          prepared.open_prepared(d).examples("train", 0, 0)

  def test_arc_pairs_are_checked(self):
    d = self._copy(self.arc_dir)
    self._edit_metadata(d, lambda m: m["splits"]["test"].pop("pairs"))
    with self.assertRaisesRegex(DataError, r"'splits\.test\.pairs' missing"):
      prepared.open_prepared(d)

  def test_datasets_of_the_old_format_say_to_prepare_again(self):
    # Given a directory written by recur.data.prepared before it wrote TFDS
    # datasets (format recur.prepared/1: metadata.json, {split}.array_record),
    d = os.path.join(self.tmp, "old_format")
    os.makedirs(d)
    with open(os.path.join(d, "metadata.json"), "w") as f:
      json.dump({"format": "recur.prepared/1", "info": {}}, f)
    # Then opening it names the format and the command that rewrites it.
    with self.assertRaisesRegex(DataError, r"recur\.prepared/1.*python -m "
                                r"recur\.data\.prepared"):
      data.make_source("prepared", path=d)

  # --------------------------------------------------------------------- CLI

  def test_command_line(self):
    out = os.path.join(self.tmp, "cli")
    path = prepared.main([
        "--source=sudoku", f"--out={out}", "--max_versions=2",
        "--kw", "box=(2, 2)", "--kw", "num_train=4", "--kw", "num_test=2",
        "--kw", "num_aug=5", "--kw", "num_blanks=6"])
    ds = prepared.open_prepared(path)
    self.assertEqual(ds.info.name, "sudoku-gen-4x4")
    self.assertEqual(ds.num_versions("train", 0), 2)


if __name__ == "__main__":
  absltest.main()
