# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""Algorithm registry: name -> builder from an experiment config.

A builder has the signature ``build(config, task, groups) ->
FederatedAlgorithm``; ``config`` is the experiment ``ConfigDict`` (only read,
never stored). Algorithms that need extra per-silo data (FedHelp's foundation
model knowledge) register a ``prepare`` hook too: ``prepare(config, fed_data,
raw, info) -> fed_data``, run once on the host before training. Builders
registered with ``needs_info=True`` (pFedNet: the similarity graph its hook
records in ``info``) are called as ``build(config, task, groups, info=info)``.
"""

import difflib
import functools
from typing import Any, Callable

from fedhelp_jax import compression
from fedhelp_jax import models
from fedhelp_jax.algorithms import common
from fedhelp_jax.algorithms import ditto
from fedhelp_jax.algorithms import fedavg
from fedhelp_jax.algorithms import fedhelp
from fedhelp_jax.algorithms import fm_prepare
from fedhelp_jax.algorithms import kd_baselines
from fedhelp_jax.algorithms import pfednet
from fedhelp_jax.algorithms import scaffold

_BUILDERS: dict[str, Callable[..., Any]] = {}
_PREPARE: dict[str, Callable[..., Any]] = {}
_HPARAMS: dict[str, dict[str, float]] = {}
_NEEDS_INFO: set[str] = set()
# Ranges by hparam name (the shared ones, then the first registration's),
# and the ranges an algorithm narrows for itself.
_RANGES: dict[str, common.HParamRange] = dict(common.SHARED_RANGES)
_OWN_RANGES: dict[str, dict[str, common.HParamRange]] = {}
_NO_SAMPLING: dict[str, str] = {}


def register(name: str, build: Callable[..., Any], hparams: dict[str, float],
             prepare: Callable[..., Any] | None = None, *,
             needs_info: bool = False,
             ranges: dict[str, common.HParamRange] | None = None,
             no_sampling: str | None = None) -> None:
  """Registers an algorithm builder, its default hparams and data hook.

  Config validation reads what a registration declares, so a new algorithm
  needs no change there:

  Args:
    name: the ``config.algorithm`` name.
    build: ``build(config, task, groups[, info]) -> FederatedAlgorithm``.
    hparams: default hyperparameters.
    prepare: optional host hook run once on the silos before training.
    needs_info: call ``build`` with ``info=`` (what ``prepare`` recorded).
    ranges: allowed values of hparams for this algorithm (may narrow a
      shared one, e.g. SCAFFOLD's momentum 0); ``common.SHARED_RANGES``
      covers the rest.
    no_sampling: why this algorithm cannot draw a subset of silos per round
      (``config.clients_per_round``); None when it can.
  """
  _BUILDERS[name] = build
  _HPARAMS[name] = dict(hparams)
  _OWN_RANGES[name] = dict(ranges or {})
  for key, value in (ranges or {}).items():
    _RANGES.setdefault(key, value)
  if prepare is not None:
    _PREPARE[name] = prepare
  if needs_info:
    _NEEDS_INFO.add(name)
  if no_sampling:
    _NO_SAMPLING[name] = no_sampling


def names() -> list[str]:
  return sorted(_BUILDERS)


def check_name(name: str) -> None:
  """Raises a ValueError with a suggestion for an unknown algorithm name."""
  if name not in _BUILDERS:
    close = difflib.get_close_matches(name, names(), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ''
    raise ValueError(
        f'config.algorithm: unknown algorithm {name!r}.{hint} Known: '
        f'{names()}.')


def build(name: str, config, task, groups, info=None):
  """Builds ``name``; ``info`` (from ``prepare``) reaches builders that ask."""
  check_name(name)
  if name in _NEEDS_INFO:
    alg = _BUILDERS[name](config, task, tuple(groups), info=info)
  else:
    alg = _BUILDERS[name](config, task, tuple(groups))
  section = config.get('compression') or {}
  encoder = compression.from_config(section)
  if encoder is None:
    return alg
  return compression.with_upload_encoder(
      alg, encoder, error_feedback=bool(section.get('error_feedback', True)))


def hparam_range(key: str,
                 algorithm: str | None = None) -> common.HParamRange | None:
  """The allowed values of hparam ``key`` for ``algorithm`` (None: any
  finite): its own range if it declared one, else the shared one."""
  own = _OWN_RANGES.get(algorithm, {}).get(key)
  return own if own is not None else _RANGES.get(key)


def sampling_unsupported(name: str) -> str | None:
  """Why ``name`` cannot sample silos per round, or None when it can."""
  return _NO_SAMPLING.get(name)


def default_hparams(name: str) -> dict[str, float]:
  check_name(name)
  return dict(_HPARAMS[name])


def prepare(name: str, config, fed_data, raw, info):
  hook = _PREPARE.get(name)
  return fed_data if hook is None else hook(config, fed_data, raw, info)


def local_config(config) -> common.LocalConfig:
  """The ``LocalConfig`` of ``config.local`` (``LocalConfig.from_config``)."""
  return common.LocalConfig.from_config(config.local)


def make_module(model_config, num_classes: int, aux_classes: int = 0):
  """A Flax module from a ``config.model`` (``models.from_config``)."""
  return models.from_config(model_config, num_classes, aux_classes)


def _fedavg_family(factory):
  def build_fn(config, task, groups):
    module = make_module(config.model, task.num_classes)
    return factory(module, task, local_config(config), groups)
  return build_fn


register('fedavg', _fedavg_family(fedavg.fedavg),
         fedavg.default_hparams('fedavg'))
register('fedprox', _fedavg_family(fedavg.fedprox),
         fedavg.default_hparams('fedprox'),
         ranges={'mu': common.NON_NEGATIVE})
register('local', _fedavg_family(fedavg.local_only),
         fedavg.default_hparams('local'))
register('scaffold', _fedavg_family(scaffold.scaffold),
         scaffold.DEFAULT_HPARAMS, ranges=scaffold.RANGES)
for _name, _rule in fedavg.FEDOPT_NAMES.items():
  register(_name, _fedavg_family(
      functools.partial(fedavg.fedavg, server_optimizer=_rule)),
           fedavg.default_hparams(_name))

# FedHelp and its baselines (fm_prepare.prepare_fm places the FM knowledge).
register('fedhelp', fedhelp.build, fedhelp.default_hparams('fedhelp'),
         prepare=fm_prepare.prepare_fm,
         ranges={'lr_large': common.POSITIVE,
                 'temperature': common.HParamRange(low=0.0, low_open=True,
                                                   example=1.0)})
register('fedavg_fm', fedhelp.build_fedavg_fm,
         fedhelp.default_hparams('fedavg_fm'), prepare=fm_prepare.prepare_fm)
register('feddf', kd_baselines.build_feddf,
         kd_baselines.default_hparams('feddf'),
         prepare=kd_baselines.prepare_server_public,
         ranges={'server_kd_lr': common.POSITIVE})
register('fml', kd_baselines.build_fml, kd_baselines.default_hparams('fml'))
register('central', kd_baselines.build_central,
         kd_baselines.default_hparams('central'))

# pFedNet and the personalized baselines (Ditto, FedPer).
register('pfednet', pfednet.build, pfednet.DEFAULT_HPARAMS,
         prepare=pfednet.prepare, needs_info=True,
         no_sampling=pfednet.NO_SAMPLING)
register('fedper', pfednet.build_fedper, pfednet.FEDPER_HPARAMS,
         prepare=pfednet.prepare, needs_info=True,
         no_sampling=pfednet.NO_SAMPLING)
register('fedrep', pfednet.build_fedrep, pfednet.FEDPER_HPARAMS,
         prepare=pfednet.prepare, needs_info=True,
         no_sampling=pfednet.NO_SAMPLING)
register('ditto', ditto.build, ditto.DEFAULT_HPARAMS)
