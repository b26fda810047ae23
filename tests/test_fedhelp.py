# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""FedHelp on the engine: equivalences, isolation of private state, sanity."""

import inspect

from conftest import jit_silo_update
from conftest import make_group
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fedhelp_jax import engine
from fedhelp_jax import losses
from fedhelp_jax import models
from fedhelp_jax import tasks
from fedhelp_jax import types
from fedhelp_jax.algorithms import common
from fedhelp_jax.algorithms import fedhelp

GROUPS = ('large', 'small')
NUM_PUBLIC = 10


def _data(seg=False):
  rng = np.random.default_rng(0)
  data = {'large': make_group(rng, [24, 20], seg=seg),
          'small': make_group(rng, [5, 7, 3], seg=seg)}
  pub = rng.random((NUM_PUBLIC, 8, 8, 1), dtype=np.float32)
  q_shape = (NUM_PUBLIC, 8, 8) if seg else (NUM_PUBLIC,)
  q = rng.dirichlet([1.0, 1.0], q_shape).astype(np.float32)
  data['small']['public_x'] = np.repeat(pub[None], 3, axis=0)
  data['small']['public_q'] = np.repeat(q[None], 3, axis=0)
  # Uniform weights over the 5 real silos (FedHelp's default).
  weights = {g: np.full(d['n'].shape, 0.2, np.float32)
             for g, d in data.items()}
  return data, weights


def _modules(seg=False):
  if seg:
    small = models.make_model('unet', num_classes=2, base_features=2,
                              levels=1, aux_classes=2)
    large = models.make_model('unet', num_classes=2, base_features=4,
                              levels=1)
  else:
    small = models.make_model('cnn', num_classes=2, features=(4,), dense=8,
                              aux_classes=2)
    # Widths that S never uses, so L's kernels have shapes of their own.
    large = models.make_model('cnn', num_classes=2, features=(6,), dense=12)
  return small, large


def _hparams(**overrides):
  hp = fedhelp.default_hparams()
  hp.update(overrides)
  return {k: jnp.asarray(v, jnp.float32) for k, v in hp.items()}


def _alg(seg=False, **cfg):
  small, large = _modules(seg)
  task = tasks.segmentation(2) if seg else tasks.classification(2)
  local = common.LocalConfig(batch_size=4, local_steps=2)
  return fedhelp.fedhelp(small, large, task, local, GROUPS,
                         fedhelp.FedHelpConfig(**cfg)), task, local


def _run(alg, strategy, data, weights, hparams, rounds=1, chunk_size=2):
  """``rounds`` rounds from seed 3, in chunks of 2 silos by default (the 3
  small silos then run as a vmapped chunk of 2 and a tail of 1). Where the
  strategy is beside the point, chunk_size=1 (the CPU default, a plain scan
  over silos) compiles one silo body instead of two: about half the time."""
  round_fn = engine.build_round(alg, GROUPS, strategy=strategy,
                                chunk_size=chunk_size)
  if strategy != 'loop':
    round_fn = jax.jit(round_fn)
  state = engine.init_state(alg, data, seed=3)
  for _ in range(rounds):
    state, metrics = round_fn(state, data, weights, hparams)
  return state, metrics


@pytest.fixture(scope='module')
def dual_kd_loop_reference():
  """Two rounds of the 'loop' strategy (one jitted silo at a time), shared
  by the compiled strategies below."""
  data, weights = _data()
  alg, _, _ = _alg()
  return _run(alg, 'loop', data, weights, _hparams(), rounds=2)


# Chunks of 2 run the 2 large silos as one vmapped chunk (what 'vmap' does
# with the group) and the 3 small ones as a vmapped chunk plus a tail, so
# vmap over silos stays in the default run; the whole-group 'vmap' strategy
# itself is pinned for FedAvg by test_engine.py and test_shard.py.
@pytest.mark.parametrize('strategy', [
    'chunked', pytest.param('vmap', marks=pytest.mark.slow)])
