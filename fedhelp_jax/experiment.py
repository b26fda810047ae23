# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""From an experiment config to a trained federation, with reporting.

``run_experiment(config, workdir)`` validates the config (before any
compilation), builds the silos from a real dataset and runs them through
``runner.run`` (the one host loop: ``eval_every`` rounds per compiled call,
evaluation between calls), adding checkpoints, the JSONL metrics log, the
progress bar and the summary as its hooks. ``prepare_federation`` is the host
setup it shares with ``sweep`` and the experiment scripts.
"""

import copy
import hashlib
import json
import os
from typing import Any, Mapping, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from fedhelp_jax import algorithms
from fedhelp_jax import datasets
from fedhelp_jax import diagnostics
from fedhelp_jax import dp_fedavg
from fedhelp_jax import engine
from fedhelp_jax import errors
from fedhelp_jax import faults
from fedhelp_jax import guards
from fedhelp_jax import privacy
from fedhelp_jax import reporting
from fedhelp_jax import runner
from fedhelp_jax import tasks
from fedhelp_jax import types
from fedhelp_jax import validate

GROUPS = types.PARTITION_GROUPS

# The host loop's pieces, named here too for callers of this module.
Federation = runner.Federation
NonFiniteError = guards.NonFiniteError
clients_per_round = runner.clients_per_round
evaluate = runner.evaluate
primary_metric = runner.primary_metric


# ---------------------------------------------------------------------------
# Data: real datasets -> large/small silo groups.
# ---------------------------------------------------------------------------


def _matched_test_indices(train_labels, test_labels, size, rng):
  """A test set for one silo whose label mix matches its training data.

  Silos draw from the official (disjoint) test split; draws are without
  replacement within a silo and independent across silos.
  """
  classes, counts = np.unique(train_labels, return_counts=True)
  shares = counts / counts.sum()
  want = np.floor(shares * size).astype(int)
  want[np.argmax(want)] += size - want.sum()
  picks = []
  for cls, k in zip(classes, want):
    pool = np.flatnonzero(test_labels == cls)
    k = min(k, pool.size)
    picks.append(rng.choice(pool, size=k, replace=False))
  return np.sort(np.concatenate(picks))


def load_raw(config) -> dict[str, Any]:
  """Loads the configured dataset as numpy arrays.

  Returns:
    ``{'train_x', 'train_y', 'test_x', 'test_y', 'public_x', 'public_y'}``
    with images float32 in [0, 1] ``[N, H, W, C]`` and int32 labels
    (``[N]`` or masks ``[N, H, W]``). ``public_*`` is the split set aside for
    one-time foundation-model queries (its labels are only used to score the
    foundation model itself).
  """
  try:
    return _load_raw(config)
  except validate.ConfigError:
    raise
  except ValueError as e:  # MD5 mismatch, malformed source arrays.
    raise validate.DataError(str(e)) from e


def _load_raw(config) -> dict[str, Any]:
  ds = config.dataset
  raw = datasets.to_raw(datasets.get(ds.name).load(config))
  evaluate_on = ds.get('evaluate_on') or 'test'
  if 'silos' in raw:  # The dataset's own sites: nothing to cut.
    return evaluation_split(raw, evaluate_on)
  # Any pooled dataset can be thinned or have an FM reserve cut from it.
  raw = subsample_train(raw, float(ds.get('train_fraction') or 1.0),
                        seed=int(ds.get('reserve_seed') or 0))
  raw = reserve_split(raw, float(ds.get('reserve_fraction') or 0.0),
                      seed=int(ds.get('reserve_seed') or 0))
  return evaluation_split(raw, evaluate_on)


def evaluation_split(raw, evaluate_on: str) -> dict[str, Any]:
  """``raw`` scored on its test split, or on its held-out validation split
  (``public_*``: MedMNIST's official val split, the tabular set-aside; for
  a dataset of its own sites, each silo's ``validation`` set).

  With 'validation' every silo's test set is drawn from the validation
  split instead, by the same rule, and the training split is untouched:
  the same seed trains on the same silos, so hyperparameters picked on a
  'validation' run are then scored on 'test' without the test split ever
  informing the choice.
  """
  if evaluate_on == 'test':
    return raw
  if evaluate_on != 'validation':
    raise validate.ConfigError(
        f'config.dataset.evaluate_on: unknown {evaluate_on!r}; expected one '
        f'of {datasets.EVALUATE_ON}.')
  if 'silos' in raw:  # Sites: each silo's own validation set, if held out.
    if 'validation' not in raw:
      raise validate.ConfigError(
          "config.dataset.evaluate_on='validation': this dataset brings its "
          'own sites and test sets and was loaded without validation sets. '
          "Fix: use 'test', or hold some out (brain_slices: "
          'partition.validation_fraction).')
    return {**raw, 'silos': {g: {**d, **raw['validation'][g]}
                             for g, d in raw['silos'].items()}}
  if 'public_x' not in raw:
    raise validate.ConfigError(
        "config.dataset.evaluate_on='validation': this dataset has no "
        "held-out split (public_x/public_y) to validate on.")
  return {**raw, 'test_x': raw['public_x'], 'test_y': raw['public_y']}


def _silo_indices(config, raw):
  """Per-silo train and test indices into ``raw`` (large silos first).

  ``partition.kind``:
    * 'large_small' (default): ``num_large`` IID silos of ``large_size`` and
      ``num_small`` silos of ``small_size`` (optionally Dirichlet label
      skew); each silo's test set is a draw of ``test_size`` official test
      images with the silo's own label mix.
    * 'shares': the FedHelp authors' split. The training split is divided by
      ``shares`` (the first ``num_large`` silos are large) with the global
      label mix in every silo (``stratified_shares``), and the official test
      split is divided by the same shares, also with the global label mix.
  """
  from fedhelp_jax import data as data_lib  # Lazy: TFDS is a heavy import.
  part = config.partition
  kind = part.get('kind', 'large_small')
  seed = int(config.seed)
  if kind == 'shares':
    shares = [float(s) for s in part.shares]
    train = data_lib.stratified_shares(raw['train_y'], shares=shares,
                                       seed=seed)
    test = data_lib.stratified_shares(raw['test_y'], shares=shares,
                                      seed=seed + 1)
    return train, test
  small_size = part.small_size
  if isinstance(small_size, (list, tuple)):
    small_size = tuple(int(s) for s in small_size)
  indices = data_lib.large_small_split(
      raw['train_y'], num_large=int(part.num_large),
      num_small=int(part.num_small), large_size=int(part.large_size),
      small_size=small_size, label_skew_alpha=part.get('label_skew_alpha'),
      seed=seed)
  rng = np.random.default_rng(seed + 1)
  test_idx = [_matched_test_indices(raw['train_y'][i], raw['test_y'],
                                    int(part.test_size), rng)
              for i in indices]
  return indices, test_idx


def num_silos(partition) -> tuple[int, int]:
  """``(num_large, num_small)`` of a ``config.partition``."""
  if partition.get('kind', 'large_small') == 'shares':
    num_large = int(partition.num_large)
    return num_large, len(partition.shares) - num_large
  return int(partition.num_large), int(partition.num_small)


def _stratified_cut(raw, fraction: float, seed: int):
  """``(part, rest)`` index arrays: a stratified ``fraction`` of the
  training split and the remainder."""
  from fedhelp_jax import data as data_lib  # Lazy: TFDS is a heavy import.
  return data_lib.stratified_split(raw['train_y'], [fraction, 1.0 - fraction],
                                   seed=seed)


def subsample_train(raw, fraction: float, *, seed: int) -> dict[str, Any]:
  """Keeps a stratified ``fraction`` of the training split (1.0: all).

  A compute-budget knob (``config.dataset.train_fraction``): results made
  with it must say so. The test split is untouched.
  """
  if fraction == 1.0:
    return raw
  if not 0.0 < fraction < 1.0:
    raise ValueError(f'config.dataset.train_fraction must be in (0, 1], got '
                     f'{fraction}.')
  keep, _ = _stratified_cut(raw, fraction, seed)
  return {**raw, 'train_x': raw['train_x'][keep],
          'train_y': raw['train_y'][keep]}


def reserve_split(raw, fraction: float, *, seed: int) -> dict[str, Any]:
  """Removes a stratified ``fraction`` of the training split BEFORE
  partitioning, as ``raw['reserve_x'/'reserve_y']``.

  The reserve is never silo data: it trains the in-domain foundation-model
  proxy (``config.fm.proxy_data='reserved'``). It is taken whatever the
  algorithm, so every method of a table sees the same silos.
  """
  if fraction == 0.0:
    return raw
  if not 0.0 < fraction < 1.0:
    raise ValueError(f'config.dataset.reserve_fraction must be in [0, 1), '
                     f'got {fraction}.')
  reserve, keep = _stratified_cut(raw, fraction, seed)
  return {**raw, 'train_x': raw['train_x'][keep],
          'train_y': raw['train_y'][keep],
          'reserve_x': raw['train_x'][reserve],
          'reserve_y': raw['train_y'][reserve]}


def build_federation(config, raw) -> tuple[dict[str, Any], dict[str, Any]]:
  """Partitions ``raw`` into large and small silos and packs the groups.

  Returns:
    ``(fed_data, info)``: numpy group dicts (see ``types.py``) for the groups
    in ``GROUPS`` that have silos, and ``info`` with per-silo sizes and
    label counts (for reports and plots).
  """
  from fedhelp_jax import data as data_lib  # Lazy: TFDS is a heavy import.
  if 'silos' in raw:  # Datasets with natural/simulated sites.
    return raw['silos'], raw['info']
  part = config.partition
  indices, test_idx = _silo_indices(config, raw)
  num_large, num_small = num_silos(part)
  groups = {'large': slice(0, num_large),
            'small': slice(num_large, num_large + num_small)}
  fed, info = {}, {'groups': {}, 'train_sizes': [], 'label_counts': []}
  offset = 0
  for g in GROUPS:
    idx, tidx = indices[groups[g]], test_idx[groups[g]]
    if not idx:
      continue
    fed[g] = data_lib.pack_group(
        raw['train_x'], raw['train_y'], idx, test_x=raw['test_x'],
        test_y=raw['test_y'], test_indices=tidx)
    fed[g]['_train_index'] = idx  # Host-only; dropped before device_put.
    info['groups'][g] = list(range(offset, offset + len(idx)))
    offset += len(idx)
  num_classes = int(config.num_classes)
  if int(part.get('clusters', 1) or 1) > 1:
    fed, info['clusters'] = cluster_shift(
        fed, int(part.clusters), part.get('cluster_shift', 'labels'),
        num_classes, seed=int(config.seed))
  for g in GROUPS:
    for c in range(len(fed[g]['n']) if g in fed else 0):
      n = int(fed[g]['n'][c])
      info['train_sizes'].append(n)
      info['label_counts'].append(np.bincount(
          fed[g]['y'][c, :n].reshape(-1), minlength=num_classes).tolist())
  return fed, info


CLUSTER_SHIFTS = ('labels', 'rotation', 'both')


def cluster_permutations(num_clusters: int, num_classes: int,
                         seed: int) -> np.ndarray:
  """``[K, num_classes]`` label maps: cluster 0 keeps the labels, the
  others get distinct seeded permutations while there are any left; with
  few classes (a binary task has two maps) later clusters repeat a map
  (a cyclic shift), so there use 'rotation' or 'both' as well."""
  rng = np.random.default_rng(seed)
  perms = [np.arange(num_classes)]
  for c in range(1, num_clusters):
    for _ in range(100):
      p = rng.permutation(num_classes)
      if not any(np.array_equal(p, q) for q in perms):
        break
    else:
      p = np.roll(np.arange(num_classes), c)
    perms.append(p)
  return np.stack(perms)


def cluster_shift(fed, num_clusters: int, shift: str, num_classes: int, *,
                  seed: int):
  """Silos drawn from hidden clusters that differ in their labelling rule
  and/or a feature shift (clustered-FL benchmarks).

  Silo ``i`` (in group order, large first) belongs to cluster ``i % K``. A
  cluster's rule applies to the silo's training AND test images: 'labels'
  maps labels through the cluster's permutation (``cluster_permutations``),
  'rotation' turns images by ``90 * cluster`` degrees, 'both' does both.
  With 'rotation' alone the label mixes stay as they were, so a
  label-proportion sketch cannot see the clusters (the second arm).

  Returns:
    ``(fed, clusters)``: the shifted groups and ``[N]`` cluster labels.
  """
  if shift not in CLUSTER_SHIFTS:
    raise ValueError(f'config.partition.cluster_shift: unknown {shift!r}; '
                     f'expected one of {CLUSTER_SHIFTS}.')
  perms = cluster_permutations(num_clusters, num_classes, seed)
  clusters, node, out = [], 0, {}
  for g in types.group_names(fed):
    d = dict(fed[g])
    d['x'], d['y'] = d['x'].copy(), d['y'].copy()
    d['test_x'], d['test_y'] = d['test_x'].copy(), d['test_y'].copy()
    for c in range(len(d['n'])):
      k = node % num_clusters
      clusters.append(k)
      node += 1
      if shift in ('labels', 'both'):
        d['y'][c] = perms[k][d['y'][c]]
        d['test_y'][c] = perms[k][d['test_y'][c]]
      if shift in ('rotation', 'both'):
        d['x'][c] = np.rot90(d['x'][c], k=k, axes=(1, 2))
        d['test_x'][c] = np.rot90(d['test_x'][c], k=k, axes=(1, 2))
    out[g] = d
  return out, clusters


def aggregation_weights(fed, scheme: str) -> dict[str, np.ndarray]:
  """Server weights per group: 'samples', 'uniform' or 'group_balanced'."""
  sizes = {g: d['n'].astype(np.float64) for g, d in fed.items()}
  real = {g: (s > 0).astype(np.float64) for g, s in sizes.items()}
  if scheme == 'samples':
    w = sizes
  elif scheme == 'uniform':
    w = real
  elif scheme == 'group_balanced':
    # Each group gets the same total weight; uniform within a group.
    w = {g: r / max(r.sum(), 1.0) for g, r in real.items()}
  else:
    raise ValueError(f'config.aggregation: unknown scheme {scheme!r}; expected '
                     "'samples', 'uniform' or 'group_balanced'.")
  total = sum(x.sum() for x in w.values())
  return {g: (x / total).astype(np.float32) for g, x in w.items()}


def hparams_from_config(config) -> dict[str, jax.Array]:
  """Default hparams of the algorithm, overridden by ``config.hparams``."""
  hp = algorithms.default_hparams(config.algorithm)
  dp = privacy.DPConfig.from_config(config.get('dp'))
  if dp.enabled:  # Hparams, so a sweep can vary them.
    hp.update(dp_clip_norm=dp.clip_norm,
              dp_noise_multiplier=dp.noise_multiplier)
  elif dp.level == 'silo':
    hp.update(dp_server_clip=dp.server_clip,
              dp_server_noise_multiplier=dp.server_noise_multiplier)
  for key, value in config.get('hparams', {}).items():
    hp[key] = value
  return {k: jnp.asarray(v, jnp.float32) for k, v in hp.items()}


def hparam_overrides(config) -> dict[str, tuple[float, float]]:
  """The ``config.hparams`` values that differ from the algorithm's
  registered defaults: name -> (registered, config)."""
  registered = algorithms.default_hparams(config.algorithm)
  return {k: (float(registered[k]), float(v))
          for k, v in config.get('hparams', {}).items()
          if k in registered and float(v) != float(registered[k])}


def _load_raw_once_per_machine(config) -> dict[str, Any]:
  """``load_raw``; over several processes process 0 loads first.

  The first load may prepare the dataset into the TFDS cache; the other
  processes wait at a barrier and then read the prepared copy instead of
  preparing the same files at the same time.
  """
  if jax.process_count() == 1:
    return load_raw(config)
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  raw = load_raw(config) if jax.process_index() == 0 else None
  multihost_utils.sync_global_devices('fedhelp_jax.load_raw')
  return raw if raw is not None else load_raw(config)


def _common_test(config, raw) -> Optional[runner.CommonTest]:
  """The whole official test split as one test set for every silo
  (``config.common_test``), or None."""
  if not config.get('common_test', False):
    return None
  if 'test_x' not in raw or 'test_y' not in raw:
    raise validate.ConfigError(
        f'config.common_test: dataset {config.dataset.name!r} has no single '
        'official test split to score every silo on. Fix: set '
        'common_test=False for it.')
  return runner.CommonTest(np.asarray(raw['test_x']),
                           np.asarray(raw['test_y']))


def prepare_federation(config, raw, partitioned=None) -> Federation:
  """Validates, partitions, packs and prepares the silos of ``config``.

  The host setup shared by ``run_experiment``, ``sweep.run_sweep`` and the
  experiment scripts; it runs before anything is compiled.

  Args:
    config: the experiment config.
    raw: ``load_raw(config)`` (a sweep shares one load between configs with
      the same data fields).
    partitioned: ``build_federation``'s ``(fed, info)`` to use instead of
      partitioning again: a table gives every method the same silos.
  """
  task = tasks.make_task(config.task, int(config.num_classes))
  if partitioned is None:
    validate.validate_partition_fits(config, raw)
    partitioned = build_federation(config, raw)
  fed, info = partitioned
  # Datasets with natural sites hand out dicts cached in ``raw``: copy them so
  # a prepare hook of one run cannot leak into another sharing ``raw``.
  fed = {g: dict(d) for g, d in fed.items()}
  info = copy.deepcopy(info)
  validate.validate_federation(fed, task)
  fed = algorithms.prepare(config.algorithm, config, fed, raw, info)
  groups = types.group_names(fed)
  for g, m in runner.clients_per_round(config).items():
    if m and g not in fed:
      raise validate.ConfigError(
          f'config.clients_per_round.{g}: {g!r} is not a silo group of this '
          f'federation. Fix: use one of {list(groups)}.')
  fed = {g: {k: v for k, v in d.items() if not k.startswith('_')}
         for g, d in fed.items()}
  weights = aggregation_weights(fed, config.get('aggregation', 'samples'))
  hparams = hparams_from_config(config)
  if privacy.DPConfig.from_config(config.get('dp')).level == 'silo':
    # The fixed cohort silo-level DP divides its noisy sum by.
    hparams['dp_cohort'] = jnp.float32(dp_fedavg.cohort(
        _real_silos(fed), runner.clients_per_round(config)))
  return Federation(task, fed, info, groups, weights, hparams,
                    int(config.seed))


def _real_silos(fed) -> dict[str, int]:
  return {g: int(np.sum(np.asarray(d['n']) > 0)) for g, d in fed.items()}


# Fields that do not change a run's numbers: reporting, the round budget
# (a run may be extended), how silos are mapped onto devices, and what to do
# after a non-finite update (so a run stopped by one can go on with 'skip').
HASH_IGNORED = ('rounds', 'eval_every', 'progress', 'tensorboard', 'workdir',
                'checkpoint_keep', 'strategy', 'chunk_size', 'num_devices',
                'nonfinite', 'config_parallel', 'common_test')


def hashed_config(config) -> dict[str, Any]:
  """The JSON-able part of ``config`` that ``config_hash`` covers.

  ``clients_per_round`` is left out while it samples nothing (all 0), and
  ``client_sampling`` while it is the default 'fixed', so runs from before
  either existed keep their hash.
  """
  fields = {k: v for k, v in config.to_dict().items()
            if k not in HASH_IGNORED}
  if not clients_per_round(config):
    fields.pop('clients_per_round', None)
  if runner.client_sampling(config) == 'fixed':
    fields.pop('client_sampling', None)
  return json.loads(json.dumps(fields, sort_keys=True, default=str))


def devices_for(config) -> tuple[int, str]:
  """How many devices the client axis is sharded over, and why.

  ``config.num_devices``: N > 0 asks for N; 0 takes every visible device of
  the default backend (on CPU, the host devices ``host_devices.configure``
  made: one silo stream per core), except where a run needs one device
  (the 'loop' strategy). With client sampling the drawn silos are spread
  over the devices.
  """
  asked = config.get('num_devices', 1)
  asked = 1 if asked is None else int(asked)
  if asked > 0:
    return asked, (f'client axis over {asked} devices' if asked > 1 else
                   'one device')
  visible = jax.device_count()
  if visible == 1:
    return 1, 'one device (num_devices=0: the only visible one)'
  if config.get('strategy', 'auto') == 'loop':
    return 1, "one device (num_devices=0, but the 'loop' strategy is unsharded)"
  return visible, (f'client axis sharded over all {visible} '
                   f'{jax.default_backend()} devices (num_devices=0)')


def _hash(fields: dict[str, Any]) -> str:
  blob = json.dumps(fields, sort_keys=True)
  return hashlib.sha256(blob.encode()).hexdigest()[:16]


def config_hash(config) -> str:
  """Hash of everything that changes results (not reporting settings)."""
  return _hash(hashed_config(config))


# ---------------------------------------------------------------------------
# The run: the host loop is ``runner.run``; this adds checkpoints, the metrics
# log, the progress bar and the summary.
# ---------------------------------------------------------------------------


def _disk_full(error, kept: str, workdir: str,
               resumes_from: Optional[int] = None) -> errors.DiskFullError:
  """``error`` (what, where, free, needed) with what is kept and the fix."""
  then = (f'the same command then resumes from round {resumes_from}'
          if resumes_from else 'the same command then starts it')
  return errors.DiskFullError(
      f'{error} {kept} Fix: free space there, or copy {workdir} to a larger '
      f'disk and point --workdir at the copy; {then}.')


# Keys of a user's own data (``run_experiment(config, data=...)``); the
# ``public_*`` split is optional (FedHelp's FM queries need it).
RAW_KEYS = ('train_x', 'train_y', 'test_x', 'test_y')
RAW_OPTIONAL = ('public_x', 'public_y')


def own_data(config, data: Mapping[str, Any]):
  """``(config, raw)`` for a user's arrays: checked, and the config's
  ``dataset`` set to ``{'name': 'arrays', 'fingerprint': <sha256 of the
  arrays>}`` (a copy), so the run's hash, and thus resume, follows the data.

  ``data`` is either pooled arrays, which ``config.partition`` splits into
  large and small silos: ``train_x [N, ...]`` float inputs (images ``[N,
  H, W, C]`` in [0, 1], or table rows), ``train_y [N]`` int labels (or
  ``[N, H, W]`` masks), ``test_x``/``test_y`` likewise, optional
  ``public_x``/``public_y``; or the user's own silos, ``{'silos': {group:
  [silo, ...]}}`` with each silo a dict of ``train_x, train_y, test_x,
  test_y``, under any group names (``config.partition`` is not used; an
  algorithm with fixed roles, e.g. FedHelp's 'large' and 'small', refuses
  other names).
  """
  if 'silos' in data:
    return _own_silos(config, data)
  missing = [k for k in RAW_KEYS if k not in data]
  unknown = sorted(set(data) - set(RAW_KEYS) - set(RAW_OPTIONAL))
  if missing or unknown:
    raise validate.DataError(
        f'data: missing {missing}, unknown {unknown}; expected '
        f'{list(RAW_KEYS)} and optionally {list(RAW_OPTIONAL)}.')
  raw = {k: np.asarray(v) for k, v in data.items()}
  raw = {k: (v.astype(np.float32) if k.endswith('_x') else
             v.astype(np.int32)) for k, v in raw.items()}
  from fedhelp_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  classes = int(config.num_classes) if config.task == 'classification' \
      else None
  try:
    for split in ('train', 'test', 'public'):
      if f'{split}_x' in raw:
        data_lib.validate_arrays(
            raw[f'{split}_x'], raw.get(f'{split}_y'), num_classes=classes,
            image_shape=raw['train_x'].shape[1:], name=f'data[{split}]')
  except ValueError as e:
    raise validate.DataError(str(e)) from None
  return _as_arrays_config(config, raw), raw


def _as_arrays_config(config, arrays: Mapping[str, np.ndarray]):
  """A copy of ``config`` whose dataset is ``arrays``' fingerprint."""
  digest = hashlib.sha256()
  for k in sorted(arrays):
    digest.update(k.encode())
    digest.update(np.ascontiguousarray(arrays[k]).tobytes())
  config = config.copy_and_resolve_references()
  config.dataset = ml_collections.ConfigDict(
      {'name': 'arrays', 'fingerprint': digest.hexdigest()[:16]})
  return config


