# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""The FedHelp authors' protocol: split, FM data path, optimizer, configs."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from fedhelp_jax import engine
from fedhelp_jax import experiment
from fedhelp_jax import tasks
from fedhelp_jax import validate
from fedhelp_jax.algorithms import common
from fedhelp_jax.algorithms import fm_prepare
from fedhelp_jax.algorithms import kd_baselines
from fedhelp_jax.data import partition

SHARES = (0.6, 0.2, 0.08, 0.06, 0.04, 0.02)


def test_stratified_shares_sizes_and_global_label_mix():
  rng = np.random.default_rng(0)
  labels = rng.permutation(np.repeat([0, 1], [1214, 3494]))
  silos = partition.stratified_shares(labels, shares=SHARES, seed=3)
  # Every example exactly once.
  np.testing.assert_array_equal(np.sort(np.concatenate(silos)),
                                np.arange(labels.size))
  class_counts = np.bincount(labels)
  for share, idx in zip(SHARES, silos):
    # Per class, within one example of share * class count (largest
    # remainder), so the silo has the global label mix.
    counts = np.bincount(labels[idx], minlength=2)
    assert np.all(np.abs(counts - share * class_counts) < 1), (share, counts)
  # Sizes in the order of the shares, the first two the large silos.
  assert [len(s) for s in silos] == sorted((len(s) for s in silos),
                                           reverse=True)
  assert len(silos[0]) == pytest.approx(0.6 * labels.size, abs=2)


def test_stratified_shares_errors():
  with pytest.raises(ValueError, match='> 0'):
    partition.stratified_shares(np.zeros(10, int), shares=(1, 0), seed=0)
  with pytest.raises(ValueError, match='no example'):
    partition.stratified_shares(np.zeros(10, int), shares=(1, 0.001),
                                seed=0)


def _raw(rng, n_train=600, n_test=200):
  y = rng.integers(0, 3, n_train).astype(np.int32)
  ty = rng.integers(0, 3, n_test).astype(np.int32)
  # Each image carries its own index in pixel 0, so silo data can be traced
  # back to the split it came from.
  x = rng.random((n_train, 4, 4, 1)).astype(np.float32)
  x[:, 0, 0, 0] = np.arange(n_train)
  tx = rng.random((n_test, 4, 4, 1)).astype(np.float32)
  tx[:, 0, 0, 0] = np.arange(n_test)
  return {'train_x': x, 'train_y': y, 'test_x': tx, 'test_y': ty,
          'public_x': tx[:10], 'public_y': ty[:10]}


def _shares_config():
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.num_classes = 3
  c.partition = ml_collections.ConfigDict(
      {'kind': 'shares', 'shares': SHARES, 'num_large': 2})
  return c


def test_shares_partition_train_and_test_follow_the_shares():
  rng = np.random.default_rng(1)
  raw = experiment.reserve_split(_raw(rng), 0.1, seed=0)
  config = _shares_config()
  fed, info = experiment.build_federation(config, raw)
  assert fed['large']['n'].tolist() == info['train_sizes'][:2]
  assert len(info['train_sizes']) == 6 and fed['small']['n'].shape == (4,)
  n_train, n_test = len(raw['train_y']), len(raw['test_y'])
  sizes = np.concatenate([fed[g]['n'] for g in ('large', 'small')])
  test_sizes = np.concatenate([fed[g]['test_n'] for g in ('large', 'small')])
  assert sizes.sum() == n_train and test_sizes.sum() == n_test
  np.testing.assert_allclose(sizes / n_train, SHARES, atol=3 / n_train * 3)
  np.testing.assert_allclose(test_sizes / n_test, SHARES, atol=3 / n_test * 3)
  # Test sets carry the GLOBAL test label mix (not the silo's own skew).
  global_mix = np.bincount(raw['test_y'], minlength=3) / n_test
  d = fed['large']
  mix = np.bincount(d['test_y'][0, :d['test_n'][0]], minlength=3) / \
      d['test_n'][0]
  np.testing.assert_allclose(mix, global_mix, atol=0.02)


