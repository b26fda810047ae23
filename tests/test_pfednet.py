# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""pFedNet, FedPer and Ditto on the engine: equivalences, sweeps, registry."""

import jax
import jax.flatten_util
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from fedhelp_jax import algorithms
from fedhelp_jax import engine
from fedhelp_jax import models
from fedhelp_jax import tasks
from fedhelp_jax import validate
from fedhelp_jax.algorithms import common
from fedhelp_jax.algorithms import ditto
from fedhelp_jax.algorithms import pfednet
from fedhelp_jax.algorithms.pfednet import params as params_lib
from tests import conftest

GROUPS = ('large', 'small')
COUNTS = {'large': 2, 'small': 3}
# Silos 0-1 are 'large', 2-4 'small' (group order); a connected graph.
EDGES = np.array([[0, 1], [0, 2], [1, 3], [2, 3], [3, 4]])


def _cnn():
  return models.make_model('cnn', num_classes=2, features=(4,), dense=8)


def _logreg():
  return models.make_model('logreg', num_classes=2)


def _hparams(**overrides):
  hp = dict(pfednet.DEFAULT_HPARAMS, lam=0.5, gamma=0.01)
  hp.update(overrides)
  return {k: jnp.float32(v) for k, v in hp.items()}


def _max_abs_diff(a, b):
  return max(float(jnp.max(jnp.abs(x - y)))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _pfednet(module, **kwargs):
  kwargs.setdefault('personal_pattern', '^head/')
  return pfednet.pfednet(
      module, tasks.classification(2),
      common.LocalConfig(batch_size=4, local_steps=2), GROUPS, edges=EDGES,
      num_silos_per_group=COUNTS, **kwargs)


# vmap is the accelerator default and stays in the default run; chunked is
# pinned by the engine-level equivalence tests (test_engine, test_sampling).
@pytest.mark.parametrize('strategy', [
    'vmap', pytest.param('chunked', marks=pytest.mark.slow)])
def test_pfednet_round_equals_loop_reference(two_groups, strategy):
  data, weights = two_groups
  # No ternarization here: it is discontinuous at magnitude ties, and a
  # 2-class head's update has exact +/- ties (the logit gradients are
  # opposite), which 1-ulp differences between strategies can break.
  alg = _pfednet(_logreg(), personal_pattern='^head/kernel')  # Bias shared.
  hp = _hparams(lam=0.02)
  loop = engine.build_round(alg, GROUPS, strategy='loop')
  compiled = jax.jit(engine.build_round(alg, GROUPS, strategy=strategy,
                                        chunk_size=2))
  s_loop = s_comp = engine.init_state(alg, data, seed=1)
  for _ in range(2):
    s_loop, m_loop = loop(s_loop, data, weights, hp)
    s_comp, m_comp = compiled(s_comp, data, weights, hp)
  assert _max_abs_diff(s_loop.server, s_comp.server) < 1e-5
  np.testing.assert_array_equal(m_loop.silos['small']['upload_runs'],
                                m_comp.silos['small']['upload_runs'])
  # The round did something: shared params moved, personal parts differ
  # between silos, and the TV prox + ternarization made uploads run-length
  # compressible (far fewer runs than coordinates).
  init = engine.init_state(alg, data, seed=1)
  assert _max_abs_diff(init.server.params, s_comp.server.params) > 1e-5
  z = np.concatenate([np.asarray(s_comp.server.z[g]) for g in GROUPS])
  assert np.max(np.abs(z[0] - z[4])) > 1e-5
  runs = np.asarray(m_comp.silos['large']['upload_runs'])
  assert np.all(runs < np.asarray(m_comp.silos['large']['upload_size']) / 2)


def test_lambda_and_gamma_sweep_equals_sequential_runs(two_groups):
  data, weights = two_groups
  alg = _pfednet(_logreg(), personal_pattern='^head/kernel')  # Bias shared.
  round_fn = engine.build_round(alg, GROUPS, strategy='chunked')
  configs = [_hparams(lam=0.0, gamma=0.0), _hparams(lam=1.0, gamma=0.0),
             _hparams(lam=0.1, gamma=0.05)]
  stacked_hp = jax.tree.map(lambda *xs: jnp.stack(xs), *configs)
  states = [engine.init_state(alg, data, seed=2) for _ in configs]
  stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *states)
  sweep = engine.run_sweep_rounds(round_fn, 3)
  out, metrics = sweep(stacked, data, weights, stacked_hp)
  single = engine.run_rounds(round_fn, 3)
  for k, hp in enumerate(configs):
    ref, ref_metrics = single(engine.init_state(alg, data, seed=2), data,
                              weights, hp)
    got = jax.tree.map(lambda x, k=k: x[k], out)
    assert _max_abs_diff(ref.server, got.server) < 1e-5
    np.testing.assert_allclose(metrics.silos['small']['train_loss'][k],
                               ref_metrics.silos['small']['train_loss'], rtol=1e-5)
  # The configs really differ: lam=1 fuses the personal parts more.
  spread = [float(np.std(np.concatenate(
      [np.asarray(out.server.z[g][k]) for g in GROUPS]), axis=0).mean())
            for k in range(3)]
  assert spread[1] < spread[0]


