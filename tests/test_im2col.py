# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""The im2col convolution equals ``lax.conv_general_dilated`` (value and
gradients, plain and vmapped over per-silo kernels), and a model built with
``conv='im2col'`` computes what the same model with XLA's convolution does."""

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
import pytest

from fedhelp_jax import models
from fedhelp_jax.models import im2col

NHWC = ('NHWC', 'HWIO', 'NHWC')
CASES = {
    'same_3x3': ((2, 8, 8, 3), (3, 3, 3, 4),
                 dict(window_strides=(1, 1), padding='SAME')),
    'stride2_odd': ((2, 9, 9, 3), (3, 3, 3, 4),
                    dict(window_strides=(2, 2), padding='SAME')),
    'proj_1x1': ((2, 8, 8, 4), (1, 1, 4, 6),
                 dict(window_strides=(2, 2), padding='VALID')),
    'explicit_pad_dilated': ((1, 9, 7, 2), (3, 2, 2, 3),
                             dict(window_strides=(1, 1),
                                  padding=((2, 0), (1, 1)),
                                  rhs_dilation=(2, 1))),
    # Not covered by im2col: must fall back to the XLA convolution.
    'groups_fallback': ((2, 6, 6, 4), (3, 3, 2, 6),
                        dict(window_strides=(1, 1), padding='SAME',
                             feature_group_count=2)),
    'transpose_fallback': ((2, 5, 5, 3), (2, 2, 3, 4),
                           dict(window_strides=(1, 1),
                                padding=((1, 1), (1, 1)),
                                lhs_dilation=(2, 2))),
}


def _operands(lhs_shape, rhs_shape, seed=0):
  rng = np.random.default_rng(seed)
  return (jnp.asarray(rng.normal(size=lhs_shape), jnp.float32),
          jnp.asarray(rng.normal(size=rhs_shape), jnp.float32))


@pytest.mark.parametrize('case', sorted(CASES))
def test_im2col_equals_lax_conv_value_and_grads(case):
  lhs_shape, rhs_shape, kw = CASES[case]
  x, w = _operands(lhs_shape, rhs_shape)
  ref_fn = lambda x, w: lax.conv_general_dilated(
      x, w, dimension_numbers=NHWC, **kw)
  got_fn = lambda x, w: im2col.conv_general_dilated(
      x, w, dimension_numbers=NHWC, **kw)
  ref, got = ref_fn(x, w), got_fn(x, w)
  assert got.shape == ref.shape
  np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
  # A non-trivial cotangent so every output element matters.
  loss = lambda f: lambda x, w: jnp.sum(jnp.sin(f(x, w)))
  ref_g = jax.grad(loss(ref_fn), argnums=(0, 1))(x, w)
  got_g = jax.grad(loss(got_fn), argnums=(0, 1))(x, w)
  for r, g in zip(ref_g, got_g):
    np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4)


def test_im2col_vmapped_over_per_silo_kernels():
  # Silo axis on both operands, as when the engine vmaps local training.
  x, w = _operands((3, 2, 8, 8, 3), (3, 3, 3, 3, 5), seed=1)
  conv = lambda f: jax.vmap(lambda xi, wi: f(
      xi, wi, (1, 1), 'SAME', dimension_numbers=NHWC))
  ref = conv(lax.conv_general_dilated)(x, w)
  got = conv(im2col.conv_general_dilated)(x, w)
  np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
  # The vmapped im2col program has no convolution at all (a batched matmul
  # instead of XLA's grouped convolution).
  hlo = jax.jit(conv(im2col.conv_general_dilated)).lower(x, w).as_text()
  assert 'convolution' not in hlo
  assert 'dot_general' in hlo


@pytest.mark.parametrize('name,kwargs,shape', [
    ('cnn', dict(features=(4, 8), dense=8), (2, 28, 28, 1)),
    # The per-op checks above cover every conv shape these use; the whole
    # deep models take minutes to compile twice on CI's 2 cores.
    pytest.param('resnet', dict(depth=8), (2, 16, 16, 3),
                 marks=pytest.mark.slow),
    pytest.param('unet', dict(base_features=4, levels=2), (2, 16, 16, 1),
                 marks=pytest.mark.slow),
])
def test_model_outputs_match_across_conv_impls(name, kwargs, shape):
  x = jnp.asarray(np.random.default_rng(2).random(shape), jnp.float32)
  xla = models.make_model(name, num_classes=3, conv='xla', **kwargs)
  col = models.make_model(name, num_classes=3, conv='im2col', **kwargs)
  variables = models.init_variables(xla, jax.random.PRNGKey(0), x[:1])
  # Same parameter tree: checkpoints move between implementations.
  assert (jax.tree.structure(variables) == jax.tree.structure(
      models.init_variables(col, jax.random.PRNGKey(0), x[:1])))
  out_x = xla.apply(variables, x)
  out_c = col.apply(variables, x)
  np.testing.assert_allclose(out_c, out_x, rtol=1e-4, atol=1e-4)


def test_unknown_conv_impl_is_rejected():
  with pytest.raises(ValueError, match='conv implementation'):
    models.make_model('cnn', num_classes=2, conv='fft')
  with pytest.raises(ValueError, match='no convolutions'):
    models.make_model('logreg', num_classes=2, conv='im2col')