def test_reserved_split_is_removed_before_partitioning():
  rng = np.random.default_rng(2)
  full = _raw(rng)
  raw = experiment.reserve_split(full, 0.1, seed=0)
  assert len(raw['reserve_y']) == pytest.approx(60, abs=2)
  fed, _ = experiment.build_federation(_shares_config(), raw)
  silo_ids = set()
  for d in fed.values():
    for c, n in enumerate(d['n']):
      silo_ids.update(d['x'][c, :n, 0, 0, 0].astype(int).tolist())
  reserve_ids = set(raw['reserve_x'][:, 0, 0, 0].astype(int).tolist())
  assert not silo_ids & reserve_ids
  assert len(silo_ids) + len(reserve_ids) == len(full['train_y'])
  # The in-domain FM trains on exactly the reserve, never on silo data.
  config = _shares_config()
  config.fm = ml_collections.ConfigDict({'proxy_data': 'reserved'})
  split = fm_prepare.public_and_proxy_data(config, fed, raw)
  proxy_ids = set(split['proxy_x'][:, 0, 0, 0].astype(int).tolist())
  assert proxy_ids == reserve_ids


def test_train_subsample_is_stratified_and_leaves_test_alone():
  rng = np.random.default_rng(5)
  raw = _raw(rng)
  sub = experiment.subsample_train(raw, 0.25, seed=0)
  assert len(sub['train_y']) == pytest.approx(150, abs=3)
  np.testing.assert_allclose(np.bincount(sub['train_y'], minlength=3) / 150,
                             np.bincount(raw['train_y'], minlength=3) / 600,
                             atol=0.02)
  assert sub['test_x'] is raw['test_x']
  assert experiment.subsample_train(raw, 1.0, seed=0) is raw
  with pytest.raises(ValueError, match='train_fraction'):
    experiment.subsample_train(raw, 1.5, seed=0)


def test_reserved_fm_without_a_reserve_is_a_clear_error():
  rng = np.random.default_rng(3)
  raw = _raw(rng)
  fed, _ = experiment.build_federation(_shares_config(), raw)
  config = _shares_config()
  config.fm = ml_collections.ConfigDict({'proxy_data': 'reserved'})
  with pytest.raises(ValueError, match='reserve_fraction'):
    fm_prepare.public_and_proxy_data(config, fed, raw)


