# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""FedAvg, FedProx and Local-only on the compiled engine.

* FedAvg: McMahan et al. 2017, "Communication-Efficient Learning of Deep
  Networks from Decentralized Data", https://arxiv.org/abs/1602.05629.
* FedProx: Li et al. 2020, "Federated Optimization in Heterogeneous
  Networks", https://arxiv.org/abs/1812.06127. It adds the proximal term
  ``mu/2 ||w - w_global||^2`` to every local step.
* Local-only: every silo trains its own model; nothing is communicated.

Silos upload the model delta ``w_global - w_local``; the server feeds the
weighted mean delta to a server optimizer (``server_opt``): SGD with
``server_lr = 1`` is plain FedAvg; Adam, Yogi and Adagrad give FedAdam,
FedYogi and FedAdagrad (Reddi et al. 2021, https://arxiv.org/abs/2003.00295).
BatchNorm statistics, when the model has them, stay on the silo
(they are client state, FedBN-style), only 'params' are averaged.

FedAvg-family silos keep nothing else between rounds: local training
starts from the broadcast and its result leaves as the upload, so the
client state holds no model copy (``stateless_clients``; an empty pytree
for a model without batch statistics). Local-only keeps each silo's model.
"""

import functools
from typing import Any

import jax

from fedhelp_jax import tasks
from fedhelp_jax import types
from fedhelp_jax.algorithms import common
from fedhelp_jax.algorithms import server_opt

# Registered names of FedAvg with an adaptive server optimizer.
FEDOPT_NAMES = {'fedadam': 'adam', 'fedyogi': 'yogi', 'fedadagrad': 'adagrad'}


def init_shared_model(module, groups, data, rng):
  """``(params, model_state)`` of the one model every group trains."""
  return common.init_model(module, rng, common.sample_x(data[groups[0]]))


def stateless_clients(model_state, data, groups):
  """Client states of an algorithm whose silos keep no model between rounds.

  Each silo keeps only its non-param collections (BatchNorm statistics,
  FedBN-style), an empty pytree for a model without any: the model itself
  arrives with the broadcast every round, so a per-silo copy would be a
  dead leaf (donated, checkpointed, never read).
  """
  return {g: common.SiloModelState(
      common.stack(model_state, data[g]['x'].shape[0])) for g in groups}


def _init(module, groups, server_optimizer='sgd'):
  def init_fn(rng, data):
    params, model_state = init_shared_model(module, groups, data, rng)
    return (server_opt.init_server(server_optimizer, params),
            stateless_clients(model_state, data, groups))
  return init_fn


def fedavg(module, task: tasks.Task, local: common.LocalConfig, groups,
           *, proximal: bool = False,
           server_optimizer: str = 'sgd') -> types.FederatedAlgorithm:
  """FedAvg (or FedProx with ``proximal=True``) over one shared model.

  Hyperparameters (arrays in ``hparams``): ``lr``, ``momentum`` (sgd),
  ``server_lr``, for FedProx ``mu``, and for an adaptive server optimizer
  ``server_b1``, ``server_b2``, ``server_tau`` (``server_opt``).

  Args:
    module: the Flax model every silo trains.
    task: the task.
    local: local-training config.
    groups: silo group names (all share ``module``).
    proximal: add FedProx's proximal term.
    server_optimizer: one of ``server_opt.SERVER_OPTIMIZERS``.
  """
  groups = tuple(groups)
  if server_optimizer not in server_opt.SERVER_OPTIMIZERS:
    raise ValueError(f'Unknown server optimizer {server_optimizer!r}; '
                     f'expected one of {server_opt.SERVER_OPTIMIZERS}.')

  def local_update(silo, hparams, rng):
    broadcast = silo.broadcast
    extra = None
    if proximal:
      def extra(p):
        diff = jax.tree.map(lambda a, b: a - b, p, broadcast)
        return 0.5 * hparams['mu'] * common.tree_sq_norm(diff)
    params, model_state, metrics = common.supervised_train(
        module, task, local, broadcast, silo.state.model_state, silo.data,
        hparams, rng, extra_loss=extra)
    delta = jax.tree.map(lambda a, b: a - b, broadcast, params)
    # The trained model leaves with the upload; the silo keeps only
    # model_state (the next round starts from the new broadcast).
    return common.silo_output(common.SiloModelState(model_state), delta,
                              metrics)

  def server_update_from_mean(server, mean_delta, hparams):
    # Only the weighted mean delta matters: the engine can stream it.
    return server_opt.apply(server_optimizer, server, mean_delta, hparams)

  fedopt = {v: k for k, v in FEDOPT_NAMES.items()}
  name = 'fedprox' if proximal else fedopt.get(server_optimizer, 'fedavg')
  return types.FederatedAlgorithm(
      name=name, groups=groups, init=_init(module, groups, server_optimizer),
      local_update=local_update,
      server_update=common.server_update_via_mean(server_update_from_mean),
      eval_model=lambda group: module,
      server_update_from_mean=server_update_from_mean)


def fedprox(module, task, local, groups) -> types.FederatedAlgorithm:
  """FedProx: FedAvg with a proximal term of strength ``hparams['mu']``."""
  return fedavg(module, task, local, groups, proximal=True)


def local_only(module, task: tasks.Task, local: common.LocalConfig,
               groups) -> types.FederatedAlgorithm:
  """Every silo trains its own model; nothing is uploaded or aggregated."""
  groups = tuple(groups)

  def download(server):
    del server
    return types.Download(broadcast={})

  def local_update(silo, hparams, rng):
    params, model_state, metrics = common.supervised_train(
        module, task, local, silo.state.params, silo.state.model_state,
        silo.data, hparams, rng)
    return common.silo_output(common.SiloModel(params, model_state), {},
                              metrics)

  def server_update(server, uploads, weights, hparams):
    del uploads, weights, hparams
    return server

  def init_fn(rng, data):
    # The one algorithm of this file whose silos keep their model.
    params, model_state = init_shared_model(module, groups, data, rng)
    clients = {g: common.SiloModel(
        common.stack(params, data[g]['x'].shape[0]),
        common.stack(model_state, data[g]['x'].shape[0])) for g in groups}
    return {}, clients

  return types.FederatedAlgorithm(
      name='local', groups=groups, init=init_fn, download=download,
      local_update=local_update, server_update=server_update,
      eval_variables=common.own_model_eval_variables,
      eval_model=lambda group: module)


def default_hparams(name: str) -> dict[str, Any]:
  """Default hyperparameter values (floats; convert with ``hparams.as_arrays``).
  """
  base = {'lr': 0.05, 'momentum': 0.9, 'server_lr': 1.0}
  if name == 'fedprox':
    base['mu'] = 0.01
  if name in FEDOPT_NAMES:
    base.update(server_opt.default_hparams(FEDOPT_NAMES[name]))
  return base


SPECS = (
    types.AlgorithmSpec('fedavg', common.module_builder(fedavg),
                        default_hparams('fedavg'), record_dp=True,
                        silo_dp=True,
                        paper='McMahan et al. 2017',
                        arxiv='1602.05629'),
    types.AlgorithmSpec('fedprox', common.module_builder(fedprox),
                        default_hparams('fedprox'),
                        ranges={'mu': common.NON_NEGATIVE}, record_dp=True,
                        silo_dp=True,
                        paper='Li et al. 2020',
                        arxiv='1812.06127'),
    types.AlgorithmSpec('local', common.module_builder(local_only),
                        default_hparams('local'), record_dp=True,
                        paper='local training only, nothing shared',
                        personalised='yes'),
) + tuple(
    types.AlgorithmSpec(name, common.module_builder(
        functools.partial(fedavg, server_optimizer=rule)),
                        default_hparams(name), record_dp=True, silo_dp=True,
                        paper='Reddi et al. 2021', arxiv='2003.00295')
    for name, rule in FEDOPT_NAMES.items())
