# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""Poisson client sampling (``build_round(sampling='poisson')``): against
no sampling, a hand-computed fixed-denominator mean, its draw rate, and its
privacy accounting against a direct dp-accounting computation."""

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
from fedhelp_jax.algorithms import scaffold
from tests import tiny_config
from tests.conftest import jit_silo_update
from tests.test_sampling import _alg
from tests.test_sampling import _hp
from tests.test_sampling import _leaves_equal

GROUPS = ('large', 'small')


def test_poisson_with_every_silo_expected_equals_no_sampling(two_groups):
  data, weights = two_groups
  alg, hp = _alg(), _hp()
  plain = jax.jit(engine.build_round(alg, GROUPS, strategy='chunked'))
  every = jax.jit(engine.build_round(
      alg, GROUPS, strategy='chunked', sampling='poisson',
      clients_per_round={'large': 2, 'small': 3}))  # q = 1
  s_plain = s_every = engine.init_state(alg, data, seed=1)
  for _ in range(2):
    s_plain, m_plain = plain(s_plain, data, weights, hp)
    s_every, m_every = every(s_every, data, weights, hp)
  assert _leaves_equal(s_plain.server, s_every.server)
  assert _leaves_equal(s_plain.clients, s_every.clients)
  assert bool(np.all(m_every.sampled['small']))


@pytest.mark.parametrize('strategy', ['vmap', 'chunked'])
def test_poisson_round_is_the_fixed_denominator_mean_of_the_drawn(
    two_groups, strategy):
  data, weights = two_groups
  alg, hp = _alg(), _hp()
  m = {'small': 1}  # q = 1/3 in the small group; every large silo runs
  round_fn = jax.jit(engine.build_round(alg, GROUPS, strategy=strategy,
                                        sampling='poisson',
                                        clients_per_round=m))
  one = jit_silo_update(alg)
  state = engine.init_state(alg, data, seed=3)
  seen = set()
  for _ in range(4):
    broadcast = alg.download(state.server).broadcast
    new, metrics = round_fn(state, data, weights, hp)
    drawn = np.asarray(engine.poisson_draw(state.rng, state.round, 1,
                                           jnp.asarray(weights['small']), 1))
    np.testing.assert_array_equal(metrics.sampled['small'], drawn)
    seen.add(int(drawn.sum()))
    # By hand: every silo's upload with the engine's keys; the drawn
    # small silos' weighted sum, the large group's, over the expected
    # weight (q times the small group's weight plus the large group's).
    total, denominator = None, float(np.sum(weights['large']))
    denominator += float(np.sum(weights['small'])) / 3
    for gi, g in enumerate(GROUPS):
      keys = engine.client_keys(state.rng, state.round, gi,
                                weights[g].shape[0])
      for c in range(weights[g].shape[0]):
        if g == 'small' and not drawn[c]:
          continue
        take = lambda x, c=c: x[c]
        out = one(g, jax.tree.map(take, state.clients[g]), broadcast, None,
                  jax.tree.map(take, data[g]), hp, keys[c])
        part = jax.tree.map(lambda u, w=float(weights[g][c]): w * u,
                            out.upload)
        total = part if total is None else jax.tree.map(jnp.add, total, part)
    expect = jax.tree.map(lambda p, d: p - hp['server_lr'] * d / denominator,
                          state.server.params, total)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5,
                                                         atol=1e-6),
                 new.server.params, expect)
    # The undrawn keep their client state; their metrics read zero.
    for c in np.flatnonzero(~drawn):
      jax.tree.map(lambda a, b, c=c: np.testing.assert_array_equal(a[c], b[c]),
                   new.clients['small'], state.clients['small'])
      assert float(metrics.silos['small']['train_loss'][c]) == 0.0
    state = new
  assert len(seen) > 1  # the cohort size varies from round to round


def test_an_undrawn_silo_with_nan_data_does_not_poison_the_round(two_groups):
  data, weights = two_groups
  data = {g: dict(d) for g, d in data.items()}
  x = np.array(data['small']['x'])
  x[0] = np.nan  # small silo 0 would upload NaN if it counted
  data['small']['x'] = x
  alg, hp = _alg(), _hp()
  round_fn = jax.jit(engine.build_round(alg, GROUPS, strategy='chunked',
                                        sampling='poisson',
                                        clients_per_round={'small': 1}))
  state = engine.init_state(alg, data, seed=0)
  small = jnp.asarray(weights['small'])
  for _ in range(10):  # the first round that leaves silo 0 out
    if not bool(engine.poisson_draw(state.rng, state.round, 1, small, 1)[0]):
      break
    state = state._replace(round=state.round + 1)
  else:
    raise AssertionError('silo 0 was drawn in 10 rounds running')
  new, metrics = round_fn(state, data, weights, hp)
  assert all(np.all(np.isfinite(np.asarray(p)))
             for p in jax.tree.leaves(new.server.params))
  assert not bool(np.any(metrics.nonfinite['small']))
  assert not bool(metrics.sampled['small'][0])


def test_poisson_draws_each_real_silo_at_rate_q():
  weights = jnp.asarray([0.1] * 10 + [0.0] * 2)  # 2 mesh dummies
  base = jax.random.PRNGKey(0)
  draws = np.stack([np.asarray(engine.poisson_draw(base, jnp.int32(r), 0,
                                                   weights, 3))
                    for r in range(2000)])
  assert not draws[:, 10:].any()  # a dummy is never drawn
  rate = draws[:, :10].mean()
  # q = 0.3 from 20000 Bernoulli draws: 5 standard errors is 0.016.
  assert abs(rate - 0.3) < 0.016, rate
  sizes = draws.sum(axis=1)
  assert sizes.min() < 3 < sizes.max()


def test_poisson_is_refused_without_a_mean_server_step(two_groups):
  del two_groups
  module = models.make_model('logreg', num_classes=2)
  local = common.LocalConfig(batch_size=4, local_steps=1)
  alg = scaffold.scaffold(module, tasks.classification(2), local, GROUPS)
  with pytest.raises(ValueError, match="sampling='poisson'"):
    engine.build_round(alg, GROUPS, strategy='chunked', sampling='poisson',
                       clients_per_round={'small': 1})
  with pytest.raises(ValueError, match="sampling='poisson'"):
    engine.build_round(_alg(), GROUPS, strategy='loop', sampling='poisson',
                       clients_per_round={'small': 1})
  config = tiny_config.get_config('scaffold')
  config.client_sampling = 'poisson'
  with pytest.raises(validate.ConfigError, match='client_sampling'):
    validate.validate_config(config)
  config = tiny_config.get_config('fedavg')
  config.client_sampling = 'binomial'
  with pytest.raises(validate.ConfigError, match='client_sampling'):
    validate.validate_config(config)


def test_silo_dp_with_poisson_sampling_is_accounted_as_poisson_events():
  dp = privacy.DPConfig(level='silo', accountant='pld')
  sizes, sampled = {'large': 4, 'small': 20}, {'small': 5}
  got = dp_fedavg.plan(dp, sizes, sampled, rounds=30, noise_multiplier=1.2,
                       clip=1.0, sampling='poisson')
  rec = got.record
  assert rec['adjacency'] == 'add_or_remove_one'
  assert rec['sampling'] == 'poisson'
  # Directly: 30 rounds of the worst group's Poisson-sampled Gaussian (the
  # large group, every silo, q = 1, is the worst).
  accountant = dp_accounting.pld.PLDAccountant(
      value_discretization_interval=1e-3)  # the plan's discretization
  accountant.compose(dp_accounting.SelfComposedDpEvent(
      dp_accounting.GaussianDpEvent(1.2), 30))
  assert rec['epsilon'] == pytest.approx(
      accountant.get_epsilon(rec['delta']), rel=1e-9)
  # Every group sampled at q = 1/4: the amplified event, smaller epsilon.
  both = dp_fedavg.plan(dp, sizes, {'large': 1, 'small': 5}, rounds=30,
                        noise_multiplier=1.2, clip=1.0, sampling='poisson')
  accountant = dp_accounting.pld.PLDAccountant(
      value_discretization_interval=1e-3)  # the plan's discretization
  accountant.compose(dp_accounting.SelfComposedDpEvent(
      dp_accounting.PoissonSampledDpEvent(
          0.25, dp_accounting.GaussianDpEvent(1.2)), 30))
  assert both.record['epsilon'] == pytest.approx(
      accountant.get_epsilon(both.record['delta']), rel=1e-9)
  assert both.record['epsilon'] < rec['epsilon']


def test_run_experiment_with_silo_dp_and_poisson_sampling(tmp_path):
  config = tiny_config.get_config('fedavg')
  config.rounds = 2
  config.aggregation = 'uniform'
  config.client_sampling = 'poisson'
  config.clients_per_round = ml_collections.ConfigDict({'small': 1})
  config.dp = ml_collections.ConfigDict(
      {'level': 'silo', 'server_clip': 0.5, 'server_noise_multiplier': 1.0})
  summary = experiment.run_experiment(config, str(tmp_path))
  rec = summary['privacy']
  assert rec['sampling'] == 'poisson'
  assert rec['adjacency'] == 'add_or_remove_one'
  # The one large silo takes part every round (q = 1): the worst silo's
  # event is the plain Gaussian; the cohort is 1 + 3 x 1/3 expected.
  assert rec['event'] == repr(dp_accounting.GaussianDpEvent(1.0))
  assert rec['cohort'] == 2
  acc = dp_accounting.pld.PLDAccountant(value_discretization_interval=1e-3)
  acc.compose(dp_accounting.GaussianDpEvent(1.0), 2)
  assert rec['epsilon'] == pytest.approx(acc.get_epsilon(1 / 4), rel=1e-9)
