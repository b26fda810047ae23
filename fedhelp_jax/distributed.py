# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""One program over several processes: ``jax.distributed`` set up from flags.

``initialize()`` must run in every process before anything starts a JAX
backend (``jax.devices()``, creating an array, a compilation), so
``experiments/run.py`` calls it first thing in ``main``. Given the three
flags it connects this process to the others; with none it joins the
cluster JAX can detect (SLURM ``srun``, Open MPI ``mpirun``, Cloud TPU
multi-host), and otherwise stays a single process. On CPU the processes
exchange collectives over gloo (JAX's default CPU implementation); on GPU
and TPU over the accelerators' own links.

Start N local processes with ``python -m experiments.launch_local``.

Importing this module does not import jax.
"""

import os
import sys
from typing import NoReturn, Optional

# Flag names, for messages.
_ADDRESS = '--coordinator_address'
_COUNT = '--num_processes'
_ID = '--process_id'


def _check_flags(coordinator_address: Optional[str],
                 num_processes: Optional[int],
                 process_id: Optional[int]) -> bool:
  """Validates the flags; returns whether they ask for several processes.

  Raises:
    ValueError: for a partial or inconsistent set of flags.
  """
  if num_processes is None:
    given = [name for name, value in ((_ADDRESS, coordinator_address),
                                      (_ID, process_id)) if value is not None]
    if given:
      raise ValueError(
          f'{" and ".join(given)} given without {_COUNT}: give all three of '
          f'{_ADDRESS}=HOST:PORT, {_COUNT}=N, {_ID}=I (0 <= I < N), or none '
          'to auto-detect the cluster.')
    return False
  if num_processes < 1:
    raise ValueError(f'{_COUNT}={num_processes}: expected 1 or more.')
  if process_id is not None and not 0 <= process_id < num_processes:
    raise ValueError(f'{_ID}={process_id} with {_COUNT}={num_processes}: '
                     f'expected 0 <= {_ID} < {num_processes}.')
  if num_processes == 1:
    return False
  missing = [name for name, value in ((_ADDRESS, coordinator_address),
                                      (_ID, process_id)) if value is None]
  if missing:
    raise ValueError(
        f'{_COUNT}={num_processes} needs {" and ".join(missing)} too '
        f'({_ADDRESS}=HOST:PORT of process 0, the same in every process; '
        f'{_ID}=0..{num_processes - 1}, one per process).')
  host, _, port = coordinator_address.rpartition(':')
  if not host or not port.isdigit():
    raise ValueError(f'{_ADDRESS}={coordinator_address!r}: expected '
                     'HOST:PORT, e.g. 10.0.0.1:1234.')
  return True


# What JAX's SLURM and Open MPI (before 5) detectors look for.
_SLURM_VARIABLES = ('SLURM_JOB_ID', 'SLURM_STEP_NODELIST', 'SLURM_NTASKS',
                    'SLURM_PROCID', 'SLURM_LOCALID')
_OMPI_URI = 'OMPI_MCA_orte_hnp_uri'


def _detect_from_variables() -> Optional[tuple[str, int]]:
  """``detect_cluster`` for SLURM and Open MPI from their variables."""
  env = os.environ
  if env.get(_OMPI_URI) and env.get('OMPI_COMM_WORLD_SIZE', '').isdigit():
    if int(env['OMPI_COMM_WORLD_SIZE']) > 1:
      return 'ompi', int(env['OMPI_COMM_WORLD_SIZE'])
  if all(v in env for v in _SLURM_VARIABLES) and (
      env['SLURM_NTASKS'].isdigit() and int(env['SLURM_NTASKS']) > 1):
    return 'slurm', int(env['SLURM_NTASKS'])
  return None


def detect_cluster() -> Optional[tuple[str, int]]:
  """The multi-process cluster JAX would join on its own, if any.

  Asks JAX's own cluster detectors (those ``jax.distributed.initialize()``
  tries without arguments: SLURM, Open MPI, Cloud TPU, Kubernetes), so
  whatever is found here, the argument-free call can join.

  Returns:
    ``(name, process count)`` of the first cluster found with more than one
    process, or None (no cluster, or a one-process one).

  Raises:
    ValueError: when Open MPI started several processes but JAX cannot
      detect them (Open MPI 5 sets no ``OMPI_MCA_orte_hnp_uri``): running
      each as a separate single-process experiment would be wrong.
  """
  try:
    from jax._src import clusters  # pylint: disable=g-import-not-at-top
    # pylint: disable-next=protected-access
    envs = [env for env in clusters.ClusterEnv._cluster_types
            if not getattr(env, 'opt_in_only_method', False)]
  except (ImportError, AttributeError):  # Internal, moved: what they read.
    envs = []
    found = _detect_from_variables()
    if found:
      return found
  for env in envs:
    try:
      if env.is_env_present():
        count = int(env.get_process_count())
        if count > 1:
          return (getattr(env, 'name', '') or env.__name__), count
    except Exception:  # pylint: disable=broad-except
      continue  # A detector that cannot answer here is not this cluster.
  mpi_size = os.environ.get('OMPI_COMM_WORLD_SIZE', '')
  if mpi_size.isdigit() and int(mpi_size) > 1:
    raise ValueError(
        f'Open MPI started {mpi_size} processes (OMPI_COMM_WORLD_SIZE) but '
        'JAX cannot detect them here; give the flags explicitly: '
        f'{_ADDRESS}=HOST_OF_RANK_0:PORT {_COUNT}={mpi_size} '
        f'{_ID}=$OMPI_COMM_WORLD_RANK.')
  return None


def initialize(coordinator_address: Optional[str] = None,
               num_processes: Optional[int] = None,
               process_id: Optional[int] = None,
               initialization_timeout: int = 300) -> str:
  """Connects this process to the others of a multi-process run, if any.

  Call it in every process before anything starts a JAX backend. With
  ``num_processes > 1`` all three flags are needed, and every process gets
  the same ``coordinator_address`` (HOST:PORT of process 0) and its own
  ``process_id``; ``num_processes == 1`` is a single process. With no
  flags, a cluster JAX detects (``detect_cluster``) is joined with
  ``jax.distributed.initialize()``; otherwise nothing is done.

  Args:
    coordinator_address: HOST:PORT where process 0 serves the coordinator.
    num_processes: how many processes take part.
    process_id: this process's index, 0 .. num_processes - 1.
    initialization_timeout: seconds to wait for all processes to connect.

  Returns:
    One line saying what was done, for the run's log: ``single process``,
    ``process 1 of 2 via coordinator 127.0.0.1:PORT``, ...

  Raises:
    ValueError: for partial or inconsistent flags (before touching JAX).
    RuntimeError: from JAX, when a backend was started before this call.
  """
  several = _check_flags(coordinator_address, num_processes, process_id)
  if num_processes == 1:
    return f'single process ({_COUNT}=1)'
  import jax  # pylint: disable=g-import-not-at-top
  if jax.distributed.is_initialized():
    return _describe('already initialized')
  if several:
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes, process_id=process_id,
        initialization_timeout=initialization_timeout)
    how = 'flags'
  else:
    cluster = detect_cluster()
    if cluster is None:
      return 'single process'
    jax.distributed.initialize(initialization_timeout=initialization_timeout)
    how = f'{cluster[0]} auto-detection'
  _exit_at_once_on_uncaught_errors()
  return _describe(how)


def _connected() -> bool:
  """Whether ``jax.distributed`` connected this process to others."""
  if 'jax' not in sys.modules:
    return False
  import jax  # pylint: disable=g-import-not-at-top
  return jax.distributed.is_initialized()


def exit_now(status: int, *, after_report: bool = False) -> NoReturn:
  """Exits with ``status``; in a multi-process run, or ``after_report``,
  at once.

  After ``jax.distributed.initialize`` a normal exit waits in JAX's shutdown
  barrier (``atexit``, up to 300 s) for every other process, and those are
  usually blocked in a collective waiting for this one: a failing process
  would hang instead of ending. Here it flushes its output and ends with
  ``os._exit``, so the launcher (or the cluster) sees the failure and the
  others are stopped.

  ``after_report``: the caller has printed its one-line error and its
  ``finally`` blocks (workdir lock, open files) have run. A failed write can
  leave orbax's coroutines suspended in an abandoned event loop; a normal
  shutdown garbage-collects them and prints their tracebacks after the
  report (seen on a loaded 2-core machine), so the process ends at once.
  """
  if not (after_report or _connected()):
    sys.exit(status)
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(status)  # pylint: disable=protected-access


def _exit_at_once_on_uncaught_errors() -> None:
  """Makes an uncaught exception print its traceback, then ``exit_now(1)``
  (see there), instead of hanging in the shutdown barrier."""
  previous = sys.excepthook

  def hook(kind, value, traceback):
    try:
      previous(kind, value, traceback)
    finally:
      exit_now(1)

  sys.excepthook = hook


def _state():
  """JAX's distributed state (internal: None where it is not found)."""
  try:
    from jax._src import distributed  # pylint: disable=g-import-not-at-top
    return distributed.global_state
  except (ImportError, AttributeError):
    return None


