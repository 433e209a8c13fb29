"""What every experiments entry point shares on the command line: one-line
errors instead of tracebacks (tracebacks back with --verbose or RECUR_VERBOSE=1),
close matches for mistyped `--config.` keys, and a quiet backend probe.
"""
from __future__ import annotations

import difflib
import logging
import os
import sys
from typing import Any, Callable, Sequence

__all__ = ["quiet_backend_probe", "verbose", "config_key_error", "load_config_file",
           "exit_with_one_line", "flags_parser", "run"]

_PROBE = "Unable to initialize backend"


class _DropBackendProbe(logging.Filter):
  """Drops jax's INFO line about a platform it could not start while
  probing (on a CPU-only host: "Unable to initialize backend 'tpu': ... libtpu.so").
  Only that INFO record: a backend that was asked for (JAX_PLATFORMS) fails
  loudly as before, and the WARNING jax logs when a TPU is present but
  unusable still shows."""

  def filter(self, record: logging.LogRecord) -> bool:
    return not (record.levelno <= logging.INFO and
                str(record.msg).startswith(_PROBE))


def quiet_backend_probe() -> None:
  """Installs the filter on jax's backend logger (idempotent; entry points only:
  the library never touches logging)."""
  logger = logging.getLogger("jax._src.xla_bridge")
  if not any(isinstance(f, _DropBackendProbe) for f in logger.filters):
    logger.addFilter(_DropBackendProbe())


def verbose(argv: Sequence[str] | None = None) -> bool:
  """Whether to keep full tracebacks: --verbose on the command line, or
  RECUR_VERBOSE set to a non-empty value other than 0."""
  argv = sys.argv if argv is None else argv
  env = os.environ.get("RECUR_VERBOSE", "")
  return env not in ("", "0") or any(a in ("--verbose", "--verbose=true", "--verbose=1")
                                     for a in argv)


def _paths(config: Any, prefix: str = "") -> list[str]:
  """Every dotted key of a ConfigDict (or dict), nested ones included."""
  out = []
  items = config.items() if hasattr(config, "items") else []
  for k, v in items:
    path = f"{prefix}{k}"
    out.append(path)
    if hasattr(v, "items"):
      out.extend(_paths(v, path + "."))
  return out


def config_key_error(config: Any, argv: Sequence[str], flag: str = "config") -> str | None:
  """One line for the first `--config.KEY=...` whose KEY is not in `config`,
  with the close matches; None when every key exists."""
  if config is None:
    return None
  known = _paths(config)
  for arg in argv:
    head = f"--{flag}."
    if not arg.startswith(head):
      continue
    key = arg[len(head):].split("=", 1)[0]
    if key in known:
      continue
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
    if not close:  # a typo in the last part only: compare within its parent
      parent = key.rsplit(".", 1)[0] + "." if "." in key else ""
      close = [p for p in known if p.startswith(parent) and "." not in p[len(parent):]]
      close = difflib.get_close_matches(key, close, n=3, cutoff=0.0) if close else []
    hint = (f"; did you mean {' or '.join('--' + flag + '.' + c for c in close)}?"
            if close else "")
    return f"unknown config key --{flag}.{key}{hint}"
  return None


def load_config_file(spec: str) -> Any:
  """`FILE.py[:ARG]` -> that file's `get_config(ARG)` (what --config loads)."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  path, _, arg = spec.partition(":")
  module_spec = importlib.util.spec_from_file_location("_recur_cli_config", path)
  if module_spec is None or module_spec.loader is None:
    raise FileNotFoundError(path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


def _config_of(argv: Sequence[str], default: str | None) -> Any:
  """The config a failed parse was overriding: the `--config=FILE:ARG` of the
  command line, else `default`, loaded afresh (None if it does not load)."""
  given = [a.split("=", 1)[1] for a in argv if a.startswith("--config=")]
  spec = given[-1] if given else default
  if not spec:
    return None
  try:
    return load_config_file(spec)
  except Exception:  # pylint: disable=broad-except
    return None  # the config file itself is broken: the error says so


def exit_with_one_line(error: BaseException, argv: Sequence[str],
                       default_config: str | None = None) -> None:
  """Prints `error` as one line (an unknown `--config.` key with its close
  matches, else the error's first line) and exits with status 2; with
  --verbose / RECUR_VERBOSE the exception propagates with its traceback."""
  if verbose(argv):
    raise error
  msg = config_key_error(_config_of(argv, default_config), argv[1:])
  if msg is None:
    text = str(error).strip()
    msg = f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"
  print(f"error: {msg} (--helpfull lists the flags; --verbose keeps the "
        f"traceback)", file=sys.stderr, flush=True)
  sys.exit(2)


def flags_parser(default_config: str | None = None) -> Callable[[list[str]], list[str]]:
  """An absl `flags_parser` (`app.run(main, flags_parser=...)`): parses the
  flags; a mistake is one line (`exit_with_one_line`). `default_config`: the
  --config default, for close matches when no --config= is given."""
  def parse(argv: list[str]) -> list[str]:
    from absl import flags  # pylint: disable=g-import-not-at-top
    try:
      return flags.FLAGS(argv)
    except Exception as e:  # pylint: disable=broad-except
      exit_with_one_line(e, argv, default_config)
      raise  # unreachable: exit_with_one_line exits or raises
  return parse


def run(main: Callable[[list[str]], Any], default_config: str | None = None) -> None:
  """`absl.app.run(main)` as every entry point runs it: the quiet backend
  probe, one-line flag/config errors (`flags_parser`) and one-line storage and
  data errors (`recur.cli_errors.guarded`), tracebacks back with --verbose."""
  from absl import app, flags  # pylint: disable=g-import-not-at-top
  from recur import cli_errors  # pylint: disable=g-import-not-at-top
  quiet_backend_probe()
  if "verbose" not in flags.FLAGS:
    flags.DEFINE_bool("verbose", False, "Full tracebacks on errors (also "
                      "RECUR_VERBOSE=1); by default a mistake prints one line.")
  app.run(cli_errors.guarded(main, verbose), flags_parser=flags_parser(default_config))
