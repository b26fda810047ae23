# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""A 2-D UNet (Ronneberger et al. 2015) with a per-pixel aux head."""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from fedhelp_jax.models import layers
from fedhelp_jax.models import pooling


class EncoderBlock(nn.Module):
  """Two 3x3 conv-norm-ReLU layers (``conv_i``/``norm_i``)."""
  features: int
  norm: str = 'group'
  dtype: Any = jnp.float32
  conv: str = 'xla'

  @nn.compact
  def __call__(self, x, train: bool = False):
    return layers.double_conv(x, self.features, norm=self.norm, train=train,
                              dtype=self.dtype, conv=self.conv)


class DecoderBlock(nn.Module):
  """2x2 stride-2 transposed conv (``up``), skip concat, two 3x3 convs.

  The up-sampling conv lives inside the block so that selecting ``dec_i``
  (e.g. as pFedNet's personalized part) selects the whole decoder level.
  """
  features: int
  norm: str = 'group'
  dtype: Any = jnp.float32
  conv: str = 'xla'

  @nn.compact
  def __call__(self, x, skip, train: bool = False):
    x = nn.ConvTranspose(self.features, (2, 2), strides=(2, 2),
                         dtype=self.dtype, name='up')(x)
    x = jnp.concatenate([x, skip], axis=-1)
    return layers.double_conv(x, self.features, norm=self.norm, train=train,
                              dtype=self.dtype, conv=self.conv)


class UNet(nn.Module):
  """UNet with ``levels`` down/up steps and 1x1 conv heads.

  Encoder level ``i`` (``enc_i``) has ``base_features * 2**i`` channels and
  is followed by a 2x2 max-pool; the ``bottleneck`` has
  ``base_features * 2**levels``. Decoder block ``dec_i`` is applied i-th on
  the way up, i.e. ``dec_0`` is the deepest, and joins the skip of
  ``enc_{levels-1-i}`` at ``base_features * 2**(levels-1-i)`` channels. The
  heads ``head`` and ``aux_head`` are 1x1 convs on the last decoder output.
  H and W must be divisible by ``2**levels``.

  Attributes:
    num_classes: per-pixel outputs of the main head.
    base_features: channels of the first level.
    levels: number of pooling steps.
    norm: 'group', 'batch' or 'none'.
    aux_classes: per-pixel outputs of the aux head (0: none).
    dtype: computation dtype (params are float32).
    conv: 'xla' or 'im2col' for the 3x3 and 1x1 convs (``layers.conv_impl``);
      the 2x2 transposed up-convs always use XLA's.
  """
  num_classes: int
  base_features: int = 16
  levels: int = 3
  norm: str = 'group'
  aux_classes: int = 0
  dtype: Any = jnp.float32
  conv: str = 'xla'

  @nn.compact
  def __call__(self, x, train: bool = False, head: str = 'main'):
    """Per-pixel logits ``[B, H, W, num_classes]`` of ``x`` ``[B, H, W, C]``.
    """
    layers.check_norm(self.norm)
    if self.levels < 1:
      raise ValueError(f'UNet levels must be >= 1, got {self.levels}.')
    h, w = x.shape[1:3]
    if h % 2**self.levels or w % 2**self.levels:
      raise ValueError(f'UNet with {self.levels} levels needs H and W '
                       f'divisible by {2**self.levels}, got {h}x{w}.')
    x = jnp.asarray(x, self.dtype)
    skips = []
    for i in range(self.levels):
      x = EncoderBlock(self.base_features * 2**i, norm=self.norm,
                       dtype=self.dtype, conv=self.conv,
                       name=f'enc_{i}')(x, train=train)
      skips.append(x)
      x = pooling.max_pool_2x2(x)
    x = EncoderBlock(self.base_features * 2**self.levels, norm=self.norm,
                     dtype=self.dtype, conv=self.conv,
                     name='bottleneck')(x, train=train)
    for i in range(self.levels):
      level = self.levels - 1 - i
      x = DecoderBlock(self.base_features * 2**level, norm=self.norm,
                       dtype=self.dtype, conv=self.conv,
                       name=f'dec_{i}')(
                           x, skips[level], train=train)
    return layers.apply_heads(
        self, x, head, num_classes=self.num_classes,
        aux_classes=self.aux_classes,
        make_layer=lambda k, name: nn.Conv(
            k, (1, 1), dtype=self.dtype, name=name,
            conv_general_dilated=layers.conv_impl(self.conv)))
