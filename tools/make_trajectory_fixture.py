"""Training-trajectory fixtures: K real optimiser steps of the reference's `train_batch`.

Sibling of tools/make_reference_fixture.py (same venv, same reference checkouts,
its model presets and shims). Where that tool records forward passes and
gradients of frozen weights, this one imports the reference's own `pretrain.py`
(TinyRecursiveModels, unmodified) and calls its `train_batch` K times, with

* the reference's optimisers exactly as its `create_model` builds them:
  `CastedSparseEmbeddingSignSGD_Distributed` on the puzzle-embedding buffers
  (lr puzzle_emb_lr) and the `adam-atan2` 0.0.3 package's `AdamATan2` on
  `model.parameters()` (lr lr), in that order;
* its lr schedule (`compute_lr`: linear warmup then cosine to lr_min_ratio);
* its `EMAHelper` registered before the first step and updated after every
  `train_batch`, as `launch()` does;
* world size 1, global batch = batch, exploration probability 0.

Then it writes `<case>.npz` + `<case>.json` (json "kind": "trajectory"), which
`python -m recur.parity` replays with `recur.train.train_step`
(recur/parity_trajectory.py documents the comparison and its tolerances).

Setup (CPU torch; recur and jax are not needed here):

    python3 -m venv /work/venv-torch
    /work/venv-torch/bin/pip install torch==2.13.0+cpu numpy pydantic einops pytest pyyaml tqdm
    pip download adam-atan2==0.0.3 --no-deps --no-binary :all: -d /tmp/aa
    tar xzf /tmp/aa/adam_atan2-0.0.3.tar.gz -C /tmp/aa
    git -C <TinyRecursiveModels mirror> archive HEAD | tar -x -C /tmp/trmref
    /work/venv-torch/bin/python tools/make_trajectory_fixture.py \
        --reference_dir /tmp/trmref --adam_atan2_dir /tmp/aa/adam_atan2-0.0.3 \
        --out_dir tests/fixtures/trajectory --case traj_trm_att --case traj_trm_mlp \
        --case traj_hrm

Recording: the reference's initial state (its own init under
torch.manual_seed(seed), then the Q head and puzzle table randomised as in the
forward tool so rows halt at different steps); per step the batch, the loss
(the head's return value, captured with a forward hook), the metrics
`train_batch` returns, the carry's halted/steps after the step, and at
UPDATE_STEPS the change of every dense parameter (the Adam update, decay
included); at the end the dense parameters, the puzzle table and the EMA
shadow. Batches: a new random batch each step, ids drawn from fewer puzzle
identifiers than the batch has rows, so every step's looked-up ids contain
duplicates (asserted), labels -100 on ~20% of tokens.

Shims (printed when used), none touching the training arithmetic:
* `adam_atan2_backend`, the package's CUDA extension, is replaced by a module
  whose `adam_atan2_cuda_impl_` applies, tensor by tensor, the package's own
  pure-torch reference `_adam_atan2_reference_impl` (its adam_atan2_test.py)
  with the constants its test passes (step_size = lr / (1 - b1^t),
  wd_step_size = lr * wd, bias_correction2_sqrt = sqrt(1 - b2^t)), t being the
  package's float32 step counter, already incremented by `_adam_atan2`.
* pretrain.py's imports that train_batch never uses (wandb, coolname, hydra,
  omegaconf, argdantic) are stub modules when not installed.
* `Tensor.cuda` returns the tensor itself (train_batch moves the batch with
  `.cuda()`); the carry is created with the model's own `initial_carry` before
  the first call, which is what train_batch's `torch.device("cuda")` branch
  would do on a GPU.

Conditioning check (unless --no_check): halting must match exactly and the
puzzle table's sign-SGD steps are discontinuous, so the case is re-run with
every initial weight scaled by (1 + 1e-7 N(0, 1)) and refused if any halting
decision or step count changes, or the final puzzle table moves by more than
1e-5 relative (a sign flip of a near-zero summed gradient).
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import types

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_reference_fixture as fwd  # pylint: disable=wrong-import-position

STEPS = 12
UPDATE_STEPS = (0, 5, 11)
BATCH = 8
NUM_IDS = 5  # < BATCH: every batch's ids contain duplicates

OPTIM = {
    "lr": 1e-3, "lr_min_ratio": 0.1, "lr_warmup_steps": 3, "total_steps": 14,
    "weight_decay": 0.1, "beta1": 0.9, "beta2": 0.95,
    "puzzle_emb_lr": 1e-2, "puzzle_emb_weight_decay": 0.1,
    "ema": True, "ema_rate": 0.8,
}

_SMALL = {"batch_size": BATCH, "num_puzzle_identifiers": NUM_IDS}
PRESETS = {
    "traj_trm_att": fwd._preset(  # pylint: disable=protected-access
        fwd._TRM, seed=11, q_bias=(-1.5, 0.0), pos_encodings="rope",  # pylint: disable=protected-access
        L_layers=1, H_cycles=2, L_cycles=2, puzzle_emb_ndim=32, puzzle_emb_len=0,
        mlp_t=False, no_ACT_continue=True, **_SMALL),
    "traj_trm_mlp": fwd._preset(  # pylint: disable=protected-access
        fwd._TRM, seed=12, q_bias=(-0.5, 0.0), pos_encodings="none", mlp_t=True,  # pylint: disable=protected-access
        hidden_size=32, seq_len=14, puzzle_emb_ndim=40, puzzle_emb_len=2,
        L_layers=1, H_cycles=2, L_cycles=2, expansion=2, no_ACT_continue=True,
        **_SMALL),
    "traj_hrm": fwd._preset(  # pylint: disable=protected-access
        fwd._HRM_TRMREPO, seed=13, q_bias=(0.0, 0.0), pos_encodings="rope",  # pylint: disable=protected-access
        H_layers=1, L_layers=1, H_cycles=2, L_cycles=2, puzzle_emb_ndim=32,
        mlp_t=False, **_SMALL),
}


def _stub_unused_imports():
  for name in ("wandb", "coolname", "hydra", "omegaconf", "argdantic"):
    try:
      __import__(name)
    except ImportError:
      mod = types.ModuleType(name)

      class _Anything:
        def __init__(self, *a, **k):
          del a, k

        def __call__(self, *a, **k):
          return a[0] if a and callable(a[0]) and not k else _Anything()

        def __getattr__(self, item):
          if item.startswith("__"):
            raise AttributeError(item)
          return _Anything()

      def module_getattr(item, _anything=_Anything):
        if item.startswith("__"):
          raise AttributeError(item)
        return _anything
      mod.__getattr__ = module_getattr
      sys.modules[name] = mod
      print(f"shim: stub module {name} (imported by pretrain.py, unused by "
            "train_batch)", file=sys.stderr)


def _install_adam_atan2(adam_atan2_dir: str):
  """The package with its CUDA kernel replaced by its own pure-torch reference."""
  import torch  # pylint: disable=import-outside-toplevel
  sys.path.insert(0, os.path.abspath(adam_atan2_dir))
  backend = types.ModuleType("adam_atan2_backend")
  sys.modules["adam_atan2_backend"] = backend
  from adam_atan2.adam_atan2_test import _adam_atan2_reference_impl  # pylint: disable=import-outside-toplevel

  def adam_atan2_cuda_impl_(params, grads, exp_avgs, exp_avg_sqs, steps, lr,
                            beta1, beta2, weight_decay):
    with torch.no_grad():
      for p, g, m, v, t in zip(params, grads, exp_avgs, exp_avg_sqs, steps):
        t = float(t)  # the package's float32 counter, incremented already
        new_p, new_m, new_v = _adam_atan2_reference_impl(
            p.detach().clone(), g, m.clone(), v.clone(),
            step_size=lr / (1 - beta1 ** t), wd_step_size=lr * weight_decay,
            bias_correction2_sqrt=math.sqrt(1 - beta2 ** t),
            beta1=beta1, beta2=beta2)
        p.copy_(new_p)
        m.copy_(new_m)
        v.copy_(new_v)
  backend.adam_atan2_cuda_impl_ = adam_atan2_cuda_impl_
  print("shim: adam_atan2_backend.adam_atan2_cuda_impl_ -> the package's "
        "_adam_atan2_reference_impl (adam_atan2_test.py)", file=sys.stderr)


def _batch(rng: np.random.Generator, cfg: dict) -> dict:
  b, s, v = cfg["batch_size"], cfg["seq_len"], cfg["vocab_size"]
  inputs = rng.integers(0, v, (b, s)).astype(np.int32)
  labels = rng.integers(0, v, (b, s)).astype(np.int32)
  labels[rng.random((b, s)) < 0.2] = -100
  ids = rng.integers(0, cfg["num_puzzle_identifiers"], (b,)).astype(np.int32)
  return {"inputs": inputs, "labels": labels, "puzzle_identifiers": ids}


def generate(spec: dict, reference_dir: str, case: str, data_seed: int = 0,
             perturb: float = 0.0, perturb_seed: int = 0):
  """Runs K steps of the reference's train_batch; returns (json meta, npz arrays)."""
  import torch  # pylint: disable=import-outside-toplevel
  torch.set_num_threads(1)
  torch.use_deterministic_algorithms(True)
  model_mod, losses = fwd._import_reference(reference_dir, spec["module"])  # pylint: disable=protected-access
  pretrain = __import__("pretrain")
  from models.ema import EMAHelper  # pylint: disable=import-outside-toplevel
  from models.sparse_embedding import CastedSparseEmbeddingSignSGD_Distributed  # pylint: disable=import-outside-toplevel
  cfg = copy.deepcopy(spec["config"])
  oc = OPTIM

  torch.manual_seed(spec["seed"])
  model = getattr(model_mod, spec["model_class"])(cfg)
  inner = model.inner
  with torch.no_grad():
    inner.q_head.weight.normal_(0.0, spec["q_std"])
    inner.q_head.bias.copy_(torch.tensor(spec["q_bias"], dtype=torch.float32))
    inner.puzzle_emb.weights.normal_(0.0, 0.5)
    if perturb:
      gen = torch.Generator().manual_seed(perturb_seed)
      for t in list(model.parameters()) + list(model.buffers()):
        if t.is_floating_point():
          t.mul_(1 + perturb * torch.randn(t.shape, generator=gen))
  head = losses.ACTLossHead(model, loss_type=spec["loss_type"])

  fx: dict[str, np.ndarray] = {}
  for name, p in model.named_parameters(prefix="model"):
    fx[f"param/{name}"] = p.detach().numpy().astype(np.float32)
  for name, buf in model.named_buffers(prefix="model"):
    if name.rsplit(".", 1)[-1] in ("local_weights", "local_ids", "cos_cached", "sin_cached"):
      continue
    fx[f"buffer/{name}"] = buf.detach().numpy().astype(np.float32)

  # create_model's optimisers (puzzle_emb_ndim > 0, weights not frozen).
  config = pretrain.PretrainConfig(
      arch={"name": "unused", "loss": {"name": "unused"}}, data_paths=[],
      global_batch_size=BATCH, epochs=1, lr=oc["lr"], lr_min_ratio=oc["lr_min_ratio"],
      lr_warmup_steps=oc["lr_warmup_steps"], weight_decay=oc["weight_decay"],
      beta1=oc["beta1"], beta2=oc["beta2"], puzzle_emb_lr=oc["puzzle_emb_lr"],
      puzzle_emb_weight_decay=oc["puzzle_emb_weight_decay"], ema=oc["ema"],
      ema_rate=oc["ema_rate"])
  optimizers = [
      CastedSparseEmbeddingSignSGD_Distributed(
          head.model.puzzle_emb.buffers(), lr=0,
          weight_decay=config.puzzle_emb_weight_decay, world_size=1),
      pretrain.AdamATan2(head.parameters(), lr=0, weight_decay=config.weight_decay,
                         betas=(config.beta1, config.beta2)),
  ]
  state = pretrain.TrainState(model=head, optimizers=optimizers,
                              optimizer_lrs=[config.puzzle_emb_lr, config.lr],
                              carry=None, step=0, total_steps=oc["total_steps"])
  ema = EMAHelper(mu=config.ema_rate)
  ema.register(head)
  head.train()

  captured = []
  head.register_forward_hook(lambda m, a, out: captured.append(out[1].detach()))
  rng = np.random.default_rng(data_seed)
  dense = dict(head.named_parameters())
  for t in range(STEPS):
    p = f"step{t}"
    batch = _batch(rng, cfg)
    for k, v in batch.items():
      fx[f"{p}/batch/{k}"] = v
    tb = {k: torch.from_numpy(v) for k, v in batch.items()}
    if state.carry is None:
      state.carry = head.initial_carry(tb)
    before = {k: v.detach().clone() for k, v in dense.items()}
    metrics = pretrain.train_batch(config, state, tb, global_batch_size=BATCH,
                                   rank=0, world_size=1)
    ema.update(head)
    ids = state.carry.current_data["puzzle_identifiers"].numpy()
    assert len(np.unique(ids)) < len(ids), f"{p}: no duplicate puzzle ids"
    fx[f"{p}/loss"] = np.asarray(captured[-1].numpy(), np.float64)
    for k, v in metrics.items():
      fx[f"{p}/metric/{k.removeprefix('train/')}"] = np.asarray(v, np.float64)
    fx[f"{p}/carry_out/halted"] = state.carry.halted.numpy().astype(bool)
    fx[f"{p}/carry_out/steps"] = state.carry.steps.numpy().astype(np.int32)
    fx[f"{p}/current_data/puzzle_identifiers"] = ids.astype(np.int32)
    if t in UPDATE_STEPS:
      for k, v in dense.items():
        fx[f"{p}/update/{k}"] = (v.detach() - before[k]).numpy().astype(np.float32)
  for k, v in dense.items():
    fx[f"final/param/{k}"] = v.detach().numpy().astype(np.float32)
  for k, v in ema.state_dict().items():
    fx[f"final/ema/{k}"] = v.detach().numpy().astype(np.float32)
  fx["final/puzzle_emb"] = inner.puzzle_emb.weights.detach().numpy().astype(np.float32)

  meta = {"kind": "trajectory", "batch": BATCH, "case": case,
          "config": model.config.model_dump(), "loss_type": spec["loss_type"],
          "model": spec["model"], "steps": STEPS, "update_steps": list(UPDATE_STEPS),
          "optim": dict(oc)}
  return meta, fx


