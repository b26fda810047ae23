# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""Algorithm registry: every ``types.AlgorithmSpec`` of this package.

Each algorithm module declares ``SPECS`` at its bottom; this registry
imports every module of the package once and registers what it declares, so
adding an algorithm touches only its module (and its test). Code outside the
package registers its own with ``register(spec)`` before building a run.
The spec fields are documented on ``types.AlgorithmSpec``; a builder has the
signature ``build(config, task, groups) -> FederatedAlgorithm`` (``config``
is read, never stored), plus ``info=`` for ``needs_info`` specs.
"""

import difflib
import importlib
import pkgutil
from typing import Any

from fedhelp_jax import compression
from fedhelp_jax import dp_fedavg
from fedhelp_jax import models
from fedhelp_jax import privacy
from fedhelp_jax import types
from fedhelp_jax.algorithms import common

_SPECS: dict[str, types.AlgorithmSpec] = {}
# Name -> the file under fedhelp_jax/algorithms/ that declared it ('' for a
# spec registered from outside the package).
_ORIGIN: dict[str, str] = {}
# Ranges by hparam name: the shared ones, then those a spec declares for a
# name no other spec or the shared table has (``hparam_range``).
_RANGES: dict[str, common.HParamRange] = dict(common.SHARED_RANGES)


def register(spec: types.AlgorithmSpec) -> None:
  """Registers ``spec``; config validation reads what it declares, so a new
  algorithm needs no change there. A name may be registered once."""
  if not isinstance(spec, types.AlgorithmSpec):
    raise TypeError(f'register expects a types.AlgorithmSpec, got '
                    f'{type(spec).__name__}.')
  if spec.name in _SPECS and _SPECS[spec.name] is not spec:
    raise ValueError(f'algorithm {spec.name!r} is registered twice.')
  _SPECS[spec.name] = spec
  for key, value in spec.ranges.items():
    _RANGES.setdefault(key, value)


def spec(name: str) -> types.AlgorithmSpec:
  """The registered spec of ``name`` (a ValueError with a suggestion if
  there is none)."""
  check_name(name)
  return _SPECS[name]


def names() -> list[str]:
  return sorted(_SPECS)


def check_name(name: str) -> None:
  """Raises a ValueError with a suggestion for an unknown algorithm name."""
  if name not in _SPECS:
    close = difflib.get_close_matches(name, names(), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ''
    raise ValueError(
        f'config.algorithm: unknown algorithm {name!r}.{hint} Known: '
        f'{names()}.')


def build(name: str, config, task, groups, info=None):
  """Builds ``name``; ``info`` (from ``prepare``) reaches builders that ask."""
  entry = spec(name)
  if entry.needs_info:
    alg = entry.build(config, task, tuple(groups), info=info)
  else:
    alg = entry.build(config, task, tuple(groups))
  section = config.get('compression') or {}
  encoder = compression.from_config(section)
  if encoder is not None:
    alg = compression.with_upload_encoder(
        alg, encoder, error_feedback=bool(section.get('error_feedback', True)))
  if privacy.DPConfig.from_config(config.get('dp')).level == 'silo':
    # Outermost: the clip bounds what actually leaves the silo.
    alg = dp_fedavg.with_silo_dp(alg)
  return alg


def hparam_range(key: str,
                 algorithm: str | None = None) -> common.HParamRange | None:
  """The allowed values of hparam ``key`` for ``algorithm`` (None: any
  finite): its own range if it declared one, else the shared one."""
  own = _SPECS[algorithm].ranges.get(key) if algorithm in _SPECS else None
  return own if own is not None else _RANGES.get(key)


def sampling_unsupported(name: str) -> str | None:
  """Why ``name`` cannot sample silos per round, or None when it can."""
  return _SPECS[name].no_sampling if name in _SPECS else None


def default_hparams(name: str) -> dict[str, float]:
  return dict(spec(name).hparams)


def prepare(name: str, config, fed_data, raw, info):
  hook = spec(name).prepare
  return fed_data if hook is None else hook(config, fed_data, raw, info)


def local_config(config) -> common.LocalConfig:
  """The ``LocalConfig`` of ``config.local`` (``LocalConfig.from_config``)."""
  return common.LocalConfig.from_experiment(config)


def make_module(model_config, num_classes: int, aux_classes: int = 0) -> Any:
  """A Flax module from a ``config.model`` (``models.from_config``)."""
  return models.from_config(model_config, num_classes, aux_classes)


def table_rows() -> list[str]:
  """The algorithm table's markdown rows, generated from the specs (name,
  paper, file, personalised?, samples silos?, DP record / silo?); names
  whose other columns agree share a row, e.g. the FedOpt family."""
  yes = lambda flag: 'yes' if flag else 'no'
  cells: dict[tuple[str, ...], list[str]] = {}
  for name in names():
    entry = _SPECS[name]
    paper = entry.paper or '(not declared)'
    if entry.arxiv:
      paper += (f', [arXiv {entry.arxiv}]'
                f'(https://arxiv.org/abs/{entry.arxiv})')
    origin = _ORIGIN.get(name)
    key = (paper, f'`{origin}`' if origin else '(outside the package)',
           entry.personalised, yes(entry.no_sampling is None),
           f'{yes(entry.record_dp)} / {yes(entry.silo_dp)}')
    cells.setdefault(key, []).append(name)
  return ['| ' + ', '.join(f'`{n}`' for n in group) + ' | ' + ' | '.join(key)
          + ' |' for key, group in cells.items()]


def _discover() -> None:
  """Registers the ``SPECS`` of every module of this package."""
  for found in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if found.name.startswith('_'):
      continue  # ``__main__``: the table command, no algorithm.
    module = importlib.import_module(f'{__name__}.{found.name}')
    for entry in getattr(module, 'SPECS', ()):
      register(entry)
      _ORIGIN[entry.name] = (f'{found.name}/' if found.ispkg
                             else f'{found.name}.py')


_discover()
