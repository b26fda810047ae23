# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""APFL: Adaptive Personalized Federated Learning.

Deng, Kamani and Mahdavi 2020, "Adaptive Personalized Federated Learning",
https://arxiv.org/abs/2003.13461, Algorithm 1.

Every silo trains the global model ``w`` as in FedAvg (its delta is the
upload) and, on the same batches, a personal model ``v`` kept in client
state. The silo predicts with the mixture ``v_bar = alpha v + (1 - alpha)
w``. Per local step, from the previous iterates::

  w     <- w - lr grad f(w)
  v     <- v - lr alpha grad f(v_bar)          (the gradient through v_bar)
  alpha <- clip(alpha - alpha_lr <v - w, grad f(v_bar)>, 0, 1)

``apfl_alpha_lr = 0`` keeps ``alpha`` at its initial value
(``config.apfl.alpha``). A silo is evaluated with ``alpha v + (1 - alpha)
w_global``, the mixture with the latest broadcast.
"""

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from fedhelp_jax import models
from fedhelp_jax import tasks
from fedhelp_jax import traced
from fedhelp_jax import types
from fedhelp_jax.algorithms import common
from fedhelp_jax.algorithms import server_opt

DEFAULT_HPARAMS = {'lr': 0.05, 'momentum': 0.9, 'server_lr': 1.0,
                   'apfl_alpha_lr': 0.0}
RANGES = {'apfl_alpha_lr': common.NON_NEGATIVE}


class ClientState(NamedTuple):
  personal: types.Params  # v, like the model's params, [C, ...].
  model_state: types.PyTree  # Non-param collections, [C, ...].
  alpha: jax.Array  # float32 [C]: the mixing weight of v.


def mix(alpha, personal, shared):
  """``alpha * v + (1 - alpha) * w``, leaf by leaf."""
  return jax.tree.map(lambda v, w: alpha * v + (1.0 - alpha) * w,
                      personal, shared)


def _step(module, task, tx, hparams, data, carry, batch_idx, key):
  """One APFL local step on one batch, every update from the previous
  iterates."""
  del key  # Deterministic models (no dropout).
  w, v, alpha, ms, opt_w, opt_v = carry
  xb, yb = data['x'][batch_idx], data['y'][batch_idx]

  def loss(params, model_state):
    out, new_vars = models.apply_model(
        module, common.model_variables(params, model_state), xb, train=True)
    return jnp.mean(task.loss(out, yb)), common.split_variables(new_vars)[1]

  (loss_w, ms), grad_w = jax.value_and_grad(loss, has_aux=True)(w, ms)
  v_bar = mix(alpha, v, w)
  (loss_v, ms), grad_bar = jax.value_and_grad(loss, has_aux=True)(v_bar, ms)
  grad_v = jax.tree.map(lambda g: alpha * g, grad_bar)
  grad_alpha = sum(jnp.vdot(a - b, g) for a, b, g in zip(
      jax.tree.leaves(v), jax.tree.leaves(w), jax.tree.leaves(grad_bar)))
  up_w, opt_w = tx.update(grad_w, opt_w, w)
  up_v, opt_v = tx.update(grad_v, opt_v, v)
  alpha = jnp.clip(alpha - hparams['apfl_alpha_lr'] * grad_alpha, 0.0, 1.0)
  return ((optax.apply_updates(w, up_w), optax.apply_updates(v, up_v),
           alpha, ms, opt_w, opt_v),
          {'train_loss': loss_v, 'global_train_loss': loss_w})


def apfl(module, task: tasks.Task, local: common.LocalConfig, groups, *,
         alpha: float = 0.25) -> types.FederatedAlgorithm:
  """APFL over one architecture (hparams ``lr``, ``momentum``,
  ``server_lr``, ``apfl_alpha_lr``); ``alpha`` is every silo's initial
  mixing weight."""
  groups = tuple(groups)
  if not 0.0 <= alpha <= 1.0:
    raise ValueError(f'APFL needs alpha in [0, 1], got {alpha}.')

  def init(rng, data):
    params, model_state = common.init_model(
        module, rng, common.sample_x(data[groups[0]]))
    clients = {}
    for g in groups:
      num = data[g]['x'].shape[0]
      clients[g] = ClientState(common.stack(params, num),
                               common.stack(model_state, num),
                               jnp.full((num,), alpha, jnp.float32))
    return server_opt.ServerState(params), clients

  def local_update(silo, hparams, rng):
    w0, state = silo.broadcast, silo.state
    order_key, step_key = jax.random.split(rng)
    idx, active = local.schedule(order_key, silo.data)
    tx = common.make_optimizer(local.optimizer, hparams)

    def step(carry, batch_idx, key):
      return _step(module, task, tx, hparams, silo.data, carry, batch_idx,
                   key)

    carry = (w0, state.personal, state.alpha, state.model_state,
             tx.init(w0), tx.init(state.personal))
    (w, v, alpha_new, ms, _, _), per_step = traced.scan_local_steps(
        step, carry, idx, active, step_key)
    metrics = {k: traced.mean_over_active(x, active)
               for k, x in per_step.items()}
    metrics['alpha'] = alpha_new
    delta = jax.tree.map(jnp.subtract, w0, w)
    return common.silo_output(ClientState(v, ms, alpha_new), delta, metrics)

  def eval_variables(silo):
    state = silo.state
    return common.model_variables(
        mix(state.alpha, state.personal, silo.broadcast), state.model_state)

  return types.FederatedAlgorithm(
      name='apfl', groups=groups, init=init, local_update=local_update,
      server_update=server_opt.sgd_on_mean_delta, eval_variables=eval_variables,
      eval_model=lambda group: module)


@dataclasses.dataclass(frozen=True)
class APFLConfig:
  """``config.apfl``: ``alpha``, every silo's initial mixing weight (the
  paper's experiments use 0.25)."""
  alpha: float = 0.25

  def __post_init__(self):
    if not 0.0 <= float(self.alpha) <= 1.0:
      raise ValueError(f'alpha must be in [0, 1], got {self.alpha!r}.')


def section(config) -> APFLConfig:
  return common.config_section(config, 'apfl', APFLConfig)


def build(config, task, groups):
  module = models.from_config(config.model, task.num_classes)
  return apfl(module, task, common.LocalConfig.from_experiment(config),
              groups, alpha=float(section(config).alpha))


SPECS = (types.AlgorithmSpec('apfl', build, DEFAULT_HPARAMS, ranges=RANGES,
                             section=types.ConfigSection('apfl', section),
                             paper='Deng et al. 2020',
                             arxiv='2003.13461',
                             personalised=('yes (mixture '
                                           '`alpha v + (1 - alpha) w`)')),)