def _own_silos(config, data: Mapping[str, Any]):
  """``own_data`` for ``{'silos': {group: [silo, ...]}}``: each silo's
  arrays checked, each group packed (``data.pack_group``), and ``raw``
  in the natural-sites form ``{'silos': fed, 'info': info}``."""
  from fedhelp_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  unknown = sorted(set(data) - {'silos'})
  groups = data['silos']
  if unknown or not isinstance(groups, Mapping) or not groups:
    raise validate.DataError(
        f"data: with 'silos', expected only {{'silos': {{group: [silo, "
        f"...]}}}}; got keys {sorted(data)}.")
  classes = int(config.num_classes) if config.task == 'classification' \
      else None
  fed, flat = {}, {}
  info = {'groups': {}, 'train_sizes': [], 'label_counts': []}
  shape = None
  for g, silos in groups.items():
    if not isinstance(g, str) or not g.isidentifier():
      raise validate.DataError(f'data[silos]: group name {g!r} must be a '
                               'Python identifier (it names log fields).')
    if not silos:
      raise validate.DataError(f'data[silos][{g!r}]: no silos.')
    arrays = []
    for c, silo in enumerate(silos):
      where = f'data[silos][{g!r}][{c}]'
      keys = sorted(silo) if isinstance(silo, Mapping) else None
      if keys != sorted(RAW_KEYS):
        raise validate.DataError(f'{where}: expected keys '
                                 f'{sorted(RAW_KEYS)}, got {keys}.')
      one = {k: np.asarray(silo[k], np.float32 if k.endswith('_x')
                           else np.int32) for k in RAW_KEYS}
      shape = shape or one['train_x'].shape[1:]
      try:
        for split in ('train', 'test'):
          data_lib.validate_arrays(one[f'{split}_x'], one[f'{split}_y'],
                                   num_classes=classes, image_shape=shape,
                                   name=f'{where}[{split}]')
      except ValueError as e:
        raise validate.DataError(str(e)) from None
      arrays.append(one)
      flat.update({f'{g}/{c}/{k}': v for k, v in one.items()})
    offsets = np.cumsum([0] + [len(a['train_y']) for a in arrays])
    t_offsets = np.cumsum([0] + [len(a['test_y']) for a in arrays])
    fed[g] = data_lib.pack_group(
        np.concatenate([a['train_x'] for a in arrays]),
        np.concatenate([a['train_y'] for a in arrays]),
        [np.arange(offsets[c], offsets[c + 1]) for c in range(len(arrays))],
        test_x=np.concatenate([a['test_x'] for a in arrays]),
        test_y=np.concatenate([a['test_y'] for a in arrays]),
        test_indices=[np.arange(t_offsets[c], t_offsets[c + 1])
                      for c in range(len(arrays))])
    first = len(info['train_sizes'])
    info['groups'][g] = list(range(first, first + len(arrays)))
    for a in arrays:
      info['train_sizes'].append(int(len(a['train_y'])))
      info['label_counts'].append(np.bincount(
          a['train_y'].reshape(-1), minlength=classes or 0).tolist())
  return _as_arrays_config(config, flat), {'silos': fed, 'info': info}


