# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""Server optimizers (FedAdam, FedYogi, FedAdagrad) against hand-written
references of Reddi et al. 2021, Algorithm 2, and FedAvg as the SGD case."""

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

from fedhelp_jax import algorithms
from fedhelp_jax import engine
from fedhelp_jax import models
from fedhelp_jax import tasks
from fedhelp_jax.algorithms import common
from fedhelp_jax.algorithms import fedavg
from fedhelp_jax.algorithms import scaffold
from fedhelp_jax.algorithms import server_opt
from tests.conftest import jit_silo_update

GROUPS = ('large', 'small')


def _hp(name, **overrides):
  values = dict(fedavg.default_hparams(name), **overrides)
  return {k: jnp.float32(v) for k, v in values.items()}


def _reddi(rule, deltas, x0, *, lr, b1, b2, tau):
  """Algorithm 2 of Reddi et al. in numpy, with our sign convention (the
  silos upload x - y, the negative of the paper's Delta)."""
  x, m, v = x0.copy(), np.zeros_like(x0), np.full_like(x0, tau**2)
  for d in deltas:
    big_delta = -d
    m = b1 * m + (1 - b1) * big_delta
    if rule == 'adam':
      v = b2 * v + (1 - b2) * big_delta**2
    elif rule == 'yogi':
      v = v - (1 - b2) * big_delta**2 * np.sign(v - big_delta**2)
    else:
      v = v + big_delta**2
    x = x + lr * m / (np.sqrt(v) + tau)
  return x


@pytest.mark.parametrize('rule', ['adam', 'yogi', 'adagrad'])
def test_fedadam_family_step_matches_reddi_reference(rule):
  rng = np.random.default_rng(0)
  x0 = rng.normal(size=(5, 3)).astype(np.float32)
  deltas = [rng.normal(scale=s, size=(5, 3)).astype(np.float32)
            for s in (0.1, 0.5, 0.01)]
  hp = {'server_lr': jnp.float32(0.03), 'server_b1': jnp.float32(0.9),
        'server_b2': jnp.float32(0.99), 'server_tau': jnp.float32(1e-3)}
  params, state = x0, server_opt.init(rule, x0)
  for d in deltas:
    params, state = jax.jit(server_opt.step, static_argnums=0)(
        rule, params, state, d, hp)
  want = _reddi(rule, deltas, x0, lr=0.03, b1=0.9, b2=0.99, tau=1e-3)
  np.testing.assert_allclose(np.asarray(params), want, rtol=1e-5, atol=1e-6)
  # The rules differ from each other on these deltas (the test can fail).
  assert not np.allclose(want, _reddi('adagrad' if rule != 'adagrad'
                                      else 'adam', deltas, x0, lr=0.03,
                                      b1=0.9, b2=0.99, tau=1e-3))


def test_fedadam_sgd_lr1_no_momentum_is_fedavg_step_bit_exact():
  """The SGD server optimizer with lr 1 is FedAvg's ``p - mean delta``."""
  rng = np.random.default_rng(1)
  p = {'w': rng.normal(size=(4, 4)).astype(np.float32),
       'b': rng.normal(size=(4,)).astype(np.float32)}
  d = jax.tree.map(lambda x: (0.1 * x + 0.3).astype(np.float32), p)
  hp = {'server_lr': jnp.float32(1.0)}
  got = server_opt.sgd_step(p, d, hp)
  new_server = server_opt.apply('sgd', server_opt.ServerState(p), d, hp)
  for k in p:
    np.testing.assert_array_equal(np.asarray(got[k]), p[k] - d[k])
    np.testing.assert_array_equal(np.asarray(new_server.params[k]),
                                  p[k] - d[k])
  assert new_server.opt_state == ()  # FedAvg keeps no optimizer state.


def test_fedadam_round_equals_local_training_plus_reddi_server(two_groups):
  """Two compiled FedAdam rounds: the server follows Reddi's rule applied to
  the weighted mean of the silos' own deltas."""
  data, weights = two_groups
  module = models.make_model('cnn', num_classes=2, features=(4, 8), dense=8)
  local = common.LocalConfig(batch_size=4, local_steps=2)
  alg = fedavg.fedavg(module, tasks.classification(2), local, GROUPS,
                      server_optimizer='adam')
  assert alg.name == 'fedadam'
  hp = _hp('fedadam', server_lr=0.05)
  round_fn = jax.jit(engine.build_round(alg, GROUPS, strategy='chunked'))
  state = engine.init_state(alg, data, seed=0)
  x0 = state.server.params
  total = sum(float(np.sum(w)) for w in weights.values())
  flat_x0 = jax.flatten_util.ravel_pytree(x0)[0]
  deltas = []
  # FedAdam's silos keep no model: each silo's delta is recomputed from
  # the round's broadcast, its (stateless) client state and its key.
  local = jit_silo_update(alg)
  for _ in range(2):
    broadcast = alg.download(state.server).broadcast
    mean = np.zeros_like(np.asarray(flat_x0))
    for gi, g in enumerate(GROUPS):
      keys = engine.client_keys(state.rng, state.round, gi, len(weights[g]))
      for c, w in enumerate(weights[g]):
        take = lambda t, c=c: t[c]
        delta = local(g, jax.tree.map(take, state.clients[g]), broadcast,
                      None, jax.tree.map(take, data[g]), hp, keys[c]).upload
        mean += w / total * np.asarray(
            jax.flatten_util.ravel_pytree(delta)[0])
    deltas.append(mean)
    state, _ = round_fn(state, data, weights, hp)
  want = _reddi('adam', deltas, np.asarray(flat_x0), lr=0.05, b1=0.9,
                b2=0.99, tau=1e-3)
  got = np.asarray(jax.flatten_util.ravel_pytree(state.server.params)[0])
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
  assert np.max(np.abs(got - np.asarray(flat_x0))) > 1e-3  # It moved.
  assert int(state.server.opt_state[0].count) == 2


@pytest.mark.parametrize('name', ['fedadam', 'fedyogi', 'fedadagrad'])
def test_fedadam_family_is_registered_with_validated_hparams(name):
  hp = algorithms.default_hparams(name)
  assert {'server_lr', 'server_b1', 'server_b2', 'server_tau'} <= set(hp)
  assert algorithms.hparam_range('server_b1').contains(0.9)
  assert not algorithms.hparam_range('server_b1').contains(1.0)
  assert not algorithms.hparam_range('server_tau').contains(0.0)


@pytest.mark.parametrize('name', ['fedadam', 'scaffold'])
def test_fedadam_and_scaffold_state_survives_donation(two_groups, name):
  """``run_rounds`` donates the state: no two leaves may share a buffer
  (FedAdam's m and v once did, and the CLI run failed)."""
  data, weights = two_groups
  module = models.make_model('logreg', num_classes=2)
  local = common.LocalConfig(batch_size=4, local_steps=2)
  task = tasks.classification(2)
  if name == 'fedadam':
    alg = fedavg.fedavg(module, task, local, GROUPS, server_optimizer='adam')
  else:
    alg = scaffold.scaffold(module, task, local, GROUPS)
  hp = {k: jnp.float32(v)
        for k, v in algorithms.default_hparams(name).items()}
  run = engine.run_rounds(engine.build_round(alg, GROUPS), 2)
  state, metrics = run(engine.init_state(alg, data, 0), data, weights, hp)
  assert int(state.round) == 2
  assert np.all(np.isfinite(np.asarray(metrics.silos['small']['train_loss'])))
