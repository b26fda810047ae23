# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""``benchmarks/scale.py --quick``: every section's rows, in fresh processes.

Checks the plumbing, not speed: ``--quick`` (tiny shapes) runs section a in
one fresh process per silo count, section b as 1 process x 2 host devices
and as 2 processes x 1 device joined with ``jax.distributed`` on 127.0.0.1,
and section c's draws in one process, and writes one JSON file whose rows
carry the required fields with positive numbers.
"""

import glob
import json
import math
import os
import subprocess
import sys

import pytest

from benchmarks import gpu_suite
from benchmarks import report

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_TIMEOUT_S = 180
_REQUIRED = ('silos', 'processes', 'devices_per_process', 'seconds_per_round',
             'images_per_s', 'peak_rss_bytes',
             'persistent_state_bytes_per_silo', 'data_bytes_per_silo')
_POSITIVE = ('silos', 'processes', 'devices_per_process', 'seconds_per_round',
             'images_per_s', 'peak_rss_bytes', 'data_bytes_per_silo',
             'seconds_per_silo_step', 'silo_steps_per_s')


def _positive(x):
  return (isinstance(x, (int, float)) and not isinstance(x, bool)
          and math.isfinite(x) and x > 0)


@pytest.mark.slow  # 30 s of a benchmark's smoke run.
def test_scale_quick_multiprocess_writes_every_section(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  proc = subprocess.run(
      [sys.executable, '-m', 'benchmarks.scale', '--quick', '--out',
       str(tmp_path)], cwd=_ROOT, env=env, capture_output=True, text=True,
      timeout=_TIMEOUT_S, check=False)
  assert proc.returncode == 0, f'{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}'
  (path,) = glob.glob(str(tmp_path / 'scale-*.json'))
  with open(path) as f:
    rec = json.load(f)
  assert rec['benchmark'] == 'scale' and rec['backend'] == 'cpu'
  assert 'load_avg_1m_at_start' in rec and rec['jax']
  rows = rec['rows']
  assert {r['section'] for r in rows} == {'a', 'b', 'c'}
  for r in rows:
    assert 'error' not in r, r
    for key in _REQUIRED:
      assert key in r, (key, r)
    for key in _POSITIVE:
      assert _positive(r[key]), (key, r)
    # FedAvg's silos keep no model between rounds: 0 bytes is a valid count.
    assert isinstance(r['persistent_state_bytes_per_silo'], int)
    assert r['persistent_state_bytes_per_silo'] >= 0

  a = [r for r in rows if r['section'] == 'a']
  assert [r['silos'] for r in a] == [4, 16]
  assert all((r['processes'], r['devices_per_process']) == (1, 1) for r in a)
  assert all(r['worker_devices'] == 1 for r in a)
  assert 'silo_step_cost_vs_ref' in a[-1]

  b = {(r['processes'], r['devices_per_process']): r
       for r in rows if r['section'] == 'b'}
  assert set(b) == {(1, 2), (2, 1)}
  assert all(r['worker_devices'] == 2 for r in b.values())
  assert len(b[(2, 1)]['peak_rss_bytes_per_process']) == 2
  assert _positive(rec['summary']['b']['two_process_speed_vs_one_process'])

  c = [r for r in rows if r['section'] == 'c']
  assert [(r['silos'], r['clients_per_round']) for r in c] == [(32, 4),
                                                               (8, 4)]
  assert _positive(
      rec['summary']['c']['seconds_per_drawn_silo_max_over_min'])

  table = report.scale_table(rec)
  assert table.count('| a: silos') == 2 and table.count('| c: sampling') == 2
  assert '(b) 2 processes x 1 device at' in table


def test_gpu_suite_scale_section_smoke(tmp_path):
  """The GPU suite's ``scale`` section (smoke sizes): section a's rows in
  fresh processes, written to ``scale-<backend>.json``."""
  skip = ','.join(n for n in gpu_suite.SECTIONS if n != 'scale')
  assert gpu_suite.main(['--smoke', '--out_dir', str(tmp_path), '--skip',
                         skip]) == 0
  with open(tmp_path / 'gpu_suite-cpu.json') as f:
    entry = json.load(f)['sections']['scale']
  assert entry['status'] == 'ok' and entry['errors'] == [], entry
  with open(tmp_path / 'scale-cpu.json') as f:
    rec = json.load(f)
  assert rec['suite'] == 'gpu_suite'
  (row,) = rec['rows']
  assert row['section'] == 'a' and row['silos'] == 2
  for key in _POSITIVE:
    assert _positive(row[key]), (key, row)
