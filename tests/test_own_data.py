# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""A user's own arrays through the front door: ``run_experiment(config,
data=...)`` with validation, checkpoints, the log and the summary
(scikit-learn's ``digits``, 8x8 images, as a two-class task)."""

import os

import numpy as np
import pytest
from sklearn import datasets

from fedhelp_jax import errors
from fedhelp_jax import experiment
from fedhelp_jax import reporting
from fedhelp_jax import validate
from tests import tiny_config


def _digits():
  d = datasets.load_digits()
  x = (d.images / 16.0).astype(np.float32)[..., None]
  y = (d.target % 2).astype(np.int32)  # Odd vs even.
  return {'train_x': x[:1400], 'train_y': y[:1400], 'test_x': x[1400:],
          'test_y': y[1400:]}


def _config():
  config = tiny_config.get_config('fedavg')
  config.rounds = 2
  return config


def test_own_arrays_run_with_log_checkpoint_and_summary(tmp_path):
  data = _digits()
  summary = experiment.run_experiment(_config(), str(tmp_path), data=data)
  assert summary['dataset'] == 'arrays'
  assert 0.0 <= summary['final']['summary']['all']['accuracy'] <= 1.0
  assert len(reporting.read_jsonl(str(tmp_path / 'metrics.jsonl'))) == 2
  assert os.listdir(tmp_path / 'checkpoints')
  # The same data resumes the finished run; other data is another run.
  again = experiment.run_experiment(_config(), str(tmp_path), data=data)
  assert again['already_complete']
  assert again['config_hash'] == summary['config_hash']
  other = dict(data, train_y=1 - data['train_y'])
  hashes = {experiment.config_hash(experiment.own_data(_config(), d)[0])
            for d in (data, other)}
  assert len(hashes) == 2


def test_bad_own_data_is_a_clear_error():
  data = _digits()
  data['train_x'] = data['train_x'].copy()
  data['train_x'][3, 0, 0, 0] = np.nan
  with pytest.raises(errors.DataError, match=r'data\[train\]'):
    experiment.own_data(_config(), data)
  with pytest.raises(errors.DataError, match="missing \\['test_y'\\]"):
    experiment.own_data(_config(), {k: v for k, v in _digits().items()
                                    if k != 'test_y'})


def test_arrays_dataset_without_data_says_how(tmp_path):
  config = _config()
  config.dataset.name = 'arrays'
  with pytest.raises(validate.ConfigError, match='data=...'):
    experiment.run_experiment(config, str(tmp_path))
