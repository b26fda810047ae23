# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""Run diagnostics: dead hidden units, so a collapsed model is visible.

A ReLU unit of the hidden dense layer (the layer named ``dense``: the CNN's,
and the MLP's where it has one) is *dead* on a silo when its pre-activation
is <= 0 for every one of the silo's training images: it then passes no
signal and no gradient. A model with most units dead predicts from a
handful of features (the pFedNet classification collapse). Measured per
silo with the silo's own evaluation model (``alg.eval_variables``), mapped
over silos by ``engine.build_predict``.
"""

from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from fedhelp_jax import engine
from fedhelp_jax import types

HIDDEN_LAYER = 'dense'


def hidden_preactivations(module, variables, x) -> jax.Array:
  """``[B, units]`` outputs of the layer named ``HIDDEN_LAYER`` (before its
  ReLU), or ``[B, 0]`` when the model has none."""
  _, captured = module.apply(
      variables, x, train=False, mutable=['intermediates'],
      capture_intermediates=lambda mdl, _: mdl.name == HIDDEN_LAYER)
  found = jax.tree.leaves(captured.get('intermediates', {}))
  if not found:
    return jnp.zeros((x.shape[0], 0), jnp.float32)
  return found[0].reshape(x.shape[0], -1)


def dead_fraction(preactivations: np.ndarray, counts: np.ndarray) -> np.ndarray:
  """``[C]`` fraction of units dead on each silo's first ``counts[c]``
  rows of ``preactivations`` ``[C, N, units]`` (NaN without units)."""
  pre = np.asarray(preactivations)
  real = np.arange(pre.shape[1])[None, :] < np.asarray(counts)[:, None]
  alive = np.any((pre > 0) & real[..., None], axis=1)  # [C, units]
  if not alive.shape[-1]:
    return np.full(pre.shape[0], np.nan)
  return 1.0 - alive.mean(axis=-1)


def dead_units(alg: types.FederatedAlgorithm, groups, state,
               data: types.FederatedData, *, strategy: str = 'auto',
               chunk_size: Optional[int] = None,
               num_real: Optional[dict[str, int]] = None) -> dict[str, Any]:
  """Per group: the fraction of dead hidden units on each real silo's
  training images (``'per_silo'``) and their mean (``'mean'``); {} when the
  model has no layer named ``HIDDEN_LAYER``."""
  probe = engine.build_predict(alg, groups, hidden_preactivations,
                               strategy=strategy, chunk_size=chunk_size)
  inputs = {g: {'test_x': data[g]['x']} for g in groups}
  pre = probe(state, inputs)
  out = {}
  for g in groups:
    real = (num_real or {}).get(g, int(np.shape(data[g]['n'])[0]))
    fractions = dead_fraction(engine.fetch(pre[g])[:real],
                              np.asarray(data[g]['n'])[:real])
    if np.all(np.isnan(fractions)):
      return {}
    out[g] = {'per_silo': [float(f) for f in fractions],
              'mean': float(np.mean(fractions))}
  return out
