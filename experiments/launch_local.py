# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
r"""Runs N processes of one multi-process experiment on this machine.

  python -m experiments.launch_local --num_processes=2 -- \
      --config experiments/configs/fedavg_cls.py --workdir runs/fedavg2

starts ``python -m experiments.run --coordinator_address=127.0.0.1:PORT
--num_processes=2 --process_id=I <flags after -->`` for I = 0, 1, with a
free PORT: the processes form one JAX program over 127.0.0.1 (gloo
collectives on CPU), the way the hosts of a cluster would. Each gets
``FEDHELP_HOST_DEVICES`` = usable cores // N host devices, unless
``FEDHELP_HOST_DEVICES`` or a device count in ``XLA_FLAGS`` is set already.

Every line a process prints is shown as it comes, prefixed ``[pI] ``. When
one process fails (or ``--timeout_s`` passes, or the launcher is
interrupted) the others are stopped (SIGTERM, then SIGKILL) and one line
says why; the exit status is 0 only when every process exited with 0.
"""

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Mapping, Optional, Sequence, TextIO

from fedhelp_jax import host_devices

_HOST = '127.0.0.1'
_DEVICE_COUNT_FLAG = '--xla_force_host_platform_device_count'
_POLL_S = 0.05
GRACE_S = 5.0  # Between SIGTERM and SIGKILL.
_NAME = 'launch_local'
# A fatal C++ error (glog) ends with its stack: the line before tells more.
_NOT_TELLING = ('@ ', '*** ')


def free_port(host: str = _HOST) -> int:
  """A TCP port free on ``host`` now (the OS picks it for port 0)."""
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind((host, 0))
    return s.getsockname()[1]


def child_command(module: str, address: str, num_processes: int,
                  process_id: int, flags: Sequence[str]) -> list[str]:
  """``python -m MODULE`` with the distributed flags, then ``flags``."""
  return [sys.executable, '-m', module, f'--coordinator_address={address}',
          f'--num_processes={num_processes}', f'--process_id={process_id}',
          *flags]


