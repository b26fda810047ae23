# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""A drop-in ``lax.conv_general_dilated`` that stays fast inside XLA:CPU loops.

Why: the engine runs local training as a ``lax.scan`` over steps, clients
through ``lax.map`` and rounds through another ``lax.scan``, so every
convolution of a model lives inside a while loop. On XLA:CPU (jax 0.10) the
convolutions that autodiff emits for the backward pass come out with
non-canonical dimension labels (e.g. ``f01b_i01o->01bf`` for the kernel
gradient). Outside a loop XLA rewrites them into the NHWC/HWIO form its fast
convolution kernels need; inside a while body it does not, and falls back to
a naive loop nest. Measured on a 2-core CPU (32 x 14 x 14 x 32 input, 3x3x32x64
kernel): the kernel gradient takes 11 ms outside a scan and 600 ms inside
one; the input gradient 7 ms vs 51 ms. The small CNN's local training ran
7-13x slower per image than the same steps outside a scan.

The fix: a ``custom_vjp`` whose forward pass is the plain convolution (its
forward is already canonical, and on CPU fast in loops) and whose backward
pass evaluates JAX's own transpose rules with every convolution re-expressed
in canonical form: operands explicitly transposed to NHWC / HWIO and the
result transposed back to the layout asked for (the transposes are cheap
copies next to the convolution). The math is JAX's; only the layout
changes, so gradients agree with ``jax.grad`` of the plain convolution to
float rounding.

The kernel gradient of a plain NHWC/HWIO convolution (one group, no input
dilation: every conv of the models here) is not a convolution at all but one
matmul of the input's patches (``patches.extract``, the im2col matrix) with
the output gradient, contracted over batch and positions. XLA:CPU runs that
kernel-gradient convolution (a "kernel" the size of the image, an output
the size of the kernel) at half the speed of the forward one: 6.9 of the
20.5 ms of a default-CNN step at batch 32 on one core. As a matmul it uses
XLA's threaded dot: the whole step went from 16.4 to 11.6 ms with both
cores, 21.1 to 19.8 ms on one (2-core CPU). The input gradient stays JAX's
transpose rule, canonicalised as above.

On other backends (GPU, TPU) it is exactly ``lax.conv_general_dilated``: their
compilers pick convolution layouts themselves. Limitation on CPU: being a
``custom_vjp``, it supports reverse mode only (``jax.grad``/``jax.vjp``), not
``jax.jvp``/``jax.jacfwd``.

