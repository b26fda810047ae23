# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""Loaders: real datasets as in-memory numpy arrays.

Image datasets go through the TFDS builders of ``builders.py`` (prepared once
into an array_record cache, then read back with ``as_data_source()``, which
needs no TensorFlow). Every dataset here fits in host memory, so loaders
return whole splits as numpy arrays, in source-file order.

The cache lives in ``data_dir``: the argument, else the environment variable
``FEDHELP_DATA_DIR``, else ``~/.cache/fedhelp_jax/tfds``.
"""

import contextlib
import io
import os
from typing import Iterable, Optional, Sequence

from absl import logging as absl_logging
import filelock
import numpy as np
import tensorflow_datasets as tfds

from fedhelp_jax.data import builders

DATA_DIR_ENV = 'FEDHELP_DATA_DIR'


def default_data_dir() -> str:
  """The TFDS cache directory used when ``data_dir`` is None."""
  return os.environ.get(DATA_DIR_ENV) or os.path.join(
      os.path.expanduser('~'), '.cache', 'fedhelp_jax', 'tfds')


def _prepared(make_builder, data_dir: Optional[str],
              manual_dir: Optional[str]):
  """``make_builder(data_dir)``, prepared (``_prepare``) under a file lock.

  Two processes loading a dataset for the first time (parallel test workers,
  two runs sharing the cache) would otherwise both write the cache; with the
  lock the second waits and then finds it prepared.
  """
  data_dir = data_dir or default_data_dir()
  os.makedirs(data_dir, exist_ok=True)
  with filelock.FileLock(os.path.join(data_dir, '.prepare.lock')):
    builder = make_builder(data_dir)
    _prepare(builder, manual_dir)
  return builder


def _prepare(builder: builders._ManualSourceBuilder,
             manual_dir: Optional[str]) -> None:
  """Prepares ``builder`` unless its cache was built from the same file.

  TFDS reuses a prepared dataset whatever its source was. Here the source
  file's MD5 is stored in the dataset's metadata, so pointing ``manual_dir``
  at a different file (or leaving it unset after using one) regenerates the
  cache instead of silently returning the old data.
  """
  path = builder.source_path(manual_dir)
  # Verified on every load, not only when preparing, so a cache can never
  # stand in for a file that fails verification.
  md5 = builders.verify_md5(path, builder.accepted_md5s())
  mode = tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS
  if builder.is_prepared():
    cached = (builder.info.metadata or {}).get('source_md5')
    if cached == md5:
      return
    mode = tfds.download.GenerateMode.FORCE_REDOWNLOAD
  config = tfds.download.DownloadConfig(
      manual_dir=os.fspath(manual_dir) if manual_dir is not None else None,
      download_mode=mode, try_download_gcs=False)
  # TFDS says "Downloading and preparing" and warns about a missing
  # dataset_info.json; nothing is downloaded (the source is a local file),
  # so say what really happens and keep only TFDS's progress bars (stderr).
  config_name = getattr(builder.builder_config, 'name', None)
  name = builder.name + (f'/{config_name}' if config_name else '')
  print(f'[fedhelp_jax] preparing {name} once from {path} (offline) into '
        f'{builder.data_dir}', flush=True)
  verbosity = absl_logging.get_verbosity()
  absl_logging.set_verbosity(absl_logging.ERROR)
  try:
    with contextlib.redirect_stdout(io.StringIO()):
      builder.download_and_prepare(download_config=config)
  finally:
    absl_logging.set_verbosity(verbosity)


class DataCacheError(RuntimeError):
  """The prepared TFDS cache of a dataset cannot be read."""


def _read_split(builder, split: str) -> dict[str, np.ndarray]:
  """One prepared split, or a ``DataCacheError`` naming the cache to delete.
  """
  try:
    return _read_all(builder.as_data_source()[split])
  except Exception as e:  # pylint: disable=broad-except
    # A truncated or half-written array_record file fails deep inside the
    # reader (e.g. 'Invalid Riegeli/records file'); the fix is always the
    # same: rebuild the cache from the source file.
    raise DataCacheError(
        f'the prepared dataset cache {builder.data_dir!r} cannot be read '
        f'({type(e).__name__}: {e}). Fix: delete that directory and run '
        'again; it is rebuilt from the source file.') from e


def _read_all(source) -> dict[str, np.ndarray]:
  """Reads a whole TFDS data source into stacked numpy arrays, by ``id``."""
  n = len(source)
  records = source.__getitems__(list(range(n))) if n else []
  if not records:
    return {}
  out = {k: np.stack([np.asarray(r[k]) for r in records])
         for k in records[0]}
  # The builders write in id order (shuffling disabled); sorting by id makes
  # the order a checked property instead of an assumption about the format.
  order = np.argsort(out['id'], kind='stable')
  return {k: v[order] for k, v in out.items()}


def load_medmnist(subset: str = 'pneumonia', *, data_dir: Optional[str] = None,
                  manual_dir: Optional[str] = None,
                  expected_md5: Optional[str] = None
                  ) -> dict[str, dict[str, np.ndarray]]:
  """Loads a 2-D MedMNIST subset (28 px) with its official splits.

  Args:
    subset: a key of ``builders.MEDMNIST_SUBSETS`` ('pneumonia', 'breast',
      'blood', 'derma', 'organa', ...).
    data_dir: TFDS cache directory (see the module docstring).
    manual_dir: directory holding the official ``<subset>mnist.npz``. None
      uses the vendored copy (PneumoniaMNIST only).
    expected_md5: the MD5 the source file must have, for files you made; None
      (the default) verifies against the official MD5 (and, for pneumonia,
      the vendored file's).

  Returns:
    ``{'train'|'val'|'test': {'image': uint8 [N, 28, 28, C], 'label': int32
    [N], 'id': int64 [N]}}`` with ``id`` the index in the split.

  Raises:
    ValueError: unknown subset, MD5 mismatch, or malformed arrays.
    FileNotFoundError: the source file is missing.
  """
  if subset not in builders.MEDMNIST_SUBSETS:
    raise ValueError(f'subset: unknown MedMNIST subset {subset!r}; expected '
                     f'one of {sorted(builders.MEDMNIST_SUBSETS)}.')
  builder = _prepared(lambda d: builders.MedMNIST(
      config=subset, data_dir=d, file_format='array_record',
      expected_md5=expected_md5), data_dir, manual_dir)
  out = {}
  for split in builders.MEDMNIST_SPLITS:
    arrays = _read_split(builder, split)
    arrays['label'] = arrays['label'].astype(np.int32)
    out[split] = arrays
  info = builders.MEDMNIST_SUBSETS[subset]
  for split, arrays in out.items():
    validate_arrays(arrays['image'], arrays['label'],
                    num_classes=info.num_classes,
                    image_shape=(28, 28, info.channels),
                    name=f'{subset}mnist[{split!r}]')
  return out


def load_brain_slices(*, data_dir: Optional[str] = None,
                      manual_dir: Optional[str] = None,
                      expected_md5: Optional[str] = None
                      ) -> dict[str, np.ndarray]:
  """Loads the MNI152 T1 template slices with grey/white matter masks.

  This is ONE template brain; see ``site_shift.py`` for simulated sites.

  Args:
    data_dir: TFDS cache directory (see the module docstring).
    manual_dir: directory holding ``mni152_tissue_slices_64.npz``; None uses
      the vendored copy.
    expected_md5: MD5 the source file must have; None verifies the vendored
      file's MD5.

  Returns:
    ``{'image': uint8 [N, 64, 64, 1], 'mask': int32 [N, 64, 64] in {0, 1, 2},
    'axis': int32 [N], 'slice_index': int32 [N], 'id': int64 [N]}``.

  Raises:
    ValueError: MD5 mismatch or malformed arrays.
    FileNotFoundError: the source file is missing.
  """
  builder = _prepared(lambda d: builders.MNIBrainSlices(
      data_dir=d, file_format='array_record', expected_md5=expected_md5),
                      data_dir, manual_dir)
  out = _read_split(builder, 'train')
  for key in ('mask', 'axis', 'slice_index'):
    out[key] = out[key].astype(np.int32)
  validate_arrays(out['image'], masks=out['mask'],
                  mask_values=range(builders.MNI_NUM_CLASSES),
                  image_shape=(builders.MNI_SIZE, builders.MNI_SIZE, 1),
                  name='mni152_slices')
  return out


def load_breast_cancer_tabular() -> dict[str, np.ndarray]:
  """The Wisconsin diagnostic breast cancer table bundled with scikit-learn.

  Features are MaxAbs-scaled (each column divided by its largest absolute
  value), which maps these non-negative measurements into [0, 1] within
  [-1, 1] while keeping zeros at zero. The scale is computed on all 569 rows:
  a fixed, label-free preprocessing choice, not a fitted model.

  Returns:
    ``{'x': float32 [569, 30] in [-1, 1], 'y': int32 [569]}`` with ``y`` 0
    malignant, 1 benign (scikit-learn's coding).
  """
  from sklearn import datasets as sk_datasets  # Lazy: only this loader.
  data = sk_datasets.load_breast_cancer()
  x = np.asarray(data.data, np.float64)
  scale = np.max(np.abs(x), axis=0)
  scale[scale == 0] = 1.0  # A constant-zero column stays zero.
  out = {'x': (x / scale).astype(np.float32),
         'y': np.asarray(data.target, np.int32)}
  validate_arrays(out['x'], out['y'], num_classes=2, name='breast_cancer')
  return out


def validate_arrays(images: np.ndarray, labels: Optional[np.ndarray] = None,
                    *, masks: Optional[np.ndarray] = None,
                    num_classes: Optional[int] = None,
                    mask_values: Optional[Iterable[int]] = None,
                    image_shape: Optional[tuple[int, ...]] = None,
                    name: str = 'data') -> None:
  """Checks a dataset's arrays before they are partitioned.

  Args:
    images: ``[N, ...]`` inputs (images or table rows).
    labels: optional ``[N]`` integer class labels.
    masks: optional ``[N, H, W]`` integer segmentation masks.
    num_classes: if set, labels must lie in ``[0, num_classes)``.
    mask_values: if set, the allowed mask values.
    image_shape: if set, the required ``images.shape[1:]``.
    name: dataset name used in messages.

  Raises:
    ValueError: naming the dataset, array and problem (shape mismatch, NaN or
      inf inputs, labels out of range, unexpected mask values).
  """
  images = np.asarray(images)
  n = images.shape[0] if images.ndim else 0
  if images.ndim < 2 or n == 0:
    raise ValueError(f'{name}: images must be [N, ...] with N >= 1; got '
                     f'shape {list(images.shape)}.')
  if image_shape is not None and images.shape[1:] != tuple(image_shape):
    raise ValueError(f'{name}: images must be [N, {list(image_shape)}]; got '
                     f'{list(images.shape)}.')
  if (np.issubdtype(images.dtype, np.floating) and
      not np.all(np.isfinite(images))):
    bad = int(np.sum(~np.isfinite(images)))
    raise ValueError(f'{name}: images contain {bad} NaN or inf values.')
  if labels is not None:
    allowed = None if num_classes is None else range(num_classes)
    _check_ints(np.asarray(labels), (n,), allowed, name, 'labels')
  if masks is not None:
    masks = np.asarray(masks)
    if masks.shape[0] != n or masks.ndim != 3:
      raise ValueError(f'{name}: masks must be [N={n}, H, W]; got '
                       f'{list(masks.shape)}.')
    if images.ndim >= 3 and masks.shape[1:3] != images.shape[1:3]:
      raise ValueError(f'{name}: masks {list(masks.shape)} and images '
                       f'{list(images.shape)} disagree on H, W.')
    _check_ints(masks, masks.shape, mask_values, name, 'masks')


def _check_ints(arr: np.ndarray, shape: tuple[int, ...],
                allowed: Optional[Iterable[int]], name: str, what: str) -> None:
  if arr.shape != tuple(shape):
    raise ValueError(f'{name}: {what} must have shape {list(shape)}; got '
                     f'{list(arr.shape)}.')
  if not np.issubdtype(arr.dtype, np.integer):
    raise ValueError(f'{name}: {what} must be integers; got {arr.dtype}.')
  if allowed is not None:
    allowed = np.asarray(list(allowed))
    bad = np.setdiff1d(np.unique(arr), allowed)
    if bad.size:
      raise ValueError(
          f'{name}: {what} contain values {bad[:10].tolist()} outside the '
          f'expected set [{allowed.min()}, ..., {allowed.max()}].')


def stratified_split(labels: np.ndarray, fractions: Sequence[float],
                     seed: int) -> list[np.ndarray]:
  """Splits example indices into parts with the same class mix.

  Args:
    labels: ``[N]`` integer labels.
    fractions: fractions of the parts; the last part takes the remainder, so
      ``fractions`` may sum to at most 1.
    seed: random seed.

  Returns:
    ``len(fractions)`` sorted int64 index arrays that together hold every
    example once (the remainder joins the last part).

  Raises:
    ValueError: negative fractions or fractions summing past 1.
  """
  fractions = np.asarray(fractions, np.float64)
  if np.any(fractions < 0) or fractions.sum() > 1 + 1e-9:
    raise ValueError(f'fractions must be >= 0 and sum to <= 1; got '
                     f'{fractions.tolist()}.')
  rng = np.random.default_rng(seed)
  parts = [[] for _ in fractions]
  for c in np.unique(labels):
    idx = rng.permutation(np.flatnonzero(labels == c))
    cuts = np.round(np.cumsum(fractions)[:-1] * idx.size).astype(np.int64)
    for p, chunk in zip(parts, np.split(idx, cuts)):
      p.append(chunk)
  return [np.sort(np.concatenate(p)).astype(np.int64) for p in parts]


def breast_cancer_raw(config) -> dict[str, np.ndarray]:
  """The breast cancer table as train/test/public pools for an experiment.

  Reads ``config.dataset.{test_fraction (default 0.2), public_fraction
  (default 0.1)}`` and ``config.seed``; the rest is the training pool that
  ``config.partition`` splits into silos.

  Returns:
    ``{'train_x', 'train_y', 'test_x', 'test_y', 'public_x', 'public_y'}``
    (float32 ``[n, 30]`` features in [-1, 1], int32 labels), stratified.
  """
  data = load_breast_cancer_tabular()
  ds = config.dataset
  test_f = float(ds.get('test_fraction', 0.2))
  public_f = float(ds.get('public_fraction', 0.1))
  test, public, train = stratified_split(
      data['y'], [test_f, public_f, 1.0 - test_f - public_f],
      seed=int(config.seed))
  return {'train_x': data['x'][train], 'train_y': data['y'][train],
          'test_x': data['x'][test], 'test_y': data['y'][test],
          'public_x': data['x'][public], 'public_y': data['y'][public]}
