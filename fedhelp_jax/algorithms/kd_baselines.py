# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""KD baselines for FedHelp, and a centralized upper bound, on the engine.

* FedDF: Lin et al. 2020, "Ensemble Distillation for Robust Model Fusion in
  Federated Learning", https://arxiv.org/abs/2006.07242. FedAvg, then the
  server distills the averaged model toward the ENSEMBLE of the uploaded
  client models on an unlabeled public set (the server sees public inputs
  only, never private data or labels). What differs from FedAvg: the
  server-side distillation steps after averaging.
* FML: Shen et al. 2020, "Federated Mutual Learning",
  https://arxiv.org/abs/2006.16765. Each silo keeps a private local model
  (never uploaded) and trains it together with a copy of the shared "meme"
  model by deep mutual learning, a SYMMETRIC KD on the same batch:
  ``local: alpha CE + (1 - alpha) KL(p_meme || p_local)`` and ``meme: beta CE
  + (1 - beta) KL(p_local || p_meme)``. Only the meme model is averaged. What
  differs from FedAvg: the private model and the two-way KD (no foundation
  model, no asymmetry); the closest relative of FedHelp's step 3. Private
  models here follow the silo's compute: the large architecture on large
  silos, the small one on small silos. Silos are evaluated with their
  private model (FML's personalised output) unless configured otherwise.
* Central: one model trained on the pooled training data of all silos (the
  server holds the union in its state and takes the local steps; silos only
  evaluate), scored on every silo's own test set. An upper bound, not a
  federated method.

'FedAvg + FM soft labels' (``fedavg_fm``) lives in ``fedhelp.py`` since it is
FedHelp with the private large models and the dual KD switched off.
"""

import dataclasses
import functools
from typing import Any, NamedTuple, Optional

import jax
from jax import lax
import jax.numpy as jnp
import optax

from fedhelp_jax import losses
from fedhelp_jax import models
from fedhelp_jax import tasks
from fedhelp_jax import traced
from fedhelp_jax import types
from fedhelp_jax.algorithms import common
from fedhelp_jax.algorithms import fm_prepare
from fedhelp_jax.algorithms import server_opt
from fedhelp_jax.algorithms import fedavg


class FedDFServer(NamedTuple):
  """FedDF's server: the global model, the server's public inputs and the
  key of its distillation batches."""
  params: Any
  public_x: jax.Array  # [N_pub, ...] unlabeled inputs.
  key: jax.Array
  round: jax.Array  # int32 []: folds the key per round.


class CentralServer(NamedTuple):
  """The pooled ('central') reference: one model trained on every silo's
  examples, with its optimizer state and the pooled data."""
  params: Any
  model_state: Any
  opt: Any  # The local optimizer's state; persists across rounds.
  x: jax.Array  # [N, ...] pooled inputs (padded).
  y: jax.Array  # [N, ...] pooled labels.
  n: jax.Array  # int32 []: real pooled examples.
  key: jax.Array
  round: jax.Array  # int32 [].

def _apply(module, params, state, x, *, train):
  out, new_vars = models.apply_model(
      module, common.model_variables(params, state), x, train=train)
  return out, common.split_variables(new_vars)[1]


def _check_no_batch_stats(model_state, who):
  if jax.tree.leaves(model_state):
    raise ValueError(f'{who} runs client models on the server, which has no '
                     "client BatchNorm statistics; use norm='group' or "
                     "'none'.")


# ---------------------------------------------------------------------------
# FedDF.
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FedDFConfig:
  """Static FedDF settings.

  Attributes:
    server_steps: distillation steps per round on the server.
    server_batch_size: public examples per distillation step.
  """
  server_steps: int = 20
  server_batch_size: int = 64


def feddf(module, task: tasks.Task, local: common.LocalConfig, groups,
          config: FedDFConfig = FedDFConfig()) -> types.FederatedAlgorithm:
  """FedDF with one shared architecture.

  Hyperparameters (arrays): ``lr``, ``momentum``, ``server_lr`` (as FedAvg),
  ``server_kd_lr`` (Adam on the server), ``temperature``.

  The server's public inputs come from ``data[g]['server_public_x']`` ``[C,
  P, ...]`` (identical rows; placed by ``prepare_server_public``) and are
  copied into the server state at init, so ``server_update`` keeps the
  engine's signature and never sees labels or private data.
  """
  base = fedavg.fedavg(module, task, local, groups)
  groups = tuple(groups)

  def init_fn(rng, data):
    server, clients = base.init(rng, data)
    holder = [g for g in groups if 'server_public_x' in data[g]]
    if not holder:
      raise ValueError("FedDF needs data[g]['server_public_x'] (the server's "
                       'unlabeled public set); run its prepare hook.')
    _, model_state = common.init_model(module, rng,
                                       common.sample_x(data[groups[0]]))
    _check_no_batch_stats(model_state, 'FedDF')
    server = FedDFServer(params=server.params,
                         public_x=data[holder[0]]['server_public_x'][0],
                         key=jax.random.fold_in(rng, 17),
                         round=jnp.zeros((), jnp.int32))
    return server, clients

  def logits(params, x):
    return _apply(module, params, {}, x, train=False)[0]

  def server_update(server, uploads, weights, hparams):
    avg_delta = traced.weighted_mean_groups(uploads, weights)
    params = server_opt.sgd_step(server.params, avg_delta, hparams)
    public_x = server.public_x
    total = jnp.maximum(sum(jnp.sum(w) for w in weights.values()), 1e-12)

    # Ensemble teacher: weighted mean of the client models' logits on the
    # whole public set, computed once per round (a scan over silos keeps one
    # client model in memory at a time).
    def add_client(acc, xs):
      delta, w = xs
      client = jax.tree.map(lambda p, d: p - d, server.params, delta)
      return acc + w * logits(client, public_x), None
    ens = jnp.zeros_like(logits(params, public_x))
    for g in sorted(uploads):
      ens, _ = lax.scan(add_client, ens, (uploads[g], weights[g]))
    teacher = ens / total

    tx = optax.adam(hparams['server_kd_lr'])
    key = jax.random.fold_in(server.key, server.round)
    num = public_x.shape[0]
    batch = min(config.server_batch_size, num)

    def kd_step(carry, k):
      p, opt = carry
      idx = jax.random.permutation(k, num)[:batch]

      def loss_fn(q):
        return jnp.mean(losses.kd_kl(logits(q, public_x[idx]), teacher[idx],
                                     temperature=hparams['temperature']))
      loss, grads = jax.value_and_grad(loss_fn)(p)
      updates, opt = tx.update(grads, opt, p)
      return (optax.apply_updates(p, updates), opt), loss
    (params, _), _ = lax.scan(kd_step, (params, tx.init(params)),
                              jax.random.split(key, config.server_steps))
    return server._replace(params=params, round=server.round + 1)

  # The distillation step needs more than the mean delta: no streaming.
  return base._replace(name='feddf', init=init_fn,
                       server_update=server_update,
                       server_update_from_mean=None)


def prepare_server_public(config, fed, raw, info):
  """Registry hook: the server's unlabeled public inputs (FedDF).

  The public set is FedHelp's (``fm_prepare.public_and_proxy_data``), cut to
  its first ``config.feddf.num_public`` examples, placed as
  ``fed[g]['server_public_x']`` on the first group with one identical row
  per silo (the engine maps every data leaf over silos).
  """
  num = (config.get('feddf', {}) or {}).get('num_public')
  public_x = fm_prepare.public_and_proxy_data(config, fed, raw)['public_x']
  public_x = public_x[:num] if num else public_x
  if 'train_x' in raw:  # An outside public set may be grey for RGB silos.
    public_x = fm_prepare.match_channels(public_x, raw['train_x'].shape[-1])
  first = next(iter(fed))  # Any one group holds it (see above).
  placed = fm_prepare.place_public(fed, first, public_x.astype('float32'))
  placed[first]['server_public_x'] = placed[first].pop('public_x')
  info['server_public'] = {'num_public': int(public_x.shape[0])}
  return placed


# ---------------------------------------------------------------------------
# FML.
# ---------------------------------------------------------------------------


class FMLSiloState(NamedTuple):
  """What an FML silo keeps between rounds (placed: leaves ``[C, ...]``).

  Attributes:
    meme_model_state: the shared ("meme") model's non-param collections;
      its params are the server's broadcast.
    private_params: the silo's private model (never uploaded).
    private_model_state: its non-param collections.
  """
  meme_model_state: Any
  private_params: Any
  private_model_state: Any


def _mutual_step(shared_module, private, task, tx, hparams, data, carry,
                 batch_idx, key):
  """One FML local step: both models on one batch, each distilling from the
  other's current (stop-gradient) outputs."""
  del key
  s_p, s_ms, p_p, p_ms, opt_s, opt_p = carry
  xb, yb = data['x'][batch_idx], data['y'][batch_idx]
  temp = hparams['temperature']
  # Both models read each other's CURRENT outputs (simultaneous update).
  s_ref = lax.stop_gradient(_apply(shared_module, s_p, s_ms, xb,
                                   train=False)[0])
  p_ref = lax.stop_gradient(_apply(private, p_p, p_ms, xb, train=False)[0])

  def mutual_loss(module, model_state, ref, weight, q):
    out, ms = _apply(module, q, model_state, xb, train=True)
    ce = jnp.mean(task.loss(out, yb))
    kd = jnp.mean(losses.kd_kl(out, ref, temperature=temp))
    return weight * ce + (1 - weight) * kd, (ce, ms)

  shared_loss = functools.partial(mutual_loss, shared_module, s_ms, p_ref,
                                  hparams['beta'])
  private_loss = functools.partial(mutual_loss, private, p_ms, s_ref,
                                   hparams['alpha'])
  (_, (ce_s, s_ms)), g_s = jax.value_and_grad(shared_loss, has_aux=True)(s_p)
  (_, (ce_p, p_ms)), g_p = jax.value_and_grad(private_loss, has_aux=True)(p_p)
  u_s, opt_s = tx.update(g_s, opt_s, s_p)
  u_p, opt_p = tx.update(g_p, opt_p, p_p)
  return (optax.apply_updates(s_p, u_s), s_ms,
          optax.apply_updates(p_p, u_p), p_ms, opt_s, opt_p), {
              'train_loss': ce_s, 'private_loss': ce_p}