def run_experiment(config, workdir: Optional[str] = None, *,
                   resume: Optional[bool] = None,
                   data: Optional[Mapping[str, Any]] = None
                   ) -> dict[str, Any]:
  """Runs one configured federated experiment.

  The workdir is locked for the whole run, so a second run on it is
  refused at once; SIGTERM and SIGINT stop the run after the current
  chunk and its checkpoint.

  Args:
    config: an experiment ``ConfigDict`` (see ``experiments/configs``).
    workdir: output directory for metrics, checkpoints and the summary.
    resume: True to require a checkpoint, False to start fresh, None to
      resume automatically when ``workdir`` has a matching checkpoint.
    data: the user's own arrays instead of ``config.dataset`` (keys in
      ``own_data``): partitioned by ``config.partition`` and run with the
      same validation, checkpoints, logs and summary.

  Returns:
    The run summary (also written to ``workdir/summary.json``).

  Raises:
    faults.WorkdirLockedError: another run holds ``workdir``.
    faults.Stopped: a signal stopped the run; the same call resumes it.
  """
  raw = None
  if data is not None:
    config, raw = own_data(config, data)
  validate.validate_config(config)
  workdir = workdir or config.get('workdir') or os.path.join(
      'runs', f'{config.algorithm}-{config_hash(config)}')
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
  lock = _lock_workdir(workdir)
  try:
    with faults.StopSignals() as stop:
      return _run_locked(config, workdir, resume=resume, stop=stop, raw=raw)
  finally:
    lock.release()


