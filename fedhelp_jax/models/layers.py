# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""Building blocks shared by the model families: norms, heads, conv blocks.

Every model exposes two heads on the SAME backbone features: ``'head'`` (the
task head) and, when ``aux_classes > 0``, ``'aux_head'`` (FedHelp's public-data
head). Both are always created by ``init`` so the parameter tree does not
depend on which head was used to initialise it.
"""

from typing import Any, Callable

import flax.linen as nn
from jax import lax
import jax.numpy as jnp

from fedhelp_jax.models import im2col
from fedhelp_jax.models import loop_conv

NORMS = ('group', 'batch', 'none')
HEADS = ('main', 'aux')

# PyTorch's BatchNorm default (momentum 0.1 there is 0.9 here): local training
# runs only a few steps per round, so Flax's 0.99 would barely move the stats.
BATCH_NORM_MOMENTUM = 0.9
# Small models: at most 8 groups keeps each group a few channels wide.
MAX_GROUPS = 8


# Convolution implementations (see ``conv_impl``).
CONV_IMPLS = ('xla', 'im2col')


def conv_impl(name: str) -> Callable[..., Any]:
  """The ``conv_general_dilated`` a model's ``conv`` field selects.

  'xla': XLA's convolution (with the loop-safe backward pass on CPU, see
  ``loop_conv``). 'im2col': slices + one matmul (see ``im2col``); under a
  ``vmap`` over silos the per-silo kernels become a batched matmul instead of
  a grouped convolution.
  """
  if name not in CONV_IMPLS:
    raise ValueError(f'Unknown conv implementation {name!r}; expected one of '
                     f'{list(CONV_IMPLS)}.')
  return (im2col.conv_general_dilated if name == 'im2col'
          else loop_conv.conv_general_dilated)


def check_norm(norm: str) -> None:
  if norm not in NORMS:
    raise ValueError(f'Unknown norm {norm!r}; expected one of {list(NORMS)}.')


def check_head(head: str, aux_classes: int) -> None:
  if head not in HEADS:
    raise ValueError(f'Unknown head {head!r}; expected one of {list(HEADS)}.')
  if head == 'aux' and aux_classes <= 0:
    raise ValueError(
        "head='aux' needs a model built with aux_classes > 0 (this one has "
        f'aux_classes={aux_classes}).')


def num_groups(channels: int) -> int:
  """GroupNorm group count: the largest divisor of ``channels`` that is at
  most ``min(MAX_GROUPS, channels // 2)``, so groups hold >= 2 channels when
  possible (1 group, i.e. LayerNorm over channels, for 1-3 channels)."""
  limit = max(1, min(MAX_GROUPS, channels // 2))
  return max(g for g in range(1, limit + 1) if channels % g == 0)


class GroupNorm(nn.Module):
  """Group normalisation over ``[B, ..., C]``; ``nn.GroupNorm``'s math and
  parameters (``scale`` ones, ``bias`` zeros, both ``[C]``; statistics in
  float32 with the fast variance ``E[x^2] - E[x]^2``).

  Why not ``nn.GroupNorm``: it reduces a ``[B, H, W, groups, C / groups]``
  view over axes that include the short minor one, which XLA:CPU runs as
  scalar loops. Here every reduction is over the spatial axis of a
  ``[B, H*W, C]`` view (contiguous in C, so it vectorises), and the channels
  of a group are summed afterwards on the tiny ``[B, C]`` sums. Measured on
  one core of a 2-core CPU, forward + backward at batch 32, both versions
  alternating in one process: 2.2 vs 6.2 ms on ``[32, 28, 28, 32]``, 0.7 vs
  1.5 ms on ``[32, 14, 14, 64]`` (docs/scale.md). Parameter
  trees, and so checkpoints, are the same as with ``nn.GroupNorm``.

  Attributes:
    num_groups: groups of channels; must divide C.
    epsilon: added to the variance.
    dtype: output dtype (statistics and the affine map run in float32).
    param_dtype: dtype of ``scale`` and ``bias``.
  """
  num_groups: int
  epsilon: float = 1e-6
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    batch, channels = x.shape[0], x.shape[-1]
    if channels % self.num_groups:
      raise ValueError(f'GroupNorm: {self.num_groups} groups do not divide '
                       f'{channels} channels.')
    scale = self.param('scale', nn.initializers.ones, (channels,),
                       self.param_dtype)
    bias = self.param('bias', nn.initializers.zeros, (channels,),
                      self.param_dtype)
    group_size = channels // self.num_groups
    flat = jnp.asarray(x, jnp.float32).reshape(batch, -1, channels)
    count = flat.shape[1] * group_size

    def group_mean(v):  # [B, C] channel sums -> [B, C] mean of each group
      sums = v.reshape(batch, self.num_groups, group_size).sum(-1)
      return jnp.repeat(sums / count, group_size, axis=-1)

    mean = group_mean(flat.sum(1))
    var = jnp.maximum(group_mean(jnp.square(flat).sum(1)) - jnp.square(mean),
                      0.)
    mul = jnp.asarray(scale, jnp.float32) * lax.rsqrt(var + self.epsilon)
    y = ((flat - mean[:, None, :]) * mul[:, None, :]
         + jnp.asarray(bias, jnp.float32))
    return jnp.asarray(y.reshape(x.shape), self.dtype)


def norm_layer(norm: str, channels: int, *, train: bool, dtype: Any,
               name: str) -> Callable[[Any], Any]:
  """A normalisation layer (created in the caller's compact scope).

  Args:
    norm: 'group', 'batch' or 'none'.
    channels: number of channels of the input (for the group count).
    train: for 'batch', use batch statistics (and update the running ones in
      the mutable 'batch_stats' collection) when True.
    dtype: computation dtype.
    name: submodule name (unused for 'none').

  Returns:
    A callable ``x -> x`` of the same shape.
  """
  check_norm(norm)
  if norm == 'group':
    return GroupNorm(num_groups=num_groups(channels), dtype=dtype, name=name)
  if norm == 'batch':
    return nn.BatchNorm(use_running_average=not train,
                        momentum=BATCH_NORM_MOMENTUM, dtype=dtype,
                        param_dtype=jnp.float32, name=name)
  return lambda x: x


def double_conv(x, features: int, *, norm: str, train: bool, dtype: Any,
                conv: str = 'xla'):
  """Two (3x3 conv -> norm -> ReLU) layers named conv_0/norm_0, conv_1/...

  Must be called inside a compact method; the layers belong to that module.
  """
  for i in range(2):
    x = nn.Conv(features, (3, 3), padding='SAME', use_bias=norm == 'none',
                dtype=dtype, param_dtype=jnp.float32, name=f'conv_{i}',
                conv_general_dilated=conv_impl(conv))(x)
    x = norm_layer(norm, features, train=train, dtype=dtype,
                   name=f'norm_{i}')(x)
    x = nn.relu(x)
  return x


def apply_heads(module: nn.Module, features, head: str, *, num_classes: int,
                aux_classes: int, make_layer: Callable[..., Any]):
  """Applies the requested head; creates BOTH heads while initialising.

  Args:
    module: the calling module (its ``is_initializing`` decides).
    features: backbone features shared by both heads.
    head: 'main' or 'aux'.
    num_classes: outputs of the main head.
    aux_classes: outputs of the aux head (0: no aux head).
    make_layer: ``(outputs, name) -> layer`` building a head layer.

  Returns:
    The requested head's output, cast to float32 (losses and softmax stay in
    float32 even when the backbone computes in bfloat16).
  """
  check_head(head, aux_classes)
  init = module.is_initializing()
  out = {}
  if head == 'main' or init:
    out['main'] = make_layer(num_classes, 'head')(features)
  if aux_classes > 0 and (head == 'aux' or init):
    out['aux'] = make_layer(aux_classes, 'aux_head')(features)
  return out[head].astype(jnp.float32)
