# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""Packing silos into the padded, stacked layout the engine maps over.

A *group* is a dict of numpy arrays with a leading client axis ``C`` (see
``fedhelp_jax/types.py``)::

  {'x': [C, N, ...] float32, 'y': [C, N, ...] int32, 'n': [C] int32,
   'test_x': [C, Nt, ...] float32, 'test_y': [C, Nt, ...] int32,
   'test_n': [C] int32}

``N`` (``Nt``) is the largest silo of THIS group, so a group of small silos
is never padded to a large silo's size; rows past ``n[c]`` are zeros and must
be masked by the consumer.
"""

from typing import Optional, Sequence

import numpy as np

GROUP_KEYS = ('x', 'y', 'n', 'test_x', 'test_y', 'test_n')


def _as_inputs(x: np.ndarray, dtype) -> np.ndarray:
  """Integer images (uint8 pixels) scaled to [0, 1]; floats kept as they are.

  Floats are not rescaled because they may be features with their own scale
  (e.g. MaxAbs-scaled tabular data in [-1, 1]) or images already in [0, 1].
  """
  if np.issubdtype(x.dtype, np.integer):
    if x.dtype != np.uint8:
      raise ValueError(f'Integer inputs must be uint8 pixels (scaled by '
                       f'1/255); got {x.dtype}. Convert them to float first.')
    return x.astype(dtype) / dtype(255.0)
  return x.astype(dtype)


def _stack(x: np.ndarray, y: np.ndarray, indices: Sequence[np.ndarray],
           pad_to: Optional[int], dtype, what: str
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  sizes = np.array([len(i) for i in indices], np.int32)
  width = int(sizes.max()) if sizes.size else 0
  if pad_to is not None:
    if pad_to < width:
      raise ValueError(f'pad_to={pad_to} is smaller than the largest silo '
                       f'({width} {what} examples); use pad_to >= {width} or '
                       'None.')
    width = int(pad_to)
  c = len(indices)
  xs = np.zeros((c, width) + x.shape[1:], dtype)
  ys = np.zeros((c, width) + y.shape[1:], np.int32)
  for i, idx in enumerate(indices):
    idx = np.asarray(idx, np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= x.shape[0]):
      raise ValueError(f'{what} indices of silo {i} fall outside [0, '
                       f'{x.shape[0]}).')
    xs[i, :idx.size] = _as_inputs(x[idx], dtype)
    ys[i, :idx.size] = y[idx]
  return xs, ys, sizes


def pack_group(x, y, client_indices: Sequence[np.ndarray], *,
               test_x=None, test_y=None,
               test_indices: Optional[Sequence[np.ndarray]] = None,
               pad_to: Optional[int] = None, dtype=np.float32
               ) -> dict[str, np.ndarray]:
  """Stacks the silos of one group into padded ``[C, N, ...]`` arrays.

  Args:
    x: ``[M, ...]`` inputs; uint8 pixels are scaled to [0, 1], floats are
      kept.
    y: ``[M]`` labels or ``[M, H, W]`` masks (integers).
    client_indices: ``C`` index arrays into ``x``, one per silo, in silo
      order.
    test_x: ``[Mt, ...]`` test inputs; defaults to ``x`` (so
      ``test_indices`` can index held-out rows of the training pool).
    test_y: test labels matching ``test_x``; defaults to ``y``.
    test_indices: ``C`` index arrays into ``test_x``; None gives every silo
      an empty test set (``Nt = 0``).
    pad_to: optional padded training size ``N`` (>= the largest silo), e.g.
      to round up to a batch multiple.
    dtype: floating dtype of ``x`` and ``test_x``.

  Returns:
    ``{'x': [C, N, ...], 'y': [C, N, ...] int32, 'n': [C] int32,
    'test_x': [C, Nt, ...], 'test_y': [C, Nt, ...] int32, 'test_n': [C]
    int32}`` with zero padding rows.

  Raises:
    ValueError: no silos, mismatched lengths, indices out of range, or
      ``pad_to`` too small.
  """
  x, y = np.asarray(x), np.asarray(y)
  if not np.issubdtype(np.dtype(dtype), np.floating):
    raise ValueError(f'dtype must be a floating dtype, got {dtype}.')
  dtype = np.dtype(dtype).type
  if len(client_indices) == 0:
    raise ValueError('client_indices is empty; a group needs at least one '
                     'silo.')
  if x.shape[0] != y.shape[0]:
    raise ValueError(f'x has {x.shape[0]} rows but y has {y.shape[0]}.')
  if not np.issubdtype(y.dtype, np.integer):
    raise ValueError(f'y must hold integer labels or masks, got {y.dtype}.')
  test_x = x if test_x is None else np.asarray(test_x)
  test_y = y if test_y is None else np.asarray(test_y)
  if test_x.shape[0] != test_y.shape[0]:
    raise ValueError(f'test_x has {test_x.shape[0]} rows but test_y has '
                     f'{test_y.shape[0]}.')
  if test_indices is None:
    test_indices = [np.zeros(0, np.int64)] * len(client_indices)
  if len(test_indices) != len(client_indices):
    raise ValueError(f'test_indices has {len(test_indices)} silos but '
                     f'client_indices has {len(client_indices)}; give one '
                     'test index array per silo.')
  xs, ys, n = _stack(x, y, client_indices, pad_to, dtype, 'training')
  return {'x': xs, 'y': ys, 'n': n,
          **pack_held_out(test_x, test_y, test_indices, dtype=dtype,
                          what='test')}


def pack_held_out(x, y, indices: Sequence[np.ndarray], *, dtype=np.float32,
                  what: str = 'held-out') -> dict[str, np.ndarray]:
  """Held-out sets of ``C`` silos (test or validation), stacked and padded
  as ``pack_group`` stacks its test part.

  Returns:
    ``{'test_x': [C, Nt, ...], 'test_y': [C, Nt, ...] int32, 'test_n': [C]
    int32}``.
  """
  xs, ys, n = _stack(np.asarray(x), np.asarray(y), indices, None,
                     np.dtype(dtype).type, what)
  return {'test_x': xs, 'test_y': ys, 'test_n': n}