def test_dual_kd_round_matches_loop_reference(dual_kd_loop_reference,
                                              strategy):
  data, weights = _data()
  alg, _, _ = _alg()
  ref_state, ref_metrics = dual_kd_loop_reference
  # The round does something: KD terms are live.
  assert float(np.min(ref_metrics.silos['large']['kd_forward'])) > 0
  assert float(np.min(ref_metrics.silos['small']['fm_kd'])) > 0
  state, metrics = _run(alg, strategy, data, weights, _hparams(), rounds=2)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(
      a, b, rtol=2e-5, atol=2e-6), state, ref_state)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(
      a, b, rtol=2e-5, atol=2e-6), metrics, ref_metrics)


@pytest.mark.parametrize('large_norm', [
    'group', pytest.param('batch', marks=pytest.mark.slow)])
def test_shared_large_forward_equals_two_forward_passes(large_norm):
  """Step A's eval-mode L_k output reused for step B's backward (the
  default) equals computing L_k's forward twice; with BatchNorm (eval and
  train differ) the forward is not shared and the two builds agree too."""
  data, weights = _data()
  small, _ = _modules()
  large = models.make_model('cnn', num_classes=2, features=(6,), dense=12,
                            norm=large_norm)
  task = tasks.classification(2)
  local = common.LocalConfig(batch_size=4, local_steps=3)
  runs = {}
  for share in (True, False):
    alg = fedhelp.fedhelp(small, large, task, local, GROUPS,
                          fedhelp.FedHelpConfig(share_large_forward=share))
    runs[share] = _run(alg, 'chunked', data, weights, _hparams(),
                       chunk_size=1)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(
      a, b, rtol=1e-5, atol=1e-6), runs[True], runs[False])
  assert float(np.min(runs[True][1].silos['large']['kd_backward'])) > 0


def test_uploads_carry_only_the_shared_small_model():
  data, weights = _data()
  alg, _, _ = _alg()
  state = engine.init_state(alg, data, seed=0)
  hp = _hparams()
  take0 = lambda t: jax.tree.map(lambda x: x[0], t)
  broadcast = alg.download(state.server).broadcast
  uploads = {}
  for g in GROUPS:
    upload = jax.eval_shape(
        lambda c, d, k, g=g: alg.local_update(
            types.SiloInput(g, c, broadcast, None, d), hp, k).upload,
        take0(state.clients[g]), take0(data[g]), jax.random.PRNGKey(0))
    uploads[g] = upload
    # Exactly the structure of the server's S (no 'aux_head', no L_k).
    assert jax.tree.structure(upload) == jax.tree.structure(
        state.server.params)
    assert 'aux_head' not in upload
  large_kernels = {x.shape for x in jax.tree.leaves(
      state.clients['large'].large_params) if x.ndim >= 3}  # [C, ...] kernels
  assert large_kernels
  upload_shapes = {x.shape for u in uploads.values()
                   for x in jax.tree.leaves(u)}
  assert not {s[1:] for s in large_kernels} & upload_shapes
  # server_update takes only the shared model's uploads: no FM, public data
  # or client-state argument, and the server state holds none of them.
  assert list(inspect.signature(alg.server_update).parameters) == [
      'server', 'uploads', 'weights', 'hparams']
  assert state.server._fields == ('params', 'opt_state')
  assert state.server.opt_state == ()
  placed = {g: jax.tree.map(
      lambda s, c=data[g]['n'].shape[0]: jnp.zeros((c,) + s.shape, s.dtype),
      u) for g, u in uploads.items()}
  jaxpr = jax.make_jaxpr(alg.server_update)(state.server, placed, weights, hp)
  in_shapes = {tuple(v.aval.shape) for v in jaxpr.jaxpr.invars}
  assert not in_shapes & {s for s in large_kernels}
  assert (3, NUM_PUBLIC, 2) not in in_shapes  # public_q [C_s, P, K]


