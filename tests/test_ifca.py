# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""IFCA against a hand-written round (cluster choice by loss, per-cluster
weighted means, an unchosen model left alone), recovering two hidden
clusters that one global model cannot fit, and through the registry."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedhelp_jax import algorithms
from fedhelp_jax import engine
from fedhelp_jax import experiment
from fedhelp_jax import models
from fedhelp_jax import tasks
from fedhelp_jax import types
from fedhelp_jax.algorithms import common
from fedhelp_jax.algorithms import fedavg
from fedhelp_jax.algorithms import ifca
from tests import conftest
from tests import tiny_config

GROUPS = ('large', 'small')
LR, SERVER_LR, BATCH, STEPS = 0.1, 0.7, 2, 2


def _reference_round(module, data, weights, stacked):
  """One IFCA round as Python loops over silos and clusters."""
  task = tasks.classification(2)
  grad = conftest.batch_loss_grad(module, task)
  tmap = jax.tree.map
  k = jax.tree.leaves(stacked)[0].shape[0]
  thetas = [tmap(lambda p, j=j: p[j], stacked) for j in range(k)]
  sums = [tmap(jnp.zeros_like, thetas[0]) for _ in range(k)]
  totals, choices = [0.0] * k, []
  for g in GROUPS:
    for i in range(len(data[g]['n'])):
      x, y = data[g]['x'][i, :1], data[g]['y'][i, :1]
      losses = [float(jnp.mean(task.loss(models.apply_model(
          module, {'params': t}, x, train=False)[0], y))) for t in thetas]
      j = int(np.argmin(losses))
      choices.append(j)
      w = tmap(lambda a: a, thetas[j])
      for _ in range(STEPS):
        xb = data[g]['x'][i, :BATCH]
        yb = data[g]['y'][i, :BATCH]
        w = tmap(lambda a, d: a - LR * d, w, grad(w, xb, yb))
      p = float(weights[g][i])
      sums[j] = tmap(lambda s, a, b: s + p * (a - b), sums[j], thetas[j], w)
      totals[j] += p
  new = [tmap(lambda t, s, tot=totals[j]: t - SERVER_LR * s / tot,
              thetas[j], sums[j]) if totals[j] > 0 else thetas[j]
         for j in range(k)]
  return tmap(lambda *xs: jnp.stack(xs), *new), choices


def test_ifca_round_matches_the_hand_written_update():
  rng = np.random.default_rng(0)
  data = conftest.constant_silos(rng, {'large': [4, 6], 'small': [2, 3, 2]})
  weights = {'large': np.asarray([0.3, 0.25], np.float32),
             'small': np.asarray([0.2, 0.15, 0.1], np.float32)}
  module = models.make_model('cnn', num_classes=2, features=(4,), dense=8)
  local = common.LocalConfig(batch_size=BATCH, local_steps=STEPS)
  alg = ifca.ifca(module, tasks.classification(2), local, GROUPS,
                  num_clusters=3)
  state = engine.init_state(alg, data, seed=0)
  # Model 0's head leans to class 0 and model 1 is model 0 with its head
  # negated, so silos split between them by label; model 2 is an exact
  # copy of model 0, so its loss ties model 0's bit for bit, argmin takes
  # the first, and model 2 must come out of the round unchanged.
  params = state.server.params
  head = dict(params['head'])
  head['bias'] = head['bias'].at[0].set(jnp.asarray([0.3, -0.3]))
  head = {k: v.at[1].set(-v[0]).at[2].set(v[0]) for k, v in head.items()}
  params = {**params, 'head': head}
  params = jax.tree.map(lambda p: p.at[2].set(p[0]), params)
  state = state._replace(server=state.server._replace(params=params))
  hp = {'lr': jnp.float32(LR), 'momentum': jnp.float32(0.0),
        'server_lr': jnp.float32(SERVER_LR)}
  want, choices = _reference_round(module, data, weights, state.server.params)
  round_fn = jax.jit(engine.build_round(alg, GROUPS, strategy='chunked'))
  new, metrics = round_fn(state, data, weights, hp)
  got_choices = np.concatenate([metrics.silos[g]['cluster'] for g in GROUPS])
  np.testing.assert_array_equal(got_choices, choices)
  np.testing.assert_array_equal(
      np.concatenate([new.clients[g].cluster for g in GROUPS]), choices)
  assert len(set(choices)) >= 2, choices  # Two models really move.
  for a, b in zip(jax.tree.leaves(new.server.params), jax.tree.leaves(want)):
    np.testing.assert_allclose(a, b, atol=2e-6)
  assert 2 not in choices
  for a, b in zip(jax.tree.leaves(new.server.params),
                  jax.tree.leaves(state.server.params)):
    np.testing.assert_array_equal(a[2], b[2])