def child_env(environ: Mapping[str, str], num_processes: int,
              cores: int) -> dict[str, str]:
  """The environment of every process: ``environ``, unbuffered output, and
  an equal share of the cores as host devices unless the user chose them."""
  env = dict(environ)
  env['PYTHONUNBUFFERED'] = '1'  # Lines arrive as they are printed.
  if (host_devices.ENV not in env and
      _DEVICE_COUNT_FLAG not in env.get('XLA_FLAGS', '')):
    env[host_devices.ENV] = str(max(1, cores // num_processes))
  return env


def _pump(stream, prefix: str, out: TextIO, lock: threading.Lock,
          last: list[str]) -> None:
  """Copies ``stream``'s lines to ``out`` with ``prefix``, as they come;
  keeps the last telling one (not blank, not a C++ stack frame) in
  ``last[0]``. A line redrawn with carriage returns (a progress bar) shows
  its final state."""
  for raw in iter(stream.readline, b''):
    line = raw.decode('utf-8', 'replace').rstrip('\r\n')
    line = line.rsplit('\r', 1)[-1] if '\r' in line else line
    if line.strip() and not line.lstrip().startswith(_NOT_TELLING):
      last[0] = line.strip()
    with lock:
      out.write(f'{prefix}{line}\n')
      out.flush()
  stream.close()


def _signal(proc: subprocess.Popen, sig: int) -> None:
  """Sends ``sig`` to ``proc``'s process group (its own session)."""
  try:
    os.killpg(proc.pid, sig)
  except (ProcessLookupError, PermissionError):
    pass


def stop(procs: Sequence[subprocess.Popen],
         grace_s: float = GRACE_S) -> int:
  """Ends the running ``procs``: SIGTERM, then SIGKILL after ``grace_s``.

  Returns:
    How many were still running.
  """
  running = [p for p in procs if p.poll() is None]
  for p in running:
    _signal(p, signal.SIGTERM)
  deadline = time.monotonic() + grace_s
  for p in running:
    try:
      p.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
      _signal(p, signal.SIGKILL)
      p.wait()
  return len(running)


def _status(code: int) -> str:
  if code < 0:
    try:
      return f'was killed by {signal.Signals(-code).name}'
    except ValueError:
      return f'was killed by signal {-code}'
  return f'exited with status {code}'


class _Interrupted(Exception):
  """The launcher got SIGTERM or SIGINT."""


def _interrupt(signum, frame) -> None:
  del signum, frame
  raise _Interrupted()


def launch(num_processes: int, flags: Sequence[str], *,
           module: str = 'experiments.run',
           timeout_s: Optional[float] = None,
           grace_s: float = GRACE_S,
           environ: Optional[Mapping[str, str]] = None,
           stdout: TextIO = sys.stdout,
           stderr: TextIO = sys.stderr) -> tuple[int, str]:
  """Runs ``num_processes`` processes of ``module`` until all end.

  Args:
    num_processes: how many processes (1 or more).
    flags: the flags every process gets after the distributed ones.
    module: the module each runs with ``python -m``.
    timeout_s: stop them all after this many seconds (None: no limit).
    grace_s: seconds between SIGTERM and SIGKILL when stopping them (JAX
      catches SIGTERM once ``jax.distributed`` is initialized).
    environ: their base environment (default ``os.environ``).
    stdout: where their prefixed stdout lines go.
    stderr: where their prefixed stderr lines go.

  Returns:
    ``(exit status, one line)``: 0 and a summary when every process exited
    with 0; else 1 (130 when interrupted) and what went wrong.
  """
  port = free_port()
  address = f'{_HOST}:{port}'
  env = child_env(os.environ if environ is None else environ, num_processes,
                  host_devices.usable_cores())
  lock = threading.Lock()
  procs, pumps, last = [], [], []
  start = time.monotonic()
  try:
    for i in range(num_processes):
      proc = subprocess.Popen(
          child_command(module, address, num_processes, i, flags), env=env,
          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
          stderr=subprocess.PIPE, start_new_session=True)
      procs.append(proc)
      last.append(([''], ['']))  # Last stdout line, last stderr line.
      for stream, out, keep in ((proc.stdout, stdout, last[i][0]),
                                (proc.stderr, stderr, last[i][1])):
        pump = threading.Thread(target=_pump, daemon=True,
                                args=(stream, f'[p{i}] ', out, lock, keep))
        pump.start()
        pumps.append(pump)
    while True:
      codes = [p.poll() for p in procs]
      failed = [i for i, c in enumerate(codes) if c not in (None, 0)]
      if failed:
        i = failed[0]
        stopped = stop(procs, grace_s)
        for pump in pumps[2 * i:2 * i + 2]:
          pump.join(timeout=2.0)  # Its last lines, for the message.
        line = last[i][1][0] or last[i][0][0] or '(none)'
        others = (f'stopped the other {stopped} process(es)' if stopped else
                  'no other process was running')
        return 1, (f'{_NAME}: process {i} {_status(codes[i])} (last line: '
                   f'{line}); {others}')
      if all(c == 0 for c in codes):
        elapsed = time.monotonic() - start
        return 0, (f'{_NAME}: all {num_processes} process(es) exited with '
                   f'status 0 in {elapsed:.1f} s')
      if timeout_s is not None and time.monotonic() - start > timeout_s:
        stopped = stop(procs, grace_s)
        return 1, (f'{_NAME}: timed out after {timeout_s:g} s; stopped '
                   f'{stopped} running process(es)')
      time.sleep(_POLL_S)
  except (_Interrupted, KeyboardInterrupt):
    return 130, (f'{_NAME}: interrupted; stopped {stop(procs, grace_s)} '
                 'process(es)')
  finally:
    stop(procs, grace_s=0.0)  # Nothing outlives the launcher.
    for pump in pumps:
      pump.join(timeout=2.0)


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
  """The launcher's flags (before ``--``) and the processes' (after)."""
  argv = list(argv)
  split = argv.index('--') if '--' in argv else len(argv)
  parser = argparse.ArgumentParser(
      prog='python -m experiments.launch_local',
      description=(__doc__ or '').strip().splitlines()[0],
      epilog='Flags after -- go to every process.')
  parser.add_argument('--num_processes', type=int, required=True,
                      help='how many processes to start (1 or more)')
  parser.add_argument('--timeout_s', type=float, default=None,
                      help='stop them all after this many seconds')
  parser.add_argument('--grace_s', type=float, default=GRACE_S,
                      help='seconds from SIGTERM to SIGKILL when stopping '
                      'the processes')
  parser.add_argument('--module', default='experiments.run',
                      help='the module each runs (python -m MODULE)')
  args = parser.parse_args(argv[:split])
  if args.num_processes < 1:
    parser.error(f'--num_processes={args.num_processes}: expected 1 or more')
  return args, argv[split + 1:]


def main(argv: Sequence[str]) -> int:
  args, flags = parse_args(argv)
  for sig in (signal.SIGTERM, signal.SIGINT):
    signal.signal(sig, _interrupt)
  code, line = launch(args.num_processes, flags, module=args.module,
                      timeout_s=args.timeout_s, grace_s=args.grace_s)
  print(line, file=sys.stderr if code else sys.stdout, flush=True)
  return code


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