def fml(shared_module, private_modules, task: tasks.Task,
        local: common.LocalConfig, groups, *,
        eval_private: bool = True) -> types.FederatedAlgorithm:
  """Federated Mutual Learning.

  Hyperparameters (arrays): ``lr`` (both models), ``momentum``,
  ``server_lr``, ``alpha`` (CE weight of the private model), ``beta`` (CE
  weight of the shared model), ``temperature``.

  Args:
    shared_module: the shared ("meme") model.
    private_modules: group name -> the private model of that group's silos.
    task: the task.
    local: local-training config.
    groups: silo groups.
    eval_private: evaluate silos with their private model (else the shared).
  """
  groups = tuple(groups)

  def init_fn(rng, data):
    s_key, p_key = jax.random.split(rng)
    params, s_state = common.init_model(shared_module, s_key,
                                        common.sample_x(data[groups[0]]))
    clients = {}
    for gi, g in enumerate(groups):
      num = data[g]['x'].shape[0]
      inits = [common.init_model(private_modules[g],
                                 jax.random.fold_in(p_key, 1000 * gi + c),
                                 common.sample_x(data[g]))
               for c in range(num)]
      clients[g] = FMLSiloState(
          meme_model_state=common.stack(s_state, num),
          private_params=jax.tree.map(lambda *xs: jnp.stack(xs),
                                      *[p for p, _ in inits]),
          private_model_state=jax.tree.map(lambda *xs: jnp.stack(xs),
                                           *[s for _, s in inits]))
    return server_opt.ServerState(params), clients

  def local_update(silo, hparams, rng):
    private = private_modules[silo.group]
    broadcast, client, data = silo.broadcast, silo.state, silo.data
    order_key, step_key = jax.random.split(rng)
    idx, active = local.schedule(order_key, data)
    tx = common.make_optimizer(local.optimizer, hparams)
    step = functools.partial(_mutual_step, shared_module, private, task,
                             tx, hparams, data)
    carry = (broadcast, client.meme_model_state, client.private_params,
             client.private_model_state, tx.init(broadcast),
             tx.init(client.private_params))
    (s_p, s_ms, p_p, p_ms, _, _), step_metrics = traced.scan_local_steps(
        step, carry, idx, active, step_key)
    metrics = {k: traced.mean_over_active(v, active)
               for k, v in step_metrics.items()}
    delta = jax.tree.map(lambda a, b: a - b, broadcast, s_p)
    return common.silo_output(FMLSiloState(s_ms, p_p, p_ms), delta,
                              metrics)

  def eval_variables(silo):
    if eval_private:
      return common.model_variables(silo.state.private_params,
                                    silo.state.private_model_state)
    return common.model_variables(silo.broadcast,
                                  silo.state.meme_model_state)

  return types.FederatedAlgorithm(
      name='fml', groups=groups, init=init_fn, local_update=local_update,
      server_update=server_opt.sgd_on_mean_delta,
      eval_variables=eval_variables,
      eval_model=lambda g: private_modules[g] if eval_private
      else shared_module)