def _describe(how: str) -> str:
  """``process I of N via coordinator HOST:PORT (how)``, without starting a
  backend where JAX's distributed state says it."""
  state = _state()
  index = getattr(state, 'process_id', None)
  count = getattr(state, 'num_processes', None)
  address = getattr(state, 'coordinator_address', None)
  if index is None or count is None:
    import jax  # pylint: disable=g-import-not-at-top
    index, count = jax.process_index(), jax.process_count()
  via = f' via coordinator {address}' if address else ''
  return f'process {index} of {count}{via} ({how})'


def process_index() -> int:
  """This process's index (0 in a single-process run).

  Read from the distributed state when ``initialize`` connected this process
  (no backend is started); else ``jax.process_index()``.
  """
  import jax  # pylint: disable=g-import-not-at-top
  state = _state()
  if jax.distributed.is_initialized() and state is not None and (
      state.process_id is not None):
    return int(state.process_id)
  return jax.process_index()


def is_primary() -> bool:
  """Whether this is process 0, the one that prints and writes."""
  return process_index() == 0


def process_count() -> int:
  """How many processes take part (1 in a single-process run)."""
  import jax  # pylint: disable=g-import-not-at-top
  state = _state()
  if jax.distributed.is_initialized() and state is not None and (
      state.num_processes is not None):
    return int(state.num_processes)
  return jax.process_count()


def quiet_non_primary() -> bool:
  """Sends stdout of every process but process 0 to /dev/null.

  Redirects file descriptor 1 itself, so what the C++ runtime prints (gloo's
  connection lines) goes too; stderr, where errors go, is kept. Does nothing
  in process 0 or a single-process run.

  Returns:
    Whether this process's stdout was silenced.
  """
  if not _connected() or process_index() == 0:
    return False
  sys.stdout.flush()
  devnull = os.open(os.devnull, os.O_WRONLY)
  try:
    os.dup2(devnull, sys.stdout.fileno())
  finally:
    os.close(devnull)
  return True
