# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""One-time FM knowledge: call accounting, cache keys, providers, placement."""

import ml_collections
import numpy as np
import pytest

from fedhelp_jax import foundation
from fedhelp_jax.algorithms import fm_prepare
from fedhelp_jax import models
from fedhelp_jax import tasks


def _counting_provider(num_classes=3):
  """A fake API that records every example it is asked about."""
  seen = []

  def query(x, ids):
    seen.extend(np.asarray(ids).tolist())
    logits = np.stack([x.reshape(x.shape[0], -1).mean(1) * (k + 1)
                       for k in range(num_classes)], axis=-1)
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)
  return foundation.Provider('fake', query), seen


def test_second_run_makes_zero_calls_and_changes_requery(tmp_path):
  x = np.random.default_rng(0).random((7, 4, 4, 1)).astype(np.float32)
  provider, seen = _counting_provider()
  cfg = {'provider': 'fake', 'version': 1}
  out1, calls1 = foundation.query_once(provider, x, cache_dir=str(tmp_path),
                                       provider_config=cfg, batch_size=3)
  assert calls1 == 7 and len(seen) == 7  # One call per public example.
  out2, calls2 = foundation.query_once(provider, x, cache_dir=str(tmp_path),
                                       provider_config=dict(cfg))
  assert calls2 == 0 and len(seen) == 7  # Cache hit: the API is not touched.
  np.testing.assert_array_equal(out1, out2)
  # A changed provider config, or a changed input, queries again.
  _, calls3 = foundation.query_once(provider, x, cache_dir=str(tmp_path),
                                    provider_config={**cfg, 'version': 2})
  assert calls3 == 7 and len(seen) == 14
  x2 = x.copy()
  x2[0, 0, 0, 0] += 1.0
  _, calls4 = foundation.query_once(provider, x2, cache_dir=str(tmp_path),
                                    provider_config=cfg)
  assert calls4 == 7


def test_provider_answers_must_be_probabilities(tmp_path):
  bad = foundation.Provider('bad', lambda x, ids: np.ones((len(ids), 2)))
  with pytest.raises(ValueError, match='sum to 1'):
    foundation.query_once(bad, np.zeros((3, 2)), cache_dir=str(tmp_path),
                          provider_config={})


def _write(path, ids, outputs):
  np.savez(path, ids=np.asarray(ids), outputs=np.asarray(outputs, np.float32))
  return str(path)


def test_precomputed_reads_by_id(tmp_path):
  out = np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]])
  path = _write(tmp_path / 'fm.npz', [10, 11, 12], out)
  provider = foundation.precomputed(path, output_shape=(2,))
  got = provider.query(np.zeros((2, 4)), np.array([12, 10]))
  np.testing.assert_allclose(got, out[[2, 0]])


def test_precomputed_errors(tmp_path):
  out = np.array([[0.9, 0.1], [0.2, 0.8]])
  path = _write(tmp_path / 'a.npz', [0, 1], out)
  with pytest.raises(ValueError, match=r'no FM output for 2 .*\[5, 7\]'):
    foundation.precomputed(path).query(np.zeros((3, 1)), np.array([1, 5, 7]))
  with pytest.raises(ValueError, match='per-example output shape'):
    foundation.precomputed(path, output_shape=(3,))
  with pytest.raises(ValueError, match='2 ids but 3 output rows'):
    foundation.precomputed(_write(tmp_path / 'b.npz', [0, 1],
                                  np.full((3, 2), 0.5)))
  with pytest.raises(ValueError, match='not unique'):
    foundation.precomputed(_write(tmp_path / 'c.npz', [4, 4], out))
  with pytest.raises(ValueError, match='sum to 1'):
    foundation.precomputed(_write(tmp_path / 'd.npz', [0, 1], out * 3))
  np.savez(tmp_path / 'e.npz', outputs=out)
  with pytest.raises(ValueError, match='missing arrays'):
    foundation.precomputed(str(tmp_path / 'e.npz'))
  masks = np.full((2, 4, 4, 2), 0.5)
  seg = foundation.precomputed(_write(tmp_path / 'f.npz', [0, 1], masks))
  with pytest.raises(ValueError, match='stored masks'):
    seg.query(np.zeros((1, 8, 8, 1)), np.array([0]))


