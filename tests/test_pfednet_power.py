# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""The equal-budget, validation-selected pFedNet table
(``experiments/pfednet_power.py``)."""

import numpy as np

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
      part['test'][3], clustered.own_test_correct(program, result, on_test))
  assert part['val'].shape[0] == 5 and not part['nonfinite'].any()
