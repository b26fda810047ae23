# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""The faults a long run meets on a real machine, each turned into one line.

* a full disk: ``is_disk_full`` recognises it (``ENOSPC``, ``EDQUOT``, or
  TensorStore's ``RESOURCE_EXHAUSTED`` from inside orbax), ``disk_full``
  builds the ``DiskFullError`` naming what was written, where, the free and
  the needed bytes.

Importing this module does not import jax.
"""

import errno
import os
import shutil
from typing import Optional

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
