"""One run per workdir: a lease file with host, pid and a heartbeat.

    with WorkdirLock(workdir, process_index):   # raises LockHeld if busy
      ...train...

Each process of a run holds `workdir/locks/process_<i>.json` (so every process
decides for itself, without a collective, and a second run is refused on every
host). The file holds {"host", "pid", "pid_start", "token", "started",
"heartbeat"}; a thread rewrites the heartbeat every `heartbeat_s`.

A lock is stale, and taken over, when its holder is on this host and its
process is gone (pid absent, or reused by another process: /proc start time
differs), or when its heartbeat is older than `stale_s` (a holder on another
host: a dead VM). A run that finds its own lock taken over (it was paused for
longer than `stale_s`) stops at its next check instead of writing on.

Dead peers (`num_processes` > 1): a second thread reads the other processes'
leases every `peer_check_s`. A peer once seen alive whose process is gone
(same host) or whose heartbeat is older than `peer_stale_s` (another host) is
dead; the survivor
would otherwise hang in its next collective until jax's own heartbeat timeout,
so it prints one line naming the peer, drops its own lease and exits with
status `PEER_LOST_EXIT` at once (os._exit: the hung collective never returns).
The same command resumes from the last good checkpoint. A lease removed by
its owner is a peer that ended on its own (finished or failed with its own
message), not a dead one. The watch goes on after `release` until the
process ends (a survivor's exit waits in jax's shutdown barrier for the peer).

Atomicity: the first claim is an exclusive create; a take-over first creates
`process_<i>.json.takeover-<stale token>` exclusively, so of two runs taking
over the same stale lock exactly one wins, then replaces the lock. On a local
or NFS file system exclusive create is `O_CREAT|O_EXCL`. Paths are
`etils.epath.Path`s; on object stores (gs://) epath has no exclusive create,
so the claim is written and read back after a short delay (last writer wins;
a generation precondition, `if_generation_match=0`, would make it exact).
"""
from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
import uuid
from typing import Any

from etils import epath

from recur import files

__all__ = ["WorkdirLock", "LockHeld", "PEER_LOST_EXIT"]

PEER_LOST_EXIT = 75   # EX_TEMPFAIL: restart the same command to resume


class LockHeld(RuntimeError):
  """Another live run holds the workdir."""


def _pid_start(pid: int) -> str | None:
  """The process start time (clock ticks since boot) from /proc, if any."""
  try:
    with open(f"/proc/{pid}/stat") as f:
      return f.read().rsplit(")", 1)[1].split()[19]
  except (OSError, IndexError):
    return None


def _pid_alive(pid: int, start: str | None) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    pass        # exists, owned by someone else
  if _pid_zombie(pid):
    return False                # killed, not yet reaped by its parent
  return start is None or _pid_start(pid) in (None, start)


def _pid_zombie(pid: int) -> bool:
  try:
    with open(f"/proc/{pid}/stat") as f:
      return f.read().rsplit(")", 1)[1].split()[0] == "Z"
  except (OSError, IndexError):
    return False


def _is_local(p: epath.Path) -> bool:
  return "://" not in str(p)


