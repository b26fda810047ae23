# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""Pieces shared by algorithms: local configs, optimizers, supervised steps."""

import dataclasses
import math
from typing import Any, Callable, Mapping, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from fedhelp_jax import errors
from fedhelp_jax import models
from fedhelp_jax import privacy
from fedhelp_jax import tasks
from fedhelp_jax import traced
from fedhelp_jax import types

OPTIMIZERS = ('sgd', 'adam')


@dataclasses.dataclass(frozen=True)
class LocalConfig:
  """Static (shape- and program-changing) settings of local training.

  Attributes:
    batch_size: examples per local step.
    local_steps: fixed number of local steps per round for every silo, or
    local_epochs: epochs over each silo's own data (small silos take fewer,
      masked, steps). Exactly one of the two is set.
    optimizer: 'sgd' (momentum from ``hparams['momentum']``) or 'adam'.
      The client optimizer state is reset every round, as in FedAvg.
    private: DP-SGD's static settings (``privacy.PrivateSteps``), or None
      for plain local training.
  """
  batch_size: int = 32
  local_steps: Optional[int] = 10
  local_epochs: Optional[float] = None
  optimizer: str = 'sgd'
  private: Optional[privacy.PrivateSteps] = None

  def __post_init__(self):
    if self.batch_size < 1:
      raise ValueError(f'batch_size must be >= 1, got {self.batch_size}.')
    if (self.local_steps is None) == (self.local_epochs is None):
      raise ValueError('LocalConfig: set exactly one of local_steps and '
                       'local_epochs.')
    if self.local_steps is not None and self.local_steps < 1:
      raise ValueError(f'local_steps must be >= 1, got {self.local_steps}.')
    if self.local_epochs is not None and self.local_epochs <= 0:
      raise ValueError(f'local_epochs must be > 0, got {self.local_epochs}.')
    if self.optimizer not in OPTIMIZERS:
      raise ValueError(f'Unknown optimizer {self.optimizer!r}; expected one '
                       f'of {OPTIMIZERS}.')

  @classmethod
  def from_config(cls, local_config) -> 'LocalConfig':
    """From a ``config.local``-style mapping."""
    steps = local_config.get('local_steps')
    epochs = local_config.get('local_epochs')
    return cls(batch_size=int(local_config['batch_size']),
               local_steps=None if steps is None else int(steps),
               local_epochs=None if epochs is None else float(epochs),
               optimizer=str(local_config['optimizer']))

  @classmethod
  def from_experiment(cls, config) -> 'LocalConfig':
    """From an experiment config: ``config.local``, with DP-SGD's static
    settings when ``config.dp.level`` is 'record'."""
    local = cls.from_config(config.local)
    dp = privacy.DPConfig.from_config(config.get('dp'))
    if not dp.enabled:
      return local
    return dataclasses.replace(local, private=privacy.PrivateSteps(
        sampling=dp.sampling,
        max_batch=int(dp.max_batch or 2 * local.batch_size)))

  def schedule(self, rng, data):
    """``(idx [T, B], active [T])`` for one silo's ``data``."""
    return traced.local_schedule(
        rng, data['n'], data['x'].shape[0], batch_size=self.batch_size,
        local_steps=self.local_steps, local_epochs=self.local_epochs)


# Hyperparameters every local optimizer reads (on top of each algorithm's own).
OPTIMIZER_HPARAMS = ('weight_decay',)


@dataclasses.dataclass(frozen=True)
class HParamRange:
  """Allowed values of one hyperparameter, read by config validation.

  Attributes:
    low: lower bound.
    high: upper bound (inf for none).
    low_open: ``low`` itself is excluded.
    high_open: ``high`` itself is excluded.
    example: a valid value to suggest in the error message.
    reason: why the range is what it is, for the error message ('' for
      none).
  """
  low: float = -math.inf
  high: float = math.inf
  low_open: bool = False
  high_open: bool = True
  example: float = 0.01
  reason: str = ''

  def contains(self, value: float) -> bool:
    above = value > self.low if self.low_open else value >= self.low
    below = value < self.high if self.high_open else value <= self.high
    return above and below

  def describe(self) -> str:
    why = f'{self.reason}: ' if self.reason else ''
    if self.low == self.high:
      return f'{why}must be {self.low:g}'
    return why + self._bounds()

  def suggestion(self) -> str:
    """The fix to print: the one allowed value, or an example."""
    if self.low == self.high:
      return f'set it to {self.low:g}.'
    return f'use e.g. {self.example:g}.'

  def _bounds(self) -> str:
    lo = f'> {self.low:g}' if self.low_open else f'>= {self.low:g}'
    if math.isinf(self.high):
      return f'must be {lo}'
    hi = f'< {self.high:g}' if self.high_open else f'<= {self.high:g}'
    return f'must be {lo} and {hi}'


