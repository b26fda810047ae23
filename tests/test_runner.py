# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""runner: the one host loop (losses, non-finite policy, executable reuse).

``run_experiment`` (tests/test_reliability.py) and ``run_sweep``
(tests/test_sweep.py) pin the loop end to end; these pin its pieces against
hand computations, and the experiment scripts' use of it.
"""

import jax
import numpy as np
import pytest

from experiments import fedhelp_table_lib
from fedhelp_jax import engine
from fedhelp_jax import experiment
from fedhelp_jax import guards
from fedhelp_jax import runner
from tests import test_sweep

_INFO = {'groups': {'small': [4, 5, 6]}}  # 3 real silos, global ids 4..6.


def _metrics(train_loss, nonfinite, sampled=None, server=None,
             first_round=0):
  train_loss = np.asarray(train_loss, np.float32)
  rounds = len(train_loss)
  return engine.RoundMetrics(
      round=np.arange(first_round + 1, first_round + rounds + 1),
      silos={'small': {'train_loss': train_loss}},
      nonfinite={'small': np.asarray(nonfinite, bool)},
      sampled={'small': (np.ones(train_loss.shape, bool) if sampled is None
                         else np.asarray(sampled, bool))},
      server_nonfinite=np.asarray(server or [False] * rounds))


def test_round_losses_average_only_real_kept_and_drawn_silos():
  # Columns: silo 0 kept, 1 non-finite (dropped), 2 not drawn, 3 a dummy.
  m = _metrics([[1.0, np.nan, 3.0, 9.0], [2.0, 4.0, 5.0, 9.0]],
               [[False, True, False, False], [False, False, False, False]],
               sampled=[[True, True, False, True], [True, True, False, True]])
  losses = runner.round_losses(m, _INFO, ('small',))
  assert losses['small'] == [1.0, 3.0]  # (2 + 4) / 2 in round 2.
  none_kept = _metrics([[np.nan, np.nan, np.nan, 0.0]],
                       [[True, True, True, False]])
  assert np.isnan(runner.round_losses(none_kept, _INFO, ('small',))['small'][0])


def test_nonfinite_events_name_global_silo_and_run_round():
  m = _metrics([[1.0, np.nan, 3.0, 0.0], [1.0, 2.0, 3.0, 0.0]],
               [[False, True, False, False], [False, False, True, False]],
               server=[False, True], first_round=10)
  events = guards.events(m, _INFO['groups'])
  assert [(e.round, e.silo, e.quantity) for e in events] == [
      (11, 5, 'train_loss'), (12, 6, 'update'), (12, None, 'server')]
  # Without ids, the column (a dummy's too) names the silo.
  dummy = _metrics([[1.0, 1.0, 1.0, np.nan]], [[False, False, False, True]])
  assert [(e.index, e.silo) for e in guards.events(dummy)] == [(3, 3)]
  assert guards.events(dummy, _INFO['groups']) == []


@pytest.mark.parametrize('policy,bad_silos,server,drawn,raises', [
    ('stop', 1, False, 3, True),
    ('skip', 1, False, 3, False),   # The engine dropped it; the run goes on.
    ('skip', 3, False, 3, True),    # A round with nothing left to aggregate.
    ('skip', 1, False, 1, True),    # ... also when only that silo was drawn.
    ('skip', 0, True, 3, True),     # The server state itself.
    ('record', 3, True, 3, False),
])
def test_nonfinite_policy(policy, bad_silos, server, drawn, raises):
  flags = [[c < bad_silos for c in range(3)] + [False]]
  sampled = [[c < drawn for c in range(3)] + [True]]
  m = _metrics([[np.nan] * bad_silos + [1.0] * (4 - bad_silos)], flags,
               sampled=sampled, server=[server])
  guard = guards.Guard(policy, silo_ids=_INFO['groups'], labels=['seed 7: '])
  if raises:
    with pytest.raises(guards.NonFiniteError, match='^seed 7: round 1') as e:
      guard(m)
    found = e.value.events
  else:
    (found,) = guard(m)
  key = lambda events: [(e.round, e.silo, e.quantity) for e in events]
  assert key(found) == key(guards.events(m, _INFO['groups']))
  assert len(found) == bad_silos + server


def test_sweep_guard_names_the_config_that_failed():
  ok = _metrics([[1.0, 1.0, 1.0, 0.0]], [[False] * 4])
  bad = _metrics([[1.0, np.nan, 1.0, 0.0]], [[False, True, False, False]])
  stacked = jax.tree.map(lambda *xs: np.stack(xs), ok, bad)
  with pytest.raises(guards.NonFiniteError,
                     match=r'^config 1: round 1: silo 5 \(group'):
    guards.Guard('stop', silo_ids=[_INFO['groups']] * 2)(stacked, 2)


def _program_and_member():
  config = test_sweep._tiny()
  fed = experiment.prepare_federation(config, experiment.load_raw(config))
  program = runner.build_program(config, fed.task, fed.groups, fed.info)
  member = lambda seed: fed._replace(seed=seed)
  return config, program, member


def test_program_reuses_its_executable_across_runs_bit_exactly():
  config, program, member = _program_and_member()
  run = lambda seed: runner.run(program, [member(seed)], rounds=2,
                                eval_every=1)[0]
  first, other, again = run(0), run(1), run(0)
  assert first.timing_s['compile'] > 0
  assert other.timing_s['compile'] == again.timing_s['compile'] == 0
  assert list(program.executables) == [(1, 1, False)]
  for a, b in zip(jax.tree.leaves(first.state),
                  jax.tree.leaves(again.state)):
    np.testing.assert_array_equal(a, b)
  assert test_sweep._max_abs_diff(first.state.server,
                                  other.state.server) > 0
  assert [h['round'] for h in first.history] == [1, 2]
  assert first.final['summary'] == first.history[-1]['summary']
  assert first.best['value'] == max(
      h['summary']['all']['accuracy'] for h in first.history)
  assert len(first.train_loss['small']) == int(config.rounds)


def test_fedhelp_table_runs_every_seed_through_the_runner():
  config = test_sweep._tiny()
  raw = experiment.load_raw(config)
  fed0, info0 = experiment.build_federation(config, raw)
  record = fedhelp_table_lib.run_method(config, raw, fed0, info0, [0, 1],
                                    lambda _: None)
  assert [r['seed'] for r in record['runs']] == [0, 1]
  for r in record['runs']:
    assert [p['round'] for p in r['curve']] == [1, 2]
    assert r['curve'][-1]['small'] == r['final']['summary']['small'][
        'accuracy']
  assert record['groups']['small']['per_seed'] == [
      r['final']['summary']['small']['accuracy'] for r in record['runs']]
