# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""Results files are strict JSON: undefined values are null, never NaN."""

import json
import math

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
