# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""pFedNet similarity graph (numpy, once on the host).

Client sketches (label proportions, mean input or mask), kNN / complete /
star edge lists and the incidence matrix ``Q`` (``[N, E]``, +1/-1 per edge).
"""

import warnings
from typing import Sequence

import numpy as np


def client_sketch_label_proportions(labels_per_client: Sequence[np.ndarray],
                                    num_classes: int) -> np.ndarray:
  """Label sketch of the official tabular code.

  ``s_n[c] = #(samples of client n with label c) / #(samples of all
  clients)``: divided by the GLOBAL count, as in the code, so the sketch also
  carries the client's size.

  Args:
    labels_per_client: N integer arrays of class labels (any shape).
    num_classes: number of classes C.

  Returns:
    ``[N, C]`` float64 sketches.
  """
  counts = np.stack([
      np.bincount(np.asarray(y).reshape(-1), minlength=num_classes)
      [:num_classes] for y in labels_per_client]).astype(np.float64)
  return counts / max(counts.sum(), 1.0)


def client_sketch_mean(x_per_client: Sequence[np.ndarray]) -> np.ndarray:
  """Mean-input sketch (the official segmentation code's mean image).

  Args:
    x_per_client: N arrays ``[n_k, ...]`` of client inputs.

  Returns:
    ``[N, F]`` float64 sketches, ``F = prod(...)``: each client's mean input
    over its samples, flattened; NaN (e.g. an empty client) becomes 0.
  """
  out = []
  for x in x_per_client:
    x = np.asarray(x, np.float64)
    with np.errstate(invalid='ignore', divide='ignore'):
      m = x.mean(axis=0) if x.shape[0] else np.full(x.shape[1:], np.nan)
    out.append(np.nan_to_num(m.reshape(-1), nan=0.0))
  return np.stack(out)


_SKLEARN_METRIC = {'euclidean': 'euclidean', 'l1': 'manhattan'}


def knn_edges(sketches: np.ndarray, k: int = 3,
              metric: str = 'euclidean') -> np.ndarray:
  """Undirected kNN graph: the SYMMETRIC UNION of every client's k nearest.

  Edge (i, j) is kept when j is among the k nearest of i OR i among the k
  nearest of j (the official imaging code; the tabular code kept only the
  upper triangle of the directed graph and so dropped some edges).

  ``k`` is clamped to ``N - 1`` (with a warning): asking for at least as
  many neighbours as there are other clients gives the complete graph.

  Args:
    sketches: ``[N, F]`` client sketches.
    k: neighbours per client.
    metric: 'euclidean' or 'l1' (the imaging code's entrywise L1 distance).

  Returns:
    ``[E, 2]`` int64 array of pairs ``i < j``, sorted lexicographically.
  """
  if metric not in _SKLEARN_METRIC:
    raise ValueError(f"metric must be 'euclidean' or 'l1', got {metric!r}.")
  x = np.asarray(sketches, np.float64).reshape(len(sketches), -1)
  n = x.shape[0]
  if k < 1:
    raise ValueError(f'k must be >= 1, got {k}.')
  if n < 2:
    return np.zeros((0, 2), np.int64)
  if k > n - 1:
    warnings.warn(f'knn_edges: k={k} >= N={n} clients; clamped to k={n - 1} '
                  '(the complete graph).')
    k = n - 1
  # Lazy: the compiled round and benchmarks must not need scikit-learn.
  from sklearn import neighbors  # pylint: disable=g-import-not-at-top
  adj = neighbors.kneighbors_graph(
      x, n_neighbors=k, mode='connectivity', metric=_SKLEARN_METRIC[metric],
      include_self=False).toarray() > 0
  adj = adj | adj.T
  i, j = np.nonzero(np.triu(adj, 1))
  return np.stack([i, j], axis=1).astype(np.int64)


def complete_edges(num_nodes: int) -> np.ndarray:
  """``[N(N-1)/2, 2]`` all pairs ``i < j``, sorted."""
  i, j = np.triu_indices(num_nodes, 1)
  return np.stack([i, j], axis=1).astype(np.int64)


def star_edges(num_nodes: int, center: int = 0) -> np.ndarray:
  """``[N-1, 2]`` edges between ``center`` and every other node (i < j)."""
  if not 0 <= center < num_nodes:
    raise ValueError(f'center={center} is not a node of {num_nodes}.')
  others = np.array([n for n in range(num_nodes) if n != center], np.int64)
  c = np.full_like(others, center)
  return np.stack([np.minimum(c, others), np.maximum(c, others)], axis=1)


def cluster_edges(clusters: Sequence[int]) -> np.ndarray:
  """``[E, 2]`` every pair ``i < j`` of nodes with the same cluster label
  (the 'oracle' graph), sorted."""
  labels = np.asarray(clusters)
  pairs = complete_edges(labels.shape[0])
  return pairs[labels[pairs[:, 0]] == labels[pairs[:, 1]]]


def random_edges(num_nodes: int, num_edges: int, seed: int = 0) -> np.ndarray:
  """``[E, 2]`` ``num_edges`` distinct pairs ``i < j`` drawn uniformly
  (the 'random' ablation: as many edges as kNN, no similarity), sorted."""
  pairs = complete_edges(num_nodes)
  num_edges = min(int(num_edges), len(pairs))
  pick = np.random.default_rng(seed).choice(len(pairs), num_edges,
                                            replace=False)
  return pairs[np.sort(pick)]


def graph_quality(edges: np.ndarray, clusters: Sequence[int]) -> dict:
  """Edges inside vs across the hidden clusters, and how many of the
  within-cluster pairs the graph has (its recall)."""
  labels = np.asarray(clusters)
  edges = np.asarray(edges, np.int64).reshape(-1, 2)
  inside = int(np.sum(labels[edges[:, 0]] == labels[edges[:, 1]]))
  possible = len(cluster_edges(labels))
  return {'edges': int(len(edges)), 'inside': inside,
          'across': int(len(edges)) - inside,
          'inside_fraction': inside / len(edges) if len(edges) else None,
          'within_cluster_pairs': possible,
          'recall': inside / possible if possible else None}


def incidence_matrix(edges: np.ndarray, num_nodes: int) -> np.ndarray:
  """Incidence (difference) matrix ``Q``.

  Args:
    edges: ``[E, 2]`` node pairs ``(i, j)``, ``i != j``.
    num_nodes: N.

  Returns:
    ``[N, E]`` float32 with column ``e = e_i - e_j``; ``Q @ Q.T`` is the
    graph Laplacian and ``(Q.T @ Z)[e] = z_i - z_j``.
  """
  edges = np.asarray(edges, np.int64).reshape(-1, 2)
  if edges.size and (edges.min() < 0 or edges.max() >= num_nodes):
    raise ValueError(f'Edge endpoints must lie in [0, {num_nodes}).')
  if np.any(edges[:, 0] == edges[:, 1]):
    raise ValueError('Self-loops are not edges of the similarity graph.')
  q = np.zeros((num_nodes, edges.shape[0]), np.float32)
  cols = np.arange(edges.shape[0])
  q[edges[:, 0], cols] = 1.0
  q[edges[:, 1], cols] = -1.0
  return q
