# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""SCAFFOLD against a hand-written loop of Karimireddy et al.'s Algorithm 1
(option II), and its first round against FedAvg."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedhelp_jax import algorithms
from fedhelp_jax import engine
from fedhelp_jax import models
from fedhelp_jax import tasks
from fedhelp_jax import validate
from fedhelp_jax.algorithms import common
from fedhelp_jax.algorithms import fedavg
from fedhelp_jax.algorithms import scaffold
from tests import conftest
from tests import tiny_config

GROUPS = ('large', 'small')
STEPS, LR, SERVER_LR = 3, 0.1, 0.7


def _setup():
  rng = np.random.default_rng(0)
  # Equal silo sizes and full-batch steps: every step sees the silo's whole
  # data, so the reference needs no batch schedule.
  data = {'large': conftest.make_group(rng, [6, 6]),
          'small': conftest.make_group(rng, [6, 6, 6])}
  weights = {'large': np.asarray([0.3, 0.3], np.float32),
             'small': np.asarray([0.1, 0.2, 0.1], np.float32)}
  module = models.make_model('cnn', num_classes=2, features=(4, 8), dense=8)
  local = common.LocalConfig(batch_size=6, local_steps=STEPS)
  hp = {'lr': jnp.float32(LR), 'momentum': jnp.float32(0.0),
        'server_lr': jnp.float32(SERVER_LR)}
  return data, weights, module, local, hp


def _reference(module, data, weights, x, rounds):
  """Algorithm 1 of the paper as plain Python loops over silos and steps."""
  grad = conftest.batch_loss_grad(module, tasks.classification(2))
  tmap = jax.tree.map
  c = tmap(jnp.zeros_like, x)
  c_i = {(g, i): c for g in GROUPS for i in range(len(weights[g]))}
  total = sum(float(np.sum(w)) for w in weights.values())
  for _ in range(rounds):
    new_x_sum, dc_sum = tmap(jnp.zeros_like, x), tmap(jnp.zeros_like, x)
    for (g, i), ci in list(c_i.items()):
      y = x
      for _ in range(STEPS):
        gr = grad(y, data[g]['x'][i], data[g]['y'][i])
        y = tmap(lambda y, gr, cc, ci: y - LR * (gr - ci + cc), y, gr, c, ci)
      new_ci = tmap(lambda ci, cc, x, y: ci - cc + (x - y) / (STEPS * LR),
                    ci, c, x, y)
      w = float(weights[g][i]) / total
      new_x_sum = tmap(lambda s, x, y: s + w * (x - y), new_x_sum, x, y)
      dc_sum = tmap(lambda s, n, o: s + (n - o), dc_sum, new_ci, ci)
      c_i[(g, i)] = new_ci
    x = tmap(lambda x, d: x - SERVER_LR * d, x, new_x_sum)
    c = tmap(lambda c, d: c + d / len(c_i), c, dc_sum)
  return x, c, c_i


def _global_params(state):
  """FedAvg and SCAFFOLD both keep a named server state with ``params``."""
  return state.server.params


@pytest.mark.parametrize('strategy', ['chunked', 'vmap'])
def test_scaffold_matches_loop_reference_for_two_rounds(strategy):
  data, weights, module, local, hp = _setup()
  alg = scaffold.scaffold(module, tasks.classification(2), local, GROUPS)
  round_fn = jax.jit(engine.build_round(alg, GROUPS, strategy=strategy))
  state = engine.init_state(alg, data, seed=0)
  want_x, want_c, want_ci = _reference(module, data, weights,
                                       state.server.params, rounds=2)
  for _ in range(2):
    state, metrics = round_fn(state, data, weights, hp)
  np.testing.assert_array_equal(metrics.silos['small']['local_steps'], STEPS)
  close = lambda a, b: [np.testing.assert_allclose(u, v, atol=2e-5)
                        for u, v in zip(jax.tree.leaves(a),
                                        jax.tree.leaves(b))]
  close(state.server.params, want_x)
  close(state.server.control, want_c)
  for (g, i), ci in want_ci.items():
    close(jax.tree.map(lambda t, i=i: t[i], state.clients[g].control), ci)
  # The controls are not trivially zero (the test can fail).
  assert max(float(jnp.max(jnp.abs(v)))
             for v in jax.tree.leaves(state.server.control)) > 1e-3


def test_scaffold_first_round_equals_fedavg_then_differs():
  """Controls start at zero, so round 1 is FedAvg with plain local SGD."""
  data, weights, module, local, hp = _setup()
  task = tasks.classification(2)
  states = {}
  for name, alg in (('scaffold', scaffold.scaffold(module, task, local,
                                                   GROUPS)),
                    ('fedavg', fedavg.fedavg(module, task, local, GROUPS))):
    round_fn = jax.jit(engine.build_round(alg, GROUPS, strategy='chunked'))
    s = engine.init_state(alg, data, seed=0)
    s, _ = round_fn(s, data, weights, hp)
    first = _global_params(s)
    s, _ = round_fn(s, data, weights, hp)
    states[name] = (first, _global_params(s))
  diff = lambda a, b: max(float(jnp.max(jnp.abs(u - v))) for u, v in zip(
      jax.tree.leaves(a), jax.tree.leaves(b)))
  assert diff(states['scaffold'][0], states['fedavg'][0]) < 1e-6
  assert diff(states['scaffold'][1], states['fedavg'][1]) > 1e-5


def test_scaffold_is_registered():
  assert 'scaffold' in algorithms.names()
  assert algorithms.default_hparams('scaffold')['momentum'] == 0.0


def test_scaffold_config_is_plain_sgd_and_momentum_is_refused():
  config = tiny_config.get_config('scaffold')
  assert config.hparams.momentum == 0.0 and 'server_lr' in config.hparams
  validate.validate_config(config)
  config.hparams.momentum = 0.9
  with pytest.raises(validate.ConfigError,
                     match='hparams.momentum: SCAFFOLD.*Fix: set it to 0'):
    validate.validate_config(config)
  # SCAFFOLD's narrowed range is its own: FedAvg keeps its momentum.
  fedavg_config = tiny_config.get_config('fedavg')
  fedavg_config.hparams.momentum = 0.9
  validate.validate_config(fedavg_config)
  # FedAdam's server hyperparameters can be set from the command line.
  assert {'server_b1', 'server_b2', 'server_tau'} <= set(
      tiny_config.get_config('fedadam').hparams)