def _lock_workdir(workdir: str) -> faults.WorkdirLock:
  """Takes ``workdir``'s lock in process 0; every process learns whether
  it was taken (so all refuse together)."""
  lock = faults.WorkdirLock(workdir)
  error = None
  if jax.process_index() == 0:
    try:
      lock.acquire()
    except faults.WorkdirLockedError as e:
      error = e
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    held = multihost_utils.broadcast_one_to_all(np.int32(error is None))
    if not held and error is None:
      error = faults.WorkdirLockedError(
          f'{workdir} is in use by another run (process 0 names it).')
  if error is not None:
    raise error
  return lock


def _storage(alg, fed, info, mesh, num_devices: int):
  """How the run's checkpoints hold its silos: the real ones only (any
  device count can resume them) unless the state's silo axes cannot be
  found, when a mesh's padded layout is stored as is."""
  from fedhelp_jax import checkpoint as ckpt_lib  # Lazy: orbax import.
  real = (info or {}).get('num_real_clients')
  padded = bool(real) and any(int(np.shape(fed[g]['n'])[0]) != n
                              for g, n in real.items())
  if not padded:
    return ckpt_lib.Storage(mesh=mesh, devices=num_devices)
  layout, why = engine.silo_layout(alg, fed, real)
  return ckpt_lib.Storage(layout=layout, mesh=mesh, devices=num_devices,
                          padded=True, why_padded=why)


