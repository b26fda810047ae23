# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""One silo stream per CPU core: host devices chosen before jax starts.

On one CPU device XLA runs each small per-silo op (a batch-4 convolution, a
GroupNorm) on a thread pool, and the cores spend their time handing tiny
pieces of work to each other. Split into one host device per core, with the
client axis sharded over them (``config.num_devices = 0``: every visible
device), each core runs its own silos one after another. Measured on a
2-core CPU: the FedAvg CNN round at batch 32 ran 1.45-1.49x faster than on
one device (``benchmarks/results/peer-cpu-2devices.json``) and the FedHelp
authors' batch-4 round 1.2-1.5x (``benchmarks/results/batch4-cpu.json``).

The device count is fixed when jax starts, so only a program's entry point
can choose it: ``experiments/run.py`` calls ``configure()`` before anything
imports jax. This module imports no jax.
"""

import os
import sys
from typing import MutableMapping, Optional

# Set to 1 to keep one host device; N > 1 asks for N.
ENV = 'FEDHELP_HOST_DEVICES'
_COUNT_FLAG = '--xla_force_host_platform_device_count'
# One thread per device: the cores are already used by the devices.
_SINGLE_THREAD_FLAG = '--xla_cpu_multi_thread_eigen=false'


def usable_cores() -> int:
  """CPUs this process may run on (its affinity mask where known)."""
  if hasattr(os, 'sched_getaffinity'):
    return len(os.sched_getaffinity(0))
  return os.cpu_count() or 1


def configure(environ: Optional[MutableMapping[str, str]] = None,
              modules=None) -> str:
  """Asks XLA for one host device per usable core, unless told otherwise.

  Leaves everything as it is when jax is already imported (too late), when
  ``XLA_FLAGS`` already sets a host device count (the user's choice), or when
  ``FEDHELP_HOST_DEVICES=1``. Only the CPU platform is affected: on a GPU
  machine the accelerators stay the default devices.

  Args:
    environ: the environment to update (default ``os.environ``).
    modules: the imported modules (default ``sys.modules``), for tests.

  Returns:
    One line saying what was chosen and why, for the run's log.
  """
  environ = os.environ if environ is None else environ
  modules = sys.modules if modules is None else modules
  if 'jax' in modules:
    return 'host devices: unchanged (jax was imported before configure())'
  flags = environ.get('XLA_FLAGS', '')
  if _COUNT_FLAG in flags:
    return 'host devices: as XLA_FLAGS sets them'
  wanted = environ.get(ENV, '').strip()
  try:
    count = int(wanted) if wanted else usable_cores()
  except ValueError as e:
    raise ValueError(f'{ENV}={wanted!r}: expected a number of host devices '
                     '(1 keeps one device).') from e
  if count <= 1:
    return (f'host devices: one ({ENV}={wanted})' if wanted else
            'host devices: one (one usable core)')
  environ['XLA_FLAGS'] = ' '.join(
      f for f in (flags, f'{_COUNT_FLAG}={count}', _SINGLE_THREAD_FLAG) if f)
  return (f'host devices: {count}, one silo stream per core '
          f'({ENV}=1 keeps one device)')