POSITIVE = HParamRange(low=0.0, low_open=True, example=0.01)
NON_NEGATIVE = HParamRange(low=0.0, example=0.0)
UNIT_INTERVAL = HParamRange(low=0.0, high=1.0, example=0.9)

# Ranges of the hyperparameters that several algorithms share; each
# registration adds its own (``algorithms.register(..., ranges=...)``).
SHARED_RANGES = {'lr': POSITIVE, 'momentum': NON_NEGATIVE,
                 'weight_decay': NON_NEGATIVE, 'server_lr': POSITIVE,
                 'server_b1': UNIT_INTERVAL, 'server_b2': UNIT_INTERVAL,
                 'server_tau': HParamRange(low=0.0, low_open=True,
                                           example=1e-3)}


def make_optimizer(name: str, hparams: types.HParams,
                   lr_key: str = 'lr') -> optax.GradientTransformation:
  """An optax optimizer whose hyperparameters are (traced) arrays.

  ``hparams['weight_decay']`` (optional, default 0) is COUPLED weight decay,
  as torch's ``Adam(weight_decay=...)`` and ``SGD(weight_decay=...)`` do it:
  ``wd * params`` is added to the gradient before the optimizer's moments see
  it (not AdamW's decoupled decay). The FedHelp authors' recipe is Adam 1e-3
  with weight_decay 1e-4.
  """
  lr = hparams[lr_key]
  if name == 'sgd':
    tx = optax.sgd(lr, momentum=hparams.get('momentum', 0.0))
  elif name == 'adam':
    tx = optax.adam(lr)
  else:
    raise ValueError(f'Unknown optimizer {name!r}.')
  # Always chained (decay 0 by default) so the optimizer state has one
  # structure whatever the hparams hold (init sometimes sees placeholders).
  return optax.chain(
      optax.add_decayed_weights(hparams.get('weight_decay', 0.0)), tx)


def model_variables(params, model_state):
  return {'params': params, **model_state}


def split_variables(variables):
  """``(params, model_state)`` from Flax variables."""
  return variables['params'], {k: v for k, v in variables.items()
                               if k != 'params'}


def init_model(module, rng, sample_x):
  """``(params, model_state)`` of a freshly initialised module."""
  return split_variables(models.init_variables(module, rng, sample_x))


def stack(tree, num: int):
  """Replicates an unplaced pytree ``num`` times along a new client axis."""
  return jax.tree.map(lambda x: jnp.broadcast_to(x, (num,) + x.shape), tree)


def tree_sq_norm(tree) -> jax.Array:
  return sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree))


