# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""pFedNet numerics: partition, graph prox, TV prox, ternarization, encoding.

References are independent of the code under test: the graph prox is checked
against FISTA on its dual in float64 numpy (run to a duality gap near machine
precision), the TV prox against Condat's direct algorithm.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedhelp_jax.algorithms.pfednet import encode as encode_lib
from fedhelp_jax.algorithms.pfednet import graph as graph_lib
from fedhelp_jax.algorithms.pfednet import params as params_lib
from fedhelp_jax.algorithms.pfednet import prox as prox_lib
from fedhelp_jax.algorithms.pfednet import tv as tv_lib
from tests import tv_reference


def _graph_prox_reference(v, incidence, c, iters=20000):
  """``argmin_Z 1/2||Z - V||^2 + c sum_e ||(Q^T Z)_e||_2`` by dual FISTA.

  Dual: ``min_{||Y_e|| <= c} 1/2 ||V - Q Y||^2`` with ``Z = V - Q Y``.
  """
  v = np.asarray(v, np.float64)
  q = np.asarray(incidence, np.float64)
  y = np.zeros((q.shape[1], v.shape[1]))
  y_prev, t = y.copy(), 1.0
  step = 1.0 / np.linalg.norm(q, 2) ** 2
  for _ in range(iters):
    y_new = y + step * (q.T @ (v - q @ y))
    norm = np.linalg.norm(y_new, axis=1, keepdims=True)
    y_new *= np.minimum(1.0, c / np.maximum(norm, 1e-300))
    t_new = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * t * t))
    y, y_prev, t = y_new + (t - 1.0) / t_new * (y_new - y_prev), y_new, t_new
  return v - q @ y_prev


def _graph_objective(z, v, incidence, c):
  z, v = np.asarray(z, np.float64), np.asarray(v, np.float64)
  diffs = np.asarray(incidence, np.float64).T @ z
  return 0.5 * np.sum((z - v) ** 2) + c * np.sum(
      np.linalg.norm(diffs, axis=1))


@pytest.fixture(scope='module')
def graph_problem():
  rng = np.random.default_rng(0)
  num_nodes, dim = 6, 4
  z_t = rng.normal(size=(num_nodes, dim)).astype(np.float32)
  grads = rng.normal(size=(num_nodes, dim)).astype(np.float32)
  edges = graph_lib.knn_edges(rng.normal(size=(num_nodes, 2)), k=2)
  return z_t, grads, graph_lib.incidence_matrix(edges, num_nodes)


@pytest.mark.parametrize('lam', [0.05, 0.4, 2.0])
@pytest.mark.parametrize('tol', [None, 1e-7])
def test_graph_prox_admm_matches_reference_solve(graph_problem, lam, tol):
  z_t, grads, q = graph_problem
  eta = 0.5
  z = prox_lib.graph_prox_admm(z_t, grads, q, lam=lam, eta=eta, rho=1.0,
                                  num_iters=3000, tol=tol)
  v = z_t - eta * grads
  ref = _graph_prox_reference(v, q, eta * lam)
  np.testing.assert_allclose(np.asarray(z), ref, atol=2e-5)
  # The reference really is the minimiser (smaller objective than ADMM's
  # float32 answer up to rounding), and the problem is not trivial: the
  # solution is neither V nor fully fused.
  assert _graph_objective(ref, v, q, eta * lam) <= _graph_objective(
      z, v, q, eta * lam) + 1e-6
  assert np.max(np.abs(ref - v)) > 1e-2


def test_graph_prox_is_jittable_and_vmaps_over_lambda(graph_problem):
  z_t, grads, q = graph_problem
  lams = jnp.array([0.0, 0.3, 1.0])
  fn = jax.jit(jax.vmap(lambda lam: prox_lib.graph_prox_admm(
      z_t, grads, q, lam=lam, eta=1.0, num_iters=500)))
  out = fn(lams)
  for k, lam in enumerate(lams):
    single = prox_lib.graph_prox_admm(z_t, grads, q, lam=lam, eta=1.0,
                                         num_iters=500)
    np.testing.assert_allclose(out[k], single, atol=1e-5)


def test_lambda_zero_gives_independent_personalized_parts(graph_problem):
  z_t, grads, q = graph_problem
  z = prox_lib.graph_prox_admm(z_t, grads, q, lam=0.0, eta=0.7)
  np.testing.assert_allclose(z, z_t - 0.7 * grads, atol=1e-6)
  # Changing one silo's gradient changes only that silo's row.
  grads2 = grads.copy()
  grads2[3] += 5.0
  z2 = prox_lib.graph_prox_admm(z_t, grads2, q, lam=0.0, eta=0.7)
  changed = np.any(np.abs(np.asarray(z2) - np.asarray(z)) > 1e-6, axis=1)
  assert changed.tolist() == [False, False, False, True, False, False]


