# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""The equal-budget, validation-selected pFedNet table
(``experiments/pfednet_power.py``)."""

import json
import types

import numpy as np
import pytest

from experiments import pfednet_clustered_table as clustered
from experiments import pfednet_power
from fedhelp_jax import runner


def test_grid_is_the_recipe_value_times_the_same_five_factors():
  np.testing.assert_allclose(pfednet_power.grid(0.1),
                             [0.01, 0.1 / 10 ** 0.5, 0.1, 0.1 * 10 ** 0.5, 1.0])


def _part(val, nonfinite=(False,) * 5):
  val = np.asarray(val, np.float64)[:, None]
  return {'values': np.arange(5.0), 'val': val, 'test': 1.0 - val,
          'nonfinite': np.asarray(nonfinite)}


def test_select_reads_validation_only_and_skips_non_finite_values():
  parts = [_part([0.5, 0.6, 0.7, 0.9, 0.8], [False] * 3 + [True, False]),
           _part([0.5, 0.6, 0.7, 0.9, 0.8])]
  got = pfednet_power.select(parts)
  # 0.9 went non-finite on seed 0; the best eligible mean is 0.8 (index 4),
  # though the test scores would have picked index 0.
  assert got['index'] == 4 and got['value'] == 4.0
  assert got['eligible'] == [True, True, True, False, True]
  np.testing.assert_allclose(got['test_mean'], [0.5, 0.4, 0.3, 0.1, 0.2])


def test_select_breaks_a_tie_towards_the_recipe_value():
  got = pfednet_power.select([_part([0.9, 0.9, 0.9, 0.9, 0.9])])
  assert got['index'] == 2
  got = pfednet_power.select([_part([0.9, 0.5, 0.5, 0.5, 0.9])])
  assert got['index'] in (0, 4)


def test_a_grid_member_scores_as_a_plain_run_at_its_value():
  config = pfednet_power._tabular_config('fedprox', 1)
  config.rounds, config.eval_every = 2, 2
  part = pfednet_power.run_grid(config, 'fedprox', 1, log=lambda _: None)
  # Independently: one run at the 4th value, on the test-scored federation.
  _, on_test = pfednet_power._federations(config, 1)
  value = part['values'][3]
  member = on_test._replace(hparams={**on_test.hparams, 'mu': np.float32(
      value)})
  program = runner.build_program(config, on_test.task, on_test.groups,
                                 on_test.info)
  (result,) = runner.run(program, [member], rounds=2, eval_every=2)
  np.testing.assert_array_equal(
      part['test'][3], clustered.own_test_scores(program, result, on_test))
  assert part['val'].shape[0] == 5 and not part['nonfinite'].any()


def _interval(mean, lo, hi, detectable=True):
  return {'all': {'mean': mean, 'ci95': [lo, hi], 'detectable': detectable,
                  'n_seeds': 10, 'n_test_images': 320}}


def test_overview_row_names_the_best_baseline_and_marks_ties():
  summary = {
      'methods': {'pfednet': _interval(0.80, 0.78, 0.82),
                  'pfednet_oracle': _interval(0.95, 0.93, 0.97),
                  'fedavg': _interval(0.60, 0.58, 0.62),
                  'local': _interval(0.81, 0.79, 0.83)},
      'paired': {'pfednet_vs_local': _interval(-0.01, -0.03, 0.01, False),
                 'pfednet_vs_fedavg': _interval(0.2, 0.18, 0.22),
                 'pfednet_vs_pfednet_oracle': _interval(-0.15, -0.17,
                                                        -0.13)}}
  cells = [c.strip() for c in
           pfednet_power.overview_row('set', summary).split('|')[1:-1]]
  # The oracle graph is an ablation of pFedNet, not a baseline: Local is
  # the best baseline, and its difference holds 0.
  assert cells == ['set', '10 x 320', '0.800 [0.780, 0.820]', 'local 0.810',
                   '-0.010 [-0.030, +0.010] n.d.',
                   '+0.200 [+0.180, +0.220]',
                   '-0.010 [-0.030, +0.010] n.d.',
                   '-0.150 [-0.170, -0.130]']


def test_overview_row_shows_the_range_of_seed_dependent_test_sets():
  """Seg seeds draw test sets of different sizes: the cell says so."""
  ragged = _interval(0.8, 0.7, 0.9)
  ragged['all'].update(n_test_images=65, n_test_images_per_seed=[67, 65, 68])
  summary = {'methods': {'pfednet': ragged,
                         'fedavg': _interval(0.6, 0.5, 0.7)}, 'paired': {}}
  cells = pfednet_power.overview_row('set', summary).split('|')
  assert cells[2].strip() == '10 x 65-68'


def test_overview_reads_every_committed_set(tmp_path):
  summary = {'methods': {'pfednet': _interval(0.8, 0.7, 0.9),
                         'fedavg': _interval(0.6, 0.5, 0.7)},
             'paired': {}}
  folder, label = pfednet_power.OVERVIEW_SETS[3]
  (tmp_path / folder).mkdir(parents=True)
  (tmp_path / folder / 'summary.json').write_text(json.dumps(summary))
  lines = pfednet_power.overview_markdown(str(tmp_path)).splitlines()
  assert len(lines) == 3 and lines[2].startswith(f'| {label} |')


def _hand_dice(pred, truth, classes=(1, 2)):
  """Foreground-mean Dice of one image, written out."""
  out = []
  for c in classes:
    p, t = pred == c, truth == c
    total = p.sum() + t.sum()
    out.append(1.0 if total == 0 else 2.0 * (p & t).sum() / total)
  return float(np.mean(out))


def test_segmentation_scores_are_each_images_dice():
  rng = np.random.default_rng(0)
  # One group of 2 real silos and one padding silo; 3 and 2 test images.
  truth = rng.integers(0, 3, size=(3, 3, 4, 4))
  probs = rng.random((3, 3, 4, 4, 3)).astype(np.float32)
  fed = types.SimpleNamespace(
      task=types.SimpleNamespace(name='segmentation'), groups=('small',),
      fed={'small': {'test_x': np.zeros((3, 3, 4, 4, 1)), 'test_y': truth,
                     'test_n': np.asarray([3, 2, 0]),
                     'n': np.asarray([5, 4, 0])}})
  program = types.SimpleNamespace(predict_fn=lambda state, inputs: {
      'small': probs})
  got = clustered.own_test_scores(program, types.SimpleNamespace(state=None),
                                  fed)
  pred = probs.argmax(-1)
  want = [_hand_dice(pred[c, i], truth[c, i]) for c, n in ((0, 3), (1, 2))
          for i in range(n)]
  np.testing.assert_allclose(got, want, rtol=1e-6)


@pytest.mark.slow
def test_the_seg_task_scores_validation_and_test_dice():
  config = pfednet_power._seg_config('fedavg', 0)
  config.rounds, config.eval_every = 1, 1
  config.local.local_steps = 1
  part = pfednet_power.run_grid(config, 'fedavg', 0, log=lambda _: None)
  _, on_test = pfednet_power._federations(config, 0)
  n_test = sum(int(d['test_n'].sum()) for d in on_test.fed.values())
  assert part['test'].shape == (5, n_test)
  assert part['val'].shape[0] == 5 and part['val'].shape[1] > 0
  assert ((part['test'] >= 0) & (part['test'] <= 1)).all()


def test_the_lr_arm_shares_the_own_arm_parts_of_lr_tuned_methods():
  """Local tunes the lr under both knobs (one grid): its lr-arm part is the
  own-arm part; pFedNet's (lam vs lr) is its own."""
  local = pfednet_power.TASKS['tabular'][0]('local', 3)
  pfednet = pfednet_power.TASKS['tabular'][0]('pfednet', 3)
  r = local.rounds
  path = lambda c, m, own: pfednet_power.part_path(c, m, 3, 'lr', 'lr', own)
  assert path(local, 'local', 'own') == f'own/local-s3-r{r}.npz'
  assert path(pfednet, 'pfednet', 'own') == f'lr/pfednet-lr-s3-r{r}.npz'
  assert path(local, 'local', None) == f'lr/local-lr-s3-r{r}.npz'
  assert (pfednet_power.part_path(local, 'local', 3, 'own', 'own', 'x')
          == f'own/local-s3-r{r}.npz')
