# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""Shared test fixtures: tiny synthetic federations and models."""

import os

# Tests run on CPU with small shapes; keep XLA from grabbing every core for
# one compile and from preallocating memory.
os.environ.setdefault('JAX_PLATFORMS', 'cpu')

import numpy as np  # pylint: disable=g-import-not-at-top
import pytest  # pylint: disable=g-import-not-at-top


def make_group(rng, sizes, *, hw=8, num_classes=2, test_n=6, seg=False):
  """A packed group (numpy) with silos of the given sizes."""
  c, n = len(sizes), max(sizes)
  x = np.zeros((c, n, hw, hw, 1), np.float32)
  y_shape = (c, n, hw, hw) if seg else (c, n)
  y = np.zeros(y_shape, np.int32)
  for i, s in enumerate(sizes):
    x[i, :s] = rng.random((s, hw, hw, 1), dtype=np.float32)
    y[i, :s] = rng.integers(0, num_classes, (s,) + y_shape[2:])
  tx = rng.random((c, test_n, hw, hw, 1), dtype=np.float32)
  ty = rng.integers(0, num_classes, (c, test_n) + y_shape[2:]).astype(np.int32)
  return {'x': x, 'y': y, 'n': np.asarray(sizes, np.int32), 'test_x': tx,
          'test_y': ty, 'test_n': np.full((c,), test_n, np.int32)}


@pytest.fixture
def two_groups():
  rng = np.random.default_rng(0)
  data = {'large': make_group(rng, [24, 20]),
          'small': make_group(rng, [5, 7, 3])}
  total = sum(d['n'].sum() for d in data.values())
  weights = {g: (d['n'] / total).astype(np.float32) for g, d in data.items()}
  return data, weights
