# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""Client sampling per round (``build_round(clients_per_round=...)``)."""

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

from fedhelp_jax import engine
from fedhelp_jax import models
from fedhelp_jax import tasks
from fedhelp_jax import validate
from fedhelp_jax.algorithms import common
from fedhelp_jax.algorithms import fedavg
from tests import tiny_config
from tests.conftest import jit_silo_update

GROUPS = ('large', 'small')


def _alg():
  # Logistic regression: sampling is about which silos run, not the model,
  # and it compiles in a fraction of the CNN's time.
  module = models.make_model('logreg', num_classes=2)
  local = common.LocalConfig(batch_size=4, local_steps=2)
  return fedavg.fedavg(module, tasks.classification(2), local, GROUPS)


def _hp():
  return {k: jnp.float32(v) for k, v in fedavg.default_hparams('fedavg').items()}


def _leaves_equal(a, b):
  return all(np.array_equal(np.asarray(x), np.asarray(y))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_sampling_all_silos_equals_no_sampling(two_groups):
  data, weights = two_groups
  alg, hp = _alg(), _hp()
  plain = jax.jit(engine.build_round(alg, GROUPS, strategy='chunked'))
  every = jax.jit(engine.build_round(alg, GROUPS, strategy='chunked',
                                     clients_per_round={'large': 2,
                                                        'small': 3}))
  s_plain = s_every = engine.init_state(alg, data, seed=1)
  for _ in range(2):
    s_plain, m_plain = plain(s_plain, data, weights, hp)
    s_every, m_every = every(s_every, data, weights, hp)
  assert _leaves_equal(s_plain.server, s_every.server)
  assert _leaves_equal(s_plain.clients, s_every.clients)
  np.testing.assert_array_equal(m_plain.silos['small']['train_loss'],
                                m_every.silos['small']['train_loss'])
  assert bool(np.all(m_every.sampled['small']))


@pytest.mark.parametrize('strategy', ['vmap', 'chunked'])
def test_sampling_compiled_equals_loop_reference(two_groups, strategy):
  data, weights = two_groups
  alg, hp = _alg(), _hp()
  sampling = {'small': 2}
  loop = engine.build_round(alg, GROUPS, strategy='loop',
                            clients_per_round=sampling)
  compiled = jax.jit(engine.build_round(alg, GROUPS, strategy=strategy,
                                        clients_per_round=sampling))
  s_loop = s_comp = engine.init_state(alg, data, seed=2)
  for _ in range(3):
    s_loop, m_loop = loop(s_loop, data, weights, hp)
    s_comp, m_comp = compiled(s_comp, data, weights, hp)
    np.testing.assert_array_equal(m_loop.sampled['small'],
                                  m_comp.sampled['small'])
  for a, b in zip(jax.tree.leaves((s_loop.server, s_loop.clients)),
                  jax.tree.leaves((s_comp.server, s_comp.clients))):
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_sampling_trains_only_the_drawn_silos(two_groups):
  data, weights = two_groups
  alg, hp = _alg(), _hp()
  round_fn = jax.jit(engine.build_round(alg, GROUPS, strategy='chunked',
                                        clients_per_round={'small': 1}))
  state = engine.init_state(alg, data, seed=0)
  new, metrics = round_fn(state, data, weights, hp)
  drawn = np.asarray(metrics.sampled['small'])
  assert drawn.sum() == 1
  (c,) = np.flatnonzero(drawn)
  idx = engine.sample_clients(state.rng, state.round, 1,
                              jnp.asarray(weights['small']), 1)
  assert int(idx[0]) == c
  # Silos not drawn keep their state; their metrics are zero.
  for other in set(range(3)) - {c}:
    before = jax.tree.map(lambda t, o=other: t[o], state.clients['small'])
    after = jax.tree.map(lambda t, o=other: t[o], new.clients['small'])
    assert _leaves_equal(before, after)
    assert float(metrics.silos['small']['train_loss'][other]) == 0.0
  # The server averages the 2 large silos and the drawn small one only.
  # FedAvg's silos keep no model: each drawn silo's delta is recomputed from
  # the broadcast, its (stateless) client state and its key.
  flat = lambda t: np.asarray(jax.flatten_util.ravel_pytree(t)[0])
  x0 = flat(state.server.params)
  local = jit_silo_update(alg)

  def silo_delta(g, i):
    take = lambda t: t[i]
    key = engine.client_keys(state.rng, state.round, GROUPS.index(g),
                             len(weights[g]))[i]
    delta = local(g, jax.tree.map(take, state.clients[g]),
                  state.server.params, None,
                  jax.tree.map(take, data[g]), hp, key).upload
    return flat(delta)
  parts = [(weights['large'][i], 'large', i) for i in range(2)]
  parts.append((weights['small'][c], 'small', c))
  total = sum(float(w) for w, _, _ in parts)
  mean = sum(float(w) / total * silo_delta(g, i) for w, g, i in parts)
  np.testing.assert_allclose(flat(new.server.params), x0 - mean,
                             atol=1e-6)


def test_sampling_keeps_the_state_of_silos_not_drawn(two_groups):
  """SCAFFOLD's per-silo control variates (FedAvg silos keep no state):
  the drawn silo's changes, the others' stay bit-identical."""
  from fedhelp_jax.algorithms import scaffold  # pylint: disable=g-import-not-at-top
  data, weights = two_groups
  module = models.make_model('logreg', num_classes=2)
  local = common.LocalConfig(batch_size=4, local_steps=2)
  alg = scaffold.scaffold(module, tasks.classification(2), local, GROUPS)
  hp = {k: jnp.float32(v) for k, v in scaffold.DEFAULT_HPARAMS.items()}
  round_fn = jax.jit(engine.build_round(alg, GROUPS, strategy='chunked',
                                        clients_per_round={'small': 1}))
  state = engine.init_state(alg, data, seed=0)
  state, _ = round_fn(state, data, weights, hp)  # Controls move off zero.
  new, metrics = round_fn(state, data, weights, hp)
  (c,) = np.flatnonzero(np.asarray(metrics.sampled['small']))
  take = lambda tree, i: jax.tree.map(lambda t: t[i], tree)
  for i in range(3):
    same = _leaves_equal(take(state.clients['small'], i),
                         take(new.clients['small'], i))
    assert same == (i != c), (i, c)


def test_sampling_draws_are_deterministic_and_skip_dummy_silos():
  base = jax.random.PRNGKey(0)
  weights = jnp.asarray([0.2, 0.0, 0.3, 0.1, 0.0, 0.4])  # 2 dummy silos.
  draws = [tuple(np.asarray(engine.sample_clients(
      base, jnp.int32(r), 0, weights, 2))) for r in range(40)]
  assert draws[3] == tuple(np.asarray(engine.sample_clients(
      base, jnp.int32(3), 0, weights, 2)))
  used = {c for d in draws for c in d}
  assert used == {0, 2, 3, 5}  # Every real silo drawn, no dummy one.
  assert all(d[0] < d[1] for d in draws)  # Distinct, ascending.
  assert len(set(draws)) > 3  # Draws change across rounds.


def test_sampling_config_is_validated():
  config = tiny_config.get_config()
  config.clients_per_round.small = 4  # The tiny federation has 3.
  with pytest.raises(validate.ConfigError, match=r'clients_per_round.small'
                     r'.*draws 4 silos per round but the group has 3'):
    validate.validate_config(config)
  config.clients_per_round.small = -1
  with pytest.raises(validate.ConfigError, match='integer >= 0'):
    validate.validate_config(config)
  pfednet = tiny_config.get_config('pfednet')
  pfednet.clients_per_round.small = 2
  with pytest.raises(validate.ConfigError, match="'pfednet' cannot sample"):
    validate.validate_config(pfednet)


@pytest.mark.parametrize('partitionable', [True, False])
def test_padding_a_group_with_dummy_silos_does_not_change_the_draw(
    partitionable):
  """A mesh pads a group with weight-0 silos; the real silos' draw (fixed
  and Poisson) must not see them, in either threefry mode."""
  base = jax.random.key(7)
  real = jnp.asarray([3.0, 1.0, 2.0, 5.0, 4.0])
  padded = jnp.concatenate([real, jnp.zeros(3)])
  with jax.threefry_partitionable(partitionable):
    for r in range(6):
      np.testing.assert_array_equal(
          engine.sample_clients(base, jnp.int32(r), 1, real, 2),
          engine.sample_clients(base, jnp.int32(r), 1, padded, 2))
      drawn = engine.poisson_draw(base, jnp.int32(r), 1, padded, 2)
      np.testing.assert_array_equal(
          engine.poisson_draw(base, jnp.int32(r), 1, real, 2), drawn[:5])
      assert not drawn[5:].any()
