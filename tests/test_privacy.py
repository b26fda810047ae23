# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""Record-level DP-SGD (``fedhelp_jax.privacy``): clipping, noise, the
accounting against direct dp-accounting calls, the budget policies, the
equivalence with plain training at zero noise and infinite clip, and a
K = 3 privacy sweep against its configs one by one. (1 vs 4 devices:
tests/test_shard.py, 'dp_padding'.)"""

import dataclasses

import dp_accounting
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from fedhelp_jax import engine
from fedhelp_jax import experiment
from fedhelp_jax import models
from fedhelp_jax import privacy
from fedhelp_jax import tasks
from fedhelp_jax import validate
from fedhelp_jax.algorithms import common
from fedhelp_jax.algorithms import fedavg
from tests import conftest
from tests import tiny_config

GROUPS = ('large', 'small')


def _hp(clip, sigma):
  return {'dp_clip_norm': jnp.float32(clip),
          'dp_noise_multiplier': jnp.float32(sigma)}


def test_clipping_bounds_every_example_contribution():
  # Loss w . x: example i's gradient is x_i, of norm |x_i|.
  xs = jnp.asarray([[30.0, 40.0], [0.3, 0.4], [-6.0, 8.0]])
  ys = jnp.zeros((3,))
  loss = lambda w, x, y: jnp.dot(w, x)
  w = jnp.zeros((2,))
  for keep in ([1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]):
    mask = jnp.asarray(keep, bool)
    grad, _ = privacy.noisy_clipped_grad(
        loss, w, xs, ys, mask, _hp(1.0, 0.0), jax.random.PRNGKey(0), 1.0)
    # By hand: each kept x_i scaled to norm min(|x_i|, 1), then summed.
    norms = np.linalg.norm(np.asarray(xs), axis=1, keepdims=True)
    want = np.sum(np.asarray(xs) * np.minimum(1.0, 1.0 / norms)
                  * np.asarray(keep)[:, None], axis=0)
    np.testing.assert_allclose(grad, want, rtol=1e-6)
    assert np.linalg.norm(grad) <= sum(keep) + 1e-6


def test_noise_std_is_sigma_clip_over_denominator():
  # A loss with zero gradient: what comes out is the noise alone.
  w = jnp.zeros((200_000,))
  loss = lambda w, x, y: 0.0 * jnp.sum(w) * x
  sigma, clip, denominator = 2.0, 0.5, 4.0
  grad, _ = privacy.noisy_clipped_grad(
      loss, w, jnp.ones((3,)), jnp.zeros((3,)), jnp.ones((3,), bool),
      _hp(clip, sigma), jax.random.PRNGKey(1), denominator)
  want = sigma * clip / denominator
  # The sample SD of 2e5 normals is within ~0.5% (3.3 standard errors).
  assert abs(float(jnp.std(grad)) / want - 1.0) < 0.005
  assert abs(float(jnp.mean(grad))) < 4 * want / np.sqrt(w.size)


def test_poisson_rows_take_each_record_with_probability_q():
  n, max_examples, batch, cap = 40, 50, 8, 50
  keys = jax.random.split(jax.random.PRNGKey(2), 4000)
  rows, mask = jax.vmap(lambda k: privacy.poisson_rows(
      k, jnp.int32(n), max_examples, batch, cap))(keys)
  counts = np.zeros(max_examples)
  np.add.at(counts, np.asarray(rows)[np.asarray(mask)], 1)
  assert counts[n:].sum() == 0  # Padded rows are never drawn.
  q = batch / n
  # Each record's inclusion frequency over 4000 draws: q +- 4 SE.
  se = np.sqrt(q * (1 - q) / len(keys))
  assert np.all(np.abs(counts[:n] / len(keys) - q) < 4 * se)
  # No row is drawn twice in one batch.
  for r, m in zip(np.asarray(rows)[:50], np.asarray(mask)[:50]):
    assert len(set(r[m])) == m.sum()


def test_truncation_keeps_at_most_max_batch():
  rows, mask = privacy.poisson_rows(jax.random.PRNGKey(0), jnp.int32(30), 30,
                                    30, 5)  # q = 1: all 30 taken, 5 kept.
  assert rows.shape == (5,) and bool(mask.all())
  assert len(set(np.asarray(rows).tolist())) == 5


def _setup():
  rng = np.random.default_rng(0)
  data = {'large': conftest.make_group(rng, [12, 10]),
          'small': conftest.make_group(rng, [5, 4, 6])}
  total = sum(float(d['n'].sum()) for d in data.values())
  weights = {g: (d['n'] / total).astype(np.float32) for g, d in data.items()}
  module = models.make_model('cnn', num_classes=2, features=(4,), dense=8,
                             norm='group')
  return data, weights, module


def _trained(alg, data, weights, hp, rounds=2):
  round_fn = engine.build_round(alg, GROUPS, strategy='chunked')
  state = engine.init_state(alg, data, seed=0)
  return engine.run_rounds(round_fn, rounds)(state, data, weights, hp)


def test_zero_noise_infinite_clip_equals_plain_training():
  """With the ordinary batches ('shuffle'), sigma 0 and clip inf, DP-SGD's
  mean of per-example gradients is the batch gradient, up to float32
  reduction order (the per-example sum is not the batch mean's sum)."""
  data, weights, module = _setup()
  task = tasks.classification(2)
  local = common.LocalConfig(batch_size=4, local_steps=3)
  private = dataclasses.replace(local, private=privacy.PrivateSteps(
      sampling='shuffle', max_batch=4))
  hp = {k: jnp.float32(v) for k, v in fedavg.default_hparams('fedavg').items()}
  plain, plain_m = _trained(fedavg.fedavg(module, task, local, GROUPS), data,
                            weights, hp)
  dp, dp_m = _trained(fedavg.fedavg(module, task, private, GROUPS), data,
                      weights, dict(hp, **_hp(np.inf, 0.0)))
  for a, b in zip(jax.tree.leaves(plain.server), jax.tree.leaves(dp.server)):
    np.testing.assert_allclose(a, b, atol=2e-6)
  np.testing.assert_allclose(plain_m.silos['small']['train_loss'],
                             dp_m.silos['small']['train_loss'], atol=1e-5)
  # ...and the noise moves it (the comparison above can fail).
  noisy, _ = _trained(fedavg.fedavg(module, task, private, GROUPS), data,
                      weights, dict(hp, **_hp(1.0, 1.0)))
  assert max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(
      jax.tree.leaves(plain.server), jax.tree.leaves(noisy.server))) > 1e-3


