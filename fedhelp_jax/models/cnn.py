# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""A small CNN for 28x28 (MedMNIST-style) images."""

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from fedhelp_jax.models import layers
from fedhelp_jax.models import pooling


class CNN(nn.Module):
  """(3x3 conv -> norm -> ReLU -> 2x2 max-pool) per width, dense, heads.

  Parameter paths: ``conv_i``/``norm_i`` per conv layer, ``dense``, ``head``
  and (when ``aux_classes > 0``) ``aux_head``; both heads read the ReLU output
  of ``dense``.

  Attributes:
    num_classes: outputs of the main head.
    features: output channels of each conv layer (two by default).
    dense: width of the hidden dense layer.
    norm: 'group', 'batch' or 'none'.
    aux_classes: outputs of the aux head (0: none).
    dtype: computation dtype (params are float32).
    conv: convolution implementation, 'xla' or 'im2col' (``layers.CONV_IMPLS``).
  """
  num_classes: int
  features: Sequence[int] = (32, 64)
  dense: int = 128
  norm: str = 'group'
  aux_classes: int = 0
  dtype: Any = jnp.float32
  conv: str = 'xla'

  @nn.compact
  def __call__(self, x, train: bool = False, head: str = 'main'):
    """Logits ``[B, num_classes]`` (or ``[B, aux_classes]``) of ``[B,H,W,C]``.
    """
    layers.check_norm(self.norm)
    x = jnp.asarray(x, self.dtype)
    for i, f in enumerate(self.features):
      x = nn.Conv(f, (3, 3), padding='SAME', use_bias=self.norm == 'none',
                  dtype=self.dtype, name=f'conv_{i}',
                  conv_general_dilated=layers.conv_impl(self.conv))(x)
      x = layers.norm_layer(self.norm, f, train=train, dtype=self.dtype,
                            name=f'norm_{i}')(x)
      x = pooling.max_pool_2x2(nn.relu(x))
    x = x.reshape((x.shape[0], -1))
    x = nn.relu(nn.Dense(self.dense, dtype=self.dtype, name='dense')(x))
    return layers.apply_heads(
        self, x, head, num_classes=self.num_classes,
        aux_classes=self.aux_classes,
        make_layer=lambda n, name: nn.Dense(n, dtype=self.dtype, name=name))
