# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""The client axis sharded over 8 CPU devices equals the single-device run.

Forcing 8 host devices only works before jax initialises, and this pytest
process imported jax long ago, so the checks run once in a subprocess
(``shard_worker.py``, with ``XLA_FLAGS=--xla_force_host_platform_device_
count=8``) that prints its measurements as JSON; the tests below assert on
them. Tolerances are float32 reduction-order noise: on a mesh the server's
weighted mean sums per-device partial sums.
"""

import json
import os
import subprocess
import sys

import pytest

_HERE = os.path.dirname(os.path.abspath(__file__))
_TOL = 1e-5
# Both compiled strategies under the mesh: vmap here, chunked in FedHelp and
# in the padding checks.
_EQUIVALENCE = ('fedavg_vmap', 'fedhelp_chunked')


def _run_worker(*checks):
  """Runs the named checks (all when none) in one 8-device subprocess."""
  env = dict(os.environ)
  env['XLA_FLAGS'] = (env.get('XLA_FLAGS', '') +
                      ' --xla_force_host_platform_device_count=8').strip()
  env['JAX_PLATFORMS'] = 'cpu'
  root = os.path.dirname(_HERE)
  env['PYTHONPATH'] = os.pathsep.join(
      p for p in (root, env.get('PYTHONPATH')) if p)
  proc = subprocess.run(
      [sys.executable, os.path.join(_HERE, 'shard_worker.py'), *checks],
      cwd=root, env=env, capture_output=True, text=True, timeout=600,
      check=False)
  lines = [l for l in proc.stdout.splitlines()
           if l.startswith('SHARD_RESULTS ')]
  assert proc.returncode == 0 and lines, (
      f'shard_worker.py failed (rc={proc.returncode}):\n'
      f'{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}')
  return json.loads(lines[-1][len('SHARD_RESULTS '):])


@pytest.fixture(scope='module')
def shard_results():
  """The engine-level checks, in one 8-device subprocess (one jax start).
  run_experiment on a mesh is pinned by the slow test below and, in the
  default run, by test_topology_resume.py (4 devices)."""
  return _run_worker('fedavg_vmap', 'fedhelp_chunked', 'padding',
                     'pfednet_padding', 'dp_padding', 'poisson_padding')


def test_shard_worker_sees_eight_cpu_devices(shard_results):
  assert shard_results['num_devices'] == 8
  assert shard_results['backend'] == 'cpu'


@pytest.mark.parametrize('check', _EQUIVALENCE)
def test_shard_8_devices_equals_single_device(shard_results, check):
  """FedAvg (vmap) and FedHelp (chunked; two models in the large group)."""
  r = shard_results[check]
  assert r['server'] < _TOL, r
  assert r['clients'] < _TOL, r
  assert r['metrics'] < _TOL, r
  assert r['moved'] > 1e-3, r  # The runs really trained.


@pytest.mark.parametrize('check', _EQUIVALENCE)
def test_shard_client_states_span_all_devices(shard_results, check):
  """Client states are split over the mesh (one silo per device of 8)."""
  r = shard_results[check]
  assert r['client_devices'] == 8, r
  assert not r['client_replicated'], r
  assert r['client_shard_rows'] == [1], r
  assert r['server_replicated'], r


def test_shard_padding_with_dummy_silos_equals_unpadded_run(shard_results):
  """3 + 5 silos on 4 devices: padded to 4 + 8 with masked dummy silos."""
  r = shard_results['padding']
  assert r['num_real_clients'] == {'large': 3, 'small': 5}
  assert r['padded_clients'] == {'large': 4, 'small': 8}
  assert r['small_shard_rows'] == [2], r
  assert r['dummy_weights_max'] == 0.0, r
  assert not r['dummy_nonfinite'], r  # Dummies must not trip the guard.
  # Equal to the UNPADDED single-device run: the dummies move nothing.
  assert r['server'] < _TOL, r
  assert r['clients'] < _TOL, r
  assert r['metrics'] < _TOL, r


def test_shard_pfednet_with_padding_equals_unpadded_run(shard_results):
  """2 + 3 silos on 4 devices: per-silo server state and loops in the step.

  pFedNet keeps per-silo rows on the server (``z``) and runs while_loops
  (ADMM, TV prox) whose carries start from constants; under shard_map that
  must still trace, and the dummy silos must stay off the graph.
  """
  r = shard_results['pfednet_padding']
  assert r['padded_clients'] == {'large': 4, 'small': 4}
  assert r['dummy_weights_max'] == 0.0, r
  assert not r['dummy_nonfinite'], r
  assert r['server'] < _TOL, r
  assert r['metrics'] < _TOL, r


def test_shard_dp_sgd_noise_is_the_same_on_4_devices_as_on_1(shard_results):
  """DP-SGD's Poisson batches and noise come from per-silo keys, and
  silo-level DP-FedAvg's server noise from the replicated server key: the
  padded 4-device run equals the unpadded single-device run."""
  r = shard_results['dp_padding']
  assert r['padded_clients'] == {'large': 4, 'small': 8}
  assert r['dummy_weights_max'] == 0.0, r
  assert not r['dummy_nonfinite'], r
  assert r['server'] < _TOL, r
  assert r['clients'] < _TOL, r
  assert r['metrics'] < _TOL, r


def test_shard_poisson_cohort_is_the_same_on_4_devices_as_on_1(shard_results):
  """Poisson client sampling draws each real silo from the (seed, round,
  group) key: the dummy silos that pad a group to the mesh neither shift
  the draw nor the rate q = m / (real silos)."""
  r = shard_results['poisson_padding']
  assert r['padded_clients'] == {'large': 4, 'small': 8}
  assert r['dummy_weights_max'] == 0.0, r
  assert r['server'] < _TOL, r
  assert r['clients'] < _TOL, r
  assert r['metrics'] < _TOL, r
  counts = r['sampled_counts']
  # A Poisson cohort, not the fixed m = 2 of every round and group.
  assert any(c != 2 for per_group in counts.values() for c in per_group), r


@pytest.mark.slow
def test_shard_run_experiment_num_devices_4_matches_1():
  r = _run_worker('experiment')['experiment']
  assert r['num_silos'] == {'1': 4, '4': 4, '0': 4}, r  # Dummies unreported.
  assert r['metric_keys'] == ['accuracy', 'auc', 'macro_f1']
  assert r['clients'] < 1e-6, r
  # num_devices=0 takes every visible device, and matches one device.
  assert r['devices'] == {'1': 1, '4': 4, '0': 8}, r
  assert r['clients_auto'] < 1e-6, r
  # pFedNet's per-silo server z across compiled chunks on a mesh.
  assert r['pfednet_devices'] == {'1': 1, '0': 8}, r
  assert r['pfednet_clients'] < 1e-5, r
  # A 4-device checkpoint resumes on 1 device (test_topology_resume.py
  # checks the arithmetic).
  assert r['resumed_on_1'] == 2, r
  assert r['summary_all_accuracy'][0] == pytest.approx(
      r['summary_all_accuracy'][1])
