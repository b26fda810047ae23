# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""Upload encoders against hand computations: what decode(encode(x)) keeps,
its error and its bytes; error feedback's bookkeeping; and a compiled round
of FedAvg with a top-k upload."""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from conftest import make_two_groups
from fedhelp_jax import compression
from fedhelp_jax import engine
from fedhelp_jax import models
from fedhelp_jax import tasks
from fedhelp_jax import types
from fedhelp_jax import validate
from fedhelp_jax.algorithms import common
from fedhelp_jax.algorithms import fedavg
from fedhelp_jax.algorithms import server_opt
from tests import tiny_config

GROUPS = ('large', 'small')
X = {'a': jnp.asarray([0.5, -3.0, 0.1, 2.0]),
     'b': jnp.asarray([[-0.2, 4.0], [1.0, -0.05]])}  # d = 8


def test_topk_keeps_the_largest_magnitudes_and_counts_8_bytes_each():
  sent, nbytes = compression.topk(0.3).encode(X, jax.random.PRNGKey(0))
  # k = ceil(0.3 * 8) = 3: 4.0, -3.0 and 2.0 survive.
  np.testing.assert_array_equal(sent['a'], [0.0, -3.0, 0.0, 2.0])
  np.testing.assert_array_equal(sent['b'], [[0.0, 4.0], [0.0, 0.0]])
  assert float(nbytes) == 8 * 3
  dropped = [0.5, 0.1, -0.2, 1.0, -0.05]
  error = math.sqrt(sum(v * v for v in dropped))
  flat = lambda t: jnp.concatenate([t['a'], t['b'].reshape(-1)])
  np.testing.assert_allclose(jnp.linalg.norm(flat(X) - flat(sent)), error,
                             rtol=1e-6)


def test_qsgd_is_on_its_grid_unbiased_and_counts_its_bits():
  encoder = compression.qsgd(4)
  x = {'v': jnp.asarray([0.3, -1.2, 0.0, 2.5, -0.7])}
  norm = float(np.linalg.norm(x['v']))
  sent, nbytes = encoder.encode(x, jax.random.PRNGKey(1))
  levels = np.asarray(sent['v']) / norm * 4
  np.testing.assert_allclose(levels, np.round(levels), atol=1e-5)
  assert np.all(np.sign(sent['v']) * np.sign(x['v']) >= 0)
  # 4 bytes of norm + 5 entries x (1 sign + ceil(log2 5) = 3 level bits).
  assert float(nbytes) == 4 + math.ceil(5 * 4 / 8)
  many = jax.vmap(lambda k: encoder.encode(x, k)[0]['v'])(
      jax.random.split(jax.random.PRNGKey(2), 20000))
  # Each entry's quantisation has variance <= (norm / 4)^2 / 4.
  tol = 4 * (norm / 4) / 2 / math.sqrt(20000)
  np.testing.assert_allclose(many.mean(0), x['v'], atol=tol)


def test_tv_fuses_runs_by_the_closed_form_and_counts_8_bytes_a_run():
  # Two runs of 5: the prox moves each run's mean by gamma / 5 towards the
  # other (the jump survives, 4 - 2 gamma / 5 > 0).
  g = {'v': jnp.asarray([0.0] * 5 + [4.0] * 5),
       'w': jnp.asarray([[1.0, 1.0], [1.0, 1.0]])}  # one run, already flat
  sent, nbytes = compression.tv(1.0).encode(g, jax.random.PRNGKey(0))
  np.testing.assert_allclose(sent['v'], [0.2] * 5 + [3.8] * 5, rtol=1e-6)
  np.testing.assert_array_equal(sent['w'], g['w'])
  # 'v': 2 runs (16 bytes < 40 raw); 'w': 1 run (8 bytes < 16 raw).
  assert float(nbytes) == 16 + 8
  # A strong prox leaves one run, the mean (TV keeps the sum).
  noisy = {'v': jnp.asarray([0.3, -0.1, 0.2, 0.0, 0.1, -0.2])}
  flat, nbytes = compression.tv(10.0).encode(noisy, jax.random.PRNGKey(0))
  np.testing.assert_allclose(flat['v'], np.full(6, 0.05), atol=1e-7)
  assert float(nbytes) == 8


def test_tv_at_gamma_0_sends_the_upload_and_falls_back_to_raw_bytes():
  sparse = {'v': jnp.asarray([0.0, 0.0, 0.0, 0.0, 3.0, 0.0, 0.0, 0.0])}
  sent, nbytes = compression.tv(0.0).encode(sparse, jax.random.PRNGKey(0))
  np.testing.assert_array_equal(sent['v'], sparse['v'])
  assert float(nbytes) == 8 * 3  # runs 0000 | 3 | 000, cheaper than 32
  sent, nbytes = compression.tv(0.0).encode(X, jax.random.PRNGKey(0))
  jax.tree.map(np.testing.assert_array_equal, sent, X)
  assert float(nbytes) == 4 * 8  # no repeats: raw float32 is cheaper


def test_tv_from_config_and_its_validation():
  assert compression.from_config({'kind': 'tv', 'gamma': 1e-3}).name == (
      'tv(0.001)')
  config = tiny_config.get_config('fedavg')
  config.compression = ml_collections.ConfigDict({'kind': 'tv',
                                                  'gamma': -1.0})
  with pytest.raises(ValueError, match='compression.gamma'):
    validate.validate_config(config)
  config.compression.gamma = 1e-3
  validate.validate_config(config)


def _fixed_upload_alg(upload):
  """An algorithm whose every silo uploads ``upload``."""
  def init(rng, data):
    del rng
    num = data['small']['n'].shape[0]
    return (server_opt.ServerState(jax.tree.map(jnp.zeros_like, upload)),
            {'small': {'steps': jnp.zeros((num,), jnp.int32)}})

  def local_update(silo, hparams, key):
    del hparams, key
    return types.SiloOutput({'steps': silo.state['steps'] + 1}, upload, 0.0)

  return types.FederatedAlgorithm(
      name='fixed', groups=('small',), init=init, local_update=local_update,
      server_update=None, eval_variables=lambda silo: silo.broadcast,
      eval_model=None)


def test_error_feedback_sends_everything_eventually():
  alg = compression.with_upload_encoder(_fixed_upload_alg(X),
                                        compression.topk(0.3))
  data = {'small': {'n': np.ones(2, np.int32)}}
  server, clients = alg.init(jax.random.PRNGKey(0), data)
  client = jax.tree.map(lambda x: x[0], clients['small'])
  broadcast = alg.download(server).broadcast
  total = jax.tree.map(jnp.zeros_like, X)
  for t in range(1, 6):
    client, sent, _, metrics = alg.local_update(
        types.SiloInput('small', client, broadcast), {},
        jax.random.PRNGKey(t))
    total = jax.tree.map(jnp.add, total, sent)
    # What was sent plus what is held back is everything uploaded so far.
    jax.tree.map(lambda s, r, x, t=t: np.testing.assert_allclose(
        s + r, t * x, rtol=1e-6), total, client.residual, X)
    assert float(metrics['upload_bytes']) == 24
  assert int(client.inner['steps']) == 5  # The algorithm's own state.


def test_identity_encoder_without_feedback_changes_nothing_but_metrics():
  plain = _fixed_upload_alg(X)
  wrapped = compression.with_upload_encoder(plain, compression.identity(),
                                            error_feedback=False)
  data = {'small': {'n': np.ones(2, np.int32)}}
  server, clients = wrapped.init(jax.random.PRNGKey(0), data)
  client = jax.tree.map(lambda x: x[0], clients['small'])
  out = wrapped.local_update(types.SiloInput('small', client, server.params),
                             {}, jax.random.PRNGKey(0))
  jax.tree.map(np.testing.assert_array_equal, out.upload, X)
  assert float(out.metrics['upload_bytes']) == 4 * 8


def test_fedavg_round_with_topk_uploads():
  data, weights = make_two_groups()
  module = models.make_model('cnn', num_classes=2, features=(4,), dense=8)
  local = common.LocalConfig(batch_size=4, local_steps=1)
  plain = fedavg.fedavg(module, tasks.classification(2), local, GROUPS)
  config = ml_collections.ConfigDict({'compression': {'kind': 'topk',
                                                      'fraction': 0.01}})
  alg = compression.with_upload_encoder(
      plain, compression.from_config(config.compression))
  hp = {'lr': jnp.asarray(0.1), 'momentum': jnp.asarray(0.0),
        'server_lr': jnp.asarray(1.0)}
  round_fn = jax.jit(engine.build_round(alg, GROUPS, strategy='chunked'))
  state = engine.init_state(alg, data, seed=0)
  new, metrics = round_fn(state, data, weights, hp)
  d = sum(x.size for x in jax.tree.leaves(state.server.params))
  k = math.ceil(0.01 * d)
  np.testing.assert_array_equal(metrics.silos['small']['upload_bytes'], 8 * k)
  moved = jax.tree.map(lambda a, b: np.count_nonzero(np.asarray(a - b)),
                       new.server.params, state.server.params)
  # Each of the 5 silos sent k entries: at most 5 k parameters moved.
  assert 0 < sum(jax.tree.leaves(moved)) <= 5 * k
  assert new.clients['small'].residual['dense']['kernel'].shape[0] == 3


def test_fedavg_round_with_tv_uploads_of_one_run_per_tensor():
  # A prox this strong leaves each tensor one run (its mean): 8 bytes per
  # tensor per silo, and the server moves every entry of a tensor alike.
  data, weights = make_two_groups()
  module = models.make_model('cnn', num_classes=2, features=(4,), dense=8)
  local = common.LocalConfig(batch_size=4, local_steps=1)
  plain = fedavg.fedavg(module, tasks.classification(2), local, GROUPS)
  alg = compression.with_upload_encoder(plain, compression.tv(1e6),
                                        error_feedback=False)
  hp = {'lr': jnp.asarray(0.1), 'momentum': jnp.asarray(0.0),
        'server_lr': jnp.asarray(1.0)}
  round_fn = jax.jit(engine.build_round(alg, GROUPS, strategy='chunked'))
  state = engine.init_state(alg, data, seed=0)
  new, metrics = round_fn(state, data, weights, hp)
  tensors = len(jax.tree.leaves(state.server.params))
  for g in GROUPS:
    np.testing.assert_array_equal(metrics.silos[g]['upload_bytes'],
                                  8 * tensors)
  moved = jax.tree.map(lambda a, b: np.asarray(a - b), new.server.params,
                       state.server.params)
  for step in jax.tree.leaves(moved):
    np.testing.assert_allclose(step, np.full_like(step, step.flat[0]),
                               atol=1e-7)
  assert any(np.any(s != 0) for s in jax.tree.leaves(moved))


def test_unknown_kind_is_refused():
  with pytest.raises(ValueError, match='compression.kind'):
    compression.from_config({'kind': 'zip'})


@pytest.mark.parametrize('section, field', [
    ({'kind': 'zip'}, 'compression.kind'),
    ({'kind': 'topk', 'fraction': 2.0}, 'compression.fraction'),
    ({'kind': 'qsgd', 'levels': 0}, 'compression.levels'),
    ({'kind': 'topk', 'ratio': 0.1}, 'compression.ratio'),
])
def test_bad_compression_configs_name_the_field(section, field):
  config = tiny_config.get_config('fedavg')
  config.compression = ml_collections.ConfigDict(section)
  with pytest.raises(validate.ConfigError, match=f'config.{field}'):
    validate.validate_config(config)
