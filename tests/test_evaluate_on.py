# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""``config.dataset.evaluate_on``: silos scored on the held-out validation
split train on exactly the silos of the test-scored run."""

import numpy as np
import pytest

from experiments.configs import pfednet_seg
from experiments.configs import pfednet_tabular
from fedhelp_jax import experiment
from fedhelp_jax import validate


def _federation(evaluate_on, seed=3):
  config = pfednet_tabular.get_config('fedavg')
  config.seed = seed
  config.dataset.evaluate_on = evaluate_on
  validate.validate_config(config)
  raw = experiment.load_raw(config)
  fed, _ = experiment.build_federation(config, raw)
  return raw, fed['small']


def _rows_in(rows, pool):
  """Per row of ``rows [M, F]``: whether it is a row of ``pool [P, F]``."""
  return (rows[:, None, :] == pool[None, :, :]).all(-1).any(-1)


def test_validation_scoring_keeps_the_training_silos_and_draws_from_val():
  raw_t, on_test = _federation('test')
  raw_v, on_val = _federation('validation')
  for key in ('x', 'y', 'n'):  # The same silos train, bit for bit.
    np.testing.assert_array_equal(on_val[key], on_test[key])
  np.testing.assert_array_equal(raw_v['public_x'], raw_t['public_x'])
  for c in range(on_val['test_x'].shape[0]):
    n = int(on_val['test_n'][c])
    rows = on_val['test_x'][c, :n]
    assert n > 0
    # Every scored row is a validation row and none is a test row.
    assert _rows_in(rows, raw_t['public_x']).all()
    assert not _rows_in(rows, raw_t['test_x']).any()
    # The silo's test-scored set is drawn from the test split instead.
    nt = int(on_test['test_n'][c])
    assert _rows_in(on_test['test_x'][c, :nt], raw_t['test_x']).all()


def test_validation_scoring_refuses_an_algorithm_that_trains_on_it():
  config = pfednet_tabular.get_config('feddf')
  config.dataset.evaluate_on = 'validation'
  with pytest.raises(validate.ConfigError, match='trains on the held-out'):
    validate.validate_config(config)


def test_unknown_evaluate_on_is_a_config_error():
  config = pfednet_tabular.get_config('fedavg')
  config.dataset.evaluate_on = 'valid'
  with pytest.raises(validate.ConfigError, match='evaluate_on'):
    validate.validate_config(config)


def _brain(evaluate_on, validation_fraction):
  config = pfednet_seg.get_config('fedavg')
  config.seed = 2
  config.dataset.evaluate_on = evaluate_on
  config.partition.validation_fraction = validation_fraction
  validate.validate_config(config)
  raw = experiment.load_raw(config)
  return raw, experiment.build_federation(config, raw)[0]


def test_brain_validation_slices_come_out_of_training_and_spare_the_test():
  raw_0, _ = _brain('test', 0.0)
  raw_v, _ = _brain('test', 0.2)
  info_0, info_v = raw_0['info'], raw_v['info']
  assert 'validation' not in raw_0
  # The test slices do not depend on whether validation is held out.
  assert info_v['test_indices'] == info_0['test_indices']
  for before, train, val, test in zip(
      info_0['train_indices'], info_v['train_indices'],
      info_v['validation_indices'], info_v['test_indices']):
    assert sorted(train + val) == before and val
    assert not set(val) & set(train) and not set(val) & set(test)
    # round(0.2 / 0.75 x the training slices), at least one.
    assert len(val) == max(1, round(len(before) * 0.2 / 0.75))


def test_brain_validation_scoring_keeps_the_training_silos():
  _, on_test = _brain('test', 0.2)
  raw_v, on_val = _brain('validation', 0.2)
  for g in on_test:
    for key in ('x', 'y', 'n'):
      np.testing.assert_array_equal(on_val[g][key], on_test[g][key])
    np.testing.assert_array_equal(on_val[g]['test_x'],
                                  raw_v['validation'][g]['test_x'])
    assert not np.array_equal(on_val[g]['test_n'], 0)
    # Every silo's validation slices are its own, not its test slices.
    for c in range(on_val[g]['test_x'].shape[0]):
      n = int(on_val[g]['test_n'][c])
      val_rows = on_val[g]['test_x'][c, :n].reshape(n, -1)
      test_rows = on_test[g]['test_x'][c, :int(on_test[g]['test_n'][c])]
      assert not _rows_in(val_rows, test_rows.reshape(len(test_rows),
                                                      -1)).any()


def test_brain_validation_needs_held_out_slices():
  config = pfednet_seg.get_config('fedavg')
  config.dataset.evaluate_on = 'validation'
  with pytest.raises(validate.ConfigError, match='validation_fraction'):
    experiment.load_raw(config)
  config.partition.validation_fraction = 0.75
  with pytest.raises(validate.ConfigError, match='validation_fraction'):
    validate.validate_config(config)
