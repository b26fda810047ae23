# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""The compiled round equals the per-silo loop reference, and basic pins."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fedhelp_jax import engine
from fedhelp_jax import guards
from fedhelp_jax import models
from fedhelp_jax import tasks
from fedhelp_jax import validate
from fedhelp_jax.algorithms import common
from fedhelp_jax.algorithms import fedavg
from tests import conftest

GROUPS = ('large', 'small')


def _module():
  return models.make_model('cnn', num_classes=2, features=(4, 8), dense=8)


def _hparams(name):
  return {k: jnp.float32(v) for k, v in fedavg.default_hparams(name).items()}


def _max_abs_diff(a, b):
  # Same structure (FedAvg's client state may be an empty pytree: 0).
  assert jax.tree.structure(a) == jax.tree.structure(b)
  return max((float(jnp.max(jnp.abs(x - y)))
              for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))),
             default=0.0)


def _fedavg_family(name):
  """``(alg, hparams)``: FedAvg, or FedProx with a mu that matters."""
  local = common.LocalConfig(batch_size=4, local_steps=3)
  factory = fedavg.fedprox if name == 'fedprox' else fedavg.fedavg
  alg = factory(_module(), tasks.classification(2), local, GROUPS)
  hp = _hparams(name)
  if name == 'fedprox':
    hp['mu'] = jnp.float32(0.5)  # Large enough to change the result.
  return alg, hp


@pytest.fixture(scope='module')
def loop_references():
  """Two rounds of the 'loop' strategy per algorithm, run once for both
  compiled strategies (the loop compiles a program per silo step shape)."""
  data, weights = conftest.make_two_groups()
  cache = {}

  def get(name):
    if name not in cache:
      alg, hp = _fedavg_family(name)
      loop = engine.build_round(alg, GROUPS, strategy='loop')
      state = engine.init_state(alg, data, seed=3)
      for _ in range(2):
        state, metrics = loop(state, data, weights, hp)
      cache[name] = (state, metrics)
    return cache[name]

  return get


@pytest.mark.parametrize('strategy,name', [
    ('vmap', 'fedavg'), ('chunked', 'fedprox'),
    # The other two pairings add no path the two above miss: slow.
    pytest.param('chunked', 'fedavg', marks=pytest.mark.slow),
    pytest.param('vmap', 'fedprox', marks=pytest.mark.slow)])
def test_compiled_round_equals_loop_reference(two_groups, loop_references,
                                              name, strategy):
  data, weights = two_groups
  alg, hp = _fedavg_family(name)
  s_loop, m_loop = loop_references(name)
  compiled = jax.jit(engine.build_round(alg, GROUPS, strategy=strategy,
                                        chunk_size=2))
  s_comp = engine.init_state(alg, data, seed=3)
  for _ in range(2):
    s_comp, m_comp = compiled(s_comp, data, weights, hp)
  assert _max_abs_diff(s_loop.server, s_comp.server) < 1e-5
  assert _max_abs_diff(s_loop.clients, s_comp.clients) < 1e-5
  np.testing.assert_allclose(m_loop.silos['small']['train_loss'],
                             m_comp.silos['small']['train_loss'], rtol=1e-5)
  # The round really trained: the global model moved.
  init = engine.init_state(alg, data, seed=3)
  assert _max_abs_diff(init.server, s_comp.server) > 1e-4


def test_fedprox_mu_zero_equals_fedavg(two_groups):
  data, weights = two_groups
  local = common.LocalConfig(batch_size=4, local_steps=3)
  module, task = _module(), tasks.classification(2)
  hp = _hparams('fedprox')
  hp['mu'] = jnp.float32(0.0)
  outs = []
  for alg in (fedavg.fedavg(module, task, local, GROUPS),
              fedavg.fedprox(module, task, local, GROUPS)):
    rf = jax.jit(engine.build_round(alg, GROUPS, strategy='vmap'))
    outs.append(rf(engine.init_state(alg, data, 0), data, weights, hp)[0])
  assert _max_abs_diff(outs[0].server, outs[1].server) < 1e-6


