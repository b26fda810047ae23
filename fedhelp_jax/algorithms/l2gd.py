# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""L2GD: a mixture of global and local models (loopless local GD).

Hanzely and Richtarik 2020, "Federated Learning of a Mixture of Global and
Local Models", https://arxiv.org/abs/2002.05516, Algorithm 1, for

  min_x  (1/n) sum_i f_i(x_i) + lam/(2n) sum_i ||x_i - x_bar||^2.

Each silo keeps its own model ``x_i``. In the paper a common coin decides
every step: with probability ``1 - p`` each silo takes a local step on
``f_i``, with probability ``p`` every silo moves toward the mean,
``x_i <- x_i - eta lam / (n p) (x_i - x_bar)``. Here a round is one
communication: each silo first takes the aggregation step toward the mean
the server sent, ``x_i <- (1 - theta) x_i + theta x_bar`` with
``theta = lr (1 - p) lam / p`` (the paper's ``eta lam / (n p)`` with the
local step ``lr = eta / (n (1 - p))``), then the recipe's local steps,
then uploads ``x_i``. The one departure: the number of local steps between
communications is the recipe's fixed count, not a geometric draw of mean
``(1 - p) / p``. ``lam = 0`` is Local training; ``theta = 1`` restarts
every silo from the mean, FedAvg. A silo is evaluated with ``x_i``.
"""

import jax
import jax.numpy as jnp

from fedhelp_jax import types
from fedhelp_jax.algorithms import common
from fedhelp_jax.algorithms import server_opt

DEFAULT_HPARAMS = {'lr': 0.05, 'momentum': 0.0, 'server_lr': 1.0,
                   'l2gd_lam': 1.0, 'l2gd_p': 0.2}
RANGES = {'l2gd_lam': common.NON_NEGATIVE,
          'l2gd_p': common.HParamRange(
              low=0.0, high=1.0, low_open=True, high_open=True, example=0.2,
              reason='a probability of communicating, strictly inside (0, 1)')}


def mixing_weight(hparams) -> jax.Array:
  """``theta = lr (1 - p) lam / p``, the aggregation step's weight on the
  mean (clipped to [0, 1]: past 1 the step overshoots the mean)."""
  p = hparams['l2gd_p']
  return jnp.clip(hparams['lr'] * (1.0 - p) * hparams['l2gd_lam'] / p,
                  0.0, 1.0)


def l2gd(module, task, local: common.LocalConfig,
         groups) -> types.FederatedAlgorithm:
  """L2GD; hparams ``lr``, ``momentum``, ``server_lr`` (1: the server
  holds the mean), ``l2gd_lam``, ``l2gd_p``."""
  groups = tuple(groups)

  def init(rng, data):
    params, model_state = common.init_model(
        module, rng, common.sample_x(data[groups[0]]))
    clients = {g: common.SiloModel(common.stack(params, data[g]['x'].shape[0]),
                                   common.stack(model_state,
                                                data[g]['x'].shape[0]))
               for g in groups}
    return server_opt.ServerState(params), clients

  def local_update(silo, hparams, rng):
    theta = mixing_weight(hparams)
    mixed = jax.tree.map(lambda x, m: (1.0 - theta) * x + theta * m,
                         silo.state.params, silo.broadcast)
    params, model_state, metrics = common.supervised_train(
        module, task, local, mixed, silo.state.model_state, silo.data,
        hparams, rng)
    delta = jax.tree.map(jnp.subtract, silo.broadcast, params)
    return types.SiloOutput(common.SiloModel(params, model_state), delta,
                            metrics['train_loss'])

  return types.FederatedAlgorithm(
      name='l2gd', groups=groups, init=init, local_update=local_update,
      server_update=server_opt.sgd_on_mean_delta,
      eval_variables=common.own_model_eval_variables,
      eval_model=lambda group: module)


SPECS = (types.AlgorithmSpec('l2gd', common.module_builder(l2gd),
                             DEFAULT_HPARAMS, ranges=RANGES,
                             paper='Hanzely and Richtárik 2020',
                             arxiv='2002.05516',
                             personalised=('yes (own model mixed toward '
                                           'the mean)')),)