def test_huge_lambda_merges_connected_silos():
  rng = np.random.default_rng(1)
  # Two components: {0, 1, 2} (a path) and {3, 4}; node 5 is isolated.
  edges = np.array([[0, 1], [1, 2], [3, 4]])
  q = graph_lib.incidence_matrix(edges, 6)
  z_t = rng.normal(size=(6, 3)).astype(np.float32)
  grads = rng.normal(size=(6, 3)).astype(np.float32)
  z = np.asarray(prox_lib.graph_prox_admm(z_t, grads, q, lam=1e4, eta=1.0,
                                             num_iters=500))
  v = z_t - grads
  for comp in ([0, 1, 2], [3, 4], [5]):
    np.testing.assert_allclose(z[comp], np.broadcast_to(
        v[comp].mean(0), (len(comp), 3)), atol=1e-4)
  assert np.max(np.abs(z[0] - z[3])) > 1e-2  # Components stay apart.


def test_graphs_and_incidence():
  sketches = np.array([[0.0], [0.1], [0.2], [5.0], [5.1]])
  edges = graph_lib.knn_edges(sketches, k=1)
  # Symmetric union of nearest neighbours: 0-1, 1-2 (2's nearest is 1), 3-4.
  assert edges.tolist() == [[0, 1], [1, 2], [3, 4]]
  assert graph_lib.complete_edges(4).shape == (6, 2)
  assert graph_lib.star_edges(4, center=2).tolist() == [[0, 2], [1, 2],
                                                         [2, 3]]
  q = graph_lib.incidence_matrix(edges, 5)
  z = np.arange(10.0).reshape(5, 2)
  np.testing.assert_array_equal(q.T @ z, z[edges[:, 0]] - z[edges[:, 1]])
  lap = q @ q.T
  np.testing.assert_array_equal(np.diag(lap), [1, 2, 1, 1, 1])
  with pytest.warns(UserWarning, match='clamped'):
    assert graph_lib.knn_edges(sketches, k=9).shape == (10, 2)
  with pytest.raises(ValueError, match='Self-loops'):
    graph_lib.incidence_matrix(np.array([[1, 1]]), 3)


def test_client_sketches():
  labels = [np.array([0, 0, 1]), np.array([1, 1, 1, 2])]
  s = graph_lib.client_sketch_label_proportions(labels, num_classes=3)
  np.testing.assert_allclose(s, [[2 / 7, 1 / 7, 0], [0, 3 / 7, 1 / 7]])
  x = [np.ones((2, 2, 2)), np.zeros((0, 2, 2))]
  m = graph_lib.client_sketch_mean(x)
  np.testing.assert_array_equal(m, [[1, 1, 1, 1], [0, 0, 0, 0]])


# ---------------------------------------------------------------------------
# TV prox.
# ---------------------------------------------------------------------------


def _runs(u):
  u = np.asarray(u)
  return 1 + int(np.sum(u[1:] != u[:-1]))


@pytest.mark.parametrize('d', [1, 2, 3, 17, 300])
@pytest.mark.parametrize('gamma', [0.0, 0.02, 0.3, 3.0])
def test_tv_prox_matches_condat_on_random_signals(d, gamma):
  g = np.random.default_rng(d).normal(size=d).astype(np.float32)
  u = jax.jit(tv_lib.tv_prox)(g, gamma)
  np.testing.assert_allclose(u, tv_reference.tv_prox_exact_numpy(g, gamma),
                             atol=2e-5)


def test_tv_prox_known_solutions():
  # A step of height 2 with gamma = 0.5: each side moves by gamma / length.
  g = np.array([0, 0, 0, 0, 2, 2, 2, 2], np.float32)
  u = tv_lib.tv_prox(g, 0.5)
  np.testing.assert_allclose(u, [0.125] * 4 + [1.875] * 4, atol=1e-6)
  # A spike of height 1 in a length-5 signal: for gamma = 1 the dual
  # w_i = sum_{k<=i} (u_k - g_k) stays within [-1, 1] with u = mean = 0.2,
  # so the solution is the constant mean.
  spike = np.array([0, 0, 1, 0, 0], np.float32)
  np.testing.assert_allclose(tv_lib.tv_prox(spike, 1.0),
                             np.full(5, 0.2), atol=1e-6)
  np.testing.assert_allclose(
      tv_lib.tv_prox(spike, 0.25),
      tv_reference.tv_prox_exact_numpy(spike, 0.25), atol=1e-6)


def test_tv_prox_is_exactly_piecewise_constant():
  rng = np.random.default_rng(2)
  levels = rng.normal(size=6)
  g = (np.repeat(levels, 50) + 0.05 * rng.normal(size=300)).astype(np.float32)
  assert _runs(g) == 300
  for gamma in (0.3, 1.0, 3.0, 10.0):
    u = np.asarray(tv_lib.tv_prox(g, gamma))
    ref = tv_reference.tv_prox_exact_numpy(g, gamma)
    np.testing.assert_allclose(u, ref, atol=1e-5)
    # Exact ties, not just small differences: the runs (bit-equal values)
    # are exactly the reference's runs.
    assert _runs(u) == _runs(ref) < 25
  # For gamma = 10 only the 6 true levels remain.
  assert _runs(u) == 6
  # Huge gamma: one run equal to the mean.
  big = np.asarray(tv_lib.tv_prox(g, 1e6))
  assert _runs(big) == 1
  np.testing.assert_allclose(big, np.full_like(g, g.mean()), atol=1e-5)


