# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""Checks of packed silo data, run on the host before anything is compiled.

A low-level module (numpy and ``errors`` only), so the engine can check the
data it is given without importing the config layer.
"""

import numpy as np

from fedhelp_jax.errors import DataError


def _data_fail(where: str, problem: str, fix: str):
  raise DataError(f'{where}: {problem} Fix: {fix}')


_PACKED_KEYS = ('x', 'y', 'n', 'test_x', 'test_y', 'test_n')


def check_federation(data, weights=None, *, task=None,
                     required=('x', 'y', 'n')) -> None:
  """Checks packed silo data on the host, before anything is compiled.

  The one check for every entry point that takes data: ``run_experiment``
  and ``sweep.run_sweep`` call it through ``validate_federation``, and
  ``engine.run_rounds`` calls it on its first call (library users who build
  rounds themselves). Without ``task`` the task-specific checks (label
  range, label/mask shapes) are skipped; negative labels and mask values are
  always refused.

  Args:
    data: ``{group: {'x', 'y', 'n', ...}}`` numpy or jax arrays.
    weights: optional ``{group: [C]}`` server weights; a silo with ``n = 0``
      is allowed only with weight 0 (the masked dummies that mesh padding
      adds).
    task: optional ``tasks.Task`` for the full checks.
    required: keys every group must have.

  Raises:
    DataError: naming the group, array, problem and fix.
  """
  if not data:
    _data_fail('data', 'has no groups.', 'give at least one group of silos.')
  for g, d in data.items():
    _check_group(g, d, None if weights is None else np.asarray(weights[g]),
                 task, required)


def validate_federation(fed: dict[str, dict[str, np.ndarray]], task) -> None:
  """Checks packed silo data: shapes, dtypes, label range, masks, empty silos.

  ``check_federation`` with the task and every packed array required.

  Raises:
    DataError: naming the group, array, problem and fix.
  """
  check_federation(fed, task=task, required=_PACKED_KEYS)


def _check_group(g, d, w, task, required) -> None:
  """The checks of ``check_federation`` for one group ``g``."""
  where = f'data[{g!r}]'
  for key in required:
    if key not in d:
      _data_fail(where, f'lacks {key!r}.',
                 'pack silos with fedhelp_jax.data.pack_group.')
  x, y, n = np.asarray(d['x']), np.asarray(d['y']), np.asarray(d['n'])
  if x.ndim < 2 or x.shape[0] == 0 or x.shape[1] == 0:
    _data_fail(where, f'x has shape {list(x.shape)}: the group has no silos '
               f'or a padded size of 0.', f'drop group {g!r} from the data, '
               'the weights and the groups of build_round, or give its silos '
               'examples.')
  c = n.shape[0]
  if x.shape[0] != c or y.shape[0] != c:
    _data_fail(where, f'x {x.shape}, y {y.shape} and n {n.shape} disagree '
               'on the number of silos.', 'give every array one row per '
               'silo (pack_group does).')
  if x.shape[:2] != y.shape[:2]:
    _data_fail(where, f'x {x.shape} and y {y.shape} disagree on examples '
               'per silo.', 'pad x and y to the same [C, N] prefix.')
  if 'test_x' in d and np.shape(d['test_x'])[2:] != x.shape[2:]:
    _data_fail(where, f'test_x examples {np.shape(d["test_x"])[2:]} differ '
               f'from training examples {x.shape[2:]}.',
               'resize/pad both splits to one input shape.')
  # With weights, a silo of n = 0 may sit out the round (weight 0): the
  # masked dummies that mesh padding adds.
  empty = (n < 1) if w is None else (n < 1) & (w != 0)
  if np.any(empty):
    fix = 'enlarge the partition sizes or drop those silos'
    _data_fail(where, f'silos {np.flatnonzero(empty).tolist()} have no '
               'training examples.',
               fix + ('.' if w is None else ', or give them weight 0.'))
  if np.any(n > x.shape[1]):
    _data_fail(where, f'n {n.tolist()} exceeds the padded size '
               f'{x.shape[1]}.', 'set n to the real example counts.')
  for key in ('x', 'test_x', 'public_x'):
    if key in d:
      arr = np.asarray(d[key])
      if not np.all(np.isfinite(arr)):
        bad = sorted(set(np.argwhere(~np.isfinite(arr))[:, 0].tolist()))
        _data_fail(f'{where}[{key!r}]', f'silos {bad} contain NaN or inf '
                   'values.', 'clean or drop those examples before packing.')
  if task is not None and task.name == 'segmentation' and (
      y.shape[2:] != x.shape[2:-1]):
    _data_fail(where, f'segmentation masks must be [C, N, H, W] matching x '
               f'{x.shape}; got y {y.shape}.',
               'give one integer class per pixel.')
  if task is not None and task.name == 'classification' and y.ndim != 2:
    _data_fail(where, f'classification labels must be [C, N]; got y '
               f'{y.shape}.', 'give one integer label per example.')
  if task is None:
    what = 'labels/masks'
  else:
    what = 'mask values' if task.name == 'segmentation' else 'labels'
  for key in ('y', 'test_y'):
    if key not in d:
      continue
    arr = np.asarray(d[key])
    if not np.issubdtype(arr.dtype, np.integer):
      _data_fail(f'{where}[{key!r}]', f'{what} must be integers, got '
                 f'{arr.dtype}.', 'cast them, e.g. (mask > 0.5).astype('
                 'np.int32) for a binary mask.')
    if not arr.size:
      continue
    if task is not None and (arr.min() < 0 or arr.max() >= task.num_classes):
      _data_fail(f'{where}[{key!r}]', f'{what} must lie in [0, '
                 f'{task.num_classes - 1}] (num_classes={task.num_classes})'
                 f'; found range [{arr.min()}, {arr.max()}].',
                 'fix config.num_classes or the data.')
    if arr.min() < 0:
      _data_fail(f'{where}[{key!r}]', f'{what} must be >= 0; found '
                 f'{arr.min()}.', 'use class indices 0..num_classes-1 '
                 '(negative values are not "ignore" labels here).')
  if w is not None and (w.shape != n.shape or not np.all(np.isfinite(w))
                        or np.any(w < 0)):
    _data_fail(f'weights[{g!r}]', f'must be {list(n.shape)} finite, '
               f'non-negative values; got {w.shape} {w.tolist()[:8]}.',
               'use experiment.aggregation_weights or n / n.sum().')
