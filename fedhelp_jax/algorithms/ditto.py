# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""Ditto: fair and robust FL through personalization.

Li et al. 2021, "Ditto: Fair and Robust Federated Learning Through
Personalization", https://arxiv.org/abs/2012.04221.

Each silo trains (1) a copy of the global model exactly as in FedAvg, whose
delta it uploads, and (2) a personal model kept in client state, trained on
the task loss plus ``lam/2 ||v - w_global||^2``. Silos are evaluated with
their personal models.
"""

import jax

from fedhelp_jax import types
from fedhelp_jax.algorithms import common
from fedhelp_jax.algorithms import server_opt


def ditto(module, task, local: common.LocalConfig,
          groups) -> types.FederatedAlgorithm:
  """Ditto; hparams: ``lr``, ``momentum``, ``server_lr``, ``ditto_lam``."""
  groups = tuple(groups)

  def init_fn(rng, data):
    params, model_state = common.init_model(
        module, rng, common.sample_x(data[groups[0]]))
    clients = {}
    for g in groups:
      num = data[g]['x'].shape[0]
      clients[g] = common.SiloModel(common.stack(params, num),
                                    common.stack(model_state, num))
    return server_opt.ServerState(params), clients

  def local_update(silo, hparams, rng):
    broadcast = silo.broadcast
    global_key, personal_key = jax.random.split(rng)
    new_global, model_state, m_global = common.supervised_train(
        module, task, local, broadcast, silo.state.model_state, silo.data,
        hparams, global_key)

    def prox(p):
      diff = jax.tree.map(lambda a, b: a - b, p, broadcast)
      return 0.5 * hparams['ditto_lam'] * common.tree_sq_norm(diff)

    new_personal, model_state, m_personal = common.supervised_train(
        module, task, local, silo.state.params, model_state, silo.data,
        hparams, personal_key, extra_loss=prox)
    delta = jax.tree.map(lambda a, b: a - b, broadcast, new_global)
    return types.SiloOutput(
        common.SiloModel(new_personal, model_state), delta,
        m_personal['train_loss'],
        {'global_train_loss': m_global['train_loss']})

  return types.FederatedAlgorithm(
      name='ditto', groups=groups, init=init_fn, local_update=local_update,
      server_update=server_opt.sgd_on_mean_delta,
      eval_variables=common.own_model_eval_variables,
      eval_model=lambda group: module)


DEFAULT_HPARAMS = {'lr': 0.05, 'momentum': 0.9, 'server_lr': 1.0,
                   'ditto_lam': 0.1}


SPECS = (types.AlgorithmSpec('ditto', common.module_builder(ditto),
                             DEFAULT_HPARAMS,
                             paper='Li et al. 2021',
                             arxiv='2012.04221',
                             personalised='yes'),)
