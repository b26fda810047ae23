# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""SCAFFOLD: control variates against client drift.

Karimireddy et al. 2020, "SCAFFOLD: Stochastic Controlled Averaging for
Federated Learning", https://arxiv.org/abs/1910.06378, Algorithm 1 with
option II for the client control variate.

Server state: the global model ``x`` and control ``c``; each silo keeps its
own control ``c_i`` (client state, zero at start). One round, for the silos
that take part (all, or those drawn by client sampling):

* every local step follows ``g(y) - c_i + c``: here the term
  ``<y, c - c_i>`` is added to the batch loss, whose gradient is exactly
  that correction (so any model and task work unchanged);
* after ``K`` steps of learning rate ``lr``:
  ``c_i+ = c_i - c + (x - y) / (K lr)``, and the silo uploads
  ``x - y`` and ``c_i+ - c_i``;
* ``x <- x - server_lr * mean(x - y)`` (the weighted mean of the engine)
  and ``c <- c + (1 / N) * sum_i (c_i+ - c_i)`` over the ``N`` real silos
  of the federation: silos not drawn this round contribute zero.

The control update assumes plain local SGD (the paper's setting): use
``local.optimizer='sgd'`` with ``momentum`` 0, the default here.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from fedhelp_jax import tasks
from fedhelp_jax import traced
from fedhelp_jax import types
from fedhelp_jax.algorithms import common
from fedhelp_jax.algorithms import server_opt

DEFAULT_HPARAMS = {'lr': 0.05, 'momentum': 0.0, 'server_lr': 1.0}
# The control-variate update c_i+ = c_i - c + (x - y_i) / (K lr) assumes
# plain local SGD steps.
RANGES = {'momentum': common.HParamRange(
    low=0.0, high=0.0, high_open=False, example=0.0,
    reason="SCAFFOLD's control update assumes plain local SGD")}


class ServerState(NamedTuple):
  """Global model ``x``, server control ``c`` and the real silo count N."""
  params: types.Params
  control: types.Params
  num_silos: jax.Array


class ClientState(NamedTuple):
  """One silo's model state (e.g. batch statistics) and control ``c_i``."""
  model_state: types.PyTree
  control: types.Params


def _sub(a, b):
  return jax.tree.map(jnp.subtract, a, b)


def scaffold(module, task: tasks.Task, local: common.LocalConfig,
             groups) -> types.FederatedAlgorithm:
  """SCAFFOLD over one shared model (hparams ``lr``, ``momentum``,
  ``server_lr``)."""
  groups = tuple(groups)

  def init(rng, data):
    params, model_state = common.init_model(
        module, rng, common.sample_x(data[groups[0]]))
    zeros = jax.tree.map(jnp.zeros_like, params)
    clients = {g: ClientState(
        model_state=common.stack(model_state, data[g]['x'].shape[0]),
        control=common.stack(zeros, data[g]['x'].shape[0])) for g in groups}
    # N counts real silos only (dummy silos padded for a mesh have n = 0).
    num_silos = sum(jnp.sum(data[g]['n'] > 0) for g in groups)
    return ServerState(params, jax.tree.map(jnp.zeros_like, params),
                       jnp.asarray(num_silos, jnp.float32)), clients

  def download(server):
    return types.Download(broadcast={'params': server.params,
                                     'control': server.control})

  def local_update(silo, hparams, rng):
    x, c = silo.broadcast['params'], silo.broadcast['control']
    c_i = silo.state.control
    correction = _sub(c, c_i)

    def drift_correction(p):
      return sum(jnp.vdot(a, b) for a, b in zip(
          jax.tree.leaves(p), jax.tree.leaves(correction)))

    y, model_state, metrics = common.supervised_train(
        module, task, local, x, silo.state.model_state, silo.data, hparams,
        rng, extra_loss=drift_correction)
    delta = _sub(x, y)
    scale = 1.0 / (jnp.maximum(metrics['local_steps'], 1.0) * hparams['lr'])
    new_c_i = jax.tree.map(lambda ci, cc, d: ci - cc + scale * d,
                           c_i, c, delta)
    upload = {'delta': delta, 'control': _sub(new_c_i, c_i)}
    return common.silo_output(ClientState(model_state, new_c_i), upload,
                              metrics)

  def server_update(server, uploads, weights, hparams):
    mean_delta = traced.weighted_mean_groups(
        {g: u['delta'] for g, u in uploads.items()}, weights)
    params = server_opt.sgd_step(server.params, mean_delta, hparams)
    # Sum of the control changes of the silos that took part (weight > 0:
    # dummy silos and updates dropped by nonfinite='skip' count zero).
    summed = [jax.tree.map(
        lambda d, g=g: jnp.tensordot((weights[g] > 0).astype(d.dtype), d,
                                     axes=1), uploads[g]['control'])
              for g in sorted(uploads)]
    control = jax.tree.map(
        lambda cc, *ds: cc + sum(ds) / server.num_silos, server.control,
        *summed)
    return server._replace(params=params, control=control)

  def eval_variables(silo):
    return common.model_variables(silo.broadcast['params'],
                                  silo.state.model_state)

  return types.FederatedAlgorithm(
      name='scaffold', groups=groups, init=init, download=download,
      local_update=local_update, server_update=server_update,
      eval_variables=eval_variables, eval_model=lambda group: module)


SPECS = (types.AlgorithmSpec('scaffold', common.module_builder(scaffold),
                             DEFAULT_HPARAMS, ranges=RANGES,
                             recipe={'momentum': 0.0}, record_dp=True,
                             paper='Karimireddy et al. 2020',
                             arxiv='1910.06378'),)
