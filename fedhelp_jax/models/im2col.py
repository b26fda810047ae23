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
import jax.numpy as jnp

from fedhelp_jax.models import loop_conv


def _is_nhwc_hwio(dimension_numbers) -> bool:
  if dimension_numbers is None:
    return False
  if isinstance(dimension_numbers, lax.ConvDimensionNumbers):
    return tuple(map(tuple, dimension_numbers)) == (
        (0, 3, 1, 2), (3, 2, 0, 1), (0, 3, 1, 2))
  return tuple(dimension_numbers) == ('NHWC', 'HWIO', 'NHWC')


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None,
                         feature_group_count=1, batch_group_count=1,
                         precision=None, preferred_element_type=None):
  """``lax.conv_general_dilated`` for NHWC/HWIO 2-D convs, via im2col.

  Cases it does not cover (other layouts, groups, input dilation as in
  transposed convolutions) go to ``loop_conv.conv_general_dilated``.
  """
  simple = (lhs.ndim == 4 and _is_nhwc_hwio(dimension_numbers)
            and feature_group_count == 1 and batch_group_count == 1
            and all(d == 1 for d in (lhs_dilation or (1, 1))))
  if not simple:
    return loop_conv.conv_general_dilated(
        lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
        feature_group_count=feature_group_count,
        batch_group_count=batch_group_count, precision=precision,
        preferred_element_type=preferred_element_type)
  kh, kw, cin, cout = rhs.shape
  dh, dw = rhs_dilation or (1, 1)
  sh, sw = window_strides
  eff = ((kh - 1) * dh + 1, (kw - 1) * dw + 1)
  if isinstance(padding, str):
    padding = lax.padtype_to_pads(lhs.shape[1:3], eff, window_strides,
                                  padding)
  (pt, pb), (pl, pr) = padding
  x = jnp.pad(lhs, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
  out_h = (x.shape[1] - eff[0]) // sh + 1
  out_w = (x.shape[2] - eff[1]) // sw + 1
  # Patches ordered (kh, kw, cin), matching the HWIO kernel reshaped below.
  patches = jnp.concatenate([
      lax.slice(x, (0, i * dh, j * dw, 0),
                (x.shape[0], i * dh + (out_h - 1) * sh + 1,
                 j * dw + (out_w - 1) * sw + 1, cin), (1, sh, sw, 1))
      for i in range(kh) for j in range(kw)], axis=-1)
  return lax.dot_general(
      patches, rhs.reshape(kh * kw * cin, cout),
      (((3,), (0,)), ((), ())), precision=precision,
      preferred_element_type=preferred_element_type)
