# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""The registry hook that gives FedHelp's small silos their FM knowledge.

Reads ``config.fm`` (which public set, which FM: ``PROXY_DATA``), asks
``foundation`` (providers, one-time queries, the on-disk cache) once, and
places the public inputs and FM outputs on every small silo,
``fed['small']['public_x'] [C_s, P, ...]`` and ``['public_q'] [C_s, P, ...K]``.
The FM outputs stay on the silos: no server function receives them.
"""

import hashlib
from typing import Any

import jax
import numpy as np

from fedhelp_jax import foundation
from fedhelp_jax import models
from fedhelp_jax import tasks


def _unassigned(num_train: int, fed) -> np.ndarray:
  used = np.zeros((num_train,), bool)
  for d in fed.values():
    for idx in d.get('_train_index', []):
      used[np.asarray(idx, np.int64)] = True
  return np.flatnonzero(~used)


PROXY_DATA = ('unassigned', 'large_pooled', 'outside', 'reserved')


def fm_config_defaults() -> dict[str, Any]:
  """Defaults of ``config.fm`` (see ``prepare_fm``)."""
  return {'provider': 'proxy', 'path': None, 'cache_dir': 'runs/fm_cache',
          'num_public': None, 'proxy_data': 'unassigned',
          'outside_subset': 'organa', 'outside_public': 2000,
          'proxy_model': None, 'proxy_steps': 600, 'proxy_batch_size': 64,
          'proxy_lr': 1e-3, 'proxy_seed': 0, 'proxy_fraction': 0.5,
          'temperature': 1.0,
          'label_smoothing': 0.0}


def fm_settings(config) -> dict[str, Any]:
  """``config.fm`` merged over ``fm_config_defaults()``."""
  out = fm_config_defaults()
  fm = config.get('fm')
  if fm is not None:
    out.update({k: v for k, v in fm.items()})
  if out['provider'] not in foundation.PROVIDERS:
    raise ValueError(f'config.fm.provider: unknown provider '
                     f'{out["provider"]!r}; expected one of {foundation.PROVIDERS}.')
  if out['provider'] == 'proxy' and out['proxy_data'] not in PROXY_DATA:
    raise ValueError(f'config.fm.proxy_data: unknown {out["proxy_data"]!r}; '
                     f'expected one of {PROXY_DATA}.')
  return out


def fm_num_classes(config, task: tasks.Task) -> int:
  """Classes of the FM's answers (the width of the small model's public head).

  The 'outside' proxy answers over its own dataset's classes (as CLIP in the
  authors' code answers over the public set's classes); every other source
  answers over the task's classes. ``config.fedhelp.public_classes``, when
  set, must agree.
  """
  fm = fm_settings(config)
  if fm['provider'] == 'proxy' and fm['proxy_data'] == 'outside':
    from fedhelp_jax.data import builders  # Lazy: TFDS is a heavy import.
    num = builders.MEDMNIST_SUBSETS[fm['outside_subset']].num_classes
  else:
    num = task.num_classes
  given = (config.get('fedhelp', {}) or {}).get('public_classes')
  if given is not None and int(given) != num:
    raise ValueError(f'config.fedhelp.public_classes={given} but the FM '
                     f'(proxy_data={fm["proxy_data"]!r}) answers over {num} '
                     'classes; remove public_classes or set it to match.')
  return num


def _outside_data(fm) -> dict[str, np.ndarray]:
  """The 'outside' FM's data: another MedMNIST subset no silo draws from.

  Its official train split is cut (stratified, seeded by ``proxy_seed``)
  into a public, unlabeled query set of ``outside_public`` images and the
  FM's training set (the rest); the FM is scored on its official test split.
  """
  from fedhelp_jax import data as data_lib  # Lazy: TFDS is a heavy import.
  subset = fm['outside_subset']
  if subset not in data_lib.MEDMNIST_SUBSETS:
    raise ValueError(f'config.fm.outside_subset: unknown MedMNIST subset '
                     f'{subset!r}; expected one of '
                     f'{sorted(data_lib.MEDMNIST_SUBSETS)}.')
  splits = data_lib.load_medmnist(subset)
  x = splits['train']['image'].astype(np.float32) / 255.0
  y = splits['train']['label']
  num_public = int(fm['outside_public'])
  if not 0 < num_public < len(y):
    raise ValueError(f'config.fm.outside_public must be in [1, {len(y) - 1}] '
                     f'(the {subset} train split), got {num_public}.')
  public, train = data_lib.stratified_split(
      y, [num_public / len(y), 1.0 - num_public / len(y)],
      seed=int(fm['proxy_seed']))
  return {'public_x': x[public], 'proxy_x': x[train], 'proxy_y': y[train],
          'test_x': splits['test']['image'].astype(np.float32) / 255.0,
          'test_y': splits['test']['label'],
          'public_index': public, 'proxy_index': train}


def match_channels(x: np.ndarray, channels: int) -> np.ndarray:
  """Grey-scale public images repeated to ``channels`` (e.g. RGB silos)."""
  if x.shape[-1] == channels:
    return x
  if x.shape[-1] == 1:
    return np.repeat(x, channels, axis=-1)
  raise ValueError(f'public images have {x.shape[-1]} channels but the silos '
                   f'have {channels}; use a grey-scale outside subset or '
                   'silos with the same channels.')


def public_and_proxy_data(config, fed, raw):
  """The public query set and the proxy FM's training/test data.

  Public set: ``raw['public_x']`` (PneumoniaMNIST: the official val split,
  labels dropped), except for 'outside'. Proxy training data, by
  ``config.fm.proxy_data``:
    * 'outside': another dataset that no silo draws from
      (``fm.outside_subset``, default OrganAMNIST, abdominal CT): its own
      public subset, training set and test split (``_outside_data``); the FM
      answers over that dataset's classes, like CLIP over the public set's
      classes in the authors' code;
    * 'reserved': an in-domain split removed from the training split BEFORE
      partitioning (``config.dataset.reserve_fraction``), so never silo
      data;
    * 'unassigned' (default): the official train examples that no silo holds
      (``raw['train_x']`` minus every ``fed[g]['_train_index']``). Datasets
      without a global train split (the simulated brain sites) instead split
      their pool of slices that no silo holds: a seeded ``proxy_fraction``
      of it (labels used) trains the proxy and the rest is the public set,
      so the public set is never seen with labels;
    * 'large_pooled': the large silos' pooled training data (the FM then
      knows what the large silos know; stated in the results).
  The proxy is scored on ``raw['test_x']`` (the official test split) or, when
  the dataset has none, on the pooled test sets of all silos.

  Returns:
    ``{'public_x', 'proxy_x', 'proxy_y', 'test_x', 'test_y'}`` numpy arrays
    (proxy entries None for the 'precomputed' provider).
  """
  fm = fm_settings(config)
  if fm['provider'] == 'proxy' and fm['proxy_data'] == 'outside':
    out = _outside_data(fm)
    if fm['num_public'] is not None:
      out['public_x'] = out['public_x'][:int(fm['num_public'])]
    return out
  public_x = np.asarray(raw['public_x'], np.float32)
  proxy_x = proxy_y = None
  if fm['provider'] == 'proxy' and fm['proxy_data'] == 'reserved':
    if 'reserve_x' not in raw:
      raise ValueError("config.fm.proxy_data='reserved' needs a reserved "
                       'split: set config.dataset.reserve_fraction (e.g. '
                       '0.1), which removes a stratified part of the '
                       'training split before partitioning.')
    proxy_x, proxy_y = raw['reserve_x'], raw['reserve_y']
  elif fm['provider'] == 'proxy' and fm['proxy_data'] == 'unassigned':
    if 'train_x' in raw:
      keep = _unassigned(raw['train_x'].shape[0], fed)
      proxy_x, proxy_y = raw['train_x'][keep], raw['train_y'][keep]
    else:
      order = np.random.default_rng(int(fm['proxy_seed'])).permutation(
          public_x.shape[0])
      cut = int(round(float(fm['proxy_fraction']) * public_x.shape[0]))
      proxy_x = public_x[np.sort(order[:cut])]
      proxy_y = np.asarray(raw['public_y'])[np.sort(order[:cut])]
      public_x = public_x[np.sort(order[cut:])]
  elif fm['provider'] == 'proxy' and fm['proxy_data'] == 'large_pooled':
    d = fed['large']
    proxy_x = np.concatenate([d['x'][c, :n] for c, n in enumerate(d['n'])])
    proxy_y = np.concatenate([d['y'][c, :n] for c, n in enumerate(d['n'])])
  if fm['num_public'] is not None:
    public_x = public_x[:int(fm['num_public'])]
  if 'test_x' in raw:
    test_x, test_y = raw['test_x'], raw['test_y']
  else:
    test_x = np.concatenate([d['test_x'][c, :t] for d in fed.values()
                             for c, t in enumerate(d['test_n'])])
    test_y = np.concatenate([d['test_y'][c, :t] for d in fed.values()
                             for c, t in enumerate(d['test_n'])])
  return {'public_x': public_x, 'proxy_x': proxy_x, 'proxy_y': proxy_y,
          'test_x': test_x, 'test_y': test_y}


def load_fm_knowledge(config, fed, raw, task: tasks.Task):
  """Queries (or reads) the FM answers on the public set.

  See ``public_and_proxy_data`` for which data the public set and the proxy
  use.

  Returns:
    ``(public_x [P, ...], public_q [P, ..., K], report)`` where ``report``
    records the API calls, the provider and (for a proxy) its own test score.
  """
  fm = fm_settings(config)
  split = public_and_proxy_data(config, fed, raw)
  public_x = split['public_x']
  ids = np.arange(public_x.shape[0], dtype=np.int64)
  report: dict[str, Any] = {'provider': fm['provider'],
                            'num_public': int(public_x.shape[0])}
  if fm['provider'] == 'precomputed':
    if not fm['path']:
      raise ValueError("config.fm.path: the 'precomputed' provider needs the "
                       'npz file of FM outputs.')
    provider = foundation.precomputed(fm['path'])
    identity = {'provider': 'precomputed', 'file': _hash_file(fm['path'])}
  else:
    model_cfg = fm['proxy_model'] or config.get('large_model') or config.model
    fm_task = tasks.make_task(task.name, fm_num_classes(config, task))
    module = models.from_config(model_cfg, fm_task.num_classes)
    print(f'[fedhelp_jax] proxy FM: {len(split["proxy_y"])} training images '
          f'({fm["proxy_data"]}, {fm["proxy_steps"]} steps); trained once, '
          f'then loaded from {fm["cache_dir"]}', flush=True)
    pm = foundation.train_proxy(
        module, fm_task, split['proxy_x'], split['proxy_y'],
        test_x=split['test_x'], test_y=split['test_y'],
        steps=int(fm['proxy_steps']), batch_size=int(fm['proxy_batch_size']),
        lr=float(fm['proxy_lr']), seed=int(fm['proxy_seed']),
        cache_dir=fm['cache_dir'])
    provider = foundation.proxy(pm, task)
    identity = {'provider': 'proxy', 'module': repr(module),
                'data': fm['proxy_data'],
                'weights': foundation.hash_arrays(
                    *jax.tree.leaves(pm.variables))}
    if fm['proxy_data'] == 'outside':
      report['outside_subset'] = fm['outside_subset']
    report.update({'proxy_data': fm['proxy_data'], 'classes':
                   fm_task.num_classes,
                   'proxy_train_size': pm.train_size,
                   'proxy_test_' + pm.metric: pm.test_score,
                   'proxy_test_size': int(len(split['test_y']))})
  outputs, calls = foundation.query_once(
      provider, public_x, cache_dir=fm['cache_dir'],
      provider_config=identity, ids=ids)
  if 'train_x' in raw:  # The small models see the silos' channel count.
    public_x = match_channels(public_x, raw['train_x'].shape[-1])
  public_q = foundation.soften(outputs, temperature=float(fm['temperature']),
                    label_smoothing=float(fm['label_smoothing']))
  report.update({'api_calls': int(calls), 'cache_hit': calls == 0,
                 'temperature': float(fm['temperature']),
                 'label_smoothing': float(fm['label_smoothing'])})
  return public_x, public_q, report


def _hash_file(path: str) -> str:
  with open(path, 'rb') as f:
    return hashlib.sha256(f.read()).hexdigest()


def place_public(fed, group: str, public_x, public_q=None):
  """Copies the public set (and FM answers) onto every silo of ``group``.

  Returns:
    ``fed`` with ``fed[group]['public_x']`` ``[C, P, ...]`` (and
    ``['public_q']`` ``[C, P, ..., K]``) added.
  """
  fed = {g: dict(d) for g, d in fed.items()}
  num = fed[group]['n'].shape[0]
  fed[group]['public_x'] = np.repeat(public_x[None], num, axis=0)
  if public_q is not None:
    fed[group]['public_q'] = np.repeat(public_q[None], num, axis=0)
  return fed


def prepare_fm(config, fed, raw, info):
  """Registry ``prepare`` hook: FM knowledge onto the small silos.

  Adds ``fed['small']['public_x']`` ``[C_s, P, ...]`` and ``['public_q']``
  ``[C_s, P, (H, W,) K]`` and records the FM report in ``info['fm']``.
  """
  task = tasks.make_task(config.task, int(config.num_classes))
  if 'small' not in fed:
    return fed
  public_x, public_q, report = load_fm_knowledge(config, fed, raw, task)
  info['fm'] = report
  print(f'[fedhelp_jax] FM knowledge: {report}')
  return place_public(fed, 'small', public_x, public_q)
