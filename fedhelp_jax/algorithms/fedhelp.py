# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""FedHelp: asymmetric dual KD between large and small silos, plus FM help.

Wang et al. 2025, "Asymmetrical Reciprocity-based Federated Learning for
Resolving Disparities in Medical Diagnosis", KDD 2025,
https://arxiv.org/abs/2412.19654. The method section was not recoverable;
this follows the default reading in ``shared/papers/fedhelp.md`` (the first
author's code with its bugs fixed).

What differs from FedAvg:
  * Two silo groups with different roles. Every silo trains a copy of ONE
    small shared model ``S``; only ``S``'s shared parameters are uploaded and
    averaged (uniformly by default, as in the authors' code).
  * A large silo ``k`` also holds a private LARGE model ``L_k`` (persistent
    client state, never uploaded). Per minibatch it runs the asymmetric dual
    KD: step A (``L_k`` frozen) trains ``S`` on ``CE + lambda_forward *
    KL(softmax(L_k/T) || softmax(S/T))``; step B (``S`` frozen) trains ``L_k``
    on ``CE + lambda_backward * KD(L_k toward S) + mu_rank * Rank(S -> L_k,
    top-k)``. Large silos are evaluated with ``L_k``.
  * A small silo holds ``S`` plus a persistent local public head ``h_pub``
    (the model's ``'aux_head'``, never uploaded). Per local step it takes a
    private-data CE step on ``(f, h_priv)`` and a public-batch KD step on
    ``(f, h_pub)`` toward the foundation model's one-time soft outputs
    ``q(u)`` (``fedhelp_jax.foundation``), with separate optimizers, as in the
    authors' code. Small silos are evaluated with the global ``S``.
  * Segmentation: Dice+CE task loss, pixel-wise KD (per-pixel KL averaged
    over pixels), rank loss off.

Every piece is switchable: KD weights are hparams (0 turns a term off in
value), and ``FedHelpConfig`` turns pieces off in the program (no compute).
Deviations from the code (see fedhelp_code.md Sec. 2.6): ``S`` (not ``L``) is
uploaded; ``L_k`` gets a CE gradient on fresh logits; ``h_pub`` persists
across rounds; each large silo owns its ``L_k``; the rank hinge makes ``S``'s
top-k outrank the rest in ``L_k`` (``rank_sign=-1`` gives the code's sign);
KD is ``T^2``-scaled batch-mean KL; step B's KD is the usual
``KL(p_S || p_L)`` with ``L`` as the student (``backward_kl='code'`` gives
the code's ``KL(p_L || p_S)`` differentiated through ``p_L``).
"""

import dataclasses
import functools
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from fedhelp_jax import losses
from fedhelp_jax import models
from fedhelp_jax import privacy
from fedhelp_jax import tasks
from fedhelp_jax import traced
from fedhelp_jax import types
from fedhelp_jax.algorithms import common
from fedhelp_jax.algorithms import fm_prepare
from fedhelp_jax.algorithms import server_opt

GROUPS = ('large', 'small')
_PUBLIC_HEAD = 'aux_head'


class SiloState(NamedTuple):
  """What a FedHelp silo keeps between rounds (placed: leaves ``[C, ...]``).

  The small model's params are the server's broadcast; a silo keeps only:

  Attributes:
    small_model_state: S's non-param collections (e.g. 'batch_stats').
    public_head: small silos with FM KD: the params of S's public head
      ``h_pub`` (never uploaded); None elsewhere.
    large_params: large silos: the private large model ``L_k`` (never
      uploaded); None elsewhere.
    large_model_state: its non-param collections; None elsewhere.
  """
  small_model_state: Any
  public_head: Any = None
  large_params: Any = None
  large_model_state: Any = None
_PRIVATE_HEAD = 'head'


LOSS_SCALINGS = ('paper', 'code')
FM_HEADS = ('public', 'main')
LARGE_SHARING = ('private', 'average')


class SharedLargeServer(NamedTuple):
  """The server with ``large_sharing='average'``: ``S`` as in
  ``server_opt.ServerState``, plus the large group's one ``L``, stored
  once per large silo (identical copies, so each silo's slice is its
  download and the checkpoint layout finds the silo axis)."""
  params: types.Params
  opt_state: Any = ()
  large: Any = None


class LargeUpload(NamedTuple):
  """A large silo's upload with ``large_sharing='average'``."""
  small: types.PyTree  # The delta of S's shared params, as every silo's.
  large: types.Params  # Its L after the round's local steps.


def scaled_kl(per_example: jax.Array, num_classes: int, temperature,
              scaling: str) -> jax.Array:
  """A KL term from per-example ``T^2 KL`` values (``losses.kd_kl``).

  'paper': their batch mean. 'code': torch's ``nn.KLDivLoss()`` (reduction
  'mean': the sum over batch x classes divided by their number, no ``T^2``).
  """
  mean = jnp.mean(per_example)
  if scaling == 'paper':
    return mean
  return mean / (num_classes * jnp.asarray(temperature, jnp.float32)**2)


def reduced_rank(per_example: jax.Array, scaling: str) -> jax.Array:
  """The rank term: the batch mean ('paper') or sum ('code')."""
  return jnp.mean(per_example) if scaling == 'paper' else jnp.sum(per_example)


@dataclasses.dataclass(frozen=True)
class FedHelpConfig:
  """Static (program-changing) FedHelp switches.

  Attributes:
    private_large: large silos hold a private large model ``L_k`` (False:
      they train only ``S`` and are evaluated with it, as in FedAvg).
    dual_kd: run the KD terms of steps A and B (False: ``S`` and ``L_k`` are
      trained side by side on CE only).
    fm_kd: small silos take the public-batch KD step toward the FM outputs
      (needs ``public_x``/``public_q`` in their data).
    use_rank: add the rank term in step B (forced off for segmentation).
    rank_k: top-k of the rank term (1 for binary tasks).
    rank_sign: +1 (``S``'s top-k should outrank the rest in ``L_k``) or -1
      (the authors' code).
    backward_kl: 'student' (``KL(p_S || p_L)``, ``L_k`` the student) or
      'code' (``KL(p_L || p_S)`` as written in the authors' code).
    loss_scaling: 'paper' (each KL term the mean over the batch of the
      per-example ``T^2 KL``, the rank term the batch mean) or 'code' (as
      the authors' torch code computes them: ``nn.KLDivLoss()``'s default
      'mean' divides the summed KL by batch x classes, with no ``T^2``, and
      the rank term is summed over the batch). At T = 1 'code' is 'paper'
      with every KL weight divided by the class count and the rank weight
      multiplied by the batch size (2x weaker KD and 4x stronger rank at
      the authors' binary task and batch 4).
    public_batch_size: public examples per KD step (default: the local batch
      size).
    large_optimizer: optimizer of ``L_k`` (default: the local optimizer); its
      learning rate is ``hparams['lr_large']``.
    fm_head: where small silos distil the FM's answers: 'public' (the
      paper's public head ``h_pub``, over the FM's own classes) or 'main'
      (the task head, when the FM answers over the task's classes, e.g. an
      in-domain FM; no public head is built).
    share_large_forward: when ``L_k`` keeps no batch statistics (GroupNorm,
      no dropout), its eval-mode output in step A equals the train-mode
      output step B differentiates, so one forward pass (kept for the
      backward with ``jax.vjp``) serves both: a quarter of ``L_k``'s work
      per step. False recomputes it (the reference the tests compare with).
    large_sharing: 'private' (each large silo owns its ``L_k``, never
      uploaded) or 'average' (one ``L`` for the large group, as in the
      authors' code, which trains one large model object across both large
      clients in turn: here every large silo starts the round from the
      server's ``L``, trains it locally, uploads it, and the server
      averages the large group's ``L`` with the silo weights; it never
      reaches a small silo).
  """
  private_large: bool = True
  dual_kd: bool = True
  fm_kd: bool = True
  use_rank: bool = True
  rank_k: int = 1
  rank_sign: int = 1
  backward_kl: str = 'student'
  loss_scaling: str = 'paper'
  public_batch_size: Optional[int] = None
  large_optimizer: Optional[str] = None
  share_large_forward: bool = True
  fm_head: str = 'public'
  large_sharing: str = 'private'

  def __post_init__(self):
    if self.large_sharing not in LARGE_SHARING:
      raise ValueError(f'large_sharing must be one of {LARGE_SHARING}, got '
                       f'{self.large_sharing!r}.')
    if self.large_sharing == 'average' and not self.private_large:
      raise ValueError("large_sharing='average' shares the large model, "
                       'which private_large=False does not build.')
    if self.fm_head not in FM_HEADS:
      raise ValueError(f'fm_head must be one of {FM_HEADS}, got '
                       f'{self.fm_head!r}.')
    if self.rank_sign not in (1, -1):
      raise ValueError(f'rank_sign must be +1 or -1, got {self.rank_sign}.')
    if self.backward_kl not in ('student', 'code'):
      raise ValueError("backward_kl must be 'student' or 'code', got "
                       f'{self.backward_kl!r}.')
    if self.loss_scaling not in LOSS_SCALINGS:
      raise ValueError(f'loss_scaling must be one of {LOSS_SCALINGS}, got '
                       f'{self.loss_scaling!r}.')
    if self.rank_k < 1:
      raise ValueError(f'rank_k must be >= 1, got {self.rank_k}.')


def default_hparams(name: str = 'fedhelp') -> dict[str, float]:
  """Defaults: the authors' code weights (1, 1, 0.2, 1; T = 1).

  ``'fedavg_fm'`` keeps only what it reads (lr, momentum, lambda_fm,
  server_lr).
  """
  hp = {'lr': 0.05, 'lr_large': 0.05, 'momentum': 0.9,
        'lambda_forward': 1.0, 'lambda_backward': 1.0, 'mu_rank': 0.2,
        'lambda_fm': 1.0, 'temperature': 1.0, 'server_lr': 1.0}
  if name == 'fedavg_fm':
    hp = {k: hp[k] for k in ('lr', 'momentum', 'lambda_fm', 'server_lr')}
  return hp


def _without(tree, key):
  return {k: v for k, v in tree.items() if k != key}


def shared_params(params):
  """The part of ``S``'s params that is uploaded: all but the public head."""
  return _without(params, _PUBLIC_HEAD)


class _Setup(NamedTuple):
  """What FedHelp's per-silo pieces read (static, from ``fedhelp()``)."""
  small_module: Any  # S.
  large_module: Any  # L_k.
  task: tasks.Task
  local: common.LocalConfig
  config: FedHelpConfig
  use_rank: bool  # config.use_rank, off for segmentation.
  has_large: bool  # config.private_large.
  large_opt_name: str
  through_main: bool  # config.fm_head == 'main'.


def _apply(module, params, state, x, *, train, head='main'):
  # Params may lack the head that is not applied (e.g. 'aux_head' on the
  # main head): Flax only needs the submodules that run.
  out, new_vars = models.apply_model(
      module, common.model_variables(params, state), x, train=train,
      head=head)
  return out, common.split_variables(new_vars)[1]


def _forward_terms(ctx, out, y, l_ref, hparams):
  """Step A's CE and forward KD (``L_k`` -> ``S``) of a batch."""
  temp = hparams['temperature']
  ce = jnp.mean(ctx.task.loss(out, y))
  kd = (scaled_kl(losses.kd_kl(out, l_ref, temperature=temp),
                  out.shape[-1], temp, ctx.config.loss_scaling)
        if ctx.config.dual_kd else jnp.zeros(()))
  return ce, kd


def _backward_terms(ctx, out, y, s_ref, hparams):
  """Step B's CE, backward KD (``S`` -> ``L_k``) and rank term."""
  temp = hparams['temperature']
  ce = jnp.mean(ctx.task.loss(out, y))
  kd, rank = jnp.zeros(()), jnp.zeros(())
  if ctx.config.dual_kd:
    if ctx.config.backward_kl == 'student':
      kl = losses.kd_kl(out, s_ref, temperature=temp)
    else:  # KL(p_L || p_S) through p_L, as written in the code.
      kl = losses.kd_kl(s_ref, out, temperature=temp)
    kd = scaled_kl(kl, out.shape[-1], temp, ctx.config.loss_scaling)
    if ctx.use_rank:
      rank = reduced_rank(
          losses.rank_loss(s_ref, out, k=ctx.config.rank_k,
                           sign=ctx.config.rank_sign), ctx.config.loss_scaling)
  total = (ce + hparams['lambda_backward'] * kd
           + hparams['mu_rank'] * rank)
  return total, (ce, kd, rank)


def _private_dual_step(ctx, tx_s, tx_l, data, hparams):
  """Steps A and B under DP-SGD: BOTH read the private batch, so each is
  a clipped, noised release (two per sampled batch; the accountant counts
  them through ``AlgorithmSpec.dp_releases``)."""
  def step(carry, batch_idx, key):
    s_p, s_ms, l_p, l_ms, opt_s, opt_l = carry
    common.require_stateless(s_ms)
    common.require_stateless(l_ms)
    sample_key, key_a, key_b = jax.random.split(key, 3)
    rows, mask, denominator = common.private_batch(ctx.local, sample_key,
                                                   batch_idx, data)
    xb, yb = data['x'][rows], data['y'][rows]
    logits = lambda module, q, ms, x: _apply(module, q, ms, x,
                                             train=True)[0]
    l_ref = jax.lax.stop_gradient(
        _apply(ctx.large_module, l_p, l_ms, xb, train=False)[0])

    def example_a(q, x, y_ref):
      y, ref = y_ref
      ce, kd = _forward_terms(ctx, logits(ctx.small_module, q, s_ms, x[None]),
                              y[None], ref[None], hparams)
      return ce + hparams['lambda_forward'] * kd, (ce, kd)
    grads, (_, (ce_s, kd_f)) = privacy.noisy_clipped_grad(
        example_a, s_p, xb, (yb, l_ref), mask, hparams, key_a,
        denominator, has_aux=True)
    updates, opt_s = tx_s.update(grads, opt_s, s_p)
    s_p = optax.apply_updates(s_p, updates)
    s_ref = jax.lax.stop_gradient(
        _apply(ctx.small_module, s_p, s_ms, xb, train=False)[0])

    def example_b(q, x, y_ref):
      y, ref = y_ref
      return _backward_terms(ctx, logits(ctx.large_module, q, l_ms, x[None]),
                             y[None], ref[None], hparams)
    grads, (_, (ce_l, kd_b, rank)) = privacy.noisy_clipped_grad(
        example_b, l_p, xb, (yb, s_ref), mask, hparams, key_b,
        denominator, has_aux=True)
    updates, opt_l = tx_l.update(grads, opt_l, l_p)
    l_p = optax.apply_updates(l_p, updates)
    mean = lambda v: _masked_mean(v, mask)
    return (s_p, s_ms, l_p, l_ms, opt_s, opt_l), {
        'train_loss': mean(ce_s), 'large_loss': mean(ce_l),
        'kd_forward': mean(kd_f), 'kd_backward': mean(kd_b),
        'rank': mean(rank)}
  return step


def _small_update(ctx, client, broadcast, data, hparams, rng):
  if ctx.config.fm_kd:
    _check_public(data, ctx.task.num_classes if ctx.through_main
                  else client.public_head['kernel'].shape[-1])
  order_key, step_key = jax.random.split(rng)
  idx, active = ctx.local.schedule(order_key, data)
  # Two optimizers, as in the authors' code: one over (f, h_priv), one over
  # (f, h_pub); sharing one would let the public step's momentum move
  # h_priv and vice versa.
  tx = common.make_optimizer(ctx.local.optimizer, hparams)
  pub_batch = ctx.config.public_batch_size or ctx.local.batch_size

  def private_grads(priv, ms, batch_idx, key):
    """The private CE step's gradient: DP-SGD's under ``ctx.local.private``
    (keys folded from the step's, so the public batch's stays as is)."""
    if ctx.local.private is None:
      def priv_loss(q):
        out, new_ms = _apply(ctx.small_module, q, ms, data['x'][batch_idx],
                             train=True)
        return jnp.mean(ctx.task.loss(out, data['y'][batch_idx])), new_ms
      (task_loss, ms), grads = jax.value_and_grad(
          priv_loss, has_aux=True)(priv)
      return grads, task_loss, ms
    common.require_stateless(ms)
    rows, mask, denominator = common.private_batch(
        ctx.local, jax.random.fold_in(key, 1), batch_idx, data)

    def example_loss(q, x, y):
      out, _ = _apply(ctx.small_module, q, ms, x[None], train=True)
      return jnp.mean(ctx.task.loss(out, y[None]))
    grads, per_example = privacy.noisy_clipped_grad(
        example_loss, priv, data['x'][rows], data['y'][rows], mask,
        hparams, jax.random.fold_in(key, 2), denominator)
    return grads, _masked_mean(per_example, mask), ms

  def step(carry, batch_idx, key):
    p, ms, opt_priv, opt_pub = carry
    priv = _without(p, _PUBLIC_HEAD)
    grads, task_loss, ms = private_grads(priv, ms, batch_idx, key)
    updates, opt_priv = tx.update(grads, opt_priv, priv)
    priv = optax.apply_updates(priv, updates)
    if not ctx.config.fm_kd:
      return (priv, ms, opt_priv, opt_pub), (task_loss, jnp.zeros(()))
    num_pub = data['public_x'].shape[0]
    pidx = jax.random.permutation(key, num_pub)[:min(pub_batch, num_pub)]
    pub = (priv if ctx.through_main else
           {**_without(priv, _PRIVATE_HEAD), _PUBLIC_HEAD: p[_PUBLIC_HEAD]})

    def pub_loss(q):
      out, new_ms = _apply(ctx.small_module, q, ms, data['public_x'][pidx],
                           train=True,
                           head='main' if ctx.through_main else 'aux')
      kd = scaled_kl(losses.kd_kl_from_probs(out, data['public_q'][pidx]),
                     out.shape[-1], 1.0, ctx.config.loss_scaling)
      return hparams['lambda_fm'] * kd, (kd, new_ms)
    (_, (fm_loss, ms)), grads = jax.value_and_grad(pub_loss, has_aux=True)(
        pub)
    updates, opt_pub = tx.update(grads, opt_pub, pub)
    pub = optax.apply_updates(pub, updates)
    p = pub if ctx.through_main else {**pub, _PRIVATE_HEAD: priv[_PRIVATE_HEAD]}
    return (p, ms, opt_priv, opt_pub), (task_loss, fm_loss)

  params = dict(broadcast)
  opt_pub = ()
  if ctx.config.fm_kd and ctx.through_main:
    opt_pub = tx.init(params)
  elif ctx.config.fm_kd:
    params[_PUBLIC_HEAD] = client.public_head
    opt_pub = tx.init(_without(params, _PRIVATE_HEAD))
  opt_priv = tx.init(broadcast)
  (params, s_state, _, _), (task_losses, fm_losses) = (
      traced.scan_local_steps(step, (params, client.small_model_state,
                                     opt_priv, opt_pub), idx, active,
                              step_key))
  new_client = client._replace(small_model_state=s_state)
  if ctx.config.fm_kd and not ctx.through_main:
    new_client = new_client._replace(public_head=params[_PUBLIC_HEAD])
  metrics = {'train_loss': traced.mean_over_active(task_losses, active),
             'fm_kd': traced.mean_over_active(fm_losses, active)}
  return new_client, shared_params(params), metrics


def _large_update(ctx, client, broadcast, data, hparams, rng):
  if not ctx.has_large:
    params, s_state, metrics = common.supervised_train(
        ctx.small_module, ctx.task, ctx.local, broadcast, client.small_model_state,
        data, hparams, rng)
    return client._replace(small_model_state=s_state), params, metrics
  # Same key use as common.supervised_train, so with zero KD weights S's
  # update equals plain supervised training (a test pins this).
  order_key, step_key = jax.random.split(rng)
  idx, active = ctx.local.schedule(order_key, data)
  tx_s = common.make_optimizer(ctx.local.optimizer, hparams)
  tx_l = common.make_optimizer(ctx.large_opt_name, hparams, lr_key='lr_large')

  def step(carry, batch_idx, key):
    del key  # Deterministic models (no dropout).
    s_p, s_ms, l_p, l_ms, opt_s, opt_l = carry
    xb, yb = data['x'][batch_idx], data['y'][batch_idx]
    # Step A: L_k frozen (eval mode, as in the code), S learns from it.
    shared = (ctx.config.dual_kd and ctx.config.share_large_forward
              and not jax.tree.leaves(l_ms))
    if shared:  # Eval mode = train mode here: one forward for A and B.
      l_out, l_vjp = jax.vjp(
          lambda q: _apply(ctx.large_module, q, l_ms, xb, train=True)[0], l_p)
      l_ref = jax.lax.stop_gradient(l_out)
    elif ctx.config.dual_kd:
      l_ref = jax.lax.stop_gradient(
          _apply(ctx.large_module, l_p, l_ms, xb, train=False)[0])

    def loss_a(q):
      out, new_ms = _apply(ctx.small_module, q, s_ms, xb, train=True)
      ce, kd = _forward_terms(ctx, out, yb, l_ref if ctx.config.dual_kd else None,
                              hparams)
      return ce + hparams['lambda_forward'] * kd, (ce, kd, new_ms)
    (_, (ce_s, kd_f, s_ms)), grads = jax.value_and_grad(
        loss_a, has_aux=True)(s_p)
    updates, opt_s = tx_s.update(grads, opt_s, s_p)
    s_p = optax.apply_updates(s_p, updates)
    # Step B: S frozen (its fresh logits after step A), L_k learns.
    if ctx.config.dual_kd:
      s_ref = jax.lax.stop_gradient(
          _apply(ctx.small_module, s_p, s_ms, xb, train=False)[0])

    def loss_b_of_logits(out):
      return _backward_terms(ctx, out, yb, s_ref if ctx.config.dual_kd else None,
                             hparams)

    if shared:  # Backward through step A's forward.
      (_, (ce_l, kd_b, rank)), g_out = jax.value_and_grad(
          loss_b_of_logits, has_aux=True)(l_out)
      (grads,) = l_vjp(g_out)
    else:
      def loss_b(q):
        out, new_ms = _apply(ctx.large_module, q, l_ms, xb, train=True)
        total, terms = loss_b_of_logits(out)
        return total, (terms, new_ms)
      (_, ((ce_l, kd_b, rank), l_ms)), grads = jax.value_and_grad(
          loss_b, has_aux=True)(l_p)
    updates, opt_l = tx_l.update(grads, opt_l, l_p)
    l_p = optax.apply_updates(l_p, updates)
    return (s_p, s_ms, l_p, l_ms, opt_s, opt_l), {
        'train_loss': ce_s, 'large_loss': ce_l, 'kd_forward': kd_f,
        'kd_backward': kd_b, 'rank': rank}

  if ctx.local.private is not None:
    step = _private_dual_step(ctx, tx_s, tx_l, data, hparams)
  carry = (broadcast, client.small_model_state, client.large_params,
           client.large_model_state, tx_s.init(broadcast),
           tx_l.init(client.large_params))
  (s_p, s_ms, l_p, l_ms, _, _), step_metrics = traced.scan_local_steps(
      step, carry, idx, active, step_key)
  metrics = {k: traced.mean_over_active(v, active)
             for k, v in step_metrics.items()}
  return client._replace(small_model_state=s_ms, large_params=l_p,
                         large_model_state=l_ms), s_p, metrics


def _init(ctx, groups, rng, data):
  s_key, l_key = jax.random.split(rng)
  first = groups[0]
  s_params, s_state = common.init_model(ctx.small_module, s_key,
                                        common.sample_x(data[first]))
  clients = {}
  for g in groups:
    num = data[g]['x'].shape[0]
    client = SiloState(small_model_state=common.stack(s_state, num))
    if g == 'small' and ctx.config.fm_kd and ctx.config.fm_head == 'public':
      if _PUBLIC_HEAD not in s_params:
        raise ValueError('FedHelp with fm_kd needs the small model built '
                         'with aux_classes > 0 (the public head).')
      client = client._replace(
          public_head=common.stack(s_params[_PUBLIC_HEAD], num))
    if g == 'large' and ctx.has_large:
      # Each large silo owns an independently initialised L_k (shared: one
      # L, the same init everywhere).
      shared = ctx.config.large_sharing == 'average'
      inits = [common.init_model(
          ctx.large_module, l_key if shared else jax.random.fold_in(l_key, c),
          common.sample_x(data[g])) for c in range(num)]
      client = client._replace(
          large_params=jax.tree.map(lambda *xs: jnp.stack(xs),
                                    *[p for p, _ in inits]),
          large_model_state=jax.tree.map(lambda *xs: jnp.stack(xs),
                                         *[s for _, s in inits]))
    clients[g] = client
  if ctx.config.large_sharing == 'average' and 'large' in clients:
    return SharedLargeServer(shared_params(s_params),
                             large=clients['large'].large_params), clients
  return server_opt.ServerState(shared_params(s_params)), clients


def _average_large(server, uploads, weights):
  """The large group's weighted mean ``L``, one copy per large silo (the
  server's ``L`` unchanged when no large silo took part)."""
  total = jnp.sum(weights['large'])
  mean = traced.weighted_mean_groups({'large': uploads['large'].large},
                                     {'large': weights['large']})
  return jax.tree.map(
      lambda old, m: jnp.where(total > 0, jnp.broadcast_to(m, old.shape), old),
      server.large, mean)


def fedhelp(small_module, large_module, task: tasks.Task,
            local: common.LocalConfig, groups,
            config: FedHelpConfig = FedHelpConfig(),
            name: str = 'fedhelp') -> types.FederatedAlgorithm:
  """FedHelp over the groups 'large' and 'small'.

  Hyperparameters (arrays): ``lr`` (S), ``lr_large`` (L_k), ``momentum``
  (sgd), ``lambda_forward``, ``lambda_backward``, ``mu_rank``, ``lambda_fm``,
  ``temperature`` (dual KD), ``server_lr``.

  Args:
    small_module: the shared model ``S``; built with ``aux_classes = K_pub``
      (the FM output classes) when ``config.fm_kd``.
    large_module: the large private model (used when
      ``config.private_large``).
    task: the task.
    local: local-training config (batch size, steps or epochs, optimizer of
      ``S``).
    groups: silo groups, a subset of ('large', 'small').
    config: static switches.
    name: the algorithm's name.

  Returns:
    The ``FederatedAlgorithm``.
  """
  groups = tuple(groups)
  unknown = set(groups) - set(GROUPS)
  if unknown:
    raise ValueError(f'FedHelp groups must be among {GROUPS}; got '
                     f'{sorted(unknown)}.')
  seg = task.name == 'segmentation'
  ctx = _Setup(small_module, large_module, task, local, config,
               use_rank=config.use_rank and not seg,
               has_large=config.private_large,
               large_opt_name=config.large_optimizer or local.optimizer,
               through_main=config.fm_head == 'main')
  shared_large = config.large_sharing == 'average' and 'large' in groups
  return types.FederatedAlgorithm(
      name=name, groups=groups,
      init=functools.partial(_init, ctx, groups),
      local_update=functools.partial(_local_update, ctx, shared_large),
      server_update=functools.partial(_server_update, shared_large),
      download=(functools.partial(_shared_large_download, groups)
                if shared_large else types.broadcast_download),
      eval_variables=functools.partial(_eval_variables, ctx),
      eval_model=functools.partial(_eval_model, ctx))


def _shared_large_download(groups, server):
  """``S`` for every silo, and the large group's ``L`` for its silos."""
  return types.Download(broadcast=server.params,
                        personal={g: server.large if g == 'large' else None
                                  for g in groups})


def _local_update(ctx, shared_large, silo, hparams, rng):
  update = _large_update if silo.group == 'large' else _small_update
  client = silo.state
  if shared_large and silo.group == 'large':
    client = client._replace(large_params=silo.personal)
  new_client, params, metrics = update(ctx, client, silo.broadcast,
                                       silo.data, hparams, rng)
  # Upload the delta of S's shared params only (FedAvg convention, so
  # server_lr = 1 is a plain average). h_pub never leaves the silo, nor
  # L_k unless the large group shares one L.
  delta = jax.tree.map(lambda a, b: a - b, silo.broadcast, params)
  if shared_large and silo.group == 'large':
    delta = LargeUpload(delta, new_client.large_params)
  return common.silo_output(new_client, delta, metrics)


def _server_update(shared_large, server, uploads, weights, hparams):
  if not shared_large:
    return server_opt.sgd_on_mean_delta(server, uploads, weights, hparams)
  small = {g: u.small if g == 'large' else u for g, u in uploads.items()}
  new = server_opt.sgd_on_mean_delta(server, small, weights, hparams)
  return new._replace(large=_average_large(server, uploads, weights))


def _eval_variables(ctx, silo):
  if silo.group == 'large' and ctx.has_large:
    return common.model_variables(silo.state.large_params,
                                  silo.state.large_model_state)
  return common.model_variables(silo.broadcast,
                                silo.state.small_model_state)


def _eval_model(ctx, group):
  return (ctx.large_module if group == 'large' and ctx.has_large
          else ctx.small_module)


def _masked_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
  weight = mask.astype(jnp.float32)
  return jnp.sum(values * weight) / jnp.maximum(jnp.sum(weight), 1.0)


def _check_public(data, aux_classes: int) -> None:
  for key in ('public_x', 'public_q'):
    if key not in data:
      raise ValueError(
          f"FedHelp small silos need data['small'][{key!r}] (FM knowledge); "
          'run the registry prepare hook (fm_prepare.prepare_fm) or set '
          'fm_kd=False.')
  if data['public_q'].shape[-1] != aux_classes:
    raise ValueError(
        f"public_q has {data['public_q'].shape[-1]} classes but the public "
        f'head has {aux_classes}; set config.fedhelp.public_classes to the '
        'FM output classes.')


# ---------------------------------------------------------------------------
# Builders from an experiment config (registered in algorithms/__init__.py).
# ---------------------------------------------------------------------------


def static_config(config, **overrides) -> FedHelpConfig:
  """``FedHelpConfig`` from ``config.fedhelp`` (unknown keys are errors;
  ``public_classes`` is the FM step's, ``fm_prepare.fm_num_classes``)."""
  section = common.config_section(config, 'fedhelp', FedHelpConfig,
                                  extra=('public_classes',))
  return dataclasses.replace(section, **overrides)


def build(config, task, groups, *, name: str = 'fedhelp',
          **overrides) -> types.FederatedAlgorithm:
  """FedHelp from an experiment config.

  Reads ``config.model`` (the small shared model ``S``),
  ``config.large_model`` (the private ``L_k``; defaults to ``config.model``),
  ``config.fedhelp`` (``FedHelpConfig`` fields plus ``public_classes``, the
  FM output classes, checked against ``fm_prepare.fm_num_classes``) and
  ``config.local``.
  """
  cfg = static_config(config, **overrides)
  public = fm_prepare.fm_num_classes(config, task)
  if cfg.fm_kd and cfg.fm_head == 'main' and public != task.num_classes:
    raise ValueError(
        f"config.fedhelp.fm_head='main' distils the FM through the task "
        f'head, but the FM answers over {public} classes and the task has '
        f"{task.num_classes}; use fm_head='public'.")
  small = models.from_config(
      config.model, task.num_classes,
      aux_classes=public if cfg.fm_kd and cfg.fm_head == 'public' else 0)
  large = models.from_config(config.get('large_model') or config.model,
                                 task.num_classes)
  local = common.LocalConfig.from_experiment(config)
  if local.private is not None and cfg.loss_scaling == 'code':
    raise ValueError(
        "config.fedhelp.loss_scaling='code' sums the rank term over the "
        'batch, which per-example DP-SGD gradients cannot reproduce; use '
        "'paper' with dp.level 'record'.")
  return fedhelp(small, large, task, local, groups,
                 cfg, name=name)


def build_fedavg_fm(config, task, groups) -> types.FederatedAlgorithm:
  """'FedAvg + FM soft labels': FedAvg of ``S`` where small silos also take
  the public FM-KD step; no private large models, no dual KD. The ablation
  that separates the FM's contribution from the dual KD's."""
  return build(config, task, groups, name='fedavg_fm', private_large=False,
               dual_kd=False, fm_kd=True)


# Under DP-SGD a large silo's steps A and B both read the private batch;
# a small silo's public FM step reads no private record.
_DP_RELEASES = {'large': 2, 'small': 1}

_SECTION = types.ConfigSection('fedhelp', static_config)

# FedHelp and its FM baseline (fm_prepare.prepare_fm places the FM answers).
SPECS = (
    types.AlgorithmSpec(
        'fedhelp', build, default_hparams('fedhelp'),
        prepare=fm_prepare.prepare_fm, reads_public=True,
        ranges={'lr_large': common.POSITIVE,
                'temperature': common.HParamRange(low=0.0, low_open=True,
                                                  example=1.0)},
        record_dp=True, dp_releases=_DP_RELEASES, section=_SECTION,
        paper='Wang et al. 2025',
        arxiv='2412.19654',
        personalised='large silos (private `L_k`)'),
    # Without L_k its large silos release once per batch: counting 2 is
    # conservative (a larger epsilon than spent).
    types.AlgorithmSpec('fedavg_fm', build_fedavg_fm,
                        default_hparams('fedavg_fm'),
                        prepare=fm_prepare.prepare_fm, record_dp=True,
                        reads_public=True, dp_releases=_DP_RELEASES,
                        section=_SECTION,
                        paper=("FedAvg plus FedHelp's FM soft labels "
                               '(ablation)')),
)
