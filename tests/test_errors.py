"""One-line, actionable errors: shape/config mismatches name the field and both
values; mistyped config keys list close matches; CPU runs print no backend
probe; the .pt export hands torch writable arrays; --compiled is explained."""
import os
import subprocess
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recur import act, checks, convert, models, train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cfg(**kw):
  base = dict(vocab_size=7, seq_len=6, hidden_size=16, num_heads=2, puzzle_emb_ndim=16,
              num_puzzle_identifiers=5, halt_max_steps=2, compute_dtype="float32",
              H_cycles=1, L_cycles=1, L_layers=1, H_layers=0)
  base.update(kw)
  return models.make_config("trm", **base)


def _batch(b=3, n=6, vocab=7, ids=5):
  rng = np.random.default_rng(0)
  return {"inputs": rng.integers(1, vocab, (b, n)).astype(np.int32),
          "labels": rng.integers(1, vocab, (b, n)).astype(np.int32),
          "puzzle_identifiers": rng.integers(0, ids, (b,)).astype(np.int32)}


def _one_line(e):
  msg = str(e.value)
  assert "\n" not in msg, msg
  return msg


def test_seq_len_mismatch_names_the_field_and_both_values():
  cfg = _cfg()
  params = cfg.init(jax.random.key(0))
  bad = _batch(n=5)
  # Given data of 5 positions and a config of 6: segment, act_step, rollout
  # and a jitted train_step each say so (the jitted one while tracing).
  with pytest.raises(checks.BatchMismatch) as e:
    cfg.segment(params, cfg.init_carry(3), bad)
  msg = _one_line(e)
  assert msg.startswith("segment:") and "ModelConfig.seq_len is 6" in msg and "5" in msg
  carry = act.empty_carry(cfg, _batch())
  with pytest.raises(checks.BatchMismatch, match=r"^act_step: .* 5 positions .*seq_len is 6"):
    act.act_step(cfg, params, carry, bad, train=False)
  with pytest.raises(checks.BatchMismatch, match=r"^rollout: .*seq_len is 6"):
    act.rollout(cfg, params, bad, 1)
  oc = train.OptimConfig(global_batch_size=3)
  state = train.init_state(jax.random.key(0), cfg, oc, _batch())
  step = jax.jit(lambda s, b: train.train_step(s, b, cfg=cfg, oc=oc))
  with pytest.raises(checks.BatchMismatch, match=r"^train_step: .*seq_len is 6"):
    step(state, {k: jnp.asarray(v) for k, v in bad.items()})
  # And a batch of other rows than the train state's carry.
  with pytest.raises(checks.BatchMismatch, match=r"^train_step: the batch has 4 rows but "
                     r"the ACT carry has 3"):
    step(state, {k: jnp.asarray(v) for k, v in _batch(b=4).items()})


def test_vocab_and_puzzle_ids_beyond_the_config_are_named():
  cfg = _cfg()
  params = cfg.init(jax.random.key(0))
  b = _batch()
  b["inputs"][0, 0] = 9
  with pytest.raises(checks.BatchMismatch) as e:
    cfg.segment(params, cfg.init_carry(3), b)
  msg = _one_line(e)
  assert "holds 9" in msg and "ModelConfig.vocab_size is 7" in msg and "vocab_size=10" in msg
  b = _batch()
  b["puzzle_identifiers"][1] = 5
  with pytest.raises(checks.BatchMismatch, match="num_puzzle_identifiers is 5"):
    act.rollout(cfg, params, b, 1)
  # Params of another vocabulary: both shapes named.
  other = _cfg(vocab_size=11).init(jax.random.key(0))
  with pytest.raises(checks.BatchMismatch) as e:
    cfg.segment(other, cfg.init_carry(3), _batch())
  assert "(11, 16)" in _one_line(e) and "(7, 16)" in str(e.value)
  # A fitting batch passes, eagerly and under jit.
  cfg.segment(params, cfg.init_carry(3), _batch())
  jax.jit(lambda p, b: cfg.segment(p, cfg.init_carry(3), b))(params, _batch())


