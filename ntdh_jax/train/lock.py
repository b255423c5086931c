"""An exclusive lock on a workdir, so two launches never train into it at once.

``workdir_lock(workdir)`` holds ``fcntl.flock(LOCK_EX)`` on ``WORKDIR/.lock``
for the duration of a ``with`` block. The kernel releases a ``flock`` when
the process that holds it exits in any way (SIGKILL, OOM kill, a crash), so
a lock is never stale: there is nothing to clean up after a killed launch,
and the lock file itself is never deleted (deleting it would let a waiter
and a newcomer lock two different files).

The file's content is only a description of the holder for messages --
``{"pid": ..., "host": ..., "started": <ISO 8601 UTC>}``, written just after
the lock is taken and emptied just before it is released. It is not the lock:
after a SIGKILL it still names the dead process, and the next launch takes
the lock anyway and overwrites it.

Caveats:

* ``flock`` works between processes of one machine on a local filesystem.
  On network filesystems it depends on the filesystem and its mount
  options: on NFS, Linux emulates ``flock`` with POSIX byte-range locks
  (which needs a working lock manager, or fails with ``ENOLCK``); some
  network or FUSE filesystems (and NFS on old kernels) accept it but lock
  only on the calling machine, so launches on two hosts would not exclude
  each other. Launch into a shared workdir from one host at a time there.
* Within one process the lock is reentrant: a ``workdir_lock`` on a
  workdir this process already holds (e.g. ``run_sweep`` inside a caller
  that holds it for the sweep and its report) joins it, and the lock is
  released when the last holder's block ends. Only two threads that both
  start taking it before either holds it conflict like two processes do.
* In a multi-process (multihost) JAX job every process shares the workdir:
  only one of them (process 0) may take the lock, or the others are refused.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import logging
import os
import socket
import threading
from typing import Iterator

from ntdh_jax.errors import UserError

LOCK = ".lock"

logger = logging.getLogger(__name__)

# Workdirs this process holds: realpath -> [pid, fd, holders]. The pid tells
# a forked child that the entry is its parent's.
_held: dict[str, list] = {}
_guard = threading.Lock()


def _holder(fd: int) -> str:
  """The holder as described in the lock file, for a message."""
  try:
    info = json.loads(os.pread(fd, 4096, 0))
    pid, host = int(info["pid"]), str(info["host"])
  except (ValueError, TypeError, KeyError, OSError):
    # Empty: the holder has taken the lock but not written it yet.
    return "a process whose pid is not recorded yet"
  mine = pid == os.getpid() and host == socket.gethostname()
  since = f", since {info['started']}" if info.get("started") else ""
  return (f"pid {pid} on host {host}{since}"
          f"{' (this very process)' if mine else ''}")


def _write_holder(fd: int) -> None:
  info = {"pid": os.getpid(), "host": socket.gethostname(),
          "started": datetime.datetime.now(datetime.timezone.utc).isoformat(
              timespec="seconds")}
  data = (json.dumps(info) + "\n").encode()
  os.ftruncate(fd, 0)
  os.pwrite(fd, data, 0)


@contextlib.contextmanager
def workdir_lock(workdir: str, *, wait: bool = False) -> Iterator[None]:
  """Holds the exclusive lock on ``workdir`` (created if needed).

  Reentrant within one process: a nested ``workdir_lock`` on a workdir this
  process holds joins it (see the module docstring).

  Args:
    workdir: the sweep's directory; the lock is ``WORKDIR/.lock``.
    wait: when another process holds the lock, log one WARNING naming it and
      block until it is released, instead of refusing.

  Raises:
    UserError: the lock is held and ``wait`` is False (the message names the
      workdir and the holder's pid and host), or ``workdir`` is not a
      directory.
  """
  try:
    os.makedirs(workdir, exist_ok=True)
  except (FileExistsError, NotADirectoryError):
    raise UserError(f"workdir {workdir} is not a directory (a file is in the "
                    "way); pass another --workdir.") from None
  key = os.path.realpath(workdir)
  with _guard:
    entry = _held.get(key)
    if entry is not None and entry[0] == os.getpid():
      entry[2] += 1  # this process holds it already: join
    else:
      entry = None
  if entry is None:
    entry = [os.getpid(), _acquire(workdir, wait), 1]
    with _guard:
      _held[key] = entry
  try:
    yield
  finally:
    with _guard:
      entry[2] -= 1
      last = entry[2] == 0
      if last:
        del _held[key]
    if last:
      try:
        os.ftruncate(entry[1], 0)
      finally:
        os.close(entry[1])  # releases the lock


def _acquire(workdir: str, wait: bool) -> int:
  """A file descriptor holding the lock of ``workdir``."""
  fd = os.open(os.path.join(workdir, LOCK),
               os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      if not wait:
        raise UserError(
            f"workdir {workdir} is in use by another launch ({_holder(fd)}); "
            "wait for it to finish, or pass --wait to queue behind it."
        ) from None
      logger.warning("workdir %s is in use by another launch (%s); waiting "
                     "for it to finish.", workdir, _holder(fd))
      fcntl.flock(fd, fcntl.LOCK_EX)
    _write_holder(fd)
  except BaseException:
    os.close(fd)  # releases the lock if it was taken
    raise
  return fd
