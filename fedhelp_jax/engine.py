# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""The compiled federated round.

This is the ONLY module that applies ``jax.jit``, ``jax.vmap`` and
``lax.map`` over silos, ``lax.scan`` over rounds, and sharding (the traced
helpers algorithms call, e.g. the scan over one silo's local steps, are in
``traced.py``; the host-side placement is in ``mesh.py``). Algorithms are
plain functions of one silo (``local_update``) and one server step
(``server_update``); this module turns them into

  round_fn(state, data, weights, hparams) -> (state, metrics)

where every group of silos is mapped with the chosen client-parallel strategy
and all groups run inside the same program, and into ``run_rounds(n)``, a
``lax.scan`` of ``n`` rounds with no host synchronisation in between.

Client-parallel strategies:
  * ``vmap``: the whole group at once. Per-silo conv weights turn into a
    grouped convolution, which is fast on GPUs/TPUs and slow on CPUs.
  * ``chunked``: ``lax.map(..., batch_size=k)``: ``k`` silos at a time, a
    sequential loop over chunks inside the compiled program (k=1 is a plain
    in-program loop over silos, which is what CPUs like).
  * ``loop``: a Python loop of jitted single-silo updates (FedJAX's default).
    It is the reference for tests and the baseline for benchmarks only.
  * ``auto``: picks per backend (see ``resolve_strategy``) and says why.
"""

import dataclasses
import functools
import weakref
from typing import Any, Callable, Mapping, NamedTuple, Optional, Sequence

import chex
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

from fedhelp_jax import guards
from fedhelp_jax import mesh as mesh_lib
from fedhelp_jax import traced
from fedhelp_jax import types
from fedhelp_jax import federation_checks

# Host-side placement (``mesh.py``), named here too: ``engine`` is the one
# import a run needs.
make_mesh = mesh_lib.make_mesh
make_sweep_mesh = mesh_lib.make_sweep_mesh
shard_sweep_state = mesh_lib.shard_sweep_state
shard_sweep_inputs = mesh_lib.shard_sweep_inputs
shard_sweep_hparams = mesh_lib.shard_sweep_hparams
place = mesh_lib.place
shard_clients = mesh_lib.shard_clients
process_silo_rows = mesh_lib.process_silo_rows
shard_process_local_clients = mesh_lib.shard_process_local_clients
replicate = mesh_lib.replicate
fetch = mesh_lib.fetch
local_rows = mesh_lib.local_rows
shard_state = mesh_lib.shard_state
pad_group_clients = mesh_lib.pad_group_clients
pad_federation_for_mesh = mesh_lib.pad_federation_for_mesh
unpad_clients = mesh_lib.unpad_clients
# The traced helpers algorithms call (``traced.py``), named here too.
num_local_steps = traced.num_local_steps
local_schedule = traced.local_schedule
scan_local_steps = traced.scan_local_steps
mean_over_active = traced.mean_over_active
weighted_mean_groups = traced.weighted_mean_groups

STRATEGIES = ('vmap', 'chunked', 'loop', 'auto')
SAMPLINGS = ('fixed', 'poisson')  # Of silos per round (``build_round``).
# How a sweep's K configs share one program (``run_sweep_rounds``).
CONFIG_PARALLEL = ('vmap', 'map')

# Measured in benchmarks/round_throughput.py (see README): on CPU, a sequential
# in-program map over silos beats vmap (grouped convolutions) and the Python
# loop; on accelerators vmap wins.
_AUTO = {
    'cpu': ('chunked', 1,
            'CPU: a sequential in-program map (chunk 1) was fastest for the '
            'CNN in benchmarks/round_throughput.py (vmap over per-silo conv '
            'weights lowers to slow grouped convolutions); other models use '
            'the same choice, unmeasured'),
    'gpu': ('vmap', None, 'GPU: vmap runs all silos of a group as one '
            'batched program'),
    'tpu': ('vmap', None, 'TPU: vmap runs all silos of a group as one '
            'batched program'),
}


FederatedState = types.FederatedState


@dataclasses.dataclass(frozen=True)
class Strategy:
  """A resolved client-parallel strategy."""
  name: str
  chunk_size: Optional[int] = None
  reason: str = ''

  def describe(self) -> str:
    chunk = f' (chunk_size={self.chunk_size})' if self.name == 'chunked' else ''
    return f'{self.name}{chunk}: {self.reason}'


def resolve_strategy(strategy: str = 'auto', *,
                     chunk_size: Optional[int] = None,
                     backend: Optional[str] = None) -> Strategy:
  """Resolves ``strategy`` (possibly 'auto') for a backend.

  Args:
    strategy: one of ``STRATEGIES``.
    chunk_size: silos per ``lax.map`` step for 'chunked' (default 1 on CPU,
      4 elsewhere).
    backend: 'cpu', 'gpu' or 'tpu'; defaults to ``jax.default_backend()``.

  Returns:
    The resolved ``Strategy`` with a human-readable reason.
  """
  if strategy not in STRATEGIES:
    raise ValueError(
        f'Unknown client-parallel strategy {strategy!r}; expected one of '
        f'{STRATEGIES}.')
  backend = backend or jax.default_backend()
  if chunk_size is not None and chunk_size < 1:
    raise ValueError(f'chunk_size must be >= 1, got {chunk_size}.')
  if strategy == 'auto':
    name, default_chunk, reason = _AUTO.get(backend, _AUTO['gpu'])
    return Strategy(name, chunk_size or default_chunk, f'auto on {backend}: '
                    + reason)
  if strategy == 'chunked':
    return Strategy('chunked', chunk_size or (1 if backend == 'cpu' else 4),
                    'requested')
  return Strategy(strategy, None, 'requested')


# How K configs of a sweep share one program (``run_sweep_rounds``), per
# backend. Measured in benchmarks/sweep.py (benchmarks/results/
# sweep_plans-cpu.json, 2-core CPU): the vmapped CNN sweep ran at 0.36x the
# speed of K = 8 sequential runs (0.89x with im2col convolutions) and at
# 0.50x for K = 1 (vmapped conv weights become grouped convolutions); the
# map over configs inside one program at 0.94-1.05x.
_AUTO_CONFIG_PARALLEL = {
    'cpu': ('map', 'CPU: a map over configs inside one program runs each '
            'config at its sequential speed; vmap turns per-config conv '
            'weights into slow grouped convolutions (benchmarks/sweep.py)'),
    'gpu': ('vmap', 'GPU: vmap runs the K configs as one batched program'),
    'tpu': ('vmap', 'TPU: vmap runs the K configs as one batched program'),
}


def resolve_config_parallel(name: str = 'auto', *,
                            backend: Optional[str] = None,
                            mesh=None) -> Strategy:
  """Resolves a sweep's config-parallel plan ('auto', 'vmap' or 'map').

  With a ``('configs', 'clients')`` mesh the config axis is vmapped and
  sharded over the mesh's 'configs' devices, whatever ``name`` asks.
  """
  if name not in CONFIG_PARALLEL + ('auto',):
    raise ValueError(f'config_parallel={name!r}: expected one of '
                     f"{CONFIG_PARALLEL + ('auto',)}.")
  if mesh is not None:
    if name == 'map':
      raise ValueError("config_parallel='map' cannot shard configs over a "
                       "mesh; use 'auto' or 'vmap' with a configs mesh.")
    return Strategy('vmap', None, 'configs sharded over the mesh axis '
                    f"'configs' ({mesh.shape['configs']} device groups)")
  if name != 'auto':
    return Strategy(name, None, 'requested')
  backend = backend or jax.default_backend()
  chosen, reason = _AUTO_CONFIG_PARALLEL.get(backend,
                                             _AUTO_CONFIG_PARALLEL['gpu'])
  return Strategy(chosen, None, f'auto on {backend}: {reason}')


# ---------------------------------------------------------------------------
# Client mapping and reductions (DrJAX vocabulary).
# ---------------------------------------------------------------------------


def map_clients(fn: Callable[..., Any], placed: Sequence[Any],
                unplaced: Sequence[Any], strategy: Strategy):
  """Maps ``fn(*placed_slices, *unplaced)`` over the leading client axis.

  Args:
    fn: a function of ONE silo.
    placed: arguments whose leaves have a leading ``[C]`` axis (None allowed).
    unplaced: arguments shared by every silo.
    strategy: a resolved 'vmap' or 'chunked' strategy.

  Returns:
    ``fn``'s outputs stacked over the client axis.
  """
  placed, unplaced = tuple(placed), tuple(unplaced)
  if strategy.name == 'vmap':
    return jax.vmap(lambda *p: fn(*p, *unplaced))(*placed)
  if strategy.name == 'chunked':
    # Chunk 1 is a plain scan over silos, not a vmap of size 1: unbatched,
    # a silo's lax.cond (e.g. a padded local step) really skips its branch.
    chunk = strategy.chunk_size if strategy.chunk_size != 1 else None
    return lax.map(lambda p: fn(*p, *unplaced), placed, batch_size=chunk)
  raise ValueError(f'map_clients cannot run strategy {strategy.name!r}.')


def map_clients_sharded(fn: Callable[..., Any], placed: Sequence[Any],
                        unplaced: Sequence[Any], strategy: Strategy, mesh):
  """``map_clients`` with the client axis split over the mesh's devices.

  Each device maps ``fn`` over ITS OWN silos with ``strategy`` (a
  ``shard_map`` over the 'clients' axis); unplaced arguments are replicated.
  Without it, the partitioner may gather a ``lax.map``-ed (chunked) client
  axis onto every device and run all silos everywhere.

  Args:
    fn: a function of ONE silo.
    placed: arguments with a leading ``[C]`` axis, ``C`` a multiple of the
      mesh size (see ``pad_federation_for_mesh``).
    unplaced: arguments shared by every silo.
    strategy: a resolved 'vmap' or 'chunked' strategy.
    mesh: a mesh with a 'clients' axis.

  Returns:
    ``fn``'s outputs stacked over the (sharded) client axis.
  """
  spec = jax.sharding.PartitionSpec('clients')

  def local(placed, unplaced):
    return map_clients(fn, placed, unplaced, strategy)

  # check_vma=False: silo code has no collectives, so the varying-axes type
  # system only gets in the way. With it on, (1) the gradient w.r.t. a
  # replicated input (the broadcast params) would be psum-ed over devices,
  # the transpose of its implicit broadcast, mixing the silos' training; and
  # (2) every loop whose carry starts from a constant and picks up silo data
  # (pFedNet's ADMM and TV-prox while_loops) fails to type-check unless the
  # algorithm pcasts it: shard_map details that algorithms must not need.
  return jax.shard_map(
      local, mesh=mesh, in_specs=(spec, jax.sharding.PartitionSpec()),
      out_specs=spec, check_vma=False)(tuple(placed), tuple(unplaced))


def _zeros_like_shapes(shapes):
  return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


def map_clients_mean(fn: Callable[..., Any], placed: Sequence[Any],
                     unplaced: Sequence[Any], strategy: Strategy):
  """``map_clients`` for ``fn -> (client, upload, weight, metrics)`` that
  keeps a running weighted sum of the uploads instead of stacking them.

  With 'chunked', silos run in a ``lax.scan`` (``chunk_size`` at a time,
  vmapped within a chunk; a remainder chunk runs last) whose carry is
  ``(sum_c w_c * upload_c, sum_c w_c)``: the memory of the uploads is one
  model, not ``C``. With 'vmap' the uploads of the group exist at once
  anyway and are contracted with the weights.

  Returns:
    ``(clients [C, ...], weighted upload sum, weight sum, metrics [C])``.
  """
  placed, unplaced = tuple(placed), tuple(unplaced)
  one = lambda *p: fn(*p, *unplaced)
  if strategy.name == 'vmap':
    clients, uploads, weights, metrics = jax.vmap(one)(*placed)
    total = jax.tree.map(lambda x: jnp.tensordot(weights, x, axes=1), uploads)
    return clients, total, jnp.sum(weights), metrics
  if strategy.name != 'chunked':
    raise ValueError(f'map_clients_mean cannot run strategy {strategy.name!r}.')
  num = jax.tree.leaves(placed)[0].shape[0]
  first = jax.tree.map(lambda x: x[0], placed)
  upload_shapes = jax.eval_shape(one, *first)[1]
  carry = (_zeros_like_shapes(upload_shapes), jnp.zeros((), jnp.float32))

  def add(carry, upload, weight):
    total, weight_sum = carry
    total = jax.tree.map(lambda t, u: t + weight * u, total, upload)
    return total, weight_sum + weight

  def single(carry, p):
    client, upload, weight, metrics = one(*p)
    return add(carry, upload, weight), (client, metrics)

  def batched(carry, p):
    clients, uploads, weights, metrics = jax.vmap(one)(*p)
    total, weight_sum = carry
    total = jax.tree.map(
        lambda t, u: t + jnp.tensordot(weights, u, axes=1), total, uploads)
    return (total, weight_sum + jnp.sum(weights)), (clients, metrics)

  chunk = min(int(strategy.chunk_size or 1), num)
  if chunk == 1:  # Unbatched: a silo's lax.cond really skips its branch.
    carry, (clients, metrics) = lax.scan(single, carry, placed)
    return clients, carry[0], carry[1], metrics
  main = num - num % chunk
  head = jax.tree.map(
      lambda x: x[:main].reshape((main // chunk, chunk) + x.shape[1:]),
      placed)
  carry, (clients, metrics) = lax.scan(batched, carry, head)
  flat = lambda t: jax.tree.map(
      lambda x: x.reshape((main,) + x.shape[2:]), t)
  clients, metrics = flat(clients), flat(metrics)
  if main < num:
    tail = jax.tree.map(lambda x: x[main:], placed)
    carry, (tail_clients, tail_metrics) = batched(carry, tail)
    join = lambda a, b: jax.tree.map(
        lambda x, y: jnp.concatenate([x, y]), a, b)
    clients, metrics = join(clients, tail_clients), join(metrics,
                                                          tail_metrics)
  return clients, carry[0], carry[1], metrics


def map_clients_mean_sharded(fn: Callable[..., Any], placed: Sequence[Any],
                             unplaced: Sequence[Any], strategy: Strategy,
                             mesh):
  """``map_clients_mean`` with the client axis split over the mesh: each
  device sums its own silos, then one ``psum`` over 'clients' adds the
  per-device sums (the same collective a sharded ``tensordot`` needs)."""
  spec = jax.sharding.PartitionSpec('clients')
  replicated = jax.sharding.PartitionSpec()

  def local(placed, unplaced):
    clients, total, weight_sum, metrics = map_clients_mean(
        fn, placed, unplaced, strategy)
    total, weight_sum = lax.psum((total, weight_sum), 'clients')
    return clients, total, weight_sum, metrics

  # check_vma=False for the reasons given in map_clients_sharded.
  return jax.shard_map(
      local, mesh=mesh, in_specs=(spec, replicated),
      out_specs=(spec, replicated, replicated, spec),
      check_vma=False)(tuple(placed), tuple(unplaced))


def client_keys(base: jax.Array, round_index: jax.Array, group_index: int,
                num_clients: int) -> jax.Array:
  """Per-silo keys ``fold_in(fold_in(fold_in(base, round), group), silo)``.

  Keys depend only on (seed, round, group, silo), so a resumed run, a
  different strategy or a different device count sees the same randomness.
  """
  key = jax.random.fold_in(jax.random.fold_in(base, round_index), group_index)
  return jax.vmap(lambda i: jax.random.fold_in(key, i))(
      jnp.arange(num_clients))


# fold_in tag of the per-round sampling key; silo keys use tags 0..C-1.
_SAMPLING_TAG = 2**31 - 1


def sample_clients(base: jax.Array, round_index: jax.Array, group_index: int,
                   weights: jax.Array, num_sampled: int) -> jax.Array:
  """Indices of ``num_sampled`` silos of a group for this round, ascending.

  Drawn uniformly without replacement among the real silos (weight > 0;
  dummy silos padded for a mesh are never drawn) from a key that depends
  only on (seed, round, group), like ``client_keys``: a resumed run draws
  the same silos. Callers keep ``num_sampled`` <= the real silo count.
  """
  scores = jnp.where(weights > 0, _silo_uniforms(base, round_index,
                                                 group_index, weights), -1.0)
  _, idx = lax.top_k(scores, num_sampled)
  return jnp.sort(idx).astype(jnp.int32)


def poisson_draw(base: jax.Array, round_index: jax.Array, group_index: int,
                 weights: jax.Array, expected: int) -> jax.Array:
  """bool ``[C]``: which silos of a group take part this round, each real
  silo (weight > 0) independently with probability ``expected / (real
  silos)``, from the same (seed, round, group) key as ``sample_clients``."""
  return (weights > 0) & (
      _silo_uniforms(base, round_index, group_index, weights)
      < _poisson_rate(weights, expected))


def _silo_uniforms(base: jax.Array, round_index: jax.Array, group_index: int,
                   weights: jax.Array) -> jax.Array:
  """``[C]`` uniforms in [0, 1) from the (seed, round, group) sampling key,
  silo ``i``'s from ``fold_in(key, i)``.

  One draw of shape ``[C]`` would tie silo ``i``'s value to ``C`` unless
  threefry is in partitionable mode, so the dummy silos that pad a group
  to a mesh could change who is drawn; per-silo keys cannot.
  """
  key = jax.random.fold_in(
      jax.random.fold_in(jax.random.fold_in(base, round_index), group_index),
      _SAMPLING_TAG)
  return jax.vmap(lambda i: jax.random.uniform(jax.random.fold_in(key, i)))(
      jnp.arange(weights.shape[0]))


def _poisson_rate(weights: jax.Array, expected: int) -> jax.Array:
  """``q``: ``expected`` over the group's real silos (weight > 0)."""
  return expected / jnp.maximum(jnp.sum(weights > 0), 1)


def _padded_sample(base, round_index, group_index, weights, num_sampled,
                   multiple):
  """``sample_clients``' indices padded to a multiple of ``multiple``.

  Returns ``(idx, real)``: padding entries of ``idx`` are ``C`` (one past
  the group, so scatters with ``mode='drop'`` ignore them) and ``real`` is
  False there.
  """
  idx = sample_clients(base, round_index, group_index, weights, num_sampled)
  extra = -num_sampled % multiple
  if not extra:
    return idx, jnp.ones((num_sampled,), bool)
  pad = jnp.full((extra,), weights.shape[0], jnp.int32)
  real = jnp.arange(num_sampled + extra) < num_sampled
  return jnp.concatenate([idx, pad]), real


def _scatter_clients(full: types.PyTree, part: types.PyTree,
                     idx: jax.Array) -> types.PyTree:
  """``full`` with rows ``idx`` replaced by ``part``'s rows (indices past
  the end are padding and dropped)."""
  return jax.tree.map(lambda f, p: f.at[idx].set(p, mode='drop'), full, part)


def _scatter_rows(part: types.PyTree, idx: jax.Array,
                  num: int) -> types.PyTree:
  """Per-silo values of the sampled silos spread to ``[num]`` rows (zeros,
  or False, for silos not sampled this round)."""
  return jax.tree.map(lambda v: jnp.zeros((num,) + v.shape[1:], v.dtype)
                      .at[idx].set(v, mode='drop'), part)


def _all_finite(tree: types.PyTree) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
            if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


# ---------------------------------------------------------------------------
# The round.
# ---------------------------------------------------------------------------


def init_state(alg: types.FederatedAlgorithm, data: types.FederatedData,
               seed: int) -> FederatedState:
  """Initialises server and client states from ``seed``."""
  base = jax.random.PRNGKey(seed)
  server, clients = alg.init(jax.random.fold_in(base, 0), data)
  return FederatedState(server=server, clients=dict(clients),
                        rng=jax.random.fold_in(base, 1),
                        round=jnp.zeros((), jnp.int32))


class RoundMetrics(NamedTuple):
  """What one compiled round reports. The engine's own flags sit beside the
  algorithm's metrics, never inside them. Under ``run_rounds`` every leaf
  gains a leading ``[R]`` axis, under ``run_sweep_rounds`` ``[K, R]``.

  Attributes:
    round: int32 ``[]``: the 1-based run round these metrics are of.
    silos: group -> the algorithm's per-silo metrics (``'train_loss'`` and
      its own keys), leaves ``[C, ...]``; zeros for silos not drawn.
    nonfinite: group -> bool ``[C]``: the silo's loss, upload or a metric
      was not finite (with ``nonfinite='skip'`` its update was dropped).
    sampled: group -> bool ``[C]``: the silo trained this round (all True
      without client sampling).
    server_nonfinite: bool ``[]``: the new server state is not finite.
  """
  round: jax.Array
  silos: Mapping[str, types.Metrics]
  nonfinite: Mapping[str, jax.Array]
  sampled: Mapping[str, jax.Array]
  server_nonfinite: jax.Array


def _local_with_checks(alg, group, nonfinite):
  """Wraps ``alg.local_update`` for one silo with the non-finite guard.

  Its metrics output is ``(metrics, nonfinite flag)``, where metrics is
  ``{'train_loss': ..., **the algorithm's metrics}``: a silo whose loss,
  upload or a metric is not finite raises the flag; with
  ``nonfinite='skip'`` its update is also dropped (weight 0 and its state
  unchanged), so one bad silo cannot poison the server.
  """
  def fn(client, personal, data, weight, key, broadcast, hparams):
    out = alg.local_update(
        types.SiloInput(group, client, broadcast, personal, data), hparams,
        key)
    if not isinstance(out, types.SiloOutput):
      raise TypeError(f'{alg.name}: local_update returned '
                      f'{type(out).__name__}, not a types.SiloOutput.')
    if 'train_loss' in out.metrics:
      raise ValueError(f'{alg.name}: SiloOutput.metrics names '
                       "'train_loss'; it is SiloOutput.train_loss.")
    new_client, upload = out.state, out.upload
    metrics = {'train_loss': out.train_loss, **out.metrics}
    finite = _all_finite(upload) & _all_finite(metrics)
    metrics = (metrics, ~finite)
    if nonfinite == 'skip':
      new_client = jax.tree.map(lambda a, b: jnp.where(finite, a, b),
                                new_client, client)
      upload = jax.tree.map(lambda u: jnp.where(finite, u, jnp.zeros_like(u)),
                            upload)
      weight = jnp.where(finite, weight, 0.0)
    return new_client, upload, weight, metrics
  return fn


@dataclasses.dataclass(frozen=True)
class Round:
  """A built federated round: ``round(state, data, weights, hparams) ->
  (state, metrics)``, with what ``run_rounds`` needs to know about it.

  A frozen dataclass rather than a NamedTuple: ``jax.jit`` keys its cache on
  a weak reference to the callable, which tuples cannot give.

  Attributes:
    step: the round function (pure and traceable, except for 'loop').
    strategy: the resolved client-parallel strategy.
    nonfinite: 'stop' or 'skip' (see ``build_round``).
    mesh: the mesh its silos are sharded over, or None.
    place_state: with a mesh, the layout the scan's output state is
      constrained to (``shard_state``'s), so one executable can be called
      again on its own output; None without a mesh.
  """
  step: Callable[..., Any]
  strategy: 'Strategy'
  nonfinite: str = 'stop'
  mesh: Any = None
  place_state: Optional[Callable[[FederatedState], FederatedState]] = None

  def __call__(self, state, data, weights, hparams):
    return self.step(state, data, weights, hparams)


def _round_info(round_fn) -> Round:
  """``round_fn`` as a ``Round`` (a plain callable gets the defaults)."""
  if isinstance(round_fn, Round):
    return round_fn
  return Round(round_fn, None)


class _RoundSpec(NamedTuple):
  """What ``build_round``'s pieces share (static, host-side)."""
  alg: types.FederatedAlgorithm
  groups: tuple[str, ...]
  strategy: 'Strategy'
  checked: Mapping[str, Callable[..., Any]]  # Group -> guarded local step.
  sampled: Mapping[str, int]  # Group -> silos drawn per round.
  poisson: bool  # ``sampled`` counts are expected counts (Poisson draws).
  mesh: Any
  devices: int  # Client devices (1 without a mesh).
  streamed: bool  # Server mean accumulated while mapping (FedAvg family).


def build_round(alg: types.FederatedAlgorithm, groups: Sequence[str], *,
                strategy: str = 'auto', chunk_size: Optional[int] = None,
                nonfinite: str = 'stop', mesh=None,
                clients_per_round: Optional[Mapping[str, int]] = None,
                sampling: str = 'fixed', verbose: bool = False) -> Round:
  """Builds the ``Round``: ``round(state, data, weights, hparams) ->
  (state, metrics)``.

  Args:
    alg: the federated algorithm.
    groups: names of the silo groups, in a fixed order (it sets the key
      derivation, so keep it stable).
    strategy: client-parallel strategy (``STRATEGIES``).
    chunk_size: silos per step for 'chunked'.
    nonfinite: 'stop' (flag only; the host loop stops the run) or 'skip'
      (also drop the offending silo's update this round).
    mesh: optional ``jax.sharding.Mesh`` with a 'clients' axis (see
      ``make_mesh``): every device maps the strategy over its own silos
      (``map_clients_sharded``), client-placed outputs are constrained to the
      mesh and server reductions become collectives. Each group's client
      count must be a multiple of the mesh size (``pad_federation_for_mesh``).
    clients_per_round: optional group -> m: each round only m silos of that
      group, drawn by ``sample_clients``, train and upload (client
      sampling). Only those m are gathered and mapped, so the round's
      compute scales with m; the others keep their state. Their per-silo
      metrics are zero and the group's metrics gain ``'sampled'`` (bool
      ``[C]``). Groups not named (or m = 0) run every silo.
    sampling: 'fixed' (the m silos above) or 'poisson': each real silo of
      a named group takes part independently with probability
      ``q = m / (its real silos)`` (``poisson_draw``), so m is the expected
      count, and the mean upload is the fixed-denominator one, the drawn
      silos' weighted sum over ``q`` times the group's weight
      (McMahan et al. 2018): unbiased for the full mean, and what
      silo-level DP-FedAvg's noise is calibrated to. Cohorts vary in size
      while shapes are static, so every silo is mapped and the undrawn
      ones' results are discarded: no compute is saved. Only for algorithms
      with a server step of the mean (``server_update_from_mean``, the
      FedAvg family) under a compiled strategy.
    verbose: print the resolved strategy.

  Returns:
    The ``Round``. For strategies other than 'loop' its step is pure and
    traceable (jit it, or use ``run_rounds``); 'loop' gives a host-side
    Python function for reference and benchmarks (``_loop_round``).
  """
  if nonfinite not in ('stop', 'skip'):
    raise ValueError(f"nonfinite must be 'stop' or 'skip', got {nonfinite!r}.")
  resolved = resolve_strategy(strategy, chunk_size=chunk_size)
  if verbose:
    print(f'[fedhelp_jax] client-parallel strategy: {resolved.describe()}')
  groups = tuple(groups)
  if sampling not in SAMPLINGS:
    raise ValueError(f'sampling must be one of {SAMPLINGS}, got {sampling!r}.')
  poisson = sampling == 'poisson'
  if poisson and (alg.server_update_from_mean is None
                  or resolved.name not in ('chunked', 'vmap')):
    raise ValueError(
        f"sampling='poisson' needs a server step of the mean upload "
        f'(server_update_from_mean, the FedAvg family) and a compiled '
        f'strategy; {alg.name} under {resolved.name!r} has '
        f"{'none' if alg.server_update_from_mean is None else 'the loop'}.")
  sampled = {g: int(m) for g, m in (clients_per_round or {}).items() if m}
  unknown = sorted(set(sampled) - set(groups))
  if unknown or any(m < 0 for m in sampled.values()):
    raise ValueError(f'clients_per_round: groups {unknown} are not among '
                     f'{groups}, or a count is negative: {clients_per_round}.')
  spec = _RoundSpec(
      alg=alg, groups=groups, strategy=resolved,
      checked={g: _local_with_checks(alg, g, nonfinite) for g in groups},
      sampled=sampled, poisson=poisson, mesh=mesh,
      # With a mesh, the m drawn silos are padded to a multiple of the
      # client devices (weight-0 duplicates) so every device trains m / D.
      devices=1 if mesh is None else int(mesh.shape['clients']),
      # The FedAvg family's mean is accumulated as the silos are mapped;
      # the 'loop' reference keeps the stacked uploads and server_update.
      streamed=(alg.server_update_from_mean is not None
                and resolved.name in ('chunked', 'vmap')))
  if resolved.name == 'loop':
    return Round(_loop_round(spec), resolved, nonfinite)

  def round_fn(state, data, weights, hparams):
    download = alg.download(state.server)
    new_clients, uploads, new_weights, metrics = {}, {}, {}, {}
    for gi, g in enumerate(groups):
      (new_clients[g], uploads[g], new_weights[g], metrics[g]) = _group_step(
          spec, gi, state, download, data[g], weights[g], hparams)
    return _finish_round(spec, state, new_clients, uploads, new_weights,
                         metrics, hparams)

  return Round(round_fn, resolved, nonfinite, mesh,
               None if mesh is None else functools.partial(_place_state,
                                                           mesh))


def _constrain(mesh, tree):
  """``tree``'s leaves constrained to the client axis of ``mesh``."""
  if mesh is None:
    return tree
  sharding = jax.sharding.NamedSharding(
      mesh, jax.sharding.PartitionSpec('clients'))
  return jax.tree.map(
      lambda x: lax.with_sharding_constraint(x, sharding), tree)


def _place_state(mesh, state: FederatedState) -> FederatedState:
  """The layout ``shard_state`` gives a run's input state.

  A server leaf computed from client-sharded values (pFedNet's per-silo z)
  would otherwise leave the compiled rounds sharded, and the next call of
  the same executable would refuse it.
  """
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  keep = lambda tree: jax.tree.map(
      lambda x: lax.with_sharding_constraint(x, replicated), tree)
  return FederatedState(server=keep(state.server),
                        clients=_constrain(mesh, dict(state.clients)),
                        rng=keep(state.rng), round=keep(state.round))


def _group_step(spec: _RoundSpec, gi: int, state: FederatedState, download,
                data, weights, hparams):
  """One group's silos mapped with the strategy (sampled and sharded as the
  spec says): ``(new clients, uploads, weights, (metrics, nonfinite,
  sampled))``; with a streamed mean the uploads are ``(weighted sum, weight
  sum)`` and weights None."""
  g = spec.groups[gi]
  num = weights.shape[0]
  chex.assert_tree_shape_prefix(state.clients[g], (num,))
  keys = client_keys(state.rng, state.round, gi, num)
  personal = None if download.personal is None else download.personal[g]
  placed = (state.clients[g], personal, data, weights, keys)
  idx = drawn = None
  if g in spec.sampled and spec.poisson:
    drawn = poisson_draw(state.rng, state.round, gi, weights, spec.sampled[g])
    placed = placed[:3] + (jnp.where(drawn, weights, 0.0),) + placed[4:]
  elif g in spec.sampled:
    if spec.sampled[g] > num:
      raise ValueError(f'clients_per_round[{g!r}] = {spec.sampled[g]} but '
                       f'the group has {num} silos.')
    idx, real = _padded_sample(state.rng, state.round, gi, weights,
                               spec.sampled[g], spec.devices)
    # mode='clip': a padding row repeats the last silo, weight 0 below.
    placed = jax.tree.map(lambda x: x.at[idx].get(mode='clip'), placed)
    placed = placed[:3] + (jnp.where(real, placed[3], 0.0),) + placed[4:]
    placed = _constrain(spec.mesh, placed)
  unplaced = (download.broadcast, hparams)
  local = spec.checked[g] if drawn is None else _zero_undrawn(spec.checked[g])
  if spec.streamed:
    if spec.mesh is None:
      out = map_clients_mean(local, placed, unplaced, spec.strategy)
    else:
      out = map_clients_mean_sharded(local, placed, unplaced, spec.strategy,
                                     spec.mesh)
    new_clients, group_metrics = _constrain(spec.mesh, (out[0], out[3]))
    upload, new_weights = (out[1], out[2]), None
    if drawn is not None:  # The fixed denominator: q times the weight.
      upload = (out[1],
                jnp.sum(weights) * _poisson_rate(weights, spec.sampled[g]))
  else:
    if spec.mesh is None:
      out = map_clients(spec.checked[g], placed, unplaced, spec.strategy)
    else:
      out = map_clients_sharded(spec.checked[g], placed, unplaced,
                                spec.strategy, spec.mesh)
    new_clients, upload, new_weights, group_metrics = _constrain(spec.mesh,
                                                                 out)
  if drawn is not None:
    return (_where_drawn(drawn, new_clients, state.clients[g]), upload,
            new_weights, (_where_drawn(drawn, group_metrics[0]),
                          group_metrics[1] & drawn, drawn))
  if idx is not None:
    # Uploads and weights cover the m drawn (padded: weight-0 rows): the
    # server averages the sampled. Padding rows index past the group and
    # are dropped by the scatters.
    new_clients = _scatter_clients(state.clients[g], new_clients, idx)
    return new_clients, upload, new_weights, _drawn_metrics(group_metrics,
                                                            idx, num)
  return new_clients, upload, new_weights, group_metrics + (
      jnp.ones((num,), bool),)


def _zero_undrawn(local):
  """``local`` whose upload is zero for a weight-0 silo (not drawn under
  Poisson sampling): it ran only for static shapes, and a non-finite
  upload times weight 0 would still poison the weighted sum."""
  def fn(client, personal, data, weight, *rest):
    new, upload, new_weight, metrics = local(client, personal, data, weight,
                                             *rest)
    upload = jax.tree.map(
        lambda u: jnp.where(weight > 0, u, jnp.zeros_like(u)), upload)
    return new, upload, new_weight, metrics
  return fn


def _where_drawn(drawn: jax.Array, new: types.PyTree,
                 old: Optional[types.PyTree] = None) -> types.PyTree:
  """Per silo, ``new``'s row where ``drawn``, else ``old``'s (zeros)."""
  def pick(a, b):
    mask = drawn.reshape((-1,) + (1,) * (jnp.ndim(a) - 1))
    return jnp.where(mask, a, jnp.zeros_like(a) if b is None else b)
  if old is None:
    return jax.tree.map(lambda a: pick(a, None), new)
  return jax.tree.map(pick, new, old)


def _drawn_metrics(part, idx: jax.Array, num: int):
  """The drawn silos' ``(metrics, nonfinite)`` spread to ``[num]`` rows,
  plus which silos were drawn."""
  drawn = jnp.zeros((num,), bool).at[idx].set(True, mode='drop')
  return _scatter_rows(part, idx, num) + (drawn,)


def _finish_round(spec: _RoundSpec, state, new_clients, uploads, new_weights,
                  metrics, hparams):
  """The server step and the next ``FederatedState``."""
  alg, groups = spec.alg, spec.groups
  if spec.streamed:  # uploads: group -> (weighted sum, weight sum).
    total = jnp.maximum(sum(uploads[g][1] for g in groups), 1e-12)
    mean = jax.tree.map(lambda *xs: sum(xs) / total,
                        *[uploads[g][0] for g in groups])
    server = alg.server_update_from_mean(state.server, mean, hparams)
  else:
    server = alg.server_update(state.server, uploads, new_weights, hparams)
  new_state = FederatedState(server=server, clients=new_clients,
                             rng=state.rng, round=state.round + 1)
  return new_state, RoundMetrics(
      round=state.round + 1,
      silos={g: metrics[g][0] for g in groups},
      nonfinite={g: metrics[g][1] for g in groups},
      sampled={g: metrics[g][2] for g in groups},
      server_nonfinite=~_all_finite(server))


def _loop_round(spec: _RoundSpec):
  """The 'loop' reference: a Python loop of jitted single-silo updates,
  then a jitted server step. Same keys and same math as the compiled
  round, no client mapping; tests use it as an oracle and benchmarks as
  FedJAX's baseline."""
  alg, groups, sampled = spec.alg, spec.groups, spec.sampled
  local_jit = {g: jax.jit(spec.checked[g]) for g in groups}
  finish_jit = jax.jit(functools.partial(_finish_round, spec))
  download_jit = jax.jit(alg.download)

  def loop_round_fn(state, data, weights, hparams):
    download = download_jit(state.server)
    new_clients, uploads, new_weights, metrics = {}, {}, {}, {}
    for gi, g in enumerate(groups):
      num = weights[g].shape[0]
      keys = client_keys(state.rng, state.round, gi, num)
      silos = range(num)
      if g in sampled:
        silos = [int(c) for c in sample_clients(state.rng, state.round, gi,
                                                weights[g], sampled[g])]
      outs = []
      for c in silos:
        take = functools.partial(lambda x, c: x[c], c=c)
        personal = (None if download.personal is None
                    else jax.tree.map(take, download.personal[g]))
        outs.append(local_jit[g](
            jax.tree.map(take, state.clients[g]), personal,
            jax.tree.map(take, data[g]), weights[g][c], keys[c],
            download.broadcast, hparams))
      stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *outs)
      new_clients[g], uploads[g], new_weights[g], metrics[g] = stacked
      if g in sampled:
        idx = jnp.asarray(silos, jnp.int32)
        new_clients[g] = _scatter_clients(state.clients[g], new_clients[g],
                                          idx)
        metrics[g] = _drawn_metrics(metrics[g], idx, num)
      else:
        metrics[g] += (jnp.ones((num,), bool),)
    return finish_jit(state, new_clients, uploads, new_weights, metrics,
                      hparams)

  return loop_round_fn


