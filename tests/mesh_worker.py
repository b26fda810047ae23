# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""Client sampling and sweeps on a device mesh vs one device, for the tests.

Run by ``tests/test_multihost_mesh.py`` as 2 processes x 2 CPU devices
(``jax.distributed`` on 127.0.0.1) or as 1 process x 4 devices: the mesh
spans all 4 devices either way, and the one-device references run on this
process's first local device. Prints one ``MESH_RESULTS {json}`` line of
measured differences; the thresholds live in the test file.

Usage: python tests/mesh_worker.py CHECKS [COORDINATOR NUM_PROCESSES ID]
  CHECKS: comma-separated, of sampling, process_local, sweep_engine,
    run_sweep
"""

import json
import os
import sys

sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# pylint: disable=g-import-not-at-top,wrong-import-position
from fedhelp_jax import distributed

GROUPS = ('large', 'small')
ROUNDS = 3


def _max_abs_diff(a, b) -> float:
  import jax
  import numpy as np
  leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(leaves_a) == len(leaves_b)
  return max([0.0] + [float(np.max(np.abs(np.asarray(x, np.float64)
                                          - np.asarray(y, np.float64))))
                      for x, y in zip(leaves_a, leaves_b)])


def _setup():
  import jax.numpy as jnp
  import numpy as np
  from fedhelp_jax import models
  from fedhelp_jax import tasks
  from fedhelp_jax.algorithms import common
  from fedhelp_jax.algorithms import scaffold
  from tests import conftest
  # SCAFFOLD: per-silo control variates, so the scatter of the sampled
  # silos' new state back into the sharded client axis is checked too.
  module = models.make_model('logreg', num_classes=2)
  local = common.LocalConfig(batch_size=4, local_steps=2)
  alg = scaffold.scaffold(module, tasks.classification(2), local, GROUPS)
  hp = {k: jnp.float32(v) for k, v in scaffold.DEFAULT_HPARAMS.items()}
  rng = np.random.default_rng(0)
  data = {'large': conftest.make_group(rng, [24, 20, 18, 22]),
          'small': conftest.make_group(rng, [5, 7, 3, 4, 6, 8, 5, 2])}
  total = sum(d['n'].sum() for d in data.values())
  weights = {g: (d['n'] / total).astype(np.float32) for g, d in data.items()}
  return alg, hp, data, weights


def _local(tree):
  """Committed to this process's first device (a one-device reference)."""
  import jax
  return jax.device_put(tree, jax.local_devices()[0])


def check_sampling():
  """3 of 4 large and 5 of 8 small silos per round: on a 4-device mesh
  (5 drawn -> 8 rows, 3 of them weight-0 padding) vs on one device."""
  import jax
  from fedhelp_jax import engine
  alg, hp, data, weights = _setup()
  sampling = {'large': 3, 'small': 5}
  one = engine.run_rounds(engine.build_round(
      alg, GROUPS, strategy='chunked', clients_per_round=sampling), ROUNDS,
                          donate=False)
  s1, m1 = one(_local(engine.init_state(alg, data, seed=1)), _local(data),
               _local(weights), _local(hp))
  mesh = engine.make_mesh(4)
  sharded = engine.run_rounds(engine.build_round(
      alg, GROUPS, strategy='chunked', clients_per_round=sampling,
      mesh=mesh), ROUNDS, donate=False)
  s4, m4 = sharded(engine.shard_state(engine.init_state(alg, data, seed=1),
                                      mesh),
                   engine.shard_clients(data, mesh),
                   engine.shard_clients(weights, mesh),
                   engine.replicate(hp, mesh))
  s4, m4 = engine.fetch((s4, m4))
  sampled = m4.sampled['small']
  return {'server': _max_abs_diff(s1.server, s4.server),
          'clients': _max_abs_diff(s1.clients, s4.clients),
          'metrics': _max_abs_diff(m1, m4),
          'sampled_per_round': sampled.sum(axis=1).tolist(),
          'moved': _max_abs_diff(s4.server, engine.fetch(
              engine.init_state(alg, data, seed=1).server)),
          'processes': jax.process_count()}


