"""What a finished run prints and draws (results table; pictures when enabled)."""
from __future__ import annotations

import jax

__all__ = ["final_report", "results_table"]


def results_table(final: dict) -> str:
  rows = []
  for k in ("eval/pass@1", "eval/pass@2", "eval/exact_accuracy", "eval/accuracy",
            "eval/valid_rate", "eval/early_exit_exact_accuracy", "eval/early_exit_mean_steps"):
    if k in final:
      rows.append(f"| {k[5:]:<28} | {final[k]:8.4f} |")
  steps = sorted((int(k.split("@")[1]), v) for k, v in final.items()
                 if k.startswith("eval/exact_accuracy@"))
  for s, v in steps:
    rows.append(f"| exact_accuracy after step {s:<3} | {v:8.4f} |")
  if not rows:
    return ""
  return "| metric                       |    value |\n|---|---|\n" + "\n".join(rows)


def final_report(config, workdir: str, final: dict) -> None:
  if jax.process_index() != 0:
    return
  table = results_table(final)
  if table:
    print("\nResults (evaluation split):\n" + table, flush=True)
