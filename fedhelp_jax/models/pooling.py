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

Here the forward pass computes the max and the position of the first maximum
of each window in ONE variadic reduction, and the backward pass routes the
output gradient to that position. The route is decided once, so however XLA
fuses or recomputes the layers around the pool, every window sends its whole
gradient to exactly one element. Ties go to the first maximum in row-major
window order, and NaNs propagate, exactly as ``nn.max_pool`` (forward and
gradient are equal to it; tests/test_models.py).
"""

import jax
from jax import lax
import jax.numpy as jnp

_WINDOW = 2


def _windows(x):
  """``[B, H, W, C]`` (H, W even) as ``[B, H/2, 2, W/2, 2, C]``: a reshape of
  the same row-major buffer, so no copy."""
  b, h, w, c = x.shape
  return x.reshape(b, h // _WINDOW, _WINDOW, w // _WINDOW, _WINDOW, c)


def _max_and_first_argmax(windows):
  """Max over each window and the window position (0..3) of its first
  maximum, from one reduction (so the two cannot disagree)."""
  # A broadcast small constant (not a full-size iota, which XLA materialises
  # as an int32 array as large as the input and reads back every step).
  position = jnp.broadcast_to(
      jnp.arange(_WINDOW * _WINDOW, dtype=jnp.int8).reshape(
          1, 1, _WINDOW, 1, _WINDOW, 1), windows.shape)

  def pick(a, b):
    # A strict total order (NaN above everything, then the lower position),
    # so the reduction is associative and commutative as XLA requires.
    (a_value, a_pos), (b_value, b_pos) = a, b
    a_nan, b_nan = jnp.isnan(a_value), jnp.isnan(b_value)
    tie = (a_value == b_value) | (a_nan & b_nan)
    b_wins = ((b_value > a_value) | (b_nan & ~a_nan)
              | (tie & (b_pos < a_pos)))
    return (jnp.where(b_wins, b_value, a_value),
            jnp.where(b_wins, b_pos, a_pos))

  init = (jnp.array(-jnp.inf, windows.dtype), jnp.array(0, jnp.int8))
  return lax.reduce((windows, position), init, pick, (2, 4))


def _spread(first, grad):
  """Each window's output gradient at its ``first`` position, zeros
  elsewhere: the input gradient, ``[B, H, W, C]``."""
  b, h2, w2, c = grad.shape
  position = (lax.broadcasted_iota(jnp.int8, (1, 1, _WINDOW, 1, _WINDOW, 1), 2)
              * _WINDOW
              + lax.broadcasted_iota(jnp.int8, (1, 1, _WINDOW, 1, _WINDOW, 1),
                                     4))
  routed = jnp.where(position == first[:, :, None, :, None, :],
                     grad[:, :, None, :, None, :], jnp.zeros((), grad.dtype))
  return routed.reshape(b, h2 * _WINDOW, w2 * _WINDOW, c)


@jax.custom_vjp
def _pool_even(x):
  return _max_and_first_argmax(_windows(x))[0]


def _pool_even_fwd(x):
  return _max_and_first_argmax(_windows(x))


def _pool_even_bwd(first, grad):
  return (_spread(first, grad),)


_pool_even.defvjp(_pool_even_fwd, _pool_even_bwd)


def max_pool_2x2(x):
  """``nn.max_pool(x, (2, 2), strides=(2, 2))`` (VALID) of ``[B, H, W, C]``.

  An odd last row or column is dropped, as VALID pooling does; its gradient
  is zero.
  """
  if x.ndim != 4:
    raise ValueError(f'max_pool_2x2 takes [B, H, W, C]; got shape {x.shape}.')
  h, w = x.shape[1], x.shape[2]
  even_h, even_w = h - h % _WINDOW, w - w % _WINDOW
  if (even_h, even_w) != (h, w):
    x = x[:, :even_h, :even_w]
  return _pool_even(x)
