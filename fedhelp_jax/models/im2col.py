# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""2-D convolution as patch extraction (slices) plus one matmul (im2col).

Why: when the engine ``vmap``s local training over silos, each silo has its
own conv kernel, and XLA lowers the batched ``conv_general_dilated`` to a
grouped convolution (``feature_group_count = silos``), which XLA:CPU runs
slowly. Written as im2col, the only op that touches the per-silo kernel is a
``dot_general``; under ``vmap`` it becomes a batched matmul, which every
backend runs well. Patch extraction uses static slices of the padded input,
so the silo axis just folds into the batch and the backward pass is pads and
adds (no convolution at all, hence also no slow in-loop convolution on CPU;
see ``loop_conv``).

Cost: the patches tensor is ``kh * kw`` times the input activation. For the
small 28x28 models here that is a few MB per silo.

Use with Flax:
``nn.Conv(..., conv_general_dilated=im2col.conv_general_dilated)``.
"""

from jax import lax

from fedhelp_jax.models import loop_conv
from fedhelp_jax.models import patches


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None,
                         feature_group_count=1, batch_group_count=1,
                         precision=None, preferred_element_type=None):
  """``lax.conv_general_dilated`` for NHWC/HWIO 2-D convs, via im2col.

  Cases it does not cover (other layouts, groups, input dilation as in
  transposed convolutions) go to ``loop_conv.conv_general_dilated``.
  """
  simple = patches.is_plain_nhwc(
      lhs, dimension_numbers, lhs_dilation=lhs_dilation,
      feature_group_count=feature_group_count,
      batch_group_count=batch_group_count)
  if not simple:
    return loop_conv.conv_general_dilated(
        lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
        feature_group_count=feature_group_count,
        batch_group_count=batch_group_count, precision=precision,
        preferred_element_type=preferred_element_type)
  kh, kw, cin, cout = rhs.shape
  cols = patches.extract(lhs, rhs.shape, window_strides, padding, rhs_dilation)
  return lax.dot_general(
      cols, rhs.reshape(kh * kw * cin, cout),
      (((3,), (0,)), ((), ())), precision=precision,
      preferred_element_type=preferred_element_type)