# ---------------------------------------------------------------------------
# Central upper bound.
# ---------------------------------------------------------------------------


def _pool(data, groups):
  """Pools every silo's valid rows, valid rows first (traceable).

  Returns:
    ``(x [M, ...], y [M, ...], n [])`` where ``M = sum_g C_g N_g`` and the
    first ``n`` rows are the real examples.
  """
  xs, ys, valid = [], [], []
  for g in groups:
    d = data[g]
    c, n_pad = d['x'].shape[:2]
    xs.append(d['x'].reshape((c * n_pad,) + d['x'].shape[2:]))
    ys.append(d['y'].reshape((c * n_pad,) + d['y'].shape[2:]))
    valid.append((jnp.arange(n_pad)[None, :] < d['n'][:, None]).reshape(-1))
  x, y, valid = (jnp.concatenate(xs), jnp.concatenate(ys),
                 jnp.concatenate(valid))
  order = jnp.argsort(~valid, stable=True)
  return x[order], y[order], jnp.sum(valid).astype(jnp.int32)


def central(module, task: tasks.Task, local: common.LocalConfig, groups, *,
            steps_per_round: Optional[int] = None
            ) -> types.FederatedAlgorithm:
  """One model trained on the pooled training data of all silos.

  The server state holds the union of the silos' training sets (built at
  init) and, each round, takes ``steps_per_round`` optimizer steps on it
  (default: as many steps as all silos take together in one FedAvg round,
  i.e. ``local_steps * C_total``, or ``local_epochs`` epochs over the pool).
  The optimizer state persists across rounds. Silos do nothing but evaluate
  the central model on their own test sets.

  Hyperparameters (arrays): ``lr``, ``momentum``.
  """
  groups = tuple(groups)

  def init_fn(rng, data):
    params, model_state = common.init_model(module, rng,
                                            common.sample_x(data[groups[0]]))
    x, y, n = _pool(data, groups)
    clients = {g: {} for g in groups}
    # The optimizer state's structure does not depend on hparam values, so
    # placeholders build it here; server_update steps it with the real ones.
    opt = common.make_optimizer(local.optimizer, {
        'lr': jnp.zeros(()), 'momentum': jnp.zeros(())}).init(params)
    server = CentralServer(params=params, model_state=model_state, opt=opt,
                           x=x, y=y, n=n, key=jax.random.fold_in(rng, 23),
                           round=jnp.zeros((), jnp.int32))
    return server, clients

  def download(server):
    return types.Download(broadcast={'params': server.params,
                                     'model_state': server.model_state})

  def local_update(silo, hparams, rng):
    del hparams, rng  # The server trains; silos only hold their data.
    return types.SiloOutput(silo.state, {}, jnp.zeros(()))

  def server_update(server, uploads, weights, hparams):
    del uploads
    total_silos = sum(int(w.shape[0]) for w in weights.values())
    if steps_per_round is not None:
      steps = {'local_steps': int(steps_per_round)}
    elif local.local_steps is not None:
      steps = {'local_steps': local.local_steps * total_silos}
    else:
      steps = {'local_epochs': local.local_epochs}
    key = jax.random.fold_in(server.key, server.round)
    order_key, step_key = jax.random.split(key)
    idx, active = traced.local_schedule(
        order_key, server.n, server.x.shape[0],
        batch_size=local.batch_size, **steps)
    tx = common.make_optimizer(local.optimizer, hparams)

    def step(carry, batch_idx, k):
      del k
      p, ms, opt = carry

      def loss_fn(q):
        out, new_ms = _apply(module, q, ms, server.x[batch_idx],
                             train=True)
        return jnp.mean(task.loss(out, server.y[batch_idx])), new_ms
      (_, ms), grads = jax.value_and_grad(loss_fn, has_aux=True)(p)
      updates, opt = tx.update(grads, opt, p)
      return (optax.apply_updates(p, updates), ms, opt), ()

    (params, ms, opt), _ = traced.scan_local_steps(
        step, (server.params, server.model_state, server.opt), idx, active,
        step_key)
    return server._replace(params=params, model_state=ms, opt=opt,
                           round=server.round + 1)

  def eval_variables(silo):
    return common.model_variables(silo.broadcast['params'],
                                  silo.broadcast['model_state'])

  return types.FederatedAlgorithm(
      name='central', groups=groups, init=init_fn, download=download,
      local_update=local_update, server_update=server_update,
      eval_variables=eval_variables, eval_model=lambda g: module)