def _create_new(path: epath.Path, text: str) -> bool:
  """Creates `path` holding `text` only if it does not exist; True if we did."""
  if _is_local(path):
    try:
      fd = os.open(str(path), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
      return False
    with os.fdopen(fd, "w") as f:
      f.write(text)
    return True
  if path.exists():
    return False
  path.write_text(text)
  time.sleep(1.0)               # let a concurrent writer land, then read back
  return path.read_text() == text


def _replace(path: epath.Path, text: str) -> None:
  # A temp file + rename on a disk; one whole-object upload on a store (which
  # has no rename that replaces: gcsfs refuses an existing target).
  files.write_bytes_atomic(os.fspath(path), text.encode("utf-8"))


class WorkdirLock:
  """The lease of one process of a run on `workdir` (see module docstring)."""

  def __init__(self, workdir, process_index: int = 0, heartbeat_s: float = 10.0,
               stale_s: float = 120.0, num_processes: int = 1,
               peer_stale_s: float = 25.0, peer_check_s: float = 2.5):
    self.dir = epath.Path(workdir) / "locks"
    self.path = self.dir / f"process_{process_index}.json"
    self.heartbeat_s, self.stale_s = heartbeat_s, stale_s
    self.peers = [self.dir / f"process_{i}.json" for i in range(num_processes)
                  if i != process_index]
    self.peer_stale_s, self.peer_check_s = peer_stale_s, peer_check_s
    self.token = uuid.uuid4().hex
    self.lost: str | None = None
    self._stop = threading.Event()
    self._peers_done = threading.Event()   # set by stop_peer_watch only
    self._thread: threading.Thread | None = None

  def _record(self) -> dict[str, Any]:
    now = time.time()
    return {"host": socket.gethostname(), "pid": os.getpid(),
            "pid_start": _pid_start(os.getpid()), "token": self.token,
            "started": getattr(self, "_started", now), "heartbeat": now}

  def _read(self) -> dict[str, Any] | None:
    try:
      return json.loads(self.path.read_text())
    except FileNotFoundError:
      return None
    except (OSError, ValueError):
      return {}                 # half-written by a crash: treated as stale

  def stale_reason(self, held: dict[str, Any]) -> str | None:
    """Why the lock `held` is stale, or None if its holder looks alive."""
    if not held or "token" not in held:
      return "unreadable lock file"
    age = time.time() - float(held.get("heartbeat", 0))
    if held.get("host") == socket.gethostname():
      if not _pid_alive(int(held.get("pid", -1)), held.get("pid_start")):
        return f"process {held.get('pid')} on this host is gone"
      return None
    if age > self.stale_s:
      return f"no heartbeat for {age:.0f}s"
    return None

  def describe(self, held: dict[str, Any]) -> str:
    age = time.time() - float(held.get("heartbeat", 0))
    return (f"pid {held.get('pid')} on host {held.get('host')} "
            f"(started {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(held.get('started', 0)))}, "
            f"last heartbeat {age:.0f}s ago)")

  def acquire(self) -> "WorkdirLock":
    self.dir.mkdir(parents=True, exist_ok=True)
    self._started = time.time()
    for _ in range(5):
      text = json.dumps(self._record())
      if _create_new(self.path, text):
        break
      held = self._read()
      if held == {}:
        time.sleep(1.0)         # maybe being written right now: look again
        held = self._read()
      if held is None:
        continue                # released meanwhile: try again
      why = self.stale_reason(held)
      if why is None:
        raise LockHeld(f"{self.path} is held by another run: {self.describe(held)}. "
                       "Wait for it to finish, or use another --workdir. (If that run "
                       f"is dead, its lock is taken over after {self.stale_s:.0f}s "
                       "without a heartbeat.)")
      marker = self.dir / f"{self.path.name}.takeover-{held.get('token', 'unreadable')}"
      if _create_new(marker, self.token):
        self._takeover = marker
        _replace(self.path, text)
        print(f"Took over the stale workdir lock {self.path} ({why}).", flush=True)
        break
      time.sleep(0.5)           # another run is taking over: see who won
    else:
      raise LockHeld(f"{self.path}: could not acquire the workdir lock")
    self._thread = threading.Thread(target=self._beat, daemon=True, name="workdir-lock")
    self._thread.start()
    if self.peers:
      threading.Thread(target=self._watch_peers, daemon=True, name="peer-watch").start()
    return self

  def dead_peer(self, path: epath.Path, held: dict[str, Any] | None) -> str | None:
    """Why the peer holding `held` (read from `path`) is dead, else None."""
    if not held or "token" not in held:
      return None               # not there yet, released, or being rewritten
    if held.get("host") == socket.gethostname():
      if not _pid_alive(int(held.get("pid", -1)), held.get("pid_start")):
        return f"its process is gone ({self.describe(held)}, {path})"
      return None
    age = time.time() - float(held.get("heartbeat", 0))
    if age > self.peer_stale_s:
      return f"no heartbeat for {age:.0f}s ({self.describe(held)}, {path})"
    return None

  def _watch_peers(self) -> None:
    # Only a lease once seen alive is judged: at a restart a peer's old lease
    # (dead pid) stays until that peer takes it over, and means nothing.
    # It outlives `release`: a survivor whose collective failed at once (CPU
    # gloo) still hangs in jax's shutdown barrier on its way out.
    alive: set[str] = set()
    while not self._peers_done.wait(self.peer_check_s):
      for path in self.peers:
        try:
          held = json.loads(path.read_text())
        except (OSError, ValueError):
          continue              # absent or half-written: look again later
        why = self.dead_peer(path, held)
        if why is None and held.get("token"):
          alive.add(held["token"])
        elif why is not None and held.get("token") in alive:
          self._peer_lost(path, why)

  def _peer_lost(self, path: epath.Path, why: str) -> None:
    """Ends this process: its collectives would wait for the dead peer."""
    name = path.name.removesuffix(".json").replace("_", " ")
    print(f"error: peer {name} of this run died: {why}. Stopping this process "
          f"too (exit {PEER_LOST_EXIT}); run the same command again on every "
          "host to resume from the last checkpoint.", file=sys.stderr, flush=True)
    try:
      held = self._read()
      if held and held.get("token") == self.token:
        self.path.unlink(missing_ok=True)   # our lease: a restart needs no wait
    except OSError:
      pass
    os._exit(PEER_LOST_EXIT)

  def _beat(self) -> None:
    while not self._stop.wait(self.heartbeat_s):
      held = self._read()
      if held and held.get("token") != self.token:
        self.lost = f"taken over by {self.describe(held)}"
        return
      try:
        _replace(self.path, json.dumps(self._record()))
      except OSError:
        pass                    # a full disk must not kill the run here

  def check(self) -> None:
    """Raises LockHeld if another run took the lock over."""
    if self.lost:
      raise LockHeld(f"{self.path}: this run lost its workdir lock ({self.lost}); "
                     "stopping so two runs do not write the same workdir")

  def stop_peer_watch(self) -> None:
    self._peers_done.set()

  def release(self) -> None:
    self._stop.set()
    if self._thread is not None:
      self._thread.join()
    held = self._read()
    if held and held.get("token") == self.token:
      self.path.unlink(missing_ok=True)
    marker = getattr(self, "_takeover", None)
    if marker is not None:
      marker.unlink(missing_ok=True)

  def __enter__(self) -> "WorkdirLock":
    return self.acquire()

  def __exit__(self, *exc) -> None:
    self.release()
