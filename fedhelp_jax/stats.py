# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""Intervals and paired tests for comparisons over seeds AND test images.

A method's score in a table varies with the training seed and with which
images happen to be in the test set. Both are sampled, so an interval must
resample both: ``hierarchical_bootstrap`` draws seeds with replacement and,
within the draw, test images with replacement (the same image draw for every
seed, as the seeds are scored on the same images), and takes the mean.

For two methods scored on the same seeds and images (a paired design),
``paired_comparison`` gives the mean difference with the same bootstrap
interval, a paired t-test over seeds (``scipy.stats.ttest_rel``), the sign
count over seeds, and an exact McNemar test on the images of each seed
(``scipy.stats.binomtest`` on the discordant pairs), combined over seeds by
pooling the discordant counts.

Inputs are ``[seeds, images]`` arrays of per-image scores (1/0 correctness
for accuracy; any per-image score works for the bootstrap and the t-test).
A *ragged* input, where each data seed draws its own test set and the sets
differ in size (segmentation slices per silo), pads its short rows with NaN:
its rows hold different images, so each drawn seed resamples its own images,
and a seed's score is the mean of its own images.
"""

from typing import Any, Optional

import numpy as np
from scipy import stats as scipy_stats


def _row_counts(scores: np.ndarray) -> np.ndarray:
  """``[S]`` finite entries per row of ragged ``scores``, which must pad
  each non-empty row with trailing NaN only."""
  finite = np.isfinite(scores)
  if not finite[:, 0].all() or np.any(finite[:, :-1] < finite[:, 1:]):
    raise ValueError('ragged scores must pad each non-empty row with '
                     'trailing NaN only.')
  return finite.sum(axis=1)


def _ragged_draws(scores, counts, num_resamples, rng, statistic):
  """Resample seeds, then within each drawn seed its own images."""
  num_seeds, width = scores.shape
  columns = np.arange(width)
  draws = np.empty(num_resamples)
  for b in range(num_resamples):
    rows = rng.integers(0, num_seeds, num_seeds)
    n = counts[rows][:, None]
    cols = np.minimum((rng.random((num_seeds, width)) * n).astype(int),
                      n - 1)
    drawn = scores[rows[:, None], cols]
    draws[b] = statistic(np.where(columns < n, drawn, np.nan))
  return draws


def ragged_rows(rows) -> np.ndarray:
  """``[S, max N]`` float64 of 1-D per-seed ``rows``, short ones padded
  with trailing NaN (the ragged input of this module)."""
  rows = [np.asarray(r, np.float64).ravel() for r in rows]
  out = np.full((len(rows), max(len(r) for r in rows)), np.nan)
  for i, r in enumerate(rows):
    out[i, :len(r)] = r
  return out


def seed_means(scores) -> np.ndarray:
  """``[S]`` mean of each seed's own (finite) images."""
  return np.nanmean(np.asarray(scores, np.float64), axis=1)


def hierarchical_bootstrap(scores, *, num_resamples: int = 2000,
                           seed: int = 0, confidence: float = 0.95,
                           statistic=None) -> dict[str, Any]:
  """Mean and percentile CI of ``scores [S, N]`` over seeds and images.

  Args:
    scores: per-seed, per-image scores; NaN-padded rows when ragged.
    num_resamples: bootstrap draws.
    seed: of the resampling RNG (fixed: the interval is reproducible).
    confidence: coverage of the interval.
    statistic: optional ``f(scores [S', N']) -> float``; default the mean
      (for ragged scores, the mean of the seeds' own means).

  Returns:
    ``{'mean', 'sd' (over seeds of the per-seed means), 'ci95' [lo, hi],
    'n_seeds', 'n_test_images'}``; ragged scores report the smallest seed's
    image count and add ``n_test_images_per_seed``.
  """
  scores = np.asarray(scores, np.float64)
  if scores.ndim != 2 or not scores.size:
    raise ValueError(f'scores must be [seeds, images], got {scores.shape}.')
  ragged = bool(np.isnan(scores).any())
  rng = np.random.default_rng(seed)
  num_seeds, num_images = scores.shape
  if ragged:
    counts = _row_counts(scores)
    statistic = statistic or (lambda s: float(np.mean(seed_means(s))))
    draws = _ragged_draws(scores, counts, num_resamples, rng, statistic)
  else:
    statistic = statistic or (lambda s: float(np.mean(s)))
    draws = np.empty(num_resamples)
    for b in range(num_resamples):
      rows = rng.integers(0, num_seeds, num_seeds)
      cols = rng.integers(0, num_images, num_images)
      draws[b] = statistic(scores[np.ix_(rows, cols)])
  tail = (1.0 - confidence) / 2.0
  per_seed = seed_means(scores)
  out = {'mean': statistic(scores),
         'sd': float(np.std(per_seed, ddof=1)) if num_seeds > 1 else 0.0,
         'ci95': [float(np.quantile(draws, tail)),
                  float(np.quantile(draws, 1.0 - tail))],
         'n_seeds': int(num_seeds), 'n_test_images': int(num_images)}
  if ragged:
    out.update(n_test_images=int(counts.min()),
               n_test_images_per_seed=counts.tolist())
  return out


