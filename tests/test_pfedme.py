# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""pFedMe against a hand-written round of its two-level update (the inner
solve of the personal problem, then the step of w toward it), and from a
config."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedhelp_jax import engine
from fedhelp_jax import experiment
from fedhelp_jax import models
from fedhelp_jax import tasks
from fedhelp_jax import validate
from fedhelp_jax.algorithms import common
from fedhelp_jax.algorithms import pfedme
from tests import conftest
from tests import test_apfl
from tests import tiny_config

GROUPS = ('large', 'small')
LR, SERVER_LR, LAM, PLR, BATCH, STEPS, INNER = 0.05, 1.5, 4.0, 0.05, 2, 2, 3


def test_pfedme_round_matches_the_hand_written_update():
  rng = np.random.default_rng(2)
  data = conftest.constant_silos(rng, {'large': [4, 6],
                                      'small': [2, 3]})
  weights = {'large': np.asarray([0.3, 0.3], np.float32),
             'small': np.asarray([0.25, 0.15], np.float32)}
  module = models.make_model('cnn', num_classes=2, features=(4,), dense=8)
  local = common.LocalConfig(batch_size=BATCH, local_steps=STEPS)
  alg = pfedme.pfedme(module, tasks.classification(2), local, GROUPS,
                      inner_steps=INNER)
  state = engine.init_state(alg, data, seed=0)
  hp = {'lr': jnp.float32(LR), 'server_lr': jnp.float32(SERVER_LR),
        'pfedme_lam': jnp.float32(LAM),
        'pfedme_personal_lr': jnp.float32(PLR)}
  grad = conftest.batch_loss_grad(module, tasks.classification(2))
  tmap = jax.tree.map
  x = state.server.params
  total = sum(float(np.sum(w)) for w in weights.values())
  mean_d = tmap(jnp.zeros_like, x)
  personal = {}
  for g in GROUPS:
    thetas = []
    for i in range(len(data[g]['n'])):
      xb, yb = data[g]['x'][i, :BATCH], data[g]['y'][i, :BATCH]
      w = x
      for _ in range(STEPS):
        theta = w
        for _ in range(INNER):
          gr = grad(theta, xb, yb)
          theta = tmap(lambda t, d, a: t - PLR * (d + LAM * (t - a)), theta,
                       gr, w)
        w = tmap(lambda a, t: a - LR * LAM * (a - t), w, theta)
      p = float(weights[g][i]) / total
      mean_d = tmap(lambda s, u, y, p=p: s + p * (u - y), mean_d, x, w)
      thetas.append(theta)
    personal[g] = tmap(lambda *xs: jnp.stack(xs), *thetas)
  want = tmap(lambda a, d: a - SERVER_LR * d, x, mean_d)
  new, _ = jax.jit(engine.build_round(alg, GROUPS, strategy='chunked'))(
      state, data, weights, hp)
  test_apfl._close(new.server.params, want, atol=3e-6)  # pylint: disable=protected-access
  for g in GROUPS:
    test_apfl._close(new.clients[g].personal, personal[g], atol=3e-6)  # pylint: disable=protected-access
  # The personal model is not the global one: lam is finite.
  assert not np.allclose(jax.tree.leaves(new.clients['small'].personal)[0][0],
                         jax.tree.leaves(new.server.params)[0])


def test_pfedme_config_section_is_checked():
  config = tiny_config.get_config('pfedme')
  config.pfedme = {'inner_steps': 0}
  with pytest.raises(validate.ConfigError, match='inner_steps'):
    validate.validate_config(config)


# The front door is the same for every registered algorithm (tests of
# run_experiment cover it); this is its cost for one more: slow.
@pytest.mark.slow
def test_pfedme_runs_from_a_config_through_the_registry(tmp_path):
  config = tiny_config.get_config('pfedme')
  config.rounds = 1
  summary = experiment.run_experiment(config, str(tmp_path))
  assert 0.0 <= summary['final']['summary']['all']['accuracy'] <= 1.0