def test_sweep_of_three_noise_levels_equals_the_runs_one_by_one():
  data, weights, module = _setup()
  task = tasks.classification(2)
  local = dataclasses.replace(
      common.LocalConfig(batch_size=4, local_steps=2),
      private=privacy.PrivateSteps(sampling='poisson', max_batch=8))
  alg = fedavg.fedavg(module, task, local, GROUPS)
  base = {k: jnp.float32(v)
          for k, v in fedavg.default_hparams('fedavg').items()}
  sigmas = [0.0, 0.5, 2.0]
  round_fn = engine.build_round(alg, GROUPS, strategy='chunked')
  # One compiled program for the three runs: sigma is an hparam array.
  run = engine.run_rounds(round_fn, 2)
  one_by_one = [run(engine.init_state(alg, data, seed=0), data, weights,
                    dict(base, **_hp(1.0, s)))[0] for s in sigmas]
  init = engine.init_state(alg, data, seed=0)
  states = jax.tree.map(lambda x: jnp.stack([x] * 3), init)
  hps = {k: jnp.stack([v] * 3) for k, v in base.items()}
  hps.update(dp_clip_norm=jnp.ones((3,), jnp.float32),
             dp_noise_multiplier=jnp.asarray(sigmas, jnp.float32))
  swept, _ = engine.run_sweep_rounds(round_fn, 2)(states, data, weights, hps)
  for k, single in enumerate(one_by_one):
    for a, b in zip(jax.tree.leaves(single.server),
                    jax.tree.leaves(swept.server)):
      np.testing.assert_allclose(a, b[k], atol=2e-6)


def _direct_epsilon(n, steps, rounds, q, sigma, delta):
  acc = dp_accounting.pld.PLDAccountant(value_discretization_interval=1e-3)
  acc.compose(dp_accounting.PoissonSampledDpEvent(
      q, dp_accounting.GaussianDpEvent(sigma)), steps * rounds)
  return acc.get_epsilon(delta)


def _dp_config(**dp):
  c = tiny_config.get_config('fedavg')
  # One conv layer and a narrow dense layer: the accounting does not look at
  # the model, and the tiny config's second conv layer cost about 40% of
  # these runs' compile time (DP-SGD differentiates every example).
  c.model.features, c.model.dense = (4,), 8
  c.rounds = 3
  c.dp = ml_collections.ConfigDict(dict(
      {'level': 'record', 'clip_norm': 1.0, 'noise_multiplier': 1.5,
       'max_batch': 64}, **dp))
  return c