class CheckedRounds(NamedTuple):
  """A compiled chunk of rounds plus its host-side guards: the one path by
  which the library, sweeps and the CLI run rounds.

  Calling it runs ``fn`` and then ``guard`` on the chunk's metrics
  (``guards.Guard``: the one non-finite policy). With ``check_data`` the
  first call on a data object runs ``validate.check_federation`` first (bad
  data fails with a named field before compilation, not as NaN later).
  ``compile(*args)`` compiles ahead of time and keeps the guards; ``lower``
  is the jitted function's (benchmarks time the bare executable).

  Attributes:
    fn: the jitted (or compiled) ``fn(state, data, weights, hparams) ->
      (state, RoundMetrics)``.
    guard: the non-finite policy; None checks nothing (benchmarks).
    sweep: the metrics carry a leading config axis ``[K, R, ...]`` (each
      config is checked on its own).
    check_data: validate the data on first use.
    task: optional ``tasks.Task`` for the data check (label range, shapes).
    validated: the data already checked (weak references to its leaves, so
      a new object at a reused address is checked again); None checks the
      data on every call.
  """
  fn: Callable[..., Any]
  guard: Optional[guards.Guard]
  sweep: bool = False
  check_data: bool = True
  task: Any = None
  validated: Optional[list] = None  # None: check on every call.

  def __call__(self, state, data, weights, hparams):
    state, metrics, _, _ = self._guarded(state, data, weights, hparams)
    return state, metrics

  def call_on_host(self, state, data, weights, hparams):
    """Like calling it, but returns ``(state, host metrics, events per
    config)``: the metrics as the guard fetched them and the guard's
    ``NonFiniteEvent``s, so a host loop reads neither twice. Needs a
    guard."""
    state, _, host, found = self._guarded(state, data, weights, hparams)
    return state, host, found

  def _guarded(self, state, data, weights, hparams):
    if self.check_data and not self._was_validated(data):
      if not any(isinstance(x, jax.core.Tracer)
                 for x in jax.tree.leaves(data)):
        # Sharded over several processes, each checks the silos it holds.
        federation_checks.check_federation(
            local_rows(data), local_rows(weights), task=self.task)
        # A cache of what was checked, like jit's own; it changes no result.
        if self.validated is not None:
          self.validated.append([weakref.ref(x)
                                 for x in jax.tree.leaves(data)])
    state, metrics = self.fn(state, data, weights, hparams)
    host = found = None
    if self.guard is not None:
      host = fetch(metrics)
      found = self.guard(host, host.round.shape[0] if self.sweep else None)
    return state, metrics, host, found

  def _was_validated(self, data) -> bool:
    leaves = jax.tree.leaves(data)
    return any(len(refs) == len(leaves) and
               all(r() is x for r, x in zip(refs, leaves))
               for refs in self.validated or ())

  def lower(self, *args):
    return self.fn.lower(*args)

  def compile(self, *args) -> 'CheckedRounds':
    """The same guards around the ahead-of-time compiled executable."""
    return self._replace(fn=self.fn.lower(*args).compile(), validated=[])

  def with_guard(self, guard: Optional[guards.Guard]) -> 'CheckedRounds':
    return self._replace(guard=guard)


