# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""pFedNet: a mixture of personalized and shared components.

Zhao et al., "Medical Federated Model with Mixture of Personalized and
Sharing Components", IEEE TPAMI 2025, https://arxiv.org/abs/2306.14483.

What differs from FedAvg:
  * The parameters are split by a path pattern into a SHARED part (averaged
    as in FedAvg) and a PERSONALIZED part ``z_n`` (one vector per silo).
  * The server regularizes the personalized parts with the graph-fused group
    lasso ``lam * sum_{(i,j) in E} ||z_i - z_j||_2`` over a kNN graph of
    client sketches: a linearized proximal step solved by ADMM
    (``prox.graph_prox_admm``), with the silos' pseudo-gradients
    ``Delta_n = z_before - z_after`` as the gradient and a fixed anchor.
    ``lam = 0`` leaves each silo's part independent (FedPer); ``lam -> inf``
    fuses connected silos.
  * Uploads are "differentially sparse": each update tensor is replaced by
    its 1-D total-variation prox ``prox_{gamma ||D.||_1}`` (piecewise
    constant, so it run-length encodes well), optionally ternarized.

One pFedNet round here trains shared and personalized parts jointly for the
local steps (the official deep-net code alternates two phases with two
communications per round; see docs/pfednet.md).

FedPer (Arivazhagan et al. 2019, https://arxiv.org/abs/1912.00818) is this
algorithm with no graph coupling and no compression: the shared body is
averaged, the personalized head stays with its silo (``fedper`` below).

``prepare`` is the registry hook that builds the similarity graph once on
the host: each silo computes a sketch of its own training data (label
proportions, mean input or mean mask), and the graph (kNN / complete / star)
is built from the stacked sketches alone.
"""

import dataclasses
import functools
import re
from typing import Any, NamedTuple, Optional, Sequence

import jax
from jax.flatten_util import ravel_pytree
import jax.numpy as jnp
import numpy as np

from fedhelp_jax import errors
from fedhelp_jax import models
from fedhelp_jax import traced
from fedhelp_jax import types
from fedhelp_jax.algorithms import common
from fedhelp_jax.algorithms import server_opt
from fedhelp_jax.algorithms.pfednet import graph as graph_lib
from fedhelp_jax.algorithms.pfednet import params as params_lib
from fedhelp_jax.algorithms.pfednet import prox as prox_lib
from fedhelp_jax.algorithms.pfednet import tv as tv_lib


def _compress(tree, gamma, ternarize_p: Optional[float], tv_iters: int):
  """TV-prox (and optionally ternarize) every leaf, flattened per tensor."""
  def one(x):
    flat = x.reshape(-1)
    out = tv_lib.tv_prox(flat, gamma, num_iters=tv_iters)
    out = jnp.where(gamma > 0, out, flat)
    if ternarize_p is not None:
      out = tv_lib.ternarize(out, ternarize_p)
    return out.reshape(x.shape)
  return jax.tree.map(one, tree)


def _num_runs(tree) -> jax.Array:
  """Number of constant runs over all flattened leaves (what RLE sends)."""
  return sum(1 + jnp.sum(x.reshape(-1)[1:] != x.reshape(-1)[:-1])
             for x in jax.tree.leaves(tree))


def _param_paths(params) -> list[str]:
  return ['/'.join(params_lib.param_path(p))
          for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]


def pfednet(module, task, local: common.LocalConfig, groups, *,
            edges: np.ndarray, num_silos_per_group: dict[str, int],
            personal_pattern: str, shared_pattern: Optional[str] = None,
            compress: bool = True, ternarize_p: Optional[float] = None,
            admm_iters: int = 50, tv_iters: int = 100,
            return_uploads: bool = False, local_round: str = 'joint',
            name: str = 'pfednet') -> types.FederatedAlgorithm:
  """pFedNet on the engine.

  Hyperparameters (arrays): ``lr``, ``momentum``, ``server_lr`` (shared
  part), ``lam`` (graph lasso), ``eta`` (prox step on the personalized
  part; 1 applies the silos' own updates before fusing), ``rho`` (ADMM),
  ``gamma`` (TV prox strength of uploads; 0 disables it).

  Args:
    module: the Flax model.
    task: the task.
    local: local-training config.
    groups: silo group names; silos are numbered group by group in this
      order (the graph's node order).
    edges: ``[E, 2]`` int array of undirected edges (i < j) between silos,
      computed once from client sketches (``graph.knn_edges``).
    num_silos_per_group: number of silos of each group (graph nodes).
    personal_pattern: regex over '/'-joined parameter paths selecting the
      personalized part (e.g. ``'^head/'``; for a UNet ``'^(dec_|head)'``).
    shared_pattern: optional regex selecting the shared part; when given,
      every parameter must match exactly one of the two patterns
      (``params.partition_params_strict``), else the rest is shared.
    compress: apply the TV prox to uploads (with ``gamma``).
    ternarize_p: if set, ternarize compressed uploads keeping this fraction.
    admm_iters: ADMM iterations of the server prox (static).
    tv_iters: iterations of the upload TV prox (static).
    return_uploads: also return each silo's (compressed) upload, raveled,
      as ``metrics['upload']`` ``[d]`` so the host can measure the bytes an
      encoder would send (``encode.encoded_bytes``).
    local_round: 'joint' (every local step updates the whole model), or a
      two-phase round: 'shared_first' (the local schedule on the shared
      part with the personalized part frozen, then the schedule again on
      the personalized part with the shared part frozen: pFedNet's official
      alternation) or 'personal_first' (FedRep's order: the head first).
      A two-phase round takes twice the joint round's steps.
    name: the algorithm name (FedPer reuses this factory).
  """
  if local_round not in LOCAL_ROUNDS:
    raise ValueError(f'local_round must be one of {LOCAL_ROUNDS}, got '
                     f'{local_round!r}.')
  groups = tuple(groups)
  sizes = tuple(int(num_silos_per_group[g]) for g in groups)
  setup = _Setup(
      module=module, task=task, local=local, groups=groups, sizes=sizes,
      incidence=graph_lib.incidence_matrix(np.asarray(edges), sum(sizes)),
      splits=tuple(np.cumsum(sizes)[:-1].tolist()),
      personal_pattern=personal_pattern, shared_pattern=shared_pattern,
      compress=compress, ternarize_p=ternarize_p, admm_iters=admm_iters,
      tv_iters=tv_iters, return_uploads=return_uploads,
      local_round=local_round)
  bind = lambda fn: functools.partial(fn, setup)
  return types.FederatedAlgorithm(
      name=name, groups=groups, init=bind(_init), download=_download,
      local_update=bind(_local_update), server_update=bind(_server_update),
      eval_variables=bind(_eval_variables), eval_model=lambda group: module)


class PFedNetServer(NamedTuple):
  """pFedNet's server: the shared model and every silo's ADMM variable."""
  params: Any  # The global model (its personalized block unused here).
  z: Any  # group -> [C_g, ...]: each silo's z_i, sent back as `personal`.


class _Setup(NamedTuple):
  """pFedNet's static configuration (see ``pfednet``'s arguments)."""
  module: Any
  task: Any
  local: common.LocalConfig
  groups: tuple[str, ...]
  sizes: tuple[int, ...]  # Graph nodes per group, in group order.
  incidence: np.ndarray  # [E, N] edge-node incidence of the graph.
  splits: tuple[int, ...]  # Where each group's rows start in the node axis.
  personal_pattern: str
  shared_pattern: Optional[str]
  compress: bool
  ternarize_p: Optional[float]
  admm_iters: int
  tv_iters: int
  return_uploads: bool
  local_round: str


def _labels_of(setup: _Setup, params):
  if setup.shared_pattern is None:
    return params_lib.partition_params(params, setup.personal_pattern)
  return params_lib.partition_params_strict(params, setup.shared_pattern,
                                            setup.personal_pattern)


def _split_params(setup: _Setup, params):
  return params_lib.split(params, _labels_of(setup, params))


def _train(setup: _Setup, start, model_state, data, hparams, rng):
  """The silo's local training: joint, or the two phases in order."""
  module, task, local = setup.module, setup.task, setup.local
  if setup.local_round == 'joint':
    return common.supervised_train(module, task, local, start, model_state,
                                   data, hparams, rng)
  labels = _labels_of(setup, start)
  order = ((params_lib.SHARED, params_lib.PERSONAL)
           if setup.local_round == 'shared_first'
           else (params_lib.PERSONAL, params_lib.SHARED))
  params, losses, steps = start, [], 0.0
  for part, key in zip(order, jax.random.split(rng)):
    params, model_state, m = common.supervised_train(
        module, task, local, params, model_state, data, hparams, key,
        trainable=jax.tree.map(lambda label, part=part: label == part,
                               labels))
    losses.append(m['train_loss'])
    steps = steps + m['local_steps']
  return params, model_state, {'train_loss': losses[-1],
                               'train_loss_first_phase': losses[0],
                               'local_steps': steps}


def _init(setup: _Setup, rng, data):
  groups = setup.groups
  params, model_state = common.init_model(
      setup.module, rng, common.sample_x(data[groups[0]]))
  _, personal = _split_params(setup, params)
  z, _ = ravel_pytree(personal)
  if z.size == 0:
    raise ValueError(
        f'pfednet: the personalized pattern {setup.personal_pattern!r} '
        'matched no parameter; parameter paths are: '
        + ', '.join(_param_paths(params)) + '.')
  clients, zs = {}, {}
  for g, num in zip(groups, setup.sizes):
    num_data = int(data[g]['x'].shape[0])
    if num_data < num:
      raise ValueError(f'pfednet: group {g!r} has {num_data} silos in the '
                       f'data but {num} graph nodes.')
    clients[g] = common.SiloModelState(common.stack(model_state, num_data))
    zs[g] = common.stack(z, num_data)
  return PFedNetServer(params, zs), clients


def _download(server):
  return types.Download(broadcast=server.params, personal=server.z)


def _local_update(setup: _Setup, silo: types.SiloInput, hparams, rng):
  # ``silo.personal`` is this silo's ADMM variable z_i (its personal block).
  shared0, personal_template = _split_params(setup, silo.broadcast)
  _, unravel = ravel_pytree(personal_template)
  start = params_lib.merge(shared0, unravel(silo.personal))
  params, model_state, metrics = _train(setup, start, silo.state.model_state,
                                        silo.data, hparams, rng)
  delta = jax.tree.map(lambda a, b: a - b, start, params)
  delta_shared, delta_personal = _split_params(setup, delta)
  upload = {'shared': delta_shared,
            'personal': ravel_pytree(delta_personal)[0]}
  if setup.compress:
    upload = _compress(upload, hparams['gamma'], setup.ternarize_p,
                       setup.tv_iters)
  metrics = dict(metrics)
  metrics['upload_runs'] = _num_runs(upload)
  metrics['upload_size'] = jnp.asarray(
      sum(x.size for x in jax.tree.leaves(upload)), jnp.int32)
  if setup.return_uploads:
    metrics['upload'] = ravel_pytree(upload)[0]
  return common.silo_output(common.SiloModelState(model_state), upload,
                            metrics)


def _server_update(setup: _Setup, server, uploads, weights, hparams):
  groups, sizes = setup.groups, setup.sizes
  shared_delta = traced.weighted_mean_groups(
      {g: u['shared'] for g, u in uploads.items()}, weights)
  shared0, personal0 = _split_params(setup, server.params)
  shared = server_opt.sgd_step(shared0, shared_delta, hparams)
  # Graph nodes are the real silos; dummy silos appended for a device mesh
  # (weight 0) keep their rows unchanged.
  z_t = jnp.concatenate([server.z[g][:n] for g, n in zip(groups, sizes)])
  grads = jnp.concatenate([uploads[g]['personal'][:n]
                           for g, n in zip(groups, sizes)])
  z = prox_lib.graph_prox_admm(
      z_t, grads, jnp.asarray(setup.incidence), lam=hparams['lam'],
      eta=hparams['eta'], rho=hparams['rho'], num_iters=setup.admm_iters)
  parts = jnp.split(z, list(setup.splits)) if setup.splits else [z]
  new_z = {g: server.z[g].at[:n].set(part)
           for g, n, part in zip(groups, sizes, parts)}
  return PFedNetServer(params_lib.merge(shared, personal0), new_z)


def _eval_variables(setup: _Setup, silo: types.SiloInput):
  shared, personal_template = _split_params(setup, silo.broadcast)
  _, unravel = ravel_pytree(personal_template)
  return common.model_variables(
      params_lib.merge(shared, unravel(silo.personal)),
      silo.state.model_state)


DEFAULT_HPARAMS = {'lr': 0.05, 'momentum': 0.9, 'server_lr': 1.0, 'lam': 0.01,
                   'eta': 1.0, 'rho': 1.0, 'gamma': 0.0}
# Why pFedNet and FedPer cannot draw a subset of silos per round.
NO_SAMPLING = ("its server prox couples every silo's personalized part each "
               'round')

# ---------------------------------------------------------------------------
# Experiment configs: the graph (registry ``prepare`` hook) and the builders.
# ---------------------------------------------------------------------------

# Personalized part by model family: the classifier head; for a UNet the
# decoder and the final 1x1 conv (the official code's BraTS split).
DEFAULT_PERSONAL_PATTERNS = {'logreg': '^head/', 'cnn': '^head/',
                             'resnet': '^head/', 'unet': '^(dec_|head/)'}
# 'empty': no edges (FedPer's math); 'random': as many edges as the kNN
# graph, drawn at random (graph_seed); 'oracle': every pair of silos of one
# hidden cluster (needs the partition's info['clusters']).
GRAPHS = ('knn', 'complete', 'star', 'empty', 'random', 'oracle')
LOCAL_ROUNDS = ('joint', 'shared_first', 'personal_first')
SKETCHES = ('auto', 'label_proportions', 'mean_input', 'mean_mask')
# How a label-proportion sketch is normalised: 'per_silo' (each silo's own
# label distribution: what tells silos apart) or 'global' (counts over the
# GLOBAL total, as the official code does: the sketch then carries the
# silo's size, and kNN mostly joins silos of similar size).
SKETCH_NORMS = ('per_silo', 'global')


@dataclasses.dataclass(frozen=True)
class PFedNetSection:
  """``config.pfednet`` (``pfednet_settings`` checks the values; the
  arguments of ``pfednet`` and ``graph_from_sketches`` say what each does).
  ``personal_pattern`` None takes the model family's default."""
  personal_pattern: Optional[str] = None
  shared_pattern: Optional[str] = None
  graph: str = 'knn'
  k: int = 3
  metric: str = 'euclidean'
  star_center: int = 0
  sketch: str = 'auto'
  sketch_norm: str = 'per_silo'
  graph_seed: int = 0
  local_round: str = 'joint'
  compress: bool = True
  ternarize_p: Optional[float] = None
  admm_iters: int = 50
  tv_iters: int = 100


def _config_error(field: str, problem: str, fix: str):
  return errors.config_error(field, problem, fix)


def _fail(field: str, problem: str, fix: str):
  raise _config_error(f'pfednet.{field}', problem, fix)


def pfednet_settings(config) -> dict[str, Any]:
  """``config.pfednet`` merged over the defaults, checked.

  Raises:
    ConfigError: unknown keys, graph, sketch or metric, ``k < 1``, an invalid
      regex or ``ternarize_p`` outside (0, 1].
  """
  out = dataclasses.asdict(
      common.config_section(config, 'pfednet', PFedNetSection))
  if out['graph'] not in GRAPHS:
    _fail('graph', f'unknown graph {out["graph"]!r}.', f'use one of {GRAPHS}.')
  if out['sketch'] not in SKETCHES:
    _fail('sketch', f'unknown sketch {out["sketch"]!r}.',
          f'use one of {SKETCHES}.')
  if out['local_round'] not in LOCAL_ROUNDS:
    _fail('local_round', f'unknown round {out["local_round"]!r}.',
          f'use one of {LOCAL_ROUNDS}.')
  if out['sketch_norm'] not in SKETCH_NORMS:
    _fail('sketch_norm', f'unknown normalisation {out["sketch_norm"]!r}.',
          f'use one of {SKETCH_NORMS}.')
  if out['metric'] not in ('euclidean', 'l1'):
    _fail('metric', f'unknown metric {out["metric"]!r}.',
          "use 'euclidean' or 'l1'.")
  if isinstance(out['k'], bool) or not isinstance(out['k'], int) or (
      out['k'] < 1):
    _fail('k', f'must be an integer >= 1, got {out["k"]!r}.', 'use e.g. 3.')
  if out['personal_pattern'] is None:
    model = config.model.name
    if model not in DEFAULT_PERSONAL_PATTERNS:
      _fail('personal_pattern', f'no default for model {model!r}.',
            'give a regex over parameter paths, e.g. "^head/".')
    out['personal_pattern'] = DEFAULT_PERSONAL_PATTERNS[model]
  for field in ('personal_pattern', 'shared_pattern'):
    if out[field] is None:
      continue
    try:
      re.compile(out[field])
    except (re.error, TypeError) as e:
      _fail(field, f'{out[field]!r} is not a valid regex ({e}).',
            'write a Python regex over "/"-joined parameter paths.')
  p = out['ternarize_p']
  if p is not None and not 0.0 < float(p) <= 1.0:
    _fail('ternarize_p', f'must be in (0, 1] or None, got {p}.',
          'use e.g. 0.2 (keep the top 20%).')
  hp = dict(config.get('hparams', None) or {})
  for key, low in (('lam', 0.0), ('gamma', 0.0)):
    if key in hp and not float(hp[key]) >= low:
      raise _config_error(f'hparams.{key}', f'must be >= 0, got {hp[key]}.',
                          'use 0 to switch the term off.')
  for key in ('eta', 'rho'):
    if key in hp and not float(hp[key]) > 0:
      raise _config_error(f'hparams.{key}', f'must be > 0, got {hp[key]}.',
                          'use e.g. 1.0.')
  for field in ('admm_iters', 'tv_iters'):
    if int(out[field]) < 1:
      _fail(field, f'must be >= 1, got {out[field]}.', 'use e.g. 50.')
  return out


def silo_sketch(kind: str, x: np.ndarray, y: np.ndarray,
                num_classes: int) -> np.ndarray:
  """ONE silo's sketch of its own training data (computed on the silo).

  Args:
    kind: 'label_proportions' (class counts; normalised over all silos by
      ``graph_from_sketches`` callers, as in the official code), 'mean_input'
      (mean input, the official imaging code's mean image) or 'mean_mask'
      (per-pixel class frequencies of the masks, segmentation).
    x: ``[n, ...]`` the silo's real training inputs.
    y: ``[n]`` labels or ``[n, H, W]`` masks.
    num_classes: number of classes.

  Returns:
    A float64 vector.
  """
  if kind == 'label_proportions':
    return np.bincount(np.asarray(y).reshape(-1),
                       minlength=num_classes)[:num_classes].astype(np.float64)
  if kind == 'mean_input':
    return graph_lib.client_sketch_mean([x])[0]
  if kind == 'mean_mask':
    onehot = np.eye(num_classes)[np.asarray(y)]  # [n, H, W, K]
    return graph_lib.client_sketch_mean([onehot])[0]
  raise ValueError(f'Unknown sketch {kind!r}; expected one of {SKETCHES}.')


def graph_from_sketches(sketches: np.ndarray, settings,
                        clusters: Optional[Sequence[int]] = None
                        ) -> np.ndarray:
  """The server's graph: ``[E, 2]`` edges from the ``[N, F]`` sketches only
  (or, for the 'oracle' ablation, from the hidden ``clusters`` ``[N]``)."""
  num = sketches.shape[0]
  kind = settings['graph']
  if kind == 'complete':
    return graph_lib.complete_edges(num)
  if kind == 'empty':
    return np.zeros((0, 2), np.int64)
  if kind == 'oracle':
    if clusters is None:
      _fail('graph', "'oracle' needs the partition's hidden clusters.",
            "use a clustered partition, or another graph.")
    return graph_lib.cluster_edges(clusters)
  if kind == 'star':
    if not 0 <= int(settings['star_center']) < num:
      _fail('star_center', f'{settings["star_center"]} is not one of the '
            f'{num} silos.', f'use an index in [0, {num}).')
    return graph_lib.star_edges(num, int(settings['star_center']))
  knn = graph_lib.knn_edges(sketches, k=min(int(settings['k']), num - 1)
                            if num > 1 else 1, metric=settings['metric'])
  if kind == 'random':
    return graph_lib.random_edges(num, len(knn), seed=int(
        settings['graph_seed']))
  return knn


def prepare(config, fed, raw, info):
  """Registry hook: client sketches and the similarity graph, once.

  Each silo's sketch is computed from that silo's own training rows
  (``silo_sketch``); the server side (``graph_from_sketches``) sees only the
  stacked ``[N, F]`` sketches. Nodes are the silos in group order
  (``types.group_names``). The result goes to ``info['pfednet']`` (edges,
  silo counts, the sketch kind); ``fed`` is returned unchanged.
  """
  del raw
  settings = pfednet_settings(config)
  kind = settings['sketch']
  if kind == 'auto':
    kind = ('label_proportions' if config.task == 'classification'
            else 'mean_input')
  if kind == 'mean_mask' and config.task != 'segmentation':
    _fail('sketch', "'mean_mask' needs a segmentation task.",
          "use 'label_proportions' or 'mean_input'.")
  groups = types.group_names(fed)
  num_classes = int(config.num_classes)
  sketches, counts = [], {}
  for g in groups:
    d = fed[g]
    real = [c for c in range(d['n'].shape[0]) if d['n'][c] > 0]
    counts[g] = len(real)
    for c in real:
      n = int(d['n'][c])
      sketches.append(silo_sketch(kind, d['x'][c, :n], d['y'][c, :n],
                                  num_classes))
  sketches = np.stack(sketches)
  if kind == 'label_proportions' and settings['sketch_norm'] == 'global':
    sketches = sketches / max(sketches.sum(), 1.0)  # As coded.
  elif kind == 'label_proportions':
    sketches = sketches / np.maximum(sketches.sum(axis=1, keepdims=True), 1.0)
  clusters = (info or {}).get('clusters')
  edges = graph_from_sketches(sketches, settings, clusters)
  info['pfednet'] = {'sketch': kind, 'sketch_norm': settings['sketch_norm'],
                     'graph': settings['graph'],
                     'k': int(settings['k']), 'edges': edges.tolist(),
                     'num_silos_per_group': counts}
  if clusters is not None:
    info['pfednet']['quality'] = graph_lib.graph_quality(edges, clusters)
  return fed


def _graph_info(info, groups):
  if not info or 'pfednet' not in info:
    raise ValueError(
        'pfednet/fedper need the similarity graph from their prepare hook: '
        'call '
        'algorithms.prepare(...) first and pass its info to '
        'algorithms.build(..., info=info).')
  graph = info['pfednet']
  missing = [g for g in groups if g not in graph['num_silos_per_group']]
  if missing:
    raise ValueError(f'pfednet: the graph has no silos of groups {missing}.')
  return graph


def build(config, task, groups, info=None):
  """Registry builder of pFedNet from an experiment config."""
  settings = pfednet_settings(config)
  graph = _graph_info(info, groups)
  module = models.from_config(config.model, task.num_classes)
  return pfednet(
      module, task, common.LocalConfig.from_experiment(config), groups,
      edges=np.asarray(graph['edges'], np.int64).reshape(-1, 2),
      num_silos_per_group=graph['num_silos_per_group'],
      personal_pattern=settings['personal_pattern'],
      shared_pattern=settings['shared_pattern'],
      compress=bool(settings['compress']),
      ternarize_p=(None if settings['ternarize_p'] is None
                   else float(settings['ternarize_p'])),
      admm_iters=int(settings['admm_iters']),
      tv_iters=int(settings['tv_iters']),
      local_round=settings['local_round'])


def fedper(module, task, local: common.LocalConfig, groups, *,
           num_silos_per_group: dict[str, int], personal_pattern: str,
           shared_pattern: Optional[str] = None, local_round: str = 'joint',
           name: str = 'fedper') -> types.FederatedAlgorithm:
  """FedPer as pFedNet with an empty graph and no compression.

  With no edges the server prox is the identity on ``V = z - eta Delta``,
  so with ``eta = 1`` each silo keeps its own trained head; the shared body
  is averaged as in FedAvg. ``lam`` and ``gamma`` have no effect.
  ``local_round='personal_first'`` is FedRep (Collins et al. 2021): each
  round trains the silo's head with the body frozen, then the body with
  the head frozen (``fedrep``).
  """
  return pfednet(module, task, local, groups,
                 edges=np.zeros((0, 2), np.int64),
                 num_silos_per_group=num_silos_per_group,
                 personal_pattern=personal_pattern,
                 shared_pattern=shared_pattern, compress=False,
                 local_round=local_round, name=name)


def _build_fedper_split(config, task, groups, info, *,
                        local_round: Optional[str], name: str):
  """FedPer's split from ``config.pfednet`` patterns and ``prepare``'s silo
  counts (its graph is ignored); ``local_round`` None reads the config's."""
  settings = pfednet_settings(config)
  graph = _graph_info(info, groups)
  module = models.from_config(config.model, task.num_classes)
  local = common.LocalConfig.from_experiment(config)
  return fedper(module, task, local, groups,
                num_silos_per_group=graph['num_silos_per_group'],
                personal_pattern=settings['personal_pattern'],
                shared_pattern=settings['shared_pattern'],
                local_round=local_round or settings['local_round'],
                name=name)


def build_fedper(config, task, groups, info=None):
  """Registry builder of FedPer (``config.pfednet`` patterns and
  ``local_round`` apply)."""
  return _build_fedper_split(config, task, groups, info, local_round=None,
                             name='fedper')


def build_fedrep(config, task, groups, info=None):
  """Registry builder of FedRep: FedPer's split, head first then body."""
  return _build_fedper_split(config, task, groups, info,
                             local_round='personal_first', name='fedrep')


FEDPER_HPARAMS = {'lr': 0.05, 'momentum': 0.9, 'server_lr': 1.0, 'lam': 0.0,
                  'eta': 1.0, 'rho': 1.0, 'gamma': 0.0}


SPECS = tuple(
    types.AlgorithmSpec(name, builder, hparams, prepare=prepare,
                        needs_info=True, no_sampling=NO_SAMPLING,
                        section=types.ConfigSection('pfednet',
                                                    pfednet_settings),
                        paper=paper, arxiv=arxiv, personalised='yes (part)')
    for name, builder, hparams, paper, arxiv in (
        ('pfednet', build, DEFAULT_HPARAMS, 'Zhao et al. 2025', '2306.14483'),
        ('fedper', build_fedper, FEDPER_HPARAMS, 'Arivazhagan et al. 2019',
         '1912.00818'),
        ('fedrep', build_fedrep, FEDPER_HPARAMS, 'Collins et al. 2021',
         '2102.07078')))
