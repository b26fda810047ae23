# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""Silo-level DP-FedAvg: a server wrapper (McMahan et al. 2018, "Learning
Differentially Private Recurrent Language Models",
https://arxiv.org/abs/1710.06963).

The cross-device threat model: what is protected is a whole silo's
contribution. Every silo's upload (a delta of the broadcast model) is
clipped to L2 norm ``dp_server_clip``; the server adds Gaussian noise of
standard deviation ``dp_server_noise_multiplier * dp_server_clip`` to the
SUM of the clipped uploads and divides by the fixed cohort size ``m``
(``dp_cohort``: the silos aggregated per round, every real silo, or those
``clients_per_round`` draws). The engine already averages the uploads with
uniform weights over the real silos (``aggregation='uniform'``, required),
so the noisy mean is that average plus noise of std ``sigma * S / m``.
Mesh dummies and padding carry weight 0 and change nothing.

The noise key lives in the server state and is split every round: the
server state is replicated, so every device and process draws the same
noise. Accounting: with every silo in every round, a Gaussian mechanism
per round (PLD or RDP) under add-or-remove-one-silo adjacency; with
``clients_per_round``, each group's draw of ``m_g`` of ``N_g`` silos
without replacement (``SampledWithoutReplacementDpEvent``, RDP only:
dp-accounting's PLD does not take it). That event is analysed under
replace-one adjacency, where one silo changes the clipped sum by up to
``2 S``: the accounted noise multiplier is then ``sigma / 2``, for every
group alike, so that one epsilon holds for the run. Delta defaults to
1 / (real silos).
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from fedhelp_jax import privacy
from fedhelp_jax import types
from fedhelp_jax.algorithms import common

HPARAMS = ('dp_server_clip', 'dp_server_noise_multiplier', 'dp_cohort')
_NOISE_TAG = 0x5D1  # fold_in tag of the server noise key (any constant).


class ServerState(NamedTuple):
  inner: Any  # The wrapped algorithm's server state.
  noise_key: jax.Array  # Replicated; split once per round.


def clip_upload(upload, clip: jax.Array):
  """``upload`` scaled to L2 norm at most ``clip``; and whether it was."""
  norm = optax.tree.norm(upload)
  scale = jnp.minimum(1.0, clip / jnp.maximum(norm, 1e-12))
  return jax.tree.map(lambda u: u * scale, upload), scale < 1.0


def with_silo_dp(alg: types.FederatedAlgorithm) -> types.FederatedAlgorithm:
  """``alg`` with clipped uploads and a noisy server mean (silo-level DP).

  ``alg`` must stream its server step from the weighted mean of uploads
  that are deltas of the broadcast (``server_update_from_mean``): the
  FedAvg family (FedAvg, FedProx, FedAdam, FedYogi, FedAdagrad).
  """
  if alg.server_update_from_mean is None:
    raise ValueError(f'{alg.name}: silo-level DP wraps a server step of the '
                     'mean upload (server_update_from_mean); this algorithm '
                     'has none.')

  def init(rng, data):
    server, clients = alg.init(rng, data)
    return ServerState(server, jax.random.fold_in(rng, _NOISE_TAG)), clients

  def download(server):
    return alg.download(server.inner)

  def local_update(silo, hparams, key):
    out = alg.local_update(silo, hparams, key)
    if jax.tree.structure(out.upload) != jax.tree.structure(silo.broadcast):
      raise ValueError(f'{alg.name}: its upload is not a delta of the '
                       'broadcast model, so it cannot be clipped per silo.')
    upload, clipped = clip_upload(out.upload, hparams['dp_server_clip'])
    return out._replace(upload=upload, metrics={
        **out.metrics, 'upload_clipped': clipped.astype(jnp.float32)})

  def server_update_from_mean(server, mean, hparams):
    key, noise_key = jax.random.split(server.noise_key)
    std = (hparams['dp_server_noise_multiplier'] * hparams['dp_server_clip']
           / jnp.maximum(hparams['dp_cohort'], 1.0))
    std = jnp.where(hparams['dp_server_noise_multiplier'] > 0, std, 0.0)
    leaves, treedef = jax.tree.flatten(mean)
    keys = jax.random.split(noise_key, len(leaves))
    noisy = jax.tree.unflatten(treedef, [
        x + std * jax.random.normal(k, x.shape, x.dtype)
        for x, k in zip(leaves, keys)])
    return ServerState(
        alg.server_update_from_mean(server.inner, noisy, hparams), key)

  return alg._replace(name=f'{alg.name}+silo_dp', init=init,
                      download=download, local_update=local_update,
                      server_update=common.server_update_via_mean(
                          server_update_from_mean),
                      server_update_from_mean=server_update_from_mean)


def cohort(group_sizes: dict[str, int], sampled: dict[str, int]) -> int:
  """Silos aggregated per round: each group's draw, or all its silos."""
  return sum(sampled.get(g) or n for g, n in group_sizes.items())


def is_sampled(group_sizes: dict[str, int], sampled: dict[str, int]) -> bool:
  """Whether some group draws fewer than all its silos per round."""
  return any(0 < sampled.get(g, 0) < n for g, n in group_sizes.items())


def round_event(group_sizes: dict[str, int], sampled: dict[str, int],
                sigma: float, sampling: str = 'fixed'):
  """One round's event for the worst group (the largest draw fraction);
  with fixed-size sampling, under replace-one adjacency (noise multiplier
  sigma/2); with Poisson sampling, a ``PoissonSampledDpEvent`` of the
  largest probability under add-or-remove-one."""
  import dp_accounting  # pylint: disable=g-import-not-at-top
  if sigma <= 0:
    return dp_accounting.NonPrivateDpEvent()
  if not is_sampled(group_sizes, sampled):
    return dp_accounting.GaussianDpEvent(sigma)
  if sampling == 'poisson':
    q = max((sampled.get(g) or n) / n for g, n in group_sizes.items())
    gaussian = dp_accounting.GaussianDpEvent(sigma)
    return (gaussian if q >= 1.0
            else dp_accounting.PoissonSampledDpEvent(q, gaussian))
  gaussian = dp_accounting.GaussianDpEvent(sigma / 2)
  fractions = {g: (sampled.get(g) or n) / n for g, n in group_sizes.items()}
  worst = max(fractions, key=fractions.get)
  if fractions[worst] >= 1.0:
    return gaussian
  return dp_accounting.SampledWithoutReplacementDpEvent(
      group_sizes[worst], sampled[worst], gaussian)


def plan(dp: privacy.DPConfig, group_sizes: dict[str, int],
         sampled: dict[str, int], *, rounds: int, noise_multiplier: float,
         clip: float, sampling: str = 'fixed') -> privacy.Plan:
  """Settles sigma, the rounds and delta of a silo-level run under ``dp``.

  Raises:
    ValueError: the PLD accountant with sampled silos (use 'rdp'), or a
      budget that cannot hold (``privacy.settle``).
  """
  import dp_accounting  # pylint: disable=g-import-not-at-top
  delta = dp.delta or 1.0 / sum(group_sizes.values())
  replace_one = is_sampled(group_sizes, sampled) and sampling == 'fixed'
  if dp.accountant == 'pld' and replace_one:
    raise ValueError(
        "dp.accountant: dp-accounting's PLD accountant cannot account "
        'silos sampled without replacement (clients_per_round); use '
        "accountant 'rdp'.")

  event = lambda s: round_event(group_sizes, sampled, s, sampling)

  def epsilon(sigma, r):
    return privacy.epsilon_after(event(sigma), r, delta, dp.accountant,
                                 replace_one)

  def calibrate(target, r):
    return float(dp_accounting.calibrate_dp_mechanism(
        lambda: privacy.make_accountant(dp.accountant, replace_one),
        lambda s: dp_accounting.SelfComposedDpEvent(event(s), int(r)),
        target, delta, dp_accounting.LowerEndpointAndGuess(0.05, 1.0)))

  mechanism = privacy.Mechanism(epsilon, calibrate)
  sigma, total, note = privacy.settle(dp, mechanism, rounds=rounds,
                                      sigma=noise_multiplier, delta=delta)
  record = {
      'level': 'silo', 'epsilon': epsilon(sigma, total), 'delta': delta,
      'accountant': dp.accountant,
      'adjacency': 'replace_one' if replace_one else 'add_or_remove_one',
      'event': repr(event(sigma)),
      'sampling': sampling if is_sampled(group_sizes, sampled) else 'none',
      'rounds': total, 'noise_multiplier': sigma, 'clip_norm': clip,
      'cohort': cohort(group_sizes, sampled), 'silos': dict(group_sizes),
      'sampled': dict(sampled), 'budget': dp.epsilon, 'note': note}
  return privacy.Plan(sigma, total, delta, record,
                      lambda r: epsilon(sigma, r))