def check_process_local():
  """Each process packs only its own silos (``process_silo_rows``) and
  builds the global arrays from them: the same arrays as placing the
  whole federation, and the same round."""
  from fedhelp_jax import engine
  alg, hp, data, weights = _setup()
  mesh = engine.make_mesh(4)
  full = engine.shard_clients(data, mesh)
  rows = {g: engine.process_silo_rows(mesh, d['n'].shape[0])
          for g, d in data.items()}
  mine = {g: {k: v[rows[g]] for k, v in d.items()} for g, d in data.items()}
  local = {g: engine.shard_process_local_clients(
      mine[g], mesh, data[g]['n'].shape[0]) for g in data}
  many = engine.run_rounds(engine.build_round(alg, GROUPS, strategy='chunked',
                                              mesh=mesh), ROUNDS,
                           donate=False)
  state = engine.shard_state(engine.init_state(alg, data, seed=1), mesh)
  w = engine.shard_clients(weights, mesh)
  hp = engine.replicate(hp, mesh)
  a = engine.fetch(many(state, full, w, hp)[0])
  b = engine.fetch(many(state, local, w, hp)[0])
  return {'data': _max_abs_diff(engine.fetch(full), engine.fetch(local)),
          'state': _max_abs_diff(a, b),
          'rows': {g: [r.start, r.stop] for g, r in rows.items()}}


def check_sweep_engine():
  """K = 4 configs (2 learning rates x 2 seeds) on a ('configs',
  'clients') = 2 x 2 mesh vs each config run alone on one device."""
  import jax
  import jax.numpy as jnp
  from fedhelp_jax import engine
  alg, hp, data, weights = _setup()
  lrs, seeds = (0.05, 0.1, 0.05, 0.1), (1, 1, 2, 2)
  mesh = engine.make_sweep_mesh(2, 2)
  sweep = engine.run_sweep_rounds(
      engine.build_round(alg, GROUPS, strategy='chunked', mesh=mesh), ROUNDS,
      donate=False)
  states = [engine.init_state(alg, data, seed=s) for s in seeds]
  hps = [dict(hp, lr=jnp.float32(lr)) for lr in lrs]
  stack = lambda trees: jax.tree.map(lambda *xs: jnp.stack(xs), *trees)
  out, metrics = sweep(
      engine.shard_sweep_state(stack(states), mesh),
      engine.shard_sweep_inputs(data, mesh, stacked=False),
      engine.shard_sweep_inputs(weights, mesh, stacked=False),
      engine.shard_sweep_hparams(stack(hps), mesh))
  spec = str(jax.tree.leaves(out.server)[0].sharding.spec)
  out, metrics = engine.fetch((out, metrics))
  one = engine.run_rounds(engine.build_round(alg, GROUPS, strategy='chunked'),
                          ROUNDS, donate=False)
  diffs = []
  for k in range(len(lrs)):
    sk, mk = one(_local(states[k]), _local(data), _local(weights),
                 _local(hps[k]))
    take = lambda tree, k=k: jax.tree.map(lambda x: x[k], tree)
    diffs.append(max(_max_abs_diff(sk, take(out)),
                     _max_abs_diff(mk, take(metrics))))
  return {'max_diff': max(diffs), 'server_spec': spec,
          'configs_differ': _max_abs_diff(
              jax.tree.map(lambda x: x[0], out.server),
              jax.tree.map(lambda x: x[1], out.server))}


def check_run_sweep():
  """``sweep.run_sweep(configs, mesh=...)`` (the host loop: placement,
  evaluation) vs the same configs run one by one."""
  from fedhelp_jax import engine
  from fedhelp_jax import sweep
  from tests import test_sweep
  configs = [test_sweep._tiny(seed=s, hparams__lr=lr)  # pylint: disable=protected-access
             for s in (0, 1) for lr in (0.01, 0.05)]
  mesh = engine.make_sweep_mesh(2, 2)
  sharded = sweep.run_sweep(configs, mesh=mesh, return_states=True,
                            verbose=False)
  alone = sweep.run_sweep(configs, vmap=False, return_states=True,
                          verbose=False)
  state_diff = metric_diff = 0.0
  for a, b in zip(sharded, alone):
    real = {g: len(ix) for g, ix in (('large', [0]), ('small', [0, 1, 2]))}
    clients = {g: engine.unpad_clients(a['state'].clients[g], real[g])
               for g in a['state'].clients}
    state_diff = max(state_diff,
                     _max_abs_diff(a['state'].server, b['state'].server),
                     _max_abs_diff(clients, b['state'].clients))
    for key, values in b['final']['clients'].items():
      metric_diff = max(metric_diff, max(
          abs(x - y) for x, y in zip(a['final']['clients'][key], values)))
  return {'state': state_diff, 'metrics': metric_diff,
          'modes': [r['mode'] for r in sharded]}


def main(argv):
  checks = argv[1].split(',')
  if len(argv) > 2:
    distributed.initialize(argv[2], int(argv[3]), int(argv[4]))
  import jax
  out = {'processes': jax.process_count(), 'devices': jax.device_count()}
  for name in checks:
    out[name] = globals()[f'check_{name}']()
  print('MESH_RESULTS ' + json.dumps(out), flush=True)


if __name__ == '__main__':
  main(sys.argv)
