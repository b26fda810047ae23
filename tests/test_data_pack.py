# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""Tests for fedhelp_jax.data.pack and fedhelp_jax.data.site_shift."""

import numpy as np
import pytest

from fedhelp_jax.data import pack
from fedhelp_jax.data import site_shift


def _images(n=12, h=4, w=4, seed=0):
  rng = np.random.default_rng(seed)
  return rng.integers(0, 256, (n, h, w, 1), dtype=np.uint8)


# ---------------------------------------------------------------------------
# pack_group
# ---------------------------------------------------------------------------


def test_pack_group_layout_values_and_padding():
  x = _images()
  y = np.arange(12) % 3
  test_x = _images(n=6, seed=1)
  test_y = np.array([0, 1, 2, 0, 1, 2])
  idx = [np.array([0, 5, 7]), np.array([2]), np.array([1, 3, 4, 6, 8])]
  tidx = [np.array([0]), np.array([1, 2]), np.array([], np.int64)]
  g = pack.pack_group(x, y, idx, test_x=test_x, test_y=test_y,
                      test_indices=tidx)
  assert set(g) == set(pack.GROUP_KEYS)
  assert g['x'].shape == (3, 5, 4, 4, 1) and g['x'].dtype == np.float32
  assert g['y'].shape == (3, 5) and g['y'].dtype == np.int32
  assert g['test_x'].shape == (3, 2, 4, 4, 1)
  np.testing.assert_array_equal(g['n'], [3, 1, 5])
  np.testing.assert_array_equal(g['test_n'], [1, 2, 0])
  assert g['n'].dtype == np.int32 and g['test_n'].dtype == np.int32
  for c, i in enumerate(idx):
    np.testing.assert_allclose(g['x'][c, :len(i)], x[i] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(g['y'][c, :len(i)], y[i])
    assert not g['x'][c, len(i):].any() and not g['y'][c, len(i):].any()
  for c, i in enumerate(tidx):
    np.testing.assert_allclose(g['test_x'][c, :len(i)], test_x[i] / 255.0,
                               rtol=1e-6)
    np.testing.assert_array_equal(g['test_y'][c, :len(i)], test_y[i])
    assert not g['test_x'][c, len(i):].any()


def test_pack_group_pads_to_its_own_largest_silo_only():
  x, y = _images(n=40), np.zeros(40, np.int64)
  large = pack.pack_group(x, y, [np.arange(30), np.arange(30, 35)])
  small = pack.pack_group(x, y, [np.arange(3), np.arange(3, 7)])
  assert large['x'].shape[1] == 30
  assert small['x'].shape[1] == 4


def test_pack_group_floats_masks_pad_to_and_default_test_source():
  x = np.linspace(-1, 1, 10 * 3, dtype=np.float64).reshape(10, 3)
  masks = np.arange(10 * 2 * 2).reshape(10, 2, 2) % 3
  g = pack.pack_group(x, masks, [np.array([1, 2]), np.array([3])],
                      test_indices=[np.array([9]), np.array([0, 4])],
                      pad_to=6)
  assert g['x'].shape == (2, 6, 3) and g['y'].shape == (2, 6, 2, 2)
  np.testing.assert_allclose(g['x'][0, :2], x[[1, 2]].astype(np.float32))
  # Without test_x, test indices point into x (held-out training rows).
  np.testing.assert_allclose(g['test_x'][1, :2],
                             x[[0, 4]].astype(np.float32))
  np.testing.assert_array_equal(g['test_y'][0, 0], masks[9])


def test_pack_group_without_test_indices_has_empty_test_sets():
  g = pack.pack_group(_images(), np.zeros(12, np.int64), [np.arange(4)])
  assert g['test_x'].shape == (1, 0, 4, 4, 1)
  np.testing.assert_array_equal(g['test_n'], [0])


@pytest.mark.parametrize('kwargs, match', [
    (dict(client_indices=[]), 'at least one silo'),
    (dict(client_indices=[np.arange(5)], pad_to=3), 'pad_to=3'),
    (dict(client_indices=[np.array([0, 99])]), 'outside'),
    (dict(client_indices=[np.arange(2)], test_indices=[np.arange(1)] * 2),
     'one test index array per silo'),
])
def test_pack_group_errors(kwargs, match):
  with pytest.raises(ValueError, match=match):
    pack.pack_group(_images(), np.zeros(12, np.int64), **kwargs)


def test_pack_group_rejects_non_uint8_integer_images():
  with pytest.raises(ValueError, match='uint8'):
    pack.pack_group(np.zeros((3, 2), np.int32), np.zeros(3, np.int64),
                    [np.arange(3)])


# ---------------------------------------------------------------------------
# site_shift
# ---------------------------------------------------------------------------


def test_identity_site_shift_changes_nothing():
  x = _images(n=3).astype(np.float32) / 255.0
  np.testing.assert_allclose(
      site_shift.apply_site_shift(x, site_shift.SiteShift()), x, rtol=1e-6)


def test_gamma_only_shift_is_a_power():
  x = _images(n=3).astype(np.float32) / 255.0
  out = site_shift.apply_site_shift(x, site_shift.SiteShift(gamma=1.7))
  np.testing.assert_allclose(out, x ** 1.7, rtol=1e-5, atol=1e-7)


def test_bias_field_is_bounded_positive_and_smooth():
  s = 0.3
  field = site_shift.bias_field(32, 32, s, np.random.default_rng(0))
  assert field.shape == (32, 32)
  assert field.min() >= np.exp(-s) - 1e-6 and field.max() <= np.exp(s) + 1e-6
  assert np.isclose(np.abs(np.log(field)).max(), s, rtol=1e-5)
  # Smooth: neighbouring pixels differ far less than the field's range.
  assert np.abs(np.diff(np.log(field), axis=0)).max() < 0.1 * s * 2


def test_site_shift_is_deterministic_noisy_and_clipped():
  x = np.full((200, 8, 8), 0.5, np.float32)
  shift = site_shift.SiteShift(noise_std=0.05, seed=4)
  a = site_shift.apply_site_shift(x, shift)
  np.testing.assert_array_equal(a, site_shift.apply_site_shift(x, shift))
  assert np.isclose((a - 0.5).std(), 0.05, rtol=0.05)
  other = site_shift.apply_site_shift(x, shift._replace(seed=5))
  assert not np.array_equal(a, other)
  loud = site_shift.apply_site_shift(x, shift._replace(noise_std=2.0))
  assert loud.min() >= 0.0 and loud.max() <= 1.0
  with pytest.raises(ValueError, match='float in'):
    site_shift.apply_site_shift(np.zeros((1, 2, 2), np.uint8), shift)


def test_sample_site_shifts_respects_ranges():
  shifts = site_shift.sample_site_shifts(50, seed=0, gamma_range=(0.8, 1.2),
                                         noise_range=(0.01, 0.02),
                                         bias_range=(0.1, 0.2))
  assert len(shifts) == 50
  assert all(0.8 <= s.gamma <= 1.2 and 0.01 <= s.noise_std <= 0.02 and
             0.1 <= s.bias_strength <= 0.2 for s in shifts)
  assert shifts == site_shift.sample_site_shifts(
      50, seed=0, gamma_range=(0.8, 1.2), noise_range=(0.01, 0.02),
      bias_range=(0.1, 0.2))
  with pytest.raises(ValueError, match='gamma_range'):
    site_shift.sample_site_shifts(2, seed=0, gamma_range=(2.0, 1.0))


def _fake_brain(per_axis=(20, 30, 25), size=8, seed=0):
  rng = np.random.default_rng(seed)
  n = sum(per_axis)
  axis = np.repeat(np.arange(3), per_axis)
  # Slice positions with holes, stored out of order, like a real file could.
  slice_index = np.concatenate([np.sort(rng.choice(100, k, replace=False))
                                for k in per_axis])
  order = rng.permutation(n)
  return {'image': rng.integers(0, 256, (n, size, size, 1), dtype=np.uint8),
          'mask': rng.integers(0, 3, (n, size, size)).astype(np.int32),
          'axis': axis[order], 'slice_index': slice_index[order]}


def test_brain_silos_are_contiguous_single_orientation_and_disjoint():
  data = _fake_brain()
  out = site_shift.brain_silos(data, num_large=2, num_small=4, large_size=15,
                               small_size=(4, 6), test_fraction=0.25, seed=1,
                               shift_large=False)
  info = out['info']
  assert set(out['silos']) == {'large', 'small'}
  assert out['silos']['large']['x'].shape[0] == 2
  assert out['silos']['small']['x'].shape[0] == 4
  used = []
  for i, (tr, te) in enumerate(zip(info['train_indices'],
                                   info['test_indices'])):
    rows = np.array(tr + te)
    used.append(rows)
    assert len(set(data['axis'][rows])) == 1
    assert data['axis'][rows[0]] == info['axes'][i]
    # Contiguous: no slice of the same orientation lies inside the range
    # without belonging to the silo.
    same_axis = data['axis'] == info['axes'][i]
    pos = data['slice_index']
    inside = same_axis & (pos >= pos[rows].min()) & (pos <= pos[rows].max())
    assert inside.sum() == rows.size
    assert (len(rows) == 15) if i < 2 else (4 <= len(rows) <= 6)
  joined = np.concatenate(used)
  assert np.unique(joined).size == joined.size
  assert out['public_x'].shape[0] == len(data['axis']) - joined.size
  # Unshifted large silos hold exactly the source pixels of their rows.
  large = out['silos']['large']
  for c in range(2):
    tr = info['train_indices'][c]
    np.testing.assert_allclose(large['x'][c, :len(tr)],
                               data['image'][tr] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(large['y'][c, :len(tr)], data['mask'][tr])
    assert large['n'][c] == len(tr)
  assert 'simulated' in info['note'].lower()


def test_brain_silos_shift_small_silos_deterministically():
  data = _fake_brain()
  kw = dict(num_large=1, num_small=3, large_size=10, small_size=5, seed=2)
  a = site_shift.brain_silos(data, **kw)
  b = site_shift.brain_silos(data, **kw)
  np.testing.assert_array_equal(a['silos']['small']['x'],
                                b['silos']['small']['x'])
  tr = a['info']['train_indices'][1]
  raw = data['image'][tr] / 255.0
  assert not np.allclose(a['silos']['small']['x'][0, :len(tr)], raw)


def test_brain_silos_that_do_not_fit_raise():
  with pytest.raises(ValueError, match='contiguous'):
    site_shift.brain_silos(_fake_brain(), num_large=1, num_small=0,
                           large_size=31, small_size=5, seed=0)
  with pytest.raises(ValueError, match='>= 2 slices'):
    site_shift.brain_silos(_fake_brain(), num_large=0, num_small=2,
                           large_size=0, small_size=1, seed=0)