def test_tv_prox_iterative_methods_approach_the_exact_one():
  g = np.random.default_rng(3).normal(size=64).astype(np.float32)
  exact = tv_reference.tv_prox_exact_numpy(g, 0.2)
  for solver in (tv_reference.tv_prox_admm, tv_reference.tv_prox_dual):
    u = solver(g, 0.2, num_iters=3000)
    np.testing.assert_allclose(u, exact, atol=1e-3)


def test_ternarize():
  v = np.array([0.1, -3.0, 0.2, 2.0, -0.05, 1.0, 0.0, 0.3, -0.4, 0.6],
               np.float32)
  t = np.asarray(tv_lib.ternarize(v, 0.2))
  m = (3.0 + 2.0) / 2
  np.testing.assert_allclose(t, [0, -m, 0, m, 0, 0, 0, 0, 0, 0])
  with pytest.raises(ValueError, match='p must be'):
    tv_lib.ternarize(v, 0.0)
  # Ties at the threshold are all kept (whole runs), zeros never.
  runs = np.array([2.0, 2.0, 2.0, -1.0, -1.0, 0.0, 0.0, 0.0, 0.0, 0.0],
                  np.float32)
  np.testing.assert_allclose(tv_lib.ternarize(runs, 0.2),
                             [2, 2, 2, 0, 0, 0, 0, 0, 0, 0])
  np.testing.assert_allclose(tv_lib.ternarize(runs, 1.0),
                             [1.6, 1.6, 1.6, -1.6, -1.6, 0, 0, 0, 0, 0],
                             rtol=1e-6)


# ---------------------------------------------------------------------------
# Bytes on the wire.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize('vec', [
    np.random.default_rng(4).normal(size=1000),
    np.repeat([1.5, -2.0, 0.0], [300, 1, 50]),
    np.array([]),
    np.array([-0.0, 0.0, np.nan, np.inf, 7.0]),
])
def test_encode_decode_round_trip_is_bit_exact(vec):
  vec = np.asarray(vec, np.float32)
  out = encode_lib.decode(encode_lib.encode(vec))
  assert out.dtype == np.float32 and out.shape == vec.shape
  np.testing.assert_array_equal(out.view(np.uint32), vec.view(np.uint32))


def test_compression_ratio_of_piecewise_constant_vectors():
  rng = np.random.default_rng(5)
  noise = rng.normal(size=4000).astype(np.float32)
  assert encode_lib.raw_bytes(noise) == 16000
  # Random floats do not compress (the ratio is about 1 or below).
  assert encode_lib.compression_ratio(noise) < 1.1
  pwc = np.asarray(tv_lib.tv_prox(noise, 5.0))
  assert _runs(pwc) < 200
  assert encode_lib.compression_ratio(pwc) > 10.0
  tern = np.asarray(tv_lib.ternarize(noise, 0.2))
  assert encode_lib.compression_ratio(tern) > 1.5


# ---------------------------------------------------------------------------
# Partition.
# ---------------------------------------------------------------------------


def _params():
  return {'conv_0': {'kernel': np.zeros((3, 3, 1, 4)), 'bias': np.zeros(4)},
          'dense': {'kernel': np.zeros((4, 8))},
          'head': {'kernel': np.zeros((8, 2)), 'bias': np.zeros(2)}}


def test_partition_split_merge_round_trip():
  params = _params()
  labels = params_lib.partition_params(params, '^head/')
  assert labels['head']['kernel'] == params_lib.PERSONAL
  assert labels['dense']['kernel'] == params_lib.SHARED
  shared, personal = params_lib.split(params, labels)
  flat = params_lib.flatten_personal(personal)
  assert flat.shape == (8 * 2 + 2,)
  back = params_lib.merge(shared, params_lib.unflatten_personal(flat,
                                                                  personal))
  assert jax.tree.structure(back) == jax.tree.structure(params)
  # A predicate on path tuples works too.
  labels2 = params_lib.partition_params(params, lambda p: p[0] == 'head')
  assert labels2 == labels


def test_partition_strict_rejects_overlap_and_gaps():
  params = _params()
  labels = params_lib.partition_params_strict(params, '^(conv|dense)',
                                               '^head/')
  assert labels['conv_0']['bias'] == params_lib.SHARED
  # Substring matching as in the official code: 'kernel' matches both.
  with pytest.raises(ValueError, match='BOTH.*head/kernel'):
    params_lib.partition_params_strict(params, 'kernel|bias', '^head/')
  with pytest.raises(ValueError, match='NEITHER.*dense/kernel'):
    params_lib.partition_params_strict(params, '^conv', '^head/')
  with pytest.raises(TypeError, match='regex string or a callable'):
    params_lib.partition_params(params, 3)