def conditioning_check(spec, reference_dir, case, data_seed, fx, rel=1e-7, trials=3):
  unstable = set()
  for trial in range(trials):
    _, other = generate(spec, reference_dir, case, data_seed, perturb=rel,
                        perturb_seed=trial + 1)
    for k, v in fx.items():
      if "/carry_out/" in k and not np.array_equal(v, other[k]):
        unstable.add(k)
    table = fx["final/puzzle_emb"]
    if np.max(np.abs(other["final/puzzle_emb"] - table)) > 1e-5 * np.max(np.abs(table)):
      unstable.add("final/puzzle_emb")
  return sorted(unstable)


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--reference_dir", required=True, help="TinyRecursiveModels checkout")
  ap.add_argument("--adam_atan2_dir", required=True,
                  help="extracted adam-atan2 0.0.3 sdist (has adam_atan2/)")
  ap.add_argument("--out_dir", default="tests/fixtures/trajectory")
  ap.add_argument("--case", action="append", default=[], choices=sorted(PRESETS))
  ap.add_argument("--data_seed", type=int, default=0)
  ap.add_argument("--seed", type=int, help="override the preset's torch seed")
  ap.add_argument("--no_check", action="store_true")
  args = ap.parse_args(argv)
  _stub_unused_imports()
  _install_adam_atan2(args.adam_atan2_dir)
  import torch  # pylint: disable=import-outside-toplevel
  torch.Tensor.cuda = lambda self, *a, **k: self
  print("shim: Tensor.cuda -> identity (CPU run)", file=sys.stderr)
  os.makedirs(args.out_dir, exist_ok=True)
  for case in args.case or sorted(PRESETS):
    spec = copy.deepcopy(PRESETS[case])
    if args.seed is not None:
      spec["seed"] = args.seed
    meta, fx = generate(spec, args.reference_dir, case, args.data_seed)
    if not args.no_check:
      unstable = conditioning_check(spec, args.reference_dir, case, args.data_seed, fx)
      if unstable:
        print(f"{case}: ill-conditioned under 1e-7 weight noise: {unstable}; "
              "choose another --seed/--data_seed", file=sys.stderr)
        return 1
    npz = os.path.join(args.out_dir, case + ".npz")
    np.savez_compressed(npz, **fx)
    with open(os.path.join(args.out_dir, case + ".json"), "w") as f:
      json.dump(meta, f, indent=1, sort_keys=True)
      f.write("\n")
    halts = " ".join("".join(str(int(h)) for h in fx[f"step{t}/carry_out/halted"])
                     for t in range(STEPS))
    print(f"wrote {npz} ({len(fx)} arrays, {os.path.getsize(npz)} bytes)\n"
          f"  halted per step: {halts}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
