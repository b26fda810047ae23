# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""Checkpoints hold the real silos only, so a run resumes on another device
count (a preempted job rescheduled elsewhere) and, on CPU, ends bit-exactly
where an uninterrupted run on the new count ends."""

import json
import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from fedhelp_jax import checkpoint
from fedhelp_jax import engine
from fedhelp_jax import types
from tests import subprocess_env

_HERE = os.path.dirname(os.path.abspath(__file__))


def _resume_cases(*algorithms):
  done = subprocess.run(
      [sys.executable, os.path.join(_HERE, 'topology_worker.py'),
       *algorithms],
      cwd=os.path.dirname(_HERE), env=subprocess_env.cpu_env(4),
      capture_output=True, text=True, timeout=600, check=False)
  lines = [l for l in done.stdout.splitlines()
           if l.startswith('TOPOLOGY_RESULTS ')]
  assert done.returncode == 0 and lines, done.stdout[-3000:] + done.stderr[-3000:]
  results = json.loads(lines[-1][len('TOPOLOGY_RESULTS '):])
  for case, r in results.items():
    second = int(case.split('->')[1])
    assert r['layout'] == {'silos': 'real only'}, (case, r)
    assert r['resumed_from'] == 2, (case, r)
    assert r['devices'] == [second, second], (case, r)
    assert r['silos'] == 4, (case, r)  # Dummy silos are never reported.
    assert r['max_abs_diff'] == 0.0, (case, r)
    assert r['dead_units'] == ['large', 'small'], (case, r)
  return results


def test_resume_on_fewer_devices_ends_as_a_straight_run():
  # pFedNet 4 -> 1: the dummies of client states and of the server's
  # per-silo z are cut.
  assert set(_resume_cases('pfednet')) == {'pfednet 4->1'}


@pytest.mark.slow
def test_resume_on_more_devices_ends_as_a_straight_run():
  # FedAvg 1 -> 4: fresh dummy silos are added (also pinned in-process by
  # test_silo_layout_finds_per_silo_leaves_in_server_and_clients).
  assert set(_resume_cases('fedavg')) == {'fedavg 1->4'}


def _alg(server_rows):
  """A minimal algorithm: clients ``[C, 3]``; server leaves from
  ``server_rows(C)``."""
  def init(rng, data):
    del rng
    num = data['small']['n'].shape[0]
    return ({'w': jnp.zeros(3), 'rows': jnp.zeros((server_rows(num), 2))},
            {'small': {'v': jnp.zeros((num, 3))}})
  return types.FederatedAlgorithm(name='rows', groups=('small',), init=init,
                                  local_update=None, server_update=None,
                                  eval_model=None)


def _data(num):
  return {'small': {'n': np.ones(num, np.int32),
                    'x': np.zeros((num, 2, 5), np.float32)}}


def test_silo_layout_finds_per_silo_leaves_in_server_and_clients():
  layout, why = engine.silo_layout(_alg(lambda c: c), _data(4), {'small': 3})
  assert why == '' and layout is not None
  assert layout.owners.clients == {'small': {'v': 'small'}}
  assert layout.owners.server == {'w': '', 'rows': 'small'}
  state = engine.init_state(_alg(lambda c: c), _data(4), 0)
  state = state._replace(clients={'small': {'v': jnp.arange(12.).reshape(4, 3)}})
  stored = engine.stored_state(state, layout)
  assert stored.clients['small']['v'].shape == (3, 3)
  assert stored.server['rows'].shape == (3, 2)
  # Restored onto 6 padded rows: the 3 real ones, then the fresh dummies.
  template = engine.init_state(_alg(lambda c: c), _data(6), 1)
  back = engine.restored_state(stored, template, layout)
  np.testing.assert_array_equal(back.clients['small']['v'][:3],
                                np.arange(9.).reshape(3, 3))
  np.testing.assert_array_equal(back.clients['small']['v'][3:], 0.0)
  assert back.server['rows'].shape == (6, 2)


def test_silo_layout_refuses_a_leaf_it_cannot_cut():
  layout, why = engine.silo_layout(_alg(lambda c: 2 * c), _data(4),
                                   {'small': 3})
  assert layout is None
  assert "['rows']" in why and '(8, 2) to (10, 2)' in why, why


def test_a_padded_checkpoint_is_refused_on_another_count(tmp_path):
  # An algorithm whose silo axes cannot be found stores its padded state,
  # and says which device count continues it.
  state = engine.init_state(_alg(lambda c: 2 * c), _data(4), 0)
  padded = checkpoint.Storage(devices=2, padded=True,
                              why_padded="state leaf ['rows'] changes")
  ckpt = checkpoint.RunCheckpointer(str(tmp_path), config_hash='h')
  ckpt.maybe_restore(state, resume=False, storage=padded)
  ckpt.save(1, state)
  ckpt.close()
  ckpt = checkpoint.RunCheckpointer(str(tmp_path), config_hash='h')
  with pytest.raises(checkpoint.ConfigMismatchError,
                     match=r"over 2 device\(s\) \(state leaf \['rows'\].*"
                           r'--config.num_devices=2'):
    ckpt.maybe_restore(state, storage=checkpoint.Storage(devices=1))
  _, step = ckpt.maybe_restore(state, storage=padded)
  ckpt.close()
  assert step == 1