def test_ternarized_uploads_are_ternary(two_groups):
  data, weights = two_groups
  alg = _pfednet(_logreg(), personal_pattern='^head/kernel',
                 ternarize_p=0.2, return_uploads=True)
  round_fn = jax.jit(engine.build_round(alg, GROUPS, strategy='chunked'))
  state, metrics = round_fn(engine.init_state(alg, data, seed=1), data,
                            weights, _hparams(lam=0.02))
  assert np.all(np.isfinite(np.asarray(state.server.z['small'])))
  for upload in np.asarray(metrics.silos['small']['upload']):
    # Per tensor {-m, 0, m}: 2 tensors (shared bias, personal kernel).
    assert np.unique(upload).size <= 2 * 2 + 1
    assert np.mean(upload != 0) < 0.5


def test_fedper_keeps_heads_local_and_averages_the_body(two_groups):
  data, weights = two_groups
  alg = pfednet.fedper(_cnn(), tasks.classification(2),
                       common.LocalConfig(batch_size=4, local_steps=2),
                       GROUPS, num_silos_per_group=COUNTS,
                       personal_pattern='^head/')
  hp = {k: jnp.float32(v) for k, v in pfednet.FEDPER_HPARAMS.items()}
  state = engine.init_state(alg, data, seed=0)
  round_fn = jax.jit(engine.build_round(alg, GROUPS, strategy='chunked'))
  new, _ = round_fn(state, data, weights, hp)
  # FedPer's personal step is exactly each silo's own trained head (eta=1,
  # no edges), whatever lam says.
  new_lam, _ = round_fn(state, data, weights, dict(hp, lam=jnp.float32(9.0)))
  assert _max_abs_diff(new.server, new_lam.server) == 0.0
  assert _max_abs_diff(state.server.params['dense'],
                       new.server.params['dense']) > 1e-5
  z = np.asarray(new.server.z['small'])
  assert np.max(np.abs(z[0] - z[1])) > 1e-5


def test_ditto_runs_a_round(two_groups):
  data, weights = two_groups
  alg = ditto.ditto(_cnn(), tasks.classification(2),
                    common.LocalConfig(batch_size=4, local_steps=2), GROUPS)
  hp = {k: jnp.float32(v) for k, v in ditto.DEFAULT_HPARAMS.items()}
  state = engine.init_state(alg, data, seed=0)
  new, metrics = jax.jit(engine.build_round(alg, GROUPS, strategy='chunked'))(
      state, data, weights, hp)
  assert np.all(np.isfinite(metrics.silos['small']['train_loss']))
  assert _max_abs_diff(state.server, new.server) > 1e-5
  assert _max_abs_diff(state.clients['small'].params,
                       new.clients['small'].params) > 1e-5


# ---------------------------------------------------------------------------
# Registry: prepare hook (sketches -> graph) and config errors.
# ---------------------------------------------------------------------------


def _config(**pfednet_overrides):
  c = ml_collections.ConfigDict()
  c.algorithm = 'pfednet'
  c.task = 'classification'
  c.num_classes = 2
  c.model = ml_collections.ConfigDict({'name': 'cnn', 'features': (4,),
                                       'dense': 8})
  c.local = ml_collections.ConfigDict(
      {'batch_size': 4, 'local_steps': 2, 'local_epochs': None,
       'optimizer': 'sgd'})
  c.hparams = ml_collections.ConfigDict({'lam': 0.1})
  c.pfednet = ml_collections.ConfigDict(pfednet_overrides)
  return c


def _skewed_federation():
  rng = np.random.default_rng(0)
  fed = {'large': conftest.make_group(rng, [24, 20]),
         'small': conftest.make_group(rng, [5, 7, 3])}
  # Silos 0, 2, 4 mostly class 0; silos 1, 3 all class 1.
  for g, labels in (('large', [0, 1]), ('small', [0, 1, 0])):
    for c, lab in enumerate(labels):
      fed[g]['y'][c] = lab
  return fed


