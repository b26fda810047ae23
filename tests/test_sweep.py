# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""run_sweep: one vmapped program equals the sequential runs; grid; fallback.

Tiny PneumoniaMNIST federations (1 large + 3 small silos, a 4-channel CNN,
2 local steps, 2 rounds) keep every compile to a few seconds on a CPU.
"""

import types

import jax
import numpy as np
import pytest

from experiments.configs import fedavg_cls
from fedhelp_jax import experiment
from fedhelp_jax import sweep

_TOL = 1e-5


def _tiny(**overrides):
  c = fedavg_cls.get_config()
  c.partition.num_large = 1
  c.partition.num_small = 3
  c.partition.large_size = 64
  # One size for every small silo: a seed then changes which examples a
  # silo holds but not the shapes, so seeds can share a program.
  c.partition.small_size = (20, 20)
  c.partition.test_size = 20
  c.model.features = (4,)
  c.model.dense = 8
  c.local.local_steps = 2
  c.local.batch_size = 16
  c.rounds = 2
  c.eval_every = 1
  c.progress = False
  for path, value in overrides.items():  # 'a__b' stands for 'a.b'.
    sweep.set_field(c, path.replace('__', '.'), value)
  return c


def _max_abs_diff(a, b) -> float:
  return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _allclose_metrics(a, b):
  for key in a:
    np.testing.assert_allclose(a[key], b[key], rtol=_TOL, atol=_TOL,
                               err_msg=key)


def test_grid_expands_the_product_in_order():
  base = _tiny()
  base_seed, base_lr = base.seed, base.hparams.lr
  configs = sweep.grid(base, {'hparams.lr': [0.1, 0.03], 'seed': [0, 1, 2],
                              'hparams.mu': [0.5]})
  assert len(configs) == 6
  assert [(c.hparams.lr, c.seed) for c in configs] == [
      (0.1, 0), (0.1, 1), (0.1, 2), (0.03, 0), (0.03, 1), (0.03, 2)]
  assert all(c.hparams.mu == 0.5 for c in configs)  # New hparams are allowed.
  # Base untouched.
  assert (base.seed, base.hparams.lr) == (base_seed, base_lr)
  assert base_lr not in (0.1, 0.03)
  assert 'mu' not in base.hparams
  configs[0].model.features = (9,)
  assert configs[1].model.features == (4,)  # Deep copies.
  with pytest.raises(KeyError, match="Did you mean 'partition'"):
    sweep.grid(base, {'partiton.num_small': [1, 2]})
  with pytest.raises(KeyError, match="no field 'local.steps'"):
    sweep.grid(base, {'local.steps': [1, 2]})


def test_vmapped_sweep_equals_sequential_runs(capsys, tmp_path):
  """K=3 configs differing in lr and seed: one program, same numbers."""
  configs = [_tiny(hparams__lr=lr, seed=seed)
             for lr, seed in ((0.1, 0), (0.03, 1), (0.05, 2))]
  vmapped = sweep.run_sweep(configs, str(tmp_path), return_states=True)
  out = capsys.readouterr().out
  assert 'configs [0, 1, 2]: one vmapped program (K=3)' in out
  assert 'data and weights stacked over K' in out  # Seeds differ.
  assert (tmp_path / 'sweep.json').exists()
  sequential = sweep.run_sweep(configs, vmap=False, return_states=True)
  for k, (v, s) in enumerate(zip(vmapped, sequential)):
    assert (v['mode'], v['program']) == ('vmap', 0)
    assert (s['mode'], s['program']) == ('sequential', k)
    assert v['label'] == {'hparams.lr': configs[k].hparams.lr,
                          'seed': configs[k].seed}
    assert v['hparams']['lr'] == pytest.approx(configs[k].hparams.lr)
    assert _max_abs_diff(v['state'], s['state']) < _TOL
    _allclose_metrics(v['final']['clients'], s['final']['clients'])
    for g in ('large', 'small'):
      assert len(v['train_loss'][g]) == 2
      np.testing.assert_allclose(v['train_loss'][g], s['train_loss'][g],
                                 rtol=_TOL)
    assert [h['round'] for h in v['history']] == [1, 2]
    assert not v['nonfinite']
  # The configs really differ (lr and seed both matter).
  assert _max_abs_diff(vmapped[0]['state'].server,
                       vmapped[1]['state'].server) > 1e-3
  # And the sequential path is run_experiment's: same final metrics.
  ref = experiment.run_experiment(configs[1], str(tmp_path / 'ref'))
  _allclose_metrics(vmapped[1]['final']['clients'], ref['final']['clients'])
  assert vmapped[1]['best'] == pytest.approx(ref['best'])


def test_same_seed_sweep_shares_one_copy_of_the_data(capsys):
  configs = sweep.grid(_tiny(rounds=1), {'hparams.lr': [0.1, 0.02]})
  vmapped = sweep.run_sweep(configs, return_states=True)
  assert 'share one copy of the data' in capsys.readouterr().out
  sequential = sweep.run_sweep(configs, vmap=False, return_states=True)
  for v, s in zip(vmapped, sequential):
    assert v['mode'] == 'vmap'
    assert _max_abs_diff(v['state'], s['state']) < _TOL
    _allclose_metrics(v['final']['clients'], s['final']['clients'])


def test_shape_differing_configs_fall_back_to_sequential(capsys):
  # Silo sizes drawn from a range per seed: seed 3 draws a smaller largest
  # small silo than seed 0, so the padded data shapes differ.
  ranged = [_tiny(rounds=1, seed=s, partition__small_size=(16, 24))
            for s in (0, 3)]
  wider = _tiny(rounds=1, model__features=(6,))
  results = sweep.run_sweep(ranged + [wider])
  out = capsys.readouterr().out
  assert '3 configs -> 3 program(s)' in out
  assert ("config 1 differs from config 0: the data shape 'small/x' differs"
          in out)
  assert 'seed 0 vs 3 changes the partition' in out
  assert "config 2 differs from config 0: field 'model.features' differs" in out
  assert [r['mode'] for r in results] == ['sequential'] * 3
  assert [r['program'] for r in results] == [0, 1, 2]
  for r in results:
    assert np.isfinite(r['final']['summary']['all']['accuracy'])


def test_sweep_rejects_sharded_and_loop_configs():
  with pytest.raises(ValueError, match='num_devices=2'):
    sweep.run_sweep([_tiny(num_devices=2)])
  with pytest.raises(ValueError, match="strategy='loop'"):
    sweep.run_sweep([_tiny(strategy='loop')])


def test_cpu_hint_for_vmapped_conv_configs():
  program = lambda members: types.SimpleNamespace(members=members)
  cnn = _tiny(config_parallel='vmap')
  hint = sweep._cpu_conv_hint([cnn, cnn], [program([0, 1])])
  assert "model.conv='im2col'" in hint and 'vmap=False' in hint
  # No hint for sequential programs, for im2col models, or where 'auto'
  # maps over the configs (the CPU default).
  assert sweep._cpu_conv_hint([cnn, cnn], [program([0]), program([1])]) is None
  im2col = _tiny(config_parallel='vmap')
  im2col.model.conv = 'im2col'
  assert sweep._cpu_conv_hint([im2col, im2col], [program([0, 1])]) is None
  auto = _tiny()
  assert sweep._cpu_conv_hint([auto, auto], [program([0, 1])]) is None


def test_sampling_sweep_over_seeds_equals_sequential_runs(tmp_path):
  """Client sampling inside a vmapped sweep: each config draws its own
  silos from its own key, exactly as when run alone."""
  configs = [_tiny(seed=seed, clients_per_round__small=2) for seed in (0, 1)]
  vmapped = sweep.run_sweep(configs, str(tmp_path), return_states=True)
  sequential = sweep.run_sweep(configs, vmap=False, return_states=True)
  for v, s in zip(vmapped, sequential):
    assert v['mode'] == 'vmap' and s['mode'] == 'sequential'
    assert _max_abs_diff(v['state'], s['state']) < _TOL
    _allclose_metrics(v['final']['clients'], s['final']['clients'])
  # Sampling was on: the unsampled run of seed 0 ends elsewhere.
  every = sweep.run_sweep([_tiny(seed=0)], vmap=False, return_states=True)
  assert _max_abs_diff(every[0]['state'].server,
                       vmapped[0]['state'].server) > 1e-4