def _dead_units(program, groups, state, fed, info, mesh, say):
  """``diagnostics.dead_units`` of the final state, with a one-line report
  (a warning when most hidden units of a group are dead). A failure here is
  recorded, never fatal: the run's results are already complete."""
  inputs = {g: {'x': fed[g]['x'], 'n': fed[g]['n']} for g in groups}
  try:
    placed = inputs if mesh is None else {
        g: {'x': engine.shard_clients({'x': d['x']}, mesh)['x'],
            'n': d['n']} for g, d in inputs.items()}
    dead = diagnostics.dead_units(
        program.alg, groups, state, placed,
        strategy=program.strategy.name,
        chunk_size=program.strategy.chunk_size,
        num_real=(info or {}).get('num_real_clients'))
  except Exception as e:  # pylint: disable=broad-except
    say(f'[fedhelp_jax] warning: the dead-unit check failed ({type(e).__name__}: '
        f'{e}); the results are unaffected')
    return {'error': f'{type(e).__name__}: {e}'}
  if dead:
    worst = max(dead, key=lambda g: dead[g]['mean'])
    line = ', '.join(f'{g} {d["mean"]:.2f}' for g, d in dead.items())
    flag = (' (warning: most of them pass no signal: a collapsed model)'
            if dead[worst]['mean'] > 0.5 else '')
    say(f'[fedhelp_jax] dead hidden units (no positive pre-activation on any '
        f'of the silo\'s training images), mean over silos: {line}{flag}')
  return dead