def run_rounds(round_fn: Callable[..., Any], num_rounds: int, *,
               donate: bool = True, check: bool = True,
               task=None) -> CheckedRounds:
  """Compiles ``num_rounds`` rounds into one ``lax.scan``.

  Args:
    round_fn: from ``build_round`` (a compiled strategy).
    num_rounds: rounds per call.
    donate: donate the input state's buffers.
    check: validate the data on first use and raise ``NonFiniteError`` on
      the rounds the round's ``nonfinite`` policy does not allow (see
      ``guards``); benchmarks opt out with ``check=False``.
    task: optional ``tasks.Task``; with it the first-call check also covers
      the label range and shapes (e.g. label 5 with 2 classes).

  Returns:
    A ``CheckedRounds``: ``fn(state, data, weights, hparams) -> (state,
    RoundMetrics)`` where every leaf gains a leading ``[num_rounds]`` axis.
    The state buffers are donated (the caller must not reuse the input
    state).
  """
  info = _round_info(round_fn)
  if info.strategy is not None and info.strategy.name == 'loop':
    raise ValueError("run_rounds needs a compiled strategy, not 'loop'.")
  jitted = jax.jit(run_rounds_unjitted(round_fn, num_rounds),
                   donate_argnums=(0,) if donate else ())
  return CheckedRounds(jitted, guards.Guard(info.nonfinite) if check
                       else None, check_data=check, task=task, validated=[])


