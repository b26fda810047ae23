# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""FedNova against a hand-written loop of its update rule, against FedAvg
when every silo works equally, and through the front door (the registry and
``run_experiment``)."""

import jax
import jax.numpy as jnp
import numpy as np

from fedhelp_jax import algorithms
from fedhelp_jax import engine
from fedhelp_jax import experiment
from fedhelp_jax import models
from fedhelp_jax import tasks
from fedhelp_jax.algorithms import common
from fedhelp_jax.algorithms import fedavg
from fedhelp_jax.algorithms import fednova
from tests import conftest
from tests import tiny_config

GROUPS = ('large', 'small')
LR, SERVER_LR, BATCH = 0.1, 0.8, 2
# Silo sizes -> 1, 3 and 2 local steps in one epoch of batch 2.
SIZES = {'large': [2, 6], 'small': [4]}


def _constant_silos():
  """Every silo repeats one example (``conftest.constant_silos``)."""
  data = conftest.constant_silos(np.random.default_rng(0), SIZES)
  weights = {'large': np.asarray([0.2, 0.5], np.float32),
             'small': np.asarray([0.3], np.float32)}
  return data, weights


def _setup(local):
  module = models.make_model('cnn', num_classes=2, features=(4, 8), dense=8)
  hp = {'lr': jnp.float32(LR), 'momentum': jnp.float32(0.0),
        'server_lr': jnp.float32(SERVER_LR)}
  return module, hp, tasks.classification(2)


def _reference_round(module, data, weights, x):
  """One FedNova round as Python loops: tau_i SGD steps per silo, then
  x - server_lr * tau_eff * sum_i p_i (x - y_i) / tau_i."""
  grad = conftest.batch_loss_grad(module, tasks.classification(2))
  tmap = jax.tree.map
  total = sum(float(np.sum(w)) for w in weights.values())
  mean_d = tmap(jnp.zeros_like, x)
  tau_eff = 0.0
  for g, sizes in SIZES.items():
    for i, n in enumerate(sizes):
      tau = -(-n // BATCH)
      y = x
      for _ in range(tau):
        y = tmap(lambda y, gr: y - LR * gr, y,
                 grad(y, data[g]['x'][i, :BATCH], data[g]['y'][i, :BATCH]))
      p = float(weights[g][i]) / total
      mean_d = tmap(lambda s, a, b: s + p * (a - b) / tau, mean_d, x, y)
      tau_eff += p * tau
  return tmap(lambda a, d: a - SERVER_LR * tau_eff * d, x, mean_d)


def _leaves_close(a, b, atol):
  for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(u, v, atol=atol)


def test_fednova_round_matches_the_hand_written_update():
  data, weights = _constant_silos()
  local = common.LocalConfig(batch_size=BATCH, local_steps=None,
                             local_epochs=1.0)
  module, hp, task = _setup(local)
  alg = fednova.fednova(module, task, local, GROUPS)
  state = engine.init_state(alg, data, seed=0)
  want = _reference_round(module, data, weights, state.server.params)
  state, metrics = jax.jit(engine.build_round(alg, GROUPS))(
      state, data, weights, hp)
  np.testing.assert_array_equal(metrics.silos['large']['local_steps'], [1, 3])
  _leaves_close(state.server.params, want, atol=2e-6)


def test_unequal_work_separates_fednova_from_fedavg_equal_work_does_not():
  data, weights = _constant_silos()
  moved = {}
  for name, local in (
      ('equal', common.LocalConfig(batch_size=BATCH, local_steps=2)),
      ('unequal', common.LocalConfig(batch_size=BATCH, local_steps=None,
                                     local_epochs=1.0))):
    module, hp, task = _setup(local)
    params = []
    for alg in (fednova.fednova(module, task, local, GROUPS),
                fedavg.fedavg(module, task, local, GROUPS)):
      state = engine.init_state(alg, data, seed=0)
      state, _ = jax.jit(engine.build_round(alg, GROUPS))(state, data,
                                                          weights, hp)
      params.append(state.server.params)
    moved[name] = max(float(jnp.max(jnp.abs(u - v))) for u, v in zip(
        jax.tree.leaves(params[0]), jax.tree.leaves(params[1])))
  assert moved['equal'] < 1e-6
  assert moved['unequal'] > 1e-4


def test_work_norm_is_the_momentum_geometric_sum():
  for steps in (1, 2, 5):
    for rho in (0.0, 0.5, 0.9):
      # Gradient k of `steps` moves the iterate by sum_{j < steps-k} rho^j.
      want = sum(sum(rho**j for j in range(steps - k)) for k in range(steps))
      got = float(fednova.work_norm(jnp.float32(steps), jnp.float32(rho)))
      np.testing.assert_allclose(got, want, rtol=1e-5)


def test_fednova_runs_through_the_registry_and_run_experiment(tmp_path,
                                                              capsys):
  assert 'fednova' in algorithms.names()
  config = tiny_config.get_config('fednova')
  config.rounds = 2
  summary = experiment.run_experiment(config, str(tmp_path))
  assert np.isfinite(summary['final']['summary']['all']['accuracy'])
  # The shared recipe's momentum 0.9 over FedNova's registered 0 is said.
  assert 'momentum 0 -> 0.9' in capsys.readouterr().out
