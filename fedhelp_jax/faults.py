# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""The faults a long run meets on a real machine, each turned into one line.

* a full disk: ``is_disk_full`` recognises it (``ENOSPC``, ``EDQUOT``, or
  TensorStore's ``RESOURCE_EXHAUSTED`` from inside orbax), ``disk_full``
  builds the ``DiskFullError`` naming what was written, where, the free and
  the needed bytes;
* two runs on one workdir: ``WorkdirLock`` (an OS file lock, released when
  its process dies, so a killed run never blocks the next one).

Importing this module does not import jax.
"""

import errno
import json
import os
import shutil
import socket
import sys
import time
from typing import Any, Optional

from fedhelp_jax.errors import DiskFullError

_DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
# How TensorStore (orbax's writer) and the OS word a full disk.
_DISK_FULL_TEXT = ('No space left on device', 'Disk quota exceeded',
                   'ENOSPC', 'OS error 28')


# ---------------------------------------------------------------------------
# A full disk.
# ---------------------------------------------------------------------------


def is_disk_full(error: BaseException) -> bool:
  """Whether ``error``, or an error it was raised from, is a full disk."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, OSError) and error.errno in _DISK_FULL_ERRNOS:
      return True
    text = str(error)
    if any(t in text for t in _DISK_FULL_TEXT):
      return True
    # TensorStore reports a failed local write as RESOURCE_EXHAUSTED (the
    # same status as an out-of-memory allocation, which names memory).
    if 'RESOURCE_EXHAUSTED' in text and 'memory' not in text.lower():
      return True
    error = error.__cause__ or error.__context__
  return False


def human_bytes(n: Optional[float]) -> str:
  if n is None:
    return 'unknown'
  for unit in ('bytes', 'KiB', 'MiB', 'GiB'):
    if abs(n) < 1024 or unit == 'GiB':
      return f'{n:.0f} {unit}' if unit == 'bytes' else f'{n:.1f} {unit}'
    n /= 1024
  return f'{n:.1f} TiB'


def free_bytes(path: str) -> Optional[int]:
  """Free bytes on the filesystem of ``path`` (or of its nearest existing
  parent), or None when it cannot be asked."""
  path = os.path.abspath(path)
  while not os.path.exists(path) and os.path.dirname(path) != path:
    path = os.path.dirname(path)
  try:
    return shutil.disk_usage(path).free
  except OSError:
    return None


def disk_bytes(path: str) -> int:
  """Bytes the files under ``path`` take on the disk (allocated blocks:
  a checkpoint of many small files takes more than their sizes add up to)."""
  paths = [path] if os.path.isfile(path) else [
      os.path.join(root, name) for root, _, files in os.walk(path)
      for name in files]
  total = 0
  for p in paths:
    try:
      st = os.stat(p)
    except OSError:
      continue  # Removed while walking.
    total += max(st.st_size, getattr(st, 'st_blocks', 0) * 512)
  return total


def disk_full(what: str, where: str, needed: Optional[int],
              needed_why: str = '') -> DiskFullError:
  """The one-line ``DiskFullError`` for a write of ``what`` to ``where``."""
  why = f' ({needed_why})' if needed_why else ''
  return DiskFullError(
      f'no space left on the device writing {what} to {where}: '
      f'{human_bytes(free_bytes(where))} free, about '
      f'{human_bytes(needed)} needed{why}.')


# ---------------------------------------------------------------------------
# One run per workdir.
# ---------------------------------------------------------------------------


class WorkdirLockedError(RuntimeError):
  """Another run holds the workdir's lock."""


class WorkdirLock:
  """An exclusive OS lock (``filelock``, ``flock`` on Unix) on a workdir.

  Taken for the whole run, before the checkpoint directory is opened (which
  removes unfinished saves: those of a second run would be the first run's
  save in progress). The holder's pid, host and start time are written
  beside the lock, ``run.lock.json``, for the refusal message. The OS
  releases the lock when its process dies, however it dies, so a lock left
  by a killed run never blocks the next one (its stale holder file is then
  overwritten).
  """

  def __init__(self, workdir: str):
    self.workdir = os.path.abspath(workdir)
    self.path = os.path.join(self.workdir, 'run.lock')
    self.holder_path = self.path + '.json'
    self._lock = None

  def acquire(self) -> None:
    """Takes the lock at once, or raises ``WorkdirLockedError``."""
    import filelock  # pylint: disable=g-import-not-at-top
    lock = filelock.FileLock(self.path)
    try:
      lock.acquire(timeout=0)
    except filelock.Timeout:
      raise WorkdirLockedError(self._refusal()) from None
    self._lock = lock
    holder = {'pid': os.getpid(), 'host': socket.gethostname(),
              'started': time.strftime('%Y-%m-%d %H:%M:%S'),
              'command': ' '.join(sys.argv)}
    tmp = f'{self.holder_path}.{os.getpid()}.tmp'
    try:
      with open(tmp, 'w') as f:
        json.dump(holder, f)
      os.replace(tmp, self.holder_path)
    except OSError:  # Only the refusal message of another run needs it.
      if os.path.exists(tmp):
        os.remove(tmp)

  def release(self) -> None:
    if self._lock is None:
      return
    try:
      if self._holder().get('pid') == os.getpid():
        os.remove(self.holder_path)
    except OSError:
      pass
    self._lock.release()
    self._lock = None

  def _holder(self) -> dict[str, Any]:
    try:
      with open(self.holder_path) as f:
        return json.load(f)
    except (OSError, ValueError):
      return {}

  def _refusal(self) -> str:
    holder = self._holder()
    who = (f"pid {holder.get('pid')} on host {holder.get('host')}, started "
           f"{holder.get('started')}" if holder else
           'its pid and host are not recorded yet')
    return (f'{self.workdir} is in use by another run ({who}). Fix: wait for '
            'that run to end (or stop it: the same command resumes it '
            'later), or pass another --workdir.')
