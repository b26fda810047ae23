# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""Model shapes, parameter paths, BatchNorm state, heads and vmap."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedhelp_jax import models

# Tiny configurations: shape checks trace (eval_shape) without compiling.
_CASES = {
    'cnn': (dict(features=(4, 8), dense=8), (2, 28, 28, 1), (2, 3)),
    'resnet': (dict(depth=8), (2, 8, 8, 3), (2, 3)),
    'unet': (dict(base_features=4, levels=2), (2, 8, 8, 1), (2, 8, 8, 3)),
    'logreg': ({}, (2, 5), (2, 3)),
}


def _shapes(module, x_shape, *, train, head):
  def run():
    x = jnp.zeros(x_shape)
    variables = models.init_variables(module, jax.random.key(0), x)
    out, new_vars = models.apply_model(module, variables, x, train=train,
                                       head=head)
    return out, new_vars
  return jax.eval_shape(run)


def _param_shapes(module, x):
  return jax.eval_shape(
      lambda: models.init_variables(module, jax.random.key(0), x))['params']


def _numpy_init(module, x, seed=0):
  """Variables of the right structure filled with numpy randoms.

  Compiling Flax's random initialisers costs seconds on a small CPU; tests
  that only need *some* weights use this instead of ``init_variables``.
  """
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(
      lambda: models.init_variables(module, jax.random.key(0), x))
  return jax.tree.map(
      lambda s: jnp.asarray(0.5 * rng.standard_normal(s.shape), s.dtype),
      shapes)


@pytest.mark.parametrize('norm', ['group', 'batch', 'none'])
@pytest.mark.parametrize('name', sorted(_CASES))
def test_output_shapes(name, norm):
  kwargs, x_shape, out_shape = _CASES[name]
  module = models.make_model(name, num_classes=3, aux_classes=2, norm=norm,
                             **kwargs)
  for train in (True, False):
    out, _ = _shapes(module, x_shape, train=train, head='main')
    assert out.shape == out_shape and out.dtype == jnp.float32
    aux, _ = _shapes(module, x_shape, train=train, head='aux')
    assert aux.shape == out_shape[:-1] + (2,)


def test_unknown_name_and_bad_options_raise():
  with pytest.raises(ValueError, match="'cnn'.*'logreg'.*'resnet'.*'unet'"):
    models.make_model('vit', num_classes=2)
  with pytest.raises(ValueError, match='norm'):
    models.make_model('cnn', num_classes=2, norm='layer')
  with pytest.raises(ValueError, match='6n\\+2'):
    models.make_model('resnet', num_classes=2, depth=18)


def test_aux_head_needs_aux_classes():
  module = models.make_model('logreg', num_classes=2)
  x = jnp.ones((1, 4))
  variables = models.init_variables(module, jax.random.key(0), x)
  assert set(variables['params']) == {'head'}
  with pytest.raises(ValueError, match='aux_classes'):
    module.apply(variables, x, head='aux')


def test_param_paths():
  cnn = models.make_model('cnn', num_classes=2, aux_classes=3,
                          features=(4, 8), dense=8)
  p = _param_shapes(cnn, jnp.zeros((1, 28, 28, 1)))
  assert set(p) == {'conv_0', 'norm_0', 'conv_1', 'norm_1', 'dense', 'head',
                    'aux_head'}
  assert p['head']['kernel'].shape == (8, 2)
  assert p['aux_head']['kernel'].shape == (8, 3)
  unet = models.make_model('unet', num_classes=2, aux_classes=3,
                           base_features=4, levels=3)
  p = _param_shapes(unet, jnp.zeros((1, 16, 16, 1)))
  assert set(p) == {'enc_0', 'enc_1', 'enc_2', 'bottleneck', 'dec_0',
                    'dec_1', 'dec_2', 'head', 'aux_head'}
  # dec_0 is the deepest decoder: bottleneck (32 ch) -> level 2 (16 ch), and
  # its convs see the 16 up-sampled + 16 skip channels of enc_2.
  assert p['dec_0']['up']['kernel'].shape == (2, 2, 32, 16)
  assert p['dec_0']['conv_0']['kernel'].shape == (3, 3, 32, 16)
  assert p['dec_2']['up']['kernel'].shape == (2, 2, 8, 4)
  assert p['head']['kernel'].shape == (1, 1, 4, 2)
  assert p['aux_head']['kernel'].shape == (1, 1, 4, 3)


@pytest.mark.parametrize('depth', [8, 14, 20, 32, 56, 110])
def test_resnet_depth_to_blocks(depth):
  module = models.make_model('resnet', num_classes=10, depth=depth)
  p = _param_shapes(module, jnp.zeros((1, 8, 8, 3)))
  n = (depth - 2) // 6
  blocks = {k for k in p if k.startswith('stage')}
  assert blocks == {f'stage{s}_block{b}' for s in range(3) for b in range(n)}
  # Two 3x3 convs per block + stem + head = depth weighted layers.
  convs = sum(k.startswith('conv_') for b in blocks for k in p[b])
  assert convs + 2 == depth


