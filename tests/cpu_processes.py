"""What the tests that start real processes (entry points, jax.distributed
peers) share: the environment of a CPU-only child with N fake devices, and a
free localhost port for a coordinator."""
import os
import socket


def cpu_env(devices: int = 1, **extra: str) -> dict[str, str]:
  """This process's environment for a CPU child with `devices` fake devices."""
  return {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
          "JAX_PLATFORMS": "cpu", **extra}


def free_port() -> int:
  """A localhost port nobody listens on now (for --coordinator_address)."""
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]