def _two_rule_silos(seed=0, silos=8, n=48, dim=6):
  """Silo i follows rule ``y = [x . w > 0]`` if i is even, its opposite if
  odd: no single linear model fits both halves."""
  rng = np.random.default_rng(seed)
  w = rng.normal(size=dim)
  x = rng.normal(size=(silos, 2 * n, dim)).astype(np.float32)
  y = (x @ w > 0).astype(np.int32)
  y[1::2] = 1 - y[1::2]
  data = {'small': {'x': x[:, :n], 'y': y[:, :n],
                    'n': np.full((silos,), n, np.int32),
                    'test_x': x[:, n:], 'test_y': y[:, n:],
                    'test_n': np.full((silos,), n, np.int32)}}
  weights = {'small': np.full((silos,), 1.0 / silos, np.float32)}
  return data, weights


def _accuracy(alg, state, data):
  download = alg.download(state.server)
  module = alg.eval_model('small')
  acc = []
  for c in range(data['small']['n'].shape[0]):
    client = jax.tree.map(lambda x, c=c: x[c], state.clients['small'])
    variables = alg.eval_variables(types.SiloInput(
        'small', client, download.broadcast))
    logits, _ = models.apply_model(module, variables,
                                   data['small']['test_x'][c], train=False)
    acc.append(np.mean(np.argmax(logits, -1) == data['small']['test_y'][c]))
  return np.asarray(acc)


def test_ifca_recovers_two_hidden_clusters_that_fedavg_cannot_fit():
  """One fixed data seed and init; the assertion is the clustering itself:
  every even silo on one model, every odd silo on the other."""
  data, weights = _two_rule_silos()
  module = models.make_model('logreg', num_classes=2)
  local = common.LocalConfig(batch_size=8, local_steps=5)
  task = tasks.classification(2)
  hp = {'lr': jnp.float32(0.5), 'momentum': jnp.float32(0.0),
        'server_lr': jnp.float32(1.0)}
  results = {}
  for name, alg in (
      ('ifca', ifca.ifca(module, task, local, ('small',), num_clusters=2)),
      ('fedavg', fedavg.fedavg(module, task, local, ('small',)))):
    run = engine.run_rounds(engine.build_round(alg, ('small',),
                                               strategy='chunked'), 10)
    state, metrics = run(engine.init_state(alg, data, seed=0), data,
                         weights, hp)
    results[name] = (_accuracy(alg, state, data), state)
  clusters = np.asarray(results['ifca'][1].clients['small'].cluster)
  assert len(set(clusters[0::2])) == 1 and len(set(clusters[1::2])) == 1
  assert clusters[0] != clusters[1], clusters
  ifca_acc, fedavg_acc = results['ifca'][0], results['fedavg'][0]
  assert ifca_acc.mean() > 0.85, ifca_acc
  assert ifca_acc.mean() > fedavg_acc.mean() + 0.25, (ifca_acc, fedavg_acc)


# The front door is the same for every registered algorithm (tests of
# run_experiment cover it); this is its cost for one more: slow.
@pytest.mark.slow
def test_ifca_runs_from_a_config_through_the_registry(tmp_path):
  config = tiny_config.get_config('ifca')
  config.rounds = 1
  config.ifca = {'num_clusters': 2}
  assert 'ifca' in algorithms.names()
  summary = experiment.run_experiment(config, str(tmp_path))
  assert 0.0 <= summary['final']['summary']['all']['accuracy'] <= 1.0
