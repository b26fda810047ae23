# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""The README's library example runs as written and trains and scores a
federation: the first ```python block of README.md is executed as is."""

import os
import re

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _first_python_block() -> str:
  with open(os.path.join(ROOT, 'README.md'), encoding='utf-8') as f:
    text = f.read()
  match = re.search(r'^```python\n(.*?)^```', text, re.S | re.M)
  assert match, 'README.md has no ```python block'
  return match.group(1)


def test_readme_example_trains_and_evaluates():
  namespace = {'__name__': 'readme_example'}
  exec(compile(_first_python_block(), 'README.md', 'exec'), namespace)  # pylint: disable=exec-used
  data, metrics, result = (namespace['data'], namespace['metrics'],
                           namespace['result'])
  rounds = 3
  # Training: one loss per round and silo, all finite.
  for g, d in data.items():
    loss = np.asarray(metrics.silos[g]['train_loss'])
    assert loss.shape == (rounds, len(d['n'])), (g, loss.shape)
    assert np.all(np.isfinite(loss)), g
  assert int(namespace['state'].round) == rounds
  # Evaluation: every real silo scored, group means in [0, 1].
  num_silos = sum(len(d['n']) for d in data.values())
  assert len(result['clients']['accuracy']) == num_silos
  for g in list(data) + ['all']:
    summary = result['summary'][g]
    for name in ('accuracy', 'macro_f1'):
      assert 0.0 <= summary[name] <= 1.0, (g, name, summary[name])
    assert np.isnan(summary['auc']) or 0.0 <= summary['auc'] <= 1.0


def test_readme_algorithm_table_matches_the_registry():
  """Every registered algorithm has a row, and its sampling and DP
  columns say what its AlgorithmSpec declares."""
  from fedhelp_jax import algorithms  # pylint: disable=g-import-not-at-top
  with open(os.path.join(ROOT, 'README.md'), encoding='utf-8') as f:
    rows = [l for l in f.read().splitlines() if l.startswith('| `')]
  listed = {}
  for row in rows:
    cells = [c.strip() for c in row.strip('|').split('|')]
    for name in re.findall(r'`([a-z][a-z0-9_]*)`', cells[0]):
      listed[name] = cells
  assert sorted(listed) == algorithms.names()
  for name, cells in listed.items():
    spec = algorithms.spec(name)
    assert cells[4] == ('no' if spec.no_sampling else 'yes'), name
    yes = lambda flag: 'yes' if flag else 'no'
    assert cells[5] == f'{yes(spec.record_dp)} / {yes(spec.silo_dp)}', name
