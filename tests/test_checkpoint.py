"""recur.checkpoint and recur.fingerprint: the library's verified save/restore
(zero-size leaves, checksums) and what a resumed run must agree with."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recur import checkpoint, fingerprint, models, train


def _cfg(**kw):
  return models.make_config("trm", vocab_size=12, seq_len=16, num_puzzle_identifiers=4,
                            hidden_size=32, num_heads=2, H_cycles=1, L_cycles=1, **kw)


def _equal(a, b):
  la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
  return len(la) == len(lb) and all(
      x.shape == y.shape and x.dtype == y.dtype and np.array_equal(np.asarray(x), np.asarray(y))
      for x, y in zip(la, lb))


def test_params_without_puzzle_table_save_and_restore(tmp_path):
  # Given params of a model without a puzzle table (a [N, 0] leaf, which Orbax
  # alone refuses to save).
  params = _cfg(puzzle_emb_ndim=0).init(jax.random.PRNGKey(0))
  assert params["puzzle_emb"].size == 0
  # When they are saved and restored through the library, with and without a target.
  checkpoint.save(tmp_path / "p", params)
  plain = checkpoint.restore(tmp_path / "p")
  target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params)
  typed = checkpoint.restore(tmp_path / "p", target)
  # Then every leaf, the empty table included, comes back equal.
  assert plain["puzzle_emb"].shape == (4, 0)
  assert _equal(plain, params) and _equal(typed, params)


def test_train_state_with_empty_leaves_roundtrips(tmp_path):
  cfg = _cfg(puzzle_emb_ndim=0)
  oc = train.OptimConfig(global_batch_size=2, total_steps=4)
  batch = {"inputs": jnp.zeros((2, 16), jnp.int32), "labels": jnp.zeros((2, 16), jnp.int32),
           "puzzle_identifiers": jnp.zeros((2,), jnp.int32)}
  state = train.init_state(jax.random.PRNGKey(1), cfg, oc, batch)
  state, _ = jax.jit(lambda s, b: train.train_step(s, b, cfg=cfg, oc=oc))(state, batch)
  checkpoint.save(tmp_path / "s", state)
  back = checkpoint.restore(tmp_path / "s", jax.eval_shape(lambda: state))
  assert isinstance(back, train.TrainState)
  assert _equal(back, state)


def _largest_file(root):
  files = [os.path.join(r, f) for r, _, fs in os.walk(root) for f in fs]
  return max(files, key=os.path.getsize)


@pytest.mark.parametrize("bit", [0, 5])
def test_flipped_bit_in_a_weight_file_is_detected(tmp_path, bit):
  params = _cfg().init(jax.random.PRNGKey(0))
  checkpoint.save(tmp_path / "p", params)
  # Given one bit flipped in the middle of the largest array file.
  path = _largest_file(tmp_path / "p" / "tree")
  data = bytearray(open(path, "rb").read())
  data[len(data) // 2] ^= 1 << bit
  open(path, "wb").write(bytes(data))
  # Then restoring names the damage instead of returning changed weights.
  with pytest.raises(checkpoint.CheckpointDamaged, match="checksum mismatch|does not restore"):
    checkpoint.restore(tmp_path / "p")


def test_checksum_changes_with_any_single_bit_and_not_with_sharding():
  x = jnp.arange(24, dtype=jnp.float32).reshape(4, 6) / 7
  base = checkpoint.tree_checksums({"x": x})["x"]
  bits = jax.lax.bitcast_convert_type(x, jnp.uint32)
  for i, k in [(0, 0), (5, 31), (23, 13)]:
    flipped = bits.reshape(-1).at[i].set(bits.reshape(-1)[i] ^ np.uint32(1 << k))
    y = jax.lax.bitcast_convert_type(flipped.reshape(4, 6), jnp.float32)
    assert checkpoint.tree_checksums({"x": y})["x"] != base, (i, k)
  # Two elements swapped (same multiset of values) is a change too.
  assert checkpoint.tree_checksums({"x": x[::-1]})["x"] != base
  # bf16, int and bool leaves are covered as well.
  sums = checkpoint.tree_checksums({"b": x.astype(jnp.bfloat16), "i": jnp.arange(3),
                                    "m": jnp.array([True, False])})
  assert set(sums) == {"b", "i", "m"}


def test_fingerprint_names_a_changed_data_file(tmp_path):
  d = tmp_path / "data"
  d.mkdir()
  (d / "train.csv").write_text("source,q,a\nx,1..,123\n")
  before = fingerprint.data_files(str(d))
  # Another CSV of the same length.
  (d / "train.csv").write_text("source,q,a\nx,2..,213\n")
  after = fingerprint.data_files(str(d))
  diffs = fingerprint.diff({"data": {"files": before}}, {"data": {"files": after}})
  assert len(diffs) == 1 and diffs[0].startswith("data.files.train.csv.sha256")
  # A file added to the data directory is a change as well.
  (d / "test.csv").write_text("source,q,a\n")
  diffs = fingerprint.diff({"data": {"files": after}},
                           {"data": {"files": fingerprint.data_files(str(d))}})
  assert any("test.csv" in x for x in diffs)


def test_fields_an_older_checkpoint_lacks_are_not_differences():
  saved = {"model": {"hidden_size": 32}, "data": {"name": "sudoku"}}
  now = {"model": {"hidden_size": 32}, "seed": 0,
         "data": {"name": "sudoku", "options": {"seed": 0}, "source": {"n": 3}}}
  assert fingerprint.diff(saved, now) == []
  assert fingerprint.diff({**saved, "seed": 1}, now) == ["seed: checkpoint 1 vs now 0"]
  assert fingerprint.optim_changes({"lr": 1e30, "beta1": 0.9}, {"lr": 1e-3, "beta1": 0.9}) \
      == ["optim.lr: 1e+30 -> 0.001"]


class _Info:
  name, seq_len, vocab_size, num_puzzle_identifiers = "sudoku", 81, 11, 2


class _Source:
  info = _Info()

  def describe(self):
    return {"name": "sudoku", "num_aug": 3}


def test_a_stored_dataset_is_not_compared_by_the_generator_options():
  cfg = models.make_config("trm", vocab_size=11, seq_len=81, hidden_size=16, num_heads=2,
                          puzzle_emb_ndim=16)

  def fp(**data):
    return fingerprint.resume_view(
        fingerprint.run_fingerprint(cfg, 8, _Source(), data, seed=0))

  # Given the same built dataset read with two different generator options in
  # the config (they are not used: the dataset was fixed when built),
  tfds = dict(name="recur_sudoku/smoke", source="tfds", data_dir="/d")
  assert fingerprint.diff(fp(**tfds, num_aug=3), fp(**tfds, num_aug=7)) == []
  assert fingerprint.diff(fp(name="prepared", path="/a", num_aug=3),
                          fp(name="prepared", path="/b", num_aug=7)) == []
  # while for the generator itself the option is the data and is named,
  assert fingerprint.diff(fp(name="sudoku", num_aug=3), fp(name="sudoku", num_aug=7)) \
      == ["data.options.num_aug: checkpoint 3 vs now 7"]
  # and another stored dataset is a change.
  assert fingerprint.diff(fp(**tfds), fp(**{**tfds, "name": "recur_sudoku/paper"})) \
      == ["data.options.name: checkpoint 'recur_sudoku/smoke' vs now 'recur_sudoku/paper'"]
  # A checkpoint that recorded the unused options (older code) still resumes.
  old = fp(**tfds, num_aug=3)
  old["data"]["options"]["num_aug"] = 3
  assert fingerprint.diff(old, fp(**tfds, num_aug=9)) == []
