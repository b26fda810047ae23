# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""Comparison solvers of the 1-D TV prox (tests only).

The library solves the prox with ``algorithms.pfednet.tv.tv_prox``; these
are the independent computations it is pinned against: Condat's direct
algorithm in numpy (exact), a tridiagonal ADMM and FISTA on the dual.
"""

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np


def tv_prox_admm(g: jax.Array, gamma, *, num_iters: int = 100,
                 rho=1.0) -> jax.Array:
  """1-D TV prox by ADMM with O(d) tridiagonal solves (approximate).

  Split ``r = D u``, scaled dual ``omega``::

    u <- (I + rho D^T D)^{-1} (g + rho D^T (r - omega))
    r <- S_{gamma/rho}(D u + omega),   omega <- omega + D u - r

  ``I + rho D^T D`` is tridiagonal (diagonal ``1 + rho (1, 2, ..., 2, 1)``,
  off-diagonals ``-rho``) and solved by ``lax.linalg.tridiagonal_solve``
  (the official code instead eigendecomposes ``D^T D`` on 3000-long blocks).
  The output is the last ``u``: close to the prox, but NOT exactly piecewise
  constant (``D u`` is sparse only in the limit).

  Args:
    g: ``[d]`` vector.
    gamma: TV weight (scalar, may be traced).
    num_iters: ADMM iterations (static).
    rho: ADMM penalty (scalar, may be traced).

  Returns:
    ``[d]`` approximate prox.
  """
  g = jnp.asarray(g)
  d = g.shape[0]
  if d < 2:
    return g
  dt = g.dtype
  gamma, rho = jnp.asarray(gamma, dt), jnp.asarray(rho, dt)
  deg = jnp.concatenate([jnp.ones((1,), dt), jnp.full((d - 2,), 2.0, dt),
                         jnp.ones((1,), dt)])
  diag = 1.0 + rho * deg
  off = jnp.full((d,), -rho, dt)
  lower = off.at[0].set(0.0)
  upper = off.at[-1].set(0.0)

  def diff(x):
    return x[1:] - x[:-1]

  def diff_t(y):
    # (D^T y)_j = y_{j-1} - y_j with y_{-1} = y_{d-1} = 0.
    pad = jnp.concatenate([jnp.zeros((1,), dt), y, jnp.zeros((1,), dt)])
    return pad[:-1] - pad[1:]

  def body(_, carry):
    r, omega = carry
    rhs = g + rho * diff_t(r - omega)
    u = lax.linalg.tridiagonal_solve(lower, diag, upper, rhs[:, None])[:, 0]
    du = diff(u) + omega
    r = jnp.sign(du) * jnp.maximum(jnp.abs(du) - gamma / rho, 0.0)
    return r, omega + diff(u) - r

  zeros = jnp.zeros((d - 1,), dt)
  r, omega = lax.fori_loop(0, num_iters, body, (zeros, zeros))
  rhs = g + rho * diff_t(r - omega)
  return lax.linalg.tridiagonal_solve(lower, diag, upper, rhs[:, None])[:, 0]


def tv_prox_dual(g: jax.Array, gamma, *, num_iters: int = 1000) -> jax.Array:
  """1-D TV prox by FISTA on the box-constrained dual (approximate).

  ``min_{|w| <= gamma} 1/2 ||g - D^T w||^2``, step ``1/4`` (``||D D^T||
  < 4``), output ``u = g - D^T w``. Converges as O(1/k^2) in the dual, with
  a rate that degrades with the length of the longest run.

  Args:
    g: ``[d]`` vector.
    gamma: TV weight (scalar, may be traced).
    num_iters: iterations (static).

  Returns:
    ``[d]`` approximate prox.
  """
  g = jnp.asarray(g)
  d = g.shape[0]
  if d < 2:
    return g
  dt = g.dtype
  gamma = jnp.asarray(gamma, dt)
  zero = jnp.zeros((1,), dt)

  def primal(w):
    pad = jnp.concatenate([zero, w, zero])
    return g - (pad[:-1] - pad[1:])

  def body(_, carry):
    w, y, t = carry
    u = primal(y)
    w_new = jnp.clip(y + 0.25 * (u[1:] - u[:-1]), -gamma, gamma)
    t_new = 0.5 * (1.0 + jnp.sqrt(1.0 + 4.0 * t * t))
    y = w_new + ((t - 1.0) / t_new) * (w_new - w)
    return w_new, y, t_new

  w0 = jnp.zeros((d - 1,), dt)
  w, _, _ = lax.fori_loop(0, num_iters, body, (w0, w0, jnp.asarray(1.0, dt)))
  return primal(w)


def tv_prox_exact_numpy(g: np.ndarray, gamma: float) -> np.ndarray:
  """Condat's direct algorithm for 1-D TV denoising (host reference).

  L. Condat, "A Direct Algorithm for 1D Total Variation Denoising", IEEE
  Signal Processing Letters 20(11), 2013: an exact, sequential, O(d)
  typical (O(d^2) worst case) algorithm; float64.

  Args:
    g: ``[d]`` vector.
    gamma: TV weight (>= 0).

  Returns:
    ``[d]`` float64 prox.
  """
  y = np.asarray(g, np.float64).reshape(-1)
  n = y.size
  out = np.empty(n)
  if n == 0:
    return out
  lam = float(gamma)
  k = k0 = kplus = kminus = 0
  umin, umax = lam, -lam
  vmin, vmax = y[0] - lam, y[0] + lam
  while True:
    while k == n - 1:
      if umin < 0.0:  # vmin too high: a negative jump is needed.
        out[k0:kminus + 1] = vmin
        k0 = kminus + 1
        k = kminus = k0
        vmin = y[k]
        umin = lam
        umax = vmin + umin - vmax
      elif umax > 0.0:  # vmax too low: a positive jump is needed.
        out[k0:kplus + 1] = vmax
        k0 = kplus + 1
        k = kplus = k0
        vmax = y[k]
        umax = -lam
        umin = vmax + umax - vmin
      else:
        vmin += umin / (k - k0 + 1)
        out[k0:k + 1] = vmin
        return out
    umin += y[k + 1] - vmin
    if umin < -lam:  # Negative jump.
      out[k0:kminus + 1] = vmin
      k0 = kminus + 1
      k = kplus = kminus = k0
      vmin = y[k]
      vmax = vmin + 2 * lam
      umin, umax = lam, -lam
      continue
    umax += y[k + 1] - vmax
    if umax > lam:  # Positive jump.
      out[k0:kplus + 1] = vmax
      k0 = kplus + 1
      k = kplus = kminus = k0
      vmax = y[k]
      vmin = vmax - 2 * lam
      umin, umax = lam, -lam
      continue
    k += 1  # No jump: extend the current run.
    if umin >= lam:
      kminus = k
      vmin += (umin - lam) / (k - k0 + 1)
      umin = lam
    if umax <= -lam:
      kplus = k
      vmax += (umax + lam) / (k - k0 + 1)
      umax = -lam
