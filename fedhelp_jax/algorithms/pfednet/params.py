# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""pFedNet parameter partition: which parameters are shared, which personal.

``partition_params`` / ``partition_params_strict`` label a parameter tree by
path; ``split`` / ``merge`` separate and join the two parts;
``flatten_personal`` / ``unflatten_personal`` give the ``[d2]`` vector of the
graph prox.
"""

import re
from typing import Any, Callable, Union

import jax
from jax.flatten_util import ravel_pytree


SHARED = 'shared'
PERSONAL = 'personal'

PathPredicate = Callable[[tuple[str, ...]], bool]
Selector = Union[PathPredicate, str]

# ----------------------------------------------------------------------------
# Parameter partition.
# ----------------------------------------------------------------------------


def _key_str(key) -> str:
  """One ``jax.tree_util`` path entry as a string."""
  for attr in ('key', 'name', 'idx'):
    if hasattr(key, attr):
      return str(getattr(key, attr))
  return str(key)


def param_path(path) -> tuple[str, ...]:
  return tuple(_key_str(k) for k in path)


def _as_predicate(selector: Selector) -> PathPredicate:
  """A predicate over path tuples; a string is a regex searched in 'a/b/c'."""
  if isinstance(selector, str):
    pattern = re.compile(selector)
    return lambda path: pattern.search('/'.join(path)) is not None
  if callable(selector):
    return lambda path: bool(selector(path))
  raise TypeError(
      f'Expected a regex string or a callable on path tuples, got {selector!r}.')


def partition_params(params: Any, is_personal: Selector) -> Any:
  """Labels every parameter 'shared' or 'personal'.

  Args:
    params: a parameter pytree (nested dicts, e.g. Flax ``params``).
    is_personal: a predicate on the path tuple of dict keys, e.g.
      ``('dec_0', 'conv_0', 'kernel')``, or a regex string searched (``re.search``)
      in the '/'-joined path, e.g. ``'^head/'``.

  Returns:
    A pytree with the structure of ``params`` whose leaves are the strings
    ``'shared'`` or ``'personal'`` (as ``optax.multi_transform`` labels).
  """
  pred = _as_predicate(is_personal)
  return jax.tree_util.tree_map_with_path(
      lambda p, _: PERSONAL if pred(param_path(p)) else SHARED, params)


def partition_params_strict(params: Any, shared: Selector,
                            personal: Selector) -> Any:
  """Like ``partition_params`` with two selectors that must partition exactly.

  The official code matches names by substring, and in its compression
  experiment the final ``conv.weight`` matched both filters; here such a
  parameter (or one matched by neither) is an error.

  Args:
    params: a parameter pytree.
    shared: predicate or regex selecting the shared parameters.
    personal: predicate or regex selecting the personalized parameters.

  Returns:
    The labels pytree (leaves ``'shared'`` / ``'personal'``).

  Raises:
    ValueError: listing every path matched by both selectors or by neither.
  """
  is_shared, is_personal = _as_predicate(shared), _as_predicate(personal)
  both, neither = [], []

  def label(p, _):
    path = param_path(p)
    s, q = is_shared(path), is_personal(path)
    if s and q:
      both.append('/'.join(path))
    elif not (s or q):
      neither.append('/'.join(path))
    return PERSONAL if q else SHARED

  labels = jax.tree_util.tree_map_with_path(label, params)
  if both or neither:
    lines = []
    if both:
      lines.append('matched by BOTH shared and personal: ' + ', '.join(both))
    if neither:
      lines.append('matched by NEITHER shared nor personal: ' +
                   ', '.join(neither))
    raise ValueError('The parameter partition is not exact; '
                     + '; '.join(lines)
                     + '. Make the two selectors disjoint and exhaustive.')
  return labels


def split(params: Any, labels: Any) -> tuple[Any, Any]:
  """Splits ``params`` into (shared, personal) trees of the same structure.

  Leaves of the other part are replaced by ``None``, which is an empty
  pytree: ``ravel_pytree(personal)`` sees only the personalized arrays, both
  parts pass through ``jit``, and ``merge(shared, personal)`` rebuilds
  ``params``.

  Args:
    params: a parameter pytree.
    labels: the labels pytree from ``partition_params``.

  Returns:
    ``(shared, personal)``.
  """
  shared = jax.tree.map(lambda p, label: p if label == SHARED else None, params,
                        labels)
  personal = jax.tree.map(lambda p, label: p if label == PERSONAL else None, params,
                          labels)
  return shared, personal


def merge(shared: Any, personal: Any) -> Any:
  """Inverse of ``split``: takes each leaf from whichever part is not None."""
  def pick(s, p):
    if s is None:
      return p
    if p is not None:
      raise ValueError('A leaf is present in both the shared and the '
                       'personal part.')
    return s
  return jax.tree.map(pick, shared, personal, is_leaf=lambda x: x is None)


def flatten_personal(personal: Any) -> jax.Array:
  """The personalized leaves raveled into one ``[d2]`` vector (tree order)."""
  return ravel_pytree(personal)[0]


def unflatten_personal(flat: jax.Array, template: Any) -> Any:
  """Inverse of ``flatten_personal``: ``[d2]`` vector -> tree like template."""
  return ravel_pytree(template)[1](flat)
