# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""The epsilon-sweep report: paired seed statistics and generated tables."""

import json
import os

import numpy as np
import pytest

from experiments import dp_sweep


def test_paired_seeds_matches_a_hand_computation():
  # Differences 0.1, 0.0, 0.1: mean 1/15, sample SD sqrt(1/300), t(0.975, 2)
  # = 4.302653 (tables), so the half width is 4.302653 * sqrt(1/300) /
  # sqrt(3) and the paired t statistic is (1/15) / (sqrt(1/300) / sqrt(3)) =
  # 2, whose two-sided p with 2 degrees of freedom is 1 - 2/sqrt(6).
  got = dp_sweep.paired_seeds([0.8, 0.7, 0.9], [0.7, 0.7, 0.8])
  half = 4.302653 * np.sqrt(1 / 300) / np.sqrt(3)
  np.testing.assert_allclose(got['mean'], 1 / 15)
  np.testing.assert_allclose(got['ci95'], [1 / 15 - half, 1 / 15 + half],
                             rtol=1e-6)
  np.testing.assert_allclose(got['p_value'], 1 - 2 / np.sqrt(6), rtol=1e-9)
  assert got['sign_count'] == [2, 0]
  assert not got['detectable']  # The interval holds 0.
  assert dp_sweep.paired_seeds([0.9, 0.91, 0.92],
                               [0.5, 0.5, 0.52])['detectable']


def _result(method, small_values, kinds=('private', 'clip_only',
                                         'non_private')):
  rows = []
  for i, kind in enumerate(kinds):
    values = [v + 0.01 * i for v in small_values]
    summary = dp_sweep.summarize(values)
    rows.append({'kind': kind,
                 'target_epsilon': 1.0 if kind == 'private' else None,
                 'noise_multiplier': [3.0, 3.1, 2.9] if kind == 'private'
                                     else [0.0] * 3,
                 'epsilon_spent': [1.0] * 3 if kind == 'private'
                                  else [None] * 3,
                 'seeds': [0, 1, 2], 'n_test_images': 2300,
                 'small': summary, 'large': summary, 'all': summary})
  return {'dataset': 'pneumonia', 'method': method, 'rows': rows,
          'recipe': {'hparams': {'lr': 0.01}},
          'accuracy_on': 'own draws', 'delta': '1/n',
          'timing': {'configs': 9, 'programs': 1, 'sweep_wall_s': 12.0}}


def test_markdown_has_both_methods_and_their_paired_difference(tmp_path):
  folder = tmp_path / 'dp_pneumonia'
  folder.mkdir()
  for method, values in (('fedavg', [0.6, 0.7, 0.65]),
                         ('fedhelp', [0.7, 0.7, 0.75])):
    with open(folder / f'{method}.json', 'w') as f:
      json.dump(_result(method, values), f)
  text = dp_sweep.markdown(str(tmp_path))
  assert '### pneumonia, fedavg, lr 0.01' in text
  assert '### pneumonia, fedhelp, lr 0.01' in text
  assert '### pneumonia, lr 0.01: fedhelp minus fedavg' in text
  lines = text.splitlines()
  section = lines[lines.index('### pneumonia, lr 0.01: fedhelp minus fedavg'):]
  rows = [l for l in section if l.startswith('| ') and '---' not in l][1:4]
  assert [r.split(' | ')[0] for r in rows] == [
      '| 1', '| clip only (sigma 0)', '| non-private']
  expected = dp_sweep.paired_seeds([0.7, 0.7, 0.75], [0.6, 0.7, 0.65])
  assert f"{expected['mean']:+.3f}" in rows[0]
  assert rows[0].endswith(' n.d. |') == (not expected['detectable'])


def test_comparison_skips_rows_whose_seeds_differ():
  a, b = _result('fedhelp', [0.7, 0.7, 0.75]), _result('fedavg',
                                                       [0.6, 0.7, 0.65])
  b['rows'][0]['seeds'] = [0, 1, 3]
  table = dp_sweep.comparison_table(a, b)
  assert not any(l.startswith('| 1 |') for l in table)
  assert any(l.startswith('| non-private |') for l in table)