def run_rounds_unjitted(round_fn, num_rounds):
  """The scan of ``run_rounds`` without jit, for composition (sweeps)."""
  place = _round_info(round_fn).place_state

  def many(state, data, weights, hparams):
    def body(s, _):
      return round_fn(s, data, weights, hparams)
    state, metrics = lax.scan(body, state, None, length=num_rounds)
    return (state if place is None else place(state)), metrics
  return many


def run_sweep_rounds(round_fn: Callable[..., Any], num_rounds: int, *,
                     donate: bool = True, stacked_data: bool = False,
                     config_parallel: str = 'vmap',
                     check: bool = True) -> CheckedRounds:
  """K configs as ONE program: ``run_rounds`` over a config axis.

  The K configs share shapes and differ in state (seeds) and hyperparameter
  values: ``state`` and every ``hparams`` leaf carry a leading ``[K]`` axis.
  ``data`` and ``weights`` are shared by default.

  How the configs run side by side:
    * ``'vmap'``: one batched program. On GPUs/TPUs the K configs fill the
      device; on CPU per-config conv weights lower to grouped convolutions.
    * ``'map'``: a ``lax.map`` over configs inside one program: the configs
      run one after another, each as fast as alone, with one compile and
      one dispatch for all K (``benchmarks/sweep.py`` measures both).
    * a round built with a 2-D mesh ``('configs', 'clients')``
      (``make_sweep_mesh``): vmapped with the config axis sharded over the
      mesh's 'configs' devices and each config's silos over its 'clients'
      devices; ``config_parallel`` must then be 'vmap'.

  Args:
    round_fn: from ``build_round`` (a compiled strategy; with a mesh, a
      mesh from ``make_sweep_mesh``).
    num_rounds: rounds per call (one ``lax.scan``).
    donate: donate the input states' buffers.
    stacked_data: the configs also differ in data (e.g. seeds that change
      which examples each silo holds, at the same shapes): every ``data``
      and ``weights`` leaf carries a leading ``[K]`` axis too. This costs K
      copies of the data in device memory.
    config_parallel: one of ``CONFIG_PARALLEL``.
    check: raise ``NonFiniteError`` on the first config whose rounds the
      round's ``nonfinite`` policy does not allow (data is not checked here:
      ``runner`` and ``sweep`` validate each config's silos on the host).

  Returns:
    A ``CheckedRounds``: ``fn(states, data, weights, hparams) -> (states,
    RoundMetrics)`` with leaves ``[K, num_rounds, ...]``.
  """
  info = _round_info(round_fn)
  if info.strategy is not None and info.strategy.name == 'loop':
    raise ValueError("run_sweep_rounds needs a compiled strategy, not 'loop'.")
  if config_parallel not in CONFIG_PARALLEL:
    raise ValueError(f'config_parallel={config_parallel!r}: expected one of '
                     f'{CONFIG_PARALLEL}.')
  mesh = info.mesh
  if mesh is not None and 'configs' not in mesh.axis_names:
    raise ValueError(
        "run_sweep_rounds: the round was built with a 1-D 'clients' mesh; "
        "build it with make_sweep_mesh(...) (axes ('configs', 'clients')) "
        'to shard K configs, or without a mesh.')
  if mesh is not None and config_parallel != 'vmap':
    raise ValueError("run_sweep_rounds: a ('configs', 'clients') mesh shards "
                     "a vmapped config axis; use config_parallel='vmap'.")
  many = run_rounds_unjitted(round_fn, num_rounds)
  data_axis = 0 if stacked_data else None
  if config_parallel == 'map':
    def configs(states, data, weights, hparams):
      if stacked_data:
        return lax.map(lambda a: many(*a), (states, data, weights, hparams))
      return lax.map(lambda a: many(a[0], data, weights, a[1]),
                     (states, hparams))
  else:
    configs = jax.vmap(many, in_axes=(0, data_axis, data_axis, 0),
                       spmd_axis_name=None if mesh is None else 'configs')
  jitted = jax.jit(configs, donate_argnums=(0,) if donate else ())
  return CheckedRounds(jitted, guards.Guard(info.nonfinite) if check
                       else None, sweep=True, check_data=False, validated=[])


