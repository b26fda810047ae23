# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""A user's own arrays through the front door: ``run_experiment(config,
data=...)`` with validation, checkpoints, the log and the summary
(scikit-learn's ``digits``, 8x8 images, as a two-class task)."""

import os

import numpy as np
import pytest
from sklearn import datasets

from fedhelp_jax import datasets as datasets_lib
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


def _own_silos():
  """The digits as a user's own silos under group names of their own: two
  'hospital' silos of 300 images and three 'clinic' silos of 60."""
  d = _digits()
  cut = lambda lo, hi, t: {'train_x': d['train_x'][lo:hi],
                           'train_y': d['train_y'][lo:hi],
                           'test_x': d['test_x'][t:t + 40],
                           'test_y': d['test_y'][t:t + 40]}
  return {'silos': {
      'hospital': [cut(0, 300, 0), cut(300, 600, 40)],
      'clinic': [cut(600 + 60 * i, 660 + 60 * i, 80 + 40 * i)
                 for i in range(3)]}}


def test_own_silos_run_under_their_own_group_names(tmp_path):
  data = _own_silos()
  summary = experiment.run_experiment(_config(), str(tmp_path), data=data)
  final = summary['final']['summary']
  assert {'hospital', 'clinic', 'all'} <= set(final)
  # The pooled row is the mean over the 5 silos, each on its own 40 images.
  accuracy = [final['hospital']['accuracy']] * 2 + \
      [final['clinic']['accuracy']] * 3
  np.testing.assert_allclose(final['all']['accuracy'], np.mean(accuracy),
                             atol=1e-6)
  config, raw = experiment.own_data(_config(), data)
  fed, info = experiment.build_federation(config, raw)
  assert list(fed) == ['hospital', 'clinic']
  assert info['groups'] == {'hospital': [0, 1], 'clinic': [2, 3, 4]}
  assert info['train_sizes'] == [300, 300, 60, 60, 60]
  np.testing.assert_array_equal(fed['clinic']['x'][1, :60],
                                data['silos']['clinic'][1]['train_x'])
  np.testing.assert_array_equal(fed['hospital']['test_y'][1],
                                data['silos']['hospital'][1]['test_y'])
  # The same silos resume the finished run.
  again = experiment.run_experiment(_config(), str(tmp_path), data=data)
  assert again['already_complete']


def test_bad_own_silos_name_the_silo():
  data = _own_silos()
  data['silos']['clinic'][2] = dict(data['silos']['clinic'][2])
  del data['silos']['clinic'][2]['test_y']
  with pytest.raises(errors.DataError, match=r"data\[silos\]\['clinic'\]\[2\]"):
    experiment.own_data(_config(), data)
  with pytest.raises(errors.DataError, match='Python identifier'):
    experiment.own_data(_config(), {'silos': {'a b': _own_silos()['silos']
                                              ['clinic']}})


def test_own_silos_sample_by_their_group_names():
  config = _config()
  config.clients_per_round = {'clinic': 2}
  config, raw = experiment.own_data(config, _own_silos())
  validate.validate_config(config)
  fed = experiment.prepare_federation(config, raw)
  assert fed.groups == ('hospital', 'clinic')
  config.clients_per_round = {'ward': 1}
  validate.validate_config(config)
  with pytest.raises(errors.ConfigError, match="'ward' is not a silo group"):
    experiment.prepare_federation(config, raw)


def test_a_registered_dataset_spec_runs_by_name(tmp_path, monkeypatch):
  """A dataset from outside the package is one ``DatasetSpec``: the digits
  as typed ``Splits``, run by ``config.dataset.name`` like a built-in."""
  calls = []

  def load(config):
    calls.append(config.dataset.name)
    return datasets_lib.Splits(**_digits())

  monkeypatch.setitem(datasets_lib._SPECS, 'digits',  # pylint: disable=protected-access
                      datasets_lib.DatasetSpec('digits', load, 'sklearn digits'))
  config = _config()
  config.dataset = {'name': 'digits'}
  summary = experiment.run_experiment(config, str(tmp_path))
  assert calls == ['digits'] and summary['dataset'] == 'digits'
  # The same arrays through the front door give the same federation.
  raw = experiment.load_raw(config)
  assert sorted(raw) == ['test_x', 'test_y', 'train_x', 'train_y']
  np.testing.assert_array_equal(raw['train_x'], _digits()['train_x'])
  with pytest.raises(ValueError, match='already registered'):
    datasets_lib.register(datasets_lib.DatasetSpec('digits', load))
  with pytest.raises(TypeError, match='not datasets.Splits'):
    datasets_lib.to_raw(_digits())
