# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""Client sampling and K-config sweeps on a device mesh equal their
one-device runs, over 2 processes x 2 CPU devices and over 1 x 4.

``mesh_worker.py`` runs the checks in subprocesses (the device count and
``jax.distributed`` are fixed when jax starts) and prints the measured
differences; the tolerances here are float32 reduction-order noise (on a
mesh the server sums per-device partial sums).
"""

import json
import os
import subprocess
import sys

import pytest

from tests import subprocess_env

_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(_HERE)
_WORKER = os.path.join(_HERE, 'mesh_worker.py')
_TOL = 1e-5
_TIMEOUT_S = 300


_env = subprocess_env.cpu_env


def _results(stdout):
  lines = [l for l in stdout.splitlines() if l.startswith('MESH_RESULTS ')]
  return json.loads(lines[-1][len('MESH_RESULTS '):]) if lines else None


@pytest.fixture(scope='module')
def two_processes():
  port = subprocess_env.free_port()
  procs = [subprocess.Popen(
      [sys.executable, _WORKER, 'sampling,process_local,sweep_engine',
       f'127.0.0.1:{port}',
       '2', str(i)], cwd=_ROOT, env=_env(2), stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True) for i in range(2)]
  outs = []
  try:
    for p in procs:
      outs.append(p.communicate(timeout=_TIMEOUT_S))
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  results = [_results(out) for out, _ in outs]
  assert all(p.returncode == 0 for p in procs) and all(results), '\n'.join(
      f'--- process {i} rc={p.returncode}\n{o[-2000:]}\n{e[-3000:]}'
      for i, (p, (o, e)) in enumerate(zip(procs, outs)))
  return results


@pytest.fixture(scope='module')
def one_process():
  proc = subprocess.run([sys.executable, _WORKER, 'run_sweep'], cwd=_ROOT,
                        env=_env(4), capture_output=True, text=True,
                        timeout=_TIMEOUT_S, check=False)
  results = _results(proc.stdout)
  assert proc.returncode == 0 and results, (
      f'rc={proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}')
  return results


def test_multihost_mesh_spans_two_processes(two_processes):
  for r in two_processes:
    assert r['processes'] == 2 and r['devices'] == 4


def test_multihost_sampling_on_mesh_equals_one_device(two_processes):
  """5 of 8 small silos drawn per round, spread over 4 devices (3 padding
  rows of weight 0): server, every silo's state and metrics match."""
  for r in two_processes:
    s = r['sampling']
    assert s['server'] < _TOL and s['clients'] < _TOL, s
    assert s['metrics'] < _TOL, s
    assert s['sampled_per_round'] == [5, 5, 5], s  # Padding not counted.
    assert s['moved'] > 1e-3, s  # It trained.


def test_multihost_process_local_silos_build_the_same_arrays(two_processes):
  """Each process packs only its own silos (4 large over 4 devices: rows
  0-1 on process 0, 2-3 on process 1) and the global arrays and the round
  are those of placing the whole federation."""
  rows = [r['process_local']['rows'] for r in two_processes]
  assert rows[0]['large'] == [0, 2] and rows[1]['large'] == [2, 4], rows
  assert rows[0]['small'] == [0, 4] and rows[1]['small'] == [4, 8], rows
  for r in two_processes:
    assert r['process_local']['data'] == 0.0, r['process_local']
    assert r['process_local']['state'] == 0.0, r['process_local']


def test_multihost_sweep_on_2d_mesh_equals_configs_one_by_one(two_processes):
  """K = 4 configs on a ('configs', 'clients') = 2 x 2 mesh spanning both
  processes: each config's state and metrics equal its run alone."""
  for r in two_processes:
    s = r['sweep_engine']
    assert s['max_diff'] < _TOL, s
    assert s['server_spec'] == "P('configs',)", s
    assert s['configs_differ'] > 1e-3, s  # The configs really differ.


@pytest.mark.slow  # 30 s; the engine-level 2-D sweep above is the default.
def test_multihost_run_sweep_with_mesh_equals_sequential(one_process):
  """``sweep.run_sweep(configs, mesh=make_sweep_mesh(2, 2))``, host loop
  included (padding, placement, evaluation), vs the configs one by one."""
  s = one_process['run_sweep']
  assert s['modes'] == ['vmap'] * 4, s
  assert s['state'] < _TOL and s['metrics'] < 1e-6, s