def mcnemar_exact(correct_a, correct_b) -> dict[str, Any]:
  """Exact McNemar test of two classifiers on the same images.

  Args:
    correct_a, correct_b: ``[N]`` (or ``[S, N]``, pooled) booleans.

  Returns:
    ``{'a_only', 'b_only', 'p_value'}``: images only A / only B got right,
    and the two-sided binomial p-value of ``a_only`` among the discordant.
  """
  a = np.asarray(correct_a, bool).ravel()
  b = np.asarray(correct_b, bool).ravel()
  a_only, b_only = int(np.sum(a & ~b)), int(np.sum(~a & b))
  discordant = a_only + b_only
  p = (1.0 if discordant == 0 else
       float(scipy_stats.binomtest(a_only, discordant, 0.5).pvalue))
  return {'a_only': a_only, 'b_only': b_only, 'p_value': p}


def paired_comparison(scores_a, scores_b, *, num_resamples: int = 2000,
                      seed: int = 0,
                      correct: Optional[bool] = None) -> dict[str, Any]:
  """A minus B on the same seeds and images.

  Args:
    scores_a, scores_b: ``[S, N]`` per-seed, per-image scores, row ``s``
      of both from the same seed (pair) and column ``n`` the same image.
    num_resamples: bootstrap draws for the interval of the difference.
    seed: of the resampling RNG.
    correct: whether the scores are 0/1 correctness (adds McNemar); default
      inferred from the values.

  Returns:
    ``{'mean', 'ci95', 'p_value' (paired t over seeds), 'sign_count'
    ([seeds A > B, seeds A < B]), 'n_seeds', 'n_test_images',
    'detectable'}`` plus ``'mcnemar'`` for correctness scores.
    ``detectable`` is False when the interval contains 0: "no detectable
    difference", not a win or a loss.
  """
  a = np.asarray(scores_a, np.float64)
  b = np.asarray(scores_b, np.float64)
  if a.shape != b.shape or a.ndim != 2:
    raise ValueError(f'paired scores must share one [seeds, images] shape; '
                     f'got {a.shape} and {b.shape}.')
  if not np.array_equal(np.isnan(a), np.isnan(b)):
    raise ValueError('paired ragged scores must pad the same entries.')
  diff = hierarchical_bootstrap(a - b, num_resamples=num_resamples, seed=seed)
  mean_a, mean_b = seed_means(a), seed_means(b)
  per_seed = mean_a - mean_b
  if a.shape[0] > 1 and np.any(per_seed != per_seed[0]):
    p_value = float(scipy_stats.ttest_rel(mean_a, mean_b).pvalue)
  else:  # One seed, or a constant difference: the t-test is undefined.
    p_value = float('nan')
  out = {'mean': diff['mean'], 'ci95': diff['ci95'], 'p_value': p_value,
         'sign_count': [int(np.sum(per_seed > 0)), int(np.sum(per_seed < 0))],
         'n_seeds': diff['n_seeds'], 'n_test_images': diff['n_test_images'],
         'detectable': not diff['ci95'][0] <= 0.0 <= diff['ci95'][1]}
  if 'n_test_images_per_seed' in diff:
    out['n_test_images_per_seed'] = diff['n_test_images_per_seed']
  if correct is None:
    correct = bool(np.all(np.isin(a, (0.0, 1.0)))
                   and np.all(np.isin(b, (0.0, 1.0))))
  if correct:
    # Pooled over seeds (the seeds share the images, so the pooled p-value
    # is a summary, not an independent test), and per seed.
    out['mcnemar'] = mcnemar_exact(a > 0.5, b > 0.5)
    out['mcnemar']['per_seed_p_values'] = [
        mcnemar_exact(ra > 0.5, rb > 0.5)['p_value'] for ra, rb in zip(a, b)]
  return out
