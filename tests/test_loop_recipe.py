"""The loop's share of the reference recipe: run length from epochs and blocks,
pooled ARC votes kept across a resume, evaluation puzzle-id switches."""
import json
import os

import numpy as np
import pytest

from experiments import evaluation
from recur import checkpoint
from test_loop import run_exp, train_rows


def eval_rows(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = [json.loads(l) for l in f if l.strip()]
  return [r for r in rows if "eval/count" in r]


def test_epochs_and_blocks_set_the_run_length(tmp_path):
  # Given 32 one-example Sudoku groups, a batch of 12, 4 epochs in blocks of 2:
  # each block packs 64 groups into 5 full batches (4 dropped), so 10 steps;
  # pretrain.py's horizon int(4 * 32 / 12) is 10 too.
  out = run_exp("sudoku_trm", tmp_path / "w", "--config.steps=0", "--config.epochs=4",
                "--config.epochs_per_block=2", "--config.batch_size=12",
                "--config.eval_at_end=False", "--config.log_every=1")
  assert "Planned: 4 epochs in 2 block(s) of 2: 2.5 batches per epoch, 10 steps" \
      in out.stdout
  assert len(train_rows(tmp_path / "w")) == 10


def test_pooled_arc_votes_survive_a_resume(tmp_path):
  # Given an ARC run evaluated at step 3 and at its end (step 6).
  over = ["--config.steps=6", "--config.eval_every=3", "--config.checkpoint_every=3",
          "--config.async_checkpointing=False"]
  w = tmp_path / "w"
  run_exp("arc_trm", w, *over)
  first = eval_rows(w)
  assert [r["eval/pooled/evaluations"] for r in first] == [1, 2]
  # The first evaluation's pool is its own votes; the checkpoint of step 3
  # was written after it and holds them.
  assert first[0]["eval/pooled/pass@2"] == first[0]["eval/pass@2"]
  ckpts = checkpoint.RunCheckpoints(w / "checkpoints", read_only=True)
  try:
    assert ckpts.read_evaluation(3)["evaluations"] == 1
    assert ckpts.read_evaluation(6)["evaluations"] == 1   # before the final eval
  finally:
    ckpts.close()
  # When the finished run is started again, it resumes from step 6 and its
  # final evaluation reports the same pooled numbers.
  out = run_exp("arc_trm", w, *over)
  assert "Resumed from" in out.stdout
  again = eval_rows(w)[-1]
  pooled = {k: v for k, v in first[-1].items() if k.startswith("eval/pooled/")}
  assert {k: again[k] for k in pooled} == pooled


def test_puzzle_id_modes():
  ids = np.array([3, 4, 5, 0], np.int32)
  np.testing.assert_array_equal(evaluation._feed_ids(ids, "true", 9, 0), ids)
  np.testing.assert_array_equal(evaluation._feed_ids(ids, "blank", 9, 0), 0)
  r = evaluation._feed_ids(ids, "random", 9, (1, 2))
  assert r.dtype == ids.dtype and ((r >= 1) & (r < 9)).all()
  np.testing.assert_array_equal(r, evaluation._feed_ids(ids, "random", 9, (1, 2)))
  with pytest.raises(ValueError, match="puzzle_ids"):
    evaluation._feed_ids(ids, "zero", 9, 0)
  with pytest.raises(ValueError, match="blank one"):
    evaluation._feed_ids(ids, "random", 1, 0)


def test_blank_ids_run_end_to_end(tmp_path):
  out = run_exp("sudoku_trm", tmp_path / "w", "--config.eval.puzzle_ids=blank")
  assert "eval @ step 6" in out.stdout