def test_prepare_builds_the_graph_from_label_sketches(two_groups):
  fed = _skewed_federation()
  info = {}
  out = algorithms.prepare('pfednet', _config(k=1, sketch_norm='global'),
                           fed, None, info)
  assert out is fed
  graph = info['pfednet']
  assert graph['sketch'] == 'label_proportions'
  assert graph['num_silos_per_group'] == COUNTS
  # Nearest neighbours share a label: no edge joins the two label clusters.
  # Sketches are class counts over the GLOBAL count (59), so they carry the
  # silo size: (24,0) (0,20) (5,0) (0,7) (3,0). Nearest neighbours: 0->2,
  # 1->3, 2->4, 3->4 (|(0,7)-(3,0)| < |(0,7)-(5,0)|), 4->2; symmetric union.
  assert graph['edges'] == [[0, 2], [1, 3], [2, 4], [3, 4]]
  info_c = {}
  algorithms.prepare('pfednet', _config(graph='complete'), fed, None, info_c)
  assert len(info_c['pfednet']['edges']) == 10
  alg = algorithms.build('pfednet', _config(), tasks.classification(2),
                         GROUPS, info=info)
  data, weights = two_groups
  state = engine.init_state(alg, data, seed=0)
  assert state.server.z['small'].shape == (3, 8 * 2 + 2)


def _clustered_federation():
  """6 silos of 3 hidden clusters (label mixes 0.9/0.1, 0.1/0.9, 0.5/0.5)
  whose sizes differ inside each cluster: 40 and 10, 30 and 20, 10 and 20.
  """
  rng = np.random.default_rng(0)
  fed = {'large': conftest.make_group(rng, [40, 30]),
         'small': conftest.make_group(rng, [10, 10, 20, 20])}
  clusters = [0, 1, 2, 0, 1, 2]
  ones = {0: 0.1, 1: 0.9, 2: 0.5}
  node = 0
  for g in ('large', 'small'):
    for c, n in enumerate(fed[g]['n']):
      k = int(round(ones[clusters[node]] * n))
      fed[g]['y'][c, :n] = np.r_[np.zeros(n - k), np.ones(k)]
      node += 1
  return fed, clusters


def test_per_silo_sketches_join_silos_of_one_cluster_only():
  fed, clusters = _clustered_federation()
  info = {'clusters': clusters}
  algorithms.prepare('pfednet', _config(k=1), fed, None, info)
  graph = info['pfednet']
  assert graph['sketch_norm'] == 'per_silo'
  assert graph['edges'] == [[0, 3], [1, 4], [2, 5]]
  assert graph['quality'] == {'edges': 3, 'inside': 3, 'across': 0,
                              'inside_fraction': 1.0,
                              'within_cluster_pairs': 3, 'recall': 1.0}
  # The official construction (counts over the global total) sees sizes:
  # silo 3 (9 and 1 of 130) is nearest to silo 2 (5 and 5), another cluster.
  info_global = {'clusters': clusters}
  algorithms.prepare('pfednet', _config(k=1, sketch_norm='global'), fed,
                     None, info_global)
  assert [2, 3] in info_global['pfednet']['edges']
  assert info_global['pfednet']['quality']['across'] >= 1


@pytest.mark.parametrize('kind, expected', [
    ('empty', []), ('oracle', [[0, 3], [1, 4], [2, 5]])])
def test_ablation_graphs(kind, expected):
  fed, clusters = _clustered_federation()
  info = {'clusters': clusters}
  algorithms.prepare('pfednet', _config(graph=kind), fed, None, info)
  assert info['pfednet']['edges'] == expected


def test_random_graph_has_the_knn_edge_count_and_its_seed():
  fed, clusters = _clustered_federation()
  counts = {}
  for kind, seed in (('knn', 0), ('random', 0), ('random', 1)):
    info = {'clusters': clusters}
    algorithms.prepare('pfednet', _config(graph=kind, graph_seed=seed), fed,
                       None, info)
    counts[kind, seed] = info['pfednet']['edges']
  assert len(counts['random', 0]) == len(counts['knn', 0])
  assert counts['random', 0] != counts['random', 1]
  assert all(i < j for i, j in counts['random', 0])
  with pytest.raises(validate.ConfigError, match='oracle.*clusters'):
    algorithms.prepare('pfednet', _config(graph='oracle'), fed, None, {})


