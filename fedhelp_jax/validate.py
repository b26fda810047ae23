# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""Input validation that runs on the host before anything is compiled.

Every error names the config field (or data array) and says how to fix it.
"""

import difflib
from typing import Any

import numpy as np

_TASKS = ('classification', 'segmentation')
_STRATEGIES = ('auto', 'vmap', 'chunked', 'loop')
_AGGREGATIONS = ('samples', 'uniform', 'group_balanced')
_DATASETS = ('medmnist', 'brain_slices', 'breast_cancer')
# Which model families can produce outputs for which task.
_TASK_MODELS = {'classification': ('cnn', 'resnet', 'logreg'),
                'segmentation': ('unet',)}


class ConfigError(ValueError):
  """A config field has a wrong type, range or combination."""


def _fail(field: str, problem: str, fix: str):
  raise ConfigError(f'config.{field}: {problem} Fix: {fix}')


def _choice(field, value, options):
  if value not in options:
    close = difflib.get_close_matches(str(value), options, n=1)
    hint = f' (did you mean {close[0]!r}?)' if close else ''
    _fail(field, f'unknown value {value!r}{hint}.',
          f'use one of {list(options)}.')


def _int(config, field, *, minimum, path=None):
  value = _get(config, path or field)
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
    _fail(field, f'expected an integer, got {value!r} '
          f'({type(value).__name__}).', 'write a whole number.')
  if value < minimum:
    _fail(field, f'must be >= {minimum}, got {value}.',
          f'set it to at least {minimum}.')
  return int(value)


def _get(config, path):
  node = config
  for part in path.split('.'):
    node = node[part]
  return node


def validate_config(config: Any) -> None:
  """Checks types, ranges and combinations of an experiment config.

  Raises:
    ConfigError: naming the field and the fix.
  """
  from fedhelp_jax import algorithms  # Avoid an import cycle.
  for field in ('algorithm', 'task', 'dataset', 'model', 'local', 'rounds',
                'eval_every', 'seed', 'num_classes'):
    if field not in config:
      _fail(field, 'is missing.', 'start from a file in experiments/configs/.')
  try:
    algorithms.check_name(config.algorithm)
  except ValueError as e:
    raise ConfigError(f'{e} Fix: pick a registered algorithm.') from None
  _choice('task', config.task, _TASKS)
  _choice('dataset.name', config.dataset.name, _DATASETS)
  _int(config, 'rounds', minimum=1)
  _int(config, 'eval_every', minimum=1)
  _int(config, 'seed', minimum=0)
  _int(config, 'num_classes', minimum=2)
  _int(config, 'local.batch_size', minimum=1)
  steps, epochs = config.local.get('local_steps'), config.local.get(
      'local_epochs')
  if (steps is None) == (epochs is None):
    _fail('local', 'set exactly one of local_steps and local_epochs.',
          'set the other one to None.')
  if steps is not None:
    _int(config, 'local.local_steps', minimum=1)
  if epochs is not None and not float(epochs) > 0:
    _fail('local.local_epochs', f'must be > 0, got {epochs}.',
          'use e.g. 1.0.')
  _choice('local.optimizer', config.local.optimizer, ('sgd', 'adam'))
  _choice('strategy', config.get('strategy', 'auto'), _STRATEGIES)
  _choice('aggregation', config.get('aggregation', 'samples'), _AGGREGATIONS)
  _choice('nonfinite', config.get('nonfinite', 'stop'), ('stop', 'skip'))
  if config.get('num_devices') is not None:
    _int(config, 'num_devices', minimum=1)
  models_ok = _TASK_MODELS[config.task]
  if config.model.name not in models_ok:
    _fail('model.name', f'{config.model.name!r} cannot be used for the '
          f'{config.task} task.', f'use one of {list(models_ok)}.')
  for key, value in config.get('hparams', {}).items():
    if isinstance(value, bool) or not isinstance(value, (int, float)):
      _fail(f'hparams.{key}', f'expected a number, got {value!r}.',
            'hyperparameters are numbers (they become arrays).')
    if key in ('lr', 'server_lr') and not value > 0:
      _fail(f'hparams.{key}', f'must be > 0, got {value}.',
            'use a positive learning rate, e.g. 0.01.')
    if key in ('mu', 'temperature', 'momentum') and value < 0:
      _fail(f'hparams.{key}', f'must be >= 0, got {value}.',
            'use a non-negative value.')
  if 'temperature' in config.get('hparams', {}) and not (
      config.hparams.temperature > 0):
    _fail('hparams.temperature', 'must be > 0.', 'use e.g. 1.0.')
  part = config.get('partition')
  if part is not None:
    num_large = _int(config, 'partition.num_large', minimum=0)
    num_small = _int(config, 'partition.num_small', minimum=0)
    if num_large + num_small < 1:
      _fail('partition', 'needs at least one silo.',
            'set num_large and/or num_small > 0.')
    if num_large:
      _int(config, 'partition.large_size', minimum=1)
    small = part.get('small_size')
    sizes = small if isinstance(small, (list, tuple)) else [small]
    for s in sizes:
      if num_small and (not isinstance(s, (int, np.integer)) or s < 1):
        _fail('partition.small_size', f'sizes must be integers >= 1, got '
              f'{small!r}.', 'use an int or a (min, max) pair.')
    if isinstance(small, (list, tuple)) and (len(small) != 2 or
                                              small[0] > small[1]):
      _fail('partition.small_size', f'expected (min, max), got {small!r}.',
            'write a pair with min <= max.')
    _int(config, 'partition.test_size', minimum=1)
    alpha = part.get('label_skew_alpha')
    if alpha is not None and not alpha > 0:
      _fail('partition.label_skew_alpha', f'must be > 0 or None, got {alpha}.',
            'use e.g. 0.5 (smaller = more skew), or None for no skew.')


def validate_federation(fed: dict[str, dict[str, np.ndarray]], task) -> None:
  """Checks packed silo data: shapes, label range, masks, empty silos.

  Raises:
    ValueError: naming the group, array and problem.
  """
  for g, d in fed.items():
    for key in ('x', 'y', 'n', 'test_x', 'test_y', 'test_n'):
      if key not in d:
        raise ValueError(f'data[{g!r}] lacks {key!r}; pack silos with '
                         'fedhelp_jax.data.pack_group.')
    x, y, n = d['x'], d['y'], d['n']
    c = n.shape[0]
    if x.shape[0] != c or y.shape[0] != c:
      raise ValueError(f'data[{g!r}]: x {x.shape}, y {y.shape} and n '
                       f'{n.shape} disagree on the number of silos.')
    if x.shape[:2] != y.shape[:2]:
      raise ValueError(f'data[{g!r}]: x {x.shape} and y {y.shape} disagree on '
                       'examples per silo.')
    if np.any(n < 1):
      bad = np.flatnonzero(n < 1).tolist()
      raise ValueError(f'data[{g!r}]: silos {bad} have no training examples; '
                       'enlarge partition sizes or drop those silos.')
    if np.any(n > x.shape[1]):
      raise ValueError(f'data[{g!r}]: n exceeds the padded size {x.shape[1]}.')
    if not np.all(np.isfinite(x)):
      raise ValueError(f'data[{g!r}]["x"] contains NaN or inf values.')
    if task.name == 'segmentation' and y.ndim != x.ndim - 1:
      raise ValueError(f'data[{g!r}]: segmentation masks must be [C, N, H, W] '
                       f'matching x {x.shape}; got y {y.shape}.')
    if task.name == 'classification' and y.ndim != 2:
      raise ValueError(f'data[{g!r}]: classification labels must be [C, N]; '
                       f'got {y.shape}.')
    for key in ('y', 'test_y'):
      arr = d[key]
      if arr.size and (arr.min() < 0 or arr.max() >= task.num_classes):
        what = 'mask values' if task.name == 'segmentation' else 'labels'
        raise ValueError(
            f'data[{g!r}][{key!r}]: {what} must lie in [0, '
            f'{task.num_classes - 1}] (num_classes={task.num_classes}); found '
            f'range [{arr.min()}, {arr.max()}]. Fix config.num_classes or the '
            'data.')
