# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""FedAMP against a hand-written round: proximal local SGD toward each
silo's cloud model, then the attentive messages computed pair by pair in
float64, with a weight-0 (padded) silo that sends and receives nothing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedhelp_jax import engine
from fedhelp_jax import models
from fedhelp_jax import tasks
from fedhelp_jax import validate
from fedhelp_jax.algorithms import common
from fedhelp_jax.algorithms import fedamp
from tests import conftest
from tests import test_apfl
from tests import tiny_config

GROUPS = ('large', 'small')
LR, LAM, ALPHA, SIGMA, BATCH, STEPS = 0.1, 0.5, 0.2, 0.05, 2, 3


def _flat(tree):
  return np.concatenate([np.ravel(np.asarray(x, np.float64))
                         for x in jax.tree.leaves(tree)])


def test_fedamp_round_matches_the_hand_written_messages():
  rng = np.random.default_rng(4)
  data = conftest.constant_silos(rng, {'large': [4, 6], 'small': [3, 2]})
  # The last small silo has weight 0: a padded silo.
  weights = {'large': np.asarray([0.3, 0.3], np.float32),
             'small': np.asarray([0.4, 0.0], np.float32)}
  module = models.make_model('cnn', num_classes=2, features=(4,), dense=8)
  task = tasks.classification(2)
  local = common.LocalConfig(batch_size=BATCH, local_steps=STEPS)
  alg = fedamp.fedamp(module, task, local, GROUPS)
  state = engine.init_state(alg, data, seed=0)
  hp = {'lr': jnp.float32(LR), 'momentum': jnp.float32(0.0),
        'fedamp_alpha': jnp.float32(ALPHA),
        'fedamp_sigma': jnp.float32(SIGMA), 'fedamp_lam': jnp.float32(LAM)}
  grad = conftest.batch_loss_grad(module, task)
  tmap = jax.tree.map
  start = state.server.params  # Every w_i and u_i starts here.
  trained = {}
  for g in GROUPS:
    trained[g] = []
    for i in range(len(data[g]['n'])):
      xb, yb = data[g]['x'][i, :BATCH], data[g]['y'][i, :BATCH]
      w = start
      for _ in range(STEPS):
        gr = grad(w, xb, yb)
        w = tmap(lambda a, d, u: a - LR * (d + LAM * (a - u)), w, gr, start)
      trained[g].append(w)
  models_flat = [_flat(w) for g in GROUPS for w in trained[g]]
  real = [True, True, True, False]
  want_cloud = []
  for i, wi in enumerate(models_flat):
    if not real[i]:
      want_cloud.append(wi)
      continue
    xi = {j: ALPHA * np.exp(-np.sum((wi - wj) ** 2) / SIGMA) / SIGMA
          for j, wj in enumerate(models_flat) if j != i and real[j]}
    cloud = (1.0 - sum(xi.values())) * wi
    for j, x in xi.items():
      cloud = cloud + x * models_flat[j]
    want_cloud.append(cloud)
  new, _ = jax.jit(engine.build_round(alg, GROUPS, strategy='chunked'))(
      state, data, weights, hp)
  got_cloud = [_flat(jax.tree.map(lambda x, c=c: x[c], new.server.cloud[g]))
               for g in GROUPS for c in range(2)]
  for got, want in zip(got_cloud, want_cloud):
    np.testing.assert_allclose(got, want, atol=2e-5)
  for g in GROUPS:
    test_apfl._close(new.clients[g].params,  # pylint: disable=protected-access
                     tmap(lambda *xs: jnp.stack(xs), *trained[g]), atol=3e-6)
  # The messages mix: a real silo's cloud model is none of the models.
  assert np.abs(got_cloud[0] - models_flat[0]).max() > 1e-6
  # ... and the distances matter: the attention terms are far from their
  # value at distance 0 (a dropped distance would fail above).
  d01 = np.sum((models_flat[0] - models_flat[1]) ** 2)
  assert np.exp(-d01 / SIGMA) < 0.9, d01
  np.testing.assert_allclose(_flat(new.server.params),
                             np.mean(models_flat[:3], axis=0), atol=2e-6)


def test_message_weights_rows_sum_to_one_and_mask_padding():
  flat = jnp.asarray(np.random.default_rng(0).normal(size=(4, 5)),
                     jnp.float32)
  xi = fedamp.message_weights(flat, jnp.asarray([1.0, 1.0, 0.0, 1.0]),
                              0.1, 2.0)
  np.testing.assert_allclose(np.sum(xi, axis=1), 1.0, atol=1e-6)
  np.testing.assert_array_equal(xi[2], [0.0, 0.0, 1.0, 0.0])
  assert xi[0, 2] == 0.0 and xi[0, 1] > 0.0


def test_fedamp_refuses_client_sampling():
  config = tiny_config.get_config('fedamp')
  config.clients_per_round.small = 1
  with pytest.raises(validate.ConfigError, match='FedAMP'):
    validate.validate_config(config)
