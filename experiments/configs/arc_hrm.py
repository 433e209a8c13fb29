"""HRM on ARC-AGI (arXiv 2506.21734).

    python -m experiments.arc_hrm --config=experiments/configs/arc_hrm.py:VARIANT \
        --workdir=/tmp/arc_hrm

Variants:
  paper: HRM (27M params: 4+4 layers, H2 L2, 1-step gradient, Q-learning
         halting with q_continue), ARC-AGI-1, batch 768, 100k epochs, no EMA (as
         the HRM release). Expected pass@2 40.3 (paper), 32 (ARC Prize verified).
         ConceptARC as arc_trm's: `--config.data.conceptarc=ConceptARC/corpus`.
  demo / smoke: as arc_trm's.
"""
from experiments.configs import arc_trm, common


def get_config(variant: str = "demo"):
  c = arc_trm.get_config(variant)
  tiny = variant in ("demo", "smoke")
  c.model = common.hrm_model()
  c.optim.ema = False
  if tiny:
    common.tiny(c, hidden_size=64 if variant == "demo" else 32,
                num_heads=4 if variant == "demo" else 2, H_layers=1, L_layers=1,
                H_cycles=2, L_cycles=2, halt_max_steps=4 if variant == "demo" else 2)
  return c