# ---------------------------------------------------------------------------
# Evaluation.
# ---------------------------------------------------------------------------


def build_predict(alg: types.FederatedAlgorithm, groups: Sequence[str],
                  apply_fn: Callable[..., Any], *, strategy: str = 'auto',
                  chunk_size: Optional[int] = None):
  """Builds a jitted ``predict(state, data) -> {group: probs [C, Nt, ...]}``.

  Each silo is evaluated with ``alg.eval_variables`` on its own test split.

  Args:
    alg: the algorithm.
    groups: group names.
    apply_fn: ``(module, variables, x) -> probabilities`` for a batch.
    strategy: client-parallel strategy used to map over silos.
    chunk_size: for 'chunked'.
  """
  resolved = resolve_strategy(strategy, chunk_size=chunk_size)
  if resolved.name == 'loop':
    resolved = Strategy('chunked', 1, 'loop evaluates sequentially')

  def predict(state, data):
    download = alg.download(state.server)
    out = {}
    for g in groups:
      module = alg.eval_model(g)

      def one(client, personal, test_x, broadcast, g=g, module=module):
        variables = alg.eval_variables(
            types.SiloInput(g, client, broadcast, personal))
        return apply_fn(module, variables, test_x)

      personal = None if download.personal is None else download.personal[g]
      out[g] = map_clients(one, (state.clients[g], personal,
                                 data[g]['test_x']),
                           (download.broadcast,), resolved)
    return out

  return jax.jit(predict)