def test_batch_vs_devices():
  with pytest.raises(checks.BatchMismatch) as e:
    checks.check_batch_fits_devices(10, 4, "config.batch_size")
  msg = _one_line(e)
  assert "config.batch_size=10" in msg and "4 devices" in msg and "8 or 12" in msg
  checks.check_batch_fits_devices(12, 4)


def _cli(*args, env=None):
  return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True,
                        text=True, timeout=120, env={**os.environ, **(env or {})})


@pytest.mark.parametrize("given_file", [False, True])
def test_unknown_config_key_is_one_line_with_close_matches(tmp_path, given_file):
  args = ["experiments.sudoku_trm", f"--workdir={tmp_path}", "--config.optim.ema_rat=0.9"]
  if given_file:  # overrides of an explicit --config= fail later, in flag parsing
    args.insert(1, "--config=experiments/configs/sudoku_trm.py:smoke")
  proc = _cli(*args, env={"RECUR_VERBOSE": ""})
  assert proc.returncode == 2
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1, proc.stderr
  assert lines[0].startswith("error: unknown config key --config.optim.ema_rat")
  assert "--config.optim.ema_rate" in lines[0]
  # With RECUR_VERBOSE the traceback is back.
  proc = _cli(*args, env={"RECUR_VERBOSE": "1"})
  assert proc.returncode != 0 and "Traceback" in proc.stderr


_PROBE_SCRIPT = """
import sys
from absl import app
from experiments import cli
if sys.argv[1] == "quiet":
  cli.quiet_backend_probe()
def main(argv):
  import jax
  print(jax.devices()[0].platform)
app.run(main, argv=sys.argv[:1])
"""


def test_backend_probe_is_silent_on_cpu():
  env = {**os.environ, "JAX_PLATFORMS": ""}
  run = lambda mode: subprocess.run([sys.executable, "-c", _PROBE_SCRIPT, mode], cwd=ROOT,
                                    capture_output=True, text=True, timeout=120, env=env)
  loud, quiet = run("loud"), run("quiet")
  assert quiet.returncode == 0, quiet.stderr
  if quiet.stdout.strip() != "cpu":
    pytest.skip("an accelerator is present: its probe succeeds anyway")
  assert "Unable to initialize backend" not in quiet.stderr, quiet.stderr
  if "Unable to initialize backend" not in loud.stderr:
    pytest.skip("this jax probes no absent backend here (no message to silence)")


def test_torch_export_gets_writable_arrays(monkeypatch, tmp_path):
  # A stand-in for torch that insists, as torch.from_numpy's warning does, on
  # writable arrays (the real torch is optional here).
  seen = {}

  def from_numpy(a):
    assert a.flags.writeable and a.flags.c_contiguous, "non-writable array to torch"
    return a

  fake = types.SimpleNamespace(from_numpy=from_numpy,
                               save=lambda sd, path: seen.update(sd=sd, path=path))
  monkeypatch.setitem(sys.modules, "torch", fake)
  cfg = _cfg()
  params = jax.tree.map(jnp.asarray, cfg.init(jax.random.key(0)))
  assert not np.asarray(params["H_init"]).flags.writeable  # the trap being avoided
  convert.save_torch_state_dict(params, str(tmp_path / "m.pt"), compiled=True)
  assert seen["sd"] and all(k.startswith("_orig_mod.model.inner.") for k in seen["sd"])
  np.testing.assert_array_equal(seen["sd"]["_orig_mod.model.inner.lm_head.weight"],
                                np.asarray(params["net"]["lm_head"]).T)


def test_compiled_is_explained_in_help_and_readme():
  proc = _cli("experiments.export", "--help")
  text = " ".join(proc.stdout.split())
  assert "--[no]compiled" in text and "pretrain.py" in text and "DISABLE_COMPILE" in text
  with open(os.path.join(ROOT, "README.md")) as f:
    readme = f.read()
  assert "--compiled" in readme and "pretrain.py" in readme