def silo_budgets(config, fed) -> list[privacy.SiloBudget]:
  """Every real silo's DP-SGD accounting record under ``config``."""
  local = config.local
  return privacy.silo_budgets(
      fed, batch_size=int(local.batch_size),
      local_steps=local.get('local_steps'),
      local_epochs=local.get('local_epochs'),
      releases=algorithms.spec(config.algorithm).dp_releases)


def privacy_plan(config, fed, hparams, say) -> Optional[privacy.Plan]:
  """The DP plan of this run (sigma, rounds, delta; None without DP); a
  budget that cannot hold is a ConfigError before training. ``say`` prints
  it (``run_experiment``; a sweep passes a no-op)."""
  dp = privacy.DPConfig.from_config(config.get('dp'))
  batch = int(config.local.batch_size)
  try:
    if dp.enabled:
      plan = privacy.plan(
          dp, silo_budgets(config, fed), rounds=int(config.rounds),
          noise_multiplier=float(hparams['dp_noise_multiplier']),
          clip_norm=float(hparams['dp_clip_norm']), batch_size=batch,
          max_batch=int(dp.max_batch or 2 * batch))
    elif dp.level == 'silo':
      plan = dp_fedavg.plan(
          dp, _real_silos(fed), runner.clients_per_round(config),
          rounds=int(config.rounds),
          noise_multiplier=float(hparams['dp_server_noise_multiplier']),
          clip=float(hparams['dp_server_clip']),
          sampling=runner.client_sampling(config))
    else:
      return None
  except ValueError as e:
    raise validate.ConfigError(str(e)) from None
  rec = plan.record
  note = f'; {rec["note"]}' if rec['note'] else ''
  if dp.enabled:
    what = (f'record-level DP-SGD: noise multiplier '
            f'{rec["noise_multiplier"]:.4g}, clip {rec["clip_norm"]:g}, '
            f'{rec["sampling"]} batches of {batch} (at most '
            f'{rec["max_batch"]})')
    worst = f'the worst silo, {rec["worst_silo_records"]} records'
  else:
    what = (f'silo-level DP-FedAvg: noise multiplier '
            f'{rec["noise_multiplier"]:.4g}, upload clip '
            f'{rec["clip_norm"]:g}, cohort {rec["cohort"]}')
    worst = f'{sum(rec["silos"].values())} silos'
  say(f'[fedhelp_jax] {what}; {rec["accountant"]} accountant: epsilon '
      f'{rec["epsilon"]:.3g} at delta {rec["delta"]:.3g} after '
      f'{rec["rounds"]} rounds ({worst}){note}')
  return plan