def supervised_train(module, task: tasks.Task, local: LocalConfig,
                     params, model_state, data, hparams, rng, *,
                     extra_loss: Optional[Callable[[Any], jax.Array]] = None,
                     head: str = 'main', trainable: Any = None):
  """Local SGD on the task loss for ONE silo: a scan over local steps.

  Args:
    module: the Flax module.
    task: the task (loss).
    local: local-training config.
    params: starting params.
    model_state: non-param collections (e.g. 'batch_stats'), updated.
    data: the silo's data dict ('x', 'y', 'n', ...).
    hparams: hyperparameter arrays ('lr', 'momentum', ...).
    rng: the silo's key for this round.
    extra_loss: optional ``params -> scalar`` added to the batch loss (e.g.
      FedProx's proximal term).
    head: model head to train.
    trainable: optional tree of bools like ``params``: only the True leaves
      are updated (the others get zero updates, ``optax.multi_transform``),
      e.g. one phase of FedRep's or pFedNet's two-phase round. Losses and
      model state (BatchNorm statistics) still see every parameter.

  Returns:
    ``(params, model_state, metrics)`` with ``metrics['train_loss']`` the mean
    task loss over active steps and ``metrics['local_steps']`` (float32) the
    number of steps this silo really took (fewer than scanned for small
    silos under ``local_epochs``).
  """
  order_key, step_key = jax.random.split(rng)
  idx, active = local.schedule(order_key, data)
  tx = make_optimizer(local.optimizer, hparams)
  if trainable is not None:
    tx = optax.multi_transform(
        {'train': tx, 'frozen': optax.set_to_zero()},
        jax.tree.map(lambda t: 'train' if t else 'frozen', trainable))

  def loss_fn(p, ms, xb, yb):
    out, new_vars = models.apply_model(
        module, model_variables(p, ms), xb, train=True, head=head)
    task_loss = jnp.mean(task.loss(out, yb))
    total = task_loss if extra_loss is None else task_loss + extra_loss(p)
    return total, (task_loss, split_variables(new_vars)[1])

  def step(carry, batch_idx, key):
    del key  # The models here are deterministic (no dropout).
    p, ms, opt = carry
    grads, (task_loss, ms) = jax.grad(loss_fn, has_aux=True)(
        p, ms, data['x'][batch_idx], data['y'][batch_idx])
    updates, opt = tx.update(grads, opt, p)
    return (optax.apply_updates(p, updates), ms, opt), task_loss

  if local.private is not None:
    step = _private_step(module, task, local, data, hparams, head,
                         extra_loss, tx)

  (params, model_state, _), step_losses = traced.scan_local_steps(
      step, (params, model_state, tx.init(params)), idx, active, step_key)
  return params, model_state, {
      'train_loss': traced.mean_over_active(step_losses, active),
      'local_steps': jnp.sum(active).astype(jnp.float32)}


def require_stateless(model_state) -> None:
  """DP-SGD refuses models with batch statistics (traced-time check)."""
  if jax.tree.leaves(model_state):
    raise ValueError(
        'DP-SGD needs a model without batch statistics: per-example '
        'gradients and a private batch mean do not mix (use norm '
        "'group' or 'none').")


def private_batch(local: LocalConfig, key, batch_idx, data):
  """One DP-SGD step's ``(rows [M], mask [M], denominator)`` for ONE silo.

  'poisson': a truncated Poisson draw (``privacy.poisson_rows``), divided
  by the EXPECTED batch ``q * n``, a data-free constant, so the noise scale
  does not depend on the draw. 'shuffle': the ordinary batch ``batch_idx``,
  divided by its size.
  """
  private = local.private
  if private.sampling == 'poisson':
    n = data['n']
    rows, mask = privacy.poisson_rows(key, n, data['x'].shape[0],
                                      local.batch_size, private.max_batch)
    denominator = privacy.sampling_probability(n, local.batch_size) * n
    return rows, mask, jnp.maximum(denominator, 1.0)
  return (batch_idx, jnp.ones(batch_idx.shape, bool),
          jnp.float32(local.batch_size))


def _private_step(module, task, local, data, hparams, head, extra_loss, tx):
  """One DP-SGD step of ``supervised_train`` (``privacy``): per-example
  gradients of the task loss, clipped and noised; ``extra_loss`` reads no
  record (e.g. FedProx's proximal term), so its gradient is added as is."""
  def example_loss(p, ms, x, y):
    out, _ = models.apply_model(module, model_variables(p, ms), x[None],
                                train=True, head=head)
    return jnp.mean(task.loss(out, y[None]))

  def step(carry, batch_idx, key):
    p, ms, opt = carry
    require_stateless(ms)
    sample_key, noise_key = jax.random.split(key)
    rows, mask, denominator = private_batch(local, sample_key, batch_idx,
                                            data)
    grads, losses = privacy.noisy_clipped_grad(
        lambda q, x, y: example_loss(q, ms, x, y), p, data['x'][rows],
        data['y'][rows], mask, hparams, noise_key, denominator)
    if extra_loss is not None:
      grads = jax.tree.map(jnp.add, grads, jax.grad(extra_loss)(p))
    updates, opt = tx.update(grads, opt, p)
    weight = mask.astype(jnp.float32)
    task_loss = jnp.sum(losses * weight) / jnp.maximum(jnp.sum(weight), 1.0)
    return (optax.apply_updates(p, updates), ms, opt), task_loss

  return step


