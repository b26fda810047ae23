# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""The one non-finite system: the round's flags read as events, one policy,
one error type.

Every compiled round reports, in its ``engine.RoundMetrics``, which silo
updates were not finite (``nonfinite``), which silos were drawn
(``sampled``) and whether the server state stayed finite
(``server_nonfinite``). This module turns those flags into
``NonFiniteEvent`` records and applies a policy to them. The library path
(``engine.run_rounds``), sweeps (``engine.run_sweep_rounds``) and the CLI's
host loop (``runner.run``) all call ``Guard``; nothing else raises
``NonFiniteError``.

Policies:
  * ``'stop'``: any non-finite silo update or server state raises.
  * ``'skip'``: the round was built with ``nonfinite='skip'``, so the engine
    already dropped such updates (weight 0, state unchanged); raises only
    when every drawn silo of a round was dropped (the server would silently
    stand still) or the server state itself went non-finite.
  * ``'record'``: never raises; the events are only reported.
"""

from typing import Any, Mapping, NamedTuple, Optional, Sequence

import jax
import numpy as np

POLICIES = ('stop', 'skip', 'record')


class NonFiniteEvent(NamedTuple):
  """One non-finite silo update, or a non-finite server state.

  Attributes:
    round: 1-based round of the run (resumed rounds counted).
    group: the silo's group; None for the server state.
    index: the silo's index within its group (None for the server).
    silo: the silo's global id (its index when no ids are known; None for
      the server).
    quantity: 'train_loss' (the loss itself is not finite), 'update' (the
      loss was finite; the upload or another metric was not) or 'server'.
    train_loss: the silo's train loss that round (None for the server).
  """
  round: int
  group: Optional[str]
  index: Optional[int]
  silo: Optional[int]
  quantity: str
  train_loss: Optional[float]

  def describe(self) -> str:
    if self.group is None:
      return f'round {self.round}: the server state became non-finite.'
    what = ('train_loss' if self.quantity == 'train_loss'
            else 'model update (its train_loss was finite)')
    return (f'round {self.round}: silo {self.silo} (group {self.group!r}, '
            f'index {self.index}) produced a non-finite {what}, '
            f'train_loss={self.train_loss}.')


class NonFiniteError(FloatingPointError):
  """A round produced a non-finite loss, update or server state that the
  policy does not allow.

  Attributes:
    events: the ``NonFiniteEvent``s of the call that raised.
  """

  def __init__(self, message: str, events: Sequence[NonFiniteEvent] = ()):
    super().__init__(message)
    self.events = list(events)


def events(metrics, silo_ids: Optional[Mapping[str, Sequence[int]]] = None
           ) -> list[NonFiniteEvent]:
  """Every non-finite silo update and server state in ``metrics``.

  Args:
    metrics: an ``engine.RoundMetrics`` whose leaves carry a leading rounds
      axis (one config's; host or device arrays).
    silo_ids: optional group -> global silo ids of the real silos; columns
      past them (mesh padding) are dropped, and events name the global id.

  Returns:
    The events ordered by round; within a round silo events (by group, then
    index) come before the server's.
  """
  rounds = np.asarray(metrics.round).reshape(-1)
  out = []
  for g in sorted(metrics.nonfinite):
    flags = np.asarray(metrics.nonfinite[g], bool)
    losses = np.asarray(metrics.silos[g]['train_loss'])
    ids = None if silo_ids is None else list(silo_ids[g])
    for r, c in np.argwhere(flags):
      if ids is not None and c >= len(ids):
        continue
      loss = float(losses[r, c])
      out.append(NonFiniteEvent(
          int(rounds[r]), g, int(c), int(c) if ids is None else int(ids[c]),
          'update' if np.isfinite(loss) else 'train_loss', loss))
  server = np.asarray(metrics.server_nonfinite, bool).reshape(-1)
  out += [NonFiniteEvent(int(rounds[r]), None, None, None, 'server', None)
          for r in np.flatnonzero(server)]
  return sorted(out, key=lambda e: (e.round, e.group is None, e.group or '',
                                    e.index or 0))


def drawn_per_round(metrics, silo_ids: Optional[Mapping[str, Sequence[int]]]
                    = None) -> dict[int, int]:
  """Round -> how many (real) silos trained that round."""
  rounds = np.asarray(metrics.round).reshape(-1)
  total = np.zeros(len(rounds), np.int64)
  for g, drawn in metrics.sampled.items():
    drawn = np.asarray(drawn, bool)
    if silo_ids is not None:
      drawn = drawn[:, :len(silo_ids[g])]
    total += drawn.sum(axis=1)
  return {int(r): int(n) for r, n in zip(rounds, total)}


def enforce(policy: str, found: Sequence[NonFiniteEvent],
            drawn: Mapping[int, int], prefix: str = '') -> None:
  """Raises ``NonFiniteError`` when ``policy`` does not allow ``found``.

  Args:
    policy: one of ``POLICIES``.
    found: the events (``events``).
    drawn: round -> silos that trained (``drawn_per_round``).
    prefix: prepended to the message (e.g. the config's name).
  """
  if policy not in POLICIES:
    raise ValueError(f'nonfinite={policy!r}: expected one of {POLICIES}.')
  if policy == 'record':
    return
  silo = [e for e in found if e.group is not None]
  per_round: dict[int, int] = {}
  for e in silo:
    per_round[e.round] = per_round.get(e.round, 0) + 1
  all_bad = sorted(r for r, n in per_round.items() if n >= drawn.get(r, 0))
  server = [e for e in found if e.group is None]
  if policy == 'skip' and all_bad:
    problem = (f'round {all_bad[0]}: every silo produced a non-finite '
               "train_loss or update, so nonfinite='skip' has nothing left "
               'to aggregate.')
  elif policy == 'stop' and silo:
    problem = silo[0].describe()
  elif server:
    problem = server[0].describe()
  else:
    return
  raise NonFiniteError(prefix + problem, found)


class Guard(NamedTuple):
  """The policy a compiled chunk's metrics are checked against.

  Attributes:
    policy: one of ``POLICIES``.
    silo_ids: per config (a sequence) or for all configs (a mapping), group
      -> global ids of the real silos; None: every column is a silo, named
      by its index.
    labels: per config, a prefix for its messages (default 'config k: '
      with several configs, none with one).
  """
  policy: str
  silo_ids: Any = None
  labels: Optional[Sequence[str]] = None

  def __call__(self, metrics, num_configs: Optional[int] = None
               ) -> list[list[NonFiniteEvent]]:
    """Checks ``metrics`` (leaves ``[R, ...]``, or ``[K, R, ...]`` with
    ``num_configs``); returns the events per config, raising on the first
    config whose events the policy does not allow."""
    k_configs = 1 if num_configs is None else num_configs
    out = []
    for k in range(k_configs):
      one = (metrics if num_configs is None else
             jax.tree.map(lambda x, k=k: np.asarray(x)[k], metrics))
      ids = (self.silo_ids[k] if isinstance(self.silo_ids, (list, tuple))
             else self.silo_ids)
      if self.labels is not None:
        prefix = self.labels[k]
      else:
        prefix = f'config {k}: ' if num_configs is not None else ''
      found = events(one, ids)
      enforce(self.policy, found, drawn_per_round(one, ids), prefix)
      out.append(found)
    return out
