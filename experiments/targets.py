"""Accelerators that `experiments.aot` plans for, without the hardware.

Each target names its XLA platform, how to build its deviceless topology, and
the public figures the plan is judged against: memory per device, dense bf16
peak FLOP/s and HBM bandwidth (vendor datasheets; the H200's FLOP/s is the
measured 790 TFLOP/s of REFERENCE.md, as in experiments/bench.py, not the 989
on the datasheet).

GPUs: a `GpuTargetConfig` in protobuf text format (the facts XLA's GPU compiler
needs: SM count, shared memory, compute capability, cuDNN/CUDA versions).
TPUs: a libtpu topology name; per-chip plans compile on the devices of one chip
(v4 exposes its two TensorCores as two devices, v5p megacore one).
"""
from __future__ import annotations

import dataclasses

__all__ = ["Target", "TARGETS", "gpu_target_config"]

GiB = 1024**3


@dataclasses.dataclass(frozen=True)
class Target:
  name: str
  platform: str               # "gpu" or "tpu" (the attention/remat choices)
  memory_bytes: int           # per device
  peak_tflops: float          # dense bf16, per device
  hbm_gbps: float             # GB/s per device
  topology: str = "1x1x1"     # GPU: "1x1x1"; TPU: "<gen>:<shape>"
  devices_per_chip: int = 1
  gpu: dict | None = None     # GpuTargetConfig fields for GPUs
  description: str = ""


def gpu_target_config(g: dict) -> str:
  """The GpuTargetConfig text XLA's deviceless GPU compiler reads."""
  info = "\n".join(f"  {k}: {v}" for k, v in g["info"].items())
  major, minor = g["cc"]
  return (
      "gpu_device_info {\n" + info + "\n"
      f"  cuda_compute_capability {{ major: {major} minor: {minor} }}\n"
      "  registers_per_core_limit: 65536\n  registers_per_block_limit: 65536\n"
      "}\n"
      'platform_name: "CUDA"\n'
      "dnn_version_info { major: 9 minor: 8 }\n"
      "runtime_version { major: 12 minor: 9 }\n"
      f'device_description_str: "{g["name"]}"\n')


def _gpu_info(cores, smem_core, smem_optin, l2, bw, clock, mem, fpus=128):
  return dict(threads_per_block_limit=1024, threads_per_warp=32,
              shared_memory_per_block=49152, shared_memory_per_core=smem_core,
              threads_per_core_limit=2048, core_count=cores, fpus_per_core=fpus,
              block_dim_limit_x=2147483647, block_dim_limit_y=65535,
              block_dim_limit_z=65535, memory_bandwidth=bw, l2_cache_size=l2,
              clock_rate_ghz=clock, device_memory_size=mem,
              shared_memory_per_block_optin=smem_optin)


_H200_MEM = 150754820096   # 140.4 GiB usable of the 141 GB
_H100_MEM = 85520809984    # 79.6 GiB (H100 SXM 80 GB)
_A100_MEM = 85198045184    # 79.3 GiB (A100 SXM 80 GB)

TARGETS = {t.name: t for t in [
    Target("h200", "gpu", _H200_MEM, 790.0, 4800.0, gpu=dict(
        name="NVIDIA H200", cc=(9, 0),
        info=_gpu_info(132, 233472, 232448, 52428800, 4800000000000, 1.98,
                       _H200_MEM)),
           description="NVIDIA H200 SXM 141 GB"),
    Target("h100", "gpu", _H100_MEM, 989.0, 3350.0, gpu=dict(
        name="NVIDIA H100 80GB HBM3", cc=(9, 0),
        info=_gpu_info(132, 233472, 232448, 52428800, 3350000000000, 1.98,
                       _H100_MEM)),
           description="NVIDIA H100 SXM 80 GB"),
    Target("a100", "gpu", _A100_MEM, 312.0, 2039.0, gpu=dict(
        name="NVIDIA A100-SXM4-80GB", cc=(8, 0),
        info=_gpu_info(108, 167936, 166912, 41943040, 2039000000000, 1.41,
                       _A100_MEM, fpus=64)),
           description="NVIDIA A100 SXM 80 GB"),
    # TPU v4: 32 GiB HBM per chip, two TensorCores shown as two devices.
    Target("v4", "tpu", 16 * GiB, 137.5, 600.0, topology="v4:2x2x1",
           devices_per_chip=2, description="TPU v4 (per TensorCore)"),
    Target("v5e", "tpu", 16 * GiB, 197.0, 819.0, topology="v5e:2x2",
           description="TPU v5e"),
    Target("v5p", "tpu", 95 * GiB, 459.0, 2765.0, topology="v5p:2x2x1",
           description="TPU v5p (megacore)"),
    Target("v6e", "tpu", 32 * GiB, 918.0, 1640.0, topology="v6e:2x2",
           description="TPU v6e (Trillium)"),
]}
