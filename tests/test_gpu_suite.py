# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""The GPU benchmark suite's smoke mode: every section, tiny shapes, CPU.

Checks the plumbing, not speed: the suite writes one JSON file per section
with the expected rows and positive, finite throughput numbers, records a
section it cannot run (the torch peer without torch) as skipped, and keeps
going.
"""

import json
import math
import sys

import pytest

from benchmarks import gpu_suite
from benchmarks import peer_torch


def _load(path):
  with open(path) as f:
    return json.load(f)


def _positive(x):
  return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


@pytest.fixture
def no_torch(monkeypatch):
  """As if torch were not installed (``import torch`` raises ImportError)."""
  monkeypatch.setitem(sys.modules, 'torch', None)


def test_smoke_suite_writes_every_section(tmp_path, no_torch):
  del no_torch
  assert gpu_suite.main(['--smoke', '--out_dir', str(tmp_path)]) == 0
  summary = _load(tmp_path / 'gpu_suite-cpu.json')
  sections = summary['sections']
  assert set(sections) == set(gpu_suite.SECTIONS)
  for name in ('round_throughput', 'sweep', 'authors_recipe', 'max_silos'):
    assert sections[name]['status'] == 'ok', (name, sections[name])
  # Without torch the peer is skipped, with the install line as the reason.
  assert sections['peer_torch']['status'] == 'skipped'
  assert 'requirements-peer.txt' in sections['peer_torch']['reason']
  assert not (tmp_path / 'peer-cpu.json').exists()
  assert summary['backend'] == 'cpu' and summary['smoke']
  assert 'load_avg_1m_at_start' in summary

  rt = _load(tmp_path / 'round_throughput-cpu.json')
  got = {(r['dtype'], r['strategy'], r['resolved']) for r in rt['rows']}
  # 'auto' resolves to a sequential in-program map on CPU.
  assert got == {(d, s, r) for d in ('float32', 'bfloat16')
                 for s, r in (('vmap', 'vmap'), ('auto', 'chunked'))}
  for r in rt['rows']:
    assert r['silos'] == 2
    for key in ('images_per_s', 'loop_images_per_s', 'speedup_vs_loop',
                'compile_s'):
      assert _positive(r[key]), (key, r)
  # The CPU never runs out of memory here: the search stops at its limit.
  assert rt['max_silos_auto'] == 2
  assert rt['max_silos_search']['stopped'] == 'limit'

  sw = _load(tmp_path / 'sweep-cpu.json')
  assert [r['configs'] for r in sw['rows']] == [2]
  for r in sw['rows']:
    assert _positive(r['sweep_s']) and _positive(r['sequential_s'])
    assert _positive(r['speedup'])

  au = _load(tmp_path / 'authors_recipe-cpu.json')
  (row,) = au['rows']
  assert row['algorithm'] == 'fedavg' and row['optimizer'] == 'adam'
  assert row['batch_size'] == 4 and row['local_epochs'] == 1.0
  assert sum(row['silos'].values()) == 6
  assert _positive(row['round_s']) and _positive(row['images_per_s'])


def test_failing_section_is_recorded_and_the_suite_goes_on(
    tmp_path, monkeypatch, no_torch):
  del no_torch

  def broken(*args, **kwargs):
    raise RuntimeError('boom')

  monkeypatch.setattr(gpu_suite.sweep, 'measure', broken)
  rc = gpu_suite.main(['--smoke', '--out_dir', str(tmp_path), '--skip',
                       'round_throughput,authors_recipe,max_silos'])
  assert rc == 1
  sections = _load(tmp_path / 'gpu_suite-cpu.json')['sections']
  assert sections['sweep']['status'] == 'error'
  assert 'RuntimeError: boom' in sections['sweep']['error']
  assert sections['peer_torch']['status'] == 'skipped'
  assert sections['max_silos'] == {'status': 'skipped',
                                   'reason': 'skipped by --skip'}


def test_peer_script_without_torch_exits_with_one_line(no_torch, tmp_path):
  del no_torch
  with pytest.raises(SystemExit) as e:
    peer_torch.main(['--smoke', '--out', str(tmp_path)])
  message = str(e.value.code)
  assert message.startswith('peer_torch: PyTorch is not installed')
  assert 'pip install -r benchmarks/requirements-peer.txt' in message
  assert '\n' not in message


def test_torch_peer_model_matches_the_flax_cnn():
  """Same parameter count and kernel init scale as ``models.CNN``."""
  torch = pytest.importorskip('torch')
  # pylint: disable=g-import-not-at-top
  import jax
  import numpy as np
  from flax.linen import linear
  from fedhelp_jax import models
  # pylint: enable=g-import-not-at-top

  module = models.make_model('cnn', num_classes=2)
  shapes = jax.eval_shape(
      lambda: models.init_variables(module, jax.random.PRNGKey(0),
                                    np.zeros((1, 28, 28, 1), np.float32)))
  flax_params = jax.tree.leaves(shapes['params'])
  torch.manual_seed(0)
  net = peer_torch.torch_cnn(torch)
  assert sum(p.numel() for p in net.parameters()) == sum(
      int(np.prod(p.shape)) for p in flax_params)
  flax_kernels = [shapes['params'][k]['kernel'].shape
                  for k in ('conv_0', 'conv_1', 'dense', 'head')]
  torch_kernels = [m.weight.detach().numpy() for m in net.modules()
                   if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
  for t, shape in zip(torch_kernels, flax_kernels):
    assert t.size == int(np.prod(shape))
    # models.CNN keeps Flax's default kernel init (lecun_normal): a normal
    # truncated at 2 of its standard deviations, scaled to std
    # sqrt(1 / fan_in). The torch kernels must have the same scale.
    target = (1.0 / t[0].size) ** 0.5
    assert np.std(t) == pytest.approx(target, rel=0.15)
    assert np.abs(t).max() <= 2 * target / 0.8796 + 1e-6
  # The Flax side of that claim, on the largest conv kernel.
  f = np.asarray(linear.default_kernel_init(jax.random.PRNGKey(1),
                                            flax_kernels[1]))
  assert float(np.std(f)) == pytest.approx(
      (1.0 / np.prod(flax_kernels[1][:-1])) ** 0.5, rel=0.05)
  assert np.abs(f).max() <= 2 * np.std(f) / 0.8796 * 1.05
