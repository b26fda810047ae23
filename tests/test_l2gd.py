# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""L2GD against two hand-written rounds (the second one mixes each silo's
model with the mean before its local steps), and its mixing weight."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedhelp_jax import engine
from fedhelp_jax import models
from fedhelp_jax import tasks
from fedhelp_jax import validate
from fedhelp_jax.algorithms import common
from fedhelp_jax.algorithms import l2gd
from tests import conftest
from tests import test_apfl
from tests import tiny_config

GROUPS = ('large', 'small')
LR, LAM, P, BATCH, STEPS = 0.1, 2.0, 0.4, 2, 2


def test_l2gd_two_rounds_match_the_hand_written_updates():
  rng = np.random.default_rng(7)
  data = conftest.constant_silos(rng, {'large': [4, 6], 'small': [3, 2]})
  weights = {'large': np.asarray([0.3, 0.2], np.float32),
             'small': np.asarray([0.4, 0.1], np.float32)}
  module = models.make_model('cnn', num_classes=2, features=(4,), dense=8)
  task = tasks.classification(2)
  alg = l2gd.l2gd(module, task,
                  common.LocalConfig(batch_size=BATCH, local_steps=STEPS),
                  GROUPS)
  state = engine.init_state(alg, data, seed=0)
  hp = {'lr': jnp.float32(LR), 'momentum': jnp.float32(0.0),
        'server_lr': jnp.float32(1.0), 'l2gd_lam': jnp.float32(LAM),
        'l2gd_p': jnp.float32(P)}
  theta = LR * (1 - P) * LAM / P  # 0.3
  grad = conftest.batch_loss_grad(module, task)
  tmap = jax.tree.map
  own = {g: [state.server.params] * 2 for g in GROUPS}
  mean = state.server.params
  for _ in range(2):
    for g in GROUPS:
      for i in range(2):
        xb, yb = data[g]['x'][i, :BATCH], data[g]['y'][i, :BATCH]
        x = tmap(lambda a, m: (1 - theta) * a + theta * m, own[g][i], mean)
        for _ in range(STEPS):
          x = tmap(lambda a, d: a - LR * d, x, grad(x, xb, yb))
        own[g] = own[g][:i] + [x] + own[g][i + 1:]
    total = sum(float(np.sum(w)) for w in weights.values())
    mean = tmap(lambda *xs: sum(xs), *[
        tmap(lambda a, w=float(weights[g][i]) / total: w * a, own[g][i])
        for g in GROUPS for i in range(2)])
  step = jax.jit(engine.build_round(alg, GROUPS, strategy='chunked'))
  for _ in range(2):
    state, _ = step(state, data, weights, hp)
  test_apfl._close(state.server.params, mean, atol=3e-6)  # pylint: disable=protected-access
  for g in GROUPS:
    test_apfl._close(state.clients[g].params,  # pylint: disable=protected-access
                     tmap(lambda *xs: jnp.stack(xs), *own[g]), atol=3e-6)


def test_mixing_weight_is_the_papers_step_clipped_to_the_mean():
  hp = {'lr': 0.1, 'l2gd_lam': 2.0, 'l2gd_p': 0.4}
  assert float(l2gd.mixing_weight(hp)) == pytest.approx(0.3)
  assert float(l2gd.mixing_weight(dict(hp, l2gd_lam=0.0))) == 0.0
  assert float(l2gd.mixing_weight(dict(hp, l2gd_p=0.01))) == 1.0


def test_l2gd_refuses_a_probability_outside_the_open_interval():
  config = tiny_config.get_config('l2gd')
  config.hparams.l2gd_p = 1.0
  with pytest.raises(validate.ConfigError, match='l2gd_p'):
    validate.validate_config(config)