def test_private_state_persists_and_stays_local():
  data, weights = _data()
  alg, _, _ = _alg()
  state0 = engine.init_state(alg, data, seed=0)
  state1, _ = _run(alg, 'chunked', data, weights, _hparams(), rounds=1)
  moved = lambda a, b: not np.allclose(a, b)
  # L_k and h_pub are trained (client state changes) ...
  assert any(jax.tree.leaves(jax.tree.map(
      moved, state1.clients['large'].large_params,
      state0.clients['large'].large_params)))
  assert any(jax.tree.leaves(jax.tree.map(
      moved, state1.clients['small'].public_head,
      state0.clients['small'].public_head)))
  # ... and each large silo owns a different L_k.
  kernel = state1.clients['large'].large_params['conv_0']['kernel']
  assert not np.allclose(kernel[0], kernel[1])
  # Large silos are evaluated with L_k, small silos with the global S.
  assert alg.eval_model('large') is not alg.eval_model('small')


@pytest.mark.parametrize('group', GROUPS)
def test_zero_kd_weights_reduce_to_supervised_training(group):
  """lambda_* = mu = 0: S's update is plain supervised training."""
  data, _ = _data()
  alg, task, local = _alg()
  small, _ = _modules()
  state = engine.init_state(alg, data, seed=0)
  hp = _hparams(lambda_forward=0.0, lambda_backward=0.0, mu_rank=0.0,
                lambda_fm=0.0)
  take = lambda t: jax.tree.map(lambda x: x[1], t)
  broadcast = alg.download(state.server).broadcast
  client, silo = take(state.clients[group]), take(data[group])
  key = jax.random.PRNGKey(7)
  delta = jit_silo_update(alg)(group, client, broadcast, None, silo, hp,
                               key).upload
  params, _, _ = jax.jit(lambda d, k: common.supervised_train(
      small, task, local, broadcast, client.small_model_state, d, hp,
      k))(silo, key)
  expected = jax.tree.map(lambda a, b: a - b, broadcast, params)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6),
               delta, expected)
  # With the default weights the KD terms do change S's update.
  delta_kd = jit_silo_update(alg)(group, client, broadcast, None, silo,
                                  _hparams(), key).upload
  assert not np.allclose(delta_kd['dense']['kernel'],
                         expected['dense']['kernel'])


def test_segmentation_round_runs_with_pixelwise_kd():
  data, weights = _data(seg=True)
  alg, _, _ = _alg(seg=True)
  state, metrics = _run(alg, 'chunked', data, weights, _hparams(),
                        chunk_size=1)
  assert np.all(np.asarray(metrics.silos['large']['rank']) == 0)  # Off for seg.
  assert float(np.min(metrics.silos['large']['kd_forward'])) > 0
  assert float(np.min(metrics.silos['small']['fm_kd'])) > 0
  assert np.all(np.isfinite(jax.tree.leaves(state.server)[0]))


def test_missing_fm_knowledge_is_a_clear_error():
  data, weights = _data()
  del data['small']['public_q']
  alg, _, _ = _alg()
  with pytest.raises(ValueError, match='public_q'):
    _run(alg, 'chunked', data, weights, _hparams())


def test_fedavg_fm_switches_off_private_models():
  data, weights = _data()
  alg, _, _ = _alg(private_large=False, dual_kd=False)
  state = engine.init_state(alg, data, seed=0)
  large = state.clients['large']  # No private L_k, no public head.
  assert large.large_params is None and large.public_head is None
  assert alg.eval_model('large') is alg.eval_model('small')


