# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""``config.dataset.evaluate_on``: silos scored on the held-out validation
split train on exactly the silos of the test-scored run."""

import numpy as np
import pytest

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
