# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""Multinomial logistic regression on flat features."""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from fedhelp_jax.models import layers


class LogReg(nn.Module):
  """A linear map ``x -> W x + b`` per head; inputs are flattened to [B, D].

  ``norm`` is accepted for a uniform constructor but unused: a linear model
  has no hidden features to normalise.

  Attributes:
    num_classes: outputs of the main head (``head``).
    norm: validated, ignored.
    aux_classes: outputs of the aux head (``aux_head``; 0: none).
    dtype: computation dtype (params are float32).
  """
  num_classes: int
  norm: str = 'none'
  aux_classes: int = 0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False, head: str = 'main'):
    """Logits ``[B, num_classes]`` of ``x`` ``[B, D]`` (or ``[B, ...]``)."""
    del train  # No train-time behaviour.
    layers.check_norm(self.norm)
    x = jnp.asarray(x, self.dtype).reshape((x.shape[0], -1))
    return layers.apply_heads(
        self, x, head, num_classes=self.num_classes,
        aux_classes=self.aux_classes,
        make_layer=lambda n, name: nn.Dense(n, dtype=self.dtype, name=name))
