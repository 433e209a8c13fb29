"""A real GCS JSON API on localhost for tests: `gcp-storage-emulator`, in memory.

`start()` runs it as a subprocess on a free port with one bucket and returns
the environment that points gcsfs (STORAGE_EMULATOR_HOST), tensorstore
(TENSORSTORE_GCS_HTTP_URL, used by Orbax for arrays) and google-auth
(GOOGLE_AUTH_TOKEN_FOR_TESTING) at it. Nothing reaches the network.
"""
from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

__all__ = ["available", "start", "BUCKET"]

BUCKET = "recur-test"


def available() -> bool:
  # (Not imported here: gcsfs reads its settings from the environment when
  # imported, which must happen after `start`.)
  return all(importlib.util.find_spec(m) is not None
             for m in ("gcp_storage_emulator", "gcsfs"))


# The emulator's media downloads lack the `x-goog-generation` header that
# real GCS sends and tensorstore reads (OCDBT compares it before rewriting a
# manifest: "Malformed StorageGeneration" otherwise, now and then). The
# launcher adds it, then runs the emulator's own command line.
_LAUNCHER = """
import sys
from gcp_storage_emulator.handlers import objects
_download = objects.download
def download(request, response, storage, *args, **kwargs):
  try:
    obj = storage.get_file_obj(request.params["bucket_name"], request.params["object_id"])
    response["x-goog-generation"] = str(obj["generation"])
    response["x-goog-metageneration"] = str(obj["metageneration"])
  except Exception:  # not found: the handler answers 404
    pass
  return _download(request, response, storage, *args, **kwargs)
objects.download = download
from gcp_storage_emulator.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def start(log_path: str) -> tuple[subprocess.Popen, dict[str, str]]:
  """Starts the emulator; returns (process, environment variables for clients)."""
  port = _free_port()
  url = f"http://localhost:{port}"
  log = open(log_path, "wb")  # pylint: disable=consider-using-with
  proc = subprocess.Popen(
      [sys.executable, "-c", _LAUNCHER, "start", "--host=localhost",
       f"--port={port}", "--in-memory", f"--default-bucket={BUCKET}"],
      stdout=log, stderr=subprocess.STDOUT)
  deadline = time.time() + 30
  while True:
    try:
      urllib.request.urlopen(f"{url}/storage/v1/b/{BUCKET}", timeout=1).read()
      break
    except (urllib.error.URLError, ConnectionError, OSError):
      if proc.poll() is not None or time.time() > deadline:
        proc.kill()
        raise RuntimeError(f"GCS emulator did not start; see {log_path}") from None
      time.sleep(0.1)
  env = {
      "STORAGE_EMULATOR_HOST": url,
      "TENSORSTORE_GCS_HTTP_URL": url,
      "GOOGLE_AUTH_TOKEN_FOR_TESTING": "test-token",
      # gcsfs's zonal-bucket probe asks a credentials-only API; the emulator
      # has plain buckets.
      "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
  }
  return proc, env