# ---------------------------------------------------------------------------
# Builders, defaults and the registry's specs (``SPECS``, at the bottom).
# ---------------------------------------------------------------------------


def build_feddf(config, task, groups):
  """FedDF: ``config.feddf`` (``FedDFConfig``, plus ``num_public``, read
  by ``prepare_server_public``)."""
  module = models.from_config(config.model, task.num_classes)
  local = common.LocalConfig.from_experiment(config)
  return feddf(module, task, local, groups, common.config_section(
      config, 'feddf', FedDFConfig, extra=('num_public',)))


@dataclasses.dataclass(frozen=True)
class FMLConfig:
  """``config.fml``: ``eval_private`` scores each silo with its private
  model (False: with the shared one)."""
  eval_private: bool = True


@dataclasses.dataclass(frozen=True)
class CentralConfig:
  """``config.central``: ``model`` 'small' (``config.model``) or 'large'
  (``config.large_model``); ``steps_per_round`` (default: the local
  schedule's steps summed over silos)."""
  model: str = 'small'
  steps_per_round: Optional[int] = None

  def __post_init__(self):
    if self.model not in ('small', 'large'):
      raise ValueError(f"model must be 'small' or 'large', got "
                       f'{self.model!r}.')


def build_fml(config, task, groups):
  """FML: private model = ``config.large_model`` on large silos and
  ``config.model`` on small silos; ``config.fml.eval_private`` (True)."""
  sec = common.config_section(config, 'fml', FMLConfig)
  shared = models.from_config(config.model, task.num_classes)
  large = models.from_config(config.get('large_model') or config.model,
                                 task.num_classes)
  private = {g: large if g == 'large' else shared for g in groups}
  local = common.LocalConfig.from_experiment(config)
  return fml(shared, private, task, local, groups,
             eval_private=bool(sec.eval_private))


