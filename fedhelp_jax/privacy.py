# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""Record-level differential privacy: DP-SGD inside every silo, accounted
with ``dp-accounting``.

The cross-silo threat model: each hospital protects its own patients. Every
local step that reads a silo's private records computes per-example
gradients (``vmap(grad)``), clips each to ``dp_clip_norm`` with optax's
``per_example_global_norm_clip``, adds Gaussian noise of standard deviation
``dp_noise_multiplier * dp_clip_norm`` to the sum and divides by the
expected batch size. Noise multiplier and clip norm are hyperparameters
(arrays), so K privacy levels run as one vmapped sweep, each config with
its own epsilon.

Batches (``dp.sampling``):
  * ``'poisson'`` (default): each step takes every record with probability
    ``q = min(1, batch_size / n)``, truncated at random to ``max_batch``
    records (a static shape). The accounting event is dp-accounting's
    ``TruncatedSubsampledGaussianDpEvent`` (``PoissonSampledDpEvent`` when no
    truncation is possible), composed over every step of every round.
  * ``'shuffle'``: the ordinary schedule (shuffle, then read cyclically).
    No amplification by sampling is claimed: a record read in ``k`` batches
    of a round costs ``k`` Gaussian mechanisms.

Epsilon is per silo (each silo's records, its own ``n``); the run reports
the largest over silos, at ``delta`` = 1 / (the largest silo's records) by
default. Non-private things a silo holds (FedHelp's FM answers on the
public set, the public set itself) are read without noise: they are not
patient records of that silo.
"""

import dataclasses
import math
from typing import Any, Callable, Mapping, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

LEVELS = ('none', 'record', 'silo')
SAMPLINGS = ('poisson', 'shuffle')
ACCOUNTANTS = ('pld', 'rdp')
ON_BUDGET = ('refuse', 'stop', 'calibrate')
# The hyperparameters DP-SGD reads (arrays, so a sweep can vary them).
HPARAMS = ('dp_clip_norm', 'dp_noise_multiplier')


@dataclasses.dataclass(frozen=True)
class DPConfig:
  """``config.dp``; unknown keys are refused (``from_config``).

  Attributes:
    level: 'none', 'record' (DP-SGD in every silo) or 'silo' (DP-FedAvg at
      the server, ``dp_fedavg``).
    clip_norm: default of hparam ``dp_clip_norm`` (per-example L2 clip).
    noise_multiplier: default of hparam ``dp_noise_multiplier`` (sigma).
    sampling: 'poisson' or 'shuffle' (see the module docstring).
    max_batch: the Poisson batch's static capacity (truncation size);
      default twice ``local.batch_size``.
    accountant: 'pld' (default) or 'rdp'.
    delta: target delta; default 1 / (records of the largest silo).
    epsilon: a privacy budget, or None for none.
    on_budget: what a run whose epsilon would exceed ``epsilon`` does:
      'refuse' to start, 'stop' after the last round within budget, or
      'calibrate' the noise multiplier to spend exactly the budget.
    server_clip: default of hparam ``dp_server_clip`` (silo level: each
      silo's upload L2 clip).
    server_noise_multiplier: default of hparam
      ``dp_server_noise_multiplier`` (silo level).
  """
  level: str = 'none'
  clip_norm: float = 1.0
  noise_multiplier: float = 1.0
  sampling: str = 'poisson'
  max_batch: Optional[int] = None
  accountant: str = 'pld'
  delta: Optional[float] = None
  epsilon: Optional[float] = None
  on_budget: str = 'refuse'
  server_clip: float = 1.0
  server_noise_multiplier: float = 1.0

  @classmethod
  def from_config(cls, section: Optional[Mapping[str, Any]]) -> 'DPConfig':
    section = dict(section or {})
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(section) - known)
    if unknown:
      raise ValueError(f'config.dp: unknown field(s) {unknown}; known: '
                       f'{sorted(known)}.')
    return cls(**section)

  @property
  def enabled(self) -> bool:
    return self.level == 'record'


class PrivateSteps(NamedTuple):
  """The static part of DP-SGD a silo's local step needs.

  Attributes:
    sampling: 'poisson' or 'shuffle'.
    max_batch: records per step's static batch under 'poisson'.
  """
  sampling: str
  max_batch: int


def poisson_rows(rng: jax.Array, n: jax.Array, max_examples: int,
                 batch_size: int, max_batch: int):
  """One Poisson-sampled batch of ONE silo: ``(rows [M], mask [M])``.

  Every one of the silo's ``n`` records is taken with probability
  ``q = min(1, batch_size / n)``; if more than ``M = max_batch`` are taken,
  a uniformly random ``M`` of them are kept (the truncation the accounting
  event describes). ``mask`` marks real rows; the others repeat row 0 and
  must be given zero weight.
  """
  take_key, order_key = jax.random.split(rng)
  q = sampling_probability(n, batch_size)
  valid = jnp.arange(max_examples) < n
  taken = valid & (jax.random.uniform(take_key, (max_examples,)) < q)
  # Taken rows first, in random order: the first M are a uniform subset.
  score = jnp.where(taken, jax.random.uniform(order_key, (max_examples,)),
                    2.0)
  order = jnp.argsort(score)[:max_batch]
  mask = taken[order]
  return jnp.where(mask, order, 0).astype(jnp.int32), mask


def sampling_probability(n, batch_size: int):
  """``q = min(1, batch_size / n)`` (numpy or jax, by the type of ``n``)."""
  xp = jnp if isinstance(n, jax.Array) else np
  return xp.minimum(1.0, batch_size / xp.maximum(n, 1))


def noisy_clipped_grad(example_loss: Callable[..., Any], params, xs,
                       ys, mask: jax.Array, hparams, rng: jax.Array,
                       denominator: jax.Array, *, has_aux: bool = False):
  """DP-SGD's gradient: ``(sum_i clip(g_i) * mask_i + N(0, (sigma C)^2)) /
  denominator``, and the per-example losses ``[M]`` (with ``has_aux``,
  ``(loss, aux)`` per example).

  ``example_loss(params, x, y)`` is ONE record's loss (``x`` and ``y`` may
  be pytrees); ``sigma`` and ``C`` are ``hparams['dp_noise_multiplier']``
  and ``hparams['dp_clip_norm']``.
  """
  losses, grads = jax.vmap(jax.value_and_grad(example_loss, has_aux=has_aux),
                           in_axes=(None, 0, 0))(params, xs, ys)
  weight = mask.astype(jnp.float32)
  grads = jax.tree.map(
      lambda g: g * weight.reshape((-1,) + (1,) * (g.ndim - 1)), grads)
  clip = hparams['dp_clip_norm']
  leaves, treedef = jax.tree.flatten(grads)
  summed, _ = optax.per_example_global_norm_clip(leaves, clip)
  keys = jax.random.split(rng, len(summed))
  # A zero noise multiplier adds exact zeros, whatever the clip (inf too).
  std = jnp.where(hparams['dp_noise_multiplier'] > 0,
                  hparams['dp_noise_multiplier'] * clip, 0.0)
  noisy = [s + std * jax.random.normal(k, s.shape, s.dtype)
           for s, k in zip(summed, keys)]
  return jax.tree.unflatten(treedef, [g / denominator for g in noisy]), losses


# ---------------------------------------------------------------------------
# Accounting (host side, dp-accounting).
# ---------------------------------------------------------------------------


def step_event(n: int, *, batch_size: int, max_batch: int, sampling: str,
               noise_multiplier: float, steps: int, releases: int = 1):
  """The dp-accounting event of ``steps`` DP-SGD steps on ONE silo of
  ``n`` records (one round's worth, or more). ``releases`` Gaussian
  releases of one batch, each of sensitivity C and noise sigma C, are
  jointly one Gaussian of sensitivity sqrt(k) C: multiplier sigma/sqrt(k).
  """
  import dp_accounting  # pylint: disable=g-import-not-at-top
  if noise_multiplier <= 0:
    return dp_accounting.NonPrivateDpEvent()
  noise_multiplier = noise_multiplier / math.sqrt(releases)
  gaussian = dp_accounting.GaussianDpEvent(noise_multiplier)
  if sampling == 'shuffle':
    # Cyclic reads: a record sits in at most ceil(steps * B / n) batches.
    reads = math.ceil(steps * batch_size / max(n, 1))
    return dp_accounting.SelfComposedDpEvent(gaussian, reads)
  q = float(sampling_probability(np.float64(n), batch_size))
  if max_batch >= n:  # No draw can exceed the capacity: no truncation.
    one = dp_accounting.PoissonSampledDpEvent(q, gaussian)
  else:
    one = dp_accounting.TruncatedSubsampledGaussianDpEvent(
        dataset_size=int(n), sampling_probability=q,
        truncated_batch_size=int(max_batch),
        noise_multiplier=float(noise_multiplier))
  return dp_accounting.SelfComposedDpEvent(one, int(steps))


def make_accountant(name: str, replace_one: bool = False):
  """A fresh dp-accounting accountant: 'pld' or 'rdp' (add-or-remove-one
  neighbours; ``replace_one`` for RDP under replace-one adjacency)."""
  import dp_accounting  # pylint: disable=g-import-not-at-top
  if replace_one:
    if name != 'rdp':
      raise ValueError('replace-one adjacency is accounted by RDP only.')
    return dp_accounting.rdp.RdpAccountant(
        neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_ONE)
  if name == 'pld':
    # Pessimistic discretization 1e-3 (an upper bound on epsilon, 10x
    # faster than the default 1e-4; they agree to ~1e-4 relative here).
    return dp_accounting.pld.PLDAccountant(value_discretization_interval=1e-3)
  if name == 'rdp':
    return dp_accounting.rdp.RdpAccountant()
  raise ValueError(f'dp.accountant must be one of {ACCOUNTANTS}, got '
                   f'{name!r}.')


def epsilon_after(event, rounds: int, delta: float, accountant: str,
                  replace_one: bool = False) -> float:
  """Epsilon at ``delta`` after ``rounds`` compositions of one round's
  ``event``."""
  import dp_accounting  # pylint: disable=g-import-not-at-top
  if rounds <= 0:
    return 0.0
  acc = make_accountant(accountant, replace_one)
  acc.compose(dp_accounting.SelfComposedDpEvent(event, int(rounds)))
  return float(acc.get_epsilon(delta))


class SiloBudget(NamedTuple):
  """What the accountant needs of one silo: records, steps per round, and
  Gaussian releases per step's batch (``AlgorithmSpec.dp_releases``)."""
  n: int
  steps_per_round: int
  releases: int = 1


def silo_epsilons(silos, *, rounds: int, noise_multiplier: float,
                  batch_size: int, max_batch: int, sampling: str,
                  delta: float, accountant: str) -> dict[SiloBudget, float]:
  """Each distinct silo's epsilon after ``rounds`` (silos alike in records,
  steps and releases are accounted once)."""
  out: dict[SiloBudget, float] = {}
  for silo in silos:
    if silo not in out:
      event = step_event(silo.n, batch_size=batch_size, max_batch=max_batch,
                         sampling=sampling,
                         noise_multiplier=noise_multiplier,
                         steps=silo.steps_per_round, releases=silo.releases)
      out[silo] = epsilon_after(event, rounds, delta, accountant)
  return out


def run_epsilon(silos, **kw) -> float:
  """The run's epsilon: the largest over silos (each silo's records are
  protected by its own steps); ``kw`` as ``silo_epsilons``."""
  return max(silo_epsilons(silos, **kw).values(), default=0.0)


def calibrate_noise(silos, *, rounds: int, target_epsilon: float, **kw
                    ) -> float:
  """The smallest noise multiplier whose run epsilon is ``target_epsilon``
  (dp-accounting's ``calibrate_dp_mechanism`` over the worst silo)."""
  import dp_accounting  # pylint: disable=g-import-not-at-top
  delta = kw.pop('delta')
  accountant = kw.pop('accountant')
  worst = max(silos, key=lambda s: _exposure(s, kw['batch_size']))

  def event(sigma):
    one = step_event(worst.n, noise_multiplier=sigma,
                     steps=worst.steps_per_round, releases=worst.releases,
                     **kw)
    return dp_accounting.SelfComposedDpEvent(one, int(rounds))

  sigma = dp_accounting.calibrate_dp_mechanism(
      lambda: make_accountant(accountant), event, target_epsilon, delta,
      dp_accounting.LowerEndpointAndGuess(0.05, 1.0))
  # The worst silo by exposure is a heuristic: check every silo.
  spent = run_epsilon(silos, rounds=rounds, noise_multiplier=sigma,
                      delta=delta, accountant=accountant, **kw)
  if spent > target_epsilon * (1 + 1e-3):
    raise ValueError(f'calibration gave sigma {sigma:.4g} with epsilon '
                     f'{spent:.4g} > {target_epsilon:g} on another silo.')
  return float(sigma)


def _exposure(silo, batch_size: int) -> float:
  """Expected batches a record of the silo joins per round (a ranking)."""
  return (silo.steps_per_round * silo.releases
          * min(1.0, batch_size / max(silo.n, 1)))


class Plan(NamedTuple):
  """A run's privacy, settled on the host before training.

  Attributes:
    noise_multiplier: sigma the run trains with (calibrated, or as set).
    rounds: rounds the run trains (fewer than asked under on_budget 'stop').
    delta: the delta every epsilon is stated at.
    record: what ``summary.json`` carries under 'privacy'.
    epsilon_at: ``rounds -> epsilon`` at this sigma and delta (for the
      per-evaluation log).
  """
  noise_multiplier: float
  rounds: int
  delta: float
  record: dict
  epsilon_at: Callable[[int], float]


def silo_budgets(fed, *, batch_size: int, local_steps: Optional[int],
                 local_epochs: Optional[float],
                 releases: Optional[Mapping[str, int]] = None
                 ) -> list[SiloBudget]:
  """Every real silo's records, DP-SGD steps per round and releases per
  step (``releases``: group -> count, default 1)."""
  out = []
  for name, group in fed.items():
    for n in np.asarray(group['n']):
      if n <= 0:
        continue
      steps = (local_steps if local_steps is not None
               else math.ceil(local_epochs * int(n) / batch_size))
      out.append(SiloBudget(int(n), int(steps),
                            int((releases or {}).get(name, 1))))
  return out


def with_plan_noise(hparams: Mapping[str, Any], plan: Plan) -> dict:
  """``hparams`` with the noise multiplier ``plan`` settled (record level's
  ``dp_noise_multiplier``, or silo level's ``dp_server_noise_multiplier``).
  """
  key = ('dp_noise_multiplier' if plan.record['level'] == 'record'
         else 'dp_server_noise_multiplier')
  return dict(hparams, **{key: jnp.float32(plan.noise_multiplier)})


class Mechanism(NamedTuple):
  """A run's privacy as a function of its noise and length (host side).

  Attributes:
    epsilon: ``(sigma, rounds) -> epsilon`` at the run's delta: the worst
      over the protected units (records of every silo, or silos).
    calibrate: ``(target_epsilon, rounds) -> sigma`` spending the target.
  """
  epsilon: Callable[[float, int], float]
  calibrate: Callable[[float, int], float]


def settle(dp: DPConfig, mechanism: Mechanism, *, rounds: int, sigma: float,
           delta: float) -> tuple[float, int, str]:
  """``(sigma, rounds, note)`` that keep ``dp.epsilon`` (refuse, stop early
  or calibrate, by ``dp.on_budget``).

  Raises:
    ValueError: the budget cannot hold under on_budget 'refuse' (or 'stop'
      when not even one round fits), naming the rounds and the sigma that
      would fit.
  """
  sigma, total = float(sigma), int(rounds)
  if dp.epsilon is None:
    return sigma, total, ''
  spent = mechanism.epsilon(sigma, total)
  if spent <= dp.epsilon:
    return sigma, total, ''
  if dp.on_budget == 'calibrate':
    sigma = mechanism.calibrate(dp.epsilon, total)
    return sigma, total, f'noise multiplier calibrated to {sigma:.4g}'
  lo, hi = 0, total  # Epsilon grows with the rounds: bisect.
  while lo < hi:
    mid = (lo + hi + 1) // 2
    if mechanism.epsilon(sigma, mid) <= dp.epsilon:
      lo = mid
    else:
      hi = mid - 1
  if dp.on_budget == 'stop' and lo > 0:
    return sigma, lo, f'stopped at round {lo}, the last within budget'
  need = mechanism.calibrate(dp.epsilon, total)
  raise ValueError(
      f'dp.epsilon: {total} rounds at noise multiplier {sigma:g} spend '
      f'epsilon {spent:.3g} > the budget {dp.epsilon:g} (delta '
      f'{delta:.3g}); {lo} round(s) fit. Set rounds <= {lo}, '
      f'noise_multiplier >= {need:.3g}, or dp.on_budget to stop or '
      'calibrate.')


def plan(dp: DPConfig, silos, *, rounds: int, noise_multiplier: float,
         clip_norm: float, batch_size: int, max_batch: int) -> Plan:
  """Settles sigma, the rounds and delta of a record-level run under ``dp``.

  Raises:
    ValueError: the budget ``dp.epsilon`` cannot hold (``settle``), or
      the RDP accountant meets a truncated batch it cannot account.
  """
  delta = dp.delta or 1.0 / max(s.n for s in silos)
  kw = dict(batch_size=batch_size, max_batch=max_batch,
            sampling=dp.sampling, delta=delta, accountant=dp.accountant)
  if (dp.accountant == 'rdp' and dp.sampling == 'poisson'
      and any(s.n > max_batch for s in silos)):
    raise ValueError(
        f'dp.accountant: the RDP accountant cannot account truncated Poisson '
        f'batches (a silo holds {max(s.n for s in silos)} records, more '
        f'than dp.max_batch = {max_batch}); use accountant pld, or set '
        'dp.max_batch to at least the largest silo.')
  epsilon = lambda sigma, r: run_epsilon(silos, rounds=r,
                                         noise_multiplier=sigma, **kw)
  mechanism = Mechanism(epsilon, lambda target, r: calibrate_noise(
      silos, rounds=r, target_epsilon=target, **kw))
  sigma, total, note = settle(dp, mechanism, rounds=rounds,
                              sigma=noise_multiplier, delta=delta)
  # The worst silo at the rounds actually run, its epsilon the run's.
  per_silo = silo_epsilons(silos, rounds=total, noise_multiplier=sigma, **kw)
  worst = max(per_silo, key=per_silo.get)
  event = step_event(worst.n, noise_multiplier=sigma,
                     steps=worst.steps_per_round, releases=worst.releases,
                     batch_size=batch_size, max_batch=max_batch,
                     sampling=dp.sampling)
  record = {
      'level': dp.level, 'epsilon': per_silo[worst], 'delta': delta,
      'accountant': dp.accountant, 'sampling': dp.sampling,
      'event': repr(event), 'rounds': total, 'noise_multiplier': sigma,
      'clip_norm': clip_norm, 'batch_size': batch_size,
      'max_batch': max_batch, 'worst_silo_records': worst.n,
      'budget': dp.epsilon, 'note': note}
  return Plan(sigma, total, delta, record, lambda r: epsilon(sigma, r))
