# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""Type aliases and the core contracts shared by the engine and algorithms.

Vocabulary (borrowed from DrJAX):
  * *placed* values carry a leading client axis ``C`` (one row per silo of a
    group); *unplaced* values are the same for every silo.
  * a *group* is a set of silos that share one architecture and one padded data
    shape, so they can be stacked and mapped over together. FedHelp has two
    groups (``large`` and ``small``); FedAvg on one model has one or more.

Data layout of one group (a plain dict, so it is a pytree)::

  {
    'x':      [C, N, ...]   float32  training inputs, padded to the group max N
    'y':      [C, N, ...]   int32    labels ([C, N]) or masks ([C, N, H, W])
    'n':      [C]           int32    real number of training examples per silo
    'test_x': [C, Nt, ...]  float32  held-out inputs of each silo
    'test_y': [C, Nt, ...]  int32
    'test_n': [C]           int32
    # optional algorithm-specific extras, e.g. FedHelp's
    'public_x': [C, P, ...], 'public_q': [C, P, K]   (FM knowledge, on-client)
  }
"""

import types as _pytypes
from typing import Any, Callable, Mapping, NamedTuple, Optional, Protocol

import jax

PyTree = Any
PRNGKey = jax.Array
Params = PyTree
Variables = Mapping[str, PyTree]  # Flax collections: 'params', 'batch_stats'.
HParams = Mapping[str, jax.Array]  # Scalars (or [K] in a sweep); never floats.
Metrics = Mapping[str, jax.Array]
GroupData = Mapping[str, jax.Array]
FederatedData = Mapping[str, GroupData]  # group name -> GroupData.


# The partitioner's group names (``experiment.build_federation``).
PARTITION_GROUPS = ('large', 'small')


def group_names(fed: Mapping[str, Any]) -> tuple[str, ...]:
  """The groups of a federation in run order: 'large' and 'small' first
  when present (the partitioner's names, which FedHelp's roles read), then
  any other names in the order the data gives them (a user's own silos)."""
  return (tuple(g for g in PARTITION_GROUPS if g in fed)
          + tuple(g for g in fed if g not in PARTITION_GROUPS))


class FederatedState(NamedTuple):
  """Everything a run needs to continue bit-exactly.

  Attributes:
    server: the algorithm's server state (unplaced).
    clients: group name -> placed client state (leaves ``[C_g, ...]``).
    rng: base PRNG key; per-round, per-group, per-silo streams are derived
      from it with ``fold_in`` so no key is ever carried or consumed.
    round: int32 scalar, number of completed rounds.
  """
  server: PyTree
  clients: Mapping[str, PyTree]
  rng: jax.Array
  round: jax.Array


class Download(NamedTuple):
  """What the server sends at the start of a round.

  Attributes:
    broadcast: unplaced pytree sent to every silo (e.g. global params).
    personal: group name -> placed pytree (leaves ``[C_g, ...]``) with one
      slice per silo (e.g. pFedNet's personalized block), or None.
  """
  broadcast: PyTree
  personal: Optional[Mapping[str, PyTree]] = None


class SiloInput(NamedTuple):
  """What ONE silo's local step (and its evaluation) sees.

  Attributes:
    group: the silo's group name (a static string: the engine maps each
      group's silos with its own trace).
    state: this silo's client state (the group's placed state, sliced).
    broadcast: ``Download.broadcast``, the same for every silo.
    personal: this silo's slice of ``Download.personal[group]``, or None.
    data: this silo's slice of its group's ``GroupData``; None where the
      silo is only evaluated (``eval_variables``).
  """
  group: str
  state: PyTree
  broadcast: PyTree
  personal: Optional[PyTree] = None
  data: Optional[GroupData] = None


class SiloOutput(NamedTuple):
  """What ONE silo's local step returns.

  Attributes:
    state: the silo's new client state (same structure as ``SiloInput.state``).
    upload: what the silo sends to the server (``server_update`` reads it).
    train_loss: float32 ``[]``, the silo's training loss this round. It is
      required: the engine's non-finite guard and every log read it.
    metrics: the algorithm's other per-silo scalars, by name (it must not
      name ``train_loss``); the engine reports them as
      ``RoundMetrics.silos[group]`` beside ``train_loss``.
  """
  state: PyTree
  upload: PyTree
  train_loss: jax.Array
  metrics: Metrics = _pytypes.MappingProxyType({})


class InitFn(Protocol):
  def __call__(self, rng: PRNGKey, data: FederatedData
               ) -> tuple[PyTree, Mapping[str, PyTree]]:
    """``(server_state, client_states)``; ``client_states`` maps group name
    -> placed (stacked, leaves ``[C_g, ...]``) client state."""


class DownloadFn(Protocol):
  def __call__(self, server: PyTree) -> 'Download':
    """What the server sends at the start of a round."""


class LocalUpdateFn(Protocol):
  def __call__(self, silo: SiloInput, hparams: HParams, rng: PRNGKey
               ) -> SiloOutput:
    """One silo's local work in a round."""


class ServerUpdateFn(Protocol):
  def __call__(self, server: PyTree, uploads: Mapping[str, PyTree],
               weights: Mapping[str, jax.Array], hparams: HParams) -> PyTree:
    """The new server state from every group's placed uploads (leaves
    ``[C_g, ...]``) and weights (``[C_g]``, zero for dummy or dropped
    silos)."""


class ServerUpdateFromMeanFn(Protocol):
  def __call__(self, server: PyTree, mean_upload: PyTree, hparams: HParams
               ) -> PyTree:
    """The new server state from the weighted mean of every upload."""


class EvalVariablesFn(Protocol):
  def __call__(self, silo: SiloInput) -> Variables:
    """The model variables ONE silo is evaluated with (``silo.data`` is
    None)."""


def broadcast_download(server: PyTree) -> Download:
  """The default ``download``: every silo gets ``server.params``."""
  return Download(broadcast=server.params)


def broadcast_eval_variables(silo: SiloInput) -> Variables:
  """The default ``eval_variables``: the broadcast model with the silo's
  own non-param collections (its state's ``model_state`` field, e.g.
  BatchNorm statistics kept FedBN-style)."""
  return {'params': silo.broadcast, **silo.state.model_state}


class FederatedAlgorithm(NamedTuple):
  """A federated algorithm as pure functions (optax's pair idea, per round).

  Algorithms describe ONE silo and ONE server step. They never call jit, vmap,
  scan over rounds or device_put: ``engine.py`` adds all of that.

  Attributes:
    name: lower-case algorithm name.
    groups: the silo group names it was built for, in order.
    init: ``InitFn``.
    local_update: ``LocalUpdateFn``: ``(SiloInput, hparams, rng) ->
      SiloOutput`` for ONE silo.
    server_update: ``ServerUpdateFn``.
    eval_model: ``group -> flax module`` used to predict with
      ``eval_variables``' variables.
    download: ``DownloadFn``; by default every silo gets ``server.params``.
    eval_variables: ``EvalVariablesFn``; by default the broadcast model
      with the silo's own ``model_state``.
    server_update_from_mean: optional ``ServerUpdateFromMeanFn`` for
      algorithms whose server step needs only the weighted mean of every
      group's uploads (the FedAvg family). It must agree with
      ``server_update`` given that mean (``traced.weighted_mean_groups``).
      With it, and silos mapped in sequence (the 'chunked' strategy), the
      engine streams the mean: each silo's upload is added to a running
      weighted sum as the silos are mapped, and no ``[C, ...]`` stack of
      uploads is ever built.
  """
  name: str
  groups: tuple[str, ...]
  init: InitFn
  local_update: LocalUpdateFn
  server_update: ServerUpdateFn
  eval_model: Callable[[str], Any]
  download: DownloadFn = broadcast_download
  eval_variables: EvalVariablesFn = broadcast_eval_variables
  server_update_from_mean: Optional[ServerUpdateFromMeanFn] = None


_EMPTY: Mapping[str, Any] = _pytypes.MappingProxyType({})


class AlgorithmSpec(NamedTuple):
  """Everything the registry needs to run one algorithm from a config.

  Each algorithm module declares ``SPECS = (AlgorithmSpec(...), ...)`` at its
  bottom; ``fedhelp_jax.algorithms`` finds every module of its package that
  has one, so a new algorithm is its module and its test, nothing else.

  Attributes:
    name: the ``config.algorithm`` name.
    build: ``(config, task, groups) -> FederatedAlgorithm`` (with
      ``needs_info``: ``(config, task, groups, info=info)``).
    hparams: the registered defaults, the source of truth: a config value
      that overrides one is printed at the start of the run.
    ranges: hparam name -> ``common.HParamRange`` this algorithm allows
      (narrowing a shared one, e.g. SCAFFOLD's momentum 0).
    prepare: optional host hook ``(config, fed, raw, info) -> fed`` run once
      before training (e.g. FedHelp's one-time FM answers).
    needs_info: ``build`` reads what ``prepare`` recorded in ``info``.
    no_sampling: why the algorithm cannot draw a subset of silos per round
      (``config.clients_per_round``); None when it can.
    recipe: hparam values this algorithm needs in place of a shared
      recipe's (SCAFFOLD's control update assumes momentum 0, where the
      shared recipe uses 0.9); ``experiments.configs.common`` applies them.
    record_dp: every local step that reads a silo's records is clipped
      and noised under ``config.dp`` (``common.supervised_train`` does it;
      FedHelp has its own DP path), once per step per release counted in
      ``dp_releases``. Other algorithms are refused.
    dp_releases: group -> clipped, noised gradient releases per sampled
      batch under DP-SGD (default 1; FedHelp's large silos make 2, steps A
      and B): ``k`` Gaussian releases of multiplier ``sigma`` on one batch
      are accounted as one of ``sigma / sqrt(k)``.
    silo_dp: its server step reads only the mean of uploads that are
      deltas of the broadcast, so silo-level DP-FedAvg (``dp_fedavg``) can
      clip each upload and noise the mean.
    section: optional ``ConfigSection``: the algorithm's config section
      and its parser. ``validate.validate_config`` calls it, so a bad
      section fails before any data is loaded.
    paper: who and when (e.g. 'McMahan et al. 2017'), or what it is when
      it is no paper's method; with ``arxiv``, the paper's arXiv id. The
      algorithm table (``python -m fedhelp_jax.algorithms``, the README's)
      is generated from these.
    arxiv: the paper's arXiv id, or '' for none.
    personalised: 'no', or how silos are scored with a model (or part) of
      their own, e.g. 'yes (part)'.
    reads_public: training reads the held-out public split (FM answers,
      server-side distillation), so that split cannot also be the
      evaluation set (``config.dataset.evaluate_on='validation'``).
  """
  name: str
  build: Callable[..., FederatedAlgorithm]
  hparams: Mapping[str, float]
  ranges: Mapping[str, Any] = _EMPTY
  prepare: Optional[Callable[..., Any]] = None
  needs_info: bool = False
  no_sampling: Optional[str] = None
  recipe: Mapping[str, float] = _EMPTY
  record_dp: bool = False
  dp_releases: Mapping[str, int] = _EMPTY
  silo_dp: bool = False
  section: Optional['ConfigSection'] = None
  paper: str = ''
  arxiv: str = ''
  personalised: str = 'no'
  reads_public: bool = False


class ConfigSection(NamedTuple):
  """An algorithm's own config section.

  Attributes:
    name: the section, ``config.<name>``.
    parse: ``config -> `` the section as a frozen dataclass
      (``common.config_section``: unknown keys and bad values are
      ``ConfigError``s naming the field).
  """
  name: str
  parse: Callable[[Any], Any]
