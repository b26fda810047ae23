# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""Clustered silos: each hidden cluster's labelling rule and rotation, on
training and test images alike, and the cluster labels pFedNet's oracle
graph and graph-quality report read."""

import numpy as np
import pytest

from conftest import make_group
from fedhelp_jax import experiment


def _fed():
  rng = np.random.default_rng(0)
  fed = {'large': make_group(rng, [6, 5], num_classes=4),
         'small': make_group(rng, [3, 4, 2, 3], num_classes=4)}
  return fed


@pytest.mark.parametrize('shift', ['labels', 'rotation', 'both'])
def test_cluster_shift_applies_each_clusters_rule(shift):
  fed = _fed()
  out, clusters = experiment.cluster_shift(fed, 3, shift, 4, seed=0)
  assert clusters == [0, 1, 2, 0, 1, 2]
  perms = experiment.cluster_permutations(3, 4, seed=0)
  assert len({tuple(p) for p in perms}) == 3
  np.testing.assert_array_equal(perms[0], np.arange(4))
  node = 0
  for g in ('large', 'small'):
    for c in range(len(fed[g]['n'])):
      k = clusters[node]
      node += 1
      labels = perms[k] if shift != 'rotation' else np.arange(4)
      np.testing.assert_array_equal(out[g]['y'][c], labels[fed[g]['y'][c]])
      np.testing.assert_array_equal(out[g]['test_y'][c],
                                    labels[fed[g]['test_y'][c]])
      turns = k if shift != 'labels' else 0
      np.testing.assert_array_equal(
          out[g]['x'][c], np.rot90(fed[g]['x'][c], k=turns, axes=(1, 2)))
      np.testing.assert_array_equal(
          out[g]['test_x'][c],
          np.rot90(fed[g]['test_x'][c], k=turns, axes=(1, 2)))
  # The input federation is left as it was.
  np.testing.assert_array_equal(fed['small']['y'], _fed()['small']['y'])


def test_unknown_cluster_shift_is_refused():
  with pytest.raises(ValueError, match='cluster_shift'):
    experiment.cluster_shift(_fed(), 3, 'mirror', 4, seed=0)
