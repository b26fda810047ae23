# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""Sharded-vs-single-device checks, run in a fresh process by test_shard.py.

The forced CPU device count (``XLA_FLAGS=--xla_force_host_platform_device_
count=8``) only takes effect before jax initialises, and pytest has imported
jax long before, so ``test_shard.py`` runs this file as a subprocess with
that environment. It runs every check once and prints one JSON object of
measured numbers (max abs differences, shapes, flags); the thresholds live in
the test file.

Usage: python tests/shard_worker.py [check ...]   (default: all checks)
"""

import dataclasses
import json
import os
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

# This file's directory first (conftest), then the repository root.
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# pylint: disable=g-import-not-at-top,wrong-import-position
import conftest
import tiny_config
from experiments.configs import fedavg_cls
from fedhelp_jax import dp_fedavg
from fedhelp_jax import engine
from fedhelp_jax import experiment
from fedhelp_jax import models
from fedhelp_jax import privacy
from fedhelp_jax import tasks
from fedhelp_jax.algorithms import common
from fedhelp_jax.algorithms import fedavg
from fedhelp_jax.algorithms import fedhelp
from fedhelp_jax.algorithms import pfednet
# pylint: enable=g-import-not-at-top,wrong-import-position

GROUPS = ('large', 'small')
ROUNDS = 2
NUM_PUBLIC = 6


def _max_abs_diff(a, b) -> float:
  leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(leaves_a) == len(leaves_b), (len(leaves_a), len(leaves_b))
  return max((float(np.max(np.abs(np.asarray(x, np.float64)
                                  - np.asarray(y, np.float64))))
              for x, y in zip(leaves_a, leaves_b)), default=0.0)


def _trim_like(ref, padded):
  """Drops padded rows of per-silo leaves (e.g. pFedNet's server ``z``)."""
  return jax.tree.map(lambda r, p: p[:r.shape[0]] if p.shape != r.shape
                      else p, ref, padded)


def _federation(large_sizes, small_sizes, *, public=False):
  """Tiny numpy groups (8x8 images); ``public`` adds FedHelp's FM data."""
  rng = np.random.default_rng(0)
  data = {'large': conftest.make_group(rng, large_sizes, test_n=4),
          'small': conftest.make_group(rng, small_sizes, test_n=4)}
  if public:
    pub = rng.random((NUM_PUBLIC, 8, 8, 1), dtype=np.float32)
    q = rng.dirichlet([1.0, 1.0], (NUM_PUBLIC,)).astype(np.float32)
    c = len(small_sizes)
    data['small']['public_x'] = np.repeat(pub[None], c, axis=0)
    data['small']['public_q'] = np.repeat(q[None], c, axis=0)
  total = sum(float(d['n'].sum()) for d in data.values())
  weights = {g: (d['n'] / total).astype(np.float32) for g, d in data.items()}
  return data, weights


def _cnn(**kwargs):
  return models.make_model('cnn', num_classes=2, features=(4,), dense=8,
                           **kwargs)


def _algorithm(name):
  """``(alg, hparams)`` for a cheap instance of ``name``.

  'fedhelp' is the interesting one: its large group carries two models (the
  shared S and a private L_k of other widths), so the groups differ in state
  structure.
  """
  task = tasks.classification(2)
  local = common.LocalConfig(batch_size=4, local_steps=2)
  if name == 'fedavg':
    # BatchNorm: FedAvg's silos keep only their statistics (FedBN), which
    # gives the client state leaves to shard (without it, none at all).
    alg = fedavg.fedavg(_cnn(norm='batch'), task, local, GROUPS)
    hp = fedavg.default_hparams(name)
  elif name == 'fedavg_dp':
    # Record-level DP-SGD (Poisson batches, noise): every silo's noise
    # comes from its own key, so the mesh must not change a draw.
    private = dataclasses.replace(local, private=privacy.PrivateSteps(
        sampling='poisson', max_batch=6))
    # Silo-level DP-FedAvg on top: the server's noise comes from the
    # replicated server key.
    alg = dp_fedavg.with_silo_dp(
        fedavg.fedavg(_cnn(norm='group'), task, private, GROUPS))
    hp = dict(fedavg.default_hparams('fedavg'), dp_clip_norm=0.5,
              dp_noise_multiplier=1.0, dp_server_clip=0.1,
              dp_server_noise_multiplier=1.0, dp_cohort=8.0)
  elif name == 'fedhelp':
    # Two models in the large group (S and a private L_k of other widths).
    small = _cnn(aux_classes=2)
    large = models.make_model('cnn', num_classes=2, features=(6,), dense=12)
    alg = fedhelp.fedhelp(small, large, task, local, GROUPS)
    hp = fedhelp.default_hparams()
  elif name == 'pfednet':
    # Logistic regression with a personal kernel on a 5-silo graph; loops
    # (ADMM, TV prox) inside the silo and server steps.
    alg = pfednet.pfednet(
        models.make_model('logreg', num_classes=2), task, local, GROUPS,
        edges=np.array([[0, 1], [0, 2], [1, 3], [2, 3], [3, 4]]),
        num_silos_per_group={'large': 2, 'small': 3},
        personal_pattern='^head/kernel')
    hp = dict(pfednet.DEFAULT_HPARAMS, lam=0.02, gamma=0.01)
  else:
    raise ValueError(name)
  return alg, {k: jnp.float32(v) for k, v in hp.items()}


def _single(alg, hp, data, weights, strategy, **round_kw):
  """Single-device reference: ``run_rounds`` with no mesh."""
  rf = engine.build_round(alg, GROUPS, strategy=strategy, chunk_size=2,
                          **round_kw)
  state = engine.init_state(alg, data, seed=3)
  return engine.run_rounds(rf, ROUNDS)(state, data, weights, hp)


def _sharded(alg, hp, data, weights, strategy, num_devices, **round_kw):
  """The same run with the client axis sharded over ``num_devices``.

  Pads the groups to a multiple of the mesh size as ``run_experiment`` does
  and returns the padded weights too.
  """
  mesh = engine.make_mesh(num_devices)
  data, weights, info = engine.pad_federation_for_mesh(data, weights, None,
                                                       mesh)
  rf = engine.build_round(alg, GROUPS, strategy=strategy, chunk_size=2,
                          mesh=mesh, **round_kw)
  state = engine.shard_state(engine.init_state(alg, data, seed=3), mesh)
  state, metrics = engine.run_rounds(rf, ROUNDS)(
      state, engine.shard_clients(data, mesh),
      engine.shard_clients(weights, mesh), hp)
  return state, metrics, weights, info


def _unpad(state, metrics, num_real):
  clients = {g: engine.unpad_clients(c, num_real[g])
             for g, c in state.clients.items()}
  real = lambda per_group: {g: engine.unpad_clients(m, num_real[g], axis=1)
                            for g, m in per_group.items()}
  return clients, metrics._replace(silos=real(metrics.silos),
                                   nonfinite=real(metrics.nonfinite),
                                   sampled=real(metrics.sampled))


def check_equivalence(name, strategy):
  """(a)+(c) 8 large + 8 small silos on 8 devices vs one device."""
  data, weights = _federation([12, 10, 9, 12, 11, 8, 12, 10],
                              [3, 5, 4, 2, 5, 3, 4, 5],
                              public=name == 'fedhelp')
  alg, hp = _algorithm(name)
  ref_state, ref_metrics = _single(alg, hp, data, weights, strategy)
  state, metrics, _, _ = _sharded(alg, hp, data, weights, strategy, 8)
  leaf = jax.tree.leaves(state.clients['large'])[0]
  shard_rows = sorted({int(s.data.shape[0]) for s in leaf.addressable_shards})
  init = engine.init_state(alg, data, seed=3)
  return {
      'server': _max_abs_diff(ref_state.server, state.server),
      'clients': _max_abs_diff(ref_state.clients, state.clients),
      'metrics': _max_abs_diff(ref_metrics, metrics),
      'moved': _max_abs_diff(init.server, state.server),
      'client_devices': len(leaf.sharding.device_set),
      'client_replicated': bool(leaf.sharding.is_fully_replicated),
      'client_shard_rows': shard_rows,
      'server_replicated': bool(jax.tree.leaves(
          state.server)[0].sharding.is_fully_replicated),
      'strategy': strategy,
  }


def check_padding(num_devices, name='fedavg', **round_kw):
  """(b) Silo counts that the device count does not divide.

  FedAvg: 3 large + 5 small silos; pFedNet: 2 + 3 on its similarity graph.
  The padded, sharded run must equal the UNPADDED single-device run: so the
  dummy silos (weight 0) move nothing on the server. ``round_kw`` go to
  both ``build_round`` calls (e.g. Poisson client sampling: the padded
  group must draw the same cohort).
  """
  sizes = (([12, 10, 9], [3, 5, 4, 2, 5]) if name.startswith('fedavg')
           else ([12, 10], [3, 5, 4]))
  data, weights = _federation(*sizes)
  num_real = {g: int(d['n'].shape[0]) for g, d in data.items()}
  alg, hp = _algorithm(name)
  ref_state, ref_metrics = _single(alg, hp, data, weights, 'chunked',
                                   **round_kw)
  state, metrics, padded_w, info = _sharded(alg, hp, data, weights,
                                            'chunked', num_devices,
                                            **round_kw)
  clients, real_metrics = _unpad(state, metrics, num_real)
  dummy_w = np.concatenate([np.asarray(padded_w[g])[num_real[g]:]
                            for g in GROUPS])
  dummy_flags = np.concatenate(
      [np.asarray(metrics.nonfinite[g])[:, num_real[g]:].reshape(-1)
       for g in GROUPS])
  return {
      'padded_clients': {g: int(np.shape(padded_w[g])[0]) for g in GROUPS},
      'num_real_clients': info['num_real_clients'],
      'dummy_weights_max': float(np.max(np.abs(dummy_w))),
      'dummy_nonfinite': bool(dummy_flags.any()),
      'small_shard_rows': sorted({int(s.data.shape[0]) for leaf in
                                  jax.tree.leaves(state.clients['small'])[:1]
                                  for s in leaf.addressable_shards}),
      'server': _max_abs_diff(ref_state.server,
                              _trim_like(ref_state.server, state.server)),
      'clients': _max_abs_diff(ref_state.clients, clients),
      'metrics': _max_abs_diff(ref_metrics, real_metrics),
      # Per round and group, how many real silos trained (the draw).
      'sampled_counts': {g: np.asarray(real_metrics.sampled[g]).sum(
          axis=1).tolist() for g in GROUPS},
  }


def _tiny_config(num_devices):
  c = fedavg_cls.get_config()
  c.partition.num_large = 1
  c.partition.num_small = 3
  c.partition.large_size = 64
  c.partition.small_size = (16, 24)
  c.partition.test_size = 20
  c.model.features = (4,)  # Tiny widths: compile time, not accuracy.
  c.model.dense = 8
  c.local.local_steps = 2
  c.local.batch_size = 16
  c.rounds = 2
  c.eval_every = 2  # One compiled chunk: compile time dominates here.
  c.progress = False
  c.num_devices = num_devices
  return c


def _max_client_diff(a, b):
  a, b = a['final']['clients'], b['final']['clients']
  return max(float(np.max(np.abs(np.subtract(a[k], b[k])))) for k in a)


def check_experiment():
  """(d) run_experiment end to end: num_devices=4 and 0 (every visible
  device) vs 1; pFedNet over two compiled chunks on all devices vs 1."""
  out = {}
  for num in (1, 4, 0):
    with tempfile.TemporaryDirectory() as workdir:
      out[num] = experiment.run_experiment(_tiny_config(num), workdir)
      if num == 4:  # Its checkpoint (real silos only) resumes on 1 device.
        resumed_on_1 = experiment.run_experiment(
            _tiny_config(1), workdir)['resumed_from_round']
  final = {n: out[n]['final']['clients'] for n in out}
  pfednet = {}
  for num in (1, 0):
    config = tiny_config.get_config('pfednet')
    config.rounds, config.eval_every, config.num_devices = 2, 1, num
    with tempfile.TemporaryDirectory() as workdir:
      pfednet[num] = experiment.run_experiment(config, workdir)
  return {
      'metric_keys': sorted(final[1]),
      'num_silos': {n: len(final[n]['accuracy']) for n in final},
      'devices': {n: out[n]['devices'] for n in out},
      'clients': _max_client_diff(out[1], out[4]),
      'clients_auto': _max_client_diff(out[1], out[0]),
      'summary_all_accuracy': [out[n]['final']['summary']['all']['accuracy']
                               for n in (1, 4)],
      'pfednet_devices': {n: pfednet[n]['devices'] for n in pfednet},
      'pfednet_clients': _max_client_diff(pfednet[1], pfednet[0]),
      'resumed_on_1': resumed_on_1,
  }


CHECKS = {
    'fedavg_vmap': lambda: check_equivalence('fedavg', 'vmap'),
    'fedhelp_chunked': lambda: check_equivalence('fedhelp', 'chunked'),
    'padding': lambda: check_padding(4),
    'pfednet_padding': lambda: check_padding(4, 'pfednet'),
    'dp_padding': lambda: check_padding(4, 'fedavg_dp'),
    'poisson_padding': lambda: check_padding(
        4, clients_per_round={'large': 2, 'small': 2}, sampling='poisson'),
    'experiment': check_experiment,
}


def main(argv):
  names = argv[1:] or list(CHECKS)
  results = {'num_devices': jax.device_count(),
             'backend': jax.default_backend()}
  for name in names:
    t0 = time.time()
    results[name] = CHECKS[name]()
    results[name]['seconds'] = round(time.time() - t0, 2)
  # Library output (progress, summaries) goes to stdout too: one marked line.
  print('SHARD_RESULTS ' + json.dumps(results))


if __name__ == '__main__':
  main(sys.argv)
