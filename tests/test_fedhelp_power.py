# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""The powered FedHelp table's pieces on the tiny federation: per-image
scores on the common test set and the paired summary."""

import numpy as np
import pytest

from experiments import fedhelp_power
from tests import tiny_config


def _one_conv_config(algorithm=None):
  """The tiny config with one conv layer: the scores' bookkeeping does not
  depend on the model, and the test compiles three round programs (fedavg
  and local over 2 seeds, fedavg over 1), a third faster so."""
  config = tiny_config.get_config(algorithm)
  config.model.features, config.model.dense = (4,), 8
  return config


def test_power_partition_scores_seeds_together_and_resumes(tmp_path):
  logged = []
  run = lambda seeds: fedhelp_power.run_partition(
      _one_conv_config, ['fedavg', 'local'], train_seeds=seeds,
      partition_seed=0, rounds=2, last_evals=1, log=logged.append,
      parts_dir=str(tmp_path))
  both = run([0, 1])
  assert len(logged) == 2
  for m in ('fedavg', 'local'):
    scores, summaries = both[m]['scores'], both[m]['common_summary']
    assert scores['small'].shape == (2, 624)  # The whole official test split.
    for k in range(2):
      # With one evaluation kept, the mean over images of the per-image
      # fraction of small silos right is the mean of their accuracies.
      for g in ('small', 'large'):
        assert np.isclose(scores[g][k].mean(), summaries[k][g]['accuracy'])
  assert not np.array_equal(both['fedavg']['scores']['small'],
                            both['local']['scores']['small'])
  assert not np.array_equal(both['fedavg']['scores']['small'][0],
                            both['fedavg']['scores']['small'][1])
  # Seeds run together score as each run alone (one program, K members).
  alone = fedhelp_power.run_partition(
      _one_conv_config, ['fedavg'], train_seeds=[1], partition_seed=0,
      rounds=2, last_evals=1, log=logged.append)
  np.testing.assert_allclose(alone['fedavg']['scores']['small'][0],
                             both['fedavg']['scores']['small'][1], atol=1e-6)
  # A second call reuses the saved parts instead of training again.
  before = len(logged)
  again = run([0, 1])
  assert sum('reused' in line for line in logged[before:]) == 2
  assert 'common_summary' not in again['fedavg']
  for m in ('fedavg', 'local'):
    for g in both[m]['scores']:
      np.testing.assert_array_equal(again[m]['scores'][g],
                                    both[m]['scores'][g])


def test_power_summary_has_intervals_and_paired_tests():
  rng = np.random.default_rng(0)
  scores = {m: {'small': rng.random((4, 50)) + shift}
            for m, shift in (('fedhelp', 0.2), ('fedavg', 0.0))}
  summary = fedhelp_power.summarize(scores)
  fedhelp = summary['methods']['fedhelp']['small']
  assert fedhelp['n_seeds'] == 4 and fedhelp['n_test_images'] == 50
  assert fedhelp['ci95'][0] < fedhelp['mean'] < fedhelp['ci95'][1]
  paired = summary['paired']['fedhelp_vs_fedavg']['small']
  assert paired['detectable'] and paired['ci95'][0] > 0
  assert 'mcnemar' not in paired  # Fractions, not 0/1 correctness.


def test_extra_comparisons_pair_any_two_methods_and_name_unknown_ones():
  rng = np.random.default_rng(2)
  scores = {m: {'large': rng.random((4, 40)) + shift}
            for m, shift in (('fedhelp', 0.0), ('fedavg', 0.0),
                             ('local_large', 0.3))}
  summary = fedhelp_power.summarize(scores,
                                    extra_pairs=(('local_large', 'fedavg'),))
  teacher = summary['paired']['local_large_vs_fedavg']['large']
  # The mean difference is the plain mean of the per-image differences.
  np.testing.assert_allclose(
      teacher['mean'],
      np.mean(scores['local_large']['large'] - scores['fedavg']['large']))
  assert teacher['detectable'] and teacher['sign_count'] == [4, 0]
  assert 'fedhelp_vs_local_large' in summary['paired']
  with pytest.raises(ValueError, match='central'):
    fedhelp_power.summarize(scores, extra_pairs=(('central', 'fedavg'),))


def test_precondition_compares_fm_with_centrals_interval():
  central = {'all': {'mean': 0.80, 'ci95': [0.78, 0.82]}}
  assert fedhelp_power.precondition(0.90, central)['holds']
  low = fedhelp_power.precondition(0.81, central)
  assert not low['holds'] and 'NOT above' in low['reading']


def test_method_overrides_reach_the_config():
  fedhelp = fedhelp_power.method_config(
      tiny_config.get_config, 'fedhelp_no_fm', partition_seed=1, rounds=2)
  assert fedhelp.algorithm == 'fedhelp' and fedhelp.fedhelp.fm_kd is False
  assert fedhelp.seed == 1 and fedhelp.common_test
  samples = fedhelp_power.method_config(
      tiny_config.get_config, 'fedavg_samples', partition_seed=0, rounds=2)
  assert samples.algorithm == 'fedavg' and samples.aggregation == 'samples'


def test_teacher_methods_use_the_large_model_and_drop_forward_kd():
  local_large = fedhelp_power.method_config(
      tiny_config.get_config, 'local_large', partition_seed=0, rounds=2)
  assert local_large.algorithm == 'local'
  assert local_large.model.to_dict() == local_large.large_model.to_dict()
  no_forward = fedhelp_power.method_config(
      tiny_config.get_config, 'fedhelp_no_forward_kd', partition_seed=0,
      rounds=2)
  assert no_forward.hparams.lambda_forward == 0.0


def test_markdown_table_states_intervals_and_readings():
  rng = np.random.default_rng(1)
  scores = {m: {'small': rng.random((4, 30)) + shift}
            for m, shift in (('fedhelp', 0.5), ('fedavg', 0.0),
                             ('local', 0.49))}
  text = fedhelp_power.markdown(fedhelp_power.summarize(scores))
  assert '| fedhelp_vs_fedavg |' in text and '| 4 | 30 |' in text
  assert 'no detectable difference' in text  # fedhelp vs local: 0.01 apart.
  assert '| detectable |' in text


def test_interval_bars_figure_draws_each_group_and_orders_best_on_top():
  def cell(mean):
    return {'mean': mean, 'ci95': [mean - 0.02, mean + 0.03], 'n_seeds': 10,
            'n_test_images': 99}
  summary = {'methods': {m: {'small': cell(v), 'large': cell(v / 2)}
                         for m, v in (('fedavg', 0.7), ('fedhelp', 0.9),
                                      ('local', 0.5))}}
  fig = fedhelp_power.interval_bars_figure(
      summary, ('small', 'large'), highlight='fedhelp', xlabel='{group} acc',
      title='t', best_on_top=True)
  axes = fig.get_axes()
  assert [a.get_xlabel() for a in axes] == ['small acc', 'large acc']
  bars = axes[0].patches
  # Sorted ascending by the last group: the best method is the top bar.
  assert [round(b.get_width(), 6) for b in bars] == [0.5, 0.7, 0.9]
  assert [t.get_text() for t in axes[0].get_yticklabels()] == [
      'local', 'fedavg', 'fedhelp']
  assert bars[2].get_facecolor() != bars[0].get_facecolor()  # Highlighted.
  lo, hi = axes[0].get_xlim()
  assert lo <= 0.5 - 0.02 and hi >= 0.9 + 0.03  # Every interval shows.