def test_one_client_one_round_fedavg_equals_plain_sgd():
  rng = np.random.default_rng(1)
  data = {'all': conftest.make_group(rng, [12])}
  weights = {'all': np.ones((1,), np.float32)}
  module, task = _module(), tasks.classification(2)
  local = common.LocalConfig(batch_size=4, local_steps=5)
  alg = fedavg.fedavg(module, task, local, ('all',))
  hp = {'lr': jnp.float32(0.1), 'momentum': jnp.float32(0.0),
        'server_lr': jnp.float32(1.0)}
  state = engine.init_state(alg, data, seed=0)
  new_state, _ = jax.jit(engine.build_round(alg, ('all',), strategy='vmap'))(
      state, data, weights, hp)

  # Independent computation: plain SGD with the same batches.
  key = engine.client_keys(state.rng, state.round, 0, 1)[0]
  order_key, _ = jax.random.split(key)
  idx, _ = local.schedule(order_key, {'n': jnp.int32(12),
                                      'x': data['all']['x'][0]})
  params = state.server.params
  x, y = data['all']['x'][0], data['all']['y'][0]

  @jax.jit  # One compile for the five steps (eager would compile per op).
  def sgd_step(p, xb, yb):
    def loss(p):
      logits, _ = models.apply_model(module, {'params': p}, xb, train=True)
      return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(
          logits, yb))
    return jax.tree.map(lambda p, g: p - 0.1 * g, p, jax.grad(loss)(p))

  for t in range(5):
    params = sgd_step(params, x[idx[t]], y[idx[t]])
  assert _max_abs_diff(params, new_state.server.params) < 1e-5


def test_same_seed_gives_identical_metrics(two_groups):
  data, weights = two_groups
  alg = fedavg.fedavg(_module(), tasks.classification(2),
                      common.LocalConfig(batch_size=4, local_steps=2), GROUPS)
  many = engine.run_rounds(engine.build_round(alg, GROUPS), 3)
  runs = [many(engine.init_state(alg, data, seed=7), data, weights,
               _hparams('fedavg')) for _ in range(2)]
  for g in GROUPS:
    np.testing.assert_array_equal(runs[0][1].silos[g]['train_loss'],
                                  runs[1][1].silos[g]['train_loss'])
  other = many(engine.init_state(alg, data, seed=8), data, weights,
               _hparams('fedavg'))
  assert not np.array_equal(other[1].silos['small']['train_loss'],
                            runs[0][1].silos['small']['train_loss'])


def test_run_rounds_equals_repeated_round(two_groups):
  data, weights = two_groups
  alg = fedavg.fedavg(_module(), tasks.classification(2),
                      common.LocalConfig(batch_size=4, local_steps=2), GROUPS)
  hp = _hparams('fedavg')
  rf = engine.build_round(alg, GROUPS, strategy='vmap')
  state = engine.init_state(alg, data, 0)
  stepped = state
  for _ in range(3):
    stepped, _ = jax.jit(rf)(stepped, data, weights, hp)
  scanned, metrics = engine.run_rounds(rf, 3, donate=False)(state, data,
                                                            weights, hp)
  assert metrics.silos['large']['train_loss'].shape == (3, 2)
  assert int(scanned.round) == 3
  assert _max_abs_diff(scanned.server, stepped.server) < 1e-5


def test_local_epochs_masks_steps_of_small_silos():
  idx, active = engine.local_schedule(
      jax.random.PRNGKey(0), jnp.int32(5), 20, batch_size=4, local_epochs=1.0)
  assert idx.shape == (5, 4)  # ceil(20 / 4) steps for the largest silo.
  np.testing.assert_array_equal(active, [True, True, False, False, False])
  # The first epoch of a 5-example silo visits each example once.
  assert sorted(np.asarray(idx).reshape(-1)[:5].tolist()) == [0, 1, 2, 3, 4]


def test_auto_strategy_is_reported_per_backend():
  cpu = engine.resolve_strategy('auto', backend='cpu')
  gpu = engine.resolve_strategy('auto', backend='gpu')
  assert cpu.name in ('chunked', 'vmap') and 'cpu' in cpu.describe().lower()
  assert gpu.name == 'vmap'
  with pytest.raises(ValueError, match='Unknown client-parallel strategy'):
    engine.resolve_strategy('threads')


