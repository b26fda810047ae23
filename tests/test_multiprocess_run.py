# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""``run_experiment`` over 2 real processes (``jax.distributed`` on
127.0.0.1, gloo collectives, one CPU device each) equals the 1-process run
over 2 host devices, and a 2-process run resumes from its checkpoint
bit-exactly.

Every process is a subprocess of ``multiprocess_run_worker.py`` with a
timeout; a crashed peer makes the other exit (JAX's coordination service
notices within seconds), so a failure cannot hang the suite.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests import subprocess_env

_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(_HERE)
_WORKER = os.path.join(_HERE, 'multiprocess_run_worker.py')
_ROUNDS = 4
_TIMEOUT_S = 240


_env = subprocess_env.cpu_env
_free_port = subprocess_env.free_port


def _fail(procs, what):
  logs = '\n'.join(f'--- process {i} (rc={p.returncode}):\n'
                   f'{(p.stdout or "")[-2000:]}\n{(p.stderr or "")[-3000:]}'
                   for i, p in enumerate(procs))
  pytest.fail(f'{what} failed:\n{logs}')


def _run_one_process(out_dir, workdir, *args):
  out = os.path.join(out_dir, 'single.json')
  proc = subprocess.run(
      [sys.executable, _WORKER, out, workdir, str(_ROUNDS), *args],
      cwd=_ROOT, env=_env(2), capture_output=True, text=True,
      timeout=_TIMEOUT_S, check=False)
  if proc.returncode:
    _fail([proc], '1-process run')
  with open(out) as f:
    return json.load(f)


def _run_two_processes(out_dir, workdir, tag, *args):
  """Both processes' records and their completed ``CompletedProcess``es."""
  port = _free_port()
  outs = [os.path.join(out_dir, f'{tag}_p{i}.json') for i in range(2)]
  procs = [subprocess.Popen(
      [sys.executable, _WORKER, outs[i], workdir, str(_ROUNDS),
       f'127.0.0.1:{port}', '2', str(i), *args], cwd=_ROOT, env=_env(1),
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for i in range(2)]
  done = []
  try:
    for p in procs:
      stdout, stderr = p.communicate(timeout=_TIMEOUT_S)
      done.append(subprocess.CompletedProcess(p.args, p.returncode, stdout,
                                              stderr))
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  if any(p.returncode for p in done):
    _fail(done, f'2-process run ({tag})')
  records = []
  for out in outs:
    with open(out) as f:
      records.append(json.load(f))
  return records, done


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  base = tmp_path_factory.mktemp('multiprocess')
  single = _run_one_process(str(base), str(base / 'one_process'))
  two, procs = _run_two_processes(str(base), str(base / 'two_processes'),
                                  'full')
  return {'base': base, 'single': single, 'two': two, 'procs': procs}


def test_multiprocess_run_sees_two_processes_of_one_device(runs):
  assert runs['single']['process_count'] == 1
  assert runs['single']['devices'] == 2
  assert [r['process_index'] for r in runs['two']] == [0, 1]
  assert all(r['process_count'] == 2 and r['devices'] == 2
             for r in runs['two'])


def test_multiprocess_run_equals_one_process_two_devices(runs):
  single = runs['single']
  for record in runs['two']:  # Every process ends with the same numbers.
    np.testing.assert_allclose(record['server_flat'], single['server_flat'],
                               rtol=0, atol=1e-6)
    for group, metrics in single['final'].items():
      for key, value in metrics.items():
        assert abs(record['final'][group][key] - value) <= 1e-6, (group, key)
    for key, values in single['clients'].items():
      np.testing.assert_allclose(record['clients'][key], values, atol=1e-6)
  # The run trained: the parameters moved away from their start.
  assert np.std(single['server_flat']) > 0


def test_multiprocess_run_only_process_zero_writes(runs):
  workdir = runs['base'] / 'two_processes'
  lines = (workdir / 'metrics.jsonl').read_text().splitlines()
  rounds = [json.loads(line)['round'] for line in lines]
  assert rounds == [2, 4], rounds  # Once each: one writer.
  assert (workdir / 'summary.json').exists()
  assert (workdir / 'config.json').exists()
  p0, p1 = runs['procs']
  assert '== fedavg' in p0.stdout  # The summary, printed by process 0 ...
  assert '== fedavg' not in p1.stdout  # ... and by no other.
  assert '[fedhelp_jax]' not in p1.stdout


def test_multiprocess_resume_is_bit_exact(runs):
  """Stopped after the round-2 checkpoint, then resumed by a new pair of
  processes: the same parameters as the uninterrupted 2-process run."""
  base = runs['base']
  workdir = str(base / 'resumed')
  _run_two_processes(str(base), workdir, 'first_half', '--stop_after=2')
  resumed, procs = _run_two_processes(str(base), workdir, 'second_half')
  assert 'resumed from round 2' in procs[0].stdout
  for record, full in zip(resumed, runs['two']):
    assert record['server_flat'] == full['server_flat']
    assert record['final'] == full['final']