@pytest.mark.parametrize('name', ['dp_pneumonia', 'dp_blood'])
def test_committed_results_render(name):
  """The committed JSON renders (the docs' tables are generated from it)."""
  root = os.path.join(os.path.dirname(__file__), '..', 'experiments',
                      'results')
  if not os.path.isdir(os.path.join(root, name)):
    pytest.skip(f'{name} not committed')
  assert '| non-private |' in dp_sweep.markdown(root)


def test_noise_cost_is_each_private_row_minus_clip_only():
  d = _result('fedhelp', [0.7, 0.72, 0.75])  # clip only = private + 0.01.
  table = dp_sweep.noise_cost_table(d)
  assert table[0] == '### pneumonia, fedhelp, lr 0.01: private minus clip only'
  rows = [l for l in table if l.startswith('| ') and '---' not in l][1:]
  assert len(rows) == 1 and rows[0].startswith('| 1 | -0.010 [-0.010, -0.010]')
  assert 'n.d.' not in rows[0]  # A constant -0.01 on every seed.
  d['rows'] = [r for r in d['rows'] if r['kind'] != 'clip_only']
  assert not dp_sweep.noise_cost_table(d)  # No reference, no table.


def test_write_markdown_draws_each_folder_and_links_it(tmp_path):
  folder = tmp_path / 'results' / 'dp_pneumonia'
  folder.mkdir(parents=True)
  for method, values in (('fedavg', [0.6, 0.7, 0.65]),
                         ('fedhelp', [0.7, 0.7, 0.75])):
    with open(folder / f'{method}.json', 'w') as f:
      json.dump(_result(method, values), f)
  doc = tmp_path / 'privacy.md'
  doc.write_text('# Privacy\n\nprose\n\n<!-- generated below -->\n\nSTALE\n')
  dp_sweep.write_markdown(str(doc), str(tmp_path / 'results'))
  text = doc.read_text()
  assert text.startswith('# Privacy\n\nprose\n\n<!-- generated below -->')
  assert 'STALE' not in text and 'accuracy_vs_epsilon.png)' in text
  assert (folder / 'accuracy_vs_epsilon.png').stat().st_size > 1000
  fig = dp_sweep.epsilon_figure({'fedavg': _result('fedavg', [0.6] * 3)})
  ax = fig.get_axes()[0]
  assert ax.get_xscale() == 'log'
  # One curve, and its clip-only and non-private levels.
  assert len(ax.get_lines()) == 3


def test_sweep_configs_are_the_private_runs_then_both_references():
  base = dp_sweep.base_config('pneumonia', 'fedhelp', rounds=2, lr=0.01)
  assert base.rounds == 2
  assert base.hparams.lr == base.hparams.lr_large == 0.01
  sigmas = {(1.0, 0): 9.0, (1.0, 1): 9.5, (8.0, 0): 1.8, (8.0, 1): 1.9}
  configs, labels = dp_sweep.sweep_configs(base, sigmas, [0, 1])
  assert labels == [(1.0, 0), (1.0, 1), (8.0, 0), (8.0, 1),
                    ('clip_only', 0), ('clip_only', 1),
                    ('non_private', 0), ('non_private', 1)]
  assert [c.seed for c in configs] == [l[1] for l in labels]
  assert [c.hparams.dp_noise_multiplier for c in configs[:4]] == [
      9.0, 9.5, 1.8, 1.9]
  for c, (kind, _) in zip(configs[4:], labels[4:]):
    # Clip only keeps the DP steps (level 'record', the clip) at sigma 0.
    assert c.dp.level == ('record' if kind == 'clip_only' else 'none')
  assert configs[4].hparams.dp_noise_multiplier == 0.0
  assert configs[4].dp.clip_norm == base.dp.clip_norm == 1.0