def test_config_errors_are_clear():
  fed = _skewed_federation()
  with pytest.raises(validate.ConfigError, match='pfednet.graph.*ring'):
    algorithms.prepare('pfednet', _config(graph='ring'), fed, None, {})
  with pytest.raises(validate.ConfigError, match='pfednet.personal_pattern'):
    algorithms.prepare('pfednet', _config(personal_pattern='(head'), fed,
                       None, {})
  with pytest.raises(validate.ConfigError, match='pfednet.k'):
    algorithms.prepare('pfednet', _config(k=0), fed, None, {})
  with pytest.raises(validate.ConfigError, match='is not a pfednet setting'):
    algorithms.prepare('pfednet', _config(lamda=1.0), fed, None, {})
  with pytest.raises(ValueError, match='prepare hook'):
    algorithms.build('pfednet', _config(), tasks.classification(2), GROUPS)
  bad = _config()
  bad.hparams.lam = -1.0
  with pytest.raises(validate.ConfigError, match='hparams.lam'):
    algorithms.prepare('pfednet', bad, fed, None, {})


def test_personal_pattern_matching_nothing_or_both_is_an_error(two_groups):
  data, _ = two_groups
  with pytest.raises(ValueError, match='matched no parameter.*head/kernel'):
    engine.init_state(_pfednet(_cnn(), personal_pattern='^decoder'), data, 0)
  alg = _pfednet(_cnn(), shared_pattern='kernel|bias|scale')
  with pytest.raises(ValueError, match='BOTH'):
    engine.init_state(alg, data, 0)


@pytest.mark.parametrize('local_round', ['personal_first', 'shared_first'])
def test_two_phase_round_matches_a_hand_written_masked_sgd(local_round):
  """FedRep's order (head, then body) and pFedNet's official one (shared,
  then personalized) against plain masked SGD written out by hand."""
  rng = np.random.default_rng(0)
  data = {'small': conftest.make_group(rng, [9, 6])}
  module = models.make_model('cnn', num_classes=2, features=(4,), dense=8)
  task = tasks.classification(2)
  local = common.LocalConfig(batch_size=4, local_steps=3)
  alg = pfednet.fedper(module, task, local, ('small',),
                       num_silos_per_group={'small': 2},
                       personal_pattern='^head/', local_round=local_round)
  state = engine.init_state(alg, data, seed=0)
  download = alg.download(state.server)
  silo = jax.tree.map(lambda x: jnp.asarray(x[1]), data['small'])
  client = jax.tree.map(lambda x: x[1], state.clients['small'])
  z = download.personal['small'][1]
  hp = {k: jnp.asarray(v, jnp.float32) for k, v in
        {'lr': 0.1, 'momentum': 0.0, 'server_lr': 1.0, 'lam': 0.0,
         'eta': 1.0, 'rho': 1.0, 'gamma': 0.0}.items()}
  key = jax.random.PRNGKey(5)
  _, upload, _, metrics = conftest.jit_silo_update(alg)(
      'small', client, download.broadcast, z, silo, hp, key)
  assert float(metrics['local_steps']) == 2 * 3

  # By hand: start from the silo's model, then per phase the local schedule
  # of plain SGD on that phase's part only.
  labels = params_lib.partition_params(download.broadcast, '^head/')
  shared0, template = params_lib.split(download.broadcast, labels)
  _, unravel = jax.flatten_util.ravel_pytree(template)
  start = params_lib.merge(shared0, unravel(z))
  order = (('personal', 'shared') if local_round == 'personal_first'
           else ('shared', 'personal'))

  def loss(p, xb, yb):
    out, _ = models.apply_model(module, {'params': p}, xb, train=True)
    return jnp.mean(task.loss(out, yb))

  params = start
  for part, phase_key in zip(order, jax.random.split(key)):
    idx, active = local.schedule(jax.random.split(phase_key)[0], silo)
    for b, on in zip(np.asarray(idx), np.asarray(active)):
      if not on:
        continue
      grads = jax.grad(loss)(params, silo['x'][b], silo['y'][b])
      params = jax.tree.map(
          lambda p, g, l, part=part: p - 0.1 * g if l == part else p,
          params, grads, labels)
  delta = jax.tree.map(lambda a, b: a - b, start, params)
  want_shared, want_personal = params_lib.split(delta, labels)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5),
               upload['shared'], want_shared)
  np.testing.assert_allclose(
      upload['personal'], jax.flatten_util.ravel_pytree(want_personal)[0],
      atol=1e-5)
  # Both parts moved: each phase trained its own.
  assert np.abs(upload['personal']).max() > 0
  assert max(float(np.abs(x).max()) for x in jax.tree.leaves(
      upload['shared'])) > 0


def test_fedrep_is_registered_as_fedpers_split_head_first():
  fed = _skewed_federation()
  info = {}
  algorithms.prepare('fedrep', _config(), fed, None, info)
  alg = algorithms.build('fedrep', _config(), tasks.classification(2),
                         GROUPS, info=info)
  assert alg.name == 'fedrep'
  with pytest.raises(validate.ConfigError, match='pfednet.local_round'):
    algorithms.prepare('pfednet', _config(local_round='both'), fed, None, {})