def test_resnet20_param_count():
  module = models.make_model('resnet', num_classes=10, depth=20, norm='batch')
  p = _param_shapes(module, jnp.zeros((1, 32, 32, 3)))
  # Counted by hand (bias-free convs + BN scale/bias, dense head):
  stem = 3 * 3 * 3 * 16 + 2 * 16
  stage0 = 6 * (9 * 16 * 16 + 2 * 16)
  stage1 = 9 * 16 * 32 + 5 * 9 * 32 * 32 + 6 * 2 * 32
  stage2 = 9 * 32 * 64 + 5 * 9 * 64 * 64 + 6 * 2 * 64
  head = 64 * 10 + 10
  assert stem + stage0 + stage1 + stage2 + head == 269_722  # Option A count.
  # Ours projects (1x1 conv + BN) in the 2 downsampling blocks (option B).
  proj = 16 * 32 + 2 * 32 + 32 * 64 + 2 * 64
  assert models.count_params(p) == 269_722 + proj
  wide = models.make_model('resnet', num_classes=10, depth=20, width=2)
  pw = _param_shapes(wide, jnp.zeros((1, 32, 32, 3)))
  assert models.count_params(pw) > 3.5 * models.count_params(p)


def test_batch_stats_update_only_when_training():
  module = models.make_model('cnn', num_classes=2, norm='batch',
                             features=(2, 2), dense=4)
  x = jax.random.normal(jax.random.key(1), (4, 8, 8, 1)) * 3.0 + 2.0
  v = models.init_variables(module, jax.random.key(0), x)
  assert set(v) == {'params', 'batch_stats'}
  _, v_eval = models.apply_model(module, v, x, train=False)
  assert v_eval is v
  _, v_train = models.apply_model(module, v, x, train=True)
  assert v_train['params'] is v['params']
  mean0 = v['batch_stats']['norm_0']['mean']
  mean1 = v_train['batch_stats']['norm_0']['mean']
  np.testing.assert_array_equal(mean0, 0.0)
  # Momentum 0.9: new running mean = 0.1 * batch mean of conv_0's output.
  h = jax.lax.conv_general_dilated(
      x, v['params']['conv_0']['kernel'], (1, 1), 'SAME',
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  np.testing.assert_allclose(mean1, 0.1 * jnp.mean(h, axis=(0, 1, 2)),
                             rtol=1e-4, atol=1e-6)
  group = models.make_model('cnn', num_classes=2, features=(2, 2), dense=4)
  vg = models.init_variables(group, jax.random.key(0), x)
  assert set(vg) == {'params'}
  _, vg_train = models.apply_model(group, vg, x, train=True)
  assert vg_train is vg


@pytest.mark.parametrize('name', ['cnn', 'unet'])
def test_aux_head_reads_same_features(name):
  kwargs, x_shape, _ = _CASES[name]
  module = models.make_model(name, num_classes=3, aux_classes=3, **kwargs)
  x = jax.random.normal(jax.random.key(1), x_shape)
  v = _numpy_init(module, x)
  main = module.apply(v, x, head='main')
  aux = module.apply(v, x, head='aux')
  assert not np.allclose(main, aux)
  # With the main head's weights copied into the aux head, the heads agree:
  # the aux head sees exactly the backbone features the main head sees.
  params = dict(v['params'], aux_head=v['params']['head'])
  np.testing.assert_allclose(module.apply({'params': params}, x, head='aux'),
                             main, rtol=1e-6, atol=1e-6)


def test_logreg_is_affine():
  module = models.make_model('logreg', num_classes=3, aux_classes=2)
  x = np.random.default_rng(0).normal(size=(4, 2, 3)).astype(np.float32)
  v = _numpy_init(module, x)
  p = jax.tree.map(np.asarray, v['params'])
  flat = x.reshape(4, 6)
  np.testing.assert_allclose(module.apply(v, x),
                             flat @ p['head']['kernel'] + p['head']['bias'],
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(
      module.apply(v, x, head='aux'),
      flat @ p['aux_head']['kernel'] + p['aux_head']['bias'],
      rtol=1e-5, atol=1e-6)


def test_vmap_over_stacked_params_equals_per_client():
  module = models.make_model('cnn', num_classes=2, aux_classes=2,
                             norm='batch', features=(2, 4), dense=4)
  x = jax.random.normal(jax.random.key(9), (3, 2, 8, 8, 1))  # [C, B, ...]
  rngs = jax.random.split(jax.random.key(0), 3)
  init = lambda rng: models.init_variables(module, rng, x[0])
  stacked = jax.jit(jax.vmap(init))(rngs)
  assert stacked['params']['head']['kernel'].shape == (3, 4, 2)

  def apply(v, xc):
    return models.apply_model(module, v, xc, train=True, head='aux')
  out, new = jax.jit(jax.vmap(apply))(stacked, x)
  # Jitted per client too: one compile for the three (eager compiles per op).
  init_one, apply_one = jax.jit(init), jax.jit(apply)
  for c in range(3):
    vc = init_one(rngs[c])
    oc, nc = apply_one(vc, x[c])
    np.testing.assert_allclose(out[c], oc, rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree.leaves(new['batch_stats']),
                    jax.tree.leaves(nc['batch_stats'])):
      np.testing.assert_allclose(a[c], b, rtol=1e-5, atol=1e-6)
  # Different rngs really gave different clients.
  assert not np.allclose(out[0], out[1])


def test_bfloat16_compute_float32_params():
  module = models.make_model('unet', num_classes=2, base_features=4,
                             levels=1, dtype='bfloat16')
  ref = models.make_model('unet', num_classes=2, base_features=4, levels=1)
  x = jax.random.normal(jax.random.key(1), (1, 4, 4, 1))
  v = _numpy_init(module, x)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(v))
  out = module.apply(v, x)
  assert out.dtype == jnp.float32
  np.testing.assert_allclose(out, ref.apply(v, x), rtol=0.05, atol=0.05)


def test_cnn_gradient_under_jit_is_finite_and_matches_eager():
  # Pins a failure seen with a reshape + max pool: under jit XLA recomputed
  # GroupNorm's output inside the pool's backward with other rounding, no
  # element equalled its window's maximum and the gradient was 0 / 0.
  model = models.CNN(num_classes=3, features=(8, 16), dense=16)
  x = jax.random.uniform(jax.random.PRNGKey(0), (16, 28, 28, 1))
  variables = model.init(jax.random.PRNGKey(1), x)

  def loss(v):
    return jnp.sum(model.apply(v, x, train=True) ** 2)

  jitted = jax.jit(jax.grad(loss))(variables)
  eager = jax.grad(loss)(variables)
  for a, b in zip(jax.tree.leaves(jitted), jax.tree.leaves(eager)):
    assert bool(jnp.all(jnp.isfinite(a)))
    np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize('shape,groups', [((3, 6, 5, 8), 4), ((2, 4, 4, 6), 3),
                                          ((4, 10), 2), ((2, 3, 3, 4), 1)])
def test_group_norm_equals_flax_group_norm(shape, groups):
  import flax.linen as nn
  from fedhelp_jax.models import layers
  x = 3. + 2. * jax.random.normal(jax.random.PRNGKey(0), shape)
  ours = layers.GroupNorm(num_groups=groups)
  ref = nn.GroupNorm(num_groups=groups)
  variables = ours.init(jax.random.PRNGKey(1), x)
  assert (jax.tree.map(jnp.shape, variables)
          == jax.tree.map(jnp.shape, ref.init(jax.random.PRNGKey(1), x)))
  # Non-trivial affine parameters, shared by both modules.
  c = shape[-1]
  variables = {'params': {'scale': jnp.linspace(0.5, 2., c),
                          'bias': jnp.linspace(-1., 1., c)}}
  cot = jax.random.normal(jax.random.PRNGKey(2), shape)

  def loss(module, v, inputs):
    return jnp.sum(module.apply(v, inputs) * cot)

  np.testing.assert_allclose(ours.apply(variables, x), ref.apply(variables, x),
                             rtol=1e-5, atol=1e-5)
  grads = jax.jit(jax.grad(loss, argnums=(1, 2)), static_argnums=0)
  g_ours, g_ref = grads(ours, variables, x), grads(ref, variables, x)
  for a, b in zip(jax.tree.leaves(g_ours), jax.tree.leaves(g_ref)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_group_norm_bfloat16_output_float32_statistics():
  import flax.linen as nn
  from fedhelp_jax.models import layers
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 4, 4, 8)).astype(
      jnp.bfloat16)
  ours = layers.GroupNorm(num_groups=4, dtype=jnp.bfloat16)
  ref = nn.GroupNorm(num_groups=4, dtype=jnp.bfloat16)
  variables = ours.init(jax.random.PRNGKey(1), x)
  out = ours.apply(variables, x)
  assert out.dtype == jnp.bfloat16
  assert variables['params']['scale'].dtype == jnp.float32
  np.testing.assert_allclose(out.astype(jnp.float32),
                             ref.apply(variables, x).astype(jnp.float32),
                             atol=2e-2)