def build_central(config, task, groups):
  """Central: ``config.central.model`` 'small' (``config.model``, default)
  or 'large' (``config.large_model``); ``config.central.steps_per_round``."""
  sec = common.config_section(config, 'central', CentralConfig)
  model_cfg = (config.get('large_model') or config.model) \
      if sec.model == 'large' else config.model
  module = models.from_config(model_cfg, task.num_classes)
  local = common.LocalConfig.from_experiment(config)
  return central(module, task, local, groups,
                 steps_per_round=sec.steps_per_round)


def default_hparams(name: str) -> dict[str, float]:
  base = {'lr': 0.05, 'momentum': 0.9, 'server_lr': 1.0}
  if name == 'feddf':
    base.update({'server_kd_lr': 1e-3, 'temperature': 1.0})
  elif name == 'fml':
    base.update({'alpha': 0.5, 'beta': 0.5, 'temperature': 1.0})
  return base


SPECS = (
    types.AlgorithmSpec('feddf', build_feddf, default_hparams('feddf'),
                        prepare=prepare_server_public, reads_public=True,
                        ranges={'server_kd_lr': common.POSITIVE},
                        section=types.ConfigSection(
                            'feddf', lambda c: common.config_section(
                                c, 'feddf', FedDFConfig,
                                extra=('num_public',))),
                                paper='Lin et al. 2020',
                                arxiv='2006.07242'),
    types.AlgorithmSpec('fml', build_fml, default_hparams('fml'),
                        section=types.ConfigSection(
                            'fml', lambda c: common.config_section(
                                c, 'fml', FMLConfig)),
                                paper='Shen et al. 2020',
                                arxiv='2006.16765',
                                personalised='yes (private model)'),
    types.AlgorithmSpec('central', build_central, default_hparams('central'),
                        section=types.ConfigSection(
                            'central', lambda c: common.config_section(
                                c, 'central', CentralConfig)),
                                paper='pooled-data upper bound, not federated'),
)
