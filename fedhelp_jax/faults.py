# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""The faults a long run meets on a real machine, each turned into one line.

* a full disk: ``is_disk_full`` recognises it (``ENOSPC``, ``EDQUOT``, or
  TensorStore's ``RESOURCE_EXHAUSTED`` from inside orbax), ``disk_full``
  builds the ``DiskFullError`` naming what was written, where, the free and
  the needed bytes;
* two runs on one workdir: ``WorkdirLock`` (an OS file lock, released when
  its process dies, so a killed run never blocks the next one);
* preemption: ``StopSignals`` turns SIGTERM and SIGINT into a request to stop
  after the current compiled chunk (``Stopped``), over several processes at
  the same chunk.

Importing this module does not import jax.
"""

import errno
import json
import os
import shutil
import signal
import socket
import sys
import threading
import time
from typing import Any, Optional

from fedhelp_jax import distributed
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


# ---------------------------------------------------------------------------
# Preemption: SIGTERM / SIGINT stop the run after the current chunk.
# ---------------------------------------------------------------------------


class Stopped(Exception):
  """A run stopped by a signal after checkpointing its last chunk.

  Attributes:
    signum: the signal that asked for the stop.
    round: the last completed (and checkpointed) round.
    exit_status: the shell's convention, 128 + signal (143, 130).
  """

  def __init__(self, signum: int, round_index: int):
    self.signum = int(signum)
    self.round = int(round_index)
    self.exit_status = 128 + self.signum
    super().__init__(f'stopped at round {self.round} by '
                     f'{signal.Signals(self.signum).name}; the same command '
                     'resumes')


class StopSignals:
  """SIGTERM and SIGINT ask the run to stop after the current chunk.

  A context manager installing the handlers (from the main thread only; the
  previous handlers come back on exit). The first signal sets a flag, which
  ``requested`` reads between chunks; a second one restores the previous
  handler and delivers itself again, so it stops the process at once.

  Over several processes (``jax.distributed``), the processes must stop at
  the same chunk: SIGTERM is left to JAX's preemption service (installed by
  ``jax.distributed.initialize``; it also hears cloud preemption notices)
  and read with ``multihost_utils.reached_preemption_sync_point``, called
  once per chunk with a count that goes up by one (the protocol's sync point
  is the largest count reached, plus one; orbax's own calls are turned off,
  see ``checkpoint._Manager``); a SIGINT flag is gathered from every
  process.
  """

  def __init__(self, signals=(signal.SIGTERM, signal.SIGINT)):
    self._signals = tuple(signals)
    self._previous: dict[int, Any] = {}
    self.received: Optional[int] = None
    self._checks = 0  # Step ids for the preemption sync point.
    self._sync_manager = None

  def __enter__(self) -> 'StopSignals':
    if threading.current_thread() is not threading.main_thread():
      return self  # Python allows handlers only in the main thread.
    self._sync_manager = _preemption_sync_manager()
    for s in self._signals:
      if s == signal.SIGTERM and self._sync_manager is not None:
        continue  # JAX's preemption service has it.
      self._previous[s] = signal.signal(s, self._handle)
    return self

  def __exit__(self, *exc) -> None:
    for s, previous in self._previous.items():
      signal.signal(s, previous)
    self._previous = {}

  def _handle(self, signum, frame) -> None:
    del frame
    if self.received is not None:  # The second one: stop at once.
      signal.signal(signum, self._previous.pop(signum, signal.SIG_DFL))
      os.kill(os.getpid(), signum)
      return
    self.received = signum
    # os.write: print could re-enter a stream the main thread is writing.
    os.write(2, (f'[fedhelp_jax] {signal.Signals(signum).name}: stopping '
                 'after the current chunk and its checkpoint (send it again '
                 'to stop at once)\n').encode())

  def requested(self) -> Optional[int]:
    """The signal asking to stop now, or None; call it once per chunk.

    Over several processes every process must call it at every chunk (it
    is collective there), and all get the same answer.
    """
    self._checks += 1
    if 'jax' not in sys.modules or distributed.process_count() == 1:
      return self.received
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    import numpy as np  # pylint: disable=g-import-not-at-top
    local = self.received or 0
    if self._sync_manager is not None and (
        multihost_utils.reached_preemption_sync_point(self._checks)):
      local = max(local, int(signal.SIGTERM))
    everyone = multihost_utils.process_allgather(np.int32(local))
    asked = int(np.max(everyone))
    return asked or None


def _preemption_sync_manager():
  """JAX's preemption sync manager when ``jax.distributed`` runs one."""
  if 'jax' not in sys.modules:
    return None
  try:
    from jax._src import distributed as jax_distributed  # pylint: disable=g-import-not-at-top
    return jax_distributed.global_state.preemption_sync_manager
  except (ImportError, AttributeError):
    return None
