# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""APFL against a hand-written round of its three updates (w, v through
the mixture, and the adaptive alpha), its evaluation mixture, and through
the registry."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedhelp_jax import engine
from fedhelp_jax import experiment
from fedhelp_jax import models
from fedhelp_jax import tasks
from fedhelp_jax import types
from fedhelp_jax.algorithms import apfl
from fedhelp_jax.algorithms import common
from fedhelp_jax.algorithms import fedavg
from tests import conftest
from tests import tiny_config

GROUPS = ('large', 'small')
LR, SERVER_LR, ALPHA_LR, BATCH, STEPS = 0.1, 0.8, 0.5, 2, 3


def _reference_round(module, data, weights, x, clients):
  """One APFL round as Python loops (plain SGD, simultaneous updates)."""
  grad = conftest.batch_loss_grad(module, tasks.classification(2))
  tmap = jax.tree.map
  total = sum(float(np.sum(w)) for w in weights.values())
  mean_d = tmap(jnp.zeros_like, x)
  out = {}
  for g in GROUPS:
    vs, alphas = [], []
    for i in range(len(data[g]['n'])):
      xb, yb = data[g]['x'][i, :BATCH], data[g]['y'][i, :BATCH]
      w = x
      v = tmap(lambda p, i=i: p[i], clients[g].personal)
      a = float(clients[g].alpha[i])
      for _ in range(STEPS):
        g_w = grad(w, xb, yb)
        g_bar = grad(tmap(lambda p, q, a=a: a * p + (1 - a) * q, v, w),
                     xb, yb)
        g_a = sum(float(jnp.vdot(p - q, r)) for p, q, r in zip(
            jax.tree.leaves(v), jax.tree.leaves(w), jax.tree.leaves(g_bar)))
        w, v, a = (tmap(lambda p, d: p - LR * d, w, g_w),
                   tmap(lambda p, d, a=a: p - LR * a * d, v, g_bar),
                   float(np.clip(a - ALPHA_LR * g_a, 0.0, 1.0)))
      p = float(weights[g][i]) / total
      mean_d = tmap(lambda s, u, y, p=p: s + p * (u - y), mean_d, x, w)
      vs.append(v)
      alphas.append(a)
    out[g] = (tmap(lambda *xs: jnp.stack(xs), *vs), np.asarray(alphas))
  return tmap(lambda a, d: a - SERVER_LR * d, x, mean_d), out


def _close(a, b, atol=2e-6):
  for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(u, v, atol=atol)


def test_apfl_round_matches_the_hand_written_update():
  rng = np.random.default_rng(0)
  data = conftest.constant_silos(rng, {'large': [4, 6], 'small': [2, 3]})
  weights = {'large': np.asarray([0.3, 0.3], np.float32),
             'small': np.asarray([0.25, 0.15], np.float32)}
  module = models.make_model('cnn', num_classes=2, features=(4,), dense=8)
  local = common.LocalConfig(batch_size=BATCH, local_steps=STEPS)
  alg = apfl.apfl(module, tasks.classification(2), local, GROUPS)
  state = engine.init_state(alg, data, seed=0)
  # Personal models away from the global one and unequal alphas, so the
  # alpha gradient <v - w, grad f(v_bar)> is not zero.
  noise = jax.random.PRNGKey(3)
  clients = {}
  for gi, (g, c) in enumerate(state.clients.items()):
    leaves, tree = jax.tree.flatten(c.personal)
    keys = jax.random.split(jax.random.fold_in(noise, gi), len(leaves))
    personal = jax.tree.unflatten(tree, [
        x + 0.3 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])
    clients[g] = c._replace(personal=personal, alpha=jnp.asarray(
        [0.2, 0.7][:c.alpha.shape[0]], jnp.float32))
  state = state._replace(clients=clients)
  hp = {'lr': jnp.float32(LR), 'momentum': jnp.float32(0.0),
        'server_lr': jnp.float32(SERVER_LR),
        'apfl_alpha_lr': jnp.float32(ALPHA_LR)}
  want_x, want = _reference_round(module, data, weights, state.server.params,
                                  state.clients)
  new, metrics = jax.jit(engine.build_round(alg, GROUPS, strategy='chunked'))(
      state, data, weights, hp)
  _close(new.server.params, want_x)
  for g in GROUPS:
    _close(new.clients[g].personal, want[g][0], atol=5e-6)
    np.testing.assert_allclose(new.clients[g].alpha, want[g][1], atol=1e-5)
    np.testing.assert_allclose(metrics.silos[g]['alpha'], want[g][1],
                               atol=1e-5)
  moved = np.concatenate([np.asarray(new.clients[g].alpha) for g in GROUPS])
  assert np.abs(moved - [0.2, 0.7, 0.2, 0.7]).max() > 1e-4  # Alpha adapts.
  # A silo is scored with alpha v + (1 - alpha) w_global.
  silo = jax.tree.map(lambda t: t[1], new.clients['small'])
  got = alg.eval_variables(types.SiloInput('small', silo,
                                           new.server.params))['params']
  a = float(silo.alpha)
  _close(got, jax.tree.map(lambda v, w: a * v + (1 - a) * w, silo.personal,
                           new.server.params))


def test_apfl_at_alpha_zero_trains_w_as_fedavg_and_scores_it():
  """alpha = 0 and fixed: v never enters a prediction, and w takes
  FedAvg's steps on the same batches (the same key derivation)."""
  rng = np.random.default_rng(1)
  data = {'large': conftest.make_group(rng, [12, 10]),
          'small': conftest.make_group(rng, [5, 4, 6])}
  weights = {g: (d['n'] / 37.0).astype(np.float32) for g, d in data.items()}
  module = models.make_model('cnn', num_classes=2, features=(4,), dense=8)
  local = common.LocalConfig(batch_size=4, local_steps=3)
  task = tasks.classification(2)
  hp = {'lr': jnp.float32(0.1), 'momentum': jnp.float32(0.9),
        'server_lr': jnp.float32(1.0), 'apfl_alpha_lr': jnp.float32(0.0)}
  got = {}
  for name, alg in (('apfl', apfl.apfl(module, task, local, GROUPS,
                                       alpha=0.0)),
                    ('fedavg', fedavg.fedavg(module, task, local, GROUPS))):
    run = engine.run_rounds(engine.build_round(alg, GROUPS,
                                               strategy='chunked'), 2)
    got[name] = (alg, run(engine.init_state(alg, data, seed=0), data,
                          weights, hp)[0])
  _close(got['apfl'][1].server.params, got['fedavg'][1].server.params)
  alg, state = got['apfl']
  silo = jax.tree.map(lambda t: t[0], state.clients['large'])
  assert float(silo.alpha) == 0.0
  _close(alg.eval_variables(types.SiloInput(
      'large', silo, state.server.params))['params'], state.server.params,
         atol=0.0)


# The front door is the same for every registered algorithm (tests of
# run_experiment cover it); this is its cost for one more: slow.
@pytest.mark.slow
def test_apfl_runs_from_a_config_through_the_registry(tmp_path):
  config = tiny_config.get_config('apfl')
  config.rounds = 1
  config.apfl = {'alpha': 0.5}
  summary = experiment.run_experiment(config, str(tmp_path))
  assert 0.0 <= summary['final']['summary']['all']['accuracy'] <= 1.0
