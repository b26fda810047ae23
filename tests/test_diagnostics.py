# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""The dead-unit check: against a hand count, on a model whose hidden units
are forced dead, and in a run's summary."""

import jax
import numpy as np

from conftest import make_two_groups
from fedhelp_jax import diagnostics
from fedhelp_jax import engine
from fedhelp_jax import experiment
from fedhelp_jax import models
from fedhelp_jax import tasks
from fedhelp_jax.algorithms import common
from fedhelp_jax.algorithms import fedavg
from tests import tiny_config

GROUPS = ('large', 'small')


def test_dead_fraction_counts_units_never_positive_on_real_rows():
  pre = np.zeros((2, 3, 4))
  pre[0, 0, 0] = 1.0   # Silo 0: unit 0 fires on a real row.
  pre[0, 2, 1] = 1.0   # ... unit 1 only on a padding row (silo 0 has 2).
  pre[1, :, 2] = 0.5   # Silo 1: unit 2 fires everywhere.
  pre[1, 0, 3] = -1.0
  got = diagnostics.dead_fraction(pre, np.array([2, 3]))
  np.testing.assert_allclose(got, [3 / 4, 3 / 4])


def _alg():
  module = models.make_model('cnn', num_classes=2, features=(4,), dense=8)
  local = common.LocalConfig(batch_size=4, local_steps=1)
  return fedavg.fedavg(module, tasks.classification(2), local, GROUPS)


def test_dead_units_sees_a_forced_collapse():
  data, _ = make_two_groups()
  alg = _alg()
  state = engine.init_state(alg, data, seed=0)
  healthy = diagnostics.dead_units(alg, GROUPS, state, data)
  assert set(healthy) == set(GROUPS)
  assert len(healthy['small']['per_silo']) == 3
  assert all(0.0 <= f < 1.0 for f in healthy['small']['per_silo'])
  # A bias far below every pre-activation kills every unit on every image.
  params = state.server.params
  dead_params = {**params, 'dense': {**params['dense'],
                                     'bias': params['dense']['bias'] - 1e4}}
  collapsed = state._replace(server=state.server._replace(params=dead_params))
  dead = diagnostics.dead_units(alg, GROUPS, collapsed, data)
  assert dead['large']['mean'] == 1.0 and dead['small']['mean'] == 1.0
  jax.clear_caches()


def test_a_run_reports_dead_units_in_its_summary(tmp_path):
  config = tiny_config.get_config('fedavg')
  config.rounds = 1
  summary = experiment.run_experiment(config, str(tmp_path))
  dead = summary['dead_units']
  assert set(dead) == {'large', 'small'}
  assert len(dead['small']['per_silo']) == 3
  assert 0.0 <= dead['small']['mean'] <= 1.0
