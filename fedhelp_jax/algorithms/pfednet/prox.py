# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""pFedNet server prox: the graph-fused group lasso, solved by ADMM.

``lam * sum_{(i,j) in E} ||z_i - z_j||_2`` on the personalized parts, with
an N x N Laplacian eigendecomposition; jitted, ``lam``, ``eta``, ``rho`` may
be traced (vmapped in a sweep).

Conventions: ``Z`` is ``[N, d2]`` with ONE ROW PER CLIENT (the paper and the
official code use the transpose, ``Z in R^{d2 x N}``), ``Q`` is ``[N, E]`` and
``Q.T @ Z`` is ``[E, d2]`` with row ``e = (i, j)`` equal to ``z_i - z_j``.
"""

from typing import Optional

import jax
from jax import lax
import jax.numpy as jnp


def laplacian_eigh(incidence: jax.Array) -> tuple[jax.Array, jax.Array]:
  """``(sigma [N], P [N, N])`` with ``Q Q^T = P diag(sigma) P^T``."""
  q = jnp.asarray(incidence, jnp.float32)
  return jnp.linalg.eigh(q @ q.T)


def graph_prox_admm(z_t: jax.Array, grads: jax.Array, incidence: jax.Array,
                    *, lam, eta, rho=1.0, num_iters: int = 100,
                    tol: Optional[float] = None,
                    eigh_factor: Optional[tuple[jax.Array, jax.Array]] = None
                    ) -> jax.Array:
  """pFedNet's server step on the personalized parts.

  Solves (fixed anchor ``Z_t``, i.e. one proximal-gradient step)::

    argmin_Z <G, Z> + lam * sum_e ||(Q^T Z)_e||_2 + 1/(2 eta) ||Z - Z_t||_F^2

  which is the prox of ``eta * lam * ||Q^T Z||_{1,2}`` at ``V = Z_t - eta G``.
  ADMM on the split ``W = Q^T Z`` with scaled dual ``U`` and penalty ``rho``::

    Z <- (I + eta rho Q Q^T)^{-1} (V + eta rho Q (W - U))
    W_e <- max(0, 1 - lam / (rho ||v_e||)) v_e,   v = Q^T Z + U
    U <- U + Q^T Z - W

  The N x N system uses the eigendecomposition of the Laplacian ``Q Q^T``
  (independent of ``lam``, ``eta``, ``rho``, so ``vmap`` over them keeps it
  unbatched). ``W`` starts at ``Q^T V`` and ``U`` at 0 (the official code
  starts both at 0); with ``lam = 0`` this is a fixed point, so the output is
  exactly ``V`` (the Z-step is written as ``V`` plus a correction that is
  then exactly 0, so no silo leaks into another through rounding).
  Convergence speed depends on ``eta * rho * sigma(QQ^T)``; ``rho`` of order ``1 / eta`` balances the two
  terms of the Z-system.

  Args:
    z_t: ``[N, d2]`` current personalized parts, one row per client.
    grads: ``[N, d2]`` client (pseudo-)gradients, already weighted.
    incidence: ``[N, E]`` incidence matrix ``Q`` (``incidence_matrix``).
    lam: graph-lasso strength (scalar, may be traced / vmapped).
    eta: proximal step (scalar, may be traced).
    rho: ADMM penalty (scalar, may be traced).
    num_iters: ADMM iterations (static); the cap when ``tol`` is given.
    tol: if set, stop early once the primal and dual residuals pass Boyd et
      al.'s test with ``eps_abs = eps_rel = tol`` (``lax.while_loop``).
    eigh_factor: optional precomputed ``laplacian_eigh(incidence)``.

  Returns:
    ``[N, d2]`` the new personalized parts ``Z``.
  """
  z_t = jnp.asarray(z_t)
  dtype = z_t.dtype
  q = jnp.asarray(incidence, dtype)
  lam, eta, rho = (jnp.asarray(a, dtype) for a in (lam, eta, rho))
  sigma, p = eigh_factor if eigh_factor is not None else laplacian_eigh(q)
  sigma, p = sigma.astype(dtype), p.astype(dtype)
  inv_diag = 1.0 / (1.0 + eta * rho * jnp.maximum(sigma, 0.0))
  v = z_t - eta * jnp.asarray(grads, dtype)
  num_nodes, dim = z_t.shape
  num_edges = q.shape[1]

  qv = q.T @ v

  def z_step(w, u):
    # (I + eta rho QQ^T)^{-1} (V + eta rho Q (W - U)), written as V plus a
    # correction: with lam = 0 the correction is exactly 0 (W = Q^T V, U = 0),
    # so silos stay bit-for-bit independent instead of being mixed by the
    # rounding of the N x N solve.
    rhs = eta * rho * (q @ (w - u - qv))
    return v + p @ (inv_diag[:, None] * (p.T @ rhs))

  def w_step(qz, u):
    x = qz + u
    norm = jnp.sqrt(jnp.sum(x * x, axis=1, keepdims=True))
    # Guard ||x|| = 0: the shrink factor is 0 there (and x is 0 anyway).
    scale = jnp.maximum(0.0, 1.0 - lam / (rho * jnp.maximum(norm, 1e-30)))
    return scale * x

  def step(carry):
    _, w, u = carry
    z = z_step(w, u)
    qz = q.T @ z
    w_new = w_step(qz, u)
    u_new = u + qz - w_new
    return z, w_new, u_new, qz

  w0 = qv
  u0 = jnp.zeros((num_edges, dim), dtype)
  init = (v, w0, u0)
  if tol is None:
    z, _, _ = lax.fori_loop(0, num_iters, lambda _, c: step(c)[:3], init)
    return z

  tol = jnp.asarray(tol, dtype)
  sqrt_p = jnp.sqrt(jnp.asarray(max(num_edges * dim, 1), dtype))
  sqrt_n = jnp.sqrt(jnp.asarray(num_nodes * dim, dtype))

  def body(state):
    k, z, w, u, _ = state
    z, w_new, u_new, qz = step((z, w, u))
    r = jnp.linalg.norm(qz - w_new)
    s = rho * jnp.linalg.norm(q @ (w_new - w))
    eps_pri = tol * sqrt_p + tol * jnp.maximum(jnp.linalg.norm(qz),
                                               jnp.linalg.norm(w_new))
    eps_dual = tol * sqrt_n + tol * rho * jnp.linalg.norm(q @ u_new)
    return k + 1, z, w_new, u_new, (r <= eps_pri) & (s <= eps_dual)

  state = (jnp.asarray(0), *init, jnp.asarray(False))
  state = lax.while_loop(lambda s: (s[0] < num_iters) & ~s[4], body, state)
  return state[1]