def test_run_epsilon_equals_a_direct_dp_accounting_computation(tmp_path):
  """The tiny federation (64 + 16..24 records, 2 steps of batch 16 per
  round, no truncation at max_batch 64): the run's epsilon is the worst
  silo's, each a Poisson-sampled Gaussian composed 2 x rounds times."""
  config = _dp_config()
  summary = experiment.run_experiment(config, str(tmp_path))
  got = summary['privacy']
  assert got['rounds'] == 3 and got['accountant'] == 'pld'
  fed, _ = experiment.build_federation(config, experiment.load_raw(config))
  sizes = [int(n) for d in fed.values() for n in d['n']]
  delta = 1.0 / max(sizes)
  want = max(_direct_epsilon(n, 2, 3, min(1.0, 16 / n), 1.5, delta)
             for n in sizes)
  assert got['delta'] == pytest.approx(delta)
  assert got['epsilon'] == pytest.approx(want, rel=1e-9)
  # Every evaluation's epsilon, in metrics.jsonl, grows with the rounds
  # and ends at the summary's.
  from fedhelp_jax import reporting  # pylint: disable=g-import-not-at-top
  curve = [r['dp_epsilon'] for r in
           reporting.read_jsonl(str(tmp_path / 'metrics.jsonl'))]
  assert len(curve) == 3 and curve == sorted(curve)
  assert curve[-1] == pytest.approx(got['epsilon'])


_SILOS = [privacy.SiloBudget(64, 2), privacy.SiloBudget(20, 2)]
_KW = dict(batch_size=16, max_batch=64, sampling='poisson', delta=1 / 64,
           accountant='pld')


def test_budget_stop_fires_at_the_last_round_within_budget():
  eps = [privacy.run_epsilon(_SILOS, rounds=r, noise_multiplier=1.5, **_KW)
         for r in (1, 2, 3, 4, 5)]
  budget = (eps[2] + eps[3]) / 2  # Rounds 1-3 fit, round 4 does not.
  dp = privacy.DPConfig(level='record', epsilon=budget, on_budget='stop',
                        delta=1 / 64)
  plan = privacy.plan(dp, _SILOS, rounds=5, noise_multiplier=1.5,
                      clip_norm=1.0, batch_size=16, max_batch=64)
  assert plan.rounds == 3
  assert plan.record['epsilon'] == pytest.approx(eps[2])
  with pytest.raises(ValueError, match='3 round'):
    privacy.plan(dataclasses.replace(dp, on_budget='refuse'), _SILOS,
                 rounds=5, noise_multiplier=1.5, clip_norm=1.0,
                 batch_size=16, max_batch=64)


def test_calibration_spends_the_budget():
  dp = privacy.DPConfig(level='record', epsilon=4.0, on_budget='calibrate',
                        delta=1 / 64)
  plan = privacy.plan(dp, _SILOS, rounds=5, noise_multiplier=0.5,
                      clip_norm=1.0, batch_size=16, max_batch=64)
  assert plan.noise_multiplier > 0.5
  assert plan.record['epsilon'] <= 4.0 * (1 + 1e-3)
  # A smaller sigma would spend more than the budget.
  assert privacy.run_epsilon(_SILOS, rounds=5,
                             noise_multiplier=0.95 * plan.noise_multiplier,
                             **_KW) > 4.0


def test_truncated_batches_use_the_truncated_event():
  event = privacy.step_event(600, batch_size=16, max_batch=32,
                             sampling='poisson', noise_multiplier=1.0,
                             steps=5)
  assert isinstance(event.event,
                    dp_accounting.TruncatedSubsampledGaussianDpEvent)
  with pytest.raises(ValueError, match='RDP accountant cannot'):
    privacy.plan(privacy.DPConfig(level='record', accountant='rdp'),
                 [privacy.SiloBudget(600, 5)], rounds=2,
                 noise_multiplier=1.0, clip_norm=1.0, batch_size=16,
                 max_batch=32)


@pytest.mark.parametrize('dp, field', [
    ({'level': 'record', 'noise': 1.0}, 'dp'),
    ({'level': 'records'}, 'dp.level'),
    ({'level': 'record', 'noise_multiplier': -1.0}, 'dp.noise_multiplier'),
    ({'level': 'record', 'on_budget': 'stop'}, 'dp.on_budget'),
])
def test_bad_dp_configs_name_the_field(dp, field):
  config = tiny_config.get_config('fedavg')
  config.dp = ml_collections.ConfigDict(dp)
  with pytest.raises(validate.ConfigError, match=rf'^config\.{field}:'):
    validate.validate_config(config)


