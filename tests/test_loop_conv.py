# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""The loop-safe convolution equals ``lax.conv_general_dilated`` (value and
gradients) and keeps its backward convolutions canonical inside loops."""

import re

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
import pytest

from fedhelp_jax.models import loop_conv

# (lhs shape, rhs shape, kwargs): the shapes the models use and a few more.
CASES = {
    'same_3x3': ((2, 8, 8, 3), (3, 3, 3, 4),
                 dict(window_strides=(1, 1), padding='SAME')),
    'stride2': ((2, 9, 9, 3), (3, 3, 3, 4),
                dict(window_strides=(2, 2), padding='SAME')),
    'proj_1x1': ((2, 8, 8, 4), (1, 1, 4, 6),
                 dict(window_strides=(2, 2), padding='VALID')),
    'groups': ((2, 6, 6, 4), (3, 3, 2, 6),
               dict(window_strides=(1, 1), padding=((1, 0), (2, 1)),
                    feature_group_count=2)),
    'transpose_like': ((2, 5, 5, 3), (2, 2, 3, 4),
                       dict(window_strides=(1, 1), padding=((1, 1), (1, 1)),
                            lhs_dilation=(2, 2), rhs_dilation=(1, 1))),
}
NHWC = ('NHWC', 'HWIO', 'NHWC')


def _operands(lhs_shape, rhs_shape, out_fn):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=lhs_shape), jnp.float32)
  w = jnp.asarray(rng.normal(size=rhs_shape), jnp.float32)
  g = jnp.asarray(rng.normal(size=out_fn(x, w).shape), jnp.float32)
  return x, w, g


def _value_and_vjp(conv, x, w, g):
  y, vjp = jax.vjp(conv, x, w)
  return (y,) + vjp(g)


@pytest.mark.parametrize('case', sorted(CASES))
def test_value_and_gradients_match_lax(case):
  lhs_shape, rhs_shape, kw = CASES[case]
  ref = lambda x, w: lax.conv_general_dilated(x, w, dimension_numbers=NHWC,
                                              **kw)
  ours = lambda x, w: loop_conv.conv_general_dilated(
      x, w, dimension_numbers=NHWC, **kw)
  x, w, g = _operands(lhs_shape, rhs_shape, ref)
  want = _value_and_vjp(ref, x, w, g)
  # Plain, inside a scan (where the rewrite matters) and under vmap.
  got_plain = jax.jit(lambda *a: _value_and_vjp(ours, *a))(x, w, g)
  got_scan = jax.jit(lambda *a: lax.scan(
      lambda c, _: (c, _value_and_vjp(ours, *a)), 0, None, length=2)[1])(
          x, w, g)
  got_vmap = jax.jit(jax.vmap(lambda *a: _value_and_vjp(ours, *a)))(
      *(jnp.stack([a, 2.0 * a]) for a in (x, w, g)))
  for k, ref_k in enumerate(want):
    np.testing.assert_allclose(got_plain[k], ref_k, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got_scan[k][1], ref_k, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got_vmap[k][0], ref_k, rtol=1e-5, atol=1e-5)
  # Batch element 1 has x, w and g doubled: the output and both gradients
  # are bilinear, so all scale by 4.
  for k, ref_k in enumerate(want):
    np.testing.assert_allclose(got_vmap[k][1], 4.0 * ref_k, rtol=1e-5,
                               atol=1e-4)


def test_other_dimension_numbers():
  dn = ('NCHW', 'OIHW', 'NCHW')
  kw = dict(window_strides=(1, 2), padding='SAME', dimension_numbers=dn)
  ref = lambda x, w: lax.conv_general_dilated(x, w, **kw)
  ours = lambda x, w: loop_conv.conv_general_dilated(x, w, **kw)
  x, w, g = _operands((2, 3, 7, 6), (5, 3, 3, 2), ref)
  want = _value_and_vjp(ref, x, w, g)
  got = jax.jit(lambda *a: _value_and_vjp(ours, *a))(x, w, g)
  for a, b in zip(got, want):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def _conv_dim_labels(fn, *args):
  hlo = jax.jit(fn).lower(*args).compile().as_text()
  return re.findall(r'convolution\(.*?dim_labels=(\S+?),', hlo)


def test_backward_convolutions_in_a_scan_are_canonical():
  """Pins the mechanism: inside a while loop XLA:CPU leaves the plain
  convolution's gradient convolutions non-canonical (the slow path); ours
  are all NHWC / HWIO."""
  if jax.default_backend() != 'cpu':
    pytest.skip('the rewrite only applies on CPU')
  kw = dict(window_strides=(1, 1), padding='SAME', dimension_numbers=NHWC)
  x = jnp.ones((4, 2, 8, 8, 3))
  w = jnp.ones((3, 3, 3, 4))

  def train(conv):
    def step(w, xb):
      return w - 0.1 * jax.grad(lambda w: jnp.sum(conv(xb, w) ** 2))(w), None
    return lambda w, x: lax.scan(step, w, x)[0]

  plain = _conv_dim_labels(
      train(lambda a, b: lax.conv_general_dilated(a, b, **kw)), w, x)
  ours = _conv_dim_labels(
      train(lambda a, b: loop_conv.conv_general_dilated(a, b, **kw)), w, x)
  assert any(lbl != 'b01f_01io->b01f' for lbl in plain), plain
  assert ours and all(lbl == 'b01f_01io->b01f' for lbl in ours), ours


def test_flax_conv_hook_gives_same_training_step():
  class Net(nn.Module):
    fast: bool

    @nn.compact
    def __call__(self, x):
      kw = ({'conv_general_dilated': loop_conv.conv_general_dilated}
            if self.fast else {})
      x = nn.relu(nn.Conv(4, (3, 3), padding='SAME', **kw)(x))
      x = nn.Conv(2, (3, 3), strides=(2, 2), padding='SAME', **kw)(x)
      return jnp.mean(x, axis=(1, 2))

  x = jnp.asarray(np.random.default_rng(1).normal(size=(3, 8, 8, 1)),
                  jnp.float32)
  params = Net(False).init(jax.random.PRNGKey(0), x)
  grads = [jax.jit(jax.grad(lambda p, m=m: jnp.sum(m.apply(p, x) ** 2)))(
      params) for m in (Net(False), Net(True))]
  for a, b in zip(jax.tree.leaves(grads[0]), jax.tree.leaves(grads[1])):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
