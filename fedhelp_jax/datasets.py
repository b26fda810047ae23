# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""The dataset registry: one ``DatasetSpec`` per ``config.dataset.name``.

A dataset's ``load(config)`` returns typed arrays: ``Splits`` (pools that
``config.partition`` splits into silos) or ``Sites`` (a dataset whose silos
are its own, e.g. scanner sites, already packed per group). The registry
turns either into the host's raw dict (``to_raw``), which
``experiment.build_federation`` partitions or passes through.

The built-in specs live here, not at the bottom of their loader modules:
those import TensorFlow Datasets, and listing the names (``validate``,
``--help``) must not pay for that import. Each ``load`` imports its loader
on first use. Code outside the package adds one with ``register``.
"""

from typing import Any, Callable, Mapping, NamedTuple, Optional, Union

import numpy as np

from fedhelp_jax import types
from fedhelp_jax.errors import ConfigError

# What silos are scored on (``config.dataset.evaluate_on``): the test split,
# or the held-out validation split (``Splits.public_*``) for choosing
# hyperparameters without the test split (``experiment.evaluation_split``).
EVALUATE_ON = ('test', 'validation')


class Splits(NamedTuple):
  """A dataset as arrays (images float32 in [0, 1] ``[N, H, W, C]`` or
  table rows ``[N, F]``; int32 labels ``[N]`` or masks ``[N, H, W]``).

  Attributes:
    train_x, train_y: the pool ``config.partition`` splits into silos.
    test_x, test_y: the official test split (each silo's test draw comes
      from it; ``config.common_test`` scores every silo on all of it).
    public_x, public_y: optional set for one-time FM queries or a server's
      public set; its labels only score the FM itself.
    reserve_x, reserve_y: optional rows kept out of every silo (the
      in-domain FM proxy, ``experiment.reserve_split``).
  """
  train_x: np.ndarray
  train_y: np.ndarray
  test_x: np.ndarray
  test_y: np.ndarray
  public_x: Optional[np.ndarray] = None
  public_y: Optional[np.ndarray] = None
  reserve_x: Optional[np.ndarray] = None
  reserve_y: Optional[np.ndarray] = None


class Sites(NamedTuple):
  """A dataset whose silos are its own.

  Attributes:
    silos: group name -> packed ``GroupData`` (``data.pack_group``).
    info: ``{'groups': {group: [global silo ids]}, 'train_sizes': [...],
      'label_counts': [...]}`` plus any dataset-specific records.
    validation: optional group name -> ``{'test_x', 'test_y', 'test_n'}``:
      each silo's held-out validation set, packed like its test set; with
      it, ``config.dataset.evaluate_on='validation'`` scores on these.
  """
  silos: Mapping[str, types.GroupData]
  info: Mapping[str, Any]
  validation: Optional[Mapping[str, types.GroupData]] = None


class DatasetSpec(NamedTuple):
  """Everything the runner needs to load one dataset from a config.

  Attributes:
    name: the ``config.dataset.name``.
    load: ``config -> Splits | Sites``; reads ``config.dataset`` (and, for
      ``Sites``, ``config.partition``). A ``ValueError`` (bad or damaged
      source files) reaches the user as a ``DataError``.
    description: one line for errors and docs.
  """
  name: str
  load: Callable[[Any], Union[Splits, Sites]]
  description: str = ''


def to_raw(loaded: Union[Splits, Sites]) -> dict[str, Any]:
  """The host's raw dict of a ``load`` result: the ``Splits`` fields that
  are set, or ``{'silos', 'info'}`` for ``Sites``."""
  if isinstance(loaded, Sites):
    raw = {'silos': dict(loaded.silos), 'info': dict(loaded.info)}
    if loaded.validation is not None:
      raw['validation'] = dict(loaded.validation)
    return raw
  if not isinstance(loaded, Splits):
    raise TypeError(f'a DatasetSpec.load returned {type(loaded).__name__}, '
                    'not datasets.Splits or datasets.Sites.')
  return {k: v for k, v in loaded._asdict().items() if v is not None}


def _medmnist(config) -> Splits:
  from fedhelp_jax import data as data_lib  # Lazy: TFDS is a heavy import.
  ds = config.dataset
  splits = data_lib.load_medmnist(
      ds.subset, data_dir=ds.get('data_dir'), manual_dir=ds.get('manual_dir'),
      expected_md5=ds.get('expected_md5'))
  conv = lambda s: (splits[s]['image'].astype(np.float32) / 255.0,
                    splits[s]['label'].astype(np.int32))
  (tx, ty), (vx, vy), (sx, sy) = conv('train'), conv('val'), conv('test')
  return Splits(tx, ty, sx, sy, public_x=vx, public_y=vy)


def _brain_slices(config) -> Sites:
  from fedhelp_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  raw = data_lib.brain_federation_raw(config)
  return Sites(raw['silos'], raw['info'], raw.get('validation'))


def _breast_cancer(config) -> Splits:
  from fedhelp_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  return Splits(**data_lib.breast_cancer_raw(config))


def _arrays(config) -> Splits:
  del config
  raise ConfigError(
      "config.dataset.name: 'arrays' is a user's own data, which this "
      'call was not given. Fix: pass run_experiment(config, data=...).')


_SPECS: dict[str, DatasetSpec] = {}


def register(spec: DatasetSpec) -> None:
  """Adds ``spec``; a name already registered is refused."""
  if spec.name in _SPECS:
    raise ValueError(f'dataset {spec.name!r} is already registered.')
  _SPECS[spec.name] = spec


def names() -> tuple[str, ...]:
  return tuple(_SPECS)


def get(name: str) -> DatasetSpec:
  if name not in _SPECS:
    raise ConfigError(f'config.dataset.name: unknown dataset {name!r}. '
                      f'Fix: use one of {list(_SPECS)}, or register a '
                      'datasets.DatasetSpec.')
  return _SPECS[name]


for _spec in (
    DatasetSpec('medmnist', _medmnist,
                'MedMNIST 2D subsets (config.dataset.subset), official '
                'train/val/test; val is the public set'),
    DatasetSpec('brain_slices', _brain_slices,
                'MNI brain slices with simulated scanner sites (Sites)'),
    DatasetSpec('breast_cancer', _breast_cancer,
                'the Wisconsin breast cancer table, stratified pools'),
    DatasetSpec('arrays', _arrays,
                "a user's own arrays (run_experiment(config, data=...))"),
):
  register(_spec)
