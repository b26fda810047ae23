# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""Persistent state per silo (``state_bytes``): FedAvg-family silos keep no
model copy, stateful methods keep exactly what they need, and a stateless
FedAvg still trains, evaluates and checkpoints as before."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fedhelp_jax import checkpoint
from fedhelp_jax import engine
from fedhelp_jax import models
from fedhelp_jax import state_bytes
from fedhelp_jax import tasks
from fedhelp_jax.algorithms import common
from fedhelp_jax.algorithms import fedavg
from tests import tiny_config

GROUPS = ('large', 'small')
STATELESS = ('fedavg', 'fedprox', 'fedadam', 'fedyogi', 'fedadagrad',
             'feddf')


def _fed():
  """Shape-only federation: 2 large + 3 small silos of 16x16 images."""
  return state_bytes.abstract_federation(
      {'large': (2, 24), 'small': (3, 7)}, input_shape=(16, 16, 1),
      num_classes=2, test_n=6, num_public=6)


def _param_bytes(model_config, **kwargs):
  module = models.from_config(model_config, 2, **kwargs)
  return state_bytes.param_bytes(
      module, jax.ShapeDtypeStruct((1, 16, 16, 1), jnp.float32))


def _rows(names):
  return {r['name']: r for r in state_bytes.table(
      tiny_config.get_config, _fed(), names=names)}


def test_stateless_fedavg_family_keeps_zero_bytes_per_silo():
  """No BatchNorm: FedAvg, FedProx, the FedAdam family and FedDF keep
  nothing between rounds (no per-silo model copy)."""
  rows = _rows(STATELESS)
  for name in STATELESS:
    assert rows[name]['per_silo'] == {'large': 0, 'small': 0}, name
    assert rows[name]['params'] > 0
  # What is left is an empty model_state per group, an empty pytree.
  alg = fedavg.fedavg(models.from_config(tiny_config.get_config().model, 2),
                      tasks.classification(2),
                      common.LocalConfig(batch_size=4, local_steps=2), GROUPS)
  _, clients = jax.eval_shape(alg.init, jax.random.PRNGKey(0), _fed())
  assert clients == {'large': common.SiloModelState({}),
                     'small': common.SiloModelState({})}


def test_state_bytes_of_stateful_methods_are_what_they_keep():
  config = tiny_config.get_config()
  small = _param_bytes(config.model)
  large = _param_bytes(config.large_model)  # FedHelp's L_k, FML's private.
  head = (_param_bytes(config.model, aux_classes=2)
          - _param_bytes(config.model))  # FedHelp's public head h_pub.
  rows = _rows(('scaffold', 'local', 'ditto', 'fedhelp', 'fedavg_fm', 'fml',
                'central', 'pfednet', 'fedper'))
  want = {
      'scaffold': {'large': small, 'small': small},  # Control variate c_i.
      'local': {'large': small, 'small': small},  # The silo's own model.
      'ditto': {'large': small, 'small': small},  # The personal model.
      'fedhelp': {'large': large, 'small': head},
      'fedavg_fm': {'large': 0, 'small': head},
      'fml': {'large': large, 'small': small},
      'central': {'large': 0, 'small': 0},
      # pFedNet's personalized part z lives in the server state.
      'pfednet': {'large': 0, 'small': 0},
      'fedper': {'large': 0, 'small': 0},
  }
  for name, per_silo in want.items():
    assert rows[name]['per_silo'] == per_silo, name
  assert 0 < head < small < large
  assert rows['scaffold']['params'] == small


def test_state_bytes_batchnorm_statistics_stay_on_the_silo():
  """With BatchNorm the FedAvg silo keeps exactly its statistics (FedBN)."""
  module = models.make_model('cnn', num_classes=2, features=(4, 8), dense=8,
                             norm='batch')
  alg = fedavg.fedavg(module, tasks.classification(2),
                      common.LocalConfig(batch_size=4, local_steps=2), GROUPS)
  fed = _fed()
  _, stats = jax.eval_shape(
      lambda k, x: common.init_model(module, k, x), jax.random.PRNGKey(0),
      jax.ShapeDtypeStruct((1, 16, 16, 1), jnp.float32))
  per_silo = state_bytes.persistent_bytes_per_silo(alg, fed)
  assert per_silo == {g: state_bytes.tree_bytes(stats) for g in GROUPS}
  assert per_silo['small'] > 0