def test_code_loss_scaling_matches_torch_kldiv_mean_and_summed_rank():
  """'code' scaling against a hand computation of the authors' torch terms:
  ``nn.KLDivLoss()(log_softmax(s / T), softmax(t / T))`` (reduction 'mean':
  the sum over batch x classes divided by their count, no T^2), and the
  rank hinge summed over the batch."""
  rng = np.random.default_rng(3)
  s, t = rng.normal(size=(2, 4, 5)).astype(np.float32)
  temp = 2.0

  def softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)

  p_t, p_s = softmax(t / temp), softmax(s / temp)
  torch_mean = np.sum(p_t * (np.log(p_t) - np.log(p_s))) / p_t.size
  per_example = losses.kd_kl(jnp.asarray(s), jnp.asarray(t), temperature=temp)
  np.testing.assert_allclose(
      fedhelp.scaled_kl(per_example, 5, temp, 'code'), torch_mean, rtol=1e-5)
  np.testing.assert_allclose(
      fedhelp.scaled_kl(per_example, 5, temp, 'paper'),
      temp**2 * np.sum(p_t * (np.log(p_t) - np.log(p_s))) / 4, rtol=1e-5)
  # Rank, k = 2: sum over the batch of sum_{i in top, j not} relu(s_j - s_i)
  # / (2k) with the reference t's top 2 (sign +1).
  top = np.argsort(-t, axis=-1)[:, :2]
  hand = 0.0
  for b in range(4):
    rest = [j for j in range(5) if j not in top[b]]
    hand += sum(max(s[b, j] - s[b, i], 0.0) for i in top[b] for j in rest) / 4
  rank = losses.rank_loss(jnp.asarray(t), jnp.asarray(s), k=2)
  np.testing.assert_allclose(fedhelp.reduced_rank(rank, 'code'), hand,
                             rtol=1e-5)
  np.testing.assert_allclose(fedhelp.reduced_rank(rank, 'paper'), hand / 4,
                             rtol=1e-5)


@pytest.mark.parametrize('group', GROUPS)
def test_code_loss_scaling_is_paper_scaling_with_rescaled_weights(group):
  """At T = 1 the 'code' update equals the 'paper' update with every KL
  weight divided by the class count and the rank weight times the batch."""
  data, _ = _data()
  code, _, local = _alg(loss_scaling='code')
  paper, _, _ = _alg()
  state = engine.init_state(paper, data, seed=0)
  take = lambda t: jax.tree.map(lambda x: x[1], t)
  broadcast = paper.download(state.server).broadcast
  client, silo = take(state.clients[group]), take(data[group])
  key = jax.random.PRNGKey(7)
  hp = _hparams(lambda_forward=1.0, lambda_backward=1.0, mu_rank=0.2,
                lambda_fm=1.0, temperature=1.0)
  classes = 2
  hp_paper = _hparams(lambda_forward=1.0 / classes,
                      lambda_backward=1.0 / classes,
                      mu_rank=0.2 * local.batch_size,
                      lambda_fm=1.0 / classes, temperature=1.0)
  update = lambda alg, h: jit_silo_update(alg)(group, client, broadcast,
                                               None, silo, h, key)
  got, want = update(code, hp), update(paper, hp_paper)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6),
               got[:2], want[:2])
  unscaled = update(paper, hp)
  assert not all(np.allclose(a, b, atol=1e-6) for a, b in zip(
      jax.tree.leaves(got[:2]), jax.tree.leaves(unscaled[:2])))


def _main_head_alg():
  """FedHelp whose small silos distil the FM through the task head (no
  public head is built)."""
  small = models.make_model('cnn', num_classes=2, features=(4,), dense=8)
  _, large = _modules()
  task = tasks.classification(2)
  local = common.LocalConfig(batch_size=4, local_steps=3)
  alg = fedhelp.fedhelp(small, large, task, local, GROUPS,
                        fedhelp.FedHelpConfig(fm_head='main'))
  return alg, small, task, local


def _main_head_reference(small, task, local, broadcast, silo, hp, key):
  """The small-silo update as a Python loop: per step, an SGD step on the
  private batch's CE, then one on the FM's answers for a public batch,
  through the MAIN head, each with its own optimizer state."""
  order_key, step_key = jax.random.split(key)
  idx, active = local.schedule(order_key, silo)
  keys = jax.random.split(step_key, idx.shape[0])
  tx = common.make_optimizer('sgd', hp)
  p, opt_ce, opt_kd = broadcast, tx.init(broadcast), tx.init(broadcast)
  logits = lambda q, x: models.apply_model(small, {'params': q}, x,
                                           train=True)[0]
  for t in range(idx.shape[0]):
    if not bool(active[t]):
      continue
    b = idx[t]
    g = jax.grad(lambda q: jnp.mean(task.loss(logits(q, silo['x'][b]),
                                              silo['y'][b])))(p)
    u, opt_ce = tx.update(g, opt_ce, p)
    p = optax.apply_updates(p, u)
    pidx = jax.random.permutation(keys[t], NUM_PUBLIC)[:local.batch_size]
    g = jax.grad(lambda q: hp['lambda_fm'] * fedhelp.scaled_kl(
        losses.kd_kl_from_probs(logits(q, silo['public_x'][pidx]),
                                silo['public_q'][pidx]), 2, 1.0,
        'paper'))(p)
    u, opt_kd = tx.update(g, opt_kd, p)
    p = optax.apply_updates(p, u)
  return p