def _announce(config, program, fed, why_devices: str, say) -> None:
  """The run's opening lines: silos, strategy, devices, overrides, sampling."""
  processes = (f'; {jax.process_count()} processes, this one holds '
               f'{jax.local_device_count()} device(s)'
               if jax.process_count() > 1 else '')
  say(f'[fedhelp_jax] {config.algorithm} on {config.dataset.name}: '
      f'{ {g: int(np.sum(d["n"] > 0)) for g, d in fed.items()} } silos; '
      f'client-parallel strategy {program.strategy.describe()}; '
      f'{why_devices}{processes}')
  overrides = hparam_overrides(config)
  if overrides:
    say('[fedhelp_jax] hparams the config sets over the registered defaults: '
        + ', '.join(f'{k} {old:g} -> {new:g}'
                    for k, (old, new) in sorted(overrides.items())))
  sampling = clients_per_round(config)
  if sampling and runner.client_sampling(config) == 'poisson':
    say(f'[fedhelp_jax] client sampling: Poisson, {sampling} silos per round '
        'and group expected (each with probability count / silos; every '
        'silo is computed, the undrawn discarded)')
  elif sampling:
    say(f'[fedhelp_jax] client sampling: {sampling} silos drawn per round '
        'and group (the others wait)')


def _nonfinite_failure(e, manager, nonfinite: str) -> NonFiniteError:
  """``e`` with what was kept and how to go on."""
  kept = manager.latest_round()
  where = (f'The last good checkpoint (round {kept}) is kept in '
           f'{manager.directory}.' if kept else
           'No checkpoint was written yet.')
  fix = ('check the data of the silos named, or lower the learning rate '
         '(config.hparams.lr; a new --workdir or --noresume then starts '
         'over)')
  if nonfinite == 'stop':
    fix += (', or rerun with --config.nonfinite=skip to resume from the '
            "checkpoint and drop such silos' updates")
  return NonFiniteError(f'{e} {where} Fix: {fix}.', e.events)


def _summary(config, program, result, history, *, total: int,
             start_round: int, chash: str, num_devices: int, workdir: str,
             say) -> dict[str, Any]:
  """``summary.json``'s record of a finished ``run_experiment``; ``history``
  is the whole metrics log (resumed rounds included)."""
  metric = program.metric
  timing = {k: v for k, v in result.timing_s.items()
            if k != 'configs_in_program'}
  already_complete = start_round >= total
  if already_complete:  # Resumed a finished run: nothing was trained.
    say(f'[fedhelp_jax] {workdir} already holds all {total} rounds; '
        'nothing to train (the recorded timings are kept).')
    previous = os.path.join(workdir, 'summary.json')
    if os.path.exists(previous):
      with open(previous) as f:
        timing = json.load(f).get('timing_s', timing)
  best = {}
  for rec in history:  # Over the whole history, resumed rounds included.
    value = rec['summary']['all'][metric]
    if not best or value > best['value']:
      best = {'round': rec['round'], 'value': value}
  best = best or {'round': start_round,
                  'value': result.final['summary']['all'][metric]}
  summary = {
      'algorithm': config.algorithm, 'dataset': config.dataset.name,
      'task': program.task.name, 'rounds': total, 'seed': int(config.seed),
      'metric': metric, 'final': result.final, 'best': best,
      'strategy': program.strategy.describe(), 'config_hash': chash,
      'devices': num_devices, 'processes': jax.process_count(),
      'timing_s': timing,
      'already_complete': already_complete,
      'resumed_from_round': start_round,
      # Over the whole history (metrics.jsonl), not just this invocation.
      'skipped_updates': [e for rec in history
                          for e in rec.get('skipped', [])],
  }
  if result.final_common is not None:
    summary['common_test'] = {k: v for k, v in result.final_common.items()
                              if k != 'correct'}
  return summary


def _write_outputs(workdir: str, summary, result, groups,
                   checkpoints: str) -> None:
  """``summary.json``, the per-image record, and the printed summary."""
  if result.common_correct:
    # Per image, per silo, per evaluation of this invocation: what paired
    # tests between methods need (stats.paired_comparison).
    last = result.common_correct
    np.savez_compressed(
        os.path.join(workdir, 'common_test_correct.npz'),
        rounds=np.asarray([c['round'] for c in last]),
        **{g: np.stack([c['correct'][g] for c in last]) for g in groups})
  try:
    reporting.write_json(os.path.join(workdir, 'summary.json'), summary)
  except errors.DiskFullError as e:
    total = summary['rounds']
    where = f'All {total} rounds are checkpointed in {checkpoints} and logged.'
    raise _disk_full(e, where, workdir, total) from None
  reporting.print_summary(summary, groups)


def _federation_on_mesh(config, raw, num_devices: int):
  """``prepare_federation``, padded with dummy silos for a mesh of
  ``num_devices`` (None with one device): ``(Federation, mesh)``."""
  federation = prepare_federation(config, raw)
  if num_devices <= 1:
    return federation, None
  mesh = engine.make_mesh(num_devices)
  fed, weights, info = engine.pad_federation_for_mesh(
      federation.fed, federation.weights, federation.info, mesh)
  return federation._replace(fed=fed, weights=weights, info=info), mesh


