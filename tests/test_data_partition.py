# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""Tests for fedhelp_jax.data.partition."""

import numpy as np
import pytest

from fedhelp_jax.data import partition


def _labels(n=600, num_classes=3, seed=0):
  return np.random.default_rng(seed).integers(0, num_classes, n)


def _assert_disjoint(silos, n):
  joined = np.concatenate(silos)
  assert np.unique(joined).size == joined.size, 'an example is reused'
  assert joined.min() >= 0 and joined.max() < n
  for s in silos:
    assert s.dtype == np.int64
    np.testing.assert_array_equal(s, np.sort(s))


def _equal_lists(a, b):
  return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


# ---------------------------------------------------------------------------
# large_small_split
# ---------------------------------------------------------------------------


@pytest.mark.parametrize('alpha', [None, 0.5])
def test_large_small_split_sizes_order_and_disjointness(alpha):
  labels = _labels()
  silos = partition.large_small_split(
      labels, num_large=2, num_small=5, large_size=150, small_size=(10, 30),
      label_skew_alpha=alpha, seed=3)
  assert len(silos) == 7
  assert [len(s) for s in silos[:2]] == [150, 150]  # Large silos first.
  assert all(10 <= len(s) <= 30 for s in silos[2:])
  _assert_disjoint(silos, len(labels))


def test_large_small_split_fixed_small_size_and_determinism():
  labels = _labels()
  kwargs = dict(num_large=1, num_small=4, large_size=100, small_size=20,
                label_skew_alpha=0.3)
  a = partition.large_small_split(labels, seed=7, **kwargs)
  b = partition.large_small_split(labels, seed=7, **kwargs)
  c = partition.large_small_split(labels, seed=8, **kwargs)
  assert [len(s) for s in a] == [100, 20, 20, 20, 20]
  assert _equal_lists(a, b)
  assert not _equal_lists(a, c)


def test_large_small_split_label_skew_is_stronger_for_small_alpha():
  labels = _labels(n=3000, num_classes=4)

  def mean_top_share(alpha):
    silos = partition.large_small_split(
        labels, num_large=0, num_small=40, large_size=0, small_size=50,
        label_skew_alpha=alpha, seed=0)
    shares = [np.bincount(labels[s], minlength=4).max() / len(s)
              for s in silos]
    return np.mean(shares)

  # IID silos of 50 from 4 balanced classes have a top-class share near 0.3;
  # Dirichlet(0.05) silos are nearly single-class.
  assert mean_top_share(0.05) > 0.85
  assert mean_top_share(1000.0) < 0.45


def test_large_small_split_skew_meets_sizes_when_classes_run_out():
  # 5 examples of class 1 among 200: skewed silos that want many class-1
  # examples must be topped up from class 0 to reach their exact size.
  labels = np.zeros(200, np.int64)
  labels[:5] = 1
  silos = partition.large_small_split(
      labels, num_large=0, num_small=10, large_size=0, small_size=20,
      label_skew_alpha=0.01, seed=1)
  assert [len(s) for s in silos] == [20] * 10
  _assert_disjoint(silos, 200)


def test_large_small_split_without_skew_accepts_masks():
  masks = np.zeros((50, 4, 4), np.int32)  # Only len() is used.
  silos = partition.large_small_split(masks, num_large=1, num_small=2,
                                      large_size=20, small_size=5, seed=0)
  assert [len(s) for s in silos] == [20, 5, 5]


@pytest.mark.parametrize('kwargs, match', [
    (dict(num_large=3, num_small=10, large_size=150, small_size=20),
     'dataset has 600'),
    (dict(num_large=0, num_small=30, large_size=0, small_size=(5, 25)),
     'max\\(small_size\\)=25'),
    (dict(num_large=-1, num_small=2, large_size=10, small_size=5),
     'num_large must be >= 0'),
    (dict(num_large=1, num_small=2, large_size=10, small_size=(9, 5)),
     'min <= max'),
    (dict(num_large=1, num_small=2, large_size=10, small_size=0),
     'small_size must be >= 1'),
    (dict(num_large=1, num_small=0, large_size=0, small_size=5),
     'large_size must be >= 1'),
    (dict(num_large=0, num_small=0, large_size=10, small_size=5),
     'at least one'),
    (dict(num_large=1, num_small=2, large_size=10, small_size=5,
          label_skew_alpha=0.0), 'label_skew_alpha must be > 0'),
])
def test_large_small_split_infeasible_requests_raise(kwargs, match):
  with pytest.raises(ValueError, match=match):
    partition.large_small_split(_labels(), seed=0, **kwargs)


def test_large_small_split_skew_needs_1d_int_labels():
  with pytest.raises(ValueError, match='1-D integer'):
    partition.large_small_split(np.zeros((50, 2)), num_large=0, num_small=2,
                                large_size=0, small_size=5,
                                label_skew_alpha=0.5, seed=0)


