"""FLOPs and bytes accessed of an optimized HLO module, from its text.

XLA's deviceless GPU executables answer `cost_analysis()` with UNIMPLEMENTED,
and the CPU's HloCostAnalysis counts GPU custom calls as -1, so
`experiments.aot` counts the optimized GPU program itself, in the spirit of
XLA's HloCostAnalysis:

* bytes accessed: for every top-level instruction that runs (fusions, custom
  calls (not their s8/u8 scratch workspaces), copies, ... not parameters, constants, tuples, get-tuple-element,
  bitcasts), the bytes of its operands plus its result; a fusion counts once,
  as one kernel reading its inputs and writing its outputs.
* FLOPs: matmuls only: 2 x output elements x contracted size for `dot`s (also
  inside fusions) and cuBLAS custom calls; Pallas Triton kernels what they
  declare in their metadata (`recur.kernels.gemm.call`: the matmul FLOPs of
  recur's fused-epilogue kernels; other kernels count 0); cuDNN flash attention
  4 B N Sq Skv K forward and 10 B N Sq Skv K backward (5 matmuls: the scores
  recomputed, dP, dV, dQ, dK).
* `while` bodies count times their known trip count (a rolled loop runs that
  many times; XLA's own analysis counts the body once).
"""
from __future__ import annotations

import dataclasses
import math
import re

__all__ = ["Cost", "module_cost", "shape_bytes", "breakdown", "main"]

_DTYPE_BYTES = {"pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "f16": 2,
                "bf16": 2, "s32": 4, "u32": 4, "f32": 4, "s64": 8, "u64": 8,
                "f64": 8, "c64": 8, "c128": 16, "f8e4m3fn": 1, "f8e5m2": 1,
                "s4": 1, "u4": 1, "token": 0}
_ARRAY = re.compile(r"\b([a-z][a-z0-9]*)\[([0-9,]*)\]")
_INSTR = re.compile(r"^\s*(?:ROOT\s+)?%([\w.\-]+)\s*=\s*(.*)$")
_HEADER = re.compile(r"^(ENTRY\s+)?%([\w.\-]+)\s.*\{\s*$")
_FREE = {"parameter", "constant", "tuple", "get-tuple-element", "bitcast",
         "while", "after-all", "partition-id", "replica-id", "iota"}


@dataclasses.dataclass
class Cost:
  flops: float = 0.0
  bytes: float = 0.0

  def add(self, other: "Cost", times: float = 1.0) -> None:
    self.flops += times * other.flops
    self.bytes += times * other.bytes


def _arrays(shape_text: str) -> list[tuple[str, list[int]]]:
  out = []
  for dt, dims in _ARRAY.findall(shape_text):
    if dt in _DTYPE_BYTES:
      out.append((dt, [int(d) for d in dims.split(",") if d]))
  return out


def shape_bytes(shape_text: str) -> int:
  return sum(_DTYPE_BYTES[dt] * math.prod(dims) for dt, dims in _arrays(shape_text))


def _split_shape_op(rhs: str) -> tuple[str, str, str]:
  """'TYPE op(args), attrs' -> (TYPE, op, 'args), attrs'); TYPE may be a tuple."""
  depth, i = 0, 0
  if rhs.startswith("("):
    for i, ch in enumerate(rhs):
      depth += ch == "("
      depth -= ch == ")"
      if depth == 0:
        break
    shape, rest = rhs[:i + 1], rhs[i + 1:].lstrip()
  else:
    shape, _, rest = rhs.partition(" ")
  op, _, args = rest.partition("(")
  return shape, op.strip(), args


def _operands(args: str) -> list[str]:
  depth, end = 1, len(args)
  for i, ch in enumerate(args):
    depth += ch == "("
    depth -= ch == ")"
    if depth == 0:
      end = i
      break
  return re.findall(r"%([\w.\-]+)", args[:end])