def test_fm_through_the_main_head_matches_a_loop_reference():
  data, _ = _data()
  alg, small, task, local = _main_head_alg()
  state = engine.init_state(alg, data, seed=0)
  assert state.clients['small'].public_head is None  # No public head.
  broadcast = alg.download(state.server).broadcast
  take = lambda t: jax.tree.map(lambda x: x[1], t)
  client, silo = take(state.clients['small']), take(data['small'])
  key = jax.random.PRNGKey(5)
  hp = _hparams()
  _, delta, _, metrics = jit_silo_update(alg)('small', client, broadcast,
                                              None, silo, hp, key)
  want = _main_head_reference(small, task, local, broadcast, silo, hp, key)
  jax.tree.map(lambda d, b, w: np.testing.assert_allclose(b - d, w,
                                                          atol=2e-6),
               delta, broadcast, want)
  assert float(metrics['fm_kd']) > 0
  # The FM step really moved the task head (the comparison can fail).
  plain = jit_silo_update(alg)('small', client, broadcast, None, silo,
                               _hparams(lambda_fm=0.0), key).upload
  assert not np.allclose(plain['head']['kernel'], delta['head']['kernel'])


def test_fm_through_the_main_head_needs_the_task_classes():
  with pytest.raises(ValueError, match='fm_head'):
    fedhelp.FedHelpConfig(fm_head='aux')


def test_shared_large_model_is_averaged_over_the_large_group_only():
  data, _ = _data()
  # Unequal large-silo weights, so the average is not a plain mean.
  weights = {'large': np.asarray([0.3, 0.1], np.float32),
             'small': np.asarray([0.2, 0.2, 0.2], np.float32)}
  alg, _, _ = _alg(large_sharing='average')
  hp = _hparams()
  state0 = engine.init_state(alg, data, seed=3)
  # One L for the group: every large silo starts from the same model.
  for leaf in jax.tree.leaves(state0.server.large):
    np.testing.assert_array_equal(leaf[0], leaf[1])
  step = jax.jit(engine.build_round(alg, GROUPS, strategy='chunked',
                                    chunk_size=1))
  state1, _ = step(state0, data, weights, hp)
  state2, _ = step(state1, data, weights, hp)
  # The server's L is the silo-weighted mean of the large silos' trained L.
  for after in (state1, state2):
    for got, trained in zip(jax.tree.leaves(after.server.large),
                            jax.tree.leaves(after.clients['large']
                                            .large_params)):
      want = (0.3 * trained[0] + 0.1 * trained[1]) / 0.4
      np.testing.assert_allclose(got[0], want, atol=1e-6)
      np.testing.assert_allclose(got[1], want, atol=1e-6)
  # Round 2 starts each large silo from the server's L, not its own L_k:
  # overwriting the silos' own copies changes nothing in round 2.
  scrambled = state1._replace(clients={
      **state1.clients, 'large': state1.clients['large']._replace(
          large_params=jax.tree.map(jnp.zeros_like,
                                    state1.clients['large'].large_params))})
  again, _ = step(scrambled, data, weights, hp)
  for a, b in zip(jax.tree.leaves(again), jax.tree.leaves(state2)):
    np.testing.assert_array_equal(a, b)
  # Small silos never receive L: their download slot is empty.
  assert alg.download(state1.server).personal['small'] is None
  # The private default keeps a model per silo and uploads S only.
  private, _, _ = _alg()
  assert not hasattr(engine.init_state(private, data, seed=3).server,
                     'large')
