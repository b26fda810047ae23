# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""Server optimizers: the round's mean delta fed to an optax transformation.

Every FedAvg-style server step is ``params <- optimizer(params, mean delta)``
where the silos' mean delta ``w_global - w_local`` plays the gradient
(Reddi et al. 2021, "Adaptive Federated Optimization",
https://arxiv.org/abs/2003.00295, Algorithm 2):

* ``'sgd'``: ``optax.sgd(server_lr)``; FedAvg is ``server_lr = 1``
  (``p - 1 * delta``, bit-identical to the hand-written step it replaced).
* ``'adam'`` / ``'yogi'`` / ``'adagrad'``: FedAdam, FedYogi, FedAdagrad.

The adaptive ones follow the paper, not optax's ``adam``/``yogi``/
``adagrad``, which differ from it (bias correction; Adagrad's initial
accumulator 0.1 and no momentum): ``m <- b1 m + (1 - b1) d``; ``v`` by the
Adam, Yogi or Adagrad rule from ``v_{-1} = tau^2``; step
``-server_lr * m / (sqrt(v) + tau)``. Written as one optax
``GradientTransformation`` chained with ``optax.scale``, so any optax
transformation (clipping, schedules) composes with it.

Hyperparameters are arrays in ``hparams`` (vmappable in a sweep):
``server_lr`` and, for the adaptive ones, ``server_b1``, ``server_b2``
(unused by Adagrad) and ``server_tau``.
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from fedhelp_jax import traced
from fedhelp_jax import types

SERVER_OPTIMIZERS = ('sgd', 'adam', 'yogi', 'adagrad')

# Reddi et al.'s defaults for the adaptive rules (their Section 5 / App. D).
ADAPTIVE_HPARAMS = {'server_lr': 0.01, 'server_b1': 0.9, 'server_b2': 0.99,
                    'server_tau': 1e-3}


class FedOptState(NamedTuple):
  """First and second moments of the adaptive server rules.

  ``v`` holds ``tau^2`` implicitly until the first step (``count == 0``),
  so the state's initial value does not depend on ``hparams``, which a
  sweep may vary.
  """
  count: jax.Array
  m: types.PyTree
  v: types.PyTree


def scale_by_fedopt(rule: str, b1, b2, tau) -> optax.GradientTransformation:
  """Reddi et al.'s adaptive direction ``m / (sqrt(v) + tau)``.

  Args:
    rule: 'adam', 'yogi' or 'adagrad' (how ``v`` is updated).
    b1: first-moment decay (array or float).
    b2: second-moment decay (Adam, Yogi).
    tau: adaptivity; also ``sqrt(v_{-1})``.
  """
  if rule not in ('adam', 'yogi', 'adagrad'):
    raise ValueError(f'Unknown adaptive rule {rule!r}.')

  def init_fn(params):
    # m and v must be distinct buffers: run_rounds donates the state.
    return FedOptState(count=jnp.zeros((), jnp.int32),
                       m=jax.tree.map(jnp.zeros_like, params),
                       v=jax.tree.map(jnp.zeros_like, params))

  def update_fn(delta, state, params=None):
    del params
    m = jax.tree.map(lambda m, d: b1 * m + (1 - b1) * d, state.m, delta)
    first = state.count == 0
    sq = jax.tree.map(jnp.square, delta)

    def new_v(v, s):
      v = jnp.where(first, jnp.square(tau).astype(v.dtype), v)  # v_{-1}
      if rule == 'adam':
        return b2 * v + (1 - b2) * s
      if rule == 'yogi':
        return v - (1 - b2) * s * jnp.sign(v - s)
      return v + s

    v = jax.tree.map(new_v, state.v, sq)
    direction = jax.tree.map(lambda m, v: m / (jnp.sqrt(v) + tau), m, v)
    return direction, FedOptState(count=state.count + 1, m=m, v=v)

  return optax.GradientTransformation(init_fn, update_fn)


def server_optimizer(name: str,
                     hparams: types.HParams) -> optax.GradientTransformation:
  """The optax transformation of server optimizer ``name``."""
  if name == 'sgd':
    return optax.sgd(hparams['server_lr'])
  if name in ('adam', 'yogi', 'adagrad'):
    return optax.chain(
        scale_by_fedopt(name, hparams['server_b1'], hparams['server_b2'],
                        hparams['server_tau']),
        optax.scale(-hparams['server_lr']))
  raise ValueError(f'Unknown server optimizer {name!r}; expected one of '
                   f'{SERVER_OPTIMIZERS}.')


def init(name: str, params: types.Params) -> Any:
  """The server optimizer state for ``params`` (independent of hparams)."""
  placeholders = {k: jnp.float32(v) for k, v in default_hparams(name).items()}
  return server_optimizer(name, placeholders).init(params)


def step(name: str, params: types.Params, opt_state: Any,
         mean_delta: types.PyTree, hparams: types.HParams):
  """One server step: ``(params, opt_state)`` after applying ``mean_delta``."""
  tx = server_optimizer(name, hparams)
  updates, opt_state = tx.update(mean_delta, opt_state, params)
  return optax.apply_updates(params, updates), opt_state


class ServerState(NamedTuple):
  """The server of a one-global-model algorithm (the FedAvg family, Ditto,
  FedHelp, FML): the same two fields whatever the server optimizer.

  Attributes:
    params: the global model's params.
    opt_state: the server optimizer's optax state; ``()`` for plain SGD,
      which keeps none (FedAvg's server step is stateless).
  """
  params: types.Params
  opt_state: Any = ()


def init_server(name: str, params: types.Params) -> ServerState:
  """The ``ServerState`` of ``params`` under server optimizer ``name``."""
  return ServerState(params, () if name == 'sgd' else init(name, params))


def apply(name: str, server: ServerState, mean_delta: types.PyTree,
          hparams: types.HParams) -> ServerState:
  """``server`` after one step of optimizer ``name`` on ``mean_delta``."""
  stateless = name == 'sgd'
  opt_state = (server_optimizer(name, hparams).init(server.params)
               if stateless else server.opt_state)
  params, opt_state = step(name, server.params, opt_state, mean_delta,
                           hparams)
  return server._replace(params=params,
                         opt_state=() if stateless else opt_state)


def sgd_on_mean_delta(server: ServerState, uploads, weights,
                      hparams: types.HParams) -> ServerState:
  """The FedAvg-convention server step (a ``ServerUpdateFn``): ``server``
  moved by ``server_lr`` times the weighted mean of every group's delta
  uploads."""
  return apply('sgd', server, traced.weighted_mean_groups(uploads, weights),
               hparams)


def sgd_step(params: types.Params, mean_delta: types.PyTree,
             hparams: types.HParams) -> types.Params:
  """``params - server_lr * mean_delta`` (the stateless FedAvg step)."""
  return apply('sgd', ServerState(params), mean_delta, hparams).params


def default_hparams(name: str) -> dict[str, float]:
  """Server hyperparameters of ``name`` (FedAvg's ``server_lr = 1``)."""
  if name == 'sgd':
    return {'server_lr': 1.0}
  return dict(ADAPTIVE_HPARAMS)