def test_outside_fm_data_is_disjoint_and_answers_over_its_classes(
    monkeypatch):
  rng = np.random.default_rng(4)
  n = 300
  fake = {
      'train': {'image': rng.integers(0, 255, (n, 4, 4, 1), dtype=np.uint8),
                'label': np.tile(np.arange(11), n // 11 + 1)[:n]},
      'test': {'image': rng.integers(0, 255, (50, 4, 4, 1), dtype=np.uint8),
               'label': np.arange(50) % 11},
  }
  from fedhelp_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(data_lib, 'load_medmnist', lambda subset: fake)
  config = _shares_config()
  config.fm = ml_collections.ConfigDict(
      {'proxy_data': 'outside', 'outside_subset': 'organa',
       'outside_public': 55})
  out = fm_prepare.public_and_proxy_data(config, {}, {})
  public, train = out['public_index'], out['proxy_index']
  assert not set(public.tolist()) & set(train.tolist())
  assert len(public) == 55 and len(public) + len(train) == n
  assert len(out['test_y']) == 50  # Scored on the outside test split.
  task = tasks.make_task('classification', 2)
  assert fm_prepare.fm_num_classes(config, task) == 11
  config.fedhelp = ml_collections.ConfigDict({'public_classes': 2})
  with pytest.raises(ValueError, match='public_classes'):
    fm_prepare.fm_num_classes(config, task)
  grey = np.ones((2, 4, 4, 1), np.float32)
  assert fm_prepare.match_channels(grey, 3).shape == (2, 4, 4, 3)
  # FedDF's server public set gets the silos' channels too (RGB BloodMNIST
  # with the grey OrganAMNIST public set).
  config.feddf = ml_collections.ConfigDict({'num_public': 20})
  rgb_fed = {'large': {'x': np.zeros((2, 3, 4, 4, 3), np.float32),
                       'n': np.array([3, 3], np.int32)}}
  raw_rgb = {'train_x': np.zeros((6, 4, 4, 3), np.float32)}
  placed = kd_baselines.prepare_server_public(config, rgb_fed, raw_rgb, {})
  assert placed['large']['server_public_x'].shape == (2, 20, 4, 4, 3)


def test_coupled_weight_decay_matches_hand_computed_adam():
  lr, wd, b1, b2, eps = 1e-2, 0.1, 0.9, 0.999, 1e-8
  p = np.array([1.0, -2.0, 0.5])
  grads = [np.array([0.3, 0.1, -0.2]), np.array([-0.1, 0.4, 0.05])]
  tx = common.make_optimizer('adam', {'lr': jnp.asarray(lr),
                                      'weight_decay': jnp.asarray(wd)})
  params = jnp.asarray(p, jnp.float32)
  state = tx.init(params)
  m = v = np.zeros(3)
  for t, g in enumerate(grads, start=1):
    updates, state = tx.update(jnp.asarray(g, jnp.float32), state, params)
    params = optax.apply_updates(params, updates)
    # torch.optim.Adam(weight_decay=wd): the decay joins the gradient
    # BEFORE the moments (coupled; AdamW would decay the weights apart).
    gc = g + wd * p
    m = b1 * m + (1 - b1) * gc
    v = b2 * v + (1 - b2) * gc ** 2
    p = p - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
  np.testing.assert_allclose(np.asarray(params), p, rtol=1e-5, atol=1e-6)
  # Without weight_decay the optimizer is plain Adam (decay 0).
  plain = common.make_optimizer('adam', {'lr': jnp.asarray(lr)})
  ref = optax.adam(lr)
  g = jnp.asarray(grads[0], jnp.float32)
  x0 = jnp.asarray([1.0, -2.0, 0.5])
  np.testing.assert_allclose(plain.update(g, plain.init(x0), x0)[0],
                             ref.update(g, ref.init(x0), x0)[0], rtol=1e-6)


def test_padded_local_steps_are_skipped_with_zero_metrics():
  def step(c, batch_idx, key):
    del key
    new = c * 2.0 + jnp.sum(batch_idx)
    return new, {'seen': jnp.sum(batch_idx).astype(jnp.float32)}

  idx = jnp.arange(12, dtype=jnp.int32).reshape(6, 2)
  active = jnp.array([True, True, True, False, False, False])
  out, metrics = engine.scan_local_steps(step, jnp.float32(1.0), idx, active,
                                         jax.random.PRNGKey(0))
  ref = 1.0
  for t in range(3):
    ref = ref * 2.0 + float(idx[t].sum())
  assert float(out) == ref
  np.testing.assert_array_equal(metrics['seen'], [1, 5, 9, 0, 0, 0])


def test_authors_configs_validate_and_share_the_recipe():
  from experiments.configs import fedhelp_ablations  # pylint: disable=g-import-not-at-top
  from experiments.configs import fedhelp_cls_authors  # pylint: disable=g-import-not-at-top
  recipes = set()
  for method in fedhelp_cls_authors.METHODS:
    c = fedhelp_cls_authors.get_config(method)
    validate.validate_config(c)
    recipes.add((c.local.batch_size, c.local.local_epochs, c.local.optimizer,
                 c.hparams.lr, c.hparams.weight_decay, c.aggregation,
                 c.rounds))
  assert recipes == {(4, 1.0, 'adam', 1e-3, 1e-4, 'uniform', 50)}
  for name in fedhelp_ablations.METHODS:
    validate.validate_config(fedhelp_ablations.get_config(name))
  assert not fedhelp_ablations.get_config('fedhelp_no_fm').fedhelp.fm_kd
  bad = fedhelp_cls_authors.get_config('fedavg')
  bad.partition.num_large = 7
  with pytest.raises(validate.ConfigError, match='num_large'):
    validate.validate_config(bad)