def build_predict_common(alg: types.FederatedAlgorithm, groups: Sequence[str],
                         apply_fn: Callable[..., Any], *,
                         strategy: str = 'auto',
                         chunk_size: Optional[int] = None):
  """Builds a jitted ``predict(state, sizes, x) -> {group: probs [C, N,
  ...]}``: every silo's evaluation model on ONE test set ``x [N, ...]``
  shared by all (e.g. the whole official test split), so silos are
  compared on the same images instead of on their own small draws.
  ``sizes`` is ``{group: n [C]}`` (the groups' ``'n'``): it gives the client
  axis where client states have no leaves (stateless silos)."""
  resolved = resolve_strategy(strategy, chunk_size=chunk_size)
  if resolved.name == 'loop':
    resolved = Strategy('chunked', 1, 'loop evaluates sequentially')

  def predict(state, sizes, x):
    download = alg.download(state.server)
    out = {}
    for g in groups:
      module = alg.eval_model(g)

      def one(client, personal, n, broadcast, x, g=g, module=module):
        del n
        variables = alg.eval_variables(
            types.SiloInput(g, client, broadcast, personal))
        return apply_fn(module, variables, x)

      personal = None if download.personal is None else download.personal[g]
      out[g] = map_clients(one, (state.clients[g], personal, sizes[g]),
                           (download.broadcast, x), resolved)
    return out

  return jax.jit(predict)


