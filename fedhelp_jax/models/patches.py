# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""Image patches of a 2-D NHWC convolution (the im2col matrix).

``im2col`` uses them for the whole convolution, ``loop_conv`` for the kernel
gradient only. Patch extraction is static slices of the padded input, so it
batches (``vmap``) and differentiates without any convolution op.
"""

from jax import lax
import jax.numpy as jnp


def is_plain_nhwc(lhs, dimension_numbers, *, lhs_dilation=None,
                  feature_group_count=1, batch_group_count=1) -> bool:
  """Whether a conv is a plain 2-D NHWC/HWIO one that patches can express:
  one group, no input dilation (strides and kernel dilation are fine)."""
  if dimension_numbers is None or lhs.ndim != 4:
    return False
  if isinstance(dimension_numbers, lax.ConvDimensionNumbers):
    layout_ok = tuple(map(tuple, dimension_numbers)) == (
        (0, 3, 1, 2), (3, 2, 0, 1), (0, 3, 1, 2))
  else:
    layout_ok = tuple(dimension_numbers) == ('NHWC', 'HWIO', 'NHWC')
  return (layout_ok and feature_group_count == 1 and batch_group_count == 1
          and all(d == 1 for d in (lhs_dilation or (1, 1))))


def extract(lhs, kernel_shape, window_strides, padding, rhs_dilation=None):
  """The patches of ``lhs`` that a ``kernel_shape`` (HWIO) kernel sees.

  Args:
    lhs: ``[B, H, W, C_in]``.
    kernel_shape: ``(kh, kw, C_in, C_out)``.
    window_strides: ``(sh, sw)``.
    padding: 'SAME', 'VALID' or ``((top, bottom), (left, right))``.
    rhs_dilation: kernel dilation ``(dh, dw)`` (default none).

  Returns:
    ``[B, H', W', kh * kw * C_in]``, ordered (kh, kw, C_in) like the HWIO
    kernel reshaped to ``[kh * kw * C_in, C_out]``.
  """
  kh, kw, cin, _ = kernel_shape
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
  return jnp.concatenate([
      lax.slice(x, (0, i * dh, j * dw, 0),
                (x.shape[0], i * dh + (out_h - 1) * sh + 1,
                 j * dw + (out_w - 1) * sw + 1, cin), (1, sh, sw, 1))
      for i in range(kh) for j in range(kw)], axis=-1)
