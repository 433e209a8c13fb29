r"""Where a TPU plan's bytes go: `python -m experiments.tpu_breakdown FILE.hlo.txt`.

`experiments.aot --dump_hlo=DIR` writes each compiled plan's optimized HLO;
XLA's TPU cost analysis (`compiled.cost_analysis()`) only gives the module's
totals. This counts every instruction that runs, as XLA's HloCostAnalysis
does for bytes (a fusion or custom call reads its operands and writes its
result; parameters, tuples, bitcasts and the like are free; `while` bodies
times their trip count), and groups the bytes:

* `--by=kind` (default): what runs: a Mosaic kernel by its name (`tpu_custom_call`
  with the kernel's name), a fusion by whether it holds a matmul
  (`fusion:matmul`) or is elementwise/reduction work (`fusion:loop`,
  `fusion:reduce`), `copy` (layout changes: transposes that XLA did not fold
  into a neighbour), `pad`/`slice` etc. by opcode.
* `--by=source`: the JAX primitive the instruction came from (the last part
  of its `op_name` metadata), split into forward and backward (`transpose(`
  in the name: JAX's VJP) and, within those, remat recomputation (`remat`/
  `checkpoint` in the name).

For Mosaic kernels it also prints the bytes of their `cost_estimate` (what
XLA's TPU cost model is told when a Pallas kernel supplies one) next to their
operand + result bytes, and marks kernels that supply none. The first line's
`tiled_kernels_by_estimate_gb` (tiled bytes, kernels by their estimate) is the
count to hold against XLA's `bytes accessed`: 2-9% above it on the plans in
docs/benchmarks.md.

`logical` bytes are the arrays' element counts times their dtype size;
`tiled` bytes round the two minor-most dimensions (in layout order) up to the
layout's first tile, e.g. T(8,128): what the array occupies in HBM, and what
a kernel streams when its minor dimension is narrower than 128 lanes.
"""
from __future__ import annotations

import argparse
import collections
import json
import math
import re
from typing import Iterator

from experiments import hlo_cost

__all__ = ["instructions", "breakdown", "tiled_bytes"]

_DTYPE_BYTES = hlo_cost._DTYPE_BYTES  # pylint: disable=protected-access
# dtype[dims]{minor_to_major:T(a,b)...}
_ARRAY_LAYOUT = re.compile(r"\b([a-z][a-z0-9]*)\[([0-9,]*)\](?:\{([0-9,]*)(?::([^}]*))?\})?")
_TILE = re.compile(r"T\(([0-9,]+)\)")


