# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""CIFAR-style ResNets (He et al. 2016, Sec. 4.2): ResNet-8/14/20/32/56/110."""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from fedhelp_jax.models import layers

# He-normal over fan-out, as in torchvision's ResNets.
_CONV_INIT = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')


def blocks_per_stage(depth: int) -> int:
  """``(depth - 2) / 6`` basic blocks per stage; raises on invalid depths."""
  if depth < 8 or (depth - 2) % 6:
    raise ValueError(
        f'ResNet depth must be 6n+2 with n >= 1 (8, 14, 20, 32, 56, 110, ...),'
        f' got {depth}.')
  return (depth - 2) // 6


class BasicBlock(nn.Module):
  """conv3x3-norm-ReLU-conv3x3-norm plus shortcut, then ReLU.

  The shortcut is a 1x1 strided conv + norm (``proj_conv``/``proj_norm``)
  when the shape changes, else the identity.
  """
  features: int
  strides: int = 1
  norm: str = 'group'
  dtype: Any = jnp.float32
  conv: str = 'xla'

  @nn.compact
  def __call__(self, x, train: bool = False):
    conv = lambda f, k, s, name: nn.Conv(  # pylint: disable=g-long-lambda
        f, (k, k), strides=(s, s), padding='SAME', use_bias=self.norm == 'none',
        kernel_init=_CONV_INIT, dtype=self.dtype, name=name,
        conv_general_dilated=layers.conv_impl(self.conv))
    norm = lambda name: layers.norm_layer(  # pylint: disable=g-long-lambda
        self.norm, self.features, train=train, dtype=self.dtype, name=name)
    y = nn.relu(norm('norm_0')(conv(self.features, 3, self.strides,
                                    'conv_0')(x)))
    y = norm('norm_1')(conv(self.features, 3, 1, 'conv_1')(y))
    if self.strides != 1 or x.shape[-1] != self.features:
      x = norm('proj_norm')(conv(self.features, 1, self.strides,
                                 'proj_conv')(x))
    return nn.relu(x + y)


class ResNet(nn.Module):
  """CIFAR ResNet: 3x3 stem, 3 stages of basic blocks, global average pool.

  Stage ``s`` has ``(depth - 2) / 6`` blocks named ``stage{s}_block{b}``, width
  ``(16, 32, 64)[s] * width``, and stride 2 in its first block for s > 0. The
  stem (``stem_conv``/``stem_norm``) has stride 1. Both heads (``head``,
  ``aux_head``) are dense layers on the pooled features.

  Attributes:
    num_classes: outputs of the main head.
    depth: 6n+2 (8, 14, 20, 32, 56, 110).
    width: channel multiplier (e.g. 2 for a wide ResNet-20).
    norm: 'group', 'batch' or 'none' ('none' is not advisable for deep nets).
    aux_classes: outputs of the aux head (0: none).
    dtype: computation dtype (params are float32).
    conv: convolution implementation, 'xla' or 'im2col' (``layers.conv_impl``).
  """
  num_classes: int
  depth: int = 20
  width: int = 1
  norm: str = 'group'
  aux_classes: int = 0
  dtype: Any = jnp.float32
  conv: str = 'xla'

  @nn.compact
  def __call__(self, x, train: bool = False, head: str = 'main'):
    """Logits ``[B, num_classes]`` (or ``[B, aux_classes]``) of ``[B,H,W,C]``.
    """
    layers.check_norm(self.norm)
    n = blocks_per_stage(self.depth)
    x = jnp.asarray(x, self.dtype)
    w0 = 16 * self.width
    x = nn.Conv(w0, (3, 3), padding='SAME', use_bias=self.norm == 'none',
                kernel_init=_CONV_INIT, dtype=self.dtype, name='stem_conv',
                conv_general_dilated=layers.conv_impl(self.conv))(x)
    x = nn.relu(layers.norm_layer(self.norm, w0, train=train, dtype=self.dtype,
                                  name='stem_norm')(x))
    for s, base in enumerate((16, 32, 64)):
      for b in range(n):
        x = BasicBlock(base * self.width, strides=2 if s > 0 and b == 0 else 1,
                       norm=self.norm, dtype=self.dtype, conv=self.conv,
                       name=f'stage{s}_block{b}')(x, train=train)
    x = jnp.mean(x, axis=(1, 2))
    return layers.apply_heads(
        self, x, head, num_classes=self.num_classes,
        aux_classes=self.aux_classes,
        make_layer=lambda k, name: nn.Dense(k, dtype=self.dtype, name=name))