# ---------------------------------------------------------------------------
# dirichlet_label_skew
# ---------------------------------------------------------------------------


def test_dirichlet_label_skew_assigns_every_example_once():
  labels = _labels(n=500, num_classes=5)
  silos = partition.dirichlet_label_skew(labels, num_clients=8, alpha=0.3,
                                         min_size=10, seed=2)
  np.testing.assert_array_equal(np.sort(np.concatenate(silos)),
                                np.arange(500))
  assert min(len(s) for s in silos) >= 10
  again = partition.dirichlet_label_skew(labels, num_clients=8, alpha=0.3,
                                         min_size=10, seed=2)
  assert _equal_lists(silos, again)


def test_dirichlet_label_skew_small_alpha_concentrates_classes():
  labels = _labels(n=2000, num_classes=4)
  silos = partition.dirichlet_label_skew(labels, num_clients=10, alpha=0.05,
                                         min_size=1, seed=0)
  # Per class, the share held by its biggest client: ~0.1 if IID.
  top = [max(np.sum(labels[s] == c) for s in silos) / np.sum(labels == c)
         for c in range(4)]
  assert np.mean(top) > 0.5


def test_dirichlet_label_skew_errors():
  labels = _labels(n=20)
  with pytest.raises(ValueError, match='exceeds the 20 examples'):
    partition.dirichlet_label_skew(labels, num_clients=5, alpha=1.0,
                                   min_size=5, seed=0)
  with pytest.raises(ValueError, match='alpha must be > 0'):
    partition.dirichlet_label_skew(labels, num_clients=2, alpha=-1.0, seed=0)
  with pytest.raises(ValueError, match='raise alpha'):
    partition.dirichlet_label_skew(labels, num_clients=5, alpha=0.001,
                                   min_size=4, seed=0, max_tries=3)


# ---------------------------------------------------------------------------
# quantity_skew
# ---------------------------------------------------------------------------


def test_quantity_skew_power_law_sizes_match_hand_computation():
  # min_size=1 each; the other 96 split by 1 : 1/2 : 1/3 : 1/4 gives
  # 46.08, 23.04, 15.36, 11.52 -> floors 46, 23, 15, 11 (95), and the one
  # leftover goes to the largest remainder (0.52, client 3).
  silos = partition.quantity_skew(100, num_clients=4, exponent=1.0,
                                  min_size=1, seed=0)
  assert [len(s) for s in silos] == [47, 24, 16, 13]
  np.testing.assert_array_equal(np.sort(np.concatenate(silos)),
                                np.arange(100))


def test_quantity_skew_shares_and_equal_sizes():
  silos = partition.quantity_skew(8, num_clients=3, shares=[1, 1, 2],
                                  min_size=0, seed=0)
  assert [len(s) for s in silos] == [2, 2, 4]
  # 6 x (3/5, 1/5, 1/5) = 3.6, 1.2, 1.2: the leftover goes to client 0.
  first = partition.quantity_skew(6, num_clients=3, shares=[3, 1, 1],
                                  min_size=0, seed=0)
  assert [len(s) for s in first] == [4, 1, 1]
  equal = partition.quantity_skew(9, num_clients=3, exponent=0.0, seed=5)
  assert [len(s) for s in equal] == [3, 3, 3]
  assert not _equal_lists(
      equal, partition.quantity_skew(9, num_clients=3, exponent=0.0, seed=6))


def test_quantity_skew_errors():
  with pytest.raises(ValueError, match='exceeds num_examples=10'):
    partition.quantity_skew(10, num_clients=6, min_size=2, seed=0)
  with pytest.raises(ValueError, match='num_clients=3 entries'):
    partition.quantity_skew(10, num_clients=3, shares=[1, 2], seed=0)
  with pytest.raises(ValueError, match='shares must be finite'):
    partition.quantity_skew(10, num_clients=2, shares=[-1, 2], seed=0)


# ---------------------------------------------------------------------------
# train_test_split_per_client
# ---------------------------------------------------------------------------


def test_train_test_split_per_client_partitions_each_silo():
  silos = [np.arange(0, 10), np.arange(10, 14), np.array([20])]
  train, test = partition.train_test_split_per_client(silos, 0.3, seed=0)
  assert [len(t) for t in test] == [3, 1, 0]  # round(1.2) = 1; n=1 -> 0.
  for s, tr, te in zip(silos, train, test):
    np.testing.assert_array_equal(np.sort(np.concatenate([tr, te])), s)
    assert np.intersect1d(tr, te).size == 0
  with pytest.raises(ValueError, match='test_fraction'):
    partition.train_test_split_per_client(silos, 1.0, seed=0)