def _cnn():
  return models.make_model('cnn', num_classes=2, features=(4, 8), dense=8)


def _reference_fedavg(module, local, state, data, weights, lr, rounds):
  """FedAvg by hand: plain SGD from the global model on each silo's own
  batches (the engine's keys and schedule), then the weighted mean model."""
  @jax.jit
  def sgd_step(p, xb, yb):
    def loss(q):
      logits, _ = models.apply_model(module, {'params': q}, xb, train=True)
      return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(
          logits, yb))
    return jax.tree.map(lambda a, g: a - lr * g, p, jax.grad(loss)(p))

  params = state.server.params
  total = sum(float(np.sum(w)) for w in weights.values())
  for r in range(rounds):
    mean = jax.tree.map(jnp.zeros_like, params)
    for gi, g in enumerate(GROUPS):
      keys = engine.client_keys(state.rng, jnp.int32(r), gi,
                                len(weights[g]))
      for c, w in enumerate(weights[g]):
        order_key, _ = jax.random.split(keys[c])
        silo = {'n': jnp.int32(data[g]['n'][c]), 'x': data[g]['x'][c]}
        idx, active = local.schedule(order_key, silo)
        y = params
        for t in range(idx.shape[0]):
          if bool(active[t]):
            y = sgd_step(y, data[g]['x'][c][idx[t]], data[g]['y'][c][idx[t]])
        mean = jax.tree.map(lambda m, v, w=w: m + w / total * v, mean, y)
    params = mean
  return params


def test_stateless_fedavg_training_equals_hand_reference(two_groups,
                                                         tmp_path):
  """Two compiled FedAvg rounds without per-silo copies: the server model
  equals FedAvg by hand, evaluation uses the broadcast model, and the state
  (empty client pytrees) survives an orbax checkpoint round trip."""
  data, weights = two_groups
  module = _cnn()
  local = common.LocalConfig(batch_size=4, local_steps=3)
  alg = fedavg.fedavg(module, tasks.classification(2), local, GROUPS)
  hp = {'lr': jnp.float32(0.1), 'momentum': jnp.float32(0.0),
        'server_lr': jnp.float32(1.0)}
  init = engine.init_state(alg, data, seed=3)
  want = _reference_fedavg(module, local, init, data, weights, 0.1, 2)
  run = engine.run_rounds(engine.build_round(alg, GROUPS,
                                             strategy='chunked'), 2)
  state, _ = run(engine.init_state(alg, data, seed=3), data, weights, hp)
  assert int(state.round) == 2
  assert state.clients == {'large': common.SiloModelState({}),
                           'small': common.SiloModelState({})}
  got, ref = state.server.params, want
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(ref)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
  assert max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(
      jax.tree.leaves(got), jax.tree.leaves(init.server.params))) > 1e-4

  # Every silo is evaluated with the broadcast model.
  probs = engine.build_predict(alg, GROUPS, common.predict_probs(
      tasks.classification(2)), strategy='chunked')(state, data)
  logits, _ = models.apply_model(module, {'params': got},
                                 data['small']['test_x'][1], train=False)
  np.testing.assert_allclose(probs['small'][1], jax.nn.softmax(logits),
                             atol=1e-6)

  # Checkpoint and restore: the empty client states come back as they were.
  ckpt = checkpoint.RunCheckpointer(str(tmp_path), config_hash='h')
  ckpt.maybe_restore(engine.init_state(alg, data, seed=3), resume=False)
  ckpt.save(2, state)
  ckpt.close()
  ckpt = checkpoint.RunCheckpointer(str(tmp_path), config_hash='h')
  restored, round_index = ckpt.maybe_restore(
      engine.init_state(alg, data, seed=3))
  ckpt.close()
  assert round_index == 2
  assert jax.tree.structure(restored) == jax.tree.structure(state)
  assert restored.clients == state.clients
  for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(state)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_state_bytes_markdown_lists_every_algorithm():
  rows = state_bytes.table(tiny_config.get_config, _fed(),
                           names=('fedavg', 'scaffold'))
  text = state_bytes.markdown(rows)
  lines = text.splitlines()
  assert lines[0].startswith('| algorithm | large silo | small silo |')
  assert lines[2].startswith('| fedavg | 0 B | 0 B | 0 / 0 |')
  assert lines[3].startswith(
      f"| scaffold | {rows[1]['params']:,} B | {rows[1]['params']:,} B | "
      '1.00 / 1.00 |')