def _parse(text: str) -> tuple[dict[str, list[tuple]], str | None]:
  comps: dict[str, list[tuple]] = {}
  entry, cur = None, None
  for line in text.splitlines():
    m = _HEADER.match(line)
    if m and not line.startswith(" "):
      cur = m.group(2)
      comps[cur] = []
      if m.group(1):
        entry = cur
      continue
    if line.startswith("}"):
      cur = None
      continue
    if cur is None:
      continue
    m = _INSTR.match(line)
    if m:
      shape, op, args = _split_shape_op(m.group(2))
      comps[cur].append((m.group(1), shape, op, args))
  return comps, entry


def _dims_attr(args: str, name: str) -> list[int]:
  m = re.search(name + r"=\{([0-9,]*)\}", args)
  if m:
    return [int(x) for x in m.group(1).split(",") if x]
  m = re.search('"' + name + r'":\[([^\]]*)\]', args)
  return [int(x.strip().strip('"')) for x in m.group(1).split(",") if x.strip()] if m else []


def _dot_flops(out_shape: str, lhs_shape: str, args: str) -> float:
  out = _arrays(out_shape)
  lhs = _arrays(lhs_shape)
  if not out or not lhs:
    return 0.0
  dims = (_dims_attr(args, "lhs_contracting_dims")          # HLO dot
          or _dims_attr(args, "lhs_contracting_dimensions"))  # cuBLAS config
  contract = math.prod(lhs[0][1][d] for d in dims if d < len(lhs[0][1]))
  return 2.0 * math.prod(out[0][1]) * contract


# A Pallas Triton kernel's declared FLOPs (recur.kernels.gemm.call puts them
# in the kernel metadata, `serialized_metadata = "{\22flops\22: \22N\22}"`).
_KERNEL_FLOPS = re.compile(r'serialized_metadata\s*=\s*"[^"]*?'
                           r'(?:\\22|\\")flops(?:\\22|\\"):\s*(?:\\22|\\")(\d+)')


def _kernel_flops(args: str) -> float:
  m = _KERNEL_FLOPS.search(args)
  return float(m.group(1)) if m else 0.0


def _fmha_flops(q_shape: str, k_shape: str, backward: bool) -> float:
  q, k = _arrays(q_shape), _arrays(k_shape)
  if not q or not k or len(q[0][1]) != 4:
    return 0.0
  b, sq, n, d = q[0][1]     # cuDNN operands are [B, S, N, K]
  skv = k[0][1][1]
  return (10.0 if backward else 4.0) * b * n * sq * skv * d


def _comp_cost(name: str, comps, memo, flops_only: bool = False,
               rows: list | None = None, times: float = 1.0) -> Cost:
  """Cost of computation `name`; with `rows`, every costed top-level
  instruction is appended as (name, op, shape, op_name, Cost x times)."""
  key = (name, flops_only)
  if key in memo and rows is None:
    return memo[key]
  shapes = {n: s for n, s, _, _ in comps.get(name, [])}
  total = Cost()
  for instr, shape, op, args in comps.get(name, []):
    ops = _operands(args)
    if op == "while":
      body = re.search(r"body=%([\w.\-]+)", args)
      trips = re.search(r'"known_trip_count":\{"n":"(\d+)"\}', args)
      if body:
        n = int(trips.group(1)) if trips else 1
        total.add(_comp_cost(body.group(1), comps, memo, flops_only,
                             rows, times * n), n)
      continue
    c = Cost()
    if op == "fusion":
      called = re.search(r"calls=%([\w.\-]+)", args)
      if called:
        c.flops = _comp_cost(called.group(1), comps, memo, True).flops
    elif op in ("call", "async-start", "conditional"):
      for callee in re.findall(r"(?:to_apply|calls)=%([\w.\-]+)", args):
        total.add(_comp_cost(callee, comps, memo, flops_only, rows, times))
      continue
    elif op == "dot" and ops:
      c.flops = _dot_flops(shape, shapes.get(ops[0], ""), args)
    elif op == "custom-call":
      target = re.search(r'custom_call_target="([^"]+)"', args)
      target = target.group(1) if target else ""
      if "cublas" in target and "matmul" in target or target == "__cublas$gemm":
        c.flops = _dot_flops(shape, shapes.get(ops[0], ""), args) if ops else 0.0
      elif target.startswith("__cudnn$fmha") and len(ops) >= 2:
        c.flops = _fmha_flops(shapes.get(ops[0], ""), shapes.get(ops[1], ""),
                              "Backward" in target)
      elif target == "__gpu$xla.gpu.triton":
        c.flops = _kernel_flops(args)
    if not flops_only and op not in _FREE:
      out = shape
      if op == "custom-call":   # cuBLAS/cuDNN scratch workspaces are no traffic
        out = " ".join(f"{dt}[{','.join(map(str, d))}]" for dt, d in _arrays(shape)
                       if dt not in ("s8", "u8"))
      c.bytes = shape_bytes(out) + sum(shape_bytes(shapes.get(o, "")) for o in ops)
    total.add(c)
    if rows is not None and (c.bytes or c.flops):
      op_name = re.search(r'op_name="([^"]*)"', args)
      rows.append((instr, op, shape, op_name.group(1) if op_name else "",
                   Cost(c.flops * times, c.bytes * times)))
  memo[key] = total
  return total