def tiled_bytes(shape_text: str) -> tuple[int, int]:
  """(logical, tiled) bytes of every array in an HLO shape string."""
  logical = tiled = 0
  for dt, dims_s, layout_s, attrs in _ARRAY_LAYOUT.findall(shape_text):
    if dt not in _DTYPE_BYTES:
      continue
    dims = [int(d) for d in dims_s.split(",") if d]
    size = _DTYPE_BYTES[dt]
    logical += size * math.prod(dims)
    padded = list(dims)
    tile = _TILE.search(attrs or "")
    if tile and layout_s and dims:
      t = [int(x) for x in tile.group(1).split(",")]
      m2m = [int(x) for x in layout_s.split(",") if x]
      # The tile's last entry covers the most-minor dimension, and so on.
      for ti, d in zip(reversed(t), m2m):
        padded[d] = -(padded[d] // -ti) * ti
    tiled += size * math.prod(padded)
  return logical, tiled


def _kernel_name(instr_name: str, args: str) -> str:
  m = re.search(r'custom_call_target="([^"]+)"', args)
  target = m.group(1) if m else "?"
  if target != "tpu_custom_call":
    return target
  return "mosaic:" + re.sub(r"\.\d+$", "", instr_name)


def _cost_estimate(args: str) -> dict | None:
  m = re.search(r'\\?"cost_estimate\\?"\s*:\s*(\{[^}]*\})', args)
  if not m:
    return None
  try:
    return json.loads(m.group(1).replace('\\"', '"'))
  except json.JSONDecodeError:
    return None


def _source(args: str) -> str:
  m = re.search(r'op_name="([^"]+)"', args)
  if not m:
    return "?"
  name = m.group(1)
  phase = "bwd" if "transpose(" in name else "fwd"
  if "remat" in name or "checkpoint" in name:
    phase += "+remat"
  prim = name.rsplit("/", 1)[-1]
  prim = re.sub(r"[\[(].*", "", prim)
  return f"{phase}:{prim}"


def _fusion_kind(called: str, comps) -> str:
  ops = {op for _, _, op, _ in comps.get(called, [])}
  if ops & {"dot", "convolution"}:
    return "fusion:matmul"
  if ops & {"reduce", "reduce-window", "scatter"}:
    return "fusion:reduce"
  if ops <= {"parameter", "bitcast", "copy", "transpose", "tuple"}:
    return "fusion:layout"
  return "fusion:loop"


def instructions(text: str) -> Iterator[dict]:
  """Every instruction that runs, with its trip count, kind, source and bytes."""
  comps, entry = hlo_cost._parse(text)  # pylint: disable=protected-access
  if entry is None:
    raise ValueError("no ENTRY computation in the HLO text")

  def walk(name: str, times: int) -> Iterator[dict]:
    shapes = {n: s for n, s, _, _ in comps.get(name, [])}
    for iname, shape, op, args in comps.get(name, []):
      ops = hlo_cost._operands(args)  # pylint: disable=protected-access
      if op == "while":
        body = re.search(r"body=%([\w.\-]+)", args)
        trips = re.search(r'"known_trip_count":\{"n":"(\d+)"\}', args)
        if body:
          yield from walk(body.group(1), times * (int(trips.group(1)) if trips else 1))
        continue
      if op in ("call", "conditional"):
        for callee in re.findall(r"(?:to_apply|calls|branch_computations)=\{?%([\w.\-]+)", args):
          yield from walk(callee, times)
        continue
      if op in hlo_cost._FREE:  # pylint: disable=protected-access
        continue
      kind, estimate = op, None
      if op == "fusion":
        called = re.search(r"calls=%([\w.\-]+)", args)
        kind = _fusion_kind(called.group(1), comps) if called else "fusion:?"
      elif op == "custom-call":
        kind = _kernel_name(iname, args)
        estimate = _cost_estimate(args)
      out_l, out_t = tiled_bytes(shape)
      in_l = in_t = 0
      for o in dict.fromkeys(ops):     # an operand passed twice is read once
        l, t = tiled_bytes(shapes.get(o, ""))
        in_l, in_t = in_l + l, in_t + t
      yield {"name": iname, "times": times, "kind": kind, "source": _source(args),
             "logical": times * (in_l + out_l), "tiled": times * (in_t + out_t),
             "estimate": estimate, "has_estimate": estimate is not None,
             "shape": shape[:120]}

  yield from walk(entry, 1)


def breakdown(text: str, by: str = "kind") -> list[dict]:
  """Bytes (logical, tiled; GB) and instruction counts per group, largest first."""
  groups: dict[str, dict] = collections.defaultdict(
      lambda: {"count": 0, "logical": 0, "tiled": 0, "estimate": 0, "no_estimate": 0})
  for ins in instructions(text):
    g = groups[ins[by]]
    g["count"] += ins["times"]
    g["logical"] += ins["logical"]
    g["tiled"] += ins["tiled"]
    if ins["kind"].startswith("mosaic:"):
      if ins["estimate"] is not None:
        g["estimate"] += ins["times"] * int(ins["estimate"].get("bytes_accessed", 0))
      else:
        g["no_estimate"] += ins["times"]
  rows = [{"group": k, "count": v["count"], "logical_gb": round(v["logical"] / 1e9, 2),
           "tiled_gb": round(v["tiled"] / 1e9, 2),
           **({"estimate_gb": round(v["estimate"] / 1e9, 2),
               "kernels_without_estimate": v["no_estimate"]}
              if k.startswith("mosaic:") or by == "source" and (v["estimate"] or v["no_estimate"])
              else {})}
          for k, v in groups.items()]
  return sorted(rows, key=lambda r: -r["logical_gb"])


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("hlo", nargs="+", help="optimized HLO text (experiments.aot --dump_hlo)")
  p.add_argument("--by", choices=("kind", "source"), default="kind")
  p.add_argument("--top", type=int, default=25)
  a = p.parse_args()
  for path in a.hlo:
    with open(path, encoding="utf-8") as f:
      text = f.read()
    rows = breakdown(text, a.by)
    ins = list(instructions(text))
    # What XLA's TPU cost analysis is told: tiled bytes, a Mosaic kernel by
    # its cost estimate where it gives one.
    told = sum(i["times"] * int(i["estimate"].get("bytes_accessed", 0))
               if i["estimate"] is not None else i["tiled"] for i in ins)
    total = {"file": path, "by": a.by,
             "logical_gb": round(sum(i["logical"] for i in ins) / 1e9, 2),
             "tiled_gb": round(sum(i["tiled"] for i in ins) / 1e9, 2),
             "tiled_kernels_by_estimate_gb": round(told / 1e9, 2)}
    print(json.dumps(total))
    for r in rows[:a.top]:
      print(json.dumps(r))


if __name__ == "__main__":
  main()
