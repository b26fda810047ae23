# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""The streamed server mean (``server_update_from_mean``) equals the mean of
stacked uploads, and its memory does not grow with the silo count."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedhelp_jax import engine
from fedhelp_jax import models
from fedhelp_jax import tasks
from fedhelp_jax.algorithms import common
from fedhelp_jax.algorithms import fedavg
from tests import conftest

GROUPS = ('large', 'small')


def _algs(model='logreg', **kwargs):
  module = models.make_model(model, num_classes=2, **kwargs)
  local = common.LocalConfig(batch_size=4, local_steps=2)
  streamed = fedavg.fedavg(module, tasks.classification(2), local, GROUPS,
                           server_optimizer='adam')
  # The same algorithm without the streaming hook: the engine then stacks
  # every silo's upload and calls server_update (weighted_mean_groups).
  return streamed, streamed._replace(server_update_from_mean=None)


def _data(small=(5, 7, 3, 4, 6, 8, 5)):
  rng = np.random.default_rng(0)
  data = {'large': conftest.make_group(rng, [24, 20]),
          'small': conftest.make_group(rng, list(small))}
  total = sum(d['n'].sum() for d in data.values())
  return data, {g: (d['n'] / total).astype(np.float32)
                for g, d in data.items()}


def _max_abs_diff(a, b):
  return max(float(np.max(np.abs(np.asarray(x, np.float64)
                                 - np.asarray(y, np.float64))))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


# Chunk 1 and vmap without sampling are also pinned by test_engine's
# compiled-vs-loop checks (the loop reference stacks the uploads).
@pytest.mark.parametrize('strategy,chunk,sampling', [
    ('chunked', 3, None), ('chunked', 1, {'small': 4})])
def test_streamed_mean_equals_stacked_uploads(strategy, chunk, sampling):
  """Chunk 3 over 7 small silos also runs the remainder chunk."""
  streamed, stacked = _algs()
  data, weights = _data()
  hp = {k: jnp.float32(v) for k, v in
        fedavg.default_hparams('fedadam').items()}
  out = []
  for alg in (streamed, stacked):
    many = engine.run_rounds(engine.build_round(
        alg, GROUPS, strategy=strategy, chunk_size=chunk,
        clients_per_round=sampling), 3, donate=False)
    state0 = engine.init_state(alg, data, seed=3)
    out.append(many(state0, data, weights, hp) + (state0,))
  (s_a, m_a, start), (s_b, m_b, _) = out
  assert _max_abs_diff(s_a.server, s_b.server) < 1e-6
  assert _max_abs_diff(m_a, m_b) < 1e-6
  assert _max_abs_diff(s_a.server, start.server) > 1e-3  # It trained.


def test_streamed_mean_memory_does_not_grow_with_silos():
  """XLA's temporary buffers of one compiled round: with stacked uploads
  they grow by about one model per silo; streamed they stay flat."""
  def temp_bytes(alg, num_small):
    data, weights = _data(small=(5,) * num_small)
    hp = {k: jnp.float32(v) for k, v in
          fedavg.default_hparams('fedadam').items()}
    many = engine.run_rounds(engine.build_round(alg, GROUPS,
                                                strategy='chunked'), 1,
                             check=False)
    state = engine.init_state(alg, data, seed=0)
    compiled = many.lower(state, data, weights, hp).compile()
    return compiled.memory_analysis().temp_size_in_bytes

  streamed, stacked = _algs('cnn', features=(4,), dense=64)
  grow_streamed = temp_bytes(streamed, 64) - temp_bytes(streamed, 8)
  grow_stacked = temp_bytes(stacked, 64) - temp_bytes(stacked, 8)
  model_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(
      engine.init_state(streamed, _data()[0], seed=0).server.params))
  assert grow_stacked > 40 * model_bytes  # 56 more uploads were stacked.
  assert grow_streamed < 4 * model_bytes, (grow_streamed, model_bytes)
