# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""2x2 max-pooling whose backward pass is fast on XLA:CPU and cannot lose
gradients to rounding.

``nn.max_pool``'s backward pass is ``select_and_scatter``, which XLA:CPU runs
as a generic scatter: in a profiled CNN step the two pools' backward took 6.0
+ 2.5 of about 20 ms (docs/scale.md). The obvious rewrite, a max over a
``[B, H/2, 2, W/2, 2, C]`` view, is fast but its gradient is wrong under
``jit``: ``jnp.max``'s gradient compares the input with the pooled output,
XLA recomputes the input (e.g. GroupNorm's output) inside the backward fusion
with different rounding, no element matches, and the gradient is 0/0.

Here the forward pass also computes the position of each window's first
maximum and stores it (one byte per output), and the backward pass routes the
output gradient to that position. So every window sends its whole gradient
to exactly one element, however XLA fuses or recomputes the layers around the
pool: where recomputed rounding makes the exact position's match fail, a
bucketed position that cannot fail is used (``_first_position``). Ties go to
the first maximum in row-major window order and NaNs propagate, as in
``nn.max_pool``; forward and gradient are equal to it (tests/test_models.py).
"""

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp

_WINDOW = 2


def _windows(x):
  """``[B, H, W, C]`` (H, W even) as ``[B, H/2, 2, W/2, 2, C]``: a reshape of
  the same row-major buffer, so no copy."""
  b, h, w, c = x.shape
  return x.reshape(b, h // _WINDOW, _WINDOW, w // _WINDOW, _WINDOW, c)


def _window_positions(dtype):
  """Row-major position of each element in its window, broadcastable
  against ``[B, H/2, 2, W/2, 2, C]``."""
  return jnp.arange(_WINDOW * _WINDOW, dtype=dtype).reshape(
      1, 1, _WINDOW, 1, _WINDOW, 1)


def _order_key(windows):
  """int32 keys in the order of the values: NaN above everything (as
  ``lax.max`` propagates it), -0.0 equal to +0.0."""
  values = windows.astype(jnp.float32)  # Exact for bfloat16 and float16.
  bits = lax.bitcast_convert_type(
      jnp.where(values == 0, jnp.float32(0), values), jnp.int32)
  # Negative floats order backwards as integers: flip their magnitude bits.
  key = jnp.where(bits < 0, bits ^ jnp.int32(0x7fffffff), bits)
  return jnp.where(jnp.isnan(values), jnp.int32(0x7fffffff), key)


def _first_position(key, top):
  """Window position (0..3, row-major) of the first key equal to ``top``,
  the window's largest key; ``key`` is ``[B, H/2, 2, W/2, 2, C]``.

  Where no key equals ``top`` (only if XLA recomputed the input of the two
  reductions with different rounding: the failure that makes ``jnp.max``'s
  gradient 0/0), the bucketed position: keys with their two low bits
  replaced by ``3 - position``, so one max picks the first of the keys
  within 3 float32 ulps of the largest. It is always a valid position.
  """
  position = jnp.broadcast_to(_window_positions(jnp.int32), key.shape)
  none = _WINDOW * _WINDOW
  exact = jnp.where(key == top[:, :, None, :, None, :], position,
                    none).min(axis=(2, 4))
  bucketed = 3 - (((key & jnp.int32(~3)) | (3 - position)).max(axis=(2, 4))
                  & 3)
  return jnp.where(exact < none, exact, bucketed).astype(jnp.int8)


def _max_and_first_argmax(windows):
  """Max over each window and the position of its first maximum.

  Plain max/min reductions, which XLA:CPU vectorises. One variadic
  ``lax.reduce`` carrying (value, position) gives the same answer but runs
  as scalar code: 5.0 ms for the first pool's forward in a traced step of
  the default CNN at batch 32 (one core), where a plain max over the same
  view takes 0.2-0.5 ms; the whole step was 1.14x faster with these
  reductions than with it (same process, alternating).
  """
  key = _order_key(windows)
  return (windows.max(axis=(2, 4)),
          _first_position(key, key.max(axis=(2, 4))))


def _spread(first, grad):
  """Each window's output gradient at its ``first`` position, zeros
  elsewhere: the input gradient, ``[B, H, W, C]``."""
  b, h2, w2, c = grad.shape
  chosen = _window_positions(jnp.int8) == first[:, :, None, :, None, :]
  routed = jnp.where(chosen, grad[:, :, None, :, None, :],
                     jnp.zeros((), grad.dtype))
  return routed.reshape(b, h2 * _WINDOW, w2 * _WINDOW, c)


@jax.custom_vjp
def _pool_even(x):
  return _windows(x).max(axis=(2, 4))


def _pool_even_fwd(x):
  return _max_and_first_argmax(_windows(x))


def _pool_even_bwd(first, grad):
  return (_spread(first, grad),)


_pool_even.defvjp(_pool_even_fwd, _pool_even_bwd)


def max_pool_2x2(x):
  """``nn.max_pool(x, (2, 2), strides=(2, 2))`` (VALID) of ``[B, H, W, C]``.

  An odd last row or column is dropped, as VALID pooling does; its gradient
  is zero. On CPU this module's pool; on other backends ``nn.max_pool``
  itself, whose ``select_and_scatter`` the GPU and TPU compilers handle well
  (the rewrite is measured on CPU only; like ``loop_conv``, the choice
  follows ``jax.default_backend()``).
  """
  if x.ndim != 4:
    raise ValueError(f'max_pool_2x2 takes [B, H, W, C]; got shape {x.shape}.')
  if jax.default_backend() != 'cpu':
    return nn.max_pool(x, (_WINDOW, _WINDOW), strides=(_WINDOW, _WINDOW))
  h, w = x.shape[1], x.shape[2]
  even_h, even_w = h - h % _WINDOW, w - w % _WINDOW
  if (even_h, even_w) != (h, w):
    x = x[:, :even_h, :even_w]
  return _pool_even(x)
