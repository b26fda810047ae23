# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""Several local JAX processes: ``experiments.launch_local`` and
``fedhelp_jax.distributed``.

Real 2-process programs over 127.0.0.1 (gloo collectives on CPU) run
``tests/multiprocess_worker.py`` under the launcher: an all-gather and a
sum over a mesh spanning both processes, a process that fails (exits,
raises) while the other waits for it, a timeout, a SIGTERM of the launcher.
The flag checks and cluster detection run in this process without
connecting anything. Select them with ``pytest -k multiprocess``.
"""

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from experiments import launch_local
from fedhelp_jax import distributed
from fedhelp_jax import host_devices

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = 'tests.multiprocess_worker'


def _launcher(*flags, worker_flags=(), timeout_s=60):
  return [sys.executable, '-m', 'experiments.launch_local',
          '--num_processes=2', f'--timeout_s={timeout_s}', '--grace_s=1',
          f'--module={WORKER}', *flags, '--', *worker_flags]


def _env(devices: str = '1'):
  """This environment, on CPU with ``devices`` host devices a process."""
  return dict(os.environ, JAX_PLATFORMS='cpu', **{host_devices.ENV: devices})


def _launch(*flags, worker_flags=(), timeout_s=60, env=None):
  start = time.monotonic()
  done = subprocess.run(
      _launcher(*flags, worker_flags=worker_flags, timeout_s=timeout_s),
      cwd=ROOT, env=env or _env(), text=True, capture_output=True,
      timeout=timeout_s + 30, check=False)
  return done, time.monotonic() - start


def _pids(pid_dir):
  """``{process index: pid}`` the worker processes wrote."""
  pids = {}
  for name in os.listdir(pid_dir):
    if name.isdigit():
      with open(os.path.join(pid_dir, name)) as f:
        pids[int(name)] = int(f.read())
  return pids


def _gone(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return True
  return False


def _last_line(text: str) -> str:
  return text.strip().splitlines()[-1]


# ---------------------------------------------------------------------------
# Two real processes under the launcher.
# ---------------------------------------------------------------------------


def test_multiprocess_allgather_and_mesh_sum_over_two_processes():
  # Two host devices per process: one mesh of 4 devices over 2 processes.
  done, _ = _launch(env=_env(devices='2'))
  assert done.returncode == 0, done.stdout + done.stderr
  out = done.stdout.splitlines()
  for i in (0, 1):
    assert f'[p{i}] process {i} of 2 via coordinator 127.0.0.1:' in (
        done.stdout)
    # Devices hold 1 (process 0) or 2 (process 1): 2 * 1 + 2 * 2 = 6.
    assert f'[p{i}] process {i} of 2: allgather=[0, 1] sum=6 devices=4' in (
        out)
  assert re.fullmatch(r'launch_local: all 2 process\(es\) exited with status '
                      r'0 in [\d.]+ s', _last_line(done.stdout))


def test_multiprocess_quiet_non_primary_keeps_only_process_0_stdout():
  done, _ = _launch(worker_flags=['--quiet'])
  assert done.returncode == 0, done.stdout + done.stderr
  assert ('[p0] process 0 of 2: allgather=[0, 1] sum=3 devices=2'
          in done.stdout.splitlines())
  # Neither Python's lines nor the C++ runtime's ("[Gloo] Rank 1 ...").
  assert not [l for l in done.stdout.splitlines() if l.startswith('[p1] ')
              and ('allgather' in l or 'Gloo' in l)]
  assert '[p1] process 1: stderr is kept' in done.stderr.splitlines()


@pytest.mark.parametrize('fail,status,reason', [
    # Before joining: process 0 waits for it in jax.distributed.initialize.
    ('start', 3, 'process 1 failing on purpose (start)'),
    # After: process 0 waits for it in the all-gather.
    ('init', 3, 'process 1 failing on purpose (init)'),
    # An uncaught exception after joining ends the process at once too.
    ('raise', 1, 'RuntimeError: process 1 raising on purpose'),
])
def test_multiprocess_failing_process_stops_the_other(tmp_path, fail, status,
                                                      reason):
  done, elapsed = _launch(worker_flags=[
      '--fail_process=1', f'--fail={fail}', f'--fail_status={status}',
      f'--pid_dir={tmp_path}'])
  assert done.returncode == 1, done.stdout + done.stderr
  assert elapsed < 45, elapsed  # The failure ended it, not the timeout.
  assert _last_line(done.stderr) == (
      f'launch_local: process 1 exited with status {status} (last line: '
      f'{reason}); stopped the other 1 process(es)')
  pids = _pids(tmp_path)
  assert sorted(pids) == [0, 1]
  assert _gone(pids[0]) and _gone(pids[1])


def test_multiprocess_timeout_stops_every_process(tmp_path):
  done, elapsed = _launch(
      worker_flags=['--hang_s=120', f'--pid_dir={tmp_path}'], timeout_s=3)
  assert done.returncode == 1
  assert elapsed < 20, elapsed
  assert _last_line(done.stderr) == (
      'launch_local: timed out after 3 s; stopped 2 running process(es)')
  pids = _pids(tmp_path)
  assert len(pids) == 2 and all(_gone(p) for p in pids.values())


def test_multiprocess_sigterm_of_the_launcher_stops_the_processes(tmp_path):
  proc = subprocess.Popen(
      _launcher(worker_flags=['--hang_s=120', f'--pid_dir={tmp_path}']),
      cwd=ROOT, env=_env(), text=True, stdout=subprocess.PIPE,
      stderr=subprocess.PIPE)
  try:
    deadline = time.monotonic() + 20
    while len(_pids(tmp_path)) < 2 and time.monotonic() < deadline:
      time.sleep(0.05)
    pids = _pids(tmp_path)
    assert len(pids) == 2
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.communicate(timeout=10)
  assert proc.returncode == 130
  assert _last_line(err) == 'launch_local: interrupted; stopped 2 process(es)'
  assert all(_gone(p) for p in pids.values())


# ---------------------------------------------------------------------------
# The launcher's pieces.
# ---------------------------------------------------------------------------


def test_multiprocess_launcher_shares_cores_unless_devices_are_chosen():
  env = launch_local.child_env({'PATH': '/bin'}, 2, 8)
  assert env[host_devices.ENV] == '4' and env['PYTHONUNBUFFERED'] == '1'
  assert env['PATH'] == '/bin'
  assert launch_local.child_env({}, 4, 2)[host_devices.ENV] == '1'
  chosen = {host_devices.ENV: '3'}
  assert launch_local.child_env(chosen, 2, 8)[host_devices.ENV] == '3'
  flags = {'XLA_FLAGS': '--xla_force_host_platform_device_count=5'}
  assert host_devices.ENV not in launch_local.child_env(flags, 2, 8)


def test_multiprocess_launcher_command_and_flags():
  assert launch_local.child_command(
      'experiments.run', '127.0.0.1:1234', 2, 1, ['--workdir=w']) == [
          sys.executable, '-m', 'experiments.run',
          '--coordinator_address=127.0.0.1:1234', '--num_processes=2',
          '--process_id=1', '--workdir=w']
  args, rest = launch_local.parse_args(
      ['--num_processes=3', '--timeout_s=9', '--', '--config.rounds=2', '--'])
  assert (args.num_processes, args.timeout_s, args.module) == (
      3, 9.0, 'experiments.run')
  assert rest == ['--config.rounds=2', '--']
  assert launch_local.parse_args(['--num_processes=1'])[1] == []
  with pytest.raises(SystemExit):
    launch_local.parse_args(['--num_processes=0'])
  assert 0 < launch_local.free_port() < 65536


# ---------------------------------------------------------------------------
# distributed: flags and cluster detection (nothing is connected).
# ---------------------------------------------------------------------------


@pytest.mark.parametrize('flags,match', [
    ({'process_id': 1}, '--process_id given without --num_processes'),
    ({'coordinator_address': 'h:1'},
     '--coordinator_address given without --num_processes'),
    ({'num_processes': 2, 'process_id': 0},
     '--num_processes=2 needs --coordinator_address too'),
    ({'num_processes': 2, 'coordinator_address': 'h:1'},
     '--num_processes=2 needs --process_id too'),
    ({'num_processes': 2, 'process_id': 2, 'coordinator_address': 'h:1'},
     '--process_id=2 with --num_processes=2: expected 0 <= --process_id < 2'),
    ({'num_processes': 2, 'process_id': -1, 'coordinator_address': 'h:1'},
     '--process_id=-1'),
    ({'num_processes': 0}, '--num_processes=0: expected 1 or more'),
    ({'num_processes': 2, 'process_id': 0, 'coordinator_address': 'h'},
     "--coordinator_address='h': expected HOST:PORT"),
])
def test_multiprocess_initialize_rejects_partial_flags(flags, match):
  with pytest.raises(ValueError, match=re.escape(match)):
    distributed.initialize(**flags)


def _no_cluster(monkeypatch):
  for name in list(os.environ):
    if name.startswith(('SLURM_', 'OMPI_', 'PMI_')) or name in (
        'KUBERNETES_SERVICE_HOST', 'TPU_WORKER_HOSTNAMES'):
      monkeypatch.delenv(name)


def test_multiprocess_initialize_without_a_cluster_is_single_process(
    monkeypatch):
  _no_cluster(monkeypatch)
  assert distributed.initialize() == 'single process'
  assert distributed.initialize(num_processes=1) == (
      'single process (--num_processes=1)')
  assert distributed.initialize('h:1', 1, 0) == (
      'single process (--num_processes=1)')


_SLURM = {'SLURM_JOB_ID': '77', 'SLURM_STEP_NODELIST': 'node[1-2]',
          'SLURM_PROCID': '1', 'SLURM_LOCALID': '0'}


@pytest.mark.parametrize('detect', [
    distributed.detect_cluster,
    distributed._detect_from_variables,  # pylint: disable=protected-access
])
def test_multiprocess_detects_slurm_and_open_mpi(monkeypatch, detect):
  _no_cluster(monkeypatch)
  assert detect() is None
  for name, value in _SLURM.items():
    monkeypatch.setenv(name, value)
  monkeypatch.setenv('SLURM_NTASKS', '1')  # One task: a single process.
  assert detect() is None
  monkeypatch.setenv('SLURM_NTASKS', '4')
  assert detect() == ('slurm', 4)
  _no_cluster(monkeypatch)
  monkeypatch.setenv('OMPI_COMM_WORLD_SIZE', '2')
  monkeypatch.setenv('OMPI_COMM_WORLD_RANK', '0')
  monkeypatch.setenv('OMPI_COMM_WORLD_LOCAL_RANK', '0')
  monkeypatch.setenv('OMPI_MCA_orte_hnp_uri', '123.0;tcp://10.0.0.1:4567')
  assert detect() == ('ompi', 2)


def test_multiprocess_open_mpi_5_processes_are_not_run_one_by_one(
    monkeypatch):
  _no_cluster(monkeypatch)
  monkeypatch.setenv('OMPI_COMM_WORLD_SIZE', '2')  # No orte_hnp_uri (5.x).
  with pytest.raises(ValueError, match='Open MPI started 2 processes'):
    distributed.initialize()


def test_multiprocess_distributed_imports_no_jax():
  done = subprocess.run(
      [sys.executable, '-c', 'import sys; from fedhelp_jax import '
       'distributed; print("jax" in sys.modules)'],
      cwd=ROOT, text=True, capture_output=True, timeout=60, check=True)
  assert done.stdout.strip() == 'False'


def test_multiprocess_run_flags_fail_in_one_line_and_are_in_help():
  done = subprocess.run(
      [sys.executable, '-m', 'experiments.run', '--config=tests/tiny_config.py',
       '--num_processes=2', '--process_id=0'],
      cwd=ROOT, env=_env(), text=True, capture_output=True, timeout=120,
      check=False)
  assert done.returncode == 1
  assert done.stderr.strip().splitlines() == [
      'FlagError: --num_processes=2 needs --coordinator_address too '
      '(--coordinator_address=HOST:PORT of process 0, the same in every '
      'process; --process_id=0..1, one per process).']
  done = subprocess.run([sys.executable, '-m', 'experiments.run', '--help'],
                        cwd=ROOT, env=_env(), text=True, capture_output=True,
                        timeout=120, check=True)
  assert ('--coordinator_address=HOST:PORT --num_processes=N --process_id=I'
          in done.stdout)
  assert 'experiments.launch_local' in done.stdout
