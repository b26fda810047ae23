# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""Results files are strict JSON: undefined values are null, never NaN."""

import json
import math
import os

import numpy as np

from fedhelp_jax import reporting


def _strict_load(text):
  def refuse(token):
    raise ValueError(f'non-strict JSON token {token}')
  return json.loads(text, parse_constant=refuse)


def test_nan_and_inf_become_null_and_numpy_values_become_plain(tmp_path):
  obj = {'auc': float('nan'), 'x': np.float32(np.inf), 'n': np.int64(3),
         'arr': np.array([1.0, np.nan]), 'ok': np.bool_(True),
         'nested': [{'v': np.float64(0.5)}]}
  path = str(tmp_path / 'summary.json')
  reporting.write_json(path, obj)
  with open(path) as f:
    back = _strict_load(f.read())
  assert back == {'auc': None, 'x': None, 'n': 3, 'arr': [1.0, None],
                  'ok': True, 'nested': [{'v': 0.5}]}


def test_metrics_log_lines_are_strict(tmp_path):
  logger = reporting.MetricsLogger(str(tmp_path))
  logger.log({'round': 1, 'summary': {'small': {'auc': math.nan}}})
  with open(tmp_path / 'metrics.jsonl') as f:
    line = f.readline()
  assert _strict_load(line)['summary']['small']['auc'] is None


def _committed_json_files(root):
  """The repository's committed ``*.json`` (every one under ``root``, minus
  hidden and build directories, where git cannot say)."""
  import subprocess  # pylint: disable=g-import-not-at-top
  try:
    done = subprocess.run(['git', 'ls-files', '-z', '*.json'], cwd=root,
                          capture_output=True, check=True, timeout=60)
    return [p for p in done.stdout.decode().split('\0') if p]
  except (OSError, subprocess.SubprocessError):
    found = []
    for base, dirs, files in os.walk(root):
      dirs[:] = [d for d in dirs if not d.startswith(('.', '__'))
                 and d not in ('build', 'runs')]
      found += [os.path.relpath(os.path.join(base, f), root)
                for f in files if f.endswith('.json')]
    return found


def test_every_committed_json_file_is_strict():
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  paths = _committed_json_files(root)
  assert paths
  bad = []
  for path in paths:
    full = os.path.join(root, path)
    if not os.path.exists(full):  # Deleted in the work tree, not committed.
      continue
    with open(full) as f:
      text = f.read()
    try:
      _strict_load(text)
    except ValueError as e:
      bad.append(f'{path}: {e}')
  assert not bad, 'not strict JSON (NaN/Infinity are not JSON):\n' + '\n'.join(
      bad)
