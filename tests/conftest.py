"""Test-session settings shared by every test module and the subprocesses they
start: a persistent XLA compilation cache, so the many short runs that compile
the same train/eval steps (resume tests run the same config three times) compile
each graph once. Caching compiled programs does not change what they compute."""
import os
import tempfile

_CACHE = os.path.join(tempfile.gettempdir(), "recur-tests-jax-cache")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", _CACHE)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
