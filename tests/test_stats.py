# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""``fedhelp_jax.stats`` against hand computations and known limits."""

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from fedhelp_jax import stats


def test_stats_mcnemar_equals_the_binomial_tail_by_hand():
  # 7 images only A got right, 2 only B, 11 both, 5 neither.
  a = np.array([1] * 7 + [0] * 2 + [1] * 11 + [0] * 5, bool)
  b = np.array([0] * 7 + [1] * 2 + [1] * 11 + [0] * 5, bool)
  out = stats.mcnemar_exact(a, b)
  assert (out['a_only'], out['b_only']) == (7, 2)
  # Two-sided exact: 2 * P(X <= 2), X ~ Binomial(9, 1/2).
  hand = 2 * sum(math.comb(9, k) for k in range(3)) / 2**9
  assert out['p_value'] == pytest.approx(hand, rel=1e-12)
  assert stats.mcnemar_exact(a, a)['p_value'] == 1.0


def test_stats_bootstrap_matches_the_binomial_interval_for_one_seed():
  """One seed: only images vary, so the 95% interval of an accuracy p on
  N images is about p +- 1.96 sqrt(p (1 - p) / N)."""
  rng = np.random.default_rng(1)
  n = 600
  scores = (rng.random((1, n)) < 0.8).astype(float)
  out = stats.hierarchical_bootstrap(scores, num_resamples=4000)
  p = scores.mean()
  half = 1.96 * math.sqrt(p * (1 - p) / n)
  lo, hi = out['ci95']
  assert lo == pytest.approx(p - half, abs=0.006)
  assert hi == pytest.approx(p + half, abs=0.006)
  assert out['n_seeds'] == 1 and out['n_test_images'] == n
  assert out['mean'] == pytest.approx(p)


def test_stats_bootstrap_widens_with_seed_variation():
  """The same images, seeds that differ by a constant offset: the interval
  must cover the seed spread, which an images-only interval would miss."""
  rng = np.random.default_rng(2)
  base = rng.random(400)
  offsets = np.linspace(-0.1, 0.1, 10)[:, None]
  scores = base[None, :] + offsets
  images_only = stats.hierarchical_bootstrap(base[None, :])
  both = stats.hierarchical_bootstrap(scores)
  width = lambda r: r['ci95'][1] - r['ci95'][0]
  assert width(both) > width(images_only) + 0.03
  assert both['sd'] == pytest.approx(np.std(offsets, ddof=1))
  constant = stats.hierarchical_bootstrap(np.full((3, 5), 0.5))
  assert constant['ci95'] == [0.5, 0.5]


def test_stats_paired_comparison_says_when_no_difference_is_detectable():
  rng = np.random.default_rng(3)
  truth = rng.random((10, 500)) < 0.8
  noisy = lambda: truth ^ (rng.random((10, 500)) < 0.05)
  same = stats.paired_comparison(noisy(), noisy())  # Same method, twice.
  assert not same['detectable'] and same['ci95'][0] < 0 < same['ci95'][1]
  better = truth | (rng.random((10, 500)) < 0.3)  # A strictly better B.
  out = stats.paired_comparison(better, truth)
  assert out['detectable'] and out['ci95'][0] > 0
  assert out['sign_count'] == [10, 0]
  assert out['p_value'] < 1e-6
  assert out['mcnemar']['b_only'] == 0 and out['mcnemar']['p_value'] < 1e-6
  assert len(out['mcnemar']['per_seed_p_values']) == 10
  with pytest.raises(ValueError, match='share one'):
    stats.paired_comparison(truth, truth[:, :10])


def test_stats_ragged_bootstrap_resamples_each_seeds_own_images():
  """Seeds with their own test sets of different sizes (NaN-padded): the
  mean is the mean of the seeds' own means, and one padded seed's interval
  is the binomial one of its real images, not of the padded width."""
  rng = np.random.default_rng(4)
  n = 500
  one = np.full((1, 2 * n), np.nan)
  one[0, :n] = rng.random(n) < 0.7
  out = stats.hierarchical_bootstrap(one, num_resamples=4000)
  p = np.nanmean(one)
  half = 1.96 * math.sqrt(p * (1 - p) / n)
  assert out['ci95'][0] == pytest.approx(p - half, abs=0.006)
  assert out['ci95'][1] == pytest.approx(p + half, abs=0.006)
  assert out['n_test_images'] == n and out['n_test_images_per_seed'] == [n]
  ragged = np.array([[1.0, 0.0, 1.0, 1.0], [0.5, 0.25, np.nan, np.nan]])
  out = stats.hierarchical_bootstrap(ragged)
  assert out['mean'] == pytest.approx((0.75 + 0.375) / 2)
  assert out['sd'] == pytest.approx(np.std([0.75, 0.375], ddof=1))
  assert out['n_test_images_per_seed'] == [4, 2]
  # The lowest draw takes seed 2 twice, each time its 0.25 twice.
  assert 0.25 - 1e-12 <= out['ci95'][0] < out['ci95'][1] <= 1.0
  with pytest.raises(ValueError, match='trailing NaN'):
    stats.hierarchical_bootstrap(np.array([[1.0, np.nan, 0.0]]))


def test_stats_ragged_paired_comparison_uses_each_seeds_own_mean():
  a = np.array([[0.9, 0.8, 0.7], [0.6, 0.4, np.nan], [0.5, np.nan, np.nan]])
  b = a - np.array([[0.1], [0.3], [0.0]])
  out = stats.paired_comparison(a, b, correct=False)
  hand = [0.1, 0.3, 0.0]
  assert out['mean'] == pytest.approx(np.mean(hand))
  assert out['sign_count'] == [2, 0]
  assert out['n_test_images_per_seed'] == [3, 2, 1]
  t = np.mean(hand) / (np.std(hand, ddof=1) / math.sqrt(3))
  assert out['p_value'] == pytest.approx(2 * scipy_stats.t.sf(t, df=2))
  shifted = b.copy()
  shifted[2, 1] = 0.0
  with pytest.raises(ValueError, match='same entries'):
    stats.paired_comparison(a, shifted)


def test_stats_ragged_rows_pads_short_seeds_and_keeps_equal_ones_exact():
  padded = stats.ragged_rows([np.array([1, 0, 1]), np.array([0.5])])
  np.testing.assert_array_equal(padded, [[1, 0, 1], [0.5, np.nan, np.nan]])
  equal = stats.ragged_rows([np.array([0.25, 1.0])] * 2)
  assert not np.isnan(equal).any() and equal.shape == (2, 2)