def test_soften_matches_hand_computed_values():
  q = np.array([[0.8, 0.2]])
  np.testing.assert_allclose(foundation.soften(q), q, rtol=1e-6)
  # T = 2: sqrt(0.8) : sqrt(0.2) = 2 : 1.
  np.testing.assert_allclose(foundation.soften(q, temperature=2.0),
                             [[2 / 3, 1 / 3]], rtol=1e-6)
  np.testing.assert_allclose(foundation.soften(q, label_smoothing=0.1),
                             [[0.77, 0.23]], rtol=1e-6)
  with pytest.raises(ValueError):
    foundation.soften(q, temperature=0.0)


def _toy_split(rng, n):
  """Two classes separable by mean brightness."""
  y = rng.integers(0, 2, n).astype(np.int32)
  x = (rng.random((n, 6, 6, 1)) * 0.5 + 0.5 * y[:, None, None, None])
  return x.astype(np.float32), y


def test_proxy_trains_once_and_is_cached(tmp_path):
  rng = np.random.default_rng(0)
  (x, y), (tx, ty) = _toy_split(rng, 64), _toy_split(rng, 32)
  module = models.make_model('cnn', num_classes=2, features=(4,), dense=8)
  task = tasks.classification(2)
  kwargs = dict(test_x=tx, test_y=ty, steps=60, batch_size=16, lr=1e-2,
                seed=0, cache_dir=str(tmp_path))
  pm = foundation.train_proxy(module, task, x, y, **kwargs)
  assert pm.metric == 'accuracy' and pm.test_score >= 0.9
  assert pm.test_score == pytest.approx(foundation.score(
      module, pm.variables, task, tx, ty))
  again = foundation.train_proxy(module, task, x, y, **kwargs)  # From disk.
  assert again.test_score == pm.test_score
  np.testing.assert_array_equal(again.variables['params']['head']['kernel'],
                                pm.variables['params']['head']['kernel'])
  probs = foundation.proxy(pm, task).query(tx[:5], np.arange(5))
  np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)


def test_prepare_fm_places_knowledge_on_small_silos(tmp_path):
  rng = np.random.default_rng(1)
  train_x, train_y = _toy_split(rng, 40)
  test_x, test_y = _toy_split(rng, 10)
  public_x, _ = _toy_split(rng, 6)
  raw = {'train_x': train_x, 'train_y': train_y, 'test_x': test_x,
         'test_y': test_y, 'public_x': public_x}
  # Silos hold train rows 0..19; the proxy may only use rows 20..39.
  fed = {'small': {'n': np.array([10, 10]), '_train_index': [
      np.arange(10), np.arange(10, 20)]},
         'large': {'n': np.array([1]), '_train_index': [np.arange(0)]}}
  config = ml_collections.ConfigDict({
      'task': 'classification', 'num_classes': 2,
      'model': {'name': 'cnn', 'features': (4,), 'dense': 8},
      'fm': {'cache_dir': str(tmp_path), 'proxy_steps': 5,
             'proxy_batch_size': 8, 'label_smoothing': 0.2}})
  info = {}
  out = fm_prepare.prepare_fm(config, fed, raw, info)
  assert out['small']['public_x'].shape == (2, 6, 6, 6, 1)
  assert out['small']['public_q'].shape == (2, 6, 2)
  assert 'public_q' not in out['large']
  np.testing.assert_array_equal(out['small']['public_q'][0],
                                out['small']['public_q'][1])
  # Label smoothing 0.2 over 2 classes keeps every probability >= 0.1.
  assert out['small']['public_q'].min() >= 0.1 - 1e-6
  assert info['fm']['api_calls'] == 6 and info['fm']['proxy_train_size'] == 20
  info2 = {}
  fm_prepare.prepare_fm(config, fed, raw, info2)
  assert info2['fm']['api_calls'] == 0 and info2['fm']['cache_hit']


@pytest.mark.parametrize('fm, named', [
    ({'provider': 'bogus'}, "'proxy', 'precomputed'"),
    ({'provider': 'proxy', 'proxy_data': 'elsewhere'}, "'unassigned'"),
])
def test_fm_settings_names_the_choices(fm, named):
  config = ml_collections.ConfigDict({'fm': fm})
  with pytest.raises(ValueError, match=named):
    fm_prepare.fm_settings(config)
