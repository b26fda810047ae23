# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""Silo-level DP-FedAvg (``fedhelp_jax.dp_fedavg``): the per-silo clip, the
server noise's scale, zero noise and infinite clip against plain FedAvg
bit for bit, the accounting against direct dp-accounting calls, and the
config checks. (1 vs 4 devices: tests/test_shard.py, 'dp_padding'.)"""

import dp_accounting
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from fedhelp_jax import dp_fedavg
from fedhelp_jax import engine
from fedhelp_jax import experiment
from fedhelp_jax import models
from fedhelp_jax import privacy
from fedhelp_jax import tasks
from fedhelp_jax import validate
from fedhelp_jax.algorithms import common
from fedhelp_jax.algorithms import fedavg
from fedhelp_jax.algorithms import server_opt
from tests import conftest
from tests import tiny_config

GROUPS = ('large', 'small')


def _setup():
  rng = np.random.default_rng(0)
  data = {'large': conftest.make_group(rng, [12, 10]),
          'small': conftest.make_group(rng, [5, 4, 6])}
  weights = {g: np.full(d['n'].shape, 1 / 5, np.float32)
             for g, d in data.items()}
  module = models.make_model('cnn', num_classes=2, features=(4,), dense=8,
                             norm='group')
  alg = fedavg.fedavg(module, tasks.classification(2),
                      common.LocalConfig(batch_size=4, local_steps=2), GROUPS)
  hp = {k: jnp.float32(v) for k, v in fedavg.default_hparams('fedavg').items()}
  return data, weights, alg, hp


def _dp_hp(hp, clip, sigma, cohort=5.0):
  return dict(hp, dp_server_clip=jnp.float32(clip),
              dp_server_noise_multiplier=jnp.float32(sigma),
              dp_cohort=jnp.float32(cohort))


def _run(alg, data, weights, hp, rounds=2):
  round_fn = engine.build_round(alg, GROUPS, strategy='chunked')
  state = engine.init_state(alg, data, seed=0)
  return engine.run_rounds(round_fn, rounds)(state, data, weights, hp)


def test_clip_bounds_every_silo_upload():
  upload = {'a': jnp.asarray([3.0, 4.0]), 'b': jnp.asarray([[12.0]])}
  clipped, was = dp_fedavg.clip_upload(upload, jnp.float32(2.6))
  # By hand: norm 13, scaled by 2.6 / 13 = 0.2.
  np.testing.assert_allclose(clipped['a'], [0.6, 0.8], rtol=1e-6)
  np.testing.assert_allclose(clipped['b'], [[2.4]], rtol=1e-6)
  assert bool(was)
  same, was = dp_fedavg.clip_upload(upload, jnp.float32(100.0))
  np.testing.assert_array_equal(same['a'], upload['a'])
  assert not bool(was)


def test_server_noise_std_is_sigma_clip_over_cohort():
  _, _, alg, hp = _setup()
  wrapped = dp_fedavg.with_silo_dp(alg)
  mean = {'w': jnp.zeros((200_000,))}
  server = dp_fedavg.ServerState(
      server_opt.ServerState({'w': jnp.zeros((200_000,))}),
      jax.random.PRNGKey(3))
  out = wrapped.server_update_from_mean(server, mean,
                                        _dp_hp(hp, 0.5, 2.0, cohort=4.0))
  # FedAvg's server step: params - server_lr * noisy mean delta.
  noise = -np.asarray(out.inner.params['w'])
  want = 2.0 * 0.5 / 4.0
  assert abs(noise.std() / want - 1.0) < 0.005
  # The key moved on: the next round draws new noise.
  assert not np.array_equal(out.noise_key, server.noise_key)


def test_zero_noise_infinite_clip_is_plain_fedavg_bit_for_bit():
  data, weights, alg, hp = _setup()
  plain, _ = _run(alg, data, weights, hp)
  dp, metrics = _run(dp_fedavg.with_silo_dp(alg), data, weights,
                     _dp_hp(hp, np.inf, 0.0))
  for a, b in zip(jax.tree.leaves(plain.server),
                  jax.tree.leaves(dp.server.inner)):
    np.testing.assert_array_equal(a, b)
  assert float(np.max(metrics.silos['small']['upload_clipped'])) == 0.0
  # A finite clip and noise do change it (the check above can fail).
  noisy, metrics = _run(dp_fedavg.with_silo_dp(alg), data, weights,
                        _dp_hp(hp, 1e-3, 1.0))
  assert float(np.min(metrics.silos['small']['upload_clipped'])) == 1.0
  assert max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(
      jax.tree.leaves(plain.server), jax.tree.leaves(noisy.server.inner))
             ) > 1e-4


def test_epsilon_equals_direct_dp_accounting():
  dp = privacy.DPConfig(level='silo', accountant='pld')
  every = dp_fedavg.plan(dp, {'large': 3, 'small': 20}, {}, rounds=30,
                         noise_multiplier=1.2, clip=1.0)
  acc = dp_accounting.pld.PLDAccountant(value_discretization_interval=1e-3)
  acc.compose(dp_accounting.GaussianDpEvent(1.2), 30)
  assert every.record['epsilon'] == pytest.approx(acc.get_epsilon(1 / 23),
                                                  rel=1e-9)
  assert every.record['cohort'] == 23
  # Sampling 5 of 20 small silos (all 3 large): the small group's draw.
  rdp = privacy.DPConfig(level='silo', accountant='rdp')
  drawn = dp_fedavg.plan(rdp, {'large': 3, 'small': 20}, {'small': 5},
                         rounds=30, noise_multiplier=1.2, clip=1.0)
  # Replace-one adjacency: one silo moves the clipped sum by 2 S, so the
  # accounted multiplier is 1.2 / 2, for both groups.
  replace_one = dp_accounting.NeighboringRelation.REPLACE_ONE
  acc = dp_accounting.rdp.RdpAccountant(neighboring_relation=replace_one)
  acc.compose(dp_accounting.SampledWithoutReplacementDpEvent(
      20, 5, dp_accounting.GaussianDpEvent(0.6)), 30)
  # The large group joins every round: its event is the plain Gaussian,
  # the worst of the two.
  acc_large = dp_accounting.rdp.RdpAccountant(neighboring_relation=replace_one)
  acc_large.compose(dp_accounting.GaussianDpEvent(0.6), 30)
  assert drawn.record['epsilon'] == pytest.approx(
      acc_large.get_epsilon(1 / 23), rel=1e-9)
  assert acc.get_epsilon(1 / 23) < drawn.record['epsilon']
  # Both groups drawn: the larger fraction (1 of 3) is the worst.
  both = dp_fedavg.plan(rdp, {'large': 3, 'small': 20},
                        {'large': 1, 'small': 5}, rounds=30,
                        noise_multiplier=1.2, clip=1.0)
  acc = dp_accounting.rdp.RdpAccountant(neighboring_relation=replace_one)
  acc.compose(dp_accounting.SampledWithoutReplacementDpEvent(
      3, 1, dp_accounting.GaussianDpEvent(0.6)), 30)
  assert both.record['epsilon'] == pytest.approx(acc.get_epsilon(1 / 23),
                                                 rel=1e-9)
  assert both.record['cohort'] == 6
  with pytest.raises(ValueError, match='PLD accountant cannot'):
    dp_fedavg.plan(dp, {'large': 3, 'small': 20}, {'small': 5}, rounds=30,
                   noise_multiplier=1.2, clip=1.0)


def test_run_experiment_with_silo_dp(tmp_path):
  config = tiny_config.get_config('fedavg')
  config.rounds = 2
  config.aggregation = 'uniform'
  config.dp = ml_collections.ConfigDict(
      {'level': 'silo', 'server_clip': 0.5, 'server_noise_multiplier': 1.0})
  summary = experiment.run_experiment(config, str(tmp_path))
  rec = summary['privacy']
  assert rec['level'] == 'silo' and rec['cohort'] == 4
  acc = dp_accounting.pld.PLDAccountant(value_discretization_interval=1e-3)
  acc.compose(dp_accounting.GaussianDpEvent(1.0), 2)
  assert rec['epsilon'] == pytest.approx(acc.get_epsilon(1 / 4), rel=1e-9)


@pytest.mark.parametrize('algorithm, changes, field', [
    ('fedavg', {'aggregation': 'samples'}, 'aggregation'),
    ('scaffold', {'aggregation': 'uniform'}, 'dp.level'),
])
def test_silo_dp_config_checks(algorithm, changes, field):
  config = tiny_config.get_config(algorithm)
  config.dp = ml_collections.ConfigDict({'level': 'silo'})
  for k, v in changes.items():
    config[k] = v
  with pytest.raises(validate.ConfigError, match=rf'^config\.{field}:'):
    validate.validate_config(config)