def test_group_norm_rejects_groups_that_do_not_divide_channels():
  from fedhelp_jax.models import layers
  with pytest.raises(ValueError, match='do not divide'):
    layers.GroupNorm(num_groups=3).init(jax.random.PRNGKey(0),
                                        jnp.ones((1, 2, 2, 8)))


def _flax_max_pool(x):
  import flax.linen as nn
  return nn.max_pool(x, (2, 2), strides=(2, 2))


@pytest.mark.parametrize('shape,dtype', [((3, 8, 8, 5), jnp.float32),
                                         ((2, 7, 9, 3), jnp.float32),
                                         ((2, 6, 6, 4), jnp.bfloat16)])
def test_max_pool_equals_flax_max_pool_with_ties(shape, dtype):
  """Value and gradient, eager and jitted; halves rounded so windows tie
  often (the gradient then goes to the first maximum, as select_and_scatter
  sends it); odd sizes drop the last row/column as VALID pooling does."""
  from fedhelp_jax.models import pooling
  x = (jnp.round(4. * jax.random.normal(jax.random.PRNGKey(0), shape)) / 2
       ).astype(dtype)
  out_shape = (shape[0], shape[1] // 2, shape[2] // 2, shape[3])
  cot = jax.random.normal(jax.random.PRNGKey(1), out_shape).astype(dtype)
  # The rounded inputs really tie: some window holds its max twice.
  windows = _flax_max_pool(x)
  assert int(jnp.sum(x[:, :out_shape[1] * 2, :out_shape[2] * 2]
                     == jnp.repeat(jnp.repeat(windows, 2, 1), 2, 2))) > (
                         windows.size)

  def loss(pool):
    return lambda v: jnp.vdot(pool(v).astype(jnp.float32),
                              cot.astype(jnp.float32))

  ours, ref = pooling.max_pool_2x2(x), _flax_max_pool(x)
  assert ours.dtype == ref.dtype and ours.shape == ref.shape
  np.testing.assert_array_equal(np.asarray(ours, np.float32),
                                np.asarray(ref, np.float32))
  for transform in (lambda f: f, jax.jit):
    g_ours = transform(jax.grad(loss(pooling.max_pool_2x2)))(x)
    g_ref = transform(jax.grad(loss(_flax_max_pool)))(x)
    np.testing.assert_array_equal(np.asarray(g_ours, np.float32),
                                  np.asarray(g_ref, np.float32))


def test_max_pool_propagates_nan_under_vmap():
  from fedhelp_jax.models import pooling
  x = jax.random.normal(jax.random.PRNGKey(0), (3, 2, 4, 4, 2))
  x = x.at[1, 0, 2, 3, 1].set(jnp.nan)
  ours = jax.vmap(pooling.max_pool_2x2)(x)
  assert int(jnp.sum(jnp.isnan(ours))) == 1
  assert bool(jnp.isnan(ours[1, 0, 1, 1, 1]))
  np.testing.assert_array_equal(ours, jax.vmap(_flax_max_pool)(x))


def test_max_pool_rejects_non_image_input():
  from fedhelp_jax.models import pooling
  with pytest.raises(ValueError, match=r'\[B, H, W, C\]'):
    pooling.max_pool_2x2(jnp.ones((4, 8, 8)))


def test_max_pool_order_key_sorts_like_the_values():
  from fedhelp_jax.models import pooling
  values = jnp.array([-jnp.inf, -3.5, -1e-30, -0., 0., 1e-30, 2., jnp.inf,
                      jnp.nan], jnp.float32)
  keys = np.asarray(pooling._order_key(values))
  assert np.all(np.diff(keys[:3]) > 0) and np.all(np.diff(keys[4:]) > 0)
  assert keys[2] < keys[3] == keys[4]  # -0.0 ties with +0.0
  assert keys[-1] == keys.max() > keys[-2]  # NaN above +inf


def test_max_pool_position_falls_back_when_the_max_is_not_matched():
  """If XLA recomputed the pool's input with other rounding for the two
  reductions, no key equals the window's max key; the position must still
  be a real one (never 'none'), the first within 3 ulps of the max."""
  from fedhelp_jax.models import pooling
  one = int(np.float32(1.).view(np.int32))
  # One window per row, row-major positions 0..3; keys as ints.
  keys = np.array([[one, one + 2, one + 1, one - 5],   # first within 3 ulp: 0
                   [one - 9, one, one + 4, one + 4],   # bucket of +4: 2
                   [one, one, one, one]], np.int32)
  windows = jnp.asarray(keys.reshape(3, 1, 2, 1, 2, 1))
  true_top = windows.max(axis=(2, 4))
  exact = pooling._first_position(windows, true_top)
  assert np.asarray(exact).ravel().tolist() == [1, 2, 0]
  unmatched = pooling._first_position(windows, true_top + 1)
  assert np.asarray(unmatched).ravel().tolist() == [0, 2, 0]
