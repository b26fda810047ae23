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


def test_readme_algorithm_table_is_the_generated_one():
  """Every README row is a row the registry's specs generate, so it cannot
  drift from what the code declares, and every algorithm declares its
  paper. An algorithm added later is listed by ``python -m
  fedhelp_jax.algorithms`` without a README edit (its module and its test
  are all it takes)."""
  from fedhelp_jax import algorithms  # pylint: disable=g-import-not-at-top
  with open(os.path.join(ROOT, 'README.md'), encoding='utf-8') as f:
    rows = [l for l in f.read().splitlines() if l.startswith('| `')]
  generated = algorithms.table_rows()
  assert rows, 'the README has no algorithm table'
  for row in rows:
    assert row in generated, row
  for name in algorithms.names():
    assert algorithms.spec(name).paper, name


def test_algorithm_table_columns_follow_the_specs():
  from fedhelp_jax import algorithms  # pylint: disable=g-import-not-at-top
  from fedhelp_jax import types  # pylint: disable=g-import-not-at-top
  spec = types.AlgorithmSpec(
      'zz_probe', lambda *a, **k: None, {}, no_sampling='why not',
      record_dp=True, paper='Doe et al. 2030', arxiv='3001.00001',
      personalised='yes (all of it)')
  algorithms.register(spec)
  try:
    (row,) = [r for r in algorithms.table_rows() if '`zz_probe`' in r]
  finally:
    algorithms._SPECS.pop('zz_probe')  # pylint: disable=protected-access
  assert row == ('| `zz_probe` | Doe et al. 2030, [arXiv 3001.00001]'
                 '(https://arxiv.org/abs/3001.00001) | (outside the package) '
                 '| yes (all of it) | no | yes / no |')


def _github_anchor(heading: str) -> str:
  """GitHub's id of a markdown heading: lower case, punctuation dropped,
  spaces to hyphens."""
  return re.sub(r'[^\w\- ]', '', heading.strip().lower()).replace(' ', '-')


def test_readme_links_to_docs_sections_and_files_resolve():
  with open(os.path.join(ROOT, 'README.md'), encoding='utf-8') as f:
    links = re.findall(r'\]\(((?:docs|experiments)/[^)#\s]+)(?:#([^)\s]+))?\)',
                       f.read())
  assert links, 'README.md links to no docs'
  for path, anchor in links:
    full = os.path.join(ROOT, path)
    assert os.path.exists(full), f'README links to missing {path}'
    if anchor:
      with open(full, encoding='utf-8') as f:
        ids = {_github_anchor(h) for h in
               re.findall(r'^#+ (.*)$', f.read(), re.M)}
      assert anchor in ids, f'README links to missing {path}#{anchor}'