def predict_probs(task: tasks.Task, head: str = 'main'):
  """``(module, variables, x) -> probabilities`` for evaluation."""
  def apply_fn(module, variables, x):
    out, _ = models.apply_model(module, variables, x, train=False, head=head)
    return task.predict(out)
  return apply_fn


def sample_x(data: Mapping[str, Any]):
  """One example of a group's inputs, for model init: ``[1, ...]``."""
  return data['x'][0, :1]


def module_builder(factory: Callable[..., types.FederatedAlgorithm]):
  """A registry builder for algorithms of one model: ``factory(module, task,
  local, groups)`` given ``config.model`` and ``config.local``."""
  def build(config, task, groups) -> types.FederatedAlgorithm:
    module = models.from_config(config.model, task.num_classes)
    return factory(module, task, LocalConfig.from_experiment(config), groups)
  return build


def server_update_via_mean(server_update_from_mean):
  """``server_update(server, uploads, weights, hparams)`` of an algorithm
  whose server step needs only the weighted mean of the uploads."""
  def server_update(server, uploads, weights, hparams):
    return server_update_from_mean(
        server, traced.weighted_mean_groups(uploads, weights), hparams)
  return server_update


def config_section(config, name: str, section_type, *, extra=()):
  """``config.<name>`` as the frozen dataclass ``section_type``: fields
  left out take the dataclass defaults, an unknown key is a
  ``ConfigError`` naming it and the known ones. ``extra`` names keys read
  elsewhere (e.g. FedHelp's ``public_classes``, read by the FM step),
  accepted here and left out of the result. The one parser of every
  algorithm's config section (``AlgorithmSpec.section``)."""
  given = dict(config.get(name, None) or {})
  known = [f.name for f in dataclasses.fields(section_type)]
  unknown = sorted(set(given) - set(known) - set(extra))
  if unknown:
    raise errors.config_error(
        f'{name}.{unknown[0]}', f'is not a {name} setting.',
        f'use only {sorted(known + list(extra))}.')
  try:
    return section_type(**{k: v for k, v in given.items() if k in known})
  except (TypeError, ValueError) as e:
    raise errors.config_error(name, str(e), 'see the field docs of '
                              f'{section_type.__name__}.') from None


def require_int(name: str, value, minimum: int) -> None:
  """For a config dataclass's ``__post_init__``: ``value`` is an int (not
  a bool) of at least ``minimum``, else a ``ValueError`` naming it."""
  if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
    raise ValueError(f'{name} must be an integer >= {minimum}, got '
                     f'{value!r}.')


class SiloModel(NamedTuple):
  """The client state of a silo that keeps its own model between rounds
  (Local-only, Ditto's personal model).

  Attributes:
    params: the silo's model params (placed: leaves ``[C, ...]``).
    model_state: its non-param collections, e.g. ``{'batch_stats': ...}``
      (placed); ``{}`` for a model without any.
  """
  params: types.Params
  model_state: types.PyTree


class SiloModelState(NamedTuple):
  """The client state of a silo that keeps no model between rounds (the
  FedAvg family): local training starts from the broadcast, so only the
  non-param collections stay (FedBN-style).

  Attributes:
    model_state: e.g. ``{'batch_stats': ...}`` (placed: leaves ``[C,
      ...]``); ``{}`` for a model without any, so the state has no leaves.
  """
  model_state: types.PyTree


def silo_output(state, upload, metrics) -> types.SiloOutput:
  """A ``SiloOutput`` from a training helper's metrics dict, whose
  ``'train_loss'`` entry becomes the required field."""
  metrics = dict(metrics)
  return types.SiloOutput(state, upload, metrics.pop('train_loss'), metrics)


def own_model_eval_variables(silo: types.SiloInput):
  """Evaluation with the silo's own model (a ``SiloModel`` state)."""
  return model_variables(silo.state.params, silo.state.model_state)