Use it with Flax: ``nn.Conv(..., conv_general_dilated=conv_general_dilated)``.
"""

import functools

import jax
from jax import lax
from jax.extend import core as jex_core
import jax.numpy as jnp

from fedhelp_jax.models import patches


def _canonical_conv(lhs, rhs, *, dimension_numbers, **params):
  """One ``conv_general_dilated`` primitive, computed in NHWC/HWIO/NHWC form.

  Args:
    lhs: input, dimensions as in ``dimension_numbers.lhs_spec``.
    rhs: kernel, dimensions as in ``dimension_numbers.rhs_spec``.
    dimension_numbers: a ``lax.ConvDimensionNumbers`` (the primitive's).
    **params: the primitive's other parameters, passed through unchanged.

  Returns:
    The same array the primitive returns (dimensions as in ``out_spec``).
  """
  lhs_spec, rhs_spec, out_spec = dimension_numbers
  nsp = len(lhs_spec) - 2
  # Batch, spatial..., feature / spatial..., in, out.
  lhs = jnp.transpose(lhs, (lhs_spec[0],) + tuple(lhs_spec[2:])
                      + (lhs_spec[1],))
  rhs = jnp.transpose(rhs, tuple(rhs_spec[2:]) + (rhs_spec[1], rhs_spec[0]))
  spatial = tuple(range(1, nsp + 1))
  canonical = lax.ConvDimensionNumbers(
      lhs_spec=(0, nsp + 1) + spatial,
      rhs_spec=(nsp + 1, nsp) + tuple(range(nsp)),
      out_spec=(0, nsp + 1) + spatial)
  out = lax.conv_general_dilated_p.bind(
      lhs, rhs, dimension_numbers=canonical, **params)
  # ``out`` is (batch, spatial..., feature); put each where out_spec wants it.
  order = (out_spec[0],) + tuple(out_spec[2:]) + (out_spec[1],)
  return jnp.transpose(out, [order.index(i) for i in range(len(order))])


def _eval_canonical(closed_jaxpr, *args):
  """Evaluates a jaxpr, computing every convolution in canonical form."""
  jaxpr = closed_jaxpr.jaxpr
  env = {}

  def read(v):
    return v.val if isinstance(v, jex_core.Literal) else env[v]

  env.update(zip(jaxpr.constvars, closed_jaxpr.consts))
  env.update(zip(jaxpr.invars, args))
  for eqn in jaxpr.eqns:
    ins = [read(v) for v in eqn.invars]
    if eqn.primitive is lax.conv_general_dilated_p:
      outs = [_canonical_conv(*ins, **eqn.params)]
    elif eqn.primitive.name in ('jit', 'pjit') and 'jaxpr' in eqn.params:
      # Inline nested jits so convolutions inside them are rewritten too.
      outs = _eval_canonical(eqn.params['jaxpr'], *ins)
    else:
      outs = eqn.primitive.bind(*ins, **eqn.params)
      if not eqn.primitive.multiple_results:
        outs = [outs]
    env.update(zip(eqn.outvars, outs))
  return [read(v) for v in jaxpr.outvars]


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None,
                         feature_group_count=1, batch_group_count=1,
                         precision=None, preferred_element_type=None):
  """``lax.conv_general_dilated`` with a loop-friendly backward pass on CPU.

  Same arguments and result as ``lax.conv_general_dilated`` (e.g. ``lhs``
  ``[B, H, W, C_in]`` and ``rhs`` ``[kh, kw, C_in / groups, C_out]`` with
  ``dimension_numbers=('NHWC', 'HWIO', 'NHWC')`` give ``[B, H', W', C_out]``).
  """
  conv = functools.partial(
      lax.conv_general_dilated, window_strides=window_strides,
      padding=padding, lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
      dimension_numbers=dimension_numbers,
      feature_group_count=feature_group_count,
      batch_group_count=batch_group_count, precision=precision,
      preferred_element_type=preferred_element_type)
  if jax.default_backend() != 'cpu':
    return conv(lhs, rhs)

  @jax.custom_vjp
  def loop_safe(x, w):
    return conv(x, w)

  def fwd(x, w):
    return conv(x, w), (x, w)

  # Static: whether the kernel gradient can be one matmul of patches.
  kernel_grad_by_patches = patches.is_plain_nhwc(
      lhs, dimension_numbers, lhs_dilation=lhs_dilation,
      feature_group_count=feature_group_count,
      batch_group_count=batch_group_count)

  def bwd(residuals, g):
    x, w = residuals
    if not kernel_grad_by_patches:
      _, vjp = jax.vjp(conv, x, w)
      # JAX's transpose rules, re-evaluated with canonical convolutions.
      return tuple(_eval_canonical(jax.make_jaxpr(vjp)(g), g))
    _, vjp_x = jax.vjp(lambda x_: conv(x_, w), x)
    dx, = _eval_canonical(jax.make_jaxpr(vjp_x)(g), g)
    cols = patches.extract(x, w.shape, window_strides, padding, rhs_dilation)
    dw = lax.dot_general(cols, g, (((0, 1, 2), (0, 1, 2)), ((), ())),
                         precision=precision)
    return dx, dw.reshape(w.shape).astype(w.dtype)

  loop_safe.defvjp(fwd, bwd)
  return loop_safe(lhs, rhs)