# ---------------------------------------------------------------------------
# Checkpoint layout (host-side placement and sharding live in ``mesh``).
# ---------------------------------------------------------------------------


class SiloLayout(NamedTuple):
  """Where a state's silos are, so it can be stored without the dummies.

  Attributes:
    owners: a tree like the state: per leaf, the group whose silos its
      leading axis counts, or '' for a leaf with no silo axis.
    num_real: group -> the number of real silos (the rest are dummies).
  """
  owners: types.PyTree
  num_real: Mapping[str, int]


def silo_layout(alg: types.FederatedAlgorithm, data: types.FederatedData,
                num_real: Mapping[str, int]) -> tuple[Optional[SiloLayout],
                                                      str]:
  """Finds which state leaves have a per-silo leading axis, from shapes.

  The state is initialised abstractly (``jax.eval_shape``) for ``data`` and
  again with one more silo in one group: a leaf whose leading axis grows by
  one belongs to that group (client states, and server leaves such as
  pFedNet's per-silo z); a leaf that does not change has no silo axis. Any
  other change (a shape that depends on the silo count some other way) is
  not handled.

  Returns:
    ``(layout, '')``, or ``(None, why)`` when some leaf's silo axis cannot
    be found (the state is then only restorable at its own padding).
  """
  init = lambda d: init_state(alg, d, 0)
  try:
    base = jax.eval_shape(init, data)
  except Exception as e:  # pylint: disable=broad-except
    return None, f'its init cannot be traced abstractly ({type(e).__name__})'
  paths_shapes, treedef = jax.tree_util.tree_flatten_with_path(base)
  owners = [''] * len(paths_shapes)
  for g in data:
    num = int(np.shape(data[g]['n'])[0])
    extra, _ = pad_group_clients(data[g], np.zeros(num, np.float32), num + 1)
    grown = jax.tree.leaves(jax.eval_shape(init, {**data, g: extra}))
    if len(grown) != len(paths_shapes):
      return None, f'its state has another structure with one more {g} silo'
    for i, ((path, a), b) in enumerate(zip(paths_shapes, grown)):
      if a.shape == b.shape:
        continue
      if (a.ndim and a.shape[1:] == b.shape[1:]
          and b.shape[0] == a.shape[0] + 1 and not owners[i]):
        owners[i] = g
        continue
      return None, (f'state leaf {jax.tree_util.keystr(path)} changes from '
                    f'{a.shape} to {b.shape} with one more {g} silo')
  return SiloLayout(jax.tree.unflatten(treedef, owners), dict(num_real)), ''


def stored_state(state: FederatedState, layout: SiloLayout, mesh=None):
  """``state`` without dummy silos: every per-silo leaf cut to its group's
  real silos, replicated over ``mesh`` (any device count can read it back).
  """
  cut = lambda tree: jax.tree.map(
      lambda g, x: x[:layout.num_real[g]] if g else x, layout.owners, tree)
  if mesh is None:
    return jax.jit(cut)(state)
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  return jax.jit(cut, out_shardings=replicated)(state)


def restored_state(stored: FederatedState, template: FederatedState,
                   layout: SiloLayout) -> FederatedState:
  """The inverse of ``stored_state`` for this run: real silos from
  ``stored``, dummy silos (weight 0, never reported) from the freshly
  initialised ``template``, laid out as ``template`` is."""
  def fill(g, real, fresh):
    if not g or real.shape[0] == fresh.shape[0]:
      return real
    return jnp.concatenate([real, fresh[real.shape[0]:]])

  shardings = jax.tree.map(lambda x: x.sharding, template)
  return jax.jit(lambda s, t: jax.tree.map(fill, layout.owners, s, t),
                 out_shardings=shardings)(stored, template)
