# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""Input validation that runs on the host before anything is compiled.

Every error names the config field (or data array) and says how to fix it.
"""

from collections.abc import Mapping
import difflib
import math
from typing import Any

import numpy as np

from fedhelp_jax import algorithms
from fedhelp_jax import compression
from fedhelp_jax import datasets
from fedhelp_jax import dp_fedavg
from fedhelp_jax import engine
from fedhelp_jax import privacy
from fedhelp_jax import runner
# The data checks and both error types are part of this module's API.
from fedhelp_jax.errors import ConfigError
from fedhelp_jax.errors import DataError
from fedhelp_jax.federation_checks import check_federation
from fedhelp_jax.federation_checks import validate_federation

__all__ = ('ConfigError', 'DataError', 'check_federation',
           'validate_federation', 'validate_config', 'validate_partition_fits')

_TASKS = ('classification', 'segmentation')
PARTITION_KINDS = ('large_small', 'shares')
_STRATEGIES = ('auto', 'vmap', 'chunked', 'loop')
_AGGREGATIONS = ('samples', 'uniform', 'group_balanced')
# 'arrays': a user's own data, given to run_experiment(config, data=...).
# Which model families can produce outputs for which task.
_TASK_MODELS = {'classification': ('cnn', 'resnet', 'logreg'),
                'segmentation': ('unet',)}


def _fail(field: str, problem: str, fix: str):
  raise ConfigError(f'config.{field}: {problem} Fix: {fix}')


def _show(value, limit: int = 80) -> str:
  """``repr`` on one line (a ConfigDict's own spans several), shortened."""
  if hasattr(value, 'to_dict'):
    value = value.to_dict()
  text = ' '.join(repr(value).split())
  return text if len(text) <= limit else text[:limit - 3] + '...'


def _choice(field, value, options):
  if not isinstance(value, str) or value not in options:
    close = difflib.get_close_matches(str(value), options, n=1)
    hint = f' (did you mean {close[0]!r}?)' if close else ''
    _fail(field, f'unknown value {_show(value)}{hint}.',
          f'use one of {list(options)}.')


def _int(config, field, *, minimum, path=None):
  value = _get(config, path or field)
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
    _fail(field, f'expected an integer, got {_show(value)} '
          f'({type(value).__name__}).', 'write a whole number.')
  if value < minimum:
    _fail(field, f'must be >= {minimum}, got {value}.',
          f'set it to at least {minimum}.')
  return int(value)


def _is_group(value) -> bool:
  return isinstance(value, Mapping) or hasattr(value, 'to_dict')


def _get(config, path):
  """The field at dotted ``path``; a missing one, or a parent that is not a
  group of fields, is a ``ConfigError``."""
  node, seen = config, []
  for part in path.split('.'):
    if not _is_group(node):
      _fail('.'.join(seen), f'expected a group of fields, got {_show(node)} '
            f'({type(node).__name__}).',
            'start from a file in experiments/configs/ and override single '
            'fields.')
    seen.append(part)
    if part not in node:
      _fail(path, 'is missing.', 'start from a file in experiments/configs/.')
    node = node[part]
  return node


def _group(config, field, *, optional=False):
  """The group of fields ``config.<field>`` ({} for an optional one that is
  absent or None)."""
  if optional and (field not in config or config[field] is None):
    return {}
  value = _get(config, field)
  if not _is_group(value):
    _fail(field, f'expected a group of fields, got {_show(value)} '
          f'({type(value).__name__}).',
          'start from a file in experiments/configs/ and override single '
          'fields.')
  return value


def _check_evaluate_on(config) -> None:
  evaluate_on = config.dataset.get('evaluate_on') or 'test'
  _choice('dataset.evaluate_on', evaluate_on, datasets.EVALUATE_ON)
  if (evaluate_on == 'validation'
      and algorithms.spec(config.algorithm).reads_public):
    raise ConfigError(
        f"config.dataset.evaluate_on='validation': {config.algorithm!r} "
        'trains on the held-out public split, so that split cannot also '
        "score it. Fix: use 'test', or hold out validation data another "
        'way.')


def _validate_compression(config) -> None:
  """``config.compression`` (optional): kind, fraction, levels, gamma."""
  if config.get('compression') is None:
    return
  _group(config, 'compression')
  section = config.compression
  unknown = sorted(set(section) - {'kind', 'fraction', 'levels', 'gamma',
                                   'error_feedback'})
  if unknown:
    _fail(f'compression.{unknown[0]}', 'is not a compression setting.',
          'use kind, fraction, levels, gamma and error_feedback.')
  _choice('compression.kind', section.get('kind', 'none'), compression.KINDS)
  fraction = section.get('fraction', 0.1)
  if (isinstance(fraction, bool) or not isinstance(fraction, (int, float))
      or not 0.0 < fraction <= 1.0):
    _fail('compression.fraction', f'must be in (0, 1], got {_show(fraction)}.',
          'use e.g. 0.1 (keep the top 10%).')
  if 'levels' in section:
    _int(config, 'compression.levels', minimum=1)
  gamma = section.get('gamma', 0.0)
  if (isinstance(gamma, bool) or not isinstance(gamma, (int, float))
      or not 0.0 <= gamma < float('inf')):
    _fail('compression.gamma', f'must be a finite number >= 0, got '
          f'{_show(gamma)}.', 'use e.g. 1e-3 (the TV prox strength).')
  if not isinstance(section.get('error_feedback', True), bool):
    _fail('compression.error_feedback', 'must be True or False.',
          'use True (the usual choice) or False.')


def validate_config(config: Any) -> None:
  """Checks types, ranges and combinations of an experiment config.

  Raises:
    ConfigError: naming the field and the fix.
  """
  for field in ('algorithm', 'task', 'dataset', 'model', 'local', 'rounds',
                'eval_every', 'seed', 'num_classes'):
    if field not in config:
      _fail(field, 'is missing.', 'start from a file in experiments/configs/.')
  for field in ('dataset', 'model', 'local'):
    _group(config, field)
  if not isinstance(config.algorithm, str):
    _fail('algorithm', f'expected a name, got {_show(config.algorithm)} '
          f'({type(config.algorithm).__name__}).',
          f'use one of {algorithms.names()}.')
  try:
    algorithms.check_name(config.algorithm)
  except ValueError as e:
    raise ConfigError(f'{e} Fix: pick a registered algorithm.') from None
  section = algorithms.spec(config.algorithm).section
  if section is not None:
    section.parse(config)  # Unknown keys and bad values, before any data.
  _choice('task', config.task, _TASKS)
  _validate_compression(config)
  _choice('dataset.name', _get(config, 'dataset.name'), datasets.names())
  _check_evaluate_on(config)
  _int(config, 'rounds', minimum=1)
  _int(config, 'eval_every', minimum=1)
  _int(config, 'seed', minimum=0)
  _int(config, 'num_classes', minimum=2)
  _int(config, 'local.batch_size', minimum=1)
  _check_local(config)
  _choice('local.optimizer', _get(config, 'local.optimizer'), ('sgd', 'adam'))
  _choice('strategy', config.get('strategy', 'auto'), _STRATEGIES)
  _choice('config_parallel', config.get('config_parallel', 'auto'),
          ('auto', 'vmap', 'map'))
  _choice('aggregation', config.get('aggregation', 'samples'), _AGGREGATIONS)
  _choice('nonfinite', config.get('nonfinite', 'stop'), ('stop', 'skip'))
  _check_devices(config)
  models_ok = _TASK_MODELS[config.task]
  model = _get(config, 'model.name')
  if not isinstance(model, str) or model not in models_ok:
    _fail('model.name', f'{_show(model)} cannot be used for the '
          f'{config.task} task.', f'use one of {list(models_ok)}.')
  _check_hparams(config)
  _check_dp(config)
  _check_clients_per_round(config)
  _check_partition(config)


def _check_local(config) -> None:
  """One of local_steps / local_epochs, in range."""
  steps, epochs = config.local.get('local_steps'), config.local.get(
      'local_epochs')
  if (steps is None) == (epochs is None):
    _fail('local', 'set exactly one of local_steps and local_epochs.',
          'set the other one to None.')
  if steps is not None:
    _int(config, 'local.local_steps', minimum=1)
  if epochs is not None and (
      isinstance(epochs, bool) or not isinstance(epochs, (int, float))
      or not 0 < epochs < math.inf):
    _fail('local.local_epochs', f'must be a finite number > 0, got '
          f'{_show(epochs)}.', 'use e.g. 1.0.')


def _check_devices(config) -> None:
  """``num_devices`` within what this process sees."""
  if config.get('num_devices') is None:
    return
  num_devices = _int(config, 'num_devices', minimum=0)  # 0: all visible.
  import jax  # pylint: disable=g-import-not-at-top
  visible = jax.device_count()
  if num_devices > visible:
    _fail('num_devices', f'asks for {num_devices} devices but {visible} '
          f'{jax.default_backend()} device(s) are visible.',
          f'set it to at most {visible}; on CPU, simulate more with '
          'XLA_FLAGS=--xla_force_host_platform_device_count=N set before '
          'jax is imported.')


def _check_validation_fraction(part) -> None:
  """``partition.validation_fraction`` (sites datasets): what is held out
  for validation must leave training slices beside the test fraction."""
  fraction = part.get('validation_fraction') or 0.0
  test_fraction = part.get('test_fraction', 0.25)
  if not isinstance(test_fraction, (int, float)):
    return  # Checked by the loader, which reads it.
  if (isinstance(fraction, bool) or not isinstance(fraction, (int, float))
      or not 0 <= fraction < 1 - test_fraction):
    _fail('partition.validation_fraction', f'must be in [0, 1 - '
          f'test_fraction) = [0, {1 - test_fraction:g}), got '
          f'{_show(fraction)}.', 'hold out less, or lower '
          'partition.test_fraction.')


def _check_partition(config) -> None:
  """The ``partition`` section, when there is one."""
  if config.get('partition') is None:
    return
  part = _group(config, 'partition')
  if part.get('kind', 'large_small') == 'shares':
    _check_shares_partition(config, part)
  else:
    _choice('partition.kind', part.get('kind', 'large_small'),
            PARTITION_KINDS)
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
      if num_small and (isinstance(s, bool)
                        or not isinstance(s, (int, np.integer)) or s < 1):
        _fail('partition.small_size', f'sizes must be integers >= 1, got '
              f'{_show(small)}.', 'use an int or a (min, max) pair.')
    if isinstance(small, (list, tuple)) and (len(small) != 2 or
                                              small[0] > small[1]):
      _fail('partition.small_size', f'expected (min, max), got {_show(small)}.',
            'write a pair with min <= max.')
    _int(config, 'partition.test_size', minimum=1)
    _check_validation_fraction(part)
    alpha = part.get('label_skew_alpha')
    if alpha is not None and (isinstance(alpha, bool) or not isinstance(
        alpha, (int, float)) or not 0 < alpha < math.inf):
      _fail('partition.label_skew_alpha', f'must be a finite number > 0 or '
            f'None, got {_show(alpha)}.',
            'use e.g. 0.5 (smaller = more skew), or None for no skew.')


def _number(field, value, *, low, low_open=False, example):
  if (isinstance(value, bool) or not isinstance(value, (int, float))
      or math.isnan(value) or value < low or (low_open and value == low)):
    bound = f'> {low:g}' if low_open else f'>= {low:g}'
    _fail(field, f'must be a number {bound}, got {_show(value)}.',
          f'use e.g. {example}.')


def _check_dp(config) -> None:
  """``config.dp`` (optional): record-level DP-SGD and its accounting."""
  if config.get('dp') is None:
    return
  _group(config, 'dp')
  try:
    dp = privacy.DPConfig.from_config(config.dp)
  except (TypeError, ValueError) as e:
    _fail('dp', str(e).removeprefix('config.dp: '),
          'see privacy.DPConfig for the fields.')
  _choice('dp.level', dp.level, privacy.LEVELS)
  _choice('dp.sampling', dp.sampling, privacy.SAMPLINGS)
  _choice('dp.accountant', dp.accountant, privacy.ACCOUNTANTS)
  _choice('dp.on_budget', dp.on_budget, privacy.ON_BUDGET)
  _number('dp.clip_norm', dp.clip_norm, low=0.0, low_open=True, example=1.0)
  _number('dp.noise_multiplier', dp.noise_multiplier, low=0.0, example=1.0)
  if dp.max_batch is not None:
    _int(config, 'dp.max_batch', minimum=1)
  if dp.delta is not None and not (isinstance(dp.delta, float)
                                   and 0.0 < dp.delta < 1.0):
    _fail('dp.delta', f'must be a float in (0, 1), got {_show(dp.delta)}.',
          'leave it unset (1 / records of the largest silo) or use 1e-5.')
  if dp.epsilon is not None:
    _number('dp.epsilon', dp.epsilon, low=0.0, low_open=True, example=8.0)
  if dp.on_budget != 'refuse' and dp.epsilon is None:
    _fail('dp.on_budget', f'{dp.on_budget!r} needs a budget.',
          'set dp.epsilon, e.g. 8.0.')
  if dp.level == 'silo':
    _check_silo_dp(config, dp)
  if not dp.enabled:
    return
  spec = algorithms.spec(config.algorithm)
  if not spec.record_dp:
    supported = [n for n in algorithms.names()
                 if algorithms.spec(n).record_dp]
    _fail('dp.level', f"'record' is not available for "
          f'{config.algorithm!r}: not all of its local steps that read a '
          "silo's records are clipped and noised (or counted by the "
          'accountant).', f'use one of {supported}, or level none.')
  if config.model.get('norm') == 'batch':
    _fail('model.norm', "'batch' cannot be used with DP-SGD: per-example "
          'gradients and a batch mean over private records do not mix.',
          "use norm 'group'.")


def _check_silo_dp(config, dp) -> None:
  _number('dp.server_clip', dp.server_clip, low=0.0, low_open=True,
          example=1.0)
  _number('dp.server_noise_multiplier', dp.server_noise_multiplier,
          low=0.0, example=1.0)
  if not algorithms.spec(config.algorithm).silo_dp:
    supported = [n for n in algorithms.names()
                 if algorithms.spec(n).silo_dp]
    _fail('dp.level', f"'silo' is not available for {config.algorithm!r}: "
          'its server step is not a function of the mean of delta uploads, '
          'so clipping each upload and noising the mean would not bound a '
          "silo's influence.", f'use one of {supported}.')
  if config.get('aggregation', 'samples') != 'uniform':
    _fail('aggregation', "silo-level DP needs 'uniform' weights: the noise "
          'is calibrated to a sum of clipped uploads divided by the cohort '
          'size, which sample-count weights would scale per silo.',
          "set aggregation 'uniform'.")


def _check_clients_per_round(config) -> None:
  """``clients_per_round``: group -> silos drawn per round (0 = all)."""
  sampling = _group(config, 'clients_per_round', optional=True)
  part = _group(config, 'partition', optional=True)
  counts = {}
  num_large = part.get('num_large', 0)
  shares = part.get('shares')
  if not isinstance(num_large, (int, np.integer)):
    pass  # Reported with the partition checks.
  elif part.get('kind', 'large_small') == 'shares':
    if isinstance(shares, (list, tuple)):
      counts = {'large': num_large, 'small': len(shares) - num_large}
  else:
    counts = {'large': num_large, 'small': part.get('num_small')}
  for group, m in sampling.items():
    field = f'clients_per_round.{group}'
    # A user's own silos (dataset 'arrays') may name other groups; those
    # are checked against the data (``experiment.prepare_federation``).
    own = (config.get('dataset') or {}).get('name') == 'arrays'
    if group not in ('large', 'small') and not own:
      _fail(field, 'is not a silo group.', "use 'large' or 'small'.")
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 0:
      _fail(field, f'must be an integer >= 0, got {_show(m)}.',
            'use the number of silos to draw per round, or 0 for all.')
    total = counts.get(group)
    if m and isinstance(total, (int, np.integer)) and m > total:
      _fail(field, f'draws {m} silos per round but the group has {total}.',
            f'use at most {total}, or 0 for all.')
  why_not = algorithms.sampling_unsupported(config.get('algorithm'))
  if any(sampling.values()) and why_not:
    _fail('clients_per_round', f'{config.algorithm!r} cannot sample silos: '
          f'{why_not}.', 'set clients_per_round to 0.')
  kind = runner.client_sampling(config)
  _choice('client_sampling', kind, engine.SAMPLINGS)
  name = config.get('algorithm')
  if (kind == 'poisson' and name in algorithms.names()
      and not algorithms.spec(name).silo_dp):
    _fail('client_sampling', f"'poisson' needs a server step of the mean "
          f'upload (the FedAvg family); {name!r} has none.',
          "use client_sampling 'fixed', or a FedAvg-family algorithm.")
  if kind == 'poisson' and config.get('strategy', 'auto') == 'loop':
    _fail('client_sampling', "'poisson' runs in the compiled round only.",
          "use strategy 'auto', 'vmap' or 'chunked'.")


def _check_shares_partition(config, part) -> None:
  """``partition.kind='shares'``: ``shares`` and ``num_large``."""
  shares = part.get('shares')
  if (not isinstance(shares, (list, tuple)) or not shares or any(
      isinstance(s, bool) or not isinstance(s, (int, float))
      or not math.isfinite(s) or s <= 0 for s in shares)):
    _fail('partition.shares', f'expected a list of positive numbers, got '
          f'{_show(shares)}.', 'use e.g. (0.6, 0.2, 0.08, 0.06, 0.04, 0.02).')
  num_large = _int(config, 'partition.num_large', minimum=0)
  if num_large > len(shares):
    _fail('partition.num_large', f'{num_large} large silos but only '
          f'{len(shares)} shares.', 'lower num_large or add shares.')


def _check_hparams(config) -> None:
  """Names, types and ranges of ``config.hparams``."""
  # One hparams section may serve several algorithms (pfednet_tabular), so
  # only names that no registered algorithm knows are typos.
  known = sorted({k for name in algorithms.names()
                  for k in algorithms.default_hparams(name)}
                 | set(algorithms.common.OPTIMIZER_HPARAMS)
                 | set(privacy.HPARAMS) | set(dp_fedavg.HPARAMS))
  for key, value in _group(config, 'hparams', optional=True).items():
    if key not in known:
      close = difflib.get_close_matches(key, known, n=1)
      hint = f' (did you mean {close[0]!r}?)' if close else ''
      _fail(f'hparams.{key}', f'no algorithm has this hyperparameter{hint}; '
            'it would be silently ignored.',
            f'use one of {sorted(algorithms.default_hparams(config.algorithm))}'
            f' for {config.algorithm!r}.')
    if isinstance(value, bool) or not isinstance(value, (int, float)):
      _fail(f'hparams.{key}', f'expected a number, got {_show(value)} '
            f'({type(value).__name__}).',
            'write a number, e.g. 0.01 (hyperparameters become arrays).')
    if not math.isfinite(value):
      _fail(f'hparams.{key}', f'must be finite, got {value}.',
            'use a finite number.')
    allowed = algorithms.hparam_range(key, config.algorithm)
    if allowed is not None and not allowed.contains(value):
      _fail(f'hparams.{key}', f'{allowed.describe()}, got {value}.',
            allowed.suggestion())


def validate_partition_fits(config: Any, raw: dict[str, Any]) -> None:
  """Checks that the configured silos fit in the loaded training split.

  Raises:
    ConfigError: naming ``config.partition`` and what to lower.
  """
  part = config.get('partition')
  if part is None or 'train_y' not in raw or 'silos' in raw:
    return  # Datasets with natural sites are not partitioned.
  if part.get('kind', 'large_small') == 'shares':
    smallest = min(part.shares) / sum(part.shares)
    for split in ('train', 'test'):
      n = len(raw[f'{split}_y'])
      if smallest * n < 1:
        _fail('partition.shares', f'the smallest share ({smallest:.4f}) of '
              f'the {n} {split} examples is less than one example.',
              'raise the smallest share or use fewer silos.')
    return
  small = part.get('small_size')
  num_large, num_small = int(part.num_large), int(part.num_small)
  hi = (max(small) if isinstance(small, (list, tuple)) else small
        ) if num_small else 0
  worst = (num_large * int(part.large_size) if num_large else 0) + (
      num_small * int(hi) if num_small else 0)
  n = len(raw['train_y'])
  ds = config.dataset
  name = '/'.join(str(x) for x in (ds.name, ds.get('subset')) if x)
  if worst > n:
    _fail('partition', f'num_large={num_large} x large_size='
          f'{part.large_size} + num_small={num_small} x max(small_size)='
          f'{hi} = {worst} training examples may be needed, but {name} has '
          f'{n}.',
          'lower partition.large_size, partition.small_size, num_large or '
          'num_small.')
