# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""Traced helpers that algorithms call inside the compiled round.

Nothing here compiles (no ``jit``, no mapping over silos, no sharding):
these are pure functions of ONE silo's local schedule and of a server's
weighted mean, traced into whatever program ``engine.py`` builds. The
local steps' ``lax.scan`` lives here because it is part of one silo's
update, not of the round's structure.
"""

import math
from typing import Any, Callable, Mapping, Optional

import jax
from jax import lax
import jax.numpy as jnp

from fedhelp_jax import types


def num_local_steps(max_examples: int, *, batch_size: int,
                    local_steps: Optional[int] = None,
                    local_epochs: Optional[float] = None) -> int:
  """Static number of scan steps for a group (its largest silo).

  Exactly one of ``local_steps`` (a fixed number of steps for every silo) and
  ``local_epochs`` (epochs over each silo's own data; silos with fewer
  examples take fewer, masked, steps) must be given.
  """
  if (local_steps is None) == (local_epochs is None):
    raise ValueError('Give exactly one of local_steps and local_epochs.')
  if local_steps is not None:
    return int(local_steps)
  return max(1, math.ceil(local_epochs * max_examples / batch_size))


def local_schedule(rng: jax.Array, n: jax.Array, max_examples: int, *,
                   batch_size: int, local_steps: Optional[int] = None,
                   local_epochs: Optional[float] = None):
  """Batch indices and the active-step mask for ONE silo.

  Valid examples (index < n) are shuffled once and then read cyclically, so
  each epoch sees every example once before any is repeated.

  Args:
    rng: the silo's data-order key.
    n: int32 scalar, the silo's real number of examples.
    max_examples: static padded size N of the group.
    batch_size: static batch size.
    local_steps: fixed number of steps (every silo).
    local_epochs: epochs over each silo's own data (masked steps).

  Returns:
    ``(idx [T, B] int32, active [T] bool)``.
  """
  steps = num_local_steps(max_examples, batch_size=batch_size,
                          local_steps=local_steps, local_epochs=local_epochs)
  valid = jnp.arange(max_examples) < n
  # Padded rows sort last, so perm[:n] is a uniform permutation of the valid
  # rows.
  keys = jnp.where(valid, jax.random.uniform(rng, (max_examples,)), 2.0)
  perm = jnp.argsort(keys)
  flat = jnp.arange(steps * batch_size) % jnp.maximum(n, 1)
  idx = perm[flat].reshape(steps, batch_size).astype(jnp.int32)
  if local_epochs is None:
    active = jnp.ones((steps,), bool)
  else:
    wanted = jnp.ceil(local_epochs * n / batch_size).astype(jnp.int32)
    active = jnp.arange(steps) < wanted
  return idx, active


def scan_local_steps(step_fn: Callable[..., Any], carry: Any, idx: jax.Array,
                     active: jax.Array, rng: jax.Array):
  """Runs ``step_fn(carry, batch_idx, rng) -> (carry, metrics)`` over steps.

  Inactive steps (beyond a small silo's epochs) leave the carry untouched
  and report zero metrics. They sit behind a ``lax.cond``: where silos run
  one at a time (the 'chunked' strategy with chunk 1, the CPU default) the
  padded steps are skipped, not computed and discarded -- with one local
  epoch and unequal silos (the FedHelp authors' split) about a third of the
  scanned steps are padding. Under ``vmap`` the cond lowers to a select, as
  before.

  Returns:
    ``(carry, metrics)`` with metrics stacked over steps, ``[T, ...]``.
  """
  keys = jax.random.split(rng, idx.shape[0])
  metric_shapes = jax.eval_shape(step_fn, carry, idx[0], keys[0])[1]

  def skip(c, batch_idx, key):
    del batch_idx, key
    return c, jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype),
                           metric_shapes)

  def body(c, xs):
    batch_idx, is_active, key = xs
    return lax.cond(is_active, step_fn, skip, c, batch_idx, key)

  return lax.scan(body, carry, (idx, active, keys))


def mean_over_active(values: jax.Array, active: jax.Array) -> jax.Array:
  """Mean of a ``[T]`` per-step metric over active steps."""
  w = active.astype(values.dtype)
  return jnp.sum(values * w) / jnp.maximum(jnp.sum(w), 1.0)


def weighted_mean_groups(uploads: Mapping[str, types.PyTree],
                         weights: Mapping[str, jax.Array]) -> types.PyTree:
  """Weighted mean over the silos of several groups with the same structure."""
  groups = sorted(uploads)
  total = jnp.maximum(sum(jnp.sum(weights[g]) for g in groups), 1e-12)
  sums = [jax.tree.map(lambda x, g=g: jnp.tensordot(weights[g], x, axes=1),
                       uploads[g]) for g in groups]
  return jax.tree.map(lambda *xs: sum(xs) / total, *sums)