def test_record_dp_is_refused_for_an_algorithm_that_cannot_support_it():
  config = tiny_config.get_config('ditto')
  config.dp = ml_collections.ConfigDict({'level': 'record'})
  with pytest.raises(validate.ConfigError, match='not available'):
    validate.validate_config(config)


def test_run_sweep_gives_each_noise_level_its_own_epsilon():
  from fedhelp_jax import sweep  # pylint: disable=g-import-not-at-top
  base = _dp_config()
  base.rounds = 2
  base.eval_every = 2
  sigmas = [0.8, 1.5, 3.0]
  results = sweep.run_sweep(
      sweep.grid(base, {'hparams.dp_noise_multiplier': sigmas}),
      verbose=False)
  assert {r['program'] for r in results} == {0}  # One program for all 3.
  eps = [r['privacy']['epsilon'] for r in results]
  assert eps[0] > eps[1] > eps[2]
  fed, _ = experiment.build_federation(base, experiment.load_raw(base))
  silos = privacy.silo_budgets(fed, batch_size=16, local_steps=2,
                               local_epochs=None)
  for sigma, got in zip(sigmas, eps):
    assert got == pytest.approx(privacy.run_epsilon(
        silos, rounds=2, noise_multiplier=sigma, batch_size=16,
        max_batch=64, sampling='poisson', delta=1 / max(s.n for s in silos),
        accountant='pld'))


def _fedhelp(private):
  from fedhelp_jax.algorithms import fedhelp  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(1)
  data = {'large': conftest.make_group(rng, [12, 10]),
          'small': conftest.make_group(rng, [5, 4, 6])}
  pub = rng.random((8, 8, 8, 1), dtype=np.float32)
  q = rng.dirichlet([1.0, 1.0], (8,)).astype(np.float32)
  data['small']['public_x'] = np.repeat(pub[None], 3, axis=0)
  data['small']['public_q'] = np.repeat(q[None], 3, axis=0)
  weights = {g: np.full(d['n'].shape, 0.2, np.float32)
             for g, d in data.items()}
  small = models.make_model('cnn', num_classes=2, features=(4,), dense=8,
                            aux_classes=2, norm='group')
  large = models.make_model('cnn', num_classes=2, features=(6,), dense=12,
                            norm='group')
  local = common.LocalConfig(batch_size=4, local_steps=2)
  if private is not None:
    local = dataclasses.replace(local, private=private)
  alg = fedhelp.fedhelp(small, large, tasks.classification(2), local, GROUPS)
  hp = {k: jnp.float32(v) for k, v in fedhelp.default_hparams().items()}
  return alg, data, weights, hp


def test_fedhelp_dp_at_zero_noise_infinite_clip_equals_fedhelp():
  """Both sides: the small silos' private CE step and the large silos'
  steps A and B (S and L_k) go through the DP path."""
  alg, data, weights, hp = _fedhelp(None)
  plain, plain_m = _trained(alg, data, weights, hp)
  shuffle = privacy.PrivateSteps(sampling='shuffle', max_batch=4)
  alg_dp, _, _, _ = _fedhelp(shuffle)
  dp, dp_m = _trained(alg_dp, data, weights, dict(hp, **_hp(np.inf, 0.0)))
  for tree in ('server', 'clients'):
    for a, b in zip(jax.tree.leaves(getattr(plain, tree)),
                    jax.tree.leaves(getattr(dp, tree))):
      np.testing.assert_allclose(a, b, atol=5e-6)
  for key in ('train_loss', 'large_loss', 'kd_forward', 'kd_backward'):
    np.testing.assert_allclose(plain_m.silos['large'][key],
                               dp_m.silos['large'][key],
                               atol=1e-5)
  # Noise reaches the private large models too (the check can fail).
  noisy, _ = _trained(alg_dp, data, weights, dict(hp, **_hp(1.0, 1.0)))
  moved = lambda a, b: max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(
      jax.tree.leaves(a), jax.tree.leaves(b)))
  assert moved(plain.clients['large'].large_params,
               noisy.clients['large'].large_params) > 1e-3


def test_two_releases_per_batch_are_one_gaussian_of_sigma_over_root_two():
  kw = dict(batch_size=16, max_batch=64, sampling='poisson', steps=3)
  two = privacy.step_event(200, noise_multiplier=2.0, releases=2, **kw)
  one = privacy.step_event(200, noise_multiplier=2.0 / np.sqrt(2), **kw)
  assert two == one
  silos = privacy.silo_budgets(
      {'large': {'n': np.asarray([200])}, 'small': {'n': np.asarray([30])}},
      batch_size=16, local_steps=3, local_epochs=None,
      releases={'large': 2})
  assert [s.releases for s in silos] == [2, 1]