def test_nonfinite_silo_is_flagged_and_skipped(two_groups):
  data, weights = two_groups
  data = jax.tree.map(np.copy, data)
  data['small']['x'][1, 0] = np.nan  # Poison one silo's data.
  alg = fedavg.fedavg(_module(), tasks.classification(2),
                      common.LocalConfig(batch_size=8, local_steps=2), GROUPS)
  hp = _hparams('fedavg')
  for mode in ('stop', 'skip'):
    rf = jax.jit(engine.build_round(alg, GROUPS, strategy='vmap',
                                    nonfinite=mode))
    state, metrics = rf(engine.init_state(alg, data, 0), data, weights, hp)
    np.testing.assert_array_equal(metrics.nonfinite['small'],
                                  [False, True, False])
    finite = all(bool(jnp.all(jnp.isfinite(x)))
                 for x in jax.tree.leaves(state.server))
    assert finite == (mode == 'skip')


def _library_run(data, weights, *, nonfinite='stop', lr=0.05, task=None):
  alg = fedavg.fedavg(_module(), tasks.classification(2),
                      common.LocalConfig(batch_size=4, local_steps=2), GROUPS)
  rf = engine.build_round(alg, GROUPS, strategy='chunked',
                          nonfinite=nonfinite)
  hp = dict(_hparams('fedavg'), lr=jnp.float32(lr))
  return engine.run_rounds(rf, 2, task=task)(
      engine.init_state(alg, data, 0), data, weights, hp)


@pytest.mark.parametrize('corrupt, match', [
    (lambda d: d['small']['x'].__setitem__((1, 0, 0, 0, 0), np.nan),
     r"data\['small'\]\['x'\]: silos \[1\] contain NaN"),
    (lambda d: d['small']['y'].__setitem__((0, 0), -1), 'must be >= 0'),
    (lambda d: d['small']['n'].__setitem__(2, 0), r'silos \[2\] have no '
     'training examples'),
])
def test_library_path_rejects_bad_data_before_compiling(two_groups, corrupt,
                                                        match):
  data, weights = two_groups
  data = {g: {k: np.array(v) for k, v in d.items()} for g, d in data.items()}
  corrupt(data)
  with pytest.raises(validate.DataError, match=match):
    _library_run(data, weights)


def test_library_path_rejects_an_empty_group(two_groups):
  data, weights = two_groups
  data = dict(data, small={k: v[:0] for k, v in data['small'].items()})
  weights = dict(weights, small=weights['small'][:0])
  with pytest.raises(validate.DataError, match='no silos'):
    _library_run(data, weights)


def test_library_path_stops_on_a_non_finite_round(two_groups):
  data, weights = two_groups
  # A huge learning rate overflows every silo in the first round.
  with pytest.raises(guards.NonFiniteError, match='round 1'):
    _library_run(data, weights, lr=1e30)


def test_library_path_with_a_task_checks_the_label_range(two_groups):
  data, weights = two_groups
  data = {g: {k: np.array(v) for k, v in d.items()} for g, d in data.items()}
  data['small']['y'][1, 0] = 5
  with pytest.raises(validate.DataError, match=r"labels must lie in \[0, 1\]"
                     r".*Fix: fix config.num_classes"):
    _library_run(data, weights, task=tasks.classification(2))


def test_pad_group_clients_appends_zero_weight_dummy_silos():
  rng = np.random.default_rng(0)
  group = conftest.make_group(rng, [3, 5, 4])
  group['note'] = 'passes through'
  weights = np.asarray([0.2, 0.5, 0.3], np.float32)
  padded, w = engine.pad_group_clients(group, weights, 4)
  np.testing.assert_array_equal(
      w, np.asarray([0.2, 0.5, 0.3, 0.0], np.float32))
  for key in ('x', 'y', 'n', 'test_x', 'test_y', 'test_n'):
    assert padded[key].shape[0] == 4
    np.testing.assert_array_equal(padded[key][:3], group[key])
  assert padded['note'] == 'passes through'
  same, w_same = engine.pad_group_clients(group, weights, 3)
  assert same['x'].shape == group['x'].shape and w_same.shape == (3,)
  with pytest.raises(ValueError, match='multiple must be >= 1'):
    engine.pad_group_clients(group, weights, 0)
