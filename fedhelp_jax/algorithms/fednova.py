# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""FedNova: FedAvg with updates normalized by each silo's local work.

Wang et al. 2020, "Tackling the Objective Inconsistency Problem in
Heterogeneous Federated Optimization", https://arxiv.org/abs/2007.07481.

Under ``local_epochs`` a silo with more data takes more local steps, so
plain FedAvg's weighted mean of deltas drifts toward the objective of the
silos that work most. FedNova divides silo ``i``'s delta by the L1 norm of
its step-weighting vector ``a_i`` (``tau_i`` steps of momentum-``rho`` SGD:
``||a_i||_1 = [tau_i - rho (1 - rho^tau_i) / (1 - rho)] / (1 - rho)``,
which is ``tau_i`` for plain SGD) and rescales the weighted mean by
``tau_eff = sum_i p_i ||a_i||_1``::

  x <- x - server_lr * tau_eff * sum_i p_i (x - y_i) / ||a_i||_1

``p_i`` are the engine's aggregation weights (renormalized over the silos
that took part; dummy and unsampled silos carry weight 0 and take 0
steps). With every silo taking the same number of steps this is FedAvg.
The step counts come from ``metrics['local_steps']`` of
``common.supervised_train``.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from fedhelp_jax import tasks
from fedhelp_jax import types
from fedhelp_jax.algorithms import common
from fedhelp_jax.algorithms import fedavg

# Plain local SGD by default, as in the paper's main experiments; a
# momentum > 0 is normalized by the momentum form of ||a_i||_1.
DEFAULT_HPARAMS = {'lr': 0.05, 'momentum': 0.0, 'server_lr': 1.0}
RANGES = {'momentum': common.HParamRange(
    low=0.0, high=1.0, high_open=True, example=0.0,
    reason="FedNova's normalizer sums the geometric series of the momentum")}


class ServerState(NamedTuple):
  params: types.Params  # The global model.


class Upload(NamedTuple):
  normalized_delta: types.Params  # (x - y_i) / ||a_i||_1, like params.
  work: jax.Array  # [] ||a_i||_1; its weighted mean is tau_eff.


def work_norm(steps: jax.Array, momentum: jax.Array) -> jax.Array:
  """``||a_i||_1`` of ``steps`` steps of SGD with heavy-ball ``momentum``."""
  rho = momentum
  safe = jnp.where(rho > 0, rho, 0.5)  # The rho = 0 branch is masked out.
  geometric = (steps - safe * (1 - safe**steps) / (1 - safe)) / (1 - safe)
  return jnp.where(rho > 0, geometric, steps)


def fednova(module, task: tasks.Task, local: common.LocalConfig,
            groups) -> types.FederatedAlgorithm:
  """FedNova over one shared model (hparams ``lr``, ``momentum``,
  ``server_lr``)."""
  groups = tuple(groups)

  def init(rng, data):
    params, model_state = fedavg.init_shared_model(module, groups, data, rng)
    return ServerState(params), fedavg.stateless_clients(model_state, data,
                                                          groups)

  def local_update(silo, hparams, rng):
    broadcast = silo.broadcast
    params, model_state, metrics = common.supervised_train(
        module, task, local, broadcast, silo.state.model_state, silo.data,
        hparams, rng)
    work = work_norm(metrics['local_steps'], hparams['momentum'])
    # A silo that took no step (a dummy) has a zero delta: keep it finite.
    scale = 1.0 / jnp.maximum(work, 1.0)
    delta = jax.tree.map(lambda a, b: (a - b) * scale, broadcast, params)
    return common.silo_output(common.SiloModelState(model_state),
                              Upload(delta, work), metrics)

  def server_update_from_mean(server, mean, hparams):
    step = hparams['server_lr'] * mean.work  # server_lr * tau_eff.
    return ServerState(jax.tree.map(lambda x, d: x - step * d, server.params,
                                    mean.normalized_delta))

  return types.FederatedAlgorithm(
      name='fednova', groups=groups, init=init, local_update=local_update,
      server_update=common.server_update_via_mean(server_update_from_mean),
      eval_model=lambda group: module,
      server_update_from_mean=server_update_from_mean)


SPECS = (types.AlgorithmSpec('fednova', common.module_builder(fednova),
                             DEFAULT_HPARAMS, ranges=RANGES, record_dp=True,
                             paper='Wang et al. 2020',
                             arxiv='2007.07481'),)
