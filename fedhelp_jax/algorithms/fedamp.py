# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""FedAMP: attentive message passing between similar silos.

Huang et al. 2021, "Personalized Cross-Silo Federated Learning on Non-IID
Data", https://arxiv.org/abs/2007.03797, Algorithm 1 with the attention
function ``A(x) = 1 - exp(-x / sigma)``.

Every silo keeps its own model ``w_i`` and uploads it whole. The server
builds one cloud model per silo from every real silo's model::

  xi_ij = alpha * exp(-||w_i - w_j||^2 / sigma) / sigma   (j != i)
  xi_ii = 1 - sum_{j != i} xi_ij
  u_i   = sum_j xi_ij w_j

so silos whose models are close pass more of themselves to each other (the
weights are ``alpha A'(||w_i - w_j||^2)``). Silo ``i`` then trains its own
``w_i`` on its task loss plus ``lam/2 ||w_i - u_i||^2`` and is evaluated
with ``w_i``. The weights form a convex combination while
``alpha (N - 1) / sigma <= 1`` (the defaults, 0.05 and 1, keep it so for
up to 21 silos at any distance); larger values are the paper's formula as
written (a negative self-weight), not clipped here.

Every real silo takes part in every round (the messages need every
silo's latest model), so client sampling is refused; padded (dummy) silos,
weight 0, send and receive nothing.
"""

from typing import NamedTuple

import jax
from jax.flatten_util import ravel_pytree
import jax.numpy as jnp

from fedhelp_jax import types
from fedhelp_jax.algorithms import common

DEFAULT_HPARAMS = {'lr': 0.05, 'momentum': 0.9, 'fedamp_alpha': 0.05,
                   'fedamp_sigma': 1.0, 'fedamp_lam': 1.0}
RANGES = {'fedamp_alpha': common.NON_NEGATIVE,
          'fedamp_sigma': common.POSITIVE,
          'fedamp_lam': common.NON_NEGATIVE}


class FedAMPServer(NamedTuple):
  params: types.Params  # The silos' mean model (a summary; not trained).
  cloud: dict[str, types.Params]  # u_i per group, leaves [C_g, ...].


def message_weights(flat, real, alpha, sigma):
  """``xi [N, N]`` from the silos' flattened models ``flat [N, P]``;
  ``real [N]`` masks the padded silos out (their rows and columns)."""
  sq = jnp.sum(flat * flat, axis=1)
  # ||w_i - w_j||^2 from the Gram matrix: no [N, N, P] intermediate.
  dist = jnp.maximum(sq[:, None] + sq[None, :] - 2.0 * flat @ flat.T, 0.0)
  pair = real[:, None] * real[None, :] * (1.0 - jnp.eye(flat.shape[0]))
  xi = pair * alpha * jnp.exp(-dist / sigma) / sigma
  return xi + jnp.diag(1.0 - jnp.sum(xi, axis=1))


def fedamp(module, task, local: common.LocalConfig,
           groups) -> types.FederatedAlgorithm:
  """FedAMP; hparams ``lr``, ``momentum``, ``fedamp_alpha``,
  ``fedamp_sigma``, ``fedamp_lam``."""
  groups = tuple(groups)

  def init(rng, data):
    params, model_state = common.init_model(
        module, rng, common.sample_x(data[groups[0]]))
    clients, cloud = {}, {}
    for g in groups:
      num = data[g]['x'].shape[0]
      clients[g] = common.SiloModel(common.stack(params, num),
                                    common.stack(model_state, num))
      cloud[g] = common.stack(params, num)
    return FedAMPServer(params, cloud), clients

  def download(server):
    return types.Download(broadcast=server.params, personal=server.cloud)

  def local_update(silo, hparams, rng):
    cloud = silo.personal

    def prox(p):
      diff = jax.tree.map(jnp.subtract, p, cloud)
      return 0.5 * hparams['fedamp_lam'] * common.tree_sq_norm(diff)

    params, model_state, metrics = common.supervised_train(
        module, task, local, silo.state.params, silo.state.model_state,
        silo.data, hparams, rng, extra_loss=prox)
    return types.SiloOutput(common.SiloModel(params, model_state), params,
                            metrics['train_loss'])

  def server_update(server, uploads, weights, hparams):
    # Every silo's model as one [N, P] matrix, groups in order.
    _, unravel = ravel_pytree(server.params)
    flat = jnp.concatenate(
        [jax.vmap(lambda t: ravel_pytree(t)[0])(uploads[g]) for g in groups])
    real = jnp.concatenate([(weights[g] > 0).astype(flat.dtype)
                            for g in groups])
    xi = message_weights(flat, real, hparams['fedamp_alpha'],
                         hparams['fedamp_sigma'])
    # A padded silo's row is the identity: it keeps its own (unused) model.
    cloud_flat = xi @ flat
    mean = jnp.sum(real[:, None] * flat, 0) / jnp.maximum(jnp.sum(real), 1.0)
    cloud, start = {}, 0
    for g in groups:
      num = jax.tree.leaves(uploads[g])[0].shape[0]
      cloud[g] = jax.vmap(unravel)(cloud_flat[start:start + num])
      start += num
    return FedAMPServer(unravel(mean), cloud)

  return types.FederatedAlgorithm(
      name='fedamp', groups=groups, init=init, local_update=local_update,
      server_update=server_update, download=download,
      eval_variables=common.own_model_eval_variables,
      eval_model=lambda group: module)


SPECS = (types.AlgorithmSpec(
    'fedamp', common.module_builder(fedamp), DEFAULT_HPARAMS, ranges=RANGES,
    no_sampling='FedAMP builds every silo\'s cloud model from every silo\'s '
    'latest model each round',
    paper='Huang et al. 2021',
    arxiv='2007.03797',
    personalised='yes (own model, attentive messages)'),)