def module_cost(text: str) -> Cost:
  """Cost of one run of the module's ENTRY computation (see module docstring)."""
  comps, entry = _parse(text)
  if entry is None:
    raise ValueError("no ENTRY computation in the HLO text")
  return _comp_cost(entry, comps, {})


def _source(op_name: str) -> str:
  """A short label for where an op came from: its jax op path without the
  jit/jvp/closed_call wrappers (module names and the primitive stay)."""
  parts = [p for p in op_name.split("/")
           if p and not p.startswith(("jit(", "closed_call", "jvp(", "checkpoint"))
           and p not in ("jvp()", "transpose(jvp())")]
  bwd = "bwd " if "transpose(" in op_name else ""
  return bwd + "/".join(parts[-3:])


def breakdown(text: str) -> list[tuple]:
  """Every costed top-level instruction of one ENTRY run, dearest (bytes)
  first: (name, op, shape, source label, Cost)."""
  comps, entry = _parse(text)
  if entry is None:
    raise ValueError("no ENTRY computation in the HLO text")
  rows: list = []
  _comp_cost(entry, comps, {}, rows=rows)
  rows = [(n, op, shape, _source(src), c) for n, op, shape, src, c in rows]
  return sorted(rows, key=lambda r: -r[4].bytes)


def main(argv=None) -> None:
  """`python -m experiments.hlo_cost FILE.hlo [--top=N] [--by=source|op]`:
  where an optimized HLO module's bytes go (a plan's `--dump_hlo` file)."""
  import argparse  # pylint: disable=g-import-not-at-top
  ap = argparse.ArgumentParser(description=main.__doc__)
  ap.add_argument("hlo")
  ap.add_argument("--top", type=int, default=30)
  ap.add_argument("--by", choices=("instr", "source", "op"), default="instr")
  a = ap.parse_args(argv)
  with open(a.hlo, encoding="utf-8") as f:
    rows = breakdown(f.read())
  total = sum(r[4].bytes for r in rows)
  print(f"total {total / 1e9:.2f} GB, {sum(r[4].flops for r in rows) / 1e12:.2f} "
        f"TFLOP over {len(rows)} instructions")
  if a.by == "instr":
    for n, op, shape, src, c in rows[:a.top]:
      print(f"{c.bytes / 1e9:8.2f} GB {100 * c.bytes / total:5.1f}%  {op:12s} "
            f"{n:32s} {shape[:40]:40s} {src}")
    return
  groups: dict[str, list] = {}
  for n, op, shape, src, c in rows:
    k = src if a.by == "source" else (n.rstrip("0123456789.").rstrip("_")
                                       if op == "fusion" else op)
    g = groups.setdefault(k, [0.0, 0.0, 0])
    g[0] += c.bytes
    g[1] += c.flops
    g[2] += 1
  for k, (b, fl, cnt) in sorted(groups.items(), key=lambda kv: -kv[1][0])[:a.top]:
    print(f"{b / 1e9:8.2f} GB {100 * b / total:5.1f}% {cnt:4d}x  "
          f"{fl / 1e12:7.2f} TFLOP  {k}")


if __name__ == "__main__":
  main()
