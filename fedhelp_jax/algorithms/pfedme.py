# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""pFedMe: personalized FL with Moreau envelopes.

Dinh, Tran and Nguyen 2020, "Personalized Federated Learning with Moreau
Envelopes", https://arxiv.org/abs/2006.08848, Algorithm 1.

Per local step on a batch ``D`` the silo first solves its personal problem
approximately, ``inner_steps`` gradient steps from ``theta = w``::

  theta <- theta - personal_lr grad_theta [f(theta; D) + lam/2 ||theta - w||^2]

and then moves its copy of the global model toward the result::

  w <- w - lr lam (w - theta)

It uploads ``w_global - w``; the server's ``server_lr`` is the paper's
``beta`` (``w_global <- (1 - beta) w_global + beta mean_i w_i``). A silo
is evaluated with its latest personal ``theta``. Local steps are plain SGD
(the paper's), so the shared recipe's momentum does not apply.
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

DEFAULT_HPARAMS = {'lr': 0.05, 'server_lr': 1.0, 'pfedme_lam': 15.0,
                   'pfedme_personal_lr': 0.01}
RANGES = {'pfedme_lam': common.NON_NEGATIVE,
          'pfedme_personal_lr': common.POSITIVE}


class ClientState(NamedTuple):
  personal: types.Params  # theta, the silo's latest personal model, [C, ...].
  model_state: types.PyTree  # Non-param collections, [C, ...].


def pfedme(module, task: tasks.Task, local: common.LocalConfig, groups, *,
           inner_steps: int = 5) -> types.FederatedAlgorithm:
  """pFedMe (hparams ``lr``, ``server_lr`` (beta), ``pfedme_lam``,
  ``pfedme_personal_lr``); ``inner_steps`` solve the personal problem."""
  groups = tuple(groups)
  if inner_steps < 1:
    raise ValueError(f'pFedMe needs inner_steps >= 1, got {inner_steps}.')

  def init(rng, data):
    params, model_state = common.init_model(
        module, rng, common.sample_x(data[groups[0]]))
    clients = {g: ClientState(common.stack(params, data[g]['x'].shape[0]),
                              common.stack(model_state, data[g]['x'].shape[0]))
               for g in groups}
    return server_opt.ServerState(params), clients

  def local_update(silo, hparams, rng):
    lam = hparams['pfedme_lam']
    data = silo.data

    def step(carry, batch_idx, key):
      del key  # Deterministic models (no dropout).
      w, _, ms = carry
      xb, yb = data['x'][batch_idx], data['y'][batch_idx]

      def personal_loss(theta, model_state):
        out, new_vars = models.apply_model(
            module, common.model_variables(theta, model_state), xb,
            train=True)
        task_loss = jnp.mean(task.loss(out, yb))
        return task_loss + 0.5 * lam * common.tree_sq_norm(
            jax.tree.map(jnp.subtract, theta, w)), (
                task_loss, common.split_variables(new_vars)[1])

      def inner(c, _):
        theta, model_state = c
        grads, (task_loss, model_state) = jax.grad(
            personal_loss, has_aux=True)(theta, model_state)
        theta = jax.tree.map(
            lambda t, g: t - hparams['pfedme_personal_lr'] * g, theta, grads)
        return (theta, model_state), task_loss

      (theta, ms), losses = jax.lax.scan(inner, (w, ms), None,
                                         length=inner_steps)
      w = jax.tree.map(lambda a, t: a - hparams['lr'] * lam * (a - t), w,
                       theta)
      return (w, theta, ms), losses[-1]

    order_key, step_key = jax.random.split(rng)
    idx, active = local.schedule(order_key, data)
    carry = (silo.broadcast, silo.state.personal, silo.state.model_state)
    (w, theta, ms), losses = traced.scan_local_steps(step, carry, idx,
                                                     active, step_key)
    delta = jax.tree.map(jnp.subtract, silo.broadcast, w)
    return types.SiloOutput(ClientState(theta, ms), delta,
                            traced.mean_over_active(losses, active))


  def eval_variables(silo):
    return common.model_variables(silo.state.personal,
                                  silo.state.model_state)

  return types.FederatedAlgorithm(
      name='pfedme', groups=groups, init=init, local_update=local_update,
      server_update=server_opt.sgd_on_mean_delta, eval_variables=eval_variables,
      eval_model=lambda group: module)


@dataclasses.dataclass(frozen=True)
class PFedMeConfig:
  """``config.pfedme``: ``inner_steps``, gradient steps on the personal
  problem per local step (the paper's K, 5)."""
  inner_steps: int = 5

  def __post_init__(self):
    common.require_int('inner_steps', self.inner_steps, 1)


def section(config) -> PFedMeConfig:
  return common.config_section(config, 'pfedme', PFedMeConfig)


def build(config, task, groups):
  module = models.from_config(config.model, task.num_classes)
  return pfedme(module, task, common.LocalConfig.from_experiment(config),
                groups, inner_steps=section(config).inner_steps)


SPECS = (types.AlgorithmSpec('pfedme', build, DEFAULT_HPARAMS, ranges=RANGES,
                             section=types.ConfigSection('pfedme', section),
                             paper='Dinh et al. 2020',
                             arxiv='2006.08848',
                             personalised=('yes (Moreau-envelope personal '
                                           'model)')),)
