# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""The powered FedHelp table's pieces on the tiny federation: per-image
scores on the common test set and the paired summary."""

import numpy as np

from experiments import fedhelp_power
from tests import tiny_config


def test_power_pair_scores_agree_with_common_test_accuracy():
  logged = []
  pair = fedhelp_power.run_pair(
      tiny_config.get_config, ['fedavg', 'local'], train_seed=0,
      partition_seed=0, rounds=2, last_evals=1, log=logged.append)
  assert len(logged) == 2
  for m in ('fedavg', 'local'):
    scores, summary = pair[m]['scores'], pair[m]['common_summary']
    assert scores['small'].shape == (624,)  # The whole official test split.
    # With one evaluation kept, the mean over images of the per-image
    # fraction of small silos right is the mean of their accuracies.
    assert np.isclose(scores['small'].mean(), summary['small']['accuracy'])
    assert np.isclose(scores['large'].mean(), summary['large']['accuracy'])
  assert not np.array_equal(pair['fedavg']['scores']['small'],
                            pair['local']['scores']['small'])


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
