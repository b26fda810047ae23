# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""IFCA: the Iterative Federated Clustering Algorithm.

Ghosh et al. 2020, "An Efficient Framework for Clustered Federated
Learning", https://arxiv.org/abs/2006.04088, Algorithm 2 with model
averaging (option II).

The server keeps ``K`` models. Every round each silo scores all ``K`` on
its own training data, takes the one with the lowest loss (its cluster
estimate), trains it locally, and uploads the delta with a one-hot of its
choice. Each server model moves by the weighted mean delta of the silos
that chose it; a model no silo chose stays where it was::

  j_i = argmin_j F_i(theta_j);   theta_j <- theta_j - server_lr *
      sum_{i: j_i = j} p_i (theta_j - y_i) / sum_{i: j_i = j} p_i

A silo is evaluated with the model of its latest choice. Where silos come
from hidden clusters with different labelling rules, one global model
cannot fit them all and per-silo models see too little data; IFCA can
recover the clusters (the paper's analysis needs a reasonable
initialisation, which is why the ``K`` models start from different keys).
"""

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from fedhelp_jax import models
from fedhelp_jax import tasks
from fedhelp_jax import traced
from fedhelp_jax import types
from fedhelp_jax.algorithms import common
from fedhelp_jax.algorithms import server_opt

DEFAULT_HPARAMS = {'lr': 0.05, 'momentum': 0.9, 'server_lr': 1.0}


class ServerState(NamedTuple):
  params: types.Params  # The K cluster models, leaves [K, ...].


class ClientState(NamedTuple):
  model_state: types.PyTree  # Non-param collections (FedBN-style), [C, ...].
  cluster: jax.Array  # int32 [C]: the silo's latest cluster choice.


class Upload(NamedTuple):
  delta: types.Params  # theta_j - y_i, like one cluster model.
  choice: jax.Array  # float32 [K]: one-hot of j_i.


def cluster_losses(module, task: tasks.Task, stacked_params, model_state,
                   data) -> jax.Array:
  """``[K]``: each cluster model's mean task loss over the silo's real
  training examples (padding rows masked out)."""
  valid = (jnp.arange(data['x'].shape[0]) < data['n']).astype(jnp.float32)

  def one(params):
    out, _ = models.apply_model(
        module, common.model_variables(params, model_state), data['x'],
        train=False)
    per_example = task.loss(out, data['y'])
    per_example = per_example.reshape(per_example.shape[0], -1).mean(-1)
    return jnp.sum(per_example * valid) / jnp.maximum(jnp.sum(valid), 1.0)

  return jax.lax.map(one, stacked_params)


def ifca(module, task: tasks.Task, local: common.LocalConfig, groups, *,
         num_clusters: int) -> types.FederatedAlgorithm:
  """IFCA over ``num_clusters`` models of one architecture (hparams
  ``lr``, ``momentum``, ``server_lr``)."""
  groups = tuple(groups)
  if num_clusters < 1:
    raise ValueError(f'IFCA needs num_clusters >= 1, got {num_clusters}.')

  def init(rng, data):
    sample = common.sample_x(data[groups[0]])
    inits = [common.init_model(module, jax.random.fold_in(rng, j), sample)
             for j in range(num_clusters)]
    params = jax.tree.map(lambda *xs: jnp.stack(xs), *[p for p, _ in inits])
    model_state = inits[0][1]
    clients = {g: ClientState(
        common.stack(model_state, data[g]['x'].shape[0]),
        jnp.zeros((data[g]['x'].shape[0],), jnp.int32)) for g in groups}
    return ServerState(params), clients

  def local_update(silo, hparams, rng):
    stacked = silo.broadcast
    losses = cluster_losses(module, task, stacked, silo.state.model_state,
                            silo.data)
    choice = jnp.argmin(losses).astype(jnp.int32)
    start = jax.tree.map(lambda p: p[choice], stacked)
    params, model_state, metrics = common.supervised_train(
        module, task, local, start, silo.state.model_state, silo.data,
        hparams, rng)
    delta = jax.tree.map(jnp.subtract, start, params)
    upload = Upload(delta, jax.nn.one_hot(choice, num_clusters))
    metrics = {**metrics, 'cluster': choice.astype(jnp.float32),
               'selection_loss': losses[choice]}
    return common.silo_output(ClientState(model_state, choice), upload,
                              metrics)

  def server_update(server, uploads, weights, hparams):
    def cluster_mean(j):
      # The engine's weights restricted to the silos that chose model j.
      picked = {g: weights[g] * uploads[g].choice[:, j] for g in uploads}
      total = sum(jnp.sum(w) for w in picked.values())
      deltas = {g: u.delta for g, u in uploads.items()}
      return traced.weighted_mean_groups(deltas, picked), total

    means, totals = jax.lax.map(cluster_mean, jnp.arange(num_clusters))
    stepped = server_opt.sgd_step(server.params, means, hparams)
    # A model no silo chose (total 0) keeps its params.
    chosen = totals > 0
    return ServerState(jax.tree.map(
        lambda new, old: jnp.where(
            chosen.reshape((-1,) + (1,) * (new.ndim - 1)), new, old),
        stepped, server.params))

  def eval_variables(silo):
    params = jax.tree.map(lambda p: p[silo.state.cluster], silo.broadcast)
    return common.model_variables(params, silo.state.model_state)

  return types.FederatedAlgorithm(
      name='ifca', groups=groups, init=init, local_update=local_update,
      server_update=server_update, eval_variables=eval_variables,
      eval_model=lambda group: module)


@dataclasses.dataclass(frozen=True)
class IFCAConfig:
  """``config.ifca``: ``num_clusters``, the number of server models."""
  num_clusters: int = 2

  def __post_init__(self):
    common.require_int('num_clusters', self.num_clusters, 1)


def section(config) -> IFCAConfig:
  return common.config_section(config, 'ifca', IFCAConfig)


def build(config, task, groups):
  """IFCA from an experiment config: ``config.model`` and
  ``config.ifca.num_clusters``."""
  module = models.from_config(config.model, task.num_classes)
  return ifca(module, task, common.LocalConfig.from_experiment(config),
              groups, num_clusters=section(config).num_clusters)


# Not record_dp: the cluster choice is an argmin over every private record
# of the silo, uploaded in the clear, which DP-SGD's accounting does not
# cover.
SPECS = (types.AlgorithmSpec('ifca', build, DEFAULT_HPARAMS,
                             section=types.ConfigSection('ifca', section),
                             paper='Ghosh et al. 2020',
                             arxiv='2006.04088',
                             personalised='per cluster (K server models)'),)