def _write_config(workdir: str, config, chash: str, info, program) -> None:
  """``config.json``: the config, its hash, the partition and strategy."""
  try:
    reporting.write_json(os.path.join(workdir, 'config.json'),
                         {'config': config.to_dict(), 'config_hash': chash,
                          'partition': reporting.strict(info),
                          'strategy': program.strategy.describe()})
  except errors.DiskFullError as e:
    raise _disk_full(e, 'Nothing was trained yet.', workdir) from None


def _run_locked(config, workdir: str, *, resume: Optional[bool],
                stop: faults.StopSignals, raw=None) -> dict[str, Any]:
  """``run_experiment`` once the workdir is locked.

  Longer than the house's ~80 lines on purpose: the metrics log, progress
  bar and checkpoint manager are opened here and closed by the one
  ``finally`` below, and the two hooks handed to ``runner.run`` close over
  them (``restore`` may reopen the log), so their ownership stays visible
  in one function.
  """
  from fedhelp_jax import checkpoint as ckpt_lib  # Lazy: orbax import.
  validate.validate_config(config)
  chash = config_hash(config)
  workdir = workdir or config.get('workdir') or os.path.join(
      'runs', f'{config.algorithm}-{chash}')
  # Over several processes (jax.distributed) every process runs this same
  # function on the same config; process 0 alone writes files and prints.
  primary = jax.process_index() == 0
  say = print if primary else (lambda *a, **k: None)
  if primary:
    os.makedirs(workdir, exist_ok=True)
  num_devices, why_devices = devices_for(config)
  manager = ckpt_lib.RunCheckpointer(
      os.path.join(workdir, 'checkpoints'), config_hash=chash,
      keep=int(config.get('checkpoint_keep', 2)),
      hashed_config=hashed_config(config))
  # A bad resume is refused here, before any data is loaded.
  start_round = manager.check_resume(resume) or 0
  if raw is None:
    raw = _load_raw_once_per_machine(config)
  federation, mesh = _federation_on_mesh(config, raw, num_devices)
  fed, info, hparams = federation.fed, federation.info, federation.hparams
  groups = federation.groups
  common_test = _common_test(config, raw)
  program = runner.build_program(config, federation.task, federation.groups,
                                 info, mesh=mesh)
  storage = _storage(program.alg, fed, info, mesh, num_devices)
  _announce(config, program, fed, why_devices, say)

  total = int(config.rounds)
  dp_plan = privacy_plan(config, fed, hparams, say)
  if dp_plan is not None:
    total = dp_plan.rounds
    hparams = privacy.with_plan_noise(hparams, dp_plan)
  every = max(1, min(int(config.eval_every), total))
  metric = program.metric
  open_log = lambda: reporting.MetricsLogger(
      workdir, resumed=start_round > 0, resume_round=start_round,
      tensorboard=config.get('tensorboard', False), write=primary)
  open_progress = lambda: reporting.Progress(
      total, initial=start_round,
      enabled=primary and config.get('progress', True), every=every)
  logger, progress = open_log(), open_progress()
  if start_round == 0 and primary:
    _write_config(workdir, config, chash, info, program)
  shown = start_round  # The round the progress bar stands at.

  def on_eval(k, record, state):
    nonlocal shown
    del k  # One config.
    if dp_plan is not None:
      record['dp_epsilon'] = dp_plan.epsilon_at(record['round'])
    logger.log(record)
    try:
      manager.save(record['round'], state)
    except errors.DiskFullError:
      logger.rollback()  # The log ends where the checkpoints do.
      raise
    summ = record['summary']
    progress.update(
        record['round'] - shown, round=record['round'],
        loss=np.mean(list(record['train_loss'].values())),
        **{f'{metric}_{g}': summ[g][metric] for g in groups if g in summ})
    shown = record['round']
    # After the chunk's checkpoint: a signal stops the run here (the check
    # is collective over processes, so every process asks every chunk).
    asked = stop.requested()
    if asked and record['round'] < total:
      raise faults.Stopped(asked, record['round'])

  def restore(state):
    nonlocal logger, progress, shown, start_round
    state, restored = manager.maybe_restore(state, resume=resume,
                                            storage=storage)
    if restored != start_round:  # Newer checkpoints could not be read.
      logger.close()
      progress.close()
      start_round = shown = restored
      logger, progress = open_log(), open_progress()
    return state, restored

  nonfinite = config.get('nonfinite', 'stop')
  try:
    (result,) = runner.run(
        program, [federation._replace(hparams=hparams)],
        rounds=total, eval_every=every, nonfinite=nonfinite,
        restore=restore,
        on_eval=on_eval, common_test=common_test)
  except NonFiniteError as e:
    raise _nonfinite_failure(e, manager, nonfinite) from None
  except errors.DiskFullError as e:
    kept = manager.latest_round()
    where = (f'Kept: the round {kept} checkpoint in {manager.directory} and '
             f'metrics.jsonl up to round {kept}.' if kept else
             'No checkpoint was written yet.')
    raise _disk_full(e, where, workdir, kept) from None
  finally:
    progress.close()
    logger.close()
    manager.close()

  summary = _summary(config, program, result, logger.records(),
                     total=total, start_round=start_round, chash=chash,
                     num_devices=num_devices, workdir=workdir, say=say)
  if dp_plan is not None:
    summary['privacy'] = dp_plan.record
  if not summary['already_complete']:
    summary['dead_units'] = _dead_units(program, groups, result.state, fed,
                                        info, mesh, say)
  if primary:
    _write_outputs(workdir, summary, result, groups, manager.directory)
  return summary
