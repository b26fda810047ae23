# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""Splitting one dataset into federated silos (pure numpy, seeded).

Every function returns ``list[np.ndarray]``: one sorted int64 array of example
indices per silo. No example is given to two silos. The same arguments and
``seed`` always give the same result (``np.random.default_rng(seed)``).
Infeasible requests raise ``ValueError`` naming the argument and a fix,
before any randomness is drawn, so failures never depend on the seed.
"""

from typing import Optional, Sequence, Union

import numpy as np

SizeSpec = Union[int, tuple[int, int]]


def check_int(name: str, value, minimum: int) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
    raise ValueError(f'{name} must be an integer, got {value!r}.')
  if value < minimum:
    raise ValueError(f'{name} must be >= {minimum}, got {value}.')
  return int(value)


def size_range(small_size: SizeSpec) -> tuple[int, int]:
  """``(min, max)`` of a size given as an int or an inclusive pair."""
  if isinstance(small_size, (tuple, list)):
    if len(small_size) != 2:
      raise ValueError(f'small_size must be an int or a (min, max) pair, got '
                       f'{small_size!r}.')
    lo = check_int('small_size[0]', small_size[0], 1)
    hi = check_int('small_size[1]', small_size[1], 1)
    if lo > hi:
      raise ValueError(f'small_size=(min, max) needs min <= max, got '
                       f'{small_size!r}; swap the two values.')
    return lo, hi
  size = check_int('small_size', small_size, 1)
  return size, size


def _class_labels(labels, name: str = 'labels') -> np.ndarray:
  labels = np.asarray(labels)
  if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f'{name} must be a 1-D integer array of class labels for '
                     f'label skew; got {labels.dtype} {list(labels.shape)}.')
  return labels


def _fill_counts(size: int, probs: np.ndarray, available: np.ndarray,
                 rng: np.random.Generator) -> np.ndarray:
  """Per-class counts summing to ``size``, drawn near ``probs``, capped.

  Counts are drawn from a multinomial; where a class has fewer examples left
  than drawn, the shortfall is redrawn over the classes that still have
  examples (weighted by ``probs``, plus a small floor so classes with zero
  probability can absorb it when nothing else is left).

  Args:
    size: total count; ``available.sum() >= size`` is required.
    probs: ``[K]`` class probabilities.
    available: ``[K]`` examples left per class.
    rng: random generator.

  Returns:
    ``[K]`` int64 counts with ``counts <= available`` and ``sum == size``.
  """
  counts = np.minimum(rng.multinomial(size, probs), available)
  while (short := size - counts.sum()) > 0:
    spare = available - counts
    weights = (probs + 1e-3) * (spare > 0)
    extra = rng.multinomial(short, weights / weights.sum())
    counts += np.minimum(extra, spare)
  return counts


def large_small_split(labels, *, num_large: int, num_small: int,
                      large_size: int, small_size: SizeSpec,
                      label_skew_alpha: Optional[float] = None,
                      seed: int) -> list[np.ndarray]:
  """A few data-rich silos and many data-scarce silos.

  Large silos are IID uniform draws. Small silos are drawn from what is left:
  IID uniform, or, with ``label_skew_alpha``, each small silo draws its class
  mix ``p ~ Dirichlet(alpha * 1_K)`` and then its examples per class near
  ``size * p`` (as in Hsu et al., 2019). Leftover examples are unused.

  Args:
    labels: ``[N]`` labels (only ``len(labels)`` is used without label skew,
      so masks ``[N, H, W]`` work too).
    num_large: number of large silos (>= 0).
    num_small: number of small silos (>= 0).
    large_size: examples per large silo (>= 1 when num_large > 0).
    small_size: examples per small silo, an int or an inclusive ``(min,
      max)`` range from which each small silo's size is drawn uniformly.
    label_skew_alpha: Dirichlet concentration for the small silos' class mix
      (smaller = more skew), or None for IID small silos.
    seed: random seed.

  Returns:
    ``num_large + num_small`` sorted index arrays, large silos first.

  Raises:
    ValueError: negative counts, non-positive sizes or alpha, or when the
      largest possible request (``num_large * large_size + num_small *
      max(small_size)``) exceeds ``N``.
  """
  n = len(labels)
  num_large = check_int('num_large', num_large, 0)
  num_small = check_int('num_small', num_small, 0)
  if num_large + num_small == 0:
    raise ValueError('num_large + num_small must be >= 1; ask for at least one '
                     'silo.')
  large_size = check_int('large_size', large_size, 1 if num_large else 0)
  lo, hi = size_range(small_size) if num_small else (0, 0)
  worst = num_large * large_size + num_small * hi
  if worst > n:
    raise ValueError(
        f'The silos may need up to {num_large} x large_size={large_size} + '
        f'{num_small} x max(small_size)={hi} = {worst} examples but the '
        f'dataset has {n}. Lower large_size, small_size or the number of '
        'silos.')
  if label_skew_alpha is not None:
    if not label_skew_alpha > 0:
      raise ValueError(f'label_skew_alpha must be > 0 or None, got '
                       f'{label_skew_alpha}; smaller values mean more skew.')
    labels = _class_labels(labels)

  rng = np.random.default_rng(seed)
  perm = rng.permutation(n)
  silos = [np.sort(perm[i * large_size:(i + 1) * large_size])
           for i in range(num_large)]
  rest = perm[num_large * large_size:]
  sizes = rng.integers(lo, hi + 1, size=num_small)
  if label_skew_alpha is None:
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    silos += [np.sort(rest[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
    return [s.astype(np.int64) for s in silos]

  classes = np.unique(labels)
  # Per-class pools of the remaining examples, in random order; silos take
  # from the front, so no example is used twice.
  pools = [rest[labels[rest] == c] for c in classes]
  taken = np.zeros(len(classes), np.int64)
  for size in sizes:
    probs = rng.dirichlet(np.full(len(classes), float(label_skew_alpha)))
    available = np.array([len(p) for p in pools]) - taken
    counts = _fill_counts(int(size), probs, available, rng)
    picks = [pools[k][taken[k]:taken[k] + counts[k]]
             for k in range(len(classes))]
    taken += counts
    silos.append(np.sort(np.concatenate(picks)))
  return [s.astype(np.int64) for s in silos]


def dirichlet_label_skew(labels, *, num_clients: int, alpha: float,
                         min_size: int = 1, seed: int,
                         max_tries: int = 1000) -> list[np.ndarray]:
  """Label-skewed partition of all examples (Yurochkin et al., 2019).

  For each class, the class's examples are split among the clients by
  proportions ``q ~ Dirichlet(alpha * 1_C)``. Draws are repeated until every
  client has at least ``min_size`` examples.

  Args:
    labels: ``[N]`` integer class labels.
    num_clients: number of clients (>= 1).
    alpha: Dirichlet concentration (> 0); smaller = more skew.
    min_size: minimum examples per client (>= 0).
    seed: random seed.
    max_tries: redraws before giving up.

  Returns:
    ``num_clients`` sorted index arrays that together hold every example
    exactly once.

  Raises:
    ValueError: bad arguments, ``num_clients * min_size > N``, or no draw
      met ``min_size`` within ``max_tries``.
  """
  labels = _class_labels(labels)
  n = labels.shape[0]
  num_clients = check_int('num_clients', num_clients, 1)
  min_size = check_int('min_size', min_size, 0)
  if not alpha > 0:
    raise ValueError(f'alpha must be > 0, got {alpha}; use e.g. 0.5.')
  if num_clients * min_size > n:
    raise ValueError(
        f'num_clients={num_clients} x min_size={min_size} = '
        f'{num_clients * min_size} exceeds the {n} examples; lower num_clients '
        'or min_size.')
  rng = np.random.default_rng(seed)
  by_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
  for _ in range(max_tries):
    parts: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
    for idx in by_class:
      idx = rng.permutation(idx)
      q = rng.dirichlet(np.full(num_clients, float(alpha)))
      cuts = (np.cumsum(q)[:-1] * len(idx)).astype(np.int64)
      for client, chunk in enumerate(np.split(idx, cuts)):
        parts[client].append(chunk)
    silos = [np.sort(np.concatenate(p)).astype(np.int64) for p in parts]
    if min(len(s) for s in silos) >= min_size:
      return silos
  raise ValueError(
      f'No Dirichlet(alpha={alpha}) draw in {max_tries} tries gave every one '
      f'of {num_clients} clients >= min_size={min_size} examples; raise alpha '
      'or lower min_size or num_clients.')


def quantity_skew(num_examples: int, *, num_clients: int,
                  shares: Optional[Sequence[float]] = None,
                  exponent: float = 1.0, min_size: int = 1,
                  seed: int) -> list[np.ndarray]:
  """Partition of all examples into silos of unequal size.

  Client ``i`` gets ``min_size`` examples plus a share of the rest: either
  ``shares[i]`` (normalized) or, when ``shares`` is None, a power law
  ``(i + 1) ** -exponent`` (client 0 the largest; ``exponent=0`` is equal
  sizes). Sizes are rounded by the largest-remainder method so they sum to
  ``num_examples``; the seed only chooses which examples go where.

  Args:
    num_examples: dataset size ``N``.
    num_clients: number of clients (>= 1).
    shares: optional ``[num_clients]`` non-negative weights.
    exponent: power-law exponent (>= 0) used when ``shares`` is None.
    min_size: minimum examples per client (>= 0).
    seed: random seed.

  Returns:
    ``num_clients`` sorted index arrays into ``range(N)`` that together hold
    every example exactly once.

  Raises:
    ValueError: bad arguments or ``num_clients * min_size > N``.
  """
  n = check_int('num_examples', num_examples, 1)
  num_clients = check_int('num_clients', num_clients, 1)
  min_size = check_int('min_size', min_size, 0)
  if num_clients * min_size > n:
    raise ValueError(
        f'num_clients={num_clients} x min_size={min_size} = '
        f'{num_clients * min_size} exceeds num_examples={n}; lower '
        'num_clients or min_size.')
  if shares is None:
    if not exponent >= 0:
      raise ValueError(f'exponent must be >= 0, got {exponent}.')
    weights = np.arange(1, num_clients + 1, dtype=np.float64) ** -exponent
  else:
    weights = np.asarray(shares, np.float64)
    if weights.shape != (num_clients,):
      raise ValueError(f'shares must have num_clients={num_clients} entries, '
                       f'got {weights.shape[0] if weights.ndim else 0}.')
    if np.any(weights < 0) or not np.all(np.isfinite(weights)) or \
        weights.sum() <= 0:
      raise ValueError(f'shares must be finite, >= 0 and not all 0; got '
                       f'{list(shares)}.')
  sizes = min_size + _largest_remainder(n - num_clients * min_size,
                                        weights / weights.sum())
  perm = np.random.default_rng(seed).permutation(n)
  return [np.sort(p).astype(np.int64)
          for p in np.split(perm, np.cumsum(sizes)[:-1])]


def stratified_shares(labels, *, shares: Sequence[float],
                      seed: int) -> list[np.ndarray]:
  """IID-by-size partition: silo ``i`` gets ``shares[i]`` of EVERY class.

  The FedHelp authors' split (quantity skew, no label skew): sizes follow
  ``shares`` (normalized) and every silo has the global label mix, up to
  rounding. Within each class the counts are rounded by the largest-remainder
  method, so all examples are used and the per-class counts of silo ``i``
  differ from ``shares[i] * class_count`` by less than 1.

  Args:
    labels: ``[N]`` integer class labels.
    shares: ``[C]`` positive weights, e.g. ``(0.6, 0.2, 0.08, 0.06, 0.04,
      0.02)``.
    seed: random seed (chooses which examples of a class go where).

  Returns:
    ``C`` sorted index arrays that together hold every example exactly once.

  Raises:
    ValueError: non-positive or non-finite shares, or a share so small that
      its silo would get no example.
  """
  labels = _class_labels(labels)
  weights = np.asarray(shares, np.float64)
  if weights.ndim != 1 or weights.size < 1:
    raise ValueError(f'shares must be a non-empty list of weights, got '
                     f'{shares!r}.')
  if not np.all(np.isfinite(weights)) or np.any(weights <= 0):
    raise ValueError(f'shares must be finite and > 0, got {list(shares)}.')
  weights = weights / weights.sum()
  rng = np.random.default_rng(seed)
  parts: list[list[np.ndarray]] = [[] for _ in weights]
  for c in np.unique(labels):
    idx = rng.permutation(np.flatnonzero(labels == c))
    counts = _largest_remainder(idx.size, weights)
    for part, chunk in zip(parts, np.split(idx, np.cumsum(counts)[:-1])):
      part.append(chunk)
  silos = [np.sort(np.concatenate(p)).astype(np.int64) for p in parts]
  empty = [i for i, s in enumerate(silos) if s.size == 0]
  if empty:
    raise ValueError(f'stratified_shares: silos {empty} get no example of '
                     f'the {labels.size}; raise their shares.')
  return silos


def _largest_remainder(total: int, shares: np.ndarray) -> np.ndarray:
  """Integers proportional to ``shares`` summing exactly to ``total``."""
  raw = shares * total
  out = np.floor(raw).astype(np.int64)
  # Ties broken by client order, so the result is deterministic.
  order = np.argsort(-(raw - out), kind='stable')
  out[order[:total - out.sum()]] += 1
  return out


def train_test_split_per_client(indices: Sequence[np.ndarray],
                                test_fraction: float, seed: int
                                ) -> tuple[list[np.ndarray], list[np.ndarray]]:
  """Splits each silo's examples into its own train and test parts.

  Each silo of ``n >= 2`` examples gets ``round(test_fraction * n)`` test
  examples, clipped to ``[1, n - 1]`` so both parts are non-empty; a silo of
  one example keeps it for training.

  Args:
    indices: per-silo example indices.
    test_fraction: fraction in (0, 1) held out for testing.
    seed: random seed.

  Returns:
    ``(train, test)``: two lists of sorted index arrays, one per silo.

  Raises:
    ValueError: ``test_fraction`` outside (0, 1).
  """
  if not 0 < test_fraction < 1:
    raise ValueError(f'test_fraction must be in (0, 1), got {test_fraction}.')
  rng = np.random.default_rng(seed)
  train, test = [], []
  for idx in indices:
    idx = rng.permutation(np.asarray(idx, np.int64))
    n = idx.shape[0]
    k = 0 if n < 2 else int(np.clip(round(test_fraction * n), 1, n - 1))
    test.append(np.sort(idx[:k]))
    train.append(np.sort(idx[k:]))
  return train, test
