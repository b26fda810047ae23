# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""Simulated multi-site segmentation silos from ONE template brain.

SIMULATION NOTICE: the MNI152 slices come from a single template (an average
of 152 subjects). There are no real sites here. Silos are made different by
(1) giving each silo its own orientation and contiguous slice range (anatomy
shift) and (2) a per-silo simulated "scanner": gamma contrast change, a
smooth multiplicative bias field and additive Gaussian noise (appearance
shift). Results on these silos must be reported as a multi-site *simulation*.

Everything is deterministic given the seeds (``np.random.default_rng``).
"""

from typing import Any, NamedTuple, Optional, Sequence

import numpy as np

from fedhelp_jax.data import pack
from fedhelp_jax.data import partition

SIMULATION_NOTE = (
    'Silos are simulated from ONE template brain (MNI ICBM152 2009a, an '
    'average of 152 subjects) by orientation/slice range and synthetic scanner '
    'shifts (gamma, bias field, noise); they are not real multi-site data.')


class SiteShift(NamedTuple):
  """A simulated scanner's appearance change.

  Attributes:
    gamma: contrast exponent applied as ``image ** gamma`` (1 = unchanged).
    noise_std: standard deviation of additive Gaussian noise (0 = none).
    bias_strength: log-amplitude of the multiplicative bias field (0 = flat).
    seed: seeds the bias-field shape and the noise of this site.
  """
  gamma: float = 1.0
  noise_std: float = 0.0
  bias_strength: float = 0.0
  seed: int = 0


def sample_site_shifts(num_sites: int, *, seed: int,
                       gamma_range: tuple[float, float] = (0.7, 1.4),
                       noise_range: tuple[float, float] = (0.0, 0.04),
                       bias_range: tuple[float, float] = (0.0, 0.3)
                       ) -> list[SiteShift]:
  """Draws one ``SiteShift`` per site, uniformly within the given ranges.

  Gamma is drawn log-uniformly so that brightening and darkening are equally
  likely around 1.

  Args:
    num_sites: number of sites (>= 0).
    seed: random seed.
    gamma_range: ``(min, max)`` gamma, both > 0.
    noise_range: ``(min, max)`` noise standard deviation, both >= 0.
    bias_range: ``(min, max)`` bias-field strength, both >= 0.

  Returns:
    ``num_sites`` shifts, each with its own derived seed.

  Raises:
    ValueError: a range with min > max or out of its domain.
  """
  for name, (lo, hi), floor in (('gamma_range', gamma_range, 1e-6),
                                ('noise_range', noise_range, 0.0),
                                ('bias_range', bias_range, 0.0)):
    if not floor <= lo <= hi:
      raise ValueError(f'{name} must be (min, max) with {floor} <= min <= '
                       f'max; got {(lo, hi)}.')
  rng = np.random.default_rng(seed)
  gammas = np.exp(rng.uniform(np.log(gamma_range[0]), np.log(gamma_range[1]),
                              num_sites))
  noises = rng.uniform(*noise_range, num_sites)
  biases = rng.uniform(*bias_range, num_sites)
  seeds = rng.integers(0, 2**31 - 1, num_sites)
  return [SiteShift(float(g), float(s), float(b), int(k))
          for g, s, b, k in zip(gammas, noises, biases, seeds)]


def bias_field(height: int, width: int, strength: float,
               rng: np.random.Generator) -> np.ndarray:
  """A smooth positive multiplicative field, like MRI coil inhomogeneity.

  The log-field is a random quadratic polynomial of the normalized pixel
  coordinates, rescaled so that its largest magnitude is ``strength``; the
  field is its exponential, so it lies in ``[exp(-strength),
  exp(strength)]``.

  Args:
    height: ``H``.
    width: ``W``.
    strength: maximal absolute log-amplitude (>= 0).
    rng: random generator (draws the six polynomial coefficients).

  Returns:
    float32 ``[H, W]`` field.
  """
  v, u = np.meshgrid(np.linspace(-1, 1, height), np.linspace(-1, 1, width),
                     indexing='ij')
  basis = np.stack([u, v, u * u, v * v, u * v, np.ones_like(u)])
  log_field = np.tensordot(rng.normal(size=6), basis, axes=1)
  log_field -= log_field.mean()
  peak = np.max(np.abs(log_field))
  if peak > 0:
    log_field *= strength / peak
  return np.exp(log_field).astype(np.float32)


def apply_site_shift(images: np.ndarray, shift: SiteShift) -> np.ndarray:
  """Applies a simulated scanner to float images in [0, 1].

  ``out = clip(images ** gamma * field + noise, 0, 1)`` with one bias field
  per site (a scanner property) and fresh noise per pixel.

  Args:
    images: float ``[N, H, W]`` or ``[N, H, W, 1]`` in [0, 1].
    shift: the site's shift.

  Returns:
    float32 array of the same shape, in [0, 1]. The same ``images`` and
    ``shift`` always give the same output.

  Raises:
    ValueError: integer images or values outside [0, 1].
  """
  images = np.asarray(images)
  if not np.issubdtype(images.dtype, np.floating):
    raise ValueError(f'images must be float in [0, 1]; got {images.dtype} '
                     '(divide uint8 pixels by 255 first).')
  if images.size and (images.min() < 0 or images.max() > 1):
    raise ValueError(f'images must lie in [0, 1]; found [{images.min()}, '
                     f'{images.max()}].')
  rng = np.random.default_rng(shift.seed)
  h, w = images.shape[1], images.shape[2]
  field = bias_field(h, w, shift.bias_strength, rng)
  field = field.reshape((1, h, w) + (1,) * (images.ndim - 3))
  out = np.power(images.astype(np.float32), np.float32(shift.gamma)) * field
  if shift.noise_std > 0:
    out = out + rng.normal(0.0, shift.noise_std, images.shape)
  return np.clip(out, 0.0, 1.0).astype(np.float32)


def _assign_axes(sizes: Sequence[int], capacity: dict[int, int]) -> list[int]:
  """Gives each silo (in order) the orientation with the most slices left."""
  left = dict(capacity)
  axes = []
  for i, size in enumerate(sizes):
    axis = max(sorted(left), key=lambda a: left[a])
    if left[axis] < size:
      raise ValueError(
          f'Silo {i} needs {size} slices but at most {left[axis]} contiguous '
          f'slices are left in one orientation (slices per orientation: '
          f'{capacity}). Lower large_size/small_size or the number of silos.')
    left[axis] -= size
    axes.append(axis)
  return axes


def brain_silo_indices(axis: np.ndarray, slice_index: np.ndarray,
                       sizes: Sequence[int], seed: int
                       ) -> tuple[list[np.ndarray], np.ndarray, list[int]]:
  """Contiguous slice ranges, one orientation per silo.

  Silos are given (in order) the orientation with the most slices left, then
  the silos of one orientation get disjoint runs of consecutive slices,
  separated by random gaps that absorb the unused slices.

  Args:
    axis: ``[N]`` orientation of each slice.
    slice_index: ``[N]`` position of each slice along its orientation.
    sizes: slices per silo.
    seed: random seed (gap sizes).

  Returns:
    ``(silos, unused, axes)``: sorted index arrays per silo, the indices in
    no silo, and each silo's orientation.

  Raises:
    ValueError: a silo does not fit.
  """
  axis, slice_index = np.asarray(axis), np.asarray(slice_index)
  by_axis = {int(a): np.flatnonzero(axis == a)[
      np.argsort(slice_index[axis == a], kind='stable')]
             for a in np.unique(axis)}
  axes = _assign_axes(sizes, {a: len(ix) for a, ix in by_axis.items()})
  rng = np.random.default_rng(seed)
  silos: list[Optional[np.ndarray]] = [None] * len(sizes)
  unused = []
  for a, ordered in by_axis.items():
    members = [i for i, ax in enumerate(axes) if ax == a]
    slack = len(ordered) - sum(sizes[i] for i in members)
    gaps = rng.multinomial(slack, np.full(len(members) + 1,
                                          1.0 / (len(members) + 1)))
    pos = 0
    for j, i in enumerate(members):
      unused.append(ordered[pos:pos + gaps[j]])
      pos += gaps[j]
      silos[i] = np.sort(ordered[pos:pos + sizes[i]]).astype(np.int64)
      pos += sizes[i]
    unused.append(ordered[pos:])
  return silos, np.sort(np.concatenate(unused)).astype(np.int64), axes


def brain_silos(data: dict[str, np.ndarray], *, num_large: int,
                num_small: int, large_size: int,
                small_size: partition.SizeSpec, test_fraction: float = 0.25,
                validation_fraction: float = 0.0,
                seed: int = 0, shift_large: bool = True,
                gamma_range: tuple[float, float] = (0.7, 1.4),
                noise_range: tuple[float, float] = (0.0, 0.04),
                bias_range: tuple[float, float] = (0.0, 0.3)
                ) -> dict[str, Any]:
  """Builds simulated large and small segmentation silos from the template.

  Each silo gets one orientation and a contiguous slice range
  (``brain_silo_indices``), its own train/test split of those slices, and a
  simulated scanner (``sample_site_shifts``) applied to both its train and
  test images. Slices in no silo form the ``public`` pool (no shift).
  See the module docstring: this is a SIMULATION of multi-site data.

  Args:
    data: ``load_brain_slices()`` output (``image`` uint8 [N, 64, 64, 1],
      ``mask`` [N, 64, 64], ``axis`` [N], ``slice_index`` [N]).
    num_large: number of large silos.
    num_small: number of small silos.
    large_size: slices per large silo (train + test).
    small_size: slices per small silo, an int or inclusive (min, max).
    test_fraction: fraction of each silo's slices held out for its test set.
    validation_fraction: fraction of each silo's slices held out, from its
      training slices, as its validation set (0: none, and the federation
      is the same as without the argument).
    seed: random seed (sizes, gaps, splits, shifts).
    shift_large: False leaves the large silos unshifted (a reference site).
    gamma_range: see ``sample_site_shifts``.
    noise_range: see ``sample_site_shifts``.
    bias_range: see ``sample_site_shifts``.

  Returns:
    ``{'silos': {'large': group, 'small': group} (packed, see pack.py; a
    group without silos is left out), 'info': {'groups', 'train_sizes',
    'label_counts' (pixels per class), 'axes', 'slice_ranges', 'shifts',
    'train_indices', 'test_indices' (rows of ``data``), 'note'},
    'public_x': float32 [P, 64, 64, 1], 'public_y': int32 [P, 64, 64]}``;
    with ``validation_fraction`` also ``'validation': {group: {'test_x',
    'test_y', 'test_n'}}`` (each silo's validation slices, packed like its
    test set, under the same scanner) and ``info['validation_indices']``.

  Raises:
    ValueError: bad sizes or silos that do not fit the slices.
  """
  num_large = partition.check_int('num_large', num_large, 0)
  num_small = partition.check_int('num_small', num_small, 0)
  if num_large + num_small == 0:
    raise ValueError('num_large + num_small must be >= 1.')
  rng = np.random.default_rng(seed)
  lo, hi = partition.size_range(small_size) if num_small else (0, 0)
  if num_large:
    partition.check_int('large_size', large_size, 2)
  sizes = [int(large_size)] * num_large + [
      int(s) for s in rng.integers(lo, hi + 1, size=num_small)]
  if min(sizes) < 2:
    raise ValueError('Every silo needs >= 2 slices (one train, one test); '
                     'raise small_size.')
  silos, unused, axes = brain_silo_indices(
      data['axis'], data['slice_index'], sizes, seed=seed + 1)
  train_idx, test_idx = partition.train_test_split_per_client(
      silos, test_fraction, seed=seed + 2)
  val_idx = None
  if validation_fraction:
    # Cut from the training slices with a seed of its own, so the test
    # slices do not depend on whether a validation set is held out.
    train_idx, val_idx = partition.train_test_split_per_client(
        train_idx, validation_fraction / (1.0 - test_fraction),
        seed=seed + 4)
  shifts = sample_site_shifts(len(sizes), seed=seed + 3,
                              gamma_range=gamma_range,
                              noise_range=noise_range, bias_range=bias_range)
  if not shift_large:
    shifts[:num_large] = [SiteShift()] * num_large

  images = np.asarray(data['image'], np.float32) / 255.0
  masks = np.asarray(data['mask'], np.int32)
  groups = {'large': range(0, num_large),
            'small': range(num_large, num_large + num_small)}
  shifted = lambda members, idx: _shifted(images, masks, members, idx,
                                          shifts)
  fed = {}
  for g, members in groups.items():
    if members:
      x, y, ranges = shifted(members, train_idx)
      tx, ty, tranges = shifted(members, test_idx)
      fed[g] = pack.pack_group(x, y, ranges, test_x=tx, test_y=ty,
                               test_indices=tranges)
  slice_index = np.asarray(data['slice_index'])
  info = {
      'groups': {g: list(m) for g, m in groups.items() if m},
      'train_sizes': [int(len(t)) for t in train_idx],
      'label_counts': [np.bincount(masks[t].reshape(-1), minlength=3).tolist()
                       for t in train_idx],
      'axes': axes,
      'slice_ranges': [(int(slice_index[s].min()), int(slice_index[s].max()))
                       for s in silos],
      'shifts': [s._asdict() for s in shifts],
      'train_indices': [t.tolist() for t in train_idx],
      'test_indices': [t.tolist() for t in test_idx],
      'note': SIMULATION_NOTE,
  }
  out = {'silos': fed, 'info': info, 'public_x': images[unused],
         'public_y': masks[unused]}
  if val_idx is not None:
    info['validation_indices'] = [t.tolist() for t in val_idx]
    out['validation'] = {g: pack.pack_held_out(*shifted(m, val_idx))
                         for g, m in groups.items() if m}
  return out


def _shifted(images, masks, members, idx, shifts):
  """Slices ``idx[i]`` of each silo ``i`` of ``members``, each under its
  silo's scanner, concatenated; and each silo's rows in the result."""
  x = np.concatenate([apply_site_shift(images[idx[i]], shifts[i])
                      for i in members])
  y = np.concatenate([masks[idx[i]] for i in members])
  ends = np.cumsum([len(idx[i]) for i in members])
  ranges = [np.arange(end - len(idx[i]), end)
            for end, i in zip(ends, members)]
  return x, y, ranges


def brain_federation_raw(config) -> dict[str, Any]:
  """``brain_silos`` on the vendored slices, driven by an experiment config.

  Reads ``config.dataset.{data_dir, manual_dir}``, ``config.partition.
  {num_large, num_small, large_size, small_size, test_fraction (default
  0.25), validation_fraction (default 0), shift_large (default True)}`` and
  ``config.seed``.

  Returns:
    The ``brain_silos`` dict (its ``'silos'`` and ``'info'`` are used as the
    federation directly).
  """
  from fedhelp_jax.data import load  # Lazy: TFDS is a heavy import.
  ds, part = config.dataset, config.partition
  data = load.load_brain_slices(data_dir=ds.get('data_dir'),
                                manual_dir=ds.get('manual_dir'),
                                expected_md5=ds.get('expected_md5'))
  small = part.small_size
  if isinstance(small, (list, tuple)):
    small = tuple(int(s) for s in small)
  return brain_silos(
      data, num_large=int(part.num_large), num_small=int(part.num_small),
      large_size=int(part.large_size), small_size=small,
      test_fraction=float(part.get('test_fraction', 0.25)),
      validation_fraction=float(part.get('validation_fraction') or 0.0),
      seed=int(config.seed), shift_large=bool(part.get('shift_large', True)))
